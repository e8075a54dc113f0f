// Services (ECS vocabulary): keep `desiredCount` copies of a task definition
// running, replacing what stops, and roll out a new task definition in
// deployments bounded by minimumHealthyPercent and maximumPercent, with an
// optional circuit breaker that rolls back a deployment that keeps failing.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::model {

struct Deployment {
  std::string id;  // "ecs-svc/<digits>"
  std::string family;
  int64_t revision = 0;
  std::string status = "PRIMARY";             // PRIMARY, ACTIVE (being replaced), INACTIVE
  std::string rollout_state = "IN_PROGRESS";  // IN_PROGRESS, COMPLETED, FAILED
  std::string rollout_reason;
  int64_t failed_tasks = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

struct ServiceEvent {
  std::string id;
  int64_t at_ms = 0;
  std::string message;
};

// A target group the service's tasks register in (ECS `loadBalancers`): the
// container and its port whose host port the targets are.
struct ServiceLoadBalancer {
  std::string target_group;  // its name in the service's cluster
  std::string container;
  int64_t container_port = 0;
};

struct Service {
  std::string name;
  std::string cluster;
  std::string arn;
  std::string status = "ACTIVE";  // ACTIVE, DRAINING (being deleted)
  int64_t desired = 0;
  int64_t min_healthy_pct = 100;
  int64_t max_pct = 200;
  bool breaker = false;
  bool rollback = false;
  std::string constraints = "[]";       // ECS placementConstraints JSON
  std::string strategy = "[]";          // ECS placementStrategy JSON
  std::vector<Deployment> deployments;  // [0] is PRIMARY
  std::vector<ServiceLoadBalancer> load_balancers;
  int64_t health_check_grace_s = 0;  // ECS healthCheckGracePeriodSeconds
  int64_t created_ms = 0;

  // Not persisted: the controller's recent messages, newest first.
  std::deque<ServiceEvent> events;

  const Deployment& primary() const { return deployments.front(); }
  std::string group() const { return "service:" + name; }
};

std::string ServiceArn(std::string_view cluster, std::string_view name);
// ECS: service names are 1-255 letters, digits, hyphens and underscores.
Status ValidateServiceName(std::string_view name);
// The circuit breaker's threshold: half the desired count, at least 3, at most 200.
int64_t BreakerThreshold(int64_t desired);

// The persisted form (everything but events) and back.
std::string ServiceDoc(const Service& s);
Result<Service> ParseServiceDoc(std::string_view text);

// The ECS `Service` JSON, with the counts the caller knows.
struct DeploymentCounts {
  int64_t running = 0;
  int64_t pending = 0;
};
json::Doc ServiceJson(const Service& s, const std::vector<DeploymentCounts>& counts);

}  // namespace berth::model
