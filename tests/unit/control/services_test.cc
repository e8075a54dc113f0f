// control/services: the service controller on simulated time, against a real
// store, with a fake agent playing the nodes (support in control_plane.h).
// Invariants are checked after every applied batch, not only at the end.
#include "control/services.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <set>

#include "control/control_plane.h"

using namespace berth;
using berth::testing::Census;
using berth::testing::ControlPlane;

namespace {

// Records the first broken invariant of a rollout (and how many rounds were seen).
struct Watch {
  int64_t rounds = 0;
  int64_t mixed_rounds = 0;  // rounds with tasks of two revisions at once
  std::string broken;
  void Fail(const std::string& what) {
    if (broken.empty()) broken = "round " + std::to_string(rounds) + ": " + what;
  }
};

// At every round: healthy ≥ ceil(desired·min%/100) and live ≤ floor(desired·max%/100).
void WatchLimits(ControlPlane& cp, Watch& w, const std::string& name = "web") {
  cp.on_round = [&cp, &w, name] {
    const model::Service* s = cp.Service(name);
    if (!s) return;
    w.rounds++;
    Census c = cp.Count(name);
    int64_t min_healthy = (s->desired * s->min_healthy_pct + 99) / 100;
    int64_t max_live = s->desired * s->max_pct / 100;
    if (c.healthy < min_healthy) {
      w.Fail(std::to_string(c.healthy) + " healthy < " + std::to_string(min_healthy) + " (min " +
             std::to_string(s->min_healthy_pct) + "%)");
    }
    if (c.live > max_live) {
      w.Fail(std::to_string(c.live) + " running+pending > " + std::to_string(max_live) + " (max " +
             std::to_string(s->max_pct) + "%)");
    }
    if (c.by_revision.size() > 1) w.mixed_rounds++;
  };
}

int64_t CountEvents(const ControlPlane& cp, const std::string& part, const std::string& name = "web") {
  int64_t n = 0;
  if (const model::Service* s = cp.Service(name)) {
    for (const model::ServiceEvent& e : s->events) n += e.message.find(part) != std::string::npos;
  }
  return n;
}

}  // namespace

TEST_CASE("services: the breaker threshold is half the desired count, at least 3, at most 200", "[control][services]") {
  CHECK(model::BreakerThreshold(0) == 3);
  CHECK(model::BreakerThreshold(1) == 3);
  CHECK(model::BreakerThreshold(6) == 3);
  CHECK(model::BreakerThreshold(7) == 4);
  CHECK(model::BreakerThreshold(10) == 5);
  CHECK(model::BreakerThreshold(400) == 200);
  CHECK(model::BreakerThreshold(100000) == 200);
}

TEST_CASE("services: a service reaches its desired count and a steady state", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
  bool health = GENERATE(false, true);
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", health);
  spec.desired = 6;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  INFO(cp.Events());
  CHECK(cp.HasEvent("web", "(service web) has started 6 tasks"));
  CHECK(CountEvents(cp, "has reached a steady state.") == 1);
  Census c = cp.Count();
  CHECK(c.running == 6);
  CHECK(c.by_node.size() == 3);  // spread over the nodes (and their zones)
  std::vector<model::DeploymentCounts> counts = cp.services->Counts(*cp.Service());
  REQUIRE(counts.size() == 1);
  CHECK(counts[0].running == 6);
  CHECK(counts[0].pending == 0);

  // Steady means quiet: more time changes nothing and says nothing more.
  size_t tasks = cp.state.tasks().size();
  for (int i = 0; i < 40; i++) cp.Step();
  CHECK(cp.state.tasks().size() == tasks);
  CHECK(CountEvents(cp, "has reached a steady state.") == 1);
}

TEST_CASE("services: a stopped task is replaced", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 2; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web");
  spec.desired = 3;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::string victim;
  for (const auto& [id, t] : cp.state.tasks()) victim = id;
  cp.fails = [&victim](const model::Task& t) { return t.id == victim; };
  REQUIRE(cp.RunUntil([&] { return cp.state.FindTask(victim)->stopped(); }));
  cp.fails = nullptr;
  CHECK(cp.state.FindTask(victim)->stop_code == "EssentialContainerExited");
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.state.tasks().size() == 4);
}

TEST_CASE("services: a rolling deployment stays within minimumHealthyPercent and maximumPercent",
          "[control][services]") {
  auto limits = GENERATE(std::make_pair(100, 200), std::make_pair(50, 100), std::make_pair(50, 150),
                         std::make_pair(0, 100), std::make_pair(100, 150));
  bool health = GENERATE(false, true);
  int64_t desired = GENERATE(10, 3);
  uint64_t seed = GENERATE(1, 2, 3);
  CAPTURE(limits.first, limits.second, health, desired, seed);

  ControlPlane::Options o;
  o.seed = seed;
  ControlPlane cp(o);
  for (int i = 0; i < 4; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", health);
  spec.desired = desired;
  spec.min_pct = limits.first;
  spec.max_pct = limits.second;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::string first = cp.Service()->primary().id;

  int64_t rev2 = cp.RegisterTaskDefinition("web", health);
  cp.advance_chance = 0.5;  // tasks of one batch start and stop at different times
  Watch w;
  WatchLimits(cp, w);
  REQUIRE(cp.Deploy("web", "web", rev2).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady() && cp.Service()->primary().revision == rev2; }, 1000));
  INFO(cp.Events());
  CHECK(w.broken == "");
  CHECK(w.rounds > 10);
  if (limits.first > 0) CHECK(w.mixed_rounds > 0);  // old tasks served while new ones started
  CHECK(cp.Service()->primary().id != first);
  CHECK(cp.Count().by_revision == std::map<int64_t, int64_t>{{rev2, desired}});
  CHECK(cp.HasEvent("web", "has stopped"));
  CHECK(CountEvents(cp, "has reached a steady state.") == 2);
}

TEST_CASE("services: the circuit breaker rolls back to the last completed deployment", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", true);
  spec.desired = 6;  // threshold: 3
  spec.breaker = true;
  spec.rollback = true;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::string good = cp.Service()->primary().id;

  int64_t bad = cp.RegisterTaskDefinition("web", true);
  cp.fails = [bad](const model::Task& t) { return t.revision == bad; };
  Watch w;
  WatchLimits(cp, w);
  std::string bad_deployment;
  int64_t failed_when_tripped = -1, late_rounds = 0;  // rounds IN_PROGRESS though over the threshold
  auto limits = cp.on_round;
  cp.on_round = [&] {
    limits();
    int64_t failed = 0;
    for (const auto& [id, t] : cp.state.tasks()) {
      failed += t.revision == bad && t.stop_code == "EssentialContainerExited";
    }
    for (const model::Deployment& d : cp.Service()->deployments) {
      if (d.revision != bad) continue;
      bad_deployment = d.id;
      if (d.rollout_state == "FAILED" && failed_when_tripped < 0) failed_when_tripped = failed;
      if (d.rollout_state == "IN_PROGRESS" && failed >= model::BreakerThreshold(6)) late_rounds++;
    }
  };
  cp.advance_chance = 0.5;
  REQUIRE(cp.Deploy("web", "web", bad).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady() && cp.Service()->primary().id != bad_deployment; }, 1000));
  INFO(cp.Events());
  CHECK(w.broken == "");
  CHECK(failed_when_tripped >= model::BreakerThreshold(6));
  CHECK(late_rounds <= 1);  // it tripped as soon as the controller saw the threshold reached
  const model::Service* s = cp.Service();
  CHECK(s->primary().revision == spec.revision);
  CHECK(s->primary().id != good);  // a new deployment of the good revision
  CHECK(s->primary().rollout_state == "COMPLETED");
  CHECK(cp.HasEvent("web", "circuit breaker tripped"));
  CHECK(cp.HasEvent("web", "rolling back to web:1"));
  CHECK(CountEvents(cp, "has reached a steady state.") == 2);
  CHECK(cp.Count().by_revision == std::map<int64_t, int64_t>{{spec.revision, 6}});
}

TEST_CASE("services: without rollback a tripped deployment is FAILED and starts nothing more", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", true);
  spec.desired = 4;
  spec.min_pct = 50;
  spec.breaker = true;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));

  int64_t bad = cp.RegisterTaskDefinition("web", true);
  cp.fails = [bad](const model::Task& t) { return t.revision == bad; };
  Watch w;
  WatchLimits(cp, w);
  REQUIRE(cp.Deploy("web", "web", bad).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Service()->primary().rollout_state == "FAILED"; }));
  INFO(cp.Events());
  CHECK(cp.Service()->primary().revision == bad);
  CHECK(cp.Service()->primary().rollout_reason.find("circuit breaker tripped") != std::string::npos);
  CHECK(cp.HasEvent("web", "failed: circuit breaker tripped"));
  size_t tasks = cp.state.tasks().size();
  for (int i = 0; i < 40; i++) cp.Step();
  CHECK(w.broken == "");
  CHECK(cp.state.tasks().size() == tasks);  // nothing new was started
  CHECK(cp.Count().live == cp.Count().healthy);
  CHECK(cp.Count().by_revision[bad] == 0);
}

TEST_CASE("services: tasks of a lost node are stopped and replaced elsewhere", "[control][services]") {
  ControlPlane::Options o;
  o.lost_after_ms = 5000;
  ControlPlane cp(o);
  for (int i = 0; i < 4; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web");
  spec.desired = 8;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::vector<std::string> lost;
  for (const auto& [id, t] : cp.state.tasks()) {
    if (t.node == "n1") lost.push_back(id);
  }
  REQUIRE(!lost.empty());
  auto all_lost = [&] {
    for (const std::string& id : lost) {
      if (!cp.state.FindTask(id)->stopped()) return false;
    }
    return true;
  };

  SECTION("the hub declares it lost once the agent was away past the grace period") {
    int64_t away = cp.clock.NowUnixMs();
    cp.state.SetNodeConnected("n1", false, away);
    REQUIRE(cp.RunUntil(all_lost));
    CHECK(cp.clock.NowUnixMs() - away >= o.lost_after_ms);
  }
  SECTION("a NodeLost command") {
    cp.state.SetNodeConnected("n1", false, cp.clock.NowUnixMs());
    auto cmd = std::make_unique<model::NodeLost>();
    cmd->node = "n1";
    cmd->reason = "lost in a test";
    REQUIRE(cp.Apply(std::move(cmd)).ok());
    CHECK(all_lost());
  }
  for (const std::string& id : lost) {
    CHECK(cp.state.FindTask(id)->stop_code == "NodeLost");
    CHECK(cp.state.FindTask(id)->desired == "STOPPED");
  }
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  Census c = cp.Count();
  CHECK(c.by_node.count("n1") == 0);
  CHECK(c.running == 8);
}

TEST_CASE("services: draining a node moves its tasks within the limits and places nothing new there",
          "[control][services]") {
  auto limits = GENERATE(std::make_pair(100, 200), std::make_pair(50, 100), std::make_pair(0, 100));
  bool health = GENERATE(false, true);
  uint64_t seed = GENERATE(1, 2, 3);
  CAPTURE(limits.first, limits.second, health, seed);
  ControlPlane::Options o;
  o.seed = seed;
  ControlPlane cp(o);
  for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", health);
  spec.desired = 9;
  spec.min_pct = limits.first;
  spec.max_pct = limits.second;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::set<std::string> before;
  for (const auto& [id, t] : cp.state.tasks()) {
    if (t.node == "n0" && !t.stopped()) before.insert(id);
  }
  REQUIRE(!before.empty());

  cp.advance_chance = 0.5;
  Watch w;
  WatchLimits(cp, w);
  auto limits_check = cp.on_round;
  std::string landed;
  cp.on_round = [&] {
    limits_check();
    for (const auto& [id, t] : cp.state.tasks()) {
      if (t.node == "n0" && !t.stopped() && !before.count(id)) landed = id;
    }
  };
  REQUIRE(cp.SetNodeStatus("n0", "DRAINING").ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady() && cp.Count().by_node.count("n0") == 0; }, 1000));
  INFO(cp.Events());
  CHECK(w.broken == "");
  CHECK(landed == "");
  for (const std::string& id : before) CHECK(cp.state.FindTask(id)->stop_code == "ServiceSchedulerInitiated");
  CHECK(cp.Count().running == 9);

  // Active again: it takes tasks again (a scale-up spreads onto it).
  REQUIRE(cp.SetNodeStatus("n0", "ACTIVE").ok());
  REQUIRE(cp.Scale("web", 12).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady() && cp.Service()->desired == 12; }));
  CHECK(cp.Count().by_node.count("n0") == 1);
}

TEST_CASE("services: scaling down and up", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web");
  spec.desired = 6;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));

  REQUIRE(cp.Scale("web", 2).ok());
  CHECK(cp.Service()->primary().rollout_state == "IN_PROGRESS");
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.Count().running == 2);
  CHECK(cp.HasEvent("web", "has stopped 4 running tasks"));

  REQUIRE(cp.Scale("web", 9).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.Count().running == 9);
  CHECK(cp.Count().by_node.size() == 3);

  REQUIRE(cp.Scale("web", 0).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.Count().live == 0);
  CHECK(CountEvents(cp, "has reached a steady state.") == 4);

  // Scaling down while tasks are still starting stops the ones not running yet first.
  REQUIRE(cp.Scale("web", 6).ok());
  cp.advance_chance = 0.5;
  for (int i = 0; i < 2; i++) {
    cp.AgentStep();
    cp.store->Flush();
  }
  std::set<std::string> not_running;
  int64_t live = 0;
  for (const auto& [id, t] : cp.state.tasks()) {
    if (t.stopped()) continue;
    live++;
    if (t.last != "RUNNING") not_running.insert(id);
  }
  REQUIRE(live == 6);
  REQUIRE(cp.Scale("web", 3).ok());
  int64_t stopping = 0, stopping_not_running = 0;
  for (const auto& [id, t] : cp.state.tasks()) {
    if (t.stopped() || t.desired != "STOPPED") continue;
    stopping++;
    stopping_not_running += not_running.count(id);
  }
  CHECK(stopping == 3);
  CHECK(stopping_not_running == std::min<int64_t>(3, static_cast<int64_t>(not_running.size())));
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.Count().running == 3);
}

TEST_CASE("services: deleting with force stops the tasks and then removes the service", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 2; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web");
  spec.desired = 5;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));

  auto refused = std::make_unique<model::DeleteService>();
  refused->cluster = "default";
  refused->name = "web";
  Result<std::string> r = cp.Apply(std::move(refused));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == "ServiceNotScaledDown");

  auto del = std::make_unique<model::DeleteService>();
  del->cluster = "default";
  del->name = "web";
  del->force = true;
  REQUIRE(cp.Apply(std::move(del)).ok());
  REQUIRE(cp.Service());
  CHECK(cp.Service()->status == "DRAINING");
  REQUIRE(cp.RunUntil([&] { return cp.Service() == nullptr; }));
  for (const auto& [id, t] : cp.state.tasks()) {
    CHECK(t.stopped());
    CHECK(t.stop_code == "ServiceSchedulerInitiated");
  }
  CHECK(cp.state.FindCluster("default")->active_services == 0);
  // Gone for good: a new service of the same name starts afresh.
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
}

TEST_CASE("services: unplaceable tasks give an event with the reason and are placed once a node fits",
          "[control][services]") {
  ControlPlane cp;
  ControlPlane::ServiceSpec spec;
  std::string reason;
  std::function<void()> add_fitting;

  SECTION("no nodes") {
    spec.revision = cp.RegisterTaskDefinition("web");
    reason = "Reason: no nodes are registered in the cluster.";
    add_fitting = [&] { cp.AddNode("n0"); };
  }
  SECTION("a memberOf constraint no node meets") {
    for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
    spec.revision = cp.RegisterTaskDefinition("web");
    spec.constraints = R"([{"type":"memberOf","expression":"attribute:zone == zone-z"}])";
    reason = "Reason: memberOf constraint on 3 nodes.";
    add_fitting = [&] { cp.AddNode("z0", {{"zone", "zone-z"}}); };
  }
  SECTION("tasks larger than any node") {
    for (int i = 0; i < 2; i++) cp.AddNode("n" + std::to_string(i));
    spec.revision = cp.RegisterTaskDefinition("web", false, 6000, 128);
    reason = "Reason: insufficient CPU on 2 nodes.";
    add_fitting = [&] { cp.AddNode("big", {{"zone", "zone-a"}}, 16384, 16384); };
  }
  spec.desired = 2;
  REQUIRE(cp.CreateService(spec).ok());
  for (int i = 0; i < 20; i++) cp.Step();
  INFO(cp.Events());
  CHECK(cp.Count().live == 0);
  CHECK(cp.HasEvent("web",
                    "was unable to place a task because no container instance met all of its requirements. " + reason));
  CHECK(CountEvents(cp, "was unable to place a task") == 1);  // not repeated every second

  add_fitting();
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.Count().running == 2);
  CHECK(cp.Count().by_node.size() == 1);
}

// Issue 10, item 8: a service that cannot place its tasks used to be tried again
// (a placement pass, and a scan of every node to explain the failure) every
// second, forever. Now only a change that may make room wakes it.
TEST_CASE("services: regression: a service waiting for room is tried again only when room that fits appears",
          "[control][services]") {
  ControlPlane cp;
  cp.AddNode("small", {}, 4096, 1024);
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", false, 256, 2048);
  spec.desired = 2;
  REQUIRE(cp.CreateService(spec).ok());
  for (int i = 0; i < 4; i++) cp.Step();
  REQUIRE(cp.Count().live == 0);
  uint64_t passes = cp.scheduler->passes();
  CHECK(passes >= 1);

  // A minute of simulated time with nothing changing: no placement pass.
  for (int i = 0; i < 240; i++) cp.Step();
  CHECK(cp.scheduler->passes() == passes);
  CHECK(cp.services->placement_retries() == 0);

  // Room that cannot fit one task (another node as small; a small service's
  // task coming and going) wakes nothing either.
  cp.AddNode("small-2", {}, 4096, 1024);
  ControlPlane::ServiceSpec tiny;
  tiny.name = "tiny";
  tiny.family = "tiny";
  tiny.revision = cp.RegisterTaskDefinition("tiny", false, 128, 64);
  tiny.desired = 1;
  REQUIRE(cp.CreateService(tiny).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Count("tiny").running == 1; }));
  uint64_t with_tiny = cp.scheduler->passes();
  auto scale = std::make_unique<model::UpdateService>();
  scale->cluster = "default";
  scale->name = "tiny";
  scale->desired = 0;
  REQUIRE(cp.Apply(std::move(scale)).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Count("tiny").live == 0; }));
  for (int i = 0; i < 40; i++) cp.Step();
  CHECK(cp.services->placement_retries() == 0);
  CHECK(cp.scheduler->passes() == with_tiny);  // "tiny" itself placed nothing new

  // A node with room: tried again at once, and placed.
  cp.AddNode("big", {}, 4096, 8192);
  REQUIRE(cp.RunUntil([&] { return cp.Count().running == 2; }, 20));
  CHECK(cp.services->placement_retries() >= 1);
  CHECK(cp.Count().by_node.count("big") == 1);
}

TEST_CASE("services: a task that fails its health checks is stopped and replaced", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 2; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", true);
  spec.desired = 3;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::string sick;
  for (const auto& [id, t] : cp.state.tasks()) sick = id;
  cp.unhealthy = [&sick](const model::Task& t) { return t.id == sick; };
  REQUIRE(cp.RunUntil([&] { return cp.state.FindTask(sick)->stopped(); }));
  INFO(cp.Events());
  CHECK(cp.state.FindTask(sick)->stopped_reason == "Task failed container health checks");
  CHECK(cp.HasEvent("web", "has stopped 1 running task that failed their container health checks."));
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.state.tasks().size() == 4);
}

// The store flushes a bounded number of rounds at a time, so the ticker can fire
// while the commands of the controller's last pass are still queued; acting on
// that view would start the same tasks twice.
TEST_CASE("services: regression: a tick while the last pass's commands are queued starts nothing twice",
          "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 2; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web");
  spec.desired = 4;
  spec.max_pct = 100;
  cp.store->SetAfterFlush(nullptr);
  REQUIRE(cp.CreateService(spec).ok());
  cp.services->Reconcile();  // the pass a capped flush left queued
  REQUIRE(cp.store->queued() > 0);
  cp.services->Tick();
  cp.ConnectController();
  cp.store->Flush();
  CHECK(cp.Count().live == 4);
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  CHECK(cp.state.tasks().size() == 4);
}

TEST_CASE("services: a breaker whose rollback target was deregistered fails the deployment once",
          "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web", true);
  spec.desired = 4;
  spec.breaker = true;
  spec.rollback = true;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  int64_t bad = cp.RegisterTaskDefinition("web", true);
  auto dereg = std::make_unique<model::DeregisterTaskDefinition>();
  dereg->family = "web";
  dereg->revision = spec.revision;
  REQUIRE(cp.Apply(std::move(dereg)).ok());
  cp.fails = [bad](const model::Task& t) { return t.revision == bad; };
  REQUIRE(cp.Deploy("web", "web", bad).ok());
  bool decided = cp.RunUntil([&] { return cp.Service()->primary().rollout_state != "IN_PROGRESS"; });
  for (int i = 0; i < 40; i++) cp.Step();
  INFO(cp.Events());
  REQUIRE(decided);
  CHECK(cp.Service()->primary().revision == bad);
  CHECK(cp.Service()->primary().rollout_state == "FAILED");
  CHECK(CountEvents(cp, "circuit breaker tripped") == 1);
  CHECK(cp.Count().by_revision[spec.revision] == 4);  // the old tasks keep running
}

TEST_CASE("services: task ids are 32 hex digits that begin with their creation time", "[control][services]") {
  ControlPlane cp;
  for (int i = 0; i < 3; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web");
  spec.desired = 5;
  REQUIRE(cp.CreateService(spec).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::set<std::string> first;
  for (const auto& [id, t] : cp.state.tasks()) first.insert(id);
  REQUIRE(first.size() == 5);

  cp.clock.Advance(5000);
  int64_t later_ms = cp.clock.NowUnixMs();
  REQUIRE(cp.Scale("web", 10).ok());
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  std::set<std::string> all;
  for (const auto& [id, t] : cp.state.tasks()) all.insert(id);
  REQUIRE(all.size() == 10);
  char stamp[16];
  for (const std::string& id : all) {
    INFO(id);
    CHECK(id.size() == 32);
    CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    if (first.count(id)) continue;
    // Made after the first five: sorts after every one of them, stamped with the clock.
    CHECK(id > *first.rbegin());
    snprintf(stamp, sizeof stamp, "%012llx", static_cast<unsigned long long>(later_ms));
    CHECK(id.compare(0, 12, stamp) >= 0);
  }
}
