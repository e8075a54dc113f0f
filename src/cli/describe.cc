#include "cli/describe.h"

#include <cstdio>
#include <string_view>
#include <vector>

#include "cli/common.h"
#include "cli/table.h"

namespace berth::cli {

namespace {

std::string Tail(std::string_view s) {
  size_t i = s.rfind('/');
  return std::string(i == std::string_view::npos ? s : s.substr(i + 1));
}

// "Label:" padded to one width, then the value.
void Field(const char* label, const std::string& value) {
  if (value.empty()) return;
  std::string l = std::string(label) + ":";
  printf("%-18s%s\n", l.c_str(), value.c_str());
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string Placement(json::View constraints, json::View strategies) {
  std::string out;
  for (json::View s : strategies) {
    if (!out.empty()) out += ", ";
    out += std::string(s.Get("type").String());
    if (s.Get("field").IsString()) out += "(" + std::string(s.Get("field").String()) + ")";
  }
  if (out.empty()) out = "default (spread(attribute:zone), spread(instanceId))";
  for (json::View c : constraints) {
    out += "; " + std::string(c.Get("type").String());
    if (c.Get("expression").IsString()) out += " " + std::string(c.Get("expression").String());
  }
  return out;
}

int64_t ResourceValue(json::View resources, const char* name) {
  for (json::View r : resources) {
    if (r.Get("name").String() == name) return static_cast<int64_t>(r.Get("integerValue").Number());
  }
  return 0;
}

}  // namespace

std::string ShortTaskId(const std::string& id) { return id.size() > 12 ? id.substr(id.size() - 12) : id; }

void PrintServiceDescription(json::View s, size_t max_events) {
  Field("Service", Str(s, "serviceName") + " (cluster " + Tail(s.Get("clusterArn").String()) + ")");
  Field("Status", Str(s, "status"));
  Field("Task definition", Tail(s.Get("taskDefinition").String()));
  Field("Tasks", Num(s, "desiredCount") + " desired, " + Num(s, "runningCount") + " running, " +
                     Num(s, "pendingCount") + " pending");
  json::View dc = s.Get("deploymentConfiguration");
  json::View breaker = dc.Get("deploymentCircuitBreaker");
  Field("Deployments",
        "minimum healthy " + Num(dc, "minimumHealthyPercent") + "%, maximum " + Num(dc, "maximumPercent") +
            "%, circuit breaker " +
            (breaker.Get("enable").Bool()
                 ? std::string("on") + (breaker.Get("rollback").Bool() ? " with rollback" : " without rollback")
                 : std::string("off")));
  Field("Placement", Placement(s.Get("placementConstraints"), s.Get("placementStrategy")));
  Field("Created", Seconds(s, "createdAt"));
  Field("ARN", Str(s, "serviceArn"));

  printf("\nDeployments\n");
  Table d({"ID", "STATUS", "TASKDEF", "DESIRED", "RUNNING", "PENDING", "FAILED", "ROLLOUT", "UPDATED", "REASON"});
  for (json::View x : s.Get("deployments")) {
    d.Add({Str(x, "id"), Str(x, "status"), Tail(x.Get("taskDefinition").String()), Num(x, "desiredCount"),
           Num(x, "runningCount"), Num(x, "pendingCount"), Num(x, "failedTasks"), OrDash(Str(x, "rolloutState")),
           Seconds(x, "updatedAt"), OrDash(Str(x, "rolloutStateReason"))});
  }
  printf("%s", d.Render().c_str());

  json::View events = s.Get("events");
  size_t total = events.Size();
  printf("\nEvents (newest first%s)\n", total > max_events
                                            ? (", " + std::to_string(max_events) + " of " + std::to_string(total) +
                                               "; 'berth service events' shows all")
                                                  .c_str()
                                            : "");
  size_t shown = 0;
  for (json::View e : events) {
    if (shown++ >= max_events) break;
    printf("%s  %s\n", Seconds(e, "createdAt").c_str(), Str(e, "message").c_str());
  }
  if (total == 0) printf("(none)\n");
}

void PrintTaskDescription(json::View t) {
  std::string id = Str(t, "taskId");
  Field("Task", ShortTaskId(id) + " (" + id + ")");
  Field("Cluster", Tail(t.Get("clusterArn").String()));
  std::string service = Str(t, "serviceName");
  Field("Service", service.empty() ? "- (started by " + OrDash(Str(t, "startedBy")) + ")" : service);
  Field("Task definition", Tail(t.Get("taskDefinitionArn").String()));
  Field("Node", OrDash(Str(t, "nodeId")));
  Field("Status",
        Str(t, "lastStatus") + " (desired " + Str(t, "desiredStatus") + "), health " + Str(t, "healthStatus"));
  Field("Resources", "cpu " + Str(t, "cpu") + ", memory " + Str(t, "memory") + " MiB");
  Field("Created", Seconds(t, "createdAt"));
  if (t.Get("startedAt").IsNumber()) Field("Started", Seconds(t, "startedAt"));
  if (t.Get("stoppedAt").IsNumber()) Field("Stopped", Seconds(t, "stoppedAt"));
  std::string reason = Str(t, "stoppedReason");
  if (!reason.empty()) {
    std::string code = Str(t, "stopCode");
    Field("Stopped reason", reason + (code.empty() ? "" : " (" + code + ")"));
  }
  Field("ARN", Str(t, "taskArn"));
  printf("\nContainers\n");
  Table c({"NAME", "STATUS", "EXIT", "HEALTH", "PORTS", "REASON"});
  for (json::View x : t.Get("containers")) {
    std::string ports;
    for (json::View b : x.Get("networkBindings")) {
      if (!ports.empty()) ports += ",";
      ports += std::string(b.Get("bindIP").String()) + ":" + Num(b, "hostPort") + "->" + Num(b, "containerPort") + "/" +
               std::string(b.Get("protocol").String());
    }
    c.Add({Str(x, "name"), Str(x, "lastStatus"), x.Get("exitCode").IsNumber() ? Num(x, "exitCode") : "-",
           Str(x, "healthStatus"), OrDash(ports), OrDash(Str(x, "reason"))});
  }
  printf("%s", c.Render().c_str());
}

void PrintNodeDescription(json::View n) {
  Field("Node", Str(n, "nodeId") + " (cluster " + Str(n, "cluster") + ")");
  Field("Hostname", Str(n, "hostname"));
  Field("Status", Str(n, "status"));
  Field("Agent", n.Get("agentConnected").Bool() ? "connected, last heard " + Seconds(n, "lastHeartbeatAt")
                                                : "away since " + Seconds(n, "lastHeartbeatAt"));
  json::View reg = n.Get("registeredResources"), rem = n.Get("remainingResources");
  Field("CPU",
        std::to_string(ResourceValue(rem, "CPU")) + " free of " + std::to_string(ResourceValue(reg, "CPU")) + " units");
  Field("Memory", std::to_string(ResourceValue(rem, "MEMORY")) + " free of " +
                      std::to_string(ResourceValue(reg, "MEMORY")) + " MiB");
  Field("Tasks", Num(n, "runningTasksCount") + " running, " + Num(n, "pendingTasksCount") + " pending");
  std::string attrs;
  for (json::View a : n.Get("attributes")) {
    if (!attrs.empty()) attrs += ", ";
    attrs += std::string(a.Get("name").String()) + "=" + std::string(a.Get("value").String());
  }
  Field("Attributes", OrDash(attrs));
  Field("Registered", Seconds(n, "registeredAt"));
  Field("ARN", Str(n, "containerInstanceArn"));
}

}  // namespace berth::cli
