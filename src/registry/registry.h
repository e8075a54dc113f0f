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
#include <vector>

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
namespace berth::net::http {
class Client;
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

// What the registry needs of the servers around it. Unset: a server alone,
// changes go straight to the store.
struct Cluster {
  // Submits a change to the log (on any server: see server/peers.h).
  std::function<void(store::CommandPtr, std::function<void(Result<std::string>)>)> submit;
  // Whether this server acts as the leader: only it collects garbage, expires
  // upload sessions and applies lifecycle policies.
  std::function<bool()> acting;
  // The other servers' addresses (host:port), the leader's first.
  std::function<std::vector<std::string>()> peers;
  // Whether there are other servers (cheaper than asking for their addresses).
  std::function<bool()> has_peers;
  // How many servers, this one included, must hold a blob before its push is
  // acknowledged: a majority of the voters.
  std::function<size_t()> copies_needed;
  // The client for blob traffic to the server at an address (nullptr: none).
  std::function<net::http::Client*(const std::string&)> client;
  // Whether a peer certificate's principal ("server:<id>") is a member.
  std::function<bool(const std::string&)> member;
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
  // Adds /v2/... and /v1/repositories..., /v1/registry/gc, and the peers'
  // /v1/registry/peer/blobs/{digest}. `this` must outlive the router.
  void AddRoutes(net::http::Router* router);
  // Joins a cluster of servers (before Start).
  void SetCluster(Cluster cluster) { cluster_ = std::move(cluster); }
  // Who may pull and push; also signs the pull credentials nodes are given.
  const Auth& auth() const { return auth_; }
  Auth& auth() { return auth_; }

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
  void GetBlob(const ExchangePtr& ex, const std::string& name, const std::string& digest, bool fetched = false);
  void GetManifest(const ExchangePtr& ex, const std::string& name, const std::string& ref);
  void PutManifestRequest(const ExchangePtr& ex, const std::string& name, const std::string& ref);
  // The rest of a manifest push, once its body is in and parsed.
  void StoreManifest(const ExchangePtr& ex, const std::string& name, const std::string& ref,
                     const std::shared_ptr<std::string>& body, const std::shared_ptr<ManifestInfo>& info,
                     const std::string& digest);
  void DeleteManifestRequest(const ExchangePtr& ex, const std::string& name, const std::string& ref);
  void ListTags(const ExchangePtr& ex, const std::string& name);
  void Referrers(const ExchangePtr& ex, const std::string& name, const std::string& digest);
  void StartUploadRequest(const ExchangePtr& ex, const std::string& name, const Caller& caller);
  void MonolithicUpload(const ExchangePtr& ex, const std::string& name, const std::string& digest);
  // The request's body into an upload file of its own, verified and stored as
  // blob `digest` (VerifyAndStore); `done` hears how that went, unless the body
  // was refused part-way (then already answered).
  void ReceiveBlob(const ExchangePtr& ex, const std::string& digest, std::function<void(Status)> done);
  void UploadRequest(const ExchangePtr& ex, const std::string& name, const std::string& id);
  void FinishUpload(const ExchangePtr& ex, const std::string& name, const std::string& id, const std::string& digest);
  // A change to the log: through the cluster when there is one.
  void Submit(store::CommandPtr cmd, std::function<void(Result<std::string>)> reply);
  bool Acting() const { return !cluster_.acting || cluster_.acting(); }
  bool HasPeers() const { return cluster_.has_peers && cluster_.has_peers(); }
  // Streams the blob open as `fd` as the answer, honouring Range; closes `fd`.
  void ServeBlobFile(const ExchangePtr& ex, const std::string& digest, int fd);
  // The peers' routes: a blob's bytes, and a copy of one pushed here.
  void PeerGetBlob(const ExchangePtr& ex);
  void PeerPutBlob(const ExchangePtr& ex);
  bool FromMember(const ExchangePtr& ex);
  // Makes sure a majority of the servers hold `digest` (this one does): copies
  // it to peers that lack it. `done` fires once enough have it, or with why not.
  void ReplicateBlob(const std::string& digest, std::function<void(Status)> done);
  // Fetches `digest` from a peer that has it, verifies and stores it here.
  void FetchBlob(const std::string& digest, std::function<void(Status)> done);
  // Blobs the leader collected, applied from the log: removed here too when
  // nothing references them and they are older than `mark_ms`.
  void RemoveCollected(const std::vector<std::string>& digests, int64_t mark_ms);
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
  Cluster cluster_;
  // Fetches from peers under way: who waits for each digest.
  std::unordered_map<std::string, std::vector<std::function<void(Status)>>> fetching_;
  std::unique_ptr<net::Timer> gc_timer_;
  std::unique_ptr<net::Timer> upload_timer_;
  std::unique_ptr<net::Timer> lifecycle_timer_;
};

}  // namespace berth::registry
