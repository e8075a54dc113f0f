// net/socket: Endpoint parsing and printing; socket pairs and net/splice.
#include "net/socket.h"

#include <unistd.h>

#include <catch2/catch.hpp>

#include "net/splice.h"
#include "support/test_loop.h"

using namespace berth;
using berth::testing::TestLoop;
using net::Endpoint;

TEST_CASE("endpoint: TCP forms", "[net][socket]") {
  auto a = Endpoint::Parse("127.0.0.1:7070");
  REQUIRE(a.ok());
  CHECK(a->kind == Endpoint::Kind::kTcp);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 7070);
  CHECK(a->ToString() == "127.0.0.1:7070");

  auto b = Endpoint::Parse("http://example.org:80/");
  REQUIRE(b.ok());
  CHECK(b->host == "example.org");
  CHECK(b->port == 80);

  auto c = Endpoint::Parse("[::1]:9000");
  REQUIRE(c.ok());
  CHECK(c->host == "::1");
  CHECK(c->port == 9000);
  CHECK(c->ToString() == "[::1]:9000");

  auto d = Endpoint::Parse("localhost", 7070);
  REQUIRE(d.ok());
  CHECK(d->host == "localhost");
  CHECK(d->port == 7070);

  auto e = Endpoint::Parse("[::1]", 7070);
  REQUIRE(e.ok());
  CHECK(e->port == 7070);

  CHECK(Endpoint::Parse("h:0")->port == 0);
  CHECK(Endpoint::Parse("h:65535")->port == 65535);
}

TEST_CASE("endpoint: Unix socket forms", "[net][socket]") {
  auto a = Endpoint::Parse("unix:///run/berth.sock");
  REQUIRE(a.ok());
  CHECK(a->kind == Endpoint::Kind::kUnix);
  CHECK(a->path == "/run/berth.sock");
  CHECK(a->ToString() == "unix:///run/berth.sock");
  auto b = Endpoint::Parse("/var/run/docker.sock");
  REQUIRE(b.ok());
  CHECK(b->kind == Endpoint::Kind::kUnix);
  CHECK(b->path == "/var/run/docker.sock");
}

TEST_CASE("endpoint: https marks TLS", "[net][socket]") {
  auto a = Endpoint::Parse("https://example.org:7070/");
  REQUIRE(a.ok());
  CHECK(a->tls);
  CHECK(a->host == "example.org");
  CHECK(a->port == 7070);
  auto b = Endpoint::Parse("http://example.org", 7070);
  REQUIRE(b.ok());
  CHECK_FALSE(b->tls);
  CHECK(b->port == 7070);
}

TEST_CASE("endpoint: errors", "[net][socket]") {
  auto msg = [](std::string_view text, int default_port = 0) {
    auto r = Endpoint::Parse(text, default_port);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kInvalid);
    return r.error().message;
  };
  CHECK(msg("unix://relative") == "unix socket address must be unix:///absolute/path");
  CHECK(msg("unix://") == "unix socket address must be unix:///absolute/path");
  CHECK(msg("https://h:443/x") == "address must not have a path: https://h:443/x");
  CHECK(msg("http://h:80/path") == "address must not have a path: http://h:80/path");
  CHECK(msg("[::1:80") == "bad IPv6 address: [::1:80");
  CHECK(msg("[::1]x") == "bad address: [::1]x");
  CHECK(msg(":80") == "address has no host: :80");
  CHECK(msg("host") == "address has no port: host");
  CHECK(msg("host:") == "address has no port: host:");
  CHECK(msg("host:http") == "bad port in address: host:http");
  CHECK(msg("host:65536") == "bad port in address: host:65536");
  CHECK(msg("host:99999999999999") == "bad port in address: host:99999999999999");
  CHECK(msg("host:-1") == "bad port in address: host:-1");
}

TEST_CASE("socket pair and splice: bytes cross both ways, and one end closing ends both", "[net][splice]") {
  TestLoop loop;
  auto a = net::MakeSocketPair(loop.get());
  auto b = net::MakeSocketPair(loop.get());
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  int fa = a->theirs, fb = b->theirs;
  bool ended = false;
  std::string why = "unset";
  net::Splice splice(loop.get(), std::move(a->ours), std::move(b->ours), "first,", {}, [&](const std::string& w) {
    ended = true;
    why = w;
  });
  auto read_all = [&](int fd, std::string* out, size_t want) {
    return loop.RunUntil(
        [&] {
          char buf[4096];
          ssize_t n = read(fd, buf, sizeof buf);
          if (n > 0) out->append(buf, static_cast<size_t>(n));
          return out->size() >= want;
        },
        5000);
  };
  REQUIRE(write(fa, "to-b", 4) == 4);
  std::string at_b;
  REQUIRE(read_all(fb, &at_b, 10));
  CHECK(at_b == "first,to-b");
  REQUIRE(write(fb, "to-a", 4) == 4);
  std::string at_a;
  REQUIRE(read_all(fa, &at_a, 4));
  CHECK(at_a == "to-a");
  CHECK(splice.bytes_a_to_b() == 10);
  CHECK(splice.bytes_b_to_a() == 4);
  close(fa);
  REQUIRE(loop.RunUntil([&] { return ended; }, 5000));
  CHECK(why.empty());
  CHECK(splice.closed());
  // b's far end sees the end too.
  std::string rest;
  REQUIRE(loop.RunUntil(
      [&] {
        char buf[64];
        ssize_t n = read(fb, buf, sizeof buf);
        return n == 0;
      },
      5000));
  close(fb);
}
