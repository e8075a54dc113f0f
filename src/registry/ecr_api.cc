// The native REST API of the registry, in ECR's vocabulary and JSON shapes:
// /v1/repositories (create, list, describe, delete, tag mutability), their images
// (list, delete by tag or digest), lifecycle policies (set, get, delete, preview)
// and /v1/registry/gc. These routes sit behind the server's gate like all of /v1;
// errors leave in the API's {"error":{"code","message"}} shape.
#include <algorithm>
#include <unordered_set>

#include "base/json.h"
#include "model/cluster.h"
#include "registry/names.h"
#include "registry/registry.h"
#include "store/store.h"

namespace berth::registry {

namespace http = net::http;

namespace {

std::string HostOf(const http::Request& req) {
  std::string_view h = req.Header("host");
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == ':' || c == '[' || c == ']';
    if (!ok) return "127.0.0.1";
  }
  return h.empty() || h.size() > 255 ? std::string("127.0.0.1") : std::string(h);
}

json::Doc RepositoryJson(const Repository& r, const http::Request& req) {
  json::Doc d = json::Doc::Object();
  d.Set("repositoryName", r.name)
      .Set("repositoryArn", RepositoryArn(r.name))
      .Set("registryId", model::kAccount)
      .Set("repositoryUri", HostOf(req) + "/" + r.name)
      .Set("createdAt", static_cast<double>(r.created_ms) / 1000.0)
      .Set("imageTagMutability", r.immutable ? "IMMUTABLE" : "MUTABLE")
      .Set("anonymousPull", r.anonymous_pull)
      .Set("imageCount", static_cast<int64_t>(r.manifests.size()))
      .Set("hasLifecyclePolicy", !r.policy.empty());
  return d;
}

// The size of an image: its blobs, or for an index the sum over its children.
int64_t ImageSize(const Repository& r, const Manifest& m) {
  if (!m.info.is_index) return m.info.image_size;
  int64_t total = 0;
  for (const std::string& c : m.info.children) {
    auto it = r.manifests.find(c);
    if (it != r.manifests.end() && !it->second.info.is_index) total += it->second.info.image_size;
  }
  return total;
}

json::Doc ImageDetail(const Repository& r, const Manifest& m, const std::vector<std::string>& tags) {
  json::Doc t = json::Doc::Array();
  for (const std::string& tag : tags) t.Push(tag);
  json::Doc d = json::Doc::Object();
  d.Set("registryId", model::kAccount)
      .Set("repositoryName", r.name)
      .Set("imageDigest", m.digest)
      .Set("imageTags", t)
      .Set("imageSizeInBytes", ImageSize(r, m))
      .Set("imagePushedAt", static_cast<double>(m.pushed_ms) / 1000.0)
      .Set("imageManifestMediaType", m.media_type);
  if (!m.info.artifact_type.empty()) d.Set("artifactMediaType", m.info.artifact_type);
  return d;
}

std::vector<std::string> TagsOf(const Repository& r, std::string_view digest) {
  std::vector<std::string> out;
  for (const auto& [t, d] : r.tags) {
    if (d == digest) out.push_back(t);
  }
  return out;
}

bool CanWrite(const model::State& state, const std::string& principal) {
  if (principal == "admin") return true;
  for (const model::Token& t : state.tokens()) {
    if (t.id == principal) return t.role == "admin" || t.role == "deploy";
  }
  return false;
}

}  // namespace

void Registry::AddRepositoryRoutes(http::Router* router) {
  auto submit = [this](const ExchangePtr& ex, store::CommandPtr cmd, std::function<void()> on_ok) {
    cmd->time_ms = clock_->NowUnixMs();
    Submit(std::move(cmd), [ex, on_ok](Result<std::string> r) {
      if (!r) return ex->Respond(http::ErrorResponse(r.error()));
      on_ok();
    });
  };
  // A token limited to some repositories (model/scope.h) acts on those only.
  auto in_scope = [this](const ExchangePtr& ex, std::string_view name, bool push) {
    const model::Token* t = model_->FindToken(ex->principal);
    if (!t || t->scope.AllowsRepo(name, push)) return true;
    ex->Respond(http::ErrorResponse(403, "Forbidden",
                                    "token " + t->id + " is limited to " + t->scope.Describe() + ": it may not " +
                                        (push ? "change" : "read") + " repository " + std::string(name)));
    return false;
  };
  auto find = [this, in_scope](const ExchangePtr& ex) -> const Repository* {
    std::string name(ex->request().Param("name"));
    const std::string& m = ex->request().method;
    if (!in_scope(ex, name, m != "GET" && m != "HEAD" && !ex->request().path.ends_with("/preview"))) return nullptr;
    const Repository* r = state_->FindRepository(name);
    if (!r) ex->Respond(http::ErrorResponse(RepositoryNotFound(name.substr(0, 300))));
    return r;
  };
  auto writer = [this](const ExchangePtr& ex) {
    if (CanWrite(*model_, ex->principal)) return true;
    ex->Respond(http::ErrorResponse(403, "Forbidden", "changing the registry needs an admin or deploy token"));
    return false;
  };

  http::RouteOptions repo_scoped;
  repo_scoped.scope = http::Scope::kRepository;
  http::RouteOptions unscoped;  // the whole registry: tokens without limits only
  unscoped.scope = http::Scope::kUnscoped;
  router->Add(
      "POST", "/v1/repositories",
      [this, submit, writer, in_scope](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        Result<json::Doc> body = json::Doc::Parse(ex->request().body);
        if (!body || !body->view().IsObject()) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameterException",
                                                 body ? "the body must be a JSON object" : body.error().message));
        }
        Result<std::string> name = json::RequireString(body->view(), "repositoryName", "repositoryName");
        if (!name) return ex->Respond(http::ErrorResponse(name.error()));
        if (!in_scope(ex, *name, true)) return;
        Result<std::string> mut =
            json::OptionalString(body->view(), "imageTagMutability", "imageTagMutability", "MUTABLE");
        if (!mut) return ex->Respond(http::ErrorResponse(mut.error()));
        if (*mut != "MUTABLE" && *mut != "IMMUTABLE") {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameterException",
                                                 "imageTagMutability: must be MUTABLE or IMMUTABLE"));
        }
        Result<bool> anonymous = json::OptionalBool(body->view(), "anonymousPull", "anonymousPull", false);
        if (!anonymous) return ex->Respond(http::ErrorResponse(anonymous.error()));
        auto cmd = std::make_unique<CreateRepository>();
        cmd->name = *name;
        cmd->immutable = *mut == "IMMUTABLE";
        cmd->anonymous_pull = *anonymous;
        std::string n = *name;
        submit(ex, std::move(cmd), [this, ex, n] {
          if (const Repository* r = state_->FindRepository(n)) {
            ex->Respond(http::JsonResponse(
                201, json::Doc::Object().Set("repository", RepositoryJson(*r, ex->request())).Print()));
          }
        });
      },
      repo_scoped);

  router->Add(
      "GET", "/v1/repositories",
      [this](const ExchangePtr& ex) {
        json::Doc list = json::Doc::Array();
        const model::Token* t = model_->FindToken(ex->principal);
        for (const auto& [name, r] : state_->repositories()) {
          if (!t || t->scope.AllowsRepo(name, false)) list.Push(RepositoryJson(r, ex->request()));
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("repositories", list).Print()));
      },
      repo_scoped);

  router->Add(
      "GET", "/v1/repositories/{name}",
      [find](const ExchangePtr& ex) {
        if (const Repository* r = find(ex)) {
          ex->Respond(http::JsonResponse(
              200, json::Doc::Object().Set("repository", RepositoryJson(*r, ex->request())).Print()));
        }
      },
      repo_scoped);

  router->Add(
      "PATCH", "/v1/repositories/{name}",
      [this, find, submit, writer](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        const Repository* r = find(ex);
        if (!r) return;
        Result<json::Doc> body = json::Doc::Parse(ex->request().body);
        if (!body || !body->view().IsObject())
          return ex->Respond(http::ErrorResponse(400, "InvalidParameterException", "the body must be a JSON object"));
        json::View v = body->view();
        auto cmd = std::make_unique<UpdateRepository>();
        cmd->name = r->name;
        if (v.Get("imageTagMutability").valid()) {
          std::string_view mut = v.Get("imageTagMutability").String();
          if (mut != "MUTABLE" && mut != "IMMUTABLE") {
            return ex->Respond(http::ErrorResponse(400, "InvalidParameterException",
                                                   "imageTagMutability: must be MUTABLE or IMMUTABLE"));
          }
          cmd->immutable = mut == "IMMUTABLE" ? 1 : 0;
        }
        if (v.Get("anonymousPull").valid()) {
          if (!v.Get("anonymousPull").IsBool()) {
            return ex->Respond(
                http::ErrorResponse(400, "InvalidParameterException", "anonymousPull: must be true or false"));
          }
          cmd->anonymous_pull = v.Get("anonymousPull").Bool() ? 1 : 0;
        }
        if (cmd->immutable < 0 && cmd->anonymous_pull < 0) {
          return ex->Respond(
              http::ErrorResponse(400, "InvalidParameterException", "give imageTagMutability, anonymousPull or both"));
        }
        std::string n = r->name;
        submit(ex, std::move(cmd), [this, ex, n] {
          if (const Repository* repo = state_->FindRepository(n)) {
            ex->Respond(http::JsonResponse(
                200, json::Doc::Object().Set("repository", RepositoryJson(*repo, ex->request())).Print()));
          }
        });
      },
      repo_scoped);

  router->Add(
      "DELETE", "/v1/repositories/{name}",
      [find, submit, writer](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        const Repository* r = find(ex);
        if (!r) return;
        json::Doc shape = RepositoryJson(*r, ex->request());
        auto cmd = std::make_unique<DeleteRepository>();
        cmd->name = r->name;
        cmd->force = ex->request().Query("force").value_or("") == "true";
        auto text = std::make_shared<std::string>(json::Doc::Object().Set("repository", shape).Print());
        submit(ex, std::move(cmd), [ex, text] { ex->Respond(http::JsonResponse(200, *text)); });
      },
      repo_scoped);

  router->Add(
      "GET", "/v1/repositories/{name}/images",
      [find](const ExchangePtr& ex) {
        const Repository* r = find(ex);
        if (!r) return;
        std::string tag_status = ex->request().Query("tagStatus").value_or("ANY");
        if (tag_status != "ANY" && tag_status != "TAGGED" && tag_status != "UNTAGGED") {
          return ex->Respond(
              http::ErrorResponse(400, "InvalidParameterException", "tagStatus: must be TAGGED, UNTAGGED or ANY"));
        }
        std::vector<const Manifest*> images;
        for (const auto& [d, m] : r->manifests) images.push_back(&m);
        std::sort(images.begin(), images.end(), [](const Manifest* a, const Manifest* b) {
          return a->pushed_ms != b->pushed_ms ? a->pushed_ms > b->pushed_ms : a->digest < b->digest;
        });
        json::Doc list = json::Doc::Array();
        for (const Manifest* m : images) {
          std::vector<std::string> tags = TagsOf(*r, m->digest);
          if ((tag_status == "TAGGED" && tags.empty()) || (tag_status == "UNTAGGED" && !tags.empty())) continue;
          list.Push(ImageDetail(*r, *m, tags));
        }
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("imageDetails", list).Print()));
      },
      repo_scoped);

  router->Add(
      "DELETE", "/v1/repositories/{name}/images/{ref}",
      [find, submit, writer](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        const Repository* r = find(ex);
        if (!r) return;
        std::string ref(ex->request().Param("ref"));
        store::CommandPtr cmd;
        std::string digest = ref;
        if (IsSha256Digest(ref)) {
          auto c = std::make_unique<DeleteManifest>();
          c->repo = r->name;
          c->digest = ref;
          c->reason = "user";
          cmd = std::move(c);
        } else if (IsValidTag(ref)) {
          auto it = r->tags.find(ref);
          if (it == r->tags.end()) {
            return ex->Respond(
                http::ErrorResponse(404, "ImageNotFoundException", "tag " + ref + " is not in repository " + r->name));
          }
          digest = it->second;
          auto c = std::make_unique<DeleteTag>();
          c->repo = r->name;
          c->tag = ref;
          cmd = std::move(c);
        } else {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameterException",
                                                 "'" + ref.substr(0, 300) + "' is neither a tag nor a sha256 digest"));
        }
        bool by_tag = digest != ref;
        std::string name = r->name;
        submit(ex, std::move(cmd), [ex, name, ref, digest, by_tag] {
          json::Doc id = json::Doc::Object();
          id.Set("imageDigest", digest);
          if (by_tag) id.Set("imageTag", ref);
          ex->Respond(http::JsonResponse(
              200,
              json::Doc::Object().Set("repositoryName", name).Set("imageIds", json::Doc::Array().Push(id)).Print()));
        });
      },
      repo_scoped);

  http::RouteOptions policy_body;
  policy_body.max_body = 30 * 1024;  // ECR's limit on a lifecycle policy
  policy_body.scope = http::Scope::kRepository;
  router->Add(
      "PUT", "/v1/repositories/{name}/policy",
      [find, submit, writer](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        const Repository* r = find(ex);
        if (!r) return;
        const std::string& text = ex->request().body;
        Result<LifecyclePolicy> policy = ParseLifecyclePolicy(text);
        if (!policy) return ex->Respond(http::ErrorResponse(policy.error()));
        auto cmd = std::make_unique<SetLifecyclePolicy>();
        cmd->repo = r->name;
        cmd->policy = text;
        std::string name = r->name;
        submit(ex, std::move(cmd), [ex, name, text] {
          json::Doc out = json::Doc::Object();
          out.Set("repositoryName", name).Set("lifecyclePolicyText", text);
          ex->Respond(http::JsonResponse(200, out.Print()));
        });
      },
      policy_body);

  router->Add(
      "GET", "/v1/repositories/{name}/policy",
      [find](const ExchangePtr& ex) {
        const Repository* r = find(ex);
        if (!r) return;
        if (r->policy.empty()) {
          return ex->Respond(http::ErrorResponse(404, "LifecyclePolicyNotFoundException",
                                                 "repository " + r->name + " has no lifecycle policy"));
        }
        ex->Respond(http::JsonResponse(
            200, json::Doc::Object().Set("repositoryName", r->name).Set("lifecyclePolicyText", r->policy).Print()));
      },
      repo_scoped);

  router->Add(
      "DELETE", "/v1/repositories/{name}/policy",
      [find, submit, writer](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        const Repository* r = find(ex);
        if (!r) return;
        auto cmd = std::make_unique<SetLifecyclePolicy>();
        cmd->repo = r->name;
        std::string name = r->name;
        submit(ex, std::move(cmd), [ex, name] {
          ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("repositoryName", name).Print()));
        });
      },
      repo_scoped);

  // Preview: what the policy (the stored one, or one given in the body) would expire now.
  auto preview = [this, find](const ExchangePtr& ex) {
    const Repository* r = find(ex);
    if (!r) return;
    std::string text = ex->request().body.empty() ? r->policy : ex->request().body;
    if (text.empty()) {
      return ex->Respond(http::ErrorResponse(404, "LifecyclePolicyNotFoundException",
                                             "repository " + r->name + " has no lifecycle policy"));
    }
    Result<LifecyclePolicy> policy = ParseLifecyclePolicy(text);
    if (!policy) return ex->Respond(http::ErrorResponse(policy.error()));
    json::Doc list = json::Doc::Array();
    for (const Expiry& e : EvaluatePolicy(*policy, Images(*r), clock_->NowUnixMs())) {
      const Manifest& m = r->manifests.at(e.digest);
      json::Doc tags = json::Doc::Array();
      for (const std::string& t : TagsOf(*r, e.digest)) tags.Push(t);
      json::Doc item = json::Doc::Object();
      item.Set("imageDigest", e.digest)
          .Set("imageTags", tags)
          .Set("imagePushedAt", static_cast<double>(m.pushed_ms) / 1000.0)
          .Set("action", json::Doc::Object().Set("type", "EXPIRE"))
          .Set("appliedRulePriority", e.rule_priority);
      list.Push(item);
    }
    ex->Respond(http::JsonResponse(200, json::Doc::Object()
                                            .Set("repositoryName", r->name)
                                            .Set("status", "COMPLETE")
                                            .Set("previewResults", list)
                                            .Print()));
  };
  router->Add("GET", "/v1/repositories/{name}/policy/preview", preview, repo_scoped);
  router->Add("POST", "/v1/repositories/{name}/policy/preview", preview, policy_body);

  router->Add(
      "POST", "/v1/registry/gc",
      [this, writer](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        bool dry = ex->request().Query("dryRun").value_or("") == "true";
        GcResult r = CollectGarbage(dry);
        json::Doc removed = json::Doc::Array();
        for (const std::string& d : r.removed) removed.Push(d);
        ex->Respond(http::JsonResponse(200, json::Doc::Object()
                                                .Set("dryRun", dry)
                                                .Set("removedBlobs", removed)
                                                .Set("removedBytes", r.removed_bytes)
                                                .Set("keptBlobs", r.kept)
                                                .Set("errors", r.errors)
                                                .Print()));
      },
      unscoped);

  router->Add(
      "POST", "/v1/registry/lifecycle",
      [this, writer](const ExchangePtr& ex) {
        if (!writer(ex)) return;
        ApplyLifecyclePolicies();
        ex->Respond(http::JsonResponse(202, "{}"));
      },
      unscoped);
}

}  // namespace berth::registry
