#include "api/session.h"

#include <algorithm>

#include "api/api.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/json.h"
#include "model/state.h"
#include "net/http_server.h"
#include "net/router.h"

namespace berth::api {

namespace http = net::http;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

http::Response Unauthorized(std::string_view code, std::string message) {
  http::Response r = http::ErrorResponse(401, code, message);
  r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"berth\""});
  return r;
}

// What the dashboard is told of its session: which token it acts as and what
// that token may do, when it ends, and the CSRF token for its changes.
json::Doc SessionJson(const model::Token& session, const model::Token& token, std::string_view secret) {
  json::Doc d = json::Doc::Object();
  d.Set("id", session.id)
      .Set("tokenId", token.id)
      .Set("role", token.role)
      .Set("expiresAt", UtcIso8601(session.expires_ms))
      .Set("csrf", SessionCsrf(secret));
  json::Doc clusters = json::Doc::Array();
  for (const std::string& c : token.scope.clusters) clusters.Push(c);
  json::Doc repos = json::Doc::Array();
  json::Doc scope = token.scope.ToJson();
  for (json::View r : scope.view().Get("repositories")) repos.Push(std::string(r.String()));
  // Empty lists: no limit (every cluster, every repository).
  d.Set("clusters", std::move(clusters)).Set("repositories", std::move(repos));
  json::Doc out = json::Doc::Object();
  out.Set("session", std::move(d));
  return out;
}

// Opens a session for the token in the body; see AddSessionRoutes.
void Login(Context* ctx, const http::ExchangePtr& ex) {
  Result<json::Doc> body = json::Doc::Parse(ex->request().body);
  if (!body || !body->view().IsObject()) {
    return ex->Respond(
        http::ErrorResponse(400, "InvalidParameter", "the body must be a JSON object {\"token\":\"<a token>\"}"));
  }
  Result<std::string> secret = json::RequireString(body->view(), "token", "token");
  if (!secret) return ex->Respond(http::ErrorResponse(secret.error()));
  int64_t now = ctx->clock->NowUnixMs();
  const model::Token* t = ctx->state->FindTokenBySecret(*secret);
  if (!t) {
    if (ctx->state->FindSessionBySecret(*secret)) {
      return ex->Respond(Unauthorized("Unauthorized", "a session's cookie cannot open a session; log in with a token"));
    }
    return ex->Respond(Unauthorized("Unauthorized", "the token is not valid (mistyped, or revoked)"));
  }
  ex->principal = t->id;  // the audit log names who tried
  if (t->access_key()) {
    return ex->Respond(http::ErrorResponse(
        403, "Forbidden",
        "access key " + t->id + " signs AWS requests and cannot open a session; log in with a token"));
  }
  if (t->role != "admin" && t->role != "deploy" && t->role != "read-only") {
    return ex->Respond(http::ErrorResponse(403, "Forbidden",
                                           "token " + t->id + " has role " + t->role +
                                               ", which is for machines; only admin, deploy and read-only tokens "
                                               "may open a session"));
  }
  if (t->expires_ms && t->expires_ms <= now) {
    return ex->Respond(Unauthorized("Unauthorized", "the token " + t->id + " expired at " + UtcIso8601(t->expires_ms)));
  }
  Result<std::string> cookie = crypto::NewToken("bses_");
  Result<std::string> suffix = crypto::NewToken("");
  if (!cookie || !suffix) return ex->Respond(http::ErrorResponse(!cookie ? cookie.error() : suffix.error()));
  auto cmd = std::make_unique<model::CreateToken>();
  cmd->id = "session-" + suffix->substr(0, 12);
  cmd->role = "session";
  cmd->parent = t->id;
  cmd->hash = crypto::Hex(crypto::Sha256(*cookie));
  cmd->time_ms = now;
  cmd->expires_ms = now + ctx->session_ttl_ms;
  if (t->expires_ms) cmd->expires_ms = std::min(cmd->expires_ms, t->expires_ms);
  ex->session = cmd->id;
  auto reply = [ctx, ex, secret = std::move(cookie.value()), token_id = t->id](Result<std::string> r) {
    if (!r) return ex->Respond(http::ErrorResponse(r.error()));
    const model::Token* session = ctx->state->FindSessionBySecret(secret);
    const model::Token* token = ctx->state->FindToken(token_id);
    if (!session || !token) {
      return ex->Respond(
          http::ErrorResponse(409, "TokenRevoked", "token " + token_id + " was revoked while its session opened"));
    }
    http::Response answer = http::JsonResponse(201, SessionJson(*session, *token, secret).Print());
    int64_t max_age = std::max<int64_t>(0, (session->expires_ms - ctx->clock->NowUnixMs()) / 1000);
    answer.headers.push_back({"Set-Cookie", SessionSetCookie(secret, max_age, ctx->tls)});
    answer.headers.push_back({"Cache-Control", "no-store"});
    ex->Respond(std::move(answer));
  };
  if (ctx->submit_anywhere) return ctx->submit_anywhere(std::move(cmd), std::move(reply));
  ctx->store->Submit(std::move(cmd), std::move(reply));
}

}  // namespace

std::string SessionCsrf(std::string_view secret) {
  std::string labelled = "berth dashboard csrf\n";
  labelled.append(secret);
  return crypto::Hex(crypto::Sha256(labelled));
}

std::optional<std::string_view> CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = http::TrimOws(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || http::TrimOws(pair.substr(0, eq)) != name) continue;
    std::string_view value = http::TrimOws(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    return value;
  }
  return std::nullopt;
}

std::string SessionSetCookie(std::string_view secret, int64_t max_age_s, bool secure) {
  std::string c(kSessionCookie);
  c.append("=")
      .append(secret)
      .append("; Path=/; HttpOnly; SameSite=Strict; Max-Age=")
      .append(std::to_string(max_age_s));
  if (secure) c.append("; Secure");
  return c;
}

bool SameOrigin(std::string_view origin, std::string_view host) {
  size_t scheme = origin.find("://");
  if (scheme == std::string_view::npos || host.empty()) return false;
  std::string_view rest = origin.substr(scheme + 3);
  if (rest.ends_with("/")) rest.remove_suffix(1);
  return Lower(rest) == Lower(http::TrimOws(host));
}

const model::Token* AuthenticateSession(model::State& state, int64_t now_ms, http::Exchange& ex,
                                        std::string_view secret, std::optional<http::Response>* refusal) {
  const http::Request& req = ex.request();
  const model::Token* s = state.FindSessionBySecret(secret);
  if (!s) {
    // Expired sessions are forgotten soon after (control/retention.h), so an
    // expired one may be refused here as well as below.
    *refusal = Unauthorized("Unauthorized",
                            "the session is not valid: it was logged out or expired, or its token was revoked");
    return nullptr;
  }
  const model::Token* t = state.FindToken(s->parent);
  ex.principal = t ? t->id : s->parent;
  ex.session = s->id;
  if (!t || (s->expires_ms && s->expires_ms <= now_ms) || (t->expires_ms && t->expires_ms <= now_ms)) {
    *refusal = Unauthorized("SessionExpired", "the session of token " + s->parent + " expired at " +
                                                  UtcIso8601(s->expires_ms) + "; log in again");
    return nullptr;
  }
  if (req.method != "GET" && req.method != "HEAD") {
    // A page of another site may make the browser send the cookie, but neither
    // read the CSRF token nor set this header; nor hide its Origin.
    std::string_view origin = req.Header("origin");
    if (!origin.empty() && !SameOrigin(origin, req.Header("host"))) {
      *refusal = http::ErrorResponse(403, "CrossOriginRequest",
                                     "a change from origin " + std::string(origin) + " to host " +
                                         std::string(req.Header("host")) + ": a session acts for its own pages only");
      return nullptr;
    }
    std::string_view csrf = req.Header("x-csrf-token");
    if (csrf.empty()) {
      *refusal = http::ErrorResponse(403, "CsrfTokenMissing",
                                     "a change made with a session cookie needs the header X-CSRF-Token (the csrf "
                                     "value POST /v1/session answered)");
      return nullptr;
    }
    if (!crypto::ConstantTimeEqual(csrf, SessionCsrf(secret))) {
      *refusal = http::ErrorResponse(403, "CsrfTokenInvalid", "X-CSRF-Token is not this session's CSRF token");
      return nullptr;
    }
  }
  return t;
}

void AddSessionRoutes(http::Router* router, Context* ctx) {
  http::RouteOptions login;
  login.access = http::Access::kOpen;
  login.max_body = 4096;
  login.takes_credential = true;
  router->Add(
      "POST", "/v1/session", [ctx](const http::ExchangePtr& ex) { Login(ctx, ex); }, login);

  // Any role may see and end its own session; the gate has found it.
  http::RouteOptions own;
  own.access = http::Access::kRead;
  router->Add(
      "GET", "/v1/session",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<std::string_view> secret = CookieValue(ex->request().Header("cookie"), kSessionCookie);
        const model::Token* s = secret ? ctx->state->FindSessionBySecret(*secret) : nullptr;
        const model::Token* t = s ? ctx->state->FindToken(s->parent) : nullptr;
        if (ex->session.empty() || !s || !t) {
          return ex->Respond(http::ErrorResponse(
              404, "NoSession", "this request was authenticated by a bearer token, not a session cookie"));
        }
        http::Response r = http::JsonResponse(200, SessionJson(*s, *t, *secret).Print());
        r.headers.push_back({"Cache-Control", "no-store"});
        ex->Respond(std::move(r));
      },
      own);
  router->Add(
      "DELETE", "/v1/session",
      [ctx](const http::ExchangePtr& ex) {
        if (ex->session.empty()) {
          return ex->Respond(http::ErrorResponse(
              400, "NoSession", "this request was not made with a session cookie: nothing to log out"));
        }
        auto cmd = std::make_unique<model::DeleteToken>();
        cmd->id = ex->session;
        cmd->time_ms = ctx->clock->NowUnixMs();
        auto reply = [ctx, ex](Result<std::string> r) {
          if (!r && r.error().code != "TokenNotFound") return ex->Respond(http::ErrorResponse(r.error()));
          http::Response answer = http::JsonResponse(200, json::Doc::Object().Set("loggedOut", true).Print());
          answer.headers.push_back({"Set-Cookie", SessionSetCookie("", 0, ctx->tls)});
          ex->Respond(std::move(answer));
        };
        if (ctx->submit_anywhere) return ctx->submit_anywhere(std::move(cmd), std::move(reply));
        ctx->store->Submit(std::move(cmd), std::move(reply));
      },
      own);
}

}  // namespace berth::api
