#include "net/http_client.h"

#include <llhttp.h>
#include <uv.h>

#include <csignal>
#include <cstdio>

#include "net/tls.h"
#include "net/uv.h"

namespace berth::net::http {

// One connection, carrying one request at a time.
class ClientConn final : public Stream::Handler {
 public:
  friend class Client;
  ClientConn(Client* client, std::unique_ptr<Stream> stream) : client_(client), stream_(std::move(stream)) {
    llhttp_settings_init(&settings_);
    settings_.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = Self(p);
      if (c->last_was_value_ || c->resp_.headers.empty()) {
        c->resp_.headers.emplace_back();
        c->last_was_value_ = false;
      }
      for (size_t i = 0; i < n; i++) {
        char ch = at[i];
        c->resp_.headers.back().name.push_back((ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch);
      }
      return 0;
    };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = Self(p);
      if (!c->resp_.headers.empty()) c->resp_.headers.back().value.append(at, n);
      c->last_was_value_ = true;
      return 0;
    };
    settings_.on_headers_complete = [](llhttp_t* p) {
      auto* c = Self(p);
      // This llhttp takes a status of one or two digits ("HTTP/1.1 10"): not an
      // answer callers could read (a status under 400 looks like no error).
      if (p->status_code < 100) {
        llhttp_set_error_reason(p, "invalid status code");
        return -1;
      }
      c->resp_.status = p->status_code;
      // 1xx interim answers (100 Continue) are skipped: wait for the real one.
      if (p->status_code >= 100 && p->status_code < 200) {
        c->resp_.headers.clear();
        return 0;
      }
      return c->head_request_ ? 1 : 0;  // 1: a HEAD answer has no body
    };
    settings_.on_body = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = Self(p);
      if (c->on_body_ && p->status_code < 300) {
        c->on_body_(std::string_view(at, n));
        return 0;
      }
      if (c->resp_.body.size() + n > c->client_->options_.max_response_bytes) {
        c->too_large_ = true;
        return static_cast<int>(HPE_USER);
      }
      c->resp_.body.append(at, n);
      return 0;
    };
    settings_.on_message_complete = [](llhttp_t* p) {
      auto* c = Self(p);
      if (c->resp_.status >= 100 && c->resp_.status < 200) {
        c->resp_ = ClientResponse();
        return 0;
      }
      c->complete_ = true;
      c->keep_alive_ = llhttp_should_keep_alive(p) != 0;
      return static_cast<int>(HPE_PAUSED);
    };
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
    stream_->SetHandler(this);
    timer_ = std::make_unique<Timer>(client->loop_);
  }

  ~ClientConn() override { stream_->Close(); }

  // The request in flight is not this connection's first: the server may have
  // closed it while idle, and a failure before any answer may be retried.
  bool reused() const { return reused_; }

  void Start(Client::Pending& p) {
    reused_ = started_;
    started_ = true;
    resp_ = ClientResponse();
    complete_ = false;
    got_bytes_ = false;
    too_large_ = false;
    last_was_value_ = false;
    on_body_ = p.on_body;
    head_request_ = p.request.method == "HEAD";
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
    const ClientRequest& r = p.request;
    std::string out;
    out.reserve(256 + r.body.size());
    out.append(r.method).append(" ").append(r.target).append(" HTTP/1.1\r\n");
    if (!HasHeader(r.headers, "host")) {
      const Endpoint& e = client_->endpoint_;
      out.append("Host: ").append(e.kind == Endpoint::Kind::kUnix ? "localhost" : e.ToString()).append("\r\n");
    }
    for (const Header& h : r.headers) out.append(h.name).append(": ").append(h.value).append("\r\n");
    source_ = r.body_source;
    chunked_ = false;
    if (source_) {
      if (r.content_length >= 0) {
        out.append("Content-Length: ").append(std::to_string(r.content_length)).append("\r\n");
      } else {
        out.append("Transfer-Encoding: chunked\r\n");
        chunked_ = true;
      }
    } else if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
      out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
    }
    out.append("\r\n");
    if (!source_) out.append(r.body);
    stream_->Write(std::move(out));
    ArmTimer();
    stream_->ReadStart();
    if (source_) PumpBody();
  }

  void OnData(std::string_view data) override {
    got_bytes_ = true;
    ArmTimer();
    llhttp_errno_t err = llhttp_execute(&parser_, data.data(), data.size());
    if (err == HPE_PAUSED) {
      // A server does not send bytes past its answer before we ask again; if it
      // did, they are dropped along with the connection's reuse.
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data.data());
      llhttp_resume(&parser_);
      Finish(used == data.size());
      return;
    }
    if (err != HPE_OK) {
      if (too_large_) {
        Fail(Error{ErrorKind::kTooLarge, "ResponseTooLarge",
                   "the response body exceeds " + std::to_string(client_->options_.max_response_bytes) + " bytes"});
      } else {
        const char* reason = llhttp_get_error_reason(&parser_);
        Fail(Error{ErrorKind::kUnavailable, "BadResponse",
                   std::string("malformed HTTP response from ") + client_->endpoint_.ToString() + ": " +
                       (reason ? reason : llhttp_errno_name(err))});
      }
    }
  }

  void OnEnd(int err) override {
    if (err == 0 && !complete_) {
      // A body delimited by the close of the connection ends here (llhttp_finish
      // returns what on_message_complete returned: HPE_PAUSED).
      llhttp_errno_t finished = llhttp_finish(&parser_);
      if ((finished == HPE_OK || finished == HPE_PAUSED) && complete_) {
        Finish(false);
        return;
      }
      if (complete_) return;
    }
    std::string why = stream_->FailureText();
    if (why.empty()) why = err == 0 ? "the server closed the connection" : UvError(err);
    Fail(Error{ErrorKind::kUnavailable, "ConnectionLost",
               "request to " + client_->endpoint_.ToString() + " failed: " + why},
         !got_bytes_);
  }

  void OnDrained() override {
    if (source_) PumpBody();
  }

 private:
  static ClientConn* Self(llhttp_t* p) { return static_cast<ClientConn*>(p->data); }

  void ArmTimer() {
    timer_->Start(client_->options_.timeout_ms, 0, [this] {
      Fail(Error{ErrorKind::kTimeout, "Timeout",
                 "no answer from " + client_->endpoint_.ToString() + " within " +
                     std::to_string(client_->options_.timeout_ms) + " ms"});
    });
  }

  // Sends body pieces until the socket's queue is full or the source is done.
  void PumpBody() {
    while (source_ && stream_->PendingWriteBytes() < (1u << 20)) {
      std::string piece;
      bool more = source_(&piece);
      bool nothing = piece.empty();
      if (!nothing) {
        if (chunked_) {
          char buf[24];
          snprintf(buf, sizeof buf, "%zx\r\n", piece.size());
          std::string framed(buf);
          framed.append(piece).append("\r\n");
          stream_->Write(std::move(framed));
        } else {
          stream_->Write(std::move(piece));
        }
      }
      if (!more) {
        if (chunked_) stream_->Write(std::string("0\r\n\r\n"));
        source_ = nullptr;
      }
      ArmTimer();
      // Nothing now, more later: the owner calls Client::ResumeBody.
      if (more && nothing) break;
    }
  }

  void Finish(bool reusable) {
    timer_->Stop();
    stream_->ReadStop();
    ClientResponse r = std::move(resp_);
    resp_ = ClientResponse();
    client_->Complete(std::move(r), reusable && keep_alive_ && !source_);
  }

  void Fail(Error e, bool before_response = false) {
    timer_->Stop();
    client_->ConnFailed(std::move(e), before_response);
  }

  Client* client_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Timer> timer_;
  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  ClientResponse resp_;
  Client::BodyFn on_body_;
  std::function<bool(std::string*)> source_;
  bool chunked_ = false;
  bool head_request_ = false;
  bool complete_ = false;
  bool keep_alive_ = false;
  bool got_bytes_ = false;
  bool too_large_ = false;
  bool last_was_value_ = false;
  bool started_ = false;  // a request was started on this connection
  bool reused_ = false;   // ... before the one in flight
};

Client::Client(uv_loop_t* loop, Endpoint endpoint, ClientOptions options)
    : loop_(loop), endpoint_(std::move(endpoint)), options_(options), alive_(std::make_shared<bool>(true)) {}

Client::~Client() {
  *alive_ = false;
  conn_.reset();
}

void Client::Send(ClientRequest request, Done done, BodyFn on_body) {
  queue_.push_back(Pending{std::move(request), std::move(done), std::move(on_body)});
  Pump();
}

ClientRequest BearerRequest(std::string method, std::string target, std::string_view token, std::string body) {
  ClientRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.headers.push_back({"Authorization", "Bearer " + std::string(token)});
  if (!r.body.empty()) r.headers.push_back({"Content-Type", "application/json"});
  return r;
}

void Client::ResumeBody() {
  if (conn_ && busy_) conn_->PumpBody();
}

void Client::Cancel() {
  conn_.reset();
  busy_ = false;
  std::deque<Pending> q = std::move(queue_);
  queue_.clear();
  for (Pending& p : q) p.done(Error{ErrorKind::kUnavailable, "Cancelled", "the request was cancelled"});
}

void Client::Pump() {
  if (busy_ || connecting_ || queue_.empty()) return;
  if (conn_) {
    busy_ = true;
    conn_->Start(queue_.front());
    return;
  }
  connecting_ = true;
  std::weak_ptr<bool> alive = alive_;
  auto connected = [this, alive](Result<std::unique_ptr<Stream>> s) {
    if (alive.expired()) return;
    connecting_ = false;
    if (!s) {
      // Nothing reached the server: every queued request fails alike.
      std::deque<Pending> q = std::move(queue_);
      queue_.clear();
      for (Pending& p : q) p.done(s.error());
      return;
    }
    std::unique_ptr<Stream> stream = std::move(s.value());
    if (endpoint_.tls) {
      if (!options_.tls) {
        std::deque<Pending> q = std::move(queue_);
        queue_.clear();
        for (Pending& p : q) {
          p.done(Error{ErrorKind::kInvalid, "NoTrust",
                       "https://" + endpoint_.ToString() +
                           ": nothing to trust the server by (a token that carries the CA fingerprint, or a CA file)"});
        }
        return;
      }
      stream = options_.tls->Wrap(loop_, std::move(stream), endpoint_.host);
    }
    conn_ = std::make_unique<ClientConn>(this, std::move(stream));
    Pump();
  };
  if (options_.connect) {
    options_.connect(loop_, endpoint_, std::move(connected));
  } else {
    Connect(loop_, endpoint_, std::move(connected));
  }
}

void Client::Complete(Result<ClientResponse> result, bool reusable) {
  busy_ = false;
  Pending p = std::move(queue_.front());
  queue_.pop_front();
  if (!reusable) conn_.reset();
  std::weak_ptr<bool> alive = alive_;
  p.done(std::move(result));
  if (!alive.expired()) Pump();
}

void Client::ConnFailed(Error error, bool before_response) {
  busy_ = false;
  bool was_reused = conn_ && conn_->reused();
  conn_.reset();
  if (queue_.empty()) return;
  Pending& front = queue_.front();
  // A kept-alive connection the server closed while idle: try once more afresh,
  // unless the body was streamed (it cannot be replayed).
  if (before_response && was_reused && !front.retried && !front.request.body_source) {
    front.retried = true;
    Pump();
    return;
  }
  Pending p = std::move(front);
  queue_.pop_front();
  std::weak_ptr<bool> alive = alive_;
  p.done(std::move(error));
  if (!alive.expired()) Pump();
}

Result<ClientResponse> FetchSync(const Endpoint& endpoint, ClientRequest request, ClientOptions options,
                                 Client::BodyFn on_body) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::optional<Result<ClientResponse>> out;
  {
    Client client(&loop, endpoint, options);
    std::vector<std::unique_ptr<SignalWatch>> signals;
    if (options.stop_on_signals) {
      for (int signum : {SIGINT, SIGTERM}) {
        signals.push_back(std::make_unique<SignalWatch>(&loop, signum, [&out](int sig) {
          if (!out) out.emplace(Error{ErrorKind::kUnavailable, "Interrupted", sig == SIGINT ? "SIGINT" : "SIGTERM"});
        }));
      }
    }
    client.Send(
        std::move(request),
        [&](Result<ClientResponse> r) {
          if (!out) out.emplace(std::move(r));
        },
        std::move(on_body));
    while (!out && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    client.Cancel();  // an interrupted request is still on the wire
  }
  // Let the closes finish, then free the loop.
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (!out) return Error{ErrorKind::kInternal, "NoAnswer", "the request ended without an answer"};
  return std::move(*out);
}

}  // namespace berth::net::http
