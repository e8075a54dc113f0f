// The in-memory state every read is served from, and the state machine that
// applies commands to it and to SQLite. Only the store calls Apply, on the loop
// thread, in log order.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/cluster.h"
#include "model/commands.h"
#include "model/lb.h"
#include "model/node.h"
#include "model/scope.h"
#include "model/secret.h"
#include "model/service.h"
#include "model/task.h"
#include "model/taskdef.h"
#include "store/store.h"

namespace berth::model {

struct Token {
  std::string id;
  std::string role;
  std::string hash;  // hex SHA-256 of the secret
  int64_t created_ms = 0;
  int64_t expires_ms = 0;    // 0: never
  int64_t uses_left = -1;    // agent joins it may still make; -1: no bound
  int64_t last_used_ms = 0;  // persisted by TouchTokens, at most about once a minute
  TokenScope scope;          // clusters and repositories it is limited to (model/scope.h)
  // An access key (AWS Signature Version 4) keeps its secret, which the server
  // must read back to verify signatures, sealed by the SecretBox under the name
  // AccessKeySealName(id); a bearer token has neither.
  std::string sealed_secret;  // crypto::Seal output, as model::Secret::sealed
  std::string secret_key_id;  // SecretBox::id of the key that sealed it
  bool access_key() const { return !sealed_secret.empty(); }
  // A browser session (POST /v1/session): role "session", acting for the token
  // `parent` (its role and limits), never a bearer credential; it goes with its
  // parent. Empty for every other token.
  std::string parent;
  bool session() const { return !parent.empty(); }
};

// The name an access key's secret is sealed under ("accesskey:<id>"), so a
// sealed secret copied to another key does not open.
std::string AccessKeySealName(std::string_view id);
// Why access key `id` is refused where a bearer token (or the registry's Basic
// password) is expected: it signs requests instead.
std::string AccessKeyNotBearer(std::string_view id);

// The token as the API shows it (never its hash).
json::Doc TokenJson(const Token& t);
// An access key as the API shows it: accessKeyId, role, times, the id of the
// key that sealed its secret, and its limits (never the secret, sealed or not).
json::Doc AccessKeyJson(const Token& t);

// Told of changes as they are applied (before their commit; after a failed commit,
// OnReloaded says everything was rebuilt from disk). Observers keep derived
// structures — the scheduler's indexes, the agents' streams, the controllers'
// work lists — in step without polling.
class StateObserver {
 public:
  virtual ~StateObserver() = default;
  virtual void OnNodeChanged(const Node&) {}                 // registered again, status or connection changed
  virtual void OnNodeRemoved(const Node&) {}                 // about to be forgotten
  virtual void OnTaskAccounted(const Task&, const Node&) {}  // its resources are now in use
  virtual void OnTaskReleased(const Task&, const Node&) {}   // its resources are free again
  virtual void OnTaskChanged(const Task&) {}
  virtual void OnTaskForgotten(const Task&) {}       // a STOPPED task about to leave the state
  virtual void OnNodeDesiredChanged(const Node&) {}  // the set of tasks the node must run changed
  virtual void OnServiceChanged(const Service&) {}   // created, updated, deployment state, draining
  virtual void OnServiceRemoved(const Service&) {}
  virtual void OnTokenRemoved(const Token&) {}  // revoked: what it opened must close
  // Any command, once applied without error (after the calls above it made).
  virtual void OnCommandApplied(const store::Command&) {}
  virtual void OnReloaded() {}
};

// A part of the state that another subsystem keeps (the registry's repositories,
// manifests, tags and upload sessions). Its commands travel the same log: State
// hands it the command types it owns, and loads it with the rest.
class StatePart {
 public:
  virtual ~StatePart() = default;
  virtual bool Owns(std::string_view type) const = 0;
  virtual Status Load(store::Db& db) = 0;
  virtual Result<std::string> Apply(store::Db& db, const store::Command& cmd) = 0;
  virtual Result<store::CommandPtr> Decode(std::string_view type, std::string_view payload, int64_t time_ms) = 0;
  // Whether the resource of ARN `arn` (berth's form) is this part's and exists
  // (tags are put only on resources that exist).
  virtual bool HasResource(std::string_view /*arn*/) const { return false; }
  // The ARN of the resource that `cmd`, just applied, removed ("" none): its
  // tags go with it.
  virtual std::string ResourceRemovedBy(const store::Command& /*cmd*/) const { return {}; }
};

// Tags: at most this many per resource (as AWS), keys 1-128 characters and not
// starting with "aws:", values 0-256.
inline constexpr size_t kMaxTags = 50;
Status ValidateTag(std::string_view key, std::string_view value);

class State final : public store::StateMachine {
 public:
  void AddObserver(StateObserver* o) { observers_.push_back(o); }
  // Adds a part before the store opens (Load runs at open); `p` outlives the State.
  void AddPart(StatePart* p) { parts_.push_back(p); }
  // Whether commands of `type` are a part's (the registry's), not the state's own.
  bool PartOwns(std::string_view type) const {
    for (const StatePart* p : parts_) {
      if (p->Owns(type)) return true;
    }
    return false;
  }
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

  const Node* FindNode(std::string_view id) const;
  const std::map<std::string, Node, std::less<>>& nodes() const { return nodes_; }
  const Task* FindTask(std::string_view id) const;
  // The task `ref` names: its id, its ARN, its short form (ShortTaskId: what
  // `berth ps` shows) or a prefix of its id of 6 or more characters. nullptr
  // when none or several match, with `why` saying which (the candidates named).
  // A full id, an ARN or a short form costs a hash lookup; only another prefix
  // looks at every task.
  const Task* ResolveTask(std::string_view ref, std::string* why) const;
  // A task id's short form: its last 12 characters. Ids begin with their
  // creation time (the tasks of one placement share their first 12), so the
  // short form is the random part: 48 bits, unique in practice.
  static std::string_view ShortTaskId(std::string_view id) {
    return id.size() > kShortTaskId ? id.substr(id.size() - kShortTaskId) : id;
  }
  static constexpr size_t kShortTaskId = 12;
  // Hashes std::string and std::string_view alike, so lookups by a view copy nothing.
  struct IdHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using TaskMap = std::unordered_map<std::string, Task, IdHash, std::equal_to<>>;
  const TaskMap& tasks() const { return tasks_; }
  // Tasks placed since this server started (a fact of the process, for /metrics).
  uint64_t tasks_placed() const { return tasks_placed_; }
  // Whether a service's deployments use the revision (a forgotten one must not be).
  bool ServicesUse(std::string_view family, int64_t revision) const;
  const Service* FindService(std::string_view cluster, std::string_view name) const;
  const std::map<std::string, Service, std::less<>>& services() const { return services_; }  // "cluster/name"
  static std::string ServiceKey(std::string_view cluster, std::string_view name);
  // Events are not state: the controller adds them as it acts.
  void AddServiceEvent(std::string_view cluster, std::string_view name, std::string message, int64_t now_ms);

  // The agent's connection and heartbeats: facts of this server, not state.
  void SetNodeConnected(std::string_view id, bool connected, int64_t now_ms);
  void Heartbeat(std::string_view id, int64_t now_ms);
  // The proxy configuration version the node's agent reported applied (not state).
  void SetProxyVersion(std::string_view id, int64_t version);
  // Gives node `id` a new desired version, so its agent gets a line, though its
  // tasks did not change (its proxy configuration did); observers are told as
  // for a change of its tasks.
  void NodeDesiredChanged(std::string_view id);

  // The token whose secret is `secret`, compared in constant time against every
  // stored hash; nullptr when none matches.
  // The token whose secret is `secret` (sessions are not: FindSessionBySecret).
  const Token* FindTokenBySecret(std::string_view secret) const;
  // The session whose secret (its cookie) is `secret`, or nullptr.
  const Token* FindSessionBySecret(std::string_view secret) const;
  const Token* FindToken(std::string_view id) const;
  bool IsNodeRevoked(std::string_view id) const { return revoked_nodes_.count(id) > 0; }
  // Remembers that `id` was used at `now_ms` (not state until TouchTokens).
  void NoteTokenUsed(std::string_view id, int64_t now_ms);
  // Tokens used since their last TouchTokens, with when.
  std::vector<std::pair<std::string, int64_t>> TokensToTouch(int64_t now_ms, int64_t every_ms) const;
  size_t token_count() const { return tokens_.size(); }
  const std::vector<Token>& tokens() const { return tokens_; }

  // What an ARN in berth's form names, for tags: whether it exists, and the
  // cluster it belongs to ("" for task definitions and repositories).
  struct Resource {
    bool exists = false;
    std::string cluster;
  };
  Resource FindResource(std::string_view arn) const;
  // The tags of a resource (nullptr: none).
  const std::map<std::string, std::string>* TagsOf(std::string_view arn) const;

  const Secret* FindSecret(std::string_view name) const;
  const std::map<std::string, Secret, std::less<>>& secrets() const { return secrets_; }

  // Load balancing (model/lb.h), keyed "cluster/name" (ServiceKey).
  const TargetGroup* FindTargetGroup(std::string_view cluster, std::string_view name) const;
  const std::map<std::string, TargetGroup, std::less<>>& target_groups() const { return target_groups_; }
  const LoadBalancer* FindLoadBalancer(std::string_view cluster, std::string_view name) const;
  const std::map<std::string, LoadBalancer, std::less<>>& load_balancers() const { return load_balancers_; }
  // What names target group `name` of `cluster`: "listener edge:80",
  // "rule edge:80/10", "service web"; empty when nothing does.
  std::vector<std::string> TargetGroupUsers(std::string_view cluster, std::string_view name) const;
  // The listeners whose certificate secret `secret` is ("listener edge:443 in cluster prod").
  std::vector<std::string> SecretUsers(std::string_view secret) const;
  // Checks a service's loadBalancers against the target groups of its cluster
  // and task definition `td` (the container, a TCP port mapping of that port).
  Status CheckServiceLoadBalancers(const Service& s, const TaskDefinition& td) const;

 private:
  // Apply without telling observers of the command.
  Result<std::string> ApplyCommand(store::Db& db, const store::Command& cmd);
  Result<std::string> ApplyCreateCluster(store::Db& db, const CreateCluster& c);
  Result<std::string> ApplyDeleteCluster(store::Db& db, const DeleteCluster& c);
  Result<std::string> ApplyUpdateCluster(store::Db& db, const UpdateCluster& c);
  Result<std::string> ApplyCreateToken(store::Db& db, const CreateToken& c);
  Result<std::string> ApplyDeleteToken(store::Db& db, const DeleteToken& c);
  Result<std::string> ApplyTouchTokens(store::Db& db, const TouchTokens& c);
  Result<std::string> ApplyForgetSessions(store::Db& db, const ForgetSessions& c);
  Result<std::string> ApplyPutSecret(store::Db& db, const PutSecret& c);
  Result<std::string> ApplyDeleteSecret(store::Db& db, const DeleteSecret& c);
  Status LoadSecrets(store::Db& db);
  Status LoadLoadBalancing(store::Db& db);
  Result<std::string> ApplyCreateTargetGroup(store::Db& db, const CreateTargetGroup& c);
  Result<std::string> ApplyModifyTargetGroup(store::Db& db, const ModifyTargetGroup& c);
  Result<std::string> ApplyDeleteTargetGroup(store::Db& db, const DeleteTargetGroup& c);
  Result<std::string> ApplyCreateLoadBalancer(store::Db& db, const CreateLoadBalancer& c);
  Result<std::string> ApplyDeleteLoadBalancer(store::Db& db, const DeleteLoadBalancer& c);
  Result<std::string> ApplyCreateListener(store::Db& db, const CreateListener& c);
  Result<std::string> ApplyDeleteListener(store::Db& db, const DeleteListener& c);
  Result<std::string> ApplyCreateRule(store::Db& db, const CreateRule& c);
  Result<std::string> ApplyDeleteRule(store::Db& db, const DeleteRule& c);
  // Writes a load balancer's row (its listeners and rules in its doc).
  Status SaveLoadBalancer(store::Db& db, const LoadBalancer& lb);
  Result<std::string> ApplyPutTags(store::Db& db, const PutTags& c);
  Result<std::string> ApplyRemoveTags(store::Db& db, const RemoveTags& c);
  Result<std::string> ApplyPutNodeAttributes(store::Db& db, const PutNodeAttributes& c);
  Result<std::string> ApplyDeleteNodeAttributes(store::Db& db, const DeleteNodeAttributes& c);
  Status LoadTags(store::Db& db);
  Status LoadNodeAttributes(store::Db& db);
  // Forgets every tag of `arn` (a removed resource); no SQL when it has none.
  Status DropTags(store::Db& db, std::string_view arn);
  Result<std::string> ApplyRegisterTaskDefinition(store::Db& db, const RegisterTaskDefinition& c);
  Result<std::string> ApplyDeregisterTaskDefinition(store::Db& db, const DeregisterTaskDefinition& c);
  Result<std::string> ApplyRegisterNode(store::Db& db, const RegisterNode& c);
  Result<std::string> ApplySetNodeStatus(store::Db& db, const SetNodeStatus& c);
  Result<std::string> ApplyDeregisterNode(store::Db& db, const DeregisterNode& c);
  Result<std::string> ApplyPlaceTasks(store::Db& db, const PlaceTasks& c);
  Result<std::string> ApplyStopTasks(store::Db& db, const StopTasks& c);
  Result<std::string> ApplyReportTasks(store::Db& db, const ReportTasks& c);
  Result<std::string> ApplyNodeLost(store::Db& db, const NodeLost& c);
  Result<std::string> ApplyForgetTasks(store::Db& db, const ForgetTasks& c);
  Result<std::string> ApplyForgetTaskDefinitions(store::Db& db, const ForgetTaskDefinitions& c);
  Status LoadNodesAndTasks(store::Db& db);
  Status LoadServices(store::Db& db);
  Status SaveService(store::Db& db, const Service& s);
  Result<std::string> ApplyCreateService(store::Db& db, const CreateService& c);
  Result<std::string> ApplyUpdateService(store::Db& db, const UpdateService& c);
  Result<std::string> ApplySetDeploymentState(store::Db& db, const SetDeploymentState& c);
  Result<std::string> ApplyDeleteService(store::Db& db, const DeleteService& c);
  Result<std::string> ApplyRemoveService(store::Db& db, const RemoveService& c);
  Service* MutableService(std::string_view cluster, std::string_view name);
  TaskDefinition* MutableTaskDefinition(std::string_view family, int64_t revision) {
    return const_cast<TaskDefinition*>(revision > 0 ? FindTaskDefinition(family, revision) : nullptr);
  }
  std::string ServiceReply(const Service& s) const;
  Status SaveTask(store::Db& db, const Task& t, bool insert);
  // Moves a task to `last` (forward only), keeping node and cluster counts and
  // resource accounting right; returns whether anything changed.
  bool Transition(Task& t, const std::string& last, int64_t now_ms);
  void CountTask(const Task& t, int delta);
  void DesiredChanged(Node& n);

  std::map<std::string, Cluster, std::less<>> clusters_;
  std::vector<Token> tokens_;
  std::map<std::string, Secret, std::less<>> secrets_;
  std::map<std::string, TargetGroup, std::less<>> target_groups_;  // "cluster/name"
  std::map<std::string, LoadBalancer, std::less<>> load_balancers_;
  std::map<std::string, std::map<std::string, std::string>, std::less<>> tags_;  // ARN → key → value
  std::set<std::string, std::less<>> revoked_nodes_;                             // ids that may never register again
  // When each token was last used (NoteTokenUsed), ahead of TouchTokens.
  std::unordered_map<std::string, int64_t> token_used_;
  std::map<std::string, std::map<int64_t, TaskDefinition>, std::less<>> task_definitions_;
  std::map<std::string, Node, std::less<>> nodes_;
  // nodes_ by id, for lookups without string comparisons down a tree (the keys
  // are views of nodes_' own keys, which never move).
  std::unordered_map<std::string_view, Node*> node_index_;
  Node* NodeAt(std::string_view id) { return const_cast<Node*>(FindNode(id)); }
  TaskMap tasks_;
  // tasks_ by their short form (views of tasks_' own keys, which never move).
  std::unordered_multimap<std::string_view, const Task*> tasks_by_short_;
  // Puts a task stored in tasks_ in the short-form index, or takes it out.
  void IndexTask(const Task& t) { tasks_by_short_.emplace(ShortTaskId(t.id), &t); }
  void UnindexTask(const Task& t);
  uint64_t tasks_placed_ = 0;
  std::map<std::string, Service, std::less<>> services_;
  uint64_t event_seq_ = 0;
  std::vector<StateObserver*> observers_;
  std::vector<StatePart*> parts_;
};

}  // namespace berth::model
