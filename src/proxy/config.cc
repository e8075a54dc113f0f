// ParseConfig: the contract of docs/load-balancing.md, checked field by field.
#include "proxy/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include "base/json.h"
#include "proxy/tls.h"

namespace berth::proxy {
namespace {

using json::View;

std::string At(std::string_view path, std::string_view key) { return std::string(path) + "." + std::string(key); }
std::string Index(std::string_view path, size_t i) { return std::string(path) + "[" + std::to_string(i) + "]"; }
Error Bad(const std::string& path, const std::string& what) { return Error::Invalid(path + ": " + what); }

// Members the contract does not name are refused, so a misspelt field is an
// error instead of a silently ignored setting.
Status OnlyKnownKeys(View obj, std::string_view path, std::initializer_list<std::string_view> known) {
  for (View member : obj) {
    if (std::find(known.begin(), known.end(), member.Key()) == known.end()) {
      return Bad(At(path, member.Key()), "unknown field");
    }
  }
  return {};
}

Result<View> RequireArray(View obj, std::string_view key, std::string_view path, bool required) {
  View v = obj.Get(key);
  if (!v.valid() || v.IsNull()) {
    if (required) return Bad(At(path, key), "is required");
    return View();
  }
  if (!v.IsArray()) return Bad(At(path, key), std::string("must be an array, not ") + v.TypeName());
  return v;
}

// A listener's protocol (all five) or a target group's (HTTP, TCP or UDP).
Result<Protocol> ParseProtocol(View obj, std::string_view path, bool listener) {
  auto text = json::RequireString(obj, "protocol", At(path, "protocol"));
  if (!text.ok()) return text.take_error();
  if (*text == "HTTP") return Protocol::kHttp;
  if (*text == "TCP") return Protocol::kTcp;
  if (*text == "UDP") return Protocol::kUdp;
  if (listener && *text == "HTTPS") return Protocol::kHttps;
  if (listener && *text == "TLS") return Protocol::kTls;
  if (listener) {
    return Bad(At(path, "protocol"), "must be \"HTTP\", \"HTTPS\", \"TCP\", \"TLS\" or \"UDP\", not \"" + *text + "\"");
  }
  return Bad(At(path, "protocol"), "must be \"HTTP\", \"TCP\" or \"UDP\", not \"" + *text + "\"");
}

Result<int> ParsePort(View obj, std::string_view path) {
  std::string where = At(path, "port");
  if (!obj.Get("port").valid()) return Bad(where, "is required");
  auto port = json::OptionalInt(obj, "port", where, 0);
  if (!port.ok()) return port.take_error();
  if (*port < 1 || *port > 65535) return Bad(where, "must be between 1 and 65535");
  return static_cast<int>(*port);
}

// A numeric IPv4 or IPv6 address: the proxy never resolves names on its loops.
Status CheckAddress(const std::string& text, const std::string& where) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1) return {};
  return Bad(where, "must be a numeric IPv4 or IPv6 address, not \"" + text + "\"");
}

Result<std::vector<std::string>> ParseStrings(View obj, std::string_view key, std::string_view path, bool is_path) {
  auto arr = RequireArray(obj, key, path, false);
  if (!arr.ok()) return arr.take_error();
  std::vector<std::string> out;
  if (!arr->valid()) return out;
  size_t i = 0;
  for (View v : *arr) {
    std::string where = Index(At(path, key), i++);
    if (!v.IsString()) return Bad(where, std::string("must be a string, not ") + v.TypeName());
    std::string s(v.String());
    if (s.empty()) return Bad(where, "must not be empty");
    if (is_path && s[0] != '/') return Bad(where, "must start with \"/\"");
    out.push_back(std::move(s));
  }
  return out;
}

Result<Rule> ParseRule(View v, const std::string& path) {
  if (!v.IsObject()) return Bad(path, std::string("must be an object, not ") + v.TypeName());
  if (auto s = OnlyKnownKeys(v, path, {"priority", "hosts", "paths", "targetGroup"}); !s.ok()) return s.take_error();
  Rule r;
  if (!v.Get("priority").valid()) return Bad(At(path, "priority"), "is required");
  auto priority = json::OptionalInt(v, "priority", At(path, "priority"), 0);
  if (!priority.ok()) return priority.take_error();
  r.priority = *priority;
  auto hosts = ParseStrings(v, "hosts", path, false);
  if (!hosts.ok()) return hosts.take_error();
  r.hosts = std::move(*hosts);
  auto paths = ParseStrings(v, "paths", path, true);
  if (!paths.ok()) return paths.take_error();
  r.paths = std::move(*paths);
  auto group = json::RequireString(v, "targetGroup", At(path, "targetGroup"));
  if (!group.ok()) return group.take_error();
  r.target_group = std::move(*group);
  return r;
}

Result<Redirect> ParseRedirect(View v, const std::string& path) {
  if (!v.IsObject()) return Bad(path, std::string("must be an object, not ") + v.TypeName());
  if (auto s = OnlyKnownKeys(v, path, {"port", "statusCode"}); !s.ok()) return s.take_error();
  Redirect r;
  auto port = ParsePort(v, path);
  if (!port.ok()) return port.take_error();
  r.port = *port;
  auto status = json::OptionalInt(v, "statusCode", At(path, "statusCode"), 301);
  if (!status.ok()) return status.take_error();
  if (*status != 301 && *status != 302) return Bad(At(path, "statusCode"), "must be 301 or 302");
  r.status = static_cast<int>(*status);
  return r;
}

// The peers a listener takes PROXY headers from: CIDR blocks or bare addresses.
Result<std::vector<Cidr>> ParseProxyProtocolFrom(View obj, const std::string& path) {
  auto arr = RequireArray(obj, "proxyProtocolFrom", path, false);
  if (!arr.ok()) return arr.take_error();
  std::vector<Cidr> out;
  if (!arr->valid()) return out;
  std::string key = At(path, "proxyProtocolFrom");
  if (arr->Size() > kMaxProxyProtocolFrom) {
    return Bad(key,
               "at most " + std::to_string(kMaxProxyProtocolFrom) + " entries, not " + std::to_string(arr->Size()));
  }
  size_t i = 0;
  for (View v : *arr) {
    std::string where = Index(key, i++);
    if (!v.IsString()) return Bad(where, std::string("must be a string, not ") + v.TypeName());
    auto cidr = ParseCidr(v.String());
    if (!cidr.ok()) return Bad(where, cidr.error().message);
    out.push_back(*cidr);
  }
  return out;
}

Result<Listener> ParseListener(View v, const std::string& path) {
  if (!v.IsObject()) return Bad(path, std::string("must be an object, not ") + v.TypeName());
  if (auto s = OnlyKnownKeys(v, path,
                             {"port", "protocol", "address", "defaultTargetGroup", "rules", "certificates",
                              "redirectToHttps", "proxyProtocolFrom"});
      !s.ok()) {
    return s.take_error();
  }
  Listener l;
  auto port = ParsePort(v, path);
  if (!port.ok()) return port.take_error();
  l.port = *port;
  auto protocol = ParseProtocol(v, path, true);
  if (!protocol.ok()) return protocol.take_error();
  l.protocol = *protocol;
  View redirect = v.Get("redirectToHttps");
  if (redirect.valid() && !redirect.IsNull()) {
    if (l.protocol != Protocol::kHttp) return Bad(At(path, "redirectToHttps"), "is for HTTP listeners only");
    auto r = ParseRedirect(redirect, At(path, "redirectToHttps"));
    if (!r.ok()) return r.take_error();
    l.redirect = *r;
  }
  auto certificates = ParseStrings(v, "certificates", path, false);
  if (!certificates.ok()) return certificates.take_error();
  l.certificates = std::move(*certificates);
  if (Terminates(l.protocol) && l.certificates.empty()) {
    return Bad(At(path, "certificates"), std::string(l.protocol == Protocol::kHttps ? "an " : "a ") +
                                             ProtocolName(l.protocol) + " listener needs at least one certificate");
  }
  if (!Terminates(l.protocol) && !l.certificates.empty()) {
    return Bad(At(path, "certificates"), "are for HTTPS and TLS listeners only");
  }
  auto from = ParseProxyProtocolFrom(v, path);
  if (!from.ok()) return from.take_error();
  l.proxy_protocol_from = std::move(*from);
  if (l.protocol == Protocol::kUdp && !l.proxy_protocol_from.empty()) {
    return Bad(At(path, "proxyProtocolFrom"), "is not for UDP listeners (a PROXY header begins a TCP stream)");
  }
  auto address = json::OptionalString(v, "address", At(path, "address"), "0.0.0.0");
  if (!address.ok()) return address.take_error();
  if (auto s = CheckAddress(*address, At(path, "address")); !s.ok()) return s.take_error();
  l.address = std::move(*address);
  // A redirecting listener forwards nothing: a default group is optional (checked, unused).
  auto group = l.redirect ? json::OptionalString(v, "defaultTargetGroup", At(path, "defaultTargetGroup"), "")
                          : json::RequireString(v, "defaultTargetGroup", At(path, "defaultTargetGroup"));
  if (!group.ok()) return group.take_error();
  l.default_target_group = std::move(*group);
  auto rules = RequireArray(v, "rules", path, false);
  if (!rules.ok()) return rules.take_error();
  if (rules->valid()) {
    if (TargetProtocol(l.protocol) != Protocol::kHttp && rules->Size() > 0)
      return Bad(At(path, "rules"), "are for HTTP and HTTPS listeners only");
    if (l.redirect && rules->Size() > 0) return Bad(At(path, "rules"), "are not used with redirectToHttps");
    size_t i = 0;
    for (View r : *rules) {
      auto rule = ParseRule(r, Index(At(path, "rules"), i++));
      if (!rule.ok()) return rule.take_error();
      l.rules.push_back(std::move(*rule));
    }
  }
  return l;
}

Result<TargetState> ParseState(View v, const std::string& where) {
  auto text = json::RequireString(v, "state", where);
  if (!text.ok()) return text.take_error();
  if (*text == "initial") return TargetState::kInitial;
  if (*text == "healthy") return TargetState::kHealthy;
  if (*text == "unhealthy") return TargetState::kUnhealthy;
  if (*text == "draining") return TargetState::kDraining;
  return Bad(where, "must be \"initial\", \"healthy\", \"unhealthy\" or \"draining\", not \"" + *text + "\"");
}

Result<Target> ParseTarget(View v, const std::string& path) {
  if (!v.IsObject()) return Bad(path, std::string("must be an object, not ") + v.TypeName());
  if (auto s = OnlyKnownKeys(v, path, {"id", "address", "port", "state"}); !s.ok()) return s.take_error();
  Target t;
  auto id = json::RequireString(v, "id", At(path, "id"));
  if (!id.ok()) return id.take_error();
  if (id->empty()) return Bad(At(path, "id"), "must not be empty");
  t.id = std::move(*id);
  auto address = json::RequireString(v, "address", At(path, "address"));
  if (!address.ok()) return address.take_error();
  if (auto s = CheckAddress(*address, At(path, "address")); !s.ok()) return s.take_error();
  t.address = std::move(*address);
  auto port = ParsePort(v, path);
  if (!port.ok()) return port.take_error();
  t.port = *port;
  auto state = ParseState(v, At(path, "state"));
  if (!state.ok()) return state.take_error();
  t.state = *state;
  return t;
}

Result<Algorithm> ParseAlgorithm(View v, Protocol protocol, const std::string& where) {
  auto text = json::OptionalString(v, "algorithm", where, "");
  if (!text.ok()) return text.take_error();
  if (text->empty())
    return protocol == Protocol::kHttp ? Algorithm::kLeastOutstandingRequests : Algorithm::kLeastConnections;
  if (*text == "least_outstanding_requests") return Algorithm::kLeastOutstandingRequests;
  if (*text == "least_connections") return Algorithm::kLeastConnections;
  if (*text == "round_robin") return Algorithm::kRoundRobin;
  return Bad(where,
             "must be \"least_outstanding_requests\", \"least_connections\" or \"round_robin\", not \"" + *text + "\"");
}

// A group's `proxyProtocol`: "v1", "v2", or absent or null for none.
Result<ProxyProtocol> ParseProxyProtocol(View obj, Protocol protocol, const std::string& where) {
  View v = obj.Get("proxyProtocol");
  if (!v.valid() || v.IsNull()) return ProxyProtocol::kNone;
  if (!v.IsString()) return Bad(where, std::string("must be \"v1\" or \"v2\", not ") + v.TypeName());
  std::string text(v.String());
  if (text != "v1" && text != "v2") return Bad(where, "must be \"v1\" or \"v2\", not \"" + text + "\"");
  if (protocol == Protocol::kUdp) {
    return Bad(where, "only TCP target groups send the PROXY protocol (UDP targets see the proxy's address)");
  }
  if (protocol != Protocol::kTcp) {
    return Bad(where, "only TCP target groups send the PROXY protocol (HTTP targets get X-Forwarded-For)");
  }
  return text == "v1" ? ProxyProtocol::kV1 : ProxyProtocol::kV2;
}

// A group's `stickiness`: {"type":"lb_cookie","durationSeconds":N} (HTTP
// groups), {"type":"source_ip"} (TCP groups), or absent or null for none.
Status ParseStickiness(View obj, const std::string& path, TargetGroup* g) {
  View v = obj.Get("stickiness");
  if (!v.valid() || v.IsNull()) return {};
  if (!v.IsObject()) return Bad(path, std::string("must be an object, not ") + v.TypeName());
  if (auto s = OnlyKnownKeys(v, path, {"type", "durationSeconds"}); !s.ok()) return s;
  auto type = json::RequireString(v, "type", At(path, "type"));
  if (!type.ok()) return type.take_error();
  if (*type == "lb_cookie") {
    if (g->protocol != Protocol::kHttp) {
      return Bad(At(path, "type"), "lb_cookie is for HTTP target groups (TCP groups take source_ip)");
    }
    auto seconds = json::OptionalInt(v, "durationSeconds", At(path, "durationSeconds"), 86400);
    if (!seconds.ok()) return seconds.take_error();
    if (*seconds < 1 || *seconds > kMaxCookieSeconds) {
      return Bad(At(path, "durationSeconds"), "must be between 1 and " + std::to_string(kMaxCookieSeconds));
    }
    g->stickiness = Stickiness::kLbCookie;
    g->cookie_seconds = *seconds;
    return {};
  }
  if (*type == "source_ip") {
    if (g->protocol != Protocol::kTcp) {
      return Bad(At(path, "type"), "source_ip is for TCP target groups (HTTP groups take lb_cookie)");
    }
    if (v.Get("durationSeconds").valid()) return Bad(At(path, "durationSeconds"), "is for lb_cookie only");
    g->stickiness = Stickiness::kSourceIp;
    return {};
  }
  return Bad(At(path, "type"), "must be \"lb_cookie\" or \"source_ip\", not \"" + *type + "\"");
}

Result<TargetGroup> ParseGroup(View v, const std::string& path) {
  if (!v.IsObject()) return Bad(path, std::string("must be an object, not ") + v.TypeName());
  if (auto s = OnlyKnownKeys(
          v, path, {"name", "protocol", "algorithm", "slowStartSeconds", "proxyProtocol", "stickiness", "targets"});
      !s.ok()) {
    return s.take_error();
  }
  TargetGroup g;
  auto name = json::RequireString(v, "name", At(path, "name"));
  if (!name.ok()) return name.take_error();
  if (name->empty()) return Bad(At(path, "name"), "must not be empty");
  g.name = std::move(*name);
  auto protocol = ParseProtocol(v, path, false);
  if (!protocol.ok()) return protocol.take_error();
  g.protocol = *protocol;
  auto algorithm = ParseAlgorithm(v, g.protocol, At(path, "algorithm"));
  if (!algorithm.ok()) return algorithm.take_error();
  g.algorithm = *algorithm;
  auto slow = json::OptionalInt(v, "slowStartSeconds", At(path, "slowStartSeconds"), 0);
  if (!slow.ok()) return slow.take_error();
  if (*slow < 0 || *slow > 900) return Bad(At(path, "slowStartSeconds"), "must be between 0 and 900");
  g.slow_start_seconds = *slow;
  auto pp = ParseProxyProtocol(v, g.protocol, At(path, "proxyProtocol"));
  if (!pp.ok()) return pp.take_error();
  g.proxy_protocol = *pp;
  if (auto s = ParseStickiness(v, At(path, "stickiness"), &g); !s.ok()) return s.take_error();
  auto targets = RequireArray(v, "targets", path, false);
  if (!targets.ok()) return targets.take_error();
  if (targets->valid()) {
    std::set<std::string> ids;
    size_t i = 0;
    for (View t : *targets) {
      std::string where = Index(At(path, "targets"), i++);
      auto target = ParseTarget(t, where);
      if (!target.ok()) return target.take_error();
      if (!ids.insert(target->id).second) return Bad(At(where, "id"), "\"" + target->id + "\" appears twice");
      g.targets.push_back(std::move(*target));
    }
  }
  return g;
}

// A certificate and its key, parsed now so that a bad one refuses the document.
Result<Certificate> ParseCertificate(View v, const std::string& path) {
  if (!v.IsObject()) return Bad(path, std::string("must be an object, not ") + v.TypeName());
  if (auto s = OnlyKnownKeys(v, path, {"name", "certPem", "keyPem"}); !s.ok()) return s.take_error();
  Certificate c;
  auto name = json::RequireString(v, "name", At(path, "name"));
  if (!name.ok()) return name.take_error();
  if (name->empty()) return Bad(At(path, "name"), "must not be empty");
  c.name = std::move(*name);
  auto cert = json::RequireString(v, "certPem", At(path, "certPem"));
  if (!cert.ok()) return cert.take_error();
  auto key = json::RequireString(v, "keyPem", At(path, "keyPem"));
  if (!key.ok()) return key.take_error();
  c.cert_pem = std::move(*cert);
  c.key_pem = std::move(*key);
  auto identity = Identity::Load(c.cert_pem, c.key_pem);
  if (!identity.ok()) return Error::Invalid(path + "." + identity.error().message);
  c.identity = std::move(*identity);
  return c;
}

// Checks that join parts of the document: names resolve, protocols agree, ports are unique.
Status CheckReferences(const Config& c) {
  std::set<std::string> keys;
  for (size_t i = 0; i < c.listeners.size(); i++) {
    const Listener& l = c.listeners[i];
    std::string path = Index("listeners", i);
    if (!keys.insert(l.Key()).second) {
      return Bad(At(path, "port"),
                 std::to_string(l.port) + " is already used by another " + ProtocolName(l.protocol) + " listener");
    }
    auto check = [&](const std::string& name, const std::string& where) -> Status {
      const TargetGroup* g = c.FindGroup(name);
      if (!g) return Bad(where, "no target group named \"" + name + "\"");
      if (g->protocol != TargetProtocol(l.protocol)) {
        return Bad(where, std::string("target group \"") + name + "\" is " + ProtocolName(g->protocol) +
                              ", the listener " + ProtocolName(l.protocol));
      }
      return {};
    };
    if (!l.default_target_group.empty() || !l.redirect) {
      if (auto s = check(l.default_target_group, At(path, "defaultTargetGroup")); !s.ok()) return s;
    }
    for (size_t k = 0; k < l.certificates.size(); k++) {
      if (!c.FindCertificate(l.certificates[k])) {
        return Bad(Index(At(path, "certificates"), k), "no certificate named \"" + l.certificates[k] + "\"");
      }
    }
    for (size_t r = 0; r < l.rules.size(); r++) {
      if (auto s = check(l.rules[r].target_group, At(Index(At(path, "rules"), r), "targetGroup")); !s.ok()) return s;
    }
  }
  return {};
}

}  // namespace

std::string Listener::Key() const {
  // HTTP, HTTPS, TCP and TLS share the TCP port space; UDP is a family of its own.
  return (protocol == Protocol::kUdp ? "udp/" : "tcp/") + std::to_string(port);
}

const TargetGroup* Config::FindGroup(std::string_view name) const {
  for (const TargetGroup& g : target_groups) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

const Certificate* Config::FindCertificate(std::string_view name) const {
  for (const Certificate& c : certificates) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Protocol TargetProtocol(Protocol p) {
  if (p == Protocol::kUdp) return Protocol::kUdp;
  return p == Protocol::kHttp || p == Protocol::kHttps ? Protocol::kHttp : Protocol::kTcp;
}

const char* ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kHttp: return "HTTP";
    case Protocol::kTcp: return "TCP";
    case Protocol::kHttps: return "HTTPS";
    case Protocol::kTls: return "TLS";
    case Protocol::kUdp: return "UDP";
  }
  return "?";
}

const char* TargetStateName(TargetState s) {
  switch (s) {
    case TargetState::kInitial: return "initial";
    case TargetState::kHealthy: return "healthy";
    case TargetState::kUnhealthy: return "unhealthy";
    case TargetState::kDraining: return "draining";
  }
  return "?";
}

Result<Config> ParseConfig(std::string_view json_text) {
  auto doc = json::Doc::Parse(json_text);
  if (!doc.ok()) return Error::Invalid("configuration: " + doc.error().message);
  View root = doc->view();
  if (!root.IsObject()) return Bad("configuration", std::string("must be an object, not ") + root.TypeName());
  if (auto s = OnlyKnownKeys(root, "", {"version", "listeners", "targetGroups", "certificates"}); !s.ok()) {
    return Error::Invalid(s.error().message.substr(1));  // no leading "." at the top level
  }
  Config c;
  if (!root.Get("version").valid()) return Bad("version", "is required");
  auto version = json::OptionalInt(root, "version", "version", 0);
  if (!version.ok()) return version.take_error();
  if (*version < 0) return Bad("version", "must not be negative");
  c.version = *version;
  for (const char* key : {"listeners", "targetGroups", "certificates"}) {
    View v = root.Get(key);
    if (v.valid() && !v.IsNull() && !v.IsArray()) return Bad(key, std::string("must be an array, not ") + v.TypeName());
  }
  size_t i = 0;
  std::set<std::string> names;
  for (View g : root.Get("targetGroups")) {
    auto group = ParseGroup(g, Index("targetGroups", i));
    if (!group.ok()) return group.take_error();
    if (!names.insert(group->name).second) {
      return Bad(At(Index("targetGroups", i), "name"), "\"" + group->name + "\" appears twice");
    }
    c.target_groups.push_back(std::move(*group));
    i++;
  }
  i = 0;
  std::set<std::string> cert_names;
  for (View v : root.Get("certificates")) {
    auto cert = ParseCertificate(v, Index("certificates", i));
    if (!cert.ok()) return cert.take_error();
    if (!cert_names.insert(cert->name).second) {
      return Bad(At(Index("certificates", i), "name"), "\"" + cert->name + "\" appears twice");
    }
    c.certificates.push_back(std::move(*cert));
    i++;
  }
  i = 0;
  for (View l : root.Get("listeners")) {
    auto listener = ParseListener(l, Index("listeners", i++));
    if (!listener.ok()) return listener.take_error();
    c.listeners.push_back(std::move(*listener));
  }
  if (auto s = CheckReferences(c); !s.ok()) return s.take_error();
  // Sorted only now, so that errors above name a rule by its place in the document.
  for (Listener& l : c.listeners) {
    std::stable_sort(l.rules.begin(), l.rules.end(),
                     [](const Rule& a, const Rule& b) { return a.priority < b.priority; });
  }
  return c;
}

}  // namespace berth::proxy
