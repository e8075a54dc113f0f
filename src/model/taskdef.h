// Task definitions (ECS vocabulary): a family's numbered revisions, each a list of
// container definitions and task-level settings. A registration is validated and
// normalised here; everything else in the document, including fields Berth does
// not know, is kept and returned as given (as ECS does).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "model/secret.h"

namespace berth::model {

struct PortMapping {
  int container_port = 0;
  int host_port = 0;  // 0: dynamic
  bool udp = false;
};

// The facts about a container the scheduler and the agent need, read from the document.
struct ContainerSummary {
  std::string name;
  std::string image;
  int64_t cpu = 0;
  int64_t memory = 0;              // hard limit, MiB (0: none)
  int64_t memory_reservation = 0;  // soft limit, MiB (0: none)
  bool essential = true;
  std::vector<PortMapping> ports;
};

struct TaskDefinition {
  std::string family;
  int64_t revision = 0;
  std::string arn;
  std::string status = "ACTIVE";  // or INACTIVE once deregistered
  int64_t registered_ms = 0;
  int64_t deregistered_ms = 0;  // when it became INACTIVE
  std::string doc;              // the normalised ECS JSON of the registration (without server fields)
  // Tasks in State (any status) made from this revision: one in use is never forgotten.
  int64_t task_refs = 0;

  // Derived from doc at load.
  std::vector<ContainerSummary> containers;
  int64_t cpu = 0;     // task-level if given, else the sum of the containers'
  int64_t memory = 0;  // task-level if given, else the sum of each container's limit or reservation
  std::string network_mode = "bridge";
  bool has_health_check = false;   // some container has a health check other than NONE
  std::vector<SecretRef> secrets;  // the secrets its containers take
  // TaskDefinitionJson printed, made once per status (it is sent to agents often).
  const std::string& JsonText() const;
  mutable std::string json_text_;
  mutable std::string json_text_status_;
  // (host port, udp) of every fixed host port the task asks for.
  std::vector<std::pair<int, bool>> FixedPorts() const;
};

std::string TaskDefinitionArn(std::string_view family, int64_t revision);

// Validates a RegisterTaskDefinition body and returns it normalised (defaults
// filled in: essential, protocol, health-check timings, task cpu/memory as ECS's
// strings). Every error names the field path, e.g.
// "containerDefinitions[1].portMappings[0].containerPort: must be 1-65535".
Result<json::Doc> ValidateTaskDefinition(json::View body);

// Fills the derived fields of `td` from td.doc (which passed validation).
Status SummariseTaskDefinition(TaskDefinition* td);

// The ECS `TaskDefinition` JSON: the document plus arn, revision, status, registeredAt.
json::Doc TaskDefinitionJson(const TaskDefinition& td);

// "family", "family:3" or a task-definition ARN → family and revision (0: latest).
Result<std::pair<std::string, int64_t>> ParseTaskDefinitionRef(std::string_view ref);

}  // namespace berth::model
