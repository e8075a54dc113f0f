// proxy/proxy: the Proxy object from outside its workers, as the agent will use
// it: Apply from another thread, the version applied, and a target's in-flight
// connections (what draining waits on), over real loopback sockets.
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "support/loopback.h"

using namespace berth;
using namespace berth::proxy;
using testing::ConnectLoopback;
using testing::Eventually;

TEST_CASE("proxy: Apply from another thread, the version applied, in-flight connections", "[proxy]") {
  int target_port = 0;
  int target_fd = testing::ListenLoopback(&target_port);
  int listen_port = testing::FreeLoopbackPort();
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

// A stop whose grace runs out cuts what is left, each connection with what it
// holds, and frees it: under ASan a connection left behind is a leaked loop.
TEST_CASE("proxy: a stop cuts and frees what its grace did not see end", "[proxy][stop]") {
  // A target that takes connections (the kernel accepts) and never answers.
  int mute_port = 0;
  int mute_fd = testing::ListenLoopback(&mute_port);
  // A target whose accept queue is full: a connection to it stays in SYN-SENT.
  int full_port = 0;
  int full_fd = testing::ListenLoopback(&full_port, 0);
  int filler = ConnectLoopback(full_port);
  REQUIRE(filler >= 0);

  int tcp_port = testing::FreeLoopbackPort(), syn_port = testing::FreeLoopbackPort();
  int http_port = testing::FreeLoopbackPort();
  auto target = [](const std::string& id, int port) {
    return R"({"id": ")" + id + R"(", "address": "127.0.0.1", "port": )" + std::to_string(port) +
           R"(, "state": "healthy"})";
  };
  auto listener = [](int port, const std::string& protocol, const std::string& group) {
    return R"({"address": "127.0.0.1", "port": )" + std::to_string(port) + R"(, "protocol": ")" + protocol +
           R"(", "defaultTargetGroup": ")" + group + R"("})";
  };
  std::string doc = R"({"version": 1, "listeners": [)" + listener(tcp_port, "TCP", "db") + ", " +
                    listener(syn_port, "TCP", "syn") + ", " + listener(http_port, "HTTP", "web") +
                    R"(], "targetGroups": [{"name": "db", "protocol": "TCP", "targets": [)" +
                    target("held", mute_port) + R"(]}, {"name": "syn", "protocol": "TCP", "targets": [)" +
                    target("connecting", full_port) + R"(]}, {"name": "web", "protocol": "HTTP", "targets": [)" +
                    target("silent", mute_port) + "]}]}";
  auto config = ParseConfig(doc);
  REQUIRE(config.ok());
  auto proxy = Proxy::Start(Options{});
  REQUIRE(proxy.ok());
  (*proxy)->Apply(*config);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 1; }));

  // A splice whose target holds it open, a splice still connecting, a request
  // its target never answers.
  int held = -1, connecting = -1, waiting = -1;
  REQUIRE(Eventually([&] { return (held = ConnectLoopback(tcp_port)) >= 0; }));
  REQUIRE((connecting = ConnectLoopback(syn_port)) >= 0);
  REQUIRE((waiting = ConnectLoopback(http_port)) >= 0);
  std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(send(waiting, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size()));
  CHECK(Eventually([&] { return (*proxy)->TargetInFlight("db", "held").connections == 1; }));
  CHECK(Eventually([&] { return (*proxy)->TargetInFlight("syn", "connecting").connections == 1; }));
  CHECK(Eventually([&] { return (*proxy)->TargetInFlight("web", "silent").requests == 1; }));

  CHECK((*proxy)->Stop(200) == 0);
  CHECK((*proxy)->TargetInFlight("db", "held").connections == 0);
  CHECK((*proxy)->TargetInFlight("syn", "connecting").connections == 0);
  CHECK((*proxy)->TargetInFlight("web", "silent").requests == 0);
  // Their clients are told: the connections are closed, not left hanging.
  for (int fd : {held, connecting, waiting}) {
    char byte;
    CHECK(recv(fd, &byte, 1, 0) <= 0);
    close(fd);
  }
  close(filler);
  close(full_fd);
  close(mute_fd);
}

// ---------------------------------------------------------------------------
// The PROXY protocol, to targets and from clients
// ---------------------------------------------------------------------------

namespace {

// Reads on `fd` give up after 10 s instead of hanging a broken test.
void BoundReads(int fd) {
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

// Reads until `n` bytes came (or the peer closed, or the bound passed).
std::string ReadBytes(int fd, size_t n) {
  BoundReads(fd);
  std::string out;
  char buf[4096];
  while (out.size() < n) {
    ssize_t got = recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// Reads until `marker` arrived (or the peer closed, or the bound passed).
std::string ReadUntil(int fd, const std::string& marker) {
  BoundReads(fd);
  std::string out;
  char buf[4096];
  while (out.find(marker) == std::string::npos) {
    ssize_t got = recv(fd, buf, sizeof(buf), 0);
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// Everything until the peer closes; "" when it closes at once.
std::string ReadToEnd(int fd) { return ReadUntil(fd, std::string(1, '\0') + "never"); }

void SendAll(int fd, const std::string& bytes) {
  REQUIRE(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

int LocalPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A proxy on one worker running `doc` (version 1).
std::unique_ptr<Proxy> StartWith(const std::string& doc) {
  auto config = ParseConfig(doc);
  INFO(doc);
  REQUIRE(config.ok());
  auto proxy = Proxy::Start(Options());
  REQUIRE(proxy.ok());
  (*proxy)->Apply(*config);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 1; }));
  return std::move(*proxy);
}

int Connect(int port) {
  int fd = -1;
  REQUIRE(Eventually([&] { return (fd = ConnectLoopback(port)) >= 0; }));
  return fd;
}

std::string ListenerJson(int port, const char* protocol, const char* group, const std::string& extra = "") {
  return R"({"port": )" + std::to_string(port) + R"(, "protocol": ")" + protocol +
         R"(", "address": "127.0.0.1", "defaultTargetGroup": ")" + group + "\"" + extra + "}";
}

std::string GroupJson(const char* name, const char* protocol, int target_port, const std::string& extra = "") {
  return R"({"name": ")" + std::string(name) + R"(", "protocol": ")" + protocol + "\"" + extra +
         R"(, "targets": [{"id": "t", "address": "127.0.0.1", "port": )" + std::to_string(target_port) +
         R"(, "state": "healthy"}]})";
}

// A v2 PROXY header for a TCP4 client `a.b.c.d:sport` that connected to 127.0.0.1:dport.
std::string V2From(std::initializer_list<int> ip, int sport, int dport) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += std::string("\x21\x11\x00\x0c", 4);
  for (int b : ip) h.push_back(static_cast<char>(b));
  h += std::string("\x7f\x00\x00\x01", 4);
  for (int p : {sport, dport}) {
    h.push_back(static_cast<char>(p >> 8));
    h.push_back(static_cast<char>(p & 0xff));
  }
  return h;
}

}  // namespace

TEST_CASE("proxy: a TCP group with proxyProtocol gets the client's address first", "[proxy][proxy-protocol]") {
  int t1_port = 0, t2_port = 0;
  int t1 = testing::ListenLoopback(&t1_port), t2 = testing::ListenLoopback(&t2_port);
  int l1 = testing::FreeLoopbackPort(), l2 = testing::FreeLoopbackPort();
  auto proxy = StartWith(R"({"version": 1, "listeners": [)" + ListenerJson(l1, "TCP", "one") + ", " +
                         ListenerJson(l2, "TCP", "two") + R"(], "targetGroups": [)" +
                         GroupJson("one", "TCP", t1_port, R"(, "proxyProtocol": "v1")") + ", " +
                         GroupJson("two", "TCP", t2_port, R"(, "proxyProtocol": "v2")") + "]}");

  int c1 = Connect(l1);
  SendAll(c1, "hello one");
  int a1 = accept(t1, nullptr, nullptr);
  REQUIRE(a1 >= 0);
  std::string want1 =
      "PROXY TCP4 127.0.0.1 127.0.0.1 " + std::to_string(LocalPort(c1)) + " " + std::to_string(l1) + "\r\nhello one";
  CHECK(ReadBytes(a1, want1.size()) == want1);
  SendAll(a1, "back");  // and the splice carries on both ways
  CHECK(ReadBytes(c1, 4) == "back");

  int c2 = Connect(l2);
  SendAll(c2, "hello two");
  int a2 = accept(t2, nullptr, nullptr);
  REQUIRE(a2 >= 0);
  std::string want2 = V2From({127, 0, 0, 1}, LocalPort(c2), l2) + "hello two";
  CHECK(ReadBytes(a2, want2.size()) == want2);

  for (int fd : {c1, a1, c2, a2, t1, t2}) close(fd);
  proxy->Stop(1000);
}

TEST_CASE("proxy: proxyProtocolFrom takes the client's address from its header", "[proxy][proxy-protocol]") {
  int target_port = 0, tcp_target_port = 0;
  int target = testing::ListenLoopback(&target_port), tcp_target = testing::ListenLoopback(&tcp_target_port);
  int http_port = testing::FreeLoopbackPort(), tcp_port = testing::FreeLoopbackPort();
  const std::string from = R"(, "proxyProtocolFrom": ["10.0.0.0/8", "127.0.0.1/32"])";
  auto proxy = StartWith(R"({"version": 1, "listeners": [)" + ListenerJson(http_port, "HTTP", "web", from) + ", " +
                         ListenerJson(tcp_port, "TCP", "tcp", from) + R"(], "targetGroups": [)" +
                         GroupJson("web", "HTTP", target_port) + ", " +
                         GroupJson("tcp", "TCP", tcp_target_port, R"(, "proxyProtocol": "v1")") + "]}");

  SECTION("a v2 header's source is the X-Forwarded-For an HTTP target sees") {
    int c = Connect(http_port);
    // The header and the request in one write: the request must not be lost.
    SendAll(c, V2From({203, 0, 113, 7}, 40000, http_port) + "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    int a = accept(target, nullptr, nullptr);
    REQUIRE(a >= 0);
    std::string head = ReadUntil(a, "\r\n\r\n");
    CHECK(head.rfind("GET /x HTTP/1.1\r\n", 0) == 0);
    CHECK(head.find("\r\nX-Forwarded-For: 203.0.113.7\r\n") != std::string::npos);
    SendAll(a, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK(ReadUntil(c, "\r\n\r\nok").rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    close(a);
    close(c);
  }

  SECTION("a v1 header, then bytes, on a TCP listener: its source goes on in the header to the target") {
    int c = Connect(tcp_port);
    SendAll(c, "PROXY TCP4 198.51.100.9 127.0.0.1 4321 " + std::to_string(tcp_port) + "\r\nsplice me");
    int a = accept(tcp_target, nullptr, nullptr);
    REQUIRE(a >= 0);
    std::string want = "PROXY TCP4 198.51.100.9 127.0.0.1 4321 " + std::to_string(tcp_port) + "\r\nsplice me";
    CHECK(ReadBytes(a, want.size()) == want);
    close(a);
    close(c);
  }

  SECTION("v1 UNKNOWN keeps the peer's own address") {
    int c = Connect(http_port);
    SendAll(c, "PROXY UNKNOWN\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    int a = accept(target, nullptr, nullptr);
    REQUIRE(a >= 0);
    CHECK(ReadUntil(a, "\r\n\r\n").find("\r\nX-Forwarded-For: 127.0.0.1\r\n") != std::string::npos);
    close(a);
    close(c);
  }

  SECTION("a trusted client without a header is closed without an answer") {
    int c = Connect(http_port);
    SendAll(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(ReadToEnd(c).empty());
    close(c);
    int t = Connect(tcp_port);
    SendAll(t, "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n");
    CHECK(ReadToEnd(t).empty());
    close(t);
  }

  close(target);
  close(tcp_target);
  proxy->Stop(1000);
}

TEST_CASE("proxy: a peer outside proxyProtocolFrom is passed through untouched", "[proxy][proxy-protocol]") {
  int target_port = 0;
  int target = testing::ListenLoopback(&target_port);
  int port = testing::FreeLoopbackPort();
  auto proxy = StartWith(R"({"version": 1, "listeners": [)" +
                         ListenerJson(port, "TCP", "tcp", R"(, "proxyProtocolFrom": ["10.0.0.0/8"])") +
                         R"(], "targetGroups": [)" + GroupJson("tcp", "TCP", target_port) + "]}");
  int c = Connect(port);
  // Bytes that look like a header are the client's own: they reach the target as sent.
  std::string bytes = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nand the rest";
  SendAll(c, bytes);
  int a = accept(target, nullptr, nullptr);
  REQUIRE(a >= 0);
  CHECK(ReadBytes(a, bytes.size()) == bytes);
  close(a);
  close(c);
  close(target);
  proxy->Stop(1000);
}
