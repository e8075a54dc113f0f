// What the libFuzzer harnesses share: quiet logs, the failure of an invariant,
// the hash that cuts an input into the pieces a socket would deliver, and an
// in-memory net::Stream whose state outlives it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "net/stream.h"

namespace berth::fuzz {

// Errors only: most inputs make the code under test log a refusal, and writing
// those lines would cost more than the run. Called from LLVMFuzzerInitialize.
inline int QuietLogs() {
  log::SetLevel(log::Level::kError);
  return 0;
}

// An invariant of the harness broke: says which (and up to 300 bytes of what
// broke it), then aborts, which libFuzzer reports as a crash with its input.
[[noreturn]] inline void Fail(std::string_view what, std::string_view detail = {}) {
  fprintf(stderr, "fuzz invariant broken: %.*s: %.*s\n", static_cast<int>(what.size()), what.data(),
          static_cast<int>(std::min<size_t>(detail.size(), 300)), detail.data());
  abort();
}

inline uint64_t Fnv1a(const uint8_t* data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

// `data` cut into 1-4 non-empty pieces at points taken from `hash`, so partial
// reads are explored without a control header in the corpus files. The pieces
// point into `data`.
inline std::deque<std::string_view> CutPieces(const uint8_t* data, size_t size, uint64_t hash) {
  size_t cuts[5] = {0, size, size, size, size};
  size_t n = 2;
  for (uint64_t i = 0, k = hash % 4; i < k && size > 0; i++) cuts[n++] = (hash >> (13 + 11 * i)) % (size + 1);
  std::sort(cuts, cuts + n);
  std::deque<std::string_view> pieces;
  for (size_t i = 0; i + 1 < n; i++) {
    if (cuts[i + 1] > cuts[i])
      pieces.emplace_back(reinterpret_cast<const char*>(data) + cuts[i], cuts[i + 1] - cuts[i]);
  }
  return pieces;
}

// The in-memory socket's state, outliving the Stream its user owns.
struct Pipe {
  net::Stream::Handler* handler = nullptr;
  bool alive = true;    // the Stream object exists
  bool closed = false;  // Close() was called
  bool reading = false;
  bool shut = false;          // Shutdown() (FIN) was called
  bool async_writes = false;  // writes stay pending until the harness drains them
  size_t pending = 0;
  size_t output_cap = 1 << 16;  // the most of `output` kept (0: none)
  size_t written = 0;           // bytes written in all
  std::string output;
};

class MemStream final : public net::Stream {
 public:
  explicit MemStream(Pipe* pipe, std::string peer = "fuzz:0") : p_(pipe), peer_(std::move(peer)) {}
  ~MemStream() override {
    p_->alive = false;
    p_->handler = nullptr;
    p_->reading = false;
  }
  void SetHandler(Handler* handler) override { p_->handler = handler; }
  void ReadStart() override {
    if (!p_->closed) p_->reading = true;
  }
  void ReadStop() override { p_->reading = false; }
  void Write(std::string data) override { Write(std::string_view(data)); }
  void Write(std::string_view data) override {
    if (p_->closed || data.empty()) return;
    p_->written += data.size();
    if (p_->output.size() < p_->output_cap) p_->output.append(data.substr(0, p_->output_cap - p_->output.size()));
    if (p_->async_writes) p_->pending += data.size();
  }
  size_t PendingWriteBytes() const override { return p_->pending; }
  void Shutdown() override { p_->shut = true; }
  void Close() override {
    p_->closed = true;
    p_->reading = false;
    p_->handler = nullptr;
    p_->pending = 0;
  }
  std::string PeerName() const override { return peer_; }

 private:
  Pipe* p_;
  std::string peer_;
};

}  // namespace berth::fuzz
