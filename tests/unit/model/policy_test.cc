// model/policy: what a task may ask of its host, the messages that name the field
// and the setting, and host paths as the host resolves them.
#include "model/policy.h"

#include <catch2/catch.hpp>

#include "model/taskdef.h"

using namespace berth;

namespace {

json::Doc Td(const std::string& text) {
  Result<json::Doc> doc = json::Doc::Parse(text);
  REQUIRE(doc);
  Result<json::Doc> valid = model::ValidateTaskDefinition(doc->view());
  REQUIRE(valid);
  return std::move(valid.value());
}

model::TaskPolicy Policy(const std::string& text) {
  Result<json::Doc> doc = json::Doc::Parse(text);
  REQUIRE(doc);
  Result<model::TaskPolicy> p = model::ParseTaskPolicy(doc->view());
  REQUIRE(p);
  return std::move(p.value());
}

model::HostView Server() {
  model::HostView h;
  h.socket_paths = model::DefaultSocketPaths();
  return h;
}

// The refusal's message (it must be one, kForbidden).
std::string Refusal(const json::Doc& td, const model::TaskPolicy& p, const model::HostView& h = Server(),
                    bool host_setting = false) {
  Status s = model::CheckTaskPolicy(td.view(), p, "prod", h, host_setting);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().kind == ErrorKind::kForbidden);
  return s.error().message;
}

json::Doc Mount(const std::string& path, bool read_only) {
  return Td(
      R"({"family":"f","volumes":[{"name":"v","host":{"sourcePath":")" + path +
      R"("}}],"containerDefinitions":[{"name":"c","image":"i","memory":8,"mountPoints":[{"sourceVolume":"v","containerPath":"/d","readOnly":)" +
      (read_only ? "true" : "false") + "}]}]}");
}

}  // namespace

TEST_CASE("policy: nothing privileged by default, and plain tasks always run", "[model][policy]") {
  model::TaskPolicy none;
  json::Doc plain =
      Td(R"({"family":"f","volumes":[{"name":"v"},{"name":"s","dockerVolumeConfiguration":{"scope":"shared"}}],
    "containerDefinitions":[{"name":"c","image":"i","memory":8,"logConfiguration":{"logDriver":"local"},
    "mountPoints":[{"sourceVolume":"v","containerPath":"/d"},{"sourceVolume":"s","containerPath":"/s"}]}]})");
  CHECK(model::CheckTaskPolicy(plain.view(), none, "prod", Server()).ok());

  CHECK_THAT(Refusal(Mount("/", true), none),
             Catch::Contains("volumes[0].host.sourcePath: host path / gives the task the container engine's socket") &&
                 Catch::Contains("--allow-docker-socket"));
  CHECK_THAT(Refusal(Mount("/srv/data", true), none),
             Catch::Contains("volumes[0].host.sourcePath: host path /srv/data is not allowed in cluster prod") &&
                 Catch::Contains("`berth cluster update prod --allow-host-path /srv/data`"));
  CHECK_THAT(Refusal(Mount("/srv/data", false), none), Catch::Contains("--allow-host-path /srv/data:rw"));
  CHECK_THAT(Refusal(Mount("/var/run/docker.sock", false), none), Catch::Contains("--allow-docker-socket"));
  CHECK_THAT(Refusal(Mount("/run", true), none), Catch::Contains("socket /run/docker.sock"));
  CHECK_THAT(
      Refusal(Td(R"({"family":"f","networkMode":"host","containerDefinitions":[{"name":"c","image":"i","memory":8}]})"),
              none),
      Catch::Contains("networkMode: ") && Catch::Contains("--allow-host-network"));
  CHECK_THAT(
      Refusal(Td(R"({"family":"f","pidMode":"host","containerDefinitions":[{"name":"c","image":"i","memory":8}]})"),
              none),
      Catch::Contains("pidMode: ") && Catch::Contains("--allow-host-pid"));
  CHECK_THAT(
      Refusal(
          Td(R"({"family":"f","volumes":[{"name":"x","dockerVolumeConfiguration":{"scope":"shared","autoprovision":false}}],
    "containerDefinitions":[{"name":"c","image":"i","memory":8}]})"),
          none),
      Catch::Contains("volumes[0].dockerVolumeConfiguration.autoprovision: ") &&
          Catch::Contains("--allow-external-volumes"));
  CHECK_THAT(Refusal(Td(R"({"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":8},
    {"name":"c","image":"i","memory":8,"logConfiguration":{"logDriver":"syslog","options":{"syslog-address":"udp://10.0.0.1:514"}}}]})"),
                     none),
             Catch::Contains("containerDefinitions[1].logConfiguration.logDriver: log driver syslog") &&
                 Catch::Contains("--allow-log-driver syslog"));
}

TEST_CASE("policy: allowed prefixes, read-only unless read-write", "[model][policy]") {
  model::TaskPolicy p = Policy(R"({"hostPaths":[{"path":"/srv/data/","readWrite":true},{"path":"/etc/ssl"}],
    "hostNetwork":true,"hostPid":true,"externalVolumes":true,"logDrivers":["syslog"]})");
  CHECK(p.host_paths.size() == 2);
  CHECK(p.host_paths[1].prefix == "/srv/data");  // normalised, sorted
  CHECK(model::CheckTaskPolicy(Mount("/srv/data", false).view(), p, "prod", Server()).ok());
  CHECK(model::CheckTaskPolicy(Mount("/srv/data/a/./b", false).view(), p, "prod", Server()).ok());
  CHECK(model::CheckTaskPolicy(Mount("/etc/ssl/certs", true).view(), p, "prod", Server()).ok());
  // A sibling that shares the prefix's letters is not under it.
  CHECK_THAT(Refusal(Mount("/srv/database", true), p), Catch::Contains("/srv/database is not allowed"));
  CHECK_THAT(Refusal(Mount("/etc/ssl", false), p),
             Catch::Contains("containerDefinitions[0].mountPoints[0].readOnly: host path /etc/ssl may only be mounted "
                             "read-only in cluster prod") &&
                 Catch::Contains("--allow-host-path /etc/ssl:rw"));
  CHECK(
      model::CheckTaskPolicy(
          Td(R"({"family":"f","networkMode":"host","pidMode":"host","containerDefinitions":[{"name":"c","image":"i","memory":8,"logConfiguration":{"logDriver":"syslog"}}]})")
              .view(),
          p, "prod", Server())
          .ok());
  // Even / allowed read-write leaves the Docker socket to its own setting.
  model::TaskPolicy root = Policy(R"({"hostPaths":[{"path":"/","readWrite":true}]})");
  CHECK_THAT(Refusal(Mount("/", false), root), Catch::Contains("--allow-docker-socket"));
  CHECK(model::CheckTaskPolicy(Mount("/srv", false).view(), root, "prod", Server()).ok());
  root.docker_socket = true;
  CHECK(model::CheckTaskPolicy(Mount("/", false).view(), root, "prod", Server()).ok());
}

TEST_CASE("policy: on the host, paths are resolved and some are never mounted", "[model][policy]") {
  model::TaskPolicy p = Policy(R"({"hostPaths":[{"path":"/srv","readWrite":true}]})");
  model::HostView h = Server();
  // /srv/link is a symbolic link to /etc on this host.
  h.resolve = [](const std::string& path) { return path == "/srv/link" ? std::string("/etc") : path; };
  CHECK_THAT(Refusal(Mount("/srv/link", true), p, h),
             Catch::Contains("host path /srv/link (/etc on this host) is not allowed"));
  h.forbidden = {"/srv/berth"};
  CHECK_THAT(Refusal(Mount("/srv", true), p, h),
             Catch::Contains("overlaps /srv/berth, which berth keeps from every task"));
  CHECK_THAT(Refusal(Mount("/srv/berth/admin-token", true), p, h), Catch::Contains("overlaps /srv/berth"));
  CHECK(model::CheckTaskPolicy(Mount("/srv/other", false).view(), p, "prod", h).ok());
  // A host's own setting is named as the agent's flag.
  CHECK_THAT(
      Refusal(Mount("/opt", true), p, h, true),
      Catch::Contains("not allowed on this node") && Catch::Contains("only when started with --allow-host-path /opt"));
}

TEST_CASE("policy: parsing names what is wrong", "[model][policy]") {
  auto why = [](const std::string& text) {
    Result<json::Doc> doc = json::Doc::Parse(text);
    REQUIRE(doc);
    Result<model::TaskPolicy> p = model::ParseTaskPolicy(doc->view());
    REQUIRE_FALSE(p);
    return p.error().message;
  };
  CHECK_THAT(why(R"({"hostPaths":[{"path":"srv"}]})"),
             Catch::Contains("taskPolicy.hostPaths[0].path: 'srv' must be an absolute path"));
  CHECK_THAT(why(R"({"hostPaths":[{"path":"/a/../b"}]})"), Catch::Contains("must not contain .."));
  CHECK_THAT(why(R"({"hostNetwork":"yes"})"), Catch::Contains("taskPolicy.hostNetwork: must be true or false"));
  CHECK_THAT(why(R"({"privileged":true})"), Catch::Contains("taskPolicy.privileged: is not a policy setting"));
  CHECK_THAT(why(R"({"logDrivers":["a b"]})"), Catch::Contains("taskPolicy.logDrivers[0]"));
  CHECK(model::ParseHostPathRule("/srv:rw", "--allow-host-path")->read_write);
  CHECK_FALSE(model::ParseHostPathRule("/srv:ro", "--allow-host-path")->read_write);
  CHECK_THAT(model::ParseHostPathRule("/srv:rx", "--allow-host-path").error().message,
             Catch::Contains("--allow-host-path: '/srv:rx' must be PATH, PATH:ro or PATH:rw"));
  CHECK(model::NormalisePath("//a/./b//") == "/a/b");
  CHECK(model::NormalisePath("/") == "/");
  // Round trip.
  model::TaskPolicy p =
      Policy(R"({"hostPaths":[{"path":"/x","readWrite":true}],"dockerSocket":true,"logDrivers":["gelf"]})");
  Result<model::TaskPolicy> back = model::ParseTaskPolicy(p.ToJson().view());
  REQUIRE(back);
  CHECK(back.value() == p);
}
