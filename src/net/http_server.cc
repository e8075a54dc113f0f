#include "net/http_server.h"

#include <llhttp.h>
#include <uv.h>

#include <cmath>
#include <cstdio>
#include <ctime>

#include "base/json.h"
#include "base/log.h"
#include "net/tls.h"
#include "net/uv.h"

namespace berth::net::http {

namespace {

constexpr uint64_t kSweepIntervalMs = 250;
constexpr uint64_t kLingerMs = 2000;
// Lingering discards at most this much from a connection that has not
// authenticated; one that keeps sending is cut off.
constexpr size_t kLingerMaxBytes = 256 << 10;
// A refused connection gets this long to take its answer (over TLS, its
// handshake must finish first), and at most this many wait at once; beyond
// that a refused connection is closed without an answer.
constexpr uint64_t kRefusalMs = 2000;
constexpr size_t kMaxRefusalsWaiting = 256;

// "Date: Thu, 26 Nov 2026 04:28:43 GMT\r\n", rebuilt at most once a second.
const std::string& DateHeader() {
  static thread_local time_t cached_at = 0;
  static thread_local std::string line;
  time_t now = time(nullptr);
  if (now != cached_at) {
    cached_at = now;
    tm t{};
    gmtime_r(&now, &t);
    char buf[64];
    strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &t);
    line = buf;
  }
  return line;
}

// The route of a request that matched none (or whose headers never completed), so
// that every exchange has a route to record its metrics under.
const Route kUnmatchedRoute{"", "(unmatched)", nullptr, {}, {}};

void AppendStatusLine(std::string* out, int status) {
  char buf[64];
  snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\n", status, StatusText(status));
  out->append(buf);
}

}  // namespace

Response ErrorResponse(int status, std::string_view code, std::string_view message) {
  Response r;
  r.status = status;
  r.body.reserve(48 + code.size() + message.size());
  r.body.append("{\"error\":{\"code\":");
  json::AppendQuoted(&r.body, code);
  r.body.append(",\"message\":");
  json::AppendQuoted(&r.body, message);
  r.body.append("}}");
  return r;
}

int StatusFor(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalid: return 400;
    case ErrorKind::kUnauthorized: return 401;
    case ErrorKind::kForbidden: return 403;
    case ErrorKind::kNotFound: return 404;
    case ErrorKind::kConflict: return 409;
    case ErrorKind::kTooLarge: return 413;
    case ErrorKind::kTimeout: return 408;
    case ErrorKind::kUnavailable: return 503;
    case ErrorKind::kInsufficientStorage: return 507;
    case ErrorKind::kInternal: return 500;
  }
  return 500;
}

Response JsonResponse(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response ErrorResponse(const Error& error) { return ErrorResponse(StatusFor(error.kind), error.code, error.message); }

// --- Connection ---

class Connection final : public Stream::Handler {
 public:
  Connection(Server* server, std::unique_ptr<Stream> stream, size_t index, std::string peer_ip, bool counted)
      : server_(server),
        stream_(std::move(stream)),
        index_(index),
        peer_ip_(std::move(peer_ip)),
        preauth_counted_(counted) {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = [](llhttp_t* p) { return Self(p)->OnMessageBegin(); };
    settings_.on_url = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnUrl(at, n); };
    settings_.on_header_field = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderField(at, n); };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderValue(at, n); };
    settings_.on_headers_complete = [](llhttp_t* p) { return Self(p)->OnHeadersComplete(); };
    settings_.on_body = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnBody(at, n); };
    settings_.on_message_complete = [](llhttp_t* p) { return Self(p)->OnMessageComplete(); };
    llhttp_init(&parser_, HTTP_REQUEST, &settings_);
    parser_.data = this;
    stream_->SetHandler(this);
    SetDeadline(IdleTimeout());
    stream_->ReadStart();
  }

  ~Connection() override {
    if (preauth_counted_) server_->ReleasePreauth(peer_ip_);
    if (current_) {
      current_->conn_ = nullptr;
      auto abort = std::move(current_->on_abort);
      current_.reset();
      if (abort) abort();
    }
  }

  size_t index() const { return index_; }
  void set_index(size_t i) { index_ = i; }
  bool idle() const { return phase_ == Phase::kIdle && stash_.empty(); }

  // Stream::Handler
  void OnData(std::string_view data) override {
    Guard g(this);
    if (phase_ == Phase::kLinger) {  // discarded: we are closing
      // A client nobody vouched for is cut off past a bound; an authenticated one
      // keeps sending its refused body (a push the disk cannot hold) and reads why.
      linger_bytes_ += data.size();
      if (linger_bytes_ > kLingerMaxBytes && !authenticated_ && server_->gate_) Close();
      return;
    }
    if (!stash_.empty() || paused_) {
      stash_.append(data);
      // While an answer streams we keep reading only to notice the peer leaving;
      // anything it sends meanwhile waits, within bounds.
      if (paused_ && stash_.size() > server_->limits_.max_header_bytes + (1u << 20)) stream_->ReadStop();
      if (!paused_) Process();
      return;
    }
    Feed(data.data(), data.size());
  }

  void OnEnd(int err) override {
    Guard g(this);
    if (err != 0 || phase_ == Phase::kLinger || phase_ == Phase::kIdle || closing_) {
      Close();
      return;
    }
    // The peer half-closed mid-request or while waiting for an answer: answer what
    // we have, then close. A streamed answer has no end to wait for: the peer
    // has gone, so the stream ends now.
    peer_done_ = true;
    if (!current_ || current_->state_ == Exchange::State::kStreaming) Close();
  }

  void OnDrained() override {
    Guard g(this);
    write_deadline_ = 0;
    if (closing_ && !current_) {
      StartLinger();
      return;
    }
    if (read_blocked_on_output_) {
      read_blocked_on_output_ = false;
      if (!paused_) stream_->ReadStart();
    }
    if (current_ && current_->on_drained) {
      auto cb = current_->on_drained;
      cb();
    }
  }

  // Called by Exchange.
  void SendHead(Exchange* ex, int status, const Headers& headers, std::string_view content_type, int64_t content_length,
                std::string_view body) {
    Guard g(this);
    bool keep_alive = !closing_ && message_complete_ && !peer_done_ && keep_alive_ && !server_->shutting_down_;
    bool http10 = ex->request_.http_minor == 0;
    std::string out;
    out.reserve(160 + body.size());
    AppendStatusLine(&out, status);
    out.append(DateHeader());
    if (!content_type.empty() && status != 204 && status != 304) {
      out.append("Content-Type: ").append(content_type).append("\r\n");
    }
    if (content_length >= 0) {
      out.append("Content-Length: ").append(std::to_string(content_length)).append("\r\n");
    } else if (!http10) {
      out.append("Transfer-Encoding: chunked\r\n");
      ex->chunked_ = true;
    } else {
      keep_alive = false;  // an HTTP/1.0 body of unknown length ends at close
    }
    for (const Header& h : headers) out.append(h.name).append(": ").append(h.value).append("\r\n");
    if (server_->answer_headers_) {
      Headers more;
      server_->answer_headers_(*ex, &more);
      for (const Header& h : more) out.append(h.name).append(": ").append(h.value).append("\r\n");
    }
    if (!keep_alive) {
      out.append("Connection: close\r\n");
      closing_ = true;
    } else if (http10) {
      out.append("Connection: keep-alive\r\n");
    }
    out.append("\r\n");
    if (!ex->head_) out.append(body);
    ex->status_ = status;
    Write(std::move(out));
    // A streamed answer may last forever: watch the socket for the peer leaving.
    if (ex->state_ == Exchange::State::kStreaming && paused_) stream_->ReadStart();
  }

  void SendBody(Exchange* ex, std::string_view data) {
    if (ex->head_ || data.empty()) return;
    if (ex->chunked_) {
      char buf[24];
      snprintf(buf, sizeof buf, "%zx\r\n", data.size());
      std::string out(buf);
      out.append(data).append("\r\n");
      Write(std::move(out));
    } else {
      stream_->Write(data);
      NoteWrite();
    }
  }

  void SendEnd(Exchange* ex) {
    if (ex->chunked_ && !ex->head_) Write(std::string("0\r\n\r\n"));
  }

  // The current exchange has its whole answer queued.
  void Finished(Exchange* ex, size_t body_bytes) {
    Guard g(this);
    NoteAuthenticated(*ex);  // a handler that authenticates for itself (the registry) may have vouched
    server_->Record(*ex, ex->status_, body_bytes);
    if (current_.get() != ex) return;
    ex->conn_ = nullptr;
    current_.reset();
    if (closing_) {
      if (stream_->PendingWriteBytes() == 0) StartLinger();
      return;
    }
    if (!message_complete_) return;  // the body is still arriving; resumes at message end
    NextRequest();
  }

  size_t PendingWriteBytes() const { return stream_ ? stream_->PendingWriteBytes() : 0; }

  // Called by Exchange::Upgrade.
  bool Upgrade(Exchange* ex, std::string_view protocol, const Headers& headers, Exchange::TakeStream take) {
    if (current_.get() != ex || !upgrade_asked_ || !message_complete_ || body_bytes_ > 0 || closed_ || closing_ ||
        ex->responded()) {
      return false;
    }
    Guard g(this);
    std::string out;
    AppendStatusLine(&out, 101);
    out.append(DateHeader());
    out.append("Connection: Upgrade\r\nUpgrade: ").append(protocol).append("\r\n");
    for (const Header& h : headers) out.append(h.name).append(": ").append(h.value).append("\r\n");
    out.append("\r\n");
    stream_->Write(std::move(out));
    ex->state_ = Exchange::State::kDone;
    ex->status_ = 101;
    server_->Record(*ex, 101, 0);
    ex->conn_ = nullptr;
    current_.reset();
    stream_->ReadStop();
    take_ = std::move(take);
    // Bytes after the request reach the stash once the parser returns.
    if (!in_parser_) HandOver();
    return true;
  }

  // Gives the stream away (an upgrade); the connection is then closed and freed.
  void HandOver() {
    if (!take_ || closed_) return;
    auto take = std::move(take_);
    take_ = nullptr;
    std::string early = std::move(stash_);
    stash_.clear();
    std::unique_ptr<Stream> s = std::move(stream_);
    s->SetHandler(nullptr);
    closed_ = true;  // freed when the outermost callback returns
    take(std::move(s), std::move(early));
  }

  // Called from the server's sweep with the loop's time.
  void CheckDeadlines(uint64_t now) {
    Guard g(this);
    if (write_deadline_ && now >= write_deadline_) {
      log::Debug("http", "write timeout", {{"peer", stream_->PeerName()}});
      server_->timeouts_->Inc();
      Close();
      return;
    }
    if (!deadline_ || now < deadline_) return;
    switch (phase_) {
      case Phase::kIdle:
      case Phase::kLinger:
      case Phase::kHandling: Close(); return;
      case Phase::kHeaders:
      case Phase::kBody:
        server_->timeouts_->Inc();
        Fail(408, "RequestTimeout",
             phase_ == Phase::kHeaders ? "the request headers did not arrive in time"
                                       : "the request body stopped arriving");
        return;
    }
  }

  // Closes at once; the connection is freed when the outermost callback returns.
  void Close() {
    if (closed_) return;
    closed_ = true;
    if (stream_) stream_->Close();
    if (depth_ == 0) server_->Remove(this);
  }

  // For the server's destructor: closes without removing itself.
  void Abandon() {
    closed_ = true;
    if (stream_) stream_->Close();
  }

  // Graceful shutdown: idle connections go now, busy ones after their answer.
  void Drain() {
    Guard g(this);
    if (idle() || phase_ == Phase::kLinger)
      Close();
    else
      closing_ = true;
  }

 private:
  enum class Phase { kIdle, kHeaders, kBody, kHandling, kLinger };

  // Defers freeing the connection until no callback of it is on the stack.
  struct Guard {
    explicit Guard(Connection* c) : c(c) { c->depth_++; }
    ~Guard() {
      if (--c->depth_ == 0 && c->closed_) c->server_->Remove(c);
    }
    Connection* c;
  };

  static Connection* Self(llhttp_t* p) { return static_cast<Connection*>(p->data); }

  void SetDeadline(uint64_t ms) { deadline_ = ms ? LoopNowMs(server_->loop_) + ms : 0; }

  void Write(std::string data) {
    stream_->Write(std::move(data));
    NoteWrite();
  }

  void NoteWrite() {
    if (stream_->PendingWriteBytes() > 0 && !write_deadline_) {
      write_deadline_ = LoopNowMs(server_->loop_) + server_->limits_.write_timeout_ms;
    }
  }

  // Parses `data` directly (the common case: nothing stashed).
  void Feed(const char* data, size_t len) {
    in_parser_ = true;
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    in_parser_ = false;
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED) {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume(&parser_);
      if (used < len) stash_.assign(data + used, len - used);
      AfterPause();
      // Pipelined requests behind the one just answered.
      if (!stash_.empty()) Process();
      return;
    }
    ParseError(err);
  }

  // Parses the stash until it is empty or a request waits for its answer.
  void Process() {
    while (!stash_.empty() && !paused_ && !closed_ && !closing_) {
      std::string buf = std::move(stash_);
      stash_.clear();
      in_parser_ = true;
      llhttp_errno_t err = llhttp_execute(&parser_, buf.data(), buf.size());
      in_parser_ = false;
      if (err == HPE_OK) continue;
      if (err == HPE_PAUSED) {
        size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - buf.data());
        llhttp_resume(&parser_);
        if (used < buf.size()) stash_.append(buf, used, std::string::npos);
        AfterPause();
        continue;
      }
      ParseError(err);
      return;
    }
  }

  // After the parser paused at the end of a message (or on an early answer).
  void AfterPause() {
    if (take_) {
      HandOver();
      return;
    }
    if (closed_) return;
    if (closing_) {
      // Lingering already (an answer finished inside the parser): keep reading to
      // discard the rest, or the close resets the connection before it is read.
      if (phase_ != Phase::kLinger) stream_->ReadStop();
      stash_.clear();
      return;
    }
    if (current_) {
      // An answer is pending: parse nothing more until it is sent. A streamed
      // answer keeps the socket read, only to notice the peer leaving.
      paused_ = true;
      if (current_->state_ != Exchange::State::kStreaming) stream_->ReadStop();
      return;
    }
    if (message_complete_) ResetForNext();
  }

  void ParseError(llhttp_errno_t err) {
    if (closed_) return;
    if (fail_status_) {
      int status = fail_status_;
      fail_status_ = 0;
      Fail(status, fail_code_, fail_message_);
      return;
    }
    if (closing_) return;  // an early answer stopped the parser on purpose
    std::string reason = llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_) : llhttp_errno_name(err);
    Fail(400, "BadRequest", "malformed HTTP request: " + reason);
  }

  // Answers with an error and closes; used for anything that ends the connection.
  void Fail(int status, std::string_view code, std::string_view message) {
    if (closed_) return;
    if (current_ && current_->responded()) {
      Close();
      return;
    }
    closing_ = true;
    stream_->ReadStop();
    stash_.clear();
    Response r = ErrorResponse(status, code, message);
    std::string out;
    AppendStatusLine(&out, status);
    out.append(DateHeader());
    out.append("Content-Type: application/json\r\nContent-Length: ").append(std::to_string(r.body.size()));
    out.append("\r\nConnection: close\r\n\r\n").append(r.body);
    if (current_) {
      current_->state_ = Exchange::State::kDone;
      current_->status_ = status;
      current_->error_body_ = r.body;
      server_->Record(*current_, status, r.body.size());
      current_->conn_ = nullptr;
      auto abort = std::move(current_->on_abort);
      current_.reset();
      if (abort) abort();
    }
    Write(std::move(out));
    if (stream_->PendingWriteBytes() == 0) StartLinger();
  }

  // Half-closes and discards input for a moment, so the client reads our last
  // answer before the connection goes (closing with unread input sends a reset).
  void StartLinger() {
    if (closed_ || phase_ == Phase::kLinger) return;
    phase_ = Phase::kLinger;
    linger_bytes_ = 0;
    paused_ = false;
    stash_.clear();
    stream_->Shutdown();
    stream_->ReadStart();
    deadline_ = LoopNowMs(server_->loop_) + kLingerMs;
  }

  void NextRequest() {
    if (closed_) return;
    ResetForNext();
    if (server_->shutting_down_ && stash_.empty()) {
      Close();
      return;
    }
    if (paused_) {
      paused_ = false;
      if (in_parser_) return;  // the parse loop up the stack goes on by itself
      Process();
      if (!paused_ && !closed_ && !closing_) {
        if (stream_->PendingWriteBytes() > server_->limits_.max_output_bytes) {
          read_blocked_on_output_ = true;
        } else {
          stream_->ReadStart();
        }
      }
    } else if (stream_->PendingWriteBytes() > server_->limits_.max_output_bytes) {
      read_blocked_on_output_ = true;
      stream_->ReadStop();
    }
  }

  void ResetForNext() {
    message_complete_ = false;
    phase_ = Phase::kIdle;
    SetDeadline(IdleTimeout());
  }

  // A connection that has not authenticated waits no longer than a request of it may take.
  uint64_t IdleTimeout() const {
    const ServerLimits& l = server_->limits_;
    if (authenticated_ || !server_->gate_) return l.idle_timeout_ms;
    return std::min(l.idle_timeout_ms, l.preauth_timeout_ms);
  }

  // Someone vouched for the exchange: the connection no longer counts as unauthenticated.
  void NoteAuthenticated(const Exchange& ex) {
    if (ex.principal.empty() || authenticated_) return;
    authenticated_ = true;
    if (preauth_counted_) {
      preauth_counted_ = false;
      server_->ReleasePreauth(peer_ip_);
    }
  }

  // --- llhttp callbacks ---

  int OnMessageBegin() {
    phase_ = Phase::kHeaders;
    // A request nobody has vouched for yet has its whole deadline from its first
    // byte, headers included (ServerLimits::preauth_timeout_ms).
    const ServerLimits& limits = server_->limits_;
    SetDeadline(authenticated_ || !server_->gate_ ? limits.header_timeout_ms
                                                  : std::min(limits.header_timeout_ms, limits.preauth_timeout_ms));
    header_bytes_ = 0;
    body_bytes_ = 0;
    last_was_value_ = false;
    message_complete_ = false;
    current_ = std::make_shared<Exchange>();
    current_->conn_ = this;
    current_->route_ = &kUnmatchedRoute;
    current_->start_ns_ = static_cast<int64_t>(uv_hrtime());
    current_->request_.tls = stream_->Secure();
    current_->request_.peer_ip = peer_ip_;
    request_start_ms_ = LoopNowMs(server_->loop_);
    preauth_request_ = true;
    current_->request_.peer_cert_cn = stream_->PeerCertificateName();
    current_->request_.peer_cert_serial = stream_->PeerCertificateSerial();
    return 0;
  }

  int CountHeaderBytes(size_t n) {
    header_bytes_ += n;
    if (header_bytes_ > server_->limits_.max_header_bytes) {
      return Reject(
          431, "HeadersTooLarge",
          "the request line and headers exceed " + std::to_string(server_->limits_.max_header_bytes) + " bytes");
    }
    return 0;
  }

  int Reject(int status, std::string code, std::string message) {
    fail_status_ = status;
    fail_code_ = std::move(code);
    fail_message_ = std::move(message);
    return HPE_USER;
  }

  int OnUrl(const char* at, size_t n) {
    current_->request_.target.append(at, n);
    return CountHeaderBytes(n);
  }

  int OnHeaderField(const char* at, size_t n) {
    Headers& h = current_->request_.headers;
    if (last_was_value_ || h.empty()) {
      if (h.size() >= server_->limits_.max_headers) {
        return Reject(431, "HeadersTooLarge",
                      "more than " + std::to_string(server_->limits_.max_headers) + " request headers");
      }
      h.emplace_back();
      last_was_value_ = false;
    }
    for (size_t i = 0; i < n; i++) {
      char c = at[i];
      h.back().name.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c);
    }
    return CountHeaderBytes(n + 4);
  }

  int OnHeaderValue(const char* at, size_t n) {
    Headers& h = current_->request_.headers;
    if (h.empty()) return 0;
    h.back().value.append(at, n);
    last_was_value_ = true;
    return CountHeaderBytes(n);
  }

  int OnHeadersComplete() {
    Exchange* ex = current_.get();
    Request& req = ex->request_;
    req.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    req.http_minor = parser_.http_major == 1 ? parser_.http_minor : 0;
    size_t q = req.target.find('?');
    req.path = req.target.substr(0, q);
    if (q != std::string::npos) req.query = req.target.substr(q + 1);
    ex->head_ = req.method == "HEAD";
    keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
    // A request to switch protocols that is answered in HTTP ends the connection.
    upgrade_asked_ = parser_.upgrade != 0 && req.method != "CONNECT";
    if (upgrade_asked_) keep_alive_ = false;

    bool has_body = (parser_.flags & F_CHUNKED) || ((parser_.flags & F_CONTENT_LENGTH) && parser_.content_length > 0);
    phase_ = Phase::kBody;
    SetDeadline(server_->limits_.body_timeout_ms);

    Router::Match m = server_->router_->Find(req.method, req.path, &req.params);
    std::optional<Response> refusal;
    if (!m.route) {
      ex->route_ = &kUnmatchedRoute;
      if (m.other_method) {
        refusal = ErrorResponse(405, "MethodNotAllowed", req.method + " is not allowed on " + req.path);
        refusal->headers.push_back({"Allow", m.allow});
      } else {
        refusal = ErrorResponse(404, "UnknownRoute", "no route for " + req.method + " " + req.path);
      }
    } else {
      ex->route_ = m.route;
      if (int64_t wait = server_->AuthRetryAfter(peer_ip_, LoopNowMs(server_->loop_));
          wait > 0 && (!req.Header("authorization").empty() || m.route->options.takes_credential)) {
        server_->auth_throttled_->Inc();
        refusal = ErrorResponse(
            429, "TooManyAuthenticationFailures",
            "too many failed authentications from " + peer_ip_ + "; try again in " + std::to_string(wait) + " s");
        refusal->headers.push_back({"Retry-After", std::to_string(wait)});
      } else if (!m.route->open() && server_->gate_) {
        refusal = server_->gate_(*ex);
      }
      if (!refusal && (parser_.flags & F_CONTENT_LENGTH) && parser_.content_length > m.route->options.max_body) {
        return Reject(413, "PayloadTooLarge",
                      "the request body of " + std::to_string(parser_.content_length) + " bytes exceeds the " +
                          std::to_string(m.route->options.max_body) + "-byte limit of " + m.route->pattern);
      }
      if (!refusal) NoteAuthenticated(*ex);
    }
    if (refusal) {
      if (has_body) {
        // Answer now and do not read the body.
        ExchangePtr hold = current_;
        hold->Respond(std::move(*refusal));
        return HPE_PAUSED;
      }
      refused_ = std::move(refusal);
      return 0;
    }
    if (req.Header("expect") == "100-continue" && req.http_minor >= 1) {
      Write(std::string("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    if (m.route->options.stream_body) {
      ExchangePtr hold = current_;
      m.route->handler(hold);
      if (closed_ || closing_) return HPE_PAUSED;
      NoteAuthenticated(*ex);
    }
    // Nobody vouched for this request (an open route): a small body, all of it soon.
    preauth_request_ = ex->principal.empty() && server_->gate_;
    if (preauth_request_ && !ex->responded()) {
      const ServerLimits& l = server_->limits_;
      if ((parser_.flags & F_CONTENT_LENGTH) && parser_.content_length > l.preauth_max_body) {
        return Reject(413, "PayloadTooLarge",
                      "a request no credential vouches for may send at most " + std::to_string(l.preauth_max_body) +
                          " bytes of body; this one announced " + std::to_string(parser_.content_length));
      }
      deadline_ = request_start_ms_ + l.preauth_timeout_ms;
    }
    return 0;
  }

  int OnBody(const char* at, size_t n) {
    Exchange* ex = current_.get();
    body_bytes_ += n;
    if (preauth_request_) {
      // The deadline set at the end of the headers holds for the whole request.
      if (body_bytes_ > server_->limits_.preauth_max_body && !ex->responded()) {
        return Reject(413, "PayloadTooLarge",
                      "a request no credential vouches for may send at most " +
                          std::to_string(server_->limits_.preauth_max_body) + " bytes of body");
      }
    } else {
      SetDeadline(server_->limits_.body_timeout_ms);
    }
    if (body_bytes_ > ex->route_->options.max_body) {
      return Reject(413, "PayloadTooLarge",
                    "the request body exceeds the " + std::to_string(ex->route_->options.max_body) + "-byte limit of " +
                        ex->route_->pattern);
    }
    if (ex->route_->options.stream_body) {
      if (ex->responded()) return 0;  // answered early; the rest is discarded
      if (ex->on_body) {
        Status s = ex->on_body(std::string_view(at, n));
        if (!s) {
          ex->Respond(ErrorResponse(s.error()));
          return HPE_PAUSED;
        }
      }
      return 0;
    }
    ex->request_.body.append(at, n);
    return 0;
  }

  int OnMessageComplete() {
    message_complete_ = true;
    phase_ = Phase::kHandling;
    deadline_ = 0;
    ExchangePtr ex = current_;
    if (refused_) {
      Response r = std::move(*refused_);
      refused_.reset();
      ex->Respond(std::move(r));
    } else if (ex->route_->options.stream_body) {
      if (ex->responded()) {
        if (ex->state_ == Exchange::State::kDone) Finished(ex.get(), 0);
      } else if (ex->on_body_end) {
        auto end = std::move(ex->on_body_end);
        end();
      }
    } else {
      ex->route_->handler(ex);
    }
    return HPE_PAUSED;
  }

  Server* server_;
  std::unique_ptr<Stream> stream_;
  size_t index_;
  std::string peer_ip_;
  bool preauth_counted_ = false;  // counted in Server::preauth_connections_
  bool authenticated_ = false;    // some request of it was vouched for
  bool preauth_request_ = true;   // the current request is not (ServerLimits::preauth_*)
  uint64_t request_start_ms_ = 0;
  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  ExchangePtr current_;
  std::optional<Response> refused_;
  std::string stash_;  // received bytes not yet parsed (pipelined requests)
  Phase phase_ = Phase::kIdle;
  uint64_t deadline_ = 0;        // loop ms; 0 = none
  uint64_t write_deadline_ = 0;  // loop ms; 0 = nothing waiting to be sent
  size_t header_bytes_ = 0;
  size_t linger_bytes_ = 0;  // discarded while lingering
  size_t body_bytes_ = 0;
  int fail_status_ = 0;
  std::string fail_code_, fail_message_;
  int depth_ = 0;
  bool keep_alive_ = false;
  bool last_was_value_ = false;
  bool message_complete_ = false;
  bool paused_ = false;
  bool in_parser_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool peer_done_ = false;
  bool read_blocked_on_output_ = false;
  bool upgrade_asked_ = false;  // the request asked to switch protocols
  Exchange::TakeStream take_;   // an upgrade waiting for the parser to let go
};

// --- Exchange ---

std::shared_ptr<Exchange> Exchange::Internal(Request request, const Route* route, std::string principal,
                                             std::function<void(Response)> done) {
  auto ex = std::make_shared<Exchange>();
  ex->request_ = std::move(request);
  ex->route_ = route;
  ex->principal = std::move(principal);
  ex->start_ns_ = static_cast<int64_t>(uv_hrtime());
  ex->internal_done_ = std::move(done);
  return ex;
}

void Exchange::Respond(Response response) {
  if (state_ != State::kNone) return;
  state_ = State::kDone;
  if (internal_done_) {
    status_ = response.status;
    if (response.status >= 400) error_body_ = response.body.substr(0, 2048);
    auto done = std::move(internal_done_);
    internal_done_ = nullptr;
    done(std::move(response));
    return;
  }
  if (!conn_) return;
  status_ = response.status;
  if (response.status >= 400) error_body_ = response.body.substr(0, 2048);
  conn_->SendHead(this, response.status, response.headers, response.content_type,
                  static_cast<int64_t>(response.body.size()), response.body);
  if (conn_) conn_->Finished(this, response.body.size());
}

void Exchange::Begin(int status, const Headers& headers, int64_t content_length, std::string_view content_type) {
  if (state_ != State::kNone) return;
  state_ = State::kStreaming;
  if (internal_done_) {
    internal_answer_.status = status_ = status;
    internal_answer_.headers = headers;
    internal_answer_.content_type = std::string(content_type);
    if (content_length >= 0) internal_answer_.headers.push_back({"content-length", std::to_string(content_length)});
    return;
  }
  if (!conn_) return;
  conn_->SendHead(this, status, headers, content_type, content_length, {});
}

void Exchange::Write(std::string_view data) {
  if (state_ != State::kStreaming) return;
  if (internal_done_) {
    internal_answer_.body.append(data);
    return;
  }
  if (!conn_) return;
  conn_->SendBody(this, data);
}

void Exchange::End() {
  if (state_ != State::kStreaming) return;
  state_ = State::kDone;
  if (internal_done_) {
    auto done = std::move(internal_done_);
    internal_done_ = nullptr;
    done(std::move(internal_answer_));
    return;
  }
  if (!conn_) return;
  conn_->SendEnd(this);
  if (conn_) conn_->Finished(this, 0);
}

bool Exchange::Upgrade(std::string_view protocol, const Headers& headers, TakeStream take) {
  return conn_ && conn_->Upgrade(this, protocol, headers, std::move(take));
}

size_t Exchange::PendingWriteBytes() const { return conn_ ? conn_->PendingWriteBytes() : 0; }

// --- Server ---

Server::Server(uv_loop_t* loop, const Router* router, ServerLimits limits, metrics::Registry* metrics)
    : loop_(loop), router_(router), limits_(limits) {
  requests_ = metrics->Counters("berth_http_requests_total", "HTTP requests answered, by route and status",
                                {"route", "status"});
  latency_ = metrics->Histograms("berth_http_request_duration_seconds",
                                 "Time from the first byte of a request to its answer being queued",
                                 metrics::LatencyBuckets(), {"route"});
  open_connections_ = metrics->Gauges("berth_http_open_connections", "Open HTTP connections")->With({});
  rejected_connections_ =
      metrics->Counters("berth_http_rejected_connections_total", "Connections refused over max_connections")->With({});
  timeouts_ = metrics->Counters("berth_http_timeouts_total", "Requests or connections cut off by a timeout")->With({});
  preauth_rejected_ = metrics
                          ->Counters("berth_http_unauthenticated_rejected_total",
                                     "Connections refused: their address had too many not yet authenticated")
                          ->With({});
  auth_throttled_ = metrics
                        ->Counters("berth_http_auth_throttled_total",
                                   "Requests refused (429) after too many failed authentications from their address")
                        ->With({});
  sweep_ = std::make_unique<Timer>(loop_);
  sweep_->Start(kSweepIntervalMs, kSweepIntervalMs, [this] { Sweep(); });
  sweep_->Unref();
}

Server::~Server() {
  listeners_.clear();
  while (!connections_.empty()) {
    Connection* c = connections_.back();
    connections_.pop_back();
    c->Abandon();
    delete c;
  }
  writer_.reset();  // closes the sockets it still held
}

Result<int> Server::Listen(const Endpoint& where) {
  if (limits_.write_thread && !writer_) {
    auto w = WriteThread::Start(loop_);
    if (!w) return w.take_error();
    writer_ = std::move(w.value());
  }
  bool tls = tls_ && where.kind == Endpoint::Kind::kTcp;
  auto l = Listener::Open(
      loop_, where,
      [this, tls](std::unique_ptr<Stream> s) {
        // Over TLS a connection past the limit is still answered 503, after its
        // handshake, like any other.
        Serve(tls ? tls_->Wrap(std::move(s)) : std::move(s));
      },
      writer_.get());
  if (!l) return l.take_error();
  int port = (*l)->port();
  listeners_.push_back(std::move(l.value()));
  return port;
}

namespace {

// The client's address without its port: "10.0.0.1", "::1", "unix".
std::string PeerIp(const Stream& stream) {
  std::string name = stream.PeerName();
  size_t colon = name.rfind(':');
  return colon == std::string::npos ? name : name.substr(0, colon);
}

}  // namespace

bool Server::Exempt(const std::string& ip) const {
  if (!gate_) return true;  // nothing is authenticated here: nothing to bound before it
  if (limits_.limit_loopback) return false;
  return ip == "unix" || ip == "::1" || ip.starts_with("127.") || ip.starts_with("::ffff:127.") || ip.empty();
}

void Server::ReleasePreauth(const std::string& ip) {
  auto it = preauth_connections_.find(ip);
  if (it == preauth_connections_.end()) return;
  if (--it->second == 0) preauth_connections_.erase(it);
}

int64_t Server::AuthRetryAfter(const std::string& ip, uint64_t now_ms) {
  if (limits_.auth_failures_per_minute == 0 || auth_failures_.empty()) return 0;
  auto it = auth_failures_.find(ip);
  if (it == auth_failures_.end()) return 0;
  double per_ms = static_cast<double>(limits_.auth_failures_per_minute) / 60000.0;
  AuthBucket& b = it->second;
  b.tokens = std::min(static_cast<double>(limits_.auth_failures_per_minute),
                      b.tokens + static_cast<double>(now_ms - b.at_ms) * per_ms);
  b.at_ms = now_ms;
  if (b.tokens >= 1) return 0;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1 - b.tokens) / per_ms / 1000.0)));
}

void Server::NoteAuthFailure(const std::string& ip, uint64_t now_ms) {
  if (limits_.auth_failures_per_minute == 0 || Exempt(ip)) return;
  auto it = auth_failures_.find(ip);
  if (it == auth_failures_.end()) {
    if (auth_failures_.size() >= 65536) return;  // bounded; Sweep frees the addresses that calmed down
    it = auth_failures_.emplace(ip, AuthBucket{static_cast<double>(limits_.auth_failures_per_minute), now_ms}).first;
  }
  (void)AuthRetryAfter(ip, now_ms);  // refills
  it->second.tokens -= 1;
}

void Server::RejectStream(std::unique_ptr<Stream> stream, int status, std::string_view code, std::string_view message,
                          int retry_after_s) {
  {
    Response r = ErrorResponse(status, code, message);
    std::string out;
    AppendStatusLine(&out, status);
    out.append(DateHeader());
    out.append("Content-Type: application/json\r\nContent-Length: ").append(std::to_string(r.body.size()));
    out.append("\r\nConnection: close\r\nRetry-After: ")
        .append(std::to_string(retry_after_s))
        .append("\r\n\r\n")
        .append(r.body);
    if (*refusals_waiting_ >= kMaxRefusalsWaiting) {
      stream->Close();  // too many wait for their answer already: no answer
      return;
    }
    // Best effort: write and close; the kernel delivers it if the client reads.
    stream->Write(std::move(out));
    stream->Shutdown();
    // Keep the stream until the write is done, for kRefusalMs at most (a TLS
    // client that never says hello holds nothing for long): a tiny holder closes it.
    struct Closer : Stream::Handler {
      std::unique_ptr<Stream> s;
      std::unique_ptr<Timer> deadline;
      std::shared_ptr<size_t> waiting;
      void OnData(std::string_view) override {}
      void OnEnd(int) override { Done(); }
      void OnDrained() override { Done(); }
      void Done() {
        --*waiting;
        s->Close();
        delete this;
      }
    };
    if (stream->PendingWriteBytes() == 0) {
      stream->Close();
      return;
    }
    auto* closer = new Closer();
    closer->s = std::move(stream);
    closer->waiting = refusals_waiting_;
    ++*refusals_waiting_;
    closer->deadline = std::make_unique<Timer>(loop_);
    closer->deadline->Start(kRefusalMs, 0, [closer] { closer->Done(); });
    closer->deadline->Unref();
    closer->s->SetHandler(closer);
  }
}

void Server::Serve(std::unique_ptr<Stream> stream) {
  if (shutting_down_ || connections_.size() >= limits_.max_connections) {
    rejected_connections_->Inc();
    return RejectStream(std::move(stream), 503, "TooManyConnections",
                        shutting_down_ ? "the server is shutting down" : "the server has reached its connection limit",
                        1);
  }
  std::string ip = PeerIp(*stream);
  bool counted = false;
  if (limits_.preauth_connections_per_address > 0 && !Exempt(ip)) {
    size_t& n = preauth_connections_[ip];
    if (n >= limits_.preauth_connections_per_address) {
      preauth_rejected_->Inc();
      return RejectStream(std::move(stream), 429, "TooManyUnauthenticatedConnections",
                          std::to_string(n) + " connections from " + ip +
                              " have not authenticated yet; authenticate on them, or close some",
                          1);
    }
    n++;
    counted = true;
  }
  auto* c = new Connection(this, std::move(stream), connections_.size(), std::move(ip), counted);
  connections_.push_back(c);
  open_connections_->Set(static_cast<double>(connections_.size()));
}

void Server::Remove(Connection* c) {
  size_t i = c->index();
  if (i < connections_.size() && connections_[i] == c) {
    connections_[i] = connections_.back();
    connections_[i]->set_index(i);
    connections_.pop_back();
  }
  delete c;
  open_connections_->Set(static_cast<double>(connections_.size()));
  if (shutting_down_ && connections_.empty() && shutdown_done_) {
    auto done = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    shutdown_timer_.reset();
    done();
  }
}

void Server::Sweep() {
  uint64_t now = LoopNowMs(loop_);
  // Iterate by index from the back: CheckDeadlines may remove the connection.
  for (size_t i = connections_.size(); i-- > 0;) {
    if (i < connections_.size()) connections_[i]->CheckDeadlines(now);
  }
  // Addresses whose failed authentications are all refilled are forgotten.
  for (auto it = auth_failures_.begin(); it != auth_failures_.end();) {
    if (AuthRetryAfter(it->first, now) == 0 &&
        it->second.tokens >= static_cast<double>(limits_.auth_failures_per_minute))
      it = auth_failures_.erase(it);
    else
      ++it;
  }
}

void Server::Record(const Exchange& ex, int status, size_t) {
  if (status == 401 && (!ex.request().Header("authorization").empty() || ex.route().options.takes_credential)) {
    NoteAuthFailure(ex.request().peer_ip, LoopNowMs(loop_));
  }
  if (observer_) observer_(ex);
  RouteSeries& series = route_series_[&ex.route()];
  metrics::Counter* requests = nullptr;
  for (const auto& [s, counter] : series.requests) {
    if (s == status) requests = counter;
  }
  if (!requests) {
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    requests = requests_->With({ex.route().pattern, code});
    series.requests.emplace_back(status, requests);
  }
  requests->Inc();
  if (!series.latency) series.latency = latency_->With({ex.route().pattern});
  double seconds = static_cast<double>(static_cast<int64_t>(uv_hrtime()) - ex.start_ns()) / 1e9;
  series.latency->Observe(seconds);
}

void Server::Shutdown(uint64_t deadline_ms, std::function<void()> done) {
  shutting_down_ = true;
  listeners_.clear();
  shutdown_done_ = std::move(done);
  for (size_t i = connections_.size(); i-- > 0;) {
    if (i < connections_.size()) connections_[i]->Drain();
  }
  if (connections_.empty()) {
    auto d = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    if (d) d();
    return;
  }
  shutdown_timer_ = std::make_unique<Timer>(loop_);
  shutdown_timer_->Start(deadline_ms, 0, [this] {
    log::Warn("http", "shutdown deadline passed; closing busy connections",
              {{"connections", static_cast<uint64_t>(connections_.size())}});
    for (size_t i = connections_.size(); i-- > 0;) {
      if (i < connections_.size()) connections_[i]->Close();
    }
  });
}

}  // namespace berth::net::http
