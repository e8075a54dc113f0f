// Load balancing's control plane: target groups, load balancers, listeners and
// rules through their commands; services' loadBalancers; targets derived from
// tasks; the per-node proxy documents and their versions; listener ports kept
// from placement.
#include "control/proxy_config.h"

#include <catch2/catch.hpp>

#include "control/control_plane.h"
#include "control/drains.h"
#include "model/lb.h"
#include "proxy/config.h"

namespace berth {
namespace {

using testing::ControlPlane;

std::unique_ptr<model::CreateTargetGroup> TargetGroupCmd(const std::string& name, const std::string& protocol = "HTTP",
                                                         const std::string& cluster = "default",
                                                         int64_t deregistration_delay_s = -1,
                                                         bool health_check = false) {
  json::Doc body = json::Doc::Object();
  body.Set("name", name).Set("protocol", protocol).Set("port", 8080);
  // Most cases here are about other things: their groups pass without a check.
  if (!health_check) body.Set("healthCheckEnabled", false);
  if (deregistration_delay_s >= 0) {
    body.Set("attributes", json::Doc::Object().Set("deregistration_delay.timeout_seconds", deregistration_delay_s));
  }
  Result<model::TargetGroup> tg = model::ParseTargetGroupBody(body.view(), cluster);
  REQUIRE(tg.ok());
  auto cmd = std::make_unique<model::CreateTargetGroup>();
  cmd->doc = model::TargetGroupDoc(*tg);
  return cmd;
}

std::unique_ptr<model::CreateLoadBalancer> LoadBalancerCmd(const std::string& name, const std::string& nodes = "") {
  model::LoadBalancer lb;
  lb.cluster = "default";
  lb.name = name;
  lb.nodes = nodes;
  auto cmd = std::make_unique<model::CreateLoadBalancer>();
  cmd->doc = model::LoadBalancerDoc(lb);
  return cmd;
}

std::unique_ptr<model::CreateListener> ListenerCmd(const std::string& lb, int64_t port, const std::string& tg,
                                                   const std::string& protocol = "HTTP") {
  auto cmd = std::make_unique<model::CreateListener>();
  cmd->cluster = "default";
  cmd->load_balancer = lb;
  cmd->doc = json::Doc::Object().Set("port", port).Set("protocol", protocol).Set("defaultTargetGroup", tg).Print();
  return cmd;
}

std::unique_ptr<model::CreateRule> RuleCmd(const std::string& lb, int64_t port, int64_t priority,
                                           const std::string& tg) {
  auto cmd = std::make_unique<model::CreateRule>();
  cmd->cluster = "default";
  cmd->load_balancer = lb;
  cmd->port = port;
  json::Doc hosts = json::Doc::Array();
  hosts.Push("api.example.com");
  cmd->doc = json::Doc::Object()
                 .Set("priority", priority)
                 .Set("hosts", hosts)
                 .Set("paths", json::Doc::Array())
                 .Set("targetGroup", tg)
                 .Print();
  return cmd;
}

// A task definition `family` whose container "app" maps container port 8080
// (to host port `host_port`, 0: dynamic).
void RegisterWebDefinition(ControlPlane& cp, const std::string& family, int64_t host_port = 0) {
  json::Doc pm = json::Doc::Object();
  pm.Set("containerPort", 8080).Set("hostPort", host_port);
  json::Doc pms = json::Doc::Array();
  pms.Push(pm);
  json::Doc c = json::Doc::Object();
  c.Set("name", "app").Set("image", "nginx:latest").Set("cpu", 256).Set("memory", 128).Set("portMappings", pms);
  cp.RegisterContainer(family, c);
}

Result<std::string> CreateLbService(ControlPlane& cp, const std::string& name, int64_t desired,
                                    std::vector<model::ServiceLoadBalancer> lbs, const std::string& family = "web",
                                    int64_t grace_s = 0) {
  model::Service svc;
  svc.health_check_grace_s = grace_s;
  svc.name = name;
  svc.cluster = "default";
  svc.arn = model::ServiceArn(svc.cluster, svc.name);
  svc.desired = desired;
  svc.load_balancers = std::move(lbs);
  model::Deployment d;
  d.id = "ecs-svc/" + name;
  d.family = family;
  d.revision = 1;
  svc.deployments.push_back(d);
  auto cmd = std::make_unique<model::CreateService>();
  cmd->doc = model::ServiceDoc(svc);
  return cp.Apply(std::move(cmd));
}

void RegisterAt(ControlPlane& cp, const std::string& id, std::map<std::string, std::string> attrs,
                const std::string& address) {
  auto cmd = std::make_unique<model::RegisterNode>();
  cmd->id = id;
  cmd->cluster = "default";
  cmd->hostname = id;
  cmd->cpu = 4096;
  cmd->memory = 8192;
  cmd->attributes = std::move(attrs);
  cmd->address = address;
  REQUIRE(cp.Apply(std::move(cmd)).ok());
  cp.state.SetNodeConnected(id, true, cp.clock.NowUnixMs());
}

// Reports every task of `node` at `last`, its container "app" bound to host
// port 30000 + the task's index on the node when RUNNING.
void ReportAll(ControlPlane& cp, const std::string& node, const std::string& last) {
  auto cmd = std::make_unique<model::ReportTasks>();
  cmd->node = node;
  int i = 0;
  for (const auto& [id, t] : cp.state.FindNode(node)->tasks) {
    json::Doc c = json::Doc::Object();
    c.Set("name", "app").Set("lastStatus", last);
    if (last == "RUNNING") {
      json::Doc b = json::Doc::Array();
      b.Push(json::Doc::Object().Set("containerPort", 8080).Set("hostPort", 30000 + i++).Set("protocol", "tcp"));
      c.Set("networkBindings", b);
    }
    json::Doc list = json::Doc::Array();
    list.Push(c);
    cmd->reports.push_back({id, last, "", list.Print()});
  }
  REQUIRE(cp.Apply(std::move(cmd)).ok());
}

// A group from the text of its API body, in cluster "default".
Result<model::TargetGroup> ParseGroupText(const std::string& text) {
  Result<json::Doc> body = json::Doc::Parse(text);
  REQUIRE(body.ok());
  return model::ParseTargetGroupBody(body->view(), "default");
}

// Every node's tasks RUNNING, as ReportAll reports them.
void ReportAllRunning(ControlPlane& cp) {
  for (const auto& [id, n] : cp.state.nodes()) {
    if (!n.tasks.empty()) ReportAll(cp, id, "RUNNING");
  }
}

// `proxies` wired to the control plane; nodes "edge-1" (role edge, 10.0.0.1)
// and "worker-1" (role worker, 10.0.0.2).
void EdgeAndWorker(ControlPlane& cp, control::ProxyConfigs& proxies) {
  cp.scheduler->SetProxyConfigs(&proxies);
  cp.hub->SetProxyConfigs(&proxies);
  RegisterAt(cp, "edge-1", {{"role", "edge"}}, "10.0.0.1");
  RegisterAt(cp, "worker-1", {{"role", "worker"}}, "10.0.0.2");
}

TEST_CASE("load balancing: names, ARNs and bodies are checked with their field", "[lb]") {
  CHECK(model::ValidateLbName("web-1", "name").ok());
  CHECK_FALSE(model::ValidateLbName("-web", "name").ok());
  CHECK_FALSE(model::ValidateLbName("web_1", "name").ok());
  CHECK_FALSE(model::ValidateLbName(std::string(33, 'a'), "name").ok());
  std::string arn = model::TargetGroupArn("default", "web");
  CHECK(arn.starts_with("arn:aws:elasticloadbalancing:local:000000000000:targetgroup/web/"));
  CHECK(model::TargetGroupNameFromArn(arn) == "web");
  CHECK(model::TargetGroupNameFromArn("web") == "");

  auto parse = [](const char* text) {
    Result<json::Doc> d = json::Doc::Parse(text);
    REQUIRE(d.ok());
    return model::ParseTargetGroupBody(d->view(), "default");
  };
  Result<model::TargetGroup> ok = parse(
      R"({"name":"web","protocol":"TCP","port":5432,"attributes":{"deregistration_delay.timeout_seconds":"30"}})");
  REQUIRE(ok.ok());
  CHECK(ok->algorithm == "least_connections");
  CHECK(ok->deregistration_delay_s == 30);
  Result<model::TargetGroup> bad = parse(R"({"name":"web","protocol":"QUIC","port":53})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("protocol:"));
  bad = parse(
      R"({"name":"web","protocol":"HTTP","port":80,"attributes":{"stickiness.app_cookie.duration_seconds":"60"}})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("attributes.stickiness.app_cookie.duration_seconds: unknown attribute"));
  bad = parse(R"({"name":"web","protocol":"HTTP","port":80,"attributes":{"slow_start.duration_seconds":10}})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("attributes.slow_start.duration_seconds:"));
  bad = parse(R"({"name":"web","protocol":"TCP","port":80,"algorithm":"least_outstanding_requests"})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("algorithm:"));

  // Numbers far out of range are refused before any conversion.
  for (const char* text :
       {R"({"name":"web","protocol":"HTTP","port":1e30})", R"({"name":"web","protocol":"HTTP","port":80.5})",
        R"({"name":"web","protocol":"HTTP","port":80,"attributes":{"deregistration_delay.timeout_seconds":1e300}})",
        R"({"name":"web","protocol":"HTTP","port":80,"attributes":{"deregistration_delay.timeout_seconds":-1e300}})"}) {
    bad = parse(text);
    CHECK_FALSE(bad.ok());
  }

  Result<json::Doc> rule = json::Doc::Parse(R"({"priority":10,"paths":["v1/*"],"targetGroup":"api"})");
  Result<model::ListenerRule> r = model::ParseRuleBody(rule->view());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.starts_with("paths[0]:"));
  for (const char* text : {R"({"priority":1e30,"paths":["/"],"targetGroup":"api"})",
                           R"({"priority":1.5,"paths":["/"],"targetGroup":"api"})"}) {
    rule = json::Doc::Parse(text);
    r = model::ParseRuleBody(rule->view());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.starts_with("priority:"));
  }
}

TEST_CASE("load balancing: a load balancer takes at most 50 listeners, a listener 100 rules", "[lb]") {
  ControlPlane cp;
  REQUIRE(cp.Apply(TargetGroupCmd("web")).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge")).ok());
  for (int i = 0; i < 50; i++) REQUIRE(cp.Apply(ListenerCmd("edge", 8000 + i, "web")).ok());
  Result<std::string> over = cp.Apply(ListenerCmd("edge", 9000, "web"));
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().message.find("50 listeners") != std::string::npos);
  for (int i = 1; i <= 100; i++) REQUIRE(cp.Apply(RuleCmd("edge", 8000, i, "web")).ok());
  over = cp.Apply(RuleCmd("edge", 8000, 101, "web"));
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().message.find("100 rules") != std::string::npos);
}

TEST_CASE("load balancing: commands keep references whole, and survive the log", "[lb]") {
  ControlPlane cp;
  REQUIRE(cp.Apply(TargetGroupCmd("web")).ok());
  REQUIRE(cp.Apply(TargetGroupCmd("db", "TCP")).ok());
  Result<std::string> dup = cp.Apply(TargetGroupCmd("web"));
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().code == "DuplicateTargetGroupName");
  REQUIRE(cp.Apply(LoadBalancerCmd("edge")).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("other")).ok());

  Result<std::string> unknown = cp.Apply(ListenerCmd("edge", 80, "nope"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == "TargetGroupNotFound");
  Result<std::string> mismatch = cp.Apply(ListenerCmd("edge", 80, "db"));
  REQUIRE_FALSE(mismatch.ok());
  CHECK(mismatch.error().message.find("is TCP") != std::string::npos);
  REQUIRE(cp.Apply(ListenerCmd("edge", 80, "web")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 5432, "db", "TCP")).ok());
  Result<std::string> port_taken = cp.Apply(ListenerCmd("other", 80, "web"));
  REQUIRE_FALSE(port_taken.ok());
  CHECK(port_taken.error().code == "DuplicateListener");

  REQUIRE(cp.Apply(TargetGroupCmd("api")).ok());
  REQUIRE(cp.Apply(RuleCmd("edge", 80, 10, "api")).ok());
  Result<std::string> same_priority = cp.Apply(RuleCmd("edge", 80, 10, "web"));
  REQUIRE_FALSE(same_priority.ok());
  CHECK(same_priority.error().code == "PriorityInUse");
  Result<std::string> tcp_rule = cp.Apply(RuleCmd("edge", 5432, 1, "db"));
  REQUIRE_FALSE(tcp_rule.ok());

  auto del = std::make_unique<model::DeleteTargetGroup>();
  del->cluster = "default";
  del->name = "api";
  Result<std::string> in_use = cp.Apply(std::move(del));
  REQUIRE_FALSE(in_use.ok());
  CHECK(in_use.error().code == "ResourceInUse");
  CHECK(in_use.error().message.find("rule edge:80/10") != std::string::npos);

  // A service naming a group: its container and port must be in the task definition.
  RegisterWebDefinition(cp, "web");
  Result<std::string> bad_container = CreateLbService(cp, "web", 1, {{"web", "nope", 8080}});
  REQUIRE_FALSE(bad_container.ok());
  CHECK(bad_container.error().message.starts_with("loadBalancers[0].containerName:"));
  Result<std::string> bad_port = CreateLbService(cp, "web", 1, {{"web", "app", 9090}});
  REQUIRE_FALSE(bad_port.ok());
  CHECK(bad_port.error().message.starts_with("loadBalancers[0].containerPort:"));
  REQUIRE(CreateLbService(cp, "web", 0, {{"web", "app", 8080}}).ok());
  CHECK(cp.state.TargetGroupUsers("default", "web") == std::vector<std::string>{"listener edge:80", "service web"});

  // Every command's log form decodes to the same command.
  std::vector<store::CommandPtr> cmds;
  cmds.push_back(TargetGroupCmd("x"));
  cmds.push_back(LoadBalancerCmd("y"));
  cmds.push_back(ListenerCmd("edge", 81, "web"));
  cmds.push_back(RuleCmd("edge", 80, 20, "web"));
  auto del_rule = std::make_unique<model::DeleteRule>();
  del_rule->cluster = "default";
  del_rule->load_balancer = "edge";
  del_rule->port = 80;
  del_rule->priority = 20;
  cmds.push_back(std::move(del_rule));
  for (const store::CommandPtr& c : cmds) {
    Result<store::CommandPtr> back = model::DecodeCommand(c->Type(), c->Encode(), 5);
    REQUIRE(back.ok());
    CHECK((*back)->Encode() == c->Encode());
  }

  // After a reload from disk, the same state.
  std::string before = cp.state.FindLoadBalancer("default", "edge")
                           ? model::LoadBalancerDoc(*cp.state.FindLoadBalancer("default", "edge"))
                           : "";
  REQUIRE(cp.state.Load(cp.store->db()).ok());
  REQUIRE(cp.state.FindLoadBalancer("default", "edge"));
  CHECK(model::LoadBalancerDoc(*cp.state.FindLoadBalancer("default", "edge")) == before);
  CHECK(cp.state.FindTargetGroup("default", "db")->protocol == "TCP");
  REQUIRE(cp.state.FindService("default", "web"));
  CHECK(cp.state.FindService("default", "web")->load_balancers.size() == 1);

  auto del_lb = std::make_unique<model::DeleteLoadBalancer>();
  del_lb->cluster = "default";
  del_lb->name = "edge";
  REQUIRE(cp.Apply(std::move(del_lb)).ok());
  CHECK(cp.state.TargetGroupUsers("default", "web") == std::vector<std::string>{"service web"});
}

TEST_CASE("load balancing: member nodes get a document with the groups' targets, versioned", "[lb]") {
  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  EdgeAndWorker(cp, proxies);
  REQUIRE(cp.Apply(TargetGroupCmd("web")).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge", "attribute:role == edge")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 80, "web")).ok());
  RegisterWebDefinition(cp, "web");
  cp.hub->Flush();
  CHECK(proxies.Document("worker-1").empty());
  std::string empty_doc = proxies.Document("edge-1");
  CHECK(empty_doc.find("\"listeners\":[{\"port\":80,\"protocol\":\"HTTP\"") != std::string::npos);
  CHECK(empty_doc.find("\"targets\":[]") != std::string::npos);
  int64_t v1 = proxies.Version("edge-1");
  CHECK(v1 > 0);

  // A service with 2 tasks (dynamic host ports: any node may take them).
  REQUIRE(CreateLbService(cp, "web", 2, {{"web", "app", 8080}}).ok());
  cp.Step();
  std::vector<control::Target> targets = proxies.Targets(*cp.state.FindTargetGroup("default", "web"));
  REQUIRE(targets.size() == 2);
  for (const control::Target& t : targets) {
    CHECK(t.state == "initial");
    CHECK(t.reason == "Elb.RegistrationInProgress");
  }
  ReportAllRunning(cp);
  cp.hub->Flush();
  targets = proxies.Targets(*cp.state.FindTargetGroup("default", "web"));
  REQUIRE(targets.size() == 2);
  for (const control::Target& t : targets) {
    CHECK(t.state == "healthy");
    CHECK(t.port >= 30000);
    CHECK(t.address == cp.state.FindNode(t.node)->address);
  }
  std::string doc = proxies.Document("edge-1");
  int64_t v2 = proxies.Version("edge-1");
  CHECK(v2 > v1);
  CHECK(doc.find("\"state\":\"healthy\"") != std::string::npos);
  CHECK(doc.find(targets[0].task_id) != std::string::npos);
  Result<json::Doc> parsed = json::Doc::Parse(doc);
  REQUIRE(parsed.ok());
  CHECK(parsed->view().Get("version").Number() == static_cast<double>(v2));
  CHECK(parsed->view().Get("targetGroups").Size() == 1);

  // Nothing changed: the same version.
  cp.hub->Flush();
  CHECK(proxies.Version("edge-1") == v2);

  // Stopping a task makes it draining.
  auto stop = std::make_unique<model::StopTasks>();
  stop->ids.push_back(targets[0].task_id);
  stop->reason = "test";
  REQUIRE(cp.Apply(std::move(stop)).ok());
  cp.hub->Flush();
  CHECK(proxies.Version("edge-1") > v2);
  bool draining = false;
  for (const control::Target& t : proxies.Targets(*cp.state.FindTargetGroup("default", "web"))) {
    if (t.task_id == targets[0].task_id)
      draining = t.state == "draining" && t.reason == "Target.DeregistrationInProgress";
  }
  CHECK(draining);

  // The worker becomes an edge: it gets a document; then it leaves: an empty one.
  uint64_t desired_before = cp.state.FindNode("worker-1")->desired_version;
  auto put = std::make_unique<model::PutNodeAttributes>();
  put->node = "worker-1";
  put->attributes["role"] = "edge";
  REQUIRE(cp.Apply(std::move(put)).ok());
  cp.hub->Flush();
  CHECK(proxies.Document("worker-1").find("\"port\":80") != std::string::npos);
  CHECK(cp.state.FindNode("worker-1")->desired_version > desired_before);
  auto back = std::make_unique<model::PutNodeAttributes>();
  back->node = "worker-1";
  back->attributes["role"] = "worker";
  REQUIRE(cp.Apply(std::move(back)).ok());
  cp.hub->Flush();
  CHECK(proxies.Document("worker-1").find("\"listeners\":[]") != std::string::npos);
}

TEST_CASE("load balancing: listener ports are never given to tasks on member nodes", "[lb]") {
  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  cp.scheduler->SetProxyConfigs(&proxies);
  cp.hub->SetProxyConfigs(&proxies);
  RegisterAt(cp, "edge-1", {{"role", "edge"}}, "10.0.0.1");
  RegisterAt(cp, "edge-2", {{"role", "edge"}}, "10.0.0.2");
  RegisterAt(cp, "worker-1", {{"role", "worker"}}, "10.0.0.3");
  REQUIRE(cp.Apply(TargetGroupCmd("web")).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge", "attribute:role == edge")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 8080, "web")).ok());
  CHECK(proxies.ListenerPorts(*cp.state.FindNode("edge-1")) == std::vector<std::pair<int, bool>>{{8080, false}});
  CHECK(proxies.ListenerPorts(*cp.state.FindNode("worker-1")).empty());
  // Tasks that take host port 8080 fit only on the worker.
  RegisterWebDefinition(cp, "fixed", 8080);
  REQUIRE(CreateLbService(cp, "fixed", 3, {}, "fixed").ok());
  cp.RunUntil([&] { return cp.Count("fixed").live >= 1; }, 20);
  for (int i = 0; i < 10; i++) cp.Step();
  testing::Census c = cp.Count("fixed");
  CHECK(c.live == 1);
  CHECK(c.by_node["worker-1"] == 1);
  CHECK(c.by_node.count("edge-1") == 0);
  CHECK(c.by_node.count("edge-2") == 0);

  // Without the listener, the edges take such tasks again (a new service's:
  // the first one, scaled to what it has, waits for nothing).
  REQUIRE(cp.Scale("fixed", 1).ok());
  auto del = std::make_unique<model::DeleteListener>();
  del->cluster = "default";
  del->load_balancer = "edge";
  del->port = 8080;
  REQUIRE(cp.Apply(std::move(del)).ok());
  REQUIRE(CreateLbService(cp, "fixed2", 2, {}, "fixed").ok());
  CHECK(cp.RunUntil([&] { return cp.Count("fixed2").live == 2; }, 40));
  testing::Census c2 = cp.Count("fixed2");
  CHECK(c2.by_node["edge-1"] == 1);
  CHECK(c2.by_node["edge-2"] == 1);
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

using testing::ControlPlane;

// Two edges that are members of the load balancer "edge" (all nodes), a
// listener on 80 to group "web" (deregistration delay `delay_s`), and a service
// of two RUNNING tasks in it; drains with a grace of 10 s.
struct DrainWorld {
  ControlPlane cp;
  control::ProxyConfigs proxies{&cp.state, &cp.clock};
  control::Drains drains{&cp.state, &proxies, &cp.clock, control::DrainOptions{10000}};
  std::vector<std::string> tasks;

  explicit DrainWorld(int64_t delay_s = 30) {
    cp.scheduler->SetProxyConfigs(&proxies);
    cp.hub->SetProxyConfigs(&proxies);
    cp.hub->SetDrains(&drains);
    RegisterAt(cp, "edge-1", {}, "10.0.0.1");
    RegisterAt(cp, "edge-2", {}, "10.0.0.2");
    REQUIRE(cp.Apply(TargetGroupCmd("web", "HTTP", "default", delay_s)).ok());
    REQUIRE(cp.Apply(LoadBalancerCmd("edge")).ok());
    REQUIRE(cp.Apply(ListenerCmd("edge", 80, "web")).ok());
    RegisterWebDefinition(cp, "web");
    REQUIRE(CreateLbService(cp, "web", 2, {{"web", "app", 8080}}).ok());
    cp.Step();
    ReportAllRunning(cp);
    cp.hub->Flush();
    for (const auto& [id, t] : cp.state.tasks()) tasks.push_back(id);
    REQUIRE(tasks.size() == 2);
  }

  void Stop(const std::string& id) {
    auto stop = std::make_unique<model::StopTasks>();
    stop->ids.push_back(id);
    stop->reason = "test";
    REQUIRE(cp.Apply(std::move(stop)).ok());
    cp.hub->Flush();  // the documents list it draining; the drain takes their versions
  }
  // Node `node`'s proxy reports its current document applied, with `drained`.
  void Ack(const std::string& node, std::vector<std::string> drained, int64_t behind = 0) {
    drains.Reported(node, proxies.Version(node) - behind, std::move(drained));
    drains.Settle();
  }
  control::DrainView View(const std::string& id) {
    control::DrainView v;
    REQUIRE(drains.Describe(id, &v));
    return v;
  }
};

TEST_CASE("draining: a target's task is released only once every proxy applied its removal and drained it", "[lb]") {
  DrainWorld w;
  std::string a = w.tasks[0];
  const std::string node = w.cp.state.FindTask(a)->node;
  CHECK_FALSE(w.drains.Held(a));
  w.Stop(a);
  REQUIRE(w.drains.Held(a));
  CHECK(w.View(a).unacknowledged == std::vector<std::string>{"edge-1", "edge-2"});
  CHECK(w.View(a).delay_ms == 30000);

  // A version before the one that lists it draining is no acknowledgement.
  w.Ack("edge-1", {a}, 1);
  CHECK(w.drains.Held(a));
  w.Ack("edge-1", {a});
  CHECK(w.drains.Held(a));
  CHECK(w.View(a).unacknowledged == std::vector<std::string>{"edge-2"});
  // Applied, with requests still in flight to it.
  w.Ack("edge-2", {});
  CHECK(w.drains.Held(a));
  CHECK(w.View(a).unacknowledged.empty());
  CHECK(w.View(a).in_flight == std::vector<std::string>{"edge-2"});
  w.cp.clock.Advance(29000);
  w.drains.Settle();
  CHECK(w.drains.Held(a));

  uint64_t desired = w.cp.state.FindNode(node)->desired_version;
  w.Ack("edge-2", {a});
  CHECK_FALSE(w.drains.Held(a));
  CHECK(w.cp.state.FindNode(node)->desired_version > desired);  // its agent hears the stop
  // Released once: never held again, whatever comes.
  w.cp.hub->Flush();
  CHECK_FALSE(w.drains.Held(a));
  CHECK(w.drains.held() == 0);
}

TEST_CASE("draining: the delay ends the wait for requests in flight, never the wait for acknowledgements", "[lb]") {
  DrainWorld w(30);
  std::string a = w.tasks[0], b = w.tasks[1];
  w.Stop(a);
  w.Ack("edge-1", {a});
  w.Ack("edge-2", {});  // something in flight, forever
  w.cp.clock.Advance(29999);
  w.drains.Settle();
  CHECK(w.drains.Held(a));
  w.cp.clock.Advance(1);
  w.drains.Settle();
  CHECK_FALSE(w.drains.Held(a));

  // edge-2 (connected) never applies the document that drains b: past the delay
  // the task is still held; only delay + grace releases it.
  w.Stop(b);
  w.Ack("edge-1", {a, b});
  w.cp.clock.Advance(30000);
  w.drains.Settle();
  CHECK(w.drains.Held(b));
  CHECK(w.View(b).unacknowledged == std::vector<std::string>{"edge-2"});
  w.cp.clock.Advance(9999);
  w.drains.Settle();
  CHECK(w.drains.Held(b));
  w.cp.clock.Advance(1);
  w.drains.Settle();
  CHECK_FALSE(w.drains.Held(b));
}

TEST_CASE("draining: a proxy whose agent is away past the grace is not waited for", "[lb]") {
  DrainWorld w(300);
  std::string a = w.tasks[0];
  w.cp.state.SetNodeConnected("edge-2", false, w.cp.clock.NowUnixMs());
  w.Stop(a);
  w.Ack("edge-1", {a});
  CHECK(w.drains.Held(a));
  w.cp.clock.Advance(9999);
  w.drains.Settle();
  CHECK(w.drains.Held(a));
  w.cp.clock.Advance(1);
  w.drains.Settle();
  CHECK_FALSE(w.drains.Held(a));
}

TEST_CASE("draining: versions are taken only from documents rebuilt after the stop, in this leadership", "[lb]") {
  DrainWorld w;
  std::string a = w.tasks[0], b = w.tasks[1];
  // Stopped, and acknowledged at the version before (the documents are not
  // rebuilt yet): a report and a tick release nothing.
  auto stop = std::make_unique<model::StopTasks>();
  stop->ids.push_back(a);
  stop->reason = "test";
  REQUIRE(w.cp.Apply(std::move(stop)).ok());
  w.Ack("edge-1", {a});
  w.Ack("edge-2", {a});
  CHECK(w.drains.Held(a));
  w.cp.hub->Flush();  // rebuilt: the versions that drain it are newer than those acknowledged
  CHECK(w.drains.Held(a));
  w.Ack("edge-1", {a});
  w.Ack("edge-2", {a});
  CHECK_FALSE(w.drains.Held(a));

  // A new leadership: nothing is released before its own documents are built,
  // whatever is reported.
  w.Stop(b);
  w.drains.Lead(true);
  w.Ack("edge-1", {a, b});
  w.Ack("edge-2", {a, b});
  w.cp.clock.Advance(40000);  // past the delay
  w.drains.Settle();
  CHECK(w.drains.Held(b));
  w.cp.hub->Flush();
  CHECK_FALSE(w.drains.Held(b));
}

TEST_CASE("draining: tasks that never ran, and tasks of services without load balancers, are not held", "[lb]") {
  DrainWorld w;
  std::string a = w.tasks[0];
  // Another service's task, placed and not yet RUNNING.
  REQUIRE(CreateLbService(w.cp, "other", 1, {{"web", "app", 8080}}).ok());
  w.cp.store->Flush();  // the controller places it
  w.cp.store->Flush();
  std::string pending;
  for (const auto& [id, t] : w.cp.state.tasks()) {
    if (t.service == "other") pending = id;
  }
  REQUIRE(!pending.empty());
  REQUIRE(w.cp.state.FindTask(pending)->last != "RUNNING");
  w.Stop(pending);
  CHECK_FALSE(w.drains.Held(pending));

  // The group is used by no listener: nothing serves it, released at once.
  auto rm = std::make_unique<model::DeleteListener>();
  rm->cluster = "default";
  rm->load_balancer = "edge";
  rm->port = 80;
  REQUIRE(w.cp.Apply(std::move(rm)).ok());
  w.Stop(a);
  CHECK_FALSE(w.drains.Held(a));
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

using testing::ControlPlane;

Result<model::Listener> ParseListener(const char* text) {
  Result<json::Doc> d = json::Doc::Parse(text);
  REQUIRE(d.ok());
  return model::ParseListenerBody(d->view());
}

TEST_CASE("load balancing: HTTPS and TLS listeners name certificate secrets; HTTP ones may redirect", "[lb]") {
  Result<model::Listener> l =
      ParseListener(R"({"port":443,"protocol":"HTTPS","defaultTargetGroup":"web","certificates":["site","old"]})");
  REQUIRE(l.ok());
  CHECK(l->certificates == std::vector<std::string>{"site", "old"});
  struct Bad {
    const char* body;
    const char* starts;
  };
  for (Bad b :
       {Bad{R"({"port":443,"protocol":"HTTPS","defaultTargetGroup":"web"})", "certificates:"},
        Bad{R"({"port":443,"protocol":"TLS","defaultTargetGroup":"db","certificates":[]})", "certificates:"},
        Bad{R"({"port":80,"protocol":"HTTP","defaultTargetGroup":"web","certificates":["site"]})", "certificates:"},
        Bad{R"({"port":443,"protocol":"HTTPS","defaultTargetGroup":"web","certificates":["a","a"]})",
            "certificates[1]:"},
        Bad{R"({"port":80,"protocol":"TCP","redirectToHttps":{"port":443}})", "redirectToHttps:"},
        Bad{R"({"port":80,"protocol":"HTTP","redirectToHttps":{"port":443,"statusCode":303}})",
            "redirectToHttps.statusCode:"},
        Bad{R"({"port":80,"protocol":"QUIC","defaultTargetGroup":"web"})", "protocol:"},
        Bad{R"({"port":53,"protocol":"UDP","defaultTargetGroup":"dns","certificates":["site"]})", "certificates:"},
        Bad{R"({"port":53,"protocol":"UDP","defaultTargetGroup":"dns","proxyProtocolFrom":["10.0.0.0/8"]})",
            "proxyProtocolFrom: not for UDP listeners"}}) {
    Result<model::Listener> r = ParseListener(b.body);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.starts_with(b.starts));
  }
  l = ParseListener(R"({"port":80,"protocol":"HTTP","redirectToHttps":{"port":8443,"statusCode":302}})");
  REQUIRE(l.ok());
  CHECK(l->redirect_port == 8443);
  CHECK(l->redirect_status == 302);
  CHECK(l->default_target_group.empty());

  const char* cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  const char* chain = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
  const char* key = "-----BEGIN EC PRIVATE KEY-----\nCCCC\n-----END EC PRIVATE KEY-----\n";
  Result<model::CertificatePem> pem = model::SplitCertificateBundle(std::string(key) + cert + chain);
  REQUIRE(pem.ok());
  CHECK(pem->cert_pem == std::string(cert) + chain);
  CHECK(pem->key_pem == key);
  CHECK(model::SplitCertificateBundle(cert).error().message.find("PRIVATE KEY") != std::string::npos);
  CHECK(model::SplitCertificateBundle(key).error().message.find("CERTIFICATE") != std::string::npos);
  CHECK_FALSE(model::SplitCertificateBundle(std::string(cert) + key + key).ok());
}

TEST_CASE("load balancing: a listener's certificate secret must exist for its cluster, and stays while used", "[lb]") {
  ControlPlane cp;
  REQUIRE(cp.Apply(TargetGroupCmd("web")).ok());
  REQUIRE(cp.Apply(TargetGroupCmd("db", "TCP")).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge")).ok());
  auto https = [](const std::string& tg, const std::string& protocol = "HTTPS") {
    auto cmd = ListenerCmd("edge", 443, tg, protocol);
    json::Doc names = json::Doc::Array();
    names.Push("site");
    Result<json::Doc> d = json::Doc::Parse(cmd->doc);
    REQUIRE(d.ok());
    cmd->doc = json::Doc::Copy(d->view()).Set("certificates", names).Print();
    return cmd;
  };
  Result<std::string> r = cp.Apply(https("web"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "certificates[0]: secret site does not exist");
  auto put = [&](std::vector<std::string> clusters) {
    auto cmd = std::make_unique<model::PutSecret>();
    cmd->name = "site";
    cmd->sealed = "sealed bytes";
    cmd->key_id = "k";
    cmd->clusters = std::move(clusters);
    return cp.Apply(std::move(cmd));
  };
  REQUIRE(put({"other"}).ok());
  r = cp.Apply(https("web"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("kept for other clusters") != std::string::npos);
  auto del = std::make_unique<model::DeleteSecret>();
  del->name = "site";
  REQUIRE(cp.Apply(std::move(del)).ok());
  REQUIRE(put({}).ok());
  r = cp.Apply(https("db"));  // an HTTPS listener sends to HTTP groups
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("sends to HTTP groups") != std::string::npos);
  REQUIRE(cp.Apply(https("web")).ok());
  del = std::make_unique<model::DeleteSecret>();
  del->name = "site";
  r = cp.Apply(std::move(del));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "secret site is the certificate of listener edge:443 in cluster default");
  // Rules go on HTTPS listeners too.
  CHECK(cp.Apply(RuleCmd("edge", 443, 10, "web")).ok());

  // A redirecting listener needs no group, survives the log, and takes no rules.
  auto redirect = std::make_unique<model::CreateListener>();
  redirect->cluster = "default";
  redirect->load_balancer = "edge";
  redirect->doc = R"({"port":8080,"protocol":"HTTP","redirectToHttps":{"port":443,"statusCode":302}})";
  REQUIRE(cp.Apply(std::move(redirect)).ok());
  const model::Listener* l = cp.state.FindLoadBalancer("default", "edge")->FindListener(8080);
  REQUIRE(l);
  CHECK(l->redirect_port == 443);
  CHECK(l->redirect_status == 302);
  CHECK(l->default_target_group.empty());
  r = cp.Apply(RuleCmd("edge", 8080, 10, "web"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("no rules") != std::string::npos);
  REQUIRE(cp.state.Load(cp.store->db()).ok());
  l = cp.state.FindLoadBalancer("default", "edge")->FindListener(8080);
  REQUIRE(l);
  CHECK(l->redirect_port == 443);
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

// What a node's agent reports of one target's health check.
std::unique_ptr<model::ReportTasks> HealthReport(const std::string& node, const std::string& task,
                                                 const std::string& tg, const std::string& state,
                                                 const std::string& reason = "", const std::string& description = "") {
  auto cmd = std::make_unique<model::ReportTasks>();
  cmd->node = node;
  cmd->health.push_back({task, tg, state, reason, description});
  return cmd;
}

const control::Target* TargetIn(const std::vector<control::Target>& targets, const std::string& task) {
  for (const control::Target& t : targets) {
    if (t.task_id == task) return &t;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("health checks: a group's settings are checked and kept, with ELB's names", "[lb][checks]") {
  auto parse = ParseGroupText;
  Result<model::TargetGroup> plain = parse(R"({"name":"web","protocol":"HTTP","port":80})");
  REQUIRE(plain.ok());
  CHECK(plain->check.enabled);
  CHECK(plain->check.protocol == "HTTP");
  CHECK(plain->check.path == "/");
  CHECK(plain->check.matcher == "200-399");
  CHECK(plain->check.interval_s == 10);
  CHECK(plain->check.timeout_s == 5);
  Result<model::TargetGroup> tcp = parse(R"({"name":"db","protocol":"TCP","port":5432})");
  REQUIRE(tcp.ok());
  CHECK(tcp->check.protocol == "TCP");

  Result<model::TargetGroup> full = parse(
      R"({"name":"api","protocol":"HTTP","port":80,"healthCheckPath":"/health?deep=1","matcher":{"httpCode":"200,204"},)"
      R"("healthCheckIntervalSeconds":6,"healthCheckTimeoutSeconds":2,"healthyThresholdCount":4,)"
      R"("unhealthyThresholdCount":3})");
  REQUIRE(full.ok());
  // The stored form and the API's keep every field.
  Result<model::TargetGroup> back = model::ParseTargetGroupDoc(model::TargetGroupDoc(*full));
  REQUIRE(back.ok());
  CHECK(back->check.path == "/health?deep=1");
  CHECK(back->check.matcher == "200,204");
  CHECK(back->check.interval_s == 6);
  CHECK(back->check.timeout_s == 2);
  CHECK(back->check.healthy_threshold == 4);
  CHECK(back->check.unhealthy_threshold == 3);
  json::Doc shown = model::TargetGroupJson(*full);
  CHECK(shown.view().Get("healthCheckPath").String() == "/health?deep=1");
  CHECK(shown.view().Get("matcher").Get("httpCode").String() == "200,204");
  CHECK(shown.view().Get("healthyThresholdCount").Number() == 4);
  // A group stored before health checks gets the default one.
  Result<model::TargetGroup> old = model::ParseTargetGroupDoc(
      R"({"cluster":"default","name":"web","protocol":"HTTP","port":80,"algorithm":"round_robin"})");
  REQUIRE(old.ok());
  CHECK(old->check.enabled);
  CHECK(old->check.path == "/");

  const std::pair<const char*, const char*> bad[] = {
      {R"("healthCheckPath":"health")", "healthCheckPath: must start with"},
      {R"("healthCheckPath":"/a b")", "healthCheckPath: must have no spaces"},
      {R"("matcher":{"httpCode":"200-"})", "matcher.httpCode: \"\" is not a status code of 100-599"},
      {R"("matcher":{"httpCode":"99"})", "matcher.httpCode: \"99\" is not a status code of 100-599"},
      {R"("matcher":{"httpCode":"300-200"})", "matcher.httpCode: \"300-200\": a range must go from low to high"},
      {R"("matcher":{"httpCode":"200,,302"})", "matcher.httpCode: \"\" is not a status code"},
      {R"("matcher":"200")", "matcher: must be"},
      {R"("healthCheckIntervalSeconds":4)", "healthCheckIntervalSeconds: must be a whole number from 5 to 300"},
      {R"("healthCheckTimeoutSeconds":10)", "healthCheckTimeoutSeconds: must be less than"},
      {R"("healthyThresholdCount":11)", "healthyThresholdCount: must be a whole number from 2 to 10"},
      {R"("unhealthyThresholdCount":1.5)", "unhealthyThresholdCount: must be a whole number from 2 to 10"},
      {R"("healthCheckProtocol":"UDP")", "healthCheckProtocol: must be HTTP or TCP"},
      {R"("healthCheckEnabled":"yes")", "healthCheckEnabled: must be true or false"},
      {R"("healthCheckProtocol":"TCP","healthCheckPath":"/x")", "healthCheckPath and matcher are for HTTP"},
  };
  for (const auto& [field, message] : bad) {
    CAPTURE(field);
    Result<model::TargetGroup> r = parse(std::string(R"({"name":"web","protocol":"HTTP","port":80,)") + field + "}");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(message) != std::string::npos);
  }
}

TEST_CASE("health checks: each node checks its own targets; only passing ones take traffic", "[lb][checks]") {
  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  EdgeAndWorker(cp, proxies);
  REQUIRE(cp.Apply(TargetGroupCmd("web", "HTTP", "default", -1, true)).ok());
  REQUIRE(cp.Apply(TargetGroupCmd("plain")).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge", "attribute:role == edge")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 80, "web")).ok());
  RegisterWebDefinition(cp, "web");
  // (a grace period long enough that the failing target is kept, out of rotation)
  REQUIRE(CreateLbService(cp, "web", 2, {{"web", "app", 8080}}, "web", 3600).ok());
  cp.Step();
  cp.hub->Flush();
  for (const auto& [id, n] : cp.state.nodes()) CHECK(proxies.Checks(id).empty());  // nothing RUNNING yet
  ReportAllRunning(cp);
  cp.hub->Flush();
  const model::TargetGroup& web = *cp.state.FindTargetGroup("default", "web");
  std::vector<control::Target> targets = proxies.Targets(web);
  REQUIRE(targets.size() == 2);
  for (const control::Target& t : targets) {
    CHECK(t.state == "initial");
    CHECK(t.reason == "Elb.InitialHealthChecking");
  }
  CHECK(proxies.Document("edge-1").find("\"state\":\"healthy\"") == std::string::npos);
  // Each target's own node is given its check, to the address and host port the proxies use.
  size_t checked = 0;
  for (const control::Target& t : targets) {
    std::string doc = proxies.Checks(t.node);
    CAPTURE(doc);
    Result<json::Doc> parsed = json::Doc::Parse(doc);
    REQUIRE(parsed.ok());
    CHECK(parsed->view().Get("version").Number() > 0);
    for (json::View c : parsed->view().Get("targets")) {
      if (c.Get("taskId").String() != t.task_id) continue;
      checked++;
      CHECK(c.Get("targetGroup").String() == "web");
      CHECK(c.Get("address").String() == t.address);
      CHECK(c.Get("port").Number() == t.port);
      CHECK(c.Get("protocol").String() == "HTTP");
      CHECK(c.Get("path").String() == "/");
      CHECK(c.Get("matcher").String() == "200-399");
      CHECK(c.Get("intervalSeconds").Number() == 10);
      CHECK(c.Get("unhealthyThreshold").Number() == 2);
    }
  }
  CHECK(checked == 2);

  // One passes, one fails: only the first takes traffic.
  const control::Target a = targets[0];
  const control::Target b = targets[1];
  int64_t checks_version = proxies.ChecksVersion(b.node);
  int64_t proxy_version = proxies.Version("edge-1");
  REQUIRE(cp.Apply(HealthReport(a.node, a.task_id, "web", "healthy")).ok());
  REQUIRE(cp.Apply(HealthReport(b.node, b.task_id, "web", "unhealthy", "Target.ResponseCodeMismatch",
                                "Health checks failed with these codes: [500]"))
              .ok());
  // A report for a group its service does not name, or from another node, is not taken.
  REQUIRE(cp.Apply(HealthReport(a.node, a.task_id, "plain", "unhealthy")).ok());
  std::string other = a.node == "edge-1" ? "worker-1" : "edge-1";
  if (b.node != other) REQUIRE(cp.Apply(HealthReport(other, a.task_id, "web", "unhealthy")).ok());
  cp.hub->Flush();
  targets = proxies.Targets(web);
  REQUIRE(TargetIn(targets, a.task_id));
  CHECK(TargetIn(targets, a.task_id)->state == "healthy");
  REQUIRE(TargetIn(targets, b.task_id));
  CHECK(TargetIn(targets, b.task_id)->state == "unhealthy");
  CHECK(TargetIn(targets, b.task_id)->reason == "Target.ResponseCodeMismatch");
  CHECK(TargetIn(targets, b.task_id)->description == "Health checks failed with these codes: [500]");
  CHECK(cp.state.FindTask(a.task_id)->target_health.size() == 1);
  CHECK(proxies.Version("edge-1") > proxy_version);
  std::string doc = proxies.Document("edge-1");
  CHECK(doc.find("\"state\":\"healthy\"") != std::string::npos);
  CHECK(doc.find("\"state\":\"unhealthy\"") != std::string::npos);
  // Results change no check: the nodes get no new checks document for them.
  CHECK(proxies.ChecksVersion(b.node) == checks_version);

  // A bad report is refused whole.
  Result<std::string> refused = cp.Apply(HealthReport(a.node, a.task_id, "web", "sick"));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("targetHealth[0].state") != std::string::npos);

  // What was reported is state: a reload from the database keeps it.
  REQUIRE(cp.state.Load(cp.store->db()).ok());
  const model::Task* reloaded = cp.state.FindTask(b.task_id);
  REQUIRE(reloaded);
  REQUIRE(reloaded->TargetHealthOf("web"));
  CHECK(reloaded->TargetHealthOf("web")->state == "unhealthy");
  CHECK(reloaded->TargetHealthOf("web")->description == "Health checks failed with these codes: [500]");
}

TEST_CASE("health checks: a target failing its group's check is replaced after the grace period", "[lb][checks]") {
  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  cp.scheduler->SetProxyConfigs(&proxies);
  cp.hub->SetProxyConfigs(&proxies);
  RegisterAt(cp, "worker-1", {}, "10.0.0.2");
  REQUIRE(cp.Apply(TargetGroupCmd("web", "HTTP", "default", -1, true)).ok());
  RegisterWebDefinition(cp, "web");
  model::Service svc;
  svc.name = "web";
  svc.cluster = "default";
  svc.arn = model::ServiceArn(svc.cluster, svc.name);
  svc.desired = 1;
  svc.health_check_grace_s = 60;
  svc.load_balancers = {{"web", "app", 8080}};
  model::Deployment d;
  d.id = "ecs-svc/web";
  d.family = "web";
  d.revision = 1;
  svc.deployments.push_back(d);
  auto create = std::make_unique<model::CreateService>();
  create->doc = model::ServiceDoc(svc);
  REQUIRE(cp.Apply(std::move(create)).ok());
  cp.Step();
  ReportAll(cp, "worker-1", "RUNNING");
  REQUIRE(cp.state.FindNode("worker-1")->tasks.size() == 1);
  std::string first = cp.state.FindNode("worker-1")->tasks.begin()->first;
  // Not yet checked: RUNNING, but not healthy for its deployment.
  cp.Step();
  CHECK(cp.state.FindTask(first)->desired == "RUNNING");
  REQUIRE(cp.Apply(HealthReport("worker-1", first, "web", "unhealthy", "Target.Timeout", "Request timed out")).ok());
  // Within the grace period: failing, out of rotation, but kept.
  for (int i = 0; i < 20; i++) cp.Step();  // 5 s
  CHECK(cp.state.FindTask(first)->desired == "RUNNING");
  CHECK(proxies.Targets(*cp.state.FindTargetGroup("default", "web"))[0].state == "unhealthy");
  // An update makes the grace longer: past the first one, still kept.
  auto grace = [&](int64_t seconds) {
    auto update = std::make_unique<model::UpdateService>();
    update->cluster = "default";
    update->name = "web";
    update->health_check_grace_s = seconds;
    REQUIRE(cp.Apply(std::move(update)).ok());
  };
  grace(3600);
  cp.clock.Advance(60000);
  for (int i = 0; i < 20; i++) cp.Step();
  CHECK(cp.state.FindTask(first)->desired == "RUNNING");
  // Past the grace, as an update shortens it: stopped and replaced.
  grace(30);
  CHECK(cp.state.FindService("default", "web")->health_check_grace_s == 30);
  // The update's log form keeps the grace; an entry of an older version has none (unchanged).
  model::UpdateService logged;
  logged.cluster = "default";
  logged.name = "web";
  logged.health_check_grace_s = 30;
  Result<store::CommandPtr> back = model::DecodeCommand("UpdateService", logged.Encode(), 5);
  REQUIRE(back.ok());
  CHECK(static_cast<const model::UpdateService&>(**back).health_check_grace_s == 30);
  logged.health_check_grace_s = -1;
  CHECK(logged.Encode().find("healthCheckGraceSeconds") == std::string::npos);
  back = model::DecodeCommand("UpdateService", logged.Encode(), 5);
  REQUIRE(back.ok());
  CHECK(static_cast<const model::UpdateService&>(**back).health_check_grace_s == -1);
  REQUIRE(cp.RunUntil([&] { return cp.state.FindTask(first)->desired == "STOPPED"; }, 20));
  CHECK(cp.state.FindTask(first)->stopped_reason == "Task failed ELB health checks");
  REQUIRE(cp.RunUntil(
      [&] {
        for (const auto& [id, t] : cp.state.tasks()) {
          if (id != first && t.desired == "RUNNING") return true;
        }
        return false;
      },
      20));
}

}  // namespace berth

namespace berth {
namespace {

std::unique_ptr<model::ModifyTargetGroup> ModifyCmd(const std::string& name, const std::string& change) {
  auto cmd = std::make_unique<model::ModifyTargetGroup>();
  cmd->cluster = "default";
  cmd->name = name;
  cmd->change = change;
  return cmd;
}

TEST_CASE("target groups: a change keeps what it does not name, and refuses what cannot change", "[lb]") {
  json::Doc body = json::Doc::Object();
  body.Set("name", "web").Set("protocol", "HTTP").Set("port", 8080).Set("healthCheckPath", "/health");
  body.Set(
      "attributes",
      json::Doc::Object().Set("slow_start.duration_seconds", "60").Set("deregistration_delay.timeout_seconds", "120"));
  Result<model::TargetGroup> web = model::ParseTargetGroupBody(body.view(), "default");
  REQUIRE(web.ok());
  web->created_ms = 1234;
  auto modify = [&](const char* text) {
    Result<json::Doc> change = json::Doc::Parse(text);
    REQUIRE(change.ok());
    return model::ModifyTargetGroupBody(*web, change->view());
  };

  Result<model::TargetGroup> changed = modify(
      R"({"cluster":"default","healthCheckTimeoutSeconds":3,"attributes":{"deregistration_delay.timeout_seconds":10}})");
  REQUIRE(changed.ok());
  CHECK(changed->check.timeout_s == 3);
  CHECK(changed->deregistration_delay_s == 10);
  CHECK(changed->slow_start_s == 60);       // not named: kept
  CHECK(changed->check.path == "/health");  // not named: kept
  CHECK(changed->check.interval_s == 10);   // the default, kept
  CHECK(changed->algorithm == "least_outstanding_requests");
  CHECK(changed->created_ms == 1234);
  CHECK(changed->arn == web->arn);

  // ELB's attribute for the algorithm, or the field; both must agree.
  changed = modify(R"({"attributes":{"load_balancing.algorithm.type":"round_robin"}})");
  REQUIRE(changed.ok());
  CHECK(changed->algorithm == "round_robin");
  changed = modify(R"({"algorithm":"round_robin"})");
  REQUIRE(changed.ok());
  CHECK(changed->algorithm == "round_robin");
  CHECK(changed->slow_start_s == 60);

  // A check turned to TCP leaves the HTTP path and matcher behind; back to HTTP, the defaults.
  changed = modify(R"({"healthCheckProtocol":"TCP"})");
  REQUIRE(changed.ok());
  CHECK(changed->check.protocol == "TCP");
  changed = modify(R"({"healthCheckEnabled":false})");
  REQUIRE(changed.ok());
  CHECK_FALSE(changed->check.enabled);
  CHECK(changed->check.path == "/health");

  // The same values for what cannot change pass, as aws elbv2 sends them back.
  CHECK(modify(R"({"name":"web","protocol":"HTTP","port":8080,"healthCheckPath":"/x"})").ok());
  const std::pair<const char*, const char*> refused[] = {
      {R"({"protocol":"TCP"})", "protocol: a target group's protocol cannot change"},
      {R"({"port":8081})", "port: a target group's port cannot change"},
      {R"({"name":"other"})", "name: a target group's name cannot change"},
      {R"({"targets":[]})", "targets: unknown field"},
      {R"({"healthCheckTimeoutSeconds":10})", "healthCheckTimeoutSeconds: must be less than"},
      {R"({"healthCheckProtocol":"TCP","healthCheckPath":"/x"})", "healthCheckPath and matcher are for HTTP"},
      {R"({"attributes":{"slow_start.duration_seconds":"5"}})", "attributes.slow_start.duration_seconds: must be 0"},
      {R"({"attributes":{"bogus":"1"}})", "attributes.bogus: unknown attribute"},
      {R"({"attributes":[]})", "attributes: must be an object"},
      {R"({"algorithm":"round_robin","attributes":{"load_balancing.algorithm.type":"least_connections"}})",
       "attributes.load_balancing.algorithm.type: says \"least_connections\" but algorithm says \"round_robin\""},
      {R"([1])", "body: must be a JSON object"},
  };
  for (const auto& [text, message] : refused) {
    CAPTURE(text);
    Result<model::TargetGroup> r = modify(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.starts_with(message));
  }

  // A UDP group (no health check) changes its attributes; a check stays refused.
  Result<json::Doc> udp_body = json::Doc::Parse(R"({"name":"dns","protocol":"UDP","port":53})");
  REQUIRE(udp_body.ok());
  Result<model::TargetGroup> dns = model::ParseTargetGroupBody(udp_body->view(), "default");
  REQUIRE(dns.ok());
  Result<json::Doc> change = json::Doc::Parse(R"({"attributes":{"deregistration_delay.timeout_seconds":"5"}})");
  REQUIRE(change.ok());
  Result<model::TargetGroup> dns2 = model::ModifyTargetGroupBody(*dns, change->view());
  REQUIRE(dns2.ok());
  CHECK(dns2->deregistration_delay_s == 5);
  CHECK_FALSE(dns2->check.enabled);
  change = json::Doc::Parse(R"({"healthCheckPath":"/x"})");
  REQUIRE(change.ok());
  CHECK_FALSE(model::ModifyTargetGroupBody(*dns, change->view()).ok());
  change = json::Doc::Parse(R"({"attributes":{"stickiness.enabled":"true"}})");
  REQUIRE(change.ok());
  Result<model::TargetGroup> sticky = model::ModifyTargetGroupBody(*dns, change->view());
  REQUIRE_FALSE(sticky.ok());
  CHECK(sticky.error().message.starts_with("attributes.stickiness.enabled: UDP target groups"));
}

TEST_CASE("target groups: a change reaches the proxies' documents and the agents' checks, and survives the log",
          "[lb][checks]") {
  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  EdgeAndWorker(cp, proxies);
  REQUIRE(cp.Apply(TargetGroupCmd("web", "HTTP", "default", -1, true)).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge", "attribute:role == edge")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 80, "web")).ok());
  RegisterWebDefinition(cp, "web");
  REQUIRE(CreateLbService(cp, "web", 2, {{"web", "app", 8080}}).ok());
  cp.Step();
  ReportAllRunning(cp);
  cp.hub->Flush();
  std::vector<control::Target> targets = proxies.Targets(*cp.state.FindTargetGroup("default", "web"));
  REQUIRE(targets.size() == 2);
  std::set<std::string> target_nodes;
  for (const control::Target& t : targets) target_nodes.insert(t.node);
  std::map<std::string, int64_t> checks_versions;
  for (const std::string& n : target_nodes) {
    checks_versions[n] = proxies.ChecksVersion(n);
    CHECK(proxies.Checks(n).find("\"path\":\"/\"") != std::string::npos);
  }
  int64_t version = proxies.Version("edge-1");
  CHECK(proxies.Document("edge-1").find("least_outstanding_requests") != std::string::npos);

  // Two changes of different fields, each merged with the group as the one before left it.
  REQUIRE(cp.Apply(ModifyCmd("web", R"({"healthCheckPath":"/ready","healthCheckIntervalSeconds":7})")).ok());
  REQUIRE(cp.Apply(ModifyCmd("web", R"({"algorithm":"round_robin"})")).ok());
  cp.hub->Flush();
  const model::TargetGroup* web = cp.state.FindTargetGroup("default", "web");
  CHECK(web->check.path == "/ready");
  CHECK(web->check.interval_s == 7);
  CHECK(web->algorithm == "round_robin");
  CHECK(proxies.Version("edge-1") > version);
  CHECK(proxies.Document("edge-1").find("\"algorithm\":\"round_robin\"") != std::string::npos);
  for (const std::string& n : target_nodes) {
    CAPTURE(n);
    CHECK(proxies.ChecksVersion(n) > checks_versions[n]);
    CHECK(proxies.Checks(n).find("\"path\":\"/ready\"") != std::string::npos);
    CHECK(proxies.Checks(n).find("\"intervalSeconds\":7") != std::string::npos);
  }

  // Turned off, the checks documents no longer list its targets.
  REQUIRE(cp.Apply(ModifyCmd("web", R"({"healthCheckEnabled":false})")).ok());
  cp.hub->Flush();
  for (const std::string& n : target_nodes)
    CHECK(proxies.Checks(n).find("\"targetGroup\":\"web\"") == std::string::npos);

  // Refused at apply as at the API; an unknown group is not found.
  Result<std::string> bad = cp.Apply(ModifyCmd("web", R"({"port":1})"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("port: a target group's port cannot change"));
  Result<std::string> missing = cp.Apply(ModifyCmd("nope", R"({"algorithm":"round_robin"})"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == "TargetGroupNotFound");

  // The log form decodes to the same command; a reload from disk keeps the change.
  store::CommandPtr cmd = ModifyCmd("web", R"({"algorithm":"least_outstanding_requests"})");
  Result<store::CommandPtr> back = model::DecodeCommand(cmd->Type(), cmd->Encode(), 5);
  REQUIRE(back.ok());
  CHECK((*back)->Encode() == cmd->Encode());
  std::string before = model::TargetGroupDoc(*cp.state.FindTargetGroup("default", "web"));
  REQUIRE(cp.state.Load(cp.store->db()).ok());
  CHECK(model::TargetGroupDoc(*cp.state.FindTargetGroup("default", "web")) == before);
  CHECK(cp.state.FindTargetGroup("default", "web")->check.path == "/ready");
}

TEST_CASE("load balancing: TCP groups may send the PROXY protocol v2 to their targets", "[lb]") {
  auto parse = ParseGroupText;
  Result<model::TargetGroup> db =
      parse(R"({"name":"db","protocol":"TCP","port":5432,"attributes":{"proxy_protocol_v2.enabled":"true"}})");
  REQUIRE(db.ok());
  CHECK(db->proxy_protocol_v2);
  Result<model::TargetGroup> back = model::ParseTargetGroupDoc(model::TargetGroupDoc(*db));
  REQUIRE(back.ok());
  CHECK(back->proxy_protocol_v2);
  CHECK(model::TargetGroupJson(*db).Print().find(R"({"key":"proxy_protocol_v2.enabled","value":"true"})") !=
        std::string::npos);
  Result<model::TargetGroup> off =
      parse(R"({"name":"db","protocol":"TCP","port":5432,"attributes":{"proxy_protocol_v2.enabled":false}})");
  REQUIRE(off.ok());
  CHECK_FALSE(off->proxy_protocol_v2);
  Result<model::TargetGroup> http =
      parse(R"({"name":"web","protocol":"HTTP","port":80,"attributes":{"proxy_protocol_v2.enabled":"true"}})");
  REQUIRE_FALSE(http.ok());
  CHECK(http.error().message.find("only TCP target groups") != std::string::npos);
  Result<model::TargetGroup> bad =
      parse(R"({"name":"db","protocol":"TCP","port":5432,"attributes":{"proxy_protocol_v2.enabled":"yes"}})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "attributes.proxy_protocol_v2.enabled: must be true or false");

  // The document of a member node says it.
  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  cp.hub->SetProxyConfigs(&proxies);
  RegisterAt(cp, "edge-1", {}, "10.0.0.1");
  auto cmd = std::make_unique<model::CreateTargetGroup>();
  cmd->doc = model::TargetGroupDoc(*db);
  REQUIRE(cp.Apply(std::move(cmd)).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 5432, "db", "TCP")).ok());
  cp.hub->Flush();
  CHECK(proxies.Document("edge-1").find(
            R"("name":"db","protocol":"TCP","algorithm":"least_connections","proxyProtocol":"v2")") !=
        std::string::npos);

  // Listeners name the peers whose connections begin with a PROXY header.
  Result<json::Doc> body = json::Doc::Parse(
      R"({"port":80,"protocol":"HTTP","defaultTargetGroup":"web","proxyProtocolFrom":["10.0.0.0/8","::1"]})");
  REQUIRE(body.ok());
  Result<model::Listener> l = model::ParseListenerBody(body->view());
  REQUIRE(l.ok());
  CHECK(l->proxy_protocol_from == std::vector<std::string>{"10.0.0.0/8", "::1"});
  CHECK(model::ListenerDocJson(*l).Print().find(R"("proxyProtocolFrom":["10.0.0.0/8","::1"])") != std::string::npos);
  for (const char* bad : {R"(["10.0.0.0/33"])", R"(["not an address"])", R"([7])", R"("10.0.0.0/8")"}) {
    CAPTURE(bad);
    Result<json::Doc> b = json::Doc::Parse(
        std::string(R"({"port":80,"protocol":"HTTP","defaultTargetGroup":"web","proxyProtocolFrom":)") + bad + "}");
    REQUIRE(b.ok());
    Result<model::Listener> refused = model::ParseListenerBody(b->view());
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message.rfind("proxyProtocolFrom", 0) == 0);
  }
  auto from = std::make_unique<model::CreateListener>();
  from->cluster = "default";
  from->load_balancer = "edge";
  from->doc = R"({"port":7000,"protocol":"TCP","defaultTargetGroup":"db","proxyProtocolFrom":["192.0.2.0/24"]})";
  REQUIRE(cp.Apply(std::move(from)).ok());
  cp.hub->Flush();
  CHECK(proxies.Document("edge-1").find(R"("proxyProtocolFrom":["192.0.2.0/24"])") != std::string::npos);
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

using testing::ControlPlane;

TEST_CASE("load balancing: UDP groups and listeners; targets on the udp host port; no health check", "[lb][udp]") {
  auto parse = ParseGroupText;
  Result<model::TargetGroup> dns = parse(R"({"name":"dns","protocol":"UDP","port":53})");
  REQUIRE(dns.ok());
  CHECK(dns->algorithm == "least_connections");
  CHECK_FALSE(dns->check.enabled);  // the agents probe HTTP and TCP only
  Result<model::TargetGroup> back = model::ParseTargetGroupDoc(model::TargetGroupDoc(*dns));
  REQUIRE(back.ok());
  CHECK(back->protocol == "UDP");
  CHECK_FALSE(back->check.enabled);
  CHECK(parse(R"({"name":"dns","protocol":"UDP","port":53,"healthCheckEnabled":false})").ok());
  Result<model::TargetGroup> checked = parse(R"({"name":"dns","protocol":"UDP","port":53,"healthCheckEnabled":true})");
  REQUIRE_FALSE(checked.ok());
  CHECK(checked.error().message ==
        "healthCheckEnabled: a UDP target group has no health check (the agents probe HTTP and TCP only); its targets "
        "take traffic when RUNNING and, with a container health check, HEALTHY");
  Result<model::TargetGroup> path = parse(R"({"name":"dns","protocol":"UDP","port":53,"healthCheckPath":"/"})");
  REQUIRE_FALSE(path.ok());
  CHECK(path.error().message == "healthCheckPath: a UDP target group has no health check");
  Result<model::TargetGroup> lor =
      parse(R"({"name":"dns","protocol":"UDP","port":53,"algorithm":"least_outstanding_requests"})");
  REQUIRE_FALSE(lor.ok());
  Result<model::TargetGroup> tcp_check =
      parse(R"({"name":"db","protocol":"TCP","port":5432,"healthCheckProtocol":"UDP"})");
  REQUIRE_FALSE(tcp_check.ok());
  CHECK(tcp_check.error().message == "healthCheckProtocol: must be HTTP or TCP; got \"UDP\"");

  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  cp.scheduler->SetProxyConfigs(&proxies);
  cp.hub->SetProxyConfigs(&proxies);
  RegisterAt(cp, "edge-1", {}, "10.0.0.1");
  auto create = std::make_unique<model::CreateTargetGroup>();
  create->doc = model::TargetGroupDoc(*dns);
  REQUIRE(cp.Apply(std::move(create)).ok());
  REQUIRE(cp.Apply(TargetGroupCmd("db", "TCP")).ok());
  REQUIRE(cp.Apply(LoadBalancerCmd("edge")).ok());
  // The listener's protocol must be its group's.
  CHECK_FALSE(cp.Apply(ListenerCmd("edge", 53, "dns", "TCP")).ok());
  CHECK_FALSE(cp.Apply(ListenerCmd("edge", 53, "db", "UDP")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 53, "dns", "UDP")).ok());
  // Its port is reserved on the member as a UDP one.
  CHECK(proxies.ListenerPorts(*cp.state.FindNode("edge-1")) == std::vector<std::pair<int, bool>>{{53, true}});
  // Rules are for HTTP listeners.
  CHECK_FALSE(cp.Apply(RuleCmd("edge", 53, 10, "dns")).ok());

  // A service's container must map the port as udp; its target is the udp host port.
  auto mapping = [](const std::string& protocol) {
    json::Doc pm = json::Doc::Object();
    pm.Set("containerPort", 53).Set("protocol", protocol);
    json::Doc pms = json::Doc::Array();
    pms.Push(pm);
    json::Doc c = json::Doc::Object();
    c.Set("name", "app").Set("image", "coredns:latest").Set("cpu", 256).Set("memory", 128).Set("portMappings", pms);
    return c;
  };
  json::Doc tcp_only = mapping("tcp");
  cp.RegisterContainer("tcp-only", tcp_only);
  Result<std::string> refused = CreateLbService(cp, "wrong", 1, {{"dns", "app", 53}}, "tcp-only");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("has no UDP portMapping of port 53") != std::string::npos);
  json::Doc udp = mapping("udp");
  cp.RegisterContainer("dns", udp);
  REQUIRE(CreateLbService(cp, "dns", 1, {{"dns", "app", 53}}, "dns").ok());
  cp.RunUntil([&] { return cp.Count("dns").live == 1; }, 20);
  const model::Node* edge = cp.state.FindNode("edge-1");
  REQUIRE(edge->tasks.size() == 1);
  auto report = std::make_unique<model::ReportTasks>();
  report->node = "edge-1";
  json::Doc bindings = json::Doc::Array();
  bindings.Push(json::Doc::Object().Set("containerPort", 53).Set("hostPort", 31000).Set("protocol", "tcp"));
  bindings.Push(json::Doc::Object().Set("containerPort", 53).Set("hostPort", 31053).Set("protocol", "udp"));
  json::Doc c = json::Doc::Object();
  c.Set("name", "app").Set("lastStatus", "RUNNING").Set("networkBindings", bindings);
  json::Doc list = json::Doc::Array();
  list.Push(c);
  report->reports.push_back({edge->tasks.begin()->first, "RUNNING", "", list.Print()});
  REQUIRE(cp.Apply(std::move(report)).ok());
  cp.hub->Flush();
  std::vector<control::Target> targets = proxies.Targets(*cp.state.FindTargetGroup("default", "dns"));
  REQUIRE(targets.size() == 1);
  CHECK(targets[0].port == 31053);
  CHECK(targets[0].state == "healthy");  // RUNNING, no container check, no group check
  std::string doc = proxies.Document("edge-1");
  CAPTURE(doc);
  CHECK(doc.find(R"({"port":53,"protocol":"UDP")") != std::string::npos);
  CHECK(doc.find(R"("name":"dns","protocol":"UDP")") != std::string::npos);
  CHECK(doc.find(R"("port":31053,"state":"healthy")") != std::string::npos);
  CHECK(proxies.Checks("edge-1").find("31053") == std::string::npos);  // nothing to probe
  // The document is one the proxies take.
  Result<json::Doc> parsed = json::Doc::Parse(doc);
  REQUIRE(parsed.ok());
}

}  // namespace

TEST_CASE("load balancing: stickiness attributes, by the group's protocol, reach the proxies", "[lb][stickiness]") {
  auto parse = [](const std::string& attrs, const char* protocol = "HTTP") {
    Result<json::Doc> body = json::Doc::Parse(std::string(R"({"name":"web","protocol":")") + protocol +
                                              R"(","port":80,"attributes":)" + attrs + "}");
    REQUIRE(body.ok());
    return model::ParseTargetGroupBody(body->view(), "default");
  };
  Result<model::TargetGroup> plain = parse("{}");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->stickiness);
  CHECK(plain->stickiness_type == "lb_cookie");
  CHECK(plain->stickiness_cookie_s == 86400);
  Result<model::TargetGroup> web = parse(
      R"({"stickiness.enabled":"true","stickiness.type":"lb_cookie","stickiness.lb_cookie.duration_seconds":"600"})");
  REQUIRE(web.ok());
  CHECK(web->stickiness);
  CHECK(web->stickiness_cookie_s == 600);
  Result<model::TargetGroup> back = model::ParseTargetGroupDoc(model::TargetGroupDoc(*web));
  REQUIRE(back.ok());
  CHECK(back->stickiness);
  CHECK(back->stickiness_type == "lb_cookie");
  CHECK(back->stickiness_cookie_s == 600);
  std::string shown = model::TargetGroupJson(*web).Print();
  CHECK(shown.find(R"({"key":"stickiness.enabled","value":"true"})") != std::string::npos);
  CHECK(shown.find(R"({"key":"stickiness.lb_cookie.duration_seconds","value":"600"})") != std::string::npos);
  Result<model::TargetGroup> tcp = parse(R"({"stickiness.enabled":true})", "TCP");
  REQUIRE(tcp.ok());
  CHECK(tcp->stickiness_type == "source_ip");  // TCP's own type

  auto refused = [&](const std::string& attrs, const char* protocol = "HTTP") {
    Result<model::TargetGroup> r = parse(attrs, protocol);
    REQUIRE_FALSE(r.ok());
    return r.error().message;
  };
  CHECK(refused(R"({"stickiness.type":"source_ip"})") ==
        "attributes.stickiness.type: source_ip is for TCP target groups; an HTTP group takes lb_cookie");
  CHECK(refused(R"({"stickiness.enabled":"true","stickiness.type":"lb_cookie"})", "TCP") ==
        "attributes.stickiness.type: lb_cookie is for HTTP target groups; a TCP group takes source_ip");
  CHECK(refused(R"({"stickiness.type":"app_cookie"})").rfind("attributes.stickiness.type: must be lb_cookie", 0) == 0);
  CHECK(refused(R"({"stickiness.enabled":"on"})") == "attributes.stickiness.enabled: must be true or false");
  CHECK(refused(R"({"stickiness.lb_cookie.duration_seconds":"0"})") ==
        "attributes.stickiness.lb_cookie.duration_seconds: must be from 1 to 604800 seconds (7 days)");
  CHECK(refused(R"({"stickiness.lb_cookie.duration_seconds":604801})") ==
        "attributes.stickiness.lb_cookie.duration_seconds: must be from 1 to 604800 seconds (7 days)");

  // The documents of member nodes carry it, in the contract's words.
  ControlPlane cp;
  control::ProxyConfigs proxies(&cp.state, &cp.clock);
  cp.hub->SetProxyConfigs(&proxies);
  RegisterAt(cp, "edge-1", {}, "10.0.0.1");
  Result<model::TargetGroup> db = parse(R"({"stickiness.enabled":"true"})", "TCP");
  REQUIRE(db.ok());
  db->name = "db";
  db->arn = model::TargetGroupArn("default", "db");
  for (const model::TargetGroup* g : {&*web, &*db}) {
    auto cmd = std::make_unique<model::CreateTargetGroup>();
    cmd->doc = model::TargetGroupDoc(*g);
    REQUIRE(cp.Apply(std::move(cmd)).ok());
  }
  REQUIRE(cp.Apply(LoadBalancerCmd("edge")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 80, "web", "HTTP")).ok());
  REQUIRE(cp.Apply(ListenerCmd("edge", 5432, "db", "TCP")).ok());
  cp.hub->Flush();
  std::string doc = proxies.Document("edge-1");
  CHECK(doc.find(R"("stickiness":{"type":"lb_cookie","durationSeconds":600})") != std::string::npos);
  CHECK(doc.find(R"("stickiness":{"type":"source_ip"})") != std::string::npos);
  // And the proxy takes the document it is sent.
  INFO(doc);
  CHECK(proxy::ParseConfig(doc).ok());
}

}  // namespace berth
