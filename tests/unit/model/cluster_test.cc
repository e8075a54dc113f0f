// model/cluster: name rules and their messages, ARNs, the ECS JSON shape.
#include "model/cluster.h"

#include <catch2/catch.hpp>

using namespace berth;

namespace {

std::string Why(std::string_view name, std::string_view field = "clusterName") {
  Status s = model::ValidateClusterName(name, field);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::kInvalid);
  CHECK(s.error().code == "InvalidParameter");
  return s.error().message;
}

const std::string kRule = "must be 1-255 characters of letters, digits, hyphens (-) and underscores (_)";

}  // namespace

TEST_CASE("cluster: valid names", "[model][cluster]") {
  for (const std::string& name :
       std::vector<std::string>{"a", "default", "Prod-EU_1", "0", "-_-", std::string(255, 'x')}) {
    INFO(name);
    CHECK(model::ValidateClusterName(name).ok());
  }
}

TEST_CASE("cluster: invalid names say why and where", "[model][cluster]") {
  CHECK(Why("") == "clusterName: " + kRule + "; got 0 characters");
  CHECK(Why(std::string(256, 'x')) == "clusterName: " + kRule + "; got 256 characters");
  CHECK(Why("my cluster") == "clusterName: " + kRule + "; ' ' at position 2 is not allowed");
  CHECK(Why("a.b") == "clusterName: " + kRule + "; '.' at position 1 is not allowed");
  CHECK(Why("x/y") == "clusterName: " + kRule + "; '/' at position 1 is not allowed");
  CHECK(Why(std::string_view("\0", 1)) == "clusterName: " + kRule + "; byte 0 at position 0 is not allowed");
  CHECK(Why("ok\n") == "clusterName: " + kRule + "; byte 10 at position 2 is not allowed");
  CHECK(Why("caf\xc3\xa9") == "clusterName: " + kRule + "; byte 195 at position 3 is not allowed");
  CHECK(Why("a\x7f") == "clusterName: " + kRule + "; byte 127 at position 1 is not allowed");
  CHECK(Why("bad name", "cluster") == "cluster: " + kRule + "; ' ' at position 3 is not allowed");
}

TEST_CASE("cluster: ARN and JSON", "[model][cluster]") {
  CHECK(model::ClusterArn("prod") == "arn:aws:ecs:local:000000000000:cluster/prod");
  model::Cluster c;
  c.name = "prod";
  c.arn = model::ClusterArn("prod");
  c.registered_nodes = 2;
  c.running_tasks = 3;
  c.pending_tasks = 1;
  c.active_services = 4;
  json::Doc d = model::ClusterJson(c);
  json::View v = d.view();
  CHECK(v.Get("clusterName").String() == "prod");
  CHECK(v.Get("clusterArn").String() == "arn:aws:ecs:local:000000000000:cluster/prod");
  CHECK(v.Get("status").String() == "ACTIVE");
  CHECK(v.Get("registeredContainerInstancesCount").Number() == 2);
  CHECK(v.Get("runningTasksCount").Number() == 3);
  CHECK(v.Get("pendingTasksCount").Number() == 1);
  CHECK(v.Get("activeServicesCount").Number() == 4);
  CHECK(v.Get("settings").Print() == R"([{"name":"containerInsights","value":"disabled"}])");
  CHECK(v.Get("tags").IsArray());
}
