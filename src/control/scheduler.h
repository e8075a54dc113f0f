// The control plane's scheduler: one placement engine per cluster, kept in step
// with the state as commands apply (it observes the state), and the translation of
// ECS placement JSON into engine requests.
//
// Planning accounts the planned tasks in the engine at once, so plans made before
// their commands apply never overbook a node; when the PlaceTasks command applies,
// those tasks are recognised and not counted twice. A plan whose command fails is
// given back with Release().
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/json.h"
#include "model/state.h"
#include "sched/engine.h"

namespace berth::control {

class ProxyConfigs;

// ECS placementConstraints and placementStrategy JSON (either may be invalid View)
// into the parts of an engine request. Errors name the field path under `path`.
Status ParsePlacement(json::View constraints, json::View strategies, std::string_view path, sched::Request* out);

class Scheduler final : public model::StateObserver {
 public:
  explicit Scheduler(model::State* state, uint64_t seed = 0x5eed);
  ~Scheduler() override;

  struct Plan {
    std::vector<std::string> nodes;  // one per task placed
    std::vector<std::string> task_ids;
    std::string reason;  // why the rest could not be placed
  };
  // Places up to `count` tasks of `td` in `cluster` under `request`'s constraints
  // and strategies (its shape is filled from `td`), with fresh task ids that
  // begin with `now_ms` (so they sort by creation time).
  Plan Place(const std::string& cluster, const model::TaskDefinition& td, sched::Request request, int count,
             int64_t now_ms);
  // Place() calls so far (a service waiting for room must not make them on a clock).
  uint64_t passes() const { return passes_; }
  // Gives back planned tasks whose command was refused.
  void Release(const std::string& cluster, const model::TaskDefinition& td, const std::string& group, const Plan& plan);

  // Listener ports of the load balancers a node is a member of are reserved on
  // it like its reservedPorts (control/proxy_config.h); unset: none are.
  void SetProxyConfigs(const ProxyConfigs* proxies);

  // model::StateObserver
  void OnCommandApplied(const store::Command& cmd) override;
  void OnNodeChanged(const model::Node& n) override;
  void OnNodeRemoved(const model::Node& n) override;
  void OnTaskAccounted(const model::Task& t, const model::Node& n) override;
  void OnTaskReleased(const model::Task& t, const model::Node& n) override;
  void OnReloaded() override;

 private:
  struct NodeEntry {
    sched::Engine::NodeRef ref;
    std::string signature;  // resources and attributes, to notice a re-registration
  };
  struct ClusterEngine {
    sched::Engine engine;
    std::unordered_map<std::string, NodeEntry> nodes;
    std::vector<std::string> ids;  // ref → node id
    explicit ClusterEngine(uint64_t seed) : engine(seed) {}
  };
  ClusterEngine& For(const std::string& cluster);
  void AddNode(ClusterEngine& ce, const model::Node& n);
  static sched::TaskShape Shape(const model::Task& t);
  // Resources, attributes and reserved ports (its own and its listeners').
  std::string Signature(const model::Node& n) const;
  std::vector<std::pair<int, bool>> Reserved(const model::Node& n) const;

  model::State* state_;
  uint64_t seed_;
  std::map<std::string, std::unique_ptr<ClusterEngine>> engines_;
  std::unordered_set<std::string> provisional_;  // planned task ids not applied yet
  uint64_t passes_ = 0;
  const ProxyConfigs* proxies_ = nullptr;
};

}  // namespace berth::control
