// Sockets on libuv: TCP and Unix-socket listeners, outgoing connections, and the
// Stream implementation over a uv_stream_t.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "net/stream.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net {

// Where to connect or listen: "host:port", "http(s)://host:port", "unix:///path".
struct Endpoint {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;  // kTcp
  int port = 0;      // kTcp
  std::string path;  // kUnix
  bool tls = false;  // given as https://

  // Accepts "HOST:PORT", "http(s)://HOST:PORT[/]", "[v6]:PORT", "unix:///path" and "/path".
  static Result<Endpoint> Parse(std::string_view text, int default_port = 0);
  std::string ToString() const;
};

// A thread that makes the write() calls of the streams given to it. On loopback
// and on a busy server each write also runs the receiving side's TCP path and
// wakes the reader, so the loop thread keeps parsing and the state while this
// thread sends. Streams hand it their bytes at the end of each loop iteration
// (one wake-up for the lot) and learn on the loop thread when they are sent; a
// stream closed while its bytes are with the thread keeps its socket open until
// the thread lets go of it. Created and destroyed on the loop thread, after every
// stream using it is closed.
class WriteThread {
 public:
  static Result<std::unique_ptr<WriteThread>> Start(uv_loop_t* loop);
  ~WriteThread();
  WriteThread(const WriteThread&) = delete;
  WriteThread& operator=(const WriteThread&) = delete;

  // Hands what streams queued so far to the thread now, instead of before the
  // loop next polls: for answers made during I/O that should not wait behind the
  // rest of the iteration's work.
  void HandOver();

  struct Impl;
  Impl* impl() { return impl_; }

 private:
  WriteThread() = default;
  Impl* impl_ = nullptr;
};

class Listener {
 public:
  using AcceptFn = std::function<void(std::unique_ptr<Stream>)>;

  // Binds and listens. Port 0 picks a free port (see port()). A Unix socket path
  // left by a dead process is replaced. Accepted streams write through `writer`
  // when one is given, on the loop thread otherwise.
  static Result<std::unique_ptr<Listener>> Open(uv_loop_t* loop, const Endpoint& where, AcceptFn on_accept,
                                                WriteThread* writer = nullptr);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  int port() const { return port_; }
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Listener() = default;
  struct Impl;
  Impl* impl_ = nullptr;
  int port_ = 0;
  Endpoint endpoint_;
};

// A connected pair of Unix stream sockets: one end as a Stream of ours, the other
// as a bare descriptor (non-blocking, close-on-exec) for a library that drives a
// libuv stream of its own (libraft's peer connections).
struct SocketPair {
  std::unique_ptr<Stream> ours;
  int theirs = -1;
};
Result<SocketPair> MakeSocketPair(uv_loop_t* loop);

// Connects to `where`; `done` fires once on the loop thread with the stream or an error.
void Connect(uv_loop_t* loop, const Endpoint& where, std::function<void(Result<std::unique_ptr<Stream>>)> done);

}  // namespace berth::net
