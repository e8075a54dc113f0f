// Two Streams joined end to end: what one receives the other sends, both ways,
// with backpressure (a side stops reading while the other has more than
// `max_pending` bytes unsent). The first side to end or fail ends both. Used to
// hand a TLS connection to a library that wants a libuv stream of its own
// (libraft's peer connections, through a socket pair).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "net/stream.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net {

class Timer;

struct SpliceOptions {
  size_t max_pending = 1 << 20;
  // Nothing received on side a for this long ends the splice (0: never). For a
  // peer that should speak regularly (a raft leader's heartbeats), so a silent
  // network path is noticed.
  uint64_t idle_a_ms = 0;
  // Told whenever side a delivers bytes (a raft peer was heard from: the lease).
  std::function<void()> on_data_a;
};

class Splice {
 public:
  // Starts both ways at once; `early_to_b` is sent to b first (bytes a gave
  // before the splice began). `on_end` fires once, with why ("" when a side
  // finished cleanly), after both streams are closed.
  Splice(uv_loop_t* loop, std::unique_ptr<Stream> a, std::unique_ptr<Stream> b, std::string early_to_b,
         SpliceOptions options, std::function<void(const std::string& why)> on_end);
  ~Splice();
  Splice(const Splice&) = delete;
  Splice& operator=(const Splice&) = delete;

  // Ends both ways now.
  void Close();
  bool closed() const { return closed_; }
  uint64_t bytes_a_to_b() const { return moved_[0]; }
  uint64_t bytes_b_to_a() const { return moved_[1]; }

 private:
  struct Side : Stream::Handler {
    Splice* splice = nullptr;
    int index = 0;  // 0: a, 1: b
    void OnData(std::string_view data) override { splice->Data(index, data); }
    void OnEnd(int err) override { splice->End(index, err); }
    void OnDrained() override { splice->Drained(index); }
  };
  void Data(int from, std::string_view data);
  void End(int from, int err);
  void Drained(int side);
  void Finish(const std::string& why);

  std::unique_ptr<Stream> streams_[2];
  Side sides_[2];
  SpliceOptions options_;
  std::function<void(const std::string&)> on_end_;
  std::unique_ptr<Timer> idle_;
  uint64_t moved_[2] = {0, 0};
  bool closed_ = false;
  bool heard_ = false;  // side a sent something since the idle timer last looked
};

}  // namespace berth::net
