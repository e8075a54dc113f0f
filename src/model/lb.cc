#include "model/lb.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>

#include "base/clock.h"
#include "base/crypto.h"
#include "model/cluster.h"
#include "model/secret.h"
#include "proxy/proxy_protocol.h"

namespace berth::model {

namespace {

std::string ArnId(std::string_view cluster, std::string_view name) {
  std::string key(cluster);
  key.append("/").append(name);
  return crypto::Hex(crypto::Sha256(key)).substr(0, 16);
}

std::string ElbArn(std::string_view kind, std::string_view cluster, std::string_view name) {
  std::string arn = "arn:aws:elasticloadbalancing:";
  arn.append(kRegion).append(":").append(kAccount).append(":").append(kind).append("/").append(name);
  arn.append("/").append(ArnId(cluster, name));
  return arn;
}

Status CheckProtocol(std::string_view protocol, std::string_view field) {
  if (protocol == "HTTP" || protocol == "TCP" || protocol == "UDP") return {};
  return Error::Invalid(std::string(field) + ": must be HTTP, TCP or UDP (listeners terminate HTTPS and TLS); got \"" +
                        std::string(protocol) + "\"");
}

// What the agents' prober (agent/target_checks.h) speaks.
Status CheckHealthProtocol(std::string_view protocol) {
  if (protocol == "HTTP" || protocol == "TCP") return {};
  return Error::Invalid("healthCheckProtocol: must be HTTP or TCP; got \"" + std::string(protocol) + "\"");
}

// `v` when it is a whole number from lo to hi (checked before any conversion:
// a double out of int64's range has none).
std::optional<int64_t> Whole(json::View v, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) return std::nullopt;
  double d = v.Number();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != std::floor(d)) return std::nullopt;
  return static_cast<int64_t>(d);
}

Status CheckListenerProtocol(std::string_view protocol) {
  if (protocol == "HTTP" || protocol == "HTTPS" || protocol == "TCP" || protocol == "TLS" || protocol == "UDP") {
    return {};
  }
  return Error::Invalid("protocol: must be HTTP, HTTPS, TCP, TLS or UDP; got \"" + std::string(protocol) + "\"");
}

Result<int64_t> RequirePort(json::View body, std::string_view key, std::string_view field) {
  json::View v = body.Get(key);
  if (!v.valid()) return Error::Invalid(std::string(field) + ": required");
  std::optional<int64_t> port = Whole(v, 1, 65535);
  if (!port) return Error::Invalid(std::string(field) + ": must be a whole number from 1 to 65535");
  return *port;
}

// A list of strings (a missing one is empty), each checked by `check`.
Result<std::vector<std::string>> StringList(json::View body, std::string_view key,
                                            Status (*check)(std::string_view, const std::string&)) {
  std::vector<std::string> out;
  json::View list = body.Get(key);
  if (!list.valid() || list.IsNull()) return out;
  if (!list.IsArray()) return Error::Invalid(std::string(key) + ": must be an array of strings");
  if (list.Size() > 5) return Error::Invalid(std::string(key) + ": at most 5 values (as ELB)");
  size_t i = 0;
  for (json::View x : list) {
    std::string field = std::string(key) + "[" + std::to_string(i++) + "]";
    if (!x.IsString()) return Error::Invalid(field + ": must be a string");
    if (Status s = check(x.String(), field); !s) return s.take_error();
    out.emplace_back(x.String());
  }
  return out;
}

Status CheckHost(std::string_view host, const std::string& field) {
  if (host.empty() || host.size() > 128) return Error::Invalid(field + ": must be 1-128 characters");
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              c == '*' || c == '?';
    if (!ok) return Error::Invalid(field + ": a host name has letters, digits, - . and the wildcards * ?");
  }
  return {};
}

Status CheckPath(std::string_view path, const std::string& field) {
  if (path.empty() || path.size() > 128 || path[0] != '/') {
    return Error::Invalid(field + ": must start with \"/\" and be at most 128 characters");
  }
  for (char c : path) {
    if (c <= ' ' || c == 0x7f) return Error::Invalid(field + ": no spaces or control characters");
  }
  return {};
}

// A CIDR the proxies' parser takes (proxy/proxy_protocol.h).
Status CheckCidr(std::string_view text, const std::string& field) {
  Result<proxy::Cidr> cidr = proxy::ParseCidr(text);
  if (!cidr) return Error::Invalid(field + ": " + cidr.error().message);
  return {};
}

json::Doc Strings(const std::vector<std::string>& list) {
  json::Doc out = json::Doc::Array();
  for (const std::string& s : list) out.Push(s);
  return out;
}

std::vector<std::string> ReadStrings(json::View list) {
  std::vector<std::string> out;
  for (json::View x : list) out.emplace_back(x.String());
  return out;
}

ListenerRule ReadRule(json::View x) {
  ListenerRule r;
  r.priority = static_cast<int64_t>(x.Get("priority").Number());
  r.hosts = ReadStrings(x.Get("hosts"));
  r.paths = ReadStrings(x.Get("paths"));
  r.target_group = std::string(x.Get("targetGroup").String());
  return r;
}

Listener ReadListener(json::View x) {
  Listener l;
  l.port = static_cast<int64_t>(x.Get("port").Number());
  l.protocol = std::string(x.Get("protocol").String());
  l.default_target_group = std::string(x.Get("defaultTargetGroup").String());
  for (json::View r : x.Get("rules")) l.rules.push_back(ReadRule(r));
  l.certificates = ReadStrings(x.Get("certificates"));
  l.proxy_protocol_from = ReadStrings(x.Get("proxyProtocolFrom"));
  if (json::View r = x.Get("redirectToHttps"); r.IsObject()) {
    l.redirect_port = r.Get("port").IntIn(1, 65535, 443);
    l.redirect_status = r.Get("statusCode").IntIn(301, 302, 301);
  }
  return l;
}

Result<int64_t> IntField(json::View body, std::string_view key, int64_t lo, int64_t hi, int64_t fallback) {
  json::View v = body.Get(key);
  if (!v.valid() || v.IsNull()) return fallback;
  std::optional<int64_t> n = Whole(v, lo, hi);
  if (!n) {
    return Error::Invalid(std::string(key) + ": must be a whole number from " + std::to_string(lo) + " to " +
                          std::to_string(hi));
  }
  return *n;
}

// ELB's health check fields of a CreateTargetGroup body (and of the stored doc).
// A UDP group has none: the agents probe HTTP and TCP only, so its targets take
// traffic when RUNNING and, with a container health check, HEALTHY.
Result<HealthCheck> ParseHealthCheck(json::View body, const std::string& protocol) {
  HealthCheck hc;
  hc.protocol = protocol;
  json::View enabled = body.Get("healthCheckEnabled");
  if (enabled.valid() && !enabled.IsNull()) {
    if (!enabled.IsBool()) return Error::Invalid("healthCheckEnabled: must be true or false");
    hc.enabled = enabled.Bool();
  }
  if (protocol == "UDP") {
    if (hc.enabled && enabled.valid() && !enabled.IsNull()) {
      return Error::Invalid(
          "healthCheckEnabled: a UDP target group has no health check (the agents probe HTTP and TCP only); its "
          "targets take traffic when RUNNING and, with a container health check, HEALTHY");
    }
    for (const char* key : {"healthCheckProtocol", "healthCheckPath", "matcher", "healthCheckIntervalSeconds",
                            "healthCheckTimeoutSeconds", "healthyThresholdCount", "unhealthyThresholdCount"}) {
      if (body.Get(key).valid()) return Error::Invalid(std::string(key) + ": a UDP target group has no health check");
    }
    hc.enabled = false;
    hc.protocol.clear();
    return hc;
  }
  Result<std::string> p = json::OptionalString(body, "healthCheckProtocol", "healthCheckProtocol", protocol);
  if (!p) return p.take_error();
  if (Status s = CheckHealthProtocol(*p); !s) return s.take_error();
  hc.protocol = std::move(p.value());
  Result<std::string> path = json::OptionalString(body, "healthCheckPath", "healthCheckPath", "/");
  if (!path) return path.take_error();
  if (path->empty() || path->front() != '/' || path->size() > 1024) {
    return Error::Invalid("healthCheckPath: must start with \"/\" and be at most 1024 characters");
  }
  for (char c : *path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Error::Invalid("healthCheckPath: must have no spaces or control characters");
    }
  }
  hc.path = std::move(path.value());
  json::View matcher = body.Get("matcher");
  if (matcher.valid() && !matcher.IsNull()) {
    if (!matcher.IsObject() || !matcher.Get("httpCode").IsString()) {
      return Error::Invalid("matcher: must be {\"httpCode\": \"200-399\"}");
    }
    hc.matcher = std::string(matcher.Get("httpCode").String());
    if (Result<StatusMatcher> m = ParseMatcher(hc.matcher); !m) {
      return Error::Invalid("matcher.httpCode: " + m.error().message +
                            " (codes, comma-separated: 200,302, or one range: 200-399)");
    }
  }
  if (hc.protocol != "HTTP" && (body.Get("healthCheckPath").valid() || matcher.valid())) {
    return Error::Invalid("healthCheckPath and matcher are for HTTP health checks; this one is " + hc.protocol);
  }
  Result<int64_t> interval = IntField(body, "healthCheckIntervalSeconds", 5, 300, hc.interval_s);
  if (!interval) return interval.take_error();
  hc.interval_s = *interval;
  Result<int64_t> timeout = IntField(body, "healthCheckTimeoutSeconds", 2, 120, hc.timeout_s);
  if (!timeout) return timeout.take_error();
  hc.timeout_s = *timeout;
  if (hc.timeout_s >= hc.interval_s) {
    return Error::Invalid("healthCheckTimeoutSeconds: must be less than healthCheckIntervalSeconds (" +
                          std::to_string(hc.interval_s) + ")");
  }
  Result<int64_t> healthy = IntField(body, "healthyThresholdCount", 2, 10, hc.healthy_threshold);
  if (!healthy) return healthy.take_error();
  hc.healthy_threshold = *healthy;
  Result<int64_t> unhealthy = IntField(body, "unhealthyThresholdCount", 2, 10, hc.unhealthy_threshold);
  if (!unhealthy) return unhealthy.take_error();
  hc.unhealthy_threshold = *unhealthy;
  return hc;
}

json::Doc HealthCheckJson(const HealthCheck& hc) {
  json::Doc d = json::Doc::Object();
  if (hc.protocol.empty()) return std::move(d.Set("healthCheckEnabled", false));  // a UDP group's: none
  d.Set("healthCheckEnabled", hc.enabled)
      .Set("healthCheckProtocol", hc.protocol)
      .Set("healthCheckIntervalSeconds", hc.interval_s)
      .Set("healthCheckTimeoutSeconds", hc.timeout_s)
      .Set("healthyThresholdCount", hc.healthy_threshold)
      .Set("unhealthyThresholdCount", hc.unhealthy_threshold);
  if (hc.protocol == "HTTP") {
    d.Set("healthCheckPath", hc.path).Set("matcher", json::Doc::Object().Set("httpCode", hc.matcher));
  }
  return d;
}

}  // namespace

namespace {

Result<int> StatusCode(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  int code = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), code);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || code < 100 || code > 599) {
    return Error::Invalid("\"" + std::string(s) + "\" is not a status code of 100-599");
  }
  return code;
}

}  // namespace

bool StatusMatcher::Accepts(int code) const {
  for (const auto& [lo, hi] : ranges) {
    if (code >= lo && code <= hi) return true;
  }
  return false;
}

Result<StatusMatcher> ParseMatcher(std::string_view text) {
  if (text.empty()) return Error::Invalid("must not be empty");
  if (text.size() > 256) return Error::Invalid("must be at most 256 characters");
  StatusMatcher m;
  if (size_t dash = text.find('-'); dash != std::string_view::npos) {
    Result<int> lo = StatusCode(text.substr(0, dash));
    if (!lo) return lo.take_error();
    Result<int> hi = StatusCode(text.substr(dash + 1));
    if (!hi) return hi.take_error();
    if (*lo > *hi) return Error::Invalid("\"" + std::string(text) + "\": a range must go from low to high");
    m.ranges.emplace_back(*lo, *hi);
    return m;
  }
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    Result<int> code = StatusCode(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (!code) return code.take_error();
    m.ranges.emplace_back(*code, *code);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return m;
}

Status ValidateLbName(std::string_view name, std::string_view field) {
  const std::string rule = "must be 1-32 letters, digits and hyphens, not beginning or ending with a hyphen";
  if (name.empty() || name.size() > 32 || name.front() == '-' || name.back() == '-') {
    return Error::Invalid(std::string(field) + ": " + rule + "; got \"" + std::string(name.substr(0, 64)) + "\"");
  }
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return BadNameChar(field, rule, name, i);
  }
  return {};
}

std::string TargetGroupArn(std::string_view cluster, std::string_view name) {
  return ElbArn("targetgroup", cluster, name);
}

std::string LoadBalancerArn(std::string_view cluster, std::string_view name) {
  return ElbArn("loadbalancer/app", cluster, name);
}

std::string ListenerArn(std::string_view cluster, std::string_view lb, int64_t port) {
  std::string arn = ElbArn("listener/app", cluster, lb);
  return arn.append("/").append(std::to_string(port));
}

std::string TargetGroupNameFromArn(std::string_view arn) {
  if (!arn.starts_with("arn:")) return {};
  size_t at = arn.find(":targetgroup/");
  if (at == std::string_view::npos) return {};
  std::string_view rest = arn.substr(at + 13);
  size_t slash = rest.find('/');
  return std::string(rest.substr(0, slash));
}

Result<TargetGroup> ParseTargetGroupBody(json::View body, std::string_view cluster) {
  TargetGroup tg;
  tg.cluster = std::string(cluster);
  Result<std::string> name = json::RequireString(body, "name", "name");
  if (!name) return name.take_error();
  if (Status s = ValidateLbName(*name, "name"); !s) return s.take_error();
  tg.name = std::move(name.value());
  tg.arn = TargetGroupArn(cluster, tg.name);
  Result<std::string> protocol = json::RequireString(body, "protocol", "protocol");
  if (!protocol) return protocol.take_error();
  if (Status s = CheckProtocol(*protocol, "protocol"); !s) return s.take_error();
  tg.protocol = std::move(protocol.value());
  Result<int64_t> port = RequirePort(body, "port", "port");
  if (!port) return port.take_error();
  tg.port = *port;
  std::string fallback = tg.protocol == "HTTP" ? "least_outstanding_requests" : "least_connections";
  if (json::View a = body.Get("attributes").Get("load_balancing.algorithm.type"); a.IsString()) {
    fallback = std::string(a.String());
  }
  Result<std::string> algorithm = json::OptionalString(body, "algorithm", "algorithm", fallback);
  if (!algorithm) return algorithm.take_error();
  if (*algorithm != "least_outstanding_requests" && *algorithm != "least_connections" && *algorithm != "round_robin") {
    return Error::Invalid("algorithm: must be least_outstanding_requests, least_connections or round_robin; got \"" +
                          *algorithm + "\"");
  }
  if (*algorithm == "least_outstanding_requests" && tg.protocol != "HTTP") {
    return Error::Invalid("algorithm: least_outstanding_requests counts requests, so it needs protocol HTTP");
  }
  tg.algorithm = std::move(algorithm.value());
  json::View attrs = body.Get("attributes");
  if (attrs.valid() && !attrs.IsNull()) {
    if (!attrs.IsObject()) return Error::Invalid("attributes: must be an object of attribute names to values");
    for (json::View a : attrs) {
      std::string key(a.Key());
      std::string field = "attributes." + key;
      if (key == "load_balancing.algorithm.type") {
        // ELB sets the algorithm as an attribute; `algorithm` is the same, and both must agree.
        if (!a.IsString()) return Error::Invalid(field + ": must be a string");
        if (body.Get("algorithm").valid() && body.Get("algorithm").String() != a.String()) {
          return Error::Invalid(field + ": says \"" + std::string(a.String()) + "\" but algorithm says \"" +
                                std::string(body.Get("algorithm").String()) + "\"");
        }
        continue;  // read with algorithm, above
      }
      if (key == "proxy_protocol_v2.enabled" || key == "stickiness.enabled") {
        std::string_view text = a.IsString() ? a.String() : std::string_view();
        if (a.IsBool()) text = a.Bool() ? "true" : "false";
        if (text != "true" && text != "false") return Error::Invalid(field + ": must be true or false");
        (key == "stickiness.enabled" ? tg.stickiness : tg.proxy_protocol_v2) = text == "true";
        continue;
      }
      if (key == "stickiness.type") {
        std::string_view text = a.IsString() ? a.String() : std::string_view();
        if (text != "lb_cookie" && text != "source_ip") {
          return Error::Invalid(field + ": must be lb_cookie (HTTP groups) or source_ip (TCP groups); got " +
                                a.Print());
        }
        tg.stickiness_type = std::string(text);
        continue;
      }
      int64_t value = 0;
      if (a.IsNumber()) {
        std::optional<int64_t> whole = Whole(a, 0, 999999999);
        if (!whole) return Error::Invalid(field + ": must be a whole number of seconds; got " + a.Print());
        value = *whole;
      } else if (a.IsString()) {
        std::string_view text = a.String();
        if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string_view::npos) {
          return Error::Invalid(field + ": must be a whole number of seconds; got \"" + std::string(text) + "\"");
        }
        value = std::stoll(std::string(text));
      } else {
        return Error::Invalid(field + ": must be a number or a string of digits");
      }
      if (key == "deregistration_delay.timeout_seconds") {
        if (value < 0 || value > 3600) return Error::Invalid(field + ": must be from 0 to 3600 seconds");
        tg.deregistration_delay_s = value;
      } else if (key == "slow_start.duration_seconds") {
        if (value != 0 && (value < 30 || value > 900)) {
          return Error::Invalid(field + ": must be 0 (off) or from 30 to 900 seconds");
        }
        tg.slow_start_s = value;
      } else if (key == "stickiness.lb_cookie.duration_seconds") {
        if (value < 1 || value > 604800) return Error::Invalid(field + ": must be from 1 to 604800 seconds (7 days)");
        tg.stickiness_cookie_s = value;
      } else {
        return Error::Invalid(field +
                              ": unknown attribute (known: deregistration_delay.timeout_seconds, "
                              "slow_start.duration_seconds, proxy_protocol_v2.enabled, stickiness.enabled, "
                              "stickiness.type, stickiness.lb_cookie.duration_seconds)");
      }
    }
  }
  // As ELB: the type is the protocol's own unless named, and a named one must fit the protocol.
  std::string own_type = tg.protocol == "HTTP" ? "lb_cookie" : "source_ip";
  if (tg.stickiness_type.empty()) tg.stickiness_type = own_type;
  if (tg.stickiness_type != own_type) {
    return Error::Invalid("attributes.stickiness.type: " + tg.stickiness_type + " is for " +
                          (tg.protocol == "HTTP" ? "TCP" : "HTTP") + " target groups; " +
                          (tg.protocol == "HTTP" ? "an HTTP" : "a TCP") + " group takes " + own_type);
  }
  if (tg.stickiness && tg.protocol == "UDP") {
    return Error::Invalid(
        "attributes.stickiness.enabled: UDP target groups keep each client on its target by its flow already");
  }
  if (tg.proxy_protocol_v2 && tg.protocol != "TCP") {
    return Error::Invalid(
        "attributes.proxy_protocol_v2.enabled: only TCP target groups send the PROXY protocol (HTTP targets get "
        "X-Forwarded-For)");
  }
  Result<HealthCheck> hc = ParseHealthCheck(body, tg.protocol);
  if (!hc) return hc.take_error();
  tg.check = std::move(hc.value());
  return tg;
}

Result<Listener> ParseListenerBody(json::View body) {
  Listener l;
  Result<int64_t> port = RequirePort(body, "port", "port");
  if (!port) return port.take_error();
  l.port = *port;
  Result<std::string> protocol = json::RequireString(body, "protocol", "protocol");
  if (!protocol) return protocol.take_error();
  if (Status s = CheckListenerProtocol(*protocol); !s) return s.take_error();
  l.protocol = std::move(protocol.value());
  bool tls = l.protocol == "HTTPS" || l.protocol == "TLS";
  json::View certs = body.Get("certificates");
  if (certs.valid() && !certs.IsNull()) {
    if (!tls) return Error::Invalid("certificates: only HTTPS and TLS listeners take certificates");
    if (!certs.IsArray() || certs.Size() < 1 || certs.Size() > 25) {
      return Error::Invalid("certificates: must be an array of 1-25 secret names");
    }
    size_t i = 0;
    for (json::View c : certs) {
      std::string field = "certificates[" + std::to_string(i++) + "]";
      if (!c.IsString()) return Error::Invalid(field + ": must be a secret's name");
      if (Status s = ValidateSecretName(c.String(), field); !s) return s.take_error();
      if (std::find(l.certificates.begin(), l.certificates.end(), c.String()) != l.certificates.end()) {
        return Error::Invalid(field + ": " + std::string(c.String()) + " is named twice");
      }
      l.certificates.emplace_back(c.String());
    }
  }
  if (tls && l.certificates.empty()) {
    return Error::Invalid("certificates: an " + l.protocol +
                          " listener needs at least one (the secret holding a certificate and its key)");
  }
  json::View redirect = body.Get("redirectToHttps");
  if (redirect.valid() && !redirect.IsNull()) {
    if (l.protocol != "HTTP") return Error::Invalid("redirectToHttps: only HTTP listeners redirect");
    if (!redirect.IsObject()) return Error::Invalid("redirectToHttps: must be an object {port, statusCode}");
    Result<int64_t> to = RequirePort(redirect, "port", "redirectToHttps.port");
    if (!to) return to.take_error();
    l.redirect_port = *to;
    if (json::View code = redirect.Get("statusCode"); code.valid()) {
      std::optional<int64_t> status = Whole(code, 301, 302);
      if (!status) return Error::Invalid("redirectToHttps.statusCode: must be 301 or 302");
      l.redirect_status = *status;
    }
  }
  json::View from = body.Get("proxyProtocolFrom");
  if (from.valid() && !from.IsNull()) {
    if (!from.IsArray() || from.Size() > 50) {
      return Error::Invalid("proxyProtocolFrom: must be an array of at most 50 CIDRs (10.0.0.0/8, fd00::/8)");
    }
    size_t i = 0;
    for (json::View c : from) {
      std::string field = "proxyProtocolFrom[" + std::to_string(i++) + "]";
      if (!c.IsString()) return Error::Invalid(field + ": must be a CIDR (10.0.0.0/8, fd00::/8)");
      if (Status s = CheckCidr(c.String(), field); !s) return s.take_error();
      l.proxy_protocol_from.emplace_back(c.String());
    }
    if (l.protocol == "UDP" && !l.proxy_protocol_from.empty()) {
      return Error::Invalid("proxyProtocolFrom: not for UDP listeners (a PROXY header begins a TCP stream)");
    }
  }
  json::View tgv = body.Get("defaultTargetGroup");
  if (l.redirect_port && (!tgv.valid() || tgv.IsNull())) return l;  // answers every request itself
  Result<std::string> tg = json::RequireString(body, "defaultTargetGroup", "defaultTargetGroup");
  if (!tg) return tg.take_error();
  l.default_target_group = TargetGroupNameFromArn(*tg);
  if (l.default_target_group.empty()) l.default_target_group = std::move(tg.value());
  if (Status s = ValidateLbName(l.default_target_group, "defaultTargetGroup"); !s) return s.take_error();
  return l;
}

Result<CertificatePem> SplitCertificateBundle(std::string_view pem) {
  CertificatePem out;
  size_t at = 0;
  while ((at = pem.find("-----BEGIN ", at)) != std::string_view::npos) {
    size_t label_end = pem.find("-----", at + 11);
    if (label_end == std::string_view::npos) break;
    std::string_view label = pem.substr(at + 11, label_end - at - 11);
    std::string end_marker = "-----END " + std::string(label) + "-----";
    size_t end = pem.find(end_marker, label_end);
    if (end == std::string_view::npos)
      return Error::Invalid("the PEM block " + std::string(label) + " has no END line");
    std::string block(pem.substr(at, end + end_marker.size() - at));
    block.push_back('\n');
    if (label == "CERTIFICATE") {
      out.cert_pem += block;
    } else if (label.ends_with("PRIVATE KEY")) {
      if (!out.key_pem.empty()) return Error::Invalid("it holds more than one PRIVATE KEY block");
      out.key_pem = std::move(block);
    }
    at = end + end_marker.size();
  }
  if (out.cert_pem.empty()) return Error::Invalid("it holds no CERTIFICATE block (PEM)");
  if (out.key_pem.empty()) return Error::Invalid("it holds no PRIVATE KEY block (PEM)");
  return out;
}

Result<ListenerRule> ParseRuleBody(json::View body) {
  ListenerRule r;
  json::View p = body.Get("priority");
  if (!p.valid()) return Error::Invalid("priority: required");
  std::optional<int64_t> priority = Whole(p, 1, 50000);
  if (!priority) return Error::Invalid("priority: must be a whole number from 1 to 50000");
  r.priority = *priority;
  Result<std::vector<std::string>> hosts = StringList(body, "hosts", CheckHost);
  if (!hosts) return hosts.take_error();
  r.hosts = std::move(hosts.value());
  Result<std::vector<std::string>> paths = StringList(body, "paths", CheckPath);
  if (!paths) return paths.take_error();
  r.paths = std::move(paths.value());
  if (r.hosts.empty() && r.paths.empty()) return Error::Invalid("a rule needs at least one of hosts and paths");
  Result<std::string> tg = json::RequireString(body, "targetGroup", "targetGroup");
  if (!tg) return tg.take_error();
  r.target_group = TargetGroupNameFromArn(*tg);
  if (r.target_group.empty()) r.target_group = std::move(tg.value());
  if (Status s = ValidateLbName(r.target_group, "targetGroup"); !s) return s.take_error();
  return r;
}

std::string TargetGroupDoc(const TargetGroup& tg) {
  return json::Doc::Object()
      .Set("cluster", tg.cluster)
      .Set("name", tg.name)
      .Set("protocol", tg.protocol)
      .Set("port", tg.port)
      .Set("algorithm", tg.algorithm)
      .Set("deregistrationDelaySeconds", tg.deregistration_delay_s)
      .Set("slowStartSeconds", tg.slow_start_s)
      .Set("healthCheck", HealthCheckJson(tg.check))
      .Set("proxyProtocolV2", tg.proxy_protocol_v2)
      .Set("stickiness", tg.stickiness)
      .Set("stickinessType", tg.stickiness_type)
      .Set("stickinessCookieSeconds", tg.stickiness_cookie_s)
      .Set("createdMs", tg.created_ms)
      .Print();
}

Result<TargetGroup> ParseTargetGroupDoc(std::string_view text) {
  Result<json::Doc> doc = json::Doc::Parse(text);
  if (!doc) return doc.take_error();
  json::View v = doc->view();
  TargetGroup tg;
  tg.cluster = std::string(v.Get("cluster").String());
  tg.name = std::string(v.Get("name").String());
  tg.arn = TargetGroupArn(tg.cluster, tg.name);
  tg.protocol = std::string(v.Get("protocol").String());
  tg.port = static_cast<int64_t>(v.Get("port").Number());
  tg.algorithm = std::string(v.Get("algorithm").String());
  tg.deregistration_delay_s = static_cast<int64_t>(v.Get("deregistrationDelaySeconds").Number());
  tg.slow_start_s = static_cast<int64_t>(v.Get("slowStartSeconds").Number());
  tg.created_ms = static_cast<int64_t>(v.Get("createdMs").Number());
  tg.proxy_protocol_v2 = v.Get("proxyProtocolV2").IsBool() && v.Get("proxyProtocolV2").Bool();
  // A group stored before stickiness has none, with ELB's defaults.
  tg.stickiness = v.Get("stickiness").IsBool() && v.Get("stickiness").Bool();
  tg.stickiness_type = v.Get("stickinessType").IsString() ? std::string(v.Get("stickinessType").String())
                       : tg.protocol == "HTTP"            ? "lb_cookie"
                                                          : "source_ip";
  if (v.Get("stickinessCookieSeconds").IsNumber()) {
    tg.stickiness_cookie_s = static_cast<int64_t>(v.Get("stickinessCookieSeconds").Number());
  }
  if (tg.cluster.empty() || tg.name.empty()) return Error::Invalid("a target group needs its cluster and name");
  if (Status s = CheckProtocol(tg.protocol, "protocol"); !s) return s.take_error();
  // A group stored before health checks has the default one.
  json::View hc = v.Get("healthCheck");
  Result<HealthCheck> check = ParseHealthCheck(hc.valid() ? hc : json::View(), tg.protocol);
  if (!check) return Error::Invalid("healthCheck." + check.error().message);
  tg.check = std::move(check.value());
  return tg;
}

json::Doc RuleDocJson(const ListenerRule& r) {
  return std::move(json::Doc::Object()
                       .Set("priority", r.priority)
                       .Set("hosts", Strings(r.hosts))
                       .Set("paths", Strings(r.paths))
                       .Set("targetGroup", r.target_group));
}

json::Doc ListenerDocJson(const Listener& l) {
  json::Doc rules = json::Doc::Array();
  for (const ListenerRule& r : l.rules) rules.Push(RuleDocJson(r));
  json::Doc out = json::Doc::Object();
  out.Set("port", l.port).Set("protocol", l.protocol);
  if (!l.default_target_group.empty()) out.Set("defaultTargetGroup", l.default_target_group);
  out.Set("rules", rules);
  if (!l.certificates.empty()) out.Set("certificates", Strings(l.certificates));
  if (l.redirect_port) {
    out.Set("redirectToHttps", json::Doc::Object().Set("port", l.redirect_port).Set("statusCode", l.redirect_status));
  }
  if (!l.proxy_protocol_from.empty()) out.Set("proxyProtocolFrom", Strings(l.proxy_protocol_from));
  return out;
}

std::string LoadBalancerDoc(const LoadBalancer& lb) {
  json::Doc listeners = json::Doc::Array();
  for (const Listener& l : lb.listeners) listeners.Push(ListenerDocJson(l));
  return json::Doc::Object()
      .Set("cluster", lb.cluster)
      .Set("name", lb.name)
      .Set("nodes", lb.nodes)
      .Set("createdMs", lb.created_ms)
      .Set("listeners", listeners)
      .Print();
}

Result<LoadBalancer> ParseLoadBalancerDoc(std::string_view text) {
  Result<json::Doc> doc = json::Doc::Parse(text);
  if (!doc) return doc.take_error();
  json::View v = doc->view();
  LoadBalancer lb;
  lb.cluster = std::string(v.Get("cluster").String());
  lb.name = std::string(v.Get("name").String());
  lb.arn = LoadBalancerArn(lb.cluster, lb.name);
  lb.nodes = std::string(v.Get("nodes").String());
  lb.created_ms = static_cast<int64_t>(v.Get("createdMs").Number());
  for (json::View l : v.Get("listeners")) lb.listeners.push_back(ReadListener(l));
  if (lb.cluster.empty() || lb.name.empty()) return Error::Invalid("a load balancer needs its cluster and name");
  return lb;
}

json::Doc TargetGroupJson(const TargetGroup& tg) {
  json::Doc attrs = json::Doc::Array();
  attrs.Push(json::Doc::Object()
                 .Set("key", "deregistration_delay.timeout_seconds")
                 .Set("value", std::to_string(tg.deregistration_delay_s)));
  attrs.Push(
      json::Doc::Object().Set("key", "slow_start.duration_seconds").Set("value", std::to_string(tg.slow_start_s)));
  attrs.Push(json::Doc::Object().Set("key", "load_balancing.algorithm.type").Set("value", tg.algorithm));
  attrs.Push(json::Doc::Object()
                 .Set("key", "proxy_protocol_v2.enabled")
                 .Set("value", tg.proxy_protocol_v2 ? "true" : "false"));
  attrs.Push(json::Doc::Object().Set("key", "stickiness.enabled").Set("value", tg.stickiness ? "true" : "false"));
  attrs.Push(json::Doc::Object().Set("key", "stickiness.type").Set("value", tg.stickiness_type));
  attrs.Push(json::Doc::Object()
                 .Set("key", "stickiness.lb_cookie.duration_seconds")
                 .Set("value", std::to_string(tg.stickiness_cookie_s)));
  json::Doc out = json::Doc::Object();
  out.Set("targetGroupName", tg.name)
      .Set("targetGroupArn", tg.arn)
      .Set("cluster", tg.cluster)
      .Set("protocol", tg.protocol)
      .Set("port", tg.port)
      .Set("algorithm", tg.algorithm)
      .Set("deregistrationDelaySeconds", tg.deregistration_delay_s)
      .Set("slowStartSeconds", tg.slow_start_s);
  // ELB's names, at the top level as DescribeTargetGroups has them.
  json::Doc hc = HealthCheckJson(tg.check);
  for (json::View f : hc.view()) out.Set(f.Key(), json::Doc::Copy(f));
  out.Set("attributes", attrs).Set("createdAt", UtcIso8601(tg.created_ms));
  return out;
}

Result<TargetGroup> ModifyTargetGroupBody(const TargetGroup& current, json::View body) {
  if (!body.IsObject()) return Error::Invalid("body: must be a JSON object");
  static constexpr std::string_view kHealthKeys[] = {
      "healthCheckEnabled",         "healthCheckProtocol",       "healthCheckPath",       "matcher",
      "healthCheckIntervalSeconds", "healthCheckTimeoutSeconds", "healthyThresholdCount", "unhealthyThresholdCount"};
  json::Doc merged = json::Doc::Object();
  merged.Set("name", current.name).Set("protocol", current.protocol).Set("port", current.port);
  for (json::View f : body) {
    std::string_view key = f.Key();
    if (key == "cluster") continue;  // which group, not a change
    if (key == "name" || key == "protocol" || key == "port") {
      if (f.Print() == merged.view().Get(key).Print()) continue;
      return Error::Invalid(std::string(key) + ": a target group's " + std::string(key) +
                            " cannot change (create another group and move the services to it)");
    }
    if (key == "algorithm" || key == "attributes") continue;  // merged below
    if (std::find(std::begin(kHealthKeys), std::end(kHealthKeys), key) == std::end(kHealthKeys)) {
      return Error::Invalid(std::string(key) +
                            ": unknown field (a change takes algorithm, attributes and the health check's fields)");
    }
  }
  // The attributes as they are, each named in the body replaced.
  json::Doc attrs = json::Doc::Object();
  json::Doc shown = TargetGroupJson(current);
  for (json::View a : shown.view().Get("attributes")) {
    if (a.Get("key").String() == "load_balancing.algorithm.type") continue;  // the algorithm, below
    attrs.Set(a.Get("key").String(), a.Get("value").String());
  }
  json::View changed = body.Get("attributes");
  if (changed.valid() && !changed.IsNull()) {
    if (!changed.IsObject()) return Error::Invalid("attributes: must be an object of attribute names to values");
    for (json::View a : changed) attrs.Set(a.Key(), json::Doc::Copy(a));
  }
  merged.Set("attributes", attrs);
  json::View algorithm = body.Get("algorithm");
  if (!algorithm.valid() && !changed.Get("load_balancing.algorithm.type").valid()) {
    merged.Set("algorithm", current.algorithm);
  } else if (algorithm.valid()) {
    merged.Set("algorithm", json::Doc::Copy(algorithm));
  }
  // The health check as it is, each field the body gives replaced. A check turned
  // to TCP leaves its HTTP-only fields behind, unless the body gives them itself.
  json::Doc hc = HealthCheckJson(current.check);
  for (std::string_view key : kHealthKeys) {
    if (json::View f = body.Get(key); f.valid()) hc.Set(key, json::Doc::Copy(f));
  }
  json::View protocol = hc.view().Get("healthCheckProtocol");
  bool http = protocol.IsString() && protocol.String() == "HTTP";
  for (json::View f : hc.view()) {
    bool http_only = f.Key() == "healthCheckPath" || f.Key() == "matcher";
    if (http_only && !http && !body.Get(f.Key()).valid()) continue;
    merged.Set(f.Key(), json::Doc::Copy(f));
  }
  Result<TargetGroup> tg = ParseTargetGroupBody(merged.view(), current.cluster);
  if (!tg) return tg.take_error();
  tg->created_ms = current.created_ms;
  return tg;
}

json::Doc LoadBalancerJson(const LoadBalancer& lb) {
  json::Doc listeners = json::Doc::Array();
  for (const Listener& l : lb.listeners) {
    json::Doc x = ListenerDocJson(l);
    x.Set("listenerArn", ListenerArn(lb.cluster, lb.name, l.port));
    listeners.Push(x);
  }
  return std::move(json::Doc::Object()
                       .Set("loadBalancerName", lb.name)
                       .Set("loadBalancerArn", lb.arn)
                       .Set("cluster", lb.cluster)
                       .Set("nodes", lb.nodes)
                       .Set("listeners", listeners)
                       .Set("createdAt", UtcIso8601(lb.created_ms)));
}

}  // namespace berth::model
