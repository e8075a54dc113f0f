// Browser sessions for the dashboard: POST /v1/session trades a person's token
// (admin, deploy or read-only) for a cookie, which then stands for that token
// on every server of the cluster. A session is a token of role "session" whose
// parent is the token it acts for (model::Token::parent), made and removed
// through the replicated log, so it survives restarts and ends with its token.
// Its cookie is never a bearer credential, and every change made with it must
// carry its CSRF token (X-CSRF-Token), which is derived from the cookie's secret
// but is not it. docs/security.md tells the whole story.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "net/http.h"

namespace berth::net::http {
class Router;
class Exchange;
}  // namespace berth::net::http
namespace berth::model {
class State;
struct Token;
}  // namespace berth::model

namespace berth::api {

struct Context;

inline constexpr std::string_view kSessionCookie = "berth_session";

// The CSRF token of the session whose secret is `secret`: 64 hex digits of a
// SHA-256 over a label and the secret (one way: it does not give the cookie).
std::string SessionCsrf(std::string_view secret);
// The value of cookie `name` in a Cookie header ("a=1; b=2"), if present.
std::optional<std::string_view> CookieValue(std::string_view cookie_header, std::string_view name);
// The Set-Cookie value for a session's secret, living `max_age_s` seconds (0:
// clears it); Secure when the server speaks TLS.
std::string SessionSetCookie(std::string_view secret, int64_t max_age_s, bool secure);
// Whether Origin header `origin` ("https://host:port") names the host of Host
// header `host` (compared without regard to case).
bool SameOrigin(std::string_view origin, std::string_view host);

// The gate's part for a request that carries the session cookie and no
// Authorization header: the session must exist and not have expired, nor its
// token; a change needs the CSRF token and, with an Origin, this host's. Sets
// the principal (the session's token) and the exchange's session. Returns the
// session's token (whose role and limits apply), or nullptr with `refusal` set.
const model::Token* AuthenticateSession(model::State& state, int64_t now_ms, net::http::Exchange& ex,
                                        std::string_view secret, std::optional<net::http::Response>* refusal);

// POST, GET and DELETE /v1/session.
void AddSessionRoutes(net::http::Router* router, Context* ctx);

}  // namespace berth::api
