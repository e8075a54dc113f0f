// Clusters (ECS vocabulary): a named group of nodes, services and tasks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/result.h"
#include "model/policy.h"

namespace berth::model {

// The region and account in the ARNs Berth makes, so they read like ECS's.
inline constexpr std::string_view kRegion = "local";
inline constexpr std::string_view kAccount = "000000000000";

struct Cluster {
  std::string name;
  std::string arn;
  std::string status = "ACTIVE";
  int64_t created_ms = 0;
  TaskPolicy policy;        // what its tasks may ask of their hosts
  std::string policy_json;  // policy.ToJson() printed (sent to agents)
  // Kept up to date by the parts of the state that own nodes, services and tasks.
  int64_t registered_nodes = 0;
  int64_t running_tasks = 0;
  int64_t pending_tasks = 0;
  int64_t active_services = 0;
};

std::string ClusterArn(std::string_view name);
// ECS rule: 1-255 letters, digits, hyphens and underscores.
Status ValidateClusterName(std::string_view name, std::string_view field = "clusterName");
// The error for a name with a character its rule refuses: "FIELD: RULE; 'x' at
// position N is not allowed" (a control or non-ASCII byte shown by its value).
Error BadNameChar(std::string_view field, std::string_view rule, std::string_view name, size_t at);
// The ECS `Cluster` JSON shape.
json::Doc ClusterJson(const Cluster& c);

}  // namespace berth::model
