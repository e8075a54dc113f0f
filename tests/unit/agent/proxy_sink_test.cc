// The agent's seam to the node's proxy: the shape check of a `proxy` document
// from the desired-state stream, and the logging sink that stands in for the
// data plane until it is joined to the agent.
#include "agent/proxy_sink.h"

#include <catch2/catch.hpp>

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
  Result<json::Doc> d = json::Doc::Parse(R"({"version":9,"listeners":[{"port":80}],"targetGroups":[]})");
  REQUIRE(d.ok());
  agent::LoggingProxySink sink;
  Result<int64_t> applied = sink.ApplyProxy(d->view());
  REQUIRE(applied.ok());
  CHECK(*applied == 9);
}

}  // namespace
}  // namespace berth
