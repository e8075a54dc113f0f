// The placement engine: given the nodes of one cluster (free CPU and memory, host
// ports, attributes) and the tasks on them, chooses nodes for new tasks with ECS
// semantics — binding constraints (resources, ports, distinctInstance, memberOf)
// and best-effort strategies applied in order (binpack, spread, random).
//
// A library with no I/O and no clock: the control plane keeps it in step with the
// state and asks it where to place. Its cost per placement does not grow with the
// number of nodes or how full they are: see docs/scheduler.md for the indexes and
// the complexity.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/result.h"
#include "sched/capacity_tree.h"
#include "sched/expr.h"

namespace berth::sched {

struct PortSpec {
  uint16_t port = 0;
  bool udp = false;
};

// What one task asks of its node.
struct TaskShape {
  int64_t cpu = 0;              // CPU units, 1024 per core
  int64_t memory = 0;           // MiB
  std::vector<PortSpec> ports;  // fixed host ports; dynamic ones need no placement
};

enum class StrategyType { kBinpack, kSpread, kRandom };

struct Strategy {
  StrategyType type = StrategyType::kRandom;
  std::string field;  // binpack: "cpu" or "memory"; spread: "instanceId" or "attribute:<name>"

  // Checks a strategy as ECS spells it (type "binpack"/"spread"/"random").
  static Result<Strategy> Make(std::string_view type, std::string_view field);
};

struct Request {
  TaskShape shape;
  std::string group;  // "service:web", "family:batch"; spread and distinctInstance count within it
  bool distinct_instance = false;
  std::vector<std::shared_ptr<const Expr>> member_of;
  std::vector<Strategy> strategies;  // empty: random
};

struct NodeSpec {
  std::string id;
  std::map<std::string, std::string> attributes;
  int64_t cpu = 0;                       // registered CPU units
  int64_t memory = 0;                    // registered MiB
  std::vector<PortSpec> reserved_ports;  // host ports the node keeps for itself: never placed on
};

class Engine {
 public:
  using NodeRef = uint32_t;
  static constexpr NodeRef kNoNode = UINT32_MAX;

  explicit Engine(uint64_t seed = 1);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // A new node, active and connected. Node ids are the caller's; refs are ours.
  NodeRef AddNode(const NodeSpec& spec);
  // Forgets a node and every task on it.
  void RemoveNode(NodeRef node);
  // `active`: the node takes new tasks (ECS ACTIVE); `connected`: its agent is there.
  // Only nodes both active and connected are placement candidates.
  void SetStatus(NodeRef node, bool active, bool connected);

  // Accounts a task that is on `node` (placed earlier, or found at start).
  void AddTask(NodeRef node, const TaskShape& shape, std::string_view group);
  void RemoveTask(NodeRef node, const TaskShape& shape, std::string_view group);

  struct Placement {
    std::vector<NodeRef> nodes;  // one per placed task, in order; each already accounted
    std::string reason;          // why the rest could not be placed (empty when all were)
  };
  // Places up to `count` tasks, one at a time, each seeing the ones before it.
  Placement Place(const Request& request, int count);

  // Reads, for callers and tests.
  const std::string& NodeId(NodeRef node) const;
  int64_t FreeCpu(NodeRef node) const;
  int64_t FreeMemory(NodeRef node) const;
  int64_t TasksInGroup(NodeRef node, std::string_view group) const;
  bool PortInUse(NodeRef node, PortSpec port) const;
  size_t node_count() const { return live_nodes_; }

  // A failed placement's reason looks at this many nodes at most.
  static constexpr size_t kExplainNodes = 1000;

 private:
  struct Node;
  struct Class;
  struct NodeSet;
  struct Group;
  class Facts;

  uint32_t GroupId(std::string_view group);
  auto LevelSlot(uint32_t gid);
  auto ZeroSlot(uint32_t gid);
  void IndexNode(NodeRef n);    // into every set that should hold it
  void UnindexNode(NodeRef n);  // out of every set
  // After a task of group gid on n came (delta +1), went (-1), or n's room alone
  // changed (0, from old_mem/old_cpu): moves n between gid's level sets and
  // re-keys it in the other sets that hold it. O(groups on n · log n).
  void Reindex(NodeRef n, uint32_t gid, int delta, int64_t old_mem, int64_t old_cpu);
  void BalanceZero(uint32_t gid, uint32_t cls);
  void EnsureTrees(NodeSet* set, bool cpu_order);
  bool Candidate(NodeRef n) const;
  bool Feasible(NodeRef n, const Request& req, uint32_t gid, bool free_of_group = false) const;
  NodeRef PlaceOne(const Request& req, uint32_t gid);
  NodeRef Search(const Request& req, uint32_t gid, size_t strategy, const std::vector<uint32_t>& classes, int level);
  NodeRef Pick(const Request& req, uint32_t gid, const Strategy* final_strategy, const std::vector<uint32_t>& classes,
               int level);
  NodeRef FirstFeasible(const CapacityTree& tree, bool memory_primary, const Request& req, uint32_t gid,
                        bool free_of_group, int64_t after_primary, NodeRef after_node);
  std::string Explain(const Request& req, uint32_t gid) const;

  std::vector<Node> nodes_;
  std::vector<NodeRef> free_refs_;
  size_t live_nodes_ = 0;
  std::vector<std::unique_ptr<Class>> classes_;
  std::unordered_map<std::string, uint32_t> class_by_key_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::unordered_map<std::string, uint32_t> group_by_name_;
  std::vector<std::pair<NodeSet*, bool>> sets_;  // scratch for Pick: a set, and free_of_group
  std::mt19937_64 rng_;
};

}  // namespace berth::sched
