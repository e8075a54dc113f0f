// The agent protocol, server side (docs/agent-protocol.md): registration, the
// long-lived stream that carries each node's full desired task set (with a
// version), then whenever it changes the whole set again or, for agents that ask,
// only what changed since the stream's previous line; reports of observed task states (which are also
// heartbeats), and node liveness: a node whose agent has been away past the grace
// period is lost, and its tasks are STOPPED so their services replace them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/metrics.h"
#include "model/commands.h"
#include "model/state.h"
#include "model/task.h"
#include "net/http_server.h"
#include "net/router.h"
#include "store/store.h"

namespace berth::control {
class Drains;
class ProxyConfigs;
}  // namespace berth::control

namespace berth::api {

struct AgentOptions {
  int64_t heartbeat_interval_ms = 2000;  // agents report at least this often
  // Heartbeats the server takes per second at most, over all agents: past
  // heartbeat_interval_ms × this many agents, the interval grows with their number
  // (0: no bound).
  int64_t max_heartbeats_per_s = 1000;
  int64_t lost_after_ms = 10000;   // away this long: the node is lost
  int64_t stream_ping_ms = 10000;  // a line on every idle stream, so dead peers show
  // Node identities (mutual TLS): signs a node's certificate from its signing
  // request (PEM) for `node_id`; returns the certificate (PEM). Unset: nodes join
  // bound to their token only.
  std::function<Result<std::string>(const std::string& csr_pem, const std::string& node_id)> issue_node_cert;
  std::string ca_pem;  // given to joining agents with their certificate
  // Pull credentials for a node: a registry token (subject "node:<id>") allowing
  // only pulls of `repository`, short-lived. Unset: the route answers 404.
  std::function<std::string(const std::string& node_id, const std::string& repository)> issue_pull_token;
  int64_t pull_token_ttl_ms = 0;
  // Opens the secrets a task takes, for the node that starts it (model/secret.h).
  const model::SecretBox* secrets = nullptr;
  // The URLs of every server of the cluster ("https://host:port"), told to agents
  // when they register so they can find the leader after a failover. Unset: the
  // registration answer names none.
  std::function<std::vector<std::string>()> server_urls;
  // The leader's raft term, written on every desired-state and deregistered line
  // (fencing: an agent refuses lines of a term older than one it has seen).
  std::function<uint64_t()> term;
};

// The repository an image reference names on a registry ("host:port/a/b:tag" and
// "host:port/a/b@sha256:..." give "a/b"), or "" when it names no registry host.
std::string RepositoryOf(std::string_view image);

// One task of an agent's report (POST /v1/agent/nodes/{id}/report), checked.
struct ReportedTask {
  std::string task_id;
  std::string last;  // PENDING, RUNNING or STOPPED
  std::string reason;
  std::vector<model::ContainerState> containers;  // empty when not given
  std::string containers_text;                    // as given, printed again; "[]" when not given
};
// The `tasks` array of a report body (an invalid View: no tasks), every entry
// checked; the error names the first bad field by its path ("tasks[2].lastStatus").
Result<std::vector<ReportedTask>> ParseReportedTasks(json::View tasks);
// The `targetHealth` array of a report body (an invalid View: none), at most
// kMaxHealthReported entries, every one checked; descriptions are cut to 256
// bytes. The error names the first bad field by its path.
inline constexpr size_t kMaxHealthReported = 1000;
Result<std::vector<model::ReportTasks::Health>> ParseTargetHealth(json::View list);

// The largest log frame an agent may send (agent_logs.cc).
inline constexpr size_t kMaxLogFrame = 1 << 20;
// Takes the whole log frames ("<hex length>\n<bytes>") at the front of `buf`,
// hands each one's bytes to `emit` (a "0\n" keep-alive gives nothing), and erases
// them; a partial frame stays for the next call. Fails on a header that is not a
// length in hex up to kMaxLogFrame, or that runs past 16 bytes without its newline.
Status TakeLogFrames(std::string* buf, const std::function<void(std::string_view)>& emit);

class AgentHub final : public model::StateObserver {
 public:
  AgentHub(model::State* state, store::Store* store, const Clock* clock, AgentOptions options,
           metrics::Registry* metrics = nullptr);
  ~AgentHub() override;

  void AddRoutes(net::http::Router* router);
  // Sets AgentOptions::issue_pull_token (the registry starts after the hub).
  void SetPullTokens(std::function<std::string(const std::string&, const std::string&)> issue, int64_t ttl_ms) {
    options_.issue_pull_token = std::move(issue);
    options_.pull_token_ttl_ms = ttl_ms;
  }
  // The proxies' configurations (control/proxy_config.h): flushed at the start of
  // Flush, and carried as "proxy" on the desired lines of member nodes. Unset: none.
  void SetProxyConfigs(control::ProxyConfigs* proxies) { proxies_ = proxies; }
  // Draining (control/drains.h): a held task is still sent to be run; agents'
  // `proxyDrained` reports go to it, and it is settled after the proxies' flush,
  // after each report that carries proxy news, and on Tick. Unset: none held.
  void SetDrains(control::Drains* drains) { drains_ = drains; }
  // Sends the desired set to every node whose set changed since the last call.
  // Called after each store flush.
  void Flush();
  // Liveness: called about once a second.
  void Tick();
  // This server gained the cluster's leadership (agents away count from now, so
  // they have the grace period to come over) or lost it (every stream ends: the
  // agents go to the new leader).
  void Lead(bool leading);
  size_t streams() const { return streams_.size(); }
  // The interval agents are told now: heartbeat_interval_ms, or longer when that
  // many connected agents would exceed max_heartbeats_per_s.
  int64_t HeartbeatInterval() const;
  // The servers' URLs as a JSON array, looked up at most once a second.
  const std::string& ServersJson() const;

  // model::StateObserver
  void OnNodeDesiredChanged(const model::Node& n) override { dirty_.insert(n.id); }
  void OnNodeRemoved(const model::Node& n) override;
  void OnTokenRemoved(const model::Token& t) override { removed_tokens_.insert(t.id); }
  void OnReloaded() override;

 private:
  struct Stream {
    net::http::ExchangePtr ex;
    uint64_t sent_version = UINT64_MAX;  // none sent yet
    int64_t last_write_ms = 0;
    int64_t interval_ms = 0;  // the heartbeat interval the agent was told last
    // An agent that asked for `changes` lines (?changes=1) gets the whole set
    // first, then only what differs from what this stream carried: each task id
    // sent (true once it was sent to be stopped), and each task definition.
    bool changes = false;
    std::unordered_map<std::string, bool> sent;
    std::unordered_set<std::string> defs;
    std::string policy;           // the cluster's task policy as last sent
    std::string servers;          // the cluster's servers as last sent
    int64_t proxy_version = -1;   // the proxy configuration's version as last sent
    int64_t checks_version = -1;  // the target health checks' version as last sent
  };
  // Logs (agent_logs.cc): a client's GET /v1/tasks/{id}/logs becomes a `logs`
  // line on the node's stream; the agent answers with a streamed POST to
  // /v1/agent/logs/{request}, whose frames are relayed to the client.
  struct LogRequest {
    std::string node;  // the only node that may answer
    net::http::ExchangePtr client;
    net::http::ExchangePtr agent;  // once the agent's POST arrived
    int64_t deadline_ms = 0;       // the agent must answer by then
    std::string frame;             // a partial frame of the agent's body
  };
  void AddLogRoutes(net::http::Router* router);
  void ExpireLogRequests(int64_t now_ms);
  std::map<std::string, LogRequest> log_requests_;

  // The node's whole set (`desired`), or for a stream that takes them and has
  // had its first line, what changed since its last line (`changes`).
  std::string DesiredMessage(const model::Node& n, Stream* s) const;
  // Whether the node's agent is told to stop `t`: desired STOPPED and not held
  // while its proxies drain it.
  bool Stopping(const model::Task& t) const;
  void AppendSecrets(std::string* out, const model::TaskDefinition& td, const std::string& cluster) const;
  void Send(const std::string& node_id, Stream& s);
  // Sends the lines of the nodes whose desired set changed.
  void SendDirty();
  void CloseStream(const std::string& node_id);

  model::State* state_;
  store::Store* store_;
  const Clock* clock_;
  AgentOptions options_;
  int64_t started_ms_;
  std::unordered_map<std::string, Stream> streams_;
  std::unordered_set<std::string> dirty_;
  mutable std::string servers_json_;
  mutable int64_t servers_at_ms_ = INT64_MIN;
  std::unordered_set<std::string> removed_;         // deregistered, told after the commit
  std::unordered_set<std::string> removed_tokens_;  // revoked: their nodes' streams close after the commit
  // May the caller (Exchange::principal) act for node `n`? Its certificate's node,
  // or the token a certificate-less node joined with. Answers 403 when not.
  bool MayActFor(const net::http::ExchangePtr& ex, const model::Node& n);
  std::set<std::string> lost_pending_;         // NodeLost submitted, not yet applied
  metrics::Counter* desired_lines_ = nullptr;  // desired-state lines sent, and their bytes
  metrics::Counter* desired_bytes_ = nullptr;
  control::ProxyConfigs* proxies_ = nullptr;
  control::Drains* drains_ = nullptr;
};

}  // namespace berth::api
