// model/node: reserved host ports — their text form, and that a node's own ports
// are never given to a task, before and after a restart.
#include "model/node.h"

#include <catch2/catch.hpp>

#include "model/commands.h"
#include "model/state.h"
#include "model/taskdef.h"
#include "support/state_store.h"

using namespace berth;
using berth::testing::StateStore;

TEST_CASE("node: reserved ports in text and back", "[model][node]") {
  auto p = model::ParsePortsText("7070,22,53/udp,22/tcp");
  REQUIRE(p);
  CHECK(p->size() == 4);
  CHECK(model::PortsText(*p) == "22,53/udp,7070");  // sorted, repeats dropped
  CHECK(model::ParsePortsText("")->empty());
  for (const char* bad : {"0", "65536", "x", "22/sctp", "22,,23", "-1"}) {
    INFO(bad);
    auto e = model::ParsePortsText(bad);
    REQUIRE_FALSE(e);
    CHECK_THAT(e.error().message, Catch::Contains("1-65535"));
  }
}

namespace {

store::CommandPtr Register(const std::string& ports) {
  auto c = std::make_unique<model::RegisterNode>();
  c->id = "n1";
  c->cluster = "default";
  c->hostname = "n1";
  c->cpu = 4096;
  c->memory = 8192;
  c->reserved_ports = model::ParsePortsText(ports).value();
  return c;
}

store::CommandPtr Place(const std::string& task_id) {
  auto c = std::make_unique<model::PlaceTasks>();
  c->cluster = "default";
  c->family = "ssh";
  c->revision = 1;
  c->group = "family:ssh";
  c->placements.push_back({task_id, "n1"});
  return c;
}

}  // namespace

TEST_CASE("node: a task asking for a reserved host port is refused there, across a restart", "[model][node]") {
  StateStore s;
  auto cluster = std::make_unique<model::CreateCluster>();
  cluster->name = "default";
  REQUIRE(s.Apply(std::move(cluster)).ok());
  REQUIRE(s.Apply(Register("22,7070")).ok());
  Result<json::Doc> td = json::Doc::Parse(
      R"({"family":"ssh","containerDefinitions":[{"name":"m","image":"i","memory":16,"portMappings":[{"containerPort":22,"hostPort":22}]}]})");
  REQUIRE(td);
  Result<json::Doc> valid = model::ValidateTaskDefinition(td->view());
  REQUIRE(valid);
  auto reg = std::make_unique<model::RegisterTaskDefinition>();
  reg->family = "ssh";
  reg->doc = valid->Print();
  REQUIRE(s.Apply(std::move(reg)).ok());

  auto refused = s.Apply(Place("t1"));
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.error().message, Catch::Contains("22"));

  // The reservation is state: it survives a restart.
  (void)s.store->Close();
  s.store.reset();
  s.Open();
  const model::Node* n = s.state.FindNode("n1");
  REQUIRE(n);
  CHECK(model::PortsText(n->reserved_ports) == "22,7070");
  CHECK_FALSE(s.Apply(Place("t2")));

  // Registering again without it frees the port.
  REQUIRE(s.Apply(Register("7070")).ok());
  CHECK(s.Apply(Place("t3")).ok());
}
