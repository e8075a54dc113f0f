// Tasks (ECS vocabulary): one instance of a task definition placed on a node.
// lastStatus moves PROVISIONING → PENDING → RUNNING → STOPPED as the agent
// reports; desiredStatus is what the control plane wants (RUNNING or STOPPED).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::model {

struct NetworkBinding {
  int container_port = 0;
  int host_port = 0;
  bool udp = false;
  std::string bind_ip = "0.0.0.0";
  bool operator==(const NetworkBinding&) const = default;
};

struct ContainerState {
  std::string name;
  std::string last_status = "PENDING";  // PENDING, RUNNING, STOPPED
  std::optional<int64_t> exit_code;
  std::string health = "UNKNOWN";  // HEALTHY, UNHEALTHY, UNKNOWN
  std::string reason;
  std::string runtime_id;  // the Docker container id
  std::vector<NetworkBinding> bindings;
  bool operator==(const ContainerState&) const = default;
};

struct Task {
  std::string id;  // 32 hex digits
  std::string arn;
  std::string cluster;
  std::string node;
  std::string family;
  int64_t revision = 0;
  std::string group;       // "service:web" or "family:web" unless given
  std::string started_by;  // free text, e.g. "berth-cli" or the deployment id
  std::string service;     // empty for standalone tasks
  std::string deployment;  // the service deployment that started it
  std::string desired = "RUNNING";
  std::string last = "PROVISIONING";
  std::string stopped_reason;
  std::string
      stop_code;  // EssentialContainerExited, TaskFailedToStart, ServiceSchedulerInitiated, UserInitiated, NodeLost
  std::string health = "UNKNOWN";
  std::vector<ContainerState> containers;
  int64_t cpu = 0;
  int64_t memory = 0;
  std::vector<std::pair<int, bool>> fixed_ports;  // (host port, udp) asked by the task definition
  int64_t created_ms = 0;
  int64_t started_ms = 0;
  int64_t stopping_ms = 0;
  int64_t stopped_ms = 0;

  bool stopped() const { return last == "STOPPED"; }
  // Healthy for a service: RUNNING and, when its containers have health checks, HEALTHY.
  bool healthy() const {
    return last == "RUNNING" && health != "UNHEALTHY" && (health == "HEALTHY" || !has_health_check);
  }
  bool has_health_check = false;
  // What its node's agent last reported of the health checks of the target
  // groups it is a target of (model/lb.h HealthCheck); none: not checked yet.
  struct TargetHealth {
    std::string target_group;
    std::string state;        // healthy, unhealthy
    std::string reason;       // ELB's code: Target.FailedHealthChecks, Target.Timeout, Target.ResponseCodeMismatch
    std::string description;  // what the last check saw
    int64_t since_ms = 0;
  };
  std::vector<TargetHealth> target_health;
  const TargetHealth* TargetHealthOf(std::string_view target_group) const {
    for (const TargetHealth& h : target_health) {
      if (h.target_group == target_group) return &h;
    }
    return nullptr;
  }
};

// The persisted form of Task::target_health ("" when empty), and back.
std::string TargetHealthText(const Task& t);
void ParseTargetHealth(std::string_view text, Task* t);

std::string TaskArn(std::string_view cluster, std::string_view id);
json::Doc TaskJson(const Task& t);
json::Doc ContainersJson(const Task& t);
// The same as ContainersJson(t).Print(), built by appending (a task row is written
// on every change of the task, so this is on the hot path of placing and reporting).
std::string ContainersText(const Task& t);
// Reads the containers' JSON back (from the tasks table).
Status ParseContainers(json::View v, std::vector<ContainerState>* out);

}  // namespace berth::model
