// Fuzzes the HTTP client's response parsing: the real Client and ClientConn
// (status line, headers, 1xx interim answers, Content-Length, chunked and
// close-delimited bodies, bodies streamed to a callback, the buffered-body bound,
// keep-alive reuse, the retry of a request whose reused connection closed, and a
// request body streamed from a source that pauses) over in-memory streams handed
// in through ClientOptions::connect. The input is the server's bytes for four
// requests sent in order (GET, HEAD, GET streamed to a callback, PUT with a
// streamed body), cut into a few pieces at points taken from a hash of the input;
// the rest of a piece the client dropped, and every later piece, go to the next
// connection it opens. Once the bytes run out, each connection sees EOF.
//
// Invariants checked besides the sanitizers: every request's callback fires
// exactly once; a success is a final answer (status 200 and up) whose body, kept
// or streamed, is no longer than its Content-Length nor the buffering bound, empty
// for HEAD, and for the streamed request with a 2xx status was not also buffered.
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "net/http.h"
#include "net/http_client.h"

namespace {

using namespace berth;
using namespace berth::net::http;

constexpr size_t kMaxBuffered = 1024;  // small, so the bound is reached
constexpr int kRequests = 4;

uv_loop_t* Loop() {
  static uv_loop_t* loop = [] {
    auto* l = new uv_loop_t;
    uv_loop_init(l);
    return l;
  }();
  return loop;
}

// What one request saw.
struct Outcome {
  bool sent = false;
  int calls = 0;
  size_t streamed = 0;  // bytes given to on_body
};

// The declared length of a response, when it has exactly one Content-Length of
// digits and no Transfer-Encoding (otherwise the body is not bounded by it).
std::optional<uint64_t> DeclaredLength(const ClientResponse& r) {
  std::optional<uint64_t> length;
  for (const Header& h : r.headers) {
    if (h.name == "transfer-encoding") return std::nullopt;
    if (h.name != "content-length") continue;
    if (length || h.value.empty() || h.value.size() > 18) return std::nullopt;
    uint64_t n = 0;
    for (char c : h.value) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    length = n;
  }
  return length;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uv_loop_t* loop = Loop();
  uint64_t hash = fuzz::Fnv1a(data, size);
  std::deque<std::string_view> pieces = fuzz::CutPieces(data, size, hash);
  bool chained = (hash >> 5) & 1;       // each request sent from the previous one's callback
  bool cancel_early = (hash >> 6) & 1;  // the streamed request's callback cancels the rest
  bool sized_upload = (hash >> 8) & 1;  // the PUT body has a Content-Length (else chunked)

  // Every connection the client asked for; the last one is current.
  std::deque<fuzz::Pipe> pipes;
  std::function<void(Result<std::unique_ptr<net::Stream>>)> dialing;
  bool eof_given = false;  // to the current pipe
  Outcome outcomes[kRequests];
  bool resume_wanted = false;
  {
    ClientOptions options;
    options.max_response_bytes = kMaxBuffered;
    options.connect = [&](uv_loop_t*, const net::Endpoint&,
                          std::function<void(Result<std::unique_ptr<net::Stream>>)> done) {
      dialing = std::move(done);
    };
    net::Endpoint endpoint;
    endpoint.host = "fuzz";
    endpoint.port = 80;
    Client client(loop, endpoint, options);

    std::function<void(int)> send = [&](int i) {
      outcomes[i].sent = true;
      ClientRequest req;
      Client::BodyFn on_body;
      switch (i) {
        case 0: req.target = "/a"; break;
        case 1:
          req.method = "HEAD";
          req.target = "/b";
          break;
        case 2:
          req.target = "/events";
          on_body = [&outcomes](std::string_view piece) {
            outcomes[2].streamed += piece.size();
            if (outcomes[2].calls) fuzz::Fail("a body piece after the callback");
          };
          break;
        default: {
          req.method = "PUT";
          req.target = "/upload";
          if (sized_upload) req.content_length = 10;
          auto step = std::make_shared<int>(0);
          req.body_source = [step, &resume_wanted](std::string* piece) {
            switch ((*step)++) {
              case 0: *piece = "hello"; return true;
              case 1: resume_wanted = true; return true;  // nothing yet: the harness resumes
              default: *piece = "world"; return false;
            }
          };
        }
      }
      client.Send(
          std::move(req),
          [&, i](Result<ClientResponse> r) {
            Outcome& o = outcomes[i];
            if (++o.calls > 1) fuzz::Fail("a request's callback fired twice");
            if (r) {
              const ClientResponse& resp = r.value();
              if (resp.status < 200 || resp.status > 999) fuzz::Fail("success with an interim or odd status");
              size_t body = resp.body.size() + o.streamed;
              if (resp.body.size() > kMaxBuffered) fuzz::Fail("a buffered body over the bound");
              if (std::optional<uint64_t> declared = DeclaredLength(resp); declared && body > *declared) {
                fuzz::Fail("a body longer than its Content-Length", resp.body);
              }
              if (i == 1 && body != 0) fuzz::Fail("a body in the answer to HEAD", resp.body);
              if (i == 2 && resp.status < 300 && !resp.body.empty()) fuzz::Fail("a streamed body also buffered");
            }
            if (i == 2 && cancel_early) client.Cancel();
            if (chained && i + 1 < kRequests) send(i + 1);
          },
          std::move(on_body));
    };
    if (chained) {
      send(0);
    } else {
      for (int i = 0; i < kRequests; i++) send(i);
    }

    for (int steps = 0; steps < 10000; steps++) {
      fuzz::Pipe* cur = pipes.empty() ? nullptr : &pipes.back();
      if (dialing) {
        auto done = std::move(dialing);
        dialing = nullptr;
        if (pieces.empty() && (hash >> 9) & 1) {
          done(Error{ErrorKind::kUnavailable, "ConnectionRefused", "connection refused"});
        } else {
          fuzz::Pipe& p = pipes.emplace_back();
          p.output_cap = 0;
          eof_given = false;
          done(std::unique_ptr<net::Stream>(std::make_unique<fuzz::MemStream>(&p)));
        }
      } else if (resume_wanted) {
        resume_wanted = false;
        client.ResumeBody();
      } else if (cur && cur->alive && !cur->closed && cur->reading && cur->handler && !pieces.empty()) {
        std::string_view piece = pieces.front();
        pieces.pop_front();
        cur->handler->OnData(piece);
      } else if (cur && cur->alive && !cur->closed && cur->reading && cur->handler && !eof_given) {
        eof_given = true;
        cur->handler->OnEnd(0);
      } else if (cur && cur->alive && !cur->closed && !pieces.empty()) {
        // A connection the client keeps but does not read from: it drops these
        // bytes (a server does not talk out of turn), and the next go elsewhere.
        pieces.pop_front();
      } else {
        break;
      }
      uv_run(loop, UV_RUN_NOWAIT);
    }
    for (const Outcome& o : outcomes) {
      if (o.sent && o.calls == 0) fuzz::Fail("a request never answered, with nothing left to read");
    }
  }
  uv_run(loop, UV_RUN_NOWAIT);  // the connections' timers close
  return 0;
}
