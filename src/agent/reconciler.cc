#include "agent/reconciler.h"

#include <ctime>
#include <set>

#include "agent/docker.h"
#include "base/crypto.h"
#include "base/log.h"

namespace berth::agent {

namespace {

// True if the RFC 3339 time `when` is more than `ms` ago (false if unparsable).
bool OlderThan(const std::string& when, int64_t ms) {
  struct tm tm = {};
  if (when.size() < 19 || !strptime(when.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return false;
  time_t t = timegm(&tm);
  if (t <= 0) return false;  // "0001-01-01T00:00:00Z": never ran
  return (time(nullptr) - t) * 1000 > ms;
}

}  // namespace

Reconciler::Reconciler(ContainerEngine* engine, ReconcilerOptions options, Hooks hooks)
    : engine_(engine),
      o_(options),
      hooks_(std::move(hooks)),
      calls_(options.docker_concurrency),
      pulls_queue_(options.pull_concurrency),
      alive_(std::make_shared<bool>(true)) {}

Reconciler::~Reconciler() { *alive_ = false; }

Reconciler::TaskRec* Reconciler::FindTask(const std::string& id) {
  auto it = tasks_.find(id);
  return it == tasks_.end() ? nullptr : &it->second;
}

std::string Reconciler::TaskStatus(const std::string& task_id) const {
  auto it = tasks_.find(task_id);
  return it == tasks_.end() ? "" : it->second.status;
}

bool Reconciler::StillWanted(const std::string& task_id) const {
  auto it = tasks_.find(task_id);
  return it != tasks_.end() && !it->second.stopping && it->second.status != "STOPPED";
}

bool Reconciler::Transient(const Error& e) {
  if (e.kind != ErrorKind::kUnavailable) return false;
  if (ready_) {
    ready_ = false;
    if (hooks_.engine_lost) hooks_.engine_lost();
  }
  return true;
}

void Reconciler::EngineDown() {
  ready_ = false;
  watch_.reset();
}

// --- adoption, events and the resync ---

void Reconciler::Sync(std::function<void(Status)> done) {
  if (node_id_.empty() || syncing_) {
    if (done) done(Status{});
    return;
  }
  syncing_ = true;
  ready_ = true;  // the owner found the engine answering
  // Events first: a container that dies while we list is then seen twice (the
  // listing and the event), never missed.
  if (!watch_) {
    watch_ = engine_->Watch(
        node_id_,
        [this, alive = alive_](const ContainerEvent& e) {
          if (*alive) OnEvent(e);
        },
        [this, alive = alive_](Status s) {
          if (!*alive) return;
          log::Warn("agent", "docker events stream ended; resyncing", {{"why", s ? "closed" : s.error().message}});
          // The engine may have restarted: the owner renegotiates, then syncs.
          Transient(Error{ErrorKind::kUnavailable, "DockerEventsEnded", "the events stream ended"});
        });
  }
  calls_.Push(Lane::kLook, [this, alive = alive_, done](std::function<void()> finished) {
    engine_->List(node_id_, false, [this, alive, done, finished](Result<std::vector<ListedContainer>> r) {
      if (!*alive) return;
      finished();
      syncing_ = false;
      if (!r) {
        log::Warn("agent", "listing containers failed", {{"error", r.error().message}});
        Transient(r.error());
        if (done) done(r.take_error());
        return;
      }
      last_sync_ms_ = now_ms_;
      std::set<std::string> seen;
      for (const ListedContainer& c : *r) {
        auto label = [&c](const char* k) {
          auto it = c.labels.find(k);
          return it == c.labels.end() ? std::string() : it->second;
        };
        std::string task_id = label(kLabelTask), name = label(kLabelContainer);
        if (task_id.empty() || name.empty()) continue;
        seen.insert(c.id);
        TaskRec* t = FindTask(task_id);
        if (!t && c.state != "running" && synced_) continue;  // old, stopped
        if (!t && !synced_) {
          if (c.state != "running" && c.state != "created") continue;  // stopped before we went away
          t = Adopt(task_id, c.labels);
        }
        if (!t) continue;
        ContainerRec* rec = t->Find(name);
        if (!rec) {
          t->containers.push_back(ContainerRec{});
          rec = &t->containers.back();
          rec->name = name;
        }
        if (rec->id.empty()) rec->id = c.id;
        if (rec->id == c.id) Inspect(task_id, name, c.id);
      }
      // Containers we know that the engine no longer has.
      for (auto& [task_id, t] : tasks_) {
        for (ContainerRec& rec : t.containers) {
          if (!rec.id.empty() && !rec.busy && !seen.count(rec.id)) Vanished(t, rec);
        }
        Step(t);
      }
      if (!synced_) {
        synced_ = true;
        if (!tasks_.empty()) log::Info("agent", "adopted running tasks", {{"tasks", std::to_string(tasks_.size())}});
        // Secret files of tasks that stopped while no agent was here.
        if (hooks_.sweep_secrets) {
          std::set<std::string> keep;
          for (const auto& [task_id, t] : tasks_) keep.insert(task_id);
          hooks_.sweep_secrets(keep);
        }
      }
      if (done) done(Status{});
    });
  });
}

Reconciler::TaskRec* Reconciler::Adopt(const std::string& task_id, const std::map<std::string, std::string>& labels) {
  auto label = [&labels](const char* k) {
    auto it = labels.find(k);
    return it == labels.end() ? std::string() : it->second;
  };
  TaskRec& t = tasks_[task_id];
  t.ident.id = task_id;
  t.ident.cluster = label(kLabelCluster);
  t.ident.node = node_id_;
  t.ident.service = label(kLabelService);
  t.ident.task_definition = label(kLabelTaskDefinition);
  t.in_set = true;  // until the first desired set says otherwise
  return &t;
}

void Reconciler::OnEvent(const ContainerEvent& e) {
  TaskRec* t = FindTask(e.task);
  if (!t) return;
  ContainerRec* rec = t->Find(e.container);
  if (!rec || rec->id != e.id) return;
  if (e.action == "destroy") {
    if (!rec->busy) Vanished(*t, *rec);
    Step(*t);
    return;
  }
  // Our own start call inspects when it returns; its event adds nothing.
  if (e.action == "start" && (rec->busy || rec->state == "running")) return;
  if (e.action == "start" || e.action == "die" || e.action == "oom" || e.action.rfind("health_status", 0) == 0 ||
      e.action == "stop" || e.action == "kill" || e.action == "pause" || e.action == "unpause") {
    Inspect(e.task, e.container, e.id);
  }
}

// A container we made is no longer in the engine: removed behind our back.
void Reconciler::Vanished(TaskRec& t, ContainerRec& rec) {
  if (rec.gone) return;
  rec.gone = true;
  if (!rec.exited) {
    rec.exited = true;
    rec.exit_code = 137;
    rec.state = "removed";
  }
  if (t.stop_reason.empty() && t.status != "STOPPED") {
    t.stop_reason = "Container " + rec.name + " was removed outside of berth";
  }
}

void Reconciler::Inspect(const std::string& task_id, const std::string& name, const std::string& ref) {
  calls_.Push(Lane::kLook, [this, alive = alive_, task_id, name, ref](std::function<void()> finished) {
    engine_->Inspect(ref, [this, alive, task_id, name, ref, finished](Result<ContainerStatus> r) {
      if (!*alive) return;
      finished();
      TaskRec* t = FindTask(task_id);
      if (!t) return;
      ContainerRec* rec = t->Find(name);
      if (!rec || rec->id != ref) return;
      if (!r) {
        if (Transient(r.error())) return;
        if (r.error().kind == ErrorKind::kNotFound) Vanished(*t, *rec);
        return Step(*t);
      }
      Observe(*rec, *r);
      Step(*t);
    });
  });
}

void Reconciler::Observe(ContainerRec& rec, const ContainerStatus& s) {
  rec.state = s.state;
  rec.exited = s.exited;
  rec.exit_code = s.exit_code;
  rec.oom = s.oom;
  rec.health = s.health;
  rec.bindings = s.bindings;
}

// --- the step: what is against what should be, for one task ---

bool Reconciler::Satisfied(TaskRec& t, const std::string& target, const std::string& condition, bool* failed) {
  ContainerRec* c = t.Find(target);
  if (!c || c->id.empty()) return false;
  if (condition == "START") return c->state == "running" || c->exited;
  if (condition == "COMPLETE") return c->exited;
  if (condition == "SUCCESS") {
    if (c->exited && c->exit_code != 0) *failed = true;
    return c->exited && c->exit_code == 0;
  }
  if (condition == "HEALTHY") {
    if (c->exited) *failed = true;
    return c->health == "HEALTHY";
  }
  return false;
}

void Reconciler::Step(TaskRec& t) {
  if (t.status == "STOPPED") return;
  // With the engine away nothing can be done; the Sync after it answers again
  // steps every task.
  if (!ready_) return;
  bool must_stop = t.desired == "STOPPED" || !t.in_set || !t.stop_reason.empty();
  if (!must_stop && t.plan) {
    // Essential containers that exited, failed or turned unhealthy stop the task.
    for (size_t i = 0; i < t.containers.size() && i < t.plan->containers.size(); i++) {
      ContainerRec& c = t.containers[i];
      const ContainerPlan& p = t.plan->containers[i];
      if (!c.error.empty()) {
        t.stop_reason = c.error;
      } else if (p.essential && c.exited) {
        t.stop_reason = "Essential container in task exited" + std::string(c.oom ? " (OutOfMemory)" : "");
      } else if (p.essential && c.health == "UNHEALTHY" && c.state == "running") {
        t.stop_reason = "Task failed container health checks";
      }
      if (!t.stop_reason.empty()) break;
    }
    must_stop = !t.stop_reason.empty();
  }
  if (must_stop) return StopStep(t);
  if (!t.plan) return;  // adopted, waiting for the desired set to say what it is

  if (t.plan->own_network && !t.network_ready) {
    if (!t.network_busy) CreateNetwork(t);
    return;
  }
  bool all_started = true;
  for (size_t i = 0; i < t.plan->containers.size(); i++) {
    const ContainerPlan& p = t.plan->containers[i];
    ContainerRec& c = t.containers[i];
    if (!c.id.empty() && (c.state == "running" || c.exited)) continue;
    all_started = false;
    if (c.busy) continue;
    if (!c.id.empty() && c.state == "created") {
      StartContainer(t, c);
      continue;
    }
    if (!c.id.empty()) continue;
    bool failed = false, ready = true;
    for (const auto& [target, condition] : p.depends_on) ready = ready && Satisfied(t, target, condition, &failed);
    if (failed) {
      t.stop_reason = "Dependency condition of container " + p.name + " failed";
      return StopStep(t);
    }
    if (ready) Launch(t, i);
  }
  if (all_started && t.status == "PENDING") {
    t.status = "RUNNING";
    log::Info("agent", "task running", {{"task", t.ident.id}});
  }
}

// Stops what runs, removes what was created but never started, and marks the
// task STOPPED once nothing of it runs. A create or start still queued for it is
// dropped by the queue (StillWanted), which steps the task again.
void Reconciler::StopStep(TaskRec& t) {
  if (!t.stopping) {
    t.stopping = true;
    if (t.stop_reason.empty()) {
      t.stop_reason = t.in_set ? "Task stopped by the server" : "Task no longer wanted on this node";
    }
    log::Info("agent", "stopping task", {{"task", t.ident.id}, {"reason", t.stop_reason}});
  }
  bool busy = false;
  for (size_t i = 0; i < t.containers.size(); i++) {
    ContainerRec& c = t.containers[i];
    if (c.busy) {
      busy = true;
      continue;
    }
    if (c.id.empty() || c.exited || c.gone) continue;
    busy = true;
    if (c.state == "created") {
      RemoveUnstarted(t, c);
      continue;
    }
    int64_t timeout =
        t.plan && i < t.plan->containers.size() ? t.plan->containers[i].stop_timeout_s : o_.default_stop_timeout_s;
    c.busy = true;
    std::string task_id = t.ident.id, name = c.name, id = c.id;
    // SIGTERM, then SIGKILL after the timeout: the engine's stop does exactly that.
    calls_.Push(Lane::kStop, [this, alive = alive_, task_id, name, id, timeout](std::function<void()> finished) {
      engine_->Stop(id, timeout, [this, alive, task_id, name, id, finished](Status r) {
        if (!*alive) return;
        finished();
        auto [t, c] = Returned(task_id, name);
        if (!c) return;
        if (!r && Transient(r.error())) return;
        if (!r && r.error().kind == ErrorKind::kNotFound) {
          Vanished(*t, *c);
          return Step(*t);
        }
        if (!r) log::Warn("agent", "stop failed", {{"container", id}, {"error", r.error().message}});
        Inspect(task_id, name, id);
      });
    });
  }
  if (busy) return;
  t.status = "STOPPED";
  log::Info("agent", "task stopped", {{"task", t.ident.id}, {"reason", t.stop_reason}});
  // Always: a task adopted after a restart may have files no record of ours says.
  if (hooks_.forget_secrets) hooks_.forget_secrets(t.ident.id);
  if (t.plan && t.plan->own_network) {
    std::string network = t.plan->network_name;
    calls_.Push(Lane::kStop, [this, alive = alive_, network](std::function<void()> finished) {
      engine_->RemoveNetwork(network, [alive, finished](Status) {
        if (*alive) finished();
      });
    });
  }
}

// A container created for a task that must stop before it started: removed,
// never started.
void Reconciler::RemoveUnstarted(TaskRec& t, ContainerRec& c) {
  c.busy = true;
  std::string task_id = t.ident.id, name = c.name, id = c.id;
  calls_.Push(Lane::kStop, [this, alive = alive_, task_id, name, id](std::function<void()> finished) {
    engine_->Remove(id, [this, alive, task_id, name, finished](Status r) {
      if (!*alive) return;
      finished();
      auto [t, c] = Returned(task_id, name);
      if (!c) return;
      if (!r && Transient(r.error())) return;
      if (r || r.error().kind == ErrorKind::kNotFound) {
        c->gone = true;
        c->exited = true;
        c->never_started = true;
        c->state = "removed";
      } else {
        log::Warn("agent", "removing a container that never started failed",
                  {{"task", task_id}, {"error", r.error().message}});
        c->gone = true;  // the cleanup sweep removes it later
        c->exited = true;
        c->never_started = true;
      }
      Step(*t);
    });
  });
}

void Reconciler::CreateNetwork(TaskRec& t) {
  t.network_busy = true;
  json::Doc labels = json::Doc::Object();
  labels.Set(kLabelTask, t.ident.id).Set(kLabelNode, node_id_).Set(kLabelCluster, t.ident.cluster);
  json::Doc body = json::Doc::Object();
  body.Set("Name", t.plan->network_name).Set("Driver", "bridge").Set("CheckDuplicate", true).Set("Labels", labels);
  std::string task_id = t.ident.id;
  calls_.Push(
      Lane::kStart,
      [this, alive = alive_, task_id, body = body.Print()](std::function<void()> finished) {
        engine_->CreateNetwork(body, [this, alive, task_id, finished](Status r) {
          if (!*alive) return;
          finished();
          TaskRec* t = FindTask(task_id);
          if (!t) return;
          t->network_busy = false;
          if (!r && Transient(r.error())) return;
          if (r || r.error().kind == ErrorKind::kConflict) {
            t->network_ready = true;
          } else {
            t->stop_reason = "CannotCreateNetworkError: " + r.error().message;
          }
          Step(*t);
        });
      },
      [this, task_id] { return StillWanted(task_id); },
      [this, task_id] {
        if (TaskRec* t = FindTask(task_id)) {
          t->network_busy = false;
          Step(*t);
        }
      });
}

// Image (pulled if needed), create, start: one container.
void Reconciler::Launch(TaskRec& t, size_t index) {
  ContainerRec& c = t.containers[index];
  c.busy = true;
  std::string task_id = t.ident.id, name = c.name, image = t.plan->containers[index].image;
  EnsureImage(image, [this, task_id, name, index](Status s) {
    auto [t, c] = Returned(task_id, name);
    if (!c) return;
    if (!s) return Blame(*t, *c, s.error(), "CannotPullContainerError");
    if (t->stopping) return Step(*t);
    c->busy = true;
    const ContainerPlan& p = t->plan->containers[index];
    calls_.Push(
        Lane::kStart,
        [this, alive = alive_, task_id, name, docker_name = p.docker_name,
         body = p.create_body](std::function<void()> finished) {
          engine_->Create(docker_name, body,
                          [this, alive, task_id, name, docker_name, finished](Result<std::string> r) {
                            if (!*alive) return;
                            finished();
                            Created(task_id, name, docker_name, std::move(r));
                          });
        },
        [this, task_id] { return StillWanted(task_id); },
        [this, task_id, name] {
          auto [t, c] = Returned(task_id, name);
          if (c) Step(*t);
        });
  });
}

void Reconciler::Created(const std::string& task_id, const std::string& name, const std::string& docker_name,
                         Result<std::string> r) {
  TaskRec* t = FindTask(task_id);
  ContainerRec* c = t ? t->Find(name) : nullptr;
  if (!c) return;
  if (!r && r.error().kind == ErrorKind::kConflict) {
    // Made before a crash of ours: take it over.
    calls_.Push(Lane::kLook, [this, alive = alive_, task_id, name, docker_name](std::function<void()> finished) {
      engine_->Inspect(docker_name, [this, alive, task_id, name, finished](Result<ContainerStatus> r) {
        if (!*alive) return;
        finished();
        auto [t, c] = Returned(task_id, name);
        if (!c) return;
        if (!r) return Blame(*t, *c, r.error(), "CannotCreateContainerError");
        c->id = r->id;
        Observe(*c, *r);
        Step(*t);
      });
    });
    return;
  }
  c->busy = false;
  if (!r) return Blame(*t, *c, r.error(), "CannotCreateContainerError");
  c->id = *r;
  c->state = "created";
  // A task told to stop while its create was on the way: StopStep removes it.
  if (t->stopping) return Step(*t);
  StartContainer(*t, *c);
}

void Reconciler::StartContainer(TaskRec& t, ContainerRec& c) {
  c.busy = true;
  std::string task_id = t.ident.id, name = c.name, id = c.id;
  calls_.Push(
      Lane::kStart,
      [this, alive = alive_, task_id, name, id](std::function<void()> finished) {
        engine_->Start(id, [this, alive, task_id, name, id, finished](Status r) {
          if (!*alive) return;
          finished();
          auto [t, c] = Returned(task_id, name);
          if (!c) return;
          if (!r) return Blame(*t, *c, r.error(), "CannotStartContainerError");
          Inspect(task_id, name, id);
        });
      },
      [this, task_id] { return StillWanted(task_id); },
      // Dropped: the task stops; the step removes the created container.
      [this, task_id, name] {
        auto [t, c] = Returned(task_id, name);
        if (c) Step(*t);
      });
}

// Calls `done` once the image is present: reused when there (unless its tag must
// be re-resolved: none or latest), pulled otherwise. One pull per image.
void Reconciler::EnsureImage(const std::string& image, std::function<void(Status)> done) {
  auto& waiters = pulls_[image];
  waiters.push_back(std::move(done));
  if (waiters.size() > 1) return;
  auto finish = [this, image](Status s) {
    std::vector<std::function<void(Status)>> w = std::move(pulls_[image]);
    pulls_.erase(image);
    for (auto& f : w) f(s);
  };
  calls_.Push(Lane::kLook, [this, alive = alive_, image, finish](std::function<void()> finished) {
    engine_->ImagePresent(image, [this, alive, image, finish, finished](Result<bool> present) {
      if (!*alive) return;
      finished();
      if (!present) return finish(present.take_error());
      docker::ImageRef ref = docker::ParseImageRef(image);
      bool reresolve = ref.digest.empty() && (!ref.explicit_tag || ref.tag == "latest");
      if (*present && !reresolve) return finish(Status{});
      bool was_present = *present;
      pulls_queue_.Push(Lane::kStart, [this, alive, image, finish, was_present](std::function<void()> pulled) {
        auto pull = [this, alive, image, finish, was_present, pulled](std::string auth) {
          if (!*alive) return;
          engine_->Pull(image, auth, [this, alive, image, finish, was_present, pulled](Status s) {
            if (!*alive) return;
            pulled();
            if (s) NotePulled(image);
            if (!s && was_present) {
              log::Warn("agent", "pull failed; using the local image",
                        {{"image", image}, {"error", s.error().message}});
              return finish(Status{});
            }
            finish(s);
          });
        };
        if (hooks_.registry_auth) {
          hooks_.registry_auth(image, std::move(pull));
        } else {
          pull("");
        }
      });
    });
  });
}

// --- the desired set ---

void TakeDesiredLine(json::View msg, bool whole, std::map<std::string, DesiredTask>* tasks,
                     std::map<std::string, json::Doc, std::less<>>* defs, model::TaskPolicy* policy,
                     std::string* policy_error) {
  if (json::View p = msg.Get("policy"); p.valid()) {
    Result<model::TaskPolicy> parsed = model::ParseTaskPolicy(p, "policy");
    if (parsed) {
      *policy = std::move(parsed.value());
    } else {
      *policy = model::TaskPolicy{};  // nothing privileged runs on a policy this agent cannot read
      *policy_error = parsed.error().message;
    }
  }
  for (json::View d : msg.Get("taskDefinitions")) (*defs)[std::string(d.Key())] = json::Doc::Copy(d);
  if (whole) tasks->clear();
  for (json::View d : msg.Get("tasks")) {
    DesiredTask& e = (*tasks)[std::string(d.Get("taskId").String())];
    e.cluster = std::string(d.Get("cluster").String());
    e.service = std::string(d.Get("service").String());
    e.task_definition = std::string(d.Get("taskDefinition").String());
    e.desired = std::string(d.Get("desiredStatus").String());
    e.server_last = std::string(d.Get("lastStatus").String());
    e.fresh = true;
    e.secrets.clear();
    e.secret_error = std::string(d.Get("secretError").String());
    for (json::View sv : d.Get("secrets")) {
      Result<std::string> value = crypto::Base64Decode(sv.Get("valueBase64").String());
      if (!value) {
        e.secret_error = "ResourceInitializationError: the server sent an unreadable secret value";
        break;
      }
      e.secrets.push_back(SecretValue{std::string(sv.Get("container").String()), std::string(sv.Get("name").String()),
                                      std::move(value.value()), sv.Get("file").IsBool() && sv.Get("file").Bool()});
    }
  }
  for (json::View r : msg.Get("removed")) tasks->erase(std::string(r.String()));
}

void Reconciler::ApplyDesired(std::map<std::string, DesiredTask>& desired,
                              const std::map<std::string, json::Doc, std::less<>>& defs) {
  for (auto& [id, d] : desired) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) {
      TaskRec& t = tasks_[id];
      t.ident.id = id;
      t.ident.cluster = d.cluster;
      t.ident.node = node_id_;
      t.ident.service = d.service;
      t.ident.task_definition = d.task_definition;
      if (d.desired != "RUNNING") {
        // Never started here: say so, so the server can forget it.
        t.status = "STOPPED";
        t.stop_reason = "Task stopped before it started";
      }
      it = tasks_.find(id);
    }
    TaskRec& t = it->second;
    t.in_set = true;
    t.desired = d.desired;
    if (!t.plan && t.status != "STOPPED") {
      auto def = defs.find(t.ident.task_definition);
      Plan(t, def != defs.end() ? def->second.view() : json::View(), d);
    }
    // Values are held only until the plan has them.
    for (SecretValue& v : d.secrets) std::fill(v.value.begin(), v.value.end(), '\0');
    d.secrets.clear();
    // The server missed a report (e.g. across its restart): say it again. Only
    // what the latest line carried says what the server believes now.
    if (d.fresh) {
      t.server_last = d.server_last;
      if (t.server_last != t.status && !t.acked.empty()) t.acked.clear();
      d.fresh = false;
    }
  }
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    if (!desired.count(it->first)) {
      it->second.in_set = false;
      if (it->second.status == "STOPPED") {
        it = tasks_.erase(it);
        continue;
      }
    }
    ++it;
  }
  // Stops first: the queue takes the tasks to stop before the ones to start, but
  // stepping them first also gives their calls the earlier places in each lane.
  for (auto& [id, t] : tasks_) {
    if (t.desired == "STOPPED" || !t.in_set) Step(t);
  }
  for (auto& [id, t] : tasks_) {
    if (t.desired != "STOPPED" && t.in_set) Step(t);
  }
}

void Reconciler::StopAll() {
  for (auto& [id, t] : tasks_) t.in_set = false;
  for (auto& [id, t] : tasks_) Step(t);
}

void Reconciler::Plan(TaskRec& t, json::View td, const DesiredTask& d) {
  if (hooks_.admit) {
    if (Status s = hooks_.admit(t.ident, td); !s) {
      t.stop_reason = "CannotStartTaskError: " + s.error().message;
      log::Warn("agent", "task refused", {{"task", t.ident.id}, {"reason", s.error().message}});
      return;
    }
  }
  PlanOptions po;
  po.default_stop_timeout_s = o_.default_stop_timeout_s;
  if (Status s = PlanSecrets(t, td, d, &po); !s) {
    t.stop_reason = s.error().message;
    log::Warn("agent", "task cannot have its secrets", {{"task", t.ident.id}, {"reason", s.error().message}});
    return;
  }
  Result<TaskPlan> plan = PlanTask(t.ident, td, po);
  for (SecretValue& v : po.secrets) std::fill(v.value.begin(), v.value.end(), '\0');
  if (!plan) {
    t.stop_reason = "CannotCreateContainerError: " + plan.error().message;
    return;
  }
  t.plan = std::make_unique<TaskPlan>(std::move(plan.value()));
  // Containers adopted before the plan was known keep their ids; order follows the plan.
  std::vector<ContainerRec> ordered;
  for (const ContainerPlan& p : t.plan->containers) {
    ContainerRec* known = t.Find(p.name);
    if (known) {
      ordered.push_back(std::move(*known));
    } else {
      ContainerRec c;
      c.name = p.name;
      ordered.push_back(std::move(c));
    }
  }
  t.containers = std::move(ordered);
  if (t.plan->own_network) {
    for (const ContainerRec& c : t.containers) {
      if (!c.id.empty()) t.network_ready = true;
    }
  }
}

// The secrets a task takes, into `po`: the values the server sent with it (env
// ones go in the create bodies), and each container's secret files written to a
// directory of their own on a tmpfs. A task adopted with its containers made
// needs none. Fails with the stopped reason.
Status Reconciler::PlanSecrets(TaskRec& t, json::View td, const DesiredTask& d, PlanOptions* po) {
  if (!d.secret_error.empty()) return Error::Invalid(d.secret_error);
  size_t needed = 0;
  for (json::View c : td.Get("containerDefinitions")) needed += c.Get("secrets").Size();
  if (needed == 0) return {};
  if (d.secrets.size() != needed) {
    for (const ContainerRec& c : t.containers) {
      if (!c.id.empty()) return {};  // adopted: made with its secrets already
    }
    return Error::Invalid("ResourceInitializationError: the server sent " + std::to_string(d.secrets.size()) +
                          " of the task's " + std::to_string(needed) + " secrets");
  }
  po->secrets = d.secrets;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> files;
  for (const SecretValue& v : d.secrets) {
    if (v.file) files[v.container].emplace_back(v.name, v.value);
  }
  for (auto& [container, list] : files) {
    if (!hooks_.write_secrets)
      return Error::Invalid("ResourceInitializationError: this agent cannot write secret files");
    Result<std::string> dir = hooks_.write_secrets(t.ident.id, container, list);
    for (auto& [name, value] : list) std::fill(value.begin(), value.end(), '\0');
    if (!dir) return Error::Invalid("ResourceInitializationError: secret files: " + dir.error().message);
    po->secret_dirs[container] = dir.value();
  }
  return {};
}

// --- reports ---

std::string Reconciler::ReportOf(const TaskRec& t) const {
  json::Doc containers = json::Doc::Array();
  for (const ContainerRec& c : t.containers) {
    json::Doc d = json::Doc::Object();
    std::string last = c.exited || (t.status == "STOPPED") ? "STOPPED" : c.state == "running" ? "RUNNING" : "PENDING";
    d.Set("name", c.name).Set("lastStatus", last).Set("healthStatus", c.health);
    if (!c.id.empty()) d.Set("runtimeId", c.id);
    if (c.exited && !c.never_started) d.Set("exitCode", c.exit_code);
    if (!c.error.empty())
      d.Set("reason", c.error);
    else if (c.oom)
      d.Set("reason", "OutOfMemoryError: container killed due to memory usage");
    d.SetRaw("networkBindings", c.exited ? "[]" : c.bindings);
    containers.Push(d);
  }
  json::Doc r = json::Doc::Object();
  r.Set("taskId", t.ident.id).Set("lastStatus", t.status).Set("containers", containers);
  if (t.status == "STOPPED") r.Set("reason", t.stop_reason);
  return r.Print();
}

std::vector<std::pair<std::string, std::string>> Reconciler::PendingReports(size_t max) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [id, t] : tasks_) {
    if (!t.in_set) continue;  // the server no longer holds it
    std::string r = ReportOf(t);
    if (r == t.acked) continue;
    if (out.size() >= max) break;
    out.emplace_back(id, std::move(r));
  }
  return out;
}

void Reconciler::Acknowledged(const std::string& task_id, const std::string& report) {
  if (TaskRec* t = FindTask(task_id)) t->acked = report;
}

std::string Reconciler::ContainerId(const std::string& task_id, const std::string& container) const {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return "";
  const TaskRec& t = it->second;
  if (container.empty()) return t.containers.empty() ? "" : t.containers[0].id;
  for (const ContainerRec& c : t.containers) {
    if (c.name == container) return c.id;
  }
  return "";
}

// --- periodic work ---

void Reconciler::Tick(int64_t now_ms) {
  now_ms_ = now_ms;
  if (!ready_ || !synced_) return;
  if (now_ms - last_sync_ms_ >= o_.resync_ms) Sync();
  if (now_ms - last_cleanup_ms_ >= o_.cleanup_ms) {
    last_cleanup_ms_ = now_ms;
    Cleanup();
    CleanupImages();
  }
}

// Removes our stopped containers (with their task-scoped volumes) once they are
// older than the retention period and their task is forgotten, and the per-task
// networks of tasks that are stopped or unknown here (left by a crash between a
// task's end and its network's removal, or by a task the server forgot while
// this agent was away): Docker's default address pools hold only about 31.
void Reconciler::Cleanup() {
  if (node_id_.empty()) return;
  calls_.Push(Lane::kLook, [this, alive = alive_](std::function<void()> finished) {
    engine_->ListNetworks(node_id_, [this, alive, finished](Result<std::vector<ListedNetwork>> r) {
      if (!*alive) return;
      finished();
      if (!r) return;
      for (const ListedNetwork& n : *r) {
        auto label = n.labels.find(kLabelTask);
        const TaskRec* t = label == n.labels.end() ? nullptr : FindTask(label->second);
        if (t && t->status != "STOPPED") continue;
        // The engine refuses (409) while a running container uses it: a later sweep retries.
        calls_.Push(Lane::kStop, [this, alive, id = n.id, name = n.name](std::function<void()> finished) {
          engine_->RemoveNetwork(id, [alive, name, finished](Status r) {
            if (!*alive) return;
            finished();
            if (r) log::Info("agent", "removed a network no task uses", {{"network", name}});
          });
        });
      }
    });
  });
  calls_.Push(Lane::kLook, [this, alive = alive_](std::function<void()> finished) {
    engine_->List(node_id_, true, [this, alive, finished](Result<std::vector<ListedContainer>> r) {
      if (!*alive) return;
      finished();
      if (!r) return;
      for (const ListedContainer& c : *r) {
        auto label = c.labels.find(kLabelTask);
        TaskRec* t = label == c.labels.end() ? nullptr : FindTask(label->second);
        if (t && t->status != "STOPPED") continue;
        calls_.Push(Lane::kLook, [this, alive, id = c.id](std::function<void()> finished) {
          engine_->Inspect(id, [this, alive, id, finished](Result<ContainerStatus> r) {
            if (!*alive) return;
            finished();
            if (!r || !OlderThan(r->finished_at, o_.container_retention_ms)) return;
            calls_.Push(Lane::kStop, [this, alive, id](std::function<void()> finished) {
              engine_->Remove(id, [alive, finished](Status) {
                if (*alive) finished();
              });
            });
          });
        });
      }
    });
  });
}

// Images this agent pulled (only those: images put there by hand are never
// touched), with when a task last used them.
void Reconciler::NotePulled(const std::string& image) {
  pulled_[image] = time(nullptr);
  if (hooks_.pulled_changed) hooks_.pulled_changed(pulled_);
}

// Removes images we pulled that no task has used for image_cleanup_after_ms.
// The engine refuses to remove one a container (even a stopped one) still uses.
void Reconciler::CleanupImages() {
  int64_t now = time(nullptr);
  std::set<std::string> in_use;
  for (const auto& [id, t] : tasks_) {
    if (!t.plan || t.status == "STOPPED") continue;
    for (const ContainerPlan& p : t.plan->containers) in_use.insert(p.image);
  }
  bool changed = false;
  for (auto& [image, when] : pulled_) {
    if (in_use.count(image)) {
      when = now;
      changed = true;
      continue;
    }
    if ((now - when) * 1000 < o_.image_cleanup_after_ms) continue;
    calls_.Push(Lane::kStop, [this, alive = alive_, image = image](std::function<void()> finished) {
      engine_->RemoveImage(image, [this, alive, image, finished](Status r) {
        if (!*alive) return;
        finished();
        if (r || r.error().kind == ErrorKind::kNotFound) {
          log::Info("agent", "removed an unused image", {{"image", image}});
          pulled_.erase(image);
          if (hooks_.pulled_changed) hooks_.pulled_changed(pulled_);
        }
      });
    });
  }
  if (changed && hooks_.pulled_changed) hooks_.pulled_changed(pulled_);
}

// --- helpers ---

// A call for container `c` was refused: the container carries the reason (which
// stops the task) unless the engine only did not answer, which blames no task.
void Reconciler::Blame(TaskRec& t, ContainerRec& c, const Error& e, const char* what) {
  if (Transient(e)) return;
  c.error = std::string(what) + ": " + e.message;
  Step(t);
}

// The task and container a finished call was about, with the container's call
// marked done; (nullptr, nullptr) if the task or container is gone.
std::pair<Reconciler::TaskRec*, Reconciler::ContainerRec*> Reconciler::Returned(const std::string& task_id,
                                                                                const std::string& name) {
  TaskRec* t = FindTask(task_id);
  ContainerRec* c = t ? t->Find(name) : nullptr;
  if (!c) return {nullptr, nullptr};
  c->busy = false;
  return {t, c};
}

}  // namespace berth::agent
