// The Docker agent's decisions: what runs on this node against what should, one
// level-triggered step per task. Every change (a desired set, an engine event, a
// finished call, a periodic resync) runs the same step for the task it touches;
// the step compares what is with what should be and asks for the next call:
// pull, create, start in dependsOn order, stop with the definition's timeout,
// remove. Containers carry labels (berth.task, berth.node, ...), so a restarted
// agent adopts what runs instead of restarting it.
//
// It makes no call itself: every call goes through a CallQueue (at most
// `docker_concurrency` in flight; stops and removals first; a create or start of
// a task told to stop meanwhile is dropped, and a container created for it is
// removed, never started) to a ContainerEngine, the seam unit tests fill with a
// fake engine. Time comes in through Tick. The server side (registration, the
// desired-state stream, reports) is NodeAgent's (node_agent.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "agent/call_queue.h"
#include "agent/container_engine.h"
#include "agent/container_spec.h"
#include "base/json.h"
#include "model/policy.h"

namespace berth::agent {

// One task of the node's desired set, as the server's stream said it.
struct DesiredTask {
  std::string cluster, service, task_definition, desired, server_last;
  bool fresh = false;  // in the latest line: its server_last is current
  // Sent only for a task about to start; taken (and cleared) when it is planned.
  std::vector<SecretValue> secrets;
  std::string secret_error;  // why the server could not send them
};

// Folds one line of the desired-state stream (docs/agent-protocol.md) into
// `tasks` and `defs`: the whole set (`whole`, a "desired" line) or what changed
// since the line before (a "changes" line). A line with the cluster's task policy
// sets `policy`; an unreadable one allows nothing privileged and says why in
// `*policy_error`. Secret values arrive in base64; one that does not decode
// becomes the task's secret_error.
void TakeDesiredLine(json::View msg, bool whole, std::map<std::string, DesiredTask>* tasks,
                     std::map<std::string, json::Doc, std::less<>>* defs, model::TaskPolicy* policy,
                     std::string* policy_error);

struct ReconcilerOptions {
  size_t docker_concurrency = 8;  // engine calls in flight at most (pulls apart)
  size_t pull_concurrency = 3;    // image pulls in flight at most
  int64_t default_stop_timeout_s = 30;
  int64_t container_retention_ms = 3600 * 1000;  // stopped containers are removed after this
  int64_t image_cleanup_after_ms = 3600 * 1000;  // images we pulled, unused this long, are removed
  int64_t resync_ms = 30 * 1000;                 // full comparison with the engine, besides its events
  int64_t cleanup_ms = 60 * 1000;                // how often stopped containers and idle images are looked at
};

class Reconciler {
 public:
  struct Hooks {
    // A call found the engine not answering: the owner reconnects, then calls Sync.
    std::function<void()> engine_lost;
    // The X-Registry-Auth JSON for pulling `image` (may be empty), given to `done`
    // (which may come later: credentials can be fetched first).
    std::function<void(const std::string& image, std::function<void(std::string)> done)> registry_auth;
    // The images this agent pulled and when a task last used them changed (to keep).
    std::function<void(const std::map<std::string, int64_t>&)> pulled_changed;
    // May this task run here? Asked once, before it is planned; a refusal stops
    // the task with the reason (the task policy, model/policy.h).
    std::function<Status(const TaskIdentity&, json::View td)> admit;
    // Writes a container's secret files into a fresh directory on a tmpfs and
    // returns it (bound at /run/secrets); `forget_secrets` removes a task's.
    std::function<Result<std::string>(const std::string& task_id, const std::string& container,
                                      const std::vector<std::pair<std::string, std::string>>& files)>
        write_secrets;
    std::function<void(const std::string& task_id)> forget_secrets;
    // At the first sync: every task's secret files but those of `keep` go.
    std::function<void(const std::set<std::string>& keep)> sweep_secrets;
  };

  Reconciler(ContainerEngine* engine, ReconcilerOptions options, Hooks hooks);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  void SetNode(const std::string& node_id) { node_id_ = node_id; }
  // Images this agent pulled earlier (unix seconds of last use), from its state dir.
  void SetPulled(std::map<std::string, int64_t> pulled) { pulled_ = std::move(pulled); }

  // The engine answers (at start, or again after it was lost): subscribes to its
  // events first, then lists our containers and folds them in (adoption at the
  // first sync), then steps every task. `done` fires when the listing is in.
  void Sync(std::function<void(Status)> done = nullptr);
  // The owner found the engine gone: no call is made until the next Sync.
  void EngineDown();
  bool ready() const { return ready_; }
  // Adoption is done: desired sets may be applied.
  bool synced() const { return synced_; }

  // Makes the node's tasks match the whole desired set (level-triggered). Reads
  // and clears each entry's `fresh`. `defs`: the task definitions by
  // "family:revision".
  void ApplyDesired(std::map<std::string, DesiredTask>& desired,
                    const std::map<std::string, json::Doc, std::less<>>& defs);
  // The node was deregistered: every task stops.
  void StopAll();

  // Periodic work: the resync and the cleanup when due. `now_ms`: a monotonic clock.
  void Tick(int64_t now_ms);

  // Reports: what changed since the server last acknowledged it, at most `max`
  // tasks (id, report JSON), then the acknowledgement of what was sent.
  std::vector<std::pair<std::string, std::string>> PendingReports(size_t max) const;
  void Acknowledged(const std::string& task_id, const std::string& report);

  // The Docker id of a task's container (the first when `container` is empty),
  // or "" when this node does not track it.
  std::string ContainerId(const std::string& task_id, const std::string& container) const;

  const CallQueue& calls() const { return calls_; }
  size_t tasks() const { return tasks_.size(); }
  // A task's status as reported (PENDING, RUNNING, STOPPED), or "" if unknown.
  std::string TaskStatus(const std::string& task_id) const;

 private:
  struct ContainerRec {
    std::string name;   // the container definition's name
    std::string id;     // Docker's id, once created or adopted
    std::string state;  // Docker's: created, running, exited, dead, ... ("" before create)
    bool exited = false;
    int64_t exit_code = 0;
    bool oom = false;
    std::string health = "UNKNOWN";
    std::string bindings = "[]";  // networkBindings JSON
    bool busy = false;            // a call for it is queued or in flight
    bool gone = false;            // no longer in the engine
    bool never_started = false;   // removed before it ran: it has no exit code
    std::string error;            // why it could not be created or started
  };
  struct TaskRec {
    TaskIdentity ident;
    std::string desired = "RUNNING";
    bool in_set = true;       // in the latest desired set
    std::string server_last;  // lastStatus the server last told us
    std::unique_ptr<TaskPlan> plan;
    std::vector<ContainerRec> containers;  // in plan order once planned
    std::string status = "PENDING";        // PENDING, RUNNING, STOPPED (what we report)
    std::string stop_reason;               // set once the task must stop
    bool stopping = false;
    bool network_ready = false;
    bool network_busy = false;
    std::string acked;  // the report the server last acknowledged
    ContainerRec* Find(std::string_view name) {
      for (ContainerRec& c : containers) {
        if (c.name == name) return &c;
      }
      return nullptr;
    }
  };

  TaskRec* FindTask(const std::string& id);
  TaskRec* Adopt(const std::string& task_id, const std::map<std::string, std::string>& labels);
  void OnEvent(const ContainerEvent& e);
  void Vanished(TaskRec& t, ContainerRec& rec);
  void Inspect(const std::string& task_id, const std::string& name, const std::string& ref);
  static void Observe(ContainerRec& rec, const ContainerStatus& s);
  static bool Satisfied(TaskRec& t, const std::string& target, const std::string& condition, bool* failed);
  void Step(TaskRec& t);
  void StopStep(TaskRec& t);
  void CreateNetwork(TaskRec& t);
  void Launch(TaskRec& t, size_t index);
  void Created(const std::string& task_id, const std::string& name, const std::string& docker_name,
               Result<std::string> r);
  void StartContainer(TaskRec& t, ContainerRec& c);
  void RemoveUnstarted(TaskRec& t, ContainerRec& c);
  void EnsureImage(const std::string& image, std::function<void(Status)> done);
  void Plan(TaskRec& t, json::View td, const DesiredTask& d);
  Status PlanSecrets(TaskRec& t, json::View td, const DesiredTask& d, PlanOptions* po);
  std::string ReportOf(const TaskRec& t) const;
  bool StillWanted(const std::string& task_id) const;
  // The engine did not answer (as opposed to refusing): no task is blamed; the
  // owner reconnects, and the Sync after it steps every task again.
  bool Transient(const Error& e);
  void Blame(TaskRec& t, ContainerRec& c, const Error& e, const char* what);
  std::pair<TaskRec*, ContainerRec*> Returned(const std::string& task_id, const std::string& name);
  void Cleanup();
  void CleanupImages();
  void NotePulled(const std::string& image);

  ContainerEngine* engine_;
  ReconcilerOptions o_;
  Hooks hooks_;
  CallQueue calls_;
  CallQueue pulls_queue_;
  std::string node_id_;
  bool ready_ = false;
  bool synced_ = false;  // adoption done
  bool syncing_ = false;
  int64_t now_ms_ = 0;
  int64_t last_sync_ms_ = 0;
  int64_t last_cleanup_ms_ = 0;
  std::unique_ptr<EventWatch> watch_;
  std::map<std::string, TaskRec> tasks_;
  std::map<std::string, std::vector<std::function<void(Status)>>> pulls_;  // image → waiters
  std::map<std::string, int64_t> pulled_;                                  // image → unix seconds it was last used
  std::shared_ptr<bool> alive_;  // false once destroyed: late callbacks do nothing
};

}  // namespace berth::agent
