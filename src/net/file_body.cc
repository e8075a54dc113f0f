#include "net/file_body.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "base/log.h"

namespace berth::net::http {

namespace {

constexpr size_t kReadChunk = 256 * 1024;
// Read ahead of the socket no further than this: a slow client holds at most
// this much of the file in memory.
constexpr size_t kMaxPendingOutput = 1 << 20;

struct FileBody {
  int fd;
  bool close_fd;
  int64_t pos, end;
  std::string what;
  ExchangePtr ex;
  std::vector<char> buf = std::vector<char>(kReadChunk);

  void Pump() {
    while (pos < end && ex->connected() && ex->PendingWriteBytes() < kMaxPendingOutput) {
      size_t want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(buf.size()), end - pos));
      ssize_t n = pread(fd, buf.data(), want, static_cast<off_t>(pos));
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        log::Warn("http", "reading an answer's body failed",
                  {{"what", what}, {"error", strerror(n < 0 ? errno : EIO)}});
        Finish();
        return;
      }
      pos += n;
      ex->Write(std::string_view(buf.data(), static_cast<size_t>(n)));
    }
    if (pos >= end || !ex->connected()) Finish();
  }

  void Finish() {
    if (close_fd && fd >= 0) close(fd);
    fd = -1;
    ExchangePtr hold = std::move(ex);
    if (!hold) return;
    hold->on_drained = nullptr;
    hold->on_abort = nullptr;
    if (pos >= end) hold->End();
  }
};

}  // namespace

void SendFileRange(const ExchangePtr& ex, int fd, int64_t begin, int64_t end, bool close_fd, std::string what) {
  auto body = std::make_shared<FileBody>(FileBody{fd, close_fd, begin, end, std::move(what), ex});
  // The drain callback keeps the body alive while the answer is under way; the
  // abort callback must not, or the exchange and the body would hold each other.
  std::weak_ptr<FileBody> weak = body;
  ex->on_drained = [body] {
    if (body->ex) body->Pump();
  };
  ex->on_abort = [weak] {
    if (auto b = weak.lock(); b && b->ex) b->Finish();
  };
  body->Pump();
}

}  // namespace berth::net::http
