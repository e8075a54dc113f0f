// The HTTP/1.1 server: keep-alive, pipelining (answers in order), chunked bodies
// both ways, streamed request and response bodies, and limits on every connection.
//
// One Connection per accepted Stream. A request is parsed by llhttp; at the end of
// its headers the route is found, and the gate (authentication) and size limits
// are checked before any body byte is read. Buffered routes get their handler at
// the end of the message; streaming routes at the end of the headers. While a
// handler has not answered, the connection reads no further (pipelined requests
// wait in order); an answer that finishes resumes parsing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/metrics.h"
#include "base/result.h"
#include "net/http.h"
#include "net/router.h"
#include "net/socket.h"

namespace berth::net {
class Timer;
}
namespace berth::net::tls {
class ServerContext;
}

namespace berth::net::http {

struct ServerLimits {
  size_t max_header_bytes = 16 * 1024;  // request line and headers: 431 above
  size_t max_headers = 100;             // 431 above
  uint64_t header_timeout_ms = 10000;   // first byte to end of headers: 408
  uint64_t body_timeout_ms = 30000;     // silence while a body is arriving: 408
  uint64_t idle_timeout_ms = 60000;     // keep-alive wait for the next request: closed
  uint64_t write_timeout_ms = 30000;    // a client that does not read its answer: closed
  size_t max_connections = 20000;       // 503 above
  size_t max_output_bytes = 4 << 20;    // stop reading while this much answer is unsent
  // Accepted connections write through a thread of their own (net::WriteThread)
  // instead of on the loop thread.
  bool write_thread = true;
  // Traffic not (yet) authenticated, on a server with a gate: a request no credential has vouched for may
  // send this much body at most (413), and must arrive whole within
  // preauth_timeout_ms of its first byte (408; the body timeout does not restart
  // with each byte); a connection that has not authenticated waits idle no longer.
  size_t preauth_max_body = 8 * 1024;
  uint64_t preauth_timeout_ms = 10000;
  // Connections not yet authenticated, per client address (429 above; 0: no
  // bound). Loopback and Unix sockets are exempt: a proxy in front, or this host.
  size_t preauth_connections_per_address = 32;
  // Failed authentications (a 401 to a request that carried credentials) per
  // client address: this many at once, refilled over a minute; past them requests
  // with credentials get 429 and Retry-After (0: no bound). Loopback exempt.
  size_t auth_failures_per_minute = 10;
  // Apply the two per-address bounds to loopback and Unix-socket clients too.
  bool limit_loopback = false;
};

class Connection;

// One request and its answer. Handlers hold it (by ExchangePtr) until they answer;
// it outlives its connection safely: answers to a closed connection are dropped.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Request& request() { return request_; }
  const Request& request() const { return request_; }
  const Route& route() const { return *route_; }
  int64_t start_ns() const { return start_ns_; }

  // A request made inside the server, which no connection carries (the AWS front
  // end calls the native routes this way): `done` gets the whole answer, a
  // streamed one gathered. The caller runs the route's handler itself; the gate
  // does not.
  static std::shared_ptr<Exchange> Internal(Request request, const Route* route, std::string principal,
                                            std::function<void(Response)> done);

  // Sends a whole answer. Only the first answer counts.
  void Respond(Response response);
  // Starts a streamed answer: Content-Length when `content_length` >= 0, chunked
  // otherwise. Then Write() pieces and End().
  void Begin(int status, const Headers& headers, int64_t content_length = -1,
             std::string_view content_type = "application/octet-stream");
  void Write(std::string_view data);
  void End();
  bool responded() const { return state_ != State::kNone; }
  bool connected() const { return conn_ != nullptr; }
  // Takes the connection over for another protocol (HTTP Upgrade): answers 101
  // with `Upgrade: <protocol>` and `headers`, and hands the stream, with any bytes
  // the client sent after its request, to `take` (at once, or as soon as the
  // parser has let go of them). Only for a whole request without a body that
  // asked to upgrade (Connection: Upgrade); returns false otherwise, and the
  // request is answered as usual. The connection is the server's no more.
  using TakeStream = std::function<void(std::unique_ptr<Stream> stream, std::string early)>;
  bool Upgrade(std::string_view protocol, const Headers& headers, TakeStream take);
  // Bytes of this connection's output not yet handed to the kernel; a streaming
  // writer waits for on_drained when this grows large.
  size_t PendingWriteBytes() const;
  std::function<void()> on_drained;
  // Fires if the connection closes before the answer ends.
  std::function<void()> on_abort;

  // For routes with stream_body: set by the handler before it returns. on_body gets
  // each piece as it arrives (an error answers with it and closes the connection);
  // on_body_end fires when the body is complete.
  std::function<Status(std::string_view)> on_body;
  std::function<void()> on_body_end;

  // Who made the request, set by the gate (e.g. "admin"), or by an open route's
  // handler that authenticates for itself (the registry); empty when nobody vouched.
  std::string principal;
  // The browser session (api/session.h) through which the principal's token
  // acts, when a cookie vouched for the request; empty otherwise.
  std::string session;
  // The body of an error answer (status 400 and up), for the audit log.
  const std::string& error_body() const { return error_body_; }
  int status() const { return status_; }

 private:
  friend class Connection;
  enum class State { kNone, kStreaming, kDone };
  Request request_;
  const Route* route_ = nullptr;
  Connection* conn_ = nullptr;
  int64_t start_ns_ = 0;
  State state_ = State::kNone;
  bool chunked_ = false;
  bool head_ = false;
  int status_ = 0;
  std::string error_body_;
  std::function<void(Response)> internal_done_;  // Internal(): where the answer goes
  Response internal_answer_;                     // Internal(): a streamed answer as it is gathered
};

// Decides at the end of the headers whether a request may go on: returns an answer
// to refuse it (e.g. 401), or nothing to let it through. May set the principal.
using Gate = std::function<std::optional<Response>(Exchange& exchange)>;

// Renders an error in the one JSON shape: {"error":{"code":...,"message":...}}.
Response ErrorResponse(int status, std::string_view code, std::string_view message);
int StatusFor(ErrorKind kind);
// A JSON answer with `status` and the JSON text `body`.
Response JsonResponse(int status, std::string body);
Response ErrorResponse(const Error& error);

class Server {
 public:
  Server(uv_loop_t* loop, const Router* router, ServerLimits limits, metrics::Registry* metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void SetGate(Gate gate) { gate_ = std::move(gate); }
  // Told of every exchange once its answer is queued (the audit log).
  void SetObserver(std::function<void(const Exchange&)> observer) { observer_ = std::move(observer); }
  // Adds headers to every answer as its head is made (Respond, Begin; not the
  // errors that end a connection, nor a 101): what every answer says about the
  // server that made it.
  using AnswerHeaders = std::function<void(const Exchange& exchange, Headers* headers)>;
  void SetAnswerHeaders(AnswerHeaders add) { answer_headers_ = std::move(add); }
  // TCP listeners opened after this speak TLS with `tls` (which outlives the server).
  void SetTls(tls::ServerContext* tls) { tls_ = tls; }
  // Listens on `where`; returns the bound port (TCP) or 0.
  Result<int> Listen(const Endpoint& where);
  // Sends the answers queued so far now (with a write thread they otherwise go
  // just before the loop next polls).
  void FlushWrites() {
    if (writer_) writer_->HandOver();
  }
  // Serves an already connected stream (tests, TLS wrapping later).
  void Serve(std::unique_ptr<Stream> stream);

  // Stops accepting, closes idle connections, lets requests in flight finish until
  // `deadline_ms`, then closes the rest. `done` fires once every connection is gone.
  void Shutdown(uint64_t deadline_ms, std::function<void()> done);
  size_t connection_count() const { return connections_.size(); }
  // Forgets the failed authentications counted per address, as a minute of calm
  // would: a harness serving independent clients through one server starts each
  // from the same state.
  void ForgetAuthFailures() { auth_failures_.clear(); }
  const ServerLimits& limits() const { return limits_; }

 private:
  friend class Connection;
  void Remove(Connection* c);
  void Sweep();
  void Record(const Exchange& ex, int status, size_t bytes);
  // Answers and closes a connection that is not served.
  void RejectStream(std::unique_ptr<Stream> stream, int status, std::string_view code, std::string_view message,
                    int retry_after_s);
  // Per-address bounds on traffic not yet authenticated (ServerLimits).
  bool Exempt(const std::string& ip) const;
  void ReleasePreauth(const std::string& ip);
  // Seconds until `ip` may try credentials again, or 0.
  int64_t AuthRetryAfter(const std::string& ip, uint64_t now_ms);
  void NoteAuthFailure(const std::string& ip, uint64_t now_ms);

  uv_loop_t* loop_;
  const Router* router_;
  ServerLimits limits_;
  Gate gate_;
  std::function<void(const Exchange&)> observer_;
  AnswerHeaders answer_headers_;
  std::unordered_map<std::string, size_t> preauth_connections_;  // by address
  struct AuthBucket {
    double tokens = 0;  // failures still allowed
    uint64_t at_ms = 0;
  };
  std::unordered_map<std::string, AuthBucket> auth_failures_;  // by address
  tls::ServerContext* tls_ = nullptr;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<WriteThread> writer_;   // when limits_.write_thread; after the connections
  std::vector<Connection*> connections_;  // owned; each knows its index
  std::unique_ptr<Timer> sweep_;
  std::unique_ptr<Timer> shutdown_timer_;
  std::function<void()> shutdown_done_;
  bool shutting_down_ = false;

  metrics::Family<metrics::Counter>* requests_;
  metrics::Family<metrics::Histogram>* latency_;
  // Each route's series of those two families, found once: Record runs for every
  // answer, and a family's lookup builds and compares the rendered label set.
  struct RouteSeries {
    metrics::Histogram* latency = nullptr;
    std::vector<std::pair<int, metrics::Counter*>> requests;  // by status
  };
  std::unordered_map<const Route*, RouteSeries> route_series_;  // routes live as long as the router
  metrics::Gauge* open_connections_;
  metrics::Counter* rejected_connections_;
  metrics::Counter* timeouts_;
  metrics::Counter* preauth_rejected_;
  metrics::Counter* auth_throttled_;
  // Refused connections still waiting to be given their answer (RejectStream).
  std::shared_ptr<size_t> refusals_waiting_ = std::make_shared<size_t>(0);
};

}  // namespace berth::net::http
