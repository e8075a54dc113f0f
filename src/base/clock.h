// The clock seam: code that needs "now" takes a Clock so tests can run on
// simulated time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace berth {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock milliseconds since the Unix epoch (for timestamps users see).
  virtual int64_t NowUnixMs() const = 0;
  // Monotonic nanoseconds (for durations).
  virtual int64_t MonotonicNs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowUnixMs() const override;
  int64_t MonotonicNs() const override;
  static SystemClock& Get();
};

// "2026-12-05T21:25:23Z": a Unix time in milliseconds as UTC ISO 8601, to the second.
std::string UtcIso8601(int64_t unix_ms);
// The reverse, for "YYYY-MM-DDTHH:MM:SSZ" (as UtcIso8601 prints); nullopt otherwise.
std::optional<int64_t> ParseUtcIso8601(std::string_view text);

// A clock that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t unix_ms = 1700000000000) : unix_ms_(unix_ms) {}
  int64_t NowUnixMs() const override { return unix_ms_; }
  int64_t MonotonicNs() const override { return mono_ns_; }
  void Advance(int64_t ms) {
    unix_ms_ += ms;
    mono_ns_ += ms * 1000000;
  }

 private:
  int64_t unix_ms_;
  int64_t mono_ns_ = 0;
};

}  // namespace berth
