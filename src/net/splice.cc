#include "net/splice.h"

#include "net/uv.h"

namespace berth::net {

Splice::Splice(uv_loop_t* loop, std::unique_ptr<Stream> a, std::unique_ptr<Stream> b, std::string early_to_b,
               SpliceOptions options, std::function<void(const std::string& why)> on_end)
    : options_(options), on_end_(std::move(on_end)) {
  streams_[0] = std::move(a);
  streams_[1] = std::move(b);
  for (int i = 0; i < 2; i++) {
    sides_[i].splice = this;
    sides_[i].index = i;
    streams_[i]->SetHandler(&sides_[i]);
  }
  if (!early_to_b.empty()) {
    moved_[0] += early_to_b.size();
    streams_[1]->Write(std::move(early_to_b));
  }
  streams_[0]->ReadStart();
  streams_[1]->ReadStart();
  if (options_.idle_a_ms > 0) {
    idle_ = std::make_unique<Timer>(loop);
    idle_->Start(options_.idle_a_ms, options_.idle_a_ms, [this] {
      if (!heard_) {
        Finish("nothing received for " + std::to_string(options_.idle_a_ms) + " ms");
        return;
      }
      heard_ = false;
    });
  }
}

Splice::~Splice() { Close(); }

void Splice::Close() {
  if (closed_) return;
  closed_ = true;
  if (idle_) idle_->Stop();
  for (auto& s : streams_) {
    s->SetHandler(nullptr);
    s->Close();
  }
}

void Splice::Data(int from, std::string_view data) {
  if (closed_) return;
  if (from == 0) {
    heard_ = true;
    if (options_.on_data_a) options_.on_data_a();
  }
  int to = 1 - from;
  moved_[from] += data.size();
  streams_[to]->Write(data);
  if (streams_[to]->PendingWriteBytes() > options_.max_pending) streams_[from]->ReadStop();
}

void Splice::Drained(int side) {
  if (closed_) return;
  // Side `side` sent what it had: the other may read again.
  streams_[1 - side]->ReadStart();
}

void Splice::End(int from, int err) {
  if (closed_) return;
  std::string why;
  if (err != 0) {
    std::string failure = streams_[from]->FailureText();
    why = std::string(from == 0 ? "the connection" : "the local end") +
          " failed: " + (failure.empty() ? UvError(err) : failure);
  }
  Finish(why);
}

void Splice::Finish(const std::string& why) {
  if (closed_) return;
  Close();
  if (on_end_) {
    auto cb = std::move(on_end_);
    on_end_ = nullptr;
    cb(why);
  }
}

}  // namespace berth::net
