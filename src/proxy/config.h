// The proxy's configuration: the typed form of the JSON document that
// docs/load-balancing.md defines (the contract), and its parser.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "proxy/proxy_protocol.h"

namespace berth::proxy {

class Identity;

// Listeners speak all five; target groups HTTP, TCP or UDP (an HTTPS listener
// forwards to HTTP targets, a TLS listener to TCP targets, a UDP one to UDP targets).
enum class Protocol { kHttp, kTcp, kHttps, kTls, kUdp };
enum class Algorithm { kLeastOutstandingRequests, kLeastConnections, kRoundRobin };
// As ELB names them; only kHealthy takes new requests and connections.
enum class TargetState { kInitial, kHealthy, kUnhealthy, kDraining };
// How a group keeps a client on one target: none, a cookie the proxy sets (HTTP
// groups), or a hash of the client's address (TCP groups).
enum class Stickiness { kNone, kLbCookie, kSourceIp };
constexpr int64_t kMaxCookieSeconds = 604800;

struct Target {
  std::string id;
  std::string address;
  int port = 0;
  TargetState state = TargetState::kInitial;
};

struct TargetGroup {
  std::string name;
  Protocol protocol = Protocol::kHttp;
  Algorithm algorithm = Algorithm::kLeastOutstandingRequests;
  int64_t slow_start_seconds = 0;
  ProxyProtocol proxy_protocol = ProxyProtocol::kNone;  // TCP groups only: the header written to each target
  Stickiness stickiness = Stickiness::kNone;
  int64_t cookie_seconds = 86400;  // kLbCookie: the Max-Age of the cookie set, 1 to kMaxCookieSeconds
  std::vector<Target> targets;
};

struct Rule {
  int64_t priority = 0;
  std::vector<std::string> hosts;  // empty: any host
  std::vector<std::string> paths;  // empty: any path
  std::string target_group;
};

// An HTTP listener that answers every request with a redirect to https.
struct Redirect {
  int port = 443;
  int status = 301;  // or 302
};

constexpr size_t kMaxProxyProtocolFrom = 50;

struct Listener {
  int port = 0;
  Protocol protocol = Protocol::kHttp;
  std::string address = "0.0.0.0";
  std::string default_target_group;       // empty only with a redirect
  std::vector<Rule> rules;                // sorted by ascending priority
  std::vector<std::string> certificates;  // HTTPS and TLS: names in Config::certificates, the first the default
  std::optional<Redirect> redirect;       // HTTP only
  // Peers that must begin with a PROXY header (at most kMaxProxyProtocolFrom); empty: none.
  std::vector<Cidr> proxy_protocol_from;

  // What tells two listeners apart: a port is listened on once per protocol
  // family, TCP's (HTTP, HTTPS, TCP, TLS) or UDP's.
  std::string Key() const;
};

struct Certificate {
  std::string name;
  std::string cert_pem, key_pem;
  std::shared_ptr<const Identity> identity;  // parsed and checked by ParseConfig
};

struct Config {
  int64_t version = 0;
  std::vector<Listener> listeners;
  std::vector<TargetGroup> target_groups;
  std::vector<Certificate> certificates;

  const TargetGroup* FindGroup(std::string_view name) const;
  const Certificate* FindCertificate(std::string_view name) const;
};

// What a listener of protocol `p` forwards to: HTTP for HTTP and HTTPS, TCP for TCP and TLS, UDP for UDP.
Protocol TargetProtocol(Protocol p);
// True for the listeners that terminate TLS.
inline bool Terminates(Protocol p) { return p == Protocol::kHttps || p == Protocol::kTls; }

// Parses and checks a whole document. Errors name the field by its path
// ("listeners[1].rules[0].paths[2]: must start with \"/\""); nothing is partial.
Result<Config> ParseConfig(std::string_view json_text);

const char* ProtocolName(Protocol p);
const char* TargetStateName(TargetState s);

}  // namespace berth::proxy
