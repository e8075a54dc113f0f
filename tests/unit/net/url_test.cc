// net/url: the origin of an absolute URL (a 307's Location) and comma-separated
// server lists (BERTH_SERVER, the agent's --server).
#include "net/url.h"

#include <catch2/catch.hpp>

using namespace berth;
using net::Endpoint;

TEST_CASE("url: the origin of a Location", "[net][url]") {
  auto a = net::ParseOrigin("https://10.0.0.2:7070/v1/clusters?cluster=x");
  REQUIRE(a.ok());
  CHECK(a->kind == Endpoint::Kind::kTcp);
  CHECK(a->host == "10.0.0.2");
  CHECK(a->port == 7070);
  CHECK(a->tls);
  auto b = net::ParseOrigin("http://example.org:8080");
  REQUIRE(b.ok());
  CHECK(b->host == "example.org");
  CHECK(b->port == 8080);
  CHECK_FALSE(b->tls);
  auto c = net::ParseOrigin("https://[::1]:7443/v1/servers");
  REQUIRE(c.ok());
  CHECK(c->host == "::1");
  CHECK(c->port == 7443);
  CHECK(c->ToString() == "[::1]:7443");
  auto d = net::ParseOrigin("https://host?x=/y", 7070);
  REQUIRE(d.ok());
  CHECK(d->host == "host");
  CHECK(d->port == 7070);
}

TEST_CASE("url: what is not an origin", "[net][url]") {
  CHECK_FALSE(net::ParseOrigin("/v1/clusters").ok());        // relative
  CHECK_FALSE(net::ParseOrigin("10.0.0.2:7070/v1/x").ok());  // no scheme
  CHECK_FALSE(net::ParseOrigin("unix:///run/berth.sock").ok());
  CHECK_FALSE(net::ParseOrigin("ftp://host:21/").ok());
  CHECK_FALSE(net::ParseOrigin("https://host/v1/x").ok());  // no port, none by default
  CHECK_FALSE(net::ParseOrigin("https://:7070/").ok());
  CHECK_FALSE(net::ParseOrigin("https://host:99999/").ok());
  CHECK_FALSE(net::ParseOrigin("").ok());
}

TEST_CASE("url: server lists", "[net][url]") {
  auto l = net::ParseServerList(" https://a:1, https://b:2 ,,https://a:1,https://c", 7070);
  REQUIRE(l.ok());
  REQUIRE(l->size() == 3);
  CHECK((*l)[0].ToString() == "a:1");
  CHECK((*l)[1].ToString() == "b:2");
  CHECK((*l)[2].ToString() == "c:7070");
  for (const Endpoint& e : *l) CHECK(e.tls);
  auto one = net::ParseServerList("unix:///run/berth.sock");
  REQUIRE(one.ok());
  REQUIRE(one->size() == 1);
  CHECK(one->front().kind == Endpoint::Kind::kUnix);
  // http and https to the same host:port are two servers.
  auto two = net::ParseServerList("http://a:1,https://a:1");
  REQUIRE(two.ok());
  CHECK(two->size() == 2);

  auto none = net::ParseServerList(" , ,");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().message == "no server address");
  auto bad = net::ParseServerList("https://a:1,https://b:notaport");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("https://b:notaport") != std::string::npos);
  CHECK_FALSE(net::ParseServerList("a", 0).ok());  // no port, none by default
}
