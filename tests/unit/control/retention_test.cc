// control/retention: stopped tasks and unused INACTIVE revisions leave memory and
// state.db through the command path (issue 10, item 6: nothing was ever forgotten).
#include "control/retention.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <random>

#include "base/crypto.h"
#include "control/control_plane.h"

using namespace berth;
using namespace berth::testing;

namespace {

int64_t StoppedOf(const ControlPlane& cp, const std::string& service) {
  int64_t n = 0;
  for (const auto& [id, t] : cp.state.tasks()) n += t.service == service && t.stopped();
  return n;
}

int64_t Rows(ControlPlane& cp, const char* sql) {
  Result<int64_t> n = cp.store->db().QueryInt(sql);
  REQUIRE(n.ok());
  return n.value();
}

// What a fresh load of the database holds.
size_t TasksOnDisk(const std::string& path) {
  model::State fresh;
  metrics::Registry m;
  store::StoreOptions o;
  o.path = path;
  auto s = store::Store::Open(o, &fresh, &m);
  REQUIRE(s.ok());
  return fresh.tasks().size();
}

}  // namespace

TEST_CASE("retention: a crash-looping service keeps a bounded number of stopped tasks, none past the retention",
          "[control][retention]") {
  ControlPlane cp;
  control::RetentionOptions ro;
  ro.task_retention_ms = 10 * 60 * 1000;
  ro.stopped_per_service = 20;
  control::RetentionController retention(&cp.state, cp.store.get(), &cp.clock, ro);
  for (int i = 0; i < 2; i++) cp.AddNode("n" + std::to_string(i));
  ControlPlane::ServiceSpec spec;
  spec.revision = cp.RegisterTaskDefinition("web");
  spec.desired = 4;
  REQUIRE(cp.CreateService(spec).ok());
  // Every task exits once it runs: the service replaces them, over and over.
  cp.fails = [](const model::Task&) { return true; };
  int64_t most_stopped = 0;
  for (int i = 0; i < 300; i++) {
    cp.Step();
    retention.Tick();
    cp.store->Flush();
    most_stopped = std::max(most_stopped, StoppedOf(cp, "web"));
  }
  INFO(cp.Events());
  int64_t made = Rows(cp, "SELECT MAX(rowid) FROM tasks");
  CHECK(made > 200);  // the loop went round many times
  CHECK(StoppedOf(cp, "web") <= 20);
  // Between two ticks a few more stop; never many more.
  CHECK(most_stopped <= 20 + 4 * 4);
  CHECK(Rows(cp, "SELECT COUNT(*) FROM tasks") == static_cast<int64_t>(cp.state.tasks().size()));
  CHECK(TasksOnDisk(cp.store->db().path()) == cp.state.tasks().size());
  // The newest stopped tasks are the ones kept.
  int64_t oldest_kept = INT64_MAX;
  for (const auto& [id, t] : cp.state.tasks()) {
    if (t.stopped()) oldest_kept = std::min(oldest_kept, t.stopped_ms);
  }
  CHECK(cp.clock.NowUnixMs() - oldest_kept < 30 * 1000);

  // The loop stops; past the retention every stopped task is gone, and the
  // running ones are untouched: the service stays at its count.
  cp.fails = nullptr;
  REQUIRE(cp.RunUntil([&] { return cp.Steady(); }));
  cp.clock.Advance(ro.task_retention_ms + 1000);
  retention.Tick();
  cp.store->Flush();
  CHECK(StoppedOf(cp, "web") == 0);
  CHECK(retention.stopped_tasks() == 0);
  CHECK(cp.Count().running == 4);
  CHECK(Rows(cp, "SELECT COUNT(*) FROM tasks") == 4);
  for (int i = 0; i < 20; i++) cp.Step();
  CHECK(cp.Steady());
  CHECK(cp.state.tasks().size() == 4);
}

TEST_CASE("retention: standalone tasks are forgotten after the retention only", "[control][retention]") {
  ControlPlane cp;
  control::RetentionOptions ro;
  ro.task_retention_ms = 60 * 1000;
  ro.stopped_per_service = 1;
  control::RetentionController retention(&cp.state, cp.store.get(), &cp.clock, ro);
  cp.AddNode("n0");
  cp.RegisterTaskDefinition("batch");
  auto place = std::make_unique<model::PlaceTasks>();
  place->cluster = "default";
  place->family = "batch";
  place->revision = 1;
  place->group = "family:batch";
  for (int i = 0; i < 3; i++)
    place->placements.push_back({"00000000000" + std::to_string(i) + std::string(20, 'a'), "n0"});
  REQUIRE(cp.Apply(std::move(place)).ok());
  auto stop = std::make_unique<model::StopTasks>();
  for (const auto& [id, t] : cp.state.tasks()) stop->ids.push_back(id);
  stop->reason = "test";
  REQUIRE(cp.Apply(std::move(stop)).ok());
  REQUIRE(cp.RunUntil([&] {
    for (const auto& [id, t] : cp.state.tasks()) {
      if (!t.stopped()) return false;
    }
    return true;
  }));
  retention.Tick();
  cp.store->Flush();
  CHECK(cp.state.tasks().size() == 3);  // the per-service bound is for services
  std::string why;
  // The short form (last 12 characters) is shared by these three ids: ambiguous.
  CHECK(cp.state.ResolveTask("aaaaaaaaaaaa", &why) == nullptr);
  CHECK(why.find("ambiguous") != std::string::npos);
  CHECK(cp.state.ResolveTask("000000000001" + std::string(20, 'a'), &why) != nullptr);
  CHECK(cp.state.ResolveTask("0000000000", &why) == nullptr);  // a prefix of all three
  cp.clock.Advance(61 * 1000);
  retention.Tick();
  cp.store->Flush();
  CHECK(cp.state.tasks().empty());
  // Forgotten tasks leave the short-form index too.
  CHECK(cp.state.ResolveTask("aaaaaaaaaaaa", &why) == nullptr);
  CHECK(why.find("does not exist") != std::string::npos);
  CHECK(Rows(cp, "SELECT COUNT(*) FROM tasks") == 0);
}

TEST_CASE("retention: unused INACTIVE revisions are forgotten, the latest of a family and used ones kept",
          "[control][retention]") {
  ControlPlane cp;
  control::RetentionOptions ro;
  ro.task_retention_ms = 60 * 1000;
  ro.taskdef_scan_ms = 0;
  control::RetentionController retention(&cp.state, cp.store.get(), &cp.clock, ro);
  cp.AddNode("n0");
  for (int i = 0; i < 4; i++) cp.RegisterTaskDefinition("web");
  // A task of revision 1, stopped; revision 2 used by a service.
  auto place = std::make_unique<model::PlaceTasks>();
  place->cluster = "default";
  place->family = "web";
  place->revision = 1;
  place->group = "family:web";
  place->placements.push_back({"000000000001" + std::string(20, 'b'), "n0"});
  REQUIRE(cp.Apply(std::move(place)).ok());
  ControlPlane::ServiceSpec spec;
  spec.revision = 2;
  spec.desired = 1;
  REQUIRE(cp.CreateService(spec).ok());
  for (int64_t rev : {1, 2, 3, 4}) {
    auto d = std::make_unique<model::DeregisterTaskDefinition>();
    d->family = "web";
    d->revision = rev;
    REQUIRE(cp.Apply(std::move(d)).ok());
  }
  auto revisions = [&] {
    std::vector<int64_t> out;
    for (const auto& [rev, td] : cp.state.task_definitions().at("web")) out.push_back(rev);
    return out;
  };
  retention.Tick();
  cp.store->Flush();
  CHECK(revisions() == std::vector<int64_t>{1, 2, 3, 4});  // not yet past the retention
  cp.clock.Advance(61 * 1000);
  retention.Tick();
  cp.store->Flush();
  // 3 goes; 1 has a task, 2 a service, 4 is the latest.
  CHECK(revisions() == std::vector<int64_t>{1, 2, 4});
  CHECK(Rows(cp, "SELECT COUNT(*) FROM task_definitions") == 3);
  // Its task stopped and forgotten, revision 1 goes too.
  auto stop = std::make_unique<model::StopTasks>();
  stop->ids.push_back("000000000001" + std::string(20, 'b'));
  stop->reason = "test";
  REQUIRE(cp.Apply(std::move(stop)).ok());
  REQUIRE(cp.RunUntil([&] { return cp.state.FindTask("000000000001" + std::string(20, 'b'))->stopped(); }));
  cp.clock.Advance(61 * 1000);
  retention.Tick();  // forgets the task
  cp.store->Flush();
  retention.Tick();  // then its revision
  cp.store->Flush();
  CHECK(revisions() == std::vector<int64_t>{2, 4});
  // Numbering goes on after the latest, which was kept.
  CHECK(cp.RegisterTaskDefinition("web") == 5);
}

TEST_CASE("retention: expired dashboard sessions are forgotten, a batch a tick, and stay gone",
          "[control][retention]") {
  ControlPlane cp;
  control::RetentionOptions ro;
  ro.sessions_per_tick = 2;
  control::RetentionController retention(&cp.state, cp.store.get(), &cp.clock, ro);
  auto token = [&](const std::string& id, const std::string& parent, int64_t expires_ms) {
    auto c = std::make_unique<model::CreateToken>();
    c->id = id;
    c->role = parent.empty() ? "deploy" : "session";
    c->parent = parent;
    c->hash = crypto::Hex(crypto::Sha256(id));
    c->expires_ms = expires_ms;
    REQUIRE(cp.Apply(std::move(c)).ok());
  };
  int64_t now = cp.clock.NowUnixMs();
  token("dev", "", 0);
  for (int i = 0; i < 5; i++) token("session-short" + std::to_string(i), "dev", now + 1000);
  token("session-long", "dev", now + 3600 * 1000);
  auto sessions = [&] {
    size_t n = 0;
    for (const model::Token& t : cp.state.tokens()) n += t.session();
    return n;
  };
  auto tick = [&] {
    retention.Tick();
    cp.store->Flush();
  };
  tick();
  CHECK(sessions() == 6);  // none expired yet

  cp.clock.Advance(2000);
  tick();
  CHECK(sessions() == 4);
  tick();
  CHECK(sessions() == 2);
  tick();
  CHECK(sessions() == 1);
  tick();
  CHECK(sessions() == 1);
  CHECK(cp.state.FindToken("session-long"));
  CHECK(cp.state.FindToken("dev"));
  CHECK(Rows(cp, "SELECT COUNT(*) FROM tokens WHERE parent != ''") == 1);
  CHECK(retention.sessions() == 1);  // its index let go of what went

  // A session revoked with its token leaves the index too; one made before the
  // controller was (a restart) is in it.
  token("ops", "", 0);
  token("session-ops", "ops", now + 3600 * 1000);
  CHECK(retention.sessions() == 2);
  control::RetentionController later(&cp.state, cp.store.get(), &cp.clock, ro);
  CHECK(later.sessions() == 2);
  auto revoke = std::make_unique<model::DeleteToken>();
  revoke->id = "ops";
  REQUIRE(cp.Apply(std::move(revoke)).ok());
  CHECK(retention.sessions() == 1);
  CHECK(later.sessions() == 1);

  // The command itself forgets only sessions expired at its time: a token, or
  // a session still in force, named by a stale or hostile entry, stays.
  auto forget = std::make_unique<model::ForgetSessions>();
  forget->ids = {"dev", "session-long", "no-such"};
  Result<std::string> r = cp.Apply(std::move(forget));
  REQUIRE(r.ok());
  CHECK(r.value() == "{\"forgotten\":0}");
  CHECK(cp.state.token_count() == 2);  // dev and session-long

  // What is on disk agrees: a restart does not bring them back.
  model::State fresh;
  metrics::Registry m;
  store::StoreOptions o;
  o.path = cp.store->db().path();
  auto reopened = store::Store::Open(o, &fresh, &m);
  REQUIRE(reopened.ok());
  size_t on_disk = 0;
  for (const model::Token& t : fresh.tokens()) on_disk += t.session();
  CHECK(on_disk == 1);
}

TEST_CASE("retention: a cluster's tasks stopped since a time, counted from the index, match a walk over all tasks",
          "[control][retention]") {
  ControlPlane cp;
  control::RetentionOptions ro;
  ro.task_retention_ms = 90 * 60 * 1000;  // some are forgotten on the way
  control::RetentionController retention(&cp.state, cp.store.get(), &cp.clock, ro);
  REQUIRE(cp.Apply(ControlPlane::MakeCluster("other")).ok());
  cp.AddNode("n0");
  cp.AddNodeIn("other", "o0");
  cp.RegisterTaskDefinition("batch", false, 32, 32);

  std::mt19937 rng(16);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  int made = 0;
  auto walk = [&](const std::string& cluster, int64_t since) {
    size_t n = 0;
    for (const auto& [id, t] : cp.state.tasks()) n += t.cluster == cluster && t.stopped() && t.stopped_ms >= since;
    return n;
  };
  size_t windows_with_tasks = 0;
  for (int round = 0; round < 150; round++) {
    cp.clock.Advance(pick(90) * 1000);
    auto place = std::make_unique<model::PlaceTasks>();
    bool in_other = pick(3) == 0;
    place->cluster = in_other ? "other" : "default";
    place->family = "batch";
    place->revision = 1;
    place->group = "family:batch";
    for (int i = pick(4); i > 0; i--) {
      char id[33];
      snprintf(id, sizeof id, "%012d%020d", ++made, 0);
      place->placements.push_back({id, in_other ? "o0" : "n0"});
    }
    if (!place->placements.empty()) REQUIRE(cp.Apply(std::move(place)).ok());
    auto stop = std::make_unique<model::StopTasks>();
    for (const auto& [id, t] : cp.state.tasks()) {
      if (!t.stopped() && t.desired != "STOPPED" && pick(3) == 0) stop->ids.push_back(id);
    }
    stop->reason = "test";
    if (!stop->ids.empty()) REQUIRE(cp.Apply(std::move(stop)).ok());
    cp.Step();
    retention.Tick();
    cp.store->Flush();
    int64_t now = cp.clock.NowUnixMs();
    for (const char* cluster : {"default", "other", "none"}) {
      for (int64_t since : {now - 3600 * 1000, now - pick(7200) * 1000, now, int64_t{0}}) {
        INFO("round " << round << ", cluster " << cluster << ", since " << now - since << " ms ago");
        REQUIRE(retention.StoppedSince(cluster, since) == walk(cluster, since));
        windows_with_tasks += walk(cluster, since) > 0;
      }
    }
  }
  CHECK(windows_with_tasks > 100);  // not only empty windows were compared
  CHECK(walk("default", 0) > walk("default", cp.clock.NowUnixMs() - 3600 * 1000));  // and older ones too
  CHECK(walk("other", cp.clock.NowUnixMs() - 3600 * 1000) > 0);
}
