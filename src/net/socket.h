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

// Where to connect or listen: "host:port", "http://host:port", "unix:///path".
struct Endpoint {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;  // kTcp
  int port = 0;      // kTcp
  std::string path;  // kUnix

  // Accepts "HOST:PORT", "http://HOST:PORT[/]", "[v6]:PORT", "unix:///path" and "/path".
  static Result<Endpoint> Parse(std::string_view text, int default_port = 0);
  std::string ToString() const;
};

class Listener {
 public:
  using AcceptFn = std::function<void(std::unique_ptr<Stream>)>;

  // Binds and listens. Port 0 picks a free port (see port()). A Unix socket path
  // left by a dead process is replaced.
  static Result<std::unique_ptr<Listener>> Open(uv_loop_t* loop, const Endpoint& where, AcceptFn on_accept);
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

// Connects to `where`; `done` fires once on the loop thread with the stream or an error.
void Connect(uv_loop_t* loop, const Endpoint& where,
             std::function<void(Result<std::unique_ptr<Stream>>)> done);

}  // namespace berth::net
