#include "model/state.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <unordered_set>

#include "base/crypto.h"

namespace berth::model {

Status State::Load(store::Db& db) {
  clusters_.clear();
  tokens_.clear();
  {
    Result<store::Stmt> s = db.Prepare("SELECT name, arn, status, created_ms, policy FROM clusters");
    if (!s) return s.take_error();
    for (;;) {
      Result<bool> row = s->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      Cluster c;
      c.name = s->Text(0);
      c.arn = s->Text(1);
      c.status = s->Text(2);
      c.created_ms = s->Int(3);
      Result<json::Doc> pdoc = json::Doc::Parse(s->Text(4));
      if (!pdoc) return Error::Internal("cluster " + c.name + ": policy: " + pdoc.error().message);
      Result<TaskPolicy> policy = ParseTaskPolicy(pdoc->view());
      if (!policy) return Error::Internal("cluster " + c.name + ": " + policy.error().message);
      c.policy = std::move(policy.value());
      c.policy_json = c.policy.ToJson().Print();
      clusters_.emplace(c.name, std::move(c));
    }
  }
  task_definitions_.clear();
  {
    Result<store::Stmt> s =
        db.Prepare("SELECT family, revision, status, doc, registered_ms, deregistered_ms FROM task_definitions");
    if (!s) return s.take_error();
    for (;;) {
      Result<bool> row = s->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      TaskDefinition td;
      td.family = s->Text(0);
      td.revision = s->Int(1);
      td.status = s->Text(2);
      td.doc = s->Text(3);
      td.registered_ms = s->Int(4);
      td.deregistered_ms = s->Int(5);
      td.arn = TaskDefinitionArn(td.family, td.revision);
      if (Status st = SummariseTaskDefinition(&td); !st) return st.take_error();
      task_definitions_[td.family].emplace(td.revision, std::move(td));
    }
  }
  if (Status st = LoadNodesAndTasks(db); !st) return st;
  if (Status st = LoadNodeAttributes(db); !st) return st;
  if (Status st = LoadTags(db); !st) return st;
  if (Status st = LoadServices(db); !st) return st;
  Result<store::Stmt> s = db.Prepare(
      "SELECT id, role, hash, created_ms, expires_ms, uses_left, last_used_ms, scope, sealed_secret, secret_key_id, "
      "parent FROM tokens");
  if (!s) return s.take_error();
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    tokens_.push_back(Token{std::string(s->Text(0)),
                            std::string(s->Text(1)),
                            std::string(s->Text(2)),
                            s->Int(3),
                            s->Int(4),
                            s->Int(5),
                            s->Int(6),
                            {}});
    Result<json::Doc> scope = json::Doc::Parse(s->Text(7));
    Result<TokenScope> parsed = scope ? ParseTokenScope(scope->view()) : Result<TokenScope>(scope.take_error());
    if (!parsed) return Error::Internal("tokens row " + tokens_.back().id + ": scope: " + parsed.error().message);
    tokens_.back().scope = std::move(parsed.value());
    if (!s->Text(8).empty()) {
      Result<std::string> sealed = crypto::Base64Decode(s->Text(8));
      if (!sealed)
        return Error::Internal("tokens row " + tokens_.back().id + ": sealed_secret: " + sealed.error().message);
      tokens_.back().sealed_secret = std::move(sealed.value());
      tokens_.back().secret_key_id = s->Text(9);
    }
    tokens_.back().parent = s->Text(10);
  }
  revoked_nodes_.clear();
  {
    Result<store::Stmt> r = db.Prepare("SELECT id FROM revoked_nodes");
    if (!r) return r.take_error();
    for (;;) {
      Result<bool> row = r->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      revoked_nodes_.insert(std::string(r->Text(0)));
    }
  }
  if (Status st = LoadSecrets(db); !st) return st;
  if (Status st = LoadLoadBalancing(db); !st) return st;
  for (StatePart* p : parts_) {
    if (Status st = p->Load(db); !st) return st;
  }
  for (StateObserver* o : observers_) o->OnReloaded();
  return {};
}

Result<store::CommandPtr> State::Decode(std::string_view type, std::string_view payload, int64_t time_ms) {
  for (StatePart* p : parts_) {
    if (p->Owns(type)) return p->Decode(type, payload, time_ms);
  }
  return DecodeCommand(type, payload, time_ms);
}

Result<std::string> State::Apply(store::Db& db, const store::Command& cmd) {
  Result<std::string> r = ApplyCommand(db, cmd);
  if (r) {
    for (StateObserver* o : observers_) o->OnCommandApplied(cmd);
  }
  return r;
}

Result<std::string> State::ApplyCommand(store::Db& db, const store::Command& cmd) {
  std::string_view type = cmd.Type();
  if (type == "CreateCluster") return ApplyCreateCluster(db, static_cast<const CreateCluster&>(cmd));
  if (type == "DeleteCluster") return ApplyDeleteCluster(db, static_cast<const DeleteCluster&>(cmd));
  if (type == "UpdateCluster") return ApplyUpdateCluster(db, static_cast<const UpdateCluster&>(cmd));
  if (type == "CreateToken") return ApplyCreateToken(db, static_cast<const CreateToken&>(cmd));
  if (type == "DeleteToken") return ApplyDeleteToken(db, static_cast<const DeleteToken&>(cmd));
  if (type == "TouchTokens") return ApplyTouchTokens(db, static_cast<const TouchTokens&>(cmd));
  if (type == "ForgetSessions") return ApplyForgetSessions(db, static_cast<const ForgetSessions&>(cmd));
  if (type == "PutSecret") return ApplyPutSecret(db, static_cast<const PutSecret&>(cmd));
  if (type == "DeleteSecret") return ApplyDeleteSecret(db, static_cast<const DeleteSecret&>(cmd));
  if (type == "CreateTargetGroup") return ApplyCreateTargetGroup(db, static_cast<const CreateTargetGroup&>(cmd));
  if (type == "ModifyTargetGroup") return ApplyModifyTargetGroup(db, static_cast<const ModifyTargetGroup&>(cmd));
  if (type == "DeleteTargetGroup") return ApplyDeleteTargetGroup(db, static_cast<const DeleteTargetGroup&>(cmd));
  if (type == "CreateLoadBalancer") return ApplyCreateLoadBalancer(db, static_cast<const CreateLoadBalancer&>(cmd));
  if (type == "DeleteLoadBalancer") return ApplyDeleteLoadBalancer(db, static_cast<const DeleteLoadBalancer&>(cmd));
  if (type == "CreateListener") return ApplyCreateListener(db, static_cast<const CreateListener&>(cmd));
  if (type == "DeleteListener") return ApplyDeleteListener(db, static_cast<const DeleteListener&>(cmd));
  if (type == "CreateRule") return ApplyCreateRule(db, static_cast<const CreateRule&>(cmd));
  if (type == "DeleteRule") return ApplyDeleteRule(db, static_cast<const DeleteRule&>(cmd));
  if (type == "RegisterTaskDefinition") {
    return ApplyRegisterTaskDefinition(db, static_cast<const RegisterTaskDefinition&>(cmd));
  }
  if (type == "DeregisterTaskDefinition") {
    return ApplyDeregisterTaskDefinition(db, static_cast<const DeregisterTaskDefinition&>(cmd));
  }
  if (type == "RegisterNode") return ApplyRegisterNode(db, static_cast<const RegisterNode&>(cmd));
  if (type == "SetNodeStatus") return ApplySetNodeStatus(db, static_cast<const SetNodeStatus&>(cmd));
  if (type == "DeregisterNode") return ApplyDeregisterNode(db, static_cast<const DeregisterNode&>(cmd));
  if (type == "PlaceTasks") return ApplyPlaceTasks(db, static_cast<const PlaceTasks&>(cmd));
  if (type == "StopTasks") return ApplyStopTasks(db, static_cast<const StopTasks&>(cmd));
  if (type == "ReportTasks") return ApplyReportTasks(db, static_cast<const ReportTasks&>(cmd));
  if (type == "NodeLost") return ApplyNodeLost(db, static_cast<const NodeLost&>(cmd));
  if (type == "ForgetTasks") return ApplyForgetTasks(db, static_cast<const ForgetTasks&>(cmd));
  if (type == "ForgetTaskDefinitions") {
    return ApplyForgetTaskDefinitions(db, static_cast<const ForgetTaskDefinitions&>(cmd));
  }
  if (type == "CreateService") return ApplyCreateService(db, static_cast<const CreateService&>(cmd));
  if (type == "UpdateService") return ApplyUpdateService(db, static_cast<const UpdateService&>(cmd));
  if (type == "SetDeploymentState") return ApplySetDeploymentState(db, static_cast<const SetDeploymentState&>(cmd));
  if (type == "DeleteService") return ApplyDeleteService(db, static_cast<const DeleteService&>(cmd));
  if (type == "RemoveService") return ApplyRemoveService(db, static_cast<const RemoveService&>(cmd));
  if (type == "PutTags") return ApplyPutTags(db, static_cast<const PutTags&>(cmd));
  if (type == "RemoveTags") return ApplyRemoveTags(db, static_cast<const RemoveTags&>(cmd));
  if (type == "PutNodeAttributes") return ApplyPutNodeAttributes(db, static_cast<const PutNodeAttributes&>(cmd));
  if (type == "DeleteNodeAttributes") {
    return ApplyDeleteNodeAttributes(db, static_cast<const DeleteNodeAttributes&>(cmd));
  }
  for (StatePart* p : parts_) {
    if (!p->Owns(type)) continue;
    Result<std::string> reply = p->Apply(db, cmd);
    if (!reply) return reply;
    if (std::string gone = p->ResourceRemovedBy(cmd); !gone.empty()) {
      if (Status st = DropTags(db, gone); !st) return st.take_error();
    }
    return reply;
  }
  return Error::Internal("no apply for command " + std::string(type));
}

const Cluster* State::FindCluster(std::string_view name) const {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : &it->second;
}

void State::AdjustClusterCounts(std::string_view name, int64_t nodes, int64_t services, int64_t running,
                                int64_t pending) {
  auto it = clusters_.find(name);
  if (it == clusters_.end()) return;
  it->second.registered_nodes += nodes;
  it->second.active_services += services;
  it->second.running_tasks += running;
  it->second.pending_tasks += pending;
}

const TaskDefinition* State::FindTaskDefinition(std::string_view family, int64_t revision) const {
  auto f = task_definitions_.find(family);
  if (f == task_definitions_.end()) return nullptr;
  if (revision > 0) {
    auto r = f->second.find(revision);
    return r == f->second.end() ? nullptr : &r->second;
  }
  for (auto it = f->second.rbegin(); it != f->second.rend(); ++it) {
    if (it->second.status == "ACTIVE") return &it->second;
  }
  return nullptr;
}

Result<std::string> State::ApplyRegisterTaskDefinition(store::Db& db, const RegisterTaskDefinition& c) {
  TaskDefinition td;
  td.family = c.family;
  auto f = task_definitions_.find(c.family);
  td.revision = f == task_definitions_.end() || f->second.empty() ? 1 : f->second.rbegin()->first + 1;
  td.arn = TaskDefinitionArn(td.family, td.revision);
  td.doc = c.doc;
  td.registered_ms = c.time_ms;
  if (Status s = SummariseTaskDefinition(&td); !s) return s.take_error();
  Result<store::Stmt*> ins = db.Cached(
      "INSERT INTO task_definitions (family, revision, status, doc, registered_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!ins) return ins.take_error();
  (*ins)->Bind(1, td.family).Bind(2, td.revision).Bind(3, td.status).Bind(4, td.doc).Bind(5, td.registered_ms);
  if (Status s = (*ins)->Run(); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("taskDefinition", TaskDefinitionJson(td)).Print();
  task_definitions_[td.family].emplace(td.revision, std::move(td));
  return reply;
}

Result<std::string> State::ApplyDeregisterTaskDefinition(store::Db& db, const DeregisterTaskDefinition& c) {
  auto f = task_definitions_.find(c.family);
  auto r = f == task_definitions_.end() ? decltype(f->second.end()){} : f->second.find(c.revision);
  if (f == task_definitions_.end() || r == f->second.end()) {
    return Error::NotFound("TaskDefinitionNotFound",
                           "task definition " + c.family + ":" + std::to_string(c.revision) + " does not exist");
  }
  if (r->second.status == "INACTIVE") {
    return Error::Conflict("TaskDefinitionInactive",
                           "task definition " + c.family + ":" + std::to_string(c.revision) + " is already INACTIVE");
  }
  Result<store::Stmt*> up = db.Cached(
      "UPDATE task_definitions SET status = 'INACTIVE', deregistered_ms = ?3 WHERE family = ?1 AND revision = ?2");
  if (!up) return up.take_error();
  (*up)->Bind(1, c.family).Bind(2, c.revision).Bind(3, c.time_ms);
  if (Status s = (*up)->Run(); !s) return s.take_error();
  r->second.status = "INACTIVE";
  r->second.deregistered_ms = c.time_ms;
  return json::Doc::Object().Set("taskDefinition", TaskDefinitionJson(r->second)).Print();
}

bool State::ServicesUse(std::string_view family, int64_t revision) const {
  for (const auto& [key, s] : services_) {
    for (const Deployment& d : s.deployments) {
      if (d.family == family && d.revision == revision) return true;
    }
  }
  return false;
}

Result<std::string> State::ApplyForgetTaskDefinitions(store::Db& db, const ForgetTaskDefinitions& c) {
  // Which qualify is decided whole first; then rows, then memory.
  std::vector<std::pair<std::string, int64_t>> gone;
  for (const auto& [family, revision] : c.revisions) {
    auto f = task_definitions_.find(family);
    if (f == task_definitions_.end()) continue;
    auto r = f->second.find(revision);
    if (r == f->second.end() || r->second.status != "INACTIVE" || r->second.task_refs > 0) continue;
    if (std::prev(f->second.end())->first == revision) continue;  // the latest keeps the family's numbering
    if (ServicesUse(family, revision)) continue;
    gone.emplace_back(family, revision);
  }
  Result<store::Stmt*> del = db.Cached("DELETE FROM task_definitions WHERE family = ?1 AND revision = ?2");
  if (!del) return del.take_error();
  for (const auto& [family, revision] : gone) {
    (*del)->Bind(1, family).Bind(2, revision);
    if (Status s = (*del)->Run(); !s) return s.take_error();
    if (Status s = DropTags(db, TaskDefinitionArn(family, revision)); !s) return s.take_error();
  }
  for (const auto& [family, revision] : gone) task_definitions_.find(family)->second.erase(revision);
  return json::Doc::Object().Set("forgotten", static_cast<int64_t>(gone.size())).Print();
}

const Token* State::FindTokenBySecret(std::string_view secret) const {
  // A pinned token (base/crypto.h) is taken too: its pin is the client's business.
  std::string presented = crypto::Hex(crypto::Sha256(crypto::SplitToken(secret).secret));
  const Token* found = nullptr;
  // Every hash is compared, whatever matches, so timing says nothing about which.
  for (const Token& t : tokens_) {
    if (crypto::ConstantTimeEqual(presented, t.hash) && !t.session()) found = &t;
  }
  return found;
}

const Token* State::FindSessionBySecret(std::string_view secret) const {
  std::string presented = crypto::Hex(crypto::Sha256(secret));
  const Token* found = nullptr;
  for (const Token& t : tokens_) {
    if (crypto::ConstantTimeEqual(presented, t.hash) && t.session()) found = &t;
  }
  return found;
}

Result<std::string> State::ApplyCreateCluster(store::Db& db, const CreateCluster& c) {
  if (Status s = ValidateClusterName(c.name); !s) return s.take_error();
  if (clusters_.count(c.name)) {
    return Error::Conflict("ClusterAlreadyExists", "cluster " + c.name + " already exists");
  }
  Cluster cl;
  cl.name = c.name;
  cl.arn = ClusterArn(c.name);
  cl.created_ms = c.time_ms;
  cl.policy_json = cl.policy.ToJson().Print();
  Result<store::Stmt*> ins = db.Cached("INSERT INTO clusters (name, arn, status, created_ms) VALUES (?1, ?2, ?3, ?4)");
  if (!ins) return ins.take_error();
  (*ins)->Bind(1, cl.name).Bind(2, cl.arn).Bind(3, cl.status).Bind(4, cl.created_ms);
  if (Status s = (*ins)->Run(); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("cluster", ClusterJson(cl)).Print();
  clusters_.emplace(cl.name, std::move(cl));
  return reply;
}

Result<std::string> State::ApplyUpdateCluster(store::Db& db, const UpdateCluster& c) {
  auto it = clusters_.find(c.name);
  if (it == clusters_.end()) return Error::NotFound("ClusterNotFound", "cluster " + c.name + " does not exist");
  Result<json::Doc> doc = json::Doc::Parse(c.policy);
  if (!doc) return Error::Invalid("taskPolicy: " + doc.error().message);
  Result<TaskPolicy> policy = ParseTaskPolicy(doc->view());
  if (!policy) return policy.take_error();
  std::string text = policy->ToJson().Print();
  Result<store::Stmt*> up = db.Cached("UPDATE clusters SET policy = ?2 WHERE name = ?1");
  if (!up) return up.take_error();
  (*up)->Bind(1, c.name).Bind(2, std::string_view(text));
  if (Status s = (*up)->Run(); !s) return s.take_error();
  bool changed = !(it->second.policy == policy.value());
  it->second.policy = std::move(policy.value());
  it->second.policy_json = std::move(text);
  // The agents of the cluster enforce it too: every node gets a new line.
  if (changed) {
    for (auto& [id, n] : nodes_) {
      if (n.cluster == c.name) DesiredChanged(n);
    }
  }
  return json::Doc::Object().Set("cluster", ClusterJson(it->second)).Print();
}

Result<std::string> State::ApplyDeleteCluster(store::Db& db, const DeleteCluster& c) {
  auto it = clusters_.find(c.name);
  if (it == clusters_.end()) return Error::NotFound("ClusterNotFound", "cluster " + c.name + " does not exist");
  const Cluster& cl = it->second;
  if (cl.registered_nodes > 0) {
    return Error::Conflict("ClusterContainsContainerInstances", "cluster " + c.name + " still has " +
                                                                    std::to_string(cl.registered_nodes) +
                                                                    " registered node(s); deregister them first");
  }
  if (cl.active_services > 0) {
    return Error::Conflict("ClusterContainsServices", "cluster " + c.name + " still has " +
                                                          std::to_string(cl.active_services) +
                                                          " active service(s); delete them first");
  }
  if (cl.running_tasks + cl.pending_tasks > 0) {
    return Error::Conflict("ClusterContainsTasks", "cluster " + c.name + " still has " +
                                                       std::to_string(cl.running_tasks + cl.pending_tasks) +
                                                       " task(s); stop them first");
  }
  std::string prefix = ServiceKey(c.name, "");
  auto lb = load_balancers_.lower_bound(prefix);
  auto tg = target_groups_.lower_bound(prefix);
  if ((lb != load_balancers_.end() && lb->first.starts_with(prefix)) ||
      (tg != target_groups_.end() && tg->first.starts_with(prefix))) {
    return Error::Conflict("ClusterContainsLoadBalancing", "cluster " + c.name +
                                                               " still has load balancers or target groups; "
                                                               "remove them first (berth lb rm, berth tg rm)");
  }
  Result<store::Stmt*> del = db.Cached("DELETE FROM clusters WHERE name = ?1");
  if (!del) return del.take_error();
  (*del)->Bind(1, c.name);
  if (Status s = (*del)->Run(); !s) return s.take_error();
  if (Status s = DropTags(db, cl.arn); !s) return s.take_error();
  Cluster gone = cl;
  gone.status = "INACTIVE";
  clusters_.erase(it);
  return json::Doc::Object().Set("cluster", ClusterJson(gone)).Print();
}

Result<std::string> State::ApplyCreateToken(store::Db& db, const CreateToken& c) {
  if (!c.parent.empty()) {
    // A session: it acts for its parent, which must be a person's token.
    const Token* parent = FindToken(c.parent);
    if (!parent) return Error::NotFound("TokenNotFound", "token " + c.parent + " does not exist");
    if (c.role != "session") return Error::Invalid("role: a session's must be session");
    if (parent->session() || parent->access_key() ||
        (parent->role != "admin" && parent->role != "deploy" && parent->role != "read-only")) {
      return Error::Invalid("parent: only admin, deploy and read-only tokens open sessions, not " + c.parent);
    }
    if (!c.scope.empty() || !c.sealed_secret.empty() || c.uses != -1) {
      return Error::Invalid("a session has no limits, sealed secret or uses of its own: its parent's apply");
    }
  } else if (!IsValidRole(c.role)) {
    return Error::Invalid("role: must be admin, deploy, read-only, agent or server");
  }
  if (c.hash.size() != 64) return Error::Invalid("hash: must be 64 hex digits");
  for (const Token& t : tokens_) {
    if (t.id == c.id) return Error::Conflict("TokenAlreadyExists", "token " + c.id + " already exists");
  }
  if (c.uses < -1) return Error::Invalid("uses: must be 0 or more");
  TokenScope scope;
  if (!c.scope.empty()) {
    Result<json::Doc> doc = json::Doc::Parse(c.scope);
    Result<TokenScope> parsed = doc ? ParseTokenScope(doc->view()) : Result<TokenScope>(doc.take_error());
    if (!parsed) return parsed.take_error();
    scope = std::move(parsed.value());
  }
  if (scope.limited() && c.role == "admin") {
    return Error::Invalid("an admin token cannot be limited to clusters or repositories: it can make tokens");
  }
  if (!scope.repos.empty() && c.role == "agent") {
    return Error::Invalid("an agent token is limited by clusters only: its nodes pull with credentials of their own");
  }
  bool access_key = !c.sealed_secret.empty();
  if (access_key) {
    if (c.role != "admin" && c.role != "deploy" && c.role != "read-only") {
      return Error::Invalid("role: an access key's must be admin, deploy or read-only");
    }
    if (c.secret_key_id.empty())
      return Error::Invalid("secretKeyId: an access key needs the id of the key that sealed it");
    if (c.uses != -1) return Error::Invalid("uses: an access key has no uses");
  }
  Result<store::Stmt*> ins = db.Cached(
      "INSERT INTO tokens (id, role, hash, created_ms, expires_ms, uses_left, scope, sealed_secret, secret_key_id, "
      "parent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  if (!ins) return ins.take_error();
  (*ins)
      ->Bind(1, c.id)
      .Bind(2, c.role)
      .Bind(3, c.hash)
      .Bind(4, c.time_ms)
      .Bind(5, c.expires_ms)
      .Bind(6, c.uses)
      .Bind(7, scope.ToJson().Print())
      .Bind(8, access_key ? crypto::Base64Encode(c.sealed_secret) : std::string())
      .Bind(9, c.secret_key_id)
      .Bind(10, c.parent);
  if (Status s = (*ins)->Run(); !s) return s.take_error();
  tokens_.push_back(Token{c.id, c.role, c.hash, c.time_ms, c.expires_ms, c.uses, 0, scope, c.sealed_secret,
                          c.secret_key_id, c.parent});
  if (access_key) return json::Doc::Object().Set("accessKey", AccessKeyJson(tokens_.back())).Print();
  return json::Doc::Object().Set("token", TokenJson(tokens_.back())).Print();
}

Result<std::string> State::ApplyDeleteToken(store::Db& db, const DeleteToken& c) {
  auto it = std::find_if(tokens_.begin(), tokens_.end(), [&](const Token& t) { return t.id == c.id; });
  if (it == tokens_.end()) return Error::NotFound("TokenNotFound", "token " + c.id + " does not exist");
  // Access keys do not count: they are no bearer tokens, so none can make another.
  auto admin_token = [](const Token& t) { return t.role == "admin" && !t.access_key(); };
  if (admin_token(*it) && std::count_if(tokens_.begin(), tokens_.end(), admin_token) == 1) {
    return Error::Conflict("LastAdminToken", "token " + c.id + " is the last admin token: create another first");
  }
  // Its sessions go with it (a revoked token opens nothing any more).
  Result<store::Stmt*> del = db.Cached("DELETE FROM tokens WHERE id = ?1 OR parent = ?1");
  if (!del) return del.take_error();
  (*del)->Bind(1, c.id);
  if (Status s = (*del)->Run(); !s) return s.take_error();
  Token gone = *it;
  std::vector<Token> removed;
  for (auto t = tokens_.begin(); t != tokens_.end();) {
    if (t->id == gone.id || t->parent == gone.id) {
      token_used_.erase(t->id);
      removed.push_back(std::move(*t));
      t = tokens_.erase(t);
    } else {
      ++t;
    }
  }
  for (const Token& t : removed) {
    for (StateObserver* o : observers_) o->OnTokenRemoved(t);
  }
  if (gone.access_key()) return json::Doc::Object().Set("accessKey", AccessKeyJson(gone)).Print();
  return json::Doc::Object().Set("token", TokenJson(gone)).Print();
}

Result<std::string> State::ApplyTouchTokens(store::Db& db, const TouchTokens& c) {
  Result<store::Stmt*> upd = db.Cached("UPDATE tokens SET last_used_ms = ?2 WHERE id = ?1 AND last_used_ms < ?2");
  if (!upd) return upd.take_error();
  for (const auto& [id, ms] : c.used) {
    (*upd)->Bind(1, id).Bind(2, ms);
    if (Status s = (*upd)->Run(); !s) return s.take_error();
  }
  for (const auto& [id, ms] : c.used) {
    for (Token& t : tokens_) {
      if (t.id == id && t.last_used_ms < ms) t.last_used_ms = ms;
    }
  }
  return json::Doc::Object().Set("touched", static_cast<int64_t>(c.used.size())).Print();
}

Result<std::string> State::ApplyForgetSessions(store::Db& db, const ForgetSessions& c) {
  // Expiry is judged at the command's time, not this server's clock: every
  // server applying the entry, now or at a replay, forgets the same sessions.
  auto expired = [&c](const Token& t) { return t.session() && t.expires_ms && t.expires_ms <= c.time_ms; };
  std::unordered_set<std::string_view> named(c.ids.begin(), c.ids.end());
  Result<store::Stmt*> del = db.Cached("DELETE FROM tokens WHERE id = ?1");
  if (!del) return del.take_error();
  for (const Token& t : tokens_) {
    if (!named.count(t.id) || !expired(t)) continue;
    (*del)->Bind(1, t.id);
    if (Status s = (*del)->Run(); !s) return s.take_error();
  }
  // One pass however many go (a batch may name a thousand).
  auto gone = std::stable_partition(tokens_.begin(), tokens_.end(),
                                    [&](const Token& t) { return !named.count(t.id) || !expired(t); });
  std::vector<Token> removed(std::make_move_iterator(gone), std::make_move_iterator(tokens_.end()));
  tokens_.erase(gone, tokens_.end());
  for (const Token& t : removed) {
    token_used_.erase(t.id);
    for (StateObserver* o : observers_) o->OnTokenRemoved(t);
  }
  return json::Doc::Object().Set("forgotten", static_cast<int64_t>(removed.size())).Print();
}

Status State::LoadSecrets(store::Db& db) {
  secrets_.clear();
  Result<store::Stmt> s =
      db.Prepare("SELECT name, version, sealed, key_id, created_ms, updated_ms, clusters FROM secrets");
  if (!s) return s.take_error();
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    Secret sec;
    sec.name = s->Text(0);
    sec.version = s->Int(1);
    Result<std::string> sealed = crypto::Base64Decode(s->Text(2));
    if (!sealed) return Error::Internal("secrets row " + sec.name + ": sealed: " + sealed.error().message);
    sec.sealed = std::move(sealed.value());
    sec.key_id = s->Text(3);
    sec.created_ms = s->Int(4);
    sec.updated_ms = s->Int(5);
    if (Result<json::Doc> list = json::Doc::Parse(s->Text(6)); list) {
      for (json::View c : list->view()) sec.clusters.emplace_back(c.String());
    }
    secrets_.emplace(sec.name, std::move(sec));
  }
  return {};
}

const Secret* State::FindSecret(std::string_view name) const {
  auto it = secrets_.find(name);
  return it == secrets_.end() ? nullptr : &it->second;
}

Result<std::string> State::ApplyPutSecret(store::Db& db, const PutSecret& c) {
  if (Status s = ValidateSecretName(c.name); !s) return s.take_error();
  if (c.sealed.empty() || c.key_id.empty()) return Error::Invalid("a secret needs its sealed value and key id");
  auto it = secrets_.find(c.name);
  if (c.create && it != secrets_.end()) {
    return Error::Conflict("ResourceExistsException", "secret " + c.name + " already exists; `berth secret rotate " +
                                                          c.name + "` replaces its value");
  }
  if (!c.create && it == secrets_.end()) {
    return Error::NotFound("ResourceNotFoundException", "secret " + c.name + " does not exist");
  }
  Secret sec;
  sec.name = c.name;
  sec.sealed = c.sealed;
  sec.key_id = c.key_id;
  sec.version = c.create ? 1 : it->second.version + 1;
  sec.created_ms = c.create ? c.time_ms : it->second.created_ms;
  sec.updated_ms = c.time_ms;
  sec.clusters = c.create ? c.clusters : it->second.clusters;  // a rotation keeps them
  json::Doc clusters = json::Doc::Array();
  for (const std::string& cl : sec.clusters) clusters.Push(cl);
  Result<store::Stmt*> put = db.Cached(
      "INSERT OR REPLACE INTO secrets (name, version, sealed, key_id, created_ms, updated_ms, clusters) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!put) return put.take_error();
  (*put)
      ->Bind(1, sec.name)
      .Bind(2, sec.version)
      .Bind(3, crypto::Base64Encode(sec.sealed))
      .Bind(4, sec.key_id)
      .Bind(5, sec.created_ms)
      .Bind(6, sec.updated_ms)
      .Bind(7, clusters.Print());
  if (Status s = (*put)->Run(); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("secret", SecretJson(sec)).Print();
  secrets_[sec.name] = std::move(sec);
  return reply;
}

Result<std::string> State::ApplyDeleteSecret(store::Db& db, const DeleteSecret& c) {
  auto it = secrets_.find(c.name);
  if (it == secrets_.end()) return Error::NotFound("ResourceNotFoundException", "secret " + c.name + " does not exist");
  if (std::vector<std::string> users = SecretUsers(c.name); !users.empty()) {
    std::string list;
    for (const std::string& u : users) list += (list.empty() ? "" : ", ") + u;
    return Error::Conflict("ResourceInUse", "secret " + c.name + " is the certificate of " + list);
  }
  Result<store::Stmt*> del = db.Cached("DELETE FROM secrets WHERE name = ?1");
  if (!del) return del.take_error();
  (*del)->Bind(1, c.name);
  if (Status s = (*del)->Run(); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("secret", SecretJson(it->second)).Print();
  secrets_.erase(it);
  return reply;
}

const Token* State::FindToken(std::string_view id) const {
  for (const Token& t : tokens_) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

void State::NoteTokenUsed(std::string_view id, int64_t now_ms) { token_used_[std::string(id)] = now_ms; }

std::vector<std::pair<std::string, int64_t>> State::TokensToTouch(int64_t now_ms, int64_t every_ms) const {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const Token& t : tokens_) {
    auto it = token_used_.find(t.id);
    if (it != token_used_.end() && it->second > t.last_used_ms &&
        (t.last_used_ms == 0 || now_ms - t.last_used_ms >= every_ms)) {
      out.emplace_back(t.id, it->second);
    }
  }
  return out;
}

std::string AccessKeySealName(std::string_view id) { return "accesskey:" + std::string(id); }

std::string AccessKeyNotBearer(std::string_view id) {
  return std::string(id) +
         " is an access key: it signs requests (AWS Signature Version 4) and is not a bearer token; "
         "use an API token (berth token create)";
}

json::Doc AccessKeyJson(const Token& t) {
  json::Doc d = json::Doc::Object();
  d.Set("accessKeyId", t.id).Set("role", t.role).Set("createdAt", static_cast<double>(t.created_ms) / 1000.0);
  if (t.last_used_ms) d.Set("lastUsedAt", static_cast<double>(t.last_used_ms) / 1000.0);
  if (t.expires_ms) d.Set("expiresAt", static_cast<double>(t.expires_ms) / 1000.0);
  d.Set("secretKeyId", t.secret_key_id);
  json::Doc scope = t.scope.ToJson();
  for (const char* key : {"clusters", "repositories"}) {
    if (scope.view().Get(key).valid()) d.Set(key, json::Doc::Copy(scope.view().Get(key)));
  }
  return d;
}

json::Doc TokenJson(const Token& t) {
  json::Doc d = json::Doc::Object();
  d.Set("id", t.id).Set("role", t.role).Set("createdAt", static_cast<double>(t.created_ms) / 1000.0);
  if (t.last_used_ms) d.Set("lastUsedAt", static_cast<double>(t.last_used_ms) / 1000.0);
  if (t.expires_ms) d.Set("expiresAt", static_cast<double>(t.expires_ms) / 1000.0);
  if (t.uses_left >= 0) d.Set("usesLeft", t.uses_left);
  json::Doc scope = t.scope.ToJson();
  for (const char* key : {"clusters", "repositories"}) {
    if (scope.view().Get(key).valid()) d.Set(key, json::Doc::Copy(scope.view().Get(key)));
  }
  return d;
}

}  // namespace berth::model
