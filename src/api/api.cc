#include "api/api.h"

#include "base/crypto.h"
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

json::Doc TaskDefinitionSummary(const model::TaskDefinition& td) {
  json::Doc d = json::Doc::Object();
  d.Set("taskDefinitionArn", td.arn)
      .Set("family", td.family)
      .Set("revision", td.revision)
      .Set("status", td.status)
      .Set("cpu", td.cpu)
      .Set("memory", td.memory)
      .Set("containers", static_cast<int64_t>(td.containers.size()))
      .Set("registeredAt", static_cast<double>(td.registered_ms) / 1000.0);
  return d;
}

void ClusterNotFound(const http::ExchangePtr& ex, std::string_view name) {
  ex->Respond(http::ErrorResponse(404, "ClusterNotFound", "cluster " + std::string(name) + " does not exist"));
}

bool IsAdmin(const model::State& state, std::string_view token_id) {
  for (const model::Token& t : state.tokens()) {
    if (t.id == token_id) return t.role == "admin";
  }
  return false;
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

  // --- task definitions ---

  http::RouteOptions taskdef_body;
  taskdef_body.max_body = 4 << 20;  // ECS's own limit is 64 KiB per definition; room for big ones
  router->Add(
      "POST", "/v1/taskdefinitions",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<json::Doc> doc = model::ValidateTaskDefinition(body->view());
        if (!doc) return ex->Respond(http::ErrorResponse(doc.error()));
        auto cmd = std::make_unique<model::RegisterTaskDefinition>();
        cmd->family = std::string(doc->view().Get("family").String());
        cmd->doc = doc->Print();
        Submit(ctx, ex, std::move(cmd), 201);
      },
      taskdef_body);

  router->Add("GET", "/v1/taskdefinitions", [ctx](const http::ExchangePtr& ex) {
    std::string prefix = ex->request().Query("familyPrefix").value_or("");
    std::string status = ex->request().Query("status").value_or("ACTIVE");
    if (status != "ACTIVE" && status != "INACTIVE" && status != "ALL") {
      return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "status: must be ACTIVE, INACTIVE or ALL"));
    }
    json::Doc list = json::Doc::Array();
    for (const auto& [family, revisions] : ctx->state->task_definitions()) {
      if (!family.starts_with(prefix)) continue;
      for (const auto& [rev, td] : revisions) {
        if (status == "ALL" || td.status == status) list.Push(TaskDefinitionSummary(td));
      }
    }
    ex->Respond(Json(200, json::Doc::Object().Set("taskDefinitions", list).Print()));
  });

  router->Add("GET", "/v1/taskdefinitions/families", [ctx](const http::ExchangePtr& ex) {
    json::Doc list = json::Doc::Array();
    for (const auto& [family, revisions] : ctx->state->task_definitions()) {
      bool active = false;
      for (const auto& [rev, td] : revisions) active = active || td.status == "ACTIVE";
      if (active) list.Push(family);
    }
    ex->Respond(Json(200, json::Doc::Object().Set("families", list).Print()));
  });

  router->Add("GET", "/v1/taskdefinitions/{ref}", [ctx](const http::ExchangePtr& ex) {
    auto ref = model::ParseTaskDefinitionRef(ex->request().Param("ref"));
    if (!ref) return ex->Respond(http::ErrorResponse(ref.error()));
    const model::TaskDefinition* td = ctx->state->FindTaskDefinition(ref->first, ref->second);
    if (!td) {
      return ex->Respond(http::ErrorResponse(404, "TaskDefinitionNotFound",
                                             "task definition " + std::string(ex->request().Param("ref")) +
                                                 (ref->second ? " does not exist" : " has no ACTIVE revision")));
    }
    ex->Respond(Json(200, json::Doc::Object().Set("taskDefinition", model::TaskDefinitionJson(*td)).Print()));
  });

  router->Add("DELETE", "/v1/taskdefinitions/{ref}", [ctx](const http::ExchangePtr& ex) {
    auto ref = model::ParseTaskDefinitionRef(ex->request().Param("ref"));
    if (!ref) return ex->Respond(http::ErrorResponse(ref.error()));
    if (ref->second == 0) {
      return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "taskDefinition: give FAMILY:REVISION to deregister"));
    }
    auto cmd = std::make_unique<model::DeregisterTaskDefinition>();
    cmd->family = ref->first;
    cmd->revision = ref->second;
    Submit(ctx, ex, std::move(cmd), 200);
  });

  // --- tokens (admin only) ---

  router->Add("POST", "/v1/tokens", [ctx](const http::ExchangePtr& ex) {
    if (ex->principal != "admin" && !IsAdmin(*ctx->state, ex->principal)) {
      return ex->Respond(http::ErrorResponse(403, "Forbidden", "only an admin token may create tokens"));
    }
    std::optional<json::Doc> body = ParseBody(ex);
    if (!body) return;
    Result<std::string> role = json::RequireString(body->view(), "role", "role");
    if (!role) return ex->Respond(http::ErrorResponse(role.error()));
    if (!model::IsValidRole(*role)) {
      return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "role: must be admin, deploy, read-only or agent"));
    }
    Result<std::string> secret = crypto::NewToken("berth_");
    if (!secret) return ex->Respond(http::ErrorResponse(secret.error()));
    Result<std::string> suffix = crypto::NewToken("");
    if (!suffix) return ex->Respond(http::ErrorResponse(suffix.error()));
    auto cmd = std::make_unique<model::CreateToken>();
    cmd->id = *role + "-" + suffix->substr(0, 8);
    cmd->role = *role;
    cmd->hash = crypto::Hex(crypto::Sha256(*secret));
    cmd->time_ms = ctx->clock->NowUnixMs();
    std::string secret_value = *secret;
    ctx->store->Submit(std::move(cmd), [ex, secret_value](Result<std::string> r) {
      if (!r) return ex->Respond(http::ErrorResponse(r.error()));
      Result<json::Doc> doc = json::Doc::Parse(*r);
      json::Doc token = doc ? json::Doc::Copy(doc->view().Get("token")) : json::Doc::Object();
      // The secret is shown this once; only its hash is stored.
      token.Set("secret", secret_value);
      ex->Respond(Json(201, json::Doc::Object().Set("token", token).Print()));
    });
  });

  router->Add("GET", "/v1/tokens", [ctx](const http::ExchangePtr& ex) {
    json::Doc list = json::Doc::Array();
    for (const model::Token& t : ctx->state->tokens()) {
      list.Push(json::Doc::Object().Set("id", t.id).Set("role", t.role).Set("createdAt", static_cast<double>(t.created_ms) / 1000.0));
    }
    ex->Respond(Json(200, json::Doc::Object().Set("tokens", list).Print()));
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
