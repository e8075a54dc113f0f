// proxy/balance: rule matching, each balancer on a seeded generator, the
// ejection cap on a manual clock, and the retry budget.
#include "proxy/balance.h"

#include <catch2/catch.hpp>
#include <map>

#include "base/clock.h"
#include "proxy/config.h"

using namespace berth;
using namespace berth::proxy;

TEST_CASE("proxy rules: hosts, paths, priority and the default", "[proxy]") {
  CHECK(HostMatches("*.example.com", "API.Example.com"));
  CHECK_FALSE(HostMatches("*.example.com", ".example.com"));  // `*` takes at least one character
  CHECK_FALSE(HostMatches("*.example.com", "example.com"));
  CHECK(HostMatches("api.example.com", "api.example.com"));
  CHECK(PathMatches("/v1/*", "/v1/"));
  CHECK(PathMatches("/v1/*", "/v1/users/7"));
  CHECK_FALSE(PathMatches("/v1/*", "/v2/users"));
  CHECK(PathMatches("/img/?.png", "/img/a.png"));
  CHECK_FALSE(PathMatches("/img/?.png", "/img/ab.png"));
  CHECK_FALSE(PathMatches("/A", "/a"));  // paths are case-sensitive
  CHECK(HostWithoutPort("a.example.com:8080") == "a.example.com");
  CHECK(HostWithoutPort("[::1]:80") == "[::1]");

  auto c = ParseConfig(R"({"version": 1,
    "listeners": [{"port": 80, "protocol": "HTTP", "defaultTargetGroup": "web", "rules": [
      {"priority": 20, "paths": ["/v1/*"], "targetGroup": "v1"},
      {"priority": 10, "hosts": ["api.example.com"], "paths": ["/v1/*", "/v2/*"], "targetGroup": "api"}]}],
    "targetGroups": [{"name": "web", "protocol": "HTTP"}, {"name": "api", "protocol": "HTTP"},
                     {"name": "v1", "protocol": "HTTP"}]})");
  REQUIRE(c.ok());
  const Listener& l = c->listeners[0];
  CHECK(MatchGroup(l, "api.example.com:80", "/v1/x") == "api");  // priority 10 before 20
  CHECK(MatchGroup(l, "www.example.com", "/v1/x") == "v1");
  CHECK(MatchGroup(l, "api.example.com", "/v3/x") == "web");
  CHECK(MatchGroup(l, "", "/") == "web");
}

TEST_CASE("proxy balancers: two random choices prefer the less loaded", "[proxy]") {
  std::mt19937 rng(42);
  uint64_t cursor = 0;
  std::vector<Load> loads = {{5, 0}, {0, 0}, {9, 0}};
  std::map<size_t, int> picks;
  for (int i = 0; i < 3000; i++) picks[Choose(Algorithm::kLeastOutstandingRequests, loads, rng, &cursor)]++;
  // The busiest target loses every pair it is in; the idlest wins every pair it is in.
  CHECK(picks[2] == 0);
  CHECK(picks[1] > picks[0]);
  CHECK(picks[1] > 1500);  // in two of three pairs
}

TEST_CASE("proxy balancers: round robin takes each in turn", "[proxy]") {
  std::mt19937 rng(1);
  uint64_t cursor = 0;
  std::vector<Load> loads(3);
  std::vector<size_t> order;
  for (int i = 0; i < 6; i++) order.push_back(Choose(Algorithm::kRoundRobin, loads, rng, &cursor));
  CHECK(order == std::vector<size_t>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("proxy balancers: least connections, ties spread", "[proxy]") {
  std::mt19937 rng(1);
  uint64_t cursor = 0;
  std::vector<Load> loads = {{0, 3}, {0, 1}, {0, 2}};
  CHECK(Choose(Algorithm::kLeastConnections, loads, rng, &cursor) == 1);
  loads = {{0, 1}, {0, 1}, {0, 5}};
  size_t first = Choose(Algorithm::kLeastConnections, loads, rng, &cursor);
  size_t second = Choose(Algorithm::kLeastConnections, loads, rng, &cursor);
  CHECK(first != second);
  CHECK(first != 2);
  CHECK(second != 2);
}

TEST_CASE("proxy balancers: a target in slow start takes a share that grows to a whole one", "[proxy]") {
  CHECK(SlowStartWeight(0, 0) == 1.0);  // no slow start
  CHECK(SlowStartWeight(0, 30000) == Approx(0.1));
  CHECK(SlowStartWeight(15000, 30000) == Approx(0.55));
  CHECK(SlowStartWeight(30000, 30000) == 1.0);
  CHECK(SlowStartWeight(-5, 30000) == Approx(0.1));  // a clock read before the start

  // Two idle targets, one new at a tenth of its weight: each algorithm sends it
  // about a tenth of what the other gets, and more as its weight grows.
  auto share_of_new = [](Algorithm algorithm, double weight) {
    std::mt19937 rng(7);
    uint64_t cursor = 0;
    std::vector<Load> loads = {{0, 0, 1.0}, {0, 0, weight}};
    int to_new = 0;
    for (int i = 0; i < 10000; i++) {
      size_t k = Choose(algorithm, loads, rng, &cursor);
      to_new += k == 1;
      // Least outstanding and least connections see the load they make.
      if (algorithm != Algorithm::kRoundRobin) {
        loads[k].outstanding++;
        loads[k].connections++;
      }
    }
    return to_new / 10000.0;
  };
  for (Algorithm a : {Algorithm::kLeastOutstandingRequests, Algorithm::kLeastConnections, Algorithm::kRoundRobin}) {
    CAPTURE(static_cast<int>(a));
    double tenth = share_of_new(a, 0.1), half = share_of_new(a, 0.5), whole = share_of_new(a, 1.0);
    CHECK(tenth == Approx(0.1 / 1.1).margin(0.03));
    CHECK(half == Approx(0.5 / 1.5).margin(0.03));
    CHECK(whole == Approx(0.5).margin(0.03));
  }
}

TEST_CASE("proxy ejection: growing spans, reset by success", "[proxy]") {
  ManualClock clock;
  auto now = [&] { return clock.MonotonicNs() / 1000000; };
  EjectionPolicy policy{3, 1000, 4000};
  Ejection e;
  CHECK_FALSE(e.Fail(now(), 0, 4, policy));
  CHECK_FALSE(e.Fail(now(), 0, 4, policy));
  CHECK(e.Fail(now(), 0, 4, policy));  // the third in a row
  CHECK(e.Ejected(now()));
  clock.Advance(999);
  CHECK(e.Ejected(now()));
  clock.Advance(1);
  CHECK_FALSE(e.Ejected(now()));
  for (int i = 0; i < 2; i++) CHECK_FALSE(e.Fail(now(), 0, 4, policy));
  CHECK(e.Fail(now(), 0, 4, policy));
  clock.Advance(1999);
  CHECK(e.Ejected(now()));  // doubled: 2 s
  clock.Advance(1);
  CHECK_FALSE(e.Ejected(now()));
  for (int i = 0; i < 3; i++) (void)e.Fail(now(), 0, 4, policy);
  clock.Advance(3999);
  CHECK(e.Ejected(now()));  // 4 s, the cap
  clock.Advance(1);
  for (int i = 0; i < 3; i++) (void)e.Fail(now(), 0, 4, policy);
  clock.Advance(3999);
  CHECK(e.Ejected(now()));  // still 4 s
  clock.Advance(1);
  e.Succeed();
  for (int i = 0; i < 3; i++) (void)e.Fail(now(), 0, 4, policy);
  clock.Advance(999);
  CHECK(e.Ejected(now()));  // back to 1 s after a success
  clock.Advance(1);
  CHECK_FALSE(e.Ejected(now()));
}

TEST_CASE("proxy ejection: never more than half of a group", "[proxy]") {
  ManualClock clock;
  EjectionPolicy policy{1, 1000, 30000};
  Ejection a, b, c;
  CHECK(a.Fail(0, 0, 4, policy));        // 1 of 4
  CHECK(b.Fail(0, 1, 4, policy));        // 2 of 4
  CHECK_FALSE(c.Fail(0, 2, 4, policy));  // 3 of 4: refused
  CHECK_FALSE(c.Ejected(0));
  Ejection single;
  CHECK_FALSE(single.Fail(0, 0, 1, policy));  // a group of one keeps its only target
  Ejection pair;
  CHECK(pair.Fail(0, 0, 2, policy));
}

TEST_CASE("proxy retries: twice at most, only when the request can be replayed", "[proxy]") {
  Attempts a;
  CHECK_FALSE(a.MayRetry(true));  // nothing tried yet
  a.Tried(0);
  CHECK(a.MayRetry(true));
  CHECK_FALSE(a.MayRetry(false));  // a body already streamed cannot be sent again
  a.Tried(1);
  CHECK(a.MayRetry(true));
  a.Tried(2);
  CHECK_FALSE(a.MayRetry(true));  // three attempts: the first and two retries
  CHECK(a.WasTried(1));
  CHECK_FALSE(a.WasTried(3));
}

TEST_CASE("proxy stickiness: tokens are stable, opaque and per group and target", "[proxy][stickiness]") {
  std::string t = StickyToken("web", "task-1");
  CHECK(t.size() == 32);
  CHECK(t.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(t == StickyToken("web", "task-1"));  // the same on every proxy
  CHECK(t != StickyToken("web", "task-2"));
  CHECK(t != StickyToken("api", "task-1"));
}

TEST_CASE("proxy stickiness: the cookie's value among others", "[proxy][stickiness]") {
  CHECK(CookieValue("BERTHLB=abc", "BERTHLB") == "abc");
  CHECK(CookieValue("a=1; BERTHLB=abc; b=2", "BERTHLB") == "abc");
  CHECK(CookieValue("  a=1 ;BERTHLB = abc ;", "BERTHLB") == "abc");
  CHECK(CookieValue("BERTHLB=\"abc\"", "BERTHLB") == "abc");
  CHECK(CookieValue("XBERTHLB=abc; BERTHLBX=def", "BERTHLB").empty());
  CHECK(CookieValue("berthlb=abc", "BERTHLB").empty());  // cookie names are case-sensitive
  CHECK(CookieValue("", "BERTHLB").empty());
  CHECK(CookieValue(";;;=;BERTHLB", "BERTHLB").empty());
  CHECK(CookieValue("BERTHLB=" + std::string(1000, 'f'), "BERTHLB").size() == 64);  // bounded
  std::string many;
  for (int i = 0; i < 100; i++) many += "c" + std::to_string(i) + "=x; ";
  CHECK(CookieValue(many + "BERTHLB=abc", "BERTHLB").empty());  // past the 64 pairs looked at
}

TEST_CASE("proxy stickiness: rendezvous hashing moves only the clients of a target that leaves",
          "[proxy][stickiness]") {
  std::vector<std::string_view> four = {"a", "b", "c", "d"};
  std::vector<std::string_view> three = {"a", "b", "d"};  // "c" left
  std::map<std::string_view, int> share;
  int moved = 0;
  for (int i = 0; i < 2000; i++) {
    std::string client = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    std::string_view before = four[ChooseByHash(client, four)];
    std::string_view after = three[ChooseByHash(client, three)];
    share[before]++;
    CHECK(ChooseByHash(client, four) == ChooseByHash(client, four));
    if (before != "c") CHECK(after == before);
    if (before != after) moved++;
  }
  CHECK(moved == share["c"]);
  for (std::string_view id : four) CHECK(share[id] > 350);  // about 500 each
}
