// The bodies of RunTask (POST /v1/tasks), CreateService (POST /v1/services) and
// UpdateService (PATCH /v1/services/{name}), read with no state. Each field is
// checked on its own and kept with its outcome, so a route still reports the
// first bad field in the order it reads them, with its checks of the state (the
// cluster, the task definition, the task policy) in between.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/json.h"
#include "base/result.h"
#include "model/service.h"
#include "sched/engine.h"

namespace berth::api {

struct RunTaskBody {
  Result<std::string> cluster = std::string("default");
  Result<std::string> task_definition = std::string();  // required
  Result<int64_t> count = int64_t{1};                   // 1-10000
  // Not given: nullopt (the route makes it "family:<family>").
  Result<std::optional<std::string>> group = std::optional<std::string>();
  Result<std::string> started_by = std::string();
  // placementConstraints and placementStrategy as the parts of an engine request
  // (its group left for the route to set).
  Result<sched::Request> placement = sched::Request();
};
RunTaskBody ReadRunTask(json::View body);

// deploymentConfiguration, placementConstraints and placementStrategy of a
// CreateService or UpdateService body (-1 or empty: not given).
struct ServiceSettings {
  int64_t min_healthy_pct = -1;  // 0-100
  int64_t max_pct = -1;          // 100-200
  int breaker = -1;              // 0 or 1
  int rollback = -1;             // 0 or 1
  std::string constraints;       // the JSON array, printed
  std::string strategy;          // the JSON array, printed
};
Result<ServiceSettings> ReadServiceSettings(json::View body);

struct CreateServiceBody {
  Result<std::string> cluster = std::string("default");
  Result<std::string> name = std::string();             // required, a valid service name
  Result<std::string> task_definition = std::string();  // required
  Result<int64_t> desired = int64_t{1};                 // 0-1000000
  Result<ServiceSettings> settings = ServiceSettings();
  // ECS loadBalancers: [{targetGroupArn or targetGroupName, containerName,
  // containerPort}] (target groups by name; the route checks they exist).
  Result<std::vector<model::ServiceLoadBalancer>> load_balancers = std::vector<model::ServiceLoadBalancer>();
  Result<int64_t> health_check_grace_s = int64_t{0};  // healthCheckGracePeriodSeconds, 0-2147483647
};
CreateServiceBody ReadCreateService(json::View body);
// The `loadBalancers` array of a service body (empty when absent).
Result<std::vector<model::ServiceLoadBalancer>> ReadServiceLoadBalancers(json::View body);

struct UpdateServiceBody {
  Result<int64_t> desired = int64_t{-1};  // -1: unchanged; else 0-1000000
  Result<ServiceSettings> settings = ServiceSettings();
  Result<std::string> task_definition = std::string();  // empty: unchanged
  Result<bool> force_new = false;
  Result<int64_t> health_check_grace_s = int64_t{-1};  // -1: unchanged
  Status load_balancers;                               // refused when given: they are set at creation
};
UpdateServiceBody ReadUpdateService(json::View body);

}  // namespace berth::api
