// store/store: migrations, group commit, refusals inside a batch, the log entries
// (EncodeBatch/DecodeBatch, ApplyEntry and the applied index), snapshots
// (SnapshotBytes/Restore), and reloading the state from disk.
#include "store/store.h"

#include <catch2/catch.hpp>

#include "base/crypto.h"
#include "model/commands.h"
#include "store/audit.h"
#include "store/sqlite.h"
#include "support/state_store.h"

using namespace berth;
using berth::testing::MakeCreateCluster;
using berth::testing::StateStore;

// A second store on the same file, as a restart opens it.
struct Reopened {
  model::State reloaded;
  metrics::Registry metrics;
  std::unique_ptr<store::Store> store;
  explicit Reopened(const std::string& path) {
    auto s = store::Store::Open({path}, &reloaded, &metrics);
    REQUIRE(s.ok());
    store = std::move(s.value());
  }
};

TEST_CASE("store: a new database is migrated to the current schema", "[store]") {
  StateStore s;
  CHECK(s.store->schema_version() == store::Store::kSchemaVersion);
  CHECK(s.Count("PRAGMA user_version") == store::Store::kSchemaVersion);
  CHECK(s.Count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                "('log_applied', 'clusters', 'tokens')") == 3);
  // The command log is Raft's now: state.db keeps only the index it reached.
  CHECK(s.Count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'command_log'") == 0);
  CHECK(s.Count("SELECT COUNT(*) FROM log_applied") == 1);
  CHECK(s.Count("SELECT idx FROM log_applied WHERE id = 1") == 0);
  CHECK(s.store->applied_index() == 0);
  auto mode = s.store->db().Prepare("PRAGMA journal_mode");
  REQUIRE(mode.ok());
  REQUIRE(mode->Step().value());
  CHECK(mode->Text(0) == "wal");
}

TEST_CASE("store: a database from a newer berth is refused", "[store]") {
  testing::TempDir dir;
  {
    auto db = store::Db::Open(dir.File("state.db"));
    REQUIRE(db.ok());
    REQUIRE((*db)->Exec("PRAGMA user_version=99").ok());
  }
  metrics::Registry metrics;
  model::State state;
  auto s = store::Store::Open({dir.File("state.db")}, &state, &metrics);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error().message, Catch::Contains("schema version 99, newer than this berth understands"));
}

TEST_CASE("store: commands submitted before one Flush share one transaction", "[store]") {
  StateStore s;
  int wakeups = 0;
  s.store->SetWakeup([&wakeups] { wakeups++; });
  constexpr int kCommands = 5;
  std::vector<Result<std::string>> replies;
  for (int i = 0; i < kCommands; i++) {
    s.store->Submit(MakeCreateCluster("c" + std::to_string(i)),
                    [&replies](Result<std::string> r) { replies.push_back(std::move(r)); });
  }
  CHECK(wakeups == 1);  // only the first command of a batch wakes the owner
  CHECK(s.store->queued() == kCommands);
  CHECK(replies.empty());  // replies go out only after the commit
  CHECK(s.store->applied_index() == 0);
  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == 0);

  s.store->Flush();
  REQUIRE(replies.size() == kCommands);
  for (auto& r : replies) CHECK(r.ok());
  CHECK(s.store->queued() == 0);
  // One batch is one log entry: the applied index moved by one, in the same
  // transaction as the rows.
  CHECK(s.store->applied_index() == 1);
  CHECK(s.Count("SELECT idx FROM log_applied WHERE id = 1") == 1);
  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == kCommands);

  std::string text = s.metrics.Render();
  CHECK_THAT(text, Catch::Contains("berth_store_commit_batch_size_count 1\n"));
  CHECK_THAT(text, Catch::Contains("berth_store_commit_batch_size_sum 5\n"));
  CHECK_THAT(text, Catch::Contains("berth_store_commit_batch_size_bucket{le=\"4\"} 0\n"));
  CHECK_THAT(text, Catch::Contains("berth_store_commit_batch_size_bucket{le=\"8\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("berth_store_commands_total{outcome=\"applied\"} 5\n"));

  s.store->Submit(MakeCreateCluster("later"), [](Result<std::string>) {});
  CHECK(wakeups == 2);  // a new batch wakes again
  s.store->Flush();
  CHECK(s.store->applied_index() == 2);
}

TEST_CASE("store: without group commit every command is its own transaction", "[store]") {
  StateStore s(/*group_commit=*/false);
  int replies = 0;
  for (int i = 0; i < 3; i++) {
    s.store->Submit(MakeCreateCluster("c" + std::to_string(i)), [&replies](Result<std::string> r) {
      CHECK(r.ok());
      replies++;
    });
  }
  s.store->Flush();
  CHECK(replies == 3);
  CHECK(s.store->applied_index() == 3);  // an entry per command
  CHECK(s.Count("SELECT idx FROM log_applied WHERE id = 1") == 3);
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commit_batch_size_count 3\n"));
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commit_batch_size_sum 3\n"));
}

TEST_CASE("store: a refused command leaves nothing while the rest of its batch commits", "[store]") {
  StateStore s;
  std::vector<Result<std::string>> replies;
  auto collect = [&replies](Result<std::string> r) { replies.push_back(std::move(r)); };
  s.store->Submit(MakeCreateCluster("alpha"), collect);
  s.store->Submit(MakeCreateCluster("alpha"), collect);       // duplicate: 409
  s.store->Submit(MakeCreateCluster("not valid!"), collect);  // bad name: 400
  s.store->Submit(MakeCreateCluster("beta"), collect);
  s.store->Flush();

  REQUIRE(replies.size() == 4);
  CHECK(replies[0].ok());
  REQUIRE_FALSE(replies[1].ok());
  CHECK(replies[1].error().kind == ErrorKind::kConflict);
  CHECK(replies[1].error().code == "ClusterAlreadyExists");
  REQUIRE_FALSE(replies[2].ok());
  CHECK(replies[2].error().kind == ErrorKind::kInvalid);
  CHECK(replies[3].ok());

  // The entry is applied as a whole, refusals included: one entry, one index.
  CHECK(s.store->applied_index() == 1);
  CHECK(s.Count("SELECT idx FROM log_applied WHERE id = 1") == 1);
  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == 2);
  CHECK(s.Count("SELECT COUNT(*) FROM clusters WHERE name = 'not valid!'") == 0);
  CHECK(s.state.clusters().size() == 2);
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commit_batch_size_count 1\n"));
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commands_total{outcome=\"refused\"} 2\n"));
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commands_total{outcome=\"applied\"} 2\n"));

  // A batch of nothing but refusals is still an entry applied: its index is
  // recorded, and nothing else changes.
  replies.clear();
  s.store->Submit(MakeCreateCluster("beta"), collect);
  s.store->Submit(testing::MakeDeleteCluster("missing"), collect);
  s.store->Flush();
  REQUIRE(replies.size() == 2);
  CHECK_FALSE(replies[0].ok());
  CHECK_FALSE(replies[1].ok());
  CHECK(s.store->applied_index() == 2);
  CHECK(s.Count("SELECT idx FROM log_applied WHERE id = 1") == 2);
  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == 2);
  CHECK(s.state.clusters().size() == 2);
}

TEST_CASE("store: a log entry decodes back into the commands", "[store]") {
  StateStore s;
  std::vector<store::CommandPtr> commands;
  commands.push_back(MakeCreateCluster("one", 1000));
  commands.push_back(MakeCreateCluster("two", 2000));
  commands.push_back(testing::MakeDeleteCluster("one", 3000));
  commands.push_back(testing::MakeCreateToken("tok1", "deploy", std::string(64, 'a'), 4000));
  std::vector<const store::Command*> batch;
  for (const auto& c : commands) batch.push_back(c.get());
  std::string entry = store::EncodeBatch(batch);

  auto decoded = store::DecodeBatch(entry, &s.state);
  REQUIRE(decoded.ok());
  REQUIRE(decoded->size() == commands.size());
  std::vector<std::string> seen;
  for (size_t i = 0; i < commands.size(); i++) {
    const store::Command& got = *(*decoded)[i];
    CHECK(std::string(got.Type()) == commands[i]->Type());
    CHECK(got.time_ms == commands[i]->time_ms);
    CHECK(got.Encode() == commands[i]->Encode());
    // The model's own decoder agrees with the state machine's.
    auto again = model::DecodeCommand(got.Type(), got.Encode(), got.time_ms);
    REQUIRE(again.ok());
    CHECK(again.value()->Encode() == got.Encode());
    seen.push_back(std::string(got.Type()) + ":" + got.Encode());
  }
  CHECK(seen == std::vector<std::string>{
                    R"(CreateCluster:{"name":"one"})",
                    R"(CreateCluster:{"name":"two"})",
                    R"(DeleteCluster:{"name":"one"})",
                    R"(CreateToken:{"id":"tok1","role":"deploy","hash":")" + std::string(64, 'a') + R"("})",
                });

  // Applied as a log entry, the commands do what they say, in order.
  auto results = s.store->ApplyEntry(1, entry);
  REQUIRE(results.ok());
  REQUIRE(results->size() == 4);
  for (auto& r : *results) CHECK(r.ok());
  CHECK(s.store->applied_index() == 1);
  CHECK_FALSE(s.state.FindCluster("one"));
  REQUIRE(s.state.FindCluster("two"));
  CHECK(s.state.FindCluster("two")->created_ms == 2000);
  CHECK(s.Count("SELECT COUNT(*) FROM tokens WHERE id = 'tok1'") == 1);
}

TEST_CASE("store: reopening reloads the state", "[store]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateCluster("kept", 1234)).ok());
  REQUIRE(s.Apply(MakeCreateCluster("gone")).ok());
  REQUIRE(s.Apply(testing::MakeDeleteCluster("gone")).ok());
  std::string secret = "brt_secret";
  REQUIRE(s.Apply(testing::MakeCreateToken("t1", "admin", crypto::Hex(crypto::Sha256(secret)))).ok());

  // Close flushes what is still queued.
  bool late_reply = false;
  s.store->Submit(MakeCreateCluster("queued"), [&late_reply](Result<std::string> r) { late_reply = r.ok(); });
  REQUIRE(s.store->Close().ok());
  CHECK(late_reply);
  s.store.reset();

  Reopened reopened(s.path());
  model::State& reloaded = reopened.reloaded;
  auto& again = reopened.store;
  // Four entries of one command, then the one Close flushed.
  CHECK(again->applied_index() == 5);
  CHECK(again->schema_version() == store::Store::kSchemaVersion);
  REQUIRE(reloaded.FindCluster("kept"));
  CHECK(reloaded.FindCluster("kept")->created_ms == 1234);
  CHECK(reloaded.FindCluster("kept")->arn == model::ClusterArn("kept"));
  CHECK(reloaded.FindCluster("queued"));
  CHECK_FALSE(reloaded.FindCluster("gone"));
  CHECK(reloaded.clusters().size() == 2);
  REQUIRE(reloaded.FindTokenBySecret(secret));
  CHECK(reloaded.FindTokenBySecret(secret)->id == "t1");

  // The applied index continues where it stopped.
  std::optional<Result<std::string>> r;
  again->Submit(MakeCreateCluster("next"), [&r](Result<std::string> res) { r.emplace(std::move(res)); });
  again->Flush();
  REQUIRE(r.has_value());
  CHECK(r->ok());
  CHECK(again->applied_index() == 6);
  CHECK(again->db().QueryInt("SELECT idx FROM log_applied WHERE id = 1").value() == 6);
}

namespace {

std::string Entry(const std::vector<store::CommandPtr>& commands) {
  std::vector<const store::Command*> batch;
  for (const auto& c : commands) batch.push_back(c.get());
  return store::EncodeBatch(batch);
}

// The clusters, as the state holds them and as their rows say.
std::string Clusters(StateStore& s) { return s.ClusterDump(); }

}  // namespace

TEST_CASE("store: EncodeBatch and DecodeBatch round-trip several commands", "[store]") {
  StateStore s;
  std::vector<store::CommandPtr> commands;
  commands.push_back(MakeCreateCluster("a", 1));
  commands.push_back(testing::MakeCreateToken("t", "admin", std::string(64, 'f'), 1700000000123));
  commands.push_back(testing::MakeDeleteCluster("a", 0));
  commands.push_back(MakeCreateCluster("a-much-longer-cluster-name", INT64_MAX));
  std::string entry = Entry(commands);
  CHECK(entry.substr(0, 3) == "BB1");

  auto decoded = store::DecodeBatch(entry, &s.state);
  REQUIRE(decoded.ok());
  REQUIRE(decoded->size() == commands.size());
  for (size_t i = 0; i < commands.size(); i++) {
    CHECK(std::string((*decoded)[i]->Type()) == commands[i]->Type());
    CHECK((*decoded)[i]->time_ms == commands[i]->time_ms);
    CHECK((*decoded)[i]->Encode() == commands[i]->Encode());
  }
  // The decoded commands encode to the same entry.
  std::vector<const store::Command*> again;
  for (const auto& c : decoded.value()) again.push_back(c.get());
  CHECK(store::EncodeBatch(again) == entry);

  // An empty batch is an entry too.
  auto none = store::DecodeBatch(store::EncodeBatch({}), &s.state);
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("store: a log entry is whole 8-byte words", "[store]") {
  // libraft keeps entries in whole words: every length of name (and so of
  // payload) must come out padded, and decode with its padding.
  StateStore s;
  CHECK(store::EncodeBatch({}).size() % 8 == 0);
  for (size_t n = 1; n <= 17; n++) {
    std::vector<store::CommandPtr> commands;
    commands.push_back(MakeCreateCluster(std::string(n, 'x')));
    std::string one = Entry(commands);
    CHECK(one.size() % 8 == 0);
    commands.push_back(MakeCreateCluster(std::string(n + 3, 'y')));
    std::string two = Entry(commands);
    CHECK(two.size() % 8 == 0);
    auto decoded = store::DecodeBatch(two, &s.state);
    REQUIRE(decoded.ok());
    REQUIRE(decoded->size() == 2);
    CHECK((*decoded)[1]->Encode() == commands[1]->Encode());
  }
}

TEST_CASE("store: DecodeBatch refuses what is not a whole batch", "[store]") {
  StateStore s;
  std::vector<store::CommandPtr> commands;
  commands.push_back(MakeCreateCluster("first"));
  commands.push_back(MakeCreateCluster("second"));
  std::string entry = Entry(commands);
  REQUIRE(store::DecodeBatch(entry, &s.state).ok());
  auto refused = [&s](std::string_view bytes) {
    auto r = store::DecodeBatch(bytes, &s.state);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kInvalid);
    return r.error().message;
  };

  SECTION("without the batch mark") {
    CHECK_THAT(refused(""), Catch::Contains("without the batch mark (0 bytes)"));
    CHECK_THAT(refused("BB"), Catch::Contains("without the batch mark"));
    std::string other = entry;
    other[2] = '2';
    CHECK_THAT(refused(other), Catch::Contains("without the batch mark (" + std::to_string(entry.size()) + " bytes)"));
    CHECK_THAT(refused(std::string(16, '\0')), Catch::Contains("without the batch mark"));
  }

  SECTION("cut short") {
    CHECK_THAT(refused(entry.substr(0, 3)), Catch::Contains("cut short before its count"));
    CHECK_THAT(refused(entry.substr(0, 6)), Catch::Contains("cut short before its count"));
    // Every cut inside the commands (the padding is at most 7 bytes).
    for (size_t n = 7; n + 8 <= entry.size(); n++) {
      std::string msg = refused(entry.substr(0, n));
      CHECK_THAT(msg, Catch::Contains("a log entry cut short in command"));
    }
    // The cut in the second command says so.
    CHECK_THAT(refused(entry.substr(0, entry.size() - 8)), Catch::Contains("cut short in command 2 of 2"));
    // A count the bytes cannot hold.
    std::string big = entry;
    big[3] = big[4] = big[5] = big[6] = '\xff';
    CHECK_THAT(refused(big), Catch::Contains("cut short in command 3 of 4294967295"));
  }

  SECTION("bytes after the last command") {
    // The padding must be zeros: an entry that has some, with its last byte set.
    std::string padded;
    for (size_t n = 1; n <= 8 && padded.empty(); n++) {
      std::vector<store::CommandPtr> one;
      one.push_back(MakeCreateCluster(std::string(n, 'p')));
      std::string e = Entry(one);
      if (e.back() == '\0') padded = e;
    }
    REQUIRE_FALSE(padded.empty());
    REQUIRE(store::DecodeBatch(padded, &s.state).ok());
    padded.back() = '\x01';
    CHECK_THAT(refused(padded), Catch::Contains("bytes after its last command"));
    std::string extra = entry + std::string(7, '\0') + "x";
    CHECK_THAT(refused(extra), Catch::Contains("bytes after its last command"));
    // A whole word of zeros more is not padding either.
    CHECK_THAT(refused(entry + std::string(8, '\0')), Catch::Contains("bytes after its last command"));
  }

  SECTION("a command the state machine does not know") {
    std::string bad = Entry(commands);
    // Rename the first command's type in place (same length).
    size_t at = bad.find("CreateCluster");
    REQUIRE(at != std::string::npos);
    bad.replace(at, 13, "CreateNothing");
    CHECK_THAT(refused(bad), Catch::Contains("command 1 (CreateNothing) of a log entry"));
  }
}

TEST_CASE("store: ApplyEntry skips what state.db already holds", "[store]") {
  StateStore s;
  std::vector<store::CommandPtr> a, b, c;
  a.push_back(MakeCreateCluster("a"));
  b.push_back(MakeCreateCluster("b"));
  c.push_back(MakeCreateCluster("c"));

  auto first = s.store->ApplyEntry(1, Entry(a));
  REQUIRE(first.ok());
  REQUIRE(first->size() == 1);
  CHECK((*first)[0].ok());
  CHECK(s.store->applied_index() == 1);

  // At or below the applied index: nothing is applied, and nothing is answered.
  for (uint64_t index : {uint64_t{0}, uint64_t{1}}) {
    auto skipped = s.store->ApplyEntry(index, Entry(b));
    REQUIRE(skipped.ok());
    CHECK(skipped->empty());
  }
  CHECK_FALSE(s.state.FindCluster("b"));
  CHECK(s.Count("SELECT COUNT(*) FROM clusters WHERE name = 'b'") == 0);
  CHECK(s.store->applied_index() == 1);

  // Indexes the state machine never sees (libraft's own entries) leave gaps.
  auto later = s.store->ApplyEntry(3, Entry(c));
  REQUIRE(later.ok());
  CHECK(s.state.FindCluster("c"));
  CHECK(s.store->applied_index() == 3);
  CHECK(s.Count("SELECT idx FROM log_applied WHERE id = 1") == 3);
  CHECK(s.store->ApplyEntry(2, Entry(b))->empty());
  CHECK_FALSE(s.state.FindCluster("b"));

  // An entry no server can decode is applied as nothing, so the log moves on;
  // its proposer hears why.
  auto garbage = s.store->ApplyEntry(4, std::string(16, 'z'));
  REQUIRE_FALSE(garbage.ok());
  CHECK_THAT(garbage.error().message, Catch::Contains("without the batch mark"));
  CHECK(s.store->applied_index() == 4);
  CHECK(s.state.clusters().size() == 2);

  // Without a Log, Flush goes through the same path at the next index.
  REQUIRE(s.Apply(MakeCreateCluster("d")).ok());
  CHECK(s.store->applied_index() == 5);

  // The index survives a reopen.
  REQUIRE(s.store->Close().ok());
  s.store.reset();
  Reopened reopened(s.path());
  model::State& reloaded = reopened.reloaded;
  auto& again = reopened.store;
  CHECK(again->applied_index() == 5);
  CHECK(again->ApplyEntry(5, Entry(b))->empty());
  CHECK_FALSE(reloaded.FindCluster("b"));
  CHECK(reloaded.FindCluster("d"));
}

TEST_CASE("store: Restore of another store's snapshot reproduces its state", "[store]") {
  StateStore from;
  REQUIRE(from.Apply(MakeCreateCluster("x", 1111)).ok());
  REQUIRE(from.Apply(MakeCreateCluster("y", 2222)).ok());
  REQUIRE(from.Apply(testing::MakeCreateToken("t1", "admin", crypto::Hex(crypto::Sha256("brt_x")))).ok());
  REQUIRE(from.Apply(testing::MakeDeleteCluster("x")).ok());
  REQUIRE(from.Apply(MakeCreateCluster("x", 3333)).ok());
  auto bytes = from.store->SnapshotBytes();
  REQUIRE(bytes.ok());
  CHECK(bytes->size() % 512 == 0);  // whole pages
  CHECK(bytes->substr(0, 16) == std::string("SQLite format 3\0", 16));

  // Each server's audit log is its own: the snapshot's gives way to the local one.
  store::AuditEntry theirs;
  theirs.time_ms = 1;
  theirs.actor = "on-the-sender";
  REQUIRE(store::InsertAudit(from.store->db(), theirs).ok());
  bytes = from.store->SnapshotBytes();
  REQUIRE(bytes.ok());

  StateStore to;
  REQUIRE(to.Apply(MakeCreateCluster("only-here")).ok());
  store::AuditEntry mine;
  mine.time_ms = 2;
  mine.actor = "kept-here";
  REQUIRE(store::InsertAudit(to.store->db(), mine).ok());
  auto restored = to.store->Restore(42, *bytes);
  INFO((restored.ok() ? "" : restored.error().message));
  REQUIRE(restored.ok());
  CHECK(to.Count("SELECT COUNT(*) FROM audit WHERE actor = 'kept-here'") == 1);
  CHECK(to.Count("SELECT COUNT(*) FROM audit WHERE actor = 'on-the-sender'") == 0);
  CHECK(to.store->applied_index() == 42);
  CHECK(to.Count("SELECT idx FROM log_applied WHERE id = 1") == 42);
  CHECK(Clusters(to) == Clusters(from));
  CHECK_FALSE(to.state.FindCluster("only-here"));
  REQUIRE(to.state.FindCluster("x"));
  CHECK(to.state.FindCluster("x")->created_ms == 3333);
  REQUIRE(to.state.FindTokenBySecret("brt_x"));

  // It goes on from there, and a reopen finds the same.
  REQUIRE(to.Apply(MakeCreateCluster("z")).ok());
  CHECK(to.store->applied_index() == 43);
  REQUIRE(to.store->Close().ok());
  to.store.reset();
  {
    Reopened reopened(to.path());
    model::State& reloaded = reopened.reloaded;
    auto& again = reopened.store;
    CHECK(again->applied_index() == 43);
    CHECK(reloaded.FindCluster("z"));
    CHECK(reloaded.FindCluster("y"));
    CHECK_FALSE(reloaded.FindCluster("only-here"));
    CHECK(reloaded.FindTokenBySecret("brt_x"));
    auto mode = again->db().Prepare("PRAGMA journal_mode");
    REQUIRE(mode.ok());
    REQUIRE(mode->Step().value());
    CHECK(mode->Text(0) == "wal");
  }
  to.Open();

  // Bytes that are not a database change nothing.
  auto bad = to.store->Restore(50, "not a database at all, not even close to one, and far too short to be");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("not an SQLite database"));
  CHECK(to.store->applied_index() == 43);
  CHECK(to.state.FindCluster("z"));
}

// A log that keeps what is proposed; the test decides when it is applied.
class HeldLog : public store::Log {
 public:
  struct Held {
    uint64_t index;
    std::string entry;
    Applied applied;
  };
  uint64_t Propose(const std::string& entry, Applied applied) override {
    held.push_back({next++, entry, std::move(applied)});
    return held.back().index;
  }
  std::vector<Held> held;
  uint64_t next = 1;
};

TEST_CASE("store: replicated, a batch is one proposed entry answered only once applied", "[store]") {
  StateStore s;
  CHECK(s.Count("PRAGMA synchronous") == 2);  // FULL until the log is the durable record
  HeldLog log;
  REQUIRE(s.store->SetLog(&log).ok());
  CHECK(s.Count("PRAGMA synchronous") == 1);  // NORMAL: the log's entry is fsynced before it applies

  std::vector<Result<std::string>> replies;
  for (const char* name : {"r1", "r2"}) {
    s.store->Submit(MakeCreateCluster(name), [&replies](Result<std::string> r) { replies.push_back(std::move(r)); });
  }
  s.store->Flush();
  REQUIRE(log.held.size() == 1);  // one batch, one entry
  CHECK(s.store->in_flight() == 1);
  CHECK(replies.empty());
  CHECK_FALSE(s.state.FindCluster("r1"));  // nothing applied before the log commits it

  // One entry in flight at a time: what comes meanwhile waits for it.
  s.store->Submit(MakeCreateCluster("r3"), [&replies](Result<std::string> r) { replies.push_back(std::move(r)); });
  s.store->Flush();
  CHECK(log.held.size() == 1);
  CHECK(s.store->queued() == 1);

  // Applied (as the log's state machine would), then answered.
  auto results = s.store->ApplyEntry(log.held[0].index, log.held[0].entry);
  REQUIRE(results.ok());
  REQUIRE(results->size() == 2);
  CHECK(s.state.FindCluster("r1"));
  log.held[0].applied(std::move(results));
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].ok());
  CHECK(replies[1].ok());
  CHECK(s.store->in_flight() == 0);

  s.store->Flush();
  REQUIRE(log.held.size() == 2);  // the waiting command went as the next entry
  // A refusal by the log reaches every command of the entry.
  log.held[1].applied(Error{ErrorKind::kUnavailable, "NotLeader", "not the leader"});
  REQUIRE(replies.size() == 3);
  CHECK(replies[2].error().code == "NotLeader");
  CHECK_FALSE(s.state.FindCluster("r3"));
}

TEST_CASE("store: WhenApplied waits for the entry's index, in index order", "[store]") {
  StateStore s;
  std::vector<std::string> fired;
  s.store->WhenApplied(0, [&fired] { fired.push_back("now"); });
  CHECK(fired == std::vector<std::string>{"now"});  // nothing to wait for
  s.store->WhenApplied(2, [&fired] { fired.push_back("two"); });
  s.store->WhenApplied(1, [&fired] { fired.push_back("one"); });
  CHECK(fired.size() == 1);

  auto entry_of = [](const std::string& cluster) {
    store::CommandPtr c = MakeCreateCluster(cluster);
    return store::EncodeBatch({c.get()});
  };
  REQUIRE(s.store->ApplyEntry(1, entry_of("a")).ok());
  CHECK(fired == std::vector<std::string>{"now", "one"});
  // What waits sees the state of the entry it waited for.
  s.store->WhenApplied(3, [&fired, &s] { fired.push_back(s.state.FindCluster("c") ? "three:c" : "three:none"); });
  REQUIRE(s.store->ApplyEntry(3, entry_of("c")).ok());  // a skipped index counts as applied
  CHECK(fired == std::vector<std::string>{"now", "one", "two", "three:c"});
  s.store->WhenApplied(9, [&fired] { fired.push_back("never"); });
  REQUIRE(s.store->Close().ok());
  CHECK(fired.size() == 4);  // dropped, uncalled, at close
}

TEST_CASE("store: schema 15 upgraded to 16 keeps its tokens, as bearer tokens, and takes access keys", "[store]") {
  testing::TempDir dir;
  std::string path = dir.File("state.db");
  std::string secret = "brt_old";
  {
    model::State state;
    metrics::Registry metrics;
    auto s = store::Store::Open({path}, &state, &metrics);
    REQUIRE(s.ok());
    REQUIRE(testing::ApplyNow(**s, testing::MakeCreateToken("old", "admin", crypto::Hex(crypto::Sha256(secret)))).ok());
    REQUIRE((*s)->Close().ok());
  }
  {
    // Back to schema 15 as a berth before access keys left it: no such columns.
    auto db = store::Db::Open(path);
    REQUIRE(db.ok());
    REQUIRE(
        (*db)
            ->Exec(
                "ALTER TABLE tokens DROP COLUMN sealed_secret; ALTER TABLE tokens DROP COLUMN secret_key_id; "
                "ALTER TABLE tokens DROP COLUMN parent; ALTER TABLE nodes DROP COLUMN agent_version; DROP TABLE "
                "resource_tags; DROP TABLE node_attributes; DROP TABLE target_groups; DROP TABLE "
                "load_balancers; ALTER TABLE nodes DROP COLUMN address; ALTER TABLE tasks DROP COLUMN target_health; "
                "PRAGMA user_version=15")
            .ok());
  }
  Reopened reopened(path);
  CHECK(reopened.store->schema_version() == store::Store::kSchemaVersion);
  const model::Token* t = reopened.reloaded.FindTokenBySecret(secret);
  REQUIRE(t);
  CHECK(t->id == "old");
  CHECK_FALSE(t->access_key());
  auto key = std::make_unique<model::CreateToken>();
  key->id = "BKIAAAAAAAAAAAAAAAAA";
  key->role = "deploy";
  key->hash = crypto::Hex(crypto::Sha256("s"));
  key->sealed_secret = "sealed";
  key->secret_key_id = "0123456789abcdef";
  REQUIRE(testing::ApplyNow(*reopened.store, std::move(key)).ok());
  auto row =
      reopened.store->db().Prepare("SELECT sealed_secret, secret_key_id FROM tokens WHERE id = 'BKIAAAAAAAAAAAAAAAAA'");
  REQUIRE(row.ok());
  REQUIRE(row->Step().value());
  CHECK(row->Text(0) == crypto::Base64Encode("sealed"));  // never the bytes themselves
  CHECK(row->Text(1) == "0123456789abcdef");
}

TEST_CASE("store: schema 16 upgraded to 17 keeps its state and takes tags and node attributes", "[store]") {
  testing::TempDir dir;
  std::string path = dir.File("state.db");
  {
    model::State state;
    metrics::Registry metrics;
    auto s = store::Store::Open({path}, &state, &metrics);
    REQUIRE(s.ok());
    REQUIRE(testing::ApplyNow(**s, MakeCreateCluster("prod")).ok());
    REQUIRE((*s)->Close().ok());
  }
  {
    // Back to schema 16 as a berth before tags left it: no such tables.
    auto db = store::Db::Open(path);
    REQUIRE(db.ok());
    REQUIRE((*db)
                ->Exec("DROP TABLE resource_tags; DROP TABLE node_attributes; ALTER TABLE tokens DROP COLUMN parent; "
                       "ALTER TABLE nodes DROP COLUMN agent_version; DROP TABLE target_groups; "
                       "DROP TABLE load_balancers; ALTER TABLE nodes DROP COLUMN address; ALTER TABLE tasks DROP "
                       "COLUMN target_health; "
                       "PRAGMA user_version=16")
                .ok());
  }
  Reopened reopened(path);
  CHECK(reopened.store->schema_version() == store::Store::kSchemaVersion);
  REQUIRE(reopened.reloaded.FindCluster("prod"));
  auto tag = std::make_unique<model::PutTags>();
  tag->resource = model::ClusterArn("prod");
  tag->tags = {{"team", "web"}};
  REQUIRE(testing::ApplyNow(*reopened.store, std::move(tag)).ok());
  auto n = reopened.store->db().QueryInt("SELECT COUNT(*) FROM resource_tags WHERE key = 'team'");
  REQUIRE(n.ok());
  CHECK(n.value() == 1);
}

TEST_CASE("audit: the token filter takes the token's own entries and its sessions', no other's", "[store][audit]") {
  StateStore ss;
  int64_t at = 1;
  for (const char* actor : {"tok-x", "tok-x (session)", "tok-xy", "tok-xy (session)", "tok-y", "-", "tok-x"}) {
    store::AuditEntry e;
    e.time_ms = at++;
    e.actor = actor;
    REQUIRE(store::InsertAudit(ss.store->db(), e).ok());
  }
  auto actors = [&](const std::string& token) {
    store::AuditQuery q;
    q.actor = token;
    Result<std::vector<store::AuditEntry>> rows = store::ReadAudit(ss.store->db(), q);
    REQUIRE(rows.ok());
    std::vector<std::string> out;
    for (const store::AuditEntry& e : *rows) out.push_back(e.actor);
    return out;
  };
  CHECK(actors("tok-x") == std::vector<std::string>{"tok-x", "tok-x (session)", "tok-x"});
  CHECK(actors("tok-y") == std::vector<std::string>{"tok-y"});
  CHECK(actors("tok-xy (session)") == std::vector<std::string>{"tok-xy (session)"});
  CHECK(actors("").size() == 7);
}

TEST_CASE("store: ApplyCost fits commands to an entry's budget", "[store][slices]") {
  using store::ApplyCost;
  // The estimates of a queue, asked for one by one; `asked` counts how far.
  size_t asked = 0;
  auto fit = [&asked](std::vector<int64_t> costs, int64_t budget, size_t max) {
    asked = 0;
    return ApplyCost::Fit(costs.size(), budget, max, [&](size_t i) {
      asked = std::max(asked, i + 1);
      return costs.at(i);
    });
  };
  CHECK(fit({3, 3, 3, 3, 3}, 7, 100) == 2);
  CHECK(asked == 3);                         // no further than the first that does not fit
  CHECK(fit({3, 3, 3, 3, 3}, 9, 100) == 3);  // exactly the budget fits
  CHECK(fit({3, 3, 3, 3, 3}, 100, 4) == 4);  // never more than max
  CHECK(asked == 4);
  CHECK(fit({50, 1, 1}, 7, 100) == 1);  // one over the budget still goes, alone
  CHECK(fit({1, 50, 1}, 7, 100) == 1);  // and waits for the next entry
  CHECK(fit({3, 3, 3}, 0, 3) == 3);     // no budget: max
  CHECK(asked == 0);                    // without asking
  CHECK(fit({3, 3, 3}, 0, 100) == 3);   // or what is queued
  CHECK(fit({}, 7, 5) == 0);

  ApplyCost cost(10);
  auto stop = std::make_unique<model::StopTasks>();
  stop->ids = {"a", "b", "c"};
  auto cluster = MakeCreateCluster("c");
  CHECK(cost.Estimate(*stop) == 30);  // not seen yet: the prior, per unit of work
  CHECK(cost.Estimate(*cluster) == 10);
  cost.Observe("StopTasks", 600, 3);  // 200 a unit
  CHECK(cost.Estimate(*stop) == 600);
  CHECK(cost.Estimate(*cluster) == 10);  // other types keep theirs
  cost.Observe("StopTasks", 1000, 10);   // 100 a unit: a quarter of the way there
  CHECK(cost.Estimate(*stop) == 3 * 175);
}

TEST_CASE("store: a queue longer than an entry's budget goes as several entries, each command once, in order",
          "[store][slices]") {
  store::StoreOptions o;
  o.entry_budget_ns = 100;
  o.unknown_cost_ns = 10;  // a CreateCluster: 10, so ten to an entry
  o.learn_costs = false;   // the costs stay as given, whatever the machine
  StateStore s(o);
  HeldLog log;
  REQUIRE(s.store->SetLog(&log).ok());

  std::vector<std::string> answered;  // by name, in the order the replies came
  auto submit = [&](store::CommandPtr cmd, std::string name) {
    s.store->Submit(std::move(cmd), [&answered, name](Result<std::string>) { answered.push_back(name); });
  };
  for (int i = 0; i < 12; i++) submit(MakeCreateCluster("c" + std::to_string(i)), "c" + std::to_string(i));
  // 20 units of work (200) over the budget on its own: an entry of its own.
  auto stop = std::make_unique<model::StopTasks>();
  for (int i = 0; i < 20; i++) stop->ids.push_back("t" + std::to_string(i));
  stop->time_ms = 1700000000000;
  submit(std::move(stop), "stop");
  for (int i = 12; i < 15; i++) submit(MakeCreateCluster("c" + std::to_string(i)), "c" + std::to_string(i));

  // Entries as the log would commit them, one at a time: each applied, then
  // answered, then the next proposed by the next flush.
  std::vector<size_t> entry_sizes;
  for (int round = 0; round < 10 && (s.store->queued() > 0 || s.store->in_flight() > 0); round++) {
    s.store->Flush();
    REQUIRE(log.held.size() == static_cast<size_t>(round + 1));
    CHECK(s.store->in_flight() == 1);
    const HeldLog::Held& h = log.held.back();
    auto results = s.store->ApplyEntry(h.index, h.entry);
    REQUIRE(results.ok());
    entry_sizes.push_back(results->size());
    h.applied(std::move(results));
    CHECK(s.store->in_flight() == 0);
  }
  CHECK(entry_sizes == std::vector<size_t>{10, 2, 1, 3});
  CHECK(s.store->applied_index() == 4);
  REQUIRE(answered.size() == 16);
  for (int i = 0; i < 12; i++) CHECK(answered[static_cast<size_t>(i)] == "c" + std::to_string(i));
  CHECK(answered[12] == "stop");
  for (int i = 12; i < 15; i++) CHECK(answered[static_cast<size_t>(i) + 1] == "c" + std::to_string(i));
  for (int i = 0; i < 15; i++) CHECK(s.state.FindCluster("c" + std::to_string(i)));
  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == 15);
}
