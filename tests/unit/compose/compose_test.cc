// compose/: YAML with marks, interpolation, merging several files and the
// translation of Compose keys to an ECS task definition, with every refusal
// naming its file and line.
#include "compose/compose.h"

#include <catch2/catch.hpp>

#include "compose/yaml.h"

using namespace berth;

namespace {

// Loads in-memory files ("/p/<name>") as `berth compose -f ...` would.
Result<compose::Project> LoadFiles(const std::map<std::string, std::string>& files, std::vector<std::string> order = {},
                                   bool ignore = false, std::map<std::string, std::string> env = {}) {
  compose::Options o;
  o.cwd = "/p";
  o.home = "/home/u";
  o.project = "proj";
  o.ignore_unsupported = ignore;
  o.environment = std::move(env);
  if (order.empty()) order.push_back("compose.yaml");
  o.files = order;
  o.read = [files](const std::string& path, std::string* out) {
    auto it = files.find(path.substr(3));  // "/p/"
    if (!path.starts_with("/p/") || it == files.end()) return false;
    *out = it->second;
    return true;
  };
  return compose::Load(o);
}

Result<compose::Project> LoadOne(const std::string& text, bool ignore = false,
                                 std::map<std::string, std::string> env = {}) {
  return LoadFiles({{"compose.yaml", text}}, {}, ignore, std::move(env));
}

json::View Container(const compose::Project& p, size_t i) {
  size_t k = 0;
  for (json::View c : p.task_definition.view().Get("containerDefinitions")) {
    if (k++ == i) return c;
  }
  return json::View();
}

std::string ErrorOf(const Result<compose::Project>& r) {
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

}  // namespace

TEST_CASE("compose yaml: lines, anchors, merge keys, scalars kept as text", "[compose]") {
  Result<compose::yaml::NodePtr> r =
      compose::yaml::Parse("base: &b\n  a: 1\n  b: yes\nother: &o\n  c: 80:80\nm:\n  <<: [*b, *o]\n  a: 2\n", "f.yaml");
  REQUIRE(r.ok());
  const compose::yaml::Node& m = *(*r)->Get("m");
  CHECK(m.line == 7);
  CHECK(m.Get("a")->text == "2");  // explicit key wins over the merge
  CHECK(m.Get("b")->text == "yes");
  CHECK(m.Get("c")->text == "80:80");  // not YAML 1.1's sexagesimal 4880
  CHECK(m.Get("c")->line == 5);
  Result<compose::yaml::NodePtr> bad = compose::yaml::Parse("a: [1,\nb: 2\n", "x.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("x.yaml:"));
  // An alias bomb is refused, not expanded.
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'j'; c++, prev++) {
    bomb += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
            ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n";
  }
  Result<compose::yaml::NodePtr> exploded = compose::yaml::Parse(bomb, "bomb.yaml");
  REQUIRE_FALSE(exploded.ok());
  CHECK(exploded.error().message.find("expands to more than") != std::string::npos);
}

TEST_CASE("compose interpolation", "[compose]") {
  std::map<std::string, std::string> vars = {{"A", "x"}, {"E", ""}};
  auto I = [&](const char* t) {
    Result<std::string> r = compose::Interpolate(t, vars);
    REQUIRE(r.ok());
    return r.value();
  };
  CHECK(I("${A}") == "x");
  CHECK(I("$A-$A") == "x-x");
  CHECK(I("${U:-d}") == "d");
  CHECK(I("${E:-d}") == "d");
  CHECK(I("${E-d}") == "");
  CHECK(I("${U-d}") == "d");
  CHECK(I("${U:-${A}y}") == "xy");
  CHECK(I("$$A") == "$A");
  CHECK(I("${A:+set}") == "set");
  CHECK(I("${U}") == "");
  Result<std::string> e = compose::Interpolate("${U:?give U}", vars);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message == "required variable U is unset: give U");
  CHECK_FALSE(compose::Interpolate("${E:?no}", vars).ok());
  CHECK(compose::Interpolate("${E?no}", vars).ok());
  CHECK_FALSE(compose::Interpolate("${A", vars).ok());

  // In a file: the environment wins over .env; the error names the line.
  Result<compose::Project> p = LoadFiles({{"compose.yaml",
                                           "services:\n  web:\n    image: busybox:${TAG:-1}\n    environment:\n"
                                           "      FROM_DOTENV: $DOT\n      BOTH: ${BOTH}\n"},
                                          {".env", "DOT=dotenv\nBOTH=dotenv\n"}},
                                         {}, false, {{"BOTH", "env"}});
  REQUIRE(p.ok());
  CHECK(Container(*p, 0).Get("image").String() == "busybox:1");
  CHECK(Container(*p, 0).Get("environment").Print() ==
        R"([{"name":"FROM_DOTENV","value":"dotenv"},{"name":"BOTH","value":"env"}])");
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: ${IMG:?set IMG}\n")) ==
        "compose.yaml:3: services.web.image: required variable IMG is unset: set IMG");

  // An unset variable without a default is warned about, where it is used (as Compose does).
  std::vector<std::string> unset;
  CHECK(compose::Interpolate("$U-${V}-${W:-d}-${A}", vars, &unset).value() == "--d-x");
  CHECK(unset == std::vector<std::string>{"U", "V"});
  p = LoadOne("services:\n  web:\n    image: x\n    environment:\n      TZ: ${TIMEZONE}\n");
  REQUIRE(p.ok());
  REQUIRE(p->warnings.size() == 1);
  CHECK(p->warnings[0] ==
        "compose.yaml:5: services.web.environment.TZ: variable TIMEZONE is not set: it becomes an empty string");
  // A mount whose source was an unset variable is refused, not taken for an anonymous volume.
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: x\n    volumes:\n      - ${MEDIA}:/media\n")) ==
        "compose.yaml:5: services.web.volumes[0]: the source before ':' is empty (is a variable it names unset?)");
}

TEST_CASE("compose durations, sizes, shell words", "[compose]") {
  CHECK(compose::ParseDuration("1m30s").value() == 90000);
  CHECK(compose::ParseDuration("500ms").value() == 500);
  CHECK(compose::ParseDuration("1h").value() == 3600000);
  CHECK(compose::ParseDuration("2.5s").value() == 2500);
  CHECK_FALSE(compose::ParseDuration("10x").ok());
  CHECK(compose::ParseBytes("512m").value() == 512 << 20);
  CHECK(compose::ParseBytes("1g").value() == int64_t{1} << 30);
  CHECK(compose::ParseBytes("1.5GB").value() == int64_t{3} << 29);
  CHECK(compose::ParseBytes("1024k").value() == 1 << 20);
  CHECK(compose::ParseBytes("100").value() == 100);
  CHECK_FALSE(compose::ParseBytes("5q").ok());
  CHECK(compose::ShellSplit(R"(sh -c "echo 'a b' \"c\"" d\ e)").value() ==
        std::vector<std::string>{"sh", "-c", R"(echo 'a b' "c")", "d e"});
  CHECK_FALSE(compose::ShellSplit("echo 'x").ok());
  CHECK(compose::NormaliseProjectName("My.App_2-x") == "myapp_2-x");
}

TEST_CASE("compose ports: short and long syntax, ranges, udp", "[compose]") {
  Result<compose::Project> p = LoadOne(
      "services:\n  web:\n    image: nginx\n    ports:\n      - 80\n      - \"8080:80\"\n      - 0.0.0.0:9000:90\n"
      "      - 8000-8001:7000-7001\n      - 53:53/udp\n      - target: 443\n        published: \"8443\"\n"
      "        protocol: tcp\n        mode: host\n");
  REQUIRE(p.ok());
  CHECK(
      Container(*p, 0).Get("portMappings").Print() ==
      R"([{"containerPort":80,"hostPort":0,"protocol":"tcp"},{"containerPort":80,"hostPort":8080,"protocol":"tcp"},)"
      R"({"containerPort":90,"hostPort":9000,"protocol":"tcp"},{"containerPort":7000,"hostPort":8000,"protocol":"tcp"},)"
      R"({"containerPort":7001,"hostPort":8001,"protocol":"tcp"},{"containerPort":53,"hostPort":53,"protocol":"udp"},)"
      R"({"containerPort":443,"hostPort":8443,"protocol":"tcp"}])");
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: nginx\n    ports:\n      - \"127.0.0.1:80:80\"\n")) ==
        "compose.yaml:5: services.web.ports[0]: publishing on one address (127.0.0.1) is not supported: berth "
        "publishes ports on every address of the node");
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: nginx\n    ports:\n      - \"8000-8002:80-81\"\n")) ==
        "compose.yaml:5: services.web.ports[0]: the published range and the target range must be the same size "
        "(berth maps port to port)");
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: nginx\n    ports:\n      - \"80/sctp\"\n")) ==
        "compose.yaml:5: services.web.ports[0]: protocol must be tcp or udp, not 'sctp'");
}

TEST_CASE("compose services: resources, healthcheck, depends_on, volumes, restart", "[compose]") {
  Result<compose::Project> p = LoadOne(R"(x-common: &common
  restart: always
  labels: [team=a]
services:
  db:
    <<: *common
    image: postgres
    environment: [POSTGRES_PASSWORD=pw, EMPTY=]
    healthcheck:
      test: pg_isready
      interval: 3s
      timeout: 1m30s
      retries: 5
      start_period: 10s
    volumes: [db-data:/var/lib/postgresql/data, ./init:/docker-entrypoint-initdb.d:ro, /scratch]
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 512m}
        reservations: {memory: 256M}
  migrate:
    image: app
    command: ["migrate", "--all"]
    restart: "no"
  web:
    image: app
    entrypoint: /bin/sh -c 'exec app'
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
    stop_grace_period: 1m
    working_dir: /srv
    user: "1000"
    labels: {a.b: "c"}
    logging: {driver: local, options: {max-size: 10m}}
volumes:
  db-data:
)");
  REQUIRE(p.ok());
  json::View db = Container(*p, 0), migrate = Container(*p, 1), web = Container(*p, 2);
  CHECK(db.Get("cpu").Number() == 512);
  CHECK(db.Get("memory").Number() == 512);
  CHECK(db.Get("memoryReservation").Number() == 256);
  CHECK(db.Get("dockerLabels").Print() == R"({"team":"a"})");
  CHECK(db.Get("environment").Print() == R"([{"name":"POSTGRES_PASSWORD","value":"pw"},{"name":"EMPTY","value":""}])");
  CHECK(db.Get("healthCheck").Print() ==
        R"({"command":["CMD-SHELL","pg_isready"],"interval":5,"timeout":60,"startPeriod":10,"retries":5})");
  CHECK(db.Get("mountPoints").Print() ==
        R"([{"sourceVolume":"db-data","containerPath":"/var/lib/postgresql/data","readOnly":false},)"
        R"({"sourceVolume":"bind-init","containerPath":"/docker-entrypoint-initdb.d","readOnly":true},)"
        R"({"sourceVolume":"db-anon","containerPath":"/scratch","readOnly":false}])");
  CHECK(p->task_definition.view().Get("volumes").Print() ==
        R"([{"name":"db-data","dockerVolumeConfiguration":{"scope":"shared","autoprovision":true}},)"
        R"({"name":"bind-init","host":{"sourcePath":"/p/init"}},{"name":"db-anon"}])");
  CHECK(p->warnings.size() == 2);  // interval 3s and timeout 90s moved into bounds
  CHECK_FALSE(migrate.Get("essential").Bool());
  CHECK(migrate.Get("memoryReservation").Number() == 128);  // the default
  CHECK(web.Get("entryPoint").Print() == R"(["/bin/sh","-c","exec app"])");
  CHECK(web.Get("dependsOn").Print() ==
        R"([{"containerName":"db","condition":"HEALTHY"},{"containerName":"migrate","condition":"SUCCESS"}])");
  CHECK(web.Get("stopTimeout").Number() == 60);
  CHECK(web.Get("workingDirectory").String() == "/srv");
  CHECK(web.Get("user").String() == "1000");
  CHECK(web.Get("dockerLabels").Print() == R"({"a.b":"c"})");
  CHECK(web.Get("logConfiguration").Print() == R"({"logDriver":"local","options":{"max-size":"10m"}})");
  CHECK(p->task_definition.view().Get("family").String() == "proj");

  CHECK(ErrorOf(LoadOne("services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_healthy\n"
                        "  b:\n    image: y\n")) ==
        "compose.yaml:5: services.a.depends_on.b: service_healthy needs a healthcheck on b");
  CHECK(ErrorOf(LoadOne("services:\n  a:\n    image: x\n    depends_on: [c]\n")) ==
        "compose.yaml:4: services.a.depends_on.c: no service is named c");
  CHECK(ErrorOf(LoadOne("services:\n  a:\n    image: x\n    depends_on:\n      a2:\n        condition: later\n"
                        "  a2:\n    image: y\n")) ==
        "compose.yaml:5: services.a.depends_on.a2.condition: must be service_started, service_healthy or "
        "service_completed_successfully, not 'later'");
  CHECK(ErrorOf(LoadOne("services:\n  a:\n    image: x\n    volumes: [data:/d]\n")) ==
        "compose.yaml:4: services.a.volumes[0]: named volume data is not declared under the top-level volumes:");
  Result<compose::Project> disabled = LoadOne("services:\n  a:\n    image: x\n    healthcheck:\n      disable: true\n");
  REQUIRE(disabled.ok());
  CHECK(Container(*disabled, 0).Get("healthCheck").Get("command").Print() == R"(["NONE"])");
}

TEST_CASE("compose refusals name the key, the service and the line", "[compose]") {
  struct Case {
    const char* yaml;
    const char* error;
  };
  for (const Case& c : {
           Case{"services:\n  web:\n    build: .\n    image: x\n",
                "compose.yaml:3: services.web.build: berth runs images; build and push yours to <server>:7070 first"},
           Case{"services:\n  web:\n    image: x\n    secrets: [s]\n",
                "compose.yaml:4: services.web.secrets: file secrets are not uploaded; create them with 'berth secret "
                "create' and reference them from a task definition"},
           Case{"services:\n  web:\n    image: x\n    privileged: true\n",
                "compose.yaml:4: services.web.privileged: host-level container settings are not supported by berth's "
                "task definitions"},
           Case{"services:\n  web:\n    image: x\n    stop_signal: SIGINT\n",
                "compose.yaml:4: services.web.stop_signal: berth stops containers with SIGTERM, then SIGKILL after "
                "stop_grace_period"},
           Case{"services:\n  web:\n    image: x\n    deploy:\n      replicas: 2\n",
                "compose.yaml:5: services.web.deploy.replicas: all services run together in one task; scale the "
                "project with 'berth compose scale N'"},
           Case{"services:\n  web:\n    image: x\n    network_mode: \"service:db\"\n",
                "compose.yaml:4: services.web.network_mode: the services of a project share one network (bridge, "
                "host or none for all of them); another service's or container's network is not supported"},
           Case{"services:\n  web:\n    image: x\n  db:\n    image: y\n    network_mode: host\n",
                "compose.yaml:6: services.db.network_mode: the services of a project share one network: web has "
                "bridge, db has host (give every service the same network_mode)"},
           Case{"services:\n  web:\n    image: x\n    tty: true\n",
                "compose.yaml:4: services.web.tty: is not supported by berth (no task definition field takes it)"},
           Case{"services:\n  web:\n    image: x\nconfigs:\n  c:\n    file: ./c\n",
                "compose.yaml:4: configs: configs are not supported; bake the file into the image or bind-mount it"},
           Case{"services:\n  web:\n    image: x\n    volumes:\n      - type: tmpfs\n        target: /t\n",
                "compose.yaml:5: services.web.volumes[0].type: only bind and volume mounts are supported, not 'tmpfs'"},
           Case{"services:\n  web:\n    image: x\n    healthcheck:\n      interval: 5s\n",
                "compose.yaml:4: services.web.healthcheck: a healthcheck without test (the image's own HEALTHCHECK "
                "with new timings) is not supported; give the test"},
           Case{"services:\n  web:\n    image: \"bad image\"\n",
                "compose.yaml:2: services.web (containerDefinitions[0].image: must not contain spaces or control "
                "characters)"},
           Case{"services:\n  web:\n    build: .\n",
                "compose.yaml:3: services.web.build: berth runs images; build and push yours to <server>:7070 first"},
       }) {
    INFO(c.yaml);
    CHECK(ErrorOf(LoadOne(c.yaml)) == c.error);
  }
  // A top-level refusal comes after the services' own, which come first in a file.
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: x\n    build: .\nsecrets:\n  s:\n    file: ./s\n")) ==
        "compose.yaml:4: services.web.build: berth runs images; build and push yours to <server>:7070 first");
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: x\nsecrets:\n  s:\n    file: ./s\n")) ==
        "compose.yaml:4: secrets: file secrets are not uploaded; create them with 'berth secret create' and "
        "reference them from a task definition");
  // With --ignore-unsupported: warned and skipped.
  Result<compose::Project> p =
      LoadOne("services:\n  web:\n    build: .\n    image: x\n    stop_signal: SIGINT\n    container_name: w\n", true);
  REQUIRE(p.ok());
  REQUIRE(p->warnings.size() == 3);
  CHECK(p->warnings[0] ==
        "compose.yaml:3: services.web.build: berth runs images; build and push yours to <server>:7070 first (skipped: "
        "--ignore-unsupported)");
  CHECK(p->warnings[2].starts_with("compose.yaml:6: services.web.container_name: ignored"));
  // Without an image there is nothing to run, even then.
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    build: .\n", true)) ==
        "compose.yaml:2: services.web: needs an image (its build: was skipped)");
}

TEST_CASE("compose network_mode host or none for every service is the task's", "[compose]") {
  Result<compose::Project> p = LoadOne(
      "services:\n  plex:\n    image: x\n    network_mode: host\n  side:\n    image: y\n"
      "    network_mode: host\n");
  REQUIRE(p.ok());
  CHECK(p->task_definition.view().Get("networkMode").String() == "host");
  p = LoadOne("services:\n  batch:\n    image: x\n    network_mode: none\n");
  REQUIRE(p.ok());
  CHECK(p->task_definition.view().Get("networkMode").String() == "none");
  p = LoadOne("services:\n  web:\n    image: x\n    network_mode: bridge\n");
  REQUIRE(p.ok());
  CHECK(p->task_definition.view().Get("networkMode").String() == "bridge");
}

TEST_CASE("compose -f merging: scalars override, maps merge, lists by the spec's rules", "[compose]") {
  Result<compose::Project> p =
      LoadFiles({{"compose.yaml",
                  "services:\n  web:\n    image: a:1\n    command: [one, two]\n    environment: [A=1, B=2]\n"
                  "    ports: [\"80:80\"]\n    volumes: [./x:/data, ./y:/keep]\n    labels: {l1: a}\n"},
                 {"override.yaml",
                  "services:\n  web:\n    image: a:2\n    command: [three]\n    environment: {B: 3, C: 4}\n"
                  "    ports: [\"443:443\", \"80:80\"]\n    volumes: [./z:/data]\n    labels: [l2=b]\n"
                  "  extra:\n    image: b\n"}},
                {"compose.yaml", "override.yaml"});
  REQUIRE(p.ok());
  json::View web = Container(*p, 0);
  CHECK(web.Get("image").String() == "a:2");
  CHECK(web.Get("command").Print() == R"(["three"])");
  CHECK(web.Get("environment").Print() ==
        R"([{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}])");
  CHECK(web.Get("portMappings").Size() == 2);
  CHECK(web.Get("mountPoints").Print() == R"([{"sourceVolume":"bind-y","containerPath":"/keep","readOnly":false},)"
                                          R"({"sourceVolume":"bind-z","containerPath":"/data","readOnly":false}])");
  CHECK(web.Get("dockerLabels").Print() == R"({"l1":"a","l2":"b"})");
  CHECK(Container(*p, 1).Get("name").String() == "extra");
  // An error in the second file names that file.
  CHECK(ErrorOf(LoadFiles(
            {{"compose.yaml", "services:\n  web:\n    image: a\n"}, {"o.yaml", "services:\n  web:\n    build: .\n"}},
            {"compose.yaml", "o.yaml"})) ==
        "o.yaml:3: services.web.build: berth runs images; build and push yours to <server>:7070 first");
}

TEST_CASE("compose env_file and environment values Compose reads as strings", "[compose]") {
  Result<compose::Project> p =
      LoadFiles({{"compose.yaml",
                  "services:\n  web:\n    image: a\n    env_file: [app.env]\n    environment:\n      FLAG: yes\n"
                  "      PORT: 80:80\n      FROM_ENV:\n      OVER: e\n"},
                 {"app.env", "# comment\nexport FILE=1\nOVER=file\nQUOTED=\"a b\"\n"}},
                {}, false, {{"FROM_ENV", "x"}});
  REQUIRE(p.ok());
  CHECK(Container(*p, 0).Get("environment").Print() ==
        R"([{"name":"FILE","value":"1"},{"name":"OVER","value":"e"},{"name":"QUOTED","value":"a b"},)"
        R"({"name":"FLAG","value":"yes"},{"name":"PORT","value":"80:80"},{"name":"FROM_ENV","value":"x"}])");
  CHECK(ErrorOf(LoadOne("services:\n  web:\n    image: a\n    env_file: missing.env\n")) ==
        "compose.yaml:4: services.web.env_file: cannot read /p/missing.env");
}
