// Fuzzes the proxy's configuration parser (proxy::ParseConfig), which reads a
// file an operator wrote or a document the server sent, and the rule matching a
// request's Host and path go through.
//
// Also the Cookie header parsing of sticky groups, the Location a redirectToHttps listener builds from a request's Host
// and target, and the certificates a document carries (PEM parsed by mbedTLS).
//
// Invariants checked besides the sanitizers: a document that parses refers only
// to groups it defines, with the protocol the listener forwards to (a redirect
// needs none), to certificates it defines (an HTTPS or TLS listener has one),
// uses each port once, keeps rules in ascending priority; a refusal always says
// what and where; matching any Host and path against it picks one of its
// groups; a Location is https:// and a host with no byte that could end a header.
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "proxy/balance.h"
#include "proxy/config.h"

using namespace berth;

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The same bytes as a pattern and a subject, split at the first newline.
  size_t nl = text.find('\n');
  if (nl != std::string_view::npos) {
    (void)proxy::HostMatches(text.substr(0, nl), text.substr(nl + 1));
    (void)proxy::PathMatches(text.substr(0, nl), text.substr(nl + 1));
    (void)proxy::HostWithoutPort(text.substr(nl + 1));
    // A client's Cookie header: the value found is part of it.
    std::string_view header = text.substr(nl + 1);
    std::string_view value = proxy::CookieValue(header, text.substr(0, nl));
    if (!value.empty() &&
        (value.data() < header.data() || value.data() + value.size() > header.data() + header.size())) {
      fuzz::Fail("a cookie value outside its header", value);
    }
    auto location = proxy::RedirectLocation(text.substr(0, nl), text.substr(nl + 1), 8443);
    if (location.ok()) {
      if (location->rfind("https://", 0) != 0) fuzz::Fail("a Location not https", *location);
      std::string_view host = std::string_view(*location).substr(8);
      host = host.substr(0, host.find_first_of("/?"));
      if (host.find_first_of("\r\n \t@") != std::string_view::npos) fuzz::Fail("a Location host", *location);
    }
  }
  Result<proxy::Config> c = proxy::ParseConfig(text);
  if (!c) {
    if (c.error().message.find(": ") == std::string::npos) fuzz::Fail("a refusal without a path", c.error().message);
    return 0;
  }
  std::set<std::string> keys;
  for (const proxy::Listener& l : c->listeners) {
    if (!keys.insert(l.Key()).second) fuzz::Fail("a port used twice", l.Key());
    const proxy::TargetGroup* g = c->FindGroup(l.default_target_group);
    if (!(l.redirect && l.default_target_group.empty()) && (!g || g->protocol != proxy::TargetProtocol(l.protocol))) {
      fuzz::Fail("a default group missing or of another protocol", l.Key());
    }
    if (proxy::Terminates(l.protocol) && l.certificates.empty())
      fuzz::Fail("a TLS listener without a certificate", l.Key());
    for (const std::string& name : l.certificates) {
      const proxy::Certificate* cert = c->FindCertificate(name);
      if (!cert || !cert->identity) fuzz::Fail("a listener's certificate missing or unparsed", name);
    }
    for (size_t i = 0; i + 1 < l.rules.size(); i++) {
      if (l.rules[i].priority > l.rules[i + 1].priority) fuzz::Fail("rules out of order", l.Key());
    }
    std::string_view host = nl == std::string_view::npos ? text : text.substr(0, nl);
    std::string_view path = nl == std::string_view::npos ? text : text.substr(nl + 1);
    const std::string& picked = proxy::MatchGroup(l, host, path);
    if (!l.redirect && !c->FindGroup(picked)) fuzz::Fail("a rule picked a group that does not exist", picked);
  }
  return 0;
}
