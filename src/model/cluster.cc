#include "model/cluster.h"

namespace berth::model {

std::string ClusterArn(std::string_view name) {
  std::string arn = "arn:aws:ecs:";
  arn.append(kRegion).append(":").append(kAccount).append(":cluster/").append(name);
  return arn;
}

Status ValidateClusterName(std::string_view name, std::string_view field) {
  const std::string rule = "must be 1-255 characters of letters, digits, hyphens (-) and underscores (_)";
  if (name.empty() || name.size() > 255) {
    return Error::Invalid(std::string(field) + ": " + rule + "; got " + std::to_string(name.size()) + " characters");
  }
  for (size_t i = 0; i < name.size(); i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return BadNameChar(field, rule, name, i);
  }
  return {};
}

Error BadNameChar(std::string_view field, std::string_view rule, std::string_view name, size_t at) {
  auto c = static_cast<unsigned char>(name[at]);
  std::string shown = c < 0x20 || c >= 0x7f ? "byte " + std::to_string(c) : "'" + std::string(1, name[at]) + "'";
  return Error::Invalid(std::string(field) + ": " + std::string(rule) + "; " + shown + " at position " +
                        std::to_string(at) + " is not allowed");
}

json::Doc ClusterJson(const Cluster& c) {
  json::Doc d = json::Doc::Object();
  d.Set("clusterArn", c.arn)
      .Set("clusterName", c.name)
      .Set("status", c.status)
      .Set("registeredContainerInstancesCount", c.registered_nodes)
      .Set("runningTasksCount", c.running_tasks)
      .Set("pendingTasksCount", c.pending_tasks)
      .Set("activeServicesCount", c.active_services)
      .Set("statistics", json::Doc::Array())
      .Set("tags", json::Doc::Array())
      .Set("settings", std::move(json::Doc::Array().Push(
                           std::move(json::Doc::Object().Set("name", "containerInsights").Set("value", "disabled")))))
      .Set("capacityProviders", json::Doc::Array())
      .Set("defaultCapacityProviderStrategy", json::Doc::Array())
      .Set("taskPolicy", c.policy.ToJson());
  return d;
}

}  // namespace berth::model
