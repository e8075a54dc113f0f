// replica/replica: the store's batches as a Raft log. Three servers on libraft's
// test fixture (raft/fixture.h: in-memory I/O and simulated time, so every run
// takes the same steps), each a model::State over a store::Store of its own
// applying committed entries through replica::Fsm: replication, per-command
// results, a follower catching up from a snapshot, and a change of leader. Then
// one server on libraft's libuv I/O in a temporary directory (replica::Replica),
// restarted from its log, and from a snapshot once state.db is gone; restarted
// as a new leader, it acts only once an entry of its own term is applied.
#include "replica/replica.h"

#include <sqlite3.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "model/commands.h"
#include "model/state.h"
#include "store/store.h"
#include "support/state_store.h"
#include "support/test_loop.h"

extern "C" {
#include <raft.h>
#include <raft/fixture.h>
}

using namespace berth;
using berth::testing::MakeCreateCluster;

namespace {

// Simulated milliseconds a fixture may step before a wait gives up (a guard
// against a hung test, not a timing assertion: the fixture's time is not real).
constexpr unsigned kGuardMs = 60000;

using Commands = std::vector<store::CommandPtr>;

Commands Batch(store::CommandPtr a) {
  Commands out;
  out.push_back(std::move(a));
  return out;
}

template <typename... Rest>
Commands Batch(store::CommandPtr a, Rest... rest) {
  Commands out = Batch(std::move(rest)...);
  out.insert(out.begin(), std::move(a));
  return out;
}

std::string Entry(const Commands& commands) {
  std::vector<const store::Command*> batch;
  for (const auto& c : commands) batch.push_back(c.get());
  return store::EncodeBatch(batch);
}

// A server's clusters, as its memory holds them and as its rows say, and the
// index of the last entry its state.db holds.
std::string Dump(testing::StateStore& s) {
  return s.ClusterDump() + "applied " + std::to_string(s.store->applied_index()) + "\n";
}

std::vector<std::string> ClusterNames(const model::State& st) {
  std::vector<std::string> out;
  for (const auto& [name, c] : st.clusters()) out.push_back(name);
  return out;
}

// One server of the fixture: its state, its store and the state machine libraft
// applies entries to.
struct Server {
  testing::StateStore ss;
  replica::Fsm fsm{ss.store.get()};
};

// A batch proposed through raft_apply, and what its callback was told.
struct Proposal {
  struct raft_apply req {};
  bool done = false;
  int status = -1;
  std::optional<Result<store::Results>> results;
};

// Three (or n) servers on the fixture, bootstrapped as voters and started.
class Cluster {
 public:
  explicit Cluster(unsigned n = 3) {
    REQUIRE(raft_fixture_initialize(&f_) == 0);
    for (unsigned i = 0; i < n; i++) {
      servers_.push_back(std::make_unique<Server>());
      REQUIRE(raft_fixture_grow(&f_, servers_[i]->fsm.fsm()) == 0);
      raft* r = raft_fixture_get(&f_, i);
      servers_[i]->fsm.Attach(r);
      raft_set_pre_vote(r, true);  // as Replica runs it: a server back from the dead does not depose the leader
    }
    raft_configuration conf;
    REQUIRE(raft_fixture_configuration(&f_, n, &conf) == 0);
    int rv = raft_fixture_bootstrap(&f_, &conf);
    raft_configuration_close(&conf);
    REQUIRE(rv == 0);
    REQUIRE(raft_fixture_start(&f_) == 0);
  }
  // Closing the fixture fails the proposals still pending (their callbacks
  // fire): the proposals and the stores go after it.
  ~Cluster() { raft_fixture_close(&f_); }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  raft_fixture* f() { return &f_; }
  raft* raft_at(unsigned i) { return raft_fixture_get(&f_, i); }
  Server& server(unsigned i) { return *servers_[i]; }
  testing::StateStore& ss(unsigned i) { return servers_[i]->ss; }
  unsigned n() const { return static_cast<unsigned>(servers_.size()); }
  bool alive(unsigned i) { return raft_fixture_alive(&f_, i); }

  // Proposes one batch to server i. The proposal lives as long as the cluster.
  Proposal* Propose(unsigned i, const Commands& commands, int* rv_out = nullptr) {
    std::string entry = Entry(commands);
    raft_buffer buf;
    buf.len = entry.size();
    buf.base = raft_malloc(buf.len);
    REQUIRE(buf.base != nullptr);
    memcpy(buf.base, entry.data(), buf.len);
    auto p = std::make_unique<Proposal>();
    p->req.data = p.get();
    int rv = raft_apply(raft_at(i), &p->req, &buf, 1, [](struct raft_apply* req, int status, void* result) {
      auto* p = static_cast<Proposal*>(req->data);
      p->done = true;
      p->status = status;
      if (status == 0) p->results.emplace(*static_cast<Result<store::Results>*>(result));
    });
    if (rv_out) *rv_out = rv;
    if (rv != 0) {
      if (rv == RAFT_NOTLEADER) raft_free(buf.base);  // refused before the log took it
      p->done = true;
      p->status = rv;
    }
    proposals_.push_back(std::move(p));
    return proposals_.back().get();
  }

  // Steps until `done` holds; false if it did not within the guard.
  bool StepUntil(std::function<bool()> done) {
    return raft_fixture_step_until(
               &f_, [](raft_fixture*, void* arg) { return (*static_cast<std::function<bool()>*>(arg))(); }, &done,
               kGuardMs) &&
           done();
  }

  // Steps until every live server applied the entry at `index`.
  bool StepUntilApplied(raft_index index) {
    return StepUntil([this, index] {
      for (unsigned i = 0; i < n(); i++) {
        if (alive(i) && raft_last_applied(raft_at(i)) < index) return false;
      }
      return true;
    });
  }

  // Proposes a batch to the leader and steps until every live server applied it.
  Proposal* Commit(unsigned leader, const Commands& commands) {
    Proposal* p = Propose(leader, commands);
    REQUIRE(p->status != RAFT_NOTLEADER);
    REQUIRE(StepUntilApplied(p->req.index));
    REQUIRE(p->done);
    REQUIRE(p->status == 0);
    REQUIRE(p->results.has_value());
    return p;
  }

 private:
  raft_fixture f_{};
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::unique_ptr<Proposal>> proposals_;
};

}  // namespace

TEST_CASE("replica: three servers apply the same batches; the leader hears each command's result", "[replica]") {
  Cluster c;
  raft_fixture_elect(c.f(), 0);
  REQUIRE(raft_fixture_leader_index(c.f()) == 0);

  Proposal* first = c.Commit(0, Batch(MakeCreateCluster("alpha", 1000), MakeCreateCluster("beta", 1000)));
  REQUIRE(first->results->ok());
  REQUIRE(first->results->value().size() == 2);
  for (auto& r : first->results->value()) CHECK(r.ok());

  // One batch with refusals in it: each command is answered on its own, and
  // what was refused leaves nothing on any server.
  Proposal* second =
      c.Commit(0, Batch(MakeCreateCluster("gamma", 2000), MakeCreateCluster("alpha", 2000),
                        MakeCreateCluster("not valid!", 2000), testing::MakeDeleteCluster("missing", 2000)));
  REQUIRE(second->results->ok());
  store::Results& results = second->results->value();
  REQUIRE(results.size() == 4);
  CHECK(results[0].ok());
  REQUIRE_FALSE(results[1].ok());
  CHECK(results[1].error().code == "ClusterAlreadyExists");
  CHECK(results[1].error().kind == ErrorKind::kConflict);
  REQUIRE_FALSE(results[2].ok());
  CHECK(results[2].error().kind == ErrorKind::kInvalid);
  CHECK_FALSE(results[3].ok());
  CHECK(second->req.index == first->req.index + 1);

  for (unsigned i = 0; i < c.n(); i++) {
    CAPTURE(i);
    testing::StateStore& s = c.ss(i);
    CHECK(ClusterNames(s.state) == std::vector<std::string>{"alpha", "beta", "gamma"});
    REQUIRE(s.state.FindCluster("alpha"));
    CHECK(s.state.FindCluster("alpha")->created_ms == 1000);  // the duplicate changed nothing
    CHECK(s.Count("SELECT COUNT(*) FROM clusters WHERE name = 'not valid!'") == 0);
    CHECK(s.store->applied_index() == second->req.index);
    CHECK(s.Count("SELECT idx FROM log_applied WHERE id = 1") == static_cast<int64_t>(second->req.index));
    CHECK(Dump(s) == Dump(c.ss(0)));
  }

  // A follower refuses proposals; nothing of them is applied anywhere.
  int rv = 0;
  Proposal* refused = c.Propose(1, Batch(MakeCreateCluster("delta")), &rv);
  CHECK(rv == RAFT_NOTLEADER);
  CHECK(refused->status == RAFT_NOTLEADER);
  Proposal* third = c.Commit(0, Batch(MakeCreateCluster("epsilon")));
  for (unsigned i = 0; i < c.n(); i++) {
    CHECK_FALSE(c.ss(i).state.FindCluster("delta"));
    CHECK(c.ss(i).state.FindCluster("epsilon"));
    CHECK(c.ss(i).store->applied_index() == third->req.index);
  }
}

TEST_CASE("replica: a follower's deferred entries are not counted applied until its state holds them", "[replica]") {
  testing::TestLoop loop;  // never run: what the follower deferred stays deferred until Drain
  Cluster c;
  raft_fixture_elect(c.f(), 0);
  REQUIRE(raft_fixture_leader_index(c.f()) == 0);
  Proposal* before = c.Commit(0, Batch(MakeCreateCluster("before", 100)));
  c.server(1).fsm.DeferFollowerApplies(loop.get());

  Proposal* p = c.Commit(0, Batch(MakeCreateCluster("fresh", 200)));
  raft_index counted = raft_last_applied(c.raft_at(1));
  // libraft counts the entry applied on the follower; its state does not hold it.
  REQUIRE(counted >= p->req.index);
  CHECK_FALSE(c.server(1).fsm.drained());
  CHECK_FALSE(c.ss(1).state.FindCluster("fresh"));
  // The index a read's answer carries (Berth-Applied-Index) stops before it.
  CHECK(c.server(1).fsm.AppliedBefore(counted) == before->req.index);
  CHECK(c.server(1).fsm.AppliedBefore(counted) < p->req.index);

  REQUIRE(c.server(1).fsm.Drain());
  CHECK(c.ss(1).state.FindCluster("fresh"));
  CHECK(c.server(1).fsm.AppliedBefore(counted) == counted);
  CHECK(Dump(c.ss(1)) == Dump(c.ss(0)));
}

TEST_CASE("replica: a follower behind the leader's snapshots catches up by installing one", "[replica]") {
  Cluster c;
  for (unsigned i = 0; i < c.n(); i++) {
    raft_set_snapshot_threshold(c.raft_at(i), 4);
    raft_set_snapshot_trailing(c.raft_at(i), 2);
  }
  raft_fixture_elect(c.f(), 0);
  REQUIRE(raft_fixture_leader_index(c.f()) == 0);
  c.Commit(0, Batch(MakeCreateCluster("before", 100)));
  REQUIRE(c.ss(2).state.FindCluster("before"));
  raft_index behind = raft_last_index(c.raft_at(2));

  raft_fixture_kill(c.f(), 2);
  Proposal* last = nullptr;
  for (int i = 0; i < 12; i++) {
    last = c.Commit(0, Batch(MakeCreateCluster("c" + std::to_string(i), 1000 + i),
                             MakeCreateCluster("d" + std::to_string(i), 1000 + i)));
  }
  REQUIRE(c.ss(1).state.clusters().size() == 25);
  CHECK(c.ss(2).state.clusters().size() == 1);
  CHECK(c.server(0).fsm.snapshots_taken() > 0);
  // The leader's log no longer holds what server 2 needs next: only a snapshot
  // can bring it up to date.
  CHECK(c.raft_at(0)->log.snapshot.last_index > behind);
  CHECK(c.raft_at(0)->log.offset > behind);

  raft_fixture_revive(c.f(), 2);
  REQUIRE(c.StepUntilApplied(last->req.index));
  CHECK(c.server(2).fsm.snapshots_installed() > 0);
  CHECK(c.server(0).fsm.snapshots_installed() == 0);
  CHECK(c.ss(2).state.clusters().size() == 25);
  CHECK(Dump(c.ss(2)) == Dump(c.ss(0)));
  CHECK(Dump(c.ss(1)) == Dump(c.ss(0)));

  // It goes on applying entries as they come.
  Proposal* after = c.Commit(0, Batch(MakeCreateCluster("after", 5000)));
  for (unsigned i = 0; i < c.n(); i++) {
    CAPTURE(i);
    CHECK(c.ss(i).state.FindCluster("after"));
    CHECK(c.ss(i).store->applied_index() == after->req.index);
    CHECK(Dump(c.ss(i)) == Dump(c.ss(0)));
  }
}

TEST_CASE("replica: after a change of leader, entries proposed to the new one apply on every live server",
          "[replica]") {
  Cluster c;
  raft_fixture_elect(c.f(), 0);
  REQUIRE(raft_fixture_leader_index(c.f()) == 0);
  c.Commit(0, Batch(MakeCreateCluster("one", 1)));

  // Deposed, then another server elected.
  raft_fixture_depose(c.f());
  REQUIRE(raft_fixture_leader_index(c.f()) == c.n());
  int rv = 0;
  c.Propose(0, Batch(MakeCreateCluster("refused")), &rv);
  CHECK(rv == RAFT_NOTLEADER);
  raft_fixture_elect(c.f(), 1);
  REQUIRE(raft_fixture_leader_index(c.f()) == 1);
  Proposal* two = c.Commit(1, Batch(MakeCreateCluster("two", 2), MakeCreateCluster("one", 2)));
  REQUIRE(two->results->ok());
  REQUIRE(two->results->value().size() == 2);
  CHECK(two->results->value()[0].ok());
  REQUIRE_FALSE(two->results->value()[1].ok());
  CHECK(two->results->value()[1].error().code == "ClusterAlreadyExists");
  for (unsigned i = 0; i < c.n(); i++) {
    CAPTURE(i);
    CHECK(ClusterNames(c.ss(i).state) == std::vector<std::string>{"one", "two"});
    CHECK(Dump(c.ss(i)) == Dump(c.ss(1)));
  }

  // The leader dies: the other two elect one of themselves and go on.
  raft_fixture_kill(c.f(), 1);
  REQUIRE(c.StepUntil([&c] {
    unsigned l = raft_fixture_leader_index(c.f());
    return l < c.n() && l != 1;
  }));
  unsigned leader = raft_fixture_leader_index(c.f());
  Proposal* three = c.Commit(leader, Batch(MakeCreateCluster("three", 3)));
  REQUIRE(three->results->ok());
  CHECK(three->results->value().at(0).ok());
  unsigned other = leader == 0 ? 2 : 0;
  CHECK(ClusterNames(c.ss(leader).state) == std::vector<std::string>{"one", "three", "two"});
  CHECK(Dump(c.ss(other)) == Dump(c.ss(leader)));
  CHECK_FALSE(c.ss(1).state.FindCluster("three"));

  // Back, the old leader follows the new one and catches up.
  raft_fixture_revive(c.f(), 1);
  REQUIRE(c.StepUntilApplied(three->req.index));
  CHECK(raft_state(c.raft_at(1)) == RAFT_FOLLOWER);
  CHECK(Dump(c.ss(1)) == Dump(c.ss(leader)));
}

// ---------------------------------------------------------------- on disk, with libuv

namespace {

// A server of one on libraft's libuv I/O: a store over <dir>/state.db and its
// log in <dir>/raft, on a loop of its own.
//
// Replica::Close leaves libraft unclosed, its files as after a crash
// (docs/decisions.md), so a Replica must not be destroyed while its loop may
// still run (libraft's tick timer points into it). Each incarnation is therefore
// one "process": once closed, and once libraft's work on the thread pool is done
// (it writes in the directory the next incarnation reads), its loop and its
// Replica are parked, never run again and never freed, as a process that exited.
struct Node {
  std::unique_ptr<testing::TestLoop> loop = std::make_unique<testing::TestLoop>();
  std::string dir;
  metrics::Registry metrics;
  model::State state;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<replica::Replica> replica;

  // `started` runs once the replica started, before the loop runs.
  Node(std::string d, unsigned snapshot_threshold, const std::function<void(Node&)>& started = nullptr)
      : dir(std::move(d)) {
    store::StoreOptions so;
    so.path = dir + "/state.db";
    auto s = store::Store::Open(so, &state, &metrics);
    REQUIRE(s.ok());
    store = std::move(s.value());
    replica::Options o;
    o.dir = dir + "/raft";
    o.id = 1;
    o.address = "127.0.0.1:7070";
    o.snapshot_threshold = snapshot_threshold;
    o.snapshot_trailing = 2;
    o.segment_bytes = 8192;  // small segments, so the log behind a snapshot is removed
    auto r = replica::Replica::Start(loop->get(), o, store.get(), &metrics);
    REQUIRE(r.ok());
    replica = std::move(r.value());
    if (started) started(*this);
    // (CHECK: a REQUIRE here would destroy the Replica before its loop.)
    CHECK(loop->RunUntil([this] { return replica->leader(); }));
  }
  ~Node() {
    if (replica) Park();  // a failed test: parked as it is
  }

  // Submits a batch (one Flush), runs the loop until every reply came.
  std::vector<Result<std::string>> Apply(Commands commands) {
    std::vector<Result<std::string>> replies;
    size_t n = commands.size();
    for (auto& c : commands) {
      store->Submit(std::move(c), [&replies](Result<std::string> r) { replies.push_back(std::move(r)); });
    }
    store->Flush();
    REQUIRE(loop->RunUntil([&] { return replies.size() == n; }));
    CHECK(store->in_flight() == 0);
    return replies;
  }

  // Closes the log and the store, and parks the rest.
  void Close() {
    bool closed = false;
    replica->Close([&closed] { closed = true; });
    REQUIRE(loop->RunUntil([&closed] { return closed; }));
    uv_loop_t* l = loop->get();
    REQUIRE(loop->RunUntil([l] { return l->active_reqs.count == 0; }));
    REQUIRE(store->Close().ok());
    store.reset();
    Park();
  }

 private:
  void Park() {
    static auto* parked =
        new std::vector<std::pair<std::unique_ptr<testing::TestLoop>, std::unique_ptr<replica::Replica>>>();
    parked->emplace_back(std::move(loop), std::move(replica));
  }
};

// The index of the newest snapshot in a raft directory (its metadata file is
// "snapshot-<term>-<index>-<timestamp>.meta"), 0 if none.
uint64_t NewestSnapshot(const std::string& raft_dir) {
  uint64_t newest = 0;
  for (const auto& e : std::filesystem::directory_iterator(raft_dir)) {
    std::string name = e.path().filename().string();
    unsigned long long term = 0, index = 0, ts = 0;
    if (name.size() > 5 && name.substr(name.size() - 5) == ".meta" &&
        sscanf(name.c_str(), "snapshot-%llu-%llu-%llu", &term, &index, &ts) == 3) {
      newest = std::max<uint64_t>(newest, index);
    }
  }
  return newest;
}

// Whether the closed segment that starts at the first entry is still there.
bool FirstSegmentKept(const std::string& raft_dir) {
  for (const auto& e : std::filesystem::directory_iterator(raft_dir)) {
    if (e.path().filename().string().rfind("0000000000000001-", 0) == 0) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("replica: a server of one logs on disk, and restarts from its log", "[replica]") {
  testing::TempDir dir;
  uint64_t applied = 0;
  {
    Node node(dir.path(), 1024);
    auto replies = node.Apply(Batch(MakeCreateCluster("a", 1), MakeCreateCluster("b", 2)));
    REQUIRE(replies.size() == 2);
    CHECK(replies[0].ok());
    CHECK(replies[1].ok());
    replies = node.Apply(Batch(MakeCreateCluster("a", 3), MakeCreateCluster("c", 4)));
    REQUIRE(replies.size() == 2);
    REQUIRE_FALSE(replies[0].ok());
    CHECK(replies[0].error().code == "ClusterAlreadyExists");
    CHECK(replies[1].ok());
    replies = node.Apply(Batch(testing::MakeDeleteCluster("b", 5)));
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].ok());
    CHECK(ClusterNames(node.state) == std::vector<std::string>{"a", "c"});
    applied = node.store->applied_index();
    CHECK(applied == 4);  // the bootstrap configuration, then three entries
    CHECK(node.replica->fsm().snapshots_taken() == 0);
    node.Close();
  }
  {
    // state.db holds every entry: the log's are all skipped.
    Node node(dir.path(), 1024);
    CHECK(ClusterNames(node.state) == std::vector<std::string>{"a", "c"});
    REQUIRE(node.state.FindCluster("a"));
    CHECK(node.state.FindCluster("a")->created_ms == 1);
    CHECK(node.store->applied_index() == applied);
    CHECK(node.replica->fsm().snapshots_installed() == 0);
    CHECK(sqlite3_total_changes64(node.store->db().raw()) == 0);  // nothing written again
    auto replies = node.Apply(Batch(MakeCreateCluster("d", 6)));
    CHECK(replies.at(0).ok());
    CHECK(node.store->applied_index() > applied);
    applied = node.store->applied_index();
    node.Close();
  }
  {
    // Without state.db, the log alone (no snapshot yet) rebuilds everything.
    for (const char* f : {"state.db", "state.db-wal", "state.db-shm"}) std::filesystem::remove(dir.File(f));
    Node node(dir.path(), 1024);
    REQUIRE(node.loop->RunUntil([&node, applied] { return node.store->applied_index() >= applied; }));
    CHECK(ClusterNames(node.state) == std::vector<std::string>{"a", "c", "d"});
    CHECK(node.store->applied_index() == applied);
    node.Close();
  }
}

TEST_CASE("replica: a server of one snapshots, truncates its log, and restarts from the snapshot", "[replica]") {
  testing::TempDir dir;
  std::string raft_dir = dir.File("raft");
  std::vector<std::string> names;
  uint64_t applied = 0;
  {
    Node node(dir.path(), 4);
    // One entry at a time, of a few kilobytes (segments fill and close), until
    // snapshots were taken and the segment holding the first entries is gone.
    int i = 0;
    auto one = [&] {
      Commands batch;
      for (int k = 0; k < 8; k++) {
        names.push_back("n" + std::to_string(i) + "-" + std::to_string(k) + "-" + std::string(200, 'x'));
        batch.push_back(MakeCreateCluster(names.back(), 1000 + i));
      }
      i++;
      uint64_t taken = node.replica->fsm().snapshots_taken();
      for (auto& r : node.Apply(std::move(batch))) REQUIRE(r.ok());
      // The snapshot of an entry is taken right after it is applied, before
      // the loop iteration that answered it ends.
      return node.replica->fsm().snapshots_taken() > taken;
    };
    while (i < 200 && (node.replica->fsm().snapshots_taken() < 2 || FirstSegmentKept(raft_dir))) one();
    REQUIRE(node.replica->fsm().snapshots_taken() >= 2);
    REQUIRE_FALSE(FirstSegmentKept(raft_dir));
    // Then entries until the last one is in no snapshot: the restart below
    // needs the log after the snapshot, not only the snapshot.
    while (i < 220 && one()) {
    }
    applied = node.store->applied_index();
    node.Close();
    CHECK(NewestSnapshot(raft_dir) > 0);
    CHECK(NewestSnapshot(raft_dir) < applied);
  }
  std::sort(names.begin(), names.end());
  {
    // state.db is gone: the newest snapshot, then the entries after it.
    for (const char* f : {"state.db", "state.db-wal", "state.db-shm"}) std::filesystem::remove(dir.File(f));
    Node node(dir.path(), 4);
    CHECK(node.replica->fsm().snapshots_installed() == 1);
    REQUIRE(node.loop->RunUntil([&node, applied] { return node.store->applied_index() >= applied; }));
    CHECK(node.store->applied_index() == applied);
    CHECK(ClusterNames(node.state) == names);
    CHECK(node.Apply(Batch(MakeCreateCluster("later"))).at(0).ok());
    node.Close();
  }
  {
    // And with state.db back, the snapshot is older than it: nothing installed.
    Node node(dir.path(), 4);
    CHECK(node.replica->fsm().snapshots_installed() == 0);
    CHECK(node.state.clusters().size() == names.size() + 1);
    CHECK(sqlite3_total_changes64(node.store->db().raw()) == 0);  // nothing written again
    node.Close();
  }
}

TEST_CASE("replica: a new leader acts only once an entry of its own term is applied", "[replica]") {
  testing::TempDir dir;
  {
    // A new log: the server leads at once, and acts once the barrier it
    // proposes for its term is applied.
    Node node(dir.path(), 1024);
    CHECK(node.replica->leader());
    CHECK_FALSE(node.replica->acting());
    CHECK(node.loop->RunUntil([&node] { return node.replica->acting(); }));
    replica::LogStatus st = node.replica->Describe();
    CHECK(st.applied_index == 2);  // the bootstrap configuration, then the barrier
    CHECK(node.Apply(Batch(MakeCreateCluster("a", 1))).at(0).ok());
    node.Close();
  }
  // Restarted: a server of one leads as soon as libraft starts, in a new term
  // of which nothing is applied yet. An entry is proposed and cannot be
  // applied (every SQLite write fails), so the barrier of the term, behind
  // it, is not applied either: the server leads and does not act.
  std::vector<Result<std::string>> replies;
  uint64_t term = 0;
  Node node(dir.path(), 1024, [&](Node& n) {
    CHECK(n.replica->leader());
    CHECK_FALSE(n.replica->ready());
    CHECK_FALSE(n.replica->acting());
    term = n.replica->term();
    n.store->db().SetFault([](std::string_view sql) {
      bool write = sql.rfind("INSERT", 0) == 0 || sql.rfind("UPDATE", 0) == 0 || sql.rfind("DELETE", 0) == 0;
      return write ? SQLITE_IOERR : SQLITE_OK;
    });
    n.store->Submit(MakeCreateCluster("b", 2), [&replies](Result<std::string> r) { replies.push_back(std::move(r)); });
    n.store->Flush();
  });
  CHECK_FALSE(node.loop->RunUntil([&node] { return node.replica->acting(); }, 1500));
  CHECK(node.replica->leader());
  CHECK(replies.empty());
  replica::LogStatus st = node.replica->Describe();
  CHECK(st.applied_index < st.commit_index);
  // The store works again: the entry applies (the replica retries every
  // second), then the barrier, and the leader acts, having applied everything.
  node.store->db().SetFault(nullptr);
  CHECK(node.loop->RunUntil([&node] { return node.replica->acting(); }));
  CHECK(node.replica->term() == term);
  st = node.replica->Describe();
  CHECK(st.applied_index == st.commit_index);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].ok());
  CHECK(ClusterNames(node.state) == std::vector<std::string>{"a", "b"});
  node.Close();
}
