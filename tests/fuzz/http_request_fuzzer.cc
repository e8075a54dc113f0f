// Fuzzes the HTTP server's connection state machine: the real Server::Serve() and
// Connection (llhttp callbacks, limits, pipelining, early answers, streamed bodies
// and answers, linger) over an in-memory Stream. The input is one client's bytes,
// fed in a few pieces whose cut points come from a hash of the input, so partial
// reads are explored without a control header in the corpus files.
//
// Besides the sanitizers, it checks one invariant of its own: after the peer's EOF
// and every held answer given, the server has closed or is idle, never stuck.
//
// One Server (and its metrics) serves every input, a fresh connection each, as a
// long-running server does; the connection is reset at the end of its input, and
// the failed authentications counted for its address are forgotten, so each input
// meets the same server.
//
// Built with BERTH_FUZZ_OVER_TLS (http_tls_fuzzer), the same bytes are the
// plaintext of a TLS session: a client TLS stream encrypts them and the server
// reads them through its TLS stream, over an in-memory wire.
#include "http_request_fuzzer.h"

#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/crypto.h"
#include "base/json.h"
#include "base/metrics.h"
#include "fuzz_common.h"
#include "model/cluster.h"
#include "net/http_server.h"
#include "net/pki.h"
#include "net/router.h"
#include "net/stream.h"
#include "net/tls.h"

namespace {

using namespace berth;
using namespace berth::net::http;
using fuzz::MemStream;
using fuzz::Pipe;

// One end of an in-memory connection for the TLS variant: writes go to the other
// end's inbox, which the driver delivers while that end reads.
struct WireEnd {
  net::Stream::Handler* handler = nullptr;
  bool alive = true;
  bool closed = false;
  bool reading = false;
  bool shut = false;  // Shutdown() called: the other end sees EOF once its inbox is read
  bool eof_given = false;
  std::string inbox;  // bytes the other end wrote, not yet delivered here
  WireEnd* peer = nullptr;
};

class WireStream final : public net::Stream {
 public:
  explicit WireStream(WireEnd* end) : e_(end) {}
  ~WireStream() override {
    e_->alive = false;
    e_->handler = nullptr;
    e_->reading = false;
  }
  void SetHandler(Handler* handler) override { e_->handler = handler; }
  void ReadStart() override {
    if (!e_->closed) e_->reading = true;
  }
  void ReadStop() override { e_->reading = false; }
  void Write(std::string data) override {
    if (e_->closed || e_->shut || data.empty()) return;
    if (e_->peer->inbox.size() < (1 << 20)) e_->peer->inbox.append(data);
  }
  size_t PendingWriteBytes() const override { return 0; }
  void Shutdown() override { e_->shut = true; }
  void Close() override {
    e_->closed = true;
    e_->reading = false;
    e_->handler = nullptr;
  }
  std::string PeerName() const override { return "fuzz-tls:0"; }

 private:
  WireEnd* e_;
};

// The client's side of the TLS variant: the plaintext the server answered.
struct TlsClientSink final : net::Stream::Handler {
  std::string output;
  bool ended = false;
  void OnData(std::string_view data) override {
    if (output.size() < (1 << 16)) output.append(data.substr(0, (1 << 16) - output.size()));
  }
  void OnEnd(int) override { ended = true; }
};

// Held answers (GET /defer), given by the driver between input pieces.
std::deque<ExchangePtr>* g_held = nullptr;

Response Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

struct Env {
  uv_loop_t loop;
  Router router;
  metrics::Registry metrics;
  std::unique_ptr<Server> server;  // serves every input
  std::deque<ExchangePtr> held;
  // The TLS variant: a CA and server certificate made once, and both sides.
  std::unique_ptr<net::tls::ServerContext> tls_server;
  std::shared_ptr<net::tls::ClientContext> tls_client;
};

// Makes the TLS contexts on first use (a P-256 CA and a server certificate).
void MakeTls(Env* env) {
  if (env->tls_server) return;
  std::string ca_key = net::pki::NewKey().value();
  net::pki::CertSpec ca;
  ca.use = net::pki::CertSpec::Use::kCa;
  ca.common_name = "fuzz CA";
  ca.not_before_unix = 1700000000;
  ca.not_after_unix = 4100000000;
  std::string ca_pem = net::pki::SelfSign(ca_key, ca).value();
  std::string key = net::pki::NewKey().value();
  net::pki::CertSpec leaf = ca;
  leaf.use = net::pki::CertSpec::Use::kServer;
  leaf.common_name = "fuzz";
  std::string cert = net::pki::Issue(ca_pem, ca_key, key, leaf).value();
  net::tls::ServerSettings ss;
  ss.cert_pem = cert + ca_pem;
  ss.key_pem = key;
  ss.handshakes_off_loop = false;  // the harness turns the loop by hand, one thread
  env->tls_server = std::move(net::tls::ServerContext::Create(&env->loop, ss).value());
  net::tls::ClientSettings cs;
  cs.pin_sha256 = net::pki::Inspect(ca_pem).value().fingerprint;
  env->tls_client = net::tls::ClientContext::Create(cs).value();
}

Env* MakeEnv() {
  auto* env = new Env();
  uv_loop_init(&env->loop);
  g_held = &env->held;
  Router& r = env->router;

  // A JSON route: parse the body and validate a clusterName.
  r.Add(
      "POST", "/v1/clusters",
      [](const ExchangePtr& ex) {
        Result<json::Doc> doc = json::Doc::Parse(ex->request().body);
        if (!doc) return ex->Respond(ErrorResponse(doc.error()));
        if (!doc->view().IsObject()) return ex->Respond(ErrorResponse(Error::Invalid("the body must be an object")));
        Result<std::string> name = json::RequireString(doc->view(), "clusterName", "clusterName");
        if (!name) return ex->Respond(ErrorResponse(name.error()));
        if (Status s = model::ValidateClusterName(name.value()); !s) return ex->Respond(ErrorResponse(s.error()));
        Result<int64_t> n = json::OptionalInt(doc->view(), "count", "count", 0);
        if (!n) return ex->Respond(ErrorResponse(n.error()));
        model::Cluster c;
        c.name = name.value();
        c.arn = model::ClusterArn(c.name);
        ex->Respond(Json(200, json::Doc::Object().Set("cluster", model::ClusterJson(c)).Print()));
      },
      RouteOptions{.max_body = 4096});

  // Parameter routes.
  r.Add("GET", "/v1/clusters/{name}", [](const ExchangePtr& ex) {
    std::string_view name = ex->request().Param("name");
    if (Status s = model::ValidateClusterName(name); !s) return ex->Respond(ErrorResponse(s.error()));
    std::string body;
    json::AppendQuoted(&body, name);
    ex->Respond(Json(200, body));
  });
  r.Add("DELETE", "/v1/clusters/{name}", [](const ExchangePtr& ex) { ex->Respond(Json(204, "")); });
  r.Add("GET", "/files/{path...}", [](const ExchangePtr& ex) {
    std::string body = std::string(ex->request().Param("path"));
    if (auto q = ex->request().Query("q")) body += "?" + *q;
    ex->Respond(Json(200, body));
  });

  // A streaming route: hashes the body as it arrives, refuses a '!' byte midway,
  // and answers chunked.
  r.Add(
      "PUT", "/upload/{name}",
      [](const ExchangePtr& ex) {
        auto sha = std::make_shared<crypto::Sha256Stream>();
        ex->on_body = [sha](std::string_view piece) -> Status {
          if (piece.find('!') != std::string_view::npos) {
            return Error{ErrorKind::kInvalid, "BadByte", "the body holds a '!'"};
          }
          sha->Update(piece);
          return {};
        };
        std::weak_ptr<Exchange> weak = ex;
        ex->on_body_end = [sha, weak] {
          ExchangePtr e = weak.lock();
          if (!e) return;
          e->Begin(201, {{"X-Kind", "digest"}}, -1, "text/plain");
          e->Write(crypto::Hex(sha->Finish()));
          e->Write("\n");
          e->End();
        };
      },
      RouteOptions{.max_body = 1 << 16, .stream_body = true});

  // Streamed answers with and without a length, and an answer given later.
  r.Add("GET", "/stream", [](const ExchangePtr& ex) {
    ex->Begin(200, {}, -1, "text/plain");
    ex->Write(ex->request().target);
    ex->Write("");
    ex->End();
  });
  r.Add("GET", "/sized", [](const ExchangePtr& ex) {
    ex->Begin(200, {}, 5, "text/plain");
    ex->Write("12345");
    ex->End();
  });
  r.Add("GET", "/defer", [](const ExchangePtr& ex) { g_held->push_back(ex); });
  r.Add(
      "POST", "/defer", [](const ExchangePtr& ex) { g_held->push_back(ex); }, RouteOptions{.max_body = 512});
  r.Add(
      "POST", "/echo", [](const ExchangePtr& ex) { ex->Respond(Json(200, ex->request().body)); },
      RouteOptions{.max_body = 1024});
  r.Add(
      "GET", "/healthz", [](const ExchangePtr& ex) { ex->Respond(Json(200, "{}")); },
      RouteOptions{.access = Access::kOpen});
  return env;
}

// (Re)makes the server every input goes to.
void MakeServer(Env* env) {
  env->server.reset();
  uv_run(&env->loop, UV_RUN_NOWAIT);  // the old one's timers close
  ServerLimits limits;
  limits.max_header_bytes = 2048;
  limits.max_headers = 16;
  limits.max_output_bytes = 256;  // small, so output back-pressure is reached
  env->server = std::make_unique<Server>(&env->loop, &env->router, limits, &env->metrics);
  env->server->SetGate([](Exchange& ex) -> std::optional<Response> {
    if (HasHeader(ex.request().headers, "x-deny")) return ErrorResponse(401, "Unauthorized", "denied");
    ex.principal = "fuzz";
    return std::nullopt;
  });
}

// One environment for both variants (the routes hold answers in its `held`).
Env* TheEnv() {
  static Env* env = [] {
    Env* e = MakeEnv();
    MakeServer(e);
    return e;
  }();
  return env;
}

// Ends an input: resets the connection if the server still holds it (a server
// that keeps a reset connection is made anew, so the next input meets a fresh
// one), drops held answers, and forgets the address's failed authentications.
void EndInput(Env* env, net::Stream::Handler* open_handler) {
  if (open_handler) {
    open_handler->OnEnd(UV_ECONNRESET);
    uv_run(&env->loop, UV_RUN_NOWAIT);
  }
  env->held.clear();
  if (env->server->connection_count() != 0) MakeServer(env);
  env->server->ForgetAuthFailures();
  // Closes finish in a later loop run than the one that starts them (a TLS
  // stream's inner stream, then its timer): run until nothing is left to close,
  // so each input frees what it allocated, and libFuzzer's leak check, which
  // scans the whole heap after any input with more mallocs than frees, stays off.
  for (int i = 0; i < 4; i++) uv_run(&env->loop, UV_RUN_NOWAIT);
}

// Gives the oldest held answer, in one of three shapes.
void AnswerOne(Env* env, uint64_t* rng) {
  ExchangePtr ex = std::move(env->held.front());
  env->held.pop_front();
  *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
  switch ((*rng >> 33) % 3) {
    case 0: ex->Respond(Json(200, "{\"deferred\":true}")); break;
    case 1:
      ex->Begin(200, {}, -1);
      ex->Write("part");
      ex->End();
      break;
    default: ex->Respond(ErrorResponse(503, "Later", "try again")); break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

namespace berth::fuzz {

namespace {

// `keep_output`: the unit suite reads what the server wrote; the fuzzer does not.
HttpOutcome Serve(const uint8_t* data, size_t size, bool keep_output) {
  Env* env = TheEnv();
  HttpOutcome outcome;
  uint64_t hash = fuzz::Fnv1a(data, size);
  std::deque<std::string_view> pieces = fuzz::CutPieces(data, size, hash);

  Pipe pipe;  // outlives the connection: EndInput has it gone
  pipe.async_writes = (hash >> 7) & 1;
  if (!keep_output) pipe.output_cap = 0;
  env->server->Serve(std::make_unique<MemStream>(&pipe));

  uint64_t rng = hash;
  bool eof_sent = false;
  for (int steps = 0; steps < 10000; steps++) {
    if (!pipe.alive || pipe.closed) break;
    if (pipe.reading && pipe.handler && !pieces.empty()) {
      std::string_view piece = pieces.front();
      pieces.pop_front();
      pipe.handler->OnData(piece);
    } else if (pipe.pending > 0 && pipe.handler) {
      pipe.pending = 0;
      pipe.handler->OnDrained();
    } else if (!env->held.empty()) {
      AnswerOne(env, &rng);
    } else if (pipe.reading && pipe.handler && !eof_sent) {
      eof_sent = true;
      pipe.handler->OnEnd(0);
    } else {
      break;
    }
    uv_run(&env->loop, UV_RUN_NOWAIT);
  }
  // With nothing left to send or answer, the connection has closed or is idle
  // waiting for a next request; an unread input piece means it stalled.
  outcome.stalled =
      pipe.alive && !pipe.closed && !pieces.empty() && env->held.empty() && pipe.pending == 0 && !pipe.reading;
  outcome.pieces_left = pieces.size();
  outcome.closed = pipe.closed || !pipe.alive;
  outcome.output = std::move(pipe.output);
  EndInput(env, pipe.alive && !pipe.closed ? pipe.handler : nullptr);
  return outcome;
}

}  // namespace

HttpOutcome ServeHttpInput(const uint8_t* data, size_t size) { return Serve(data, size, true); }

HttpOutcome ServeHttpInputOverTls(const uint8_t* data, size_t size) {
  Env* env = TheEnv();
  MakeTls(env);
  HttpOutcome outcome;
  uint64_t hash = fuzz::Fnv1a(data, size);
  std::deque<std::string_view> pieces = fuzz::CutPieces(data, size, hash);
  {
    WireEnd server_end, client_end;  // outlive both streams
    server_end.peer = &client_end;
    client_end.peer = &server_end;
    Server& server = *env->server;
    server.Serve(env->tls_server->Wrap(std::make_unique<WireStream>(&server_end)));
    TlsClientSink sink;
    std::unique_ptr<net::Stream> client =
        env->tls_client->Wrap(&env->loop, std::make_unique<WireStream>(&client_end), "");
    client->SetHandler(&sink);
    client->ReadStart();

    uint64_t rng = hash;
    bool eof_sent = false;
    // Delivers what one end's peer wrote, then its EOF once the peer shut down.
    auto deliver = [](WireEnd& e) {
      if (!e.alive || e.closed || !e.reading || !e.handler) return false;
      if (!e.inbox.empty()) {
        std::string chunk;
        chunk.swap(e.inbox);
        e.handler->OnData(chunk);
        return true;
      }
      if ((e.peer->shut || e.peer->closed) && !e.eof_given) {
        e.eof_given = true;
        e.handler->OnEnd(0);
        return true;
      }
      return false;
    };
    for (int steps = 0; steps < 20000; steps++) {
      if (!server_end.alive || server_end.closed) break;
      if (deliver(server_end) || deliver(client_end)) {
        // bytes moved
      } else if (!pieces.empty()) {
        client->Write(std::string(pieces.front()));
        pieces.pop_front();
      } else if (!env->held.empty()) {
        AnswerOne(env, &rng);
      } else if (!eof_sent) {
        eof_sent = true;
        client->Shutdown();  // close_notify, then FIN
      } else {
        break;
      }
      uv_run(&env->loop, UV_RUN_NOWAIT);
    }
    // Everything sent and answered: the server has closed or waits for a next
    // request; input it never read means it stalled.
    outcome.stalled =
        server_end.alive && !server_end.closed && !server_end.inbox.empty() && env->held.empty() && !server_end.reading;
    outcome.pieces_left = pieces.size();
    outcome.closed = server_end.closed || !server_end.alive;
    outcome.output = std::move(sink.output);
    client.reset();
    EndInput(env, server_end.alive && !server_end.closed ? server_end.handler : nullptr);
  }
  return outcome;
}

std::string HttpOutcome::Summary() const {
  std::string out;
  static constexpr std::string_view kStatusLine = "HTTP/1.1 ";
  for (size_t at = output.find(kStatusLine); at != std::string::npos; at = output.find(kStatusLine, at + 1)) {
    if (at + kStatusLine.size() + 3 > output.size()) break;
    out += output.substr(at + kStatusLine.size(), 3) + " ";
  }
  out += closed ? "closed" : "open";
  if (stalled) out += " STALLED";
  return out;
}

}  // namespace berth::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
#ifdef BERTH_FUZZ_OVER_TLS
  berth::fuzz::HttpOutcome outcome = berth::fuzz::ServeHttpInputOverTls(data, size);
#else
  berth::fuzz::HttpOutcome outcome = berth::fuzz::Serve(data, size, false);
#endif
  if (outcome.stalled) {
    fprintf(stderr, "connection stalled: not reading, %zu input piece(s) left, nothing pending\n", outcome.pieces_left);
    abort();
  }
  return 0;
}
