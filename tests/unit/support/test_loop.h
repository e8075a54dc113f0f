// Test support for code on the event loop: a private uv loop that runs until a
// condition holds, a temporary directory, and a raw byte connection for speaking
// HTTP by hand. Header-only; every test that touches sockets binds 127.0.0.1:0.
#pragma once

#include <stdlib.h>

#include <uv.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/socket.h"
#include "net/stream.h"

namespace berth::testing {

// A libuv loop owned by one test. Objects using it must be destroyed before it.
class TestLoop {
 public:
  TestLoop() { uv_loop_init(&loop_); }
  ~TestLoop() {
    // Work still on the thread pool (a handshake step, a file sync) finishes first:
    // it reports to this loop by address, and a loop made later at the same
    // address would take its completion for its own.
    RunUntil([this] { return loop_.active_reqs.count == 0; }, 10000);
    // Let pending close callbacks run, then close whatever a failed test left open.
    for (int i = 0; i < 8; i++) uv_run(&loop_, UV_RUN_NOWAIT);
    if (uv_loop_close(&loop_) != 0) {
      uv_walk(
          &loop_,
          [](uv_handle_t* h, void*) {
            if (!uv_is_closing(h)) uv_close(h, nullptr);
          },
          nullptr);
      for (int i = 0; i < 8; i++) uv_run(&loop_, UV_RUN_NOWAIT);
      (void)uv_loop_close(&loop_);
    }
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `done()` holds; returns false if it did not within
  // `guard_ms`. The guard only stops a hung test: tests never assert durations.
  bool RunUntil(const std::function<bool()>& done, uint64_t guard_ms = 60000) {
    if (done()) return true;
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(&loop_, &guard);
    guard.data = &expired;
    uv_timer_start(
        &guard, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, guard_ms, 0);
    while (!done() && !expired) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);  // the guard's close callback; `guard` is on this stack
    return done();
  }

  // Runs the loop for a few iterations without blocking (lets queued work settle).
  void Spin(int iterations = 4) {
    for (int i = 0; i < iterations; i++) uv_run(&loop_, UV_RUN_NOWAIT);
  }

 private:
  uv_loop_t loop_;
};

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/berth-test-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) abort();  // the test machine cannot make a directory
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// A client connection that sends and records raw bytes (for pipelining, chunked
// framing and malformed requests that the HTTP client would never send).
class RawConn final : public net::Stream::Handler {
 public:
  RawConn(TestLoop* loop, const net::Endpoint& where) {
    net::Connect(loop->get(), where, [this](Result<std::unique_ptr<net::Stream>> s) {
      if (!s) {
        failed_ = true;
        error_ = s.error().message;
        return;
      }
      stream_ = std::move(s.value());
      stream_->SetHandler(this);
      stream_->ReadStart();
      for (std::string& p : queued_) stream_->Write(std::move(p));
      queued_.clear();
    });
  }
  ~RawConn() override {
    if (stream_) stream_->Close();
  }

  void Send(std::string data) {
    if (stream_)
      stream_->Write(std::move(data));
    else
      queued_.push_back(std::move(data));
  }
  void ShutdownWrite() {
    if (stream_) stream_->Shutdown();
  }
  // Closes at once (the server sees the end of the stream).
  void Close() {
    if (stream_) stream_->Close();
    stream_.reset();
  }

  // A slow reader: the server's writes fill the socket buffers and wait.
  void PauseReading() {
    if (stream_) stream_->ReadStop();
  }
  void ResumeReading() {
    if (stream_) stream_->ReadStart();
  }

  bool connected() const { return stream_ != nullptr; }
  bool failed() const { return failed_; }
  bool ended() const { return ended_; }
  const std::string& received() const { return received_; }

  // Status codes of every response received so far, in order.
  std::vector<int> Statuses() const {
    std::vector<int> out;
    size_t pos = 0;
    while ((pos = received_.find("HTTP/1.1 ", pos)) != std::string::npos) {
      if (pos + 12 <= received_.size()) out.push_back(std::stoi(received_.substr(pos + 9, 3)));
      pos += 9;
    }
    return out;
  }

  void OnData(std::string_view data) override { received_.append(data); }
  void OnEnd(int) override { ended_ = true; }

 private:
  std::unique_ptr<net::Stream> stream_;
  std::vector<std::string> queued_;
  std::string received_;
  std::string error_;
  bool failed_ = false;
  bool ended_ = false;
};

}  // namespace berth::testing
