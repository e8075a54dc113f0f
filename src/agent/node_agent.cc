#include "agent/node_agent.h"

#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "agent/container_engine.h"
#include "agent/container_spec.h"
#include "agent/docker.h"
#include "agent/host.h"
#include "agent/protocol.h"
#include "agent/proxy_sink.h"
#include "agent/reconciler.h"
#include "agent/secret_files.h"
#include "agent/target_checks.h"
#include "base/crypto.h"
#include "base/files.h"
#include "base/json.h"
#include "base/log.h"
#include "base/notify.h"
#include "model/taskdef.h"
#include "net/http_client.h"
#include "net/pki.h"
#include "net/tls.h"
#include "net/url.h"
#include "net/uv.h"
#include "proxy/metrics_endpoint.h"

namespace berth::agent {

namespace http = net::http;

namespace {

// Wall-clock time, for certificate lifetimes.
int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kReportBatchMs = 100;
constexpr int64_t kMaxBackoffMs = 30000;  // between attempts to reach Docker
// Between attempts to reach the server: well under its grace period (10 s by
// default), so a server that comes back finds its agents before it would
// declare their nodes lost.
constexpr int64_t kMaxServerBackoffMs = 2000;
// Under systemd, READY=1 comes at registration, or after this long without one.
constexpr uint64_t kReadyWithoutServerMs = 60000;
// Followers' 307s followed in a row at once; past this many (servers with stale
// views of who leads, naming each other) each further one waits a backoff. A
// follower naming a leader just killed is no such loop: the dead leader fails
// to answer, which breaks the chain (ServerList::Next).
constexpr int kMaxLeaderHops = 3;
// The longest line of the desired stream the agent holds (agent-protocol.md).
constexpr size_t kMaxStreamLine = 64u << 20;

}  // namespace

// --- ServerList ---

Result<ServerList> ServerList::Parse(std::string_view text, int default_port) {
  Result<std::vector<net::Endpoint>> parsed = net::ParseServerList(text, default_port);
  if (!parsed) return parsed.take_error();
  ServerList list;
  for (const net::Endpoint& ep : parsed.value()) {
    if (!list.configured_.empty() && !list.SameScheme(ep)) {
      return Error::Invalid("every server must be reached the same way (all https://, all http:// or all unix://): " +
                            Url(ep));
    }
    list.configured_.push_back(ep);
  }
  list.servers_ = list.configured_;
  return list;
}

std::string ServerList::Url(const net::Endpoint& e) {
  if (e.kind == net::Endpoint::Kind::kUnix) return "unix://" + e.path;
  return (e.tls ? "https://" : "http://") + e.ToString();
}

bool ServerList::SameScheme(const net::Endpoint& e) const {
  const net::Endpoint& first = configured_.front();
  return e.kind == first.kind && e.tls == first.tls;
}

void ServerList::Rebuild(const net::Endpoint& keep) {
  servers_.clear();
  auto add = [this](const net::Endpoint& e) {
    std::string url = Url(e);
    for (size_t i = 0; i < servers_.size(); i++) {
      if (Url(servers_[i]) == url) return i;
    }
    servers_.push_back(e);
    return servers_.size() - 1;
  };
  for (const net::Endpoint& e : configured_) add(e);
  for (const net::Endpoint& e : learned_) add(e);
  at_ = add(keep);
}

void ServerList::Learn(const std::vector<std::string>& urls) {
  net::Endpoint keep = current();
  learned_.clear();
  for (const std::string& url : urls) {
    if (learned_.size() >= kMaxLearned) break;
    // Absolute URLs only: a bare "host:port" would not say whether it is TLS.
    if (!url.starts_with("https://") && !url.starts_with("http://") && !url.starts_with("unix://")) continue;
    Result<net::Endpoint> ep = net::Endpoint::Parse(url);
    if (!ep || !SameScheme(ep.value())) continue;
    if (ep->kind == net::Endpoint::Kind::kTcp && (ep->port <= 0 || ep->host.empty())) continue;
    learned_.push_back(ep.value());
  }
  Rebuild(keep);
}

std::vector<std::string> ServerList::learned() const {
  std::vector<std::string> out;
  for (const net::Endpoint& e : learned_) {
    std::string url = Url(e);
    if (std::find(out.begin(), out.end(), url) == out.end()) out.push_back(url);
  }
  return out;
}

bool ServerList::Follow(std::string_view location) {
  Result<net::Endpoint> leader = net::ParseOrigin(location);
  if (!leader || !SameScheme(leader.value())) return false;
  std::string url = Url(leader.value());
  bool known = std::any_of(servers_.begin(), servers_.end(), [&](const net::Endpoint& e) { return Url(e) == url; });
  // A leader not known yet is a server of the cluster: kept with the learned ones.
  if (!known) learned_.push_back(leader.value());
  Rebuild(leader.value());
  hops_++;
  misses_ = 0;
  return true;
}

bool ServerList::Next() {
  misses_++;
  hops_ = 0;
  at_ = (at_ + 1) % servers_.size();
  return misses_ < servers_.size();
}

// The server side of the agent (registration, the desired-state stream, reports,
// the log relay) and the engine connection; the decisions about containers are
// the Reconciler's (reconciler.h).
class NodeAgentImpl {
 public:
  NodeAgentImpl(uv_loop_t* loop, NodeAgentOptions o)
      : loop_(loop), o_(std::move(o)), rng_(std::random_device{}()), tick_(loop), takeover_(loop) {}

  Status Start() {
    Result<ServerList> servers = ServerList::Parse(o_.server);
    if (!servers) return Error::Invalid("--server: " + servers.error().message);
    servers_ = std::move(servers.value());
    // The cluster's servers as the last registration named them: found again
    // even when every configured one is gone.
    servers_.Learn(ReadKeptServers());
    highest_term_ = strtoull(files::ReadTrimmed(o_.state_dir + "/term").c_str(), nullptr, 10);
    kept_servers_ = servers_.learned();
    server_ = servers_.current();
    crypto::TokenParts token = crypto::SplitToken(o_.token);
    o_.token = token.secret;  // only the secret goes to the server
    pin_ = token.pin;
    // The node's identity from an earlier join: its key, certificate and the CA.
    key_pem_ = files::ReadTrimmed(o_.state_dir + "/node.key");
    cert_pem_ = files::ReadTrimmed(o_.state_dir + "/node.crt");
    if (o_.ca_pem.empty()) o_.ca_pem = files::ReadTrimmed(o_.state_dir + "/ca.crt");
    if (key_pem_.empty()) cert_pem_.clear();
    if (Status s = MakeTrust(); !s) return s;
    if (server_.tls && !tls_) {
      return Error::Invalid("--server " + o_.server +
                            ": nothing to trust the server by: give a token that carries the CA fingerprint "
                            "(berth token create prints one) or --ca-file");
    }
    Result<net::Endpoint> docker = net::Endpoint::Parse(o_.docker);
    if (!docker) return Error::Invalid("--docker: " + docker.error().message);
    // (A successor binds it once the agent it takes over from is gone.)
    if (!o_.takeover_from) {
      if (Status s = ServeProxyMetrics(); !s) return s;
    }
    if (o_.docker_concurrency < 1) return Error::Invalid("--docker-concurrency: must be 1 or more");
    // The proxy serves the configuration it had before this start at once, the
    // server away or not, until the server sends a newer one.
    TakeKeptProxy();
    // The pool of call connections is as wide as the queue lets calls out; pulls,
    // the events stream and log relays each stream on a connection of their own.
    engine_ = std::make_unique<docker::Engine>(loop_, docker.value(), static_cast<int>(o_.docker_concurrency));
    container_engine_ = std::make_unique<DockerContainerEngine>(engine_.get());
    ReconcilerOptions ro;
    ro.docker_concurrency = o_.docker_concurrency;
    ro.default_stop_timeout_s = o_.default_stop_timeout_s;
    ro.container_retention_ms = o_.container_retention_ms;
    ro.image_cleanup_after_ms = o_.image_cleanup_after_ms;
    ro.resync_ms = o_.resync_ms;
    Reconciler::Hooks hooks;
    hooks.engine_lost = [this] { EngineLost(); };
    hooks.registry_auth = [this](const std::string& image, std::function<void(std::string)> done) {
      RegistryAuth(image, std::move(done));
    };
    hooks.pulled_changed = [this](const std::map<std::string, int64_t>& pulled) { SavePulled(pulled); };
    hooks.admit = [this](const TaskIdentity& task, json::View td) { return Admit(task, td); };
    secret_files_ = std::make_unique<SecretFiles>(o_.secrets_dir.empty() ? o_.state_dir + "/secrets" : o_.secrets_dir);
    hooks.write_secrets = [this](const std::string& task, const std::string& container,
                                 const std::vector<std::pair<std::string, std::string>>& files) {
      return secret_files_->Write(task, container, files);
    };
    hooks.forget_secrets = [this](const std::string& task) { secret_files_->Forget(task); };
    hooks.sweep_secrets = [this](const std::set<std::string>& keep) { secret_files_->Sweep(keep); };
    // What tasks must never see, and the engines' sockets, as this host names them.
    host_view_.resolve = [](const std::string& path) {
      char real[PATH_MAX];
      return realpath(path.c_str(), real) ? std::string(real) : path;
    };
    std::vector<std::string> sockets = model::DefaultSocketPaths();
    if (docker.value().kind == net::Endpoint::Kind::kUnix) sockets.push_back(docker.value().path);
    for (const std::string& s : sockets) {
      std::string r = model::NormalisePath(host_view_.resolve(s));
      if (std::find(host_view_.socket_paths.begin(), host_view_.socket_paths.end(), r) == host_view_.socket_paths.end())
        host_view_.socket_paths.push_back(r);
    }
    std::vector<std::string> forbidden = o_.forbidden_paths;
    forbidden.push_back(o_.state_dir);
    forbidden.push_back(o_.secrets_dir);  // (every task's secrets, when not under the state directory)
    for (const std::string& f : forbidden) {
      if (f.empty()) continue;
      char cwd[PATH_MAX];
      std::string abs = f[0] == '/' ? f : std::string(getcwd(cwd, sizeof cwd) ? cwd : "/") + "/" + f;
      host_view_.forbidden.push_back(model::NormalisePath(host_view_.resolve(abs)));
    }
    reconciler_ = std::make_unique<Reconciler>(container_engine_.get(), ro, std::move(hooks));
    for (const net::Endpoint& server : servers_.all()) {
      if (server.kind != net::Endpoint::Kind::kTcp) continue;
      std::string port = std::to_string(server.port);
      AddRegistryHost(server.host + ":" + port);
      if (server.host == "127.0.0.1" || server.host == "localhost" || server.host == "0.0.0.0") {
        AddRegistryHost("127.0.0.1:" + port);
        AddRegistryHost("localhost:" + port);
        // The server shares this host.
        if (std::find(o_.reserved_ports.begin(), o_.reserved_ports.end(), port) == o_.reserved_ports.end())
          o_.reserved_ports.push_back(port);
      }
    }
    http::ClientOptions co;
    co.timeout_ms = 30000;
    co.tls = tls_;
    reporter_ = std::make_unique<http::Client>(loop_, server_, co);
    node_id_ = files::ReadTrimmed(o_.state_dir + "/node-id");
    reconciler_->SetNode(node_id_);
    reconciler_->SetPulled(LoadPulled());
    host_ = ReadHost();
    if (o_.takeover_from) {
      TakeOver();
      return {};
    }
    tick_.Start(50, 50, [this] { Tick(); });
    ConnectDocker();
    return {};
  }

  Status ServeProxyMetrics() {
    if (o_.proxy_metrics_listen.empty()) return {};
    auto m = proxy::MetricsEndpoint::Start(
        loop_, [this](std::string* out) { data_plane_.RenderMetrics(out); }, o_.proxy_metrics_listen);
    if (!m) return Error::Invalid("--proxy-metrics-listen: " + m.error().message);
    proxy_metrics_ = std::move(m.value());
    log::Info("agent", "serving the proxy's metrics",
              {{"address", o_.proxy_metrics_listen}, {"port", proxy_metrics_->port()}});
    return {};
  }

  // A successor (docs/operations.md, "Upgrading an agent"): the kept proxy
  // configuration was applied in Start, so once every worker runs it its
  // listeners are open beside the parent's (SO_REUSEPORT) and take their
  // share of new connections; then the parent is told to go (SIGUSR1). It
  // closes its listeners and lets what it has in flight finish; only once it
  // is gone does this agent connect to Docker and a server, so two agents
  // never run the node's containers at once.
  void TakeOver() {
    int64_t since = NowMs();
    takeover_.Start(20, 20, [this, since] {
      int from = o_.takeover_from;
      if (!takeover_told_) {
        // Bounded: a worker that never applies must not keep the parent forever.
        if (proxy_sink_->ProxyStatus().version < proxy_version_ && NowMs() - since < 10000) return;
        takeover_told_ = true;
        kill(from, SIGUSR1);
        log::Info("agent", "listening beside the agent taken over from; told it to go",
                  {{"pid", from}, {"proxyVersion", std::to_string(proxy_version_)}});
        return;
      }
      bool gone = getppid() != from;
      if (!gone && NowMs() - since < 60000) return;
      takeover_.Stop();
      if (gone) {
        log::Info("agent", "the agent taken over from is gone; starting", {{"pid", from}});
      } else {
        log::Warn("agent", "the agent taken over from still runs after a minute; starting anyway", {{"pid", from}});
      }
      if (Status s = ServeProxyMetrics(); !s) log::Error("agent", "no proxy metrics", {{"error", s.error().message}});
      tick_.Start(50, 50, [this] { Tick(); });
      ConnectDocker();
    });
  }

  void Shutdown() {
    shut_ = true;
    tick_.Stop();
    takeover_.Stop();
    proxy_metrics_.reset();
    stream_.reset();
    reporter_.reset();
    logs_.clear();
    checks_.reset();
    reconciler_.reset();
    container_engine_.reset();
    engine_.reset();
  }

  std::string node_id() const { return node_id_; }

 private:
  // --- the engine connection ---

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
      docker_state_ = DockerState::kReady;
      // Before the node is registered nothing of ours can run: it syncs once registered.
      if (!node_id_.empty()) SyncEngine();
    });
  }

  // Events, then the listing and adoption; then the desired set waiting, if any.
  void SyncEngine() {
    reconciler_->Sync([this](Status) {
      if (!shut_) ApplyPendingDesired();
    });
  }

  // A call found the engine not answering: reconnect (with backoff), then sync.
  void EngineLost() {
    if (docker_state_ == DockerState::kDown) return;
    log::Warn("agent", "docker engine lost; reconnecting");
    reconciler_->EngineDown();
    docker_state_ = DockerState::kDown;
    docker_retry_ms_ = NowMs() + Backoff(++docker_failures_, 250);
  }

  // X-Registry-Auth for an image. From the server's own registry: a registry
  // token the server issues this node for that repository alone (fetched here,
  // kept while it lives; never the agent's own credentials). From others: what
  // `docker login` left in this host's Docker config ($DOCKER_CONFIG/config.json
  // or ~/.docker/config.json), if anything. `redirects`: followers' 307s followed
  // for this image so far (it is asked of the leader they name, a few times at most).
  void RegistryAuth(const std::string& image, std::function<void(std::string)> done, int redirects = 0) {
    docker::ImageRef ref = docker::ParseImageRef(image);
    bool ours = std::find(o_.registry_hosts.begin(), o_.registry_hosts.end(), ref.registry) != o_.registry_hosts.end();
    if (!ours) return done(DockerConfigAuth(ref));
    if (node_id_.empty() || !reporter_) return done("");
    std::string repo = ref.registry + "/" + ref.repository;
    auto cached = pull_tokens_.find(repo);
    if (cached != pull_tokens_.end() && cached->second.second > NowMs()) {
      return done(PullAuth(ref, cached->second.first));
    }
    json::Doc body = json::Doc::Object();
    body.Set("image", image);
    reporter_->Send(Request("POST", "/v1/agent/nodes/" + node_id_ + "/pull-credentials", body.Print()),
                    [this, ref, repo, done = std::move(done), redirects,
                     epoch = server_epoch_](Result<http::ClientResponse> r) mutable {
                      if (shut_) return;
                      Result<json::Doc> d = r && r->status == 200 ? json::Doc::Parse(r->body)
                                                                  : Result<json::Doc>(Error::Invalid("refused"));
                      std::string again =
                          ref.registry + "/" + ref.repository + (ref.digest.empty() ? ":" + ref.tag : "@" + ref.digest);
                      if (!r && r.error().code == "Cancelled" && !shut_) {
                        // The report connection was replaced (a new certificate, another
                        // server): ask again.
                        return RegistryAuth(again, std::move(done), redirects);
                      }
                      if (r && redirects < kMaxLeaderHops && FollowLeader(r.value(), epoch)) {
                        // Queued on the old connection, which the next tick replaces
                        // (Cancelled, above): asked of the leader then.
                        return RegistryAuth(again, std::move(done), redirects + 1);
                      }
                      if (NoAnswer(r)) ServerMissed(epoch, Why(r));
                      if (!d) {
                        log::Warn("agent", "no pull credentials from the server; pulling without",
                                  {{"repository", repo}, {"error", r ? r->body : r.error().message}});
                        return done("");
                      }
                      std::string token(d->view().Get("registryToken").String());
                      // Kept for half its life, so a pull never starts with one about to end.
                      int64_t life = d->view().Get("expiresInMs").IntIn(0, 7 * 24 * 3600 * 1000ll, 0);
                      pull_tokens_[repo] = {token, NowMs() + life / 2};
                      done(PullAuth(ref, token));
                    });
  }

  static std::string PullAuth(const docker::ImageRef& ref, const std::string& token) {
    json::Doc a = json::Doc::Object();
    a.Set("registrytoken", token).Set("serveraddress", ref.registry);
    return a.Print();
  }

  static std::string DockerConfigAuth(const docker::ImageRef& ref) {
    json::Doc a = json::Doc::Object();
    const char* dir = getenv("DOCKER_CONFIG");
    const char* home = getenv("HOME");
    std::string path =
        dir && *dir ? std::string(dir) + "/config.json" : std::string(home ? home : "/root") + "/.docker/config.json";
    Result<json::Doc> config = json::Doc::Parse(files::ReadTrimmed(path));
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

  // --- which server: the leader, found through followers' 307s and round robin ---

  // True when the server gave no answer (a connection failure, not our own
  // cancelling), or answered that its cluster has no leader (an election).
  static bool NoAnswer(const Result<http::ClientResponse>& r) {
    if (!r) return r.error().code != "Cancelled";
    return r->status == 503 && r->body.find("\"NoLeader\"") != std::string::npos;
  }
  static std::string Why(const Result<http::ClientResponse>& r) {
    if (!r) return r.error().message;
    return "HTTP " + std::to_string(r->status) + (NoAnswer(r) ? " (no leader)" : "");
  }

  // Talks to servers_.current() from now on: requests sent before (their
  // callbacks know them by their epoch) no longer move the agent, the stream
  // ends, the report connection is replaced on the next tick, and the node
  // registers there after `delay_ms`.
  void SwitchServer(int64_t delay_ms) {
    server_ = servers_.current();
    server_epoch_++;
    registered_ = false;
    replace_reporter_ = true;
    Bury(std::move(stream_));
    server_retry_ms_ = NowMs() + delay_ms;
  }

  // A follower's 307 to a request sent at `epoch`: the agent goes to the leader
  // it names and registers there at once, or after a backoff once it has
  // followed kMaxLeaderHops in a row (followers naming each other). Returns false
  // when `r` is no usable redirect (then it is an error answer like any other);
  // true, doing nothing, for one from a server the agent has left already.
  bool FollowLeader(const http::ClientResponse& r, uint64_t epoch) {
    if (r.status != 307) return false;
    if (epoch != server_epoch_) return true;
    std::string from = ServerList::Url(server_);
    if (!servers_.Follow(r.Header("location"))) return false;
    int64_t delay = 0;
    if (servers_.hops() > kMaxLeaderHops) delay = Backoff(servers_.hops() - kMaxLeaderHops, 100, kMaxServerBackoffMs);
    log::Info("agent", "following the leader",
              {{"from", from}, {"to", ServerList::Url(servers_.current())}, {"delay_ms", delay}});
    SwitchServer(delay);
    return true;
  }

  // The server a request of `epoch` went to gave no answer, or has no leader:
  // the next known server is tried soon, or after the backoff (server_failures_,
  // which the caller counts) once every one has failed in a row. With one server
  // the caller's own retry stands.
  void ServerMissed(uint64_t epoch, const std::string& why) {
    if (epoch != server_epoch_ || servers_.all().size() < 2) return;
    std::string from = ServerList::Url(server_);
    bool soon = servers_.Next();
    // Soon, but not at once: a server just killed refuses at once, and an
    // election takes about a second.
    int64_t delay = soon ? 200 + std::uniform_int_distribution<int64_t>(0, 100)(rng_)
                         : Backoff(server_failures_, 100, kMaxServerBackoffMs);
    if (soon || server_failures_ % 10 == 0) {
      log::Info("agent", "no answer or no leader there; trying the next server",
                {{"server", from}, {"why", why}, {"next", ServerList::Url(servers_.current())}, {"delay_ms", delay}});
    }
    SwitchServer(delay);
  }

  // The servers a registration answer or a desired-state line names, if any.
  void LearnServersFrom(json::View m) {
    if (!m.Get("servers").IsArray()) return;
    std::vector<std::string> urls;
    for (json::View u : m.Get("servers")) {
      if (u.IsString()) urls.push_back(std::string(u.String()));
    }
    LearnServers(urls);
  }

  // The cluster's servers as the server named them: known from now on, and
  // kept in <state>/servers for the next start.
  void LearnServers(const std::vector<std::string>& urls) {
    servers_.Learn(urls);
    for (const net::Endpoint& e : servers_.all()) {
      if (e.kind == net::Endpoint::Kind::kTcp) AddRegistryHost(e.host + ":" + std::to_string(e.port));
    }
    std::vector<std::string> learned = servers_.learned();
    if (learned == kept_servers_) return;
    std::string text;
    for (const std::string& url : learned) text += url + "\n";
    mkdir(o_.state_dir.c_str(), 0700);
    if (Status s = files::WriteAtomically(o_.state_dir + "/servers", text, 0644); !s) {
      log::Warn("agent", "cannot keep the list of servers", {{"dir", o_.state_dir}, {"error", s.error().message}});
      return;
    }
    kept_servers_ = std::move(learned);
  }

  // The highest term seen, kept so a restarted agent still refuses a deposed
  // leader's lines.
  void KeepTerm() {
    mkdir(o_.state_dir.c_str(), 0700);
    if (Status s = files::WriteAtomically(o_.state_dir + "/term", std::to_string(highest_term_) + "\n", 0644); !s) {
      log::Warn("agent", "cannot keep the leader's term", {{"dir", o_.state_dir}, {"error", s.error().message}});
    }
  }

  std::vector<std::string> ReadKeptServers() const {
    std::vector<std::string> urls;
    std::string text = files::ReadTrimmed(o_.state_dir + "/servers");
    for (size_t at = 0; at < text.size();) {
      size_t nl = std::min(text.find('\n', at), text.size());
      if (nl > at) urls.push_back(text.substr(at, nl - at));
      at = nl + 1;
    }
    return urls;
  }

  // The servers' addresses are their registry's too: images from there are pulled
  // with credentials the server gives.
  void AddRegistryHost(const std::string& host_port) {
    if (std::find(o_.registry_hosts.begin(), o_.registry_hosts.end(), host_port) == o_.registry_hosts.end())
      o_.registry_hosts.push_back(host_port);
  }

  void Register() {
    registering_ = true;
    json::Doc attrs = json::Doc::Object();
    attrs.Set("os", "linux").Set("arch", host_.arch).Set("docker", version_.version);
    for (const auto& [k, v] : o_.attributes) attrs.Set(k, v);
    json::Doc body = json::Doc::Object();
    body.Set("cluster", o_.cluster)
        .Set("hostname", host_.hostname)
        .Set("agentVersion", BERTH_VERSION)
        .Set("cpu", CpuUnits(host_))
        .Set("memory", OfferedMemory(host_, o_.reserved_memory_mib))
        .Set("attributes", attrs);
    json::Doc reserved = json::Doc::Array();
    for (const std::string& p : o_.reserved_ports) reserved.Push(p);
    body.Set("reservedPorts", reserved);
    if (!o_.advertise.empty()) body.Set("address", o_.advertise);
    if (!node_id_.empty()) body.Set("nodeId", node_id_);
    // Over TLS the node proves itself with a certificate from the cluster CA: asked
    // for at the first join, and again when a third of its life is left.
    if (server_.tls && (cert_pem_.empty() || UnixMs() >= cert_renew_ms_)) {
      Result<std::string> csr = SigningRequest();
      if (!csr) {
        log::Error("agent", "cannot make a signing request", {{"error", csr.error().message}});
      } else {
        body.Set("csr", csr.value());
      }
    }
    reporter_->Send(Request("POST", "/v1/agent/register", body.Print()), [this, epoch = server_epoch_](
                                                                             Result<http::ClientResponse> r) {
      if (shut_) return;
      registering_ = false;
      if (epoch != server_epoch_) return;  // sent to a server the agent has left: it registers anew
      if (r && FollowLeader(r.value(), epoch)) return;
      if (r && r->status == 401 && !cert_pem_.empty() && r->body.find("no longer valid") != std::string::npos) {
        // This node was deregistered (or given another certificate): join anew
        // with the token, as a fresh node would.
        log::Warn("agent", "the server no longer takes this node's certificate; joining again with the token",
                  {{"node", node_id_}});
        cert_pem_.clear();
        unlink((o_.state_dir + "/node.crt").c_str());
        (void)MakeTrust();
        replace_reporter_ = true;
        registered_ = false;
        server_retry_ms_ = NowMs();
        return;
      }
      if (!r || r->status != 200) {
        server_failures_++;
        if (server_failures_ == 1 || server_failures_ % 10 == 0) {
          log::Warn("agent", "registration failed",
                    {{"server", ServerList::Url(server_)}, {"error", r ? r->body : r.error().message}});
        }
        server_retry_ms_ = NowMs() + Backoff(server_failures_, 100, kMaxServerBackoffMs);
        if (r && (r->status == 401 || r->status == 403)) server_retry_ms_ = NowMs() + kMaxBackoffMs;
        if (NoAnswer(r)) ServerMissed(epoch, Why(r));
        return;
      }
      Result<json::Doc> d = json::Doc::Parse(r->body);
      if (!d) return;
      std::string id(d->view().Get("nodeId").String());
      TakeHeartbeatInterval(d->view());
      bool first = node_id_.empty();
      node_id_ = id;
      if (d->view().Get("certificate").IsString()) {
        TakeCertificate(std::string(d->view().Get("certificate").String()),
                        std::string(d->view().Get("caCertificate").String()));
      }
      if (first) SaveNodeId();
      reconciler_->SetNode(node_id_);
      registered_ = true;
      server_failures_ = 0;
      servers_.Reached();
      LearnServersFrom(d->view());
      log::Info("agent", "registered", {{"node", node_id_}, {"server", ServerList::Url(server_)}});
      NoteRegistered();
      if (o_.registered) o_.registered(node_id_, ServerList::Url(server_));
      if (first) SyncEngine();
      OpenStream();
    });
  }

  // The client context for the server: the pin and CA, and the node's
  // certificate once it has one. Connections made after use it.
  Status MakeTrust() {
    if (pin_.empty() && o_.ca_pem.empty()) return {};
    net::tls::ClientSettings ts;
    ts.pin_sha256 = pin_;
    ts.ca_pem = o_.ca_pem.empty() ? "" : o_.ca_pem + "\n";
    if (!cert_pem_.empty()) {
      ts.cert_pem = cert_pem_ + "\n";
      ts.key_pem = key_pem_ + "\n";
    }
    Result<std::shared_ptr<net::tls::ClientContext>> trust = net::tls::ClientContext::Create(ts);
    if (!trust) return Error::Invalid("TLS: " + trust.error().message);
    tls_ = trust.value();
    cert_renew_ms_ = INT64_MAX;
    if (!cert_pem_.empty()) {
      Result<net::pki::CertInfo> info = net::pki::Inspect(cert_pem_ + "\n");
      if (info) {
        int64_t life = info->not_after_unix - info->not_before_unix;
        cert_renew_ms_ = (info->not_after_unix - life / 3) * 1000;
      }
    }
    return {};
  }

  http::ClientOptions ServerClientOptions(uint64_t timeout_ms) const {
    http::ClientOptions co;
    co.timeout_ms = timeout_ms;
    co.tls = tls_;
    return co;
  }
  std::unique_ptr<http::Client> NewServerClient(uint64_t timeout_ms) const {
    return std::make_unique<http::Client>(loop_, server_, ServerClientOptions(timeout_ms));
  }

  // A signing request for this node's key (made and kept, 0600, on first use).
  Result<std::string> SigningRequest() {
    if (key_pem_.empty()) {
      Result<std::string> key = net::pki::NewKey();
      if (!key) return key.take_error();
      mkdir(o_.state_dir.c_str(), 0700);
      if (Status s = files::WriteAtomically(o_.state_dir + "/node.key", key.value(), 0600); !s) {
        return s.take_error();
      }
      key_pem_ = key.value();
    }
    return net::pki::NewRequest(key_pem_ + "\n", node_id_.empty() ? std::string("joining-node") : node_id_);
  }

  // The certificate the server issued: kept, then used by every new connection
  // (the stream and report connections are made anew). The CA comes with it: kept
  // for later starts, and given to this host's Docker engine for the registry.
  void TakeCertificate(const std::string& cert, const std::string& ca) {
    mkdir(o_.state_dir.c_str(), 0700);
    if (Status s = files::WriteAtomically(o_.state_dir + "/node.crt", cert, 0644); !s) {
      log::Error("agent", "cannot keep the node certificate", {{"error", s.error().message}});
    }
    cert_pem_ = files::ReadTrimmed(o_.state_dir + "/node.crt");
    if (cert_pem_.empty()) cert_pem_ = cert;
    if (!ca.empty()) {
      (void)files::WriteAtomically(o_.state_dir + "/ca.crt", ca, 0644);
      if (o_.ca_pem.empty()) o_.ca_pem = ca;
      TrustForDocker(ca);
    }
    if (Status s = MakeTrust(); !s) {
      log::Error("agent", "the node certificate cannot be used", {{"error", s.error().message}});
      return;
    }
    // The report connection is replaced on the next tick (this runs in one of its
    // callbacks): what is queued on it then fails over to the new one.
    replace_reporter_ = true;
    if (stream_) Bury(std::move(stream_));
    log::Info("agent", "node certificate taken", {{"node", node_id_}});
  }

  // Docker trusts a registry's CA from <certs.d>/<host:port>/ca.crt: written for
  // the server's registry addresses.
  void TrustForDocker(const std::string& ca) {
    if (o_.docker_certs_dir.empty()) return;
    for (const std::string& h : o_.registry_hosts) {
      // Docker takes any registry on 127.0.0.0/8 without checking its certificate.
      if (h.starts_with("127.") || h.starts_with("localhost:")) continue;
      std::string dir = o_.docker_certs_dir + "/" + h;
      std::string parent = o_.docker_certs_dir;
      mkdir(parent.substr(0, parent.rfind('/')).c_str(), 0755);
      mkdir(parent.c_str(), 0755);
      mkdir(dir.c_str(), 0755);
      if (Status s = files::WriteAtomically(dir + "/ca.crt", ca, 0644); !s) {
        log::Warn("agent", "cannot give Docker the cluster CA", {{"dir", dir}, {"error", s.error().message}});
      }
    }
  }

  // <state>/registered: "<node id> <server URL> <unix seconds>" of the last
  // registration, what the installer waits for (docs/install.md).
  void NoteRegistered() {
    std::string text = node_id_ + " " + ServerList::Url(server_) + " " + std::to_string(time(nullptr)) + "\n";
    if (Status s = files::WriteAtomically(o_.state_dir + "/registered", text, 0644); !s) {
      log::Warn("agent", "cannot note the registration", {{"dir", o_.state_dir}, {"error", s.error().message}});
    }
  }

  void SaveNodeId() {
    mkdir(o_.state_dir.c_str(), 0700);
    if (Status s = files::WriteAtomically(o_.state_dir + "/node-id", node_id_ + "\n"); !s) {
      log::Error("agent", "cannot keep the node id", {{"dir", o_.state_dir}, {"error", s.error().message}});
    }
  }

  void OpenStream() {
    http::ClientOptions opts;
    opts.tls = tls_;
    opts.timeout_ms = 45000;  // the server pings every 10 s
    stream_ = std::make_unique<http::Client>(loop_, server_, opts);
    // A whole set for a node of thousands of tasks is a few MiB; a line past the
    // bound is dropped, and the next changes line, no longer in sequence, makes
    // the agent start over on a new stream.
    auto lines = std::make_shared<docker::LineSplitter>(
        [this](std::string_view line) {
          if (stream_) OnStreamLine(line);
        },
        kMaxStreamLine);
    // This stream carries the whole set first, then `changes` lines; the task
    // definitions it carries are known only on it.
    defs_.clear();
    desired_version_.reset();
    stream_->Send(
        Request("GET", "/v1/agent/nodes/" + node_id_ + "/desired?changes=1"),
        [this, raw = stream_.get(), epoch = server_epoch_](Result<http::ClientResponse> r) {
          if (shut_ || stream_.get() != raw) return;  // ended already (a line out of order)
          if (r && FollowLeader(r.value(), epoch)) return;
          std::string why = r ? "HTTP " + std::to_string(r->status) : r.error().message;
          if (r && r->status == 404) registered_ = false;
          server_failures_++;
          if (server_failures_ == 1 || server_failures_ % 10 == 0)
            log::Warn("agent", "server stream lost", {{"server", ServerList::Url(server_)}, {"why", why}});
          server_retry_ms_ = NowMs() + Backoff(server_failures_, 100, kMaxServerBackoffMs);
          Bury(std::move(stream_));
          if (NoAnswer(r)) ServerMissed(epoch, why);
        },
        [this, lines](std::string_view data) {
          if (!data.empty()) server_failures_ = 0;
          if (!lines->Feed(data) && dropped_pieces_++ % 1000 == 0) {
            log::Warn("agent", "a line of the desired stream is over the bound; dropped",
                      {{"bound_bytes", static_cast<int64_t>(kMaxStreamLine)}});
          }
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
    if (type == "desired" || type == "changes" || type == "deregistered") {
      uint64_t before = highest_term_;
      std::string why;
      if (!AdmitTerm(m, &highest_term_, &why)) {
        // A deposed leader that has not learnt it yet: nothing it says is done,
        // and the agent looks for the leader.
        log::Warn("agent", "refused a line from a deposed leader",
                  {{"server", ServerList::Url(server_)}, {"why", why}});
        fenced_++;
        uint64_t epoch = server_epoch_;
        Bury(std::move(stream_));
        registered_ = false;
        server_retry_ms_ = NowMs() + 1000;
        ServerMissed(epoch, why);
        return;
      }
      if (highest_term_ != before) KeepTerm();
    }
    if (type == "desired" || type == "changes") {
      LearnServersFrom(m);
      if (type == "changes" &&
          (!desired_version_ || m.Get("since").Number() != static_cast<double>(*desired_version_))) {
        // A line was missed: a new stream starts with the whole set again.
        log::Warn("agent", "desired-state lines out of order; reconnecting");
        server_retry_ms_ = NowMs();
        Bury(std::move(stream_));
        return;
      }
      TakeDesired(m, type == "desired");
      if (type == "desired" && !m.Get("proxy").valid()) DropKeptProxy();
      TakeProxy(m.Get("proxy"));
      TakeChecks(m.Get("checks"), type == "desired");
      ApplyPendingDesired();
    } else if (type == "deregistered") {
      log::Warn("agent", "this node was deregistered; stopping its tasks", {{"node", node_id_}});
      reconciler_->StopAll();
      deregistered_ = true;
    } else if (type == "logs") {
      StartLogs(msg->view());
    } else if (type == "ping") {
      LearnServersFrom(m);
    }
  }

  // A `desired` line is the whole truth about this node; a `changes` line says
  // what differs from the lines before it on this stream. Either is folded into
  // desired_, which the tasks are compared with once adoption is done.
  void TakeDesired(json::View msg, bool whole) {
    std::string policy_error;
    TakeDesiredLine(msg, whole, &desired_, &defs_, &cluster_policy_, &policy_error);
    if (!policy_error.empty()) {
      log::Warn("agent", "the server's task policy is unreadable; allowing nothing privileged",
                {{"error", policy_error}});
    }
    desired_version_ = static_cast<uint64_t>(msg.Get("version").IntIn(0, INT64_MAX, 0));
    desired_pending_ = true;
  }

  // The node's proxy configuration, when the line carries one newer than what
  // runs: handed to the sink; the version it applied goes with the next report.
  void TakeProxy(json::View doc) {
    if (!doc.valid()) return;
    Result<int64_t> version = ProxyDocVersion(doc);
    if (!version) {
      log::Warn("agent", "refused the proxy configuration", {{"error", version.error().message}});
      return;
    }
    if (*version <= proxy_version_) return;
    Result<int64_t> applied = proxy_sink_->ApplyProxy(doc);
    if (!applied) {
      log::Warn("agent", "the proxy refused its configuration",
                {{"version", std::to_string(*version)}, {"error", applied.error().message}});
      return;
    }
    proxy_version_ = *applied;
    proxy_kept_ = false;
    // Kept for the next start (0600: it may hold listeners' certificate keys).
    if (Status s = files::WriteAtomically(o_.state_dir + "/proxy.json", doc.Print(), 0600); !s) {
      log::Warn("agent", "cannot keep the proxy configuration for the next start", {{"error", s.error().message}});
    }
  }

  // The proxy configuration the last run applied (STATE/proxy.json), applied
  // again; the server's next one replaces it as any newer one does.
  void TakeKeptProxy() {
    std::string text = files::ReadTrimmed(o_.state_dir + "/proxy.json");
    if (text.empty()) return;
    Result<json::Doc> doc = json::Doc::Parse(text);
    if (!doc) {
      log::Warn("agent", "the kept proxy configuration is unreadable; waiting for the server's",
                {{"file", o_.state_dir + "/proxy.json"}, {"error", doc.error().message}});
      return;
    }
    TakeProxy(doc->view());
    if (proxy_version_ > 0) {
      proxy_kept_ = true;
      log::Info("agent", "serving the proxy configuration kept from the last run until the server sends one",
                {{"version", std::to_string(proxy_version_)}});
    }
  }

  // A whole desired line without a proxy configuration: the server has none
  // for this node (a member of no load balancer now). A kept one still running
  // is replaced by an empty one; one the server sent stays, as always.
  void DropKeptProxy() {
    if (!proxy_kept_) return;
    proxy_kept_ = false;
    json::Doc empty = json::Doc::Object();
    empty.Set("version", proxy_version_ + 1);
    Result<int64_t> applied = proxy_sink_->ApplyProxy(empty.view());
    if (applied) proxy_version_ = *applied;
    unlink((o_.state_dir + "/proxy.json").c_str());
    log::Info("agent", "the server has no proxy configuration for this node: the kept one is dropped");
  }

  // The health checks this node runs for load balancers (target_checks.h). A
  // `desired` line starts a stream: the server may have forgotten what it took,
  // so every state goes again; and it always carries the node's checks when it
  // has any, so one without stops them all. A document refused is logged and the
  // checks before it go on.
  void TakeChecks(json::View doc, bool whole) {
    if (whole) {
      checks_->ForgetAcknowledged();
      if (!doc.valid()) checks_->Clear();
    }
    if (!doc.valid()) return;
    Result<ChecksDoc> parsed = ParseChecks(doc);
    if (!parsed) {
      log::Warn("agent", "refused the health checks", {{"error", parsed.error().message}});
      return;
    }
    int64_t version = parsed->version;
    size_t n = parsed->targets.size();
    if (checks_->Apply(std::move(parsed.value()))) {
      log::Info("agent", "health checks applied", {{"version", std::to_string(version)}, {"targets", n}});
    }
  }

  // The proxy's part of a report: the version it applied and its drained
  // targets (docs/load-balancing.md, "Draining"); "" before any document.
  std::string ProxyReport() const {
    ProxySink::Status st = proxy_sink_->ProxyStatus();
    if (st.version <= 0) return {};
    std::string out = ",\"proxyVersion\":" + std::to_string(st.version) + ",\"proxyDrained\":[";
    for (size_t i = 0; i < st.drained.size(); i++) {
      if (i) out.push_back(',');
      json::AppendQuoted(&out, st.drained[i]);
    }
    return out + "]";
  }

  // A task may run here when its definition is one the server would accept, and
  // passes the cluster's task policy and this host's (model/policy.h), with its
  // host paths resolved on this host.
  Status Admit(const TaskIdentity& task, json::View td) {
    json::Doc registered = json::Doc::Copy(td);
    json::Doc body = json::Doc::Object();
    for (json::View f : registered.view()) {
      std::string_view k = f.Key();
      if (k == "taskDefinitionArn" || k == "revision" || k == "status" || k == "registeredAt" ||
          k == "deregisteredAt" || k == "registeredBy" || k == "compatibilities") {
        continue;
      }
      body.Set(k, json::Doc::Copy(f));
    }
    Result<json::Doc> valid = model::ValidateTaskDefinition(body.view());
    if (!valid)
      return Error::Invalid("task definition " + task.task_definition + " is not valid: " + valid.error().message);
    if (Status s = model::CheckTaskPolicy(valid->view(), cluster_policy_, task.cluster, host_view_); !s) return s;
    model::TaskPolicy ceiling;
    if (o_.host_policy) {
      ceiling = *o_.host_policy;
    } else {
      // Unset: the cluster's policy, less the host's root and the engines' sockets.
      ceiling = cluster_policy_;
      ceiling.docker_socket = false;
      std::erase_if(ceiling.host_paths, [](const model::HostPathRule& r) { return r.prefix == "/"; });
    }
    return model::CheckTaskPolicy(valid->view(), ceiling, task.cluster, host_view_, true);
  }

  // Level-triggered: the node's tasks are made to match the whole desired set,
  // once adoption is done.
  void ApplyPendingDesired() {
    if (!desired_pending_ || !reconciler_->synced()) return;
    desired_pending_ = false;
    reconciler_->ApplyDesired(desired_, defs_);
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
    std::vector<std::pair<std::string, std::string>> sent = reconciler_->PendingReports(500);
    std::string list = "[";
    for (const auto& [id, r] : sent) {
      if (list.size() > 1) list += ",";
      list += r;
    }
    list += "]";
    // News of the proxy (a version applied, a draining target now idle) goes at
    // once: a task's stop waits on it.
    std::string proxy = ProxyReport();
    // So do targets' health checks (at most kMaxHealthPerReport; the rest next).
    TargetChecks::Batch health = checks_->Pending(kMaxHealthPerReport);
    std::string health_part;
    if (!health.entries.empty()) {
      health_part = ",\"targetHealth\":[";
      for (size_t i = 0; i < health.entries.size(); i++) {
        if (i) health_part.push_back(',');
        health_part += health.entries[i].ToJson();
      }
      health_part += "]";
    }
    if (sent.empty() && !heartbeat_due && proxy == proxy_reported_ && health.entries.empty()) return;
    report_in_flight_ = true;
    last_report_ms_ = NowMs();
    std::string body = "{\"tasks\":" + list + proxy + health_part + "}";
    reporter_->Send(Request("POST", "/v1/agent/nodes/" + node_id_ + "/report", body),
                    [this, sent, epoch = server_epoch_, proxy, health](Result<http::ClientResponse> r) {
                      if (shut_) return;
                      report_in_flight_ = false;
                      if (r && FollowLeader(r.value(), epoch)) return;  // unchanged: sent again, there
                      if (!r || r->status != 200) {
                        // To a server the agent has left: sent again to the one it went to.
                        if (epoch != server_epoch_) return;
                        if (r && r->status == 404) registered_ = false;
                        report_failures_++;
                        report_retry_ms_ = NowMs() + Backoff(report_failures_, 100, kMaxServerBackoffMs);
                        if (NoAnswer(r)) ServerMissed(epoch, Why(r));
                        return;  // unchanged: sent again
                      }
                      report_failures_ = 0;
                      proxy_reported_ = proxy;
                      checks_->Acknowledge(health);
                      if (Result<json::Doc> d = json::Doc::Parse(r->body); d) TakeHeartbeatInterval(d->view());
                      for (const auto& [id, text] : sent) reconciler_->Acknowledged(id, text);
                    });
  }

  // --- logs: the server asks on the stream; we answer with a streamed POST ---

  void StartLogs(json::View msg) {
    std::string request_id(msg.Get("requestId").String());
    std::string task_id(msg.Get("taskId").String());
    std::string container(msg.Get("container").String());
    bool follow = msg.Get("follow").IsBool() && msg.Get("follow").Bool();
    int64_t tail = msg.Get("tail").IntIn(0, INT32_MAX, -1);
    // The id goes into the path of the answer to the server: an id of ours.
    if (request_id.empty() || request_id.size() > 64) return;
    for (unsigned char c : request_id) {
      if (!isalnum(c) && c != '-' && c != '_') return;
    }
    // A task we track names its containers; a forgotten one (stopped, kept for
    // the retention period) is found by the container name berth gave it.
    std::string docker_ref = reconciler_->ContainerId(task_id, container);
    if (docker_ref.empty() && reconciler_->TaskStatus(task_id).empty() && !container.empty()) {
      docker_ref = DockerName(task_id, container);
    }
    std::string what = container.empty() ? "task " + task_id : "container " + container + " of task " + task_id;
    if (docker_ref.empty()) return LogsRefused(request_id, "no " + what + " on this node");
    if (Status s = docker::CheckObjectName("container", docker_ref); !s)
      return LogsRefused(request_id, s.error().message);
    engine_->Call("GET", "/containers/" + docker_ref + "/json", "",
                  [this, request_id, docker_ref, what, follow, tail](Result<json::Doc> r) {
                    if (shut_) return;
                    if (!r) return LogsRefused(request_id, "no " + what + " on this node (" + r.error().message + ")");
                    std::string id(r->view().Get("Id").String());
                    if (Status s = docker::CheckObjectName("container", id); !s) {
                      return LogsRefused(request_id, "the engine's answer for " + what + ": " + s.error().message);
                    }
                    StreamLogs(request_id, id, follow, tail);
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
    http::ClientOptions relay_opts{24ull * 3600 * 1000, 1 << 20};
    relay_opts.tls = tls_;
    relay->client = std::make_unique<http::Client>(loop_, server_, relay_opts);
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
    if (replace_reporter_) {
      // A new identity: a new connection. Requests queued on the old one are
      // cancelled (their callbacks retry or report as for any failure).
      replace_reporter_ = false;
      std::unique_ptr<http::Client> old = std::move(reporter_);
      reporter_ = NewServerClient(30000);
      old->Cancel();
      Bury(std::move(old));
    }
    if (docker_state_ == DockerState::kDown && now >= docker_retry_ms_) {
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
    if (registered_ && !registering_ && !cert_pem_.empty() && UnixMs() >= cert_renew_ms_ && now >= server_retry_ms_) {
      log::Info("agent", "renewing the node certificate", {{"node", node_id_}});
      Register();
    }
    if (registered_ && !report_in_flight_ && now >= report_retry_ms_) Report();
    reconciler_->Tick(now);
  }

  // Images this agent pulled, with when a task last used them, kept in
  // <state>/images.json (only those are ever removed).
  std::map<std::string, int64_t> LoadPulled() const {
    std::map<std::string, int64_t> out;
    Result<json::Doc> d = json::Doc::Parse(files::ReadTrimmed(o_.state_dir + "/images.json"));
    if (!d) return out;
    for (json::View v : d->view()) {
      if (v.IsNumber()) out[std::string(v.Key())] = v.IntIn(0, INT64_MAX, 0);
    }
    return out;
  }

  void SavePulled(const std::map<std::string, int64_t>& pulled) {
    json::Doc d = json::Doc::Object();
    for (const auto& [image, when] : pulled) d.Set(image, when);
    mkdir(o_.state_dir.c_str(), 0700);
    if (Status s = files::WriteAtomically(o_.state_dir + "/images.json", d.Print()); !s) {
      log::Warn("agent", "cannot keep the list of pulled images",
                {{"dir", o_.state_dir}, {"error", s.error().message}});
    }
  }

  // --- helpers ---

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

  enum class DockerState { kConnecting, kDown, kReady };

  uv_loop_t* loop_;
  NodeAgentOptions o_;
  std::mt19937_64 rng_;
  net::Timer tick_;
  net::Timer takeover_;         // a successor waiting on the agent it takes over from
  bool takeover_told_ = false;  // ... which has been told to go
  ServerList servers_;
  net::Endpoint server_;  // servers_.current(), the one talked to
  // Counts the moves from server to server: an answer to a request sent before
  // the last move says nothing about the server talked to now.
  uint64_t server_epoch_ = 0;
  std::vector<std::string> kept_servers_;  // as <state>/servers holds them
  // Fencing: the highest leader term seen on a desired-state line (kept in
  // <state>/term), and the lines refused for an older one.
  uint64_t highest_term_ = 0;
  uint64_t fenced_ = 0;
  // The proxy configuration (agent/proxy_sink.h): where it goes, the version
  // applied, and whether the server has yet to hear of it.
  DataPlaneSink data_plane_{o_.proxy_threads};
  ProxySink* proxy_sink_ = o_.proxy_sink ? o_.proxy_sink : &data_plane_;
  std::unique_ptr<proxy::MetricsEndpoint> proxy_metrics_;  // --proxy-metrics-listen
  int64_t proxy_version_ = 0;
  bool proxy_kept_ = false;     // what runs came from STATE/proxy.json, not yet from a server
  std::string proxy_reported_;  // the proxy's part of the last report the server took
  // The health checks of this node's targets (target_checks.h).
  std::unique_ptr<TargetChecks> checks_ = std::make_unique<TargetChecks>(loop_);
  std::unique_ptr<docker::Engine> engine_;
  std::unique_ptr<DockerContainerEngine> container_engine_;
  std::unique_ptr<SecretFiles> secret_files_;  // used by reconciler_'s hooks
  std::unique_ptr<Reconciler> reconciler_;
  docker::EngineVersion version_;
  HostResources host_;
  std::string node_id_;
  bool shut_ = false;

  DockerState docker_state_ = DockerState::kConnecting;
  int docker_failures_ = 0;
  int64_t docker_retry_ms_ = 0;

  bool registered_ = false;
  bool registering_ = false;
  bool deregistered_ = false;
  int server_failures_ = 0;
  int64_t server_retry_ms_ = 0;
  int64_t heartbeat_ms_ = 2000;
  std::shared_ptr<net::tls::ClientContext> tls_;  // for an https:// server
  std::string pin_;                               // the token's pin of the cluster CA
  std::string key_pem_, cert_pem_;                // the node's identity, once joined
  int64_t cert_renew_ms_ = INT64_MAX;             // when to ask for a new certificate (unix ms)
  bool replace_reporter_ = false;                 // a new identity: a new report connection, next tick
  // Registry tokens for pulls from the server's registry: "host:port/repo" →
  // (token, until when it is used).
  std::map<std::string, std::pair<std::string, int64_t>> pull_tokens_;
  std::unique_ptr<http::Client> stream_;
  std::unique_ptr<http::Client> reporter_;
  // The node's desired set as the server's stream said it, and the task
  // definitions that stream carried (each once); applied once adoption is done.
  std::map<std::string, DesiredTask> desired_;
  std::map<std::string, json::Doc, std::less<>> defs_;
  uint64_t dropped_pieces_ = 0;              // of desired-stream lines over kMaxStreamLine
  model::TaskPolicy cluster_policy_;         // as the stream last said; nothing privileged until then
  model::HostView host_view_;                // this host as the task policy sees it
  std::optional<uint64_t> desired_version_;  // of the stream's last line
  bool desired_pending_ = false;
  bool report_in_flight_ = false;
  int report_failures_ = 0;
  int64_t report_retry_ms_ = 0;
  int64_t last_report_ms_ = 0;

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

namespace {

// The agent process a SIGUSR2 starts to take this one's place (RunNodeAgent).
class Successor {
 public:
  Successor(uv_loop_t* loop, std::vector<std::string> args) : loop_(loop), args_(std::move(args)) {}
  ~Successor() {
    if (proc_)
      uv_close(reinterpret_cast<uv_handle_t*>(proc_),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
  }
  bool running() const { return proc_ != nullptr && pid_ > 0; }
  int pid() const { return pid_; }

  void Start() {
    if (running()) {
      log::Warn("agent", "SIGUSR2: a new agent is already starting", {{"pid", pid_}});
      return;
    }
    // The binary at this process's path now: an upgrade replaced the file, and
    // /proc/self/exe names the old one "(deleted)".
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) {
      log::Error("agent", "SIGUSR2: cannot find this binary's path", {{"error", strerror(errno)}});
      return;
    }
    std::string exe(buf, static_cast<size_t>(n));
    if (exe.ends_with(" (deleted)")) exe.resize(exe.size() - 10);
    std::vector<std::string> argv = {exe, "agent"};
    argv.insert(argv.end(), args_.begin(), args_.end());
    std::vector<char*> av;
    for (std::string& a : argv) av.push_back(a.data());
    av.push_back(nullptr);
    std::vector<std::string> env;
    for (char** e = environ; *e; e++) env.emplace_back(*e);
    env.push_back("BERTH_AGENT_TAKEOVER=" + std::to_string(getpid()));
    std::vector<char*> ev;
    for (std::string& e : env) ev.push_back(e.data());
    ev.push_back(nullptr);
    uv_stdio_container_t stdio[3];
    for (int i = 0; i < 3; i++) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    }
    uv_process_options_t o{};
    o.file = exe.c_str();
    o.args = av.data();
    o.env = ev.data();
    o.stdio = stdio;
    o.stdio_count = 3;
    // Its own session: it outlives this process, and a terminal's signals are not its.
    o.flags = UV_PROCESS_DETACHED;
    o.exit_cb = [](uv_process_t* p, int64_t status, int sig) {
      auto* self = static_cast<Successor*>(p->data);
      log::Error("agent", "the new agent exited before taking over; this one goes on",
                 {{"pid", self->pid_}, {"status", status}, {"signal", sig}});
      self->pid_ = 0;
      uv_close(reinterpret_cast<uv_handle_t*>(p), [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
      self->proc_ = nullptr;
    };
    proc_ = new uv_process_t;
    proc_->data = this;
    if (int err = uv_spawn(loop_, proc_, &o); err != 0) {
      log::Error("agent", "SIGUSR2: cannot start the new agent", {{"binary", exe}, {"error", uv_strerror(err)}});
      uv_close(reinterpret_cast<uv_handle_t*>(proc_),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
      proc_ = nullptr;
      return;
    }
    pid_ = proc_->pid;
    uv_unref(reinterpret_cast<uv_handle_t*>(proc_));
    log::Info("agent", "SIGUSR2: started a new agent to take over", {{"binary", exe}, {"pid", pid_}});
    if (files::ReadTrimmed("/proc/sys/net/ipv4/tcp_migrate_req") == "0") {
      log::Warn("agent",
                "net.ipv4.tcp_migrate_req is 0: connections still queued on this agent's listeners when it closes "
                "them are reset instead of passed to the new agent's (docs/operations.md, \"Upgrading an agent\")");
    }
    notify::SetStatus("handing over to a new agent, pid " + std::to_string(pid_));
  }

 private:
  uv_loop_t* loop_;
  std::vector<std::string> args_;
  uv_process_t* proc_ = nullptr;
  int pid_ = 0;
};

}  // namespace

int RunNodeAgent(const NodeAgentOptions& given) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);  // until its watch below is set
  uv_loop_t* loop = net::DefaultLoop();
  NodeAgentOptions options = given;
  // systemd (Type=notify): ready once registered with a server, when the
  // reconciler has its node and the desired-state stream opens; later
  // registrations (another server after a failover) update the status.
  bool ready = false;
  options.registered = [&ready](const std::string& node, const std::string& server) {
    std::string status = "registered as node " + node + " with " + server;
    if (ready) return notify::SetStatus(status);
    ready = true;
    notify::Ready(status);
  };
  NodeAgent agent(loop, options);
  // A server away at boot must not hold the boot, nor have systemd restart an
  // agent that keeps its containers: ready anyway after a minute, saying so.
  net::Timer ready_anyway(loop);
  ready_anyway.Start(kReadyWithoutServerMs, 0, [&ready] {
    if (ready) return;
    ready = true;
    notify::Ready("no server took the registration within a minute; running the containers it has, and trying");
  });
  ready_anyway.Unref();
  if (Status s = agent.Start(); !s) {
    fprintf(stderr, "berth agent: %s\n", s.error().message.c_str());
    return 2;
  }
  printf("berth agent: node agent for %s, server %s\n", options.docker.c_str(), options.server.c_str());
  fflush(stdout);
  auto stop = [loop](int sig) {
    log::Info("agent", "shutting down; containers keep running", {{"signal", sig}});
    notify::Stopping("shutting down (signal " + std::to_string(sig) + "); containers keep running");
    net::StopLoop(loop);
  };
  {
    net::SignalWatch sigterm(loop, SIGTERM, stop);
    net::SignalWatch sigint(loop, SIGINT, stop);
    // SIGUSR2: an upgrade that refuses no connection. A successor is started
    // from the binary now at this one's path, with the same arguments; it
    // listens beside this one, then sends SIGUSR1, at which this one stops
    // (its proxy closes its listeners and lets what is in flight finish).
    Successor successor(loop, options.args);
    net::SignalWatch sigusr2(loop, SIGUSR2, [&](int) { successor.Start(); });
    net::SignalWatch sigusr1(loop, SIGUSR1, [&](int) {
      if (!successor.running()) {
        log::Warn("agent", "SIGUSR1 with no successor started: ignored");
        return;
      }
      std::string status = "handed over to the new agent, pid " + std::to_string(successor.pid());
      log::Info("agent", "the new agent listens; handing over and stopping", {{"pid", successor.pid()}});
      notify::HandOver(successor.pid(), status);
      net::StopLoop(loop);
    });
    // Nothing of the agent's is read again while it runs: SIGHUP (a closed
    // terminal, an old habit) is noted, never fatal.
    net::SignalWatch sighup(loop, SIGHUP, [](int) {
      log::Info("agent", "SIGHUP: nothing to reload (flags and the environment are read at start; restart for those)");
    });
    // The watchdog's keep-alive comes from the loop, so a stuck loop stops it.
    net::Timer watchdog(loop);
    if (uint64_t every_ms = notify::WatchdogIntervalMs(); every_ms > 0) {
      watchdog.Start(every_ms, every_ms, [] { notify::Watchdog(); });
      watchdog.Unref();
    }
    net::RunLoop(loop);
    watchdog.Stop();
    ready_anyway.Stop();
    agent.Shutdown();
  }
  // The watches are gone, and libuv gave their signals back their default
  // actions: another SIGTERM (a second `kill`, systemd's) or any of the others
  // must not cut the rest of the stop short (a proxy draining for seconds).
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) signal(sig, SIG_IGN);
  return 0;
}

}  // namespace berth::agent
