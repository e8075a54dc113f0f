#include "aws/frontend.h"

#include <catch2/catch.hpp>

#include "net/router.h"

namespace berth::aws {
namespace {

TEST_CASE("berth's ARNs and registry ids take the signed region and the configured account", "[aws]") {
  std::string text =
      R"({"clusterArn":"arn:aws:ecs:local:000000000000:cluster/prod","x":"arn:aws:ecr:local:000000000000:repository/a",)"
      R"("registryId":"000000000000","other":"arn:aws:iam::123:role/r","s":"arn:aws:secretsmanager:local:000000000000:secret:k",)"
      R"("text":"local:000000000000 alone"})";
  std::string out = RewriteArns(text, "eu-north-1", "123456789012");
  CHECK(
      out ==
      R"({"clusterArn":"arn:aws:ecs:eu-north-1:123456789012:cluster/prod","x":"arn:aws:ecr:eu-north-1:123456789012:repository/a",)"
      R"("registryId":"123456789012","other":"arn:aws:iam::123:role/r","s":"arn:aws:secretsmanager:eu-north-1:123456789012:secret:k",)"
      R"("text":"local:000000000000 alone"})");
  CHECK(RewriteArns(text, "local", "000000000000") == text);
  CHECK(RewriteArns("", "r", "1") == "");
  CHECK(RewriteArns("arn:aws:", "r", "1") == "arn:aws:");
  // The account alone changes registry ids too.
  CHECK(RewriteArns(R"({"registryId":"000000000000"})", "local", "999999999999") == R"({"registryId":"999999999999"})");
}

TEST_CASE("names and ARNs of any region name the same things", "[aws]") {
  CHECK(ClusterName("") == "default");
  CHECK(ClusterName("prod") == "prod");
  CHECK(ClusterName("arn:aws:ecs:us-west-2:111122223333:cluster/prod") == "prod");
  CHECK(LastPart("arn:aws:ecs:us-west-2:111122223333:task/prod/0123abcd") == "0123abcd");
  CHECK(LastPart("web") == "web");
  CHECK(net::http::UrlEncode("team/app:1 x") == "team%2Fapp%3A1%20x");
}

TEST_CASE("an internal exchange hands its answer to its caller, a streamed one gathered", "[aws]") {
  net::http::Router router;
  router.Add("GET", "/v1/whole",
             [](const net::http::ExchangePtr& ex) { ex->Respond(net::http::JsonResponse(201, R"({"a":1})")); });
  router.Add("GET", "/v1/streamed", [](const net::http::ExchangePtr& ex) {
    ex->Begin(200, {{"x-one", "1"}}, 6, "text/plain");
    ex->Write("abc");
    ex->Write("def");
    ex->End();
  });
  for (const char* path : {"/v1/whole", "/v1/streamed"}) {
    std::vector<std::pair<std::string, std::string>> params;
    net::http::Router::Match m = router.Find("GET", path, &params);
    REQUIRE(m.route);
    net::http::Request req;
    req.method = "GET";
    req.path = req.target = path;
    std::optional<net::http::Response> got;
    auto ex = net::http::Exchange::Internal(std::move(req), m.route, "me", [&](net::http::Response r) { got = r; });
    CHECK(ex->principal == "me");
    m.route->handler(ex);
    REQUIRE(got);
    if (std::string(path) == "/v1/whole") {
      CHECK(got->status == 201);
      CHECK(got->body == R"({"a":1})");
    } else {
      CHECK(got->status == 200);
      CHECK(got->body == "abcdef");
      CHECK(got->content_type == "text/plain");
      CHECK(net::http::FindHeader(got->headers, "content-length") == "6");
      CHECK(net::http::FindHeader(got->headers, "x-one") == "1");
    }
    ex->Respond(net::http::JsonResponse(500, "{}"));  // a second answer goes nowhere
  }
}

}  // namespace
}  // namespace berth::aws
