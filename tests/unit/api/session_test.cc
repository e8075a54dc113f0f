// The pure parts of the dashboard's sessions and files: cookies, the CSRF
// token, origins, content negotiation (api/session.h, api/dashboard.h).
#include "api/session.h"

#include <catch2/catch.hpp>

#include "api/dashboard.h"
#include "base/embedded.h"

using namespace berth;

TEST_CASE("session: the CSRF token is derived from the secret, and is not it", "[api]") {
  std::string a = api::SessionCsrf("bses_one");
  CHECK(a.size() == 64);
  CHECK(a == api::SessionCsrf("bses_one"));
  CHECK(a != api::SessionCsrf("bses_two"));
  CHECK(a.find("bses_one") == std::string::npos);
}

TEST_CASE("session: the cookie is found among others, and only by its name", "[api]") {
  CHECK(api::CookieValue("berth_session=abc", "berth_session") == "abc");
  CHECK(api::CookieValue("a=1; berth_session=abc; b=2", "berth_session") == "abc");
  CHECK(api::CookieValue("a=1;berth_session=\"abc\"", "berth_session") == "abc");
  CHECK(!api::CookieValue("xberth_session=abc; berth_sessionx=d", "berth_session"));
  CHECK(!api::CookieValue("", "berth_session"));
  CHECK(!api::CookieValue("berth_session", "berth_session"));
  CHECK(api::CookieValue("berth_session=", "berth_session") == "");
}

TEST_CASE("session: Set-Cookie is HttpOnly, SameSite=Strict, and Secure over TLS", "[api]") {
  CHECK(api::SessionSetCookie("s", 60, true) ==
        "berth_session=s; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
  CHECK(api::SessionSetCookie("", 0, false) == "berth_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
}

TEST_CASE("session: an Origin must name the request's host", "[api]") {
  CHECK(api::SameOrigin("https://127.0.0.1:7070", "127.0.0.1:7070"));
  CHECK(api::SameOrigin("https://Berth.Example:7070/", "berth.example:7070"));
  CHECK(!api::SameOrigin("https://evil.example", "berth.example:7070"));
  CHECK(!api::SameOrigin("https://berth.example:7071", "berth.example:7070"));
  CHECK(!api::SameOrigin("null", "berth.example:7070"));
  CHECK(!api::SameOrigin("https://berth.example:7070", ""));
}

TEST_CASE("dashboard: gzip is taken when asked for, not when refused", "[api]") {
  CHECK(api::AcceptsGzip("gzip"));
  CHECK(api::AcceptsGzip("deflate, gzip;q=0.5, br"));
  CHECK(api::AcceptsGzip("GZIP"));
  CHECK(api::AcceptsGzip("*"));
  CHECK(!api::AcceptsGzip(""));
  CHECK(!api::AcceptsGzip("identity"));
  CHECK(!api::AcceptsGzip("gzip;q=0"));
  CHECK(!api::AcceptsGzip("gzip; q=0.000"));
  CHECK(!api::AcceptsGzip("xgzip"));
}

TEST_CASE("dashboard: If-None-Match names an ETag in a list, weakly or by *", "[api]") {
  CHECK(api::EtagMatches("\"abc\"", "\"abc\""));
  CHECK(api::EtagMatches("\"x\", \"abc\"", "\"abc\""));
  CHECK(api::EtagMatches("W/\"abc\"", "\"abc\""));
  CHECK(api::EtagMatches("*", "\"abc\""));
  CHECK(!api::EtagMatches("\"abc.gz\"", "\"abc\""));
  CHECK(!api::EtagMatches("", "\"abc\""));
}

TEST_CASE("dashboard: content types by extension", "[api]") {
  CHECK(api::DashboardContentType("index.html") == "text/html; charset=utf-8");
  CHECK(api::DashboardContentType("js/app.js") == "text/javascript; charset=utf-8");
  CHECK(api::DashboardContentType("app.css") == "text/css; charset=utf-8");
  CHECK(api::DashboardContentType("i.svg") == "image/svg+xml");
  CHECK(api::DashboardContentType("f.woff2") == "font/woff2");
  CHECK(api::DashboardContentType("m.webmanifest") == "application/manifest+json");
  CHECK(api::DashboardContentType("x.bin") == "application/octet-stream");
}

TEST_CASE("dashboard: web/ is built in, README.md left out", "[api]") {
  CHECK(embedded::WebBuildHash().size() == 16);
  CHECK(!embedded::FindWebFile("README.md"));
  CHECK(!embedded::FindWebFile(""));
  if (const embedded::WebFile* index = embedded::FindWebFile("index.html")) {
    CHECK(index->raw.find("__ASSETS__") == std::string_view::npos);
    CHECK(index->hash.size() == 16);
    CHECK(index->gzip.substr(0, 2) == "\x1f\x8b");
  }
}
