// The libuv binding: the only place besides the stream and listener code that
// touches uv_* handles. Each wrapper owns its handle and closes it on destruction;
// the handle memory lives until libuv's close callback, so a wrapper may be
// destroyed at any time on the loop thread, even from inside its own callback.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/result.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net {

// A one-shot or repeating timer.
class Timer {
 public:
  explicit Timer(uv_loop_t* loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // (Re)arms the timer: `cb` fires after `timeout_ms`, then every `repeat_ms` if non-zero.
  void Start(uint64_t timeout_ms, uint64_t repeat_ms, std::function<void()> cb);
  // Re-arms with the callback given to the last Start.
  void Again(uint64_t timeout_ms);
  void Stop();
  // Keeps the loop from exiting only while something else is active.
  void Unref();

 private:
  struct Impl;
  Impl* impl_;
};

// Runs a callback once per loop iteration after I/O callbacks (uv_check), while
// armed. Used for group commit: everything submitted during one iteration's I/O
// is flushed together.
class AfterIo {
 public:
  AfterIo(uv_loop_t* loop, std::function<void()> cb);
  ~AfterIo();
  AfterIo(const AfterIo&) = delete;
  AfterIo& operator=(const AfterIo&) = delete;
  // Arms for the current iteration; also forces the loop's poll not to block, so
  // the callback runs promptly even if no further I/O arrives.
  void Arm();

 private:
  struct Impl;
  Impl* impl_;
};

// Delivers SIGINT/SIGTERM (or any signal) on the loop thread.
class SignalWatch {
 public:
  SignalWatch(uv_loop_t* loop, int signum, std::function<void(int)> cb);
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

 private:
  struct Impl;
  Impl* impl_;
};

// The process's event loop (libuv's default loop), for the programs' mains.
uv_loop_t* DefaultLoop();
// Runs `loop` until StopLoop (or until nothing keeps it alive).
void RunLoop(uv_loop_t* loop);
// Makes RunLoop return after the current iteration.
void StopLoop(uv_loop_t* loop);
// One iteration that does not wait: lets handle closes and finished work run.
void RunLoopNoWait(uv_loop_t* loop);
// Runs `loop` until `done()` is true (checked after each iteration, which may
// wait for I/O or a timer) or nothing keeps it alive; returns done().
bool RunLoopUntil(uv_loop_t* loop, const std::function<bool()>& done);

// Returns a libuv error code as "ECONNREFUSED: connection refused".
std::string UvError(int code);

// Monotonic loop time in milliseconds (cached per iteration).
uint64_t LoopNowMs(uv_loop_t* loop);

// Measures how late the loop runs a 100 ms timer; `report` receives the lag in seconds.
class LagProbe {
 public:
  LagProbe(uv_loop_t* loop, std::function<void(double)> report);

 private:
  Timer timer_;
  uint64_t expected_ns_ = 0;
  std::function<void(double)> report_;
};

}  // namespace berth::net
