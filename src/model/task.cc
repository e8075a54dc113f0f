#include "model/task.h"

#include <cstdint>

#include "model/cluster.h"
#include "model/taskdef.h"

namespace berth::model {

std::string TaskArn(std::string_view cluster, std::string_view id) {
  std::string arn = "arn:aws:ecs:";
  arn.append(kRegion).append(":").append(kAccount).append(":task/").append(cluster).append("/").append(id);
  return arn;
}

json::Doc ContainersJson(const Task& t) {
  json::Doc list = json::Doc::Array();
  for (const ContainerState& c : t.containers) {
    json::Doc d = json::Doc::Object();
    d.Set("name", c.name).Set("lastStatus", c.last_status).Set("healthStatus", c.health);
    if (c.exit_code) d.Set("exitCode", *c.exit_code);
    if (!c.reason.empty()) d.Set("reason", c.reason);
    if (!c.runtime_id.empty()) d.Set("runtimeId", c.runtime_id);
    json::Doc b = json::Doc::Array();
    for (const NetworkBinding& nb : c.bindings) {
      b.Push(json::Doc::Object()
                 .Set("bindIP", nb.bind_ip)
                 .Set("containerPort", nb.container_port)
                 .Set("hostPort", nb.host_port)
                 .Set("protocol", nb.udp ? "udp" : "tcp"));
    }
    d.Set("networkBindings", b);
    list.Push(d);
  }
  return list;
}

std::string ContainersText(const Task& t) {
  std::string out = "[";
  for (const ContainerState& c : t.containers) {
    if (out.size() > 1) out.push_back(',');
    out.append("{\"name\":");
    json::AppendQuoted(&out, c.name);
    out.append(",\"lastStatus\":");
    json::AppendQuoted(&out, c.last_status);
    out.append(",\"healthStatus\":");
    json::AppendQuoted(&out, c.health);
    if (c.exit_code) out.append(",\"exitCode\":").append(std::to_string(*c.exit_code));
    if (!c.reason.empty()) {
      out.append(",\"reason\":");
      json::AppendQuoted(&out, c.reason);
    }
    if (!c.runtime_id.empty()) {
      out.append(",\"runtimeId\":");
      json::AppendQuoted(&out, c.runtime_id);
    }
    out.append(",\"networkBindings\":[");
    for (size_t i = 0; i < c.bindings.size(); i++) {
      const NetworkBinding& nb = c.bindings[i];
      out.append(i ? ",{\"bindIP\":" : "{\"bindIP\":");
      json::AppendQuoted(&out, nb.bind_ip);
      out.append(",\"containerPort\":").append(std::to_string(nb.container_port));
      out.append(",\"hostPort\":").append(std::to_string(nb.host_port));
      out.append(nb.udp ? ",\"protocol\":\"udp\"}" : ",\"protocol\":\"tcp\"}");
    }
    out.append("]}");
  }
  out.push_back(']');
  return out;
}

Status ParseContainers(json::View v, std::vector<ContainerState>* out) {
  out->clear();
  if (!v.IsArray()) return Error::Invalid("containers: must be an array");
  size_t i = 0;
  for (json::View c : v) {
    std::string path = "containers[" + std::to_string(i++) + "]";
    if (!c.IsObject()) return Error::Invalid(path + ": must be an object");
    ContainerState s;
    Result<std::string> name = json::RequireString(c, "name", path + ".name");
    if (!name) return name.take_error();
    s.name = *name;
    Result<std::string> last = json::OptionalString(c, "lastStatus", path + ".lastStatus", "PENDING");
    if (!last) return last.take_error();
    if (*last != "PENDING" && *last != "RUNNING" && *last != "STOPPED") {
      return Error::Invalid(path + ".lastStatus: must be PENDING, RUNNING or STOPPED");
    }
    s.last_status = *last;
    // An exit code out of int's range is no exit code (never a cast of it).
    if (json::View code = c.Get("exitCode");
        code.IsNumber() && code.Number() >= INT32_MIN && code.Number() <= INT32_MAX) {
      s.exit_code = static_cast<int64_t>(code.Number());
    }
    Result<std::string> health = json::OptionalString(c, "healthStatus", path + ".healthStatus", "UNKNOWN");
    if (!health) return health.take_error();
    if (*health != "HEALTHY" && *health != "UNHEALTHY" && *health != "UNKNOWN") {
      return Error::Invalid(path + ".healthStatus: must be HEALTHY, UNHEALTHY or UNKNOWN");
    }
    s.health = *health;
    Result<std::string> reason = json::OptionalString(c, "reason", path + ".reason");
    if (!reason) return reason.take_error();
    s.reason = reason->substr(0, 1024);
    Result<std::string> rid = json::OptionalString(c, "runtimeId", path + ".runtimeId");
    if (!rid) return rid.take_error();
    s.runtime_id = rid->substr(0, 128);
    size_t k = 0;
    for (json::View b : c.Get("networkBindings")) {
      std::string bp = path + ".networkBindings[" + std::to_string(k++) + "]";
      NetworkBinding nb;
      Result<int64_t> cp = json::OptionalInt(b, "containerPort", bp + ".containerPort", 0);
      Result<int64_t> hp = json::OptionalInt(b, "hostPort", bp + ".hostPort", 0);
      if (!cp) return cp.take_error();
      if (!hp) return hp.take_error();
      if (*cp < 0 || *cp > 65535 || *hp < 0 || *hp > 65535) return Error::Invalid(bp + ": ports must be 0-65535");
      nb.container_port = static_cast<int>(*cp);
      nb.host_port = static_cast<int>(*hp);
      nb.udp = b.Get("protocol").String() == "udp";
      std::string ip(b.Get("bindIP").String());
      if (!ip.empty()) nb.bind_ip = ip.substr(0, 64);
      s.bindings.push_back(nb);
    }
    out->push_back(std::move(s));
  }
  return {};
}

json::Doc TaskJson(const Task& t) {
  json::Doc d = json::Doc::Object();
  d.Set("taskArn", t.arn)
      .Set("taskId", t.id)
      .Set("clusterArn", ClusterArn(t.cluster))
      .Set("containerInstanceArn", t.node.empty()
                                       ? std::string()
                                       : "arn:aws:ecs:" + std::string(kRegion) + ":" + std::string(kAccount) +
                                             ":container-instance/" + t.cluster + "/" + t.node)
      .Set("nodeId", t.node)
      .Set("taskDefinitionArn", TaskDefinitionArn(t.family, t.revision))
      .Set("group", t.group)
      .Set("desiredStatus", t.desired)
      .Set("lastStatus", t.last)
      .Set("healthStatus", t.health)
      .Set("cpu", std::to_string(t.cpu))
      .Set("memory", std::to_string(t.memory))
      .Set("launchType", "EC2")
      .Set("containers", ContainersJson(t))
      .Set("createdAt", static_cast<double>(t.created_ms) / 1000.0);
  if (!t.started_by.empty()) d.Set("startedBy", t.started_by);
  if (!t.service.empty()) d.Set("serviceName", t.service);
  if (!t.deployment.empty()) d.Set("deploymentId", t.deployment);
  if (t.started_ms) d.Set("startedAt", static_cast<double>(t.started_ms) / 1000.0);
  if (t.stopping_ms) d.Set("stoppingAt", static_cast<double>(t.stopping_ms) / 1000.0);
  if (t.stopped_ms) d.Set("stoppedAt", static_cast<double>(t.stopped_ms) / 1000.0);
  if (!t.stopped_reason.empty()) d.Set("stoppedReason", t.stopped_reason);
  if (!t.stop_code.empty()) d.Set("stopCode", t.stop_code);
  if (!t.target_health.empty()) {
    json::Doc list = json::Doc::Array();
    for (const Task::TargetHealth& h : t.target_health) {
      list.Push(json::Doc::Object()
                    .Set("targetGroup", h.target_group)
                    .Set("state", h.state)
                    .Set("reason", h.reason)
                    .Set("description", h.description)
                    .Set("since", static_cast<double>(h.since_ms) / 1000.0));
    }
    d.Set("targetHealth", list);
  }
  return d;
}

std::string TargetHealthText(const Task& t) {
  if (t.target_health.empty()) return {};
  json::Doc list = json::Doc::Array();
  for (const Task::TargetHealth& h : t.target_health) {
    list.Push(json::Doc::Object()
                  .Set("tg", h.target_group)
                  .Set("state", h.state)
                  .Set("reason", h.reason)
                  .Set("description", h.description)
                  .Set("sinceMs", h.since_ms));
  }
  return list.Print();
}

void ParseTargetHealth(std::string_view text, Task* t) {
  t->target_health.clear();
  if (text.empty()) return;
  Result<json::Doc> doc = json::Doc::Parse(text);
  if (!doc) return;
  for (json::View h : doc->view()) {
    t->target_health.push_back({std::string(h.Get("tg").String()), std::string(h.Get("state").String()),
                                std::string(h.Get("reason").String()), std::string(h.Get("description").String()),
                                static_cast<int64_t>(h.Get("sinceMs").Number())});
  }
}

}  // namespace berth::model
