// From an ECS task definition to Docker: the body of POST /containers/create for
// each container definition, the labels that let an agent find and adopt what it
// made, and the start order that `dependsOn` asks for. Pure functions: no I/O.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::agent {

// Labels on every container and network berth makes.
inline constexpr const char* kLabelCluster = "berth.cluster";
inline constexpr const char* kLabelNode = "berth.node";
inline constexpr const char* kLabelTask = "berth.task";
inline constexpr const char* kLabelService = "berth.service";
inline constexpr const char* kLabelContainer = "berth.container";
inline constexpr const char* kLabelTaskDefinition = "berth.task-definition";
inline constexpr const char* kLabelEssential = "berth.essential";

// What a task is, as the desired-state stream says.
struct TaskIdentity {
  std::string id;
  std::string cluster;
  std::string node;
  std::string service;          // empty for a standalone task
  std::string task_definition;  // "family:revision"
};

// One container definition, read from the (already validated) task definition.
struct ContainerPlan {
  std::string name;         // the container definition's name
  std::string docker_name;  // berth-<task>-<name>
  std::string image;
  bool essential = true;
  bool has_health_check = false;
  int64_t stop_timeout_s = 30;
  // dependsOn: (container name, condition START|COMPLETE|SUCCESS|HEALTHY)
  std::vector<std::pair<std::string, std::string>> depends_on;
  std::string create_body;  // JSON for POST /containers/create
};

struct TaskPlan {
  std::vector<ContainerPlan> containers;
  std::string network_mode;  // "bridge", "host", "none" or "awsvpc" (treated as bridge)
  bool own_network = false;  // a per-task bridge network (tasks of several containers)
  std::string network_name;  // berth-<task> when own_network
};

// A secret's value as the server sent it with the task (model/secret.h).
struct SecretValue {
  std::string container;
  std::string name;  // the variable, or the file under /run/secrets
  std::string value;
  bool file = false;
};

// Where secret files are mounted in a container.
inline constexpr const char* kSecretsMountPath = "/run/secrets";

struct PlanOptions {
  int64_t default_stop_timeout_s = 30;
  std::string log_max_size = "10m";  // json-file rotation, unless logConfiguration says otherwise
  std::string log_max_files = "3";
  // The values of the task's secrets: each env one is added to its container's
  // Env; the host directory (on a tmpfs) holding a container's secret files is
  // bound read-only at /run/secrets.
  std::vector<SecretValue> secrets;
  std::map<std::string, std::string> secret_dirs;  // container → host directory
};

// Builds the plan for `task` from its task definition `td` (the ECS JSON the
// server sent). Fails with the field path when the definition cannot be run
// (e.g. a dependsOn naming no container, or a cycle).
Result<TaskPlan> PlanTask(const TaskIdentity& task, json::View td, const PlanOptions& options = {});

// The Docker container name for a task's container.
std::string DockerName(std::string_view task_id, std::string_view container);

}  // namespace berth::agent
