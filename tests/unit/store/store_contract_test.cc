// The store's contract, "a failed write changes nothing", checked with storage
// failures injected into SQLite (store::Db::SetFault): for each command that
// writes several rows, a failure at each of its writes in turn must leave memory
// exactly as a fresh load of the database shows it, and as it was before.
// Issue 10, item 7: these commands used to change memory (and tell observers)
// before all their rows were written.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <string>

#include "model/commands.h"
#include "model/state.h"
#include "model/taskdef.h"
#include "registry/state.h"
#include "support/state_store.h"

using namespace berth;

namespace {

constexpr int64_t kT0 = 1700000000000;

// Everything State keeps, derived counts included, as text.
std::string Snapshot(const model::State& st, const registry::RegistryState& reg) {
  std::string out;
  for (const auto& [name, c] : st.clusters()) {
    out += "cluster " + name + " nodes=" + std::to_string(c.registered_nodes) +
           " services=" + std::to_string(c.active_services) + " running=" + std::to_string(c.running_tasks) +
           " pending=" + std::to_string(c.pending_tasks) + "\n";
  }
  for (const auto& [id, n] : st.nodes()) {
    out += "node " + id + " " + n.status + " cpu=" + std::to_string(n.used_cpu) + "/" + std::to_string(n.cpu) +
           " mem=" + std::to_string(n.used_memory) + "/" + std::to_string(n.memory) +
           " running=" + std::to_string(n.running) + " pending=" + std::to_string(n.pending) + " ports=";
    for (const auto& [port, udp] : n.ports) out += std::to_string(port) + (udp ? "u," : ",");
    out += " tasks=";
    for (const auto& [tid, t] : n.tasks) out += tid + ",";
    out += "\n";
  }
  std::map<std::string, std::string> tasks;
  for (const auto& [id, t] : st.tasks()) tasks[id] = model::TaskJson(t).Print();
  for (const auto& [id, text] : tasks) out += "task " + text + "\n";
  for (const auto& [key, s] : st.services()) out += "service " + key + " " + s.status + "\n";
  for (const auto& [family, revs] : st.task_definitions()) {
    for (const auto& [rev, td] : revs) out += "taskdef " + family + ":" + std::to_string(rev) + " " + td.status + "\n";
  }
  for (const auto& [name, r] : reg.repositories()) {
    out += "repo " + name + " manifests=" + std::to_string(r.manifests.size()) + " tags=";
    for (const auto& [tag, digest] : r.tags) out += tag + "=" + digest + ",";
    out += "\n";
  }
  return out;
}

struct Fixture {
  testing::TempDir dir;
  metrics::Registry metrics;
  model::State state;
  registry::RegistryState reg;
  std::unique_ptr<store::Store> store;

  Fixture() {
    state.AddPart(&reg);
    store::StoreOptions o;
    o.path = dir.File("state.db");
    auto s = store::Store::Open(o, &state, &metrics);
    REQUIRE(s.ok());
    store = std::move(s.value());
    REQUIRE(Apply(testing::MakeCreateCluster("default")).ok());
    json::Doc c = json::Doc::Object();
    c.Set("name", "main").Set("image", "busybox").Set("cpu", 256).Set("memory", 128);
    json::Doc pm = json::Doc::Object();
    pm.Set("containerPort", 80).Set("hostPort", 8080);
    c.Set("portMappings", json::Doc::Array().Push(pm));
    json::Doc body = json::Doc::Object();
    body.Set("family", "web").Set("containerDefinitions", json::Doc::Array().Push(c));
    Result<json::Doc> doc = model::ValidateTaskDefinition(body.view());
    REQUIRE(doc.ok());
    auto td = std::make_unique<model::RegisterTaskDefinition>();
    td->family = "web";
    td->doc = doc->Print();
    td->time_ms = kT0;
    REQUIRE(Apply(std::move(td)).ok());
    // "worker": the same without a host port.
    json::Doc w = json::Doc::Object();
    w.Set("name", "main").Set("image", "busybox").Set("cpu", 128).Set("memory", 64);
    json::Doc wbody = json::Doc::Object();
    wbody.Set("family", "worker").Set("containerDefinitions", json::Doc::Array().Push(w));
    Result<json::Doc> wdoc = model::ValidateTaskDefinition(wbody.view());
    REQUIRE(wdoc.ok());
    auto wtd = std::make_unique<model::RegisterTaskDefinition>();
    wtd->family = "worker";
    wtd->doc = wdoc->Print();
    wtd->time_ms = kT0;
    REQUIRE(Apply(std::move(wtd)).ok());
    for (int i = 0; i < 3; i++) REQUIRE(Apply(RegisterNode("n" + std::to_string(i))).ok());
  }

  static store::CommandPtr RegisterNode(const std::string& id) {
    auto n = std::make_unique<model::RegisterNode>();
    n->id = id;
    n->cluster = "default";
    n->hostname = id;
    n->cpu = 4096;
    n->memory = 8192;
    n->time_ms = kT0;
    return n;
  }

  Result<std::string> Apply(store::CommandPtr cmd) { return testing::ApplyNow(*store, std::move(cmd)); }

  // What a fresh load of the database says.
  std::string Disk() {
    model::State fresh;
    registry::RegistryState fresh_reg;
    fresh.AddPart(&fresh_reg);
    store::StoreOptions o;
    o.path = dir.File("state.db");
    metrics::Registry m;
    auto s = store::Store::Open(o, &fresh, &m);
    REQUIRE(s.ok());
    return Snapshot(fresh, fresh_reg);
  }
};

bool IsWrite(std::string_view sql) {
  return sql.rfind("INSERT", 0) == 0 || sql.rfind("UPDATE", 0) == 0 || sql.rfind("DELETE", 0) == 0;
}

// Applies the command `make` builds with the k-th row write failing (k = 1, 2,
// ...) until one runs with no failure left to inject; after each failure,
// memory must equal disk and what it was before. Returns the number of
// failures injected.
int FailEachWriteInTurn(Fixture& f, int rc, const std::function<store::CommandPtr()>& make) {
  int injected = 0;
  for (int k = 1;; k++) {
    std::string before = Snapshot(f.state, f.reg);
    REQUIRE(before == f.Disk());
    int writes = 0;
    bool fired = false;
    f.store->db().SetFault([&](std::string_view sql) {
      if (!IsWrite(sql) || ++writes != k) return 0;
      fired = true;
      return rc;
    });
    Result<std::string> r = f.Apply(make());
    f.store->db().SetFault(nullptr);
    if (!fired) {
      INFO((r.ok() ? std::string() : r.error().message));
      CHECK(r.ok());
      return injected;
    }
    injected++;
    INFO("write " << k << " failed");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("could not be stored") != std::string::npos);
    if (rc == SQLITE_FULL) CHECK(r.error().kind == ErrorKind::kInsufficientStorage);
    CHECK(Snapshot(f.state, f.reg) == before);
    CHECK(Snapshot(f.state, f.reg) == f.Disk());
  }
}

store::CommandPtr Place(const std::vector<std::pair<std::string, std::string>>& placements,
                        const std::string& family = "web") {
  auto p = std::make_unique<model::PlaceTasks>();
  p->cluster = "default";
  p->family = family;
  p->revision = 1;
  p->group = "family:" + family;
  p->started_by = "test";
  for (const auto& [id, node] : placements) p->placements.push_back({id, node});
  p->time_ms = kT0 + 1000;
  return p;
}

std::string Id(int i) {
  char buf[40];
  snprintf(buf, sizeof buf, "0000000000%02d00000000000000000000", i);
  return buf;
}

store::CommandPtr Report(const std::string& node, const std::vector<std::string>& ids, const std::string& last) {
  auto r = std::make_unique<model::ReportTasks>();
  r->node = node;
  for (const std::string& id : ids) {
    model::ReportTasks::Report one;
    one.task_id = id;
    one.last = last;
    one.containers = R"([{"name":"main","lastStatus":")" + last + R"(","healthStatus":"UNKNOWN"}])";
    r->reports.push_back(one);
  }
  r->time_ms = kT0 + 2000;
  return r;
}

}  // namespace

TEST_CASE("store: a storage failure at any write of a command changes nothing in memory", "[store][contract]") {
  Fixture f;
  int rc = GENERATE(SQLITE_FULL, SQLITE_IOERR_WRITE);
  INFO("injected SQLite code " << rc);
  f.state.SetNodeConnected("n2", true, kT0);

  // Placement of three tasks over two nodes: a row per task.
  CHECK(FailEachWriteInTurn(f, rc, [] { return Place({{Id(1), "n0"}, {Id(2), "n1"}, {Id(3), "n2"}}); }) >= 3);
  REQUIRE(f.state.tasks().size() == 3);
  // The reloads kept what is not state: n2's agent is still connected (else the
  // node would be declared lost), and its desired version never went back.
  CHECK(f.state.FindNode("n2")->connected);
  CHECK(f.state.FindNode("n2")->desired_version > 1);
  // Reports for several tasks of a node.
  REQUIRE(FailEachWriteInTurn(f, rc, [] { return Place({{Id(4), "n0"}}, "worker"); }) >= 1);
  CHECK(FailEachWriteInTurn(f, rc, [] { return Report("n0", {Id(1), Id(4)}, "RUNNING"); }) >= 2);
  REQUIRE(f.state.FindTask(Id(4))->last == "RUNNING");
  // A node lost: every task on it stops.
  CHECK(FailEachWriteInTurn(f, rc, [] {
          auto c = std::make_unique<model::NodeLost>();
          c->node = "n0";
          c->reason = "test";
          c->time_ms = kT0 + 3000;
          return c;
        }) >= 2);
  REQUIRE(f.state.FindTask(Id(1))->stopped());
  // A node deregistered with its tasks.
  CHECK(FailEachWriteInTurn(f, rc, [] {
          auto c = std::make_unique<model::DeregisterNode>();
          c->id = "n1";
          c->force = true;
          c->time_ms = kT0 + 4000;
          return c;
        }) >= 2);
  REQUIRE(f.state.FindNode("n1") == nullptr);
  // The registry: a manifest pushed into a repository it creates.
  CHECK(FailEachWriteInTurn(f, rc, [] {
          auto c = std::make_unique<registry::PutManifest>();
          c->repo = "team/app";
          c->digest = "sha256:" + std::string(64, 'a');
          c->media_type = "application/vnd.oci.image.manifest.v1+json";
          c->body = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                    R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
                    std::string(64, 'b') + R"(","size":2},"layers":[]})";
          c->tag = "1";
          c->auto_create = true;
          c->time_ms = kT0 + 5000;
          return c;
        }) >= 2);
  REQUIRE(f.reg.FindRepository("team/app") != nullptr);
}

TEST_CASE("store: a report refused for its second task leaves the first unapplied", "[store][contract]") {
  Fixture f;
  REQUIRE(f.Apply(Place({{Id(1), "n0"}, {Id(2), "n0"}}, "worker")).ok());
  std::string before = Snapshot(f.state, f.reg);
  auto r = std::make_unique<model::ReportTasks>();
  r->node = "n0";
  r->reports.push_back({Id(1), "RUNNING", "", ""});
  r->reports.push_back({Id(2), "RUNING", "", ""});
  r->time_ms = kT0 + 2000;
  Result<std::string> out = f.Apply(std::move(r));
  REQUIRE_FALSE(out.ok());
  CHECK(out.error().message == "tasks[1].lastStatus: must be PENDING, RUNNING or STOPPED");
  CHECK(Snapshot(f.state, f.reg) == before);
  CHECK(Snapshot(f.state, f.reg) == f.Disk());
}
