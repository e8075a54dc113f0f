// net/router: literal and parameter segments, decoding, {rest...}, 404 vs 405, HEAD.
#include "net/router.h"

#include <catch2/catch.hpp>

using namespace berth::net::http;

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

Router MakeRouter() {
  Router r;
  Handler none = [](const ExchangePtr&) {};
  r.Add("GET", "/v1/clusters", none);
  r.Add("POST", "/v1/clusters", none);
  r.Add("GET", "/v1/clusters/{name}", none);
  r.Add("DELETE", "/v1/clusters/{name}", none);
  r.Add("GET", "/v1/clusters/{cluster}/services/{service}", none);
  r.Add("PUT", "/v2/{repo...}", none);
  r.Add("HEAD", "/explicit-head", none);
  r.Add("GET", "/explicit-head", none);
  return r;
}

}  // namespace

TEST_CASE("router: literal routes", "[net][router]") {
  Router r = MakeRouter();
  Params p;
  auto m = r.Find("GET", "/v1/clusters", &p);
  REQUIRE(m.route);
  CHECK(m.route->method == "GET");
  CHECK(m.route->pattern == "/v1/clusters");
  CHECK(p.empty());
  CHECK(r.Find("POST", "/v1/clusters", &p).route->method == "POST");
  // Repeated and trailing slashes do not make a different path.
  CHECK(r.Find("GET", "/v1//clusters/", &p).route);
}

TEST_CASE("router: parameters are captured and percent-decoded", "[net][router]") {
  Router r = MakeRouter();
  Params p;
  auto m = r.Find("GET", "/v1/clusters/prod/services/web%20api", &p);
  REQUIRE(m.route);
  CHECK(m.route->pattern == "/v1/clusters/{cluster}/services/{service}");
  CHECK(p == Params{{"cluster", "prod"}, {"service", "web api"}});

  SECTION("an encoded slash stays inside its segment") {
    Params q;
    auto m2 = r.Find("GET", "/v1/clusters/a%2Fb", &q);
    REQUIRE(m2.route);
    CHECK(q == Params{{"name", "a/b"}});
  }
  SECTION("'+' is not a space in a path") {
    Params q;
    REQUIRE(r.Find("GET", "/v1/clusters/a+b", &q).route);
    CHECK(q == Params{{"name", "a+b"}});
  }
  SECTION("a bad escape matches nothing") {
    Params q;
    auto bad = r.Find("GET", "/v1/clusters/%zz", &q);
    CHECK_FALSE(bad.route);
    CHECK(q.empty());
  }
}

TEST_CASE("router: {rest...} takes the remaining path", "[net][router]") {
  Router r = MakeRouter();
  Params p;
  auto m = r.Find("PUT", "/v2/library/nginx/blobs/uploads/x%40y", &p);
  REQUIRE(m.route);
  CHECK(p == Params{{"repo", "library/nginx/blobs/uploads/x@y"}});
  Params q;
  CHECK_FALSE(r.Find("PUT", "/v2/", &q).route);  // the rest must not be empty
}

TEST_CASE("router: 404 when no path matches, 405 with Allow when only the method differs", "[net][router]") {
  Router r = MakeRouter();
  Params p;
  auto none = r.Find("GET", "/v1/nothing", &p);
  CHECK_FALSE(none.route);
  CHECK_FALSE(none.other_method);
  CHECK(none.allow.empty());

  auto longer = r.Find("GET", "/v1/clusters/a/b", &p);
  CHECK_FALSE(longer.route);
  CHECK_FALSE(longer.other_method);

  auto wrong = r.Find("PATCH", "/v1/clusters/prod", &p);
  CHECK_FALSE(wrong.route);
  CHECK(wrong.other_method);
  CHECK(wrong.allow == "GET, DELETE");
  CHECK(p.empty());  // nothing captured without a match

  auto put = r.Find("DELETE", "/v1/clusters", &p);
  CHECK(put.other_method);
  CHECK(put.allow == "GET, POST");
}

TEST_CASE("router: HEAD falls back to the GET route", "[net][router]") {
  Router r = MakeRouter();
  Params p;
  auto m = r.Find("HEAD", "/v1/clusters/prod", &p);
  REQUIRE(m.route);
  CHECK(m.route->method == "GET");
  CHECK_FALSE(m.other_method);
  CHECK(m.allow.empty());
  CHECK(p == Params{{"name", "prod"}});

  Params q;
  auto own = r.Find("HEAD", "/explicit-head", &q);
  REQUIRE(own.route);
  CHECK(own.route->method == "HEAD");

  Params s;
  auto no_get = r.Find("HEAD", "/v2/x", &s);  // only PUT there
  CHECK_FALSE(no_get.route);
  CHECK(no_get.other_method);
  CHECK(no_get.allow == "PUT");
}

TEST_CASE("router: the first matching route wins", "[net][router]") {
  Router r;
  r.Add("GET", "/things/new", [](const ExchangePtr&) {});
  r.Add("GET", "/things/{id}", [](const ExchangePtr&) {});
  Params p;
  CHECK(r.Find("GET", "/things/new", &p).route->pattern == "/things/new");
  CHECK(p.empty());
  CHECK(r.Find("GET", "/things/7", &p).route->pattern == "/things/{id}");
  CHECK(p == Params{{"id", "7"}});
}

TEST_CASE("router: a route's access, automatic by method unless declared", "[net][router]") {
  Router r;
  auto h = [](const ExchangePtr&) {};
  r.Add("GET", "/a", h);
  r.Add("DELETE", "/a", h);
  r.Add("POST", "/b", h, RouteOptions{.access = Access::kAdmin});
  r.Add("GET", "/v2", h, RouteOptions{.access = Access::kRegistry});
  r.Add("GET", "/healthz", h, RouteOptions{.access = Access::kOpen});
  std::vector<std::string> got;
  for (const auto& route : r.routes()) {
    got.push_back(route->method + " " + route->pattern + " " + AccessName(route->access()) +
                  (route->open() ? " open" : ""));
  }
  CHECK(got == std::vector<std::string>{"GET /a read", "DELETE /a deploy", "POST /b admin", "GET /v2 registry open",
                                        "GET /healthz open open"});
}
