// The service controller: keeps each service at its desired count, replaces
// tasks that stop or sit on lost or draining nodes, rolls deployments forward
// within minimumHealthyPercent and maximumPercent, trips the circuit breaker and
// rolls back, and records the ECS service events.
//
// It observes the state and keeps per-service tallies up to date task by task,
// so a reconciliation costs O(changes), not O(tasks). It runs after every store
// flush on the services whose tallies or settings changed; the commands it
// submits are applied before it runs again, so it never acts twice on the same
// view. A service that could not place all its tasks is not retried on a clock:
// it waits until room that could fit its tasks appears in its cluster (a task's
// resources released, a node registered, connected or made ACTIVE) or the
// service itself changes. It reads time only from its Clock, so tests drive it
// on simulated time.
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
  // Looks again at services whose deployment is rolling out. Called about once
  // a second.
  void Tick();
  // Placement passes that ran for services already blocked (retries), for tests
  // and metrics.
  uint64_t placement_retries() const { return placement_retries_; }

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
    // Failing a target group's health check within healthCheckGracePeriodSeconds
    // of starting: not replaced yet (looked at again each Tick).
    bool in_grace = false;
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
  std::set<std::string> in_grace_;  // tasks with Flags::in_grace
  void Apply(Tally& tally, const std::string& id, const Flags& f, int sign);
  static void Count(Tally& tally, const Flags& f, int sign);  // the counts only, not the id sets
  void Track(const model::Task& t);
  void ReconcileOne(const std::string& key);
  void Event(const model::Service& s, std::string message);
  void StartTasks(const model::Service& s, int64_t count);
  static store::Store::Reply LogRefusal(std::string what, std::string service);
  // `reply`, counting the command as in flight for service `key` until it is answered.
  store::Store::Reply Tracked(const std::string& key, store::Store::Reply reply);
  void StopTasks(const std::string& key, const std::vector<std::string>& ids, const std::string& reason);
  std::string NewDeploymentId();

  model::State* state_;
  store::Store* store_;
  Scheduler* scheduler_;
  const Clock* clock_;
  std::unordered_map<std::string, TaskView> tasks_;              // service tasks not stopped
  std::map<std::string, std::map<std::string, Tally>> tallies_;  // service key → deployment → tally
  std::set<std::string> dirty_;
  std::map<std::string, int> in_flight_;  // service key → its commands not answered yet
  // A service some of whose tasks found no node: it is tried again only when
  // `woken` (room that fits one of its tasks appeared, or it changed).
  struct Blocked {
    std::string cluster;
    std::string why;
    int64_t cpu = 0, memory = 0;  // one task's
    bool woken = false;
    int64_t event_ms = 0;  // when its last "unable to place" event was added
  };
  // Marks `s` blocked for `why` (adding `event` when it is new, the reason
  // changed or 30 s passed), waiting for room for a task of cpu and memory.
  void Block(const model::Service& s, const std::string& why, const std::string& event, int64_t cpu, int64_t memory);
  void Unblock(const std::string& key);
  void RemoveWaiting(const std::string& key, const Blocked& b);
  // Wakes the blocked services of `cluster` whose task fits in the given free room.
  void WakeBlocked(const std::string& cluster, int64_t free_cpu, int64_t free_memory);
  std::map<std::string, Blocked> blocked_;  // service key → why it could not place
  // The blocked services not yet woken, per cluster, by the memory one task needs.
  std::map<std::string, std::multimap<int64_t, std::string>, std::less<>> waiting_;
  uint64_t placement_retries_ = 0;
  std::set<std::string> steady_;  // services whose steady-state event was sent
  int64_t starts_left_ = 0;       // this pass's budget of new tasks
};

}  // namespace berth::control
