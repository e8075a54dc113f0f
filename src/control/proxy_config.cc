#include "control/proxy_config.h"

#include <algorithm>

#include "base/json.h"
#include "base/log.h"
#include "model/lb.h"
#include "model/secret.h"
#include "sched/expr.h"

namespace berth::control {

namespace {

// What a memberOf expression may ask of a model::Node.
class NodeFactsOf final : public sched::NodeFacts {
 public:
  explicit NodeFactsOf(const model::Node& n) : n_(n) {}
  const std::string* Attribute(std::string_view name) const override {
    auto it = n_.attributes.find(std::string(name));
    return it == n_.attributes.end() ? nullptr : &it->second;
  }
  std::string_view InstanceId() const override { return n_.id; }
  bool AgentConnected() const override { return n_.connected; }
  int64_t RunningTasksCount() const override { return n_.running; }
  bool HasTaskGroup(std::string_view) const override { return false; }

 private:
  const model::Node& n_;
};

std::string Key(std::string_view cluster, std::string_view name) { return model::State::ServiceKey(cluster, name); }

// The load balancers of `cluster`, in name order.
template <typename F>
void ForEachLb(const model::State& state, std::string_view cluster, F f) {
  std::string prefix = Key(cluster, "");
  const auto& lbs = state.load_balancers();
  for (auto it = lbs.lower_bound(prefix); it != lbs.end() && it->first.starts_with(prefix); ++it)
    f(it->first, it->second);
}

bool Uses(const model::LoadBalancer& lb, std::string_view tg) {
  for (const model::Listener& l : lb.listeners) {
    if (l.default_target_group == tg) return true;
    for (const model::ListenerRule& r : l.rules) {
      if (r.target_group == tg) return true;
    }
  }
  return false;
}

}  // namespace

std::optional<Target> TargetOf(const model::State& state, const model::Task& t, const model::ServiceLoadBalancer& slb) {
  if (t.stopped()) return std::nullopt;
  Target x;
  x.task_id = t.id;
  x.node = t.node;
  if (const model::Node* n = state.FindNode(t.node)) x.address = n->address;
  // A UDP group's target is the host port bound to the container port's udp mapping.
  const model::TargetGroup* tg = state.FindTargetGroup(t.cluster, slb.target_group);
  bool udp = tg && tg->protocol == "UDP";
  for (const model::ContainerState& c : t.containers) {
    if (c.name != slb.container) continue;
    for (const model::NetworkBinding& b : c.bindings) {
      if (b.container_port == slb.container_port && b.udp == udp) x.port = b.host_port;
    }
  }
  if (t.desired == "STOPPED") {
    x.state = "draining";
    x.reason = "Target.DeregistrationInProgress";
  } else if (t.last != "RUNNING") {
    x.state = "initial";
    x.reason = "Elb.RegistrationInProgress";
  } else if (t.health == "UNHEALTHY") {
    x.state = "unhealthy";
    x.reason = "Target.FailedHealthChecks";
  } else if (t.has_health_check && t.health != "HEALTHY") {
    x.state = "initial";
    x.reason = "Elb.InitialHealthChecking";
  } else if (x.port == 0) {
    x.state = "unhealthy";
    x.reason = "Target.PortUnavailable";
  } else if (const model::TargetGroup* tg = state.FindTargetGroup(t.cluster, slb.target_group);
             tg && tg->check.enabled) {
    // The group's own check, run by the task's node (agent/target_checks.h).
    const model::Task::TargetHealth* h = t.TargetHealthOf(slb.target_group);
    if (!h) {
      x.state = "initial";
      x.reason = "Elb.InitialHealthChecking";
    } else if (h->state == "healthy") {
      x.state = "healthy";
    } else {
      x.state = "unhealthy";
      x.reason = h->reason.empty() ? "Target.FailedHealthChecks" : h->reason;
      x.description = h->description;
    }
  } else {
    x.state = "healthy";
  }
  return x;
}

ProxyConfigs::ProxyConfigs(model::State* state, const Clock* clock) : state_(state), clock_(clock) {
  state_->AddObserver(this);
  ReindexTasks();
}

void ProxyConfigs::ReindexTasks() {
  group_tasks_.clear();
  for (const auto& [id, t] : state_->tasks()) {
    if (!t.stopped()) IndexTask(t);
  }
}

ProxyConfigs::~ProxyConfigs() = default;

const sched::Expr* ProxyConfigs::ExprOf(const std::string& text) const {
  auto it = exprs_.find(text);
  if (it == exprs_.end()) {
    Result<std::shared_ptr<const sched::Expr>> e = sched::Expr::Parse(text);
    // The API parsed it before it was stored; one that no longer parses (a
    // later grammar) chooses no node rather than every one.
    it = exprs_.emplace(text, e ? e.value() : nullptr).first;
  }
  return it->second.get();
}

bool ProxyConfigs::IsMember(const model::LoadBalancer& lb, const model::Node& n) const {
  if (lb.cluster != n.cluster) return false;
  if (lb.nodes.empty()) return true;
  const sched::Expr* e = ExprOf(lb.nodes);
  return e && e->Eval(NodeFactsOf(n));
}

std::vector<std::string> ProxyConfigs::Members(const model::LoadBalancer& lb) const {
  auto it = lb_members_.find(Key(lb.cluster, lb.name));
  if (it == lb_members_.end()) return {};
  return std::vector<std::string>(it->second.begin(), it->second.end());
}

std::vector<std::pair<int, bool>> ProxyConfigs::ListenerPorts(const model::Node& n) const {
  std::vector<std::pair<int, bool>> ports;
  ForEachLb(*state_, n.cluster, [&](const std::string&, const model::LoadBalancer& lb) {
    if (lb.listeners.empty() || !IsMember(lb, n)) return;
    for (const model::Listener& l : lb.listeners) ports.emplace_back(static_cast<int>(l.port), l.protocol == "UDP");
  });
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  return ports;
}

std::vector<Target> ProxyConfigs::Targets(const model::TargetGroup& tg) const {
  std::vector<Target> out;
  auto it = group_tasks_.find(Key(tg.cluster, tg.name));
  if (it == group_tasks_.end()) return out;
  for (const std::string& id : it->second) {
    const model::Task* t = state_->FindTask(id);
    if (!t) continue;
    const model::Service* svc = state_->FindService(t->cluster, t->service);
    if (!svc) continue;
    for (const model::ServiceLoadBalancer& slb : svc->load_balancers) {
      if (slb.target_group != tg.name) continue;
      if (std::optional<Target> x = TargetOf(*state_, *t, slb)) out.push_back(std::move(*x));
    }
  }
  return out;
}

Result<model::CertificatePem> ProxyConfigs::OpenCertificate(const std::string& name) const {
  const model::Secret* sec = state_->FindSecret(name);
  if (!sec) return Error::NotFound("ResourceNotFoundException", "secret " + name + " does not exist");
  if (!secrets_) return Error::Internal("this server holds no secret key");
  Result<std::string> value = secrets_->Open(*sec);
  if (!value) return value.take_error();
  Result<model::CertificatePem> pem = model::SplitCertificateBundle(*value);
  std::fill(value->begin(), value->end(), '\0');
  return pem;
}

std::set<std::string> ProxyConfigs::NodesServing(const model::TargetGroup& tg) const {
  std::set<std::string> nodes;
  ForEachLb(*state_, tg.cluster, [&](const std::string& key, const model::LoadBalancer& lb) {
    if (!Uses(lb, tg.name)) return;
    if (auto it = lb_members_.find(key); it != lb_members_.end()) nodes.insert(it->second.begin(), it->second.end());
  });
  return nodes;
}

void ProxyConfigs::MarkGroup(const std::string& cluster, const std::string& tg) {
  dirty_groups_.insert(Key(cluster, tg));
}

void ProxyConfigs::IndexTask(const model::Task& t) {
  if (t.service.empty()) return;
  const model::Service* svc = state_->FindService(t.cluster, t.service);
  if (!svc) return;
  if (!svc->load_balancers.empty()) dirty_checks_.insert(t.node);
  for (const model::ServiceLoadBalancer& slb : svc->load_balancers) {
    std::string key = Key(t.cluster, slb.target_group);
    if (t.stopped()) {
      auto it = group_tasks_.find(key);
      if (it != group_tasks_.end()) it->second.erase(t.id);
    } else {
      group_tasks_[key].insert(t.id);
    }
    dirty_groups_.insert(std::move(key));
  }
}

void ProxyConfigs::OnNodeChanged(const model::Node& n) {
  dirty_nodes_.insert(n.id);
  if (checks_.count(n.id)) dirty_checks_.insert(n.id);  // its address is in its checks
}

void ProxyConfigs::OnNodeRemoved(const model::Node& n) {
  auto it = docs_.find(n.id);
  if (it == docs_.end()) return;
  for (const std::string& lb : it->second.lbs) lb_members_[lb].erase(n.id);
  docs_.erase(it);
}

void ProxyConfigs::OnTaskChanged(const model::Task& t) { IndexTask(t); }

void ProxyConfigs::OnTaskForgotten(const model::Task& t) {
  if (t.service.empty()) return;
  if (checks_.count(t.node)) dirty_checks_.insert(t.node);
  for (auto& [key, ids] : group_tasks_) ids.erase(t.id);
}

void ProxyConfigs::OnCommandApplied(const store::Command& cmd) {
  std::string_view type = cmd.Type();
  if (type == "CreateLoadBalancer") {
    // Its cluster is in its doc; read it back (rare).
    if (Result<model::LoadBalancer> lb =
            model::ParseLoadBalancerDoc(static_cast<const model::CreateLoadBalancer&>(cmd).doc)) {
      dirty_clusters_.insert(lb->cluster);
    }
  } else if (type == "ModifyTargetGroup") {
    // Its algorithm and attributes are in the documents of every node serving it,
    // its health check in the checks of every node with one of its targets.
    const auto& c = static_cast<const model::ModifyTargetGroup&>(cmd);
    MarkGroup(c.cluster, c.name);
    if (auto it = group_tasks_.find(Key(c.cluster, c.name)); it != group_tasks_.end()) {
      for (const std::string& id : it->second) {
        if (const model::Task* t = state_->FindTask(id)) dirty_checks_.insert(t->node);
      }
    }
  } else if (type == "DeleteLoadBalancer") {
    dirty_clusters_.insert(static_cast<const model::DeleteLoadBalancer&>(cmd).cluster);
  } else if (type == "CreateListener") {
    dirty_clusters_.insert(static_cast<const model::CreateListener&>(cmd).cluster);
  } else if (type == "DeleteListener") {
    dirty_clusters_.insert(static_cast<const model::DeleteListener&>(cmd).cluster);
  } else if (type == "CreateRule") {
    dirty_clusters_.insert(static_cast<const model::CreateRule&>(cmd).cluster);
  } else if (type == "DeleteRule") {
    dirty_clusters_.insert(static_cast<const model::DeleteRule&>(cmd).cluster);
  } else if (type == "PutSecret" || type == "DeleteSecret") {
    // A listener's certificate may have been renewed: the clusters of the
    // listeners that name it are rebuilt.
    const std::string& name = type == "PutSecret" ? static_cast<const model::PutSecret&>(cmd).name
                                                  : static_cast<const model::DeleteSecret&>(cmd).name;
    for (const auto& [key, lb] : state_->load_balancers()) {
      for (const model::Listener& l : lb.listeners) {
        if (std::find(l.certificates.begin(), l.certificates.end(), name) != l.certificates.end())
          dirty_clusters_.insert(lb.cluster);
      }
    }
  } else if (type == "PutNodeAttributes") {
    dirty_nodes_.insert(static_cast<const model::PutNodeAttributes&>(cmd).node);
  } else if (type == "DeleteNodeAttributes") {
    dirty_nodes_.insert(static_cast<const model::DeleteNodeAttributes&>(cmd).node);
  }
}

void ProxyConfigs::OnReloaded() {
  all_dirty_ = true;
  for (const auto& [id, c] : checks_) dirty_checks_.insert(id);
  ReindexTasks();
}

std::string ProxyConfigs::Body(const std::string& cluster, const std::set<std::string>& lbs) const {
  std::vector<std::pair<const model::Listener*, const model::LoadBalancer*>> listeners;
  std::set<std::string> groups;
  for (const std::string& key : lbs) {
    auto it = state_->load_balancers().find(key);
    if (it == state_->load_balancers().end()) continue;
    for (const model::Listener& l : it->second.listeners) {
      listeners.emplace_back(&l, &it->second);
      if (!l.default_target_group.empty()) groups.insert(l.default_target_group);
      for (const model::ListenerRule& r : l.rules) groups.insert(r.target_group);
    }
  }
  std::sort(listeners.begin(), listeners.end(),
            [](const auto& a, const auto& b) { return a.first->port < b.first->port; });
  std::string out = "\"listeners\":[";
  bool first = true;
  std::set<std::string> certificates;
  for (const auto& [l, lb] : listeners) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"port\":").append(std::to_string(l->port)).append(",\"protocol\":");
    json::AppendQuoted(&out, l->protocol);
    out.append(",\"address\":\"0.0.0.0\"");
    if (!l->default_target_group.empty()) {
      out.append(",\"defaultTargetGroup\":");
      json::AppendQuoted(&out, l->default_target_group);
    }
    json::Doc doc = model::ListenerDocJson(*l);
    if (!l->rules.empty()) out.append(",\"rules\":").append(doc.view().Get("rules").Print());
    if (!l->certificates.empty()) {
      out.append(",\"certificates\":").append(doc.view().Get("certificates").Print());
      certificates.insert(l->certificates.begin(), l->certificates.end());
    }
    if (l->redirect_port) out.append(",\"redirectToHttps\":").append(doc.view().Get("redirectToHttps").Print());
    if (!l->proxy_protocol_from.empty())
      out.append(",\"proxyProtocolFrom\":").append(doc.view().Get("proxyProtocolFrom").Print());
    out.push_back('}');
  }
  // The certificates those listeners name, opened from their secrets. One that
  // cannot be (a key the server lacks, a value that is not a bundle) is left
  // out: the proxies refuse the document and keep the one they run, and the
  // server says why here.
  if (!certificates.empty()) {
    out.append("],\"certificates\":[");
    bool first_cert = true;
    for (const std::string& name : certificates) {
      Result<model::CertificatePem> pem = OpenCertificate(name);
      if (!pem) {
        log::Warn("lb", "a listener's certificate cannot be given to the proxies",
                  {{"secret", name}, {"error", pem.error().message}});
        continue;
      }
      if (!first_cert) out.push_back(',');
      first_cert = false;
      out.append("{\"name\":");
      json::AppendQuoted(&out, name);
      out.append(",\"certPem\":");
      json::AppendQuoted(&out, pem->cert_pem);
      out.append(",\"keyPem\":");
      json::AppendQuoted(&out, pem->key_pem);
      out.push_back('}');
      std::fill(pem->key_pem.begin(), pem->key_pem.end(), '\0');
    }
  }
  out.append("],\"targetGroups\":[");
  first = true;
  for (const std::string& name : groups) {
    const model::TargetGroup* tg = state_->FindTargetGroup(cluster, name);
    if (!tg) continue;
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"name\":");
    json::AppendQuoted(&out, tg->name);
    out.append(",\"protocol\":");
    json::AppendQuoted(&out, tg->protocol);
    out.append(",\"algorithm\":");
    json::AppendQuoted(&out, tg->algorithm);
    if (tg->proxy_protocol_v2) out.append(",\"proxyProtocol\":\"v2\"");
    if (tg->stickiness && tg->protocol == "HTTP") {
      out.append(",\"stickiness\":{\"type\":\"lb_cookie\",\"durationSeconds\":")
          .append(std::to_string(tg->stickiness_cookie_s))
          .append("}");
    } else if (tg->stickiness) {
      out.append(",\"stickiness\":{\"type\":\"source_ip\"}");
    }
    out.append(",\"slowStartSeconds\":").append(std::to_string(tg->slow_start_s)).append(",\"targets\":[");
    std::vector<Target> targets = Targets(*tg);
    std::sort(targets.begin(), targets.end(), [](const Target& a, const Target& b) { return a.task_id < b.task_id; });
    bool first_target = true;
    for (const Target& x : targets) {
      // A proxy can send nothing to a target whose address or port is not known yet.
      if (x.port == 0 || x.address.empty()) continue;
      if (!first_target) out.push_back(',');
      first_target = false;
      out.append("{\"id\":");
      json::AppendQuoted(&out, x.task_id);
      out.append(",\"address\":");
      json::AppendQuoted(&out, x.address);
      out.append(",\"port\":").append(std::to_string(x.port)).append(",\"state\":");
      json::AppendQuoted(&out, x.state);
      out.push_back('}');
    }
    out.append("]}");
  }
  out.append("]}");
  return out;
}

std::string ProxyConfigs::ChecksBody(const model::Node& n) const {
  std::string out = "\"targets\":[";
  bool first = true;
  for (const auto& [id, tp] : n.tasks) {
    const model::Task& t = *tp;
    if (t.stopped() || t.desired != "RUNNING" || t.last != "RUNNING" || t.service.empty()) continue;
    const model::Service* svc = state_->FindService(t.cluster, t.service);
    if (!svc) continue;
    for (const model::ServiceLoadBalancer& slb : svc->load_balancers) {
      const model::TargetGroup* tg = state_->FindTargetGroup(t.cluster, slb.target_group);
      if (!tg || !tg->check.enabled) continue;
      std::optional<Target> x = TargetOf(*state_, t, slb);
      if (!x || x->port == 0) continue;
      const model::HealthCheck& hc = tg->check;
      out.append(first ? "{\"taskId\":" : ",{\"taskId\":");
      first = false;
      json::AppendQuoted(&out, t.id);
      out.append(",\"targetGroup\":");
      json::AppendQuoted(&out, tg->name);
      out.append(",\"address\":");
      json::AppendQuoted(&out, x->address.empty() ? "127.0.0.1" : x->address);
      out.append(",\"port\":").append(std::to_string(x->port)).append(",\"protocol\":");
      json::AppendQuoted(&out, hc.protocol);
      if (hc.protocol == "HTTP") {
        out.append(",\"path\":");
        json::AppendQuoted(&out, hc.path);
        out.append(",\"matcher\":");
        json::AppendQuoted(&out, hc.matcher);
      }
      out.append(",\"intervalSeconds\":").append(std::to_string(hc.interval_s));
      out.append(",\"timeoutSeconds\":").append(std::to_string(hc.timeout_s));
      out.append(",\"healthyThreshold\":").append(std::to_string(hc.healthy_threshold));
      out.append(",\"unhealthyThreshold\":").append(std::to_string(hc.unhealthy_threshold)).append("}");
    }
  }
  return out + "]}";
}

void ProxyConfigs::FlushChecks() {
  int64_t now_ms = clock_->NowUnixMs();
  for (const std::string& id : dirty_checks_) {
    const model::Node* n = state_->FindNode(id);
    auto it = checks_.find(id);
    if (!n) {
      if (it != checks_.end()) checks_.erase(it);
      continue;
    }
    std::string body = ChecksBody(*n);
    if (it == checks_.end()) {
      if (body == "\"targets\":[]}") continue;  // never checked anything: no document
      it = checks_.emplace(id, ChecksDoc{}).first;
    }
    if (it->second.body == body) continue;
    it->second.body = std::move(body);
    it->second.version = std::max(it->second.version + 1, now_ms);
    state_->NodeDesiredChanged(id);
  }
  dirty_checks_.clear();
}

std::string ProxyConfigs::Checks(std::string_view id) const {
  auto it = checks_.find(std::string(id));
  if (it == checks_.end()) return {};
  return "{\"version\":" + std::to_string(it->second.version) + "," + it->second.body;
}

int64_t ProxyConfigs::ChecksVersion(std::string_view id) const {
  auto it = checks_.find(std::string(id));
  return it == checks_.end() ? 0 : it->second.version;
}

void ProxyConfigs::Flush() {
  FlushChecks();
  std::set<std::string> rebuild;
  // Recomputes which load balancers node `n` is a member of; a change rebuilds its document.
  auto recompute = [&](const model::Node& n) {
    std::set<std::string> lbs;
    ForEachLb(*state_, n.cluster, [&](const std::string& key, const model::LoadBalancer& lb) {
      if (IsMember(lb, n)) lbs.insert(key);
    });
    auto it = docs_.find(n.id);
    if (it == docs_.end()) {
      if (lbs.empty()) return;  // never a member: no document
      it = docs_.emplace(n.id, NodeDoc{}).first;
    }
    if (it->second.lbs == lbs) return;
    for (const std::string& lb : it->second.lbs) lb_members_[lb].erase(n.id);
    for (const std::string& lb : lbs) lb_members_[lb].insert(n.id);
    it->second.lbs = std::move(lbs);
    rebuild.insert(n.id);
  };
  if (all_dirty_) {
    all_dirty_ = false;
    for (const auto& [id, n] : state_->nodes()) recompute(n);
    for (const auto& [id, d] : docs_) rebuild.insert(id);
    dirty_nodes_.clear();
    dirty_clusters_.clear();
  }
  for (const std::string& cluster : dirty_clusters_) {
    for (const auto& [id, n] : state_->nodes()) {
      if (n.cluster != cluster) continue;
      recompute(n);
      if (docs_.count(id)) rebuild.insert(id);
    }
  }
  dirty_clusters_.clear();
  for (const std::string& id : dirty_nodes_) {
    if (const model::Node* n = state_->FindNode(id)) recompute(*n);
  }
  dirty_nodes_.clear();
  for (const std::string& key : dirty_groups_) {
    size_t slash = key.find('/');
    std::string cluster = key.substr(0, slash), tg = key.substr(slash + 1);
    ForEachLb(*state_, cluster, [&](const std::string& lb_key, const model::LoadBalancer& lb) {
      if (!Uses(lb, tg)) return;
      auto members = lb_members_.find(lb_key);
      if (members != lb_members_.end()) rebuild.insert(members->second.begin(), members->second.end());
    });
  }
  dirty_groups_.clear();
  if (rebuild.empty()) return;
  // Nodes of the same load balancers share one body, built once.
  std::map<std::string, std::shared_ptr<const std::string>> bodies;
  int64_t now_ms = clock_->NowUnixMs();
  for (const std::string& id : rebuild) {
    auto it = docs_.find(id);
    const model::Node* n = state_->FindNode(id);
    if (it == docs_.end() || !n) continue;
    NodeDoc& d = it->second;
    std::string signature = n->cluster;
    for (const std::string& lb : d.lbs) signature.append("\n").append(lb);
    std::shared_ptr<const std::string>& body = bodies[signature];
    if (!body) body = std::make_shared<const std::string>(Body(n->cluster, d.lbs));
    if (d.body && *d.body == *body) {
      d.body = body;
      continue;
    }
    d.body = body;
    // Versions grow across restarts and leaders too: never below the clock.
    d.version = std::max(d.version + 1, now_ms);
    state_->NodeDesiredChanged(id);
  }
}

std::string ProxyConfigs::Document(std::string_view id) const {
  auto it = docs_.find(std::string(id));
  if (it == docs_.end() || !it->second.body) return {};
  return "{\"version\":" + std::to_string(it->second.version) + "," + *it->second.body;
}

int64_t ProxyConfigs::Version(std::string_view id) const {
  auto it = docs_.find(std::string(id));
  return it == docs_.end() ? 0 : it->second.version;
}

}  // namespace berth::control
