// Rule matching, balancing, ejection and retry decisions (balance.h).
#include "proxy/balance.h"

#include <strings.h>

#include <algorithm>
#include <cctype>

#include "base/crypto.h"

namespace berth::proxy {
namespace {

// FNV-1a over `bytes`, continuing from `h`.
uint64_t Fnv(uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// SplitMix64's finalizer: spreads FNV's weak low bits over the whole word.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

bool SameChar(char a, char b, bool fold) {
  if (!fold) return a == b;
  return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
}

// Glob match where `*` takes at least `star_min` characters. Greedy with
// backtracking to the last star only: O(|p|·|t|) at worst, no recursion.
bool Glob(std::string_view p, std::string_view t, size_t star_min, bool fold, bool question) {
  size_t pi = 0, ti = 0;
  size_t star = std::string_view::npos, star_t = 0;
  while (ti < t.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      star_t = ti + star_min;
      if (star_t > t.size()) return false;
      ti = star_t;
    } else if (pi < p.size() && ((question && p[pi] == '?') || SameChar(p[pi], t[ti], fold))) {
      pi++;
      ti++;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++star_t;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*' && star_min == 0) pi++;
  return pi == p.size();
}

bool AnyMatches(const std::vector<std::string>& patterns, std::string_view text, bool host) {
  if (patterns.empty()) return true;
  for (const std::string& p : patterns) {
    if (host ? HostMatches(p, text) : PathMatches(p, text)) return true;
  }
  return false;
}

}  // namespace

bool HostMatches(std::string_view pattern, std::string_view host) { return Glob(pattern, host, 1, true, false); }

bool PathMatches(std::string_view pattern, std::string_view path) { return Glob(pattern, path, 0, false, true); }

std::string_view HostWithoutPort(std::string_view host) {
  if (!host.empty() && host[0] == '[') {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  size_t colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

const std::string& MatchGroup(const Listener& listener, std::string_view host, std::string_view path) {
  std::string_view bare = HostWithoutPort(host);
  for (const Rule& r : listener.rules) {
    if (AnyMatches(r.hosts, bare, true) && AnyMatches(r.paths, path, false)) return r.target_group;
  }
  return listener.default_target_group;
}

Result<std::string> RedirectLocation(std::string_view host_header, std::string_view target, int port) {
  std::string_view host = host_header;
  std::string_view rest = target;
  auto starts = [](std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && strncasecmp(s.data(), prefix.data(), prefix.size()) == 0;
  };
  if (target == "*") {
    rest = "/";
  } else if (starts(target, "http://") || starts(target, "https://")) {
    std::string_view after = target.substr(target.find("//") + 2);
    size_t slash = after.find_first_of("/?");
    host = after.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view("/") : after.substr(slash);
  } else if (target.empty() || target[0] != '/') {
    return Error::Invalid("the request target must be a path or an absolute URL");
  }
  host = HostWithoutPort(host);
  if (host.empty()) return Error::Invalid("the request has no Host header to redirect to");
  bool literal = host.front() == '[';
  for (char c : literal ? host.substr(1, host.size() - 2) : host) {
    bool ok = isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' || (literal && c == ':');
    if (!ok) return Error::Invalid("the Host header is not a host name or address");
  }
  if (literal && host.back() != ']') return Error::Invalid("the Host header is not a host name or address");
  std::string out = "https://" + std::string(host);
  if (port != 443) out += ":" + std::to_string(port);
  if (!rest.empty() && rest[0] == '?') out += "/";
  out += rest;
  return out;
}

double SlowStartWeight(int64_t since_ms, int64_t slow_start_ms) {
  if (slow_start_ms <= 0 || since_ms >= slow_start_ms) return 1.0;
  return 0.1 + 0.9 * static_cast<double>(std::max<int64_t>(since_ms, 0)) / static_cast<double>(slow_start_ms);
}

size_t Choose(Algorithm algorithm, const std::vector<Load>& loads, std::mt19937& rng, uint64_t* cursor) {
  size_t n = loads.size();
  if (n == 1) return 0;
  auto cost = [&](size_t i, uint32_t load) { return (load + 1.0) / loads[i].weight; };
  switch (algorithm) {
    case Algorithm::kLeastOutstandingRequests: {
      size_t a = std::uniform_int_distribution<size_t>(0, n - 1)(rng);
      size_t b = std::uniform_int_distribution<size_t>(0, n - 2)(rng);
      if (b >= a) b++;  // two distinct choices
      return cost(b, loads[b].outstanding) < cost(a, loads[a].outstanding) ? b : a;
    }
    case Algorithm::kLeastConnections: {
      size_t start = (*cursor)++ % n;
      size_t best = start;
      for (size_t k = 1; k < n; k++) {
        size_t i = (start + k) % n;
        if (cost(i, loads[i].connections) < cost(best, loads[best].connections)) best = i;
      }
      return best;
    }
    case Algorithm::kRoundRobin: {
      std::uniform_real_distribution<double> chance(0.0, 1.0);
      for (size_t k = 0; k < n; k++) {
        size_t i = (*cursor)++ % n;
        if (loads[i].weight >= 1.0 || chance(rng) < loads[i].weight) return i;
      }
      return (*cursor)++ % n;  // every one passed over in this round: the next anyway
    }
  }
  return 0;
}

bool Ejection::Fail(int64_t now_ms, size_t ejected_in_group, size_t group_size, const EjectionPolicy& policy) {
  failures_++;
  if (failures_ < policy.failures || Ejected(now_ms)) return false;
  if ((ejected_in_group + 1) * 2 > group_size) return false;  // never more than half of a group
  int64_t span = next_span_ms_ == 0 ? policy.first_ms : next_span_ms_;
  until_ms_ = now_ms + span;
  next_span_ms_ = std::min(span * 2, policy.max_ms);
  failures_ = 0;
  return true;
}

void Ejection::Succeed() {
  failures_ = 0;
  next_span_ms_ = 0;
}

bool Attempts::WasTried(size_t target) const { return std::find(tried_.begin(), tried_.end(), target) != tried_.end(); }

std::string StickyToken(std::string_view group, std::string_view target_id) {
  std::string input;
  input.reserve(group.size() + target_id.size() + 1);
  input.append(group).push_back('\n');  // no name holds a newline, so the pair is unambiguous
  input.append(target_id);
  return crypto::Hex(crypto::Sha256(input).data(), 16);
}

std::string_view CookieValue(std::string_view header, std::string_view name) {
  constexpr size_t kMaxPairs = 64, kMaxValue = 64;
  size_t pairs = 0;
  while (!header.empty() && pairs++ < kMaxPairs) {
    size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    size_t start = pair.find_first_not_of(" \t");
    if (start == std::string_view::npos) continue;
    pair.remove_prefix(start);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = pair.substr(0, eq);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
    if (key != name) continue;
    std::string_view value = pair.substr(eq + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    return value.substr(0, kMaxValue);
  }
  return {};
}

size_t ChooseByHash(std::string_view client, const std::vector<std::string_view>& ids) {
  uint64_t base = Fnv(0xcbf29ce484222325ULL, client);
  size_t best = 0;
  uint64_t best_score = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    uint64_t score = Mix(Fnv(Fnv(base, "\n"), ids[i]));
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

}  // namespace berth::proxy
