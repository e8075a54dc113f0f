#include "api/agents.h"

#include <algorithm>
#include <optional>

#include "api/api.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "control/drains.h"
#include "control/proxy_config.h"
#include "net/pki.h"

namespace berth::api {

namespace {
// The most draining targets one report may list as drained.
constexpr size_t kMaxDrainedReported = 100000;
}  // namespace

namespace http = net::http;

AgentHub::AgentHub(model::State* state, store::Store* store, const Clock* clock, AgentOptions options,
                   metrics::Registry* metrics)
    : state_(state), store_(store), clock_(clock), options_(options), started_ms_(clock->NowUnixMs()) {
  state_->AddObserver(this);
  if (metrics) {
    desired_lines_ =
        metrics->Counters("berth_agent_desired_lines_total", "Desired-state lines sent to agents")->With({});
    desired_bytes_ =
        metrics->Counters("berth_agent_desired_bytes_total", "Bytes of the desired-state lines sent to agents")
            ->With({});
  }
}

AgentHub::~AgentHub() {
  for (auto& [id, s] : streams_) {
    s.ex->on_abort = nullptr;
    s.ex->End();
  }
}

void AgentHub::OnNodeRemoved(const model::Node& n) {
  dirty_.erase(n.id);
  // Told after the commit (Flush): a removal that does not commit never reaches
  // the agent, which would stop its tasks.
  if (streams_.count(n.id)) removed_.insert(n.id);
}

void AgentHub::OnReloaded() {
  // Memory was rebuilt from disk (a commit failed): what the streams were sent
  // may be ahead of it, so each gets its whole set again.
  removed_.clear();
  for (auto& [id, s] : streams_) {
    s.sent_version = UINT64_MAX;
    dirty_.insert(id);
  }
}

void AgentHub::CloseStream(const std::string& node_id) {
  auto it = streams_.find(node_id);
  if (it == streams_.end()) return;
  http::ExchangePtr ex = it->second.ex;
  streams_.erase(it);
  ex->on_abort = nullptr;
  ex->End();
  state_->SetNodeConnected(node_id, false, clock_->NowUnixMs());
}

void AgentHub::Lead(bool leading) {
  if (drains_) drains_->Lead(leading);
  if (leading) {
    started_ms_ = clock_->NowUnixMs();
    return;
  }
  std::vector<std::string> ids;
  for (const auto& [id, s] : streams_) ids.push_back(id);
  for (const std::string& id : ids) CloseStream(id);
}

// The values of the secrets a task's definition takes, for the node about to start
// it (only then: a task already running or stopped gets none): "secrets" with each
// value in base64, or "secretError" naming the first that cannot be given, which
// the agent makes the task's stopped reason.
void AgentHub::AppendSecrets(std::string* out, const model::TaskDefinition& td, const std::string& cluster) const {
  std::string list;
  for (const model::SecretRef& r : td.secrets) {
    const model::Secret* sec = state_->FindSecret(r.secret);
    bool for_cluster = !sec || sec->clusters.empty() ||
                       std::find(sec->clusters.begin(), sec->clusters.end(), cluster) != sec->clusters.end();
    Result<std::string> value =
        !sec ? Result<std::string>(
                   Error::NotFound("ResourceNotFoundException", "secret " + r.secret + " does not exist"))
        : !for_cluster      ? Result<std::string>(Error::Invalid("it is kept for tasks of other clusters"))
        : !options_.secrets ? Result<std::string>(Error::Internal("this server holds no secret key"))
                            : options_.secrets->Open(*sec);
    if (!value) {
      out->append(",\"secretError\":");
      json::AppendQuoted(out, "ResourceInitializationError: unable to get secret " + r.secret + " for " +
                                  (r.file ? "the file /run/secrets/" : "the variable ") + r.name + " of container " +
                                  r.container + ": " + value.error().message);
      return;
    }
    list.append(list.empty() ? "{\"container\":" : ",{\"container\":");
    json::AppendQuoted(&list, r.container);
    list.append(",\"name\":");
    json::AppendQuoted(&list, r.name);
    list.append(r.file ? ",\"file\":true" : "");
    list.append(",\"valueBase64\":");
    json::AppendQuoted(&list, crypto::Base64Encode(value.value()));
    list.push_back('}');
    std::fill(value->begin(), value->end(), '\0');
  }
  out->append(",\"secrets\":[").append(list).append("]");
  std::fill(list.begin(), list.end(), '\0');
}

// The line is built by appending, not through a JSON tree: at scale the server
// sends one per node whose set changed after every flush, and a tree of small
// allocations per task was a large share of a scale-up's CPU.
const std::string& AgentHub::ServersJson() const {
  int64_t now = clock_->NowUnixMs();
  if (now - servers_at_ms_ < 1000 && servers_at_ms_ != INT64_MIN) return servers_json_;
  servers_at_ms_ = now;
  servers_json_ = "[";
  for (const std::string& url : options_.server_urls()) {
    if (servers_json_.size() > 1) servers_json_.push_back(',');
    json::AppendQuoted(&servers_json_, url);
  }
  servers_json_.push_back(']');
  return servers_json_;
}

bool AgentHub::Stopping(const model::Task& t) const {
  return t.desired == "STOPPED" && !(drains_ && drains_->Held(t.id));
}

std::string AgentHub::DesiredMessage(const model::Node& n, Stream* s) const {
  bool changes = s && s->changes && s->sent_version != UINT64_MAX;
  std::string out;
  out.reserve(160 + (changes ? 320 : n.tasks.size() * 320));
  std::string defs;
  std::vector<const model::TaskDefinition*> seen;
  auto append_task = [&](const model::Task& t, bool first) {
    std::string ref = t.family + ":" + std::to_string(t.revision);
    out.append(first ? "{\"taskId\":" : ",{\"taskId\":");
    json::AppendQuoted(&out, t.id);
    out.append(",\"taskArn\":");
    json::AppendQuoted(&out, t.arn);
    out.append(",\"cluster\":");
    json::AppendQuoted(&out, t.cluster);
    out.append(",\"taskDefinition\":");
    json::AppendQuoted(&out, ref);
    out.append(",\"desiredStatus\":");
    // A target held while its proxies drain it is still to run (control/drains.h).
    json::AppendQuoted(&out, t.desired == "STOPPED" && !Stopping(t) ? "RUNNING" : t.desired);
    out.append(",\"lastStatus\":");
    json::AppendQuoted(&out, t.last);
    out.append(",\"group\":");
    json::AppendQuoted(&out, t.group);
    if (!t.service.empty()) {
      out.append(",\"service\":");
      json::AppendQuoted(&out, t.service);
    }
    const model::TaskDefinition* td = state_->FindTaskDefinition(t.family, t.revision);
    if (td && !td->secrets.empty() && t.desired == "RUNNING" && t.last != "RUNNING" && t.last != "STOPPED") {
      AppendSecrets(&out, *td, t.cluster);
    }
    out.push_back('}');
    if (!td || std::find(seen.begin(), seen.end(), td) != seen.end()) return;
    seen.push_back(td);
    // Definitions never change once registered: a stream carries each one once.
    if (s && s->changes && !s->defs.insert(ref).second) return;
    defs.append(defs.empty() ? "" : ",");
    json::AppendQuoted(&defs, ref);
    defs.push_back(':');
    defs.append(td->JsonText());
  };
  out.append(changes ? "{\"type\":\"changes\",\"nodeId\":" : "{\"type\":\"desired\",\"nodeId\":");
  json::AppendQuoted(&out, n.id);
  out.append(",\"version\":").append(std::to_string(n.desired_version));
  if (options_.term) out.append(",\"term\":").append(std::to_string(options_.term()));
  if (changes) out.append(",\"since\":").append(std::to_string(s->sent_version));
  // The cluster's servers travel with the desired state (in a changes line only
  // when they changed), so an agent knows where to turn when its server goes.
  if (options_.server_urls) {
    const std::string& servers = ServersJson();
    if (!changes || s->servers != servers) {
      out.append(",\"servers\":").append(servers);
      if (s) s->servers = servers;
    }
  }
  // The cluster's task policy, which the agent enforces too: in every whole line,
  // and in a changes line when it differs from what the stream carried.
  if (const model::Cluster* cl = state_->FindCluster(n.cluster)) {
    if (!changes || s->policy != cl->policy_json) {
      out.append(",\"policy\":").append(cl->policy_json);
      if (s) s->policy = cl->policy_json;
    }
  }
  // The node's proxy configuration (control/proxy_config.h), to members of a
  // load balancer only: in every whole line, and in a changes line when it
  // differs from what the stream carried.
  if (proxies_) {
    int64_t v = proxies_->Version(n.id);
    if (v > 0 && (!changes || s->proxy_version != v)) {
      out.append(",\"proxy\":").append(proxies_->Document(n.id));
      if (s) s->proxy_version = v;
    }
    // The target health checks the node runs, the same way.
    int64_t cv = proxies_->ChecksVersion(n.id);
    if (cv > 0 && (!changes || s->checks_version != cv)) {
      out.append(",\"checks\":").append(proxies_->Checks(n.id));
      if (s) s->checks_version = cv;
    }
  }
  out.append(",\"tasks\":[");
  bool first = true;
  if (!changes) {
    if (s && s->changes) s->sent.clear();
    for (const auto& [id, t] : n.tasks) {
      append_task(*t, first);
      first = false;
      if (s && s->changes) s->sent.emplace(id, Stopping(*t));
    }
    out.append("]");
  } else {
    // What differs from what this stream carried: new tasks, tasks now to be
    // stopped, and tasks the node no longer holds.
    for (const auto& [id, t] : n.tasks) {
      bool stopping = Stopping(*t);
      auto [it, added] = s->sent.try_emplace(id, stopping);  // no copy of the id when known
      if (!added && it->second == stopping) continue;
      it->second = stopping;
      append_task(*t, first);
      first = false;
    }
    out.append("],\"removed\":[");
    first = true;
    if (s->sent.size() > n.tasks.size()) {
      for (auto it = s->sent.begin(); it != s->sent.end();) {
        if (n.tasks.count(it->first)) {
          ++it;
          continue;
        }
        if (!first) out.push_back(',');
        first = false;
        json::AppendQuoted(&out, it->first);
        it = s->sent.erase(it);
      }
    }
    out.append("]");
  }
  out.append(",\"taskDefinitions\":{").append(defs).append("}}\n");
  return out;
}

void AgentHub::Send(const std::string& node_id, Stream& s) {
  const model::Node* n = state_->FindNode(node_id);
  if (!n) return;
  if (s.sent_version == n->desired_version) return;
  std::string line = DesiredMessage(*n, &s);
  if (desired_lines_) {
    desired_lines_->Inc();
    desired_bytes_->Inc(line.size());
  }
  s.ex->Write(line);
  s.sent_version = n->desired_version;
  s.last_write_ms = clock_->NowUnixMs();
}

std::string RepositoryOf(std::string_view image) {
  size_t slash = image.find('/');
  if (slash == std::string_view::npos) return "";
  std::string_view host = image.substr(0, slash);
  if (host.find_first_of(".:") == std::string_view::npos && host != "localhost") return "";
  std::string_view rest = image.substr(slash + 1);
  if (size_t at = rest.find('@'); at != std::string_view::npos) rest = rest.substr(0, at);
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
    rest = rest.substr(0, colon);
  }
  return std::string(rest);
}

bool AgentHub::MayActFor(const http::ExchangePtr& ex, const model::Node& n) {
  const std::string& who = ex->principal;
  if (who == "node:" + n.id || (!n.identity.empty() && n.identity == "token:" + who)) return true;
  std::string as = who.starts_with("node:") ? "the certificate of " + who.substr(5) : "token " + who;
  ex->Respond(http::ErrorResponse(403, "Forbidden", as + " may not act for node " + n.id));
  return false;
}

void AgentHub::Flush() {
  // Proxy documents that changed give their nodes a new desired version first;
  // then the drains they began take those versions, and those done are released.
  if (proxies_) proxies_->Flush();
  if (drains_) drains_->AfterProxiesFlushed();
  // A revoked token's nodes lose their streams (they joined with it, without a
  // certificate); their next call is refused.
  if (!removed_tokens_.empty()) {
    std::vector<std::string> closing;
    for (const auto& [id, s] : streams_) {
      const model::Node* n = state_->FindNode(id);
      if (n && n->identity.starts_with("token:") && removed_tokens_.count(n->identity.substr(6))) {
        closing.push_back(id);
      }
    }
    for (const std::string& id : closing) {
      log::Info("agents", "closing the stream of a node whose token was revoked", {{"node", id}});
      CloseStream(id);
    }
    removed_tokens_.clear();
  }
  for (const std::string& id : removed_) {
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    // The agent learns it is gone when its stream ends.
    std::string line = "{\"type\":\"deregistered\",\"nodeId\":";
    json::AppendQuoted(&line, id);
    if (options_.term) line.append(",\"term\":").append(std::to_string(options_.term()));
    it->second.ex->Write(line + "}\n");
    CloseStream(id);
  }
  removed_.clear();
  SendDirty();
}

void AgentHub::SendDirty() {
  if (dirty_.empty()) return;
  std::unordered_set<std::string> dirty = std::move(dirty_);
  dirty_.clear();
  for (const std::string& id : dirty) {
    auto it = streams_.find(id);
    if (it != streams_.end()) Send(id, it->second);
  }
}

int64_t AgentHub::HeartbeatInterval() const {
  int64_t ms = options_.heartbeat_interval_ms;
  if (options_.max_heartbeats_per_s <= 0) return ms;
  // As Nomad does: the cluster's heartbeat rate stays bounded however many nodes
  // there are, at the price of noticing a silent (not a disconnected) agent later.
  int64_t n = static_cast<int64_t>(streams_.size());
  return std::max(ms, (n * 1000 + options_.max_heartbeats_per_s - 1) / options_.max_heartbeats_per_s);
}

void AgentHub::Tick() {
  int64_t now = clock_->NowUnixMs();
  // Streams that carried nothing for a while get a ping line; an agent that stopped
  // reporting is treated as gone.
  std::vector<std::string> silent, expired;
  for (auto& [id, s] : streams_) {
    const model::Node* n = state_->FindNode(id);
    // A node bound to a token that expired (or went) loses its stream at once.
    if (n && n->identity.starts_with("token:")) {
      const model::Token* t = state_->FindToken(std::string_view(n->identity).substr(6));
      if (!t || (t->expires_ms && t->expires_ms <= now)) {
        expired.push_back(id);
        continue;
      }
    }
    if (n && now - n->last_heartbeat_ms > 3 * s.interval_ms) {  // never below heartbeat_interval_ms
      silent.push_back(id);
      continue;
    }
    if (now - s.last_write_ms >= options_.stream_ping_ms) {
      // A server joined or left since this stream heard the list: it rides along.
      if (options_.server_urls && s.servers != ServersJson()) {
        s.servers = ServersJson();
        s.ex->Write("{\"type\":\"ping\",\"servers\":" + s.servers + "}\n");
      } else {
        s.ex->Write("{\"type\":\"ping\"}\n");
      }
      s.last_write_ms = now;
    }
  }
  for (const std::string& id : silent) {
    log::Warn("agents", "agent stopped reporting; closing its stream", {{"node", id}});
    CloseStream(id);
  }
  for (const std::string& id : expired) {
    log::Info("agents", "closing the stream of a node whose token expired", {{"node", id}});
    CloseStream(id);
  }
  ExpireLogRequests(now);
  // Deregistration delays and the grace of agents away run out with time.
  if (drains_) {
    drains_->Settle();
    SendDirty();
  }
  // After a restart of this server every agent counts as away from the start, so
  // nothing is declared lost before agents had the grace period to come back.
  for (const auto& [id, n] : state_->nodes()) {
    if (n.connected || n.tasks.empty() || lost_pending_.count(id)) continue;
    int64_t away_since = std::max(n.disconnected_since_ms, started_ms_);
    if (now - away_since < options_.lost_after_ms) continue;
    auto cmd = std::make_unique<model::NodeLost>();
    cmd->node = id;
    cmd->reason =
        "node " + id + " lost: its agent has been unreachable for " + std::to_string((now - away_since) / 1000) + " s";
    cmd->time_ms = now;
    lost_pending_.insert(id);
    log::Warn("agents", "node lost", {{"node", id}, {"tasks", static_cast<uint64_t>(n.tasks.size())}});
    std::string node_id = id;
    store_->Submit(std::move(cmd), [this, node_id](Result<std::string>) { lost_pending_.erase(node_id); });
  }
}

Result<std::vector<model::ReportTasks::Health>> ParseTargetHealth(json::View list) {
  std::vector<model::ReportTasks::Health> out;
  if (!list.valid()) return out;
  if (!list.IsArray() || list.Size() > kMaxHealthReported) {
    return Error::Invalid("targetHealth: must be an array of at most " + std::to_string(kMaxHealthReported) +
                          " entries");
  }
  size_t i = 0;
  for (json::View h : list) {
    std::string where = "targetHealth[" + std::to_string(i++) + "]";
    json::View task = h.Get("taskId"), tg = h.Get("targetGroup"), st = h.Get("state");
    json::View reason = h.Get("reason"), description = h.Get("description");
    std::string why;
    if (!h.IsObject())
      why = ": must be an object";
    else if (!task.IsString() || task.String().empty() || task.String().size() > 64)
      why = ".taskId: must be a task id (1-64 characters)";
    else if (!tg.IsString() || !model::ValidateLbName(tg.String(), "targetGroup"))
      why = ".targetGroup: must be a target group's name";
    else if (!st.IsString() || (st.String() != "healthy" && st.String() != "unhealthy"))
      why = ".state: must be healthy or unhealthy";
    else if (reason.valid() && (!reason.IsString() || reason.String().size() > 64))
      why = ".reason: must be a string of at most 64 bytes";
    else if (description.valid() && (!description.IsString() || description.String().size() > 1024))
      why = ".description: must be a string of at most 1024 bytes";
    if (!why.empty()) return Error::Invalid(where + why);
    out.push_back({std::string(task.String()), std::string(tg.String()), std::string(st.String()),
                   std::string(reason.String()), std::string(description.String()).substr(0, 256)});
  }
  return out;
}

Result<std::vector<ReportedTask>> ParseReportedTasks(json::View tasks) {
  std::vector<ReportedTask> out;
  size_t i = 0;
  for (json::View t : tasks) {
    std::string path = "tasks[" + std::to_string(i++) + "]";
    ReportedTask r;
    Result<std::string> task_id = json::RequireString(t, "taskId", path + ".taskId");
    if (!task_id) return task_id.take_error();
    Result<std::string> last = json::RequireString(t, "lastStatus", path + ".lastStatus");
    if (!last) return last.take_error();
    if (*last != "PENDING" && *last != "RUNNING" && *last != "STOPPED") {
      return Error::Invalid(path + ".lastStatus: must be PENDING, RUNNING or STOPPED");
    }
    Result<std::string> reason = json::OptionalString(t, "reason", path + ".reason");
    if (!reason) return reason.take_error();
    json::View containers = t.Get("containers");
    if (containers.valid()) {
      if (Status s = model::ParseContainers(containers, &r.containers); !s) {
        return Error::Invalid(path + "." + s.error().message);
      }
    }
    r.task_id = std::move(task_id.value());
    r.last = std::move(last.value());
    r.reason = std::move(reason.value());
    r.containers_text = containers.valid() ? containers.Print() : "[]";
    out.push_back(std::move(r));
  }
  return out;
}

void AgentHub::AddRoutes(http::Router* router) {
  AddLogRoutes(router);
  http::RouteOptions agent_only;
  agent_only.access = http::Access::kAgent;
  router->Add(
      "POST", "/v1/agent/register",
      [this](const http::ExchangePtr& ex) {
        Result<json::Doc> body = json::Doc::Parse(ex->request().body);
        if (!body) return ex->Respond(http::ErrorResponse(body.error()));
        json::View v = body->view();
        if (!v.IsObject())
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "the body must be an object"));
        auto cmd = std::make_unique<model::RegisterNode>();
        Result<std::string> cluster = json::OptionalString(v, "cluster", "cluster", "default");
        Result<std::string> node_id = json::OptionalString(v, "nodeId", "nodeId");
        Result<std::string> hostname = json::OptionalString(v, "hostname", "hostname");
        Result<int64_t> cpu = json::OptionalInt(v, "cpu", "cpu", 0);
        Result<int64_t> memory = json::OptionalInt(v, "memory", "memory", 0);
        for (const Error* e : {cluster ? nullptr : &cluster.error(), node_id ? nullptr : &node_id.error(),
                               hostname ? nullptr : &hostname.error(), cpu ? nullptr : &cpu.error(),
                               memory ? nullptr : &memory.error()}) {
          if (e) return ex->Respond(http::ErrorResponse(*e));
        }
        // An agent token limited to some clusters joins nodes to those only.
        if (!ClusterInScope(*state_, ex, *cluster)) return;
        if (*cpu <= 0 || *memory <= 0) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "cpu and memory: must be above 0"));
        }
        json::View attrs = v.Get("attributes");
        if (attrs.valid() && !attrs.IsObject()) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "attributes: must be an object of strings"));
        }
        for (json::View a : attrs) {
          if (!a.IsString()) {
            return ex->Respond(http::ErrorResponse(400, "InvalidParameter",
                                                   "attributes." + std::string(a.Key()) + ": must be a string"));
          }
          cmd->attributes[std::string(a.Key())] = std::string(a.String());
        }
        if (cmd->attributes.size() > 64)
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "attributes: at most 64"));
        // reservedPorts: the host's own ports ("22", "7070", "53/udp"), never given to tasks.
        json::View reserved = v.Get("reservedPorts");
        if (reserved.valid() && !reserved.IsArray()) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "reservedPorts: must be an array"));
        }
        std::string ports_text;
        for (json::View p : reserved) {
          std::string item = p.IsNumber() ? std::to_string(p.IntIn(-1, 1 << 20, -1)) : std::string(p.String());
          if (!p.IsNumber() && !p.IsString()) item = "?";
          ports_text += (ports_text.empty() ? "" : ",") + item;
        }
        Result<std::vector<std::pair<int, bool>>> ports = model::ParsePortsText(ports_text);
        if (!ports)
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "reservedPorts: " + ports.error().message));
        cmd->reserved_ports = std::move(ports.value());
        Result<std::string> csr = json::OptionalString(v, "csr", "csr");
        if (!csr) return ex->Respond(http::ErrorResponse(csr.error()));
        Result<std::string> version = json::OptionalString(v, "agentVersion", "agentVersion");
        if (!version) return ex->Respond(http::ErrorResponse(version.error()));
        cmd->agent_version = std::move(version.value());
        // Where the node's host ports answer (`berth agent --advertise`); without
        // it, the address this registration came from (a Unix socket's: this host).
        const std::string& peer = ex->request().peer_ip;
        Result<std::string> address =
            json::OptionalString(v, "address", "address", peer == "unix" ? "127.0.0.1" : peer);
        if (!address) return ex->Respond(http::ErrorResponse(address.error()));
        if (address->size() > 255 ||
            address->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") !=
                std::string::npos) {
          return ex->Respond(http::ErrorResponse(
              400, "InvalidParameter", "address: an IP address or host name where the node's host ports answer"));
        }
        cmd->address = std::move(address.value());
        cmd->id = *node_id;
        // Who registers: a node by its certificate (only itself, again, or renewing
        // its certificate), or a token joining a node (a new one, or one bound to
        // that same token).
        const std::string& who = ex->principal;
        if (who.starts_with("node:")) {
          std::string self = who.substr(5);
          if (!cmd->id.empty() && cmd->id != self) {
            return ex->Respond(http::ErrorResponse(403, "Forbidden",
                                                   "the certificate of " + self + " may not register node " + cmd->id));
          }
          cmd->id = self;
        } else {
          const model::Node* known = cmd->id.empty() ? nullptr : state_->FindNode(cmd->id);
          if (known && known->identity != "token:" + who && !known->identity.empty()) {
            return ex->Respond(
                http::ErrorResponse(409, "NodeIdentityHeld",
                                    "node " + cmd->id + " is registered and proves itself with " +
                                        (known->identity.starts_with("cert:") ? "its certificate" : "another token") +
                                        ": only that may register it again (to join anew, deregister it first)"));
          }
          if (!known) cmd->join_token = who;
          if (known && known->identity.empty()) cmd->identity = "token:" + who;  // a node from before identities
        }
        if (cmd->id.empty()) {
          uint8_t raw[6];
          if (!crypto::RandomBytes(raw, sizeof raw))
            return ex->Respond(http::ErrorResponse(500, "InternalError", "no randomness"));
          cmd->id = "node-" + crypto::Hex(raw, sizeof raw);
        }
        if (Status s = model::ValidateNodeId(cmd->id); !s) return ex->Respond(http::ErrorResponse(s.error()));
        if (state_->IsNodeRevoked(cmd->id)) {
          return ex->Respond(
              http::ErrorResponse(403, "NodeRevoked", "node " + cmd->id + " was revoked: it may not register again"));
        }
        std::string certificate;
        if (!csr->empty()) {
          if (!options_.issue_node_cert) {
            return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "csr: this server issues no certificates"));
          }
          if (csr->size() > 16384) return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "csr: too long"));
          Result<std::string> cert = options_.issue_node_cert(*csr, cmd->id);
          if (!cert) return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "csr: " + cert.error().message));
          Result<net::pki::CertInfo> info = net::pki::Inspect(cert.value());
          if (!info) return ex->Respond(http::ErrorResponse(500, "InternalError", info.error().message));
          certificate = cert.value();
          cmd->identity = "cert:" + info->serial;
        } else if (!who.starts_with("node:") && !cmd->join_token.empty()) {
          cmd->identity = "token:" + who;  // bound to the token that joined it
        }
        cmd->cluster = *cluster;
        cmd->hostname = *hostname;
        cmd->cpu = *cpu;
        cmd->memory = *memory;
        cmd->time_ms = clock_->NowUnixMs();
        int64_t interval = HeartbeatInterval();
        std::string ca_pem = certificate.empty() ? "" : options_.ca_pem;
        std::optional<std::vector<std::string>> servers;
        if (options_.server_urls) servers = options_.server_urls();
        store_->Submit(std::move(cmd), [ex, interval, certificate, ca_pem, servers](Result<std::string> r) {
          if (!r) return ex->Respond(http::ErrorResponse(r.error()));
          Result<json::Doc> doc = json::Doc::Parse(*r);
          json::Doc out = json::Doc::Object();
          json::View ci = doc ? doc->view().Get("containerInstance") : json::View();
          out.Set("nodeId", std::string(ci.Get("nodeId").String()))
              .Set("containerInstanceArn", std::string(ci.Get("containerInstanceArn").String()))
              .Set("cluster", std::string(ci.Get("cluster").String()))
              .Set("heartbeatIntervalMs", interval);
          if (!certificate.empty()) out.Set("certificate", certificate).Set("caCertificate", ca_pem);
          if (servers) {
            // Every server of the cluster: the agent keeps them, to find the leader after a failover.
            json::Doc list = json::Doc::Array();
            for (const std::string& url : *servers) list.Push(url);
            out.Set("servers", list);
          }
          ex->Respond(http::JsonResponse(200, out.Print()));
        });
      },
      agent_only);

  http::RouteOptions stream_opts;
  stream_opts.access = http::Access::kAgent;
  router->Add(
      "GET", "/v1/agent/nodes/{id}/desired",
      [this](const http::ExchangePtr& ex) {
        std::string id(ex->request().Param("id"));
        const model::Node* n = state_->FindNode(id);
        if (!n) return ex->Respond(http::ErrorResponse(404, "NodeNotFound", "node " + id + " is not registered"));
        if (!MayActFor(ex, *n)) return;
        // One stream per node: a newer connection replaces an older one.
        if (streams_.count(id)) CloseStream(id);
        ex->Begin(200, {{"Cache-Control", "no-store"}}, -1, "application/x-ndjson");
        Stream& s = streams_[id];
        s.ex = ex;
        s.interval_ms = HeartbeatInterval();
        s.changes = ex->request().Query("changes").value_or("") == "1";
        ex->on_abort = [this, id, raw = ex.get()] {
          auto it = streams_.find(id);
          if (it == streams_.end() || it->second.ex.get() != raw) return;
          streams_.erase(it);
          state_->SetNodeConnected(id, false, clock_->NowUnixMs());
          log::Info("agents", "agent disconnected", {{"node", id}});
        };
        state_->SetNodeConnected(id, true, clock_->NowUnixMs());
        lost_pending_.erase(id);
        Send(id, s);
        log::Info("agents", "agent connected", {{"node", id}});
      },
      stream_opts);

  // Pull credentials: a node may pull the repositories its own tasks use, and
  // only those, with a registry token that lives minutes (never the agent's own
  // credentials on the wire to /v2/).
  http::RouteOptions credentials_opts;
  credentials_opts.access = http::Access::kAgent;
  credentials_opts.audit = false;  // asked before every pull
  router->Add(
      "POST", "/v1/agent/nodes/{id}/pull-credentials",
      [this](const http::ExchangePtr& ex) {
        std::string id(ex->request().Param("id"));
        const model::Node* n = state_->FindNode(id);
        if (!n) return ex->Respond(http::ErrorResponse(404, "NodeNotFound", "node " + id + " is not registered"));
        if (!MayActFor(ex, *n)) return;
        if (!options_.issue_pull_token) {
          return ex->Respond(http::ErrorResponse(404, "NotFound", "this server issues no pull credentials"));
        }
        Result<json::Doc> body = json::Doc::Parse(ex->request().body);
        if (!body) return ex->Respond(http::ErrorResponse(body.error()));
        Result<std::string> image = json::RequireString(body->view(), "image", "image");
        if (!image) return ex->Respond(http::ErrorResponse(image.error()));
        std::string repo = RepositoryOf(*image);
        if (repo.empty()) {
          return ex->Respond(http::ErrorResponse(
              400, "InvalidParameter", "image: " + *image + " names no registry host (host:port/repository)"));
        }
        bool used = false;
        for (const auto& [task_id, t] : n->tasks) {
          const model::TaskDefinition* td = state_->FindTaskDefinition(t->family, t->revision);
          if (!td) continue;
          for (const model::ContainerSummary& c : td->containers) used = used || RepositoryOf(c.image) == repo;
          if (used) break;
        }
        if (!used) {
          return ex->Respond(http::ErrorResponse(
              403, "Forbidden", "no task of node " + id + " uses repository " + repo + ": no pull credentials for it"));
        }
        json::Doc out = json::Doc::Object();
        out.Set("repository", repo)
            .Set("registryToken", options_.issue_pull_token(id, repo))
            .Set("expiresInMs", options_.pull_token_ttl_ms);
        ex->Respond(http::JsonResponse(200, out.Print()));
      },
      credentials_opts);

  http::RouteOptions report_opts;
  report_opts.access = http::Access::kAgent;
  report_opts.max_body = 8 << 20;
  report_opts.audit = false;  // every few seconds per node: routine, not a change anyone made
  router->Add(
      "POST", "/v1/agent/nodes/{id}/report",
      [this](const http::ExchangePtr& ex) {
        std::string id(ex->request().Param("id"));
        const model::Node* n = state_->FindNode(id);
        if (!n) return ex->Respond(http::ErrorResponse(404, "NodeNotFound", "node " + id + " is not registered"));
        if (!MayActFor(ex, *n)) return;
        Result<json::Doc> body = json::Doc::Parse(ex->request().body);
        if (!body) return ex->Respond(http::ErrorResponse(body.error()));
        json::View tasks = body->view().Get("tasks");
        if (tasks.valid() && !tasks.IsArray()) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "tasks: must be an array"));
        }
        // The proxy configuration version the agent applied (not state, like the
        // heartbeat), and the draining targets of that version with nothing in
        // flight (at most one per task its documents could list). Checked whole
        // before anything is taken.
        json::View pv = body->view().Get("proxyVersion");
        if (pv.valid() && (!pv.IsNumber() || pv.Number() < 0)) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "proxyVersion: must be a number, 0 or more"));
        }
        std::vector<std::string> drained;
        if (json::View list = body->view().Get("proxyDrained"); list.valid()) {
          if (!list.IsArray() || list.Size() > kMaxDrainedReported) {
            return ex->Respond(http::ErrorResponse(
                400, "InvalidParameter",
                "proxyDrained: must be an array of at most " + std::to_string(kMaxDrainedReported) + " task ids"));
          }
          size_t i = 0;
          for (json::View v : list) {
            if (!v.IsString() || v.String().empty() || v.String().size() > 64) {
              return ex->Respond(
                  http::ErrorResponse(400, "InvalidParameter",
                                      "proxyDrained[" + std::to_string(i) + "]: must be a task id (1-64 characters)"));
            }
            drained.emplace_back(v.String());
            i++;
          }
        }
        // Transitions of the target health checks the node runs (agent/target_checks.h).
        Result<std::vector<model::ReportTasks::Health>> parsed_health =
            ParseTargetHealth(body->view().Get("targetHealth"));
        if (!parsed_health) return ex->Respond(http::ErrorResponse(parsed_health.error()));
        std::vector<model::ReportTasks::Health> health = std::move(parsed_health.value());
        state_->Heartbeat(id, clock_->NowUnixMs());
        if (pv.valid()) {
          int64_t version = pv.IntIn(0, INT64_MAX, 0);
          state_->SetProxyVersion(id, version);
          if (drains_ && drains_->Reported(id, version, std::move(drained))) {
            drains_->Settle();
            SendDirty();
          }
        }
        auto cmd = std::make_unique<model::ReportTasks>();
        cmd->node = id;
        Result<std::vector<ReportedTask>> reported = ParseReportedTasks(tasks);
        if (!reported) return ex->Respond(http::ErrorResponse(reported.error()));
        for (ReportedTask& r : reported.value()) {
          // Only what changed becomes a command: a report that repeats known
          // states is a heartbeat and writes nothing.
          auto found = state_->tasks().find(r.task_id);
          const model::Task* known = found == state_->tasks().end() ? nullptr : &found->second;
          if (known && known->node == id && known->last == r.last &&
              (r.containers.empty() || known->containers == r.containers)) {
            continue;
          }
          cmd->reports.push_back(
              {std::move(r.task_id), std::move(r.last), std::move(r.reason), std::move(r.containers_text)});
        }
        // Every answer tells the agent the heartbeat interval, which grows with the
        // number of agents; the stream's silence deadline follows what it was told.
        int64_t interval = HeartbeatInterval();
        if (auto it = streams_.find(id); it != streams_.end()) it->second.interval_ms = interval;
        std::string tail = ",\"heartbeatIntervalMs\":" + std::to_string(interval) + "}";
        for (model::ReportTasks::Health& h : health) {
          // Only a change becomes a command, as for the tasks.
          const model::Task* known = state_->FindTask(h.task_id);
          if (!known || known->node != id || known->stopped()) continue;
          const model::Task::TargetHealth* was = known->TargetHealthOf(h.target_group);
          if (was && was->state == h.state && was->reason == h.reason && was->description == h.description) continue;
          cmd->health.push_back(std::move(h));
        }
        if (cmd->reports.empty() && cmd->health.empty()) {
          return ex->Respond(http::JsonResponse(200, "{\"version\":" + std::to_string(n->desired_version) + tail));
        }
        cmd->time_ms = clock_->NowUnixMs();
        store_->Submit(std::move(cmd), [ex, tail](Result<std::string> r) {
          if (!r) return ex->Respond(http::ErrorResponse(r.error()));
          // The command's reply is a JSON object ({"changed":k,"version":N}).
          std::string body = std::move(r.value());
          if (!body.empty() && body.back() == '}') body.pop_back();
          ex->Respond(http::JsonResponse(200, body + tail));
        });
      },
      report_opts);
}

}  // namespace berth::api
