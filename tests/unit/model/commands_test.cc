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
  Error unknown = err("Frobnicate", "{}");
  CHECK(unknown.kind == ErrorKind::kInvalid);
  CHECK(unknown.message == "unknown command type Frobnicate");
}

TEST_CASE("commands: roles", "[model][commands]") {
  for (const char* role : {"admin", "deploy", "read-only", "agent"}) CHECK(model::IsValidRole(role));
  for (const char* role : {"", "Admin", "root", "read_only", "admin "}) CHECK_FALSE(model::IsValidRole(role));
}
