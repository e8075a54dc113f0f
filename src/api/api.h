// The native REST API (/v1), its authentication gate, and the open routes
// (/healthz) and /metrics. Handlers validate input, read from the in-memory state,
// and turn every change into a command for the store; the answer to a change goes
// out when its transaction has committed.
#pragma once

#include <functional>
#include <optional>
#include <string_view>

#include "base/clock.h"
#include "base/json.h"
#include "base/metrics.h"
#include "control/scheduler.h"
#include "control/services.h"
#include "model/state.h"
#include "net/http_server.h"
#include "net/router.h"
#include "store/store.h"

namespace berth::control {
class Drains;
class ProxyConfigs;
class RetentionController;
}  // namespace berth::control

namespace berth::api {

class ChangeStreams;

struct Context {
  model::State* state = nullptr;
  store::Store* store = nullptr;
  metrics::Registry* metrics = nullptr;
  const Clock* clock = nullptr;
  control::Scheduler* scheduler = nullptr;
  control::ServiceController* services = nullptr;
  std::string ca_fingerprint;                 // the cluster CA's (hex SHA-256), pinned by the tokens printed
  std::string ca_pem;                         // served at GET /v1/ca
  const model::SecretBox* secrets = nullptr;  // seals the values of secrets
  // The servers of the control plane and the log's state (GET /v1/servers).
  std::function<json::Doc()> servers;
  // Membership (server.cc wires them to the replica). What a joining server needs
  // to be one of this cluster: the CA and its key, the key that seals secrets.
  std::function<Result<json::Doc>()> join_credentials;
  // Adds a server; `done` once it has caught up with the log and holds its role.
  std::function<void(uint64_t id, const std::string& address, std::function<void(Result<json::Doc>)> done)> add_server;
  std::function<void(uint64_t id, std::function<void(Status)> done)> remove_server;
  // A peer's raft connection (GET /v1/raft with Upgrade: berth-raft).
  std::function<void(const net::http::ExchangePtr&)> raft_connect;
  // Submits a command wherever this server is (server::Forwarder: to the leader
  // from a follower); unset: to the store. The dashboard's sessions open and
  // close on any server (api/session.h).
  std::function<void(store::CommandPtr, store::Store::Reply)> submit_anywhere;
  int64_t session_ttl_ms = 12 * 3600 * 1000;  // --session-ttl
  ChangeStreams* streams = nullptr;           // GET /v1/stream (api/stream.h)
  // Stopped tasks by the time they stopped, per cluster (GET /v1/overview).
  const control::RetentionController* retention = nullptr;
  bool tls = true;  // cookies are then Secure
  // Load balancers' members, target groups' targets, proxies' documents
  // (GET /v1/targetgroups/{name}/health); unset: the route answers 503.
  const control::ProxyConfigs* proxies = nullptr;
  // Targets held while their proxies drain them (control/drains.h); unset: none shown.
  const control::Drains* drains = nullptr;
};

// Adds every route to `router`. `ctx` must outlive the router.
void AddRoutes(net::http::Router* router, Context* ctx);

// The task the request's `ref` names (model::State::ResolveTask); when there is
// none, answers 404 TaskNotFound (or 400 TaskIdAmbiguous, naming the candidates)
// and returns nullptr.
const model::Task* ResolveTaskOrAnswer(const model::State& state, const net::http::ExchangePtr& ex,
                                       std::string_view ref);

// The token of an Authorization header "Bearer <token>" (the scheme in any
// case, the token not empty); nullopt for anything else.
std::optional<std::string_view> BearerCredential(std::string_view authorization);

// The authentication gate: on the agent routes a node's certificate (mutual TLS)
// that is the one its node holds (principal "node:<id>"); otherwise a bearer
// token (compared in constant time through its hash), not expired, whose role
// allows the request (agent tokens on the agent routes only, and only they);
// 401 or 403 otherwise. The peer routes take only another server's peer
// certificate (principal "server:<id>").
std::optional<net::http::Response> Authenticate(model::State& state, int64_t now_ms, net::http::Exchange& ex);

// Whether a token of `role` may call a route of `access` (the gate's rule).
bool RoleMay(std::string_view role, net::http::Access access);
// Who may, for a refusal's message ("only deploy and admin tokens may").
std::string WhoMay(net::http::Access access);

// The secret of access key `key` (model::Token::access_key()), opened with
// ctx.secrets, for verifying a request's AWS Signature Version 4. An Error when
// `key` is no access key, the server has no SecretBox, or the sealed secret does
// not open (sealed with another key, or altered). The caller should zero it after use.
Result<std::string> AccessKeySecret(const Context& ctx, const model::Token& key);

// The limits of the token behind `ex` (model/scope.h); nullptr when it has none
// (an unlimited token, a node's certificate, nobody).
const model::TokenScope* LimitsOf(const model::State& state, const net::http::Exchange& ex);
// Whether `ex` may act on `cluster`; answers 403, naming the token's limits, when not.
bool ClusterInScope(const model::State& state, const net::http::ExchangePtr& ex, std::string_view cluster);

// The audit log's observer (net::http::Server::SetObserver): every change (a
// method other than GET/HEAD on a route that audits; for the registry, pushes of
// manifests and blobs, mounts and deletes) and every refusal of a credential (401
// to a request that carried one, 403, 429) becomes an entry (store/audit.h).
void AuditExchange(const model::State& state, store::Store* store, int64_t now_ms, const net::http::Exchange& ex);

}  // namespace berth::api
