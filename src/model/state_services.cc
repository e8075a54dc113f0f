// State: services and their deployments.
#include "model/state.h"

namespace berth::model {

std::string State::ServiceKey(std::string_view cluster, std::string_view name) {
  return std::string(cluster) + "/" + std::string(name);
}

const Service* State::FindService(std::string_view cluster, std::string_view name) const {
  auto it = services_.find(ServiceKey(cluster, name));
  return it == services_.end() ? nullptr : &it->second;
}

Service* State::MutableService(std::string_view cluster, std::string_view name) {
  auto it = services_.find(ServiceKey(cluster, name));
  return it == services_.end() ? nullptr : &it->second;
}

void State::AddServiceEvent(std::string_view cluster, std::string_view name, std::string message, int64_t now_ms) {
  Service* s = MutableService(cluster, name);
  if (!s) return;
  s->events.push_front(ServiceEvent{std::to_string(++event_seq_), now_ms, std::move(message)});
  while (s->events.size() > 100) s->events.pop_back();
}

std::string State::ServiceReply(const Service& s) const {
  std::vector<DeploymentCounts> counts(s.deployments.size());
  for (const auto& [id, t] : tasks_) {
    if (t.service != s.name || t.cluster != s.cluster || t.stopped()) continue;
    for (size_t i = 0; i < s.deployments.size(); i++) {
      if (s.deployments[i].id != t.deployment) continue;
      if (t.last == "RUNNING")
        counts[i].running++;
      else
        counts[i].pending++;
    }
  }
  return json::Doc::Object().Set("service", ServiceJson(s, counts)).Print();
}

Status State::SaveService(store::Db& db, const Service& s) {
  Result<store::Stmt*> st = db.Cached("INSERT OR REPLACE INTO services (cluster, name, doc) VALUES (?1, ?2, ?3)");
  if (!st) return st.take_error();
  (*st)->Bind(1, s.cluster).Bind(2, s.name).Bind(3, ServiceDoc(s));
  return (*st)->Run();
}

Status State::LoadServices(store::Db& db) {
  // Events are not state: a reload (after a failed commit) keeps those of the
  // services that are still there.
  std::map<std::string, std::deque<ServiceEvent>, std::less<>> events;
  for (auto& [key, svc] : services_) events.emplace(key, std::move(svc.events));
  services_.clear();
  Result<store::Stmt> s = db.Prepare("SELECT doc FROM services");
  if (!s) return s.take_error();
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) return row.take_error();
    if (!row.value()) break;
    Result<Service> svc = ParseServiceDoc(s->Text(0));
    if (!svc) return svc.take_error();
    AdjustClusterCounts(svc->cluster, 0, 1, 0, 0);
    std::string key = ServiceKey(svc->cluster, svc->name);
    if (auto e = events.find(key); e != events.end()) svc->events = std::move(e->second);
    services_.emplace(std::move(key), std::move(svc.value()));
  }
  return {};
}

Result<std::string> State::ApplyCreateService(store::Db& db, const CreateService& c) {
  Result<Service> svc = ParseServiceDoc(c.doc);
  if (!svc) return svc.take_error();
  if (Status s = ValidateServiceName(svc->name); !s) return s.take_error();
  if (!FindCluster(svc->cluster))
    return Error::NotFound("ClusterNotFound", "cluster " + svc->cluster + " does not exist");
  if (FindService(svc->cluster, svc->name)) {
    return Error::Conflict("ServiceAlreadyExists",
                           "service " + svc->name + " already exists in cluster " + svc->cluster);
  }
  const Deployment& d = svc->primary();
  const TaskDefinition* td = FindTaskDefinition(d.family, d.revision);
  if (!td || td->status != "ACTIVE") {
    return Error::NotFound("TaskDefinitionNotFound",
                           "task definition " + d.family + ":" + std::to_string(d.revision) + " is not ACTIVE");
  }
  if (Status s = CheckServiceLoadBalancers(*svc, *td); !s) return s.take_error();
  svc->created_ms = c.time_ms;
  svc->deployments[0].created_ms = svc->deployments[0].updated_ms = c.time_ms;
  if (Status s = SaveService(db, *svc); !s) return s.take_error();
  AdjustClusterCounts(svc->cluster, 0, 1, 0, 0);
  Service& stored = services_.emplace(ServiceKey(svc->cluster, svc->name), std::move(svc.value())).first->second;
  for (StateObserver* o : observers_) o->OnServiceChanged(stored);
  return ServiceReply(stored);
}

Result<std::string> State::ApplyUpdateService(store::Db& db, const UpdateService& c) {
  Service* found = MutableService(c.cluster, c.name);
  if (!found)
    return Error::NotFound("ServiceNotFound", "service " + c.name + " does not exist in cluster " + c.cluster);
  if (found->status != "ACTIVE") return Error::Conflict("ServiceNotActive", "service " + c.name + " is being deleted");
  Service s = *found;
  if (c.desired >= 0) s.desired = c.desired;
  if (c.min_healthy_pct >= 0) s.min_healthy_pct = c.min_healthy_pct;
  if (c.max_pct >= 0) s.max_pct = c.max_pct;
  if (c.breaker >= 0) s.breaker = c.breaker == 1;
  if (c.rollback >= 0) s.rollback = c.rollback == 1;
  if (!c.constraints.empty()) s.constraints = c.constraints;
  if (!c.strategy.empty()) s.strategy = c.strategy;
  if (c.health_check_grace_s >= 0) s.health_check_grace_s = c.health_check_grace_s;
  if (s.max_pct < 100 || s.min_healthy_pct > 100 || s.min_healthy_pct < 0) {
    return Error::Invalid(
        "deploymentConfiguration: minimumHealthyPercent must be 0-100 and maximumPercent at least 100");
  }
  bool new_td = !c.family.empty() && (c.family != s.primary().family || c.revision != s.primary().revision);
  if (new_td || c.force_new) {
    std::string family = c.family.empty() ? s.primary().family : c.family;
    int64_t revision = c.family.empty() ? s.primary().revision : c.revision;
    const TaskDefinition* td = FindTaskDefinition(family, revision);
    if (!td || td->status != "ACTIVE") {
      return Error::NotFound("TaskDefinitionNotFound",
                             "task definition " + family + ":" + std::to_string(revision) + " is not ACTIVE");
    }
    if (c.new_deployment.empty()) return Error::Internal("a new deployment needs an id");
    for (Deployment& d : s.deployments) {
      d.status = "ACTIVE";
      if (d.rollout_state == "IN_PROGRESS") {
        d.rollout_state = c.rollout_reason.empty() ? "COMPLETED" : "FAILED";
        d.rollout_reason = c.rollout_reason.empty() ? "replaced by deployment " + c.new_deployment : c.rollout_reason;
      }
      d.updated_ms = c.time_ms;
    }
    Deployment d;
    d.id = c.new_deployment;
    d.family = family;
    d.revision = revision;
    d.created_ms = d.updated_ms = c.time_ms;
    s.deployments.insert(s.deployments.begin(), d);
  } else if (c.desired >= 0 && s.primary().rollout_state != "IN_PROGRESS" && c.desired != found->desired) {
    // A new desired count sets the rollout going again until it is reached.
    s.deployments[0].rollout_state = "IN_PROGRESS";
    s.deployments[0].rollout_reason.clear();
    s.deployments[0].updated_ms = c.time_ms;
  }
  if (Status st = SaveService(db, s); !st) return st.take_error();
  s.events = std::move(found->events);
  *found = std::move(s);
  for (StateObserver* o : observers_) o->OnServiceChanged(*found);
  return ServiceReply(*found);
}

Result<std::string> State::ApplySetDeploymentState(store::Db& db, const SetDeploymentState& c) {
  Service* s = MutableService(c.cluster, c.name);
  if (!s) return Error::NotFound("ServiceNotFound", "service " + c.name + " does not exist in cluster " + c.cluster);
  Service next = *s;
  Deployment* d = nullptr;
  for (Deployment& x : next.deployments) {
    if (x.id == c.deployment) d = &x;
  }
  if (!d) return Error::NotFound("DeploymentNotFound", "deployment " + c.deployment + " does not exist");
  if (!c.rollout_state.empty()) {
    d->rollout_state = c.rollout_state;
    d->rollout_reason = c.reason;
  }
  if (c.failed_tasks >= 0) d->failed_tasks = c.failed_tasks;
  d->updated_ms = c.time_ms;
  if (c.retire_others) {
    std::vector<Deployment> kept;
    for (Deployment& x : next.deployments) {
      if (x.id == c.deployment || &x == &next.deployments.front()) kept.push_back(x);
    }
    next.deployments = std::move(kept);
  }
  if (Status st = SaveService(db, next); !st) return st.take_error();
  next.events = std::move(s->events);
  *s = std::move(next);
  for (StateObserver* o : observers_) o->OnServiceChanged(*s);
  return ServiceReply(*s);
}

Result<std::string> State::ApplyDeleteService(store::Db& db, const DeleteService& c) {
  Service* s = MutableService(c.cluster, c.name);
  if (!s) return Error::NotFound("ServiceNotFound", "service " + c.name + " does not exist in cluster " + c.cluster);
  if (!c.force && s->desired > 0) {
    return Error::Conflict("ServiceNotScaledDown", "service " + c.name + " has a desired count of " +
                                                       std::to_string(s->desired) +
                                                       "; scale it to 0 first or delete with force");
  }
  s->status = "DRAINING";
  s->desired = 0;
  if (Status st = SaveService(db, *s); !st) return st.take_error();
  for (StateObserver* o : observers_) o->OnServiceChanged(*s);
  return ServiceReply(*s);
}

Result<std::string> State::ApplyRemoveService(store::Db& db, const RemoveService& c) {
  auto it = services_.find(ServiceKey(c.cluster, c.name));
  if (it == services_.end()) return Error::NotFound("ServiceNotFound", "service " + c.name + " does not exist");
  for (const auto& [id, t] : tasks_) {
    if (t.service == c.name && t.cluster == c.cluster && !t.stopped()) {
      return Error::Conflict("ServiceHasTasks", "service " + c.name + " still has tasks");
    }
  }
  Result<store::Stmt*> st = db.Cached("DELETE FROM services WHERE cluster = ?1 AND name = ?2");
  if (!st) return st.take_error();
  (*st)->Bind(1, c.cluster).Bind(2, c.name);
  if (Status r = (*st)->Run(); !r) return r.take_error();
  if (Status r = DropTags(db, it->second.arn); !r) return r.take_error();
  for (StateObserver* o : observers_) o->OnServiceRemoved(it->second);
  it->second.status = "INACTIVE";
  std::string reply = ServiceReply(it->second);
  AdjustClusterCounts(c.cluster, 0, -1, 0, 0);
  services_.erase(it);
  return reply;
}

}  // namespace berth::model
