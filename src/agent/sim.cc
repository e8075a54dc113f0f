#include "agent/sim.h"

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <vector>

#include "agent/protocol.h"
#include "agent/target_checks.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "net/http_client.h"
#include "net/tls.h"
#include "net/uv.h"

namespace berth::agent {

namespace http = net::http;

namespace {

constexpr int64_t kReportBatchMs = 50;

int64_t NowMs(uv_loop_t* loop) { return static_cast<int64_t>(net::LoopNowMs(loop)); }

class Simulation;

struct SimContainer {
  std::string name;
  bool health_check = false;
  struct Port {
    int container = 0, host = 0;  // host 0: dynamic
    bool udp = false;
  };
  std::vector<Port> ports;
};

struct SimTask {
  std::string last = "PENDING";  // what we last reported
  bool reported = false;         // `last` has reached the server
  bool stopping = false;
  std::vector<SimContainer> containers;  // from the task definition
};

// One simulated node.
class SimNode {
 public:
  SimNode(Simulation* sim, int index);
  void Start();
  void OnStreamData(std::string_view data);
  void OnStreamEnd(const std::string& why, bool not_registered);
  void Report(bool heartbeat_only);
  void TaskRan(const std::string& id, bool failed);

  std::string id;
  bool registered = false;
  bool report_in_flight = false;
  int64_t last_report_ms = 0;
  int64_t next_attempt_ms = 0;
  int failures = 0;
  std::map<std::string, SimTask> tasks;
  std::set<std::string> dirty;    // tasks with news to report
  bool proxy_unreported = false;  // a proxy configuration the server has not heard applied
  // Targets checked here whose health (always healthy: nothing runs) the server
  // has yet to take, as (task id, target group).
  std::set<std::pair<std::string, std::string>> health_unreported;
  std::unique_ptr<http::Client> stream;

 private:
  void Register();
  void OpenStream();
  void Apply(json::View msg, bool whole);
  Simulation* sim_;
  int index_;
  int64_t proxy_version_ = 0;            // of the last proxy configuration the stream carried
  std::set<std::string> proxy_drained_;  // its draining targets
  std::string line_;                     // a partial NDJSON line
  // What this stream carried: the task definitions (their containers), and the
  // version of its last line, which a `changes` line must follow.
  std::map<std::string, std::vector<SimContainer>, std::less<>> defs_;
  uint64_t version_ = 0;
  bool have_version_ = false;
  // The last `checks` document taken: its version, and its targets as (task id,
  // target group).
  int64_t checks_version_ = 0;
  std::set<std::pair<std::string, std::string>> checked_;
};

class Simulation {
 public:
  Simulation(uv_loop_t* loop, SimOptions o) : loop_(loop), o_(std::move(o)), rng_(o_.seed), timer_(loop) {}

  int Run() {
    Result<net::Endpoint> ep = net::Endpoint::Parse(o_.server, 7070);
    if (!ep) {
      fprintf(stderr, "berth agent: --server: %s\n", ep.error().message.c_str());
      return 2;
    }
    endpoint_ = ep.value();
    crypto::TokenParts token = crypto::SplitToken(o_.token);
    o_.token = token.secret;  // only the secret goes to the server
    Result<std::shared_ptr<net::tls::ClientContext>> trust = net::tls::ClientContextFor(token.pin, o_.ca_pem);
    if (!trust) {
      fprintf(stderr, "berth agent: TLS: %s\n", trust.error().message.c_str());
      return 2;
    }
    tls_ = trust.value();
    if (endpoint_.tls && !tls_) {
      fprintf(stderr,
              "berth agent: --server %s: nothing to trust the server by: give a token that carries the CA "
              "fingerprint (berth token create prints one) or --ca-file\n",
              o_.server.c_str());
      return 2;
    }
    http::ClientOptions report_opts;
    report_opts.timeout_ms = 60000;
    report_opts.tls = tls_;
    int connections = o_.report_connections > 0 ? o_.report_connections : std::clamp(o_.nodes / 2, 32, 4096);
    for (int i = 0; i < connections; i++) {
      reporters_.push_back(std::make_unique<http::Client>(loop_, endpoint_, report_opts));
    }
    for (int i = 0; i < o_.nodes; i++) nodes_.push_back(std::make_unique<SimNode>(this, i));
    for (auto& n : nodes_) n->Start();
    timer_.Start(10, 10, [this] { Tick(); });
    printf("berth agent: simulating %d node(s) against %s\n", o_.nodes, endpoint_.ToString().c_str());
    fflush(stdout);
    return 0;
  }

  http::ClientRequest Request(std::string method, std::string target, std::string body = "") {
    return http::BearerRequest(std::move(method), std::move(target), o_.token, std::move(body));
  }

  // Requests that are not the stream share a small pool of connections.
  http::Client& Reporter() { return *reporters_[next_reporter_++ % reporters_.size()]; }

  void Later(int64_t delay_ms, SimNode* node, std::string task, bool fail) {
    due_.push(Due{NowMs(loop_) + delay_ms, seq_++, node, std::move(task), fail});
  }

  bool Fail() { return o_.fail_rate > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < o_.fail_rate; }
  int64_t Jitter(int64_t ms) { return ms + std::uniform_int_distribution<int64_t>(0, ms)(rng_); }

  void Bury(std::unique_ptr<http::Client> c) { dead_.push_back(std::move(c)); }

  // A `logs` line on `node`'s stream: answers with a made-up log of the task
  // (docs/agent-protocol.md, "Logs", as the real agent does): a few lines, and
  // with follow one more each second until the server ends the POST. So the
  // dashboard's log view can be tried without Docker.
  void StartLogs(const SimNode& node, json::View msg) {
    std::string request_id(msg.Get("requestId").String());
    std::string task_id(msg.Get("taskId").String());
    std::string container(msg.Get("container").String());
    bool follow = msg.Get("follow").IsBool() && msg.Get("follow").Bool();
    int64_t tail = msg.Get("tail").IntIn(0, INT32_MAX, -1);  // -1: all of it
    if (request_id.empty() || request_id.size() > 64) return;
    for (unsigned char c : request_id) {
      if (!isalnum(c) && c != '-' && c != '_') return;
    }
    // Refused as the real agent refuses: the server answers the client 404.
    auto refuse = [&](const std::string& message) {
      http::ClientRequest req = Request("POST", "/v1/agent/logs/" + request_id, message + "\n");
      req.headers.push_back({"X-Berth-Log-Error", "not-found"});
      Reporter().Send(std::move(req), [](Result<http::ClientResponse>) {});
    };
    auto task = node.tasks.find(task_id);
    if (task == node.tasks.end()) return refuse("no task " + task_id + " on node " + node.id);
    const std::vector<SimContainer>& containers = task->second.containers;
    if (container.empty()) {
      container = containers.empty() ? "main" : containers[0].name;
    } else if (!containers.empty() && std::none_of(containers.begin(), containers.end(),
                                                   [&](const SimContainer& c) { return c.name == container; })) {
      return refuse("no container " + container + " of task " + task_id + " on node " + node.id);
    }
    auto log = std::make_shared<SimLog>();
    log->task = task_id;
    log->container = container;
    log->follow = follow;
    // The made-up past is three lines; `tail` keeps the newest of them.
    constexpr int64_t kPast = 3;
    int64_t shown = tail < 0 ? kPast : std::min(tail, kPast);
    log->ticks = kPast - shown;
    for (int64_t i = 0; i < shown; i++) log->Line();
    log->done = !follow;
    http::ClientOptions opts{24ull * 3600 * 1000, 1 << 20};
    opts.tls = tls_;
    log->client = std::make_unique<http::Client>(loop_, endpoint_, opts);
    log->next_ms = NowMs(loop_) + 1000;
    uint64_t key = next_log_++;
    logs_[key] = log;
    http::ClientRequest req = Request("POST", "/v1/agent/logs/" + request_id);
    req.headers.push_back({"Content-Type", "application/octet-stream"});
    req.body_source = [log](std::string* piece) {
      piece->swap(log->pending);
      log->pending.clear();
      return !log->done;
    };
    log->client->Send(std::move(req), [this, key](Result<http::ClientResponse>) {
      // The client is on the stack: it goes on the next tick.
      auto it = logs_.find(key);
      if (it == logs_.end()) return;
      it->second->done = true;
      Bury(std::move(it->second->client));
      logs_.erase(it);
    });
  }

  uv_loop_t* loop() { return loop_; }
  const SimOptions& options() const { return o_; }
  const net::Endpoint& endpoint() const { return endpoint_; }
  const std::shared_ptr<net::tls::ClientContext>& tls() const { return tls_; }
  // How often each node reports at least: what the server's last answer said
  // (it grows with the number of agents).
  int64_t heartbeat_ms = 2000;
  void TakeHeartbeatInterval(json::View answer) {
    if (std::optional<int64_t> ms = HeartbeatIntervalOf(answer)) heartbeat_ms = *ms;
  }

 private:
  struct SimLog {
    std::unique_ptr<http::Client> client;
    std::string task, container;
    bool follow = false;
    bool done = false;
    int64_t ticks = 0;
    int64_t next_ms = 0;
    std::string pending;  // frames not yet handed to the POST: "<hex length>\n<bytes>"
    void Line() {
      std::string text = UtcIso8601(SystemClock::Get().NowUnixMs()) + " task " + task + " container " + container +
                         ": tick " + std::to_string(ticks++) + "\n";
      char head[24];
      snprintf(head, sizeof head, "%zx\n", text.size());
      pending.append(head).append(text);
    }
  };

  struct Due {
    int64_t at;
    uint64_t seq;
    SimNode* node;
    std::string task;
    bool fail;
    bool operator>(const Due& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  void Tick() {
    dead_.clear();
    int64_t now = NowMs(loop_);
    for (auto& [key, log] : logs_) {
      if (!log->follow || log->done || now < log->next_ms || !log->client) continue;
      log->Line();
      log->next_ms += 1000;
      log->client->ResumeBody();
    }
    while (!due_.empty() && due_.top().at <= now) {
      Due d = due_.top();
      due_.pop();
      d.node->TaskRan(d.task, d.fail);
    }
    for (auto& n : nodes_) {
      if (!n->registered) {
        if (now >= n->next_attempt_ms && !n->report_in_flight) n->Start();
        continue;
      }
      if (n->report_in_flight) continue;
      if ((!n->dirty.empty() || n->proxy_unreported || !n->health_unreported.empty()) &&
          now - n->last_report_ms >= kReportBatchMs)
        n->Report(false);
      else if (now - n->last_report_ms >= heartbeat_ms)
        n->Report(true);
      if (!n->stream && now >= n->next_attempt_ms) n->Start();
    }
  }

  uv_loop_t* loop_;
  SimOptions o_;
  std::mt19937_64 rng_;
  net::Timer timer_;
  net::Endpoint endpoint_;
  std::shared_ptr<net::tls::ClientContext> tls_;
  std::vector<std::unique_ptr<http::Client>> reporters_;
  size_t next_reporter_ = 0;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::vector<std::unique_ptr<http::Client>> dead_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due_;
  uint64_t seq_ = 0;
  std::map<uint64_t, std::shared_ptr<SimLog>> logs_;
  uint64_t next_log_ = 0;
};

SimNode::SimNode(Simulation* sim, int index) : sim_(sim), index_(index) {
  char buf[64];
  snprintf(buf, sizeof buf, "%s-%05d", sim->options().id_prefix.c_str(), index);
  id = buf;
}

void SimNode::Start() {
  if (!registered) {
    Register();
    return;
  }
  OpenStream();
}

void SimNode::Register() {
  const SimOptions& o = sim_->options();
  json::Doc attrs = json::Doc::Object();
  attrs.Set("zone", "zone-" + std::string(1, static_cast<char>('a' + index_ % std::max(1, o.zones))))
      .Set("os", "linux")
      .Set("arch", "x86_64")
      .Set("simulated", "true");
  json::Doc body = json::Doc::Object();
  body.Set("cluster", o.cluster)
      .Set("nodeId", id)
      .Set("hostname", id)
      .Set("agentVersion", BERTH_VERSION)
      .Set("address", "10." + std::to_string((index_ >> 16) & 255) + "." + std::to_string((index_ >> 8) & 255) + "." +
                          std::to_string(index_ & 255 ? index_ & 255 : 254))
      .Set("cpu", o.node_cpu)
      .Set("memory", o.node_memory)
      .Set("attributes", attrs);
  report_in_flight = true;
  sim_->Reporter().Send(
      sim_->Request("POST", "/v1/agent/register", body.Print()), [this](Result<http::ClientResponse> r) {
        report_in_flight = false;
        if (!r || r->status != 200) {
          failures++;
          next_attempt_ms = NowMs(sim_->loop()) + sim_->Jitter(std::min(30000, 500 << std::min(failures, 6)));
          if (failures == 1 || failures % 10 == 0) {
            log::Warn("sim", "register failed", {{"node", id}, {"error", r ? r->body : r.error().message}});
          }
          return;
        }
        Result<json::Doc> doc = json::Doc::Parse(r->body);
        if (doc) sim_->TakeHeartbeatInterval(doc->view());
        registered = true;
        failures = 0;
        OpenStream();
      });
}

void SimNode::OpenStream() {
  http::ClientOptions opts;
  opts.timeout_ms = 45000;  // the server pings every 10 s
  opts.tls = sim_->tls();
  stream = std::make_unique<http::Client>(sim_->loop(), sim_->endpoint(), opts);
  line_.clear();
  defs_.clear();
  have_version_ = false;
  stream->Send(
      sim_->Request("GET", "/v1/agent/nodes/" + id + "/desired?changes=1"),
      [this, raw = stream.get()](Result<http::ClientResponse> r) {
        if (stream.get() != raw) return;  // dropped already (a line out of order)
        std::string why = r ? "the stream ended (HTTP " + std::to_string(r->status) + ")" : r.error().message;
        bool gone = r && r->status == 404;
        // Destroying the client from inside its callback is not allowed: defer.
        OnStreamEnd(why, gone);
      },
      [this, raw = stream.get()](std::string_view data) {
        if (stream.get() == raw) OnStreamData(data);
      });
}

void SimNode::OnStreamEnd(const std::string& why, bool not_registered) {
  failures++;
  if (not_registered) registered = false;
  next_attempt_ms = NowMs(sim_->loop()) + sim_->Jitter(std::min(30000, 250 << std::min(failures, 7)));
  if (failures == 1 || failures % 10 == 0) log::Warn("sim", "stream lost", {{"node", id}, {"why", why}});
  // The client is on the stack now: it is freed on the next tick.
  sim_->Bury(std::move(stream));
}

void SimNode::OnStreamData(std::string_view data) {
  if (!data.empty()) failures = 0;
  line_.append(data);
  size_t start = 0;
  for (;;) {
    size_t nl = line_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(line_.data() + start, nl - start);
    start = nl + 1;
    if (line.empty()) continue;
    Result<json::Doc> msg = json::Doc::Parse(line);
    if (!msg) {
      log::Warn("sim", "bad line on the stream", {{"node", id}, {"error", msg.error().message}});
      continue;
    }
    std::string_view type = msg->view().Get("type").String();
    if (type == "changes" && (!have_version_ || msg->view().Get("since").Number() != static_cast<double>(version_))) {
      // A line was missed: the whole set comes again on a new stream.
      OnStreamEnd("a changes line does not follow the last line", false);
      return;
    }
    if (type == "desired" || type == "changes") Apply(msg->view(), type == "desired");
    if (type == "logs") sim_->StartLogs(*this, msg->view());
  }
  line_.erase(0, start);
}

// A `desired` line is the whole truth about this node; a `changes` line says
// what differs from the lines before it on this stream.
void SimNode::Apply(json::View msg, bool whole) {
  for (json::View d : msg.Get("taskDefinitions")) {
    std::vector<SimContainer> containers;
    for (json::View c : d.Get("containerDefinitions")) {
      json::View hc = c.Get("healthCheck").Get("command");
      SimContainer sc{
          std::string(c.Get("name").String()), hc.IsArray() && hc.Size() > 0 && (*hc.begin()).String() != "NONE", {}};
      for (json::View pm : c.Get("portMappings")) {
        sc.ports.push_back({static_cast<int>(pm.Get("containerPort").IntIn(0, 65535, 0)),
                            static_cast<int>(pm.Get("hostPort").IntIn(0, 65535, 0)),
                            pm.Get("protocol").String() == "udp"});
      }
      containers.push_back(std::move(sc));
    }
    if (containers.empty()) containers.push_back({"main", false, {}});
    defs_[std::string(d.Key())] = std::move(containers);
  }
  auto containers_of = [&](std::string_view ref) {
    auto it = defs_.find(ref);
    return it != defs_.end() ? it->second : std::vector<SimContainer>{{"main", false, {}}};
  };
  std::set<std::string> present;
  for (json::View t : msg.Get("tasks")) {
    std::string task_id(t.Get("taskId").String());
    if (whole) present.insert(task_id);
    std::string desired(t.Get("desiredStatus").String());
    auto it = tasks.find(task_id);
    if (it == tasks.end()) {
      if (desired != "RUNNING") {
        // Never started here: report it stopped so the server can forget it.
        tasks[task_id] = SimTask{"STOPPED", false, true, containers_of(t.Get("taskDefinition").String())};
        dirty.insert(task_id);
        continue;
      }
      tasks[task_id] = SimTask{"PENDING", false, false, containers_of(t.Get("taskDefinition").String())};
      dirty.insert(task_id);
      sim_->Later(sim_->options().start_delay_ms, this, task_id, sim_->Fail());
      continue;
    }
    if (desired == "STOPPED" && it->second.last != "STOPPED" && !it->second.stopping) {
      it->second.stopping = true;
      it->second.last = "STOPPED";
      it->second.reported = false;
      dirty.insert(task_id);
    } else if (it->second.reported && std::string(t.Get("lastStatus").String()) != it->second.last) {
      // The server missed a report (e.g. after its restart): say it again.
      it->second.reported = false;
      dirty.insert(task_id);
    }
  }
  if (whole) {
    for (auto it = tasks.begin(); it != tasks.end();) {
      if (!present.count(it->first)) {
        dirty.erase(it->first);
        it = tasks.erase(it);
      } else {
        ++it;
      }
    }
  } else {
    for (json::View r : msg.Get("removed")) {
      std::string task_id(r.String());
      dirty.erase(task_id);
      tasks.erase(task_id);
    }
  }
  version_ = static_cast<uint64_t>(msg.Get("version").IntIn(0, INT64_MAX, 0));
  have_version_ = true;
  // A proxy configuration: nothing runs it here, but its version is reported
  // applied, as a node's agent does (agent/proxy_sink.h).
  // With no traffic, every draining target is drained at once.
  if (json::View proxy = msg.Get("proxy"); proxy.IsObject()) {
    int64_t version = proxy.Get("version").IntIn(0, INT64_MAX, 0);
    if (version > proxy_version_) {
      proxy_version_ = version;
      proxy_drained_.clear();
      for (json::View g : proxy.Get("targetGroups")) {
        for (json::View t : g.Get("targets")) {
          if (t.Get("state").String() == "draining") proxy_drained_.insert(std::string(t.Get("id").String()));
        }
      }
      proxy_unreported = true;
    }
  }
  // Health checks: every target listed is healthy at once. A `desired` line
  // begins a stream (the server may have forgotten them all) and carries the
  // node's checks whenever it has some.
  json::View checks = msg.Get("checks");
  if (whole && !checks.valid()) checked_.clear();
  if (checks.valid()) {
    Result<ChecksDoc> doc = ParseChecks(checks);
    if (!doc) {
      log::Warn("sim", "refused the health checks", {{"node", id}, {"error", doc.error().message}});
    } else if (doc->version > checks_version_) {
      checks_version_ = doc->version;
      std::set<std::pair<std::string, std::string>> listed;
      for (const TargetCheck& c : doc->targets) {
        std::pair<std::string, std::string> key(c.task_id, c.target_group);
        if (!checked_.count(key)) health_unreported.insert(key);
        listed.insert(std::move(key));
      }
      checked_ = std::move(listed);
    }
  }
  if (whole) health_unreported = checked_;
  std::erase_if(health_unreported, [this](const auto& key) { return !checked_.count(key); });
}

void SimNode::TaskRan(const std::string& task_id, bool failed) {
  auto it = tasks.find(task_id);
  if (it == tasks.end() || it->second.last != "PENDING") return;
  it->second.last = failed ? "STOPPED" : "RUNNING";
  it->second.reported = false;
  dirty.insert(task_id);
}

void SimNode::Report(bool heartbeat_only) {
  json::Doc list = json::Doc::Array();
  std::vector<std::pair<std::string, std::string>> sent;  // (task id, the status sent)
  if (!heartbeat_only) {
    for (const std::string& task_id : dirty) {
      auto it = tasks.find(task_id);
      if (it == tasks.end()) continue;
      const SimTask& t = it->second;
      json::Doc containers = json::Doc::Array();
      for (const SimContainer& sc : t.containers) {
        json::Doc c = json::Doc::Object();
        c.Set("name", sc.name).Set("lastStatus", t.last);
        if (t.last == "STOPPED") c.Set("exitCode", t.stopping ? 0 : 1);
        c.Set("healthStatus", sc.health_check && t.last == "RUNNING" ? "HEALTHY" : "UNKNOWN");
        if (t.last == "RUNNING" && !sc.ports.empty()) {
          // Made-up host ports: the fixed one, or a dynamic one of Docker's
          // range that stays the same for the task.
          json::Doc bindings = json::Doc::Array();
          for (const SimContainer::Port& p : sc.ports) {
            // A port's TCP and UDP bindings differ, as they may under Docker.
            int port =
                p.host ? p.host
                       : 32768 + static_cast<int>((std::hash<std::string>{}(task_id) + p.container + p.udp) % 28000);
            bindings.Push(json::Doc::Object()
                              .Set("containerPort", p.container)
                              .Set("hostPort", port)
                              .Set("protocol", p.udp ? "udp" : "tcp")
                              .Set("bindIP", "0.0.0.0"));
          }
          c.Set("networkBindings", bindings);
        }
        containers.Push(c);
      }
      json::Doc entry = json::Doc::Object();
      entry.Set("taskId", task_id).Set("lastStatus", t.last).Set("containers", containers);
      if (t.last == "STOPPED") entry.Set("reason", t.stopping ? "stopped as asked" : "simulated failure (exit code 1)");
      list.Push(entry);
      sent.emplace_back(task_id, t.last);
    }
  }
  report_in_flight = true;
  last_report_ms = NowMs(sim_->loop());
  json::Doc body = json::Doc::Object();
  body.Set("tasks", list);
  int64_t proxy_version = proxy_version_;
  if (proxy_version > 0) {
    json::Doc drained = json::Doc::Array();
    for (const std::string& id : proxy_drained_) drained.Push(id);
    body.Set("proxyVersion", proxy_version).Set("proxyDrained", drained);
  }
  std::vector<std::pair<std::string, std::string>> healthy;
  if (!health_unreported.empty()) {
    json::Doc entries = json::Doc::Array();
    for (const auto& key : health_unreported) {
      if (healthy.size() >= kMaxHealthPerReport) break;
      entries.Push(json::Doc::Object()
                       .Set("taskId", key.first)
                       .Set("targetGroup", key.second)
                       .Set("state", "healthy")
                       .Set("reason", "")
                       .Set("description", ""));
      healthy.push_back(key);
    }
    body.Set("targetHealth", entries);
  }
  sim_->Reporter().Send(sim_->Request("POST", "/v1/agent/nodes/" + id + "/report", body.Print()),
                        [this, sent, proxy_version, healthy](Result<http::ClientResponse> r) {
                          report_in_flight = false;
                          if (!r || r->status != 200) {
                            if (r && r->status == 404) registered = false;
                            return;  // kept dirty: sent again with the next report
                          }
                          if (Result<json::Doc> d = json::Doc::Parse(r->body); d)
                            sim_->TakeHeartbeatInterval(d->view());
                          if (proxy_version == proxy_version_) proxy_unreported = false;
                          for (const auto& key : healthy) health_unreported.erase(key);
                          // A task that moved on while the report was in flight
                          // (RUNNING after the PENDING sent) stays dirty.
                          for (const auto& [task_id, last] : sent) {
                            auto it = tasks.find(task_id);
                            if (it != tasks.end() && it->second.last != last) continue;
                            if (it != tasks.end()) it->second.reported = true;
                            dirty.erase(task_id);
                          }
                        });
}

}  // namespace

int RunSimulation(const SimOptions& options) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);  // as the agent: a reload asked of it is not fatal
  uv_loop_t* loop = net::DefaultLoop();
  Simulation sim(loop, options);
  if (int rc = sim.Run(); rc != 0) return rc;
  auto stop = [loop](int) { net::StopLoop(loop); };
  net::SignalWatch sigterm(loop, SIGTERM, stop);
  net::SignalWatch sigint(loop, SIGINT, stop);
  net::RunLoop(loop);
  return 0;
}

}  // namespace berth::agent
