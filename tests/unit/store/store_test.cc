// store/store: migrations, group commit, refusals inside a batch, the command log,
// and reloading the state from disk.
#include "store/store.h"

#include <catch2/catch.hpp>

#include "base/crypto.h"
#include "model/commands.h"
#include "store/sqlite.h"
#include "support/state_store.h"

using namespace berth;
using berth::testing::MakeCreateCluster;
using berth::testing::StateStore;

TEST_CASE("store: a new database is migrated to the current schema", "[store]") {
  StateStore s;
  CHECK(s.store->schema_version() == store::Store::kSchemaVersion);
  CHECK(s.Count("PRAGMA user_version") == store::Store::kSchemaVersion);
  CHECK(s.Count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                "('command_log', 'clusters', 'tokens')") == 3);
  CHECK(s.store->last_seq() == 0);
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
  CHECK(s.Count("SELECT COUNT(*) FROM command_log") == 0);

  s.store->Flush();
  REQUIRE(replies.size() == kCommands);
  for (auto& r : replies) CHECK(r.ok());
  CHECK(s.store->queued() == 0);
  CHECK(s.store->last_seq() == kCommands);
  CHECK(s.Count("SELECT COUNT(*) FROM command_log") == kCommands);
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

  CHECK(s.store->last_seq() == 2);
  CHECK(s.Count("SELECT COUNT(*) FROM command_log") == 2);
  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == 2);
  CHECK(s.Count("SELECT COUNT(*) FROM clusters WHERE name = 'not valid!'") == 0);
  CHECK(s.state.clusters().size() == 2);
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commit_batch_size_count 1\n"));
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commands_total{outcome=\"refused\"} 2\n"));
  CHECK_THAT(s.metrics.Render(), Catch::Contains("berth_store_commands_total{outcome=\"applied\"} 2\n"));
}

TEST_CASE("store: the command log decodes back into the commands", "[store]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateCluster("one", 1000)).ok());
  REQUIRE(s.Apply(MakeCreateCluster("two", 2000)).ok());
  REQUIRE(s.Apply(testing::MakeDeleteCluster("one", 3000)).ok());
  REQUIRE(s.Apply(testing::MakeCreateToken("tok1", "deploy", std::string(64, 'a'), 4000)).ok());

  auto rows = s.store->db().Prepare("SELECT seq, term, type, payload, time_ms FROM command_log ORDER BY seq");
  REQUIRE(rows.ok());
  std::vector<std::string> seen;
  int64_t expect_seq = 1;
  for (;;) {
    auto row = rows->Step();
    REQUIRE(row.ok());
    if (!row.value()) break;
    CHECK(rows->Int(0) == expect_seq++);
    CHECK(rows->Int(1) == 0);
    auto cmd = model::DecodeCommand(rows->Text(2), rows->Text(3), rows->Int(4));
    REQUIRE(cmd.ok());
    CHECK(std::string((*cmd)->Type()) == rows->Text(2));
    CHECK((*cmd)->time_ms == rows->Int(4));
    CHECK((*cmd)->Encode() == rows->Text(3));
    // The state machine's own Decode agrees.
    auto again = s.state.Decode(rows->Text(2), rows->Text(3), rows->Int(4));
    REQUIRE(again.ok());
    CHECK((*again)->Encode() == (*cmd)->Encode());
    seen.push_back(std::string((*cmd)->Type()) + ":" + (*cmd)->Encode());
  }
  CHECK(seen == std::vector<std::string>{
                    R"(CreateCluster:{"name":"one"})",
                    R"(CreateCluster:{"name":"two"})",
                    R"(DeleteCluster:{"name":"one"})",
                    R"(CreateToken:{"id":"tok1","role":"deploy","hash":")" + std::string(64, 'a') + R"("})",
                });
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

  model::State reloaded;
  metrics::Registry metrics;
  auto again = store::Store::Open({s.path()}, &reloaded, &metrics);
  REQUIRE(again.ok());
  CHECK((*again)->last_seq() == 5);
  CHECK((*again)->schema_version() == store::Store::kSchemaVersion);
  REQUIRE(reloaded.FindCluster("kept"));
  CHECK(reloaded.FindCluster("kept")->created_ms == 1234);
  CHECK(reloaded.FindCluster("kept")->arn == model::ClusterArn("kept"));
  CHECK(reloaded.FindCluster("queued"));
  CHECK_FALSE(reloaded.FindCluster("gone"));
  CHECK(reloaded.clusters().size() == 2);
  REQUIRE(reloaded.FindTokenBySecret(secret));
  CHECK(reloaded.FindTokenBySecret(secret)->id == "t1");

  // The sequence continues where it stopped.
  std::optional<Result<std::string>> r;
  (*again)->Submit(MakeCreateCluster("next"), [&r](Result<std::string> res) { r.emplace(std::move(res)); });
  (*again)->Flush();
  REQUIRE(r.has_value());
  CHECK(r->ok());
  CHECK((*again)->last_seq() == 6);
}
