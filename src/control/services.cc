#include "control/services.h"

#include <algorithm>
#include <cstdint>

#include "base/crypto.h"
#include "base/log.h"

namespace berth::control {

namespace {

std::string Plural(int64_t n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); }

std::string Short(const std::string& id) { return std::string(model::State::ShortTaskId(id)); }

}  // namespace

ServiceController::ServiceController(model::State* state, store::Store* store, Scheduler* scheduler, const Clock* clock)
    : state_(state), store_(store), scheduler_(scheduler), clock_(clock) {
  state_->AddObserver(this);
  OnReloaded();
}

ServiceController::~ServiceController() = default;

ServiceController::Flags ServiceController::FlagsOf(const model::Task& t) const {
  Flags f;
  if (t.stopped()) return f;
  f.active = t.desired == "RUNNING";
  f.stopping = t.desired == "STOPPED";
  f.running = t.last == "RUNNING";
  f.pending = !f.running;
  // A target of load balancers counts as healthy only while it passes the
  // health check of each of its target groups (as ECS counts ELB health), and is
  // replaced when one fails it past the service's grace period.
  // (No target group at all, the common case at scale: no lookup per change.)
  bool passing = true, failing = false;
  const model::Service* svc =
      f.active && !state_->target_groups().empty() ? state_->FindService(t.cluster, t.service) : nullptr;
  if (svc) {
    for (const model::ServiceLoadBalancer& slb : svc->load_balancers) {
      const model::TargetGroup* tg = state_->FindTargetGroup(t.cluster, slb.target_group);
      if (!tg || !tg->check.enabled) continue;
      const model::Task::TargetHealth* h = t.TargetHealthOf(slb.target_group);
      if (!h || h->state != "healthy") passing = false;
      if (h && h->state == "unhealthy") failing = true;
    }
    if (failing && clock_->NowUnixMs() - t.started_ms < svc->health_check_grace_s * 1000) {
      failing = false;
      f.in_grace = true;
    }
  }
  f.healthy = f.active && t.healthy() && passing;
  f.unhealthy = f.active && (t.health == "UNHEALTHY" || failing);
  const model::Node* n = state_->FindNode(t.node);
  f.draining = f.active && (!n || n->status != "ACTIVE");
  return f;
}

void ServiceController::Apply(Tally& tally, const std::string& id, const Flags& f, int sign) {
  Count(tally, f, sign);
  if (sign > 0) {
    if (f.active) tally.active_ids.insert(id);
    if (f.unhealthy) tally.unhealthy_ids.insert(id);
  } else {
    tally.active_ids.erase(id);
    tally.unhealthy_ids.erase(id);
  }
}

void ServiceController::Count(Tally& tally, const Flags& f, int sign) {
  tally.active += sign * f.active;
  tally.stopping += sign * f.stopping;
  tally.healthy += sign * f.healthy;
  tally.running += sign * (f.running && (f.active || f.stopping));
  tally.pending += sign * (f.pending && (f.active || f.stopping));
  tally.draining += sign * f.draining;
}

void ServiceController::Track(const model::Task& t) {
  if (t.service.empty()) return;
  std::string key = model::State::ServiceKey(t.cluster, t.service);
  Flags f = FlagsOf(t);
  if (f.in_grace)
    in_grace_.insert(t.id);
  else
    in_grace_.erase(t.id);
  bool live = f.active || f.stopping;
  auto it = tasks_.find(t.id);
  if (it != tasks_.end() && live && it->second.deployment == t.deployment) {
    // A task that stays tracked (most often: an agent reported it PENDING or
    // RUNNING) moves its counts; the id sets change only if its membership does.
    Tally& tally = tallies_[key][t.deployment];
    const Flags& was = it->second.flags;
    Count(tally, was, -1);
    Count(tally, f, +1);
    if (was.active != f.active) {
      if (f.active)
        tally.active_ids.insert(t.id);
      else
        tally.active_ids.erase(t.id);
    }
    if (was.unhealthy != f.unhealthy) {
      if (f.unhealthy)
        tally.unhealthy_ids.insert(t.id);
      else
        tally.unhealthy_ids.erase(t.id);
    }
    it->second.flags = f;
    dirty_.insert(std::move(key));
    return;
  }
  if (it != tasks_.end()) {
    Apply(tallies_[key][it->second.deployment], t.id, it->second.flags, -1);
    tasks_.erase(it);
  }
  if (live) {
    Apply(tallies_[key][t.deployment], t.id, f, +1);
    tasks_[t.id] = TaskView{key, t.deployment, f};
  }
  dirty_.insert(std::move(key));
}

void ServiceController::OnTaskChanged(const model::Task& t) {
  if (t.service.empty()) return;
  auto it = tasks_.find(t.id);
  bool was_live = it != tasks_.end() && it->second.flags.active;
  Track(t);
  // A task that failed on its own while its deployment rolls out counts toward the breaker.
  if (was_live && t.stopped() && (t.stop_code == "TaskFailedToStart" || t.stop_code == "EssentialContainerExited")) {
    const model::Service* s = state_->FindService(t.cluster, t.service);
    if (s) {
      for (const model::Deployment& d : s->deployments) {
        if (d.id == t.deployment && d.rollout_state == "IN_PROGRESS") {
          tallies_[model::State::ServiceKey(t.cluster, t.service)][d.id].failed++;
        }
      }
    }
  }
}

void ServiceController::OnNodeChanged(const model::Node& n) {
  // Draining or losing the agent changes which tasks need replacing.
  for (const auto& [id, t] : n.tasks) {
    if (!t->service.empty()) Track(*t);
  }
  // A node registered, connected or made ACTIVE may have room for a waiting service.
  if (n.status == "ACTIVE" && n.connected) WakeBlocked(n.cluster, n.cpu - n.used_cpu, n.memory - n.used_memory);
}

void ServiceController::OnNodeRemoved(const model::Node&) {}

void ServiceController::OnTaskReleased(const model::Task&, const model::Node& n) {
  if (n.status == "ACTIVE" && n.connected) WakeBlocked(n.cluster, n.cpu - n.used_cpu, n.memory - n.used_memory);
}

void ServiceController::OnServiceChanged(const model::Service& s) {
  std::string key = model::State::ServiceKey(s.cluster, s.name);
  // Scaled, updated to another revision or placement: worth another try.
  if (auto b = blocked_.find(key); b != blocked_.end() && !b->second.woken) {
    RemoveWaiting(key, b->second);
    b->second.woken = true;
  }
  dirty_.insert(std::move(key));
}

void ServiceController::OnServiceRemoved(const model::Service& s) {
  std::string key = model::State::ServiceKey(s.cluster, s.name);
  tallies_.erase(key);
  dirty_.erase(key);
  Unblock(key);
  steady_.erase(key);
}

void ServiceController::OnReloaded() {
  tasks_.clear();
  tallies_.clear();
  for (const auto& [id, t] : state_->tasks()) Track(t);
  for (const auto& [key, s] : state_->services()) dirty_.insert(key);
  // What changed on disk is unknown: every waiting service looks again.
  for (auto& [key, b] : blocked_) b.woken = true;
  waiting_.clear();
}

void ServiceController::Block(const model::Service& s, const std::string& why, const std::string& event, int64_t cpu,
                              int64_t memory) {
  std::string key = model::State::ServiceKey(s.cluster, s.name);
  auto [it, fresh] = blocked_.try_emplace(key);
  Blocked& b = it->second;
  if (!fresh && !b.woken) RemoveWaiting(key, b);
  int64_t now = clock_->NowUnixMs();
  if (!event.empty() && (fresh || b.why != why || now - b.event_ms > 30000)) {
    Event(s, event);
    b.event_ms = now;
  }
  b.cluster = s.cluster;
  b.why = why;
  b.cpu = cpu;
  b.memory = memory;
  b.woken = false;
  waiting_[s.cluster].emplace(memory, std::move(key));
}

void ServiceController::Unblock(const std::string& key) {
  auto it = blocked_.find(key);
  if (it == blocked_.end()) return;
  if (!it->second.woken) RemoveWaiting(key, it->second);
  blocked_.erase(it);
}

void ServiceController::RemoveWaiting(const std::string& key, const Blocked& b) {
  auto w = waiting_.find(b.cluster);
  if (w == waiting_.end()) return;
  auto [from, to] = w->second.equal_range(b.memory);
  for (auto it = from; it != to; ++it) {
    if (it->second == key) {
      w->second.erase(it);
      break;
    }
  }
  if (w->second.empty()) waiting_.erase(w);
}

// Walks the waiting services of the cluster in order of the memory a task
// needs, up to what is free: the cost is the services woken, plus those that
// fit on memory but not on CPU.
void ServiceController::WakeBlocked(const std::string& cluster, int64_t free_cpu, int64_t free_memory) {
  auto w = waiting_.find(cluster);
  if (w == waiting_.end()) return;
  std::multimap<int64_t, std::string>& waiting = w->second;
  for (auto it = waiting.begin(); it != waiting.end() && it->first <= free_memory;) {
    Blocked& b = blocked_[it->second];
    if (b.cpu > free_cpu) {
      ++it;
      continue;
    }
    b.woken = true;
    dirty_.insert(it->second);
    it = waiting.erase(it);
  }
  if (waiting.empty()) waiting_.erase(w);
}

std::vector<model::DeploymentCounts> ServiceController::Counts(const model::Service& s) const {
  std::vector<model::DeploymentCounts> out(s.deployments.size());
  auto it = tallies_.find(model::State::ServiceKey(s.cluster, s.name));
  if (it == tallies_.end()) return out;
  for (size_t i = 0; i < s.deployments.size(); i++) {
    auto t = it->second.find(s.deployments[i].id);
    if (t != it->second.end()) out[i] = {t->second.running, t->second.pending};
  }
  return out;
}

void ServiceController::Event(const model::Service& s, std::string message) {
  log::Info("services", message, {{"service", s.name}, {"cluster", s.cluster}});
  state_->AddServiceEvent(s.cluster, s.name, "(service " + s.name + ") " + message, clock_->NowUnixMs());
}

std::string ServiceController::NewDeploymentId() {
  uint8_t raw[8];
  if (!crypto::RandomBytes(raw, sizeof raw)) return "ecs-svc/" + std::to_string(clock_->MonotonicNs());
  uint64_t v = 0;
  for (uint8_t b : raw) v = (v << 8) | b;
  return "ecs-svc/" + std::to_string(v % 10000000000000000000ull);
}

// At most this many tasks start per pass: a big scale-up goes in slices, with
// sockets served between them, instead of one transaction that stalls the loop.
constexpr int64_t kStartsPerPass = 2000;
// Placements per PlaceTasks command at most: a few milliseconds of applying.
constexpr size_t kPlacementsPerCommand = 128;

void ServiceController::Reconcile() {
  std::set<std::string> dirty = std::move(dirty_);
  dirty_.clear();
  starts_left_ = kStartsPerPass;
  for (const std::string& key : dirty) ReconcileOne(key);
}

void ServiceController::Tick() {
  // A target failing its group's check is replaced once its grace period ends.
  std::vector<std::string> graced(in_grace_.begin(), in_grace_.end());
  for (const std::string& id : graced) {
    const model::Task* t = state_->FindTask(id);
    if (!t)
      in_grace_.erase(id);
    else
      Track(*t);
  }
  // Unhealthy tasks show up through reports, but a deployment's health can also
  // be decided by time: look at every service with a rollout in progress.
  for (const auto& [key, s] : state_->services()) {
    if (s.primary().rollout_state == "IN_PROGRESS" || s.status != "ACTIVE") dirty_.insert(key);
  }
  // The store flushes a bounded number of rounds at a time, so commands of the
  // last pass may still be queued: acting before they apply would act twice on
  // the same view (start or stop the same tasks again). The flush that applies
  // them runs Reconcile through the after-flush hook.
  if (store_->queued() > 0) return;
  if (!dirty_.empty()) Reconcile();
}

// The reply to a command of the controller's own: a refusal is logged (the next
// round looks at the service again and decides anew).
store::Store::Reply ServiceController::LogRefusal(std::string what, std::string service) {
  return [what = std::move(what), service = std::move(service)](Result<std::string> r) {
    if (!r) log::Warn("services", what + " was refused", {{"service", service}, {"error", r.error().message}});
  };
}

store::Store::Reply ServiceController::Tracked(const std::string& key, store::Store::Reply reply) {
  in_flight_[key]++;
  return [this, key, reply = std::move(reply)](Result<std::string> r) {
    auto it = in_flight_.find(key);
    if (it != in_flight_.end() && --it->second <= 0) in_flight_.erase(it);
    dirty_.insert(key);  // looked at again with what the command did (or did not do)
    reply(std::move(r));
  };
}

void ServiceController::StopTasks(const std::string& key, const std::vector<std::string>& ids,
                                  const std::string& reason) {
  if (ids.empty()) return;
  auto cmd = std::make_unique<model::StopTasks>();
  cmd->ids = ids;
  cmd->reason = reason;
  cmd->code = "ServiceSchedulerInitiated";
  cmd->time_ms = clock_->NowUnixMs();
  store_->Submit(std::move(cmd), Tracked(key, [](Result<std::string> r) {
                   if (!r) log::Warn("services", "stopping tasks failed", {{"error", r.error().message}});
                 }));
}

void ServiceController::StartTasks(const model::Service& s, int64_t count) {
  std::string key = model::State::ServiceKey(s.cluster, s.name);
  const model::Deployment& d = s.primary();
  const model::TaskDefinition* td = state_->FindTaskDefinition(d.family, d.revision);
  // Neither of these two is cured by room elsewhere: only a change of the
  // service (or a restart) tries again.
  constexpr int64_t kNoRoomCures = INT64_MAX;
  if (!td) {
    Block(s, "task definition " + d.family + ":" + std::to_string(d.revision) + " is gone", "", kNoRoomCures,
          kNoRoomCures);
    return;
  }
  sched::Request req;
  req.group = s.group();
  Result<json::Doc> constraints = json::Doc::Parse(s.constraints);
  Result<json::Doc> strategy = json::Doc::Parse(s.strategy);
  Status parsed = ParsePlacement(constraints ? constraints->view() : json::View(),
                                 strategy ? strategy->view() : json::View(), "", &req);
  if (parsed) {
    if (Result<json::Doc> tdoc = json::Doc::Parse(td->doc); tdoc) {
      parsed = ParsePlacement(tdoc->view().Get("placementConstraints"), json::View(), "taskDefinition", &req);
    }
  }
  if (!parsed) {
    Block(s, parsed.error().message, "", kNoRoomCures, kNoRoomCures);
    return;
  }
  if (req.strategies.empty()) {
    req.strategies.push_back(*sched::Strategy::Make("spread", "attribute:zone"));
    req.strategies.push_back(*sched::Strategy::Make("spread", "instanceId"));
  }
  Scheduler::Plan plan = scheduler_->Place(s.cluster, *td, req, static_cast<int>(count), clock_->NowUnixMs());
  if (static_cast<int64_t>(plan.nodes.size()) < count) {
    std::string why = plan.reason.empty() ? "no room" : plan.reason;
    Block(s, why,
          "was unable to place a task because no container instance met all of its requirements. Reason: " + why + ".",
          td->cpu, td->memory);
  } else {
    Unblock(key);
  }
  if (plan.nodes.empty()) return;
  std::string message = "has started " + Plural(static_cast<int64_t>(plan.nodes.size()), "task");
  if (plan.nodes.size() <= 5) {
    message += ":";
    for (const std::string& id : plan.task_ids) message += " (task " + Short(id) + ")";
  }
  Event(s, message + ".");
  // The plan goes as several commands, so that the store can cut it into
  // entries that each apply within its budget (StoreOptions::entry_budget_ns)
  // and serve sockets between them. Each is checked whole when it applies; one
  // refused gives back the room of its own placements only.
  struct Refused {  // what a refused command needs to give its room back: one for all of them
    std::string key, cluster, family, group;
    int64_t revision;
  };
  auto refused = std::make_shared<const Refused>(Refused{key, s.cluster, td->family, req.group, td->revision});
  for (size_t from = 0; from < plan.nodes.size(); from += kPlacementsPerCommand) {
    size_t to = std::min(plan.nodes.size(), from + kPlacementsPerCommand);
    auto cmd = std::make_unique<model::PlaceTasks>();
    cmd->cluster = s.cluster;
    cmd->family = td->family;
    cmd->revision = td->revision;
    cmd->group = req.group;
    cmd->started_by = d.id;
    cmd->service = s.name;
    cmd->deployment = d.id;
    cmd->placements.reserve(to - from);
    Scheduler::Plan part;
    part.nodes.assign(plan.nodes.begin() + static_cast<long>(from), plan.nodes.begin() + static_cast<long>(to));
    part.task_ids.assign(plan.task_ids.begin() + static_cast<long>(from),
                         plan.task_ids.begin() + static_cast<long>(to));
    for (size_t i = 0; i < part.nodes.size(); i++) cmd->placements.push_back({part.task_ids[i], part.nodes[i]});
    cmd->time_ms = clock_->NowUnixMs();
    store_->Submit(std::move(cmd), Tracked(key, [this, refused, part = std::move(part)](Result<std::string> r) {
                     if (r) return;
                     const Refused& f = *refused;
                     log::Warn("services", "placing tasks failed", {{"service", f.key}, {"error", r.error().message}});
                     if (const model::TaskDefinition* t = state_->FindTaskDefinition(f.family, f.revision)) {
                       scheduler_->Release(f.cluster, *t, f.group, part);
                     }
                     dirty_.insert(f.key);
                     // The room the plan held is free again, and no node changed to say so.
                     WakeBlocked(f.cluster, INT64_MAX, INT64_MAX);
                   }));
  }
}

void ServiceController::ReconcileOne(const std::string& key) {
  auto sit = state_->services().find(key);
  if (sit == state_->services().end()) return;
  // Its last commands are not applied yet: acting now would act twice on the
  // same view (start or stop the same tasks again). Their replies bring it back.
  if (in_flight_.count(key)) return;
  const model::Service& s = sit->second;
  std::map<std::string, Tally>& tallies = tallies_[key];
  const model::Deployment& primary = s.primary();
  Tally& prim = tallies[primary.id];
  int64_t d = s.status == "ACTIVE" ? s.desired : 0;

  int64_t total = 0, healthy = 0, old_active = 0, stopping = 0;
  for (auto& [dep, t] : tallies) {
    total += t.active + t.stopping;
    healthy += t.healthy;
    stopping += t.stopping;
    if (dep != primary.id) old_active += t.active;
  }
  int64_t keep = prim.active - prim.draining;  // primary tasks on nodes that stay
  int64_t replace = old_active + prim.draining;
  int64_t max_total = std::max(d, d * s.max_pct / 100);
  int64_t min_healthy = (d * s.min_healthy_pct + 99) / 100;

  // The circuit breaker: a rollout whose tasks keep failing stops, and rolls back.
  if (s.breaker && primary.rollout_state == "IN_PROGRESS" && prim.failed >= model::BreakerThreshold(d) && d > 0) {
    std::string reason = "circuit breaker tripped: " + Plural(prim.failed, "task") + " failed to start or exited";
    const model::Deployment* good = nullptr;
    for (size_t i = 1; i < s.deployments.size(); i++) {
      if (s.deployments[i].rollout_state == "COMPLETED") {
        good = &s.deployments[i];
        break;
      }
    }
    // A deployment can only go back to a task definition still ACTIVE (UpdateService
    // refuses others); without one the rollout simply fails.
    if (good) {
      const model::TaskDefinition* td = state_->FindTaskDefinition(good->family, good->revision);
      if (!td || td->status != "ACTIVE") good = nullptr;
    }
    if (s.rollback && good) {
      auto cmd = std::make_unique<model::UpdateService>();
      cmd->cluster = s.cluster;
      cmd->name = s.name;
      cmd->family = good->family;
      cmd->revision = good->revision;
      cmd->force_new = true;
      cmd->new_deployment = NewDeploymentId();
      cmd->rollout_reason = reason;
      cmd->time_ms = clock_->NowUnixMs();
      Event(s, "deployment " + primary.id + " failed: " + reason + "; rolling back to " + good->family + ":" +
                   std::to_string(good->revision) + " as deployment " + cmd->new_deployment + ".");
      store_->Submit(std::move(cmd), Tracked(key, LogRefusal("rolling back", s.name)));
    } else {
      auto cmd = std::make_unique<model::SetDeploymentState>();
      cmd->cluster = s.cluster;
      cmd->name = s.name;
      cmd->deployment = primary.id;
      cmd->rollout_state = "FAILED";
      cmd->reason = reason;
      cmd->failed_tasks = prim.failed;
      cmd->time_ms = clock_->NowUnixMs();
      Event(s, "deployment " + primary.id + " failed: " + reason + ".");
      store_->Submit(std::move(cmd), Tracked(key, LogRefusal("marking the deployment failed", s.name)));
    }
    return;
  }

  std::vector<std::string> to_stop;
  // Unhealthy tasks are replaced (they count as failures of their deployment).
  for (auto& [dep, t] : tallies) {
    for (const std::string& id : t.unhealthy_ids) to_stop.push_back(id);
    if (dep == primary.id && primary.rollout_state == "IN_PROGRESS")
      t.failed += static_cast<int64_t>(t.unhealthy_ids.size());
  }
  if (!to_stop.empty()) {
    // Which check failed: the containers' own, or a target group's.
    size_t lb_failed = 0;
    for (const std::string& id : to_stop) {
      const model::Task* t = state_->FindTask(id);
      if (t && t->health != "UNHEALTHY") lb_failed++;
    }
    const char* what = lb_failed == 0                ? "container health checks"
                       : lb_failed == to_stop.size() ? "target group health checks"
                                                     : "container or target group health checks";
    Event(s, "has stopped " + Plural(static_cast<int64_t>(to_stop.size()), "running task") + " that failed their " +
                 what + ".");
    StopTasks(key, to_stop,
              std::string("Task failed ") +
                  (lb_failed == 0                ? "container"
                   : lb_failed == to_stop.size() ? "ELB"
                                                 : "container or ELB") +
                  " health checks");
    dirty_.insert(key);
    return;
  }

  // Start what the primary deployment lacks, within maximumPercent.
  bool may_start = primary.rollout_state != "FAILED";
  int64_t want = d - keep;
  int64_t start = may_start ? std::max<int64_t>(0, std::min(want, max_total - total)) : 0;
  if (want <= 0) Unblock(key);
  if (auto b = blocked_.find(key); start > 0 && b != blocked_.end()) {
    if (b->second.woken)
      placement_retries_++;
    else
      start = 0;  // nothing that could fit appeared since the last try
  }
  if (start > starts_left_) {
    start = starts_left_;
    dirty_.insert(key);  // the rest in the next pass
  }
  if (start > 0) {
    starts_left_ -= start;
    StartTasks(s, start);
  }

  // Stop old tasks (older deployments, draining nodes) as far as minimumHealthyPercent
  // allows: ones that are not healthy first, they do not count toward it.
  std::vector<std::string> stop_unhealthy, stop_healthy;
  int64_t healthy_budget = std::max<int64_t>(0, healthy - min_healthy);
  auto consider = [&](const std::string& id) {
    const model::Task* t = state_->FindTask(id);
    if (!t) return;
    if (!t->healthy())
      stop_unhealthy.push_back(id);
    else if (healthy_budget > 0) {
      stop_healthy.push_back(id);
      healthy_budget--;
    }
  };
  if (replace > 0) {
    for (auto& [dep, t] : tallies) {
      if (dep == primary.id) continue;
      for (const std::string& id : t.active_ids) consider(id);
    }
    if (prim.draining > 0) {
      for (const std::string& id : prim.active_ids) {
        const model::Task* t = state_->FindTask(id);
        const model::Node* n = t ? state_->FindNode(t->node) : nullptr;
        if (t && (!n || n->status != "ACTIVE")) consider(id);
      }
    }
  }
  // Too many primary tasks (scaled down): the ones not running yet go first.
  if (keep > d) {
    int64_t extra = keep - d;
    std::vector<std::string> pending, running;
    for (const std::string& id : prim.active_ids) {
      const model::Task* t = state_->FindTask(id);
      if (!t) continue;
      (t->last == "RUNNING" ? running : pending).push_back(id);
    }
    for (const std::string& id : pending) {
      if (extra-- <= 0) break;
      stop_unhealthy.push_back(id);
    }
    for (const std::string& id : running) {
      if (extra-- <= 0) break;
      stop_healthy.push_back(id);
    }
  }
  to_stop = stop_unhealthy;
  to_stop.insert(to_stop.end(), stop_healthy.begin(), stop_healthy.end());
  if (!to_stop.empty()) {
    std::string message = "has stopped " + Plural(static_cast<int64_t>(to_stop.size()), "running task");
    if (to_stop.size() <= 5) {
      message += ":";
      for (const std::string& id : to_stop) message += " (task " + Short(id) + ")";
    }
    Event(s, message + ".");
    StopTasks(key, to_stop,
              s.status == "ACTIVE" ? "Task stopped by the service scheduler (deployment or scale-in)"
                                   : "Service is being deleted");
  }

  // Deleting: forget the service once nothing of it runs.
  if (s.status != "ACTIVE") {
    if (total == 0) {
      auto cmd = std::make_unique<model::RemoveService>();
      cmd->cluster = s.cluster;
      cmd->name = s.name;
      cmd->time_ms = clock_->NowUnixMs();
      store_->Submit(std::move(cmd), Tracked(key, LogRefusal("removing the deleted service", s.name)));
    }
    return;
  }

  // Steady: the primary has its healthy tasks and nothing else is left.
  bool done = keep == d && prim.healthy >= d && replace == 0 && stopping == 0 && start == 0;
  if (done && (primary.rollout_state == "IN_PROGRESS" || s.deployments.size() > 1)) {
    auto cmd = std::make_unique<model::SetDeploymentState>();
    cmd->cluster = s.cluster;
    cmd->name = s.name;
    cmd->deployment = primary.id;
    cmd->rollout_state = primary.rollout_state == "IN_PROGRESS" ? "COMPLETED" : "";
    cmd->reason = primary.rollout_state == "IN_PROGRESS" ? "deployment completed" : primary.rollout_reason;
    cmd->failed_tasks = prim.failed;
    cmd->retire_others = true;
    cmd->time_ms = clock_->NowUnixMs();
    store_->Submit(std::move(cmd), Tracked(key, LogRefusal("completing the deployment", s.name)));
    for (auto it = tallies.begin(); it != tallies.end();) {
      it = it->first == primary.id ? std::next(it) : tallies.erase(it);
    }
  }
  if (done && !steady_.count(key)) {
    steady_.insert(key);
    Event(s, "has reached a steady state.");
  } else if (!done) {
    steady_.erase(key);
  }
}

}  // namespace berth::control
