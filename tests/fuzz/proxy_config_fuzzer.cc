// Fuzzes the proxy's configuration parser (proxy::ParseConfig), which reads a
// file an operator wrote or a document the server sent, and the rule matching a
// request's Host and path go through.
//
// Invariants checked besides the sanitizers: a document that parses refers only
// to groups it defines, with the listener's protocol, uses each port once, keeps
// rules in ascending priority; a refusal always says what and where; matching
// any Host and path against it picks one of its groups.
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
    if (!g || g->protocol != l.protocol) fuzz::Fail("a default group missing or of another protocol", l.Key());
    for (size_t i = 0; i + 1 < l.rules.size(); i++) {
      if (l.rules[i].priority > l.rules[i + 1].priority) fuzz::Fail("rules out of order", l.Key());
    }
    std::string_view host = nl == std::string_view::npos ? text : text.substr(0, nl);
    std::string_view path = nl == std::string_view::npos ? text : text.substr(nl + 1);
    const std::string& picked = proxy::MatchGroup(l, host, path);
    if (!c->FindGroup(picked)) fuzz::Fail("a rule picked a group that does not exist", picked);
  }
  return 0;
}
