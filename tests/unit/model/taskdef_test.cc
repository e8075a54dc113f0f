// model/taskdef: fields berth would ignore are refused, naming the field
// (issue 10, item 5: a task definition with `secrets` was accepted and its
// container started without them; secrets are supported since, secretOptions not).
#include "model/taskdef.h"

#include <catch2/catch.hpp>

#include "base/json.h"

using namespace berth;

namespace {

// A valid definition with `extra` merged into the task (task_extra) or into its
// one container (container_extra), both JSON object bodies without braces.
Result<json::Doc> Validate(const std::string& task_extra, const std::string& container_extra) {
  std::string text = R"({"family":"web",)" + (task_extra.empty() ? "" : task_extra + ",") +
                     R"("containerDefinitions":[{"name":"main","image":"busybox","memory":32)" +
                     (container_extra.empty() ? "" : "," + container_extra) + "}]}";
  Result<json::Doc> body = json::Doc::Parse(text);
  REQUIRE(body.ok());
  return model::ValidateTaskDefinition(body->view());
}

}  // namespace

TEST_CASE("taskdef: fields berth would ignore are refused, naming the field", "[model][taskdef]") {
  struct Case {
    const char* task;
    const char* container;
    const char* says;
  };
  const Case kRefused[] = {
      {"", R"("logConfiguration":{"logDriver":"json-file","secretOptions":[{"name":"K","valueFrom":"k"}]})",
       "containerDefinitions[0].logConfiguration.secretOptions: is not supported by berth yet: secrets go to "
       "containers (secrets), not to log drivers"},
      {R"("taskRoleArn":"arn:aws:iam::1:role/r")", "", "taskRoleArn: is not supported: berth has no IAM roles"},
      {R"("executionRoleArn":"arn:aws:iam::1:role/r")", "",
       "executionRoleArn: is not supported: berth has no IAM roles"},
      {R"("ipcMode":"host")", "", "ipcMode: is not supported by berth yet (it would be ignored)"},
      {R"("requiresCompatibilities":["FARGATE"])", "",
       "requiresCompatibilities: berth runs tasks on its nodes: EC2 or EXTERNAL, not 'FARGATE'"},
      {"", R"("links":["db"])",
       "containerDefinitions[0].links: is not supported by berth yet: the containers of a task reach each other by "
       "container name"},
      {"", R"("privileged":true)",
       "containerDefinitions[0].privileged: is not supported by berth yet (it would be ignored)"},
      {"", R"("ulimits":[])", "containerDefinitions[0].ulimits: is not supported by berth yet (it would be ignored)"},
      {"", R"("extraHosts":[{"hostname":"a","ipAddress":"10.0.0.1"}])",
       "containerDefinitions[0].extraHosts: is not supported by berth yet (it would be ignored)"},
      {"", R"("portMappings":[{"containerPort":80,"appProtocol":"http"}])",
       "containerDefinitions[0].portMappings[0].appProtocol: is not supported by berth yet (it would be ignored)"},
      {"", R"("environment":[{"name":"A","value":"1","type":"x"}])",
       "containerDefinitions[0].environment[0].type: is not supported by berth yet (it would be ignored)"},
      {"", R"("logConfiguration":{"options":{}})", "containerDefinitions[0].logConfiguration.logDriver: is required"},
      {"", R"("healthCheck":{"command":["CMD","true"],"intervalSeconds":5})",
       "containerDefinitions[0].healthCheck.intervalSeconds: is not supported by berth yet (it would be ignored)"},
      {R"("volumes":[{"name":"v","dockerVolumeConfiguration":{"scope":"shared","driver":"nfs"}}])", "",
       "volumes[0].dockerVolumeConfiguration.driver: is not supported by berth yet (it would be ignored)"},
      {R"("volumes":[{"name":"v","efsVolumeConfiguration":{}}])", "",
       "volumes[0].efsVolumeConfiguration: is not supported by berth yet (it would be ignored)"},
  };
  for (const Case& c : kRefused) {
    INFO(c.task << " / " << c.container);
    Result<json::Doc> r = Validate(c.task, c.container);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::kInvalid);
    CHECK(r.error().message == c.says);
  }
  // What berth acts on is taken.
  Result<json::Doc> ok = Validate(
      R"("networkMode":"bridge","requiresCompatibilities":["EC2"],"tags":[{"key":"a","value":"b"}],)"
      R"("volumes":[{"name":"data","dockerVolumeConfiguration":{"scope":"task"}}])",
      R"("cpu":128,"memoryReservation":16,"essential":true,"command":["httpd","-f"],"entryPoint":["/bin/sh"],)"
      R"("environment":[{"name":"A","value":"1"}],"portMappings":[{"containerPort":80,"hostPort":0,"protocol":"tcp"}],)"
      R"("mountPoints":[{"sourceVolume":"data","containerPath":"/data","readOnly":false}],"stopTimeout":5,)"
      R"("hostname":"h","user":"1000","workingDirectory":"/","dockerLabels":{"a":"b"},)"
      R"("healthCheck":{"command":["CMD-SHELL","true"],"interval":10,"timeout":5,"retries":3,"startPeriod":0},)"
      R"("logConfiguration":{"logDriver":"json-file","options":{"max-size":"1m"}})");
  INFO((ok.ok() ? std::string() : ok.error().message));
  CHECK(ok.ok());
}

TEST_CASE("taskdef: an image is a reference, never a path into the engine's API", "[model][taskdef]") {
  auto with_image = [](const std::string& image) {
    std::string text =
        R"({"family":"web","containerDefinitions":[{"name":"main","image":")" + image + R"(","memory":32}]})";
    Result<json::Doc> body = json::Doc::Parse(text);
    REQUIRE(body.ok());
    return model::ValidateTaskDefinition(body->view());
  };
  for (const char* good : {"busybox", "127.0.0.1:7070/team/app:1.2", "a/b@sha256:abcdef", "Reg.io/x_y-z:V"}) {
    CHECK(with_image(good).ok());
  }
  for (const char* bad : {"busybox/../../containers/x", "a//b", "/abs", "a/", "-x", "a?x=1", "a#b", "a%2e", "a&b",
                          "a/..", "..", "a\\\\b"}) {
    Result<json::Doc> r = with_image(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK_THAT(r.error().message, Catch::StartsWith("containerDefinitions[0].image: must be an image"));
  }
}
