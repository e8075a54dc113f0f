#include "api/api.h"

#include "base/json.h"
#include "base/log.h"

namespace berth::api {

namespace http = net::http;

namespace {

http::Response Json(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// Parses a request body as a JSON object, or answers 400 with where it went wrong.
std::optional<json::Doc> ParseBody(const http::ExchangePtr& ex) {
  const std::string& body = ex->request().body;
  Result<json::Doc> doc = json::Doc::Parse(body);
  if (!doc) {
    ex->Respond(http::ErrorResponse(doc.error()));
    return std::nullopt;
  }
  if (!doc->view().IsObject()) {
    ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                    std::string("the request body must be a JSON object, not ") +
                                        doc->view().TypeName()));
    return std::nullopt;
  }
  return std::move(doc.value());
}

// Hands `cmd` to the store; answers with `ok_status` and the command's reply once
// committed, or with its error.
void Submit(Context* ctx, const http::ExchangePtr& ex, store::CommandPtr cmd, int ok_status) {
  cmd->time_ms = ctx->clock->NowUnixMs();
  ctx->store->Submit(std::move(cmd), [ex, ok_status](Result<std::string> r) {
    if (!r) {
      ex->Respond(http::ErrorResponse(r.error()));
      return;
    }
    ex->Respond(Json(ok_status, std::move(r.value())));
  });
}

void ClusterNotFound(const http::ExchangePtr& ex, std::string_view name) {
  ex->Respond(http::ErrorResponse(404, "ClusterNotFound", "cluster " + std::string(name) + " does not exist"));
}

}  // namespace

std::optional<http::Response> Authenticate(const model::State& state, http::Exchange& ex) {
  std::string_view auth = ex.request().Header("authorization");
  auto refuse = [](std::string message) {
    http::Response r = http::ErrorResponse(401, "Unauthorized", message);
    r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"berth\""});
    return r;
  };
  if (auth.empty()) return refuse("missing Authorization header; send 'Authorization: Bearer <token>'");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size() || auth.substr(0, kBearer.size()) != kBearer) {
    return refuse("the Authorization header must be 'Bearer <token>'");
  }
  const model::Token* t = state.FindTokenBySecret(auth.substr(kBearer.size()));
  if (!t) return refuse("the token is not valid");
  const std::string& method = ex.request().method;
  bool read = method == "GET" || method == "HEAD";
  if (t->role == "agent" || (t->role == "read-only" && !read)) {
    return http::ErrorResponse(403, "Forbidden",
                               "a token with role " + t->role + " may not " + method + " " + ex.request().path);
  }
  ex.principal = t->id;
  return std::nullopt;
}

void AddRoutes(http::Router* router, Context* ctx) {
  http::RouteOptions open;
  open.open = true;
  router->Add("GET", "/healthz", [](const http::ExchangePtr& ex) { ex->Respond(Json(200, "{\"status\":\"ok\"}")); },
              open);

  router->Add("GET", "/metrics", [ctx](const http::ExchangePtr& ex) {
    http::Response r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = ctx->metrics->Render();
    ex->Respond(std::move(r));
  });

  router->Add("GET", "/v1/version", [ctx](const http::ExchangePtr& ex) {
    ex->Respond(Json(200, json::Doc::Object()
                              .Set("version", BERTH_VERSION)
                              .Set("git", BERTH_GIT)
                              .Set("schemaVersion", ctx->store->schema_version())
                              .Set("lastCommandSeq", static_cast<int64_t>(ctx->store->last_seq()))
                              .Print()));
  });

  // --- clusters ---

  router->Add("POST", "/v1/clusters", [ctx](const http::ExchangePtr& ex) {
    std::optional<json::Doc> body = ParseBody(ex);
    if (!body) return;
    Result<std::string> name = json::RequireString(body->view(), "clusterName", "clusterName");
    if (!name) return ex->Respond(http::ErrorResponse(name.error()));
    if (Status s = model::ValidateClusterName(name.value()); !s) return ex->Respond(http::ErrorResponse(s.error()));
    auto cmd = std::make_unique<model::CreateCluster>();
    cmd->name = std::move(name.value());
    Submit(ctx, ex, std::move(cmd), 201);
  });

  router->Add("GET", "/v1/clusters", [ctx](const http::ExchangePtr& ex) {
    json::Doc list = json::Doc::Array();
    for (const auto& [name, c] : ctx->state->clusters()) list.Push(model::ClusterJson(c));
    ex->Respond(Json(200, json::Doc::Object().Set("clusters", std::move(list)).Print()));
  });

  router->Add("GET", "/v1/clusters/{name}", [ctx](const http::ExchangePtr& ex) {
    std::string_view name = ex->request().Param("name");
    const model::Cluster* c = ctx->state->FindCluster(name);
    if (!c) return ClusterNotFound(ex, name);
    ex->Respond(Json(200, json::Doc::Object().Set("cluster", model::ClusterJson(*c)).Print()));
  });

  router->Add("DELETE", "/v1/clusters/{name}", [ctx](const http::ExchangePtr& ex) {
    std::string_view name = ex->request().Param("name");
    if (!ctx->state->FindCluster(name)) return ClusterNotFound(ex, name);
    auto cmd = std::make_unique<model::DeleteCluster>();
    cmd->name = std::string(name);
    Submit(ctx, ex, std::move(cmd), 200);
  });
}

}  // namespace berth::api
