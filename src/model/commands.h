// The typed commands that change the state. Each is serialisable (Encode/Decode)
// so the command log can be replayed and, later, replicated.
#pragma once

#include <map>
#include <string>
#include <vector>

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

// Replaces a cluster's task policy; `policy` passed ParseTaskPolicy.
struct UpdateCluster final : store::Command {
  std::string name;
  std::string policy;  // JSON
  const char* Type() const override { return "UpdateCluster"; }
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

// An agent registers its node, or registers it again (new resources or attributes).
struct RegisterNode final : store::Command {
  std::string id;
  std::string cluster;
  std::string hostname;
  int64_t cpu = 0;
  int64_t memory = 0;
  std::map<std::string, std::string> attributes;
  std::vector<std::pair<int, bool>> reserved_ports;  // (port, udp)
  // The node's identity as of this registration (Node::identity; empty: the node
  // keeps the one it has), and the token whose use it spends (a join).
  std::string identity;
  std::string join_token;
  std::string agent_version;  // the berth version of the agent registering
  std::string address;        // where the node's host ports answer (empty: unknown)
  const char* Type() const override { return "RegisterNode"; }
  std::string Encode() const override;
};

// ACTIVE or DRAINING.
struct SetNodeStatus final : store::Command {
  std::string id;
  std::string status;
  const char* Type() const override { return "SetNodeStatus"; }
  std::string Encode() const override;
};

// Removes a node; refused while tasks remain on it unless `force` (they are stopped).
struct DeregisterNode final : store::Command {
  std::string id;
  bool force = false;
  bool revoke = false;  // and the id may never register again (berth node revoke)
  const char* Type() const override { return "DeregisterNode"; }
  std::string Encode() const override;
};

// New tasks of one task definition, each on the node the scheduler chose.
struct PlaceTasks final : store::Command {
  struct Placement {
    std::string task_id;
    std::string node;
  };
  std::string cluster;
  std::string family;
  int64_t revision = 0;
  std::string group;
  std::string started_by;
  std::string service;
  std::string deployment;
  std::vector<Placement> placements;
  const char* Type() const override { return "PlaceTasks"; }
  size_t Work() const override { return placements.size(); }
  std::string Encode() const override;
};

// Tasks the control plane wants stopped (desiredStatus STOPPED).
struct StopTasks final : store::Command {
  std::vector<std::string> ids;
  std::string reason;
  std::string code;  // ECS stopCode: UserInitiated, ServiceSchedulerInitiated, ...
  const char* Type() const override { return "StopTasks"; }
  size_t Work() const override { return ids.size(); }
  std::string Encode() const override;
};

// What an agent saw of its tasks.
struct ReportTasks final : store::Command {
  struct Report {
    std::string task_id;
    std::string last;        // PENDING, RUNNING, STOPPED
    std::string reason;      // why it stopped
    std::string containers;  // JSON array, checked by ParseContainers
  };
  // Transitions of its tasks' target health checks (Task::TargetHealth).
  struct Health {
    std::string task_id;
    std::string target_group;
    std::string state;  // healthy, unhealthy
    std::string reason;
    std::string description;
  };
  std::string node;
  std::vector<Report> reports;
  std::vector<Health> health;
  const char* Type() const override { return "ReportTasks"; }
  size_t Work() const override { return reports.size() + health.size(); }
  std::string Encode() const override;
};

// A node's agent has been gone past the grace period: its tasks are STOPPED.
struct NodeLost final : store::Command {
  std::string node;
  std::string reason;
  const char* Type() const override { return "NodeLost"; }
  std::string Encode() const override;
};

// A new service, with its first deployment; `doc` is ServiceDoc of the record.
struct CreateService final : store::Command {
  std::string doc;
  const char* Type() const override { return "CreateService"; }
  std::string Encode() const override;
};

// Changes to a service; fields left at their "unchanged" value stay as they are.
// A new task definition (or `force_new`) starts deployment `new_deployment`.
struct UpdateService final : store::Command {
  std::string cluster;
  std::string name;
  int64_t desired = -1;
  std::string family;  // empty: unchanged
  int64_t revision = 0;
  int64_t min_healthy_pct = -1;
  int64_t max_pct = -1;
  int breaker = -1;  // -1 unchanged, 0 off, 1 on
  int rollback = -1;
  std::string constraints;  // empty: unchanged
  std::string strategy;     // empty: unchanged
  bool force_new = false;
  std::string new_deployment;
  std::string rollout_reason;         // for the deployment replaced (e.g. a rollback's cause)
  int64_t health_check_grace_s = -1;  // -1: unchanged
  const char* Type() const override { return "UpdateService"; }
  std::string Encode() const override;
};

// The controller's verdict on a deployment.
struct SetDeploymentState final : store::Command {
  std::string cluster;
  std::string name;
  std::string deployment;
  std::string rollout_state;  // IN_PROGRESS, COMPLETED, FAILED (empty: unchanged)
  std::string reason;
  int64_t failed_tasks = -1;   // -1: unchanged
  bool retire_others = false;  // drop the deployments that have no tasks left
  const char* Type() const override { return "SetDeploymentState"; }
  std::string Encode() const override;
};

// Deletion: the service drains (desired 0); RemoveService forgets it once empty.
struct DeleteService final : store::Command {
  std::string cluster;
  std::string name;
  bool force = false;
  const char* Type() const override { return "DeleteService"; }
  std::string Encode() const override;
};

struct RemoveService final : store::Command {
  std::string cluster;
  std::string name;
  const char* Type() const override { return "RemoveService"; }
  std::string Encode() const override;
};

// Retention (control/retention.h): stopped tasks kept past their time, or past
// the number kept per service, leave memory and disk. Ids that are unknown or
// not STOPPED are passed over (the command may apply after a reload).
struct ForgetTasks final : store::Command {
  std::vector<std::string> ids;
  const char* Type() const override { return "ForgetTasks"; }
  size_t Work() const override { return ids.size(); }
  std::string Encode() const override;
};

// Retention: INACTIVE task definition revisions no task or service uses, each
// the latest of its family kept (so a revision number is never given twice).
// Revisions that no longer qualify are passed over.
struct ForgetTaskDefinitions final : store::Command {
  std::vector<std::pair<std::string, int64_t>> revisions;  // (family, revision)
  const char* Type() const override { return "ForgetTaskDefinitions"; }
  std::string Encode() const override;
};

// An API token; only the SHA-256 of the secret is kept. An access key
// (sealed_secret set) also keeps its secret, sealed: only the sealed form
// travels (base64 in the log), as PutSecret's.
struct CreateToken final : store::Command {
  std::string id;
  std::string role;           // admin, deploy, read-only, agent
  std::string hash;           // hex SHA-256 of the secret
  int64_t expires_ms = 0;     // 0: never
  int64_t uses = -1;          // agent joins it may make; -1: no bound
  std::string scope;          // TokenScope JSON; empty: no limit
  std::string sealed_secret;  // an access key's: SecretBox::Seal(AccessKeySealName(id), secret).sealed
  std::string secret_key_id;  // the SecretBox id that sealed it
  std::string parent;         // a session's (role "session"): the token it acts for
  const char* Type() const override { return "CreateToken"; }
  std::string Encode() const override;
};

// Revokes a token: in force at once (the streams and registry sessions it opened
// close). The last admin token cannot go.
struct DeleteToken final : store::Command {
  std::string id;
  const char* Type() const override { return "DeleteToken"; }
  std::string Encode() const override;
};

// Retention (control/retention.h): dashboard sessions past their expiry leave
// memory and state.db. An id that is unknown, not a session, or not expired at
// the command's time_ms is passed over (the command may apply after a reload,
// and every server must decide alike).
struct ForgetSessions final : store::Command {
  std::vector<std::string> ids;
  const char* Type() const override { return "ForgetSessions"; }
  std::string Encode() const override;
};

// When tokens were last used (for `berth token ls`), written at most about once a
// minute per token.
struct TouchTokens final : store::Command {
  std::vector<std::pair<std::string, int64_t>> used;  // (id, unix ms)
  const char* Type() const override { return "TouchTokens"; }
  std::string Encode() const override;
};

// Creates a secret (`create`) or rotates it (a new sealed value, one version
// more). Only the sealed value travels: the log never holds a secret in clear.
struct PutSecret final : store::Command {
  std::string name;
  std::string sealed;  // crypto::Seal output (base64 in the log)
  std::string key_id;
  bool create = true;
  std::vector<std::string> clusters;  // at creation: the clusters whose tasks may take it (empty: all)
  const char* Type() const override { return "PutSecret"; }
  std::string Encode() const override;
};

struct DeleteSecret final : store::Command {
  std::string name;
  const char* Type() const override { return "DeleteSecret"; }
  std::string Encode() const override;
};

// Tags on a resource named by its ARN in berth's form (region "local", account
// 000000000000): added or replaced by key. The resource must exist and the
// resource may hold at most kMaxTags after the change (model/state.h, TagsOf).
struct PutTags final : store::Command {
  std::string resource;
  std::vector<std::pair<std::string, std::string>> tags;  // (key, value)
  const char* Type() const override { return "PutTags"; }
  std::string Encode() const override;
};

// Removes tags by key; keys not there are passed over.
struct RemoveTags final : store::Command {
  std::string resource;
  std::vector<std::string> keys;
  const char* Type() const override { return "RemoveTags"; }
  std::string Encode() const override;
};

// Custom attributes of a node, set through the API (ECS PutAttributes): they
// persist across the agent's registrations and win over the agent's own of the
// same name (Node::attributes is the merge).
struct PutNodeAttributes final : store::Command {
  std::string node;
  std::map<std::string, std::string> attributes;
  const char* Type() const override { return "PutNodeAttributes"; }
  std::string Encode() const override;
};

// Removes custom attributes by name (an agent's own of that name shows again).
struct DeleteNodeAttributes final : store::Command {
  std::string node;
  std::vector<std::string> names;
  const char* Type() const override { return "DeleteNodeAttributes"; }
  std::string Encode() const override;
};

// Load balancing (model/lb.h). A target group; `doc` is TargetGroupDoc of a
// group that passed ParseTargetGroupBody. Names are unique per cluster.
struct CreateTargetGroup final : store::Command {
  std::string doc;
  const char* Type() const override { return "CreateTargetGroup"; }
  std::string Encode() const override;
};

// A group's settings changed: `change` is the body ModifyTargetGroupBody takes,
// merged at apply time with the group as it is then, so two changes of different
// fields both hold whatever their order.
struct ModifyTargetGroup final : store::Command {
  std::string cluster;
  std::string name;
  std::string change;  // JSON object
  const char* Type() const override { return "ModifyTargetGroup"; }
  std::string Encode() const override;
};

// Refused while a listener, a rule or a service names the group.
struct DeleteTargetGroup final : store::Command {
  std::string cluster;
  std::string name;
  const char* Type() const override { return "DeleteTargetGroup"; }
  std::string Encode() const override;
};

// A load balancer without listeners; `doc` is LoadBalancerDoc (its `nodes`
// expression already parsed by the caller: the model does not read it).
struct CreateLoadBalancer final : store::Command {
  std::string doc;
  const char* Type() const override { return "CreateLoadBalancer"; }
  std::string Encode() const override;
};

// Removes a load balancer with its listeners and rules.
struct DeleteLoadBalancer final : store::Command {
  std::string cluster;
  std::string name;
  const char* Type() const override { return "DeleteLoadBalancer"; }
  std::string Encode() const override;
};

// A listener on a load balancer; `doc` is ListenerDocJson (no rules). Its port
// is unique among the listeners of the cluster's load balancers, its default
// group exists and has its protocol.
struct CreateListener final : store::Command {
  std::string cluster;
  std::string load_balancer;
  std::string doc;
  const char* Type() const override { return "CreateListener"; }
  std::string Encode() const override;
};

struct DeleteListener final : store::Command {
  std::string cluster;
  std::string load_balancer;
  int64_t port = 0;
  const char* Type() const override { return "DeleteListener"; }
  std::string Encode() const override;
};

// A rule on an HTTP listener; `doc` is RuleDocJson; its priority is unique there.
struct CreateRule final : store::Command {
  std::string cluster;
  std::string load_balancer;
  int64_t port = 0;
  std::string doc;
  const char* Type() const override { return "CreateRule"; }
  std::string Encode() const override;
};

struct DeleteRule final : store::Command {
  std::string cluster;
  std::string load_balancer;
  int64_t port = 0;
  int64_t priority = 0;
  const char* Type() const override { return "DeleteRule"; }
  std::string Encode() const override;
};

// Reads a command back from its log form; an error names what is wrong.
Result<store::CommandPtr> DecodeCommand(std::string_view type, std::string_view payload, int64_t time_ms);

bool IsValidRole(std::string_view role);

}  // namespace berth::model
