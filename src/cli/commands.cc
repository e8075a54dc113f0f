#include "cli/commands.h"

#include <cstdio>
#include <map>

#include "base/flags.h"
#include "cli/common.h"
#include "cli/describe.h"
#include "cli/lb.h"
#include "cli/table.h"
#include "net/http.h"

namespace berth::cli {

namespace http = net::http;

namespace {

std::string Q(const std::string& s) { return http::UrlEncode(s); }

int64_t ResourceValue(json::View resources, const char* name) {
  for (json::View r : resources) {
    if (r.Get("name").String() == name) return static_cast<int64_t>(r.Get("integerValue").Number());
  }
  return 0;
}

std::string Attr(json::View node, const char* name) {
  for (json::View a : node.Get("attributes")) {
    if (a.Get("name").String() == name) return std::string(a.Get("value").String());
  }
  return "-";
}

std::string Tail(std::string_view s, char sep) {
  size_t i = s.rfind(sep);
  return std::string(i == std::string_view::npos ? s : s.substr(i + 1));
}

void PrintNodes(json::View nodes) {
  Table t({"NODE", "CLUSTER", "STATUS", "AGENT", "ZONE", "CPU FREE/TOTAL", "MEMORY FREE/TOTAL", "RUNNING", "PENDING"});
  for (json::View n : nodes) {
    t.Add({Str(n, "nodeId"), Str(n, "cluster"), Str(n, "status"), n.Get("agentConnected").Bool() ? "connected" : "away",
           Attr(n, "zone"),
           std::to_string(ResourceValue(n.Get("remainingResources"), "CPU")) + "/" +
               std::to_string(ResourceValue(n.Get("registeredResources"), "CPU")),
           std::to_string(ResourceValue(n.Get("remainingResources"), "MEMORY")) + "/" +
               std::to_string(ResourceValue(n.Get("registeredResources"), "MEMORY")),
           Num(n, "runningTasksCount"), Num(n, "pendingTasksCount")});
  }
  printf("%s", t.Render().c_str());
}

void PrintTasks(json::View tasks, bool wide) {
  std::vector<std::string> header = {"TASK", "SERVICE", "TASKDEF", "NODE", "LAST", "DESIRED", "HEALTH", "AGE"};
  if (wide) header.push_back("STOPPED REASON");
  Table t(header);
  for (json::View x : tasks) {
    std::string service = Str(x, "serviceName");
    std::vector<std::string> row = {ShortTaskId(Str(x, "taskId")),
                                    service.empty() ? "-" : service,
                                    Tail(x.Get("taskDefinitionArn").String(), '/'),
                                    Str(x, "nodeId"),
                                    Str(x, "lastStatus"),
                                    Str(x, "desiredStatus"),
                                    Str(x, "healthStatus"),
                                    Age(x, "createdAt")};
    if (wide) row.push_back(Str(x, "stoppedReason"));
    t.Add(row);
  }
  printf("%s", t.Render().c_str());
}

void PrintServices(json::View services) {
  Table t({"SERVICE", "CLUSTER", "STATUS", "DESIRED", "RUNNING", "PENDING", "TASKDEF", "ROLLOUT"});
  for (json::View s : services) {
    json::View primary = *s.Get("deployments").begin();
    t.Add({Str(s, "serviceName"), Tail(s.Get("clusterArn").String(), '/'), Str(s, "status"), Num(s, "desiredCount"),
           Num(s, "runningCount"), Num(s, "pendingCount"), Tail(s.Get("taskDefinition").String(), '/'),
           std::string(primary.Get("rolloutState").String())});
  }
  printf("%s", t.Render().c_str());
}

// "spread:attribute:zone,binpack:memory" → ECS placementStrategy JSON.
Result<json::Doc> StrategyFlag(const std::string& text) {
  json::Doc list = json::Doc::Array();
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t colon = item.find(':');
    json::Doc s = json::Doc::Object();
    s.Set("type", item.substr(0, colon));
    if (colon != std::string::npos) s.Set("field", item.substr(colon + 1));
    if (item.empty()) return Error::Invalid("--strategy: empty item in '" + text + "'");
    list.Push(s);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return list;
}

// "distinctInstance" or "memberOf:EXPRESSION", repeatable with ';'.
Result<json::Doc> ConstraintFlag(const std::string& text) {
  json::Doc list = json::Doc::Array();
  size_t start = 0;
  while (start < text.size()) {
    size_t semi = text.find(';', start);
    std::string item = text.substr(start, semi == std::string::npos ? std::string::npos : semi - start);
    json::Doc c = json::Doc::Object();
    if (item == "distinctInstance") {
      c.Set("type", "distinctInstance");
    } else if (item.rfind("memberOf:", 0) == 0) {
      c.Set("type", "memberOf").Set("expression", item.substr(9));
    } else {
      return Error::Invalid("--constraint: expected distinctInstance or memberOf:EXPRESSION, not '" + item + "'");
    }
    list.Push(c);
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  return list;
}

Result<int64_t> CountFlag(const flags::Parsed& p, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  if (!p.Has(name)) return fallback;
  Result<uint64_t> v = flags::ParseCount(p.Get(name), name);
  if (!v || static_cast<int64_t>(*v) < lo || static_cast<int64_t>(*v) > hi) {
    return Error::Invalid("--" + std::string(name) + ": expected a whole number from " + std::to_string(lo) + " to " +
                          std::to_string(hi));
  }
  return static_cast<int64_t>(*v);
}

const flags::FlagSpec kJson{"json", false, "", "print JSON instead of a table"};
const flags::FlagSpec kCluster{"cluster", true, "NAME", "the cluster (default: default)"};

}  // namespace

// --- berth server ls ---

int ServerCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {kJson};
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("server", p.error().message);
  bool ls = !p->positional.empty() && (p->positional[0] == "ls" || p->positional[0] == "list");
  bool rm = p->positional.size() == 2 && (p->positional[0] == "rm" || p->positional[0] == "remove");
  if (p->help || (!ls && !rm)) {
    printf(
        "Usage:\n"
        "  berth server ls      the control plane's servers: id, address, role, leader, log index, lag and last "
        "contact\n"
        "  berth server rm ID   removes a server from the cluster (admin); a standby takes a voter's place\n"
        "  berth server [flags] runs a server (berth server --help; --join adds one to a cluster)\n\nFlags:\n%s",
        flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  if (rm) {
    CallResult r = Call("DELETE", "/v1/servers/" + p->positional[1]);
    if (r.exit) return r.exit;
    if (p->Has("json")) {
      printf("%s\n", r.body.Print().c_str());
    } else {
      printf("removed server %s from the cluster\n", p->positional[1].c_str());
    }
    return kOk;
  }
  CallResult r = Call("GET", "/v1/servers");
  if (r.exit) return r.exit;
  if (p->Has("json")) {
    printf("%s\n", r.body.Print().c_str());
    return kOk;
  }
  json::View v = r.body.view();
  printf("term %s, commit index %s, applied index %s (as server %s sees it)\n", Num(v, "term").c_str(),
         Num(v, "commitIndex").c_str(), Num(v, "appliedIndex").c_str(), Str(v, "id").c_str());
  if (!v.Get("leader").Bool()) {
    // Match index, lag and contact are the leader's knowledge alone.
    std::string leader;
    for (json::View s : v.Get("servers")) {
      if (s.Get("leader").Bool()) leader = Str(s, "id") + " at " + Str(s, "address");
    }
    printf("this server follows: lag and last contact are known only to the leader (%s)\n",
           leader.empty() ? "none at the moment" : ("server " + leader).c_str());
  }
  Table t({"ID", "ADDRESS", "ROLE", "LEADER", "MATCH INDEX", "LAG", "LAST SENT", "LAST HEARD"});
  for (json::View s : v.Get("servers")) {
    bool known = s.Get("matchIndex").valid();
    std::string id = Str(s, "id") + (s.Get("self").Bool() ? " (this)" : "");
    t.Add({id, Str(s, "address"), Str(s, "role"), s.Get("leader").Bool() ? "yes" : "-",
           known ? Num(s, "matchIndex") : "-", known ? Num(s, "lag") : "-",
           s.Get("sentMsAgo").valid() ? Num(s, "sentMsAgo") + " ms ago" : "-",
           s.Get("heardMsAgo").valid() ? Num(s, "heardMsAgo") + " ms ago" : "-"});
  }
  printf("%s", t.Render().c_str());
  return kOk;
}

// --- berth node ---

int NodeCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {kJson, kCluster, {"force", false, "", "rm: also stop the node's tasks"}};
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("node", p.error().message);
  if (p->help || p->positional.empty()) {
    printf(
        "Usage:\n"
        "  berth node ls [--cluster NAME]   list nodes with free and total CPU and memory\n"
        "  berth node describe NODE         show one node (--json: the ECS container instance JSON)\n"
        "  berth node drain NODE            no new tasks; service tasks move elsewhere\n"
        "  berth node activate NODE         take tasks again\n"
        "  berth node rm NODE [--force]     deregister (--force stops its tasks)\n"
        "  berth node revoke NODE           deregister, stop its tasks, refuse its certificate at once and never\n"
        "                                   let the id register again (admin)\n\nFlags:\n%s",
        flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  if (sub == "ls" || sub == "list") {
    std::string target = "/v1/nodes";
    if (p->Has("cluster")) target += "?cluster=" + Q(p->Get("cluster"));
    CallResult r = Call("GET", target);
    if (r.exit) return r.exit;
    if (p->Has("json"))
      printf("%s\n", r.body.Print().c_str());
    else
      PrintNodes(r.body.view().Get("containerInstances"));
    return kOk;
  }
  if (p->positional.size() != 2) return UsageError("node", sub + " takes one NODE");
  const std::string& node = p->positional[1];
  CallResult r;
  if (sub == "describe")
    r = Call("GET", "/v1/nodes/" + Q(node));
  else if (sub == "drain")
    r = Call("POST", "/v1/nodes/" + Q(node) + "/drain", "{}");
  else if (sub == "activate")
    r = Call("POST", "/v1/nodes/" + Q(node) + "/activate", "{}");
  else if (sub == "rm")
    r = Call("DELETE", "/v1/nodes/" + Q(node) + (p->Has("force") ? "?force=true" : ""));
  else if (sub == "revoke")
    r = Call("POST", "/v1/nodes/" + Q(node) + "/revoke", "{}");
  else
    return UsageError("node", "unknown subcommand '" + sub + "'");
  if (r.exit) return r.exit;
  json::View n = r.body.view().Get("containerInstance");
  if (p->Has("json"))
    printf("%s\n", n.Print().c_str());
  else if (sub == "describe")
    PrintNodeDescription(n);
  else
    printf("%s %s%s\n", Str(n, "nodeId").c_str(), Str(n, "status").c_str(), sub == "revoke" ? " (revoked)" : "");
  return kOk;
}

// --- berth run ---

int RunCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      kJson,
      kCluster,
      {"count", true, "N", "how many tasks (default 1)"},
      {"group", true, "GROUP", "task group (default family:FAMILY)"},
      {"started-by", true, "TEXT", "recorded as startedBy"},
      {"strategy", true, "LIST", "e.g. spread:attribute:zone,binpack:memory (default random)"},
      {"constraint", true, "C", "distinctInstance or 'memberOf:EXPRESSION' (several: separate with ;)"}};
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("run", p.error().message);
  if (p->help || p->positional.size() != 1) {
    printf("Usage: berth run FAMILY[:REVISION] [flags]\n\nRuns standalone tasks (ECS RunTask).\n\nFlags:\n%s",
           flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  Result<int64_t> count = CountFlag(*p, "count", 1, 1, 10000);
  if (!count) return UsageError("run", count.error().message);
  json::Doc body = json::Doc::Object();
  body.Set("cluster", p->Get("cluster", "default")).Set("taskDefinition", p->positional[0]).Set("count", *count);
  if (p->Has("group")) body.Set("group", p->Get("group"));
  if (p->Has("started-by")) body.Set("startedBy", p->Get("started-by"));
  if (p->Has("strategy")) {
    Result<json::Doc> s = StrategyFlag(p->Get("strategy"));
    if (!s) return UsageError("run", s.error().message);
    body.Set("placementStrategy", s.value());
  }
  if (p->Has("constraint")) {
    Result<json::Doc> c = ConstraintFlag(p->Get("constraint"));
    if (!c) return UsageError("run", c.error().message);
    body.Set("placementConstraints", c.value());
  }
  CallResult r = Call("POST", "/v1/tasks", body.Print());
  if (r.exit) return r.exit;
  if (p->Has("json")) {
    printf("%s\n", r.body.Print().c_str());
  } else {
    PrintTasks(r.body.view().Get("tasks"), false);
  }
  for (json::View f : r.body.view().Get("failures")) {
    fprintf(stderr, "berth run: %s (%s)\n", Str(f, "reason").c_str(), Str(f, "detail").c_str());
  }
  return r.body.view().Get("tasks").Size() == 0 ? kRefused : kOk;
}

// --- berth task and berth ps ---

int TaskCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {kJson,
                                        kCluster,
                                        {"service", true, "NAME", "ls: only this service's tasks"},
                                        {"node", true, "NODE", "ls: only tasks on this node"},
                                        {"all", false, "", "ls: include STOPPED tasks"},
                                        {"reason", true, "TEXT", "stop: why (shown as stoppedReason)"}};
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("task", p.error().message);
  if (p->help || p->positional.empty()) {
    printf(
        "Usage:\n"
        "  berth task ls [--service S] [--node N] [--all]\n"
        "  berth task describe TASK\n"
        "  berth task stop TASK [--reason TEXT]\n\nFlags:\n%s",
        flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  if (sub == "ls" || sub == "list") {
    std::string target = "/v1/tasks?cluster=" + Q(p->Get("cluster", "default"));
    if (p->Has("service")) target += "&service=" + Q(p->Get("service"));
    if (p->Has("node")) target += "&node=" + Q(p->Get("node"));
    if (!p->Has("all")) target += "&desiredStatus=RUNNING";
    CallResult r = Call("GET", target);
    if (r.exit) return r.exit;
    if (p->Has("json"))
      printf("%s\n", r.body.Print().c_str());
    else
      PrintTasks(r.body.view().Get("tasks"), p->Has("all"));
    return kOk;
  }
  if (p->positional.size() != 2) return UsageError("task", sub + " takes one TASK id");
  const std::string& id = p->positional[1];
  CallResult r;
  if (sub == "describe") {
    r = Call("GET", "/v1/tasks/" + Q(id));
  } else if (sub == "stop") {
    json::Doc body = json::Doc::Object();
    if (p->Has("reason")) body.Set("reason", p->Get("reason"));
    r = Call("POST", "/v1/tasks/" + Q(id) + "/stop", body.Print());
  } else {
    return UsageError("task", "unknown subcommand '" + sub + "'");
  }
  if (r.exit) return r.exit;
  if (sub == "describe" && p->Has("json")) {
    printf("%s\n", r.body.view().Get("task").Print().c_str());
  } else if (sub == "describe") {
    PrintTaskDescription(r.body.view().Get("task"));
  } else if (p->Has("json")) {
    printf("%s\n", r.body.Print().c_str());
  } else {
    printf("stopping %s\n", id.c_str());
  }
  return kOk;
}

int PsCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {kJson, kCluster, {"all", false, "", "include STOPPED tasks"}};
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("ps", p.error().message);
  if (p->help) {
    printf("Usage: berth ps [--all] [--cluster NAME]\n\nTasks with their service, node, state and age.\n\nFlags:\n%s",
           flags::FlagsHelp(specs).c_str());
    return kOk;
  }
  std::vector<std::string> rest = {"ls", "--cluster", p->Get("cluster", "default")};
  if (p->Has("all")) rest.push_back("--all");
  if (p->Has("json")) rest.push_back("--json");
  return TaskCommand(rest);
}

// --- berth service ---

int ServiceCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      kJson,
      kCluster,
      {"taskdef", true, "FAMILY[:REV]", "create/update: the task definition"},
      {"count", true, "N", "create/update: desired count"},
      {"strategy", true, "LIST", "e.g. spread:attribute:zone,binpack:memory"},
      {"constraint", true, "C", "distinctInstance or 'memberOf:EXPRESSION' (several: separate with ;)"},
      {"min-healthy", true, "PERCENT", "minimumHealthyPercent (default 100)"},
      {"max-percent", true, "PERCENT", "maximumPercent (default 200)"},
      {"circuit-breaker", false, "", "stop a failing deployment"},
      {"rollback", false, "", "with --circuit-breaker: roll back to the last good deployment"},
      {"force-new-deployment", false, "", "update: replace every task even with the same task definition"},
      {"force", false, "", "rm: delete even with tasks running"},
      {"lb", true, "TG:CONTAINER:PORT",
       "create: register the tasks' CONTAINER:PORT in target group TG (repeatable; berth tg)"},
      {"health-grace", true, "SECONDS", "create, update: healthCheckGracePeriodSeconds"},
      {"publish", true, "LISTEN:PORT[/http|/tcp|/udp]",
       "create: a listener on LISTEN for the container port PORT (repeatable; makes the target group NAME-PORT, "
       "NAME-PORT-udp for /udp, and the load balancer NAME as needed)"},
      {"on", true, "EXPRESSION", "create with --publish: the nodes that listen (memberOf language; default all)"},
      {"health-path", true, "/PATH", "create with --publish: the HTTP health check's path of the groups it makes"},
      {"health-codes", true, "CODES",
       "create with --publish: the HTTP codes that pass their check (200,302 or 200-399)"},
      {"no-health-check", false, "", "create with --publish: the groups it makes have no health check"}};
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("service", p.error().message);
  if (p->help || p->positional.empty()) {
    printf(
        "Usage:\n"
        "  berth service create NAME --taskdef FAMILY[:REV] --count N [placement and deployment flags]\n"
        "  berth service create NAME --taskdef TD --count N --publish 80:8080/http [--on 'attribute:role == edge']\n"
        "  berth service update NAME [--taskdef F[:R]] [--count N] [flags]\n"
        "  berth service scale NAME N\n"
        "  berth service ls | describe NAME | events NAME | rm NAME [--force]\n\nFlags:\n%s",
        flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  std::string cluster = p->Get("cluster", "default");
  if (sub == "ls" || sub == "list") {
    CallResult r = Call("GET", "/v1/services?cluster=" + Q(cluster));
    if (r.exit) return r.exit;
    if (p->Has("json"))
      printf("%s\n", r.body.Print().c_str());
    else
      PrintServices(r.body.view().Get("services"));
    return kOk;
  }
  if (p->positional.size() < 2) return UsageError("service", sub + " needs the service NAME");
  const std::string& name = p->positional[1];
  std::string path = "/v1/services/" + Q(name) + "?cluster=" + Q(cluster);
  CallResult r;
  if (sub == "create" || sub == "update" || sub == "scale") {
    json::Doc body = json::Doc::Object();
    if (sub == "scale") {
      if (p->positional.size() != 3) return UsageError("service", "scale takes NAME and a count");
      Result<uint64_t> n = flags::ParseCount(p->positional[2], "count");
      if (!n) return UsageError("service", n.error().message);
      body.Set("desiredCount", static_cast<int64_t>(*n));
    } else {
      if (sub == "create") {
        if (!p->Has("taskdef")) return UsageError("service", "create needs --taskdef");
        body.Set("cluster", cluster).Set("serviceName", name);
        if (p->Has("lb")) {
          json::Doc lbs = json::Doc::Array();
          for (const std::string& spec : p->GetAll("lb")) {
            size_t a = spec.find(':'), b = a == std::string::npos ? a : spec.find(':', a + 1);
            Result<uint64_t> port = b == std::string::npos ? Result<uint64_t>(Error::Invalid(""))
                                                           : flags::ParseCount(spec.substr(b + 1), "port");
            if (a == 0 || b == std::string::npos || b == a + 1 || !port || *port < 1 || *port > 65535) {
              return UsageError("service", "--lb " + spec + ": expected TG:CONTAINER:PORT, e.g. web:app:8080");
            }
            lbs.Push(json::Doc::Object()
                         .Set("targetGroupName", spec.substr(0, a))
                         .Set("containerName", spec.substr(a + 1, b - a - 1))
                         .Set("containerPort", static_cast<int64_t>(*port)));
          }
          body.Set("loadBalancers", lbs);
        }
      }
      if (p->Has("health-grace")) {
        Result<int64_t> grace = CountFlag(*p, "health-grace", 0, 0, 2147483647);
        if (!grace) return UsageError("service", grace.error().message);
        body.Set("healthCheckGracePeriodSeconds", *grace);
      }
      if (p->Has("taskdef")) body.Set("taskDefinition", p->Get("taskdef"));
      Result<int64_t> count = CountFlag(*p, "count", sub == "create" ? 1 : -1, 0, 1000000);
      if (!count) return UsageError("service", count.error().message);
      if (*count >= 0) body.Set("desiredCount", *count);
      json::Doc dc = json::Doc::Object();
      bool any_dc = false;
      for (auto [flag, field] :
           {std::pair{"min-healthy", "minimumHealthyPercent"}, std::pair{"max-percent", "maximumPercent"}}) {
        Result<int64_t> v = CountFlag(*p, flag, -1, 0, 200);
        if (!v) return UsageError("service", v.error().message);
        if (*v >= 0) {
          dc.Set(field, *v);
          any_dc = true;
        }
      }
      if (p->Has("circuit-breaker") || p->Has("rollback")) {
        dc.Set("deploymentCircuitBreaker",
               json::Doc::Object().Set("enable", p->Has("circuit-breaker")).Set("rollback", p->Has("rollback")));
        any_dc = true;
      }
      if (any_dc) body.Set("deploymentConfiguration", dc);
      if (p->Has("strategy")) {
        Result<json::Doc> s = StrategyFlag(p->Get("strategy"));
        if (!s) return UsageError("service", s.error().message);
        body.Set("placementStrategy", s.value());
      }
      if (p->Has("constraint")) {
        Result<json::Doc> c = ConstraintFlag(p->Get("constraint"));
        if (!c) return UsageError("service", c.error().message);
        body.Set("placementConstraints", c.value());
      }
      if (p->Has("force-new-deployment")) body.Set("forceNewDeployment", true);
    }
    if (p->Has("on") && !p->Has("publish")) return UsageError("service", "--on goes with --publish");
    for (const char* flag : {"health-path", "health-codes", "no-health-check"}) {
      if (p->Has(flag) && !p->Has("publish")) {
        return UsageError("service",
                          std::string("--") + flag + " goes with --publish (berth tg modify changes a group)");
      }
    }
    if ((p->Has("publish")) && sub != "create") return UsageError("service", "--publish is for create");
    // The short way: what --publish needs is made first, and undone if the
    // service cannot be.
    std::vector<std::string> created;
    if (p->Has("publish")) {
      json::Doc published, health;
      if (Status s = PublishHealth(*p, &health); !s) return UsageError("service", s.error().message);
      if (int exit = Publish(cluster, name, p->Get("taskdef"), p->GetAll("publish"), p->Get("on"), health, &published,
                             &created)) {
        return exit;
      }
      json::Doc lbs = json::Doc::Array();
      for (json::View x : body.view().Get("loadBalancers")) lbs.Push(json::Doc::Copy(x));
      for (json::View x : published.view()) lbs.Push(json::Doc::Copy(x));
      body.Set("loadBalancers", lbs);
    }
    r = sub == "create" ? Call("POST", "/v1/services", body.Print()) : Call("PATCH", path, body.Print());
    if (r.exit && !created.empty()) {
      fprintf(stderr, "berth: removing what --publish made for it\n");
      Unpublish(created);
    }
  } else if (sub == "describe") {
    r = Call("GET", path);
  } else if (sub == "events") {
    r = Call("GET", "/v1/services/" + Q(name) + "/events?cluster=" + Q(cluster));
    if (r.exit) return r.exit;
    if (p->Has("json")) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    for (json::View e : r.body.view().Get("events"))
      printf("%s  %s\n", Seconds(e, "createdAt").c_str(), Str(e, "message").c_str());
    return kOk;
  } else if (sub == "rm" || sub == "delete") {
    r = Call("DELETE", path + (p->Has("force") ? "&force=true" : ""));
  } else {
    return UsageError("service", "unknown subcommand '" + sub + "'");
  }
  if (r.exit) return r.exit;
  json::View s = r.body.view().Get("service");
  if (p->Has("json")) {
    printf("%s\n", s.Print().c_str());
    return kOk;
  }
  if (sub == "describe") {
    PrintServiceDescription(s);
    return kOk;
  }
  json::Doc one = json::Doc::Array();
  one.Push(json::Doc::Copy(s));
  PrintServices(one.view());
  return kOk;
}

}  // namespace berth::cli
