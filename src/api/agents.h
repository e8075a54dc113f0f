// The agent protocol, server side (docs/agent-protocol.md): registration, the
// long-lived stream that carries each node's full desired task set (with a
// version), then whenever it changes the whole set again or, for agents that ask,
// only what changed since the stream's previous line; reports of observed task states (which are also
// heartbeats), and node liveness: a node whose agent has been away past the grace
// period is lost, and its tasks are STOPPED so their services replace them.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "base/clock.h"
#include "base/metrics.h"
#include "model/state.h"
#include "net/http_server.h"
#include "net/router.h"
#include "store/store.h"

namespace berth::api {

struct AgentOptions {
  int64_t heartbeat_interval_ms = 2000;  // agents report at least this often
  // Heartbeats the server takes per second at most, over all agents: past
  // heartbeat_interval_ms × this many agents, the interval grows with their number
  // (0: no bound).
  int64_t max_heartbeats_per_s = 1000;
  int64_t lost_after_ms = 10000;   // away this long: the node is lost
  int64_t stream_ping_ms = 10000;  // a line on every idle stream, so dead peers show
};

class AgentHub final : public model::StateObserver {
 public:
  AgentHub(model::State* state, store::Store* store, const Clock* clock, AgentOptions options,
           metrics::Registry* metrics = nullptr);
  ~AgentHub() override;

  void AddRoutes(net::http::Router* router);
  // Sends the desired set to every node whose set changed since the last call.
  // Called after each store flush.
  void Flush();
  // Liveness: called about once a second.
  void Tick();
  size_t streams() const { return streams_.size(); }
  // The interval agents are told now: heartbeat_interval_ms, or longer when that
  // many connected agents would exceed max_heartbeats_per_s.
  int64_t HeartbeatInterval() const;

  // model::StateObserver
  void OnNodeDesiredChanged(const model::Node& n) override { dirty_.insert(n.id); }
  void OnNodeRemoved(const model::Node& n) override;
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
  };
  // Logs (agent_logs.cc): a client's GET /v1/tasks/{id}/logs becomes a `logs`
  // line on the node's stream; the agent answers with a streamed POST to
  // /v1/agent/logs/{request}, whose frames are relayed to the client.
  struct LogRequest {
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
  void Send(const std::string& node_id, Stream& s);
  void CloseStream(const std::string& node_id);

  model::State* state_;
  store::Store* store_;
  const Clock* clock_;
  AgentOptions options_;
  int64_t started_ms_;
  std::unordered_map<std::string, Stream> streams_;
  std::unordered_set<std::string> dirty_;
  std::unordered_set<std::string> removed_;    // deregistered, told after the commit
  std::set<std::string> lost_pending_;         // NodeLost submitted, not yet applied
  metrics::Counter* desired_lines_ = nullptr;  // desired-state lines sent, and their bytes
  metrics::Counter* desired_bytes_ = nullptr;
};

}  // namespace berth::api
