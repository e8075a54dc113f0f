// The ECR operations of the AWS front end (frontend.h), over the registry's
// native routes: /v1/repositories and, for manifests and layers, /v2/ with a
// registry token issued to the access key's holder for that one repository.
#include <algorithm>
#include <map>
#include <mutex>

#include "aws/frontend.h"
#include "base/crypto.h"
#include "registry/auth.h"
#include "registry/registry.h"

namespace berth::aws {

namespace http = net::http;

namespace {

// How long the password GetAuthorizationToken gives is valid (as ECR's).
constexpr int64_t kLoginTtlMs = 12 * 3600 * 1000;

json::Doc Body(const http::Response& r) {
  Result<json::Doc> d = json::Doc::Parse(r.body);
  return d ? std::move(d.value()) : json::Doc::Object();
}

bool Ok(const http::Response& r) { return r.status >= 200 && r.status < 300; }

std::string Repo(const CallPtr&, const std::string& name) { return "/v1/repositories/" + http::UrlEncode(name); }

// A registry token for the caller on `repo` (pull, push and delete as its role
// and limits allow), for the /v2/ routes.
http::Headers RegistryAuth(const CallPtr& c, const std::string& repo) {
  registry::Caller caller;
  caller.subject = c->principal();
  const model::Token* t = c->api()->state->FindToken(c->principal());
  caller.role = t ? t->role : "";
  std::vector<std::string> granted;
  std::string token = c->registry()->auth().Issue(
      caller, {"repository:" + repo + ":pull,push,delete"}, c->api()->clock->NowUnixMs(),
      [](std::string_view) { return false; }, &granted);
  return {{"authorization", "Bearer " + token}};
}

std::optional<std::string> RepositoryName(const CallPtr& c) { return c->RequireString("repositoryName"); }

// imageIds: [{"imageDigest"?, "imageTag"?}], each with one at least.
std::optional<std::vector<std::pair<std::string, std::string>>> ImageIds(const CallPtr& c, std::string_view field) {
  json::View v = c->input().Get(field);
  if (!v.IsArray()) {
    c->Fail("InvalidParameterException", std::string(field) + ": is required, a list of {imageDigest, imageTag}");
    return std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (json::View id : v) {
    std::string digest(id.Get("imageDigest").String()), tag(id.Get("imageTag").String());
    if (digest.empty() && tag.empty()) {
      c->Fail("InvalidParameterException", std::string(field) + ": each image id needs imageDigest or imageTag");
      return std::nullopt;
    }
    out.emplace_back(digest, tag);
  }
  if (out.empty() || out.size() > 100) {
    c->Fail("InvalidParameterException", std::string(field) + ": 1-100 image ids");
    return std::nullopt;
  }
  return out;
}

json::Doc ImageId(const std::string& digest, const std::string& tag) {
  json::Doc id = json::Doc::Object();
  if (!digest.empty()) id.Set("imageDigest", digest);
  if (!tag.empty()) id.Set("imageTag", tag);
  return id;
}

// ECR pages hold at most 1000 entries.
constexpr int64_t kPage = 1000;

// --- repositories ---

void CreateRepository(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  json::Doc body = json::Doc::Object();
  body.Set("repositoryName", *name);
  c->Forwarded();
  if (std::string m = c->OptionalString("imageTagMutability"); !m.empty()) body.Set("imageTagMutability", m);
  c->Native("POST", "/v1/repositories", body.Print(), [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    c->Reply(json::Doc::Object().Set("repository", json::Doc::Copy(Body(r).view().Get("repository"))));
  });
}

void DeleteRepository(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  json::View force = c->input().Get("force");
  std::string target = Repo(c, *name) + (force.IsBool() && force.Bool() ? "?force=true" : "");
  c->Native("DELETE", target, "", [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    c->Reply(json::Doc::Object().Set("repository", json::Doc::Copy(Body(r).view().Get("repository"))));
  });
}

void DescribeRepositories(const CallPtr& c) {
  std::vector<std::string> names;
  for (json::View n : c->input().Get("repositoryNames")) names.emplace_back(n.String());
  c->Forwarded();
  c->Native("GET", "/v1/repositories", "", [c, names](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    std::map<std::string, json::View> by_name;
    for (json::View repo : b.view().Get("repositories"))
      by_name[std::string(repo.Get("repositoryName").String())] = repo;
    json::Doc list = json::Doc::Array();
    if (names.empty()) {
      for (const auto& [name, repo] : by_name) list.Push(json::Doc::Copy(repo));
      return c->ReplyPage(list.view(), "repositories", kPage);
    }
    for (const std::string& n : names) {
      auto it = by_name.find(n);
      if (it == by_name.end()) {
        return c->Fail("RepositoryNotFoundException",
                       "The repository with name '" + n + "' does not exist in the registry");
      }
      list.Push(json::Doc::Copy(it->second));
    }
    c->Reply(json::Doc::Object().Set("repositories", list));
  });
}

void PutImageTagMutability(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::optional<std::string> m = c->RequireString("imageTagMutability");
  if (!m) return;
  std::string n = *name, mut = *m;
  c->Native("PATCH", Repo(c, n), json::Doc::Object().Set("imageTagMutability", mut).Print(),
            [c, n, mut](http::Response r) {
              if (!Ok(r)) return c->FailNative(r);
              c->Reply(json::Doc::Object()
                           .Set("registryId", std::string(Body(r).view().Get("repository").Get("registryId").String()))
                           .Set("repositoryName", n)
                           .Set("imageTagMutability", mut));
            });
}

// --- images ---

// The repository's images (native imageDetails), filtered by `filter.tagStatus`.
void Images(const CallPtr& c, const std::string& name, std::function<void(json::Doc)> then) {
  std::string tag_status(c->input().Get("filter").Get("tagStatus").String());
  std::string target =
      Repo(c, name) + "/images" + (tag_status.empty() ? "" : "?tagStatus=" + http::UrlEncode(tag_status));
  c->Native("GET", target, "", [c, then](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    then(Body(r));
  });
}

void DescribeImages(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::vector<std::pair<std::string, std::string>> wanted;
  if (c->input().Get("imageIds").valid()) {
    auto ids = ImageIds(c, "imageIds");
    if (!ids) return;
    wanted = *ids;
  }
  Images(c, *name, [c, wanted](json::Doc b) {
    json::Doc list = json::Doc::Array();
    json::View all = b.view().Get("imageDetails");
    auto has_tag = [](json::View d, std::string_view tag) {
      for (json::View t : d.Get("imageTags")) {
        if (t.String() == tag) return true;
      }
      return false;
    };
    if (!wanted.empty()) {
      for (const auto& [digest, tag] : wanted) {
        bool found = false;
        for (json::View d : all) {
          if ((digest.empty() || d.Get("imageDigest").String() == digest) && (tag.empty() || has_tag(d, tag))) {
            list.Push(json::Doc::Copy(d));
            found = true;
            break;
          }
        }
        if (!found) {
          return c->Fail("ImageNotFoundException", "The image with imageId {imageDigest:'" + digest + "', imageTag:'" +
                                                       tag + "'} does not exist within the repository");
        }
      }
      return c->Reply(json::Doc::Object().Set("imageDetails", list));
    }
    c->ReplyPage(all, "imageDetails", kPage);
  });
}

void ListImages(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  Images(c, *name, [c](json::Doc b) {
    json::Doc all = json::Doc::Array();
    for (json::View d : b.view().Get("imageDetails")) {
      std::string digest(d.Get("imageDigest").String());
      bool tagged = false;
      for (json::View t : d.Get("imageTags")) {
        all.Push(ImageId(digest, std::string(t.String())));
        tagged = true;
      }
      if (!tagged) all.Push(ImageId(digest, ""));
    }
    c->ReplyPage(all.view(), "imageIds", kPage);
  });
}

void BatchGetImage(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  auto ids = ImageIds(c, "imageIds");
  if (!ids) return;
  std::string accept;
  for (json::View t : c->input().Get("acceptedMediaTypes"))
    accept += (accept.empty() ? "" : ", ") + std::string(t.String());
  if (accept.empty()) {
    accept =
        "application/vnd.docker.distribution.manifest.v2+json, "
        "application/vnd.docker.distribution.manifest.list.v2+json, "
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
  }
  struct Gather {
    json::Doc images = json::Doc::Array();
    json::Doc failures = json::Doc::Array();
    size_t left = 0;
  };
  auto g = std::make_shared<Gather>();
  g->left = ids->size();
  std::string repo = *name;
  for (const auto& image_id : *ids) {
    const std::string digest = image_id.first, tag = image_id.second;  // captured below
    http::Headers h = RegistryAuth(c, repo);
    h.push_back({"accept", accept});
    std::string ref = digest.empty() ? tag : digest;
    c->Native(
        "GET", "/v2/" + repo + "/manifests/" + http::UrlEncode(ref), "",
        [c, g, repo, digest, tag](http::Response r) {
          if (Ok(r)) {
            std::string got_digest(http::FindHeader(r.headers, "docker-content-digest"));
            json::Doc image = json::Doc::Object();
            image.Set("registryId", "000000000000")
                .Set("repositoryName", repo)
                .Set("imageId", ImageId(got_digest.empty() ? digest : got_digest, tag))
                .Set("imageManifest", r.body)
                .Set("imageManifestMediaType", r.content_type);
            g->images.Push(image);
          } else if (r.status == 404) {
            g->failures.Push(json::Doc::Object()
                                 .Set("imageId", ImageId(digest, tag))
                                 .Set("failureCode", "ImageNotFound")
                                 .Set("failureReason", "Requested image not found"));
          } else if (g->left != static_cast<size_t>(-1)) {
            g->left = static_cast<size_t>(-1);
            return c->FailNative(r);
          }
          if (g->left == static_cast<size_t>(-1)) return;
          if (--g->left == 0) {
            c->Reply(json::Doc::Object().Set("images", g->images).Set("failures", g->failures));
          }
        },
        std::move(h));
  }
}

void BatchDeleteImage(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  auto ids = ImageIds(c, "imageIds");
  if (!ids) return;
  struct Gather {
    json::Doc deleted = json::Doc::Array();
    json::Doc failures = json::Doc::Array();
    size_t left = 0;
  };
  auto g = std::make_shared<Gather>();
  g->left = ids->size();
  for (const auto& image_id : *ids) {
    const std::string digest = image_id.first, tag = image_id.second;  // captured below
    std::string ref = tag.empty() ? digest : tag;
    c->Native("DELETE", Repo(c, *name) + "/images/" + http::UrlEncode(ref), "", [c, g, digest, tag](http::Response r) {
      if (Ok(r)) {
        json::Doc b = Body(r);
        for (json::View id : b.view().Get("imageIds")) g->deleted.Push(json::Doc::Copy(id));
      } else if (r.status == 404 && Body(r).view().Get("error").Get("code").String() == "ImageNotFoundException") {
        g->failures.Push(json::Doc::Object()
                             .Set("imageId", ImageId(digest, tag))
                             .Set("failureCode", "ImageNotFound")
                             .Set("failureReason", "Requested image not found"));
      } else {
        g->failures.Push(
            json::Doc::Object()
                .Set("imageId", ImageId(digest, tag))
                .Set("failureCode", r.status == 400 ? "InvalidImageDigest" : "ImageReferencedByManifestList")
                .Set("failureReason", std::string(Body(r).view().Get("error").Get("message").String())));
      }
      if (--g->left == 0) c->Reply(json::Doc::Object().Set("imageIds", g->deleted).Set("failures", g->failures));
    });
  }
}

void PutImage(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::optional<std::string> manifest = c->RequireString("imageManifest");
  if (!manifest) return;
  std::string tag = c->OptionalString("imageTag");
  std::string digest = c->OptionalString("imageDigest");
  std::string media = c->OptionalString("imageManifestMediaType");
  if (media.empty()) {
    Result<json::Doc> m = json::Doc::Parse(*manifest);
    if (m) media = std::string(m->view().Get("mediaType").String());
  }
  if (media.empty()) {
    return c->Fail("InvalidParameterException",
                   "imageManifestMediaType: required when the manifest names no mediaType");
  }
  std::string computed = "sha256:" + crypto::Hex(crypto::Sha256(*manifest));
  if (!digest.empty() && digest != computed) {
    return c->Fail("ImageDigestDoesNotMatchException",
                   "imageDigest " + digest + " is not the manifest's digest " + computed);
  }
  std::string repo = *name;
  std::string ref = tag.empty() ? computed : tag;
  std::string body = *manifest;
  auto put = [c, repo, ref, tag, computed, media, body] {
    http::Headers h = RegistryAuth(c, repo);
    h.push_back({"content-type", media});
    c->Native(
        "PUT", "/v2/" + repo + "/manifests/" + http::UrlEncode(ref), body,
        [c, repo, tag, computed, media, body](http::Response r) {
          if (!Ok(r)) return c->FailNative(r);
          json::Doc image = json::Doc::Object();
          image.Set("registryId", "000000000000")
              .Set("repositoryName", repo)
              .Set("imageId", ImageId(computed, tag))
              .Set("imageManifest", body)
              .Set("imageManifestMediaType", media);
          c->Reply(json::Doc::Object().Set("image", image));
        },
        std::move(h));
  };
  if (tag.empty()) return put();
  // ECR refuses a push that changes nothing: the tag already on this manifest.
  c->Native("GET", Repo(c, repo) + "/images", "", [c, put, tag, computed](http::Response r) {
    if (Ok(r)) {
      json::Doc b = Body(r);
      for (json::View d : b.view().Get("imageDetails")) {
        if (d.Get("imageDigest").String() != computed) continue;
        for (json::View t : d.Get("imageTags")) {
          if (t.String() == tag) {
            return c->Fail("ImageAlreadyExistsException", "Image with digest '" + computed + "' and tag '" + tag +
                                                              "' already exists in the repository");
          }
        }
      }
    }
    put();
  });
}

void BatchCheckLayerAvailability(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::vector<std::string> digests;
  for (json::View d : c->input().Get("layerDigests")) digests.emplace_back(d.String());
  if (digests.empty() || digests.size() > 100) {
    return c->Fail("InvalidParameterException", "layerDigests: 1-100 digests");
  }
  struct Gather {
    std::vector<json::Doc> layers;
    json::Doc failures = json::Doc::Array();
    size_t left = 0;
  };
  auto g = std::make_shared<Gather>();
  g->layers.resize(digests.size());
  g->left = digests.size();
  std::string repo = *name;
  for (size_t i = 0; i < digests.size(); i++) {
    std::string d = digests[i];
    if (!d.starts_with("sha256:") || d.size() != 71) {
      g->failures.Push(json::Doc::Object()
                           .Set("layerDigest", d)
                           .Set("failureCode", "InvalidLayerDigest")
                           .Set("failureReason", "not a sha256 digest"));
      g->layers[i] = json::Doc();
      if (--g->left == 0) {
        json::Doc list = json::Doc::Array();
        for (json::Doc& l : g->layers) {
          if (l.valid()) list.Push(l);
        }
        c->Reply(json::Doc::Object().Set("layers", list).Set("failures", g->failures));
      }
      continue;
    }
    c->Native(
        "HEAD", "/v2/" + repo + "/blobs/" + d, "",
        [c, g, i, d](http::Response r) {
          json::Doc layer = json::Doc::Object();
          layer.Set("layerDigest", d).Set("layerAvailability", Ok(r) ? "AVAILABLE" : "UNAVAILABLE");
          if (Ok(r)) {
            std::string_view size = http::FindHeader(r.headers, "content-length");
            layer.Set("layerSize", static_cast<int64_t>(atoll(std::string(size).c_str())));
            layer.Set("mediaType", "application/vnd.docker.image.rootfs.diff.tar.gzip");
          }
          g->layers[i] = std::move(layer);
          if (--g->left == 0) {
            json::Doc list = json::Doc::Array();
            for (json::Doc& l : g->layers) {
              if (l.valid()) list.Push(l);
            }
            c->Reply(json::Doc::Object().Set("layers", list).Set("failures", g->failures));
          }
        },
        RegistryAuth(c, repo));
  }
}

// A password `docker login --username AWS` takes on every server of the cluster:
// bound to the access key, so revoking the key ends it (registry/auth.h).
void GetAuthorizationToken(const CallPtr& c) {
  const model::Token* key = c->api()->state->FindToken(c->principal());
  Result<std::string> secret =
      key ? api::AccessKeySecret(*c->api(), *key) : Result<std::string>(Error::Invalid("the key is gone"));
  if (!secret) return c->Fail("ServerException", secret.error().message, 500);
  int64_t expires = c->api()->clock->NowUnixMs() + kLoginTtlMs;
  if (key->expires_ms && key->expires_ms < expires) expires = key->expires_ms;
  std::string password = registry::Auth::EcrPassword(key->id, *secret, expires);
  std::fill(secret->begin(), secret->end(), '\0');  // not left in freed memory
  json::Doc data = json::Doc::Object();
  data.Set("authorizationToken", crypto::Base64Encode("AWS:" + password))
      .Set("expiresAt", static_cast<double>(expires) / 1000.0)
      .Set("proxyEndpoint", std::string(c->host_url()));
  c->Forwarded();
  c->Reply(json::Doc::Object().Set("authorizationData", json::Doc::Array().Push(data)));
}

// --- lifecycle policies ---

void PutLifecyclePolicy(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::optional<std::string> text = c->RequireString("lifecyclePolicyText");
  if (!text) return;
  std::string n = *name;
  c->Native("PUT", Repo(c, n) + "/policy", *text, [c, n](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    c->Reply(json::Doc::Object()
                 .Set("registryId", "000000000000")
                 .Set("repositoryName", n)
                 .Set("lifecyclePolicyText", r.body));
  });
}

void GetLifecyclePolicy(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::string n = *name;
  c->Native("GET", Repo(c, n) + "/policy", "", [c, n](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    json::View text = b.view().Get("lifecyclePolicyText");
    c->Reply(json::Doc::Object()
                 .Set("registryId", "000000000000")
                 .Set("repositoryName", n)
                 .Set("lifecyclePolicyText", text.valid() ? std::string(text.String()) : r.body));
  });
}

void DeleteLifecyclePolicy(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::string n = *name;
  c->Native("GET", Repo(c, n) + "/policy", "", [c, n](http::Response before) {
    if (!Ok(before)) return c->FailNative(before);
    json::Doc b = Body(before);
    json::View tv = b.view().Get("lifecyclePolicyText");
    std::string text = tv.valid() ? std::string(tv.String()) : before.body;
    c->Native("DELETE", Repo(c, n) + "/policy", "", [c, n, text](http::Response r) {
      if (!Ok(r)) return c->FailNative(r);
      c->Reply(json::Doc::Object()
                   .Set("registryId", "000000000000")
                   .Set("repositoryName", n)
                   .Set("lifecyclePolicyText", text));
    });
  });
}

// ECR runs a preview in the background; berth's is computed at once, and kept
// on this server for GetLifecyclePolicyPreview.
struct Preview {
  std::string policy;
  std::string results;  // JSON array
};
std::map<std::string, Preview>& Previews() {
  static std::map<std::string, Preview> previews;
  return previews;
}

void StartLifecyclePolicyPreview(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::string n = *name;
  std::string text = c->OptionalString("lifecyclePolicyText");
  auto run = [c, n](std::string policy) {
    c->Native("POST", Repo(c, n) + "/policy/preview", policy, [c, n, policy](http::Response r) {
      if (!Ok(r)) return c->FailNative(r);
      json::Doc b = Body(r);
      if (Previews().size() > 10000) Previews().clear();
      Previews()[n] = Preview{policy, b.view().Get("previewResults").Print()};
      c->Reply(json::Doc::Object()
                   .Set("registryId", "000000000000")
                   .Set("repositoryName", n)
                   .Set("lifecyclePolicyText", policy)
                   .Set("status", "COMPLETE"));
    });
  };
  if (!text.empty()) return run(text);
  c->Native("GET", Repo(c, n) + "/policy", "", [c, run](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    json::View tv = b.view().Get("lifecyclePolicyText");
    run(tv.valid() ? std::string(tv.String()) : r.body);
  });
}

void GetLifecyclePolicyPreview(const CallPtr& c) {
  std::optional<std::string> name = RepositoryName(c);
  if (!name) return;
  std::string n = *name;
  // The repository must still be there (and in the key's scope).
  c->Native("GET", Repo(c, n), "", [c, n](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    auto it = Previews().find(n);
    if (it == Previews().end()) {
      return c->Fail("LifecyclePolicyPreviewNotFoundException",
                     "There is no dry run for this repository: call StartLifecyclePolicyPreview first");
    }
    Result<json::Doc> results = json::Doc::Parse(it->second.results);
    json::Doc list = results ? std::move(results.value()) : json::Doc::Array();
    int64_t expiring = static_cast<int64_t>(list.view().Size());
    c->Reply(json::Doc::Object()
                 .Set("registryId", "000000000000")
                 .Set("repositoryName", n)
                 .Set("lifecyclePolicyText", it->second.policy)
                 .Set("status", "COMPLETE")
                 .Set("previewResults", list)
                 .Set("summary", json::Doc::Object().Set("expiringImageTotalCount", expiring)));
  });
}

// --- tags (repositories, by ARN); ECR spells them {Key, Value} ---

std::optional<std::string> RepositoryArnOf(const CallPtr& c) {
  std::optional<std::string> arn = c->RequireString("resourceArn");
  if (!arn) return std::nullopt;
  std::string ours = BerthArn(*arn, "ecr");
  if (ours.empty() || ours.find(":repository/") == std::string::npos) {
    c->Fail("InvalidParameterException", "resourceArn: " + *arn + " is not an ECR repository ARN");
    return std::nullopt;
  }
  return ours;
}

void TagResource(const CallPtr& c) {
  std::optional<std::string> arn = RepositoryArnOf(c);
  if (!arn) return;
  json::View tags = c->input().Get("tags");
  if (!tags.IsArray()) return c->Fail("InvalidParameterException", "tags: is required, a list of {Key, Value}");
  json::Doc list = json::Doc::Array();
  for (json::View t : tags) {
    list.Push(json::Doc::Object().Set("key", t.Get("Key").String()).Set("value", t.Get("Value").String()));
  }
  std::string body = json::Doc::Object().Set("resource", *arn).Set("tags", list).Print();
  c->Native("POST", "/v1/tags", body, [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    c->Reply(json::Doc::Object());
  });
}

void UntagResource(const CallPtr& c) {
  std::optional<std::string> arn = RepositoryArnOf(c);
  if (!arn) return;
  json::View keys = c->input().Get("tagKeys");
  if (!keys.IsArray()) return c->Fail("InvalidParameterException", "tagKeys: is required, a list of tag keys");
  std::string body = json::Doc::Object().Set("resource", *arn).Set("tagKeys", json::Doc::Copy(keys)).Print();
  c->Native("POST", "/v1/tags/remove", body, [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    c->Reply(json::Doc::Object());
  });
}

void ListTagsForResource(const CallPtr& c) {
  std::optional<std::string> arn = RepositoryArnOf(c);
  if (!arn) return;
  c->Native("GET", "/v1/tags?resource=" + http::UrlEncode(*arn), "", [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc tags = json::Doc::Array();
    json::Doc native = Body(r);
    for (json::View t : native.view().Get("tags")) {
      tags.Push(json::Doc::Object().Set("Key", t.Get("key").String()).Set("Value", t.Get("value").String()));
    }
    c->Reply(json::Doc::Object().Set("tags", tags));
  });
}

constexpr Exception kEcrExceptions[] = {
    {"RepositoryNotFoundException", "RepositoryNotFoundException"},
    {"RepositoryAlreadyExistsException", "RepositoryAlreadyExistsException"},
    {"RepositoryNotEmptyException", "RepositoryNotEmptyException"},
    {"ImageNotFoundException", "ImageNotFoundException"},
    {"LifecyclePolicyNotFoundException", "LifecyclePolicyNotFoundException"},
    {"InvalidLifecyclePolicy", "InvalidParameterException"},
    {"InvalidParameterException", "InvalidParameterException"},
    {"NAME_UNKNOWN", "RepositoryNotFoundException"},
    {"NAME_INVALID", "InvalidParameterException"},
    {"MANIFEST_UNKNOWN", "ImageNotFoundException"},
    {"MANIFEST_INVALID", "InvalidParameterException"},
    {"MANIFEST_BLOB_UNKNOWN", "LayersNotFoundException"},
    {"TAG_INVALID", "ImageTagAlreadyExistsException"},
    {"DIGEST_INVALID", "ImageDigestDoesNotMatchException"},
    {"DENIED", "AccessDeniedException"},
    {"UNAUTHORIZED", "AccessDeniedException"},
    {"Forbidden", "AccessDeniedException"},
    {"ResourceNotFound", "RepositoryNotFoundException"},
    {"InvalidParameter", "InvalidParameterException"},
};

const Operation kOperations[] = {
    {"CreateRepository", Support::kPartial, CreateRepository,
     "tags, imageScanningConfiguration, encryptionConfiguration, registryId"},
    {"DeleteRepository", Support::kPartial, DeleteRepository, "registryId"},
    {"DescribeRepositories", Support::kPartial, DescribeRepositories, "registryId"},
    {"DescribeImages", Support::kPartial, DescribeImages, "registryId"},
    {"ListImages", Support::kPartial, ListImages, "registryId"},
    {"BatchGetImage", Support::kPartial, BatchGetImage, "registryId"},
    {"BatchDeleteImage", Support::kPartial, BatchDeleteImage, "registryId"},
    {"PutImage", Support::kPartial, PutImage, "registryId"},
    {"BatchCheckLayerAvailability", Support::kPartial, BatchCheckLayerAvailability, "registryId"},
    {"GetAuthorizationToken", Support::kPartial, GetAuthorizationToken, "registryIds"},
    {"PutImageTagMutability", Support::kPartial, PutImageTagMutability, "registryId"},
    {"PutLifecyclePolicy", Support::kPartial, PutLifecyclePolicy, "registryId"},
    {"GetLifecyclePolicy", Support::kPartial, GetLifecyclePolicy, "registryId"},
    {"DeleteLifecyclePolicy", Support::kPartial, DeleteLifecyclePolicy, "registryId"},
    {"StartLifecyclePolicyPreview", Support::kPartial, StartLifecyclePolicyPreview, "registryId"},
    {"GetLifecyclePolicyPreview", Support::kPartial, GetLifecyclePolicyPreview,
     "registryId, imageIds, nextToken, maxResults, filter"},
    {"TagResource", Support::kFull, TagResource, ""},
    {"UntagResource", Support::kFull, UntagResource, ""},
    {"ListTagsForResource", Support::kFull, ListTagsForResource, ""},
};

}  // namespace

const Service& Ecr() {
  static const Service s{"AmazonEC2ContainerRegistry_V20150921",     "ecr",         "ecr", kOperations,
                         sizeof kOperations / sizeof kOperations[0], kEcrExceptions};
  return s;
}

}  // namespace berth::aws
