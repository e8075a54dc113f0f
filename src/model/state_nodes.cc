// State: nodes and tasks — registration, placement, stopping, agent reports and
// node loss, with the resource accounting the scheduler relies on.
#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "model/state.h"

namespace berth::model {

namespace {

int Rank(const std::string& last) {
  if (last == "PROVISIONING") return 0;
  if (last == "PENDING") return 1;
  if (last == "RUNNING") return 2;
  if (last == "STOPPED") return 3;
  return -1;
}

std::string AttributesText(const std::map<std::string, std::string>& attrs) {
  json::Doc d = json::Doc::Object();
  for (const auto& [k, v] : attrs) d.Set(k, v);
  return d.Print();
}

// A task's overall health from its containers: UNHEALTHY if an essential one is,
// HEALTHY when every checked one is, UNKNOWN otherwise.
std::string TaskHealth(const Task& t, const TaskDefinition* td) {
  bool any_checked = false, all_healthy = true;
  for (const ContainerState& c : t.containers) {
    bool essential = true, checked = false;
    if (td) {
      for (const ContainerSummary& s : td->containers) {
        if (s.name == c.name) essential = s.essential;
      }
    }
    checked = c.health != "UNKNOWN";
    if (c.health == "UNHEALTHY" && essential) return "UNHEALTHY";
    if (checked) any_checked = true;
    if (checked && c.health != "HEALTHY") all_healthy = false;
  }
  return any_checked && all_healthy ? "HEALTHY" : "UNKNOWN";
}

// Writes a task's row; `containers` is ContainersText(t), passed in so that a
// command placing many tasks of one task definition prints it once.
Status WriteTaskRow(store::Db& db, const Task& t, bool insert, const std::string& containers) {
  if (insert) {
    Result<store::Stmt*> s = db.Cached(
        "INSERT INTO tasks (id, cluster, node, family, revision, grp, started_by, service, deployment, desired, last,"
        " stopped_reason, stop_code, health, containers, created_ms, started_ms, stopping_ms, stopped_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)");
    if (!s) return s.take_error();
    (*s)->Bind(1, t.id).Bind(2, t.cluster).Bind(3, t.node).Bind(4, t.family).Bind(5, t.revision).Bind(6, t.group);
    (*s)->Bind(7, t.started_by).Bind(8, t.service).Bind(9, t.deployment).Bind(10, t.desired).Bind(11, t.last);
    (*s)->Bind(12, t.stopped_reason).Bind(13, t.stop_code).Bind(14, t.health).Bind(15, containers);
    (*s)->Bind(16, t.created_ms).Bind(17, t.started_ms).Bind(18, t.stopping_ms).Bind(19, t.stopped_ms);
    return (*s)->Run();
  }
  Result<store::Stmt*> s = db.Cached(
      "UPDATE tasks SET desired = ?2, last = ?3, stopped_reason = ?4, stop_code = ?5, health = ?6, containers = ?7,"
      " started_ms = ?8, stopping_ms = ?9, stopped_ms = ?10 WHERE id = ?1");
  if (!s) return s.take_error();
  (*s)->Bind(1, t.id).Bind(2, t.desired).Bind(3, t.last).Bind(4, t.stopped_reason).Bind(5, t.stop_code);
  (*s)->Bind(6, t.health).Bind(7, containers).Bind(8, t.started_ms).Bind(9, t.stopping_ms).Bind(10, t.stopped_ms);
  return (*s)->Run();
}

}  // namespace

const Node* State::FindNode(std::string_view id) const {
  auto it = node_index_.find(id);
  return it == node_index_.end() ? nullptr : it->second;
}

const Task* State::FindTask(std::string_view id) const {
  auto it = tasks_.find(id);
  return it == tasks_.end() ? nullptr : &it->second;
}

void State::UnindexTask(const Task& t) {
  auto [from, to] = tasks_by_short_.equal_range(ShortTaskId(t.id));
  for (auto it = from; it != to; ++it) {
    if (it->second == &t) {
      tasks_by_short_.erase(it);
      return;
    }
  }
}

const Task* State::ResolveTask(std::string_view ref, std::string* why) const {
  if (size_t slash = ref.rfind('/'); slash != std::string_view::npos) ref = ref.substr(slash + 1);  // an ARN
  if (const Task* t = FindTask(ref)) return t;
  std::vector<const Task*> found;
  if (ref.size() == kShortTaskId) {
    auto [from, to] = tasks_by_short_.equal_range(ref);
    for (auto it = from; it != to; ++it) found.push_back(it->second);
  }
  if (found.empty() && ref.size() >= 6) {
    for (const auto& [id, t] : tasks_) {
      if (id.starts_with(ref)) found.push_back(&t);
      if (found.size() > 5) break;
    }
  }
  if (found.size() == 1) return found[0];
  if (found.empty()) {
    *why = "task " + std::string(ref) + " does not exist" +
           (ref.size() < 6 ? " (give the id, its ARN, the short id 'berth ps' shows, or a prefix of 6 or more "
                             "characters)"
                           : "");
    return nullptr;
  }
  *why = "task " + std::string(ref) + " is ambiguous: it names";
  for (size_t i = 0; i < found.size() && i < 5; i++) *why += (i ? ", " : " ") + found[i]->id;
  if (found.size() > 5) *why += ", ...";
  *why += "; give more of the id";
  return nullptr;
}

void State::SetNodeConnected(std::string_view id, bool connected, int64_t now_ms) {
  Node* it = NodeAt(id);
  if (!it || it->connected == connected) return;
  it->connected = connected;
  it->disconnected_since_ms = connected ? 0 : now_ms;
  if (connected) it->last_heartbeat_ms = now_ms;
  for (StateObserver* o : observers_) o->OnNodeChanged(*it);
}

void State::Heartbeat(std::string_view id, int64_t now_ms) {
  if (Node* n = NodeAt(id)) n->last_heartbeat_ms = now_ms;
}

void State::SetProxyVersion(std::string_view id, int64_t version) {
  if (Node* n = NodeAt(id)) n->proxy_version = version;
}

void State::NodeDesiredChanged(std::string_view id) {
  if (Node* n = NodeAt(id)) DesiredChanged(*n);
}

void State::CountTask(const Task& t, int delta) {
  Node* n = NodeAt(t.node);
  bool running = t.last == "RUNNING";
  bool pending = t.last == "PROVISIONING" || t.last == "PENDING";
  if (n) {
    n->running += running ? delta : 0;
    n->pending += pending ? delta : 0;
  }
  AdjustClusterCounts(t.cluster, 0, 0, running ? delta : 0, pending ? delta : 0);
}

void State::DesiredChanged(Node& n) {
  n.desired_version++;
  for (StateObserver* o : observers_) o->OnNodeDesiredChanged(n);
}

bool State::Transition(Task& t, const std::string& last, int64_t now_ms) {
  if (Rank(last) <= Rank(t.last)) return false;
  CountTask(t, -1);
  t.last = last;
  if (last == "RUNNING" && !t.started_ms) t.started_ms = now_ms;
  if (last == "STOPPED") {
    t.stopped_ms = now_ms;
    if (t.desired != "STOPPED") t.desired = "STOPPED";
    Node* n = NodeAt(t.node);
    if (n) {
      Node& node = *n;
      node.used_cpu -= t.cpu;
      node.used_memory -= t.memory;
      for (const auto& p : t.fixed_ports) {
        auto it = node.ports.find(p);
        if (it != node.ports.end()) node.ports.erase(it);
      }
      node.tasks.erase(t.id);
      for (StateObserver* o : observers_) o->OnTaskReleased(t, node);
      DesiredChanged(node);
    }
  }
  CountTask(t, +1);
  return true;
}

Status State::SaveTask(store::Db& db, const Task& t, bool insert) {
  return WriteTaskRow(db, t, insert, ContainersText(t));
}

Status State::LoadNodesAndTasks(store::Db& db) {
  // The agents' connections are facts of this server, not state: a reload (after
  // a failed commit) keeps them, or every connected node would look away and be
  // declared lost. desired_version only grows, so no stream mistakes a new set
  // for one it sent.
  struct Live {
    bool connected;
    int64_t last_heartbeat_ms, disconnected_since_ms;
    uint64_t desired_version;
  };
  std::unordered_map<std::string, Live> live;
  for (const auto& [id, n] : nodes_) {
    live.emplace(id, Live{n.connected, n.last_heartbeat_ms, n.disconnected_since_ms, n.desired_version + 1});
  }
  nodes_.clear();
  node_index_.clear();
  tasks_by_short_.clear();
  tasks_.clear();
  {
    Result<store::Stmt> s = db.Prepare(
        "SELECT id, cluster, hostname, status, cpu, memory, attributes, registered_ms, reserved_ports, identity, "
        "agent_version, address FROM nodes");
    if (!s) return s.take_error();
    for (;;) {
      Result<bool> row = s->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      Node n;
      n.id = s->Text(0);
      n.cluster = s->Text(1);
      n.hostname = s->Text(2);
      n.status = s->Text(3);
      n.cpu = s->Int(4);
      n.memory = s->Int(5);
      Result<json::Doc> attrs = json::Doc::Parse(s->Text(6));
      if (attrs) {
        for (json::View a : attrs->view()) n.agent_attributes[std::string(a.Key())] = std::string(a.String());
      }
      n.MergeAttributes();
      n.registered_ms = s->Int(7);
      n.identity = s->Text(9);
      n.agent_version = s->Text(10);
      n.address = s->Text(11);
      if (Result<std::vector<std::pair<int, bool>>> reserved = ParsePortsText(s->Text(8)); reserved) {
        n.reserved_ports = std::move(reserved.value());
        for (const auto& p : n.reserved_ports) n.ports.insert(p);
      }
      n.arn = NodeArn(n.cluster, n.id);
      if (auto l = live.find(n.id); l != live.end()) {
        n.connected = l->second.connected;
        n.last_heartbeat_ms = l->second.last_heartbeat_ms;
        n.disconnected_since_ms = l->second.disconnected_since_ms;
        n.desired_version = l->second.desired_version;
      }
      AdjustClusterCounts(n.cluster, 1, 0, 0, 0);
      auto [at, added] = nodes_.emplace(n.id, std::move(n));
      if (added) node_index_.emplace(at->first, &at->second);
    }
  }
  Result<store::Stmt> s = db.Prepare(
      "SELECT id, cluster, node, family, revision, grp, started_by, service, deployment, desired, last,"
      " stopped_reason, stop_code, health, containers, created_ms, started_ms, stopping_ms, stopped_ms, target_health"
      " FROM tasks");
  if (!s) return s.take_error();
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    Task t;
    t.id = s->Text(0);
    t.cluster = s->Text(1);
    t.node = s->Text(2);
    t.family = s->Text(3);
    t.revision = s->Int(4);
    t.group = s->Text(5);
    t.started_by = s->Text(6);
    t.service = s->Text(7);
    t.deployment = s->Text(8);
    t.desired = s->Text(9);
    t.last = s->Text(10);
    t.stopped_reason = s->Text(11);
    t.stop_code = s->Text(12);
    t.health = s->Text(13);
    Result<json::Doc> containers = json::Doc::Parse(s->Text(14));
    if (containers) (void)ParseContainers(containers->view(), &t.containers);
    t.created_ms = s->Int(15);
    t.started_ms = s->Int(16);
    t.stopping_ms = s->Int(17);
    t.stopped_ms = s->Int(18);
    ParseTargetHealth(s->Text(19), &t);
    t.arn = TaskArn(t.cluster, t.id);
    if (TaskDefinition* td = MutableTaskDefinition(t.family, t.revision)) {
      td->task_refs++;
      t.cpu = td->cpu;
      t.memory = td->memory;
      t.fixed_ports = td->FixedPorts();
      t.has_health_check = td->has_health_check;
    }
    CountTask(t, +1);
    const Task& stored = tasks_.emplace(t.id, std::move(t)).first->second;
    IndexTask(stored);
    if (!stored.stopped()) {
      Node* n = NodeAt(stored.node);
      if (n) {
        n->used_cpu += stored.cpu;
        n->used_memory += stored.memory;
        for (const auto& p : stored.fixed_ports) n->ports.insert(p);
        n->tasks.emplace(stored.id, &stored);
      }
    }
  }
  return {};
}

Result<std::string> State::ApplyRegisterNode(store::Db& db, const RegisterNode& c) {
  if (Status s = ValidateNodeId(c.id); !s) return s.take_error();
  if (!FindCluster(c.cluster)) return Error::NotFound("ClusterNotFound", "cluster " + c.cluster + " does not exist");
  if (c.cpu <= 0 || c.memory <= 0) return Error::Invalid("cpu and memory must be above 0");
  for (const auto& [k, v] : c.attributes) {
    if (Status s = ValidateAttribute(k, v); !s) return s.take_error();
  }
  if (revoked_nodes_.count(c.id)) {
    return Error::Conflict("NodeRevoked", "node " + c.id + " was revoked: it may not register again");
  }
  Token* join = nullptr;
  if (!c.join_token.empty()) {
    for (Token& t : tokens_) {
      if (t.id == c.join_token) join = &t;
    }
    if (!join) return Error::Unauthorized("the token " + c.join_token + " no longer exists");
    if (join->uses_left == 0) return Error::Unauthorized("the token " + c.join_token + " has no uses left");
  }
  const Node* known = NodeAt(c.id);
  bool existed = known != nullptr;
  if (existed && known->cluster != c.cluster) {
    return Error::Conflict("NodeInAnotherCluster",
                           "node " + c.id + " is registered in cluster " + known->cluster + ", not " + c.cluster);
  }
  Node n = existed ? *known : Node();
  n.id = c.id;
  n.cluster = c.cluster;
  n.arn = NodeArn(c.cluster, c.id);
  n.hostname = c.hostname.substr(0, 255);
  n.cpu = c.cpu;
  n.memory = c.memory;
  n.agent_attributes = c.attributes;
  n.MergeAttributes();
  if (c.reserved_ports.size() > 100) return Error::Invalid("reservedPorts: at most 100");
  for (const auto& [port, udp] : c.reserved_ports) {
    if (port < 1 || port > 65535) return Error::Invalid("reservedPorts: " + std::to_string(port) + " is not 1-65535");
  }
  // The host's own ports are in use like a task's: no task is placed on them.
  for (const auto& p : n.reserved_ports) {
    auto used = n.ports.find(p);
    if (used != n.ports.end()) n.ports.erase(used);
  }
  n.reserved_ports = c.reserved_ports;
  for (const auto& p : n.reserved_ports) n.ports.insert(p);
  if (!existed) n.registered_ms = c.time_ms;
  if (!c.identity.empty()) n.identity = c.identity;
  n.agent_version = c.agent_version.substr(0, 64);
  n.address = c.address.substr(0, 255);
  Result<store::Stmt*> s = db.Cached(
      "INSERT OR REPLACE INTO nodes (id, cluster, hostname, status, cpu, memory, attributes, registered_ms,"
      " reserved_ports, identity, agent_version, address) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
  if (!s) return s.take_error();
  (*s)->Bind(1, n.id).Bind(2, n.cluster).Bind(3, n.hostname).Bind(4, n.status).Bind(5, n.cpu).Bind(6, n.memory);
  (*s)->Bind(7, AttributesText(n.agent_attributes)).Bind(8, n.registered_ms).Bind(9, PortsText(n.reserved_ports));
  (*s)->Bind(10, n.identity).Bind(11, n.agent_version).Bind(12, n.address);
  if (Status st = (*s)->Run(); !st) return st.take_error();
  if (join && join->uses_left > 0) {
    Result<store::Stmt*> use = db.Cached("UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1");
    if (!use) return use.take_error();
    (*use)->Bind(1, join->id);
    if (Status st = (*use)->Run(); !st) return st.take_error();
    join->uses_left--;
  }
  if (!existed) AdjustClusterCounts(n.cluster, 1, 0, 0, 0);
  auto at = nodes_.try_emplace(n.id).first;
  Node& stored = at->second;
  node_index_[at->first] = &stored;
  stored = std::move(n);
  for (StateObserver* o : observers_) o->OnNodeChanged(stored);
  return json::Doc::Object().Set("containerInstance", NodeJson(stored)).Print();
}

Result<std::string> State::ApplySetNodeStatus(store::Db& db, const SetNodeStatus& c) {
  Node* it = NodeAt(c.id);
  if (!it) return Error::NotFound("NodeNotFound", "node " + c.id + " does not exist");
  if (c.status != "ACTIVE" && c.status != "DRAINING") return Error::Invalid("status: must be ACTIVE or DRAINING");
  Result<store::Stmt*> s = db.Cached("UPDATE nodes SET status = ?2 WHERE id = ?1");
  if (!s) return s.take_error();
  (*s)->Bind(1, c.id).Bind(2, c.status);
  if (Status st = (*s)->Run(); !st) return st.take_error();
  it->status = c.status;
  for (StateObserver* o : observers_) o->OnNodeChanged(*it);
  return json::Doc::Object().Set("containerInstance", NodeJson(*it)).Print();
}

Result<std::string> State::ApplyDeregisterNode(store::Db& db, const DeregisterNode& c) {
  auto it = nodes_.find(c.id);
  if (it == nodes_.end()) return Error::NotFound("NodeNotFound", "node " + c.id + " does not exist");
  Node& n = it->second;
  if (!n.tasks.empty() && !c.force) {
    return Error::Conflict("NodeHasTasks", "node " + c.id + " still has " + std::to_string(n.tasks.size()) +
                                               " task(s); drain it first or deregister with force");
  }
  std::vector<std::string> ids;
  for (const auto& [id, t] : n.tasks) ids.push_back(id);
  for (const std::string& id : ids) {
    Task& t = tasks_[id];
    t.stopped_reason = "node " + c.id + " was deregistered";
    t.stop_code = "UserInitiated";
    Transition(t, "STOPPED", c.time_ms);
    if (Status s = SaveTask(db, t, false); !s) return s.take_error();
    for (StateObserver* o : observers_) o->OnTaskChanged(t);
  }
  Result<store::Stmt*> s = db.Cached("DELETE FROM nodes WHERE id = ?1");
  if (!s) return s.take_error();
  (*s)->Bind(1, c.id);
  if (Status st = (*s)->Run(); !st) return st.take_error();
  if (!n.custom_attributes.empty()) {
    Result<store::Stmt*> a = db.Cached("DELETE FROM node_attributes WHERE node = ?1");
    if (!a) return a.take_error();
    (*a)->Bind(1, c.id);
    if (Status st = (*a)->Run(); !st) return st.take_error();
  }
  if (Status st = DropTags(db, n.arn); !st) return st.take_error();
  if (c.revoke) {
    Result<store::Stmt*> r = db.Cached("INSERT OR REPLACE INTO revoked_nodes (id, revoked_ms) VALUES (?1, ?2)");
    if (!r) return r.take_error();
    (*r)->Bind(1, c.id).Bind(2, c.time_ms);
    if (Status st = (*r)->Run(); !st) return st.take_error();
    revoked_nodes_.insert(c.id);
  }
  for (StateObserver* o : observers_) o->OnNodeRemoved(n);
  n.status = "INACTIVE";
  std::string reply = json::Doc::Object().Set("containerInstance", NodeJson(n)).Print();
  AdjustClusterCounts(n.cluster, -1, 0, 0, 0);
  node_index_.erase(it->first);
  nodes_.erase(it);
  return reply;
}

Result<std::string> State::ApplyPlaceTasks(store::Db& db, const PlaceTasks& c) {
  if (!FindCluster(c.cluster)) return Error::NotFound("ClusterNotFound", "cluster " + c.cluster + " does not exist");
  TaskDefinition* td = MutableTaskDefinition(c.family, c.revision);
  if (!td) {
    return Error::NotFound("TaskDefinitionNotFound",
                           "task definition " + c.family + ":" + std::to_string(c.revision) + " does not exist");
  }
  std::vector<std::pair<int, bool>> fixed = td->FixedPorts();
  bool has_health = td->has_health_check;
  // Check every placement against what is free now (a plan can be stale), as a whole.
  // node → (cpu, memory) added by this command
  std::unordered_map<std::string_view, std::pair<int64_t, int64_t>> extra;
  extra.reserve(c.placements.size());
  std::vector<Node*> targets;  // the node of each placement
  targets.reserve(c.placements.size());
  for (const PlaceTasks::Placement& p : c.placements) {
    Node* n = NodeAt(p.node);
    if (!n) return Error::Conflict("PlacementInvalid", "node " + p.node + " does not exist");
    targets.push_back(n);
    const Node& node = *n;
    if (node.cluster != c.cluster)
      return Error::Conflict("PlacementInvalid", "node " + p.node + " is not in " + c.cluster);
    if (node.status != "ACTIVE") return Error::Conflict("PlacementInvalid", "node " + p.node + " is " + node.status);
    auto& [cpu, mem] = extra[p.node];
    cpu += td->cpu;
    mem += td->memory;
    if (node.used_cpu + cpu > node.cpu || node.used_memory + mem > node.memory) {
      return Error::Conflict("PlacementInvalid", "node " + p.node + " has no room left for " + c.family);
    }
    for (const auto& port : fixed) {
      if (node.ports.count(port)) {
        return Error::Conflict("PlacementInvalid",
                               "host port " + std::to_string(port.first) + " is in use on " + p.node);
      }
    }
    if (tasks_.count(p.task_id)) return Error::Conflict("PlacementInvalid", "task " + p.task_id + " exists already");
  }
  // Every task of the command starts out alike but for its id and node: one
  // template, and its containers' text printed once for all the rows.
  Task proto;
  proto.cluster = c.cluster;
  proto.family = c.family;
  proto.revision = c.revision;
  proto.group = c.group;
  proto.started_by = c.started_by;
  proto.service = c.service;
  proto.deployment = c.deployment;
  proto.cpu = td->cpu;
  proto.memory = td->memory;
  proto.fixed_ports = fixed;
  proto.has_health_check = has_health;
  proto.created_ms = c.time_ms;
  for (const ContainerSummary& cs : td->containers) {
    ContainerState st;
    st.name = cs.name;
    proto.containers.push_back(std::move(st));
  }
  const std::string containers = ContainersText(proto);
  std::string reply = "{\"taskArns\":[";
  for (size_t i = 0; i < c.placements.size(); i++) {
    const PlaceTasks::Placement& p = c.placements[i];
    Task t = proto;
    t.id = p.task_id;
    t.arn = TaskArn(c.cluster, t.id);
    t.node = p.node;
    if (Status s = WriteTaskRow(db, t, true, containers); !s) return s.take_error();
    if (reply.back() != '[') reply.push_back(',');
    json::AppendQuoted(&reply, t.arn);
    Node& node = *targets[i];
    node.used_cpu += t.cpu;
    node.used_memory += t.memory;
    for (const auto& port : fixed) node.ports.insert(port);
    node.pending++;  // CountTask(t, +1) for a PROVISIONING task, without finding the node again
    AdjustClusterCounts(c.cluster, 0, 0, 0, 1);
    Task& stored = tasks_.emplace(t.id, std::move(t)).first->second;
    IndexTask(stored);
    node.tasks.emplace(stored.id, &stored);
    for (StateObserver* o : observers_) {
      o->OnTaskAccounted(stored, node);
      o->OnTaskChanged(stored);
    }
    DesiredChanged(node);
  }
  td->task_refs += static_cast<int64_t>(c.placements.size());
  tasks_placed_ += c.placements.size();
  reply.append("]}");
  return reply;
}

Result<std::string> State::ApplyStopTasks(store::Db& db, const StopTasks& c) {
  for (const std::string& id : c.ids) {
    if (!tasks_.count(id)) return Error::NotFound("TaskNotFound", "task " + id + " does not exist");
  }
  json::Doc list = json::Doc::Array();
  for (const std::string& id : c.ids) {
    Task& t = tasks_[id];
    if (!t.stopped() && t.desired != "STOPPED") {
      t.desired = "STOPPED";
      t.stopping_ms = c.time_ms;
      if (t.stopped_reason.empty()) t.stopped_reason = c.reason;
      if (t.stop_code.empty()) t.stop_code = c.code;
      Node* n = NodeAt(t.node);
      // A task its node never started, on a node whose agent is away, is simply gone.
      if (t.last == "PROVISIONING" && (!n || !n->connected)) {
        Transition(t, "STOPPED", c.time_ms);
      } else if (n) {
        DesiredChanged(*n);
      }
      if (Status s = SaveTask(db, t, false); !s) return s.take_error();
      for (StateObserver* o : observers_) o->OnTaskChanged(t);
    }
    list.Push(TaskJson(t));
  }
  return json::Doc::Object().Set("tasks", list).Print();
}

Result<std::string> State::ApplyReportTasks(store::Db& db, const ReportTasks& c) {
  Node* n = NodeAt(c.node);
  if (!n) return Error::NotFound("NodeNotFound", "node " + c.node + " does not exist");
  // Every report is checked before any task changes: a bad one refuses the
  // command and leaves the others unapplied too.
  std::vector<std::optional<std::vector<ContainerState>>> parsed(c.reports.size());
  for (size_t i = 0; i < c.reports.size(); i++) {
    const ReportTasks::Report& r = c.reports[i];
    std::string where = "tasks[" + std::to_string(i) + "]";
    if (Rank(r.last) < 0) return Error::Invalid(where + ".lastStatus: must be PENDING, RUNNING or STOPPED");
    if (r.containers.empty() || r.containers == "[]") continue;
    Result<json::Doc> doc = json::Doc::Parse(r.containers);
    if (!doc) return Error::Invalid(where + ".containers: " + doc.error().message);
    std::vector<ContainerState> containers;
    if (Status s = ParseContainers(doc->view(), &containers); !s) {
      return Error::Invalid(where + ".containers: " + s.error().message);
    }
    parsed[i] = std::move(containers);
  }
  for (size_t i = 0; i < c.health.size(); i++) {
    const ReportTasks::Health& h = c.health[i];
    std::string where = "targetHealth[" + std::to_string(i) + "]";
    if (h.state != "healthy" && h.state != "unhealthy")
      return Error::Invalid(where + ".state: must be healthy or unhealthy");
    if (h.target_group.empty() || h.reason.size() > 64 || h.description.size() > 1024) {
      return Error::Invalid(where +
                            ": needs a targetGroup, a reason of at most 64 bytes, a description of at most 1 KiB");
    }
  }
  int64_t changed = 0;
  for (size_t i = 0; i < c.reports.size(); i++) {
    const ReportTasks::Report& r = c.reports[i];
    auto it = tasks_.find(r.task_id);
    // A report about a task this node does not hold is stale (the task was
    // forgotten, or moved on): the desired set the agent gets next corrects it.
    if (it == tasks_.end() || it->second.node != c.node) continue;
    Task& t = it->second;
    bool any = false;
    if (parsed[i] && *parsed[i] != t.containers) {
      t.containers = std::move(*parsed[i]);
      t.health = TaskHealth(t, FindTaskDefinition(t.family, t.revision));
      any = true;
    }
    if (r.last == "STOPPED" && t.stopped_reason.empty()) {
      t.stopped_reason = r.reason.empty() ? "Essential container in task exited" : r.reason.substr(0, 1024);
      if (t.stop_code.empty()) t.stop_code = t.last == "RUNNING" ? "EssentialContainerExited" : "TaskFailedToStart";
    }
    if (Transition(t, r.last, c.time_ms)) any = true;
    if (!any) continue;
    changed++;
    if (Status s = SaveTask(db, t, false); !s) return s.take_error();
    for (StateObserver* o : observers_) o->OnTaskChanged(t);
  }
  // Target health: only a task of this node, not stopped, of a service that
  // names the group. Kept apart from the task row's hot UPDATE.
  Result<store::Stmt*> save_health =
      c.health.empty() ? Result<store::Stmt*>(nullptr) : db.Cached("UPDATE tasks SET target_health = ?2 WHERE id = ?1");
  if (!save_health) return save_health.take_error();
  for (const ReportTasks::Health& h : c.health) {
    auto it = tasks_.find(h.task_id);
    if (it == tasks_.end() || it->second.node != c.node || it->second.stopped()) continue;
    Task& t = it->second;
    const Service* svc = FindService(t.cluster, t.service);
    if (!svc || std::none_of(svc->load_balancers.begin(), svc->load_balancers.end(),
                             [&](const ServiceLoadBalancer& slb) { return slb.target_group == h.target_group; })) {
      continue;
    }
    Task::TargetHealth next{h.target_group, h.state, h.reason, h.description.substr(0, 256), c.time_ms};
    auto at = std::find_if(t.target_health.begin(), t.target_health.end(),
                           [&](const Task::TargetHealth& x) { return x.target_group == h.target_group; });
    if (at != t.target_health.end()) {
      if (at->state == next.state && at->reason == next.reason && at->description == next.description) continue;
      if (at->state == next.state) next.since_ms = at->since_ms;
      *at = std::move(next);
    } else {
      t.target_health.push_back(std::move(next));
    }
    changed++;
    (*save_health)->Bind(1, t.id).Bind(2, TargetHealthText(t));
    if (Status s = (*save_health)->Run(); !s) return s.take_error();
    for (StateObserver* o : observers_) o->OnTaskChanged(t);
  }
  return json::Doc::Object().Set("changed", changed).Set("version", static_cast<int64_t>(n->desired_version)).Print();
}

Result<std::string> State::ApplyForgetTasks(store::Db& db, const ForgetTasks& c) {
  Result<store::Stmt*> del = db.Cached("DELETE FROM tasks WHERE id = ?1");
  if (!del) return del.take_error();
  std::vector<TaskMap::iterator> gone;
  std::unordered_set<const Task*> seen;  // an id named twice is forgotten once
  gone.reserve(c.ids.size());
  for (const std::string& id : c.ids) {
    auto it = tasks_.find(id);
    // Only a STOPPED task holds nothing on a node and no place in a node's set.
    if (it == tasks_.end() || !it->second.stopped()) continue;
    if (!seen.insert(&it->second).second) continue;
    (*del)->Bind(1, id);
    if (Status s = (*del)->Run(); !s) return s.take_error();
    if (Status s = DropTags(db, it->second.arn); !s) return s.take_error();
    gone.push_back(it);
  }
  for (TaskMap::iterator it : gone) {
    Task& t = it->second;
    for (StateObserver* o : observers_) o->OnTaskForgotten(t);
    if (TaskDefinition* td = MutableTaskDefinition(t.family, t.revision)) td->task_refs--;
    UnindexTask(t);
    tasks_.erase(it);
  }
  return json::Doc::Object().Set("forgotten", static_cast<int64_t>(gone.size())).Print();
}

Result<std::string> State::ApplyNodeLost(store::Db& db, const NodeLost& c) {
  Node* n = NodeAt(c.node);
  if (!n) return Error::NotFound("NodeNotFound", "node " + c.node + " does not exist");
  std::vector<std::string> ids;
  for (const auto& [id, t] : n->tasks) ids.push_back(id);
  for (const std::string& id : ids) {
    Task& t = tasks_[id];
    t.stopped_reason = c.reason;
    t.stop_code = "NodeLost";
    Transition(t, "STOPPED", c.time_ms);
    if (Status s = SaveTask(db, t, false); !s) return s.take_error();
    for (StateObserver* o : observers_) o->OnTaskChanged(t);
  }
  return json::Doc::Object().Set("stopped", static_cast<int64_t>(ids.size())).Print();
}

}  // namespace berth::model
