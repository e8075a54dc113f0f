// model/commands: log encoding round trips and decode errors.
#include "model/commands.h"

#include <catch2/catch.hpp>

using namespace berth;

TEST_CASE("commands: Encode then Decode gives the same command", "[model][commands]") {
  SECTION("CreateCluster") {
    model::CreateCluster c;
    c.name = "prod \"quoted\"";
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 42);
    REQUIRE(back.ok());
    CHECK(std::string((*back)->Type()) == "CreateCluster");
    CHECK((*back)->time_ms == 42);
    CHECK(static_cast<model::CreateCluster&>(**back).name == c.name);
  }
  SECTION("DeleteCluster") {
    model::DeleteCluster c;
    c.name = "old";
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 7);
    REQUIRE(back.ok());
    CHECK(std::string((*back)->Type()) == "DeleteCluster");
    CHECK(static_cast<model::DeleteCluster&>(**back).name == "old");
  }
  SECTION("UpdateCluster") {
    model::UpdateCluster c;
    c.name = "prod";
    c.policy = R"({"hostNetwork":true})";
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 7);
    REQUIRE(back.ok());
    CHECK(std::string((*back)->Type()) == "UpdateCluster");
    CHECK(static_cast<model::UpdateCluster&>(**back).name == "prod");
    CHECK(static_cast<model::UpdateCluster&>(**back).policy == c.policy);
  }
  SECTION("ForgetSessions") {
    model::ForgetSessions c;
    c.ids = {"session-a", "session-b"};
    CHECK(c.Encode() == R"({"ids":["session-a","session-b"]})");
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 9);
    REQUIRE(back.ok());
    CHECK(std::string((*back)->Type()) == "ForgetSessions");
    CHECK((*back)->time_ms == 9);
    CHECK(static_cast<model::ForgetSessions&>(**back).ids == c.ids);
  }
  SECTION("CreateToken") {
    model::CreateToken c;
    c.id = "tok";
    c.role = "agent";
    c.hash = std::string(64, 'f');
    CHECK(c.Encode() == R"({"id":"tok","role":"agent","hash":")" + std::string(64, 'f') + R"("})");
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 1);
    REQUIRE(back.ok());
    auto& t = static_cast<model::CreateToken&>(**back);
    CHECK(t.id == "tok");
    CHECK(t.role == "agent");
    CHECK(t.hash == c.hash);
  }
  SECTION("CreateToken of an access key: the sealed secret travels as base64, with its key id") {
    model::CreateToken c;
    c.id = "BKIAABCDEFGHIJKLMNOP";
    c.role = "deploy";
    c.hash = std::string(64, 'a');
    c.expires_ms = 1700000600000;
    c.scope = R"({"clusters":["prod"]})";
    c.sealed_secret = std::string("\0\x01\xff sealed", 10);
    c.secret_key_id = "0123456789abcdef";
    std::string encoded = c.Encode();
    CHECK(encoded.find("sealed") != std::string::npos);
    CHECK(encoded.find(std::string("\xff")) == std::string::npos);  // base64, not the bytes
    auto back = model::DecodeCommand(c.Type(), encoded, 1);
    REQUIRE(back.ok());
    auto& t = static_cast<model::CreateToken&>(**back);
    CHECK(t.id == c.id);
    CHECK(t.role == "deploy");
    CHECK(t.hash == c.hash);
    CHECK(t.expires_ms == c.expires_ms);
    CHECK(t.scope == c.scope);
    CHECK(t.sealed_secret == c.sealed_secret);
    CHECK(t.secret_key_id == c.secret_key_id);
    // A bearer token's encoding has neither field (entries of older servers read the same).
    model::CreateToken plain;
    plain.id = "tok";
    plain.role = "deploy";
    plain.hash = std::string(64, 'a');
    auto plain_back = model::DecodeCommand(plain.Type(), plain.Encode(), 1);
    REQUIRE(plain_back.ok());
    CHECK(static_cast<model::CreateToken&>(**plain_back).sealed_secret.empty());
    CHECK(static_cast<model::CreateToken&>(**plain_back).secret_key_id.empty());
  }
  SECTION("PutSecret and DeleteSecret: the sealed bytes travel as base64") {
    model::PutSecret c;
    c.name = "db";
    c.sealed = std::string("\0\x01\xff sealed", 10);
    c.key_id = "0123456789abcdef";
    c.create = false;
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 3);
    REQUIRE(back.ok());
    auto& p = static_cast<model::PutSecret&>(**back);
    CHECK(p.name == "db");
    CHECK(p.sealed == c.sealed);
    CHECK(p.key_id == c.key_id);
    CHECK(!p.create);
    model::DeleteSecret d;
    d.name = "db";
    auto gone = model::DecodeCommand(d.Type(), d.Encode(), 3);
    REQUIRE(gone.ok());
    CHECK(static_cast<model::DeleteSecret&>(**gone).name == "db");
  }
}

TEST_CASE("commands: decode errors name the problem", "[model][commands]") {
  auto err = [](std::string_view type, std::string_view payload) {
    auto r = model::DecodeCommand(type, payload, 0);
    REQUIRE_FALSE(r.ok());
    return r.error();
  };
  CHECK(err("CreateCluster", "{").code == "MalformedJSON");
  CHECK(err("CreateCluster", "").message == "malformed JSON: the body is empty");
  CHECK(err("CreateCluster", "[]").message == "CreateCluster: payload must be an object");
  CHECK(err("CreateCluster", "{}").message == "name: is required");
  CHECK(err("DeleteCluster", R"({"name":5})").message == "name: must be a string, not a number");
  CHECK(err("CreateToken", R"({"id":"a","hash":"h"})").message == "role: is required");
  CHECK(err("CreateToken", R"({"id":"a","role":"admin","hash":null})").message == "hash: is required");
  CHECK(err("CreateToken", R"({"id":"a","role":"admin","hash":"h","sealedSecret":"AAAA"})").message ==
        "secretKeyId: is required");
  CHECK_THAT(
      err("CreateToken", R"({"id":"a","role":"admin","hash":"h","sealedSecret":"!!","secretKeyId":"k"})").message,
      Catch::StartsWith("sealedSecret: "));
  Error unknown = err("Frobnicate", "{}");
  CHECK(unknown.kind == ErrorKind::kInvalid);
  CHECK(unknown.message == "unknown command type Frobnicate");
}

TEST_CASE("commands: roles", "[model][commands]") {
  for (const char* role : {"admin", "deploy", "read-only", "agent"}) CHECK(model::IsValidRole(role));
  for (const char* role : {"", "Admin", "root", "read_only", "admin "}) CHECK_FALSE(model::IsValidRole(role));
}

TEST_CASE("commands: PlaceTasks and ReportTasks round trip through their appended encoding", "[model][commands]") {
  SECTION("PlaceTasks") {
    model::PlaceTasks c;
    c.cluster = "default";
    c.family = "web \"x\"";
    c.revision = 12;
    c.group = "service:web";
    c.started_by = "ecs-svc/1";
    c.service = "web";
    c.deployment = "ecs-svc/1";
    c.placements = {{"t1", "n1"}, {"t2", "n\\2"}};
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 5);
    REQUIRE(back.ok());
    auto& p = static_cast<model::PlaceTasks&>(**back);
    CHECK(p.cluster == c.cluster);
    CHECK(p.family == c.family);
    CHECK(p.revision == 12);
    CHECK(p.group == c.group);
    CHECK(p.started_by == c.started_by);
    CHECK(p.service == c.service);
    CHECK(p.deployment == c.deployment);
    REQUIRE(p.placements.size() == 2);
    CHECK(p.placements[1].task_id == "t2");
    CHECK(p.placements[1].node == "n\\2");
  }
  SECTION("PlaceTasks without placements") {
    model::PlaceTasks c;
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 5);
    REQUIRE(back.ok());
    CHECK(static_cast<model::PlaceTasks&>(**back).placements.empty());
  }
  SECTION("ReportTasks") {
    model::ReportTasks c;
    c.node = "n1";
    c.reports.push_back({"t1", "RUNNING", "", R"([{"name":"app","lastStatus":"RUNNING","exitCode":null}])"});
    c.reports.push_back({"t2", "STOPPED", "exit \"1\"", ""});
    auto back = model::DecodeCommand(c.Type(), c.Encode(), 5);
    REQUIRE(back.ok());
    auto& r = static_cast<model::ReportTasks&>(**back);
    CHECK(r.node == "n1");
    REQUIRE(r.reports.size() == 2);
    CHECK(r.reports[0].task_id == "t1");
    CHECK(r.reports[0].last == "RUNNING");
    CHECK(r.reports[0].containers == c.reports[0].containers);
    CHECK(r.reports[1].reason == "exit \"1\"");
    CHECK(r.reports[1].containers == "[]");
  }
}
