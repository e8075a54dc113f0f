#include "net/uv.h"

#include <uv.h>

#include <cstdlib>

namespace berth::net {

std::string UvError(int code) { return std::string(uv_err_name(code)) + ": " + uv_strerror(code); }

uint64_t LoopNowMs(uv_loop_t* loop) { return uv_now(loop); }

// --- Timer ---

struct Timer::Impl {
  uv_timer_t handle;
  std::function<void()> cb;
};

Timer::Timer(uv_loop_t* loop) : impl_(new Impl()) {
  uv_timer_init(loop, &impl_->handle);
  impl_->handle.data = impl_;
}

Timer::~Timer() {
  uv_timer_stop(&impl_->handle);
  impl_->cb = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&impl_->handle), [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
}

void Timer::Start(uint64_t timeout_ms, uint64_t repeat_ms, std::function<void()> cb) {
  impl_->cb = std::move(cb);
  uv_timer_start(
      &impl_->handle,
      [](uv_timer_t* h) {
        auto* impl = static_cast<Impl*>(h->data);
        if (impl->cb) {
          // Copy: the callback may restart or destroy this timer.
          auto cb = impl->cb;
          cb();
        }
      },
      timeout_ms, repeat_ms);
}

void Timer::Again(uint64_t timeout_ms) {
  uv_timer_start(
      &impl_->handle,
      [](uv_timer_t* h) {
        auto* impl = static_cast<Impl*>(h->data);
        if (impl->cb) {
          auto cb = impl->cb;
          cb();
        }
      },
      timeout_ms, 0);
}

void Timer::Stop() { uv_timer_stop(&impl_->handle); }
void Timer::Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&impl_->handle)); }

// --- AfterIo ---

struct AfterIo::Impl {
  uv_check_t check;
  uv_idle_t idle;  // active only while armed, so the poll phase does not block
  std::function<void()> cb;
  bool armed = false;
};

AfterIo::AfterIo(uv_loop_t* loop, std::function<void()> cb) : impl_(new Impl()) {
  impl_->cb = std::move(cb);
  uv_check_init(loop, &impl_->check);
  uv_idle_init(loop, &impl_->idle);
  impl_->check.data = impl_;
  impl_->idle.data = impl_;
}

AfterIo::~AfterIo() {
  uv_check_stop(&impl_->check);
  uv_idle_stop(&impl_->idle);
  impl_->cb = nullptr;
  // Two handles: free the Impl when the second close completes.
  // libuv finishes closes last-closed first, reading the next handle of its list
  // before each callback: the handle whose callback frees both closes first.
  uv_close(reinterpret_cast<uv_handle_t*>(&impl_->idle), [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
  uv_close(reinterpret_cast<uv_handle_t*>(&impl_->check), nullptr);
}

void AfterIo::Arm() {
  if (impl_->armed) return;
  impl_->armed = true;
  uv_idle_start(&impl_->idle, [](uv_idle_t*) {});
  uv_check_start(&impl_->check, [](uv_check_t* h) {
    auto* impl = static_cast<Impl*>(h->data);
    impl->armed = false;
    uv_check_stop(&impl->check);
    uv_idle_stop(&impl->idle);
    if (impl->cb) impl->cb();
  });
}

// --- SignalWatch ---

struct SignalWatch::Impl {
  uv_signal_t handle;
  std::function<void(int)> cb;
};

SignalWatch::SignalWatch(uv_loop_t* loop, int signum, std::function<void(int)> cb) : impl_(new Impl()) {
  impl_->cb = std::move(cb);
  uv_signal_init(loop, &impl_->handle);
  impl_->handle.data = impl_;
  uv_signal_start(
      &impl_->handle,
      [](uv_signal_t* h, int sig) {
        auto* impl = static_cast<Impl*>(h->data);
        if (impl->cb) impl->cb(sig);
      },
      signum);
  uv_unref(reinterpret_cast<uv_handle_t*>(&impl_->handle));
}

SignalWatch::~SignalWatch() {
  uv_signal_stop(&impl_->handle);
  impl_->cb = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&impl_->handle), [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
}

uv_loop_t* DefaultLoop() { return uv_default_loop(); }
void RunLoop(uv_loop_t* loop) { uv_run(loop, UV_RUN_DEFAULT); }
void StopLoop(uv_loop_t* loop) { uv_stop(loop); }
void RunLoopNoWait(uv_loop_t* loop) { uv_run(loop, UV_RUN_NOWAIT); }
bool RunLoopUntil(uv_loop_t* loop, const std::function<bool()>& done) {
  while (!done()) {
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !done()) return false;
  }
  return true;
}

// --- LagProbe ---

LagProbe::LagProbe(uv_loop_t* loop, std::function<void(double)> report) : timer_(loop), report_(std::move(report)) {
  expected_ns_ = uv_hrtime() + 100000000;
  timer_.Start(100, 100, [this] {
    uint64_t now = uv_hrtime();
    double lag = now > expected_ns_ ? static_cast<double>(now - expected_ns_) / 1e9 : 0.0;
    report_(lag);
    expected_ns_ = now + 100000000;
  });
  timer_.Unref();
}

}  // namespace berth::net
