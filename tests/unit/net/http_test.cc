// net/http: percent-encoding, query parameters, headers and status texts.
#include "net/http.h"

#include <catch2/catch.hpp>

using namespace berth::net::http;

TEST_CASE("http: UrlDecode", "[net][http]") {
  std::string out;
  CHECK(UrlDecode("a%20b%2Fc", &out, false));
  CHECK(out == "a b/c");
  CHECK(UrlDecode("a+b", &out, false));
  CHECK(out == "a+b");
  CHECK(UrlDecode("a+b", &out, true));
  CHECK(out == "a b");
  CHECK(UrlDecode("%e2%9C%93", &out, false));
  CHECK(out == "\xe2\x9c\x93");
  CHECK(UrlDecode("%00", &out, false));
  CHECK(out == std::string(1, '\0'));
  CHECK(UrlDecode("", &out, false));
  CHECK(out.empty());

  CHECK_FALSE(UrlDecode("%", &out, false));
  CHECK_FALSE(UrlDecode("%2", &out, false));
  CHECK_FALSE(UrlDecode("abc%2", &out, false));
  CHECK_FALSE(UrlDecode("%g0", &out, false));
  CHECK_FALSE(UrlDecode("%0g", &out, false));
}

TEST_CASE("http: UrlDecode accepts an escape that ends the input", "[net][http]") {
  std::string out;
  CHECK(UrlDecode("a%41", &out, false));
  CHECK(out == "aA");
  CHECK(UrlDecode("%41", &out, false));
  CHECK(out == "A");
}

TEST_CASE("http: UrlEncode keeps unreserved characters only", "[net][http]") {
  CHECK(UrlEncode("AZaz09-_.~") == "AZaz09-_.~");
  CHECK(UrlEncode("a b/c?d=e&f") == "a%20b%2Fc%3Fd%3De%26f");
  CHECK(UrlEncode("\xe2\x9c\x93") == "%E2%9C%93");
  std::string all;
  for (int c = 0; c < 256; c++) all.push_back(static_cast<char>(c));
  std::string back;
  REQUIRE(UrlDecode(UrlEncode(all), &back, false));
  CHECK(back == all);
}

TEST_CASE("http: Request::Query decodes names and values", "[net][http]") {
  Request r;
  r.query = "a=1&b=two+words&c=%2Fx&flag&empty=&a=second&bad=%zz&n%61me=v";
  CHECK(r.Query("a") == std::optional<std::string>("1"));  // the first wins
  CHECK(r.Query("b") == std::optional<std::string>("two words"));
  CHECK(r.Query("c") == std::optional<std::string>("/x"));
  CHECK(r.Query("flag") == std::optional<std::string>(""));
  CHECK(r.Query("empty") == std::optional<std::string>(""));
  CHECK(r.Query("name") == std::optional<std::string>("v"));
  CHECK_FALSE(r.Query("bad").has_value());
  CHECK_FALSE(r.Query("missing").has_value());
  Request none;
  CHECK_FALSE(none.Query("a").has_value());
}

TEST_CASE("http: headers and params", "[net][http]") {
  Request r;
  r.headers = {{"content-type", "application/json"}, {"X-Mixed", "1"}, {"x-mixed", "2"}};
  CHECK(r.Header("content-type") == "application/json");
  CHECK(r.Header("x-mixed") == "1");
  CHECK(r.Header("absent").empty());
  CHECK(HasHeader(r.headers, "x-mixed"));
  CHECK_FALSE(HasHeader(r.headers, "x-mix"));
  r.params = {{"name", "prod"}};
  CHECK(r.Param("name") == "prod");
  CHECK(r.Param("other").empty());
}

TEST_CASE("http: status texts", "[net][http]") {
  CHECK(std::string(StatusText(200)) == "OK");
  CHECK(std::string(StatusText(404)) == "Not Found");
  CHECK(std::string(StatusText(431)) == "Request Header Fields Too Large");
  CHECK(std::string(StatusText(599)) == "Unknown");
}
