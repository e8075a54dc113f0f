// proxy/proxy: the Proxy object from outside its workers, as the agent will use
// it: Apply from another thread, the version applied, and a target's in-flight
// connections (what draining waits on), over real loopback sockets.
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "support/loopback.h"

using namespace berth;
using namespace berth::proxy;

namespace {

int FreePort() {
  int port = 0;
  close(testing::ListenLoopback(&port));
  return port;
}

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Polls `cond` for up to 10 s (a bound on a slow machine, not a claim of speed).
template <class F>
bool Eventually(F cond) {
  for (int i = 0; i < 1000; i++) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

}  // namespace

TEST_CASE("proxy: Apply from another thread, the version applied, in-flight connections", "[proxy]") {
  int target_port = 0;
  int target_fd = testing::ListenLoopback(&target_port);
  int listen_port = FreePort();
  std::string doc = R"({"version": 3, "listeners": [{"port": )" + std::to_string(listen_port) +
                    R"(, "protocol": "TCP", "address": "127.0.0.1", "defaultTargetGroup": "db"}],
      "targetGroups": [{"name": "db", "protocol": "TCP", "targets": [
        {"id": "t1", "address": "127.0.0.1", "port": )" +
                    std::to_string(target_port) + R"(, "state": "healthy"}]}]})";
  auto config = ParseConfig(doc);
  REQUIRE(config.ok());
  Options options;
  options.threads = 2;
  auto proxy = Proxy::Start(options);
  REQUIRE(proxy.ok());
  CHECK((*proxy)->AppliedVersion() == -1);
  (*proxy)->Apply(*config);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 3; }));

  int client = -1;
  REQUIRE(Eventually([&] { return (client = ConnectLoopback(listen_port)) >= 0; }));
  int accepted = accept(target_fd, nullptr, nullptr);  // the proxy connected to the target
  REQUIRE(accepted >= 0);
  CHECK(Eventually([&] { return (*proxy)->TargetInFlight("db", "t1").connections == 1; }));

  // The target leaves the configuration: it still counts while its connection lives.
  auto without = ParseConfig(R"({"version": 4})");
  REQUIRE(without.ok());
  (*proxy)->Apply(*without);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 4; }));
  CHECK((*proxy)->TargetInFlight("db", "t1").connections == 1);
  CHECK(ConnectLoopback(listen_port) < 0);  // its listener is closed

  // A half-close passes through and the splice lives on; it ends when both sides have.
  close(client);
  close(accepted);
  CHECK(Eventually([&] { return (*proxy)->TargetInFlight("db", "t1").connections == 0; }));
  (*proxy)->Stop(1000);
  close(target_fd);
}
