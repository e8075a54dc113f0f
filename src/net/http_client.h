// The HTTP/1.1 client on the same core as the server, over TCP or a Unix socket.
// One connection per Client, kept alive and reused; requests queue and go one at a
// time. Request bodies may be streamed from a source; response bodies may be
// streamed to a callback (Docker's /events and logs, registry blobs).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "net/http.h"
#include "net/socket.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net {
class Timer;
}
namespace berth::net::tls {
class ClientContext;
}

namespace berth::net::http {

struct ClientOptions {
  uint64_t timeout_ms = 30000;               // silence from the server that fails a request
  size_t max_response_bytes = 256ull << 20;  // for buffered response bodies
  // FetchSync only: SIGINT or SIGTERM ends the request at once with an Error
  // whose code is "Interrupted" and whose message names the signal ("SIGINT").
  // The handlers are installed even where the signal was inherited as ignored
  // (a process started in the background by a non-interactive shell is).
  bool stop_on_signals = false;
  // For an https:// endpoint: what the server is trusted by (net/tls.h). Without
  // it such an endpoint fails every request, saying so.
  std::shared_ptr<tls::ClientContext> tls;
  // Opens the connection (net::Connect when unset); `done` fires once, on the loop
  // thread. The seam tests and the fuzz harness hand in-memory streams through.
  std::function<void(uv_loop_t*, const Endpoint&, std::function<void(Result<std::unique_ptr<Stream>>)>)> connect;
};

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";
  Headers headers;
  std::string body;
  // A streamed body instead of `body`: called for the next piece; returns false
  // (with or without a last piece) when the body is complete. Sent chunked unless
  // `content_length` is set. A source with nothing yet returns true and no piece;
  // its owner calls Client::ResumeBody when more is ready.
  std::function<bool(std::string* piece)> body_source;
  int64_t content_length = -1;
};

// A request carrying `Authorization: Bearer <token>` and, when `body` is not
// empty, a JSON body.
ClientRequest BearerRequest(std::string method, std::string target, std::string_view token, std::string body = "");

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;  // empty when the body went to on_body
  std::string_view Header(std::string_view lower_name) const { return FindHeader(headers, lower_name); }
};

class ClientConn;

class Client {
 public:
  using Done = std::function<void(Result<ClientResponse>)>;
  using BodyFn = std::function<void(std::string_view)>;

  Client(uv_loop_t* loop, Endpoint endpoint, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queues a request. `done` fires once on the loop thread. With `on_body`, a 2xx
  // response's body is handed over piece by piece instead of being buffered (an
  // error answer's body is buffered as usual, for its message).
  void Send(ClientRequest request, Done done, BodyFn on_body = nullptr);
  // Asks the request on the wire for more of its streamed body (see body_source).
  void ResumeBody();
  // Fails every queued request and closes the connection.
  void Cancel();
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  friend class ClientConn;
  struct Pending {
    ClientRequest request;
    Done done;
    BodyFn on_body;
    bool retried = false;
  };
  void Pump();
  void Complete(Result<ClientResponse> result, bool reusable);
  void ConnFailed(Error error, bool before_response);

  uv_loop_t* loop_;
  Endpoint endpoint_;
  ClientOptions options_;
  std::deque<Pending> queue_;
  std::unique_ptr<ClientConn> conn_;
  bool connecting_ = false;
  bool busy_ = false;  // the front of queue_ is on the wire
  std::shared_ptr<bool> alive_;
};

// Runs one request to completion on a private loop (the CLI's way of calling).
// With `on_body`, the answer's body goes there piece by piece as it arrives.
Result<ClientResponse> FetchSync(const Endpoint& endpoint, ClientRequest request, ClientOptions options = {},
                                 Client::BodyFn on_body = nullptr);

}  // namespace berth::net::http
