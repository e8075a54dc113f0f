// proxy metrics: Proxy::RenderMetrics after real traffic through a Proxy of two
// workers to real targets on 127.0.0.1 — counts summed over workers, the
// proxy's own answers apart, series of what leaves the configuration gone.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "proxy/proxy.h"
#include "support/loopback.h"
#include "support/metrics_text.h"
#include "support/named_target.h"

using namespace berth;
using namespace berth::proxy;
using testing::ConnectLoopback;
using testing::Eventually;

namespace {

// One GET on a connection of its own; the status line.
std::string Get(int port, const char* host) {
  int fd = -1;
  REQUIRE(Eventually([&] { return (fd = ConnectLoopback(port)) >= 0; }));
  std::string req = std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\nConnection: close\r\n\r\n";
  REQUIRE(send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) text.append(buf, static_cast<size_t>(n));
  close(fd);
  return text.substr(0, text.find("\r\n"));
}

std::string TargetJson(const char* id, int port, const char* state = "healthy") {
  return R"({"id": ")" + std::string(id) + R"(", "address": "127.0.0.1", "port": )" + std::to_string(port) +
         R"(, "state": ")" + state + "\"}";
}

}  // namespace

TEST_CASE("proxy metrics: per listener, group and target, summed over workers", "[proxy][metrics]") {
  testing::NamedTarget a("a", true), b("b", true, 404);
  int listen = testing::FreeLoopbackPort();
  std::string groups = R"("targetGroups": [
      {"name": "web", "protocol": "HTTP", "targets": [)" +
                       TargetJson("a", a.port()) + R"(]},
      {"name": "api", "protocol": "HTTP", "targets": [)" +
                       TargetJson("b", b.port()) + R"(]},
      {"name": "empty", "protocol": "HTTP", "targets": [)" +
                       TargetJson("z", b.port(), "unhealthy") + "]}]";
  std::string doc = R"({"version": 1, "listeners": [{"port": )" + std::to_string(listen) +
                    R"(, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": "web", "rules": [
        {"priority": 1, "hosts": ["api"], "targetGroup": "api"},
        {"priority": 2, "hosts": ["empty"], "targetGroup": "empty"}]}], )" +
                    groups + "}";
  auto config = ParseConfig(doc);
  REQUIRE(config.ok());
  Options options;
  options.threads = 2;
  auto proxy = Proxy::Start(options);
  REQUIRE(proxy.ok());
  (*proxy)->Apply(*config);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 1; }));

  for (int i = 0; i < 10; i++) CHECK(Get(listen, "www").starts_with("HTTP/1.1 200"));
  for (int i = 0; i < 3; i++) CHECK(Get(listen, "api").starts_with("HTTP/1.1 404"));
  for (int i = 0; i < 2; i++) CHECK(Get(listen, "empty").starts_with("HTTP/1.1 503"));

  std::string m;
  // Connections count down once the workers have closed them.
  REQUIRE(Eventually([&] {
    m.clear();
    (*proxy)->RenderMetrics(&m);
    return testing::MetricValue(m, R"(berth_proxy_connections_active{listener="127.0.0.1:)" + std::to_string(listen) +
                                       R"(/HTTP"})") == 0;
  }));
  INFO(m);
  std::string l = R"({listener="127.0.0.1:)" + std::to_string(listen) + R"(/HTTP"})";
  CHECK(testing::MetricValue(m, "berth_proxy_connections_accepted_total" + l) == 15);
  CHECK(testing::MetricValue(m, "berth_proxy_requests_total" + l) == 15);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_responses_total{target_group="web",target="a",class="2xx"})") ==
        10);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_responses_total{target_group="web",target="a",class="5xx"})") ==
        0);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_responses_total{target_group="api",target="b",class="4xx"})") ==
        3);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_responses_total{target_group="api",target="b",class="2xx"})") ==
        0);
  CHECK(testing::MetricValue(m, R"(berth_proxy_local_responses_total{target_group="empty",code="503"})") == 2);
  CHECK(testing::MetricValue(m, R"(berth_proxy_local_responses_total{target_group="web",code="503"})") == 0);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_response_seconds_count{target_group="web"})") == 10);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_response_seconds_bucket{target_group="web",le="+Inf"})") == 10);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_bytes_in_total{target_group="web",target="a"})") ==
        10 * 38);  // "HTTP/1.1 200 X", Content-Length: 1, "a"
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_bytes_out_total{target_group="web",target="a"})") > 10 * 16);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_connect_failures_total{target_group="web",target="a"})") == 0);
  CHECK(m.find("# TYPE berth_proxy_target_response_seconds histogram\n") != std::string::npos);

  // A target that cannot be reached: a connect failure, a retry, counted on it and its group.
  int dead = testing::FreeLoopbackPort();
  auto two = ParseConfig(R"({"version": 2, "listeners": [{"port": )" + std::to_string(listen) +
                         R"(, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": "web"}],
      "targetGroups": [{"name": "web", "protocol": "HTTP", "algorithm": "round_robin", "targets": [)" +
                         TargetJson("a", a.port()) + ", " + TargetJson("dead", dead) + "]}]}");
  REQUIRE(two.ok());
  (*proxy)->Apply(*two);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 2; }));
  for (int i = 0; i < 4; i++) CHECK(Get(listen, "www").starts_with("HTTP/1.1 200"));
  m.clear();
  (*proxy)->RenderMetrics(&m);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_responses_total{target_group="web",target="a",class="2xx"})") ==
        14);
  double failures =
      testing::MetricValue(m, R"(berth_proxy_target_connect_failures_total{target_group="web",target="dead"})");
  CHECK(failures >= 1);
  CHECK(testing::MetricValue(m, R"(berth_proxy_target_retries_total{target_group="web",target="dead"})") == failures);
  CHECK(testing::MetricValue(m, R"(berth_proxy_group_retries_total{target_group="web"})") == failures);
  // Gone from the configuration: gone from the metrics.
  CHECK(m.find(R"(target_group="api")") == std::string::npos);
  CHECK(m.find(R"(target_group="empty")") == std::string::npos);

  auto three = ParseConfig(R"({"version": 3})");
  REQUIRE(three.ok());
  (*proxy)->Apply(*three);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 3; }));
  m.clear();
  (*proxy)->RenderMetrics(&m);
  CHECK(m.find("target_group=") == std::string::npos);
  CHECK(m.find("listener=") == std::string::npos);
  (*proxy)->Stop(1000);
}

// Rolling deploys bring targets on new host ports all the time: what the
// workers keep per target (load, ejection, pooled connections) must go with
// the targets, or it grows without end.
TEST_CASE("proxy metrics: targets gone from the configuration are forgotten once idle", "[proxy][metrics]") {
  testing::NamedTarget a("a", true);
  int listen = testing::FreeLoopbackPort();
  Options options;
  options.threads = 2;
  auto proxy = Proxy::Start(options);
  REQUIRE(proxy.ok());
  auto tracked = [&] {
    std::string m;
    (*proxy)->RenderMetrics(&m);
    return testing::MetricValue(m, "berth_proxy_targets_tracked");
  };
  // Thirty versions, each with the live target and one more on a port of its
  // own (nothing answers there; it never takes a request).
  for (int v = 1; v <= 30; v++) {
    std::string doc = R"({"version": )" + std::to_string(v) + R"(, "listeners": [{"port": )" + std::to_string(listen) +
                      R"(, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": "web"}],
        "targetGroups": [{"name": "web", "protocol": "HTTP", "targets": [)" +
                      TargetJson("a", a.port()) + ", " + TargetJson("gone", 1 + v) + "]}]}";
    auto config = ParseConfig(doc);
    REQUIRE(config.ok());
    (*proxy)->Apply(*config);
    REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == v; }));
  }
  // A pooled connection to a (kept-alive) target that then leaves: its pool goes with it.
  auto only_a = ParseConfig(R"({"version": 31, "listeners": [{"port": )" + std::to_string(listen) +
                            R"(, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": "web"}],
        "targetGroups": [{"name": "web", "protocol": "HTTP", "targets": [)" +
                            TargetJson("a", a.port()) + "]}]}");
  REQUIRE(only_a.ok());
  (*proxy)->Apply(*only_a);
  REQUIRE(Eventually([&] { return (*proxy)->AppliedVersion() == 31; }));
  CHECK(Get(listen, "www").starts_with("HTTP/1.1 200"));
  // Each worker keeps only the target listed now (the sweep runs once a second).
  CHECK(Eventually([&] { return tracked() <= 2; }));
  auto none = ParseConfig(R"({"version": 32, "listeners": [{"port": )" + std::to_string(listen) +
                          R"(, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": "web"}],
        "targetGroups": [{"name": "web", "protocol": "HTTP", "targets": []}]})");
  REQUIRE(none.ok());
  (*proxy)->Apply(*none);
  CHECK(Eventually([&] { return tracked() == 0; }));
  (*proxy)->Stop(1000);
}
