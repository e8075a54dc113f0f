#include "base/clock.h"

#include <ctime>

namespace berth {

int64_t SystemClock::NowUnixMs() const {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t SystemClock::MonotonicNs() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string UtcIso8601(int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  tm v{};
  gmtime_r(&secs, &v);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &v);
  return buf;
}

std::optional<int64_t> ParseUtcIso8601(std::string_view text) {
  // Exactly 20 characters: digits where digits go, the separators in place.
  constexpr std::string_view kShape = "0000-00-00T00:00:00Z";
  if (text.size() != kShape.size()) return std::nullopt;
  for (size_t i = 0; i < text.size(); i++) {
    bool digit = text[i] >= '0' && text[i] <= '9';
    if (kShape[i] == '0' ? !digit : text[i] != kShape[i]) return std::nullopt;
  }
  auto num = [&](size_t at, size_t n) {
    int v = 0;
    for (size_t i = at; i < at + n; i++) v = v * 10 + (text[i] - '0');
    return v;
  };
  tm v{};
  v.tm_year = num(0, 4) - 1900;
  v.tm_mon = num(5, 2) - 1;
  v.tm_mday = num(8, 2);
  v.tm_hour = num(11, 2);
  v.tm_min = num(14, 2);
  v.tm_sec = num(17, 2);
  if (v.tm_mon > 11 || v.tm_mday < 1 || v.tm_mday > 31 || v.tm_hour > 23 || v.tm_min > 59 || v.tm_sec > 60) {
    return std::nullopt;
  }
  return static_cast<int64_t>(timegm(&v)) * 1000;
}

SystemClock& SystemClock::Get() {
  static SystemClock clock;
  return clock;
}

}  // namespace berth
