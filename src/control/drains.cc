#include "control/drains.h"

#include <algorithm>

#include "base/log.h"
#include "control/proxy_config.h"

namespace berth::control {

Drains::Drains(model::State* state, const ProxyConfigs* proxies, const Clock* clock, DrainOptions options)
    : state_(state), proxies_(proxies), clock_(clock), options_(options) {
  state_->AddObserver(this);
  OnReloaded();
}

Drains::~Drains() = default;

// A task is held when it ran as a target and is now to stop. One that never ran
// was never healthy in any document: nothing can be in flight to it.
void Drains::Consider(const model::Task& t) {
  if (t.desired != "STOPPED" || t.stopped() || t.last != "RUNNING" || t.service.empty()) return;
  if (held_.count(t.id) || released_.count(t.id)) return;
  const model::Service* svc = state_->FindService(t.cluster, t.service);
  if (!svc || svc->load_balancers.empty()) return;
  Drain d;
  d.node = t.node;
  d.since_ms = clock_->NowUnixMs();
  held_.emplace(t.id, std::move(d));
}

void Drains::Forget(const std::string& id) {
  held_.erase(id);
  released_.erase(id);
}

void Drains::OnTaskChanged(const model::Task& t) {
  if (t.stopped()) return Forget(t.id);
  Consider(t);
}

// Rebuilt from the state. Tasks released before stay released: their agents
// may already be stopping them.
void Drains::OnReloaded() {
  for (auto it = held_.begin(); it != held_.end();) {
    const model::Task* t = state_->FindTask(it->first);
    it = (!t || t->stopped() || t->desired != "STOPPED") ? held_.erase(it) : std::next(it);
  }
  std::erase_if(released_, [this](const std::string& id) {
    const model::Task* t = state_->FindTask(id);
    return !t || t->stopped();
  });
  for (const auto& [id, t] : state_->tasks()) Consider(t);
}

void Drains::Lead(bool) {
  reports_.clear();
  flushed_ = false;
  for (auto& [id, d] : held_) d.versions_known = false;
}

void Drains::AfterProxiesFlushed() {
  flushed_ = true;
  for (auto& [id, d] : held_) {
    if (d.versions_known) continue;
    if (const model::Task* t = state_->FindTask(id)) TakeVersions(*t, d);
  }
  Settle();
}

bool Drains::Reported(const std::string& node, int64_t version, std::vector<std::string> drained) {
  std::unordered_set<std::string> set(std::make_move_iterator(drained.begin()), std::make_move_iterator(drained.end()));
  Report& r = reports_[node];
  if (r.version == version && r.drained == set) return false;
  r.version = version;
  r.drained = std::move(set);
  return true;
}

// The member nodes of the load balancers that use the task's groups, each with
// the version of its document now, and the longest deregistration delay.
void Drains::TakeVersions(const model::Task& t, Drain& d) const {
  d.versions_known = true;
  const model::Service* svc = state_->FindService(t.cluster, t.service);
  if (!svc) return;
  for (const model::ServiceLoadBalancer& slb : svc->load_balancers) {
    const model::TargetGroup* tg = state_->FindTargetGroup(t.cluster, slb.target_group);
    if (!tg) continue;
    d.delay_ms = std::max(d.delay_ms, tg->deregistration_delay_s * 1000);
    for (const std::string& node : proxies_->NodesServing(*tg)) {
      int64_t& v = d.wait_for[node];
      v = std::max(v, proxies_->Version(node));
    }
  }
}

void Drains::Pending(const std::string& id, const Drain& d, int64_t now, std::vector<std::string>* unacked,
                     std::vector<std::string>* in_flight) const {
  for (const auto& [node, version] : d.wait_for) {
    const model::Node* n = state_->FindNode(node);
    if (!n) continue;  // deregistered: its proxy serves nothing of ours
    if (!n->connected && now - std::max(n->disconnected_since_ms, d.since_ms) >= options_.grace_ms) continue;
    auto r = reports_.find(node);
    if (r == reports_.end() || r->second.version < version)
      unacked->push_back(node);
    else if (!r->second.drained.count(id))
      in_flight->push_back(node);
  }
}

void Drains::Settle() {
  if (held_.empty() || !flushed_) return;
  int64_t now = clock_->NowUnixMs();
  std::vector<std::string> done;
  for (auto& [id, d] : held_) {
    if (!d.versions_known) continue;  // begun since the last rebuild of the documents
    std::vector<std::string> unacked, in_flight;
    Pending(id, d, now, &unacked, &in_flight);
    int64_t waited = now - d.since_ms;
    if (unacked.empty() && (in_flight.empty() || waited >= d.delay_ms)) {
      if (!in_flight.empty()) {
        log::Info("drain", "deregistration delay ran out with requests in flight",
                  {{"task", id}, {"delay_ms", d.delay_ms}, {"nodes", static_cast<uint64_t>(in_flight.size())}});
      }
      done.push_back(id);
    } else if (waited >= d.delay_ms + options_.grace_ms) {
      std::string nodes;
      for (const std::string& n : unacked) nodes += (nodes.empty() ? "" : ",") + n;
      log::Warn("drain", "stopping a target whose removal some proxies never acknowledged",
                {{"task", id}, {"waited_ms", waited}, {"nodes", nodes}});
      done.push_back(id);
    }
  }
  for (const std::string& id : done) {
    auto it = held_.find(id);
    std::string node = std::move(it->second.node);
    held_.erase(it);
    released_.insert(id);
    state_->NodeDesiredChanged(node);
  }
}

bool Drains::Describe(std::string_view task_id, DrainView* out) const {
  auto it = held_.find(std::string(task_id));
  if (it == held_.end()) return false;
  const Drain& d = it->second;
  *out = DrainView{};
  out->since_ms = d.since_ms;
  out->delay_ms = d.delay_ms;
  if (d.versions_known) Pending(it->first, d, clock_->NowUnixMs(), &out->unacknowledged, &out->in_flight);
  return true;
}

}  // namespace berth::control
