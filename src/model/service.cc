#include "model/service.h"

#include <algorithm>

#include "model/cluster.h"
#include "model/lb.h"
#include "model/taskdef.h"

namespace berth::model {

std::string ServiceArn(std::string_view cluster, std::string_view name) {
  std::string arn = "arn:aws:ecs:";
  arn.append(kRegion).append(":").append(kAccount).append(":service/").append(cluster).append("/").append(name);
  return arn;
}

Status ValidateServiceName(std::string_view name) { return ValidateClusterName(name, "serviceName"); }

int64_t BreakerThreshold(int64_t desired) {
  int64_t half = (desired + 1) / 2;
  return std::min<int64_t>(200, std::max<int64_t>(3, half));
}

std::string ServiceDoc(const Service& s) {
  json::Doc deps = json::Doc::Array();
  for (const Deployment& d : s.deployments) {
    json::Doc x = json::Doc::Object();
    x.Set("id", d.id)
        .Set("family", d.family)
        .Set("revision", d.revision)
        .Set("status", d.status)
        .Set("rolloutState", d.rollout_state)
        .Set("rolloutStateReason", d.rollout_reason)
        .Set("failedTasks", d.failed_tasks)
        .Set("createdMs", d.created_ms)
        .Set("updatedMs", d.updated_ms);
    deps.Push(x);
  }
  json::Doc d = json::Doc::Object();
  d.Set("name", s.name)
      .Set("cluster", s.cluster)
      .Set("status", s.status)
      .Set("desired", s.desired)
      .Set("minHealthyPercent", s.min_healthy_pct)
      .Set("maxPercent", s.max_pct)
      .Set("breaker", s.breaker)
      .Set("rollback", s.rollback)
      .Set("constraints", s.constraints)
      .Set("strategy", s.strategy)
      .Set("createdMs", s.created_ms)
      .Set("deployments", deps);
  if (!s.load_balancers.empty()) {
    json::Doc lbs = json::Doc::Array();
    for (const ServiceLoadBalancer& l : s.load_balancers) {
      lbs.Push(json::Doc::Object()
                   .Set("targetGroup", l.target_group)
                   .Set("containerName", l.container)
                   .Set("containerPort", l.container_port));
    }
    d.Set("loadBalancers", lbs);
  }
  if (s.health_check_grace_s > 0) d.Set("healthCheckGracePeriodSeconds", s.health_check_grace_s);
  return d.Print();
}

Result<Service> ParseServiceDoc(std::string_view text) {
  Result<json::Doc> doc = json::Doc::Parse(text);
  if (!doc) return doc.take_error();
  json::View v = doc->view();
  Service s;
  s.name = std::string(v.Get("name").String());
  s.cluster = std::string(v.Get("cluster").String());
  s.arn = ServiceArn(s.cluster, s.name);
  s.status = std::string(v.Get("status").String());
  s.desired = static_cast<int64_t>(v.Get("desired").Number());
  s.min_healthy_pct = static_cast<int64_t>(v.Get("minHealthyPercent").Number());
  s.max_pct = static_cast<int64_t>(v.Get("maxPercent").Number());
  s.breaker = v.Get("breaker").Bool();
  s.rollback = v.Get("rollback").Bool();
  s.constraints = std::string(v.Get("constraints").String());
  s.strategy = std::string(v.Get("strategy").String());
  s.created_ms = static_cast<int64_t>(v.Get("createdMs").Number());
  for (json::View x : v.Get("loadBalancers")) {
    ServiceLoadBalancer l;
    l.target_group = std::string(x.Get("targetGroup").String());
    l.container = std::string(x.Get("containerName").String());
    l.container_port = static_cast<int64_t>(x.Get("containerPort").Number());
    s.load_balancers.push_back(std::move(l));
  }
  s.health_check_grace_s = static_cast<int64_t>(v.Get("healthCheckGracePeriodSeconds").Number());
  for (json::View x : v.Get("deployments")) {
    Deployment d;
    d.id = std::string(x.Get("id").String());
    d.family = std::string(x.Get("family").String());
    d.revision = static_cast<int64_t>(x.Get("revision").Number());
    d.status = std::string(x.Get("status").String());
    d.rollout_state = std::string(x.Get("rolloutState").String());
    d.rollout_reason = std::string(x.Get("rolloutStateReason").String());
    d.failed_tasks = static_cast<int64_t>(x.Get("failedTasks").Number());
    d.created_ms = static_cast<int64_t>(x.Get("createdMs").Number());
    d.updated_ms = static_cast<int64_t>(x.Get("updatedMs").Number());
    s.deployments.push_back(std::move(d));
  }
  if (s.name.empty() || s.deployments.empty()) return Error::Internal("service record without a name or deployment");
  return s;
}

json::Doc ServiceJson(const Service& s, const std::vector<DeploymentCounts>& counts) {
  int64_t running = 0, pending = 0;
  json::Doc deps = json::Doc::Array();
  for (size_t i = 0; i < s.deployments.size(); i++) {
    const Deployment& d = s.deployments[i];
    DeploymentCounts c = i < counts.size() ? counts[i] : DeploymentCounts();
    running += c.running;
    pending += c.pending;
    json::Doc x = json::Doc::Object();
    x.Set("id", d.id)
        .Set("status", d.status)
        .Set("taskDefinition", TaskDefinitionArn(d.family, d.revision))
        .Set("desiredCount", i == 0 ? s.desired : 0)
        .Set("runningCount", c.running)
        .Set("pendingCount", c.pending)
        .Set("failedTasks", d.failed_tasks)
        .Set("rolloutState", d.rollout_state)
        .Set("createdAt", static_cast<double>(d.created_ms) / 1000.0)
        .Set("updatedAt", static_cast<double>(d.updated_ms) / 1000.0)
        .Set("launchType", "EC2");
    if (!d.rollout_reason.empty()) x.Set("rolloutStateReason", d.rollout_reason);
    deps.Push(x);
  }
  json::Doc events = json::Doc::Array();
  for (const ServiceEvent& e : s.events) {
    events.Push(json::Doc::Object()
                    .Set("id", e.id)
                    .Set("createdAt", static_cast<double>(e.at_ms) / 1000.0)
                    .Set("message", e.message));
  }
  json::Doc cb = json::Doc::Object();
  cb.Set("enable", s.breaker).Set("rollback", s.rollback);
  json::Doc dc = json::Doc::Object();
  dc.Set("minimumHealthyPercent", s.min_healthy_pct)
      .Set("maximumPercent", s.max_pct)
      .Set("deploymentCircuitBreaker", cb);
  Result<json::Doc> constraints = json::Doc::Parse(s.constraints);
  Result<json::Doc> strategy = json::Doc::Parse(s.strategy);
  json::Doc d = json::Doc::Object();
  d.Set("serviceArn", s.arn)
      .Set("serviceName", s.name)
      .Set("clusterArn", ClusterArn(s.cluster))
      .Set("status", s.status)
      .Set("desiredCount", s.desired)
      .Set("runningCount", running)
      .Set("pendingCount", pending)
      .Set("launchType", "EC2")
      .Set("schedulingStrategy", "REPLICA")
      .Set("taskDefinition", TaskDefinitionArn(s.primary().family, s.primary().revision))
      .Set("deploymentConfiguration", dc)
      .Set("deployments", deps)
      .Set("events", events)
      .Set("placementConstraints", constraints ? std::move(constraints.value()) : json::Doc::Array())
      .Set("placementStrategy", strategy ? std::move(strategy.value()) : json::Doc::Array())
      .Set("createdAt", static_cast<double>(s.created_ms) / 1000.0);
  json::Doc lbs = json::Doc::Array();
  for (const ServiceLoadBalancer& l : s.load_balancers) {
    lbs.Push(json::Doc::Object()
                 .Set("targetGroupArn", TargetGroupArn(s.cluster, l.target_group))
                 .Set("targetGroupName", l.target_group)
                 .Set("containerName", l.container)
                 .Set("containerPort", l.container_port));
  }
  d.Set("loadBalancers", lbs).Set("healthCheckGracePeriodSeconds", s.health_check_grace_s);
  return d;
}

}  // namespace berth::model
