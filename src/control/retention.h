// Retention: what the state stops remembering, so memory and state.db stay flat
// however long the cluster runs. As ECS does, a STOPPED task stays visible for a
// retention period (default one hour), and each service keeps at most a bounded
// number of them (default 100, the newest); past that, the task is forgotten
// through the command path (ForgetTasks: its row deleted in the same transaction,
// memory and observers told as the command applies). INACTIVE task definition
// revisions that no task or service uses are forgotten after the same period,
// the latest revision of each family kept so that a revision number is never
// given twice. Deleted services already leave the state once they are empty
// (RemoveService). Dashboard sessions past their expiry are forgotten too
// (ForgetSessions); a session whose token is revoked already goes with it
// (DeleteToken), and one never outlives its token's expiry.
//
// It keeps the stopped tasks ordered by the time they stopped, per cluster and
// per service, and the sessions ordered by their expiry, as the state tells it
// (an observer), so a tick costs the clusters and what it forgets, not the tasks
// or tokens there are, and GET /v1/overview counts a cluster's recently stopped
// tasks without a walk over all of them. Time comes only from its Clock.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/clock.h"
#include "model/state.h"
#include "store/store.h"

namespace berth::control {

struct RetentionOptions {
  int64_t task_retention_ms = 3600 * 1000;  // a STOPPED task is forgotten this long after it stopped
  int64_t stopped_per_service = 100;        // a service keeps at most this many STOPPED tasks (0: no bound)
  size_t max_per_tick = 20000;              // tasks forgotten per tick at most (the rest next tick)
  int64_t taskdef_scan_ms = 60 * 1000;      // how often INACTIVE revisions are looked at
  size_t sessions_per_tick = 1000;          // expired sessions forgotten per tick at most (the rest next tick)
};

class RetentionController final : public model::StateObserver {
 public:
  RetentionController(model::State* state, store::Store* store, const Clock* clock, RetentionOptions options);
  ~RetentionController() override;

  // Submits what is due to be forgotten. Called about once a second.
  void Tick();

  // Stopped tasks it holds (for tests and metrics).
  size_t stopped_tasks() const { return stopped_; }
  // Sessions it holds, to forget at their expiry (for tests).
  size_t sessions() const { return sessions_.size(); }
  // How many of `cluster`'s tasks stopped at or after `since_ms` and are still
  // remembered: a walk over those only.
  size_t StoppedSince(std::string_view cluster, int64_t since_ms) const;

  // model::StateObserver
  void OnTaskChanged(const model::Task& t) override;
  void OnTaskForgotten(const model::Task& t) override;
  void OnTokenRemoved(const model::Token& t) override;
  void OnCommandApplied(const store::Command& cmd) override;
  void OnReloaded() override;

 private:
  // (stopped_ms, task): the task's entry lives in State::tasks(), which keeps it
  // in place until OnTaskForgotten.
  using Entry = std::pair<int64_t, const model::Task*>;
  void Index(const model::Task& t);
  void Submit(std::vector<std::string> ids);
  void ForgetRevisions(int64_t now_ms);
  void ForgetSessions(int64_t now_ms);

  model::State* state_;
  store::Store* store_;
  const Clock* clock_;
  RetentionOptions options_;
  std::map<std::string, std::set<Entry>, std::less<>> by_cluster_;  // cluster → its stopped tasks
  std::unordered_map<std::string, std::set<Entry>> by_service_;     // service key → its stopped tasks
  size_t stopped_ = 0;                                              // in by_cluster_, all clusters
  std::set<std::pair<int64_t, std::string>> sessions_;              // (expiry, id) of sessions that expire
  std::unordered_set<std::string> over_;                            // services holding more than stopped_per_service
  std::unordered_set<std::string> submitted_;                       // ids in a ForgetTasks not yet applied
  std::unordered_set<std::string> sessions_submitted_;              // ids in a ForgetSessions not yet applied
  int64_t last_taskdef_scan_ms_ = 0;
};

}  // namespace berth::control
