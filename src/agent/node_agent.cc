#include "agent/node_agent.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <uv.h>
#include <vector>

#include "agent/container_spec.h"
#include "agent/docker.h"
#include "agent/host.h"
#include "agent/protocol.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "net/http_client.h"
#include "net/uv.h"

namespace berth::agent {

namespace http = net::http;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kReportBatchMs = 100;
constexpr int64_t kMaxBackoffMs = 30000;        // between attempts to reach Docker
// Between attempts to reach the server: well under its grace period (10 s by
// default), so a server that comes back finds its agents before it would
// declare their nodes lost.
constexpr int64_t kMaxServerBackoffMs = 2000;

// The states of a container as this agent tracks it.
struct ContainerRec {
  std::string name;  // the container definition's name
  std::string id;    // Docker's id, once created or adopted
  std::string state;  // Docker's: created, running, exited, dead, ... ("" before create)
  bool exited = false;
  int64_t exit_code = 0;
  bool oom = false;
  std::string health = "UNKNOWN";
  std::string bindings = "[]";  // networkBindings JSON
  bool busy = false;             // a Docker call for it is in flight
  bool gone = false;             // removed behind our back
  std::string error;             // why it could not be created or started
};

struct TaskRec {
  TaskIdentity ident;
  std::string desired = "RUNNING";
  bool in_set = true;  // in the latest desired set
  std::string server_last;  // lastStatus the server last told us
  std::unique_ptr<TaskPlan> plan;
  std::vector<ContainerRec> containers;  // in plan order once planned
  std::string status = "PENDING";        // PENDING, RUNNING, STOPPED (what we report)
  std::string stop_reason;               // set once the task must stop
  bool stopping = false;
  bool network_ready = false;
  bool network_busy = false;
  std::string acked;  // the report the server last acknowledged
  ContainerRec* Find(std::string_view name) {
    for (ContainerRec& c : containers) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }
};

// Writes dir/name through a temporary file, fsync and rename (making dir if needed).
bool WriteFileDurably(const std::string& dir, const std::string& name, const std::string& text) {
  mkdir(dir.c_str(), 0700);
  std::string path = dir + "/" + name, tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  close(fd);
  return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

class NodeAgentImpl {
 public:
  NodeAgentImpl(uv_loop_t* loop, NodeAgentOptions o)
      : loop_(loop), o_(std::move(o)), rng_(std::random_device{}()), tick_(loop) {}

  Status Start() {
    Result<net::Endpoint> server = net::Endpoint::Parse(o_.server, 7070);
    if (!server) return Error::Invalid("--server: " + server.error().message);
    server_ = server.value();
    Result<net::Endpoint> docker = net::Endpoint::Parse(o_.docker);
    if (!docker) return Error::Invalid("--docker: " + docker.error().message);
    engine_ = std::make_unique<docker::Engine>(loop_, docker.value());
    if (server_.kind == net::Endpoint::Kind::kTcp) {
      std::string port = std::to_string(server_.port);
      o_.registry_hosts.push_back(server_.host + ":" + port);
      if (server_.host == "127.0.0.1" || server_.host == "localhost" || server_.host == "0.0.0.0") {
        o_.registry_hosts.push_back("127.0.0.1:" + port);
        o_.registry_hosts.push_back("localhost:" + port);
        o_.reserved_ports.push_back(port);  // the server shares this host
      }
    }
    http::ClientOptions co;
    co.timeout_ms = 30000;
    reporter_ = std::make_unique<http::Client>(loop_, server_, co);
    node_id_ = Trim(ReadFile(o_.state_dir + "/node-id"));
    LoadPulled();
    host_ = ReadHost();
    tick_.Start(50, 50, [this] { Tick(); });
    ConnectDocker();
    return {};
  }

  void Shutdown() {
    shut_ = true;
    tick_.Stop();
    stream_.reset();
    events_.reset();
    reporter_.reset();
    logs_.clear();
    engine_.reset();
  }

  std::string node_id() const { return node_id_; }

 private:
  // --- Docker connection, adoption and events ---

  void ConnectDocker() {
    docker_state_ = DockerState::kConnecting;
    engine_->Negotiate([this](Result<docker::EngineVersion> v) {
      if (shut_) return;
      if (!v) {
        docker_failures_++;
        if (docker_failures_ == 1 || docker_failures_ % 10 == 0) {
          log::Warn("agent", "docker engine unreachable", {{"error", v.error().message}});
        }
        docker_state_ = DockerState::kDown;
        docker_retry_ms_ = NowMs() + Backoff(docker_failures_, 500);
        return;
      }
      docker_failures_ = 0;
      version_ = v.value();
      log::Info("agent", "docker engine", {{"version", version_.version}, {"api", engine_->api_version()}});
      if (node_id_.empty()) {
        docker_state_ = DockerState::kReady;  // nothing of ours can run yet: adopt after registering
        synced_ = true;
        return;
      }
      Resync(true);
    });
  }

  // Lists our containers and folds what Docker shows into the tasks (adoption at
  // start; after a Docker restart; and every resync_ms as a safety net).
  void Resync(bool first) {
    if (node_id_.empty() || resyncing_) return;
    resyncing_ = true;
    std::string filters = "{\"label\":[\"" + std::string(kLabelNode) + "=" + node_id_ + "\"]}";
    engine_->Call("GET", "/containers/json?all=1&filters=" + docker::QueryEscape(filters), "",
                  [this, first](Result<json::Doc> r) {
                    resyncing_ = false;
                    if (shut_) return;
                    if (!r) {
                      log::Warn("agent", "listing containers failed", {{"error", r.error().message}});
                      EngineLost();
                      return;
                    }
                    last_resync_ms_ = NowMs();
                    docker_state_ = DockerState::kReady;  // it answered: steps may call it again
                    std::set<std::string> seen;
                    for (json::View c : r->view()) {
                      json::View labels = c.Get("Labels");
                      std::string task_id(labels.Get(kLabelTask).String());
                      std::string name(labels.Get(kLabelContainer).String());
                      std::string id(c.Get("Id").String());
                      if (task_id.empty() || name.empty()) continue;
                      seen.insert(id);
                      TaskRec* t = FindTask(task_id);
                      if (!t && std::string(c.Get("State").String()) != "running" && synced_) continue;  // old, stopped
                      if (!t && !synced_) {
                        if (std::string(c.Get("State").String()) != "running" &&
                            std::string(c.Get("State").String()) != "created") {
                          continue;  // stopped before we went away: cleanup removes it later
                        }
                        t = Adopt(task_id, labels);
                      }
                      if (!t) continue;
                      ContainerRec* rec = t->Find(name);
                      if (!rec) {
                        t->containers.push_back(ContainerRec{});
                        rec = &t->containers.back();
                        rec->name = name;
                      }
                      if (rec->id.empty()) rec->id = id;
                      if (rec->id == id) Inspect(task_id, name, id);
                    }
                    // Containers we know that Docker no longer has.
                    for (auto& [task_id, t] : tasks_) {
                      for (ContainerRec& rec : t.containers) {
                        if (!rec.id.empty() && !rec.busy && !seen.count(rec.id)) Vanished(t, rec);
                      }
                      Step(t);
                    }
                    if (first || !synced_) {
                      synced_ = true;
                      docker_state_ = DockerState::kReady;
                      if (!tasks_.empty()) log::Info("agent", "adopted running tasks", {{"tasks", std::to_string(tasks_.size())}});
                      OpenEvents();
                      ApplyPendingDesired();
                    }
                  });
  }

  TaskRec* Adopt(const std::string& task_id, json::View labels) {
    TaskRec& t = tasks_[task_id];
    t.ident.id = task_id;
    t.ident.cluster = std::string(labels.Get(kLabelCluster).String());
    t.ident.node = node_id_;
    t.ident.service = std::string(labels.Get(kLabelService).String());
    t.ident.task_definition = std::string(labels.Get(kLabelTaskDefinition).String());
    t.in_set = true;  // until the first desired set says otherwise
    return &t;
  }

  void OpenEvents() {
    std::string filters = "{\"type\":[\"container\"],\"label\":[\"" + std::string(kLabelNode) + "=" + node_id_ + "\"]}";
    auto lines = std::make_shared<docker::LineSplitter>([this](std::string_view line) { OnEvent(line); });
    events_ = engine_->Open(
        "GET", "/events?filters=" + docker::QueryEscape(filters), "", [lines](std::string_view d) { lines->Feed(d); },
        [this](Status s) {
          if (shut_) return;
          log::Warn("agent", "docker events stream ended; resyncing", {{"why", s ? "closed" : s.error().message}});
          Bury(std::move(events_));
          // The engine may have restarted: renegotiate, then compare everything.
          synced_ = true;
          EngineLost();
        });
  }

  void OnEvent(std::string_view line) {
    Result<json::Doc> d = json::Doc::Parse(line);
    if (!d) return;
    json::View ev = d->view();
    std::string action(ev.Get("Action").String());
    json::View attrs = ev.Get("Actor").Get("Attributes");
    std::string task_id(attrs.Get(kLabelTask).String());
    std::string name(attrs.Get(kLabelContainer).String());
    std::string id(ev.Get("Actor").Get("ID").String());
    TaskRec* t = FindTask(task_id);
    if (!t) return;
    ContainerRec* rec = t->Find(name);
    if (!rec || rec->id != id) return;
    if (action == "destroy") {
      if (!rec->busy) Vanished(*t, *rec);
      Step(*t);
      return;
    }
    // Our own start call inspects when it returns; its event adds nothing.
    if (action == "start" && (rec->busy || rec->state == "running")) return;
    if (action == "start" || action == "die" || action == "oom" || action.rfind("health_status", 0) == 0 ||
        action == "stop" || action == "kill" || action == "pause" || action == "unpause") {
      Inspect(task_id, name, id);
    }
  }

  // A container we made is no longer in Docker: removed behind our back.
  void Vanished(TaskRec& t, ContainerRec& rec) {
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

  void Inspect(const std::string& task_id, const std::string& name, const std::string& id) {
    engine_->Call("GET", "/containers/" + id + "/json", "", [this, task_id, name, id](Result<json::Doc> r) {
      if (shut_) return;
      TaskRec* t = FindTask(task_id);
      if (!t) return;
      ContainerRec* rec = t->Find(name);
      if (!rec || rec->id != id) return;
      if (!r) {
        if (Transient(r.error())) return;
        if (r.error().kind == ErrorKind::kNotFound) Vanished(*t, *rec);
        Step(*t);
        return;
      }
      Observe(*rec, r->view());
      Step(*t);
    });
  }

  static void Observe(ContainerRec& rec, json::View inspect) {
    json::View st = inspect.Get("State");
    rec.state = std::string(st.Get("Status").String());
    rec.exited = rec.state == "exited" || rec.state == "dead";
    rec.exit_code = static_cast<int64_t>(st.Get("ExitCode").Number());
    rec.oom = st.Get("OOMKilled").IsBool() && st.Get("OOMKilled").Bool();
    std::string health(st.Get("Health").Get("Status").String());
    rec.health = health == "healthy" ? "HEALTHY" : health == "unhealthy" ? "UNHEALTHY" : "UNKNOWN";
    json::Doc bindings = json::Doc::Array();
    for (json::View port : inspect.Get("NetworkSettings").Get("Ports")) {
      std::string key(port.Key());
      size_t slash = key.find('/');
      int container_port = atoi(key.substr(0, slash).c_str());
      std::string proto = slash == std::string::npos ? "tcp" : key.substr(slash + 1);
      for (json::View b : port) {
        std::string ip(b.Get("HostIp").String());
        if (ip == "::") continue;  // the same binding on IPv6
        json::Doc nb = json::Doc::Object();
        nb.Set("containerPort", container_port)
            .Set("hostPort", atoi(std::string(b.Get("HostPort").String()).c_str()))
            .Set("protocol", proto)
            .Set("bindIP", ip.empty() ? "0.0.0.0" : ip);
        bindings.Push(nb);
      }
    }
    rec.bindings = bindings.Print();
  }

  // --- the step: what is against what should be, for one task ---

  static bool Satisfied(TaskRec& t, const std::string& target, const std::string& condition, bool* failed) {
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

  void Step(TaskRec& t) {
    if (t.status == "STOPPED") return;
    // With the engine away nothing can be done; the resync after it answers
    // again steps every task.
    if (docker_state_ != DockerState::kReady) return;
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

  void StopStep(TaskRec& t) {
    if (!t.stopping) {
      t.stopping = true;
      if (t.stop_reason.empty()) t.stop_reason = t.in_set ? "Task stopped by the server" : "Task no longer wanted on this node";
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
      int64_t timeout = t.plan && i < t.plan->containers.size() ? t.plan->containers[i].stop_timeout_s
                                                                 : o_.default_stop_timeout_s;
      c.busy = true;
      std::string task_id = t.ident.id, name = c.name, id = c.id;
      // SIGTERM, then SIGKILL after the timeout: Docker's stop does exactly that.
      engine_->Call("POST", "/containers/" + id + "/stop?t=" + std::to_string(timeout), "",
                    [this, task_id, name, id](Result<json::Doc> r) {
                      if (shut_) return;
                      TaskRec* t = FindTask(task_id);
                      ContainerRec* c = t ? t->Find(name) : nullptr;
                      if (!c) return;
                      c->busy = false;
                      if (!r && Transient(r.error())) return;
                      if (!r && r.error().kind == ErrorKind::kNotFound) {
                        Vanished(*t, *c);
                        return Step(*t);
                      }
                      if (!r) log::Warn("agent", "stop failed", {{"container", id}, {"error", r.error().message}});
                      Inspect(task_id, name, id);
                    });
    }
    if (busy) return;
    t.status = "STOPPED";
    log::Info("agent", "task stopped", {{"task", t.ident.id}, {"reason", t.stop_reason}});
    if (t.plan && t.plan->own_network) {
      engine_->Call("DELETE", "/networks/" + t.plan->network_name, "", [](Result<json::Doc>) {});
    }
  }

  void CreateNetwork(TaskRec& t) {
    t.network_busy = true;
    json::Doc labels = json::Doc::Object();
    labels.Set(kLabelTask, t.ident.id).Set(kLabelNode, node_id_).Set(kLabelCluster, t.ident.cluster);
    json::Doc body = json::Doc::Object();
    body.Set("Name", t.plan->network_name).Set("Driver", "bridge").Set("CheckDuplicate", true).Set("Labels", labels);
    std::string task_id = t.ident.id;
    engine_->Call("POST", "/networks/create", body.Print(), [this, task_id](Result<json::Doc> r) {
      if (shut_) return;
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
  }

  // Image (pulled if needed), create, start: one container.
  void Launch(TaskRec& t, size_t index) {
    ContainerRec& c = t.containers[index];
    c.busy = true;
    std::string task_id = t.ident.id, name = c.name, image = t.plan->containers[index].image;
    EnsureImage(image, [this, task_id, name, index](Status s) {
      if (shut_) return;
      TaskRec* t = FindTask(task_id);
      if (!t) return;
      ContainerRec* c = t->Find(name);
      if (!s) {
        c->busy = false;
        if (Transient(s.error())) return;
        c->error = "CannotPullContainerError: " + s.error().message;
        return Step(*t);
      }
      if (t->stopping) {
        c->busy = false;
        return Step(*t);
      }
      const ContainerPlan& p = t->plan->containers[index];
      engine_->Call("POST", "/containers/create?name=" + p.docker_name, p.create_body,
                    [this, task_id, name, docker_name = p.docker_name](Result<json::Doc> r) {
                      if (shut_) return;
                      TaskRec* t = FindTask(task_id);
                      if (!t) return;
                      ContainerRec* c = t->Find(name);
                      if (!r && r.error().kind == ErrorKind::kConflict) {
                        // Made before a crash of ours: take it over.
                        return AdoptByName(task_id, name, docker_name);
                      }
                      if (!r) {
                        c->busy = false;
                        if (Transient(r.error())) return;
                        c->error = "CannotCreateContainerError: " + r.error().message;
                        return Step(*t);
                      }
                      c->id = std::string(r->view().Get("Id").String());
                      c->state = "created";
                      if (t->stopping) {
                        c->busy = false;
                        return Step(*t);
                      }
                      StartContainer(*t, *c);
                    });
    });
  }

  void AdoptByName(const std::string& task_id, const std::string& name, const std::string& docker_name) {
    engine_->Call("GET", "/containers/" + docker_name + "/json", "", [this, task_id, name](Result<json::Doc> r) {
      if (shut_) return;
      auto [t, c] = Returned(task_id, name);
      if (!t) return;
      if (!r) {
        if (Transient(r.error())) return;
        c->error = "CannotCreateContainerError: " + r.error().message;
        return Step(*t);
      }
      c->id = std::string(r->view().Get("Id").String());
      Observe(*c, r->view());
      Step(*t);
    });
  }

  void StartContainer(TaskRec& t, ContainerRec& c) {
    c.busy = true;
    std::string task_id = t.ident.id, name = c.name, id = c.id;
    engine_->Call("POST", "/containers/" + id + "/start", "", [this, task_id, name, id](Result<json::Doc> r) {
      if (shut_) return;
      auto [t, c] = Returned(task_id, name);
      if (!t) return;
      if (!r) {
        if (Transient(r.error())) return;
        c->error = "CannotStartContainerError: " + r.error().message;
        return Step(*t);
      }
      Inspect(task_id, name, id);
    });
  }

  // Calls `done` once the image is present: reused when there (unless its tag
  // must be re-resolved: none or latest), pulled otherwise. One pull per image.
  void EnsureImage(const std::string& image, std::function<void(Status)> done) {
    auto& waiters = pulls_[image];
    waiters.push_back(std::move(done));
    if (waiters.size() > 1) return;
    auto finish = [this, image](Status s) {
      std::vector<std::function<void(Status)>> w = std::move(pulls_[image]);
      pulls_.erase(image);
      for (auto& f : w) f(s);
    };
    engine_->Call("GET", "/images/" + image + "/json", "", [this, image, finish](Result<json::Doc> r) {
      if (shut_) return;
      if (!r && r.error().kind != ErrorKind::kNotFound) return finish(r.take_error());  // engine trouble, not absence
      docker::ImageRef ref = docker::ParseImageRef(image);
      bool present = r.ok();
      bool reresolve = ref.digest.empty() && (!ref.explicit_tag || ref.tag == "latest");
      if (present && !reresolve) return finish(Status{});
      engine_->Pull(image, RegistryAuth(ref), [this, image, present, finish](Status s) {
        if (s) NotePulled(image);
        if (!s && present) {
          log::Warn("agent", "pull failed; using the local image", {{"image", image}, {"error", s.error().message}});
          return finish(Status{});
        }
        finish(s);
      });
    });
  }

  // X-Registry-Auth for an image: the agent's token for the server's own
  // registry; for others, what `docker login` left in this host's Docker config
  // ($DOCKER_CONFIG/config.json or ~/.docker/config.json), if anything.
  std::string RegistryAuth(const docker::ImageRef& ref) const {
    json::Doc a = json::Doc::Object();
    for (const std::string& h : o_.registry_hosts) {
      if (h == ref.registry) {
        a.Set("username", "berth").Set("password", o_.token).Set("serveraddress", ref.registry);
        return a.Print();
      }
    }
    const char* dir = getenv("DOCKER_CONFIG");
    const char* home = getenv("HOME");
    std::string path = dir && *dir ? std::string(dir) + "/config.json" : std::string(home ? home : "/root") + "/.docker/config.json";
    Result<json::Doc> config = json::Doc::Parse(ReadFile(path));
    if (!config) return "";
    json::View auths = config->view().Get("auths");
    std::vector<std::string> keys = {ref.registry, "https://" + ref.registry, "http://" + ref.registry};
    if (ref.registry == "docker.io") keys.push_back("https://index.docker.io/v1/");
    for (const std::string& key : keys) {
      json::View entry = auths.Get(key);
      if (!entry.Get("auth").IsString()) continue;
      Result<std::string> pair = crypto::Base64Decode(entry.Get("auth").String());
      if (!pair || pair->find(':') == std::string::npos) continue;
      a.Set("username", pair->substr(0, pair->find(':')))
          .Set("password", pair->substr(pair->find(':') + 1))
          .Set("serveraddress", ref.registry);
      return a.Print();
    }
    return "";
  }

  // --- the server: registration, the desired-state stream, reports ---

  http::ClientRequest Request(std::string method, std::string target, std::string body = "") const {
    return http::BearerRequest(std::move(method), std::move(target), o_.token, std::move(body));
  }

  void Register() {
    registering_ = true;
    json::Doc attrs = json::Doc::Object();
    attrs.Set("os", "linux").Set("arch", host_.arch).Set("docker", version_.version);
    for (const auto& [k, v] : o_.attributes) attrs.Set(k, v);
    json::Doc body = json::Doc::Object();
    body.Set("cluster", o_.cluster)
        .Set("hostname", host_.hostname)
        .Set("cpu", CpuUnits(host_))
        .Set("memory", OfferedMemory(host_, o_.reserved_memory_mib))
        .Set("attributes", attrs);
    json::Doc reserved = json::Doc::Array();
    for (const std::string& p : o_.reserved_ports) reserved.Push(p);
    body.Set("reservedPorts", reserved);
    if (!node_id_.empty()) body.Set("nodeId", node_id_);
    reporter_->Send(Request("POST", "/v1/agent/register", body.Print()), [this](Result<http::ClientResponse> r) {
      if (shut_) return;
      registering_ = false;
      if (!r || r->status != 200) {
        server_failures_++;
        if (server_failures_ == 1 || server_failures_ % 10 == 0) {
          log::Warn("agent", "registration failed", {{"server", server_.ToString()}, {"error", r ? r->body : r.error().message}});
        }
        server_retry_ms_ = NowMs() + Backoff(server_failures_, 100, kMaxServerBackoffMs);
        if (r && (r->status == 401 || r->status == 403)) server_retry_ms_ = NowMs() + kMaxBackoffMs;
        return;
      }
      Result<json::Doc> d = json::Doc::Parse(r->body);
      if (!d) return;
      std::string id(d->view().Get("nodeId").String());
      TakeHeartbeatInterval(d->view());
      bool first = node_id_.empty();
      node_id_ = id;
      if (first) SaveNodeId();
      registered_ = true;
      server_failures_ = 0;
      log::Info("agent", "registered", {{"node", node_id_}, {"server", server_.ToString()}});
      if (first) Resync(true);
      OpenStream();
    });
  }

  void SaveNodeId() {
    if (!WriteFileDurably(o_.state_dir, "node-id", node_id_ + "\n")) {
      log::Error("agent", "cannot keep the node id", {{"dir", o_.state_dir}, {"error", strerror(errno)}});
    }
  }

  void OpenStream() {
    http::ClientOptions opts;
    opts.timeout_ms = 45000;  // the server pings every 10 s
    stream_ = std::make_unique<http::Client>(loop_, server_, opts);
    auto lines = std::make_shared<docker::LineSplitter>([this](std::string_view line) {
      if (stream_) OnStreamLine(line);
    });
    // This stream carries the whole set first, then `changes` lines; the task
    // definitions it carries are known only on it.
    defs_.clear();
    desired_version_.reset();
    stream_->Send(
        Request("GET", "/v1/agent/nodes/" + node_id_ + "/desired?changes=1"),
        [this, raw = stream_.get()](Result<http::ClientResponse> r) {
          if (shut_ || stream_.get() != raw) return;  // ended already (a line out of order)
          std::string why = r ? "HTTP " + std::to_string(r->status) : r.error().message;
          if (r && r->status == 404) registered_ = false;
          server_failures_++;
          if (server_failures_ == 1 || server_failures_ % 10 == 0) log::Warn("agent", "server stream lost", {{"why", why}});
          server_retry_ms_ = NowMs() + Backoff(server_failures_, 100, kMaxServerBackoffMs);
          Bury(std::move(stream_));
        },
        [this, lines](std::string_view data) {
          if (!data.empty()) server_failures_ = 0;
          lines->Feed(data);
        });
  }

  void OnStreamLine(std::string_view line) {
    Result<json::Doc> msg = json::Doc::Parse(line);
    if (!msg) {
      log::Warn("agent", "bad line on the desired stream", {{"error", msg.error().message}});
      return;
    }
    json::View m = msg->view();
    std::string type(m.Get("type").String());
    if (type == "desired" || type == "changes") {
      if (type == "changes" && (!desired_version_ || m.Get("since").Number() != static_cast<double>(*desired_version_))) {
        // A line was missed: a new stream starts with the whole set again.
        log::Warn("agent", "desired-state lines out of order; reconnecting");
        server_retry_ms_ = NowMs();
        Bury(std::move(stream_));
        return;
      }
      TakeDesired(m, type == "desired");
      if (synced_) ApplyPendingDesired();
    } else if (type == "deregistered") {
      log::Warn("agent", "this node was deregistered; stopping its tasks", {{"node", node_id_}});
      for (auto& [id, t] : tasks_) t.in_set = false;
      for (auto& [id, t] : tasks_) Step(t);
      deregistered_ = true;
    } else if (type == "logs") {
      StartLogs(msg->view());
    }
  }

  // A `desired` line is the whole truth about this node; a `changes` line says
  // what differs from the lines before it on this stream. Either is folded into
  // desired_, which the tasks are compared with once adoption is done.
  void TakeDesired(json::View msg, bool whole) {
    for (json::View d : msg.Get("taskDefinitions")) defs_[std::string(d.Key())] = json::Doc::Copy(d);
    if (whole) desired_.clear();
    for (json::View d : msg.Get("tasks")) {
      DesiredTask& e = desired_[std::string(d.Get("taskId").String())];
      e.cluster = std::string(d.Get("cluster").String());
      e.service = std::string(d.Get("service").String());
      e.task_definition = std::string(d.Get("taskDefinition").String());
      e.desired = std::string(d.Get("desiredStatus").String());
      e.server_last = std::string(d.Get("lastStatus").String());
      e.fresh = true;
    }
    for (json::View r : msg.Get("removed")) desired_.erase(std::string(r.String()));
    desired_version_ = static_cast<uint64_t>(msg.Get("version").Number());
    desired_pending_ = true;
  }

  // Level-triggered: the node's tasks are made to match the whole desired set.
  void ApplyPendingDesired() {
    if (!desired_pending_) return;
    desired_pending_ = false;
    for (auto& [id, d] : desired_) {
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
        auto def = defs_.find(t.ident.task_definition);
        Plan(t, def != defs_.end() ? def->second.view() : json::View());
      }
      // The server missed a report (e.g. across its restart): say it again. Only
      // what the latest line carried says what the server believes now.
      if (d.fresh) {
        t.server_last = d.server_last;
        if (t.server_last != t.status && !t.acked.empty()) t.acked.clear();
        d.fresh = false;
      }
    }
    for (auto it = tasks_.begin(); it != tasks_.end();) {
      if (!desired_.count(it->first)) {
        it->second.in_set = false;
        if (it->second.status == "STOPPED") {
          it = tasks_.erase(it);
          continue;
        }
      }
      ++it;
    }
    for (auto& [id, t] : tasks_) Step(t);
  }

  void Plan(TaskRec& t, json::View td) {
    PlanOptions po;
    po.default_stop_timeout_s = o_.default_stop_timeout_s;
    Result<TaskPlan> plan = PlanTask(t.ident, td, po);
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
    if (t.plan->own_network) t.network_ready = AnyCreated(t);
  }

  static bool AnyCreated(const TaskRec& t) {
    for (const ContainerRec& c : t.containers) {
      if (!c.id.empty()) return true;
    }
    return false;
  }

  std::string ReportOf(const TaskRec& t) const {
    json::Doc containers = json::Doc::Array();
    for (const ContainerRec& c : t.containers) {
      json::Doc d = json::Doc::Object();
      std::string last = c.exited || (t.status == "STOPPED") ? "STOPPED" : c.state == "running" ? "RUNNING" : "PENDING";
      d.Set("name", c.name).Set("lastStatus", last).Set("healthStatus", c.health);
      if (!c.id.empty()) d.Set("runtimeId", c.id);
      if (c.exited) d.Set("exitCode", c.exit_code);
      if (!c.error.empty()) d.Set("reason", c.error);
      else if (c.oom) d.Set("reason", "OutOfMemoryError: container killed due to memory usage");
      d.SetRaw("networkBindings", c.exited ? "[]" : c.bindings);
      containers.Push(d);
    }
    json::Doc r = json::Doc::Object();
    r.Set("taskId", t.ident.id).Set("lastStatus", t.status).Set("containers", containers);
    if (t.status == "STOPPED") r.Set("reason", t.stop_reason);
    return r.Print();
  }

  // The server says how often to report in each answer.
  void TakeHeartbeatInterval(json::View answer) {
    if (std::optional<int64_t> ms = HeartbeatIntervalOf(answer)) heartbeat_ms_ = *ms;
  }

  // Sends what changed since the server last acknowledged it (at most one batch
  // per kReportBatchMs), or a heartbeat when one is due.
  void Report() {
    bool heartbeat_due = NowMs() - last_report_ms_ >= heartbeat_ms_;
    if (!heartbeat_due && NowMs() - last_report_ms_ < kReportBatchMs) return;
    std::vector<std::pair<std::string, std::string>> sent;
    std::string list = "[";
    for (const auto& [id, t] : tasks_) {
      if (!t.in_set) continue;  // the server no longer holds it
      std::string r = ReportOf(t);
      if (r == t.acked) continue;
      if (sent.size() >= 500) break;
      if (!sent.empty()) list += ",";
      list += r;
      sent.emplace_back(id, std::move(r));
    }
    list += "]";
    if (sent.empty() && !heartbeat_due) return;
    report_in_flight_ = true;
    last_report_ms_ = NowMs();
    reporter_->Send(Request("POST", "/v1/agent/nodes/" + node_id_ + "/report", "{\"tasks\":" + list + "}"),
                    [this, sent](Result<http::ClientResponse> r) {
                      if (shut_) return;
                      report_in_flight_ = false;
                      if (!r || r->status != 200) {
                        if (r && r->status == 404) registered_ = false;
                        report_failures_++;
                        report_retry_ms_ = NowMs() + Backoff(report_failures_, 100, kMaxServerBackoffMs);
                        return;  // unchanged: sent again
                      }
                      report_failures_ = 0;
                      if (Result<json::Doc> d = json::Doc::Parse(r->body); d) TakeHeartbeatInterval(d->view());
                      for (const auto& [id, text] : sent) {
                        TaskRec* t = FindTask(id);
                        if (t) t->acked = text;
                      }
                    });
  }

  // --- logs: the server asks on the stream; we answer with a streamed POST ---

  void StartLogs(json::View msg) {
    std::string request_id(msg.Get("requestId").String());
    std::string task_id(msg.Get("taskId").String());
    std::string container(msg.Get("container").String());
    bool follow = msg.Get("follow").IsBool() && msg.Get("follow").Bool();
    int64_t tail = msg.Get("tail").IsNumber() ? static_cast<int64_t>(msg.Get("tail").Number()) : -1;
    if (request_id.empty() || request_id.size() > 64) return;
    // A task we track names its containers; a forgotten one (stopped, kept for
    // the retention period) is found by the container name berth gave it.
    std::string docker_ref;
    if (TaskRec* t = FindTask(task_id)) {
      ContainerRec* c = container.empty() ? (t->containers.empty() ? nullptr : &t->containers[0]) : t->Find(container);
      if (c) docker_ref = c->id;
    } else if (!container.empty()) {
      docker_ref = DockerName(task_id, container);
    }
    std::string what = container.empty() ? "task " + task_id : "container " + container + " of task " + task_id;
    if (docker_ref.empty()) return LogsRefused(request_id, "no " + what + " on this node");
    engine_->Call("GET", "/containers/" + docker_ref + "/json", "",
                  [this, request_id, docker_ref, what, follow, tail](Result<json::Doc> r) {
                    if (shut_) return;
                    if (!r) return LogsRefused(request_id, "no " + what + " on this node (" + r.error().message + ")");
                    StreamLogs(request_id, std::string(r->view().Get("Id").String()), follow, tail);
                  });
  }

  // Answers a logs request with an error the server passes on as a 404.
  void LogsRefused(const std::string& request_id, const std::string& message) {
    http::ClientRequest req = Request("POST", "/v1/agent/logs/" + request_id, message + "\n");
    req.headers.push_back({"X-Berth-Log-Error", "not-found"});
    reporter_->Send(std::move(req), [](Result<http::ClientResponse>) {});
  }

  void StreamLogs(const std::string& request_id, const std::string& docker_id, bool follow, int64_t tail) {
    auto relay = std::make_shared<LogRelay>();
    uint64_t key = next_log_++;
    logs_[key] = relay;
    std::string target = "/v1/agent/logs/" + request_id;
    relay->client = std::make_unique<http::Client>(loop_, server_, http::ClientOptions{24ull * 3600 * 1000, 1 << 20});
    std::string query = "/containers/" + docker_id + "/logs?stdout=1&stderr=1&follow=" + (follow ? "1" : "0") +
                        "&tail=" + (tail >= 0 ? std::to_string(tail) : "all");
    relay->demux = std::make_unique<docker::LogDemuxer>([relay](int, std::string_view payload) {
      relay->Frame(payload);
      relay->Wake();
    });
    relay->docker = engine_->Open(
        "GET", query, "", [relay](std::string_view d) { relay->demux->Feed(d); },
        [relay](Status s) {
          if (!s) relay->Frame("berth: " + s.error().message + "\n");
          relay->done = true;
          relay->Wake();
        });
    http::ClientRequest req = Request("POST", target);
    req.headers.push_back({"Content-Type", "application/octet-stream"});
    req.body_source = [relay](std::string* piece) {
      piece->swap(relay->pending);
      relay->pending.clear();
      return !relay->done;
    };
    relay->client->Send(std::move(req), [this, key, relay](Result<http::ClientResponse>) {
      relay->done = true;
      // The client is on the stack: free the relay on the next loop turn.
      auto it = logs_.find(key);
      if (it != logs_.end()) {
        Bury(std::move(it->second->client));
        buried_streams_.push_back(std::move(it->second->docker));
        logs_.erase(it);
      }
    });
  }

  struct LogRelay {
    std::unique_ptr<http::Client> client;
    std::unique_ptr<docker::Stream> docker;
    std::unique_ptr<docker::LogDemuxer> demux;
    std::string pending;  // framed bytes not yet handed to the POST
    bool done = false;
    int64_t last_frame_ms = NowMs();
    // The POST's body is frames: "<hex length>\n<bytes>"; "0\n" keeps it alive.
    void Frame(std::string_view payload) {
      char head[24];
      snprintf(head, sizeof head, "%zx\n", payload.size());
      pending.append(head).append(payload);
      last_frame_ms = NowMs();
    }
    // More log bytes (or the end) are ready: the POST asks for them.
    void Wake() {
      if (client) client->ResumeBody();
    }
  };

  // --- periodic work ---

  void Tick() {
    if (shut_) return;
    int64_t now = NowMs();
    if (!graveyard_.empty() || !buried_streams_.empty()) {
      graveyard_.clear();
      buried_streams_.clear();
    }
    for (auto& [key, relay] : logs_) {
      if (!relay->done && now - relay->last_frame_ms >= 10000) {
        relay->Frame("");
        relay->Wake();
      }
    }
    if ((docker_state_ == DockerState::kDown) && now >= docker_retry_ms_) {
      if (events_) {
        Bury(std::move(events_));
      }
      ConnectDocker();
      return;
    }
    if (docker_state_ != DockerState::kReady) return;
    if (deregistered_) return;
    if (!registered_) {
      if (!registering_ && now >= server_retry_ms_) Register();
    } else if (!stream_ && now >= server_retry_ms_) {
      OpenStream();
    }
    if (registered_ && !report_in_flight_ && now >= report_retry_ms_) Report();
    if (synced_ && now - last_resync_ms_ >= o_.resync_ms) Resync(false);
    if (now - last_cleanup_ms_ >= 60000) {
      last_cleanup_ms_ = now;
      Cleanup();
      CleanupImages();
    }
  }

  // Removes our stopped containers (with their task-scoped volumes) once they are
  // older than the retention period and their task is forgotten, and the per-task
  // networks of tasks that are stopped or unknown here (left by a crash between a
  // task's end and its network's removal, or by a task the server forgot while
  // this agent was away): Docker's default address pools hold only about 31.
  void Cleanup() {
    if (node_id_.empty()) return;
    std::string ours = "{\"label\":[\"" + std::string(kLabelNode) + "=" + node_id_ + "\"]}";
    engine_->Call("GET", "/networks?filters=" + docker::QueryEscape(ours), "", [this](Result<json::Doc> r) {
      if (shut_ || !r) return;
      for (json::View n : r->view()) {
        const TaskRec* t = FindTask(std::string(n.Get("Labels").Get(kLabelTask).String()));
        if (t && t->status != "STOPPED") continue;
        std::string name(n.Get("Name").String());
        // Docker refuses (409) while a running container uses it: a later sweep retries.
        engine_->Call("DELETE", "/networks/" + std::string(n.Get("Id").String()), "", [name](Result<json::Doc> r) {
          if (r) log::Info("agent", "removed a network no task uses", {{"network", name}});
        });
      }
    });
    std::string filters = "{\"label\":[\"" + std::string(kLabelNode) + "=" + node_id_ + "\"],\"status\":[\"exited\",\"dead\",\"created\"]}";
    engine_->Call("GET", "/containers/json?all=1&filters=" + docker::QueryEscape(filters), "", [this](Result<json::Doc> r) {
      if (shut_ || !r) return;
      for (json::View c : r->view()) {
        std::string id(c.Get("Id").String());
        std::string task_id(c.Get("Labels").Get(kLabelTask).String());
        TaskRec* t = FindTask(task_id);
        if (t && t->status != "STOPPED") continue;
        engine_->Call("GET", "/containers/" + id + "/json", "", [this, id](Result<json::Doc> r) {
          if (shut_ || !r) return;
          std::string finished(r->view().Get("State").Get("FinishedAt").String());
          if (!OlderThan(finished, o_.container_retention_ms)) return;
          engine_->Call("DELETE", "/containers/" + id + "?v=1", "", [](Result<json::Doc>) {});
        });
      }
    });
  }

  // Images this agent pulled (only those: images put there by hand are never
  // touched), with when a task last used them, kept in <state>/images.json.
  void NotePulled(const std::string& image) {
    pulled_[image] = time(nullptr);
    SavePulled();
  }

  void LoadPulled() {
    Result<json::Doc> d = json::Doc::Parse(ReadFile(o_.state_dir + "/images.json"));
    if (!d) return;
    for (json::View v : d->view()) {
      if (v.IsNumber()) pulled_[std::string(v.Key())] = static_cast<int64_t>(v.Number());
    }
  }

  void SavePulled() {
    json::Doc d = json::Doc::Object();
    for (const auto& [image, when] : pulled_) d.Set(image, when);
    if (!WriteFileDurably(o_.state_dir, "images.json", d.Print())) {
      log::Warn("agent", "cannot keep the list of pulled images", {{"dir", o_.state_dir}, {"error", strerror(errno)}});
    }
  }

  // Removes images we pulled that no task has used for image_cleanup_after_ms.
  // Docker refuses to remove one a container (even a stopped one) still uses.
  void CleanupImages() {
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
      std::string name = image;  // clang 14 cannot capture a structured binding
      engine_->Call("DELETE", "/images/" + name, "", [this, image = name](Result<json::Doc> r) {
        if (shut_) return;
        if (r || r.error().kind == ErrorKind::kNotFound) {
          log::Info("agent", "removed an unused image", {{"image", image}});
          pulled_.erase(image);
          SavePulled();
        }
      });
    }
    if (changed) SavePulled();
  }

  // True if the RFC 3339 time `when` is more than `ms` ago (false if unparsable).
  static bool OlderThan(const std::string& when, int64_t ms) {
    struct tm tm = {};
    if (when.size() < 19 || !strptime(when.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return false;
    time_t t = timegm(&tm);
    if (t <= 0) return false;  // "0001-01-01T00:00:00Z": never ran
    return (time(nullptr) - t) * 1000 > ms;
  }

  // --- helpers ---

  // The engine did not answer (as opposed to refusing): no task is blamed; the
  // engine is reconnected, and the resync after it steps every task again.
  bool Transient(const Error& e) {
    if (e.kind != ErrorKind::kUnavailable) return false;
    EngineLost();
    return true;
  }

  void EngineLost() {
    if (docker_state_ == DockerState::kDown) return;
    log::Warn("agent", "docker engine lost; reconnecting");
    docker_state_ = DockerState::kDown;
    docker_retry_ms_ = NowMs() + Backoff(++docker_failures_, 250);
  }

  TaskRec* FindTask(const std::string& id) {
    auto it = tasks_.find(id);
    return it == tasks_.end() ? nullptr : &it->second;
  }

  // The task and container a finished Docker call was about, with the
  // container's call marked done; (nullptr, nullptr) if the task is gone.
  std::pair<TaskRec*, ContainerRec*> Returned(const std::string& task_id, const std::string& name) {
    TaskRec* t = FindTask(task_id);
    ContainerRec* c = t ? t->Find(name) : nullptr;
    if (!c) return {nullptr, nullptr};
    c->busy = false;
    return {t, c};
  }

  int64_t Backoff(int failures, int64_t base_ms, int64_t max_ms = kMaxBackoffMs) {
    int64_t ms = std::min<int64_t>(max_ms, base_ms << std::min(failures, 7));
    return ms / 2 + std::uniform_int_distribution<int64_t>(0, ms / 2)(rng_);
  }

  void Bury(std::unique_ptr<http::Client> c) {
    if (c) graveyard_.push_back(std::move(c));
  }
  void Bury(std::unique_ptr<docker::Stream> s) {
    if (s) buried_streams_.push_back(std::move(s));
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream f(path);
    std::string s;
    if (f) std::getline(f, s, '\0');
    return s;
  }

  enum class DockerState { kConnecting, kDown, kReady };

  uv_loop_t* loop_;
  NodeAgentOptions o_;
  std::mt19937_64 rng_;
  net::Timer tick_;
  net::Endpoint server_;
  std::unique_ptr<docker::Engine> engine_;
  docker::EngineVersion version_;
  HostResources host_;
  std::string node_id_;
  bool shut_ = false;

  DockerState docker_state_ = DockerState::kConnecting;
  int docker_failures_ = 0;
  int64_t docker_retry_ms_ = 0;
  bool synced_ = false;  // adoption done: desired sets may be applied
  bool resyncing_ = false;
  int64_t last_resync_ms_ = 0;
  int64_t last_cleanup_ms_ = 0;
  std::unique_ptr<docker::Stream> events_;

  bool registered_ = false;
  bool registering_ = false;
  bool deregistered_ = false;
  int server_failures_ = 0;
  int64_t server_retry_ms_ = 0;
  int64_t heartbeat_ms_ = 2000;
  std::unique_ptr<http::Client> stream_;
  std::unique_ptr<http::Client> reporter_;
  // The node's desired set as the server's stream said it, and the task
  // definitions that stream carried (each once); applied once adoption is done.
  struct DesiredTask {
    std::string cluster, service, task_definition, desired, server_last;
    bool fresh = false;  // in the latest line: its server_last is current
  };
  std::map<std::string, DesiredTask> desired_;
  std::map<std::string, json::Doc, std::less<>> defs_;
  std::optional<uint64_t> desired_version_;  // of the stream's last line
  bool desired_pending_ = false;
  bool report_in_flight_ = false;
  int report_failures_ = 0;
  int64_t report_retry_ms_ = 0;
  int64_t last_report_ms_ = 0;

  std::map<std::string, TaskRec> tasks_;
  std::map<std::string, std::vector<std::function<void(Status)>>> pulls_;
  std::map<std::string, int64_t> pulled_;  // image → unix seconds it was last used
  std::map<uint64_t, std::shared_ptr<LogRelay>> logs_;
  uint64_t next_log_ = 0;
  std::vector<std::unique_ptr<http::Client>> graveyard_;
  std::vector<std::unique_ptr<docker::Stream>> buried_streams_;
};

NodeAgent::NodeAgent(uv_loop_t* loop, NodeAgentOptions options)
    : impl_(std::make_unique<NodeAgentImpl>(loop, std::move(options))) {}
NodeAgent::~NodeAgent() {
  if (impl_) impl_->Shutdown();
}
Status NodeAgent::Start() { return impl_->Start(); }
void NodeAgent::Shutdown() { impl_->Shutdown(); }
std::string NodeAgent::node_id() const { return impl_->node_id(); }

int RunNodeAgent(const NodeAgentOptions& options) {
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t* loop = uv_default_loop();
  NodeAgent agent(loop, options);
  if (Status s = agent.Start(); !s) {
    fprintf(stderr, "berth agent: %s\n", s.error().message.c_str());
    return 2;
  }
  printf("berth agent: node agent for %s, server %s\n", options.docker.c_str(), options.server.c_str());
  fflush(stdout);
  auto stop = [loop](int) { uv_stop(loop); };
  net::SignalWatch sigterm(loop, SIGTERM, stop);
  net::SignalWatch sigint(loop, SIGINT, stop);
  uv_run(loop, UV_RUN_DEFAULT);
  agent.Shutdown();
  return 0;
}

}  // namespace berth::agent
