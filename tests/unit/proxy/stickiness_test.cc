// proxy stickiness: lb_cookie HTTP groups and source_ip TCP groups through a
// real Proxy, with real targets on 127.0.0.1 that answer with their name.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "proxy/balance.h"
#include "proxy/proxy.h"
#include "support/loopback.h"
#include "support/named_target.h"

using namespace berth;
using namespace berth::proxy;
using testing::Eventually;

namespace {

void BoundReads(int fd) {
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

// A connection to 127.0.0.1:port from `source` (another loopback address), -1 if refused.
int ConnectFrom(const char* source, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, source, &a.sin_addr);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  BoundReads(fd);
  return fd;
}

std::string ReadToEnd(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

struct Answer {
  std::string body;        // the target's name
  std::string set_cookie;  // the Set-Cookie header's value, if any
};

// One GET through the proxy on a connection of its own, with `cookies`: header lines to add.
Answer Get(int port, const std::string& cookies = "") {
  int fd = -1;
  REQUIRE(Eventually([&] { return (fd = ConnectFrom("127.0.0.1", port)) >= 0; }));
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\n" + cookies + "Connection: close\r\n\r\n";
  REQUIRE(send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  std::string text = ReadToEnd(fd);
  close(fd);
  INFO(text);
  REQUIRE(text.starts_with("HTTP/1.1 200 "));
  Answer a;
  size_t head = text.find("\r\n\r\n");
  REQUIRE(head != std::string::npos);
  a.body = text.substr(head + 4);
  size_t at = text.find("\r\nSet-Cookie: ");
  if (at != std::string::npos && at < head) a.set_cookie = text.substr(at + 14, text.find("\r\n", at + 2) - at - 14);
  return a;
}

std::string TargetJson(const char* id, int port, const char* state) {
  return R"({"id": ")" + std::string(id) + R"(", "address": "127.0.0.1", "port": )" + std::to_string(port) +
         R"(, "state": ")" + state + "\"}";
}

// A document with one listener on `listen` and group "web" of `protocol` with `targets`.
std::string Doc(int version, int listen, const char* protocol, const std::string& stickiness,
                const std::vector<std::string>& targets) {
  std::string t;
  for (const std::string& x : targets) t += (t.empty() ? "" : ", ") + x;
  return R"({"version": )" + std::to_string(version) + R"(, "listeners": [{"port": )" + std::to_string(listen) +
         R"(, "protocol": ")" + protocol + R"(", "address": "127.0.0.1", "defaultTargetGroup": "web"}],
      "targetGroups": [{"name": "web", "protocol": ")" +
         protocol + R"(", "algorithm": "round_robin", "stickiness": )" + stickiness + R"(, "targets": [)" + t + "]}]}";
}

void ApplyDoc(Proxy* proxy, const std::string& doc, int version) {
  auto config = ParseConfig(doc);
  INFO(doc);
  REQUIRE(config.ok());
  proxy->Apply(*config);
  REQUIRE(Eventually([&] { return proxy->AppliedVersion() == version; }));
}

std::string CookieFor(const char* target) {
  return std::string(kStickyCookie) + "=" + StickyToken("web", target) + "; Max-Age=3600; Path=/";
}

}  // namespace

TEST_CASE("proxy stickiness: the cookie pins a client to its target, clients without one spread",
          "[proxy][stickiness]") {
  testing::NamedTarget a("a", true), b("b", true), c("c", true);
  int listen = testing::FreeLoopbackPort();
  const char* sticky = R"({"type": "lb_cookie", "durationSeconds": 3600})";
  Options options;
  options.threads = 2;  // the token must mean the same target on every worker (and every edge)
  auto proxy = Proxy::Start(options);
  REQUIRE(proxy.ok());
  ApplyDoc(proxy->get(),
           Doc(1, listen, "HTTP", sticky,
               {TargetJson("a", a.port(), "healthy"), TargetJson("b", b.port(), "healthy"),
                TargetJson("c", c.port(), "healthy")}),
           1);

  // Without a cookie: balanced as usual, and told where it went.
  Answer first = Get(listen);
  REQUIRE((first.body == "a" || first.body == "b" || first.body == "c"));
  CHECK(first.set_cookie == CookieFor(first.body.c_str()));
  std::string token = StickyToken("web", first.body);

  // With it: the same target every time, among other cookies and Cookie headers, and no new cookie.
  for (int i = 0; i < 30; i++) {
    std::string cookies = i % 3 == 0 ? "Cookie: BERTHLB=" + token + "\r\n"
                          : i % 3 == 1
                              ? "Cookie: session=x; theme=dark\r\nCookie:  lang=en ;BERTHLB=" + token + " ; z=1\r\n"
                              : "Cookie: BERTHLBX=nope; BERTHLB=\"" + token + "\"\r\n";
    Answer again = Get(listen, cookies);
    CHECK(again.body == first.body);
    CHECK(again.set_cookie.empty());
  }

  // Another client with no cookie spreads over all three, each answer with its target's cookie.
  std::set<std::string> seen;
  for (int i = 0; i < 30; i++) {
    Answer other = Get(listen);
    seen.insert(other.body);
    CHECK(other.set_cookie == CookieFor(other.body.c_str()));
  }
  CHECK(seen.size() == 3);
  (*proxy)->Stop(1000);
}

TEST_CASE("proxy stickiness: a cookie for a target not healthy, gone or unknown re-balances and sets a new one",
          "[proxy][stickiness]") {
  testing::NamedTarget a("a", true), b("b", true);
  int listen = testing::FreeLoopbackPort();
  const char* sticky = R"({"type": "lb_cookie"})";
  auto proxy = Proxy::Start(Options());
  REQUIRE(proxy.ok());
  ApplyDoc(proxy->get(),
           Doc(1, listen, "HTTP", sticky, {TargetJson("a", a.port(), "healthy"), TargetJson("b", b.port(), "healthy")}),
           1);
  std::string to_a = "Cookie: BERTHLB=" + StickyToken("web", "a") + "\r\n";
  Answer pinned = Get(listen, to_a);
  CHECK(pinned.body == "a");
  CHECK(pinned.set_cookie.empty());

  int version = 1;
  for (const char* state : {"draining", "unhealthy", "initial", "removed"}) {
    INFO(state);
    std::vector<std::string> targets = {TargetJson("b", b.port(), "healthy")};
    if (std::string(state) != "removed") targets.push_back(TargetJson("a", a.port(), state));
    version++;
    ApplyDoc(proxy->get(), Doc(version, listen, "HTTP", sticky, targets), version);
    for (int i = 0; i < 5; i++) {
      Answer moved = Get(listen, to_a);
      CHECK(moved.body == "b");
      CHECK(moved.set_cookie == std::string(kStickyCookie) + "=" + StickyToken("web", "b") + "; Max-Age=86400; Path=/");
    }
  }

  // A token of no target (forged, or of another group) is balanced over like no cookie.
  for (const std::string& junk : {StickyToken("other", "b"), std::string("zz"), std::string(300, 'f')}) {
    Answer fresh = Get(listen, "Cookie: BERTHLB=" + junk + "\r\n");
    CHECK(fresh.body == "b");
    CHECK_FALSE(fresh.set_cookie.empty());
  }

  // Healthy again: the old cookie is honoured again.
  version++;
  ApplyDoc(proxy->get(),
           Doc(version, listen, "HTTP", sticky,
               {TargetJson("a", a.port(), "healthy"), TargetJson("b", b.port(), "healthy")}),
           version);
  CHECK(Get(listen, to_a).body == "a");
  (*proxy)->Stop(1000);
}

TEST_CASE("proxy stickiness: a source_ip TCP group keeps each client address on one target", "[proxy][stickiness]") {
  testing::NamedTarget a("a", false), b("b", false), c("c", false);
  int listen = testing::FreeLoopbackPort();
  auto proxy = Proxy::Start(Options());
  REQUIRE(proxy.ok());
  ApplyDoc(proxy->get(),
           Doc(1, listen, "TCP", R"({"type": "source_ip"})",
               {TargetJson("a", a.port(), "healthy"), TargetJson("b", b.port(), "healthy"),
                TargetJson("c", c.port(), "healthy")}),
           1);
  std::map<std::string, std::string> first;  // client address → target
  std::set<std::string> used;
  for (int round = 0; round < 3; round++) {
    for (int host = 1; host <= 12; host++) {
      std::string source = "127.0.0." + std::to_string(host);
      int fd = -1;
      REQUIRE(Eventually([&] { return (fd = ConnectFrom(source.c_str(), listen)) >= 0; }));
      std::string name = ReadToEnd(fd);
      close(fd);
      INFO(source);
      // The target rendezvous hashing names, on every connection.
      CHECK(name == std::string(1, "abc"[ChooseByHash(source, {"a", "b", "c"})]));
      if (round == 0) first[source] = name;
      CHECK(first[source] == name);
      used.insert(name);
    }
  }
  CHECK(used.size() > 1);  // twelve addresses do not all hash to one target
  (*proxy)->Stop(1000);
}
