// Tags on resources (ECS and ECR TagResource) and the custom attributes of nodes
// (ECS PutAttributes): State's commands for both, their rows and their loading.
#include <algorithm>

#include "model/state.h"

namespace berth::model {

namespace {

// The resource part of an ARN in berth's form ("cluster/prod"), or "" when the
// ARN is not of service `svc` in region "local" and account kAccount.
std::string_view ResourcePart(std::string_view arn, std::string_view svc) {
  std::string prefix = "arn:aws:";
  prefix.append(svc).append(":").append(kRegion).append(":").append(kAccount).append(":");
  if (arn.substr(0, prefix.size()) != prefix) return {};
  return arn.substr(prefix.size());
}

// Splits "a/b" at its first '/'; false when there is none.
bool SplitOnce(std::string_view s, std::string_view* head, std::string_view* tail) {
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) return false;
  *head = s.substr(0, slash);
  *tail = s.substr(slash + 1);
  return true;
}

// Runs `sql` with `args` bound as ?1, ?2, ...
Status RunSql(store::Db& db, const char* sql, std::initializer_list<std::string_view> args) {
  Result<store::Stmt*> s = db.Cached(sql);
  if (!s) return s.take_error();
  int i = 1;
  for (std::string_view a : args) (*s)->Bind(i++, a);
  return (*s)->Run();
}

json::Doc TagsJson(const std::map<std::string, std::string>* tags) {
  json::Doc list = json::Doc::Array();
  if (tags) {
    for (const auto& [k, v] : *tags) list.Push(json::Doc::Object().Set("key", k).Set("value", v));
  }
  return list;
}

}  // namespace

Status ValidateTag(std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > 128) {
    return Error::Invalid("tag key '" + std::string(key) + "': must be 1-128 characters");
  }
  if (key.substr(0, 4) == "aws:") {
    return Error::Invalid("tag key '" + std::string(key) + "': the prefix aws: is reserved");
  }
  if (value.size() > 256) {
    return Error::Invalid("tag " + std::string(key) + ": the value is longer than 256 characters");
  }
  return {};
}

State::Resource State::FindResource(std::string_view arn) const {
  Resource r;
  std::string_view rest = ResourcePart(arn, "ecs");
  std::string_view kind, name;
  if (rest.empty() || !SplitOnce(rest, &kind, &name)) {
    for (const StatePart* p : parts_) {
      if (p->HasResource(arn)) r.exists = true;
    }
    return r;
  }
  if (kind == "cluster") {
    r.exists = FindCluster(name) != nullptr;
    r.cluster = std::string(name);
  } else if (kind == "task-definition") {
    size_t colon = name.rfind(':');
    if (colon == std::string_view::npos) return r;
    int64_t revision = 0;
    for (char ch : name.substr(colon + 1)) {
      if (ch < '0' || ch > '9' || revision > 1000000000) return r;
      revision = revision * 10 + (ch - '0');
    }
    r.exists = revision > 0 && FindTaskDefinition(name.substr(0, colon), revision) != nullptr;
  } else {
    std::string_view cluster, id;
    if (!SplitOnce(name, &cluster, &id)) return r;
    r.cluster = std::string(cluster);
    if (kind == "service") {
      r.exists = FindService(cluster, id) != nullptr;
    } else if (kind == "container-instance") {
      const Node* n = FindNode(id);
      r.exists = n && n->cluster == cluster;
    } else if (kind == "task") {
      const Task* t = FindTask(id);
      r.exists = t && t->cluster == cluster;
    }
  }
  return r;
}

const std::map<std::string, std::string>* State::TagsOf(std::string_view arn) const {
  auto it = tags_.find(arn);
  return it == tags_.end() ? nullptr : &it->second;
}

Status State::LoadTags(store::Db& db) {
  tags_.clear();
  Result<store::Stmt> s = db.Prepare("SELECT resource, key, value FROM resource_tags");
  if (!s) return s.take_error();
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    tags_[std::string(s->Text(0))][std::string(s->Text(1))] = std::string(s->Text(2));
  }
  return {};
}

Status State::DropTags(store::Db& db, std::string_view arn) {
  auto it = tags_.find(arn);
  if (it == tags_.end()) return {};
  if (Status s = RunSql(db, "DELETE FROM resource_tags WHERE resource = ?1", {arn}); !s) return s;
  tags_.erase(it);
  return {};
}

Result<std::string> State::ApplyPutTags(store::Db& db, const PutTags& c) {
  if (!FindResource(c.resource).exists) {
    return Error::NotFound("ResourceNotFound", "resource " + c.resource + " does not exist");
  }
  if (c.tags.empty()) return Error::Invalid("tags: at least one is required");
  std::map<std::string, std::string> after;
  if (const auto* now = TagsOf(c.resource)) after = *now;
  for (const auto& [k, v] : c.tags) {
    if (Status s = ValidateTag(k, v); !s) return s.take_error();
    after[k] = v;
  }
  if (after.size() > kMaxTags) {
    return Error::Invalid("resource " + c.resource + " would have " + std::to_string(after.size()) + " tags; at most " +
                          std::to_string(kMaxTags));
  }
  for (const auto& [k, v] : c.tags) {
    if (Status s = RunSql(db, "INSERT OR REPLACE INTO resource_tags (resource, key, value) VALUES (?1, ?2, ?3)",
                          {c.resource, k, v});
        !s) {
      return s.take_error();
    }
  }
  auto& stored = tags_[c.resource];
  stored = std::move(after);
  return json::Doc::Object().Set("resource", c.resource).Set("tags", TagsJson(&stored)).Print();
}

Result<std::string> State::ApplyRemoveTags(store::Db& db, const RemoveTags& c) {
  if (!FindResource(c.resource).exists) {
    return Error::NotFound("ResourceNotFound", "resource " + c.resource + " does not exist");
  }
  auto it = tags_.find(c.resource);
  if (it != tags_.end()) {
    for (const std::string& k : c.keys) {
      if (!it->second.count(k)) continue;
      if (Status s = RunSql(db, "DELETE FROM resource_tags WHERE resource = ?1 AND key = ?2", {c.resource, k}); !s) {
        return s.take_error();
      }
      it->second.erase(k);
    }
    if (it->second.empty()) tags_.erase(it);
  }
  return json::Doc::Object().Set("resource", c.resource).Set("tags", TagsJson(TagsOf(c.resource))).Print();
}

Status State::LoadNodeAttributes(store::Db& db) {
  Result<store::Stmt> s = db.Prepare("SELECT node, name, value FROM node_attributes");
  if (!s) return s.take_error();
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    Node* n = NodeAt(s->Text(0));
    if (!n) continue;
    n->custom_attributes[std::string(s->Text(1))] = std::string(s->Text(2));
    n->MergeAttributes();
  }
  return {};
}

Result<std::string> State::ApplyPutNodeAttributes(store::Db& db, const PutNodeAttributes& c) {
  Node* n = NodeAt(c.node);
  if (!n) return Error::NotFound("NodeNotFound", "node " + c.node + " does not exist");
  if (c.attributes.empty()) return Error::Invalid("attributes: at least one is required");
  for (const auto& [k, v] : c.attributes) {
    if (Status s = ValidateAttribute(k, v); !s) return s.take_error();
  }
  for (const auto& [k, v] : c.attributes) {
    Result<store::Stmt*> s =
        db.Cached("INSERT OR REPLACE INTO node_attributes (node, name, value) VALUES (?1, ?2, ?3)");
    if (!s) return s.take_error();
    (*s)->Bind(1, c.node).Bind(2, k).Bind(3, v);
    if (Status st = (*s)->Run(); !st) return st.take_error();
  }
  for (const auto& [k, v] : c.attributes) n->custom_attributes[k] = v;
  n->MergeAttributes();
  for (StateObserver* o : observers_) o->OnNodeChanged(*n);
  return json::Doc::Object().Set("containerInstance", NodeJson(*n)).Print();
}

Result<std::string> State::ApplyDeleteNodeAttributes(store::Db& db, const DeleteNodeAttributes& c) {
  Node* n = NodeAt(c.node);
  if (!n) return Error::NotFound("NodeNotFound", "node " + c.node + " does not exist");
  bool changed = false;
  for (const std::string& name : c.names) {
    if (!n->custom_attributes.count(name)) continue;
    if (Status s = RunSql(db, "DELETE FROM node_attributes WHERE node = ?1 AND name = ?2", {c.node, name}); !s) {
      return s.take_error();
    }
    n->custom_attributes.erase(name);
    changed = true;
  }
  if (changed) {
    n->MergeAttributes();
    for (StateObserver* o : observers_) o->OnNodeChanged(*n);
  }
  return json::Doc::Object().Set("containerInstance", NodeJson(*n)).Print();
}

}  // namespace berth::model
