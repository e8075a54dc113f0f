// The typed commands that change the state. Each is serialisable (Encode/Decode)
// so the command log can be replayed and, later, replicated.
#pragma once

#include <string>

#include "base/result.h"
#include "store/store.h"

namespace berth::model {

struct CreateCluster final : store::Command {
  std::string name;
  const char* Type() const override { return "CreateCluster"; }
  std::string Encode() const override;
};

struct DeleteCluster final : store::Command {
  std::string name;
  const char* Type() const override { return "DeleteCluster"; }
  std::string Encode() const override;
};

// A new revision of a task-definition family; `doc` passed ValidateTaskDefinition.
struct RegisterTaskDefinition final : store::Command {
  std::string family;
  std::string doc;
  const char* Type() const override { return "RegisterTaskDefinition"; }
  std::string Encode() const override;
};

struct DeregisterTaskDefinition final : store::Command {
  std::string family;
  int64_t revision = 0;
  const char* Type() const override { return "DeregisterTaskDefinition"; }
  std::string Encode() const override;
};

// An API token; only the SHA-256 of the secret is kept.
struct CreateToken final : store::Command {
  std::string id;
  std::string role;  // admin, deploy, read-only, agent
  std::string hash;  // hex SHA-256 of the secret
  const char* Type() const override { return "CreateToken"; }
  std::string Encode() const override;
};

// Reads a command back from its log form; an error names what is wrong.
Result<store::CommandPtr> DecodeCommand(std::string_view type, std::string_view payload, int64_t time_ms);

bool IsValidRole(std::string_view role);

}  // namespace berth::model
