// agent/container_spec: ECS container definitions to Docker create bodies.
#include "agent/container_spec.h"

#include <catch2/catch.hpp>

using namespace berth;

namespace {

agent::TaskIdentity Task() {
  agent::TaskIdentity t;
  t.id = "0123456789abcdef0123456789abcdef";
  t.cluster = "default";
  t.node = "node-1";
  t.service = "web";
  t.task_definition = "web:3";
  return t;
}

json::Doc Parse(std::string_view text) {
  Result<json::Doc> d = json::Doc::Parse(text);
  REQUIRE(d);
  return std::move(d.value());
}

json::Doc Body(const agent::ContainerPlan& p) { return Parse(p.create_body); }

}  // namespace

TEST_CASE("container spec: one container with every ECS field", "[agent][spec]") {
  json::Doc td = Parse(R"({"family":"web","networkMode":"bridge","cpu":"1024","containerDefinitions":[{
    "name":"app","image":"127.0.0.1:7070/app:1","cpu":512,"memory":256,"memoryReservation":128,
    "essential":true,"command":["serve","--port","80"],"entryPoint":["/bin/sh","-c"],
    "environment":[{"name":"A","value":"1"},{"name":"B","value":"x=y"}],
    "portMappings":[{"containerPort":80,"hostPort":0,"protocol":"tcp"},{"containerPort":53,"hostPort":5353,"protocol":"udp"}],
    "healthCheck":{"command":["CMD-SHELL","wget -q localhost"],"interval":10,"timeout":3,"retries":2,"startPeriod":5},
    "dockerLabels":{"team":"edge"},"stopTimeout":7,"workingDirectory":"/srv","user":"nobody",
    "mountPoints":[{"sourceVolume":"data","containerPath":"/data","readOnly":true},{"sourceVolume":"cache","containerPath":"/cache"}]}],
    "volumes":[{"name":"data","host":{"sourcePath":"/var/lib/app"}},{"name":"cache"}]})");
  Result<agent::TaskPlan> plan = agent::PlanTask(Task(), td.view());
  REQUIRE(plan);
  REQUIRE(plan->containers.size() == 1);
  CHECK_FALSE(plan->own_network);
  const agent::ContainerPlan& c = plan->containers[0];
  CHECK(c.docker_name == "berth-0123456789abcdef0123456789abcdef-app");
  CHECK(c.stop_timeout_s == 7);
  CHECK(c.has_health_check);
  json::Doc body = Body(c);
  json::View b = body.view();
  CHECK(b.Get("Image").String() == "127.0.0.1:7070/app:1");
  CHECK(b.Get("Cmd").Print() == R"(["serve","--port","80"])");
  CHECK(b.Get("Entrypoint").Print() == R"(["/bin/sh","-c"])");
  CHECK(b.Get("Env").Print() == R"(["A=1","B=x=y"])");
  CHECK(b.Get("WorkingDir").String() == "/srv");
  CHECK(b.Get("User").String() == "nobody");
  CHECK(b.Get("StopTimeout").Number() == 7);
  json::View labels = b.Get("Labels");
  CHECK(labels.Get("team").String() == "edge");
  CHECK(labels.Get("berth.task").String() == Task().id);
  CHECK(labels.Get("berth.node").String() == "node-1");
  CHECK(labels.Get("berth.cluster").String() == "default");
  CHECK(labels.Get("berth.service").String() == "web");
  CHECK(labels.Get("berth.container").String() == "app");
  json::View hc = b.Get("Healthcheck");
  CHECK(hc.Get("Test").Print() == R"(["CMD-SHELL","wget -q localhost"])");
  CHECK(hc.Get("Interval").Number() == 10e9);
  CHECK(hc.Get("Timeout").Number() == 3e9);
  CHECK(hc.Get("Retries").Number() == 2);
  CHECK(hc.Get("StartPeriod").Number() == 5e9);
  json::View host = b.Get("HostConfig");
  CHECK(host.Get("CpuShares").Number() == 512);
  CHECK(host.Get("NanoCpus").Number() == 1e9);  // the task's 1024 units, all to its one container
  CHECK(host.Get("Memory").Number() == 256.0 * 1024 * 1024);
  CHECK(host.Get("MemoryReservation").Number() == 128.0 * 1024 * 1024);
  CHECK(host.Get("NetworkMode").String() == "bridge");
  CHECK(host.Get("RestartPolicy").Get("Name").String() == "no");
  CHECK(b.Get("ExposedPorts").Get("80/tcp").IsObject());
  CHECK(host.Get("PortBindings").Print() ==
        R"({"80/tcp":[{"HostIp":"","HostPort":""}],"53/udp":[{"HostIp":"","HostPort":"5353"}]})");
  CHECK(host.Get("Mounts").Print() ==
        R"([{"Type":"bind","Source":"/var/lib/app","Target":"/data","ReadOnly":true},)"
        R"({"Type":"volume","Source":"berth-0123456789abcdef0123456789abcdef-cache",)"
        R"("VolumeOptions":{"Labels":{"berth.cluster":"default"}},"Target":"/cache","ReadOnly":false}])");
  CHECK(host.Get("LogConfig").Get("Type").String() == "json-file");
  CHECK(host.Get("LogConfig").Get("Config").Get("max-size").String() == "10m");
}

TEST_CASE("container spec: several containers share a task network, reached by name", "[agent][spec]") {
  json::Doc td = Parse(R"({"family":"pair","containerDefinitions":[
    {"name":"db","image":"busybox","memory":32},
    {"name":"app","image":"busybox","memory":32,"essential":false,
     "dependsOn":[{"containerName":"db","condition":"HEALTHY"}]}]})");
  Result<agent::TaskPlan> plan = agent::PlanTask(Task(), td.view());
  REQUIRE(plan);
  CHECK(plan->own_network);
  CHECK(plan->network_name == "berth-" + Task().id);
  REQUIRE(plan->containers.size() == 2);
  CHECK(plan->containers[1].depends_on == std::vector<std::pair<std::string, std::string>>{{"db", "HEALTHY"}});
  CHECK_FALSE(plan->containers[1].essential);
  json::Doc app = Body(plan->containers[1]);
  CHECK(app.view().Get("HostConfig").Get("NetworkMode").String() == plan->network_name);
  CHECK(app.view().Get("NetworkingConfig").Get("EndpointsConfig").Get(plan->network_name).Get("Aliases").Print() ==
        R"(["app"])");
  CHECK(app.view().Get("Labels").Get("berth.essential").String() == "false");
}

TEST_CASE("container spec: host network and a task-level memory limit", "[agent][spec]") {
  json::Doc td = Parse(R"({"family":"h","networkMode":"host","memory":"512","containerDefinitions":[
    {"name":"m","image":"busybox","portMappings":[{"containerPort":80,"hostPort":80}]}]})");
  Result<agent::TaskPlan> plan = agent::PlanTask(Task(), td.view());
  REQUIRE(plan);
  json::Doc b = Body(plan->containers[0]);
  CHECK(b.view().Get("HostConfig").Get("NetworkMode").String() == "host");
  CHECK_FALSE(b.view().Get("HostConfig").Get("PortBindings").valid());  // no bindings in host mode
  CHECK(b.view().Get("HostConfig").Get("Memory").Number() == 512.0 * 1024 * 1024);
  CHECK(b.view().Get("HostConfig").Get("CpuShares").Number() == 2);  // Docker's minimum
}

TEST_CASE("container spec: what cannot be run is refused with the field", "[agent][spec]") {
  CHECK_FALSE(agent::PlanTask(Task(), json::View()));
  json::Doc empty = Parse(R"({"family":"x","containerDefinitions":[]})");
  Result<agent::TaskPlan> e = agent::PlanTask(Task(), empty.view());
  REQUIRE_FALSE(e);
  CHECK(e.error().message.find("containerDefinitions") != std::string::npos);
  json::Doc dangling = Parse(R"({"family":"x","containerDefinitions":[
    {"name":"a","image":"i","dependsOn":[{"containerName":"zz","condition":"START"}]}]})");
  Result<agent::TaskPlan> d = agent::PlanTask(Task(), dangling.view());
  REQUIRE_FALSE(d);
  CHECK(d.error().message.find("containerDefinitions[0].dependsOn") != std::string::npos);
}

TEST_CASE("container spec: shared volumes berth makes are the cluster's; others keep their name; host PID",
          "[agent][spec]") {
  json::Doc td = Parse(R"({"family":"v","pidMode":"host","containerDefinitions":[{"name":"m","image":"busybox",
    "mountPoints":[{"sourceVolume":"db","containerPath":"/db"},{"sourceVolume":"old","containerPath":"/old"}]}],
    "volumes":[{"name":"db","dockerVolumeConfiguration":{"scope":"shared"}},
               {"name":"old","dockerVolumeConfiguration":{"scope":"shared","autoprovision":false}}]})");
  Result<agent::TaskPlan> plan = agent::PlanTask(Task(), td.view());
  REQUIRE(plan);
  json::Doc b = Body(plan->containers[0]);
  json::View mounts = b.view().Get("HostConfig").Get("Mounts");
  std::vector<std::string> sources;
  for (json::View m : mounts) sources.emplace_back(m.Get("Source").String());
  CHECK(sources == std::vector<std::string>{"berth-shared-default-db", "old"});
  CHECK(b.view().Get("HostConfig").Get("PidMode").String() == "host");
}

TEST_CASE("container spec: secrets go to their container's environment, files are bound read-only",
          "[agent][spec][secret]") {
  json::Doc td = Parse(R"({"family":"web","containerDefinitions":[
    {"name":"app","image":"i","environment":[{"name":"A","value":"1"}],
     "secrets":[{"name":"DB","valueFrom":"db"},{"name":"k","valueFrom":"tls","berthTarget":"file"}]},
    {"name":"side","image":"i"}]})");
  agent::PlanOptions po;
  po.secrets = {{"app", "DB", "hunter2", false}, {"app", "k", "pem", true}};
  po.secret_dirs["app"] = "/run/berth/secrets/t/app";
  Result<agent::TaskPlan> plan = agent::PlanTask(Task(), td.view(), po);
  REQUIRE(plan);
  json::Doc app = Body(plan->containers[0]);
  std::vector<std::string> env;
  for (json::View e : app.view().Get("Env")) env.emplace_back(e.String());
  CHECK(env == std::vector<std::string>{"A=1", "DB=hunter2"});
  json::View mount = *app.view().Get("HostConfig").Get("Mounts").begin();
  CHECK(mount.Get("Source").String() == "/run/berth/secrets/t/app");
  CHECK(mount.Get("Target").String() == "/run/secrets");
  CHECK(mount.Get("ReadOnly").Bool());
  CHECK(plan->containers[0].create_body.find("pem") == std::string::npos);  // files are never in the body
  CHECK(app.view().Get("Labels").Print().find("hunter2") == std::string::npos);
  json::Doc side = Body(plan->containers[1]);
  CHECK(side.view().Get("Env").Size() == 0);
  CHECK(!side.view().Get("HostConfig").Get("Mounts").valid());
}
