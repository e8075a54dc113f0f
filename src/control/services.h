// The service controller: keeps each service at its desired count, replaces
// tasks that stop or sit on lost or draining nodes, rolls deployments forward
// within minimumHealthyPercent and maximumPercent, trips the circuit breaker and
// rolls back, and records the ECS service events.
//
// It observes the state and keeps per-service tallies up to date task by task,
// so a reconciliation costs O(changes), not O(tasks). It runs after every store
// flush on the services whose tallies or settings changed, and once a second on
// services waiting for room; the commands it submits are applied before it runs
// again, so it never acts twice on the same view. It reads time only from its
// Clock, so tests drive it on simulated time.
#pragma once

#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "base/clock.h"
#include "control/scheduler.h"
#include "model/state.h"
#include "store/store.h"

namespace berth::control {

class ServiceController final : public model::StateObserver {
 public:
  ServiceController(model::State* state, store::Store* store, Scheduler* scheduler, const Clock* clock);
  ~ServiceController() override;

  // Acts on every service marked since the last call. Called after each flush.
  void Reconcile();
  // Retries services that could not place tasks. Called about once a second.
  void Tick();

  // Running and pending tasks of each deployment of a service (for answers).
  std::vector<model::DeploymentCounts> Counts(const model::Service& s) const;

  // model::StateObserver
  void OnTaskChanged(const model::Task& t) override;
  void OnNodeChanged(const model::Node& n) override;
  void OnNodeRemoved(const model::Node& n) override;
  void OnTaskReleased(const model::Task& t, const model::Node& n) override;
  void OnServiceChanged(const model::Service& s) override;
  void OnServiceRemoved(const model::Service& s) override;
  void OnReloaded() override;

 private:
  struct Flags {
    bool active = false;    // desired RUNNING, not stopped
    bool stopping = false;  // desired STOPPED, not stopped yet
    bool healthy = false;
    bool unhealthy = false;
    bool running = false;
    bool pending = false;
    bool draining = false;  // on a node that is not ACTIVE (lost nodes' tasks stop)
  };
  struct Tally {
    int64_t active = 0, stopping = 0, healthy = 0, running = 0, pending = 0, draining = 0;
    std::unordered_set<std::string> active_ids;  // which to stop first among equals is unspecified
    std::set<std::string> unhealthy_ids;
    int64_t failed = 0;  // tasks that failed while this deployment rolled out
  };
  struct TaskView {
    std::string key;  // service key
    std::string deployment;
    Flags flags;
  };

  Flags FlagsOf(const model::Task& t) const;
  void Apply(Tally& tally, const std::string& id, const Flags& f, int sign);
  static void Count(Tally& tally, const Flags& f, int sign);  // the counts only, not the id sets
  void Track(const model::Task& t);
  void ReconcileOne(const std::string& key);
  void Event(const model::Service& s, std::string message);
  void StartTasks(const model::Service& s, int64_t count);
  static store::Store::Reply LogRefusal(std::string what, std::string service);
  void StopTasks(const std::vector<std::string>& ids, const std::string& reason);
  std::string NewDeploymentId();

  model::State* state_;
  store::Store* store_;
  Scheduler* scheduler_;
  const Clock* clock_;
  std::unordered_map<std::string, TaskView> tasks_;  // service tasks not stopped
  std::map<std::string, std::map<std::string, Tally>> tallies_;  // service key → deployment → tally
  std::set<std::string> dirty_;
  std::map<std::string, std::string> blocked_;  // service key → why it could not place
  std::map<std::string, int64_t> blocked_event_ms_;
  std::set<std::string> steady_;  // services whose steady-state event was sent
  int64_t starts_left_ = 0;       // this pass's budget of new tasks
};

}  // namespace berth::control
