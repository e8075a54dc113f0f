// proxy/udp: UDP listeners over real loopback sockets: a flow per client,
// replies to the right client, idle expiry, the bound on flows, draining and
// removed targets, no healthy target.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "proxy/proxy.h"
#include "support/loopback.h"
#include "support/metrics_text.h"

using namespace berth;
using namespace berth::proxy;
using testing::Eventually;

namespace {

// A UDP target on 127.0.0.1: answers each datagram with its name, ":" and the
// datagram (a datagram over 1,000 bytes comes back as it is, to stay a
// datagram), and notes the source ports it heard from.
class EchoTarget {
 public:
  explicit EchoTarget(std::string name) : name_(std::move(name)) {
    fd_ = testing::BindLoopbackUdp(&port_);
    thread_ = std::thread([this] { Run(); });
  }
  ~EchoTarget() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  std::set<int> sources() {
    std::lock_guard<std::mutex> lock(mu_);
    return sources_;
  }

 private:
  void Run() {
    std::string buf(70000, '\0');
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof(from);
      ssize_t n = recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        sources_.insert(ntohs(from.sin_port));
      }
      std::string got(buf.data(), static_cast<size_t>(n));
      std::string reply = got.size() > 1000 ? got : name_ + ":" + got;
      sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }

  std::string name_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<int> sources_;
  std::thread thread_;
};

// A UDP client socket on 127.0.0.1.
class Client {
 public:
  Client() {
    int port = 0;
    fd_ = testing::BindLoopbackUdp(&port);
  }
  ~Client() { close(fd_); }
  void Send(int port, const std::string& data) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    REQUIRE(sendto(fd_, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) ==
            static_cast<ssize_t>(data.size()));
  }
  // The next datagram within `wait_ms`, or nullopt.
  std::optional<std::string> Receive(int wait_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, wait_ms) <= 0) return std::nullopt;
    std::string buf(70000, '\0');
    ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
  // Sends and waits up to 10 s for the answer (a bound, not a claim of speed).
  std::string Ask(int port, const std::string& data) {
    Send(port, data);
    return Receive(10000).value_or("(no answer)");
  }

 private:
  int fd_ = -1;
};

std::string TargetJson(const std::string& id, int port, const std::string& state) {
  return R"({"id": ")" + id + R"(", "address": "127.0.0.1", "port": )" + std::to_string(port) + R"(, "state": ")" +
         state + R"("})";
}

// A document with one UDP listener on `port` to the group "dns" of `targets`.
Config UdpDoc(int version, int port, const std::string& targets, const std::string& extra_listeners = "",
              const std::string& extra_groups = "") {
  std::string doc = R"({"version": )" + std::to_string(version) + R"(, "listeners": [{"port": )" +
                    std::to_string(port) + R"(, "protocol": "UDP", "address": "127.0.0.1",
      "defaultTargetGroup": "dns"})" +
                    extra_listeners + R"(], "targetGroups": [{"name": "dns", "protocol": "UDP", "targets": [)" +
                    targets + "]}" + extra_groups + "]}";
  auto config = ParseConfig(doc);
  REQUIRE(config.ok());
  return *config;
}

struct Running {
  std::unique_ptr<Proxy> proxy;
  void Apply(const Config& c) {
    proxy->Apply(c);
    REQUIRE(Eventually([&] { return proxy->AppliedVersion() == c.version; }));
  }
  int64_t Flows(const std::string& target) const { return proxy->TargetInFlight("dns", target).connections; }
};

Running Start(const Limits& limits) {
  Options options;
  options.threads = 1;  // one worker: the bounds below are per worker
  options.limits = limits;
  auto p = Proxy::Start(options);
  REQUIRE(p.ok());
  return Running{std::move(*p)};
}

}  // namespace

TEST_CASE("proxy udp: each client its own flow, replies to their own client", "[proxy][udp]") {
  EchoTarget a("a"), b("b");
  int tcp_target_port = 0;
  int tcp_target = testing::ListenLoopback(&tcp_target_port);
  int port = testing::FreeLoopbackPort();
  Running r = Start(Limits{});
  // A TCP listener on the same port number: UDP is a port family of its own.
  r.Apply(UdpDoc(
      1, port, TargetJson("a", a.port(), "healthy") + "," + TargetJson("b", b.port(), "healthy"),
      R"(, {"port": )" + std::to_string(port) +
          R"(, "protocol": "TCP", "address": "127.0.0.1", "defaultTargetGroup": "db"})",
      R"(, {"name": "db", "protocol": "TCP", "targets": [)" + TargetJson("d", tcp_target_port, "healthy") + "]}"));

  Client one, two;
  std::string first = one.Ask(port, "one");
  std::string second = two.Ask(port, "two");
  // Least connections (the default): the second client's flow goes to the other target.
  REQUIRE((first == "a:one" || first == "b:one"));
  std::string one_target = first.substr(0, 1);
  std::string two_target = one_target == "a" ? "b" : "a";
  CHECK(second == two_target + ":two");
  CHECK(r.Flows("a") == 1);
  CHECK(r.Flows("b") == 1);

  // A flow keeps its target, and its socket: the target hears the client from one port.
  CHECK(one.Ask(port, "again") == one_target + ":again");
  CHECK(two.Ask(port, "again") == two_target + ":again");
  CHECK(a.sources().size() == 1);
  CHECK(b.sources().size() == 1);

  // The largest UDP payload goes through whole, both ways.
  std::string big(65507, 'x');
  big[0] = 'B';
  big[65506] = 'E';
  CHECK(one.Ask(port, big) == big);

  // The TCP listener on the same number is open too.
  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  CHECK(connect(tcp, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  // Its splice reaches the TCP target; both ends close before the stop.
  int spliced = accept(tcp_target, nullptr, nullptr);
  CHECK(spliced >= 0);
  close(tcp);
  if (spliced >= 0) close(spliced);
  CHECK(Eventually([&] { return r.proxy->TargetInFlight("db", "d").connections == 0; }));

  r.proxy->Stop(1000);
  CHECK(r.Flows("a") == 0);
  close(tcp_target);
}

TEST_CASE("proxy udp: an idle flow expires; the client's next datagram opens another", "[proxy][udp]") {
  EchoTarget a("a");
  int port = testing::FreeLoopbackPort();
  Limits limits;
  limits.udp_idle_timeout_ms = 200;
  Running r = Start(limits);
  r.Apply(UdpDoc(1, port, TargetJson("a", a.port(), "healthy")));

  Client one;
  CHECK(one.Ask(port, "one") == "a:one");
  CHECK(r.Flows("a") == 1);
  CHECK(Eventually([&] { return r.Flows("a") == 0; }));
  CHECK(one.Ask(port, "two") == "a:two");
  CHECK(r.Flows("a") == 1);
  CHECK(a.sources().size() == 2);  // a new flow: a new socket toward the target
  r.proxy->Stop(1000);
}

TEST_CASE("proxy udp: datagrams of new flows beyond max_udp_flows are dropped", "[proxy][udp]") {
  EchoTarget a("a");
  int port = testing::FreeLoopbackPort();
  Limits limits;
  limits.max_udp_flows = 2;
  Running r = Start(limits);
  r.Apply(UdpDoc(1, port, TargetJson("a", a.port(), "healthy")));

  Client one, two, three;
  CHECK(one.Ask(port, "one") == "a:one");
  CHECK(two.Ask(port, "two") == "a:two");
  three.Send(port, "three");
  // Read in order on the one worker: the first client's datagram sent after the
  // third's is answered, the third's never is.
  CHECK(one.Ask(port, "after") == "a:after");
  CHECK_FALSE(three.Receive(200).has_value());
  CHECK(r.Flows("a") == 2);
  CHECK(a.sources().size() == 2);
  // The listener's metrics: flows as its connections, and the drop.
  std::string metrics;
  r.proxy->RenderMetrics(&metrics);
  std::string listener = "{listener=\"127.0.0.1:" + std::to_string(port) + "/UDP\"}";
  CHECK(testing::MetricValue(metrics, "berth_proxy_connections_accepted_total" + listener) == 2);
  CHECK(testing::MetricValue(metrics, "berth_proxy_connections_active" + listener) == 2);
  CHECK(testing::MetricValue(metrics, "berth_proxy_udp_datagrams_dropped_total" + listener) == 1);
  r.proxy->Stop(1000);
  metrics.clear();
  r.proxy->RenderMetrics(&metrics);
  CHECK(testing::MetricValue(metrics, "berth_proxy_connections_active" + listener) == 0);
}

TEST_CASE("proxy udp: new flows go to healthy targets; draining keeps its flows; removed closes them", "[proxy][udp]") {
  EchoTarget a("a"), b("b");
  int port = testing::FreeLoopbackPort();
  Running r = Start(Limits{});

  // No healthy target: a new flow's datagram is dropped.
  r.Apply(UdpDoc(1, port, TargetJson("a", a.port(), "initial")));
  Client one, two;
  one.Send(port, "lost");
  CHECK_FALSE(one.Receive(200).has_value());
  CHECK(r.Flows("a") == 0);

  r.Apply(UdpDoc(2, port, TargetJson("a", a.port(), "healthy")));
  CHECK(one.Ask(port, "one") == "a:one");

  // a draining, b healthy: the flow to a stays, the new one goes to b.
  r.Apply(UdpDoc(3, port, TargetJson("a", a.port(), "draining") + "," + TargetJson("b", b.port(), "healthy")));
  CHECK(one.Ask(port, "still") == "a:still");
  CHECK(two.Ask(port, "two") == "b:two");
  CHECK(r.Flows("a") == 1);
  CHECK(r.Flows("b") == 1);

  // a removed: its flow is closed, and the client's next datagram goes to b.
  r.Apply(UdpDoc(4, port, TargetJson("b", b.port(), "healthy")));
  CHECK(r.Flows("a") == 0);
  CHECK(one.Ask(port, "moved") == "b:moved");
  CHECK(r.Flows("b") == 2);

  // b unhealthy: its flows are closed too, and nothing new is opened.
  r.Apply(UdpDoc(5, port, TargetJson("b", b.port(), "unhealthy")));
  CHECK(r.Flows("b") == 0);
  r.proxy->Stop(1000);
}
