#include "net/url.h"

#include <string>

namespace berth::net {

Result<Endpoint> ParseOrigin(std::string_view url, int default_port) {
  size_t scheme = url.find("://");
  if (scheme == std::string_view::npos || (!url.starts_with("https://") && !url.starts_with("http://"))) {
    return Error::Invalid("not an absolute http(s) URL: " + std::string(url));
  }
  std::string_view origin = url.substr(0, url.find_first_of("/?#", scheme + 3));
  Result<Endpoint> e = Endpoint::Parse(origin, default_port);
  if (!e) return e;
  if (e->kind != Endpoint::Kind::kTcp || e->host.empty() || e->port <= 0) {
    return Error::Invalid("a URL without a host and port: " + std::string(url));
  }
  return e;
}

Result<std::vector<Endpoint>> ParseServerList(std::string_view text, int default_port) {
  std::vector<Endpoint> out;
  for (size_t at = 0; at <= text.size();) {
    size_t comma = std::min(text.find(',', at), text.size());
    std::string_view one = text.substr(at, comma - at);
    at = comma + 1;
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    if (one.empty()) continue;
    Result<Endpoint> e = Endpoint::Parse(one, default_port);
    if (!e) return Error::Invalid("server address " + std::string(one) + ": " + e.error().message);
    bool known = false;
    for (const Endpoint& k : out) {
      known = known || (k.kind == e->kind && k.tls == e->tls && k.ToString() == e->ToString());
    }
    if (!known) out.push_back(e.value());
  }
  if (out.empty()) return Error::Invalid("no server address");
  return out;
}

}  // namespace berth::net
