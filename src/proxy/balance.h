// The proxy's decisions, apart from its sockets so tests drive them directly:
// which rule a request matches, which target a balancer picks, when a target is
// ejected, and when a failed attempt may be retried.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "proxy/config.h"

namespace berth::proxy {

// `*` matches one or more characters, case-insensitively (the contract's host rules).
bool HostMatches(std::string_view pattern, std::string_view host);
// `*` matches any run of characters (none included), `?` exactly one.
bool PathMatches(std::string_view pattern, std::string_view path);
// The Host header without its port ("a.example.com:8080" → "a.example.com", "[::1]:80" → "[::1]").
std::string_view HostWithoutPort(std::string_view host);
// The target group for a request: the first rule in ascending priority whose
// hosts and paths both match (an empty list matches all), else the listener's default.
const std::string& MatchGroup(const Listener& listener, std::string_view host, std::string_view path);
// Where a redirectToHttps listener sends a request: "https://" + the host (of an
// absolute-form request target, else of the Host header) without its port, then
// ":port" unless the port is 443, then the request target's path and query
// ("*" becomes "/"). Refused: no host, a host with characters a DNS name or an
// address literal has not, a target that is neither origin-form nor absolute.
Result<std::string> RedirectLocation(std::string_view host_header, std::string_view target, int port);

// What a balancer sees of one usable target on one worker.
struct Load {
  uint32_t outstanding = 0;  // requests in flight
  uint32_t connections = 0;  // client connections (TCP) or upstream connections in use (HTTP)
  // The share of a full target it takes, in (0, 1]: below 1 during slow start.
  double weight = 1.0;
};

// A target's weight `since_ms` after it became healthy, in a group whose slow
// start lasts `slow_start_ms` (0: none): from a tenth up to whole, linearly, as
// ELB ramps a new target's share.
double SlowStartWeight(int64_t since_ms, int64_t slow_start_ms);

// Picks one of `loads` (non-empty) by `algorithm`; returns its index. Loads
// are compared as (load + 1) / weight, so a target in slow start takes its share.
// least_outstanding_requests: the less loaded of two distinct random choices;
// least_connections: the fewest connections, ties broken from `*cursor` on;
// round_robin: `*cursor` onwards in turn, a target in slow start passed over
// with the chance it lacks of a whole weight. `*cursor` advances.
size_t Choose(Algorithm algorithm, const std::vector<Load>& loads, std::mt19937& rng, uint64_t* cursor);

// Stickiness (docs/load-balancing.md). The cookie that pins an HTTP client.
inline constexpr std::string_view kStickyCookie = "BERTHLB";
// The opaque value of kStickyCookie for one target of one group: 32 hex digits
// of SHA-256 over both names, the same on every proxy, revealing no address.
std::string StickyToken(std::string_view group, std::string_view target_id);
// The value of the cookie `name` in one Cookie header's value
// ("a=1; BERTHLB=ab12"), spaces around pairs allowed; empty when absent. At
// most 64 pairs are looked at, and a value is taken only up to 64 bytes.
std::string_view CookieValue(std::string_view header, std::string_view name);
// Rendezvous (highest random weight) hashing: the index in `ids` (non-empty)
// whose hash with `client` is highest. Removing one id moves only the clients
// that had it; the others keep theirs.
size_t ChooseByHash(std::string_view client, const std::vector<std::string_view>& ids);

// Passive ejection of one target on one worker: after `failures` consecutive
// failures (connect failures or 5xx) the target takes nothing for a span that
// starts at first_ms and doubles with each ejection that follows, up to max_ms;
// a success resets both. At most half of a group is ejected at once.
struct EjectionPolicy {
  int failures = 3;
  int64_t first_ms = 1000;
  int64_t max_ms = 30000;
};

class Ejection {
 public:
  bool Ejected(int64_t now_ms) const { return now_ms < until_ms_; }
  // Counts a failure; ejects when the count reaches the policy's and
  // (ejected_in_group + 1) is at most half of group_size. Returns true when it ejected.
  bool Fail(int64_t now_ms, size_t ejected_in_group, size_t group_size, const EjectionPolicy& policy);
  void Succeed();
  int64_t until_ms() const { return until_ms_; }
  int consecutive_failures() const { return failures_; }

 private:
  int failures_ = 0;
  int64_t until_ms_ = 0;
  int64_t next_span_ms_ = 0;  // 0: the policy's first span
};

// The attempts of one request: the first plus at most kMaxRetries more, each
// on a target not tried before, and only while the request can be replayed.
class Attempts {
 public:
  static constexpr int kMaxRetries = 2;
  void Tried(size_t target) { tried_.push_back(target); }
  bool WasTried(size_t target) const;
  // True if another attempt may follow a failed one.
  bool MayRetry(bool replayable) const { return replayable && !tried_.empty() && tried_.size() <= kMaxRetries; }
  size_t count() const { return tried_.size(); }

 private:
  std::vector<size_t> tried_;
};

}  // namespace berth::proxy
