// The agent's calls to the engine, bounded and ordered. At most `limit` calls are
// in flight; the rest wait in three lanes, and a free slot goes to the first
// waiting call of the most urgent lane: stops and removals before looks (inspect,
// list) before starts (create, start). A waiting call may be asked, just before
// it is issued, whether it is still wanted: a create or start of a task that has
// since been told to stop is dropped, never issued.
//
// Why: Docker serialises much of its work; hundreds of creates issued at once
// queue inside the engine (and in our connection pool, first come first served),
// time out, and hold up the stops a scale-down sends after them. The limit is
// `berth agent --docker-concurrency` (docs/decisions.md has how it was chosen).
#pragma once

#include <array>
#include <cstddef>
#include <deque>
#include <functional>

namespace berth::agent {

enum class Lane { kStop = 0, kLook = 1, kStart = 2 };

class CallQueue {
 public:
  // Called with the function to call once the engine has answered (exactly once).
  using Call = std::function<void(std::function<void()> finished)>;

  explicit CallQueue(size_t limit) : limit_(limit < 1 ? 1 : limit) {}

  // Queues `call` in `lane`. `wanted`, if given, is asked right before the call
  // would be issued; false drops it, and `dropped` (if given) runs instead.
  void Push(Lane lane, Call call, std::function<bool()> wanted = nullptr, std::function<void()> dropped = nullptr);

  size_t in_flight() const { return in_flight_; }
  size_t waiting() const;
  size_t limit() const { return limit_; }
  // The most that were ever in flight at once (for tests and metrics).
  size_t peak() const { return peak_; }
  // Calls dropped because they were no longer wanted.
  size_t dropped() const { return dropped_; }

 private:
  struct Item {
    Call call;
    std::function<bool()> wanted;
    std::function<void()> dropped;
  };
  void Pump();

  size_t limit_;
  size_t in_flight_ = 0;
  size_t peak_ = 0;
  size_t dropped_ = 0;
  bool pumping_ = false;
  std::array<std::deque<Item>, 3> lanes_;
};

}  // namespace berth::agent
