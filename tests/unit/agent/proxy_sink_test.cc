// The agent's seam to the node's proxy: the shape check of a `proxy` document
// from the desired-state stream, and the node's data plane behind it.
#include "agent/proxy_sink.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "support/loopback.h"

namespace berth {
namespace {

Result<int64_t> VersionOf(const char* text) {
  Result<json::Doc> d = json::Doc::Parse(text);
  REQUIRE(d.ok());
  return agent::ProxyDocVersion(d->view());
}

TEST_CASE("proxy sink: a document is an object with a whole version of 1 or more", "[agent][lb]") {
  Result<int64_t> ok = VersionOf(R"({"version":7,"listeners":[],"targetGroups":[]})");
  REQUIRE(ok.ok());
  CHECK(*ok == 7);
  CHECK(VersionOf(R"({"version":3})").ok());
  for (const char* bad :
       {R"([])", R"({"listeners":[]})", R"({"version":0})", R"({"version":1.5})", R"({"version":"7"})",
        R"({"version":2,"listeners":{}})", R"({"version":2,"targetGroups":1})"}) {
    Result<int64_t> r = VersionOf(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.error().message.starts_with("proxy"));
  }
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// Whether `port` comes to accept (or stops accepting) within a generous deadline:
// the workers take a document at their next loop iteration.
bool Becomes(int port, bool accepting) {
  for (int i = 0; i < 500; i++) {
    if (Accepts(port) == accepting) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

Result<int64_t> Apply(agent::DataPlaneSink& sink, const std::string& text) {
  Result<json::Doc> d = json::Doc::Parse(text);
  REQUIRE(d.ok());
  return sink.ApplyProxy(d->view());
}

TEST_CASE("proxy sink: the data plane opens the listeners of each document and keeps the last good one",
          "[agent][lb]") {
  agent::DataPlaneSink sink(1, 0);
  int port = testing::FreeLoopbackPort();
  std::string tcp = R"({"port":)" + std::to_string(port) + R"(,"protocol":"TCP","defaultTargetGroup":"db"})";
  std::string db = R"({"name":"db","protocol":"TCP","targets":[]})";

  // In no load balancer: nothing listens.
  Result<int64_t> none = Apply(sink, R"({"version":1,"listeners":[],"targetGroups":[]})");
  REQUIRE(none.ok());
  CHECK(*none == 1);
  CHECK_FALSE(Accepts(port));

  Result<int64_t> two = Apply(sink, R"({"version":2,"listeners":[)" + tcp + R"(],"targetGroups":[)" + db + "]}");
  REQUIRE(two.ok());
  CHECK(*two == 2);
  CHECK(Becomes(port, true));

  // A document the data plane refuses says where, and the one before keeps running.
  Result<int64_t> bad = Apply(sink, R"({"version":3,"listeners":[{"port":)" + std::to_string(port) +
                                        R"(,"protocol":"TCP","defaultTargetGroup":"nope"}],"targetGroups":[]})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("proxy.listeners[0].defaultTargetGroup"));
  CHECK(Accepts(port));

  // Out of every load balancer: the listener closes.
  REQUIRE(Apply(sink, R"({"version":4,"listeners":[],"targetGroups":[]})").ok());
  CHECK(Becomes(port, false));
}

}  // namespace
}  // namespace berth
