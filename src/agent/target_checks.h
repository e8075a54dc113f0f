// The health checks of load-balanced targets that run on this node
// (docs/agent-protocol.md, `checks` and `targetHealth`). The server sends the
// whole set of checks the node must run on the desired-state stream; each
// target (a task of ours in a target group) is probed here, over TCP or HTTP,
// one probe at a time per target, and its state (healthy or unhealthy, with
// ELB's reason codes) goes back to the server in the agent's reports until the
// server has acknowledged it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "model/lb.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::agent {

// The status codes an HTTP check accepts (model/lb.h, as the server checks them).
using model::ParseMatcher;
using model::StatusMatcher;

enum class CheckProtocol { kHttp, kTcp };

// One check from the document, validated.
struct TargetCheck {
  std::string task_id;
  std::string target_group;
  std::string address;
  int port = 0;
  CheckProtocol protocol = CheckProtocol::kHttp;
  std::string path = "/";        // HTTP only
  std::string matcher = "200";   // HTTP only, as given
  StatusMatcher codes;           // `matcher`, parsed
  uint64_t interval_ms = 30000;  // intervalSeconds, or intervalMs for tests
  uint64_t timeout_ms = 5000;    // timeoutSeconds, or timeoutMs for tests
  int healthy_threshold = 5;
  int unhealthy_threshold = 2;

  // Whether the probe and the state machine are the same (ids aside).
  bool SameSettings(const TargetCheck& o) const;
};

struct ChecksDoc {
  int64_t version = 0;
  std::vector<TargetCheck> targets;
};

// A document holds at most this many checks; one with more is refused.
constexpr size_t kMaxChecks = 10000;
// Of an answer, at most this much is read while looking for its status line.
constexpr size_t kMaxCheckAnswerBytes = 16 * 1024;
// A report carries at most this many `targetHealth` entries; the rest wait.
constexpr size_t kMaxHealthPerReport = 1000;

// Checks the `checks` field of a desired-state line whole. An error names the
// first bad field by its path ("checks.targets[3].port: must be 1-65535").
Result<ChecksDoc> ParseChecks(const json::View& doc);

enum class HealthState { kInitial, kHealthy, kUnhealthy };
const char* HealthStateName(HealthState s);  // "initial", "healthy", "unhealthy"

// What a report says of one target.
struct TargetHealth {
  std::string task_id;
  std::string target_group;
  HealthState state = HealthState::kInitial;
  std::string reason;       // "" when healthy, else "Target.Timeout", ...
  std::string description;  // at most 256 bytes

  // The `targetHealth` entry: {"taskId":…,"targetGroup":…,"state":…,"reason":…,"description":…}.
  std::string ToJson() const;
};

// The checks that run on one node, on the agent's loop. Everything is stopped
// when it is destroyed: no callback of its fires after, and the connections of
// probes in flight are closed (a connect still pending is closed when it ends).
class TargetChecks {
 public:
  // `on_pending` (may be empty) fires on the loop thread each time a target's
  // state changes so that something new is pending for the server; it may not
  // destroy this object.
  TargetChecks(uv_loop_t* loop, std::function<void()> on_pending = {});
  ~TargetChecks();
  TargetChecks(const TargetChecks&) = delete;
  TargetChecks& operator=(const TargetChecks&) = delete;

  // Runs `doc`, the whole set, in place of the one before, when its version is
  // above the one applied (returns false, changing nothing, otherwise). A target
  // new to the set is probed at once; one no longer listed stops being probed
  // and is forgotten; one whose settings changed starts again at `initial`.
  bool Apply(ChecksDoc doc);
  // Stops and forgets every check (the node has none now); the version stays.
  void Clear();
  int64_t version() const { return version_; }
  size_t size() const { return targets_.size(); }

  // What a report carries: up to `max` targets whose state (state and reason)
  // differs from what the server last acknowledged, never one at `initial`, in
  // (task, group) order; and which stream (ForgetAcknowledged) they were for.
  struct Batch {
    std::vector<TargetHealth> entries;
    uint64_t epoch = 0;
  };
  Batch Pending(size_t max = kMaxHealthPerReport) const;
  bool HasPending() const { return !unacknowledged_.empty(); }
  // The server took a report carrying `sent`: an entry still current is done.
  // A batch from before the last ForgetAcknowledged changes nothing.
  void Acknowledge(const Batch& sent);
  // A new stream (a whole set again): the server may have forgotten, so every
  // target not at `initial` is pending again.
  void ForgetAcknowledged();

  // The current state of a target; `initial` for one not checked here.
  TargetHealth Health(const std::string& task_id, const std::string& target_group) const;
  // Probes started since this object was made, for tests.
  uint64_t probes_started() const { return probes_started_; }

 private:
  using Key = std::pair<std::string, std::string>;  // (task id, target group)
  struct Target;
  class Probe;

  void StartProbe(Target* t);
  // A probe of `t` ended: passed, or failed with an ELB reason and a description.
  void Record(Target* t, bool passed, std::string reason, std::string description);
  void NoteChange(Target* t);

  uv_loop_t* loop_;
  std::function<void()> on_pending_;
  int64_t version_ = 0;
  std::map<Key, std::unique_ptr<Target>> targets_;
  std::set<Key> unacknowledged_;  // targets whose state the server has yet to take
  uint64_t probes_started_ = 0;
  uint64_t epoch_ = 0;  // ForgetAcknowledged calls
};

}  // namespace berth::agent
