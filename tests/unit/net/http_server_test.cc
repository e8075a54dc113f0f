// net/http_server and net/http_client together: an in-process server and client on
// one real uv loop, bound to 127.0.0.1 port 0. Raw connections speak HTTP by hand
// where the client would not (pipelining, chunk framing, malformed requests).
#include "net/http_server.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

#include "base/crypto.h"
#include "base/metrics.h"
#include "net/http_client.h"
#include "net/router.h"
#include "net/socket.h"
#include "net/uv.h"
#include "support/test_loop.h"

using namespace berth;
using namespace berth::net::http;
using berth::testing::RawConn;
using berth::testing::TempDir;
using berth::testing::TestLoop;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// A field of /proc/self/status in KiB ("VmHWM", "VmRSS"), or -1.
long ProcStatusKiB(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0); returns false if not possible.
bool ResetPeakRss() {
  FILE* f = fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  bool ok = fputs("5", f) >= 0;
  ok = fclose(f) == 0 && ok;
  return ok;
}

// 8 MiB that show any piece out of order: line i says i.
const std::string& BigBody() {
  static const std::string body = [] {
    std::string b;
    char line[32];
    for (int i = 0; b.size() < (8u << 20); i++) {
      snprintf(line, sizeof line, "%015d\n", i);
      b += line;
    }
    return b;
  }();
  return body;
}

Response Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

// One server on a loop with a set of routes exercising every path of the server.
struct ServerFixture {
  TestLoop loop;
  metrics::Registry metrics;
  Router router;
  std::unique_ptr<Server> server;
  std::unique_ptr<net::Listener> listener;
  std::unique_ptr<net::WriteThread> writer;
  net::Endpoint endpoint;
  int accepted = 0;
  std::vector<ExchangePtr> held;  // answers the test gives itself

  // What the streaming upload route saw.
  struct Upload {
    crypto::Sha256Stream sha;
    uint64_t bytes = 0;
    size_t pieces = 0;
    size_t max_piece = 0;
    size_t buffered = 0;  // request().body.size() at the end
    std::string digest;
    bool ended = false;
  };
  std::unique_ptr<Upload> upload;

  ServerFixture() {
    router.Add("GET", "/hello", [](const ExchangePtr& ex) { ex->Respond(Text(200, "hello")); });
    router.Add("POST", "/echo", [](const ExchangePtr& ex) {
      Response r = Text(200, ex->request().body);
      r.headers.push_back({"X-Body-Length", std::to_string(ex->request().body.size())});
      ex->Respond(std::move(r));
    });
    router.Add("GET", "/items/{id}",
               [](const ExchangePtr& ex) { ex->Respond(Text(200, "item:" + std::string(ex->request().Param("id")))); });
    router.Add("GET", "/stream", [](const ExchangePtr& ex) {
      ex->Begin(200, {{"X-Streamed", "yes"}}, -1, "text/plain");
      ex->Write("one,");
      ex->Write("");  // an empty piece must not end the chunked body
      ex->Write("two,");
      ex->End();
    });
    router.Add("GET", "/big", [](const ExchangePtr& ex) { ex->Respond(Text(200, BigBody())); });
    router.Add("GET", "/hold", [this](const ExchangePtr& ex) { held.push_back(ex); });
    router.Add("POST", "/hold", [this](const ExchangePtr& ex) { held.push_back(ex); });
    router.Add(
        "POST", "/small", [](const ExchangePtr& ex) { ex->Respond(Text(200, ex->request().body)); },
        RouteOptions{.max_body = 16});
    router.Add(
        "GET", "/open", [](const ExchangePtr& ex) { ex->Respond(Text(200, "open")); },
        RouteOptions{.access = Access::kOpen});
    router.Add("GET", "/whoami", [](const ExchangePtr& ex) { ex->Respond(Text(200, ex->principal)); });
    router.Add(
        "POST", "/upload",
        [this](const ExchangePtr& ex) {
          upload = std::make_unique<Upload>();
          Upload* u = upload.get();
          ex->on_body = [u](std::string_view piece) -> Status {
            u->sha.Update(piece);
            u->bytes += piece.size();
            u->pieces++;
            u->max_piece = std::max(u->max_piece, piece.size());
            return {};
          };
          std::weak_ptr<Exchange> weak = ex;
          ex->on_body_end = [u, weak] {
            ExchangePtr ex = weak.lock();
            if (!ex) return;
            u->buffered = ex->request().body.size();
            u->digest = crypto::Hex(u->sha.Finish());
            u->ended = true;
            ex->Respond(Text(200, u->digest));
          };
        },
        RouteOptions{.max_body = size_t{1} << 30, .stream_body = true});
    router.Add(
        "POST", "/quota",
        [](const ExchangePtr& ex) {
          auto total = std::make_shared<size_t>(0);
          ex->on_body = [total](std::string_view piece) -> Status {
            *total += piece.size();
            if (*total > (1 << 20)) return Error{ErrorKind::kTooLarge, "QuotaExceeded", "over the 1 MiB quota"};
            return {};
          };
          std::weak_ptr<Exchange> weak = ex;
          ex->on_body_end = [weak] {
            if (ExchangePtr ex = weak.lock()) ex->Respond(Text(200, "fits"));
          };
        },
        RouteOptions{.max_body = size_t{1} << 30, .stream_body = true});
  }

  ~ServerFixture() {
    held.clear();
    listener.reset();
    server.reset();
    writer.reset();
  }

  // Connections write on the loop thread, or through a net::WriteThread.
  void Start(ServerLimits limits = {}, bool write_thread = false) {
    server = std::make_unique<Server>(loop.get(), &router, limits, &metrics);
    if (write_thread) {
      auto w = net::WriteThread::Start(loop.get());
      REQUIRE(w.ok());
      writer = std::move(w.value());
    }
    auto l = net::Listener::Open(
        loop.get(), net::Endpoint::Parse("127.0.0.1:0").value(),
        [this](std::unique_ptr<net::Stream> s) {
          accepted++;
          server->Serve(std::move(s));
        },
        writer.get());
    REQUIRE(l.ok());
    listener = std::move(l.value());
    endpoint = listener->endpoint();
    REQUIRE(endpoint.port > 0);
  }

  Result<ClientResponse> Fetch(Client& client, ClientRequest req) {
    std::optional<Result<ClientResponse>> out;
    client.Send(std::move(req), [&](Result<ClientResponse> r) { out.emplace(std::move(r)); });
    REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }

  // `raw` asks for /big (8 MiB) and stops reading: once the answer is queued, the
  // socket's buffers fill and the rest waits with the writer.
  void StallOnBig(RawConn& raw) {
    raw.PauseReading();
    raw.Send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    REQUIRE(loop.RunUntil([&] {
      return metrics.Render().find("berth_http_requests_total{route=\"/big\",status=\"200\"} 1") != std::string::npos;
    }));
  }

  Result<ClientResponse> Get(Client& client, std::string target) {
    ClientRequest req;
    req.target = std::move(target);
    return Fetch(client, std::move(req));
  }
};

ClientRequest Post(std::string target, std::string body) {
  ClientRequest r;
  r.method = "POST";
  r.target = std::move(target);
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST_CASE_METHOD(ServerFixture, "http server: a client reuses one kept-alive connection", "[net][http_server]") {
  Start();
  Client client(loop.get(), endpoint);
  for (int i = 0; i < 3; i++) {
    auto r = Get(client, "/items/" + std::to_string(i));
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->body == "item:" + std::to_string(i));
    CHECK(r->Header("content-type") == "text/plain");
    CHECK(r->Header("content-length") == std::to_string(r->body.size()));
    CHECK(r->Header("connection").empty());
    CHECK_FALSE(r->Header("date").empty());
  }
  CHECK(accepted == 1);
  CHECK(server->connection_count() == 1);

  SECTION("requests queued together go one at a time on the same connection") {
    std::vector<std::string> bodies;
    for (int i = 0; i < 5; i++) {
      ClientRequest req;
      req.target = "/items/q" + std::to_string(i);
      client.Send(std::move(req), [&](Result<ClientResponse> r) { bodies.push_back(r.ok() ? r->body : "error"); });
    }
    REQUIRE(loop.RunUntil([&] { return bodies.size() == 5; }));
    CHECK(bodies == std::vector<std::string>{"item:q0", "item:q1", "item:q2", "item:q3", "item:q4"});
    CHECK(accepted == 1);
  }
  SECTION("the request counter counts by route and status") {
    CHECK_THAT(metrics.Render(), Catch::Contains("berth_http_requests_total{route=\"/items/{id}\",status=\"200\"} 3"));
    CHECK_THAT(metrics.Render(), Catch::Contains("berth_http_open_connections 1"));
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: pipelined requests are answered in order", "[net][http_server]") {
  Start();
  RawConn raw(&loop, endpoint);
  raw.Send(
      "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n"
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthird"
      "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(loop.RunUntil([&] { return held.size() == 1; }));
  loop.Spin();
  // While the first answer is pending nothing later is handled or sent.
  CHECK(raw.received().empty());
  CHECK(held.size() == 1);

  held[0]->Respond(Text(200, "first"));
  REQUIRE(loop.RunUntil([&] { return raw.Statuses().size() == 4; }));
  CHECK(raw.Statuses() == std::vector<int>{200, 200, 200, 200});
  const std::string& got = raw.received();
  size_t a = got.find("\r\n\r\nfirst"), b = got.find("item:2"), c = got.find("third"), d = got.find("hello");
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  REQUIRE(c != std::string::npos);
  REQUIRE(d != std::string::npos);
  CHECK(a < b);
  CHECK(b < c);
  CHECK(c < d);
  CHECK_FALSE(raw.ended());  // still kept alive
}

TEST_CASE_METHOD(ServerFixture, "http server: a chunked request body is reassembled", "[net][http_server]") {
  Start();
  SECTION("by hand, in pieces split inside the framing") {
    RawConn raw(&loop, endpoint);
    raw.Send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    REQUIRE(loop.RunUntil([&] { return raw.connected(); }));
    loop.Spin();
    raw.Send("lo\r\n6\r\n world\r");
    loop.Spin();
    raw.Send("\n0\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.Statuses().size() == 1; }));
    CHECK(raw.Statuses()[0] == 200);
    CHECK_THAT(raw.received(), Catch::Contains("Content-Length: 11\r\n"));
    CHECK_THAT(raw.received(), Catch::EndsWith("\r\n\r\nhello world"));
  }
  SECTION("sent by the client from a body source") {
    Client client(loop.get(), endpoint);
    ClientRequest req = Post("/echo", "");
    int calls = 0;
    req.body_source = [&calls](std::string* piece) {
      *piece = "part" + std::to_string(calls++) + ";";
      return calls < 3;
    };
    auto r = Fetch(client, std::move(req));
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->body == "part0;part1;part2;");
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: a streamed answer is sent chunked", "[net][http_server]") {
  Start();
  SECTION("the client reassembles it") {
    Client client(loop.get(), endpoint);
    auto r = Get(client, "/stream");
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->body == "one,two,");
    CHECK(r->Header("transfer-encoding") == "chunked");
    CHECK(r->Header("x-streamed") == "yes");
    // and the connection stays usable
    auto again = Get(client, "/hello");
    REQUIRE(again.ok());
    CHECK(again->body == "hello");
    CHECK(accepted == 1);
  }
  SECTION("the framing on the wire") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.received().find("0\r\n\r\n") != std::string::npos; }));
    CHECK_THAT(raw.received(), Catch::Contains("Transfer-Encoding: chunked\r\n"));
    CHECK_THAT(raw.received(), Catch::EndsWith("\r\n\r\n4\r\none,\r\n4\r\ntwo,\r\n0\r\n\r\n"));
  }
  SECTION("to HTTP/1.0 it ends at the close instead") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /stream HTTP/1.0\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK_THAT(raw.received(), !Catch::Contains("chunked"));
    CHECK_THAT(raw.received(), Catch::Contains("Connection: close\r\n"));
    CHECK_THAT(raw.received(), Catch::EndsWith("\r\n\r\none,two,"));
  }
  SECTION("HEAD gets the headers without a body") {
    Client client(loop.get(), endpoint);
    ClientRequest req;
    req.method = "HEAD";
    req.target = "/hello";
    auto r = Fetch(client, std::move(req));
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->Header("content-length") == "5");
    CHECK(r->body.empty());
    auto after = Get(client, "/hello");  // the connection is still in step
    REQUIRE(after.ok());
    CHECK(after->body == "hello");
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: HTTP/1.0 requests", "[net][http_server]") {
  Start();
  SECTION("without keep-alive the connection closes after the answer") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /hello HTTP/1.0\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{200});
    CHECK_THAT(raw.received(), Catch::Contains("Connection: close\r\n"));
    CHECK_THAT(raw.received(), Catch::EndsWith("hello"));
  }
  SECTION("with keep-alive it stays open") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.Statuses().size() == 1; }));
    CHECK_THAT(raw.received(), Catch::Contains("Connection: keep-alive\r\n"));
    raw.Send("GET /items/x HTTP/1.0\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{200, 200});
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: unknown routes and methods", "[net][http_server]") {
  Start();
  Client client(loop.get(), endpoint);
  auto missing = Get(client, "/nope");
  REQUIRE(missing.ok());
  CHECK(missing->status == 404);
  CHECK(missing->Header("content-type") == "application/json");
  CHECK(missing->body == R"({"error":{"code":"UnknownRoute","message":"no route for GET /nope"}})");

  ClientRequest del;
  del.method = "DELETE";
  del.target = "/items/7";
  auto wrong = Fetch(client, std::move(del));
  REQUIRE(wrong.ok());
  CHECK(wrong->status == 405);
  CHECK(wrong->Header("allow") == "GET");
  CHECK_THAT(wrong->body, Catch::Contains("\"MethodNotAllowed\""));

  SECTION("a refusal with a body does not read the body and closes") {
    auto r = Fetch(client, Post("/nope", std::string(100000, 'x')));
    REQUIRE(r.ok());
    CHECK(r->status == 404);
    CHECK(r->Header("connection") == "close");
    auto next = Get(client, "/hello");  // a new connection
    REQUIRE(next.ok());
    CHECK(next->status == 200);
  }
  SECTION("a malformed request gets 400 and a close") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /hello HTTP/1.1\r\nBad Header\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{400});
    CHECK_THAT(raw.received(), Catch::Contains("\"BadRequest\""));
  }
}

TEST_CASE_METHOD(ServerFixture,
                 "http server: a streamed request body (256 MiB) is hashed as it arrives, never buffered",
                 "[net][http_server][stream]") {
  Start();
  // Chunked at 256 MiB; with a Content-Length a smaller body covers the other framing.
  constexpr size_t kPiece = 1 << 20;
  const bool with_length = GENERATE(false, true);
  const size_t kPieces = with_length ? 32 : 256;
  std::string pattern(kPiece, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (char& c : pattern) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  crypto::Sha256Stream sent;
  size_t produced = 0;

  ClientRequest req = Post("/upload", "");
  if (with_length) req.content_length = static_cast<int64_t>(kPiece * kPieces);
  req.body_source = [&](std::string* piece) {
    *piece = pattern;
    memcpy(piece->data(), &produced, sizeof produced);  // every piece differs
    sent.Update(*piece);
    produced++;
    return produced < kPieces;
  };

  bool can_track_peak = ResetPeakRss();
  long rss_before = ProcStatusKiB("VmRSS");
  Client client(loop.get(), endpoint);
  auto r = Fetch(client, std::move(req));
  long peak = ProcStatusKiB("VmHWM");

  REQUIRE(r.ok());
  REQUIRE(r->status == 200);
  std::string expected = crypto::Hex(sent.Finish());
  REQUIRE(upload);
  CHECK(upload->ended);
  CHECK(upload->bytes == kPiece * kPieces);
  CHECK(upload->digest == expected);
  CHECK(r->body == expected);
  CHECK(upload->buffered == 0);     // request().body stayed empty
  CHECK(upload->pieces > kPieces);  // handed over as it arrived, in socket-sized pieces
  CHECK(upload->max_piece <= 64 * 1024);
  // Peak memory grew by far less than the body. ASan's quarantine keeps freed
  // pieces resident, so there the figure says nothing.
  if (!kAsan && can_track_peak && rss_before > 0 && peak > 0) {
    INFO("peak RSS growth " << (peak - rss_before) << " KiB");
    CHECK(peak - rss_before < 64 * 1024);
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: a streaming handler refuses its body midway", "[net][http_server]") {
  Start();
  Client client(loop.get(), endpoint);
  ClientRequest req = Post("/quota", "");
  int pieces = 0;
  req.body_source = [&pieces](std::string* piece) {
    piece->assign(256 * 1024, 'q');
    return ++pieces < 64;
  };
  auto r = Fetch(client, std::move(req));
  REQUIRE(r.ok());
  CHECK(r->status == 413);
  CHECK_THAT(r->body, Catch::Contains("\"QuotaExceeded\""));
  CHECK(r->Header("connection") == "close");
  CHECK(pieces < 64);  // the client stopped sending

  auto fits = Fetch(client, Post("/quota", "small"));
  REQUIRE(fits.ok());
  CHECK(fits->body == "fits");
}

TEST_CASE_METHOD(ServerFixture, "http server: body and header limits", "[net][http_server]") {
  ServerLimits limits;
  limits.max_header_bytes = 1024;
  limits.max_headers = 8;
  Start(limits);
  Client client(loop.get(), endpoint);

  SECTION("413 for a declared length over the route's limit") {
    auto ok = Fetch(client, Post("/small", "sixteen bytes ok"));
    REQUIRE(ok.ok());
    CHECK(ok->status == 200);
    auto big = Fetch(client, Post("/small", "seventeen bytes!!"));
    REQUIRE(big.ok());
    CHECK(big->status == 413);
    CHECK(
        big->body ==
        R"({"error":{"code":"PayloadTooLarge","message":"the request body of 17 bytes exceeds the 16-byte limit of /small"}})");
    CHECK(big->Header("connection") == "close");
  }
  SECTION("413 for a chunked body that grows over the limit") {
    RawConn raw(&loop, endpoint);
    raw.Send(
        "POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
        "chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{413});
    CHECK_THAT(raw.received(), Catch::Contains("exceeds the 16-byte limit of /small"));
  }
  SECTION("431 for headers over max_header_bytes") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(2000, 'b') + "\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{431});
    CHECK_THAT(raw.received(), Catch::Contains("the request line and headers exceed 1024 bytes"));
  }
  SECTION("431 for a request target over max_header_bytes") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /items/" + std::string(3000, 'u') + " HTTP/1.1\r\nHost: t\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{431});
  }
  SECTION("431 for too many headers") {
    std::string req = "GET /hello HTTP/1.1\r\n";
    for (int i = 0; i < 9; i++) req += "X-H" + std::to_string(i) + ": v\r\n";
    RawConn raw(&loop, endpoint);
    raw.Send(req + "\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{431});
    CHECK_THAT(raw.received(), Catch::Contains("more than 8 request headers"));
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: headers that do not arrive in time get 408", "[net][http_server]") {
  ServerLimits limits;
  limits.header_timeout_ms = 50;
  Start(limits);
  RawConn raw(&loop, endpoint);
  raw.Send("GET /hello HTTP/1.1\r\nHost: t\r\n");  // never finished
  REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
  CHECK(raw.Statuses() == std::vector<int>{408});
  CHECK_THAT(raw.received(), Catch::Contains("the request headers did not arrive in time"));
  CHECK_THAT(metrics.Render(), Catch::Contains("berth_http_timeouts_total 1"));
  raw.Close();  // the server lingers until the client has read the answer and gone
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 0; }));
}

TEST_CASE_METHOD(ServerFixture, "http server: connections over the limit get 503", "[net][http_server]") {
  ServerLimits limits;
  limits.max_connections = 1;
  Start(limits);
  RawConn first(&loop, endpoint);
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 1; }));
  RawConn second(&loop, endpoint);
  REQUIRE(loop.RunUntil([&] { return second.ended(); }));
  CHECK(second.Statuses() == std::vector<int>{503});
  CHECK_THAT(second.received(), Catch::Contains("Retry-After: 1\r\n"));
  CHECK_THAT(second.received(), Catch::Contains("\"TooManyConnections\""));
  CHECK_THAT(metrics.Render(), Catch::Contains("berth_http_rejected_connections_total 1"));

  // The first connection is still served.
  first.Send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(loop.RunUntil([&] { return first.Statuses().size() == 1; }));
  CHECK(first.Statuses()[0] == 200);
}

TEST_CASE_METHOD(ServerFixture, "http server: the gate refuses with 401 before the body", "[net][http_server]") {
  Start();
  int gate_calls = 0;
  server->SetGate([&gate_calls](Exchange& ex) -> std::optional<Response> {
    gate_calls++;
    if (ex.request().Header("authorization") == "Bearer good") {
      ex.principal = "admin";
      return std::nullopt;
    }
    return ErrorResponse(401, "Unauthorized", "a valid bearer token is required");
  });
  Client client(loop.get(), endpoint);

  auto refused = Get(client, "/whoami");
  REQUIRE(refused.ok());
  CHECK(refused->status == 401);
  CHECK(refused->body == R"({"error":{"code":"Unauthorized","message":"a valid bearer token is required"}})");

  ClientRequest good;
  good.target = "/whoami";
  good.headers = {{"Authorization", "Bearer good"}};
  auto allowed = Fetch(client, std::move(good));
  REQUIRE(allowed.ok());
  CHECK(allowed->status == 200);
  CHECK(allowed->body == "admin");

  int before = gate_calls;
  auto open = Get(client, "/open");  // open routes skip the gate
  REQUIRE(open.ok());
  CHECK(open->status == 200);
  CHECK(gate_calls == before);

  SECTION("a refused upload is answered without reading its body") {
    RawConn raw(&loop, endpoint);
    raw.Send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\npartial");
    REQUIRE(loop.RunUntil([&] { return raw.Statuses().size() == 1; }));
    CHECK(raw.Statuses()[0] == 401);
    CHECK_THAT(raw.received(), Catch::Contains("Connection: close\r\n"));
    CHECK_FALSE(upload);  // the handler never ran
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: Shutdown lets an in-flight answer finish", "[net][http_server]") {
  Start();
  Client busy(loop.get(), endpoint);
  Client idle(loop.get(), endpoint);
  auto warm = Get(idle, "/hello");  // a kept-alive, idle connection
  REQUIRE(warm.ok());

  std::optional<Result<ClientResponse>> answer;
  ClientRequest req;
  req.target = "/hold";
  busy.Send(std::move(req), [&](Result<ClientResponse> r) { answer.emplace(std::move(r)); });
  REQUIRE(loop.RunUntil([&] { return held.size() == 1; }));
  REQUIRE(server->connection_count() == 2);

  bool done = false;
  server->Shutdown(30000, [&done] { done = true; });
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 1; }));  // the idle one went at once
  loop.Spin();
  CHECK_FALSE(done);
  CHECK_FALSE(answer.has_value());

  held[0]->Respond(Text(200, "late but complete"));
  REQUIRE(loop.RunUntil([&] { return done && answer.has_value(); }));
  REQUIRE(answer->ok());
  CHECK((*answer)->status == 200);
  CHECK((*answer)->body == "late but complete");
  CHECK((*answer)->Header("connection") == "close");
  CHECK(server->connection_count() == 0);

  SECTION("new connections are refused while shut down") {
    RawConn late(&loop, endpoint);
    REQUIRE(loop.RunUntil([&] { return late.ended(); }));
    CHECK(late.Statuses() == std::vector<int>{503});
    CHECK_THAT(late.received(), Catch::Contains("the server is shutting down"));
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: a client that half-closes still gets its answer", "[net][http_server]") {
  Start();
  RawConn raw(&loop, endpoint);
  raw.Send("GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(loop.RunUntil([&] { return held.size() == 1; }));
  raw.ShutdownWrite();
  loop.Spin();
  held[0]->Respond(Text(200, "still here"));
  REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
  // The server reads nothing while an answer is pending, so it learns of the
  // half-close only after answering; then it closes.
  CHECK(raw.Statuses() == std::vector<int>{200});
  CHECK_THAT(raw.received(), Catch::EndsWith("still here"));
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 0; }));
}

TEST_CASE_METHOD(ServerFixture, "http server: a streamed answer to a client that left is dropped",
                 "[net][http_server]") {
  Start();
  bool aborted = false;
  {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return held.size() == 1; }));
    held[0]->on_abort = [&aborted] { aborted = true; };
  }
  ExchangePtr ex = held[0];
  ex->Begin(200, {});
  // Keep writing until the kernel reports the peer gone.
  net::Timer writer(loop.get());
  writer.Start(1, 1, [&] { ex->Write(std::string(64 * 1024, 'x')); });
  REQUIRE(loop.RunUntil([&] { return aborted && server->connection_count() == 0; }));
  writer.Stop();
  CHECK_FALSE(ex->connected());
  CHECK(ex->PendingWriteBytes() == 0);
  ex->Write("more");  // all harmless now
  ex->End();
  ex->Respond(Text(200, "too late"));
}

TEST_CASE_METHOD(ServerFixture, "http server: 100-continue", "[net][http_server]") {
  Start();
  RawConn raw(&loop, endpoint);
  raw.Send("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  REQUIRE(loop.RunUntil([&] { return raw.received().find("100 Continue") != std::string::npos; }));
  raw.Send("ok");
  REQUIRE(loop.RunUntil([&] { return raw.Statuses().size() == 2; }));
  CHECK(raw.Statuses() == std::vector<int>{100, 200});
  CHECK_THAT(raw.received(), Catch::EndsWith("\r\n\r\nok"));
}

// --- The client's errors ---

TEST_CASE("http client: connection refused", "[net][http_client]") {
  TestLoop loop;
  int port = 0;
  {
    auto l = net::Listener::Open(loop.get(), net::Endpoint::Parse("127.0.0.1:0").value(),
                                 [](std::unique_ptr<net::Stream>) {});
    REQUIRE(l.ok());
    port = (*l)->port();
  }
  loop.Spin();  // the listener is closed now; nothing listens on `port`
  net::Endpoint where = net::Endpoint::Parse("127.0.0.1:" + std::to_string(port)).value();
  {
    Client client(loop.get(), where);
    std::vector<Result<ClientResponse>> results;
    for (int i = 0; i < 2; i++) {
      client.Send(ClientRequest{}, [&](Result<ClientResponse> r) { results.push_back(std::move(r)); });
    }
    REQUIRE(loop.RunUntil([&] { return results.size() == 2; }));
    for (auto& r : results) {
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().kind == ErrorKind::kUnavailable);
      CHECK(r.error().code == "ConnectFailed");
      CHECK_THAT(r.error().message, Catch::Contains("ECONNREFUSED"));
      CHECK_THAT(r.error().message, Catch::Contains(where.ToString()));
    }
  }
  SECTION("FetchSync on its own loop") {
    auto r = FetchSync(where, ClientRequest{});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "ConnectFailed");
  }
}

TEST_CASE_METHOD(ServerFixture, "http client: a server that does not answer times out", "[net][http_client]") {
  Start();
  ClientOptions options;
  options.timeout_ms = 100;
  Client client(loop.get(), endpoint, options);
  auto r = Get(client, "/hold");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::kTimeout);
  CHECK(r.error().code == "Timeout");
  CHECK(r.error().message == "no answer from " + endpoint.ToString() + " within 100 ms");
  REQUIRE(held.size() == 1);

  // The next request goes on a fresh connection and succeeds.
  auto next = Get(client, "/hello");
  REQUIRE(next.ok());
  CHECK(next->status == 200);
}

TEST_CASE_METHOD(ServerFixture, "http client: a response over max_response_bytes", "[net][http_client]") {
  Start();
  ClientOptions options;
  options.max_response_bytes = 10;
  Client client(loop.get(), endpoint, options);
  auto r = Fetch(client, Post("/echo", "more than ten bytes"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::kTooLarge);
  CHECK(r.error().code == "ResponseTooLarge");

  SECTION("unless it is streamed to a callback") {
    std::string streamed;
    std::optional<Result<ClientResponse>> out;
    client.Send(
        Post("/echo", "more than ten bytes"), [&](Result<ClientResponse> res) { out.emplace(std::move(res)); },
        [&](std::string_view piece) { streamed.append(piece); });
    REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
    REQUIRE(out->ok());
    CHECK((*out)->body.empty());
    CHECK(streamed == "more than ten bytes");
  }
}

TEST_CASE_METHOD(ServerFixture, "http client: Cancel fails every queued request", "[net][http_client]") {
  Start();
  Client client(loop.get(), endpoint);
  std::vector<std::string> codes;
  for (int i = 0; i < 3; i++) {
    ClientRequest req;
    req.target = "/hold";
    client.Send(std::move(req), [&](Result<ClientResponse> r) { codes.push_back(r.ok() ? "ok" : r.error().code); });
  }
  REQUIRE(loop.RunUntil([&] { return held.size() == 1; }));
  client.Cancel();
  CHECK(codes == std::vector<std::string>{"Cancelled", "Cancelled", "Cancelled"});
}

TEST_CASE_METHOD(ServerFixture, "http client and server over a Unix socket", "[net][http_client]") {
  TempDir dir;
  server = std::make_unique<Server>(loop.get(), &router, ServerLimits{}, &metrics);
  auto where = net::Endpoint::Parse("unix://" + dir.File("berth.sock"));
  REQUIRE(where.ok());
  auto port = server->Listen(where.value());
  REQUIRE(port.ok());
  CHECK(port.value() == 0);

  Client client(loop.get(), where.value());
  auto r = Get(client, "/items/sock");
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(r->body == "item:sock");

  SECTION("a socket path nobody listens on") {
    Client nobody(loop.get(), net::Endpoint::Parse("unix://" + dir.File("absent.sock")).value());
    auto e = Get(nobody, "/");
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code == "ConnectFailed");
    CHECK_THAT(e.error().message, Catch::Contains("ENOENT"));
  }
}

TEST_CASE_METHOD(ServerFixture, "http client: a streamed body that waits for data, resumed by ResumeBody",
                 "[net][http_client]") {
  Start();
  // The source has nothing at first (true and no piece): the client must wait,
  // not spin or end the body, until ResumeBody says more is there.
  std::deque<std::string> ready;
  bool finished = false;
  int calls_while_empty = 0;
  ClientRequest req = Post("/upload", "");
  req.body_source = [&](std::string* piece) {
    if (ready.empty()) {
      calls_while_empty++;
      return !finished;
    }
    *piece = std::move(ready.front());
    ready.pop_front();
    return !(finished && ready.empty());
  };
  Client client(loop.get(), endpoint);
  std::optional<Result<ClientResponse>> out;
  client.Send(std::move(req), [&](Result<ClientResponse> r) { out.emplace(std::move(r)); });
  REQUIRE(loop.RunUntil([&] { return upload != nullptr; }));
  loop.Spin(10);
  CHECK_FALSE(out.has_value());
  CHECK(calls_while_empty >= 1);
  CHECK(calls_while_empty < 10);  // asked once per resume, never in a loop
  crypto::Sha256Stream sent;
  size_t total = 0;
  for (std::string piece : {"first ", "second ", "third"}) {
    sent.Update(piece);
    total += piece.size();
    ready.push_back(piece);
    client.ResumeBody();
    REQUIRE(loop.RunUntil([&] { return upload->bytes == total; }));
  }
  finished = true;
  client.ResumeBody();
  REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
  REQUIRE(out->ok());
  CHECK((*out)->status == 200);
  CHECK((*out)->body == crypto::Hex(sent.Finish()));
  REQUIRE(upload);
  CHECK(upload->bytes == std::string("first second third").size());
}

TEST_CASE_METHOD(ServerFixture, "http client: with on_body, an error answer is buffered, not streamed",
                 "[net][http_client]") {
  Start();
  Client client(loop.get(), endpoint);
  std::string streamed;
  std::optional<Result<ClientResponse>> out;
  ClientRequest req;
  req.target = "/nowhere";
  client.Send(
      std::move(req), [&](Result<ClientResponse> r) { out.emplace(std::move(r)); },
      [&](std::string_view data) { streamed.append(data); });
  REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
  REQUIRE(out->ok());
  CHECK((*out)->status == 404);
  CHECK(streamed.empty());
  CHECK((*out)->body.find("UnknownRoute") != std::string::npos);
  out.reset();
  ClientRequest ok;
  ok.target = "/hello";
  client.Send(
      std::move(ok), [&](Result<ClientResponse> r) { out.emplace(std::move(r)); },
      [&](std::string_view data) { streamed.append(data); });
  REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
  CHECK(streamed == "hello");
  CHECK((*out)->body.empty());
}

TEST_CASE_METHOD(ServerFixture, "http server: answers written by the write thread", "[net][http_server]") {
  Start({}, /*write_thread=*/true);
  SECTION("kept-alive and pipelined requests are answered in order") {
    Client client(loop.get(), endpoint);
    for (int i = 0; i < 20; i++) {
      auto r = Get(client, "/items/" + std::to_string(i));
      REQUIRE(r.ok());
      CHECK(r->body == "item:" + std::to_string(i));
    }
    CHECK(accepted == 1);
    RawConn raw(&loop, endpoint);
    raw.Send(
        "GET /items/a HTTP/1.1\r\nHost: t\r\n\r\nGET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
        "GET /items/b HTTP/1.1\r\nHost: t\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.received().find("item:b") != std::string::npos; }));
    size_t a = raw.received().find("item:a"), st = raw.received().find("4\r\ntwo,"), b = raw.received().find("item:b");
    CHECK(a < st);
    CHECK(st < b);
  }
  SECTION("a big answer to a slow reader arrives whole and in order") {
    RawConn raw(&loop, endpoint);
    StallOnBig(raw);  // the thread waits for room; the loop goes on
    Client client(loop.get(), endpoint);
    auto r = Get(client, "/hello");  // another connection is served meanwhile
    REQUIRE(r.ok());
    CHECK(r->body == "hello");
    raw.ResumeReading();
    // Until the whole body is in: the head and the body's first bytes may come
    // in one read and its last bytes reads later.
    size_t head = std::string::npos;
    REQUIRE(loop.RunUntil([&] {
      head = raw.received().find("\r\n\r\n");
      return head != std::string::npos && raw.received().size() >= head + 4 + BigBody().size();
    }));
    CHECK(raw.received().size() - head - 4 == BigBody().size());
    CHECK(raw.received().compare(head + 4, std::string::npos, BigBody()) == 0);
  }
  SECTION("a client that leaves while the thread holds its bytes") {
    {
      RawConn raw(&loop, endpoint);
      StallOnBig(raw);
    }  // closed without reading: the server's writes fail, the socket is let go of
    REQUIRE(loop.RunUntil([&] { return server->connection_count() == 0; }));
    Client client(loop.get(), endpoint);
    auto r = Get(client, "/hello");
    REQUIRE(r.ok());
    CHECK(r->body == "hello");
  }
  SECTION("a server closed with answers still unsent") {
    RawConn raw(&loop, endpoint);
    StallOnBig(raw);
    listener.reset();
    server.reset();  // its connections close while the thread holds their bytes
    writer.reset();  // the thread stops and the sockets it held are closed
    raw.ResumeReading();
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
  }
}

namespace {

// A gate that lets "Bearer good" through as "admin" and refuses anything else.
void GoodBearerGate(Server* server) {
  server->SetGate([](Exchange& ex) -> std::optional<Response> {
    if (ex.request().Header("authorization") == "Bearer good") {
      ex.principal = "admin";
      return std::nullopt;
    }
    return ErrorResponse(401, "Unauthorized", "a valid bearer token is required");
  });
}

}  // namespace

TEST_CASE_METHOD(ServerFixture, "http server: a request nobody vouched for has a small body and a deadline",
                 "[net][http_server][preauth]") {
  router.Add(
      "POST", "/open-echo", [](const ExchangePtr& ex) { ex->Respond(Text(200, ex->request().body)); },
      RouteOptions{.access = Access::kOpen});
  ServerLimits limits;
  limits.preauth_max_body = 64;
  limits.preauth_timeout_ms = 300;
  limits.body_timeout_ms = 60000;
  limits.header_timeout_ms = 60000;
  Start(limits);
  GoodBearerGate(server.get());
  Client client(loop.get(), endpoint);

  SECTION("a declared body over the bound: 413 before it is read") {
    auto r = Fetch(client, Post("/open-echo", std::string(65, 'x')));
    REQUIRE(r.ok());
    CHECK(r->status == 413);
    CHECK_THAT(r->body, Catch::Contains("a request no credential vouches for may send at most 64 bytes of body"));
    auto small = Fetch(client, Post("/open-echo", std::string(64, 'x')));
    REQUIRE(small.ok());
    CHECK(small->status == 200);
  }
  SECTION("a chunked body growing over the bound: 413") {
    RawConn raw(&loop, endpoint);
    raw.Send("POST /open-echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n" + std::string(65, 'y') +
             "\r\n0\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return raw.ended(); }));
    CHECK(raw.Statuses() == std::vector<int>{413});
  }
  // Sends `start`, then a byte every 20 ms until an answer or the end: the statuses.
  auto trickle = [&](const std::string& start) {
    RawConn raw(&loop, endpoint);
    raw.Send(start);
    net::Timer drip(loop.get());
    drip.Start(20, 20, [&raw] {
      if (!raw.ended()) raw.Send("z");
    });
    REQUIRE(loop.RunUntil([&] { return raw.ended() || !raw.Statuses().empty(); }));
    drip.Stop();
    return raw.Statuses();
  };
  SECTION("a body trickled byte by byte is cut off at the deadline, though bytes keep coming") {
    CHECK(trickle("POST /open-echo HTTP/1.1\r\nHost: t\r\nContent-Length: 60\r\n\r\n") == std::vector<int>{408});
  }
  SECTION("headers trickled byte by byte are cut off at the same deadline, not the header timeout") {
    CHECK(trickle("GET /open HTTP/1.1\r\nHost: t\r\nX-Slow: ") == std::vector<int>{408});
  }
  SECTION("an authenticated request keeps the route's limits") {
    ClientRequest req = Post("/echo", std::string(10000, 'a'));
    req.headers = {{"Authorization", "Bearer good"}};
    auto r = Fetch(client, std::move(req));
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->body.size() == 10000);
  }
}

TEST_CASE_METHOD(ServerFixture, "http server: connections not yet authenticated are bounded per address",
                 "[net][http_server][preauth]") {
  ServerLimits limits;
  limits.preauth_connections_per_address = 2;
  limits.limit_loopback = true;  // the test's clients are on loopback
  Start(limits);
  GoodBearerGate(server.get());
  RawConn a(&loop, endpoint), b(&loop, endpoint);
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 2; }));
  RawConn c(&loop, endpoint);
  REQUIRE(loop.RunUntil([&] { return c.ended(); }));
  CHECK(c.Statuses() == std::vector<int>{429});
  CHECK_THAT(c.received(), Catch::Contains("TooManyUnauthenticatedConnections"));
  CHECK_THAT(c.received(), Catch::Contains("2 connections from 127.0.0.1 have not authenticated yet"));
  CHECK_THAT(metrics.Render(), Catch::Contains("berth_http_unauthenticated_rejected_total 1"));

  // One authenticates: it no longer counts, and a new connection is taken.
  a.Send("GET /whoami HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\n\r\n");
  REQUIRE(loop.RunUntil([&] { return a.Statuses().size() == 1; }));
  CHECK(a.Statuses()[0] == 200);
  RawConn d(&loop, endpoint);
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 3; }));
  loop.Spin();
  CHECK_FALSE(d.ended());
  // An unauthenticated one leaving frees its place too.
  b.Close();
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 2; }));
  RawConn e(&loop, endpoint);
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 3; }));
  loop.Spin();
  CHECK_FALSE(e.ended());
}

TEST_CASE_METHOD(ServerFixture, "http server: failed authentications from an address get 429 with Retry-After",
                 "[net][http_server][preauth]") {
  ServerLimits limits;
  limits.auth_failures_per_minute = 3;
  limits.limit_loopback = true;
  Start(limits);
  GoodBearerGate(server.get());
  Client client(loop.get(), endpoint);
  auto with = [](std::string token) {
    ClientRequest req;
    req.target = "/whoami";
    req.headers = {{"Authorization", "Bearer " + token}};
    return req;
  };
  // Requests without credentials are no failures (a client's first, anonymous try).
  for (int i = 0; i < 5; i++) CHECK(Get(client, "/whoami")->status == 401);
  for (int i = 0; i < 3; i++) CHECK(Fetch(client, with("bad"))->status == 401);
  auto throttled = Fetch(client, with("bad"));
  REQUIRE(throttled.ok());
  CHECK(throttled->status == 429);
  int retry = std::stoi(std::string(throttled->Header("retry-after")));
  CHECK(retry >= 1);
  CHECK(retry <= 20);
  CHECK_THAT(throttled->body, Catch::Contains("too many failed authentications from 127.0.0.1"));
  // Even a good credential waits: the address is throttled, not the token.
  CHECK(Fetch(client, with("good"))->status == 429);
  CHECK(Get(client, "/open")->status == 200);  // no credential, no throttle
  CHECK_THAT(metrics.Render(), Catch::Contains("berth_http_auth_throttled_total 2"));
}

namespace {

// What an upgraded connection turns into in the tests: an echo in capitals, the
// bytes that came with the request first.
struct Shouter final : net::Stream::Handler {
  std::unique_ptr<net::Stream> stream;
  std::string early;
  void OnData(std::string_view data) override {
    std::string up(data);
    for (char& c : up) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
    stream->Write(std::move(up));
  }
  void OnEnd(int) override { stream->Close(); }
};

}  // namespace

TEST_CASE_METHOD(ServerFixture, "http server: an upgrade hands the connection over", "[net][http_server]") {
  Shouter shouter;
  router.Add("GET", "/switch", [&shouter](const ExchangePtr& ex) {
    bool taken =
        ex->Upgrade("shout", {{"X-Switched", "yes"}}, [&shouter](std::unique_ptr<net::Stream> s, std::string early) {
          shouter.stream = std::move(s);
          shouter.early = early;
          shouter.stream->SetHandler(&shouter);
          shouter.stream->ReadStart();
          shouter.OnData(early);
        });
    if (!taken) ex->Respond(Text(426, "ask to upgrade"));
  });
  Start();

  SECTION("the answer is 101, then the bytes are the new protocol's, both ways") {
    RawConn raw(&loop, endpoint);
    raw.Send("GET /switch HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\nearly");
    REQUIRE(loop.RunUntil([&] { return raw.received().find("EARLY") != std::string::npos; }, 5000));
    CHECK(raw.received().starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK_THAT(raw.received(), Catch::Contains("Upgrade: shout\r\n"));
    CHECK_THAT(raw.received(), Catch::Contains("X-Switched: yes\r\n"));
    CHECK(shouter.early == "early");
    // The server no longer owns the connection: its limits and shutdown do not reach it.
    CHECK(server->connection_count() == 0);
    raw.Send("ping");
    REQUIRE(loop.RunUntil([&] { return raw.received().ends_with("EARLYPING"); }, 5000));
    CHECK_THAT(metrics.Render(), Catch::Contains("berth_http_requests_total{route=\"/switch\",status=\"101\"} 1"));
  }
  SECTION("a request that did not ask is answered in HTTP; one that asked and was refused closes") {
    RawConn plain(&loop, endpoint);
    plain.Send("GET /switch HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(loop.RunUntil([&] { return plain.Statuses().size() == 1; }, 5000));
    CHECK(plain.Statuses() == std::vector<int>{426});
    CHECK_FALSE(plain.ended());
    RawConn asked(&loop, endpoint);
    asked.Send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\nbinary\x01\x02");
    REQUIRE(loop.RunUntil([&] { return asked.ended(); }, 5000));
    CHECK(asked.Statuses() == std::vector<int>{200});
    CHECK_THAT(asked.received(), Catch::Contains("Connection: close\r\n"));
  }
}
