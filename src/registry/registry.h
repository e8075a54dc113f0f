// The built-in image registry: the OCI Distribution API v1.1 on /v2/ (Docker's
// token flow at /v2/token), the ECR-style repository API on /v1/repositories,
// upload sessions, the periodic jobs (upload expiry, lifecycle policies, blob
// garbage collection), all on the server's loop and port.
//
// Data path: a push streams each blob into an upload file (blobs.h), hashing as
// it goes; at the end the digest is verified and the file fsynced and renamed
// under its digest. Repositories, manifests, tags and upload sessions change
// only through RegistryState's commands (state.h), whose replies go out after
// their commit. /v2/ routes pass the server's gate open and authenticate here,
// so refusals carry the OCI error JSON and Docker's WWW-Authenticate challenge.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "base/clock.h"
#include "net/http_server.h"
#include "net/router.h"
#include "registry/auth.h"
#include "registry/blobs.h"
#include "registry/gc.h"
#include "registry/lifecycle.h"
#include "registry/state.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::model {
class State;
}
namespace berth::store {
class Store;
}
namespace berth::net {
class Timer;
}

namespace berth::registry {

struct Options {
  std::string dir;                              // <data>/registry
  bool auto_create = true;                      // a push to a new name creates the repository
  int64_t upload_expiry_ms = 24 * 3600 * 1000;  // an upload session idle this long is removed
  int64_t gc_interval_ms = 3600 * 1000;         // 0: only on request
  int64_t gc_grace_ms = 3600 * 1000;            // blobs used this recently are kept
  int64_t lifecycle_interval_ms = 3600 * 1000;  // 0: only on request
  int64_t token_ttl_ms = 5 * 60 * 1000;         // registry bearer tokens
  uint64_t max_blob_bytes = uint64_t{64} << 30;
  size_t max_uploads = 1000;  // open upload sessions at most
};

class Registry {
 public:
  Registry(uv_loop_t* loop, RegistryState* state, const model::State* model, store::Store* store, const Clock* clock,
           Options options);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Creates the directories and starts the periodic jobs.
  Status Start();
  // Stops the periodic work (GC, upload expiry, lifecycle): called before the
  // store closes, so no timer submits to a closed store.
  void Stop();
  // Adds /v2/... and /v1/repositories..., /v1/registry/gc. `this` must outlive the router.
  void AddRoutes(net::http::Router* router);
  // Who may pull and push; also signs the pull credentials nodes are given.
  const Auth& auth() const { return auth_; }

  // One collection now (see gc.h).
  GcResult CollectGarbage(bool dry_run);
  // Ends upload sessions idle longer than the expiry and removes stray upload files.
  void ExpireUploads();
  // Applies every repository's lifecycle policy.
  void ApplyLifecyclePolicies();

 private:
  struct Session;
  using ExchangePtr = net::http::ExchangePtr;

  void HandleV2(const ExchangePtr& ex);
  void HandleToken(const ExchangePtr& ex);
  void HandleCatalog(const ExchangePtr& ex, const Caller& caller);
  void GetBlob(const ExchangePtr& ex, const std::string& name, const std::string& digest);
  void GetManifest(const ExchangePtr& ex, const std::string& name, const std::string& ref);
  void PutManifestRequest(const ExchangePtr& ex, const std::string& name, const std::string& ref);
  void DeleteManifestRequest(const ExchangePtr& ex, const std::string& name, const std::string& ref);
  void ListTags(const ExchangePtr& ex, const std::string& name);
  void Referrers(const ExchangePtr& ex, const std::string& name, const std::string& digest);
  void StartUploadRequest(const ExchangePtr& ex, const std::string& name, const Caller& caller);
  void MonolithicUpload(const ExchangePtr& ex, const std::string& name, const std::string& digest);
  void UploadRequest(const ExchangePtr& ex, const std::string& name, const std::string& id);
  void FinishUpload(const ExchangePtr& ex, const std::string& name, const std::string& id, const std::string& digest);
  // Submits AddBlob: `digest` is readable through `repo` once `then` hears it committed.
  void AddBlobTo(const std::string& repo, const std::string& digest, std::function<void(Result<std::string>)> then);
  void VerifyAndStore(std::unique_ptr<UploadFile> file, const std::string& digest, std::function<void(Status)> done);
  // The runtime side of upload `id` (its open file), opened on first use.
  Result<Session*> OpenSession(const std::string& id);
  void EndSession(const std::string& id, const std::string& reason);

  void AddRepositoryRoutes(net::http::Router* router);
  std::vector<ImageFacts> Images(const Repository& repo) const;

  uv_loop_t* loop_;
  RegistryState* state_;
  const model::State* model_;
  store::Store* store_;
  const Clock* clock_;
  Options options_;
  BlobStore blobs_;
  Auth auth_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  std::unordered_set<std::string> temp_in_use_;             // single-request upload files being written
  std::unordered_map<std::string, int64_t> pending_blobs_;  // claimed by manifest pushes in flight
  std::unique_ptr<net::Timer> gc_timer_;
  std::unique_ptr<net::Timer> upload_timer_;
  std::unique_ptr<net::Timer> lifecycle_timer_;
};

}  // namespace berth::registry
