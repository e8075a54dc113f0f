// agent/reconciler and agent/call_queue: the agent's decisions against a fake
// engine that answers only when the test says (fake_engine.h).
#include "agent/reconciler.h"

#include <catch2/catch.hpp>
#include <optional>
#include <set>

#include "agent/call_queue.h"
#include "agent/fake_engine.h"

using namespace berth;
using agent::testing::FakeEngine;

namespace {

constexpr const char* kNode = "node-1";
constexpr const char* kTaskDef = R"({"family":"web","containerDefinitions":[
  {"name":"app","image":"busybox:1","memory":32,"essential":true}]})";

struct Fixture {
  FakeEngine engine;
  int lost = 0;
  std::vector<std::string> secrets_forgotten;
  std::optional<std::set<std::string>> secrets_kept;  // what the first sync's sweep kept
  std::unique_ptr<agent::Reconciler> r;
  std::map<std::string, json::Doc, std::less<>> defs;
  std::map<std::string, agent::DesiredTask> desired;

  explicit Fixture(size_t concurrency = 4) {
    agent::ReconcilerOptions o;
    o.docker_concurrency = concurrency;
    agent::Reconciler::Hooks hooks;
    hooks.engine_lost = [this] { lost++; };
    hooks.forget_secrets = [this](const std::string& task) { secrets_forgotten.push_back(task); };
    hooks.sweep_secrets = [this](const std::set<std::string>& keep) { secrets_kept = keep; };
    r = std::make_unique<agent::Reconciler>(&engine, o, std::move(hooks));
    r->SetNode(kNode);
    Result<json::Doc> td = json::Doc::Parse(kTaskDef);
    REQUIRE(td);
    defs.emplace("web:1", std::move(td.value()));
  }

  void SyncEmpty() {
    r->Sync();
    REQUIRE(engine.Answer("list"));
    REQUIRE(r->synced());
  }
  // Task ids are 32 characters like the server's; `n` makes them distinct.
  static std::string Id(int n) {
    char buf[33];
    snprintf(buf, sizeof buf, "%032d", n);
    return buf;
  }
  void Want(int from, int to, const char* what) {
    for (int i = from; i < to; i++) {
      agent::DesiredTask d;
      d.cluster = "default";
      d.service = "web";
      d.task_definition = "web:1";
      d.desired = what;
      desired[Id(i)] = d;
    }
    r->ApplyDesired(desired, defs);
  }
  size_t Running() const {
    size_t n = 0;
    for (const auto& [id, c] : engine.containers) n += c.state == "running";
    return n;
  }
};

}  // namespace

TEST_CASE("reconciler: a task runs through image, create, start and inspect", "[agent][reconciler]") {
  Fixture f;
  f.SyncEmpty();
  f.Want(0, 1, "RUNNING");
  f.engine.AnswerAll();
  CHECK(f.Running() == 1);
  CHECK(f.r->TaskStatus(Fixture::Id(0)) == "RUNNING");
  std::vector<std::string> ops;
  for (const std::string& l : f.engine.log) ops.push_back(l.substr(0, l.find(' ')));
  CHECK(ops == std::vector<std::string>{"watch", "list", "image", "create", "start", "inspect"});
  auto reports = f.r->PendingReports(10);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].second.find(R"("lastStatus":"RUNNING")") != std::string::npos);
}

TEST_CASE("reconciler: a task told to stop while its create is in flight is removed, never started",
          "[agent][reconciler]") {
  Fixture f;
  f.SyncEmpty();
  f.Want(0, 1, "RUNNING");
  REQUIRE(f.engine.Answer("image"));
  REQUIRE(f.engine.Waiting("create") == 1);
  f.Want(0, 1, "STOPPED");
  REQUIRE(f.engine.Answer("create"));  // the container now exists, created
  CHECK(f.engine.Waiting("start") == 0);
  REQUIRE(f.engine.Waiting("remove") == 1);
  f.engine.AnswerAll();
  CHECK(f.engine.Count("start") == 0);
  CHECK(f.engine.containers.empty());
  CHECK(f.r->TaskStatus(Fixture::Id(0)) == "STOPPED");
  auto reports = f.r->PendingReports(10);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].second.find(R"("lastStatus":"STOPPED")") != std::string::npos);
  CHECK(reports[0].second.find("exitCode") == std::string::npos);  // it never ran
}

TEST_CASE("reconciler: a scale-down drops the creates and starts still queued; calls stay within the limit",
          "[agent][reconciler]") {
  Fixture f(3);
  f.SyncEmpty();
  f.Want(0, 200, "RUNNING");
  // Images are looks; answer them, and let a few tasks get as far as created.
  while (f.engine.Waiting("image") > 0) f.engine.Answer("image");
  CHECK(f.engine.pending.size() <= 3);
  for (int i = 0; i < 5; i++) f.engine.Answer("create");
  size_t started_before = f.engine.Count("start");
  size_t in_flight = f.engine.pending.size();
  CHECK(in_flight <= 3);

  f.desired.clear();  // scale to 0: every task leaves the node's set
  f.r->ApplyDesired(f.desired, f.defs);
  f.engine.AnswerAll();
  // No start was issued after the scale-down beyond what was already in flight.
  CHECK(f.engine.Count("start") <= started_before + in_flight);
  CHECK(f.Running() == 0);
  CHECK(f.engine.containers.empty());
  CHECK(f.r->calls().peak() <= 3);
  CHECK(f.engine.peak_pending <= 3);
  CHECK(f.r->calls().dropped() >= 150);
  CHECK(f.engine.Count("create") < 20);
}

TEST_CASE("reconciler: stops go out before the starts that were asked with them", "[agent][reconciler]") {
  Fixture f(1);
  f.SyncEmpty();
  f.Want(0, 3, "RUNNING");
  f.engine.AnswerAll();
  REQUIRE(f.Running() == 3);
  size_t before = f.engine.log.size();
  // One change: three running tasks stop, five new ones start.
  f.desired.clear();
  f.Want(10, 15, "RUNNING");
  f.engine.AnswerAll();
  std::vector<std::string> after(f.engine.log.begin() + static_cast<long>(before), f.engine.log.end());
  size_t last_stop = 0, first_create = after.size();
  for (size_t i = 0; i < after.size(); i++) {
    if (after[i].rfind("stop ", 0) == 0) last_stop = i;
    if (after[i].rfind("create ", 0) == 0 && first_create == after.size()) first_create = i;
  }
  CHECK(f.engine.Count("stop") == 3);
  CHECK(last_stop < first_create);
  CHECK(f.Running() == 5);
}

TEST_CASE("reconciler: the events stream opens before the listing, and running containers are adopted",
          "[agent][reconciler]") {
  Fixture f;
  FakeEngine::Container c;
  c.name = "berth-app";
  c.state = "running";
  c.labels = {{"berth.node", kNode},        {"berth.task", Fixture::Id(7)},     {"berth.container", "app"},
              {"berth.cluster", "default"}, {"berth.task-definition", "web:1"}, {"berth.service", "web"}};
  f.engine.containers["abc"] = c;
  f.r->Sync();
  REQUIRE(f.engine.log.size() == 2);
  CHECK(f.engine.log[0] == "watch node-1");
  CHECK(f.engine.log[1] == "list node-1");
  f.engine.AnswerAll();
  // Secret files of tasks stopped while no agent was here go; the adopted one's stay.
  REQUIRE(f.secrets_kept.has_value());
  CHECK(*f.secrets_kept == std::set<std::string>{Fixture::Id(7)});
  f.Want(7, 8, "RUNNING");
  f.engine.AnswerAll();
  CHECK(f.engine.Count("create") == 0);
  CHECK(f.engine.Count("start") == 0);
  CHECK(f.r->TaskStatus(Fixture::Id(7)) == "RUNNING");
  CHECK(f.r->ContainerId(Fixture::Id(7), "app") == "abc");

  // A container that dies is seen through its event, without a resync.
  f.engine.containers["abc"].state = "exited";
  f.engine.containers["abc"].exit_code = 1;
  f.engine.on_event(agent::ContainerEvent{"die", "abc", Fixture::Id(7), "app"});
  f.engine.AnswerAll();
  CHECK(f.r->TaskStatus(Fixture::Id(7)) == "STOPPED");
  // Adopted, so no record says it had secret files: they are removed all the same.
  CHECK(f.secrets_forgotten == std::vector<std::string>{Fixture::Id(7)});
}

TEST_CASE("reconciler: an engine that stops answering is reported once, and the next sync carries on",
          "[agent][reconciler]") {
  Fixture f;
  f.SyncEmpty();
  f.Want(0, 1, "RUNNING");
  REQUIRE(f.engine.Answer("image"));
  REQUIRE(f.engine.Answer("create", Error{ErrorKind::kUnavailable, "EngineUnavailable", "connection refused"}));
  CHECK(f.lost == 1);
  CHECK_FALSE(f.r->ready());
  f.engine.AnswerAll();
  CHECK(f.engine.Count("create") == 1);                 // nothing is tried while the engine is away
  CHECK(f.r->TaskStatus(Fixture::Id(0)) == "PENDING");  // and no task is blamed

  f.r->Sync();  // the owner found the engine again
  f.engine.AnswerAll();
  CHECK(f.lost == 1);
  CHECK(f.Running() == 1);
  CHECK(f.r->TaskStatus(Fixture::Id(0)) == "RUNNING");
}

TEST_CASE("call queue: at most the limit in flight, stops first, unwanted calls dropped", "[agent][queue]") {
  agent::CallQueue q(2);
  std::vector<std::string> issued;
  std::vector<std::function<void()>> finish;
  auto call = [&](std::string name) {
    return [&, name](std::function<void()> done) {
      issued.push_back(name);
      finish.push_back(std::move(done));
    };
  };
  q.Push(agent::Lane::kStart, call("start1"));
  q.Push(agent::Lane::kStart, call("start2"));
  q.Push(agent::Lane::kStart, call("start3"));
  bool wanted = false, was_dropped = false;
  q.Push(
      agent::Lane::kStart, call("start4"), [&] { return wanted; }, [&] { was_dropped = true; });
  q.Push(agent::Lane::kLook, call("look"));
  q.Push(agent::Lane::kStop, call("stop"));
  CHECK(issued == std::vector<std::string>{"start1", "start2"});
  CHECK(q.waiting() == 4);
  finish[0]();
  finish[0]();  // a second call of the same `finished` frees nothing
  CHECK(issued.back() == "stop");
  CHECK(q.in_flight() == 2);
  finish[1]();
  CHECK(issued.back() == "look");
  finish[2]();
  CHECK(issued.back() == "start3");
  finish[3]();
  CHECK(was_dropped);
  CHECK(q.dropped() == 1);
  CHECK(issued.size() == 5);
  CHECK(q.peak() == 2);
}
