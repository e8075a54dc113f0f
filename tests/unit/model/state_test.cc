// model/state: applying commands to the state (through a real store), the rules
// that refuse them, and token lookup.
#include "model/state.h"

#include <catch2/catch.hpp>

#include "base/crypto.h"
#include "base/json.h"
#include "model/commands.h"
#include "support/state_store.h"

using namespace berth;
using berth::testing::MakeCreateCluster;
using berth::testing::MakeCreateToken;
using berth::testing::MakeDeleteCluster;
using berth::testing::StateStore;

TEST_CASE("state: create, duplicate, delete, not found", "[model][state]") {
  StateStore s;
  auto created = s.Apply(MakeCreateCluster("prod", 1111));
  REQUIRE(created.ok());
  auto doc = json::Doc::Parse(created.value());
  REQUIRE(doc.ok());
  json::View cluster = doc->view().Get("cluster");
  CHECK(cluster.Get("clusterName").String() == "prod");
  CHECK(cluster.Get("status").String() == "ACTIVE");
  CHECK(cluster.Get("clusterArn").String() == model::ClusterArn("prod"));
  REQUIRE(s.state.FindCluster("prod"));
  CHECK(s.state.FindCluster("prod")->created_ms == 1111);

  auto dup = s.Apply(MakeCreateCluster("prod"));
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().kind == ErrorKind::kConflict);
  CHECK(dup.error().code == "ClusterAlreadyExists");
  CHECK(dup.error().message == "cluster prod already exists");

  auto bad = s.Apply(MakeCreateCluster("no spaces"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == "InvalidParameter");
  CHECK_FALSE(s.state.FindCluster("no spaces"));

  auto deleted = s.Apply(MakeDeleteCluster("prod"));
  REQUIRE(deleted.ok());
  auto gone = json::Doc::Parse(deleted.value());
  REQUIRE(gone.ok());
  CHECK(gone->view().Get("cluster").Get("status").String() == "INACTIVE");
  CHECK_FALSE(s.state.FindCluster("prod"));
  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == 0);

  auto missing = s.Apply(MakeDeleteCluster("prod"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind == ErrorKind::kNotFound);
  CHECK(missing.error().code == "ClusterNotFound");
  CHECK(missing.error().message == "cluster prod does not exist");
}

TEST_CASE("state: a cluster with nodes, services or tasks cannot be deleted", "[model][state]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateCluster("busy")).ok());

  s.state.AdjustClusterCounts("busy", 2, 0, 0, 0);
  auto nodes = s.Apply(MakeDeleteCluster("busy"));
  REQUIRE_FALSE(nodes.ok());
  CHECK(nodes.error().kind == ErrorKind::kConflict);
  CHECK(nodes.error().code == "ClusterContainsContainerInstances");
  CHECK(nodes.error().message == "cluster busy still has 2 registered node(s); deregister them first");

  s.state.AdjustClusterCounts("busy", -2, 1, 0, 0);
  auto services = s.Apply(MakeDeleteCluster("busy"));
  REQUIRE_FALSE(services.ok());
  CHECK(services.error().code == "ClusterContainsServices");
  CHECK(services.error().message == "cluster busy still has 1 active service(s); delete them first");

  s.state.AdjustClusterCounts("busy", 0, -1, 1, 2);
  auto tasks = s.Apply(MakeDeleteCluster("busy"));
  REQUIRE_FALSE(tasks.ok());
  CHECK(tasks.error().code == "ClusterContainsTasks");
  CHECK(tasks.error().message == "cluster busy still has 3 task(s); stop them first");

  CHECK(s.Count("SELECT COUNT(*) FROM clusters") == 1);  // refusals leave the row
  s.state.AdjustClusterCounts("busy", 0, 0, -1, -2);
  CHECK(s.Apply(MakeDeleteCluster("busy")).ok());

  // Adjusting an unknown cluster is a no-op.
  s.state.AdjustClusterCounts("nowhere", 1, 1, 1, 1);
  CHECK_FALSE(s.state.FindCluster("nowhere"));
}

TEST_CASE("state: tokens", "[model][state]") {
  StateStore s;
  std::string secret = "brt_" + std::string(43, 'k');
  std::string hash = crypto::Hex(crypto::Sha256(secret));

  auto created = s.Apply(MakeCreateToken("deployer", "deploy", hash));
  REQUIRE(created.ok());
  CHECK(created.value() == R"({"token":{"id":"deployer","role":"deploy","createdAt":1700000000}})");
  CHECK(s.state.token_count() == 1);

  const model::Token* t = s.state.FindTokenBySecret(secret);
  REQUIRE(t);
  CHECK(t->id == "deployer");
  CHECK(t->role == "deploy");
  CHECK(t->hash == hash);
  CHECK_FALSE(s.state.FindTokenBySecret("brt_wrong"));
  CHECK_FALSE(s.state.FindTokenBySecret(""));
  CHECK_FALSE(s.state.FindTokenBySecret(hash));  // the hash itself is not a secret

  SECTION("an invalid role") {
    auto r = s.Apply(MakeCreateToken("root", "superuser", crypto::Hex(crypto::Sha256("x"))));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kInvalid);
    CHECK(r.error().message == "role: must be admin, deploy, read-only, agent or server");
    CHECK(s.state.token_count() == 1);
  }
  SECTION("a hash that is not 64 hex digits") {
    auto r = s.Apply(MakeCreateToken("short", "admin", "abc"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == "hash: must be 64 hex digits");
  }
  SECTION("a duplicate id") {
    auto r = s.Apply(MakeCreateToken("deployer", "admin", crypto::Hex(crypto::Sha256("other"))));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == "TokenAlreadyExists");
  }
  SECTION("several tokens, each found by its own secret") {
    REQUIRE(s.Apply(MakeCreateToken("a", "admin", crypto::Hex(crypto::Sha256("sa")))).ok());
    REQUIRE(s.Apply(MakeCreateToken("b", "read-only", crypto::Hex(crypto::Sha256("sb")))).ok());
    CHECK(s.state.FindTokenBySecret("sa")->id == "a");
    CHECK(s.state.FindTokenBySecret("sb")->role == "read-only");
    CHECK(s.state.FindTokenBySecret(secret)->id == "deployer");
  }
}

TEST_CASE("state: token expiry, uses, last use and removal survive a restart", "[model][state]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateCluster("default")).ok());
  REQUIRE(s.Apply(MakeCreateToken("admin", "admin", crypto::Hex(crypto::Sha256("sa")))).ok());
  auto join = std::make_unique<model::CreateToken>();
  join->id = "agent-1";
  join->role = "agent";
  join->hash = crypto::Hex(crypto::Sha256("sj"));
  join->expires_ms = 1700000600000;
  join->uses = 1;
  join->time_ms = 1700000000000;
  REQUIRE(s.Apply(std::move(join)).ok());
  auto node = [](std::string id, std::string token, std::string identity) {
    auto c = std::make_unique<model::RegisterNode>();
    c->id = std::move(id);
    c->cluster = "default";
    c->cpu = 1024;
    c->memory = 1024;
    c->join_token = std::move(token);
    c->identity = std::move(identity);
    return c;
  };
  // The one use goes with the first join; the second is refused and changes nothing.
  REQUIRE(s.Apply(node("n1", "agent-1", "token:agent-1")).ok());
  CHECK(s.state.FindToken("agent-1")->uses_left == 0);
  CHECK(s.state.FindNode("n1")->identity == "token:agent-1");
  auto again = s.Apply(node("n2", "agent-1", "token:agent-1"));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message == "the token agent-1 has no uses left");
  CHECK_FALSE(s.state.FindNode("n2"));
  // Last use, noted then touched.
  s.state.NoteTokenUsed("admin", 1700000001000);
  auto touch = std::make_unique<model::TouchTokens>();
  touch->used = s.state.TokensToTouch(1700000001000, 60000);
  REQUIRE(touch->used.size() == 1);
  REQUIRE(s.Apply(std::move(touch)).ok());
  CHECK(s.state.TokensToTouch(1700000002000, 60000).empty());  // touched less than a minute ago
  // Revoking a node: gone, and its id never registers again.
  auto revoke = std::make_unique<model::DeregisterNode>();
  revoke->id = "n1";
  revoke->force = true;
  revoke->revoke = true;
  REQUIRE(s.Apply(std::move(revoke)).ok());
  CHECK(s.state.IsNodeRevoked("n1"));
  // A node's certificate identity; a registration without one keeps it.
  REQUIRE(s.Apply(node("n3", "", "cert:0a1b")).ok());
  REQUIRE(s.Apply(node("n3", "", "")).ok());
  CHECK(s.state.FindNode("n3")->identity == "cert:0a1b");
  auto back = s.Apply(node("n1", "", "cert:01"));
  REQUIRE_FALSE(back.ok());
  CHECK(back.error().code == "NodeRevoked");

  s.store.reset();
  s.Open();  // all of it from disk
  const model::Token* t = s.state.FindToken("agent-1");
  REQUIRE(t);
  CHECK(t->expires_ms == 1700000600000);
  CHECK(t->uses_left == 0);
  CHECK(s.state.FindToken("admin")->last_used_ms == 1700000001000);
  CHECK(s.state.IsNodeRevoked("n1"));
  REQUIRE(s.state.FindNode("n3"));
  CHECK(s.state.FindNode("n3")->identity == "cert:0a1b");

  // Removal: the last admin token cannot go; another can.
  auto rm_admin = std::make_unique<model::DeleteToken>();
  rm_admin->id = "admin";
  auto last = s.Apply(std::move(rm_admin));
  REQUIRE_FALSE(last.ok());
  CHECK(last.error().code == "LastAdminToken");
  auto rm = std::make_unique<model::DeleteToken>();
  rm->id = "agent-1";
  REQUIRE(s.Apply(std::move(rm)).ok());
  CHECK_FALSE(s.state.FindToken("agent-1"));
  CHECK_FALSE(s.state.FindTokenBySecret("sj"));
  s.store.reset();
  s.Open();
  CHECK_FALSE(s.state.FindToken("agent-1"));
  CHECK(s.state.token_count() == 1);
}

TEST_CASE("state: an unknown command type is an internal error", "[model][state]") {
  struct Strange final : store::Command {
    const char* Type() const override { return "Strange"; }
    std::string Encode() const override { return "{}"; }
  };
  StateStore s;
  auto r = s.Apply(std::make_unique<Strange>());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::kInternal);
  CHECK(r.error().message == "no apply for command Strange");
}

TEST_CASE("state: access keys keep their sealed secret, across a restart; they are no admin tokens", "[model][state]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateToken("admin", "admin", crypto::Hex(crypto::Sha256("sa")))).ok());
  auto key = [](std::string id, std::string role) {
    auto c = std::make_unique<model::CreateToken>();
    c->id = std::move(id);
    c->role = std::move(role);
    c->hash = crypto::Hex(crypto::Sha256("secret"));
    c->sealed_secret = std::string("\0sealed\xff", 8);
    c->secret_key_id = "0123456789abcdef";
    c->time_ms = 1700000000000;
    return c;
  };
  auto created = s.Apply(key("BKIAAAAAAAAAAAAAAAAA", "admin"));
  REQUIRE(created.ok());
  CHECK(created.value() ==
        R"({"accessKey":{"accessKeyId":"BKIAAAAAAAAAAAAAAAAA","role":"admin","createdAt":1700000000,)"
        R"("secretKeyId":"0123456789abcdef"}})");
  const model::Token* t = s.state.FindToken("BKIAAAAAAAAAAAAAAAAA");
  REQUIRE(t);
  CHECK(t->access_key());
  CHECK_FALSE(s.state.FindToken("admin")->access_key());
  CHECK(model::AccessKeySealName(t->id) == "accesskey:BKIAAAAAAAAAAAAAAAAA");

  SECTION("only admin, deploy and read-only; with the key id; no uses") {
    auto agent = s.Apply(key("BKIAAGENT", "agent"));
    REQUIRE_FALSE(agent.ok());
    CHECK(agent.error().message == "role: an access key's must be admin, deploy or read-only");
    auto no_id = key("BKIANOID", "deploy");
    static_cast<model::CreateToken&>(*no_id).secret_key_id.clear();
    CHECK_FALSE(s.Apply(std::move(no_id)).ok());
    auto uses = key("BKIAUSES", "deploy");
    static_cast<model::CreateToken&>(*uses).uses = 3;
    CHECK_FALSE(s.Apply(std::move(uses)).ok());
    CHECK_FALSE(s.state.FindToken("BKIAAGENT"));
  }
  SECTION("reloaded from disk with the same sealed bytes") {
    s.store.reset();
    s.Open();
    const model::Token* again = s.state.FindToken("BKIAAAAAAAAAAAAAAAAA");
    REQUIRE(again);
    CHECK(again->sealed_secret == std::string("\0sealed\xff", 8));
    CHECK(again->secret_key_id == "0123456789abcdef");
    CHECK_FALSE(s.state.FindToken("admin")->access_key());
  }
  SECTION("an admin access key does not stand in for the last admin token; it goes itself") {
    auto rm = std::make_unique<model::DeleteToken>();
    rm->id = "admin";
    auto last = s.Apply(std::move(rm));
    REQUIRE_FALSE(last.ok());
    CHECK(last.error().code == "LastAdminToken");
    auto rm_key = std::make_unique<model::DeleteToken>();
    rm_key->id = "BKIAAAAAAAAAAAAAAAAA";
    auto gone = s.Apply(std::move(rm_key));
    REQUIRE(gone.ok());
    CHECK(gone.value().find(R"({"accessKey":{"accessKeyId":"BKIAAAAAAAAAAAAAAAAA")") == 0);
    CHECK_FALSE(s.state.FindToken("BKIAAAAAAAAAAAAAAAAA"));
  }
}
