// model/state_tags: tags on resources by ARN and the custom attributes of nodes
// (their commands' log form, the rules that refuse them, persistence, and their
// going with the resource).
#include <catch2/catch.hpp>

#include "model/commands.h"
#include "model/state.h"
#include "support/state_store.h"

using namespace berth;
using berth::testing::MakeCreateCluster;
using berth::testing::MakeDeleteCluster;
using berth::testing::StateStore;

namespace {

store::CommandPtr Tag(std::string arn, std::vector<std::pair<std::string, std::string>> tags) {
  auto c = std::make_unique<model::PutTags>();
  c->resource = std::move(arn);
  c->tags = std::move(tags);
  c->time_ms = 1700000000000;
  return c;
}

store::CommandPtr Untag(std::string arn, std::vector<std::string> keys) {
  auto c = std::make_unique<model::RemoveTags>();
  c->resource = std::move(arn);
  c->keys = std::move(keys);
  return c;
}

store::CommandPtr Node(std::string id, std::map<std::string, std::string> attrs) {
  auto c = std::make_unique<model::RegisterNode>();
  c->id = std::move(id);
  c->cluster = "default";
  c->cpu = 1024;
  c->memory = 1024;
  c->attributes = std::move(attrs);
  return c;
}

}  // namespace

TEST_CASE("tags: the commands' log form round-trips", "[model][commands]") {
  model::PutTags put;
  put.resource = "arn:aws:ecs:local:000000000000:cluster/prod";
  put.tags = {{"team", "web \"quoted\""}, {"empty", ""}};
  auto back = model::DecodeCommand(put.Type(), put.Encode(), 9);
  REQUIRE(back.ok());
  auto& p = static_cast<model::PutTags&>(**back);
  CHECK(p.resource == put.resource);
  CHECK(p.tags == put.tags);
  CHECK(p.time_ms == 9);

  model::RemoveTags rm;
  rm.resource = put.resource;
  rm.keys = {"team", "x"};
  back = model::DecodeCommand(rm.Type(), rm.Encode(), 1);
  REQUIRE(back.ok());
  CHECK(static_cast<model::RemoveTags&>(**back).keys == rm.keys);

  model::PutNodeAttributes pa;
  pa.node = "n1";
  pa.attributes = {{"stack", "prod"}, {"rack", "r7"}};
  back = model::DecodeCommand(pa.Type(), pa.Encode(), 1);
  REQUIRE(back.ok());
  CHECK(static_cast<model::PutNodeAttributes&>(**back).node == "n1");
  CHECK(static_cast<model::PutNodeAttributes&>(**back).attributes == pa.attributes);

  model::DeleteNodeAttributes da;
  da.node = "n1";
  da.names = {"stack"};
  back = model::DecodeCommand(da.Type(), da.Encode(), 1);
  REQUIRE(back.ok());
  CHECK(static_cast<model::DeleteNodeAttributes&>(**back).names == da.names);

  CHECK_FALSE(model::DecodeCommand("PutTags", R"({"resource":5})", 1).ok());
}

TEST_CASE("tags: on resources that exist, as AWS's rules allow, kept and gone with the resource", "[model][state]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateCluster("prod")).ok());
  std::string arn = model::ClusterArn("prod");
  REQUIRE(s.Apply(Tag(arn, {{"team", "web"}, {"env", "prod"}})).ok());
  REQUIRE(s.state.TagsOf(arn));
  CHECK(s.state.TagsOf(arn)->at("team") == "web");
  REQUIRE(s.Apply(Tag(arn, {{"team", "api"}})).ok());
  CHECK(s.state.TagsOf(arn)->at("team") == "api");
  CHECK(s.state.TagsOf(arn)->size() == 2);

  auto missing = s.Apply(Tag(model::ClusterArn("nosuch"), {{"a", "b"}}));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == "ResourceNotFound");
  auto reserved = s.Apply(Tag(arn, {{"aws:owner", "x"}}));
  REQUIRE_FALSE(reserved.ok());
  CHECK(reserved.error().code == "InvalidParameter");
  CHECK_FALSE(s.Apply(Tag(arn, {{std::string(129, 'k'), "v"}})).ok());
  CHECK_FALSE(s.Apply(Tag(arn, {{"k", std::string(257, 'v')}})).ok());
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 49; i++) many.emplace_back("k" + std::to_string(i), "v");
  auto too_many = s.Apply(Tag(arn, many));  // 2 + 49 > 50
  REQUIRE_FALSE(too_many.ok());
  CHECK(too_many.error().message.find("at most 50") != std::string::npos);
  CHECK(s.state.TagsOf(arn)->size() == 2);  // a refused command changes nothing

  REQUIRE(s.Apply(Untag(arn, {"env", "nosuch"})).ok());
  CHECK(s.state.TagsOf(arn)->size() == 1);
  CHECK(s.Count("SELECT COUNT(*) FROM resource_tags") == 1);

  s.store.reset();
  s.Open();  // from disk
  REQUIRE(s.state.TagsOf(arn));
  CHECK(s.state.TagsOf(arn)->at("team") == "api");

  REQUIRE(s.Apply(MakeDeleteCluster("prod")).ok());
  CHECK_FALSE(s.state.TagsOf(arn));
  CHECK(s.Count("SELECT COUNT(*) FROM resource_tags") == 0);
  REQUIRE(s.Apply(MakeCreateCluster("prod")).ok());
  CHECK_FALSE(s.state.TagsOf(arn));  // a new cluster of the old name starts bare
}

TEST_CASE("tags: FindResource names what each ARN form points at", "[model][state]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateCluster("default")).ok());
  REQUIRE(s.Apply(Node("n1", {})).ok());
  CHECK(s.state.FindResource(model::ClusterArn("default")).exists);
  CHECK(s.state.FindResource(model::ClusterArn("default")).cluster == "default");
  CHECK(s.state.FindResource(model::NodeArn("default", "n1")).exists);
  CHECK_FALSE(s.state.FindResource(model::NodeArn("other", "n1")).exists);
  CHECK_FALSE(s.state.FindResource(model::TaskDefinitionArn("nosuch", 1)).exists);
  CHECK_FALSE(s.state.FindResource("arn:aws:ecs:eu-west-1:000000000000:cluster/default").exists);
  CHECK_FALSE(s.state.FindResource("not an arn").exists);
  CHECK_FALSE(s.state.FindResource("arn:aws:ecs:local:000000000000:task-definition/x:y").exists);
}

TEST_CASE("attributes: custom ones win over the agent's, survive its registrations and a restart", "[model][state]") {
  StateStore s;
  REQUIRE(s.Apply(MakeCreateCluster("default")).ok());
  REQUIRE(s.Apply(Node("n1", {{"zone", "a"}})).ok());
  auto put = std::make_unique<model::PutNodeAttributes>();
  put->node = "n1";
  put->attributes = {{"zone", "b"}, {"stack", "prod"}};
  REQUIRE(s.Apply(std::move(put)).ok());
  CHECK(s.state.FindNode("n1")->attributes.at("zone") == "b");
  CHECK(s.state.FindNode("n1")->attributes.at("stack") == "prod");
  REQUIRE(s.Apply(Node("n1", {{"zone", "c"}, {"disk", "ssd"}})).ok());  // the agent registers again
  CHECK(s.state.FindNode("n1")->attributes.at("zone") == "b");
  CHECK(s.state.FindNode("n1")->attributes.at("disk") == "ssd");

  auto bad = std::make_unique<model::PutNodeAttributes>();
  bad->node = "n1";
  bad->attributes = {{"no spaces", "x"}};
  CHECK_FALSE(s.Apply(std::move(bad)).ok());
  auto nowhere = std::make_unique<model::PutNodeAttributes>();
  nowhere->node = "nosuch";
  nowhere->attributes = {{"a", "b"}};
  auto refused = s.Apply(std::move(nowhere));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == "NodeNotFound");

  s.store.reset();
  s.Open();
  CHECK(s.state.FindNode("n1")->attributes.at("zone") == "b");
  CHECK(s.state.FindNode("n1")->agent_attributes.at("zone") == "c");

  auto del = std::make_unique<model::DeleteNodeAttributes>();
  del->node = "n1";
  del->names = {"zone", "nosuch"};
  REQUIRE(s.Apply(std::move(del)).ok());
  CHECK(s.state.FindNode("n1")->attributes.at("zone") == "c");  // the agent's shows again
  CHECK(s.state.FindNode("n1")->attributes.at("stack") == "prod");

  auto gone = std::make_unique<model::DeregisterNode>();
  gone->id = "n1";
  REQUIRE(s.Apply(std::move(gone)).ok());
  CHECK(s.Count("SELECT COUNT(*) FROM node_attributes") == 0);
}
