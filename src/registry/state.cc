#include "registry/state.h"

#include "base/json.h"
#include "registry/names.h"

namespace berth::registry {

namespace {

constexpr std::string_view kTypes[] = {"CreateRepository", "DeleteRepository", "UpdateRepository",   "PutManifest",
                                       "DeleteManifest",   "DeleteTag",        "SetLifecyclePolicy", "StartUpload",
                                       "EndUpload",        "AddBlob",          "RemoveBlobs"};

Status Run(store::Db& db, const char* sql, std::initializer_list<std::string_view> texts, int64_t n = -1, int at = 0) {
  Result<store::Stmt*> st = db.Cached(sql);
  if (!st) return st.take_error();
  int i = 1;
  for (std::string_view t : texts) {
    if (i == at) (*st)->Bind(i++, n);
    (*st)->Bind(i++, t);
  }
  if (i == at) (*st)->Bind(i, n);
  return (*st)->Run();
}

Error TagExists(const std::string& repo, const std::string& tag) {
  return Error{ErrorKind::kForbidden, "ImageTagAlreadyExistsException",
               "the tag '" + tag + "' already exists in repository " + repo +
                   ", whose tags are immutable; push under a new tag"};
}

std::string Str(json::View v, const char* key) { return std::string(v.Get(key).String()); }

}  // namespace

Error RepositoryNotFound(std::string_view name) {
  return Error::NotFound("RepositoryNotFoundException", "repository " + std::string(name) + " does not exist");
}

std::string CreateRepository::Encode() const {
  return json::Doc::Object()
      .Set("name", name)
      .Set("immutable", immutable)
      .Set("anonymousPull", anonymous_pull)
      .Set("ifMissing", if_missing)
      .Print();
}
std::string DeleteRepository::Encode() const {
  return json::Doc::Object().Set("name", name).Set("force", force).Print();
}
std::string UpdateRepository::Encode() const {
  return json::Doc::Object().Set("name", name).Set("immutable", immutable).Set("anonymousPull", anonymous_pull).Print();
}
std::string PutManifest::Encode() const {
  return json::Doc::Object()
      .Set("repo", repo)
      .Set("digest", digest)
      .Set("mediaType", media_type)
      .Set("body", body)
      .Set("tag", tag)
      .Set("autoCreate", auto_create)
      .Print();
}
std::string DeleteManifest::Encode() const {
  return json::Doc::Object().Set("repo", repo).Set("digest", digest).Set("reason", reason).Print();
}
std::string DeleteTag::Encode() const { return json::Doc::Object().Set("repo", repo).Set("tag", tag).Print(); }
std::string SetLifecyclePolicy::Encode() const {
  return json::Doc::Object().Set("repo", repo).Set("policy", policy).Print();
}
std::string StartUpload::Encode() const {
  return json::Doc::Object().Set("id", id).Set("repo", repo).Set("autoCreate", auto_create).Print();
}
std::string AddBlob::Encode() const { return json::Doc::Object().Set("repo", repo).Set("digest", digest).Print(); }

std::string EndUpload::Encode() const { return json::Doc::Object().Set("id", id).Set("reason", reason).Print(); }

std::string RemoveBlobs::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const std::string& d : digests) list.Push(d);
  return json::Doc::Object().Set("digests", list).Set("markMs", mark_ms).Print();
}

bool RegistryState::Owns(std::string_view type) const {
  for (std::string_view t : kTypes) {
    if (t == type) return true;
  }
  return false;
}

Result<store::CommandPtr> RegistryState::Decode(std::string_view type, std::string_view payload, int64_t time_ms) {
  Result<json::Doc> doc = json::Doc::Parse(payload);
  if (!doc) return doc.take_error();
  json::View v = doc->view();
  if (!v.IsObject()) return Error::Invalid(std::string(type) + ": payload must be an object");
  store::CommandPtr out;
  if (type == "CreateRepository") {
    auto c = std::make_unique<CreateRepository>();
    c->name = Str(v, "name");
    c->immutable = v.Get("immutable").Bool();
    c->anonymous_pull = v.Get("anonymousPull").Bool();
    c->if_missing = v.Get("ifMissing").Bool();
    out = std::move(c);
  } else if (type == "DeleteRepository") {
    auto c = std::make_unique<DeleteRepository>();
    c->name = Str(v, "name");
    c->force = v.Get("force").Bool();
    out = std::move(c);
  } else if (type == "UpdateRepository") {
    auto c = std::make_unique<UpdateRepository>();
    c->name = Str(v, "name");
    c->immutable = static_cast<int>(v.Get("immutable").Number());
    c->anonymous_pull = static_cast<int>(v.Get("anonymousPull").Number());
    out = std::move(c);
  } else if (type == "PutManifest") {
    auto c = std::make_unique<PutManifest>();
    c->repo = Str(v, "repo");
    c->digest = Str(v, "digest");
    c->media_type = Str(v, "mediaType");
    c->body = Str(v, "body");
    c->tag = Str(v, "tag");
    c->auto_create = v.Get("autoCreate").Bool();
    out = std::move(c);
  } else if (type == "DeleteManifest") {
    auto c = std::make_unique<DeleteManifest>();
    c->repo = Str(v, "repo");
    c->digest = Str(v, "digest");
    c->reason = Str(v, "reason");
    out = std::move(c);
  } else if (type == "DeleteTag") {
    auto c = std::make_unique<DeleteTag>();
    c->repo = Str(v, "repo");
    c->tag = Str(v, "tag");
    out = std::move(c);
  } else if (type == "SetLifecyclePolicy") {
    auto c = std::make_unique<SetLifecyclePolicy>();
    c->repo = Str(v, "repo");
    c->policy = Str(v, "policy");
    out = std::move(c);
  } else if (type == "StartUpload") {
    auto c = std::make_unique<StartUpload>();
    c->id = Str(v, "id");
    c->repo = Str(v, "repo");
    c->auto_create = v.Get("autoCreate").Bool();
    out = std::move(c);
  } else if (type == "AddBlob") {
    auto c = std::make_unique<AddBlob>();
    c->repo = Str(v, "repo");
    c->digest = Str(v, "digest");
    out = std::move(c);
  } else if (type == "EndUpload") {
    auto c = std::make_unique<EndUpload>();
    c->id = Str(v, "id");
    c->reason = Str(v, "reason");
    out = std::move(c);
  } else if (type == "RemoveBlobs") {
    auto c = std::make_unique<RemoveBlobs>();
    for (json::View d : v.Get("digests")) {
      if (d.IsString()) c->digests.emplace_back(d.String());
    }
    c->mark_ms = v.Get("markMs").IntIn(INT64_MIN, INT64_MAX, 0);
    out = std::move(c);
  } else {
    return Error::Internal("not a registry command: " + std::string(type));
  }
  out->time_ms = time_ms;
  return out;
}

Status RegistryState::Load(store::Db& db) {
  repos_.clear();
  uploads_.clear();
  blob_refs_.clear();
  {
    Result<store::Stmt> s = db.Prepare("SELECT name, immutable, anonymous_pull, policy, created_ms FROM repositories");
    if (!s) return s.take_error();
    for (;;) {
      Result<bool> row = s->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      Repository r;
      r.name = s->Text(0);
      r.immutable = s->Int(1) != 0;
      r.anonymous_pull = s->Int(2) != 0;
      r.policy = s->Text(3);
      r.created_ms = s->Int(4);
      repos_.emplace(r.name, std::move(r));
    }
  }
  {
    Result<store::Stmt> s = db.Prepare("SELECT repo, digest, media_type, body, pushed_ms FROM manifests");
    if (!s) return s.take_error();
    for (;;) {
      Result<bool> row = s->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      auto it = repos_.find(s->Text(0));
      if (it == repos_.end()) continue;
      Manifest m;
      m.digest = s->Text(1);
      m.media_type = s->Text(2);
      m.body = s->Text(3);
      m.pushed_ms = s->Int(4);
      Result<ManifestInfo> info = ParseManifest(m.media_type, m.body);
      if (!info) return Error::Internal("stored manifest " + m.digest + " no longer parses: " + info.error().message);
      m.info = std::move(info.value());
      CountRefs(it->second, m, 1);
      it->second.manifests.emplace(m.digest, std::move(m));
    }
  }
  {
    Result<store::Stmt> s = db.Prepare("SELECT repo, digest FROM repo_blobs");
    if (!s) return s.take_error();
    for (;;) {
      Result<bool> row = s->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      auto it = repos_.find(s->Text(0));
      if (it != repos_.end()) it->second.blobs.insert(std::string(s->Text(1)));
    }
  }
  {
    Result<store::Stmt> s = db.Prepare("SELECT repo, tag, digest FROM tags");
    if (!s) return s.take_error();
    for (;;) {
      Result<bool> row = s->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      auto it = repos_.find(s->Text(0));
      if (it != repos_.end()) it->second.tags.emplace(std::string(s->Text(1)), std::string(s->Text(2)));
    }
  }
  Result<store::Stmt> s = db.Prepare("SELECT id, repo, created_ms FROM uploads");
  if (!s) return s.take_error();
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    Upload u{std::string(s->Text(0)), std::string(s->Text(1)), s->Int(2)};
    uploads_.emplace(u.id, std::move(u));
  }
  return {};
}

Result<std::string> RegistryState::Apply(store::Db& db, const store::Command& cmd) {
  std::string_view type = cmd.Type();
  if (type == "CreateRepository") return ApplyCreateRepository(db, static_cast<const CreateRepository&>(cmd));
  if (type == "DeleteRepository") return ApplyDeleteRepository(db, static_cast<const DeleteRepository&>(cmd));
  if (type == "UpdateRepository") return ApplyUpdateRepository(db, static_cast<const UpdateRepository&>(cmd));
  if (type == "PutManifest") return ApplyPutManifest(db, static_cast<const PutManifest&>(cmd));
  if (type == "DeleteManifest") return ApplyDeleteManifest(db, static_cast<const DeleteManifest&>(cmd));
  if (type == "DeleteTag") return ApplyDeleteTag(db, static_cast<const DeleteTag&>(cmd));
  if (type == "SetLifecyclePolicy") return ApplySetLifecyclePolicy(db, static_cast<const SetLifecyclePolicy&>(cmd));
  if (type == "StartUpload") return ApplyStartUpload(db, static_cast<const StartUpload&>(cmd));
  if (type == "EndUpload") return ApplyEndUpload(db, static_cast<const EndUpload&>(cmd));
  if (type == "AddBlob") return ApplyAddBlob(db, static_cast<const AddBlob&>(cmd));
  if (type == "RemoveBlobs") {
    // No rows: blobs are files. Each server removes its copies (registry.h).
    const auto& c = static_cast<const RemoveBlobs&>(cmd);
    if (on_blobs_removed_) on_blobs_removed_(c.digests, c.mark_ms);
    return std::string("{}");
  }
  return Error::Internal("no apply for registry command " + std::string(type));
}

std::string RepositoryArn(std::string_view name) {
  std::string arn = "arn:aws:ecr:";
  arn.append(model::kRegion).append(":").append(model::kAccount).append(":repository/").append(name);
  return arn;
}

bool RegistryState::HasResource(std::string_view arn) const {
  std::string prefix = RepositoryArn("");
  return arn.size() > prefix.size() && arn.substr(0, prefix.size()) == prefix &&
         FindRepository(arn.substr(prefix.size())) != nullptr;
}

std::string RegistryState::ResourceRemovedBy(const store::Command& cmd) const {
  if (std::string_view(cmd.Type()) != "DeleteRepository") return {};
  return RepositoryArn(static_cast<const DeleteRepository&>(cmd).name);
}

const Repository* RegistryState::FindRepository(std::string_view name) const {
  auto it = repos_.find(name);
  return it == repos_.end() ? nullptr : &it->second;
}

const Upload* RegistryState::FindUpload(std::string_view id) const {
  auto it = uploads_.find(id);
  return it == uploads_.end() ? nullptr : &it->second;
}

int64_t RegistryState::BlobRefs(std::string_view digest) const {
  auto it = blob_refs_.find(std::string(digest));
  return it == blob_refs_.end() ? 0 : it->second;
}

void RegistryState::CountRefs(Repository& r, const Manifest& m, int64_t delta) {
  for (const std::string& b : m.info.blobs) {
    for (auto* refs : {&blob_refs_, &r.refs}) {
      int64_t& n = (*refs)[b];
      n += delta;
      if (n <= 0) refs->erase(b);
    }
  }
}

bool RegistryState::Readable(std::string_view repo, std::string_view digest) const {
  auto it = repos_.find(repo);
  if (it == repos_.end()) return false;
  const Repository& r = it->second;
  return r.blobs.count(digest) > 0 || r.refs.count(std::string(digest)) > 0;
}

Result<std::string> RegistryState::ApplyAddBlob(store::Db& db, const AddBlob& c) {
  auto it = repos_.find(c.repo);
  if (it == repos_.end()) return RepositoryNotFound(c.repo);
  if (it->second.blobs.count(c.digest)) return std::string("{}");
  if (Status s = Run(db, "INSERT OR IGNORE INTO repo_blobs (repo, digest, added_ms) VALUES (?1, ?2, ?3)",
                     {c.repo, c.digest}, c.time_ms, 3);
      !s) {
    return s.take_error();
  }
  it->second.blobs.insert(c.digest);
  return std::string("{}");
}

Result<Repository*> RegistryState::EnsureRepository(store::Db& db, const std::string& name, int64_t now_ms) {
  auto it = repos_.find(name);
  if (it != repos_.end()) return &it->second;
  if (!IsValidName(name))
    return Error{ErrorKind::kInvalid, "InvalidParameterException", "repository name '" + name + "' is not valid"};
  if (Status s = Run(
          db,
          "INSERT INTO repositories (name, immutable, anonymous_pull, policy, created_ms) VALUES (?1, 0, 0, '', ?2)",
          {name}, now_ms, 2);
      !s) {
    return s.take_error();
  }
  Repository r;
  r.name = name;
  r.created_ms = now_ms;
  return &repos_.emplace(name, std::move(r)).first->second;
}

Result<std::string> RegistryState::ApplyCreateRepository(store::Db& db, const CreateRepository& c) {
  if (!IsValidName(c.name)) {
    return Error{ErrorKind::kInvalid, "InvalidParameterException",
                 "repositoryName: '" + c.name.substr(0, 300) +
                     "' is not valid: lower-case letters and digits, separated by '.', '_', '__', '-' or '/', at most "
                     "255 characters"};
  }
  if (repos_.count(c.name)) {
    if (c.if_missing) return json::Doc::Object().Set("repositoryName", c.name).Print();
    return Error::Conflict("RepositoryAlreadyExistsException", "repository " + c.name + " already exists");
  }
  Result<Repository*> r = EnsureRepository(db, c.name, c.time_ms);
  if (!r) return r.take_error();
  if (c.immutable || c.anonymous_pull) {
    if (Status s = Run(db, "UPDATE repositories SET immutable = ?2, anonymous_pull = ?3 WHERE name = ?1",
                       {c.name, c.immutable ? "1" : "0", c.anonymous_pull ? "1" : "0"});
        !s) {
      return s.take_error();
    }
    (*r)->immutable = c.immutable;
    (*r)->anonymous_pull = c.anonymous_pull;
  }
  return json::Doc::Object().Set("repositoryName", c.name).Print();
}

Result<std::string> RegistryState::ApplyDeleteRepository(store::Db& db, const DeleteRepository& c) {
  auto it = repos_.find(c.name);
  if (it == repos_.end()) return RepositoryNotFound(c.name);
  if (!it->second.manifests.empty() && !c.force) {
    return Error::Conflict("RepositoryNotEmptyException", "repository " + c.name + " still holds " +
                                                              std::to_string(it->second.manifests.size()) +
                                                              " image(s); delete them first or force the delete");
  }
  for (const char* sql : {"DELETE FROM manifests WHERE repo = ?1", "DELETE FROM tags WHERE repo = ?1",
                          "DELETE FROM uploads WHERE repo = ?1", "DELETE FROM repo_blobs WHERE repo = ?1",
                          "DELETE FROM repositories WHERE name = ?1"}) {
    if (Status s = Run(db, sql, {c.name}); !s) return s.take_error();
  }
  for (const auto& [digest, m] : it->second.manifests) CountRefs(it->second, m, -1);
  for (auto u = uploads_.begin(); u != uploads_.end();) {
    if (u->second.repo == c.name)
      u = uploads_.erase(u);
    else
      ++u;
  }
  repos_.erase(it);
  return json::Doc::Object().Set("repositoryName", c.name).Print();
}

Result<std::string> RegistryState::ApplyUpdateRepository(store::Db& db, const UpdateRepository& c) {
  auto it = repos_.find(c.name);
  if (it == repos_.end()) return RepositoryNotFound(c.name);
  bool immutable = c.immutable < 0 ? it->second.immutable : c.immutable != 0;
  bool anonymous = c.anonymous_pull < 0 ? it->second.anonymous_pull : c.anonymous_pull != 0;
  if (Status s = Run(db, "UPDATE repositories SET immutable = ?2, anonymous_pull = ?3 WHERE name = ?1",
                     {c.name, immutable ? "1" : "0", anonymous ? "1" : "0"});
      !s) {
    return s.take_error();
  }
  it->second.immutable = immutable;
  it->second.anonymous_pull = anonymous;
  return json::Doc::Object().Set("repositoryName", c.name).Print();
}

Result<std::string> RegistryState::ApplyPutManifest(store::Db& db, const PutManifest& c) {
  auto it = repos_.find(c.repo);
  if (it == repos_.end() && !c.auto_create) return RepositoryNotFound(c.repo);
  Result<ManifestInfo> info = ParseManifest(c.media_type, c.body);
  if (!info) return info.take_error();
  const Repository* repo = it == repos_.end() ? nullptr : &it->second;
  for (const std::string& child : info->children) {
    if (!repo || !repo->manifests.count(child)) {
      return Error{ErrorKind::kInvalid, "MANIFEST_BLOB_UNKNOWN",
                   "the index names manifest " + child + ", which is not in repository " + c.repo};
    }
  }
  if (repo && !c.tag.empty() && repo->immutable) {
    auto t = repo->tags.find(c.tag);
    if (t != repo->tags.end() && t->second != c.digest) return TagExists(c.repo, c.tag);
  }
  Result<Repository*> r = EnsureRepository(db, c.repo, c.time_ms);
  if (!r) return r.take_error();
  bool is_new = !(*r)->manifests.count(c.digest);
  if (is_new) {
    if (Status s =
            Run(db, "INSERT INTO manifests (repo, digest, media_type, body, pushed_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                {c.repo, c.digest, c.media_type, c.body}, c.time_ms, 5);
        !s) {
      return s.take_error();
    }
  }
  if (!c.tag.empty()) {
    if (Status s =
            Run(db, "INSERT OR REPLACE INTO tags (repo, tag, digest) VALUES (?1, ?2, ?3)", {c.repo, c.tag, c.digest});
        !s) {
      return s.take_error();
    }
  }
  if (is_new) {
    Manifest m;
    m.digest = c.digest;
    m.media_type = c.media_type;
    m.body = c.body;
    m.pushed_ms = c.time_ms;
    m.info = std::move(info.value());
    CountRefs(**r, m, 1);
    (*r)->manifests.emplace(m.digest, std::move(m));
  }
  if (!c.tag.empty()) (*r)->tags[c.tag] = c.digest;
  return json::Doc::Object().Set("digest", c.digest).Print();
}

Result<std::string> RegistryState::ApplyDeleteManifest(store::Db& db, const DeleteManifest& c) {
  auto it = repos_.find(c.repo);
  if (it == repos_.end()) return RepositoryNotFound(c.repo);
  auto m = it->second.manifests.find(c.digest);
  if (m == it->second.manifests.end()) {
    return Error::NotFound("ImageNotFoundException", "image " + c.digest + " is not in repository " + c.repo);
  }
  if (Status s = Run(db, "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2", {c.repo, c.digest}); !s)
    return s.take_error();
  if (Status s = Run(db, "DELETE FROM tags WHERE repo = ?1 AND digest = ?2", {c.repo, c.digest}); !s)
    return s.take_error();
  json::Doc tags = json::Doc::Array();
  for (auto t = it->second.tags.begin(); t != it->second.tags.end();) {
    if (t->second == c.digest) {
      tags.Push(t->first);
      t = it->second.tags.erase(t);
    } else {
      ++t;
    }
  }
  CountRefs(it->second, m->second, -1);
  it->second.manifests.erase(m);
  return json::Doc::Object().Set("imageDigest", c.digest).Set("imageTags", tags).Print();
}

Result<std::string> RegistryState::ApplyDeleteTag(store::Db& db, const DeleteTag& c) {
  auto it = repos_.find(c.repo);
  if (it == repos_.end()) return RepositoryNotFound(c.repo);
  auto t = it->second.tags.find(c.tag);
  if (t == it->second.tags.end()) {
    return Error::NotFound("ImageNotFoundException", "tag " + c.tag + " is not in repository " + c.repo);
  }
  if (Status s = Run(db, "DELETE FROM tags WHERE repo = ?1 AND tag = ?2", {c.repo, c.tag}); !s) return s.take_error();
  std::string digest = t->second;
  it->second.tags.erase(t);
  return json::Doc::Object().Set("imageDigest", digest).Set("imageTag", c.tag).Print();
}

Result<std::string> RegistryState::ApplySetLifecyclePolicy(store::Db& db, const SetLifecyclePolicy& c) {
  auto it = repos_.find(c.repo);
  if (it == repos_.end()) return RepositoryNotFound(c.repo);
  if (c.policy.empty() && it->second.policy.empty()) {
    return Error::NotFound("LifecyclePolicyNotFoundException", "repository " + c.repo + " has no lifecycle policy");
  }
  if (Status s = Run(db, "UPDATE repositories SET policy = ?2 WHERE name = ?1", {c.repo, c.policy}); !s)
    return s.take_error();
  it->second.policy = c.policy;
  return json::Doc::Object().Set("repositoryName", c.repo).Print();
}

Result<std::string> RegistryState::ApplyStartUpload(store::Db& db, const StartUpload& c) {
  if (!IsValidUploadId(c.id)) return Error::Invalid("upload id " + c.id + " is not valid");
  if (uploads_.count(c.id)) return Error::Conflict("UploadExists", "upload " + c.id + " already exists");
  if (!repos_.count(c.repo) && !c.auto_create) return RepositoryNotFound(c.repo);
  Result<Repository*> r = EnsureRepository(db, c.repo, c.time_ms);
  if (!r) return r.take_error();
  if (Status s =
          Run(db, "INSERT INTO uploads (id, repo, created_ms) VALUES (?1, ?2, ?3)", {c.id, c.repo}, c.time_ms, 3);
      !s) {
    return s.take_error();
  }
  uploads_.emplace(c.id, Upload{c.id, c.repo, c.time_ms});
  return json::Doc::Object().Set("id", c.id).Print();
}

Result<std::string> RegistryState::ApplyEndUpload(store::Db& db, const EndUpload& c) {
  auto it = uploads_.find(c.id);
  if (it == uploads_.end()) return Error::NotFound("BLOB_UPLOAD_UNKNOWN", "upload " + c.id + " does not exist");
  if (Status s = Run(db, "DELETE FROM uploads WHERE id = ?1", {c.id}); !s) return s.take_error();
  uploads_.erase(it);
  return json::Doc::Object().Set("id", c.id).Print();
}

}  // namespace berth::registry
