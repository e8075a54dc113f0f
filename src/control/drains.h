// Draining (docs/load-balancing.md, "Draining"): a task that is a target of a
// load-balanced group and is told to stop keeps running on its node until every
// proxy that may send it traffic has taken it out of rotation and finished what
// it had in flight, so no request is cut by the stop.
//
// When a RUNNING target's task becomes desired STOPPED, the task is *held*: its
// agent is still told to run it (AgentHub asks Held), while the documents of the
// member nodes of the load balancers using its groups list it `draining`. The
// versions those documents had at the first Settle after the stop are what each
// node's proxy must acknowledge. The task is released (its agent is told to stop
// it) once every such node
//   - has reported a proxy version at least that one (or is gone: not
//     registered, or its agent away for grace_ms since the drain began), and
//   - reported the task among its drained targets (nothing in flight to it), or
//     the largest deregistration delay of its groups has run out since the
//     drain began.
// A node that neither acknowledges nor goes (a proxy that refused its document)
// holds the task at most the delay plus grace_ms; then it is released anyway,
// logged with the nodes it did not hear from.
//
// The leader's memory only, not state: after a failover or a restart the new
// leader holds every target still to stop and asks its own documents' versions.
// Held errs on the side of running a task longer, never shorter.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "model/state.h"

namespace berth::control {

class ProxyConfigs;

struct DrainOptions {
  // A member node whose agent has been away this long (since the drain began, or
  // since it went, whichever is later) is not waited for.
  int64_t grace_ms = 10000;
};

// One held task, as `berth tg health` shows it.
struct DrainView {
  int64_t since_ms = 0;
  int64_t delay_ms = 0;                     // the largest deregistration delay of its groups
  std::vector<std::string> unacknowledged;  // member nodes whose proxy has not applied its removal
  std::vector<std::string> in_flight;       // member nodes that applied it and still have something in flight
};

class Drains final : public model::StateObserver {
 public:
  Drains(model::State* state, const ProxyConfigs* proxies, const Clock* clock, DrainOptions options = {});
  ~Drains() override;

  // Whether the agent of the task must still be told to run it.
  bool Held(std::string_view task_id) const { return held_.count(std::string(task_id)) > 0; }
  // What node `node`'s agent reported: the proxy version it applied and the
  // targets listed draining in it that have nothing in flight on any worker.
  // Returns whether it differs from what the node reported before (a heartbeat
  // that repeats it settles nothing).
  bool Reported(const std::string& node, int64_t version, std::vector<std::string> drained);
  // The proxies' documents were just rebuilt (ProxyConfigs::Flush): drains
  // begun since take the versions of the documents that drain them, then
  // Settle. Only here: a version read before that rebuild could be one that
  // still routes to the task.
  void AfterProxiesFlushed();
  // Releases every task whose drain is done: State::NodeDesiredChanged on its
  // node, so its agent hears the stop. Called after each report that carries
  // proxy news and about once a second, for the delays and the grace; nothing
  // before the first AfterProxiesFlushed of this leadership.
  void Settle();
  // The drain of a held task, as of now; false when the task is not held.
  bool Describe(std::string_view task_id, DrainView* out) const;
  // Leadership changed: reports heard as leader before are forgotten, and the
  // versions to wait for are taken again from this server's documents.
  void Lead(bool leading);
  size_t held() const { return held_.size(); }

  // model::StateObserver
  void OnTaskChanged(const model::Task& t) override;
  void OnTaskForgotten(const model::Task& t) override { Forget(t.id); }
  void OnReloaded() override;

 private:
  struct Drain {
    std::string node;  // the task's
    int64_t since_ms = 0;
    bool versions_known = false;
    int64_t delay_ms = 0;
    std::map<std::string, int64_t> wait_for;  // member node → the document version it must apply
  };
  struct Report {
    int64_t version = 0;
    std::unordered_set<std::string> drained;
  };
  // Why a drain is not done: the nodes not acknowledged and those with something in flight.
  void Pending(const std::string& id, const Drain& d, int64_t now, std::vector<std::string>* unacked,
               std::vector<std::string>* in_flight) const;
  void TakeVersions(const model::Task& t, Drain& d) const;
  void Consider(const model::Task& t);
  void Forget(const std::string& id);

  model::State* state_;
  const ProxyConfigs* proxies_;
  const Clock* clock_;
  DrainOptions options_;
  std::unordered_map<std::string, Drain> held_;  // by task id
  // Tasks released, until they stop: never held again.
  std::unordered_set<std::string> released_;
  std::unordered_map<std::string, Report> reports_;  // by node
  bool flushed_ = false;                             // the documents were rebuilt since this leadership began
};

}  // namespace berth::control
