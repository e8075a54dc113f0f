// model/task: the containers' text written to a task's row.
#include "model/task.h"

#include <catch2/catch.hpp>

using namespace berth;

TEST_CASE("task: ContainersText is the compact print of ContainersJson", "[model][task]") {
  model::Task t;
  CHECK(model::ContainersText(t) == model::ContainersJson(t).Print());
  model::ContainerState a;
  a.name = "app \"one\"";
  t.containers.push_back(a);
  CHECK(model::ContainersText(t) == model::ContainersJson(t).Print());
  model::ContainerState b;
  b.name = "side";
  b.last_status = "STOPPED";
  b.exit_code = 137;
  b.health = "UNHEALTHY";
  b.reason = "killed\n";
  b.runtime_id = "c0ffee";
  b.bindings.push_back({80, 32768, false, "0.0.0.0"});
  b.bindings.push_back({53, 53, true, "::"});
  t.containers.push_back(b);
  CHECK(model::ContainersText(t) == model::ContainersJson(t).Print());

  // And it reads back to the same containers.
  auto doc = json::Doc::Parse(model::ContainersText(t));
  REQUIRE(doc.ok());
  std::vector<model::ContainerState> back;
  REQUIRE(model::ParseContainers(doc->view(), &back).ok());
  CHECK(back == t.containers);
}
