#include "api/api.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <tuple>

#include "api/bodies.h"
#include "api/dashboard.h"
#include "api/overview.h"
#include "api/session.h"
#include "api/stream.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/embedded.h"
#include "base/flags.h"
#include "base/json.h"
#include "base/log.h"
#include "control/drains.h"
#include "control/proxy_config.h"
#include "proxy/config.h"
#include "sched/expr.h"

namespace berth::api {

namespace http = net::http;

namespace {

// Parses a request body as a JSON object, or answers 400 with where it went wrong.
std::optional<json::Doc> ParseBody(const http::ExchangePtr& ex) {
  const std::string& body = ex->request().body;
  Result<json::Doc> doc = json::Doc::Parse(body);
  if (!doc) {
    ex->Respond(http::ErrorResponse(doc.error()));
    return std::nullopt;
  }
  if (!doc->view().IsObject()) {
    ex->Respond(http::ErrorResponse(
        400, "InvalidParameter", std::string("the request body must be a JSON object, not ") + doc->view().TypeName()));
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
    ex->Respond(http::JsonResponse(ok_status, std::move(r.value())));
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

// ?maxResults=&nextToken= over a list already in order; returns the page bounds.
// Without maxResults a page holds `default_max` (0: everything, for lists that
// answered whole before they were paged).
bool Page(const http::ExchangePtr& ex, size_t total, size_t* begin, size_t* end, size_t default_max = 1000) {
  size_t max = default_max ? default_max : total, from = 0;
  if (auto m = ex->request().Query("maxResults")) {
    char* e = nullptr;
    unsigned long v = strtoul(m->c_str(), &e, 10);
    if (m->empty() || *e || v == 0 || v > 10000) {
      ex->Respond(http::ErrorResponse(400, "InvalidParameter", "maxResults: must be 1-10000"));
      return false;
    }
    max = v;
  }
  if (auto t = ex->request().Query("nextToken")) {
    char* e = nullptr;
    unsigned long v = strtoul(t->c_str(), &e, 10);
    if (t->empty() || *e) {
      ex->Respond(http::ErrorResponse(400, "InvalidParameter", "nextToken: not a token this server gave"));
      return false;
    }
    from = v;
  }
  *begin = std::min(from, total);
  *end = std::min(total, *begin + max);
  return true;
}

std::string NewDeploymentId() {
  uint8_t raw[8];
  if (!crypto::RandomBytes(raw, sizeof raw)) return "";
  uint64_t v = 0;
  for (uint8_t b : raw) v = (v << 8) | b;
  return "ecs-svc/" + std::to_string(v % 10000000000000000000ull);
}

// The ACTIVE task definition that `ref` (FAMILY, FAMILY:REV or an ARN) names; on
// anything else answers 400 or 404 and returns nullptr.
const model::TaskDefinition* ActiveTaskDefinition(Context* ctx, const http::ExchangePtr& ex, const std::string& ref) {
  auto parsed = model::ParseTaskDefinitionRef(ref);
  if (!parsed) {
    ex->Respond(http::ErrorResponse(parsed.error()));
    return nullptr;
  }
  const model::TaskDefinition* td = ctx->state->FindTaskDefinition(parsed->first, parsed->second);
  if (!td || td->status != "ACTIVE") {
    ex->Respond(
        http::ErrorResponse(404, "TaskDefinitionNotFound", "task definition " + ref + " has no ACTIVE revision"));
    return nullptr;
  }
  return td;
}

// For a list: whether an item of `cluster` is shown to `ex` (others are left out).
bool Shown(const model::TokenScope* limits, std::string_view cluster) {
  return !limits || limits->AllowsCluster(cluster);
}

void ClusterNotFound(const http::ExchangePtr& ex, std::string_view name) {
  ex->Respond(http::ErrorResponse(404, "ClusterNotFound", "cluster " + std::string(name) + " does not exist"));
}

// The node the request's {id} names, if the caller may act on its cluster;
// answers 404 or 403 and returns nullptr otherwise.
const model::Node* NodeInScope(Context* ctx, const http::ExchangePtr& ex) {
  std::string_view id = ex->request().Param("id");
  const model::Node* n = ctx->state->FindNode(id);
  if (!n) {
    ex->Respond(http::ErrorResponse(404, "NodeNotFound", "node " + std::string(id) + " does not exist"));
    return nullptr;
  }
  return ClusterInScope(*ctx->state, ex, n->cluster) ? n : nullptr;
}

// Checks a task definition against the task policy of the cluster it is to run
// in; answers 403 naming the field and the setting, and returns false, if refused.
bool PolicyAllows(const model::State& state, const http::ExchangePtr& ex, const model::Cluster& cluster,
                  const model::TaskDefinition& td) {
  // Secrets kept for some clusters are taken by those clusters' tasks only.
  for (const model::SecretRef& r : td.secrets) {
    const model::Secret* sec = state.FindSecret(r.secret);
    if (!sec || sec->clusters.empty() ||
        std::find(sec->clusters.begin(), sec->clusters.end(), cluster.name) != sec->clusters.end()) {
      continue;
    }
    ex->Respond(http::ErrorResponse(403, "SecretNotForCluster",
                                    "containerDefinitions " + r.container + " secret " + r.name + ": secret " +
                                        r.secret + " is kept for tasks of other clusters, not " + cluster.name));
    return false;
  }
  Result<json::Doc> doc = json::Doc::Parse(td.doc);
  if (!doc) {
    ex->Respond(http::ErrorResponse(500, "InternalError", "task definition " + td.arn + ": " + doc.error().message));
    return false;
  }
  model::HostView host;
  host.socket_paths = model::DefaultSocketPaths();
  if (Status s = model::CheckTaskPolicy(doc->view(), cluster.policy, cluster.name, host); !s) {
    ex->Respond(http::ErrorResponse(s.error()));
    return false;
  }
  return true;
}

// --- secrets (model/secret.h) ---

// The value of a create or rotate body: "value" (text) or "valueBase64" (any
// bytes), at most kMaxSecretBytes; answers 400 and returns nullopt otherwise.
std::optional<std::string> SecretValue(const http::ExchangePtr& ex, json::View body) {
  json::View text = body.Get("value");
  json::View b64 = body.Get("valueBase64");
  if (text.valid() == b64.valid()) {
    ex->Respond(
        http::ErrorResponse(400, "InvalidParameter", "give the secret's value as value or valueBase64 (one of them)"));
    return std::nullopt;
  }
  std::string value;
  if (text.valid()) {
    if (!text.IsString()) {
      ex->Respond(
          http::ErrorResponse(400, "InvalidParameter", std::string("value: must be a string, not ") + text.TypeName()));
      return std::nullopt;
    }
    value = std::string(text.String());
  } else {
    Result<std::string> raw =
        b64.IsString() ? crypto::Base64Decode(b64.String()) : Result<std::string>(Error::Invalid("must be a string"));
    if (!raw) {
      ex->Respond(http::ErrorResponse(400, "InvalidParameter", "valueBase64: " + raw.error().message));
      return std::nullopt;
    }
    value = std::move(raw.value());
  }
  if (value.empty() || value.size() > model::kMaxSecretBytes) {
    ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                    "a secret's value must be 1-" + std::to_string(model::kMaxSecretBytes) +
                                        " bytes; got " + std::to_string(value.size())));
    return std::nullopt;
  }
  return value;
}

// The task definitions (family:revision, ACTIVE) that take secret `name`.
json::Doc SecretUsers(const model::State& state, std::string_view name) {
  json::Doc users = json::Doc::Array();
  for (const auto& [family, revs] : state.task_definitions()) {
    for (const auto& [rev, td] : revs) {
      if (td.status != "ACTIVE") continue;
      for (const model::SecretRef& r : td.secrets) {
        if (r.secret == name) {
          users.Push(family + ":" + std::to_string(rev));
          break;
        }
      }
    }
  }
  return users;
}

void PutSecret(Context* ctx, const http::ExchangePtr& ex, std::string name, json::View body, bool create) {
  if (Status s = model::ValidateSecretName(name); !s) return ex->Respond(http::ErrorResponse(s.error()));
  std::optional<std::string> value = SecretValue(ex, body);
  if (!value) return;
  std::vector<std::string> clusters;
  if (json::View list = body.Get("clusters"); list.valid() && create) {
    Result<model::TokenScope> scope = model::ParseTokenScope(body);  // the same rules for cluster lists
    if (!scope) return ex->Respond(http::ErrorResponse(scope.error()));
    for (const std::string& c : scope->clusters) {
      if (!ctx->state->FindCluster(c)) return ClusterNotFound(ex, c);
    }
    clusters = scope->clusters;
  }
  Result<model::Secret> sealed = ctx->secrets->Seal(name, *value);
  std::fill(value->begin(), value->end(), '\0');
  if (!sealed) return ex->Respond(http::ErrorResponse(sealed.error()));
  auto cmd = std::make_unique<model::PutSecret>();
  cmd->name = std::move(name);
  cmd->sealed = std::move(sealed->sealed);
  cmd->key_id = sealed->key_id;
  cmd->create = create;
  cmd->clusters = std::move(clusters);
  Submit(ctx, ex, std::move(cmd), create ? 201 : 200);
}

void AddSecretRoutes(http::Router* router, Context* ctx) {
  // Secrets are shared by every cluster: only tokens without limits change them.
  http::RouteOptions small;
  small.max_body = 4 * model::kMaxSecretBytes;  // base64 and JSON around the largest value
  small.scope = http::Scope::kUnscoped;
  http::RouteOptions unscoped;
  unscoped.scope = http::Scope::kUnscoped;
  router->Add(
      "POST", "/v1/secrets",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<std::string> name = json::RequireString(body->view(), "name", "name");
        if (!name) return ex->Respond(http::ErrorResponse(name.error()));
        PutSecret(ctx, ex, std::move(name.value()), body->view(), true);
      },
      small);
  router->Add(
      "PUT", "/v1/secrets/{name}",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        PutSecret(ctx, ex, std::string(ex->request().Param("name")), body->view(), false);
      },
      small);
  router->Add("GET", "/v1/secrets", [ctx](const http::ExchangePtr& ex) {
    json::Doc list = json::Doc::Array();
    for (const auto& [name, sec] : ctx->state->secrets()) {
      json::Doc d = model::SecretJson(sec);
      d.Set("usedBy", SecretUsers(*ctx->state, name));
      list.Push(d);
    }
    ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("secrets", list).Print()));
  });
  router->Add("GET", "/v1/secrets/{name}", [ctx](const http::ExchangePtr& ex) {
    std::string_view name = ex->request().Param("name");
    const model::Secret* sec = ctx->state->FindSecret(name);
    if (!sec) {
      return ex->Respond(
          http::ErrorResponse(404, "ResourceNotFoundException", "secret " + std::string(name) + " does not exist"));
    }
    json::Doc d = model::SecretJson(*sec);
    d.Set("usedBy", SecretUsers(*ctx->state, name));
    ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("secret", d).Print()));
  });
  router->Add(
      "DELETE", "/v1/secrets/{name}",
      [ctx](const http::ExchangePtr& ex) {
        auto cmd = std::make_unique<model::DeleteSecret>();
        cmd->name = std::string(ex->request().Param("name"));
        Submit(ctx, ex, std::move(cmd), 200);
      },
      unscoped);
}

// --- tags (on any resource, by its ARN in berth's form) ---

// The resource `arn` names, if it exists and the caller may see it (`change`:
// change its tags); answers 404 ResourceNotFound or 403 and returns false
// otherwise. A token limited to clusters reaches the resources of those
// clusters and task definitions (shared, as registering them is); one limited
// to repositories reaches those repositories (pushing to them to change tags).
bool ResourceInScope(Context* ctx, const http::ExchangePtr& ex, std::string_view arn, bool change) {
  model::State::Resource r = ctx->state->FindResource(arn);
  if (!r.exists) {
    ex->Respond(http::ErrorResponse(404, "ResourceNotFound", "resource " + std::string(arn) + " does not exist"));
    return false;
  }
  if (!r.cluster.empty()) return ClusterInScope(*ctx->state, ex, r.cluster);
  const model::TokenScope* limits = LimitsOf(*ctx->state, *ex);
  size_t at = arn.find(":repository/");
  if (!limits || !arn.starts_with("arn:aws:ecr:") || at == std::string_view::npos ||
      limits->AllowsRepo(arn.substr(at + 12), change)) {
    return true;
  }
  ex->Respond(http::ErrorResponse(
      403, "Forbidden",
      "token " + ex->principal + " is limited to " + limits->Describe() + ": it may not act on " + std::string(arn)));
  return false;
}

json::Doc TagList(const std::map<std::string, std::string>* tags) {
  json::Doc list = json::Doc::Array();
  if (tags) {
    for (const auto& [k, v] : *tags) list.Push(json::Doc::Object().Set("key", k).Set("value", v));
  }
  return list;
}

void AddTagRoutes(http::Router* router, Context* ctx) {
  http::RouteOptions cluster_scoped;
  cluster_scoped.scope = http::Scope::kCluster;
  router->Add(
      "GET", "/v1/tags",
      [ctx](const http::ExchangePtr& ex) {
        std::string arn = ex->request().Query("resource").value_or("");
        if (arn.empty()) return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "resource: is required"));
        if (!ResourceInScope(ctx, ex, arn, false)) return;
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("tags", TagList(ctx->state->TagsOf(arn))).Print()));
      },
      cluster_scoped);
  router->Add(
      "POST", "/v1/tags",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<std::string> arn = json::RequireString(body->view(), "resource", "resource");
        if (!arn) return ex->Respond(http::ErrorResponse(arn.error()));
        json::View tags = body->view().Get("tags");
        if (!tags.IsArray() || tags.Size() == 0) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "tags: a list of 1-50 {key, value}"));
        }
        auto cmd = std::make_unique<model::PutTags>();
        size_t i = 0;
        for (json::View t : tags) {
          std::string path = "tags[" + std::to_string(i++) + "]";
          Result<std::string> key = json::RequireString(t, "key", path + ".key");
          if (!key) return ex->Respond(http::ErrorResponse(key.error()));
          Result<std::string> value = json::OptionalString(t, "value", path + ".value");
          if (!value) return ex->Respond(http::ErrorResponse(value.error()));
          if (Status st = model::ValidateTag(*key, *value); !st) return ex->Respond(http::ErrorResponse(st.error()));
          cmd->tags.emplace_back(std::move(key.value()), std::move(value.value()));
        }
        if (!ResourceInScope(ctx, ex, *arn, true)) return;
        cmd->resource = std::move(arn.value());
        Submit(ctx, ex, std::move(cmd), 200);
      },
      cluster_scoped);
  router->Add(
      "POST", "/v1/tags/remove",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<std::string> arn = json::RequireString(body->view(), "resource", "resource");
        if (!arn) return ex->Respond(http::ErrorResponse(arn.error()));
        json::View keys = body->view().Get("tagKeys");
        if (!keys.IsArray()) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "tagKeys: a list of tag keys"));
        }
        auto cmd = std::make_unique<model::RemoveTags>();
        for (json::View k : keys) {
          if (!k.IsString()) return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "tagKeys: strings"));
          cmd->keys.emplace_back(k.String());
        }
        if (!ResourceInScope(ctx, ex, *arn, true)) return;
        cmd->resource = std::move(arn.value());
        Submit(ctx, ex, std::move(cmd), 200);
      },
      cluster_scoped);
}

// --- access keys (AWS Signature Version 4; admin only) ---

constexpr std::string_view kAccessKeyIdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr std::string_view kAccessKeySecretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

// An access key is a token (role, scope, expiry, revocation, audit) whose secret
// the server keeps sealed, because verifying a signature needs it. The id is
// "BKIA" and 16 base32 characters, the secret 40 letters and digits (AWS's shapes).
void CreateAccessKey(Context* ctx, const http::ExchangePtr& ex) {
  if (!ctx->secrets) {
    return ex->Respond(
        http::ErrorResponse(503, "SecretsUnavailable",
                            "this server holds no key to seal secrets with, and an access key's secret must be "
                            "kept sealed (docs/security.md, \"Access keys\")"));
  }
  std::optional<json::Doc> body = ParseBody(ex);
  if (!body) return;
  Result<std::string> role = json::OptionalString(body->view(), "role", "role", "deploy");
  if (!role) return ex->Respond(http::ErrorResponse(role.error()));
  if (*role != "admin" && *role != "deploy" && *role != "read-only") {
    return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "role: must be admin, deploy or read-only"));
  }
  Result<int64_t> ttl = json::OptionalInt(body->view(), "ttlSeconds", "ttlSeconds", 0);
  if (!ttl) return ex->Respond(http::ErrorResponse(ttl.error()));
  if (*ttl < 0 || *ttl > 10ll * 365 * 86400) {
    return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "ttlSeconds: must be from 1 to 315360000"));
  }
  Result<model::TokenScope> scope = model::ParseTokenScope(body->view());
  if (!scope) return ex->Respond(http::ErrorResponse(scope.error()));
  if (scope->limited() && *role == "admin") {
    return ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                           "an admin access key cannot be limited to clusters or repositories"));
  }
  for (const std::string& c : scope->clusters) {
    if (!ctx->state->FindCluster(c)) return ClusterNotFound(ex, c);
  }
  Result<std::string> id = Error::Internal("no access key id");
  for (int i = 0; i < 4; i++) {  // 80 random bits: a second try is already unheard of
    Result<std::string> suffix = crypto::RandomString(16, kAccessKeyIdAlphabet);
    if (!suffix) return ex->Respond(http::ErrorResponse(suffix.error()));
    id = "BKIA" + *suffix;
    if (!ctx->state->FindToken(*id)) break;
  }
  Result<std::string> secret = crypto::RandomString(40, kAccessKeySecretAlphabet);
  if (!secret) return ex->Respond(http::ErrorResponse(secret.error()));
  Result<model::Secret> sealed = ctx->secrets->Seal(model::AccessKeySealName(*id), *secret);
  if (!sealed) return ex->Respond(http::ErrorResponse(sealed.error()));
  auto cmd = std::make_unique<model::CreateToken>();
  cmd->id = *id;
  cmd->role = *role;
  cmd->hash = crypto::Hex(crypto::Sha256(*secret));
  cmd->time_ms = ctx->clock->NowUnixMs();
  cmd->expires_ms = *ttl > 0 ? cmd->time_ms + *ttl * 1000 : 0;
  if (scope->limited()) cmd->scope = scope->ToJson().Print();
  cmd->sealed_secret = std::move(sealed->sealed);
  cmd->secret_key_id = sealed->key_id;
  ctx->store->Submit(std::move(cmd), [ex, secret = std::move(secret.value())](Result<std::string> r) mutable {
    if (!r) return ex->Respond(http::ErrorResponse(r.error()));
    Result<json::Doc> doc = json::Doc::Parse(*r);
    json::Doc key = doc ? json::Doc::Copy(doc->view().Get("accessKey")) : json::Doc::Object();
    // Shown this once; the server keeps it sealed.
    key.Set("secretAccessKey", secret);
    std::fill(secret.begin(), secret.end(), '\0');
    ex->Respond(http::JsonResponse(201, json::Doc::Object().Set("accessKey", key).Print()));
  });
}

void AddAccessKeyRoutes(http::Router* router, Context* ctx, const http::RouteOptions& admin) {
  router->Add(
      "POST", "/v1/accesskeys", [ctx](const http::ExchangePtr& ex) { CreateAccessKey(ctx, ex); }, admin);
  router->Add(
      "GET", "/v1/accesskeys",
      [ctx](const http::ExchangePtr& ex) {
        json::Doc list = json::Doc::Array();
        for (const model::Token& t : ctx->state->tokens()) {
          if (t.access_key()) list.Push(model::AccessKeyJson(t));
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("accessKeys", list).Print()));
      },
      admin);
  router->Add(
      "DELETE", "/v1/accesskeys/{id}",
      [ctx](const http::ExchangePtr& ex) {
        std::string id(ex->request().Param("id"));
        const model::Token* t = ctx->state->FindToken(id);
        if (!t || !t->access_key()) {
          return ex->Respond(http::ErrorResponse(404, "AccessKeyNotFound", "access key " + id + " does not exist"));
        }
        auto cmd = std::make_unique<model::DeleteToken>();
        cmd->id = std::move(id);
        Submit(ctx, ex, std::move(cmd), 200);
      },
      admin);
}

}  // namespace

// The limits of the token behind `ex` (model/scope.h); nullptr when it has none
// (an unlimited token, a node's certificate, nobody).
const model::TokenScope* LimitsOf(const model::State& state, const http::Exchange& ex) {
  if (ex.principal.empty()) return nullptr;
  const model::Token* t = state.FindToken(ex.principal);
  return t && t->scope.limited() ? &t->scope : nullptr;
}

// Whether `ex` may act on `cluster`; answers 403, naming the token's limits, when not.
bool ClusterInScope(const model::State& state, const http::ExchangePtr& ex, std::string_view cluster) {
  const model::TokenScope* s = LimitsOf(state, *ex);
  if (!s || s->AllowsCluster(cluster)) return true;
  ex->Respond(http::ErrorResponse(403, "Forbidden",
                                  "token " + ex->principal + " is limited to " + s->Describe() +
                                      ": it may not act on cluster " + std::string(cluster)));
  return false;
}

namespace {

// A cluster a list is filtered by: in the token's scope and existing (an empty
// page would hide a misspelt name).
bool ListedCluster(const model::State& state, const http::ExchangePtr& ex, std::string_view cluster) {
  if (!ClusterInScope(state, ex, cluster)) return false;
  if (state.FindCluster(cluster)) return true;
  ClusterNotFound(ex, cluster);
  return false;
}

// --- load balancing (model/lb.h; docs/load-balancing.md) ---

// The cluster a load-balancing request acts on: `?cluster=` (default "default"),
// in the caller's limits and existing; answers and returns nullopt otherwise.
std::optional<std::string> LbCluster(Context* ctx, const http::ExchangePtr& ex, std::string_view from_body = {}) {
  std::string cluster = from_body.empty() ? ex->request().Query("cluster").value_or("default") : std::string(from_body);
  if (!ListedCluster(*ctx->state, ex, cluster)) return std::nullopt;
  return cluster;
}

// A port in a route's path ({port}); answers 400 and returns 0 when it is not one.
int64_t PathPort(const http::ExchangePtr& ex, std::string_view param, int64_t max) {
  std::string_view text = ex->request().Param(param);
  int64_t v = 0;
  bool ok = !text.empty() && text.size() <= 5;
  for (char c : text) {
    if (c < '0' || c > '9') ok = false;
    if (ok) v = v * 10 + (c - '0');
  }
  if (!ok || v < 1 || v > max) {
    ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                    std::string(param) + ": must be a whole number from 1 to " + std::to_string(max)));
    return 0;
  }
  return v;
}

void AddLoadBalancingRoutes(http::Router* router, Context* ctx) {
  http::RouteOptions scoped;
  scoped.scope = http::Scope::kCluster;
  router->Add(
      "POST", "/v1/targetgroups",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<std::string> cl = json::OptionalString(body->view(), "cluster", "cluster", "default");
        if (!cl) return ex->Respond(http::ErrorResponse(cl.error()));
        std::optional<std::string> cluster = LbCluster(ctx, ex, *cl);
        if (!cluster) return;
        Result<model::TargetGroup> tg = model::ParseTargetGroupBody(body->view(), *cluster);
        if (!tg) return ex->Respond(http::ErrorResponse(tg.error()));
        auto cmd = std::make_unique<model::CreateTargetGroup>();
        cmd->doc = model::TargetGroupDoc(*tg);
        Submit(ctx, ex, std::move(cmd), 201);
      },
      scoped);
  router->Add(
      "GET", "/v1/targetgroups",
      [ctx](const http::ExchangePtr& ex) {
        std::string cluster = ex->request().Query("cluster").value_or("");
        if (!cluster.empty() && !ListedCluster(*ctx->state, ex, cluster)) return;
        const model::TokenScope* limits = LimitsOf(*ctx->state, *ex);
        json::Doc list = json::Doc::Array();
        for (const auto& [key, tg] : ctx->state->target_groups()) {
          if ((!cluster.empty() && tg.cluster != cluster) || !Shown(limits, tg.cluster)) continue;
          json::Doc d = model::TargetGroupJson(tg);
          json::Doc users = json::Doc::Array();
          for (const std::string& u : ctx->state->TargetGroupUsers(tg.cluster, tg.name)) users.Push(u);
          d.Set("usedBy", users);
          list.Push(d);
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("targetGroups", list).Print()));
      },
      scoped);
  auto find_tg = [ctx](const http::ExchangePtr& ex) -> const model::TargetGroup* {
    std::optional<std::string> cluster = LbCluster(ctx, ex);
    if (!cluster) return nullptr;
    std::string name(ex->request().Param("name"));
    const model::TargetGroup* tg = ctx->state->FindTargetGroup(*cluster, name);
    if (!tg) {
      ex->Respond(http::ErrorResponse(404, "TargetGroupNotFound",
                                      "target group " + name + " does not exist in cluster " + *cluster));
    }
    return tg;
  };
  router->Add(
      "GET", "/v1/targetgroups/{name}",
      [ctx, find_tg](const http::ExchangePtr& ex) {
        const model::TargetGroup* tg = find_tg(ex);
        if (!tg) return;
        json::Doc d = model::TargetGroupJson(*tg);
        json::Doc users = json::Doc::Array();
        for (const std::string& u : ctx->state->TargetGroupUsers(tg->cluster, tg->name)) users.Push(u);
        d.Set("usedBy", users);
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("targetGroup", d).Print()));
      },
      scoped);
  router->Add(
      "GET", "/v1/targetgroups/{name}/health",
      [ctx, find_tg](const http::ExchangePtr& ex) {
        const model::TargetGroup* tg = find_tg(ex);
        if (!tg) return;
        if (!ctx->proxies) {
          return ex->Respond(
              http::ErrorResponse(503, "ServiceUnavailable", "this server keeps no proxy configurations"));
        }
        json::Doc targets = json::Doc::Array();
        std::vector<control::Target> found = ctx->proxies->Targets(*tg);
        std::sort(found.begin(), found.end(),
                  [](const control::Target& a, const control::Target& b) { return a.task_id < b.task_id; });
        for (const control::Target& x : found) {
          json::Doc target = json::Doc::Object();
          target.Set("taskId", x.task_id)
              .Set("nodeId", x.node)
              .Set("address", x.address)
              .Set("port", x.port)
              .Set("state", x.state)
              .Set("reason", x.reason);
          if (!x.description.empty()) target.Set("description", x.description);
          // A draining target still running: what its stop waits for.
          if (control::DrainView d; ctx->drains && ctx->drains->Describe(x.task_id, &d)) {
            json::Doc unacked = json::Doc::Array(), in_flight = json::Doc::Array();
            for (const std::string& n : d.unacknowledged) unacked.Push(n);
            for (const std::string& n : d.in_flight) in_flight.Push(n);
            target.Set("drain", json::Doc::Object()
                                    .Set("since", UtcIso8601(d.since_ms))
                                    .Set("deregistrationDelaySeconds", d.delay_ms / 1000)
                                    .Set("unacknowledgedBy", unacked)
                                    .Set("inFlightOn", in_flight));
          }
          targets.Push(target);
        }
        // The proxies that serve the group and the version each applied.
        json::Doc proxies = json::Doc::Array(), behind = json::Doc::Array();
        for (const std::string& id : ctx->proxies->NodesServing(*tg)) {
          const model::Node* n = ctx->state->FindNode(id);
          int64_t version = ctx->proxies->Version(id), applied = n ? n->proxy_version : 0;
          json::Doc p = json::Doc::Object();
          p.Set("nodeId", id).Set("version", version).Set("appliedVersion", applied);
          if (applied < version) behind.Push(json::Doc::Copy(p.view()));
          proxies.Push(p);
        }
        json::Doc out = json::Doc::Object();
        out.Set("targetGroup", tg->name).Set("targets", targets).Set("proxies", proxies).Set("proxiesBehind", behind);
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("health", out).Print()));
      },
      scoped);
  router->Add(
      "PATCH", "/v1/targetgroups/{name}",
      [ctx, find_tg](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        const model::TargetGroup* tg = find_tg(ex);
        if (!tg) return;
        Result<model::TargetGroup> changed = model::ModifyTargetGroupBody(*tg, body->view());
        if (!changed) return ex->Respond(http::ErrorResponse(changed.error()));
        auto cmd = std::make_unique<model::ModifyTargetGroup>();
        cmd->cluster = tg->cluster;
        cmd->name = tg->name;
        cmd->change = body->Print();
        Submit(ctx, ex, std::move(cmd), 200);
      },
      scoped);
  router->Add(
      "DELETE", "/v1/targetgroups/{name}",
      [ctx, find_tg](const http::ExchangePtr& ex) {
        const model::TargetGroup* tg = find_tg(ex);
        if (!tg) return;
        auto cmd = std::make_unique<model::DeleteTargetGroup>();
        cmd->cluster = tg->cluster;
        cmd->name = tg->name;
        Submit(ctx, ex, std::move(cmd), 200);
      },
      scoped);

  router->Add(
      "POST", "/v1/loadbalancers",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        json::View v = body->view();
        Result<std::string> cl = json::OptionalString(v, "cluster", "cluster", "default");
        if (!cl) return ex->Respond(http::ErrorResponse(cl.error()));
        std::optional<std::string> cluster = LbCluster(ctx, ex, *cl);
        if (!cluster) return;
        model::LoadBalancer lb;
        lb.cluster = *cluster;
        Result<std::string> name = json::RequireString(v, "name", "name");
        if (!name) return ex->Respond(http::ErrorResponse(name.error()));
        if (Status s = model::ValidateLbName(*name, "name"); !s) return ex->Respond(http::ErrorResponse(s.error()));
        lb.name = *name;
        Result<std::string> nodes = json::OptionalString(v, "nodes", "nodes");
        if (!nodes) return ex->Respond(http::ErrorResponse(nodes.error()));
        if (!nodes->empty()) {
          if (nodes->size() > 2000) {
            return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "nodes: at most 2000 characters"));
          }
          Result<std::shared_ptr<const sched::Expr>> expr = sched::Expr::Parse(*nodes);
          if (!expr) return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "nodes: " + expr.error().message));
          // Membership decides which nodes carry the listeners: it may depend on
          // what a node is, never on what runs there at the moment.
          if (!(*expr)->AttributesOnly()) {
            return ex->Respond(http::ErrorResponse(
                400, "InvalidParameter",
                "nodes: a load balancer's nodes are chosen by what they are (attribute:NAME, instanceId), not by "
                "what runs there or whether their agent is connected"));
          }
        }
        lb.nodes = *nodes;
        auto cmd = std::make_unique<model::CreateLoadBalancer>();
        cmd->doc = model::LoadBalancerDoc(lb);
        Submit(ctx, ex, std::move(cmd), 201);
      },
      scoped);
  router->Add(
      "GET", "/v1/loadbalancers",
      [ctx](const http::ExchangePtr& ex) {
        std::string cluster = ex->request().Query("cluster").value_or("");
        if (!cluster.empty() && !ListedCluster(*ctx->state, ex, cluster)) return;
        const model::TokenScope* limits = LimitsOf(*ctx->state, *ex);
        json::Doc list = json::Doc::Array();
        for (const auto& [key, lb] : ctx->state->load_balancers()) {
          if ((!cluster.empty() && lb.cluster != cluster) || !Shown(limits, lb.cluster)) continue;
          list.Push(model::LoadBalancerJson(lb));
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("loadBalancers", list).Print()));
      },
      scoped);
  auto find_lb = [ctx](const http::ExchangePtr& ex) -> const model::LoadBalancer* {
    std::optional<std::string> cluster = LbCluster(ctx, ex);
    if (!cluster) return nullptr;
    std::string name(ex->request().Param("name"));
    const model::LoadBalancer* lb = ctx->state->FindLoadBalancer(*cluster, name);
    if (!lb) {
      ex->Respond(http::ErrorResponse(404, "LoadBalancerNotFound",
                                      "load balancer " + name + " does not exist in cluster " + *cluster));
    }
    return lb;
  };
  router->Add(
      "GET", "/v1/loadbalancers/{name}",
      [ctx, find_lb](const http::ExchangePtr& ex) {
        const model::LoadBalancer* lb = find_lb(ex);
        if (!lb) return;
        json::Doc d = model::LoadBalancerJson(*lb);
        // Its nodes and the proxy configuration version each has applied.
        if (ctx->proxies) {
          json::Doc members = json::Doc::Array();
          for (const std::string& id : ctx->proxies->Members(*lb)) {
            const model::Node* n = ctx->state->FindNode(id);
            members.Push(json::Doc::Object()
                             .Set("nodeId", id)
                             .Set("address", n ? n->address : "")
                             .Set("version", ctx->proxies->Version(id))
                             .Set("appliedVersion", n ? n->proxy_version : 0));
          }
          d.Set("members", members);
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("loadBalancer", d).Print()));
      },
      scoped);
  router->Add(
      "DELETE", "/v1/loadbalancers/{name}",
      [ctx, find_lb](const http::ExchangePtr& ex) {
        const model::LoadBalancer* lb = find_lb(ex);
        if (!lb) return;
        auto cmd = std::make_unique<model::DeleteLoadBalancer>();
        cmd->cluster = lb->cluster;
        cmd->name = lb->name;
        Submit(ctx, ex, std::move(cmd), 200);
      },
      scoped);
  router->Add(
      "POST", "/v1/loadbalancers/{name}/listeners",
      [ctx, find_lb](const http::ExchangePtr& ex) {
        const model::LoadBalancer* lb = find_lb(ex);
        if (!lb) return;
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<model::Listener> l = model::ParseListenerBody(body->view());
        if (!l) return ex->Respond(http::ErrorResponse(l.error()));
        // The proxy of every member node must be able to take the port: one a
        // node keeps for itself (its reservedPorts: ssh, the server's own port)
        // or a task's host port there would leave that node without the listener.
        if (ctx->proxies) {
          std::pair<int, bool> port{static_cast<int>(l->port), l->protocol == "UDP"};
          for (const std::string& id : ctx->proxies->Members(*lb)) {
            const model::Node* n = ctx->state->FindNode(id);
            if (!n) continue;
            std::string why;
            if (std::find(n->reserved_ports.begin(), n->reserved_ports.end(), port) != n->reserved_ports.end()) {
              why = "is reserved on node " + id + " (its reservedPorts)";
            } else if (n->ports.count(port)) {
              why = "is a task's host port on node " + id;
            }
            if (!why.empty()) {
              return ex->Respond(http::ErrorResponse(409, "PortInUse",
                                                     "port: " + std::to_string(l->port) +
                                                         (port.second ? "/udp " : " ") + why +
                                                         ", a member of load balancer " + lb->name));
            }
          }
        }
        // Each certificate as the proxies will take it: the secret opened, split,
        // and parsed by the data plane's own checks (a key that is not the
        // certificate's, PEM mbedTLS cannot read).
        if (ctx->proxies) {
          for (size_t i = 0; i < l->certificates.size(); i++) {
            const std::string& name = l->certificates[i];
            std::string field = "certificates[" + std::to_string(i) + "]: secret " + name;
            if (!ctx->state->FindSecret(name)) continue;  // the command says so, in order with the others
            Result<model::CertificatePem> pem = ctx->proxies->OpenCertificate(name);
            if (!pem)
              return ex->Respond(http::ErrorResponse(400, "InvalidParameter", field + ": " + pem.error().message));
            json::Doc certs = json::Doc::Array();
            certs.Push(json::Doc::Object().Set("name", "c").Set("certPem", pem->cert_pem).Set("keyPem", pem->key_pem));
            json::Doc names = json::Doc::Array();
            names.Push("c");
            json::Doc listeners = json::Doc::Array();
            listeners.Push(json::Doc::Object()
                               .Set("port", l->port)
                               .Set("protocol", "TLS")
                               .Set("defaultTargetGroup", "t")
                               .Set("certificates", names));
            json::Doc groups = json::Doc::Array();
            groups.Push(json::Doc::Object().Set("name", "t").Set("protocol", "TCP").Set("targets", json::Doc::Array()));
            std::string probe = json::Doc::Object()
                                    .Set("version", 1)
                                    .Set("listeners", listeners)
                                    .Set("certificates", certs)
                                    .Set("targetGroups", groups)
                                    .Print();
            std::fill(pem->key_pem.begin(), pem->key_pem.end(), '\0');
            Result<proxy::Config> parsed = proxy::ParseConfig(probe);
            std::fill(probe.begin(), probe.end(), '\0');
            if (!parsed) {
              std::string why = parsed.error().message;
              if (size_t colon = why.find(": "); colon != std::string::npos) why = why.substr(colon + 2);
              return ex->Respond(http::ErrorResponse(400, "InvalidParameter", field + ": " + why));
            }
          }
        }
        auto cmd = std::make_unique<model::CreateListener>();
        cmd->cluster = lb->cluster;
        cmd->load_balancer = lb->name;
        cmd->doc = model::ListenerDocJson(*l).Print();
        Submit(ctx, ex, std::move(cmd), 201);
      },
      scoped);
  router->Add(
      "DELETE", "/v1/loadbalancers/{name}/listeners/{port}",
      [ctx, find_lb](const http::ExchangePtr& ex) {
        const model::LoadBalancer* lb = find_lb(ex);
        if (!lb) return;
        int64_t port = PathPort(ex, "port", 65535);
        if (!port) return;
        auto cmd = std::make_unique<model::DeleteListener>();
        cmd->cluster = lb->cluster;
        cmd->load_balancer = lb->name;
        cmd->port = port;
        Submit(ctx, ex, std::move(cmd), 200);
      },
      scoped);
  router->Add(
      "POST", "/v1/loadbalancers/{name}/listeners/{port}/rules",
      [ctx, find_lb](const http::ExchangePtr& ex) {
        const model::LoadBalancer* lb = find_lb(ex);
        if (!lb) return;
        int64_t port = PathPort(ex, "port", 65535);
        if (!port) return;
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<model::ListenerRule> r = model::ParseRuleBody(body->view());
        if (!r) return ex->Respond(http::ErrorResponse(r.error()));
        auto cmd = std::make_unique<model::CreateRule>();
        cmd->cluster = lb->cluster;
        cmd->load_balancer = lb->name;
        cmd->port = port;
        cmd->doc = model::RuleDocJson(*r).Print();
        Submit(ctx, ex, std::move(cmd), 201);
      },
      scoped);
  router->Add(
      "DELETE", "/v1/loadbalancers/{name}/listeners/{port}/rules/{priority}",
      [ctx, find_lb](const http::ExchangePtr& ex) {
        const model::LoadBalancer* lb = find_lb(ex);
        if (!lb) return;
        int64_t port = PathPort(ex, "port", 65535);
        if (!port) return;
        int64_t priority = PathPort(ex, "priority", 50000);
        if (!priority) return;
        auto cmd = std::make_unique<model::DeleteRule>();
        cmd->cluster = lb->cluster;
        cmd->load_balancer = lb->name;
        cmd->port = port;
        cmd->priority = priority;
        Submit(ctx, ex, std::move(cmd), 200);
      },
      scoped);
}

}  // namespace

bool RoleMay(std::string_view role, http::Access access) {
  switch (access) {
    case http::Access::kOpen:
    case http::Access::kRegistry:
    case http::Access::kAws: return true;
    case http::Access::kAgent: return role == "agent";
    case http::Access::kServer: return role == "server" || role == "admin";
    case http::Access::kPeer: return false;  // a server's certificate only
    case http::Access::kAdmin: return role == "admin";
    case http::Access::kDeploy: return role == "admin" || role == "deploy";
    case http::Access::kRead:
    case http::Access::kAuto: return role == "admin" || role == "deploy" || role == "read-only";
  }
  return false;
}

std::string WhoMay(http::Access access) {
  switch (access) {
    case http::Access::kAgent: return "only agents (agent tokens and node certificates) use the /v1/agent/ routes";
    case http::Access::kServer: return "only server and admin tokens may (a server joining the cluster)";
    case http::Access::kPeer: return "only the cluster's servers, by their peer certificates, use it";
    case http::Access::kAdmin: return "only an admin token may";
    case http::Access::kDeploy: return "only deploy and admin tokens may";
    default: return "only read-only, deploy and admin tokens may";
  }
}

std::optional<std::string_view> BearerCredential(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size()) return std::nullopt;
  for (size_t i = 0; i < kBearer.size(); i++) {
    if (tolower(static_cast<unsigned char>(authorization[i])) != tolower(static_cast<unsigned char>(kBearer[i]))) {
      return std::nullopt;
    }
  }
  return authorization.substr(kBearer.size());
}

Result<std::string> AccessKeySecret(const Context& ctx, const model::Token& key) {
  if (!key.access_key()) return Error::Invalid("token " + key.id + " is not an access key");
  if (!ctx.secrets) {
    return Error{ErrorKind::kUnavailable, "SecretsUnavailable",
                 "this server holds no key to open access key " + key.id + " with"};
  }
  model::Secret sealed;
  sealed.name = model::AccessKeySealName(key.id);
  sealed.sealed = key.sealed_secret;
  sealed.key_id = key.secret_key_id;
  return ctx.secrets->Open(sealed);
}

std::optional<http::Response> Authenticate(model::State& state, int64_t now_ms, http::Exchange& ex) {
  const http::Request& req = ex.request();
  std::string_view auth = req.Header("authorization");
  auto refuse = [](std::string message) {
    http::Response r = http::ErrorResponse(401, "Unauthorized", message);
    r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"berth\""});
    return r;
  };
  http::Access access = ex.route().access();
  bool agent_route = access == http::Access::kAgent;
  // Another server of the cluster, by the peer certificate the cluster CA gave it
  // (only servers hold the CA's key; node certificates name node ids, which
  // cannot hold a colon).
  if (access == http::Access::kPeer) {
    if (req.peer_cert_cn.starts_with("server:") && req.peer_cert_cn.size() > 7) {
      ex.principal = req.peer_cert_cn;
      return std::nullopt;
    }
    return refuse("only the cluster's servers may use this route, with their peer certificates");
  }
  // A node's certificate (mutual TLS) speaks for that node, on the agent routes
  // only, while it is the one the node was last given.
  if (agent_route && !req.peer_cert_cn.empty()) {
    const model::Node* n = state.FindNode(req.peer_cert_cn);
    if (n && n->identity == "cert:" + req.peer_cert_serial) {
      ex.principal = "node:" + n->id;
      return std::nullopt;
    }
    if (auth.empty()) {
      return refuse("the certificate of node " + req.peer_cert_cn +
                    " is no longer valid: the node was deregistered or revoked, or holds a newer certificate");
    }
    // A token may follow: a node joining again after it was deregistered.
  }
  const model::Token* t = nullptr;
  std::optional<std::string_view> cookie = CookieValue(req.Header("cookie"), kSessionCookie);
  if (auth.empty() && cookie && !agent_route) {
    // A browser's session (api/session.h): it acts as its token.
    std::optional<http::Response> refusal;
    t = AuthenticateSession(state, now_ms, ex, *cookie, &refusal);
    if (!t) return refusal;
  } else {
    if (auth.empty()) return refuse("missing Authorization header; send 'Authorization: Bearer <token>'");
    std::optional<std::string_view> secret = BearerCredential(auth);
    if (!secret) return refuse("the Authorization header must be 'Bearer <token>'");
    t = state.FindTokenBySecret(*secret);
    if (!t) {
      // An access key's id sent as if it were a token: say what it is.
      const model::Token* key = state.FindToken(*secret);
      if (key && key->access_key()) return refuse(model::AccessKeyNotBearer(key->id));
      if (state.FindSessionBySecret(*secret)) {
        return refuse("a session's cookie is not a bearer token: send it as the cookie " + std::string(kSessionCookie) +
                      ", or use a token");
      }
      return refuse("the token is not valid");
    }
    if (t->access_key()) {
      ex.principal = t->id;  // the audit log names the key refused
      return refuse(model::AccessKeyNotBearer(t->id));
    }
    if (t->expires_ms && t->expires_ms <= now_ms) {
      return refuse("the token " + t->id + " expired at " + UtcIso8601(t->expires_ms));
    }
  }
  ex.principal = t->id;  // known, if not allowed (the audit log names who was refused)
  if (!RoleMay(t->role, access)) {
    return http::ErrorResponse(
        403, "Forbidden",
        "a token with role " + t->role + " may not " + req.method + " " + req.path + ": " + WhoMay(access));
  }
  if (ex.route().options.scope == http::Scope::kUnscoped && t->scope.limited()) {
    return http::ErrorResponse(403, "Forbidden",
                               "token " + t->id + " is limited to " + t->scope.Describe() + ": " + req.method + " " +
                                   req.path + " changes what every cluster shares, and needs a token without limits");
  }
  state.NoteTokenUsed(t->id, now_ms);
  ex.principal = t->id;
  return std::nullopt;
}

void AuditExchange(const model::State& state, store::Store* store, int64_t now_ms, const http::Exchange& ex) {
  const http::Request& req = ex.request();
  int status = ex.status();
  bool read = req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS";
  // The AWS front end (src/aws/): one route, the operation in X-Amz-Target;
  // its reads are the operations that only describe, list or get.
  std::string_view target = ex.route().options.access == http::Access::kAws ? req.Header("x-amz-target") : "";
  if (!target.empty()) {
    std::string_view op = target.substr(target.rfind('.') + 1);
    read = op.starts_with("Describe") || op.starts_with("List") || op.starts_with("Get") ||
           op.starts_with("BatchGet") || op.starts_with("BatchCheck");
  }
  bool credentialed = !req.Header("authorization").empty() || !req.peer_cert_cn.empty() ||
                      ex.route().options.takes_credential ||
                      CookieValue(req.Header("cookie"), kSessionCookie).has_value();
  bool refusal = (status == 401 && credentialed) || status == 403 || status == 429;
  bool change = !read && ex.route().options.audit;
  if (change && req.path.starts_with("/v2/")) {
    // The registry: what changes a repository, not each step of an upload.
    change = req.method == "PUT" || req.method == "DELETE" ||
             (req.method == "POST" && req.query.find("mount=") != std::string::npos);
  }
  if (!change && !refusal) return;
  store::AuditEntry e;
  e.time_ms = now_ms;
  e.actor = ex.principal.empty() ? "-" : ex.principal;
  if (!ex.session.empty()) e.actor += " (session)";
  e.role = "-";
  if (ex.principal.starts_with("node:")) {
    e.role = "node";
  } else if (const model::Token* t = state.FindToken(ex.principal)) {
    e.role = t->role;
  }
  e.address = req.peer_ip;
  e.method = req.method;
  e.path = target.empty() ? req.path.substr(0, 512) : "/ " + std::string(target.substr(0, 200));
  e.status = status;
  if (status >= 400) {
    Result<json::Doc> body = json::Doc::Parse(ex.error_body());
    if (body) {
      json::View err = body->view().Get("error");
      for (json::View first : body->view().Get("errors")) {  // the registry's OCI shape
        err = first;
        break;
      }
      if (!err.valid() && body->view().Get("__type").valid()) err = body->view();  // the AWS shape
      e.code = std::string(err.Get("code").valid() ? err.Get("code").String() : err.Get("__type").String());
      e.message = std::string(err.Get("message").String()).substr(0, 512);
    }
  }
  store->Audit(std::move(e));
}

const model::Task* ResolveTaskOrAnswer(const model::State& state, const http::ExchangePtr& ex, std::string_view ref) {
  std::string why;
  const model::Task* t = state.ResolveTask(ref, &why);
  if (!t) {
    bool ambiguous = why.find("ambiguous") != std::string::npos;
    ex->Respond(http::ErrorResponse(ambiguous ? 400 : 404, ambiguous ? "TaskIdAmbiguous" : "TaskNotFound", why));
  }
  return t;
}

void AddRoutes(http::Router* router, Context* ctx) {
  http::RouteOptions open;
  open.access = http::Access::kOpen;
  http::RouteOptions admin;
  admin.access = http::Access::kAdmin;
  http::RouteOptions cluster_scoped;
  cluster_scoped.scope = http::Scope::kCluster;
  http::RouteOptions admin_cluster = admin;
  admin_cluster.scope = http::Scope::kCluster;
  http::RouteOptions unscoped;
  unscoped.scope = http::Scope::kUnscoped;
  router->Add(
      "GET", "/healthz",
      [](const http::ExchangePtr& ex) { ex->Respond(http::JsonResponse(200, "{\"status\":\"ok\"}")); }, open);
  // The cluster CA, public: what a client checks a token's pin against, and what
  // `berth registry trust` gives a Docker engine.
  router->Add(
      "GET", "/v1/ca",
      [ctx](const http::ExchangePtr& ex) {
        if (ctx->ca_pem.empty()) return ex->Respond(http::ErrorResponse(404, "NotFound", "this server has no CA"));
        http::Response r;
        r.content_type = "application/x-pem-file";
        r.headers.push_back({"X-Berth-Ca-Sha256", ctx->ca_fingerprint});
        r.body = ctx->ca_pem;
        ex->Respond(std::move(r));
      },
      open);

  // What the state holds, read at each scrape.
  metrics::Gauge* tasks_held =
      ctx->metrics->Gauges("berth_state_tasks", "Tasks the state holds (any status)")->With({});
  metrics::Gauge* revisions_held =
      ctx->metrics->Gauges("berth_state_task_definitions", "Task definition revisions the state holds")->With({});
  metrics::Gauge* placed =
      ctx->metrics->Gauges("berth_tasks_placed", "Tasks placed since the server started")->With({});
  router->Add("GET", "/metrics", [ctx, tasks_held, revisions_held, placed](const http::ExchangePtr& ex) {
    tasks_held->Set(static_cast<double>(ctx->state->tasks().size()));
    size_t revisions = 0;
    for (const auto& [family, revs] : ctx->state->task_definitions()) revisions += revs.size();
    revisions_held->Set(static_cast<double>(revisions));
    placed->Set(static_cast<double>(ctx->state->tasks_placed()));
    http::Response r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = ctx->metrics->Render();
    ex->Respond(std::move(r));
  });

  router->Add("GET", "/v1/version", [ctx](const http::ExchangePtr& ex) {
    ex->Respond(http::JsonResponse(200, json::Doc::Object()
                                            .Set("version", BERTH_VERSION)
                                            .Set("git", BERTH_GIT)
                                            .Set("schemaVersion", ctx->store->schema_version())
                                            .Set("dashboardBuild", std::string(embedded::WebBuildHash()))
                                            .Set("appliedIndex", static_cast<int64_t>(ctx->store->applied_index()))
                                            .Print()));
  });

  // --- clusters ---

  router->Add(
      "POST", "/v1/clusters",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<std::string> name = json::RequireString(body->view(), "clusterName", "clusterName");
        if (!name) return ex->Respond(http::ErrorResponse(name.error()));
        if (Status s = model::ValidateClusterName(name.value()); !s) return ex->Respond(http::ErrorResponse(s.error()));
        auto cmd = std::make_unique<model::CreateCluster>();
        cmd->name = std::move(name.value());
        Submit(ctx, ex, std::move(cmd), 201);
      },
      unscoped);

  router->Add(
      "GET", "/v1/clusters",
      [ctx](const http::ExchangePtr& ex) {
        json::Doc list = json::Doc::Array();
        const model::TokenScope* limits = LimitsOf(*ctx->state, *ex);
        for (const auto& [name, c] : ctx->state->clusters()) {
          if (Shown(limits, name)) list.Push(model::ClusterJson(c));
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("clusters", std::move(list)).Print()));
      },
      cluster_scoped);

  router->Add(
      "GET", "/v1/clusters/{name}",
      [ctx](const http::ExchangePtr& ex) {
        std::string_view name = ex->request().Param("name");
        if (!ClusterInScope(*ctx->state, ex, name)) return;
        const model::Cluster* c = ctx->state->FindCluster(name);
        if (!c) return ClusterNotFound(ex, name);
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("cluster", model::ClusterJson(*c)).Print()));
      },
      cluster_scoped);

  // Only the task policy changes: {"taskPolicy": {...}} replaces it whole.
  router->Add(
      "PATCH", "/v1/clusters/{name}",
      [ctx](const http::ExchangePtr& ex) {
        std::string name(ex->request().Param("name"));
        if (!ctx->state->FindCluster(name)) return ClusterNotFound(ex, name);
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        json::View v = body->view();
        if (!v.IsObject() || !v.Get("taskPolicy").valid()) {
          return ex->Respond(
              http::ErrorResponse(400, "InvalidParameter", "taskPolicy: is required (the whole policy)"));
        }
        for (json::View m : v) {
          if (m.Key() != "taskPolicy") {
            return ex->Respond(http::ErrorResponse(
                400, "InvalidParameter", std::string(m.Key()) + ": is not a cluster setting berth can change"));
          }
        }
        Result<model::TaskPolicy> policy = model::ParseTaskPolicy(v.Get("taskPolicy"));
        if (!policy) return ex->Respond(http::ErrorResponse(policy.error()));
        auto cmd = std::make_unique<model::UpdateCluster>();
        cmd->name = name;
        cmd->policy = policy->ToJson().Print();
        Submit(ctx, ex, std::move(cmd), 200);
      },
      admin_cluster);

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
    ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("taskDefinitions", list).Print()));
  });

  router->Add("GET", "/v1/taskdefinitions/families", [ctx](const http::ExchangePtr& ex) {
    json::Doc list = json::Doc::Array();
    for (const auto& [family, revisions] : ctx->state->task_definitions()) {
      bool active = false;
      for (const auto& [rev, td] : revisions) active = active || td.status == "ACTIVE";
      if (active) list.Push(family);
    }
    ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("families", list).Print()));
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
    ex->Respond(
        http::JsonResponse(200, json::Doc::Object().Set("taskDefinition", model::TaskDefinitionJson(*td)).Print()));
  });

  router->Add(
      "DELETE", "/v1/taskdefinitions/{ref}",
      [ctx](const http::ExchangePtr& ex) {
        auto ref = model::ParseTaskDefinitionRef(ex->request().Param("ref"));
        if (!ref) return ex->Respond(http::ErrorResponse(ref.error()));
        if (ref->second == 0) {
          return ex->Respond(
              http::ErrorResponse(400, "InvalidParameter", "taskDefinition: give FAMILY:REVISION to deregister"));
        }
        auto cmd = std::make_unique<model::DeregisterTaskDefinition>();
        cmd->family = ref->first;
        cmd->revision = ref->second;
        Submit(ctx, ex, std::move(cmd), 200);
      },
      unscoped);

  // --- tokens (admin only) ---

  router->Add(
      "POST", "/v1/tokens",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<std::string> role = json::RequireString(body->view(), "role", "role");
        if (!role) return ex->Respond(http::ErrorResponse(role.error()));
        if (!model::IsValidRole(*role)) {
          return ex->Respond(
              http::ErrorResponse(400, "InvalidParameter", "role: must be admin, deploy, read-only, agent or server"));
        }
        Result<int64_t> ttl = json::OptionalInt(body->view(), "ttlSeconds", "ttlSeconds", 0);
        if (!ttl) return ex->Respond(http::ErrorResponse(ttl.error()));
        if (*ttl < 0 || *ttl > 10ll * 365 * 86400) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "ttlSeconds: must be from 1 to 315360000"));
        }
        Result<int64_t> uses = json::OptionalInt(body->view(), "uses", "uses", -1);
        if (!uses) return ex->Respond(http::ErrorResponse(uses.error()));
        if (body->view().Get("uses").valid() && (*uses < 1 || *uses > 1000000 || *role != "agent")) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                                 "uses: only an agent token has uses (node joins), from 1 to 1000000"));
        }
        Result<model::TokenScope> scope = model::ParseTokenScope(body->view());
        if (!scope) return ex->Respond(http::ErrorResponse(scope.error()));
        for (const std::string& c : scope->clusters) {
          if (!ctx->state->FindCluster(c)) return ClusterNotFound(ex, c);
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
        cmd->expires_ms = *ttl > 0 ? cmd->time_ms + *ttl * 1000 : 0;
        cmd->uses = *uses;
        if (scope->limited()) cmd->scope = scope->ToJson().Print();
        // What the user pastes: the secret with the CA's fingerprint (base/crypto.h).
        std::string secret_value =
            ctx->ca_fingerprint.empty() ? *secret : crypto::PinnedToken(ctx->ca_fingerprint, *secret);
        ctx->store->Submit(std::move(cmd), [ex, secret_value](Result<std::string> r) {
          if (!r) return ex->Respond(http::ErrorResponse(r.error()));
          Result<json::Doc> doc = json::Doc::Parse(*r);
          json::Doc token = doc ? json::Doc::Copy(doc->view().Get("token")) : json::Doc::Object();
          // The secret is shown this once; only its hash is stored.
          token.Set("secret", secret_value);
          ex->Respond(http::JsonResponse(201, json::Doc::Object().Set("token", token).Print()));
        });
      },
      admin);

  router->Add(
      "GET", "/v1/tokens",
      [ctx](const http::ExchangePtr& ex) {
        json::Doc list = json::Doc::Array();
        // Access keys are listed at /v1/accesskeys; sessions are their tokens'
        // (GET /v1/session shows one's own, revoking the token ends them all).
        for (const model::Token& t : ctx->state->tokens()) {
          if (!t.access_key() && !t.session()) list.Push(model::TokenJson(t));
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("tokens", list).Print()));
      },
      admin);

  router->Add(
      "DELETE", "/v1/tokens/{id}",
      [ctx](const http::ExchangePtr& ex) {
        std::string id(ex->request().Param("id"));
        if (const model::Token* t = ctx->state->FindToken(id); t && t->access_key()) {
          return ex->Respond(
              http::ErrorResponse(404, "TokenNotFound",
                                  id + " is an access key, not a token: remove it with DELETE /v1/accesskeys/" + id +
                                      " (berth accesskey rm)"));
        }
        auto cmd = std::make_unique<model::DeleteToken>();
        cmd->id = std::move(id);
        Submit(ctx, ex, std::move(cmd), 200);
      },
      admin);

  AddAccessKeyRoutes(router, ctx, admin);

  // --- servers (the control plane) ---

  http::RouteOptions read_unscoped;
  read_unscoped.access = http::Access::kRead;
  read_unscoped.scope = http::Scope::kUnscoped;
  router->Add(
      "GET", "/v1/servers",
      [ctx](const http::ExchangePtr& ex) {
        if (!ctx->servers) return ex->Respond(http::ErrorResponse(404, "NotFound", "no replicated log here"));
        ex->Respond(http::JsonResponse(200, ctx->servers().Print()));
      },
      read_unscoped);

  // Membership: a server joining with a server token.
  http::RouteOptions server_role;
  server_role.access = http::Access::kServer;
  server_role.scope = http::Scope::kUnscoped;
  router->Add(
      "POST", "/v1/servers/join",
      [ctx](const http::ExchangePtr& ex) {
        if (!ctx->join_credentials) {
          return ex->Respond(http::ErrorResponse(404, "NotFound", "this server takes no other servers"));
        }
        Result<json::Doc> creds = ctx->join_credentials();
        if (!creds) return ex->Respond(http::ErrorResponse(creds.error()));
        ex->Respond(http::JsonResponse(200, creds->Print()));
      },
      server_role);
  router->Add(
      "POST", "/v1/servers",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        Result<std::string> id_text = json::RequireString(body->view(), "id", "id");
        Result<std::string> address = json::RequireString(body->view(), "address", "address");
        if (!id_text) return ex->Respond(http::ErrorResponse(id_text.error()));
        if (!address) return ex->Respond(http::ErrorResponse(address.error()));
        char* end = nullptr;
        unsigned long long id = strtoull(id_text->c_str(), &end, 10);
        if (id_text->empty() || *end != '\0' || id == 0) {
          return ex->Respond(http::ErrorResponse(
              400, "InvalidParameter", "id: a server id is a positive decimal number, not '" + id_text.value() + "'"));
        }
        Result<net::Endpoint> where = net::Endpoint::Parse(address.value());
        if (!where || where->kind != net::Endpoint::Kind::kTcp || where->port == 0 || where->host == "0.0.0.0" ||
            where->host == "::") {
          return ex->Respond(http::ErrorResponse(
              400, "InvalidParameter",
              "address: HOST:PORT where the other servers reach this one, not '" + address.value() + "'"));
        }
        if (!ctx->add_server) return ex->Respond(http::ErrorResponse(404, "NotFound", "no replicated log here"));
        ctx->add_server(id,
                        where->host.find(':') != std::string::npos
                            ? "[" + where->host + "]:" + std::to_string(where->port)
                            : where->host + ":" + std::to_string(where->port),
                        [ex](Result<json::Doc> r) {
                          if (!r) return ex->Respond(http::ErrorResponse(r.error()));
                          ex->Respond(http::JsonResponse(200, r->Print()));
                        });
      },
      server_role);
  http::RouteOptions admin_unscoped;
  admin_unscoped.access = http::Access::kAdmin;
  admin_unscoped.scope = http::Scope::kUnscoped;
  router->Add(
      "DELETE", "/v1/servers/{id}",
      [ctx](const http::ExchangePtr& ex) {
        std::string text(ex->request().Param("id"));
        char* end = nullptr;
        unsigned long long id = strtoull(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || id == 0) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                                 "a server id is a positive decimal number, not '" + text + "'"));
        }
        if (!ctx->remove_server) return ex->Respond(http::ErrorResponse(404, "NotFound", "no replicated log here"));
        ctx->remove_server(id, [ex, id](Status s) {
          if (!s) return ex->Respond(http::ErrorResponse(s.error()));
          json::Doc d = json::Doc::Object();
          d.Set("id", std::to_string(id)).Set("removed", true);
          ex->Respond(http::JsonResponse(200, d.Print()));
        });
      },
      admin_unscoped);
  http::RouteOptions peer;
  peer.access = http::Access::kPeer;
  peer.audit = false;
  router->Add(
      "GET", "/v1/raft",
      [ctx](const http::ExchangePtr& ex) {
        if (!ctx->raft_connect) return ex->Respond(http::ErrorResponse(404, "NotFound", "no replicated log here"));
        ctx->raft_connect(ex);
      },
      peer);

  // --- nodes ---

  router->Add(
      "GET", "/v1/nodes",
      [ctx](const http::ExchangePtr& ex) {
        std::string cluster = ex->request().Query("cluster").value_or("");
        std::string status = ex->request().Query("status").value_or("");
        // ?q=: a part of the node's id or of one of its attributes' values (the
        // dashboard's search box).
        std::string q = ex->request().Query("q").value_or("");
        if (!cluster.empty() && !ListedCluster(*ctx->state, ex, cluster)) return;
        const model::TokenScope* limits = LimitsOf(*ctx->state, *ex);
        std::vector<const model::Node*> found;
        for (const auto& [id, n] : ctx->state->nodes()) {
          if ((!cluster.empty() && n.cluster != cluster) || (!status.empty() && n.status != status)) continue;
          if (!Shown(limits, n.cluster)) continue;
          if (!q.empty() && n.id.find(q) == std::string::npos &&
              std::none_of(n.attributes.begin(), n.attributes.end(),
                           [&](const auto& a) { return a.second.find(q) != std::string::npos; })) {
            continue;
          }
          found.push_back(&n);
        }
        size_t begin, end;
        if (!Page(ex, found.size(), &begin, &end, 0)) return;
        json::Doc list = json::Doc::Array();
        for (size_t i = begin; i < end; i++) list.Push(model::NodeJson(*found[i]));
        json::Doc out = json::Doc::Object();
        out.Set("containerInstances", list).Set("total", static_cast<int64_t>(found.size()));
        if (end < found.size()) out.Set("nextToken", std::to_string(end));
        ex->Respond(http::JsonResponse(200, out.Print()));
      },
      cluster_scoped);

  router->Add(
      "GET", "/v1/nodes/{id}",
      [ctx](const http::ExchangePtr& ex) {
        const model::Node* n = NodeInScope(ctx, ex);
        if (!n) return;
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("containerInstance", model::NodeJson(*n)).Print()));
      },
      cluster_scoped);

  // Custom attributes (ECS PutAttributes): kept apart from the agent's own and
  // winning over them; placement sees the merge.
  router->Add(
      "PUT", "/v1/nodes/{id}/attributes",
      [ctx](const http::ExchangePtr& ex) {
        const model::Node* n = NodeInScope(ctx, ex);
        if (!n) return;
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        json::View attrs = body->view().Get("attributes");
        if (!attrs.IsArray() || attrs.Size() == 0) {
          return ex->Respond(
              http::ErrorResponse(400, "InvalidParameter", "attributes: a list of {name, value}, at least one"));
        }
        auto cmd = std::make_unique<model::PutNodeAttributes>();
        cmd->node = n->id;
        size_t i = 0;
        for (json::View a : attrs) {
          std::string path = "attributes[" + std::to_string(i++) + "]";
          Result<std::string> name = json::RequireString(a, "name", path + ".name");
          if (!name) return ex->Respond(http::ErrorResponse(name.error()));
          Result<std::string> value = json::OptionalString(a, "value", path + ".value");
          if (!value) return ex->Respond(http::ErrorResponse(value.error()));
          if (Status st = model::ValidateAttribute(*name, *value); !st) {
            return ex->Respond(http::ErrorResponse(st.error()));
          }
          cmd->attributes[std::move(name.value())] = std::move(value.value());
        }
        Submit(ctx, ex, std::move(cmd), 200);
      },
      cluster_scoped);
  router->Add(
      "POST", "/v1/nodes/{id}/attributes/remove",
      [ctx](const http::ExchangePtr& ex) {
        const model::Node* n = NodeInScope(ctx, ex);
        if (!n) return;
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        json::View names = body->view().Get("names");
        if (!names.IsArray()) return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "names: a list"));
        auto cmd = std::make_unique<model::DeleteNodeAttributes>();
        cmd->node = n->id;
        for (json::View nm : names) {
          if (!nm.IsString()) return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "names: strings"));
          cmd->names.emplace_back(nm.String());
        }
        Submit(ctx, ex, std::move(cmd), 200);
      },
      cluster_scoped);

  for (const char* action : {"drain", "activate"}) {
    std::string status = std::string(action) == "drain" ? "DRAINING" : "ACTIVE";
    router->Add(
        "POST", std::string("/v1/nodes/{id}/") + action,
        [ctx, status](const http::ExchangePtr& ex) {
          if (!NodeInScope(ctx, ex)) return;
          auto cmd = std::make_unique<model::SetNodeStatus>();
          cmd->id = std::string(ex->request().Param("id"));
          cmd->status = status;
          Submit(ctx, ex, std::move(cmd), 200);
        },
        cluster_scoped);
  }

  router->Add(
      "DELETE", "/v1/nodes/{id}",
      [ctx](const http::ExchangePtr& ex) {
        if (!NodeInScope(ctx, ex)) return;
        auto cmd = std::make_unique<model::DeregisterNode>();
        cmd->id = std::string(ex->request().Param("id"));
        cmd->force = ex->request().Query("force").value_or("") == "true";
        Submit(ctx, ex, std::move(cmd), 200);
      },
      cluster_scoped);

  // Revoke: deregistered (its tasks stopped), its certificate refused at once and
  // its streams closed, and its id never registered again. Admin only.
  router->Add(
      "POST", "/v1/nodes/{id}/revoke",
      [ctx](const http::ExchangePtr& ex) {
        auto cmd = std::make_unique<model::DeregisterNode>();
        cmd->id = std::string(ex->request().Param("id"));
        cmd->force = true;
        cmd->revoke = true;
        Submit(ctx, ex, std::move(cmd), 200);
      },
      admin_cluster);

  // --- tasks ---

  router->Add(
      "POST", "/v1/tasks",
      [ctx](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        RunTaskBody b = ReadRunTask(body->view());
        const Result<std::string>& cluster = b.cluster;
        if (!cluster) return ex->Respond(http::ErrorResponse(cluster.error()));
        if (!ClusterInScope(*ctx->state, ex, *cluster)) return;
        if (!ctx->state->FindCluster(*cluster)) return ClusterNotFound(ex, *cluster);
        const Result<std::string>& ref = b.task_definition;
        if (!ref) return ex->Respond(http::ErrorResponse(ref.error()));
        const model::TaskDefinition* td = ActiveTaskDefinition(ctx, ex, *ref);
        if (!td) return;
        if (!PolicyAllows(*ctx->state, ex, *ctx->state->FindCluster(*cluster), *td)) return;
        const Result<int64_t>& count = b.count;
        if (!count) return ex->Respond(http::ErrorResponse(count.error()));
        if (!b.group) return ex->Respond(http::ErrorResponse(b.group.error()));
        if (!b.started_by) return ex->Respond(http::ErrorResponse(b.started_by.error()));
        Result<std::string> group = b.group->value_or("family:" + td->family);
        const Result<std::string>& started_by = b.started_by;
        // A group given is 1-255 characters; the default one takes a family of up to 255.
        if (b.group->has_value() && (group->empty() || group->size() > 255))
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "group: must be 1-255 characters"));
        if (!b.placement) return ex->Respond(http::ErrorResponse(b.placement.error()));
        sched::Request req = std::move(b.placement.value());
        req.group = *group;
        if (Result<json::Doc> tdoc = json::Doc::Parse(td->doc); tdoc) {
          if (Status s = control::ParsePlacement(tdoc->view().Get("placementConstraints"), json::View(),
                                                 "taskDefinition", &req);
              !s) {
            return ex->Respond(http::ErrorResponse(s.error()));
          }
        }
        if (req.strategies.empty()) req.strategies.push_back(*sched::Strategy::Make("random", ""));
        control::Scheduler::Plan plan =
            ctx->scheduler->Place(*cluster, *td, req, static_cast<int>(*count), ctx->clock->NowUnixMs());
        json::Doc failures = json::Doc::Array();
        if (plan.nodes.size() < static_cast<size_t>(*count)) {
          failures.Push(json::Doc::Object()
                            .Set("reason", plan.reason.empty() ? std::string("no room") : plan.reason)
                            .Set("detail", std::to_string(*count - static_cast<int64_t>(plan.nodes.size())) +
                                               " task(s) not placed"));
        }
        if (plan.nodes.empty()) {
          return ex->Respond(http::JsonResponse(
              200, json::Doc::Object().Set("tasks", json::Doc::Array()).Set("failures", failures).Print()));
        }
        auto cmd = std::make_unique<model::PlaceTasks>();
        cmd->cluster = *cluster;
        cmd->family = td->family;
        cmd->revision = td->revision;
        cmd->group = *group;
        cmd->started_by = *started_by;
        for (size_t i = 0; i < plan.nodes.size(); i++) cmd->placements.push_back({plan.task_ids[i], plan.nodes[i]});
        cmd->time_ms = ctx->clock->NowUnixMs();
        std::string failures_text = failures.Print();
        std::string family = td->family;
        int64_t revision = td->revision;
        std::string group_name = *group;
        std::string cluster_name = *cluster;
        ctx->store->Submit(std::move(cmd), [ctx, ex, plan, failures_text, family, revision, group_name,
                                            cluster_name](Result<std::string> r) {
          if (!r) {
            if (const model::TaskDefinition* t = ctx->state->FindTaskDefinition(family, revision)) {
              ctx->scheduler->Release(cluster_name, *t, group_name, plan);
            }
            return ex->Respond(http::ErrorResponse(r.error()));
          }
          json::Doc tasks = json::Doc::Array();
          for (const std::string& id : plan.task_ids) {
            if (const model::Task* t = ctx->state->FindTask(id)) tasks.Push(model::TaskJson(*t));
          }
          Result<json::Doc> f = json::Doc::Parse(failures_text);
          json::Doc out = json::Doc::Object();
          out.Set("tasks", tasks).Set("failures", f ? std::move(f.value()) : json::Doc::Array());
          ex->Respond(http::JsonResponse(200, out.Print()));
        });
      },
      cluster_scoped);

  router->Add(
      "GET", "/v1/tasks",
      [ctx](const http::ExchangePtr& ex) {
        const http::Request& q = ex->request();
        std::string cluster = q.Query("cluster").value_or(""), service = q.Query("service").value_or("");
        std::string node = q.Query("node").value_or(""), desired = q.Query("desiredStatus").value_or("");
        std::string family = q.Query("family").value_or(""), last = q.Query("lastStatus").value_or("");
        if (!cluster.empty() && !ListedCluster(*ctx->state, ex, cluster)) return;
        const model::TokenScope* limits = LimitsOf(*ctx->state, *ex);
        std::vector<const model::Task*> found;
        for (const auto& [id, t] : ctx->state->tasks()) {
          if ((!cluster.empty() && t.cluster != cluster) || (!service.empty() && t.service != service) ||
              (!node.empty() && t.node != node) || (!desired.empty() && t.desired != desired) ||
              (!family.empty() && t.family != family) || (!last.empty() && t.last != last) ||
              !Shown(limits, t.cluster)) {
            continue;
          }
          found.push_back(&t);
        }
        std::sort(found.begin(), found.end(), [](const model::Task* a, const model::Task* b) {
          return a->created_ms != b->created_ms ? a->created_ms < b->created_ms : a->id < b->id;
        });
        size_t begin, end;
        if (!Page(ex, found.size(), &begin, &end)) return;
        json::Doc list = json::Doc::Array();
        for (size_t i = begin; i < end; i++) list.Push(model::TaskJson(*found[i]));
        json::Doc out = json::Doc::Object();
        out.Set("tasks", list).Set("total", static_cast<int64_t>(found.size()));
        if (end < found.size()) out.Set("nextToken", std::to_string(end));
        ex->Respond(http::JsonResponse(200, out.Print()));
      },
      cluster_scoped);

  router->Add(
      "GET", "/v1/tasks/{id}",
      [ctx](const http::ExchangePtr& ex) {
        const model::Task* t = ResolveTaskOrAnswer(*ctx->state, ex, ex->request().Param("id"));
        if (!t || !ClusterInScope(*ctx->state, ex, t->cluster)) return;
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("task", model::TaskJson(*t)).Print()));
      },
      cluster_scoped);

  router->Add(
      "POST", "/v1/tasks/{id}/stop",
      [ctx](const http::ExchangePtr& ex) {
        const model::Task* t = ResolveTaskOrAnswer(*ctx->state, ex, ex->request().Param("id"));
        if (!t || !ClusterInScope(*ctx->state, ex, t->cluster)) return;
        std::string id = t->id;
        std::string reason = "Task stopped by the user";
        if (!ex->request().body.empty()) {
          std::optional<json::Doc> body = ParseBody(ex);
          if (!body) return;
          Result<std::string> r = json::OptionalString(body->view(), "reason", "reason", reason);
          if (!r) return ex->Respond(http::ErrorResponse(r.error()));
          reason = r->substr(0, 1024);
        }
        auto cmd = std::make_unique<model::StopTasks>();
        cmd->ids.push_back(id);
        cmd->reason = reason;
        cmd->code = "UserInitiated";
        Submit(ctx, ex, std::move(cmd), 200);
      },
      cluster_scoped);

  // --- services ---

  auto service_json = [ctx](const model::Service& svc) {
    return json::Doc::Object().Set("service", model::ServiceJson(svc, ctx->services->Counts(svc))).Print();
  };
  auto reply_service = [ctx, service_json](const http::ExchangePtr& ex, std::string cluster, std::string name,
                                           int status) {
    return [ctx, ex, cluster, name, status, service_json](Result<std::string> r) {
      if (!r) return ex->Respond(http::ErrorResponse(r.error()));
      const model::Service* svc = ctx->state->FindService(cluster, name);
      ex->Respond(http::JsonResponse(status, svc ? service_json(*svc) : std::move(r.value())));
    };
  };

  router->Add(
      "POST", "/v1/services",
      [ctx, reply_service](const http::ExchangePtr& ex) {
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        CreateServiceBody b = ReadCreateService(body->view());
        model::Service svc;
        const Result<std::string>& cluster = b.cluster;
        if (!cluster) return ex->Respond(http::ErrorResponse(cluster.error()));
        if (!ClusterInScope(*ctx->state, ex, *cluster)) return;
        if (!ctx->state->FindCluster(*cluster)) return ClusterNotFound(ex, *cluster);
        const Result<std::string>& name = b.name;
        if (!name) return ex->Respond(http::ErrorResponse(name.error()));
        const Result<std::string>& ref = b.task_definition;
        if (!ref) return ex->Respond(http::ErrorResponse(ref.error()));
        const model::TaskDefinition* td = ActiveTaskDefinition(ctx, ex, *ref);
        if (!td) return;
        if (!PolicyAllows(*ctx->state, ex, *ctx->state->FindCluster(*cluster), *td)) return;
        const Result<int64_t>& desired = b.desired;
        if (!desired) return ex->Respond(http::ErrorResponse(desired.error()));
        if (!b.settings) return ex->Respond(http::ErrorResponse(b.settings.error()));
        int64_t mn = b.settings->min_healthy_pct, mx = b.settings->max_pct;
        int breaker = b.settings->breaker, rollback = b.settings->rollback;
        const std::string& constraints = b.settings->constraints;
        const std::string& strategy = b.settings->strategy;
        svc.name = *name;
        svc.cluster = *cluster;
        svc.arn = model::ServiceArn(svc.cluster, svc.name);
        svc.desired = *desired;
        if (mn >= 0) svc.min_healthy_pct = mn;
        if (mx >= 0) svc.max_pct = mx;
        svc.breaker = breaker == 1;
        svc.rollback = rollback == 1;
        if (!constraints.empty()) svc.constraints = constraints;
        if (!strategy.empty()) svc.strategy = strategy;
        if (!b.load_balancers) return ex->Respond(http::ErrorResponse(b.load_balancers.error()));
        svc.load_balancers = std::move(b.load_balancers.value());
        if (!b.health_check_grace_s) return ex->Respond(http::ErrorResponse(b.health_check_grace_s.error()));
        svc.health_check_grace_s = *b.health_check_grace_s;
        if (Status s = ctx->state->CheckServiceLoadBalancers(svc, *td); !s) {
          return ex->Respond(http::ErrorResponse(s.error()));
        }
        model::Deployment d;
        d.id = NewDeploymentId();
        d.family = td->family;
        d.revision = td->revision;
        svc.deployments.push_back(d);
        auto cmd = std::make_unique<model::CreateService>();
        cmd->doc = model::ServiceDoc(svc);
        cmd->time_ms = ctx->clock->NowUnixMs();
        ctx->store->Submit(std::move(cmd), reply_service(ex, svc.cluster, svc.name, 201));
      },
      cluster_scoped);

  router->Add(
      "GET", "/v1/services",
      [ctx](const http::ExchangePtr& ex) {
        std::string cluster = ex->request().Query("cluster").value_or("");
        if (!cluster.empty() && !ListedCluster(*ctx->state, ex, cluster)) return;
        const model::TokenScope* limits = LimitsOf(*ctx->state, *ex);
        std::vector<const model::Service*> found;
        for (const auto& [key, svc] : ctx->state->services()) {
          if ((!cluster.empty() && svc.cluster != cluster) || !Shown(limits, svc.cluster)) continue;
          found.push_back(&svc);
        }
        size_t begin, end;
        if (!Page(ex, found.size(), &begin, &end, 0)) return;
        json::Doc list = json::Doc::Array();
        for (size_t i = begin; i < end; i++) list.Push(model::ServiceJson(*found[i], ctx->services->Counts(*found[i])));
        json::Doc out = json::Doc::Object();
        out.Set("services", list).Set("total", static_cast<int64_t>(found.size()));
        if (end < found.size()) out.Set("nextToken", std::to_string(end));
        ex->Respond(http::JsonResponse(200, out.Print()));
      },
      cluster_scoped);

  auto find_service = [ctx](const http::ExchangePtr& ex) -> const model::Service* {
    std::string cluster = ex->request().Query("cluster").value_or("default");
    std::string name(ex->request().Param("name"));
    if (!ClusterInScope(*ctx->state, ex, cluster)) return nullptr;
    const model::Service* svc = ctx->state->FindService(cluster, name);
    if (!svc) {
      ex->Respond(
          http::ErrorResponse(404, "ServiceNotFound", "service " + name + " does not exist in cluster " + cluster));
    }
    return svc;
  };

  router->Add(
      "GET", "/v1/services/{name}",
      [find_service, service_json](const http::ExchangePtr& ex) {
        if (const model::Service* svc = find_service(ex)) ex->Respond(http::JsonResponse(200, service_json(*svc)));
      },
      cluster_scoped);

  router->Add(
      "GET", "/v1/services/{name}/events",
      [find_service](const http::ExchangePtr& ex) {
        const model::Service* svc = find_service(ex);
        if (!svc) return;
        json::Doc list = json::Doc::Array();
        for (const model::ServiceEvent& e : svc->events) {
          list.Push(json::Doc::Object()
                        .Set("id", e.id)
                        .Set("createdAt", static_cast<double>(e.at_ms) / 1000.0)
                        .Set("message", e.message));
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("events", list).Print()));
      },
      cluster_scoped);

  router->Add(
      "PATCH", "/v1/services/{name}",
      [ctx, find_service, reply_service](const http::ExchangePtr& ex) {
        const model::Service* svc = find_service(ex);
        if (!svc) return;
        std::optional<json::Doc> body = ParseBody(ex);
        if (!body) return;
        UpdateServiceBody b = ReadUpdateService(body->view());
        auto cmd = std::make_unique<model::UpdateService>();
        cmd->cluster = svc->cluster;
        cmd->name = svc->name;
        if (!b.desired) return ex->Respond(http::ErrorResponse(b.desired.error()));
        cmd->desired = *b.desired;
        if (!b.settings) return ex->Respond(http::ErrorResponse(b.settings.error()));
        cmd->min_healthy_pct = b.settings->min_healthy_pct;
        cmd->max_pct = b.settings->max_pct;
        cmd->breaker = b.settings->breaker;
        cmd->rollback = b.settings->rollback;
        cmd->constraints = b.settings->constraints;
        cmd->strategy = b.settings->strategy;
        const Result<std::string>& ref = b.task_definition;
        if (!ref) return ex->Respond(http::ErrorResponse(ref.error()));
        if (!ref->empty()) {
          const model::TaskDefinition* td = ActiveTaskDefinition(ctx, ex, *ref);
          if (!td) return;
          const model::Cluster* cl = ctx->state->FindCluster(svc->cluster);
          if (cl && !PolicyAllows(*ctx->state, ex, *cl, *td)) return;
          cmd->family = td->family;
          cmd->revision = td->revision;
        }
        if (!b.force_new) return ex->Respond(http::ErrorResponse(b.force_new.error()));
        cmd->force_new = *b.force_new;
        if (!b.health_check_grace_s) return ex->Respond(http::ErrorResponse(b.health_check_grace_s.error()));
        cmd->health_check_grace_s = *b.health_check_grace_s;
        if (!b.load_balancers) return ex->Respond(http::ErrorResponse(b.load_balancers.error()));
        cmd->new_deployment = NewDeploymentId();
        cmd->time_ms = ctx->clock->NowUnixMs();
        ctx->store->Submit(std::move(cmd), reply_service(ex, svc->cluster, svc->name, 200));
      },
      cluster_scoped);

  router->Add(
      "DELETE", "/v1/services/{name}",
      [ctx, find_service, reply_service](const http::ExchangePtr& ex) {
        const model::Service* svc = find_service(ex);
        if (!svc) return;
        auto cmd = std::make_unique<model::DeleteService>();
        cmd->cluster = svc->cluster;
        cmd->name = svc->name;
        cmd->force = ex->request().Query("force").value_or("") == "true";
        cmd->time_ms = ctx->clock->NowUnixMs();
        ctx->store->Submit(std::move(cmd), reply_service(ex, svc->cluster, svc->name, 200));
      },
      cluster_scoped);

  router->Add(
      "DELETE", "/v1/clusters/{name}",
      [ctx](const http::ExchangePtr& ex) {
        std::string_view name = ex->request().Param("name");
        if (!ClusterInScope(*ctx->state, ex, name)) return;
        if (!ctx->state->FindCluster(name)) return ClusterNotFound(ex, name);
        auto cmd = std::make_unique<model::DeleteCluster>();
        cmd->name = std::string(name);
        Submit(ctx, ex, std::move(cmd), 200);
      },
      cluster_scoped);

  AddSecretRoutes(router, ctx);
  AddLoadBalancingRoutes(router, ctx);
  AddTagRoutes(router, ctx);
  AddDashboardRoutes(router);
  AddSessionRoutes(router, ctx);
  AddStreamRoutes(router, ctx);
  AddOverviewRoutes(router, ctx);

  // The permission matrix, from the routes themselves (docs/permissions.md is
  // made from this answer, and a test calls every route with every role).
  router->Add("GET", "/v1/permissions", [router](const http::ExchangePtr& ex) {
    json::Doc list = json::Doc::Array();
    for (const auto& r : router->routes()) {
      json::Doc roles = json::Doc::Array();
      for (const char* role : {"admin", "deploy", "read-only", "agent", "server"}) {
        if (RoleMay(role, r->access())) roles.Push(role);
      }
      json::Doc d = json::Doc::Object();
      d.Set("method", r->method)
          .Set("path", r->pattern)
          .Set("access", http::AccessName(r->access()))
          .Set("roles", roles)
          .Set("scope", http::ScopeName(r->options.scope));
      list.Push(d);
    }
    ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("routes", list).Print()));
  });

  // The audit log (store/audit.h), newest first; admin only.
  router->Add(
      "GET", "/v1/audit",
      [ctx](const http::ExchangePtr& ex) {
        const http::Request& req = ex->request();
        store::AuditQuery q;
        if (std::optional<std::string> since = req.Query("since"); since && !since->empty()) {
          std::optional<int64_t> at = ParseUtcIso8601(*since);
          Result<uint64_t> ago = flags::ParseDuration(*since, "since");
          if (at) {
            q.since_ms = *at;
          } else if (ago) {
            q.since_ms = ctx->clock->NowUnixMs() - static_cast<int64_t>(ago.value());
          } else {
            return ex->Respond(
                http::ErrorResponse(400, "InvalidParameter",
                                    "since: expected a time such as 2026-12-06T03:00:00Z or a duration such as 1h"));
          }
        }
        q.actor = req.Query("token").value_or("");
        for (auto [name, dest, low, high] : {std::tuple{"limit", &q.limit, size_t{1}, size_t{1000}}}) {
          std::optional<std::string> v = req.Query(name);
          if (!v) continue;
          char* end = nullptr;
          unsigned long long n = strtoull(v->c_str(), &end, 10);
          if (v->empty() || *end || n < low || n > high) {
            return ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                                   std::string(name) + ": expected a whole number from " +
                                                       std::to_string(low) + " to " + std::to_string(high)));
          }
          *dest = static_cast<size_t>(n);
        }
        if (std::optional<std::string> before = req.Query("nextToken"); before && !before->empty()) {
          char* end = nullptr;
          q.before_id = strtoll(before->c_str(), &end, 10);
          if (*end || q.before_id <= 0) {
            return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "nextToken: not one this server gave"));
          }
        }
        Result<std::vector<store::AuditEntry>> rows = store::ReadAudit(ctx->store->db(), q);
        if (!rows) return ex->Respond(http::ErrorResponse(rows.error()));
        json::Doc list = json::Doc::Array();
        for (const store::AuditEntry& e : *rows) list.Push(store::AuditJson(e));
        json::Doc out = json::Doc::Object();
        out.Set("events", list);
        if (rows->size() == q.limit) out.Set("nextToken", std::to_string(rows->back().id));
        ex->Respond(http::JsonResponse(200, out.Print()));
      },
      admin);
}

}  // namespace berth::api
