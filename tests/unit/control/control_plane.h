// Test support for the control plane: a real store on a temporary SQLite file, the
// state, the scheduler, the agent hub (for node liveness) and the service
// controller, all on a ManualClock, plus a fake agent that plays the nodes.
//
// The store's after-flush hook runs `on_round` (where tests check invariants) and
// then the controller's Reconcile, as the server does. Step() is one beat of the
// world: flush, let the agent report what its nodes did, flush, move the clock,
// tick the hub and the controller, flush.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "api/agents.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/metrics.h"
#include "control/scheduler.h"
#include "control/services.h"
#include "model/commands.h"
#include "model/state.h"
#include "store/store.h"
#include "support/test_loop.h"

namespace berth::testing {

// What a service's tasks look like right now (tasks not STOPPED only).
struct Census {
  int64_t live = 0;     // not STOPPED (running + pending, including those being stopped)
  int64_t healthy = 0;  // desired RUNNING and healthy
  int64_t running = 0;  // lastStatus RUNNING
  std::map<std::string, int64_t> by_node;
  std::map<int64_t, int64_t> by_revision;
};

class ControlPlane {
  // First, so they outlive everything below.
  TempDir dir_;
  metrics::Registry metrics_;

 public:
  struct Options {
    int64_t lost_after_ms = 5000;
    int64_t step_ms = 250;  // how far the clock moves per Step()
    uint64_t seed = 7;
  };

  ControlPlane() : ControlPlane(Options()) {}
  explicit ControlPlane(Options o) : options_(o), rng_(o.seed) {
    store::StoreOptions so;
    so.path = dir_.File("state.db");
    auto s = store::Store::Open(so, &state, &metrics_);
    REQUIRE(s.ok());
    store = std::move(s.value());
    // The same construction order as the server: observers are told in this order.
    scheduler = std::make_unique<control::Scheduler>(&state);
    api::AgentOptions ao;
    ao.lost_after_ms = o.lost_after_ms;
    hub = std::make_unique<api::AgentHub>(&state, store.get(), &clock, ao);
    services = std::make_unique<control::ServiceController>(&state, store.get(), scheduler.get(), &clock);
    ConnectController();
    REQUIRE(Apply(MakeCluster("default")).ok());
  }

  // The after-flush hook as the server installs it: `on_round`, then Reconcile.
  void ConnectController() {
    store->SetAfterFlush([this] {
      if (on_round) on_round();
      services->Reconcile();
    });
  }

  ~ControlPlane() {
    store->SetAfterFlush(nullptr);
    (void)store->Close();
    services.reset();
    hub.reset();
    scheduler.reset();
  }

  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // --- commands ---

  // Submits `cmd` stamped with the clock, flushes, and returns its reply.
  Result<std::string> Apply(store::CommandPtr cmd) {
    cmd->time_ms = clock.NowUnixMs();
    std::optional<Result<std::string>> out;
    store->Submit(std::move(cmd), [&out](Result<std::string> r) { out.emplace(std::move(r)); });
    store->Flush();
    REQUIRE(out.has_value());
    return std::move(*out);
  }

  static store::CommandPtr MakeCluster(std::string name) {
    auto c = std::make_unique<model::CreateCluster>();
    c->name = std::move(name);
    return c;
  }

  // Registers a revision of `family` (one container "main"); returns its revision.
  int64_t RegisterTaskDefinition(const std::string& family, bool health_check = false, int64_t cpu = 256,
                                 int64_t memory = 128) {
    json::Doc c = json::Doc::Object();
    c.Set("name", "main").Set("image", "nginx:latest").Set("cpu", cpu).Set("memory", memory);
    if (health_check) {
      json::Doc cmd = json::Doc::Array();
      cmd.Push("CMD-SHELL").Push("true");
      c.Set("healthCheck", json::Doc::Object().Set("command", cmd));
    }
    const model::TaskDefinition& td = RegisterContainer(family, c);
    REQUIRE(td.has_health_check == health_check);
    return td.revision;
  }

  // Registers a revision of `family` whose one container is `c` (taking its tree, as json::Doc::Push does).
  const model::TaskDefinition& RegisterContainer(const std::string& family, json::Doc& c) {
    json::Doc containers = json::Doc::Array();
    containers.Push(c);
    json::Doc body = json::Doc::Object();
    body.Set("family", family).Set("containerDefinitions", containers);
    Result<json::Doc> doc = model::ValidateTaskDefinition(body.view());
    REQUIRE(doc.ok());
    auto cmd = std::make_unique<model::RegisterTaskDefinition>();
    cmd->family = family;
    cmd->doc = doc->Print();
    REQUIRE(Apply(std::move(cmd)).ok());
    const model::TaskDefinition* td = state.FindTaskDefinition(family, 0);
    REQUIRE(td);
    return *td;
  }

  // Registers a node the fake agent plays and connects its agent.
  void AddNode(const std::string& id, std::map<std::string, std::string> attributes = {}, int64_t cpu = 4096,
               int64_t memory = 8192) {
    AddNodeIn("default", id, std::move(attributes), cpu, memory);
  }
  void AddNodeIn(const std::string& cluster, const std::string& id, std::map<std::string, std::string> attributes = {},
                 int64_t cpu = 4096, int64_t memory = 8192) {
    auto cmd = std::make_unique<model::RegisterNode>();
    cmd->id = id;
    cmd->cluster = cluster;
    cmd->hostname = id;
    cmd->cpu = cpu;
    cmd->memory = memory;
    if (attributes.empty()) attributes["zone"] = "zone-" + std::string(1, static_cast<char>('a' + nodes_added_ % 3));
    cmd->attributes = std::move(attributes);
    nodes_added_++;
    REQUIRE(Apply(std::move(cmd)).ok());
    played.insert(id);
    state.SetNodeConnected(id, true, clock.NowUnixMs());
    store->Flush();
  }

  struct ServiceSpec {
    std::string name = "web";
    std::string family = "web";
    int64_t revision = 1;
    int64_t desired = 4;
    int64_t min_pct = 100;
    int64_t max_pct = 200;
    bool breaker = false;
    bool rollback = false;
    std::string constraints = "[]";
  };

  Result<std::string> CreateService(const ServiceSpec& spec) {
    model::Service svc;
    svc.name = spec.name;
    svc.cluster = "default";
    svc.arn = model::ServiceArn(svc.cluster, svc.name);
    svc.desired = spec.desired;
    svc.min_healthy_pct = spec.min_pct;
    svc.max_pct = spec.max_pct;
    svc.breaker = spec.breaker;
    svc.rollback = spec.rollback;
    svc.constraints = spec.constraints;
    model::Deployment d;
    d.id = NextDeploymentId();
    d.family = spec.family;
    d.revision = spec.revision;
    svc.deployments.push_back(d);
    auto cmd = std::make_unique<model::CreateService>();
    cmd->doc = model::ServiceDoc(svc);
    return Apply(std::move(cmd));
  }

  // A new task definition for the service (a rolling deployment).
  Result<std::string> Deploy(const std::string& name, const std::string& family, int64_t revision) {
    auto cmd = std::make_unique<model::UpdateService>();
    cmd->cluster = "default";
    cmd->name = name;
    cmd->family = family;
    cmd->revision = revision;
    cmd->new_deployment = NextDeploymentId();
    return Apply(std::move(cmd));
  }

  Result<std::string> Scale(const std::string& name, int64_t desired) {
    auto cmd = std::make_unique<model::UpdateService>();
    cmd->cluster = "default";
    cmd->name = name;
    cmd->desired = desired;
    return Apply(std::move(cmd));
  }

  Result<std::string> SetNodeStatus(const std::string& id, const std::string& status) {
    auto cmd = std::make_unique<model::SetNodeStatus>();
    cmd->id = id;
    cmd->status = status;
    return Apply(std::move(cmd));
  }

  // --- the fake agent ---

  // Reports, for every task on a played node whose agent is connected, its next
  // stage: PROVISIONING → PENDING → RUNNING (→ HEALTHY when the task definition has
  // a health check), STOPPED when asked to stop, UNHEALTHY once RUNNING when
  // `unhealthy` says so, and STOPPED with exit code 1 once RUNNING when `fails`
  // does. Each task moves with probability `advance_chance`, so tasks of one batch
  // drift apart. Returns whether anything was reported.
  bool AgentStep() {
    std::vector<store::CommandPtr> cmds;
    std::uniform_real_distribution<double> coin(0, 1);
    for (const auto& [id, n] : state.nodes()) {
      if (!played.count(id) || !n.connected) continue;
      auto cmd = std::make_unique<model::ReportTasks>();
      cmd->node = id;
      for (const auto& [task_id, t] : n.tasks) {
        if (!t || t->stopped()) continue;
        if (advance_chance < 1.0 && coin(rng_) >= advance_chance) continue;
        model::ReportTasks::Report r;
        r.task_id = t->id;
        if (t->desired == "STOPPED") {
          r.last = "STOPPED";
          r.reason = "stopped as asked";
          r.containers = Containers(*t, "STOPPED", "UNKNOWN", 0);
        } else if (t->last == "PROVISIONING") {
          r.last = "PENDING";
          r.containers = Containers(*t, "PENDING", "UNKNOWN", -1);
        } else if (t->last == "PENDING") {
          r.last = "RUNNING";
          r.containers = Containers(*t, "RUNNING", "UNKNOWN", -1);
        } else if (unhealthy && t->has_health_check && t->health != "UNHEALTHY" && unhealthy(*t)) {
          r.last = "RUNNING";
          r.containers = Containers(*t, "RUNNING", "UNHEALTHY", -1);
        } else if (fails && fails(*t)) {
          r.last = "STOPPED";
          r.reason = "Essential container in task exited";
          r.containers = Containers(*t, "STOPPED", "UNKNOWN", 1);
        } else if (t->has_health_check && t->health != "HEALTHY") {
          r.last = "RUNNING";
          r.containers = Containers(*t, "RUNNING", "HEALTHY", -1);
        } else {
          continue;
        }
        cmd->reports.push_back(std::move(r));
      }
      if (!cmd->reports.empty()) cmds.push_back(std::move(cmd));
    }
    bool any = !cmds.empty();
    for (store::CommandPtr& c : cmds) {
      c->time_ms = clock.NowUnixMs();
      store->Submit(std::move(c), [](Result<std::string> r) { CHECK(r.ok()); });
    }
    return any;
  }

  // One beat: the agent reports, time moves on, the hub and the controller tick.
  void Step() {
    store->Flush();
    AgentStep();
    store->Flush();
    clock.Advance(options_.step_ms);
    hub->Tick();
    services->Tick();
    store->Flush();
  }

  // Steps until `done` holds; false if it did not within `max_steps`.
  bool RunUntil(const std::function<bool()>& done, int max_steps = 400) {
    for (int i = 0; i < max_steps; i++) {
      if (done()) return true;
      Step();
    }
    return done();
  }

  // --- what the state says ---

  const model::Service* Service(const std::string& name = "web") const { return state.FindService("default", name); }

  Census Count(const std::string& service = "web") const {
    Census c;
    for (const auto& [id, t] : state.tasks()) {
      if (t.service != service || t.stopped()) continue;
      c.live++;
      if (t.desired == "RUNNING" && t.healthy()) c.healthy++;
      if (t.last == "RUNNING") c.running++;
      c.by_node[t.node]++;
      c.by_revision[t.revision]++;
    }
    return c;
  }

  // Steady: desired tasks of the primary's revision, all healthy, nothing else
  // left, one COMPLETED deployment.
  bool Steady(const std::string& name = "web") const {
    const model::Service* s = Service(name);
    if (!s) return false;
    Census c = Count(name);
    return s->deployments.size() == 1 && s->primary().rollout_state == "COMPLETED" && c.live == s->desired &&
           c.healthy == s->desired && c.by_revision[s->primary().revision] == s->desired;
  }

  bool HasEvent(const std::string& name, const std::string& part) const {
    const model::Service* s = Service(name);
    if (!s) return false;
    for (const model::ServiceEvent& e : s->events) {
      if (e.message.find(part) != std::string::npos) return true;
    }
    return false;
  }

  std::string Events(const std::string& name = "web") const {
    std::string out;
    const model::Service* s = Service(name);
    if (!s) return out;
    for (auto it = s->events.rbegin(); it != s->events.rend(); ++it) out += it->message + "\n";
    return out;
  }

  ManualClock clock;
  model::State state;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<control::Scheduler> scheduler;
  std::unique_ptr<api::AgentHub> hub;
  std::unique_ptr<control::ServiceController> services;
  std::function<void()> on_round;                     // after each applied batch, before Reconcile
  std::set<std::string> played;                       // nodes whose agent the test plays
  std::function<bool(const model::Task&)> fails;      // RUNNING tasks that then exit with code 1
  std::function<bool(const model::Task&)> unhealthy;  // RUNNING tasks whose health check then fails
  double advance_chance = 1.0;

 private:
  static std::string Containers(const model::Task& t, const char* last, const char* health, int exit_code) {
    json::Doc list = json::Doc::Array();
    for (const model::ContainerState& c : t.containers) {
      json::Doc d = json::Doc::Object();
      d.Set("name", c.name).Set("lastStatus", last).Set("healthStatus", health);
      if (exit_code >= 0) d.Set("exitCode", static_cast<int64_t>(exit_code));
      list.Push(d);
    }
    return list.Print();
  }

  std::string NextDeploymentId() { return "ecs-svc/" + std::to_string(++deployments_made_); }

  Options options_;
  std::mt19937_64 rng_;
  int nodes_added_ = 0;
  int deployments_made_ = 0;
};

}  // namespace berth::testing
