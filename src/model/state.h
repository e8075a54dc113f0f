// The in-memory state every read is served from, and the state machine that
// applies commands to it and to SQLite. Only the store calls Apply, on the loop
// thread, in log order.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/cluster.h"
#include "model/commands.h"
#include "model/taskdef.h"
#include "store/store.h"

namespace berth::model {

struct Token {
  std::string id;
  std::string role;
  std::string hash;  // hex SHA-256 of the secret
  int64_t created_ms = 0;
};

class State final : public store::StateMachine {
 public:
  Status Load(store::Db& db) override;
  Result<std::string> Apply(store::Db& db, const store::Command& cmd) override;
  Result<store::CommandPtr> Decode(std::string_view type, std::string_view payload, int64_t time_ms) override;

  const Cluster* FindCluster(std::string_view name) const;
  // Moves a cluster's derived counts (nodes, services, tasks) by the given deltas.
  // Called by the parts of the state that own those things, inside their Apply.
  void AdjustClusterCounts(std::string_view name, int64_t nodes, int64_t services, int64_t running, int64_t pending);
  const std::map<std::string, Cluster, std::less<>>& clusters() const { return clusters_; }

  // A revision (0: the latest ACTIVE one) of a family; nullptr when there is none.
  const TaskDefinition* FindTaskDefinition(std::string_view family, int64_t revision) const;
  const std::map<std::string, std::map<int64_t, TaskDefinition>, std::less<>>& task_definitions() const {
    return task_definitions_;
  }

  // The token whose secret is `secret`, compared in constant time against every
  // stored hash; nullptr when none matches.
  const Token* FindTokenBySecret(std::string_view secret) const;
  size_t token_count() const { return tokens_.size(); }
  const std::vector<Token>& tokens() const { return tokens_; }

 private:
  Result<std::string> ApplyCreateCluster(store::Db& db, const CreateCluster& c);
  Result<std::string> ApplyDeleteCluster(store::Db& db, const DeleteCluster& c);
  Result<std::string> ApplyCreateToken(store::Db& db, const CreateToken& c);
  Result<std::string> ApplyRegisterTaskDefinition(store::Db& db, const RegisterTaskDefinition& c);
  Result<std::string> ApplyDeregisterTaskDefinition(store::Db& db, const DeregisterTaskDefinition& c);

  std::map<std::string, Cluster, std::less<>> clusters_;
  std::vector<Token> tokens_;
  std::map<std::string, std::map<int64_t, TaskDefinition>, std::less<>> task_definitions_;
};

}  // namespace berth::model
