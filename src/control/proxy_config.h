// The proxies' configuration (docs/load-balancing.md, "The proxy's
// configuration"): which nodes each load balancer runs on (its `memberOf`
// expression over the nodes' attributes), the targets of each target group (the
// tasks of the services that name it, with their node's address, host port and
// ELB state), and for every node that is a member of at least one load balancer
// the JSON document its proxy runs, with a version that grows when it changes.
//
// Kept in step with the state by observing it, and rebuilt lazily: a change
// marks the target groups, load balancers or nodes it touches, and Flush
// rebuilds only the documents of the nodes those reach, once per distinct set of
// load balancers (nodes of the same load balancers share one document body), so
// a task's change costs the members of the load balancers that use its group,
// not every node.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "model/lb.h"
#include "model/secret.h"
#include "model/state.h"

namespace berth::sched {
class Expr;
}

namespace berth::control {

// One target of a group, as `berth tg health` shows it and the document carries it.
struct Target {
  std::string task_id;
  std::string node;
  std::string address;      // the node's (model::Node::address)
  int port = 0;             // the host port bound to the container port; 0 while not known
  std::string state;        // initial, healthy, unhealthy, draining
  std::string reason;       // ELB's reason code; empty when healthy
  std::string description;  // unhealthy by its group's check: what the check saw
};

// The target task `t` is for `slb`, or nullopt once it is STOPPED. States, with
// ELB's reason codes: desired STOPPED but not yet STOPPED → draining
// (Target.DeregistrationInProgress); PROVISIONING or PENDING → initial
// (Elb.RegistrationInProgress); RUNNING with a health check not yet HEALTHY →
// initial (Elb.InitialHealthChecking); UNHEALTHY → unhealthy
// (Target.FailedHealthChecks); RUNNING without a host port bound to the
// container port → unhealthy (Target.PortUnavailable); a group with its health
// check enabled: not reported yet → initial (Elb.InitialHealthChecking), else as
// the task's node last reported it (Task::TargetHealth); else healthy.
std::optional<Target> TargetOf(const model::State& state, const model::Task& t, const model::ServiceLoadBalancer& slb);

class ProxyConfigs final : public model::StateObserver {
 public:
  ProxyConfigs(model::State* state, const Clock* clock);
  ~ProxyConfigs() override;
  // Opens the secrets that hold HTTPS and TLS listeners' certificates, which
  // the documents carry (to member nodes only). Unset: none can be given.
  void SetSecrets(const model::SecretBox* secrets) { secrets_ = secrets; }
  // The certificate and key in secret `name`, opened and split.
  Result<model::CertificatePem> OpenCertificate(const std::string& name) const;

  // Rebuilds what the changes since the last call may have changed, and gives
  // each node whose document changed a new desired version
  // (State::NodeDesiredChanged), so its agent gets a line. The agent hub calls it
  // at the start of its own Flush, after each store flush.
  void Flush();

  // The document of node `id` ("{"version":N,"listeners":[...],"targetGroups":[...]}"),
  // or "" when the node is a member of no load balancer. As of the last Flush.
  std::string Document(std::string_view id) const;
  int64_t Version(std::string_view id) const;
  // The target health checks node `id` runs (docs/agent-protocol.md, "checks"):
  // {"version":N,"targets":[...]} for its RUNNING tasks that are targets of
  // groups with their check enabled; "" (version 0) when it never had one.
  std::string Checks(std::string_view id) const;
  int64_t ChecksVersion(std::string_view id) const;
  // Whether node `n` is a member of load balancer `lb` (its cluster, and its
  // expression true of the node or empty).
  bool IsMember(const model::LoadBalancer& lb, const model::Node& n) const;
  // The nodes `lb` runs on, as of the last Flush.
  std::vector<std::string> Members(const model::LoadBalancer& lb) const;
  // The listener ports of the load balancers `n` is a member of (TCP), for
  // placement: no task is given them on that node. Computed from the state, not
  // from the last Flush.
  std::vector<std::pair<int, bool>> ListenerPorts(const model::Node& n) const;
  // The targets of group `tg` (every task of the services naming it that is not STOPPED).
  std::vector<Target> Targets(const model::TargetGroup& tg) const;
  // The nodes whose proxies serve `tg`: the members of the load balancers whose
  // listeners or rules name it, as of the last Flush.
  std::set<std::string> NodesServing(const model::TargetGroup& tg) const;

  // model::StateObserver
  void OnNodeChanged(const model::Node& n) override;
  void OnNodeRemoved(const model::Node& n) override;
  void OnTaskChanged(const model::Task& t) override;
  void OnTaskForgotten(const model::Task& t) override;
  void OnCommandApplied(const store::Command& cmd) override;
  void OnReloaded() override;

 private:
  struct NodeDoc {
    std::set<std::string> lbs;                // the load balancers' keys ("cluster/name") it is a member of
    std::shared_ptr<const std::string> body;  // the document without its version, shared by nodes of the same lbs
    int64_t version = 0;
  };
  const sched::Expr* ExprOf(const std::string& text) const;
  std::string Body(const std::string& cluster, const std::set<std::string>& lbs) const;
  std::string ChecksBody(const model::Node& n) const;
  void FlushChecks();
  void IndexTask(const model::Task& t);
  void ReindexTasks();
  void MarkGroup(const std::string& cluster, const std::string& tg);

  model::State* state_;
  const Clock* clock_;
  const model::SecretBox* secrets_ = nullptr;
  mutable std::map<std::string, std::shared_ptr<const sched::Expr>, std::less<>> exprs_;
  // Tasks of each target group ("cluster/name"), by id, not yet STOPPED.
  std::unordered_map<std::string, std::set<std::string>> group_tasks_;
  // Nodes that are or were members of a load balancer (one that no longer is
  // keeps an empty document, so its proxy is told to stop listening).
  std::unordered_map<std::string, NodeDoc> docs_;
  std::unordered_map<std::string, std::set<std::string>> lb_members_;  // "cluster/name" → node ids
  bool all_dirty_ = true;
  std::set<std::string> dirty_nodes_;     // membership may have changed
  std::set<std::string> dirty_clusters_;  // a load balancer or listener changed: every node of the cluster
  std::set<std::string> dirty_groups_;    // targets changed ("cluster/name")
  struct ChecksDoc {
    std::string body;  // without its version
    int64_t version = 0;
  };
  std::unordered_map<std::string, ChecksDoc> checks_;  // by node: what it checks
  std::set<std::string> dirty_checks_;                 // nodes whose checks may have changed
};

}  // namespace berth::control
