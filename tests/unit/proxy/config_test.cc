// proxy/config: the contract's document parsed, and refused with the path of what is wrong.
#include "proxy/config.h"

#include <catch2/catch.hpp>
#include <string>

using namespace berth;
using namespace berth::proxy;

namespace {

const char* kDoc = R"({"version": 7,
 "listeners": [
   {"port": 80, "protocol": "HTTP", "address": "0.0.0.0", "defaultTargetGroup": "web",
    "rules": [{"priority": 20, "hosts": ["*.example.com"], "targetGroup": "web"},
              {"priority": 10, "hosts": ["api.example.com"], "paths": ["/v1/*"], "targetGroup": "api"}]},
   {"port": 5432, "protocol": "TCP", "defaultTargetGroup": "db"}],
 "targetGroups": [
   {"name": "web", "protocol": "HTTP", "algorithm": "round_robin",
    "targets": [{"id": "a", "address": "10.0.0.2", "port": 32768, "state": "healthy"},
                {"id": "b", "address": "10.0.0.3", "port": 32771, "state": "draining"}]},
   {"name": "api", "protocol": "HTTP", "targets": []},
   {"name": "db", "protocol": "TCP", "targets": [{"id": "d", "address": "::1", "port": 5432, "state": "initial"}]}]})";

// The error message of a document that must be refused.
std::string Refusal(const std::string& text) {
  auto c = ParseConfig(text);
  REQUIRE_FALSE(c.ok());
  return c.error().message;
}

// kDoc with `from` replaced by `to` (which must occur).
std::string With(const std::string& from, const std::string& to) {
  std::string s = kDoc;
  size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("proxy config: the contract's example parses into types", "[proxy]") {
  auto c = ParseConfig(kDoc);
  REQUIRE(c.ok());
  CHECK(c->version == 7);
  REQUIRE(c->listeners.size() == 2);
  const Listener& http = c->listeners[0];
  CHECK(http.protocol == Protocol::kHttp);
  REQUIRE(http.rules.size() == 2);
  CHECK(http.rules[0].priority == 10);  // sorted ascending
  CHECK(http.rules[0].paths == std::vector<std::string>{"/v1/*"});
  CHECK(c->listeners[1].address == "0.0.0.0");  // the default
  CHECK(c->FindGroup("web")->algorithm == Algorithm::kRoundRobin);
  CHECK(c->FindGroup("api")->algorithm == Algorithm::kLeastOutstandingRequests);  // HTTP's default
  CHECK(c->FindGroup("db")->algorithm == Algorithm::kLeastConnections);           // TCP's default
  CHECK(c->FindGroup("web")->targets[1].state == TargetState::kDraining);
  CHECK(c->FindGroup("db")->targets[0].address == "::1");
}

TEST_CASE("proxy config: errors name the field by its path", "[proxy]") {
  CHECK(Refusal(With(R"("paths": ["/v1/*"])", R"("paths": ["/v1/*", "/v2", "v3"])")) ==
        "listeners[0].rules[1].paths[2]: must start with \"/\"");
  CHECK(Refusal(With(R"("port": 5432, "protocol": "TCP")", R"("port": 70000, "protocol": "TCP")")) ==
        "listeners[1].port: must be between 1 and 65535");
  CHECK(Refusal(With(R"("protocol": "TCP", "defaultTargetGroup")", R"("protocol": "UDPX", "defaultTargetGroup")")) ==
        "listeners[1].protocol: must be \"HTTP\", \"HTTPS\", \"TCP\", \"TLS\" or \"UDP\", not \"UDPX\"");
  CHECK(Refusal(With(R"("state": "draining")", R"("state": "gone")")).rfind("targetGroups[0].targets[1].state: ", 0) ==
        0);
  CHECK(Refusal(With(R"("address": "10.0.0.3")", R"("address": "backend.local")")) ==
        "targetGroups[0].targets[1].address: must be a numeric IPv4 or IPv6 address, not \"backend.local\"");
  CHECK(Refusal(With(R"("targetGroup": "api")", R"("targetGroup": "nope")")) ==
        "listeners[0].rules[1].targetGroup: no target group named \"nope\"");
  CHECK(Refusal(With(R"("defaultTargetGroup": "db")", R"("defaultTargetGroup": "web")")) ==
        "listeners[1].defaultTargetGroup: target group \"web\" is HTTP, the listener TCP");
  CHECK(Refusal(With(R"("port": 5432, "protocol": "TCP")", R"("port": 80, "protocol": "TCP")")) ==
        "listeners[1].port: 80 is already used by another TCP listener");
  CHECK(Refusal(With(R"("id": "b")", R"("id": "a")")) == "targetGroups[0].targets[1].id: \"a\" appears twice");
  CHECK(Refusal(With(R"("version": 7)", R"("version": "7")")) == "version: must be a number, not a string");
  CHECK(Refusal(With(R"("version": 7,)", R"("version": 7, "listner": [],)")) == "listner: unknown field");
  CHECK(Refusal(std::string(kDoc).replace(0, 1, "[")).rfind("configuration: ", 0) == 0);
  CHECK(Refusal(R"({"version": 1, "listeners": [{"port": 9, "protocol": "TCP", "defaultTargetGroup": "t",
                   "rules": [{"priority": 1, "targetGroup": "t"}]}],
                   "targetGroups": [{"name": "t", "protocol": "TCP"}]})") ==
        "listeners[0].rules: are for HTTP and HTTPS listeners only");
}

TEST_CASE("proxy config: an empty document is a valid one", "[proxy]") {
  auto c = ParseConfig(R"({"version": 0})");
  REQUIRE(c.ok());
  CHECK(c->listeners.empty());
  CHECK(Refusal("{}") == "version: is required");
}

namespace {

// A UDP listener on 53 to the UDP group "dns", and a TCP listener to "db";
// `listener` is added to the UDP listener's fields, `group` to the UDP group's.
std::string UdpDoc(const std::string& listener, const std::string& group = "", const std::string& tcp_group = "db") {
  return R"({"version": 1, "listeners": [
    {"port": 53, "protocol": "UDP", "defaultTargetGroup": "dns")" +
         listener + R"(},
    {"port": 53, "protocol": "TCP", "defaultTargetGroup": ")" +
         tcp_group + R"("}],
   "targetGroups": [
    {"name": "dns", "protocol": "UDP")" +
         group + R"(, "targets": [{"id": "a", "address": "10.0.0.2", "port": 5353, "state": "healthy"}]},
    {"name": "db", "protocol": "TCP"}]})";
}

// `s` with its first `from` replaced by `to` (which must occur).
std::string Replaced(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("proxy config: UDP listeners and groups, a port family of their own", "[proxy][udp]") {
  auto c = ParseConfig(UdpDoc(""));
  REQUIRE(c.ok());
  CHECK(c->listeners[0].protocol == Protocol::kUdp);
  CHECK(c->FindGroup("dns")->protocol == Protocol::kUdp);
  CHECK(c->FindGroup("dns")->algorithm == Algorithm::kLeastConnections);  // UDP's default
  CHECK(c->listeners[0].Key() != c->listeners[1].Key());                  // port 53 twice: UDP and TCP
  CHECK(TargetProtocol(Protocol::kUdp) == Protocol::kUdp);
  CHECK(std::string(ProtocolName(Protocol::kUdp)) == "UDP");
}

TEST_CASE("proxy config: what a UDP listener or group cannot have is refused by its path", "[proxy][udp]") {
  CHECK(Refusal(UdpDoc(R"(, "certificates": ["site"])")) ==
        "listeners[0].certificates: are for HTTPS and TLS listeners only");
  CHECK(Refusal(UdpDoc(R"(, "redirectToHttps": {"port": 443})")) ==
        "listeners[0].redirectToHttps: is for HTTP listeners only");
  CHECK(Refusal(UdpDoc(R"(, "rules": [{"priority": 1, "hosts": ["a"], "targetGroup": "dns"}])")) ==
        "listeners[0].rules: are for HTTP and HTTPS listeners only");
  CHECK(Refusal(UdpDoc(R"(, "proxyProtocolFrom": ["10.0.0.0/8"])")) ==
        "listeners[0].proxyProtocolFrom: is not for UDP listeners (a PROXY header begins a TCP stream)");
  CHECK(Refusal(Replaced(UdpDoc(""), R"("dns")", R"("db")")) ==
        "listeners[0].defaultTargetGroup: target group \"db\" is TCP, the listener UDP");
  CHECK(Refusal(UdpDoc("", "", "dns")) ==
        "listeners[1].defaultTargetGroup: target group \"dns\" is UDP, the listener TCP");
  CHECK(Refusal(UdpDoc("", R"(, "proxyProtocol": "v2")")) ==
        "targetGroups[0].proxyProtocol: only TCP target groups send the PROXY protocol (UDP targets see the proxy's "
        "address)");
  std::string two_udp = Replaced(UdpDoc("", "", "dns"), R"("protocol": "TCP")", R"("protocol": "UDP")");
  CHECK(Refusal(two_udp) == "listeners[1].port: 53 is already used by another UDP listener");
  CHECK(Refusal(Replaced(UdpDoc(""), R"("protocol": "UDP", "targets")", R"("protocol": "UDPX", "targets")")) ==
        "targetGroups[0].protocol: must be \"HTTP\", \"TCP\" or \"UDP\", not \"UDPX\"");
}

TEST_CASE("proxy config: stickiness by group protocol, refused otherwise", "[proxy][stickiness]") {
  auto c = ParseConfig(With(R"("name": "api", "protocol": "HTTP",)",
                            R"("name": "api", "protocol": "HTTP", "stickiness": {"type": "lb_cookie"},)"));
  REQUIRE(c.ok());
  CHECK(c->FindGroup("api")->stickiness == Stickiness::kLbCookie);
  CHECK(c->FindGroup("api")->cookie_seconds == 86400);  // the default
  CHECK(c->FindGroup("web")->stickiness == Stickiness::kNone);
  c = ParseConfig(With(R"("name": "db", "protocol": "TCP",)",
                       R"("name": "db", "protocol": "TCP", "stickiness": {"type": "source_ip"},)"));
  REQUIRE(c.ok());
  CHECK(c->FindGroup("db")->stickiness == Stickiness::kSourceIp);
  c = ParseConfig(
      With(R"("name": "api", "protocol": "HTTP",)",
           R"("name": "api", "protocol": "HTTP", "stickiness": {"type": "lb_cookie", "durationSeconds": 60},)"));
  REQUIRE(c.ok());
  CHECK(c->FindGroup("api")->cookie_seconds == 60);
  CHECK(ParseConfig(
            With(R"("name": "api", "protocol": "HTTP",)", R"("name": "api", "protocol": "HTTP", "stickiness": null,)"))
            .ok());

  auto api = [](const std::string& stickiness) {
    return Refusal(With(R"("name": "api", "protocol": "HTTP",)",
                        R"("name": "api", "protocol": "HTTP", "stickiness": )" + stickiness + ","));
  };
  CHECK(api(R"({"type": "source_ip"})") ==
        "targetGroups[1].stickiness.type: source_ip is for TCP target groups (HTTP groups take lb_cookie)");
  CHECK(api(R"({"type": "app_cookie"})") ==
        "targetGroups[1].stickiness.type: must be \"lb_cookie\" or \"source_ip\", not \"app_cookie\"");
  CHECK(api(R"({"type": "lb_cookie", "durationSeconds": 0})") ==
        "targetGroups[1].stickiness.durationSeconds: must be between 1 and 604800");
  CHECK(api(R"({"type": "lb_cookie", "durationSeconds": 604801})") ==
        "targetGroups[1].stickiness.durationSeconds: must be between 1 and 604800");
  CHECK(api(R"({"type": "lb_cookie", "cookieName": "x"})") == "targetGroups[1].stickiness.cookieName: unknown field");
  CHECK(api(R"({})") == "targetGroups[1].stickiness.type: is required");
  CHECK(api(R"(true)") == "targetGroups[1].stickiness: must be an object, not a boolean");
  auto db = [](const std::string& stickiness) {
    return Refusal(With(R"("name": "db", "protocol": "TCP",)",
                        R"("name": "db", "protocol": "TCP", "stickiness": )" + stickiness + ","));
  };
  CHECK(db(R"({"type": "lb_cookie"})") ==
        "targetGroups[2].stickiness.type: lb_cookie is for HTTP target groups (TCP groups take source_ip)");
  CHECK(db(R"({"type": "source_ip", "durationSeconds": 5})") ==
        "targetGroups[2].stickiness.durationSeconds: is for lb_cookie only");
}
