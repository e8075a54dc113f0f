#include "api/dashboard.h"

#include <string>

#include "base/embedded.h"
#include "net/http_server.h"
#include "net/router.h"

namespace berth::api {

namespace http = net::http;

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// Answers with `file`, compressed when the client takes gzip; 304 when it holds
// this version already. `cache` is the Cache-Control.
void ServeFile(const http::ExchangePtr& ex, const embedded::WebFile& file, std::string_view cache) {
  const http::Request& req = ex->request();
  bool gzip = AcceptsGzip(req.Header("accept-encoding"));
  // One strong ETag per representation: the compressed bytes are not the plain ones.
  std::string etag = "\"" + std::string(file.hash) + (gzip ? ".gz\"" : "\"");
  http::Response r;
  AddDashboardSecurityHeaders(&r.headers);
  r.headers.push_back({"Cache-Control", std::string(cache)});
  r.headers.push_back({"ETag", etag});
  r.headers.push_back({"Vary", "Accept-Encoding"});
  if (EtagMatches(req.Header("if-none-match"), etag)) {
    r.status = 304;
    r.content_type.clear();
    return ex->Respond(std::move(r));
  }
  r.content_type = std::string(DashboardContentType(file.path));
  if (gzip) r.headers.push_back({"Content-Encoding", "gzip"});
  r.body = std::string(gzip ? file.gzip : file.raw);
  ex->Respond(std::move(r));
}

void NotFound(const http::ExchangePtr& ex, std::string message) {
  http::Response r = http::ErrorResponse(404, "NotFound", message);
  AddDashboardSecurityHeaders(&r.headers);
  ex->Respond(std::move(r));
}

// The page, whatever the route under /ui/ (the browser's router reads the path).
void ServeIndex(const http::ExchangePtr& ex) {
  const embedded::WebFile* index = embedded::FindWebFile("index.html");
  if (!index) return NotFound(ex, "this binary was built without the dashboard: web/index.html was missing");
  ServeFile(ex, *index, "no-cache");
}

}  // namespace

std::string_view DashboardContentType(std::string_view path) {
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".woff2", "font/woff2"},
      {".webmanifest", "application/manifest+json"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (path.ends_with(ext)) return type;
  }
  return "application/octet-stream";
}

bool AcceptsGzip(std::string_view accept) {
  while (!accept.empty()) {
    size_t comma = accept.find(',');
    std::string_view item = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = http::TrimOws(item.substr(0, semi));
    if (!EqualsIgnoreCase(coding, "gzip") && coding != "*") continue;
    // "q=0" (or 0.0, 0.00...) refuses it; any other weight takes it.
    bool refused = false;
    if (semi != std::string_view::npos) {
      std::string_view param = http::TrimOws(item.substr(semi + 1));
      if (param.size() >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        std::string_view q = http::TrimOws(param.substr(2));
        refused = !q.empty() && q[0] == '0' && q.find_first_not_of("0.", 0) == std::string_view::npos;
      }
    }
    return !refused;
  }
  return false;
}

bool EtagMatches(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = http::TrimOws(header.substr(0, comma));
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    if (item == "*" || item == etag) return true;
    // A weak comparison is what If-None-Match asks for (RFC 9110 13.1.2).
    if (item.starts_with("W/") && item.substr(2) == etag) return true;
  }
  return false;
}

void AddDashboardSecurityHeaders(http::Headers* headers) {
  headers->push_back({"Content-Security-Policy",
                      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
                      "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
                      "frame-ancestors 'none'"});
  headers->push_back({"X-Content-Type-Options", "nosniff"});
  headers->push_back({"Referrer-Policy", "no-referrer"});
  headers->push_back({"X-Frame-Options", "DENY"});
}

void AddDashboardRoutes(http::Router* router) {
  http::RouteOptions open;
  open.access = http::Access::kOpen;
  open.max_body = 0;
  router->Add(
      "GET", "/",
      [](const http::ExchangePtr& ex) {
        http::Response r;
        r.status = 302;
        r.content_type.clear();
        r.headers.push_back({"Location", "/ui/"});
        ex->Respond(std::move(r));
      },
      open);
  // Before /ui/{rest...}, which would take these paths too.
  router->Add(
      "GET", "/ui/assets/{build}/{path...}",
      [](const http::ExchangePtr& ex) {
        std::string_view build = ex->request().Param("build");
        std::string_view path = ex->request().Param("path");
        if (build != embedded::WebBuildHash()) {
          // An old page asking for the assets of an earlier build: they are gone,
          // and a redirect to today's could mix two builds in one page.
          return NotFound(ex, "assets of build " + std::string(build) +
                                  " are not served here; this server's are /ui/assets/" +
                                  std::string(embedded::WebBuildHash()) + "/ (reload the page)");
        }
        const embedded::WebFile* file = embedded::FindWebFile(path);
        if (!file) return NotFound(ex, "the dashboard has no file " + std::string(path));
        ServeFile(ex, *file, "public, max-age=31536000, immutable");
      },
      open);
  router->Add(
      "GET", "/ui", [](const http::ExchangePtr& ex) { ServeIndex(ex); }, open);
  router->Add(
      "GET", "/ui/{route...}", [](const http::ExchangePtr& ex) { ServeIndex(ex); }, open);
}

}  // namespace berth::api
