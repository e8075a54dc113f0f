// net/http_client: what a failure before any answer does — retried once only on
// a kept-alive connection the server may have closed while idle, never on a
// connection's first request (a POST must not be sent twice).
#include "net/http_client.h"

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/socket.h"
#include "net/stream.h"
#include "support/test_loop.h"

using namespace berth;
using berth::testing::TestLoop;
namespace http = net::http;

namespace {

// A server that answers the first `answers` requests it reads, then reads each
// next request and closes without a word. Counts the requests it read.
struct CloseAfter {
  struct Conn : net::Stream::Handler {
    CloseAfter* owner;
    std::unique_ptr<net::Stream> s;
    std::string buf;
    void OnData(std::string_view d) override {
      buf.append(d);
      size_t end;
      while ((end = buf.find("\r\n\r\n")) != std::string::npos) {
        buf.erase(0, end + 4);
        owner->requests++;
        if (owner->answers > 0) {
          owner->answers--;
          s->Write(std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        } else {
          s->Close();
          return;
        }
      }
    }
    void OnEnd(int) override { s->Close(); }
  };
  int answers = 0;
  int requests = 0;
  std::vector<std::unique_ptr<Conn>> conns;
  std::unique_ptr<net::Listener> listener;

  explicit CloseAfter(TestLoop* loop, int answer_first) : answers(answer_first) {
    auto l = net::Listener::Open(loop->get(), net::Endpoint::Parse("127.0.0.1:0").value(),
                                 [this](std::unique_ptr<net::Stream> s) {
                                   auto c = std::make_unique<Conn>();
                                   c->owner = this;
                                   c->s = std::move(s);
                                   c->s->SetHandler(c.get());
                                   c->s->ReadStart();
                                   conns.push_back(std::move(c));
                                 });
    REQUIRE(l.ok());
    listener = std::move(l.value());
  }
  net::Endpoint endpoint() const { return net::Endpoint::Parse("127.0.0.1", listener->port()).value(); }
};

Result<http::ClientResponse> Post(TestLoop& loop, http::Client& client) {
  http::ClientRequest req;
  req.method = "POST";
  req.target = "/v1/clusters";
  req.body = "{\"clusterName\":\"x\"}";
  std::optional<Result<http::ClientResponse>> out;
  client.Send(std::move(req), [&](Result<http::ClientResponse> r) { out.emplace(std::move(r)); });
  REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
  return std::move(*out);
}

}  // namespace

TEST_CASE("http client: a connection's first request is never sent twice", "[net][http_client]") {
  TestLoop loop;
  CloseAfter server(&loop, 0);
  http::Client client(loop.get(), server.endpoint());
  auto r = Post(loop, client);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == "ConnectionLost");
  loop.Spin();
  CHECK(server.requests == 1);
}

TEST_CASE("http client: a kept-alive connection closed before its answer is retried once, afresh",
          "[net][http_client]") {
  TestLoop loop;
  CloseAfter server(&loop, 1);
  http::Client client(loop.get(), server.endpoint());
  auto first = Post(loop, client);
  REQUIRE(first.ok());
  CHECK(first->status == 200);
  // The kept-alive connection is closed on the next request: retried once on a
  // new connection, which closes too; then the failure is told.
  auto second = Post(loop, client);
  REQUIRE_FALSE(second.ok());
  loop.Spin();
  CHECK(server.requests == 3);
}
