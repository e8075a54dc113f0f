#include "model/commands.h"

#include "base/crypto.h"
#include "base/json.h"
#include "model/node.h"

namespace berth::model {

std::string CreateCluster::Encode() const { return json::Doc::Object().Set("name", name).Print(); }

std::string DeleteCluster::Encode() const { return json::Doc::Object().Set("name", name).Print(); }

std::string UpdateCluster::Encode() const {
  return json::Doc::Object().Set("name", name).Set("policy", policy).Print();
}

std::string RegisterTaskDefinition::Encode() const {
  return json::Doc::Object().Set("family", family).Set("doc", doc).Print();
}

std::string DeregisterTaskDefinition::Encode() const {
  return json::Doc::Object().Set("family", family).Set("revision", revision).Print();
}

std::string CreateToken::Encode() const {
  json::Doc d = json::Doc::Object();
  d.Set("id", id).Set("role", role).Set("hash", hash);
  if (expires_ms) d.Set("expiresMs", expires_ms);
  if (uses >= 0) d.Set("uses", uses);
  if (!scope.empty()) d.Set("scope", scope);
  if (!parent.empty()) d.Set("parent", parent);
  if (!sealed_secret.empty()) {
    d.Set("sealedSecret", crypto::Base64Encode(sealed_secret)).Set("secretKeyId", secret_key_id);
  }
  return d.Print();
}

std::string PutSecret::Encode() const {
  return json::Doc::Object()
      .Set("name", name)
      .Set("sealed", crypto::Base64Encode(sealed))
      .Set("keyId", key_id)
      .Set("create", create)
      .Set("clusters",
           [&] {
             json::Doc list = json::Doc::Array();
             for (const std::string& c : clusters) list.Push(c);
             return list;
           }())
      .Print();
}

std::string DeleteSecret::Encode() const { return json::Doc::Object().Set("name", name).Print(); }

std::string CreateTargetGroup::Encode() const { return json::Doc::Object().Set("doc", doc).Print(); }

std::string ModifyTargetGroup::Encode() const {
  return json::Doc::Object().Set("cluster", cluster).Set("name", name).Set("change", change).Print();
}

std::string DeleteTargetGroup::Encode() const {
  return json::Doc::Object().Set("cluster", cluster).Set("name", name).Print();
}

std::string CreateLoadBalancer::Encode() const { return json::Doc::Object().Set("doc", doc).Print(); }

std::string DeleteLoadBalancer::Encode() const {
  return json::Doc::Object().Set("cluster", cluster).Set("name", name).Print();
}

std::string CreateListener::Encode() const {
  return json::Doc::Object().Set("cluster", cluster).Set("loadBalancer", load_balancer).Set("doc", doc).Print();
}

std::string DeleteListener::Encode() const {
  return json::Doc::Object().Set("cluster", cluster).Set("loadBalancer", load_balancer).Set("port", port).Print();
}

std::string CreateRule::Encode() const {
  return json::Doc::Object()
      .Set("cluster", cluster)
      .Set("loadBalancer", load_balancer)
      .Set("port", port)
      .Set("doc", doc)
      .Print();
}

std::string DeleteRule::Encode() const {
  return json::Doc::Object()
      .Set("cluster", cluster)
      .Set("loadBalancer", load_balancer)
      .Set("port", port)
      .Set("priority", priority)
      .Print();
}

std::string DeleteToken::Encode() const { return json::Doc::Object().Set("id", id).Print(); }

std::string TouchTokens::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const auto& [id, ms] : used) list.Push(json::Doc::Object().Set("id", id).Set("ms", ms));
  return json::Doc::Object().Set("used", list).Print();
}

std::string RegisterNode::Encode() const {
  json::Doc attrs = json::Doc::Object();
  for (const auto& [k, v] : attributes) attrs.Set(k, v);
  json::Doc d = json::Doc::Object();
  d.Set("id", id)
      .Set("cluster", cluster)
      .Set("hostname", hostname)
      .Set("cpu", cpu)
      .Set("memory", memory)
      .Set("attributes", attrs)
      .Set("reservedPorts", PortsText(reserved_ports))
      .Set("identity", identity)
      .Set("joinToken", join_token);
  if (!agent_version.empty()) d.Set("agentVersion", agent_version);
  if (!address.empty()) d.Set("address", address);
  return d.Print();
}

std::string SetNodeStatus::Encode() const { return json::Doc::Object().Set("id", id).Set("status", status).Print(); }

std::string DeregisterNode::Encode() const {
  return json::Doc::Object().Set("id", id).Set("force", force).Set("revoke", revoke).Print();
}

namespace {

void AppendField(std::string* out, const char* key, std::string_view value) {
  if (out->back() != '{') out->push_back(',');
  json::AppendQuoted(out, key);
  out->push_back(':');
  json::AppendQuoted(out, value);
}

}  // namespace

// PlaceTasks and ReportTasks carry thousands of entries at scale: their log
// payloads are built by appending rather than through a JSON tree.
std::string PlaceTasks::Encode() const {
  std::string out = "{";
  AppendField(&out, "cluster", cluster);
  AppendField(&out, "family", family);
  out.append(",\"revision\":").append(std::to_string(revision));
  AppendField(&out, "group", group);
  AppendField(&out, "startedBy", started_by);
  AppendField(&out, "service", service);
  AppendField(&out, "deployment", deployment);
  out.append(",\"placements\":[");
  out.reserve(out.size() + placements.size() * 64 + 2);
  for (const Placement& p : placements) {
    out.append(out.back() == '[' ? "{" : ",{");
    AppendField(&out, "task", p.task_id);
    AppendField(&out, "node", p.node);
    out.push_back('}');
  }
  out.append("]}");
  return out;
}

std::string StopTasks::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const std::string& id : ids) list.Push(id);
  return json::Doc::Object().Set("ids", list).Set("reason", reason).Set("code", code).Print();
}

std::string ReportTasks::Encode() const {
  std::string out = "{";
  AppendField(&out, "node", node);
  out.append(",\"reports\":[");
  for (const Report& r : reports) {
    out.append(out.back() == '[' ? "{" : ",{");
    AppendField(&out, "task", r.task_id);
    AppendField(&out, "last", r.last);
    AppendField(&out, "reason", r.reason);
    // `containers` is JSON text that passed ParseContainers before the command
    // applied (only applied commands are logged), so it goes in as it is.
    if (!r.containers.empty()) out.append(",\"containers\":").append(r.containers);
    out.push_back('}');
  }
  out.append("]");
  if (!health.empty()) {
    out.append(",\"health\":[");
    for (const Health& h : health) {
      out.append(out.back() == '[' ? "{" : ",{");
      AppendField(&out, "task", h.task_id);
      AppendField(&out, "tg", h.target_group);
      AppendField(&out, "state", h.state);
      AppendField(&out, "reason", h.reason);
      AppendField(&out, "description", h.description);
      out.push_back('}');
    }
    out.append("]");
  }
  out.append("}");
  return out;
}

std::string NodeLost::Encode() const { return json::Doc::Object().Set("node", node).Set("reason", reason).Print(); }

std::string CreateService::Encode() const { return json::Doc::Object().Set("doc", doc).Print(); }

std::string UpdateService::Encode() const {
  json::Doc d = json::Doc::Object();
  d.Set("cluster", cluster)
      .Set("name", name)
      .Set("desired", desired)
      .Set("family", family)
      .Set("revision", revision)
      .Set("minHealthyPercent", min_healthy_pct)
      .Set("maxPercent", max_pct)
      .Set("breaker", breaker)
      .Set("rollback", rollback)
      .Set("constraints", constraints)
      .Set("strategy", strategy)
      .Set("forceNew", force_new)
      .Set("newDeployment", new_deployment)
      .Set("rolloutReason", rollout_reason);
  if (health_check_grace_s >= 0) d.Set("healthCheckGraceSeconds", health_check_grace_s);
  return d.Print();
}

std::string SetDeploymentState::Encode() const {
  json::Doc d = json::Doc::Object();
  d.Set("cluster", cluster)
      .Set("name", name)
      .Set("deployment", deployment)
      .Set("rolloutState", rollout_state)
      .Set("reason", reason)
      .Set("failedTasks", failed_tasks)
      .Set("retireOthers", retire_others);
  return d.Print();
}

std::string DeleteService::Encode() const {
  return json::Doc::Object().Set("cluster", cluster).Set("name", name).Set("force", force).Print();
}

std::string RemoveService::Encode() const {
  return json::Doc::Object().Set("cluster", cluster).Set("name", name).Print();
}

std::string ForgetTasks::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const std::string& id : ids) list.Push(id);
  return json::Doc::Object().Set("ids", list).Print();
}

std::string ForgetSessions::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const std::string& id : ids) list.Push(id);
  return json::Doc::Object().Set("ids", list).Print();
}

std::string ForgetTaskDefinitions::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const auto& [family, revision] : revisions) {
    list.Push(json::Doc::Object().Set("family", family).Set("revision", revision));
  }
  return json::Doc::Object().Set("revisions", list).Print();
}

std::string PutTags::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const auto& [k, v] : tags) list.Push(json::Doc::Object().Set("key", k).Set("value", v));
  return json::Doc::Object().Set("resource", resource).Set("tags", list).Print();
}

std::string RemoveTags::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const std::string& k : keys) list.Push(k);
  return json::Doc::Object().Set("resource", resource).Set("keys", list).Print();
}

std::string PutNodeAttributes::Encode() const {
  json::Doc attrs = json::Doc::Object();
  for (const auto& [k, v] : attributes) attrs.Set(k, v);
  return json::Doc::Object().Set("node", node).Set("attributes", attrs).Print();
}

std::string DeleteNodeAttributes::Encode() const {
  json::Doc list = json::Doc::Array();
  for (const std::string& n : names) list.Push(n);
  return json::Doc::Object().Set("node", node).Set("names", list).Print();
}

namespace {

Status Str(json::View v, const char* key, std::string* out) {
  Result<std::string> s = json::OptionalString(v, key, key);
  if (!s) return s.take_error();
  *out = std::move(s.value());
  return {};
}

Status Int(json::View v, const char* key, int64_t* out) {
  Result<int64_t> n = json::OptionalInt(v, key, key, 0);
  if (!n) return n.take_error();
  *out = n.value();
  return {};
}

Result<store::CommandPtr> DecodeNodeOrTask(std::string_view type, json::View v) {
  Status st;
  if (type == "RegisterNode") {
    auto c = std::make_unique<RegisterNode>();
    if (!(st = Str(v, "id", &c->id)) || !(st = Str(v, "cluster", &c->cluster)) ||
        !(st = Str(v, "hostname", &c->hostname)) || !(st = Int(v, "cpu", &c->cpu)) ||
        !(st = Int(v, "memory", &c->memory))) {
      return st.take_error();
    }
    for (json::View a : v.Get("attributes")) c->attributes[std::string(a.Key())] = std::string(a.String());
    c->agent_version = std::string(v.Get("agentVersion").String());
    c->address = std::string(v.Get("address").String());
    Result<std::vector<std::pair<int, bool>>> reserved = ParsePortsText(v.Get("reservedPorts").String());
    if (!reserved) return reserved.take_error();
    c->reserved_ports = std::move(reserved.value());
    if (!(st = Str(v, "identity", &c->identity)) || !(st = Str(v, "joinToken", &c->join_token))) {
      return st.take_error();
    }
    return store::CommandPtr(std::move(c));
  }
  if (type == "SetNodeStatus") {
    auto c = std::make_unique<SetNodeStatus>();
    if (!(st = Str(v, "id", &c->id)) || !(st = Str(v, "status", &c->status))) return st.take_error();
    return store::CommandPtr(std::move(c));
  }
  if (type == "DeregisterNode") {
    auto c = std::make_unique<DeregisterNode>();
    if (!(st = Str(v, "id", &c->id))) return st.take_error();
    c->force = v.Get("force").Bool();
    c->revoke = v.Get("revoke").Bool();
    return store::CommandPtr(std::move(c));
  }
  if (type == "PlaceTasks") {
    auto c = std::make_unique<PlaceTasks>();
    if (!(st = Str(v, "cluster", &c->cluster)) || !(st = Str(v, "family", &c->family)) ||
        !(st = Int(v, "revision", &c->revision)) || !(st = Str(v, "group", &c->group)) ||
        !(st = Str(v, "startedBy", &c->started_by)) || !(st = Str(v, "service", &c->service)) ||
        !(st = Str(v, "deployment", &c->deployment))) {
      return st.take_error();
    }
    for (json::View p : v.Get("placements")) {
      c->placements.push_back({std::string(p.Get("task").String()), std::string(p.Get("node").String())});
    }
    return store::CommandPtr(std::move(c));
  }
  if (type == "StopTasks") {
    auto c = std::make_unique<StopTasks>();
    if (!(st = Str(v, "reason", &c->reason)) || !(st = Str(v, "code", &c->code))) return st.take_error();
    for (json::View id : v.Get("ids")) c->ids.emplace_back(id.String());
    return store::CommandPtr(std::move(c));
  }
  if (type == "ReportTasks") {
    auto c = std::make_unique<ReportTasks>();
    if (!(st = Str(v, "node", &c->node))) return st.take_error();
    for (json::View r : v.Get("reports")) {
      c->reports.push_back({std::string(r.Get("task").String()), std::string(r.Get("last").String()),
                            std::string(r.Get("reason").String()),
                            r.Get("containers").valid() ? r.Get("containers").Print() : "[]"});
    }
    for (json::View h : v.Get("health")) {
      c->health.push_back({std::string(h.Get("task").String()), std::string(h.Get("tg").String()),
                           std::string(h.Get("state").String()), std::string(h.Get("reason").String()),
                           std::string(h.Get("description").String())});
    }
    return store::CommandPtr(std::move(c));
  }
  if (type == "CreateService") {
    auto c = std::make_unique<CreateService>();
    if (!(st = Str(v, "doc", &c->doc))) return st.take_error();
    return store::CommandPtr(std::move(c));
  }
  if (type == "UpdateService") {
    auto c = std::make_unique<UpdateService>();
    int64_t breaker = -1, rollback = -1;
    if (!(st = Str(v, "cluster", &c->cluster)) || !(st = Str(v, "name", &c->name)) ||
        !(st = Int(v, "desired", &c->desired)) || !(st = Str(v, "family", &c->family)) ||
        !(st = Int(v, "revision", &c->revision)) || !(st = Int(v, "minHealthyPercent", &c->min_healthy_pct)) ||
        !(st = Int(v, "maxPercent", &c->max_pct)) || !(st = Int(v, "breaker", &breaker)) ||
        !(st = Int(v, "rollback", &rollback)) || !(st = Str(v, "constraints", &c->constraints)) ||
        !(st = Str(v, "strategy", &c->strategy)) || !(st = Str(v, "newDeployment", &c->new_deployment)) ||
        !(st = Str(v, "rolloutReason", &c->rollout_reason))) {
      return st.take_error();
    }
    c->breaker = static_cast<int>(breaker);
    c->rollback = static_cast<int>(rollback);
    c->force_new = v.Get("forceNew").Bool();
    // (absent from the entries of versions before it could change)
    if (v.Get("healthCheckGraceSeconds").valid() &&
        !(st = Int(v, "healthCheckGraceSeconds", &c->health_check_grace_s))) {
      return st.take_error();
    }
    return store::CommandPtr(std::move(c));
  }
  if (type == "SetDeploymentState") {
    auto c = std::make_unique<SetDeploymentState>();
    if (!(st = Str(v, "cluster", &c->cluster)) || !(st = Str(v, "name", &c->name)) ||
        !(st = Str(v, "deployment", &c->deployment)) || !(st = Str(v, "rolloutState", &c->rollout_state)) ||
        !(st = Str(v, "reason", &c->reason)) || !(st = Int(v, "failedTasks", &c->failed_tasks))) {
      return st.take_error();
    }
    c->retire_others = v.Get("retireOthers").Bool();
    return store::CommandPtr(std::move(c));
  }
  if (type == "DeleteService" || type == "RemoveService") {
    std::string cluster, name;
    if (!(st = Str(v, "cluster", &cluster)) || !(st = Str(v, "name", &name))) return st.take_error();
    if (type == "DeleteService") {
      auto c = std::make_unique<DeleteService>();
      c->cluster = cluster;
      c->name = name;
      c->force = v.Get("force").Bool();
      return store::CommandPtr(std::move(c));
    }
    auto c = std::make_unique<RemoveService>();
    c->cluster = cluster;
    c->name = name;
    return store::CommandPtr(std::move(c));
  }
  if (type == "ForgetTasks") {
    auto c = std::make_unique<ForgetTasks>();
    for (json::View id : v.Get("ids")) c->ids.emplace_back(id.String());
    return store::CommandPtr(std::move(c));
  }
  if (type == "ForgetTaskDefinitions") {
    auto c = std::make_unique<ForgetTaskDefinitions>();
    for (json::View r : v.Get("revisions")) {
      c->revisions.emplace_back(std::string(r.Get("family").String()),
                                static_cast<int64_t>(r.Get("revision").Number()));
    }
    return store::CommandPtr(std::move(c));
  }
  if (type == "PutTags" || type == "RemoveTags") {
    std::string resource;
    if (!(st = Str(v, "resource", &resource))) return st.take_error();
    if (type == "PutTags") {
      auto c = std::make_unique<PutTags>();
      c->resource = std::move(resource);
      for (json::View t : v.Get("tags")) {
        c->tags.emplace_back(std::string(t.Get("key").String()), std::string(t.Get("value").String()));
      }
      return store::CommandPtr(std::move(c));
    }
    auto c = std::make_unique<RemoveTags>();
    c->resource = std::move(resource);
    for (json::View k : v.Get("keys")) c->keys.emplace_back(k.String());
    return store::CommandPtr(std::move(c));
  }
  if (type == "PutNodeAttributes") {
    auto c = std::make_unique<PutNodeAttributes>();
    if (!(st = Str(v, "node", &c->node))) return st.take_error();
    for (json::View a : v.Get("attributes")) c->attributes[std::string(a.Key())] = std::string(a.String());
    return store::CommandPtr(std::move(c));
  }
  if (type == "DeleteNodeAttributes") {
    auto c = std::make_unique<DeleteNodeAttributes>();
    if (!(st = Str(v, "node", &c->node))) return st.take_error();
    for (json::View n : v.Get("names")) c->names.emplace_back(n.String());
    return store::CommandPtr(std::move(c));
  }
  if (type == "NodeLost") {
    auto c = std::make_unique<NodeLost>();
    if (!(st = Str(v, "node", &c->node)) || !(st = Str(v, "reason", &c->reason))) return st.take_error();
    return store::CommandPtr(std::move(c));
  }
  return store::CommandPtr();
}

}  // namespace

bool IsValidRole(std::string_view role) {
  return role == "admin" || role == "deploy" || role == "read-only" || role == "agent" || role == "server";
}

Result<store::CommandPtr> DecodeCommand(std::string_view type, std::string_view payload, int64_t time_ms) {
  Result<json::Doc> doc = json::Doc::Parse(payload);
  if (!doc) return doc.take_error();
  json::View v = doc->view();
  if (!v.IsObject()) return Error::Invalid(std::string(type) + ": payload must be an object");
  store::CommandPtr out;
  Result<store::CommandPtr> node_or_task = DecodeNodeOrTask(type, v);
  if (!node_or_task) return node_or_task.take_error();
  if (node_or_task.value()) {
    node_or_task.value()->time_ms = time_ms;
    return node_or_task;
  }
  if (type == "CreateCluster" || type == "DeleteCluster") {
    Result<std::string> name = json::RequireString(v, "name", "name");
    if (!name) return name.take_error();
    if (type == "CreateCluster") {
      auto c = std::make_unique<CreateCluster>();
      c->name = std::move(name.value());
      out = std::move(c);
    } else {
      auto c = std::make_unique<DeleteCluster>();
      c->name = std::move(name.value());
      out = std::move(c);
    }
  } else if (type == "UpdateCluster") {
    auto c = std::make_unique<UpdateCluster>();
    Result<std::string> name = json::RequireString(v, "name", "name");
    if (!name) return name.take_error();
    Result<std::string> policy = json::RequireString(v, "policy", "policy");
    if (!policy) return policy.take_error();
    c->name = std::move(name.value());
    c->policy = std::move(policy.value());
    out = std::move(c);
  } else if (type == "RegisterTaskDefinition") {
    auto c = std::make_unique<RegisterTaskDefinition>();
    Result<std::string> family = json::RequireString(v, "family", "family");
    if (!family) return family.take_error();
    Result<std::string> doc = json::RequireString(v, "doc", "doc");
    if (!doc) return doc.take_error();
    c->family = std::move(family.value());
    c->doc = std::move(doc.value());
    out = std::move(c);
  } else if (type == "DeregisterTaskDefinition") {
    auto c = std::make_unique<DeregisterTaskDefinition>();
    Result<std::string> family = json::RequireString(v, "family", "family");
    if (!family) return family.take_error();
    Result<int64_t> rev = json::OptionalInt(v, "revision", "revision", 0);
    if (!rev) return rev.take_error();
    c->family = std::move(family.value());
    c->revision = rev.value();
    out = std::move(c);
  } else if (type == "CreateToken") {
    auto c = std::make_unique<CreateToken>();
    for (auto [field, dest] : {std::pair{"id", &c->id}, std::pair{"role", &c->role}, std::pair{"hash", &c->hash}}) {
      Result<std::string> s = json::RequireString(v, field, field);
      if (!s) return s.take_error();
      *dest = std::move(s.value());
    }
    Result<int64_t> expires = json::OptionalInt(v, "expiresMs", "expiresMs", 0);
    if (!expires) return expires.take_error();
    Result<int64_t> uses = json::OptionalInt(v, "uses", "uses", -1);
    if (!uses) return uses.take_error();
    c->expires_ms = expires.value();
    c->uses = uses.value();
    Result<std::string> scope = json::OptionalString(v, "scope", "scope");
    if (!scope) return scope.take_error();
    c->scope = std::move(scope.value());
    Result<std::string> parent = json::OptionalString(v, "parent", "parent");
    if (!parent) return parent.take_error();
    c->parent = std::move(parent.value());
    Result<std::string> sealed = json::OptionalString(v, "sealedSecret", "sealedSecret");
    if (!sealed) return sealed.take_error();
    if (!sealed->empty()) {
      Result<std::string> raw = crypto::Base64Decode(*sealed);
      if (!raw) return Error::Invalid("sealedSecret: " + raw.error().message);
      c->sealed_secret = std::move(raw.value());
      Result<std::string> key_id = json::RequireString(v, "secretKeyId", "secretKeyId");
      if (!key_id) return key_id.take_error();
      c->secret_key_id = std::move(key_id.value());
    }
    out = std::move(c);
  } else if (type == "PutSecret") {
    auto c = std::make_unique<PutSecret>();
    std::string sealed;
    for (auto [field, dest] :
         {std::pair{"name", &c->name}, std::pair{"sealed", &sealed}, std::pair{"keyId", &c->key_id}}) {
      Result<std::string> s = json::RequireString(v, field, field);
      if (!s) return s.take_error();
      *dest = std::move(s.value());
    }
    Result<std::string> raw = crypto::Base64Decode(sealed);
    if (!raw) return Error::Invalid("sealed: " + raw.error().message);
    c->sealed = std::move(raw.value());
    Result<bool> create = json::OptionalBool(v, "create", "create", true);
    if (!create) return create.take_error();
    c->create = create.value();
    for (json::View cl : v.Get("clusters")) c->clusters.emplace_back(cl.String());
    out = std::move(c);
  } else if (type == "DeleteSecret") {
    auto c = std::make_unique<DeleteSecret>();
    Result<std::string> name = json::RequireString(v, "name", "name");
    if (!name) return name.take_error();
    c->name = std::move(name.value());
    out = std::move(c);
  } else if (type == "ModifyTargetGroup") {
    auto c = std::make_unique<ModifyTargetGroup>();
    for (auto [field, into] : {std::pair{"cluster", &c->cluster}, {"name", &c->name}, {"change", &c->change}}) {
      Result<std::string> s = json::RequireString(v, field, field);
      if (!s) return s.take_error();
      *into = std::move(s.value());
    }
    out = std::move(c);
  } else if (type == "CreateTargetGroup" || type == "CreateLoadBalancer") {
    Result<std::string> d = json::RequireString(v, "doc", "doc");
    if (!d) return d.take_error();
    if (type == "CreateTargetGroup") {
      auto c = std::make_unique<CreateTargetGroup>();
      c->doc = std::move(d.value());
      out = std::move(c);
    } else {
      auto c = std::make_unique<CreateLoadBalancer>();
      c->doc = std::move(d.value());
      out = std::move(c);
    }
  } else if (type == "DeleteTargetGroup" || type == "DeleteLoadBalancer") {
    Result<std::string> cluster = json::RequireString(v, "cluster", "cluster");
    if (!cluster) return cluster.take_error();
    Result<std::string> name = json::RequireString(v, "name", "name");
    if (!name) return name.take_error();
    if (type == "DeleteTargetGroup") {
      auto c = std::make_unique<DeleteTargetGroup>();
      c->cluster = std::move(cluster.value());
      c->name = std::move(name.value());
      out = std::move(c);
    } else {
      auto c = std::make_unique<DeleteLoadBalancer>();
      c->cluster = std::move(cluster.value());
      c->name = std::move(name.value());
      out = std::move(c);
    }
  } else if (type == "CreateListener" || type == "DeleteListener" || type == "CreateRule" || type == "DeleteRule") {
    Result<std::string> cluster = json::RequireString(v, "cluster", "cluster");
    if (!cluster) return cluster.take_error();
    Result<std::string> lb = json::RequireString(v, "loadBalancer", "loadBalancer");
    if (!lb) return lb.take_error();
    Result<int64_t> port = json::OptionalInt(v, "port", "port", 0);
    if (!port) return port.take_error();
    Result<std::string> d = json::OptionalString(v, "doc", "doc");
    if (!d) return d.take_error();
    if (type == "CreateListener") {
      auto c = std::make_unique<CreateListener>();
      c->cluster = std::move(cluster.value());
      c->load_balancer = std::move(lb.value());
      c->doc = std::move(d.value());
      out = std::move(c);
    } else if (type == "DeleteListener") {
      auto c = std::make_unique<DeleteListener>();
      c->cluster = std::move(cluster.value());
      c->load_balancer = std::move(lb.value());
      c->port = *port;
      out = std::move(c);
    } else if (type == "CreateRule") {
      auto c = std::make_unique<CreateRule>();
      c->cluster = std::move(cluster.value());
      c->load_balancer = std::move(lb.value());
      c->port = *port;
      c->doc = std::move(d.value());
      out = std::move(c);
    } else {
      Result<int64_t> priority = json::OptionalInt(v, "priority", "priority", 0);
      if (!priority) return priority.take_error();
      auto c = std::make_unique<DeleteRule>();
      c->cluster = std::move(cluster.value());
      c->load_balancer = std::move(lb.value());
      c->port = *port;
      c->priority = *priority;
      out = std::move(c);
    }
  } else if (type == "DeleteToken") {
    auto c = std::make_unique<DeleteToken>();
    Result<std::string> id = json::RequireString(v, "id", "id");
    if (!id) return id.take_error();
    c->id = std::move(id.value());
    out = std::move(c);
  } else if (type == "TouchTokens") {
    auto c = std::make_unique<TouchTokens>();
    size_t i = 0;
    for (json::View u : v.Get("used")) {
      std::string path = "used[" + std::to_string(i++) + "]";
      Result<std::string> id = json::RequireString(u, "id", path + ".id");
      if (!id) return id.take_error();
      Result<int64_t> ms = json::OptionalInt(u, "ms", path + ".ms", 0);
      if (!ms) return ms.take_error();
      c->used.emplace_back(std::move(id.value()), ms.value());
    }
    out = std::move(c);
  } else if (type == "ForgetSessions") {
    auto c = std::make_unique<ForgetSessions>();
    for (json::View id : v.Get("ids")) c->ids.emplace_back(id.String());
    out = std::move(c);
  } else {
    return Error::Invalid("unknown command type " + std::string(type));
  }
  out->time_ms = time_ms;
  return out;
}

}  // namespace berth::model
