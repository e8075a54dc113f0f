// The registry's part of the state: repositories (with tag mutability and a
// lifecycle policy), the manifests each holds (exact bytes), tags, and upload
// sessions. Changed only by the commands below, through the store, so a
// replication layer carries them like every other change. Blobs are files and
// not state (blobs.h); what references them is derived here (blob_refs).
//
// Errors use ECR's codes (RepositoryNotFoundException, ...); the /v2 front end
// maps them to the OCI codes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/state.h"
#include "registry/manifest.h"
#include "store/store.h"

namespace berth::registry {

struct Manifest {
  std::string digest;
  std::string media_type;
  std::string body;  // exactly as pushed
  int64_t pushed_ms = 0;
  ManifestInfo info;
};

struct Repository {
  std::string name;
  bool immutable = false;
  bool anonymous_pull = false;  // pulls need no credentials
  std::string policy;           // lifecycle policy JSON; empty: none
  int64_t created_ms = 0;
  std::map<std::string, Manifest, std::less<>> manifests;  // by digest
  std::map<std::string, std::string, std::less<>> tags;    // tag → digest, in lexical order
  std::set<std::string, std::less<>> blobs;                // pushed or mounted into it
  std::unordered_map<std::string, int64_t> refs;           // blob → manifests of it referencing it
};

struct Upload {
  std::string id;
  std::string repo;
  int64_t created_ms = 0;
};

// --- commands ---

// Creates a repository. `if_missing`: succeeds without change when it exists
// (a push to a new name under --registry-auto-create).
struct CreateRepository final : store::Command {
  std::string name;
  bool immutable = false;
  bool anonymous_pull = false;
  bool if_missing = false;
  const char* Type() const override { return "CreateRepository"; }
  std::string Encode() const override;
};

// Refused while images remain unless `force` (they go with it).
struct DeleteRepository final : store::Command {
  std::string name;
  bool force = false;
  const char* Type() const override { return "DeleteRepository"; }
  std::string Encode() const override;
};

// Changes a repository's settings; -1 leaves one as it is.
struct UpdateRepository final : store::Command {
  std::string name;
  int immutable = -1;
  int anonymous_pull = -1;
  const char* Type() const override { return "UpdateRepository"; }
  std::string Encode() const override;
};

// Stores a manifest (the front end checked its blobs exist) and points `tag` at
// it when given. `auto_create` creates the repository.
struct PutManifest final : store::Command {
  std::string repo;
  std::string digest;
  std::string media_type;
  std::string body;
  std::string tag;
  bool auto_create = false;
  const char* Type() const override { return "PutManifest"; }
  std::string Encode() const override;
};

// Removes a manifest and every tag that points at it.
struct DeleteManifest final : store::Command {
  std::string repo;
  std::string digest;
  std::string reason;  // "user" or "lifecycle"
  const char* Type() const override { return "DeleteManifest"; }
  std::string Encode() const override;
};

struct DeleteTag final : store::Command {
  std::string repo;
  std::string tag;
  const char* Type() const override { return "DeleteTag"; }
  std::string Encode() const override;
};

// Sets (or, when empty, removes) a repository's lifecycle policy; `policy` passed
// ParseLifecyclePolicy.
struct SetLifecyclePolicy final : store::Command {
  std::string repo;
  std::string policy;
  const char* Type() const override { return "SetLifecyclePolicy"; }
  std::string Encode() const override;
};

struct StartUpload final : store::Command {
  std::string id;
  std::string repo;
  bool auto_create = false;
  const char* Type() const override { return "StartUpload"; }
  std::string Encode() const override;
};

// A blob becomes readable through a repository: an upload into it completed, or
// it was mounted from another repository the pusher may pull.
struct AddBlob final : store::Command {
  std::string repo;
  std::string digest;
  const char* Type() const override { return "AddBlob"; }
  std::string Encode() const override;
};

// An upload session ends: completed, cancelled or expired.
struct EndUpload final : store::Command {
  std::string id;
  std::string reason;
  const char* Type() const override { return "EndUpload"; }
  std::string Encode() const override;
};

// The acting leader's garbage collection removed these blobs (older than
// `mark_ms`, referenced by no manifest): every server removes its copies when it
// applies this, under the same conditions (registry.h).
struct RemoveBlobs final : store::Command {
  std::vector<std::string> digests;
  int64_t mark_ms = 0;
  const char* Type() const override { return "RemoveBlobs"; }
  std::string Encode() const override;
};

class RegistryState final : public model::StatePart {
 public:
  bool Owns(std::string_view type) const override;
  Status Load(store::Db& db) override;
  Result<std::string> Apply(store::Db& db, const store::Command& cmd) override;
  Result<store::CommandPtr> Decode(std::string_view type, std::string_view payload, int64_t time_ms) override;
  bool HasResource(std::string_view arn) const override;
  std::string ResourceRemovedBy(const store::Command& cmd) const override;

  const Repository* FindRepository(std::string_view name) const;
  const std::map<std::string, Repository, std::less<>>& repositories() const { return repos_; }
  const Upload* FindUpload(std::string_view id) const;
  const std::map<std::string, Upload, std::less<>>& uploads() const { return uploads_; }
  // How many stored manifests reference the blob `digest` (config or layer).
  int64_t BlobRefs(std::string_view digest) const;
  // The digests of every referenced blob.
  const std::unordered_map<std::string, int64_t>& blob_refs() const { return blob_refs_; }
  // May blob `digest` be read through repository `repo`: one of its manifests
  // references it, or it was pushed or mounted into it.
  bool Readable(std::string_view repo, std::string_view digest) const;
  // Told, as RemoveBlobs is applied, which blobs to remove and their mark.
  void OnBlobsRemoved(std::function<void(const std::vector<std::string>&, int64_t)> fn) {
    on_blobs_removed_ = std::move(fn);
  }

 private:
  Result<std::string> ApplyCreateRepository(store::Db& db, const CreateRepository& c);
  Result<std::string> ApplyDeleteRepository(store::Db& db, const DeleteRepository& c);
  Result<std::string> ApplyUpdateRepository(store::Db& db, const UpdateRepository& c);
  Result<std::string> ApplyPutManifest(store::Db& db, const PutManifest& c);
  Result<std::string> ApplyDeleteManifest(store::Db& db, const DeleteManifest& c);
  Result<std::string> ApplyDeleteTag(store::Db& db, const DeleteTag& c);
  Result<std::string> ApplySetLifecyclePolicy(store::Db& db, const SetLifecyclePolicy& c);
  Result<std::string> ApplyStartUpload(store::Db& db, const StartUpload& c);
  Result<std::string> ApplyEndUpload(store::Db& db, const EndUpload& c);
  Result<std::string> ApplyAddBlob(store::Db& db, const AddBlob& c);
  // Inserts the repository row when absent; returns it (created or found).
  Result<Repository*> EnsureRepository(store::Db& db, const std::string& name, int64_t now_ms);
  void CountRefs(Repository& r, const Manifest& m, int64_t delta);

  std::map<std::string, Repository, std::less<>> repos_;
  std::map<std::string, Upload, std::less<>> uploads_;
  std::unordered_map<std::string, int64_t> blob_refs_;
  std::function<void(const std::vector<std::string>&, int64_t)> on_blobs_removed_;
};

// A repository's ARN in berth's form (region "local", account 000000000000).
std::string RepositoryArn(std::string_view name);

// Errors shared by the front ends.
Error RepositoryNotFound(std::string_view name);

}  // namespace berth::registry
