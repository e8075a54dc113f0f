// The browser dashboard's files (web/, built into the binary by
// cmake/embed_web.cmake): GET / sends a browser to /ui/; /ui/<anything> is the
// dashboard's page (its routes are the browser's); /ui/assets/<build hash>/<path>
// is a file of web/, cached for good since a new build has a new hash. Open
// routes: the files are public, what they show comes from the API.
#pragma once

#include <string_view>

#include "net/http.h"

namespace berth::net::http {
class Router;
}

namespace berth::api {

// The Content-Type of a dashboard file, by its extension.
std::string_view DashboardContentType(std::string_view path);
// Whether Accept-Encoding `accept` takes gzip (named, or "*", with a q above 0).
bool AcceptsGzip(std::string_view accept);
// Whether If-None-Match `header` names `etag` (a list, or "*").
bool EtagMatches(std::string_view header, std::string_view etag);
// The headers every /ui/ answer carries: the content security policy and the
// rest of what keeps the page from being framed, sniffed or leaking its URL.
void AddDashboardSecurityHeaders(net::http::Headers* headers);

void AddDashboardRoutes(net::http::Router* router);

}  // namespace berth::api
