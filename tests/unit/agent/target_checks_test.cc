// agent/target_checks: the `checks` document (validation with named paths, the
// matcher's syntax) and the probes against real servers on 127.0.0.1 that answer
// 200, 500, nothing, or refuse: the state machine's thresholds, reasons, what is
// pending for the server and what it acknowledged. Intervals are short (tens of
// milliseconds); nothing asserts a duration, only that a state comes in time.
#include "agent/target_checks.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "net/socket.h"
#include "net/stream.h"
#include "net/uv.h"
#include "support/loopback.h"
#include "support/test_loop.h"

using namespace berth;
using agent::HealthState;
using berth::testing::TestLoop;

namespace {

// An HTTP server for checks: answers each request with `status`; says nothing
// when `status` is kSilent, closes at once for kClose, and sends bytes that are
// no status line for kGarbage. Counts the connections it accepted.
struct CheckServer {
  struct Conn final : net::Stream::Handler {
    CheckServer* owner = nullptr;
    std::unique_ptr<net::Stream> s;
    std::string got;
    bool answered = false;
    void OnData(std::string_view d) override {
      got.append(d);
      if (answered || got.find("\r\n\r\n") == std::string::npos) return;
      owner->requests.push_back(got);
      if (owner->status == kSilent) return;
      answered = true;
      if (owner->status == kClose) return s->Close();
      if (owner->status == kGarbage) return s->Write(std::string(20000, 'x'));
      s->Write("HTTP/1.1 " + std::to_string(owner->status) + " X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
      s->Shutdown();
    }
    void OnEnd(int) override { s->Close(); }
  };

  static constexpr int kSilent = 0, kClose = -1, kGarbage = -2;
  int status = 200;
  int accepted = 0;
  std::vector<std::string> requests;
  std::vector<std::unique_ptr<Conn>> conns;
  std::unique_ptr<net::Listener> listener;

  CheckServer(TestLoop* loop, int answer) : status(answer) {
    auto l = net::Listener::Open(loop->get(), net::Endpoint::Parse("127.0.0.1:0").value(),
                                 [this](std::unique_ptr<net::Stream> s) {
                                   accepted++;
                                   auto c = std::make_unique<Conn>();
                                   c->owner = this;
                                   c->s = std::move(s);
                                   c->s->SetHandler(c.get());
                                   c->s->ReadStart();
                                   conns.push_back(std::move(c));
                                 });
    REQUIRE(l.ok());
    listener = std::move(l.value());
  }
  int port() const { return listener->port(); }
};

// `object` (JSON text) with the members of `changes` (JSON text) put in or replaced.
std::string With(const std::string& object, const std::string& changes) {
  Result<json::Doc> d = json::Doc::Parse(object);
  Result<json::Doc> c = json::Doc::Parse(changes);
  REQUIRE(d.ok());
  REQUIRE(c.ok());
  for (json::View f : c->view()) d->Set(f.Key(), json::Doc::Copy(f));
  return d->Print();
}

// One check entry as the server sends it, fast for tests.
std::string Entry(const std::string& task, int port, const std::string& protocol = "HTTP",
                  const std::string& changes = "{}") {
  return With(R"({"taskId":")" + task + R"(","targetGroup":"web","address":"127.0.0.1","port":)" +
                  std::to_string(port) + R"(,"protocol":")" + protocol +
                  R"(","path":"/health","matcher":"200-399","intervalSeconds":10,"timeoutSeconds":5,)" +
                  R"("intervalMs":250,"timeoutMs":200,"healthyThreshold":2,"unhealthyThreshold":3})",
              changes);
}

std::string Doc(int64_t version, const std::vector<std::string>& entries) {
  std::string out = R"({"version":)" + std::to_string(version) + R"(,"targets":[)";
  for (size_t i = 0; i < entries.size(); i++) out += (i ? "," : "") + entries[i];
  return out + "]}";
}

Result<agent::ChecksDoc> Parse(const std::string& text) {
  Result<json::Doc> d = json::Doc::Parse(text);
  REQUIRE(d.ok());
  return agent::ParseChecks(d->view());
}

void Apply(agent::TargetChecks& checks, const std::string& text) {
  Result<agent::ChecksDoc> doc = Parse(text);
  if (!doc) FAIL(doc.error().message);
  REQUIRE(checks.Apply(std::move(doc.value())));
}

HealthState StateOf(const agent::TargetChecks& checks, const std::string& task) {
  return checks.Health(task, "web").state;
}

}  // namespace

TEST_CASE("target checks: the matcher takes codes and one range of 100-599", "[agent][checks]") {
  Result<agent::StatusMatcher> one = agent::ParseMatcher("200");
  REQUIRE(one.ok());
  CHECK(one->Accepts(200));
  CHECK_FALSE(one->Accepts(201));
  Result<agent::StatusMatcher> list = agent::ParseMatcher("200,302");
  REQUIRE(list.ok());
  CHECK(list->Accepts(302));
  CHECK_FALSE(list->Accepts(301));
  Result<agent::StatusMatcher> range = agent::ParseMatcher("200-399");
  REQUIRE(range.ok());
  CHECK(range->Accepts(200));
  CHECK(range->Accepts(399));
  CHECK_FALSE(range->Accepts(400));
  CHECK_FALSE(range->Accepts(199));

  struct Bad {
    const char* text;
    const char* message;
  };
  for (Bad bad :
       {Bad{"", "must not be empty"}, Bad{"abc", "\"abc\" is not a status code of 100-599"},
        Bad{"99", "\"99\" is not a status code of 100-599"}, Bad{"200,600", "\"600\" is not a status code of 100-599"},
        Bad{"200,", "\"\" is not a status code of 100-599"},
        Bad{"399-200", "\"399-200\": a range must go from low to high"},
        Bad{"200-", "\"\" is not a status code of 100-599"}}) {
    Result<agent::StatusMatcher> m = agent::ParseMatcher(bad.text);
    INFO(bad.text);
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().message == bad.message);
  }
}

TEST_CASE("target checks: a document is validated whole, errors naming the field's path", "[agent][checks]") {
  Result<agent::ChecksDoc> good = Parse(Doc(3, {Entry("a", 8080), Entry("b", 8081, "TCP")}));
  REQUIRE(good.ok());
  CHECK(good->version == 3);
  REQUIRE(good->targets.size() == 2);
  CHECK(good->targets[0].interval_ms == 250);
  CHECK(good->targets[0].timeout_ms == 200);
  CHECK(good->targets[1].protocol == agent::CheckProtocol::kTcp);

  // The seconds hold when no milliseconds are given.
  Result<agent::ChecksDoc> seconds = Parse(
      R"({"version":1,"targets":[{"taskId":"t","targetGroup":"web","address":"10.0.0.2","port":80,"protocol":"HTTP",)"
      R"("path":"/","matcher":"200","intervalSeconds":10,"timeoutSeconds":5,"healthyThreshold":2,"unhealthyThreshold":2}]})");
  REQUIRE(seconds.ok());
  CHECK(seconds->targets[0].interval_ms == 10000);
  CHECK(seconds->targets[0].timeout_ms == 5000);

  struct Bad {
    std::string text;
    std::string message;
  };
  std::string base = R"({"taskId":"t","targetGroup":"web","address":"10.0.0.2","port":80,"protocol":"HTTP",)"
                     R"("healthyThreshold":2,"unhealthyThreshold":2})";
  auto with = [&](const std::string& fields) {
    return R"({"version":1,"targets":[)" + Entry("x", 1) + "," + With(base, "{" + fields + "}") + "]}";
  };
  std::vector<Bad> bad = {
      {"[]", "checks: must be an object, not an array"},
      {R"({"targets":[]})", "checks.version: must be a whole number of 1 or more"},
      {R"({"version":0,"targets":[]})", "checks.version: must be a whole number of 1 or more"},
      {R"({"version":1,"targets":{}})", "checks.targets: must be an array"},
      {R"({"version":1,"targets":[7]})", "checks.targets[0]: must be an object, not a number"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"port":0)"), "checks.targets[1].port: must be 1-65535"},
      {with(R"("intervalSeconds":4,"timeoutSeconds":2)"), "checks.targets[1].intervalSeconds: must be 5-300"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":1)"), "checks.targets[1].timeoutSeconds: must be 2-120"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":10)"),
       "checks.targets[1].timeoutSeconds: must be less than intervalSeconds"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"healthyThreshold":11)"),
       "checks.targets[1].healthyThreshold: must be 2-10"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"unhealthyThreshold":1)"),
       "checks.targets[1].unhealthyThreshold: must be 2-10"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"protocol":"UDP")"),
       "checks.targets[1].protocol: must be HTTP or TCP"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"matcher":"200-700")"),
       "checks.targets[1].matcher: \"700\" is not a status code of 100-599"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"path":"/a b")"),
       "checks.targets[1].path: must start with / and hold no spaces or control characters"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"path":"/\r\nX: y")"),
       "checks.targets[1].path: must start with / and hold no spaces or control characters"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"taskId":"")"),
       "checks.targets[1].taskId: must be 1-128 characters"},
      {with(R"("intervalSeconds":10)"), "checks.targets[1].timeoutSeconds: is required"},
      {with(R"("intervalMs":40,"timeoutMs":50)"), "checks.targets[1].intervalMs: must be 50-300000"},
      {with(R"("intervalSeconds":10,"timeoutSeconds":5,"taskId":"x","targetGroup":"web")"),
       "checks.targets[1]: task x is checked twice for target group web"},
  };
  for (const Bad& b : bad) {
    INFO(b.text);
    Result<agent::ChecksDoc> r = Parse(b.text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == b.message);
  }

  // At most kMaxChecks checks on a node.
  std::string many = R"({"version":1,"targets":[)";
  std::string one = Entry("@", 80);
  size_t at = one.find('@');
  for (size_t i = 0; i <= agent::kMaxChecks; i++) {
    many += (i ? "," : "") + one.substr(0, at) + std::to_string(i) + one.substr(at + 1);
  }
  many += "]}";
  Result<agent::ChecksDoc> over = Parse(many);
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().message == "checks.targets: at most 10000 checks on a node");
}

TEST_CASE("target checks: one pass makes a new target healthy; 500 and refusals make it unhealthy with ELB's reasons",
          "[agent][checks]") {
  TestLoop loop;
  CheckServer ok(&loop, 200), failing(&loop, 500);
  int refused = testing::FreeLoopbackPort();
  int pending_calls = 0;
  agent::TargetChecks checks(loop.get(), [&] { pending_calls++; });
  Apply(checks, Doc(1, {Entry("ok", ok.port()), Entry("fail", failing.port()), Entry("refused", refused),
                        Entry("tcp", ok.port(), "TCP")}));
  CHECK(checks.size() == 4);
  REQUIRE(loop.RunUntil(
      [&] {
        return StateOf(checks, "ok") == HealthState::kHealthy && StateOf(checks, "tcp") == HealthState::kHealthy &&
               StateOf(checks, "fail") == HealthState::kUnhealthy &&
               StateOf(checks, "refused") == HealthState::kUnhealthy;
      },
      20000));
  CHECK(pending_calls >= 4);

  agent::TargetHealth fail = checks.Health("fail", "web");
  CHECK(fail.reason == "Target.ResponseCodeMismatch");
  CHECK(fail.description == "Health checks failed with these codes: [500]");
  agent::TargetHealth ref = checks.Health("refused", "web");
  CHECK(ref.reason == "Target.FailedHealthChecks");
  CHECK(ref.description == "connection refused");
  CHECK(checks.Health("ok", "web").reason.empty());

  // The request is the one the contract names.
  REQUIRE_FALSE(ok.requests.empty());
  CHECK(ok.requests[0] == "GET /health HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(ok.port()) +
                              "\r\nUser-Agent: berth-health-check\r\nConnection: close\r\n\r\n");

  // Everything is pending, in (task, group) order; once acknowledged, nothing is.
  agent::TargetChecks::Batch pending = checks.Pending();
  REQUIRE(pending.entries.size() == 4);
  CHECK(pending.entries[0].task_id == "fail");
  CHECK(pending.entries[0].ToJson() ==
        R"({"taskId":"fail","targetGroup":"web","state":"unhealthy","reason":"Target.ResponseCodeMismatch",)"
        R"("description":"Health checks failed with these codes: [500]"})");
  CHECK(checks.Pending(2).entries.size() == 2);
  checks.Acknowledge(pending);
  CHECK_FALSE(checks.HasPending());
  CHECK(checks.Pending().entries.empty());
}

TEST_CASE("target checks: a server that does not answer times out", "[agent][checks]") {
  TestLoop loop;
  CheckServer silent(&loop, CheckServer::kSilent);
  agent::TargetChecks checks(loop.get());
  Apply(checks, Doc(1, {Entry("slow", silent.port())}));
  REQUIRE(loop.RunUntil([&] { return StateOf(checks, "slow") == HealthState::kUnhealthy; }, 20000));
  CHECK(checks.Health("slow", "web").reason == "Target.Timeout");
  CHECK(checks.Health("slow", "web").description == "Request timed out");
}

TEST_CASE("target checks: an answer without a status line fails the check", "[agent][checks]") {
  TestLoop loop;
  CheckServer closing(&loop, CheckServer::kClose), garbage(&loop, CheckServer::kGarbage);
  agent::TargetChecks checks(loop.get());
  Apply(checks, Doc(1, {Entry("closing", closing.port()), Entry("garbage", garbage.port())}));
  REQUIRE(loop.RunUntil(
      [&] {
        return StateOf(checks, "closing") == HealthState::kUnhealthy &&
               StateOf(checks, "garbage") == HealthState::kUnhealthy;
      },
      20000));
  CHECK(checks.Health("closing", "web").reason == "Target.FailedHealthChecks");
  // Read up to the bound (16 KiB) and no further.
  CHECK(checks.Health("garbage", "web").reason == "Target.FailedHealthChecks");
  CHECK(checks.Health("garbage", "web").description == "No status line in the answer");
}

TEST_CASE("target checks: healthy to unhealthy after the unhealthy threshold, back after the healthy threshold",
          "[agent][checks]") {
  TestLoop loop;
  CheckServer server(&loop, 200);
  agent::TargetChecks checks(loop.get());
  Apply(checks, Doc(1, {Entry("t", server.port())}));
  REQUIRE(loop.RunUntil([&] { return StateOf(checks, "t") == HealthState::kHealthy; }, 20000));
  checks.Acknowledge(checks.Pending());

  // unhealthyThreshold is 3: two failures leave it healthy, the third does not.
  server.status = 500;
  size_t at = server.requests.size();
  REQUIRE(loop.RunUntil([&] { return server.requests.size() >= at + 2; }, 20000));
  // The second failure's probe may still be on its way back; the state moves only at the third.
  if (server.requests.size() == at + 2) {
    loop.Spin();
    if (server.requests.size() == at + 2) CHECK(StateOf(checks, "t") == HealthState::kHealthy);
  }
  REQUIRE(loop.RunUntil([&] { return StateOf(checks, "t") == HealthState::kUnhealthy; }, 20000));
  CHECK(server.requests.size() >= at + 3);
  CHECK(checks.HasPending());
  checks.Acknowledge(checks.Pending());

  // healthyThreshold is 2: one pass is not enough from unhealthy.
  server.status = 200;
  at = server.requests.size();
  REQUIRE(loop.RunUntil([&] { return StateOf(checks, "t") == HealthState::kHealthy; }, 20000));
  CHECK(server.requests.size() >= at + 2);
  std::vector<agent::TargetHealth> pending = checks.Pending().entries;
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].state == HealthState::kHealthy);
  CHECK(pending[0].reason.empty());
}

TEST_CASE("target checks: a target no longer listed stops being probed and is forgotten", "[agent][checks]") {
  TestLoop loop;
  CheckServer a(&loop, 500), b(&loop, 200);
  agent::TargetChecks checks(loop.get());
  Apply(checks, Doc(1, {Entry("a", a.port()), Entry("b", b.port())}));
  REQUIRE(loop.RunUntil([&] { return StateOf(checks, "a") == HealthState::kUnhealthy; }, 20000));
  REQUIRE_FALSE(checks.Pending().entries.empty());

  // An older or equal version changes nothing.
  Result<agent::ChecksDoc> stale = Parse(Doc(1, {}));
  REQUIRE(stale.ok());
  CHECK_FALSE(checks.Apply(std::move(stale.value())));
  CHECK(checks.size() == 2);

  Apply(checks, Doc(2, {Entry("b", b.port())}));
  CHECK(checks.size() == 1);
  CHECK(checks.version() == 2);
  CHECK(StateOf(checks, "a") == HealthState::kInitial);
  for (const agent::TargetHealth& h : checks.Pending().entries) CHECK(h.task_id != "a");
  int accepted = a.accepted;
  uint64_t started = checks.probes_started();
  // b goes on being probed; a does not.
  REQUIRE(loop.RunUntil([&] { return checks.probes_started() >= started + 3; }, 20000));
  loop.Spin();
  CHECK(a.accepted <= accepted + 1);  // one connect may have been on its way
  int after = a.accepted;
  REQUIRE(loop.RunUntil([&] { return checks.probes_started() >= started + 6; }, 20000));
  CHECK(a.accepted == after);
}

TEST_CASE("target checks: new settings start a target again at initial", "[agent][checks]") {
  TestLoop loop;
  CheckServer server(&loop, 500);
  agent::TargetChecks checks(loop.get());
  Apply(checks, Doc(1, {Entry("t", server.port())}));
  REQUIRE(loop.RunUntil([&] { return StateOf(checks, "t") == HealthState::kUnhealthy; }, 20000));
  checks.Acknowledge(checks.Pending());
  // A matcher that takes 500: one pass from initial is healthy.
  Apply(checks, Doc(2, {Entry("t", server.port(), "HTTP", R"({"matcher":"500"})")}));
  CHECK(StateOf(checks, "t") == HealthState::kInitial);
  CHECK_FALSE(checks.HasPending());
  REQUIRE(loop.RunUntil([&] { return StateOf(checks, "t") == HealthState::kHealthy; }, 20000));
  CHECK(checks.HasPending());
}

TEST_CASE("target checks: a whole set again (a new stream) reports every state again", "[agent][checks]") {
  TestLoop loop;
  CheckServer server(&loop, 200);
  agent::TargetChecks checks(loop.get());
  Apply(checks, Doc(1, {Entry("a", server.port()), Entry("b", testing::FreeLoopbackPort())}));
  REQUIRE(loop.RunUntil(
      [&] { return StateOf(checks, "a") == HealthState::kHealthy && StateOf(checks, "b") == HealthState::kUnhealthy; },
      20000));
  checks.Acknowledge(checks.Pending());
  REQUIRE_FALSE(checks.HasPending());

  agent::TargetChecks::Batch before = checks.Pending();
  checks.ForgetAcknowledged();
  agent::TargetChecks::Batch again = checks.Pending();
  REQUIRE(again.entries.size() == 2);
  CHECK(again.entries[0].state == HealthState::kHealthy);
  CHECK(again.entries[1].state == HealthState::kUnhealthy);
  // A report sent before the new stream began, answered after, acknowledges nothing.
  before.entries = again.entries;
  checks.Acknowledge(before);
  CHECK(checks.Pending().entries.size() == 2);
  // An acknowledgement of what is no longer current leaves the target pending.
  agent::TargetChecks::Batch stale = again;
  stale.entries[0].state = HealthState::kUnhealthy;
  checks.Acknowledge(stale);
  REQUIRE(checks.Pending().entries.size() == 1);
  CHECK(checks.Pending().entries[0].task_id == "a");
}

TEST_CASE("target checks: nothing calls back once they are destroyed", "[agent][checks]") {
  TestLoop loop;
  CheckServer silent(&loop, CheckServer::kSilent), ok(&loop, 200);
  int calls = 0;
  auto checks = std::make_unique<agent::TargetChecks>(loop.get(), [&] { calls++; });
  Apply(*checks,
        Doc(1, {Entry("slow", silent.port()), Entry("ok", ok.port()), Entry("refused", testing::FreeLoopbackPort())}));
  // Probes in flight (a silent server holds one open) when they go.
  REQUIRE(loop.RunUntil([&] { return silent.accepted >= 1; }, 20000));
  checks.reset();
  int before = calls;
  int accepted = silent.accepted + ok.accepted;
  bool waited = false;
  net::Timer wait(loop.get());
  wait.Start(300, 0, [&] { waited = true; });
  REQUIRE(loop.RunUntil([&] { return waited; }, 20000));
  CHECK(calls == before);
  CHECK(silent.accepted + ok.accepted <= accepted + 2);  // connects already under way at most
}
