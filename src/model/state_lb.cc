// Load balancing's part of State (model/lb.h): target groups and load balancers
// (a load balancer's row holds its listeners and their rules), their commands and
// the checks that keep references whole: a listener or rule names an existing
// group of its protocol, a group named by anything cannot go.
#include <algorithm>

#include "model/state.h"

namespace berth::model {

namespace {

Error NoTargetGroup(std::string_view cluster, std::string_view name) {
  return Error::NotFound("TargetGroupNotFound",
                         "target group " + std::string(name) + " does not exist in cluster " + std::string(cluster));
}

Error NoLoadBalancer(std::string_view cluster, std::string_view name) {
  return Error::NotFound("LoadBalancerNotFound",
                         "load balancer " + std::string(name) + " does not exist in cluster " + std::string(cluster));
}

std::string ListenerName(std::string_view lb, int64_t port) { return std::string(lb) + ":" + std::to_string(port); }

// ELB's default quotas: a load balancer's row (its listeners and their rules)
// is written whole at each change, so it stays small.
constexpr size_t kMaxListeners = 50;  // per load balancer
constexpr size_t kMaxRules = 100;     // per listener

// The listener of `lb` on `port`, or ListenerNotFound.
Result<Listener*> ListenerOn(LoadBalancer& lb, int64_t port) {
  auto l = std::find_if(lb.listeners.begin(), lb.listeners.end(), [&](const Listener& x) { return x.port == port; });
  if (l == lb.listeners.end()) {
    return Error::NotFound("ListenerNotFound",
                           "load balancer " + lb.name + " has no listener on port " + std::to_string(port));
  }
  return &*l;
}

}  // namespace

std::string TargetProtocolOf(std::string_view listener_protocol) {
  if (listener_protocol == "HTTPS") return "HTTP";
  if (listener_protocol == "TLS") return "TCP";
  return std::string(listener_protocol);
}

std::vector<std::string> State::SecretUsers(std::string_view secret) const {
  std::vector<std::string> users;
  for (const auto& [key, lb] : load_balancers_) {
    for (const Listener& l : lb.listeners) {
      if (std::find(l.certificates.begin(), l.certificates.end(), secret) != l.certificates.end()) {
        users.push_back("listener " + ListenerName(lb.name, l.port) + " in cluster " + lb.cluster);
      }
    }
  }
  return users;
}

const TargetGroup* State::FindTargetGroup(std::string_view cluster, std::string_view name) const {
  auto it = target_groups_.find(ServiceKey(cluster, name));
  return it == target_groups_.end() ? nullptr : &it->second;
}

const LoadBalancer* State::FindLoadBalancer(std::string_view cluster, std::string_view name) const {
  auto it = load_balancers_.find(ServiceKey(cluster, name));
  return it == load_balancers_.end() ? nullptr : &it->second;
}

std::vector<std::string> State::TargetGroupUsers(std::string_view cluster, std::string_view name) const {
  std::vector<std::string> users;
  std::string prefix = ServiceKey(cluster, "");
  for (auto it = load_balancers_.lower_bound(prefix); it != load_balancers_.end() && it->first.starts_with(prefix);
       ++it) {
    for (const Listener& l : it->second.listeners) {
      if (l.default_target_group == name) users.push_back("listener " + ListenerName(it->second.name, l.port));
      for (const ListenerRule& r : l.rules) {
        if (r.target_group == name) {
          users.push_back("rule " + ListenerName(it->second.name, l.port) + "/" + std::to_string(r.priority));
        }
      }
    }
  }
  for (auto it = services_.lower_bound(prefix); it != services_.end() && it->first.starts_with(prefix); ++it) {
    for (const ServiceLoadBalancer& slb : it->second.load_balancers) {
      if (slb.target_group == name) {
        users.push_back("service " + it->second.name);
        break;
      }
    }
  }
  return users;
}

Status State::CheckServiceLoadBalancers(const Service& s, const TaskDefinition& td) const {
  if (s.load_balancers.size() > 5) return Error::Invalid("loadBalancers: at most 5 (as ECS)");
  for (size_t i = 0; i < s.load_balancers.size(); i++) {
    const ServiceLoadBalancer& slb = s.load_balancers[i];
    std::string field = "loadBalancers[" + std::to_string(i) + "]";
    if (!FindTargetGroup(s.cluster, slb.target_group)) {
      return Error::NotFound("TargetGroupNotFound",
                             field + ".targetGroupArn: " + NoTargetGroup(s.cluster, slb.target_group).message);
    }
    for (size_t j = 0; j < i; j++) {
      if (s.load_balancers[j].target_group == slb.target_group && s.load_balancers[j].container == slb.container &&
          s.load_balancers[j].container_port == slb.container_port) {
        return Error::Invalid(field + ": the same as loadBalancers[" + std::to_string(j) + "]");
      }
    }
    const ContainerSummary* container = nullptr;
    for (const ContainerSummary& cs : td.containers) {
      if (cs.name == slb.container) container = &cs;
    }
    if (!container) {
      return Error::Invalid(field + ".containerName: task definition " + td.family + ":" + std::to_string(td.revision) +
                            " has no container " + slb.container);
    }
    // A UDP group's targets answer on the container's udp mapping, the others on its tcp one.
    bool udp = FindTargetGroup(s.cluster, slb.target_group)->protocol == "UDP";
    bool mapped = false;
    for (const PortMapping& pm : container->ports) {
      if (pm.container_port == slb.container_port && pm.udp == udp) mapped = true;
    }
    if (!mapped) {
      return Error::Invalid(field + ".containerPort: container " + slb.container + " has no " + (udp ? "UDP" : "TCP") +
                            " portMapping of port " + std::to_string(slb.container_port));
    }
  }
  return {};
}

Status State::LoadLoadBalancing(store::Db& db) {
  target_groups_.clear();
  load_balancers_.clear();
  {
    Result<store::Stmt> q = db.Prepare("SELECT doc FROM target_groups");
    if (!q) return q.take_error();
    for (;;) {
      Result<bool> row = q->Step();
      if (!row) return row.take_error();
      if (!row.value()) break;
      Result<TargetGroup> tg = ParseTargetGroupDoc(q->Text(0));
      if (!tg) return Error::Internal("target_groups: " + tg.error().message);
      std::string key = ServiceKey(tg->cluster, tg->name);
      target_groups_[key] = std::move(tg.value());
    }
  }
  Result<store::Stmt> q = db.Prepare("SELECT doc FROM load_balancers");
  if (!q) return q.take_error();
  for (;;) {
    Result<bool> row = q->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    Result<LoadBalancer> lb = ParseLoadBalancerDoc(q->Text(0));
    if (!lb) return Error::Internal("load_balancers: " + lb.error().message);
    std::string key = ServiceKey(lb->cluster, lb->name);
    load_balancers_[key] = std::move(lb.value());
  }
  return {};
}

Status State::SaveLoadBalancer(store::Db& db, const LoadBalancer& lb) {
  Result<store::Stmt*> put =
      db.Cached("INSERT OR REPLACE INTO load_balancers (cluster, name, doc) VALUES (?1, ?2, ?3)");
  if (!put) return put.take_error();
  (*put)->Bind(1, lb.cluster).Bind(2, lb.name).Bind(3, LoadBalancerDoc(lb));
  return (*put)->Run();
}

Result<std::string> State::ApplyCreateTargetGroup(store::Db& db, const CreateTargetGroup& c) {
  Result<TargetGroup> tg = ParseTargetGroupDoc(c.doc);
  if (!tg) return tg.take_error();
  if (!FindCluster(tg->cluster)) {
    return Error::NotFound("ClusterNotFoundException", "cluster " + tg->cluster + " does not exist");
  }
  if (Status s = ValidateLbName(tg->name, "name"); !s) return s.take_error();
  if (FindTargetGroup(tg->cluster, tg->name)) {
    return Error::Conflict("DuplicateTargetGroupName",
                           "target group " + tg->name + " already exists in cluster " + tg->cluster);
  }
  tg->created_ms = c.time_ms;
  Result<store::Stmt*> put = db.Cached("INSERT INTO target_groups (cluster, name, doc) VALUES (?1, ?2, ?3)");
  if (!put) return put.take_error();
  (*put)->Bind(1, tg->cluster).Bind(2, tg->name).Bind(3, TargetGroupDoc(*tg));
  if (Status s = (*put)->Run(); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("targetGroup", TargetGroupJson(*tg)).Print();
  std::string key = ServiceKey(tg->cluster, tg->name);
  target_groups_[key] = std::move(tg.value());
  return reply;
}

Result<std::string> State::ApplyModifyTargetGroup(store::Db& db, const ModifyTargetGroup& c) {
  auto it = target_groups_.find(ServiceKey(c.cluster, c.name));
  if (it == target_groups_.end()) return NoTargetGroup(c.cluster, c.name);
  Result<json::Doc> change = json::Doc::Parse(c.change);
  if (!change) return change.take_error();
  Result<TargetGroup> tg = ModifyTargetGroupBody(it->second, change->view());
  if (!tg) return tg.take_error();
  Result<store::Stmt*> put = db.Cached("UPDATE target_groups SET doc = ?3 WHERE cluster = ?1 AND name = ?2");
  if (!put) return put.take_error();
  (*put)->Bind(1, tg->cluster).Bind(2, tg->name).Bind(3, TargetGroupDoc(*tg));
  if (Status s = (*put)->Run(); !s) return s.take_error();
  it->second = std::move(tg.value());
  return json::Doc::Object().Set("targetGroup", TargetGroupJson(it->second)).Print();
}

Result<std::string> State::ApplyDeleteTargetGroup(store::Db& db, const DeleteTargetGroup& c) {
  auto it = target_groups_.find(ServiceKey(c.cluster, c.name));
  if (it == target_groups_.end()) return NoTargetGroup(c.cluster, c.name);
  std::vector<std::string> users = TargetGroupUsers(c.cluster, c.name);
  if (!users.empty()) {
    std::string list;
    for (const std::string& u : users) list += (list.empty() ? "" : ", ") + u;
    return Error::Conflict("ResourceInUse", "target group " + c.name + " is in use by " + list);
  }
  Result<store::Stmt*> del = db.Cached("DELETE FROM target_groups WHERE cluster = ?1 AND name = ?2");
  if (!del) return del.take_error();
  (*del)->Bind(1, c.cluster).Bind(2, c.name);
  if (Status s = (*del)->Run(); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("targetGroup", TargetGroupJson(it->second)).Print();
  target_groups_.erase(it);
  return reply;
}

Result<std::string> State::ApplyCreateLoadBalancer(store::Db& db, const CreateLoadBalancer& c) {
  Result<LoadBalancer> lb = ParseLoadBalancerDoc(c.doc);
  if (!lb) return lb.take_error();
  if (!FindCluster(lb->cluster)) {
    return Error::NotFound("ClusterNotFoundException", "cluster " + lb->cluster + " does not exist");
  }
  if (Status s = ValidateLbName(lb->name, "name"); !s) return s.take_error();
  if (FindLoadBalancer(lb->cluster, lb->name)) {
    return Error::Conflict("DuplicateLoadBalancerName",
                           "load balancer " + lb->name + " already exists in cluster " + lb->cluster);
  }
  lb->created_ms = c.time_ms;
  lb->listeners.clear();  // listeners come by CreateListener, each checked
  if (Status s = SaveLoadBalancer(db, *lb); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("loadBalancer", LoadBalancerJson(*lb)).Print();
  std::string key = ServiceKey(lb->cluster, lb->name);
  load_balancers_[key] = std::move(lb.value());
  return reply;
}

Result<std::string> State::ApplyDeleteLoadBalancer(store::Db& db, const DeleteLoadBalancer& c) {
  auto it = load_balancers_.find(ServiceKey(c.cluster, c.name));
  if (it == load_balancers_.end()) return NoLoadBalancer(c.cluster, c.name);
  Result<store::Stmt*> del = db.Cached("DELETE FROM load_balancers WHERE cluster = ?1 AND name = ?2");
  if (!del) return del.take_error();
  (*del)->Bind(1, c.cluster).Bind(2, c.name);
  if (Status s = (*del)->Run(); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("loadBalancer", LoadBalancerJson(it->second)).Print();
  load_balancers_.erase(it);
  return reply;
}

Result<std::string> State::ApplyCreateListener(store::Db& db, const CreateListener& c) {
  auto it = load_balancers_.find(ServiceKey(c.cluster, c.load_balancer));
  if (it == load_balancers_.end()) return NoLoadBalancer(c.cluster, c.load_balancer);
  Result<json::Doc> doc = json::Doc::Parse(c.doc);
  if (!doc) return doc.take_error();
  Result<Listener> l = ParseListenerBody(doc->view());
  if (!l) return l.take_error();
  // A port is the listener's on every member node; load balancers of a cluster
  // may share nodes, so a port is given once per cluster.
  std::string prefix = ServiceKey(c.cluster, "");
  for (auto o = load_balancers_.lower_bound(prefix); o != load_balancers_.end() && o->first.starts_with(prefix); ++o) {
    if (o->second.FindListener(l->port)) {
      return Error::Conflict("DuplicateListener",
                             "port " + std::to_string(l->port) + " is already a listener of " +
                                 (o == it ? "this load balancer" : "load balancer " + o->second.name) + " in cluster " +
                                 c.cluster);
    }
  }
  if (!l->default_target_group.empty()) {
    const TargetGroup* tg = FindTargetGroup(c.cluster, l->default_target_group);
    if (!tg) {
      return Error::NotFound("TargetGroupNotFound",
                             "defaultTargetGroup: " + NoTargetGroup(c.cluster, l->default_target_group).message);
    }
    if (tg->protocol != TargetProtocolOf(l->protocol)) {
      return Error::Invalid("defaultTargetGroup: target group " + tg->name + " is " + tg->protocol + "; an " +
                            l->protocol + " listener sends to " + TargetProtocolOf(l->protocol) + " groups");
    }
  }
  for (size_t i = 0; i < l->certificates.size(); i++) {
    const std::string& name = l->certificates[i];
    std::string field = "certificates[" + std::to_string(i) + "]";
    const Secret* sec = FindSecret(name);
    if (!sec) return Error::NotFound("ResourceNotFoundException", field + ": secret " + name + " does not exist");
    if (!sec->clusters.empty() &&
        std::find(sec->clusters.begin(), sec->clusters.end(), c.cluster) == sec->clusters.end()) {
      return Error::Invalid(field + ": secret " + name + " is kept for other clusters than " + c.cluster);
    }
  }
  LoadBalancer lb = it->second;
  if (lb.listeners.size() >= kMaxListeners) {
    return Error::Invalid("load balancer " + lb.name + " has " + std::to_string(kMaxListeners) +
                          " listeners, the most it may have");
  }
  auto at = std::lower_bound(lb.listeners.begin(), lb.listeners.end(), l->port,
                             [](const Listener& x, int64_t port) { return x.port < port; });
  lb.listeners.insert(at, l.value());
  if (Status s = SaveLoadBalancer(db, lb); !s) return s.take_error();
  std::string reply =
      json::Doc::Object().Set("listener", ListenerDocJson(l.value())).Set("loadBalancer", LoadBalancerJson(lb)).Print();
  it->second = std::move(lb);
  return reply;
}

Result<std::string> State::ApplyDeleteListener(store::Db& db, const DeleteListener& c) {
  auto it = load_balancers_.find(ServiceKey(c.cluster, c.load_balancer));
  if (it == load_balancers_.end()) return NoLoadBalancer(c.cluster, c.load_balancer);
  LoadBalancer lb = it->second;
  Result<Listener*> l = ListenerOn(lb, c.port);
  if (!l) return l.take_error();
  lb.listeners.erase(lb.listeners.begin() + (*l - lb.listeners.data()));
  if (Status s = SaveLoadBalancer(db, lb); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("loadBalancer", LoadBalancerJson(lb)).Print();
  it->second = std::move(lb);
  return reply;
}

Result<std::string> State::ApplyCreateRule(store::Db& db, const CreateRule& c) {
  auto it = load_balancers_.find(ServiceKey(c.cluster, c.load_balancer));
  if (it == load_balancers_.end()) return NoLoadBalancer(c.cluster, c.load_balancer);
  Result<json::Doc> doc = json::Doc::Parse(c.doc);
  if (!doc) return doc.take_error();
  Result<ListenerRule> r = ParseRuleBody(doc->view());
  if (!r) return r.take_error();
  LoadBalancer lb = it->second;
  Result<Listener*> found = ListenerOn(lb, c.port);
  if (!found) return found.take_error();
  Listener* l = *found;
  if (TargetProtocolOf(l->protocol) != "HTTP") {
    return Error::Invalid("rules are for HTTP and HTTPS listeners; " + ListenerName(lb.name, c.port) + " is " +
                          l->protocol);
  }
  if (l->redirect_port) {
    return Error::Invalid("listener " + ListenerName(lb.name, c.port) + " redirects every request to https: no rules");
  }
  if (l->rules.size() >= kMaxRules) {
    return Error::Invalid("listener " + ListenerName(lb.name, c.port) + " has " + std::to_string(kMaxRules) +
                          " rules, the most it may have");
  }
  for (const ListenerRule& x : l->rules) {
    if (x.priority == r->priority) {
      return Error::Conflict("PriorityInUse", "listener " + ListenerName(lb.name, c.port) +
                                                  " already has a rule of priority " + std::to_string(r->priority));
    }
  }
  const TargetGroup* tg = FindTargetGroup(c.cluster, r->target_group);
  if (!tg)
    return Error::NotFound("TargetGroupNotFound", "targetGroup: " + NoTargetGroup(c.cluster, r->target_group).message);
  if (tg->protocol != "HTTP") {
    return Error::Invalid("targetGroup: target group " + tg->name + " is " + tg->protocol + ", the listener HTTP");
  }
  auto at = std::lower_bound(l->rules.begin(), l->rules.end(), r->priority,
                             [](const ListenerRule& x, int64_t p) { return x.priority < p; });
  l->rules.insert(at, r.value());
  if (Status s = SaveLoadBalancer(db, lb); !s) return s.take_error();
  std::string reply =
      json::Doc::Object().Set("rule", RuleDocJson(r.value())).Set("loadBalancer", LoadBalancerJson(lb)).Print();
  it->second = std::move(lb);
  return reply;
}

Result<std::string> State::ApplyDeleteRule(store::Db& db, const DeleteRule& c) {
  auto it = load_balancers_.find(ServiceKey(c.cluster, c.load_balancer));
  if (it == load_balancers_.end()) return NoLoadBalancer(c.cluster, c.load_balancer);
  LoadBalancer lb = it->second;
  Result<Listener*> found = ListenerOn(lb, c.port);
  if (!found) return found.take_error();
  Listener* l = *found;
  auto r =
      std::find_if(l->rules.begin(), l->rules.end(), [&](const ListenerRule& x) { return x.priority == c.priority; });
  if (r == l->rules.end()) {
    return Error::NotFound("RuleNotFound", "listener " + ListenerName(lb.name, c.port) + " has no rule of priority " +
                                               std::to_string(c.priority));
  }
  l->rules.erase(r);
  if (Status s = SaveLoadBalancer(db, lb); !s) return s.take_error();
  std::string reply = json::Doc::Object().Set("loadBalancer", LoadBalancerJson(lb)).Print();
  it->second = std::move(lb);
  return reply;
}

}  // namespace berth::model
