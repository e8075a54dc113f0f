#include "api/bodies.h"

#include "control/scheduler.h"
#include "model/lb.h"
#include "model/service.h"

namespace berth::api {

RunTaskBody ReadRunTask(json::View v) {
  RunTaskBody b;
  b.cluster = json::OptionalString(v, "cluster", "cluster", "default");
  b.task_definition = json::RequireString(v, "taskDefinition", "taskDefinition");
  b.count = json::OptionalInt(v, "count", "count", 1);
  if (b.count && (*b.count < 1 || *b.count > 10000)) b.count = Error::Invalid("count: must be 1-10000");
  json::View group = v.Get("group");
  if (group.valid() && !group.IsNull()) {
    Result<std::string> g = json::OptionalString(v, "group", "group");
    b.group = g ? Result<std::optional<std::string>>(std::move(g.value())) : g.take_error();
  }
  b.started_by = json::OptionalString(v, "startedBy", "startedBy", "");
  sched::Request req;
  if (Status s = control::ParsePlacement(v.Get("placementConstraints"), v.Get("placementStrategy"), "", &req); !s) {
    b.placement = s.take_error();
  } else {
    b.placement = std::move(req);
  }
  return b;
}

Result<ServiceSettings> ReadServiceSettings(json::View v) {
  ServiceSettings out;
  json::View dc = v.Get("deploymentConfiguration");
  if (dc.valid() && !dc.IsNull()) {
    if (!dc.IsObject()) return Error::Invalid("deploymentConfiguration: must be an object");
    Result<int64_t> mn =
        json::OptionalInt(dc, "minimumHealthyPercent", "deploymentConfiguration.minimumHealthyPercent", -1);
    if (!mn) return mn.take_error();
    Result<int64_t> mx = json::OptionalInt(dc, "maximumPercent", "deploymentConfiguration.maximumPercent", -1);
    if (!mx) return mx.take_error();
    if (*mn != -1 && (*mn < 0 || *mn > 100))
      return Error::Invalid("deploymentConfiguration.minimumHealthyPercent: must be 0-100");
    if (*mx != -1 && (*mx < 100 || *mx > 200))
      return Error::Invalid("deploymentConfiguration.maximumPercent: must be 100-200");
    out.min_healthy_pct = *mn;
    out.max_pct = *mx;
    json::View cb = dc.Get("deploymentCircuitBreaker");
    if (cb.valid() && !cb.IsNull()) {
      Result<bool> en =
          json::OptionalBool(cb, "enable", "deploymentConfiguration.deploymentCircuitBreaker.enable", false);
      if (!en) return en.take_error();
      Result<bool> rb =
          json::OptionalBool(cb, "rollback", "deploymentConfiguration.deploymentCircuitBreaker.rollback", false);
      if (!rb) return rb.take_error();
      out.breaker = *en ? 1 : 0;
      out.rollback = *rb ? 1 : 0;
    }
  }
  sched::Request probe;
  if (Status st = control::ParsePlacement(v.Get("placementConstraints"), v.Get("placementStrategy"), "", &probe); !st) {
    return st.take_error();
  }
  if (v.Get("placementConstraints").IsArray()) out.constraints = v.Get("placementConstraints").Print();
  if (v.Get("placementStrategy").IsArray()) out.strategy = v.Get("placementStrategy").Print();
  return out;
}

Result<std::vector<model::ServiceLoadBalancer>> ReadServiceLoadBalancers(json::View v) {
  std::vector<model::ServiceLoadBalancer> out;
  json::View list = v.Get("loadBalancers");
  if (!list.valid() || list.IsNull()) return out;
  if (!list.IsArray()) return Error::Invalid("loadBalancers: must be an array");
  size_t i = 0;
  for (json::View x : list) {
    std::string field = "loadBalancers[" + std::to_string(i++) + "]";
    if (!x.IsObject()) return Error::Invalid(field + ": must be an object");
    if (x.Get("loadBalancerName").valid()) {
      return Error::Invalid(field +
                            ".loadBalancerName: Classic Load Balancers are not supported; name a target group "
                            "(targetGroupArn or targetGroupName)");
    }
    Result<std::string> arn = json::OptionalString(x, "targetGroupArn", field + ".targetGroupArn");
    if (!arn) return arn.take_error();
    Result<std::string> name = json::OptionalString(x, "targetGroupName", field + ".targetGroupName");
    if (!name) return name.take_error();
    model::ServiceLoadBalancer slb;
    if (!arn->empty()) {
      slb.target_group = model::TargetGroupNameFromArn(*arn);
      if (slb.target_group.empty()) {
        return Error::Invalid(field +
                              ".targetGroupArn: not a target group ARN (arn:aws:elasticloadbalancing:...:"
                              "targetgroup/NAME/ID): " +
                              arn->substr(0, 200));
      }
    } else if (!name->empty()) {
      slb.target_group = std::move(name.value());
    } else {
      return Error::Invalid(field + ": needs targetGroupArn or targetGroupName");
    }
    if (Status s = model::ValidateLbName(slb.target_group, field + ".targetGroupArn"); !s) return s.take_error();
    Result<std::string> container = json::RequireString(x, "containerName", field + ".containerName");
    if (!container) return container.take_error();
    slb.container = std::move(container.value());
    Result<int64_t> port = json::OptionalInt(x, "containerPort", field + ".containerPort", 0);
    if (!port) return port.take_error();
    if (*port < 1 || *port > 65535) return Error::Invalid(field + ".containerPort: must be 1-65535");
    slb.container_port = *port;
    out.push_back(std::move(slb));
  }
  return out;
}

CreateServiceBody ReadCreateService(json::View v) {
  CreateServiceBody b;
  b.cluster = json::OptionalString(v, "cluster", "cluster", "default");
  b.name = json::RequireString(v, "serviceName", "serviceName");
  if (b.name) {
    if (Status st = model::ValidateServiceName(*b.name); !st) b.name = st.take_error();
  }
  b.task_definition = json::RequireString(v, "taskDefinition", "taskDefinition");
  b.desired = json::OptionalInt(v, "desiredCount", "desiredCount", 1);
  if (b.desired && (*b.desired < 0 || *b.desired > 1000000)) {
    b.desired = Error::Invalid("desiredCount: must be 0-1000000");
  }
  b.settings = ReadServiceSettings(v);
  b.load_balancers = ReadServiceLoadBalancers(v);
  b.health_check_grace_s = json::OptionalInt(v, "healthCheckGracePeriodSeconds", "healthCheckGracePeriodSeconds", 0);
  if (b.health_check_grace_s && (*b.health_check_grace_s < 0 || *b.health_check_grace_s > 2147483647)) {
    b.health_check_grace_s = Error::Invalid("healthCheckGracePeriodSeconds: must be 0-2147483647");
  }
  return b;
}

UpdateServiceBody ReadUpdateService(json::View v) {
  UpdateServiceBody b;
  b.desired = json::OptionalInt(v, "desiredCount", "desiredCount", -1);
  if (b.desired && v.Get("desiredCount").valid() && (*b.desired < 0 || *b.desired > 1000000)) {
    b.desired = Error::Invalid("desiredCount: must be 0-1000000");
  }
  b.settings = ReadServiceSettings(v);
  b.task_definition = json::OptionalString(v, "taskDefinition", "taskDefinition");
  b.force_new = json::OptionalBool(v, "forceNewDeployment", "forceNewDeployment", false);
  if (v.Get("healthCheckGracePeriodSeconds").valid()) {
    b.health_check_grace_s = json::OptionalInt(v, "healthCheckGracePeriodSeconds", "healthCheckGracePeriodSeconds", -1);
    if (b.health_check_grace_s && (*b.health_check_grace_s < 0 || *b.health_check_grace_s > 2147483647)) {
      b.health_check_grace_s = Error::Invalid("healthCheckGracePeriodSeconds: must be 0-2147483647");
    }
  }
  // ECS rolls a new deployment for changed load balancers; berth keeps them on
  // the service, as created, so a change is refused rather than ignored.
  if (json::View lbs = v.Get("loadBalancers"); lbs.valid() && !lbs.IsNull()) {
    b.load_balancers = Error::Invalid(
        "loadBalancers: a service's load balancers are set when it is created and cannot be changed by an update "
        "(create a service with the new ones, then delete this one)");
  }
  return b;
}

}  // namespace berth::api
