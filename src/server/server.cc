#include "server/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "agent/node_agent.h"
#include "api/agents.h"
#include "api/api.h"
#include "api/session.h"
#include "api/stream.h"
#include "aws/frontend.h"
#include "base/crypto.h"
#include "base/files.h"
#include "base/json.h"
#include "base/log.h"
#include "base/notify.h"
#include "control/drains.h"
#include "control/proxy_config.h"
#include "control/retention.h"
#include "control/scheduler.h"
#include "model/state.h"
#include "net/http_client.h"
#include "net/tls.h"
#include "net/url.h"
#include "net/uv.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "server/cluster_ca.h"
#include "server/install.h"
#include "server/peers.h"
#include "store/store.h"

namespace berth::server {

namespace {

// The data directory holds the CA key, the admin token and the whole state: made
// 0700, or, when it exists, refused if another user owns it or every user may
// write to it, then brought to 0700 with its files 0600 and its directories 0700 (the
// modes a copy, an untar or an old berth may have left looser).
Status PrepareDataDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::Internal("cannot create data directory " + path + ": " + strerror(errno));
  }
  struct stat st {};  // (a link to a directory is that directory, as before)
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error::Invalid("data directory " + path + " is not a directory");
  }
  char mode[8];
  snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if (st.st_uid != geteuid()) {
    return Error::Invalid("data directory " + path + " is owned by uid " + std::to_string(st.st_uid) +
                          ", not this user (uid " + std::to_string(geteuid()) + "): refusing it");
  }
  if (st.st_mode & S_IWOTH) {
    return Error::Invalid("data directory " + path + " is writable by every user (mode " + mode +
                          "): refusing it, as its state and keys could have been replaced; chmod 700 " + path +
                          " once you trust what it holds");
  }
  int tightened = 0;
  if ((st.st_mode & 07777) != 0700) {
    if (chmod(path.c_str(), 0700) != 0) {
      return Error::Internal("cannot chmod 700 data directory " + path + ": " + strerror(errno));
    }
    tightened++;
  }
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string full = path + "/" + name;
      struct stat fs {};
      if (lstat(full.c_str(), &fs) != 0) continue;
      mode_t want = S_ISDIR(fs.st_mode) ? 0700 : S_ISREG(fs.st_mode) ? 0600 : 0;
      if (want == 0 || (fs.st_mode & 07777) == want) continue;  // a link or a socket keeps its mode
      if (chmod(full.c_str(), want) != 0) {
        closedir(d);
        return Error::Internal("cannot chmod " + full + ": " + strerror(errno));
      }
      tightened++;
    }
    closedir(d);
  }
  if (tightened > 0) {
    log::Warn("server", "tightened the modes of the data directory", {{"path", path}, {"entries", tightened}});
  }
  return {};
}

// The key secrets are sealed with: the operator's file (`--secret-key-file`,
// never written), or DIR/secret.key, made at first start (32 random bytes, 0600).
// A key file others may read is refused. Secrets sealed with another key are
// named at start (they will not open; tasks taking them fail to start).
Result<model::SecretBox> LoadSecretKey(const Options& o, const model::State& state) {
  std::string path = o.secret_key_file.empty() ? o.data_dir + "/secret.key" : o.secret_key_file;
  if (o.secret_key_file.empty() && access(path.c_str(), F_OK) != 0) {
    std::string key(crypto::kSecretKeyBytes, '\0');
    if (Status s = crypto::RandomBytes(key.data(), key.size()); !s) return s.take_error();
    if (Status s = files::WriteAtomically(path, key, 0600); !s) return s.take_error();
    log::Info("server", "made the key that seals secrets", {{"path", path}});
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::Invalid("secret key file " + path + ": " + strerror(errno));
  struct stat st {};
  fstat(fd, &st);
  if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 || st.st_size > 4096) {
    close(fd);
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error::Invalid("secret key file " + path + " must be a regular file only its owner may read (mode " + mode +
                          "); chmod 600 " + path);
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = read(fd, text.data(), text.size());
  close(fd);
  if (n != st.st_size) return Error::Invalid("secret key file " + path + ": short read");
  Result<model::SecretBox> box = model::SecretBox::FromKeyText(text, "secret key file " + path);
  std::fill(text.begin(), text.end(), '\0');
  if (!box) return box.take_error();
  size_t other = 0;
  for (const auto& [name, sec] : state.secrets()) other += sec.key_id != box->id();
  if (other > 0) {
    log::Warn("server", "secrets sealed with another key will not open; rotate them or start with their key file",
              {{"secrets", static_cast<int64_t>(other)}, {"key", box->id()}});
  }
  return box;
}

// Submits `cmd` and runs the loop until it is applied (start-up, before the
// server serves).
Status ApplyNow(store::Store* store, store::CommandPtr cmd) {
  Status out;
  bool done = false;
  cmd->time_ms = SystemClock::Get().NowUnixMs();
  store->Submit(std::move(cmd), [&out, &done](Result<std::string> r) {
    if (!r) out = r.take_error();
    done = true;
  });
  store->Flush();
  if (!net::RunLoopUntil(net::DefaultLoop(), [&done] { return done; })) {
    return Error::Internal("the log stopped before the change was applied");
  }
  return out;
}

// This server's id in the cluster: <data>/server-id, a random number made at
// first start.
Result<uint64_t> ServerId(const std::string& data_dir) {
  std::string path = data_dir + "/server-id";
  std::string text = files::ReadTrimmed(path);
  if (!text.empty()) {
    char* end = nullptr;
    unsigned long long id = strtoull(text.c_str(), &end, 10);
    if (id == 0 || *end != '\0') return Error::Invalid(path + " does not hold a server id: '" + text + "'");
    return static_cast<uint64_t>(id);
  }
  uint64_t id = 0;
  while (id == 0) {
    if (Status s = crypto::RandomBytes(&id, sizeof id); !s) return s.take_error();
    id >>= 1;  // printable as a signed number too
  }
  if (Status s = files::WriteAtomically(path, std::to_string(id) + "\n", 0600); !s) return s.take_error();
  return id;
}

// First start: the default cluster and the admin token. The token is printed
// this once (with the CA's pin, as every token berth prints) and kept in
// <data>/admin-token (0600); later starts say where it is, never what it is.
Status FirstStart(const Options& o, const ClusterCa& ca, model::State* state, store::Store* store) {
  if (store->applied_index() == 0 && !state->FindCluster("default")) {
    auto c = std::make_unique<model::CreateCluster>();
    c->name = "default";
    if (Status s = ApplyNow(store, std::move(c)); !s) return s;
    log::Info("server", "created the default cluster");
  }
  std::string token_path = o.data_dir + "/admin-token";
  if (state->token_count() == 0) {
    Result<std::string> token = crypto::NewToken("berth_");
    if (!token) return token.take_error();
    std::string pinned = crypto::PinnedToken(ca.fingerprint(), token.value());
    // The file first: a crash before the commit only means a new token next start.
    if (Status s = files::WriteAtomically(token_path, pinned + "\n"); !s) return s;
    auto t = std::make_unique<model::CreateToken>();
    t->id = "admin";
    t->role = "admin";
    t->hash = crypto::Hex(crypto::Sha256(token.value()));
    if (Status s = ApplyNow(store, std::move(t)); !s) return s;
    printf("berth: admin token (shown this once; also in %s): %s\n", token_path.c_str(), pinned.c_str());
  } else if (access(token_path.c_str(), R_OK) == 0) {
    printf("berth: the admin token is in %s\n", token_path.c_str());
  } else {
    printf("berth: the admin token was given at first start (%s no longer exists)\n", token_path.c_str());
  }
  return {};
}

// The local agent's token (role agent), kept in <data>/agent-token; made anew
// when the file is missing or the token no longer exists.
Result<std::string> LocalAgentToken(const Options& o, model::State* state, store::Store* store) {
  std::string path = o.data_dir + "/agent-token";
  std::string secret = files::ReadTrimmed(path);
  if (!secret.empty() && state->FindTokenBySecret(secret)) return secret;
  Result<std::string> token = crypto::NewToken("berth_");
  if (!token) return token.take_error();
  Result<std::string> suffix = crypto::NewToken("");
  if (!suffix) return suffix.take_error();
  if (Status s = files::WriteAtomically(path, token.value() + "\n"); !s) return s.take_error();
  auto t = std::make_unique<model::CreateToken>();
  t->id = "local-agent-" + suffix.value().substr(0, 8);
  t->role = "agent";
  t->hash = crypto::Hex(crypto::Sha256(token.value()));
  if (Status s = ApplyNow(store, std::move(t)); !s) return s.take_error();
  return token.value();
}

// A free TCP port on `host`, for a server told to pick one (--listen HOST:0): its
// address goes into the log before the listener opens.
Result<int> FreePort(const std::string& host) {
  int fd = socket(host.find(':') != std::string::npos ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::Internal(std::string("socket: ") + strerror(errno));
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (host.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) a->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof *a;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len)) {
    int e = errno;
    close(fd);
    return Error::Internal("cannot find a free port on " + host + ": " + strerror(e));
  }
  close(fd);
  return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// Where the other servers reach this one: --peer-address, else the address
// listened on, else (listening on every address) the first advertised name or
// this host's first address that is not loopback.
std::string PeerAddress(const Options& o, const net::Endpoint& where) {
  if (!o.peer_address.empty()) return o.peer_address;
  std::string host = where.host;
  if (host == "0.0.0.0" || host == "::" || host.empty()) {
    host = "127.0.0.1";
    if (!o.advertise.empty()) {
      host = o.advertise.front();
    } else {
      std::vector<std::string> names, addresses;
      HostNames({}, &names, &addresses);
      for (const std::string& a : addresses) {
        if (a != "127.0.0.1" && a != "::1" && a.find(':') == std::string::npos) {
          host = a;
          break;
        }
      }
    }
  }
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(where.port);
}

// A server joining a cluster, at its first start: asks the member at --join,
// with the server token, for the cluster's CA and the key that seals secrets,
// and keeps them in the data directory. The token's pin is what it trusts.
Status FetchJoinCredentials(const Options& o) {
  crypto::TokenParts token = crypto::SplitToken(o.join_token);
  if (token.pin.empty()) {
    return Error::Invalid(
        "--token must be the pinned token 'berth token create --role server' prints (it carries the fingerprint "
        "of the cluster's CA, which is how this server knows it reaches the right cluster)");
  }
  Result<net::Endpoint> at = net::Endpoint::Parse(o.join);
  if (!at || at->kind != net::Endpoint::Kind::kTcp || !at->tls) {
    return Error::Invalid("--join: expected https://HOST:PORT of a server of the cluster, not '" + o.join + "'");
  }
  Result<std::shared_ptr<net::tls::ClientContext>> tls = net::tls::ClientContextFor(token.pin, "");
  if (!tls) return tls.take_error();
  net::http::ClientOptions co;
  co.tls = tls.value();
  co.timeout_ms = 10000;
  Result<net::http::ClientResponse> r =
      net::http::FetchSync(at.value(), net::http::BearerRequest("POST", "/v1/servers/join", token.secret, "{}"), co);
  if (!r) return Error::Invalid("--join " + o.join + ": " + r.error().message);
  if (r->status != 200) {
    return Error::Invalid("--join " + o.join + ": the server answered " + std::to_string(r->status) + ": " + r->body);
  }
  Result<json::Doc> doc = json::Doc::Parse(r->body);
  if (!doc) return Error::Invalid("--join " + o.join + ": an answer that is not JSON");
  Result<std::string> ca_pem = json::RequireString(doc->view(), "caCertificate", "caCertificate");
  Result<std::string> ca_key = json::RequireString(doc->view(), "caKey", "caKey");
  Result<std::string> secret_key = json::RequireString(doc->view(), "secretKey", "secretKey");
  if (!ca_pem || !ca_key || !secret_key) return Error::Invalid("--join " + o.join + ": an answer missing a field");
  if (Status s = ClusterCa::Adopt(o.data_dir, ca_pem.value(), ca_key.value()); !s) return s;
  if (o.secret_key_file.empty()) {
    std::string path = o.data_dir + "/secret.key";
    if (Status s = files::WriteAtomically(path, secret_key.value() + "\n", 0600); !s) return s;
  }
  log::Info("server", "has the cluster's CA and keys", {{"from", o.join}});
  return {};
}

// Asks the cluster to take this server as a member: POST /v1/servers at the
// --join URL (following the answer to the leader's address), until it is done.
class JoinRequest {
 public:
  JoinRequest(uv_loop_t* loop, const Options& o, uint64_t id, std::string address)
      : loop_(loop), o_(o), id_(id), address_(std::move(address)), retry_(loop) {}

  void Start() { Try(o_.join); }

 private:
  void Try(const std::string& url) {
    crypto::TokenParts token = crypto::SplitToken(o_.join_token);
    Result<net::Endpoint> at = net::Endpoint::Parse(url);
    Result<std::shared_ptr<net::tls::ClientContext>> tls = net::tls::ClientContextFor(token.pin, "");
    if (!at || !tls) {
      Fail("cannot reach " + url);
      return;
    }
    net::http::ClientOptions co;
    co.tls = tls.value();
    co.timeout_ms = 120000;  // a promotion waits until this server caught up
    client_ = std::make_unique<net::http::Client>(loop_, at.value(), co);
    json::Doc body = json::Doc::Object();
    body.Set("id", std::to_string(id_)).Set("address", address_);
    client_->Send(net::http::BearerRequest("POST", "/v1/servers", token.secret, body.Print()),
                  [this, url](Result<net::http::ClientResponse> r) {
                    if (!r) return Again(url, r.error().message);
                    Result<net::Endpoint> leader = net::ParseOrigin(r->Header("location"));
                    if (r->status == 307 && leader && hops_++ < 5) {
                      return Again(std::string(leader->tls ? "https://" : "http://") + leader->ToString(), "");
                    }
                    if (r->status == 503) return Again(url, r->body);
                    if (r->status != 200)
                      return Fail("the cluster answered " + std::to_string(r->status) + ": " + r->body);
                    Result<json::Doc> d = json::Doc::Parse(r->body);
                    std::string role = d ? std::string(d->view().Get("role").String()) : "";
                    printf("berth: joined the cluster as server %llu (%s) at %s\n",
                           static_cast<unsigned long long>(id_), role.c_str(), address_.c_str());
                    fflush(stdout);
                    log::Info("server", "joined the cluster", {{"id", id_}, {"role", role}});
                  });
  }

  void Again(const std::string& url, const std::string& why) {
    if (!why.empty()) log::Info("server", "joining: trying again", {{"at", url}, {"why", why}});
    retry_.Start(why.empty() ? 0 : 1000, 0, [this, url] { Try(url); });
  }

  void Fail(const std::string& why) {
    fprintf(stderr, "berth server: joining the cluster at %s failed: %s\n", o_.join.c_str(), why.c_str());
    log::Error("server", "joining the cluster failed", {{"why", why}});
    _exit(1);  // nothing of this server is a member; its data directory may be removed
  }

  uv_loop_t* loop_;
  const Options& o_;
  uint64_t id_;
  std::string address_;
  net::Timer retry_;
  std::unique_ptr<net::http::Client> client_;
  int hops_ = 0;
};

}  // namespace

int Run(const Options& o) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);  // a reload asked before the server serves is not fatal
  // Every agent holds a connection: take all the descriptors we may.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // Whatever the server writes is its own alone: state, keys, blobs, sockets.
  umask(077);
  if (Status s = PrepareDataDir(o.data_dir); !s) {
    fprintf(stderr, "berth server: %s\n", s.error().message.c_str());
    return 1;
  }
  // One server per data directory.
  std::string lock_path = o.data_dir + "/lock";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    fprintf(stderr, "berth server: %s is in use by another berth server\n", o.data_dir.c_str());
    return 1;
  }

  Result<net::Endpoint> where = net::Endpoint::Parse(o.listen);
  if (!where || where->kind != net::Endpoint::Kind::kTcp) {
    fprintf(stderr, "berth server: --listen: %s\n", where ? "expected HOST:PORT" : where.error().message.c_str());
    return 2;
  }
  if (where->port == 0) {
    Result<int> free_port = FreePort(where->host);
    if (!free_port) {
      fprintf(stderr, "berth server: %s\n", free_port.error().message.c_str());
      return 1;
    }
    where->port = free_port.value();
  }
  Result<uint64_t> server_id = ServerId(o.data_dir);
  if (!server_id) {
    fprintf(stderr, "berth server: %s\n", server_id.error().message.c_str());
    return 1;
  }
  std::string peer_address = PeerAddress(o, where.value());
  // Joining a cluster: only at first start (later starts find the log).
  struct stat raft_dir {};
  bool joining = !o.join.empty() && stat((o.data_dir + "/raft").c_str(), &raft_dir) != 0;
  if (!o.join.empty() && !joining) {
    // A member already (a restart with the same flags), of the cluster the token pins.
    Result<std::unique_ptr<ClusterCa>> mine = ClusterCa::Open(o.data_dir);
    std::string pin = crypto::SplitToken(o.join_token).pin;
    if (mine && !pin.empty() && mine.value()->fingerprint() != pin) {
      fprintf(stderr,
              "berth server: %s belongs to another cluster (its CA is %s, the token pins %s): a server joins with an "
              "empty data directory\n",
              o.data_dir.c_str(), mine.value()->fingerprint().c_str(), pin.c_str());
      return 1;
    }
    log::Info("server", "a member of its cluster already: --join is not needed again", {{"join", o.join}});
  }
  if (joining) {
    if (Status s = FetchJoinCredentials(o); !s) {
      fprintf(stderr, "berth server: %s\n", s.error().message.c_str());
      return 1;
    }
  }

  uv_loop_t* loop = net::DefaultLoop();
  metrics::Registry registry;
  model::State state;
  registry::RegistryState registry_state;  // the registry's part of the state
  state.AddPart(&registry_state);
  store::StoreOptions so;
  so.path = o.data_dir + "/state.db";
  so.group_commit = o.group_commit;
  so.entry_budget_ns = o.apply_budget_ms * 1000000;
  Result<std::unique_ptr<store::Store>> opened = store::Store::Open(so, &state, &registry);
  if (!opened) {
    fprintf(stderr, "berth server: %s\n", opened.error().message.c_str());
    return 1;
  }
  std::unique_ptr<store::Store> store = std::move(opened.value());
  store->StartCheckpointer();
  Result<std::unique_ptr<ClusterCa>> opened_ca = ClusterCa::Open(o.data_dir);
  if (!opened_ca) {
    fprintf(stderr, "berth server: cluster CA: %s\n", opened_ca.error().message.c_str());
    return 1;
  }
  std::unique_ptr<ClusterCa> ca = std::move(opened_ca.value());
  // How this server reaches its peers: the cluster CA, and a certificate naming
  // it (renewed with the server's).
  std::shared_ptr<net::tls::ClientContext> peer_tls;
  auto make_peer_tls = [&]() -> Status {
    Result<ClusterCa::Identity> id = ca->IssuePeerCert(server_id.value(), time(nullptr), o.cert_lifetime_s);
    if (!id) return id.take_error();
    net::tls::ClientSettings cs;
    cs.ca_pem = ca->ca_pem();
    cs.cert_pem = id->cert_pem;
    cs.key_pem = id->key_pem;
    cs.handshake_timeout_ms = 2000;
    Result<std::shared_ptr<net::tls::ClientContext>> made = net::tls::ClientContext::Create(cs);
    if (!made) return made.take_error();
    peer_tls = made.value();
    return {};
  };
  if (o.tls) {
    if (Status s = make_peer_tls(); !s) {
      fprintf(stderr, "berth server: peer certificate: %s\n", s.error().message.c_str());
      return 1;
    }
  }
  // The command log: Raft's, on this loop (a cluster of one until peers join).
  replica::Options ro;
  ro.dir = o.data_dir + "/raft";
  ro.id = server_id.value();
  ro.address = peer_address;
  ro.join = joining;
  ro.peer_tls = [&peer_tls] { return peer_tls; };
  ro.election_timeout_ms = o.election_timeout_ms;
  ro.heartbeat_ms = std::max(20u, o.election_timeout_ms / 10);
  ro.lease_ms = o.election_timeout_ms * 3 / 4;
  ro.snapshot_threshold = o.snapshot_entries;
  ro.snapshot_trailing = o.snapshot_entries;
  Result<std::unique_ptr<replica::Replica>> started = replica::Replica::Start(loop, ro, store.get(), &registry);
  if (!started) {
    fprintf(stderr, "berth server: %s\n", started.error().message.c_str());
    return 1;
  }
  std::unique_ptr<replica::Replica> replica = std::move(started.value());
  // Everything the log holds is applied before the server serves, when this
  // server is a cluster of one. A member of a larger cluster serves at once (it
  // must, for its peers to elect a leader) and applies entries as they commit.
  replica::LogStatus at_start = replica->Describe();
  if (at_start.servers.size() == 1 && at_start.servers[0].id == server_id.value()) {
    bool replayed = false;
    Status barrier;
    replica->Barrier([&](Status s) {
      barrier = std::move(s);
      replayed = true;
    });
    if (!net::RunLoopUntil(loop, [&replayed] { return replayed; }) || !barrier) {
      fprintf(stderr, "berth server: replaying the log: %s\n",
              barrier ? "the log stopped" : barrier.error().message.c_str());
      return 1;
    }
  }
  if (!replica->leader()) {
    if (!joining) {
      printf("berth: server %llu of a cluster of %zu, at %s; the admin token was given at the cluster's first start\n",
             static_cast<unsigned long long>(server_id.value()), at_start.servers.size(), peer_address.c_str());
    }
  } else if (Status s = FirstStart(o, *ca, &state, store.get()); !s) {
    fprintf(stderr, "berth server: first start: %s\n", s.error().message.c_str());
    return 1;
  }

  // Group commit: everything submitted during one iteration's I/O is proposed
  // after it, as one log entry (proposing does not wait for the disk), and the
  // audit entries of the answers made meanwhile are written; then the answers
  // leave, so none leaves before its audit entry.
  net::http::Server* http_server = nullptr;
  net::AfterIo flusher(loop, [&store, &http_server] {
    store->Flush();
    if (http_server) http_server->FlushWrites();
  });
  store->SetWakeup([&flusher] { flusher.Arm(); });

  Result<model::SecretBox> secret_key = LoadSecretKey(o, state);
  if (!secret_key) {
    fprintf(stderr, "berth server: %s\n", secret_key.error().message.c_str());
    return 1;
  }

  control::Scheduler scheduler(&state);
  control::ProxyConfigs proxies(&state, &SystemClock::Get());
  proxies.SetSecrets(&secret_key.value());
  scheduler.SetProxyConfigs(&proxies);
  api::AgentOptions agent_options;
  agent_options.secrets = &secret_key.value();
  agent_options.heartbeat_interval_ms = o.heartbeat_interval_ms;
  agent_options.max_heartbeats_per_s = o.max_heartbeats_per_s;
  agent_options.lost_after_ms = o.node_lost_after_ms;
  // Agents learn every server at registration, so they find the leader after a failover.
  agent_options.term = [&replica] { return replica->term(); };
  agent_options.server_urls = [&replica, &o] {
    std::vector<std::string> urls;
    for (const replica::ServerView& v : replica->Describe().servers) {
      if (!v.address.empty()) urls.push_back(std::string(o.tls ? "https" : "http") + "://" + v.address);
    }
    return urls;
  };
  if (o.tls) {
    // Agents join with a signing request and get a node certificate (mutual TLS).
    agent_options.issue_node_cert = [&ca, &o](const std::string& csr, const std::string& node_id) {
      return ca->IssueNodeCert(csr, node_id, time(nullptr), o.cert_lifetime_s);
    };
    agent_options.ca_pem = ca->ca_pem();
  }
  api::AgentHub agents(&state, store.get(), &SystemClock::Get(), agent_options, &registry);
  agents.SetProxyConfigs(&proxies);
  // A target's task is signalled only once its proxies have drained it; an agent
  // away as long as it takes to be declared lost is not waited for.
  control::DrainOptions drain_options;
  drain_options.grace_ms = o.node_lost_after_ms;
  control::Drains drains(&state, &proxies, &SystemClock::Get(), drain_options);
  agents.SetDrains(&drains);
  control::ServiceController services(&state, store.get(), &scheduler, &SystemClock::Get());
  control::RetentionOptions retention_options;
  retention_options.task_retention_ms = o.task_retention_ms;
  retention_options.stopped_per_service = o.stopped_tasks_per_service;
  control::RetentionController retention(&state, store.get(), &SystemClock::Get(), retention_options);
  // Only the leader acts: reconciles services, watches agents, forgets what is
  // old. Every server applies the log.
  store->SetAfterFlush([&agents, &services, &replica] {
    if (!replica->acting()) return;
    services.Reconcile();
    agents.Flush();
  });
  replica->OnLeadership([&agents, &services, &store](bool leading) {
    agents.Lead(leading);
    if (leading) {
      services.Reconcile();
      store->Flush();
    }
  });
  agents.Lead(replica->acting());
  // Standbys take the place of voters the cluster lacks: three voters from three
  // servers, five from five, one change at a time. A voter not heard from for
  // --server-dead-after is lacking too, when a standby answers to take its
  // place: the standby is promoted first, then the dead voter made a standby
  // (it stays one when it comes back). Promoting first keeps a majority of
  // live voters at every step.
  bool changing = false;
  metrics::Counter* replaced =
      registry
          .Counters("berth_raft_voters_replaced_total",
                    "Voters not heard from for --server-dead-after that the leader made standbys")
          ->With({});
  auto balance = [&replica, &changing, &o, replaced] {
    if (changing) return;
    replica::LogStatus st = replica->Describe();
    std::vector<const replica::ServerView*> live, dead, standbys;
    for (const replica::ServerView& v : st.servers) {
      if (v.role == "voter") {
        bool silent = v.heard_ms_ago >= 0 && static_cast<uint64_t>(v.heard_ms_ago) >= o.server_dead_after_ms;
        (silent ? dead : live).push_back(&v);
      }
      if (v.role == "standby" && v.recent_contact) standbys.push_back(&v);
    }
    size_t n = live.size() + dead.size() + standbys.size();
    size_t target = n >= 5 ? 5 : n >= 3 ? 3 : n;
    if (live.size() < target && !standbys.empty()) {
      changing = true;
      uint64_t id = standbys.front()->id;
      if (dead.empty()) {
        log::Info("server", "promoting a standby to voter",
                  {{"id", id}, {"voters", static_cast<int64_t>(live.size())}});
      } else {
        log::Warn("server", "promoting a standby in the place of a voter not heard from",
                  {{"id", id}, {"dead", dead.front()->id}, {"silent_ms", dead.front()->heard_ms_ago}});
      }
      replica->AddServer(id, "", true, [&changing, id](Status s) {
        changing = false;
        if (!s) log::Warn("server", "promoting a standby failed", {{"id", id}, {"error", s.error().message}});
      });
    } else if (!dead.empty() && live.size() >= target) {
      // Enough live voters without it: the dead one steps down to standby.
      changing = true;
      uint64_t id = dead.front()->id;
      log::Warn("server", "making a voter not heard from a standby",
                {{"id", id}, {"silent_ms", dead.front()->heard_ms_ago}, {"voters", static_cast<int64_t>(live.size())}});
      replica->AddServer(id, "", false, [&changing, id, replaced](Status s) {
        changing = false;
        if (!s) {
          log::Warn("server", "making a dead voter a standby failed", {{"id", id}, {"error", s.error().message}});
        } else {
          replaced->Inc();
        }
      });
    }
  };
  net::Timer ticker(loop);
  int audit_trim_in = 0;
  ticker.Start(1000, 1000, [&agents, &services, &retention, &store, &state, &o, &audit_trim_in, &replica, &balance] {
    // The audit log's retention, once a minute (each server keeps its own).
    if (--audit_trim_in <= 0) {
      audit_trim_in = 60;
      int64_t cutoff = SystemClock::Get().NowUnixMs() - static_cast<int64_t>(o.audit_retention_ms);
      Result<int64_t> gone = store::TrimAudit(store->db(), cutoff, o.audit_max_entries);
      if (!gone) log::Warn("server", "audit log retention failed", {{"error", gone.error().message}});
    }
    if (!replica->acting()) return;
    agents.Tick();
    services.Tick();
    retention.Tick();
    balance();
    // When tokens were last used (on the leader: uses seen by a follower are not
    // recorded yet), written about once a minute per token.
    auto used = state.TokensToTouch(SystemClock::Get().NowUnixMs(), 60000);
    if (!used.empty()) {
      auto touch = std::make_unique<model::TouchTokens>();
      touch->used = std::move(used);
      touch->time_ms = SystemClock::Get().NowUnixMs();
      store->Submit(std::move(touch), [](Result<std::string>) {});
    }
    store->Flush();
  });
  ticker.Unref();

  api::Context ctx{&state,    store.get(),       &registry,    &SystemClock::Get(), &scheduler,
                   &services, ca->fingerprint(), ca->ca_pem(), &secret_key.value()};
  // The dashboard's change streams; before the HTTP server, which may end them
  // as it goes.
  api::StreamLimits stream_limits;
  stream_limits.keepalive_ms = static_cast<uint64_t>(o.stream_keepalive_ms);
  stream_limits.max_streams = static_cast<size_t>(o.stream_max);
  stream_limits.max_per_token = static_cast<size_t>(o.stream_max_per_token);
  api::ChangeStreams streams(loop, &state, &SystemClock::Get(), stream_limits);
  ctx.streams = &streams;
  ctx.retention = &retention;
  ctx.proxies = &proxies;
  ctx.drains = &drains;
  ctx.servers = [&replica] {
    replica::LogStatus st = replica->Describe();
    json::Doc list = json::Doc::Array();
    for (const replica::ServerView& v : st.servers) {
      json::Doc one = json::Doc::Object();
      one.Set("id", std::to_string(v.id))
          .Set("address", v.address)
          .Set("role", v.role)
          .Set("leader", v.leader)
          .Set("self", v.id == st.id);
      if (v.match_index >= 0) {
        one.Set("matchIndex", v.match_index).Set("lag", static_cast<int64_t>(st.last_index) - v.match_index);
      }
      if (v.sent_ms_ago >= 0) one.Set("sentMsAgo", v.sent_ms_ago).Set("recentContact", v.recent_contact);
      if (v.heard_ms_ago >= 0) one.Set("heardMsAgo", v.heard_ms_ago);
      list.Push(std::move(one));
    }
    json::Doc out = json::Doc::Object();
    out.Set("id", std::to_string(st.id))
        .Set("term", static_cast<int64_t>(st.term))
        .Set("leader", st.leader)
        .Set("leaderId", std::to_string(st.leader_id))
        .Set("commitIndex", static_cast<int64_t>(st.commit_index))
        .Set("appliedIndex", static_cast<int64_t>(st.applied_index))
        .Set("lastIndex", static_cast<int64_t>(st.last_index))
        .Set("servers", std::move(list));
    return out;
  };
  ctx.join_credentials = [&ca, &secret_key, &o]() -> Result<json::Doc> {
    if (!o.tls) {
      return Error{ErrorKind::kConflict, "NoTls",
                   "this server runs without TLS (--no-tls): servers join over TLS only"};
    }
    json::Doc d = json::Doc::Object();
    d.Set("caCertificate", ca->ca_pem())
        .Set("caKey", ca->ca_key_pem())
        .Set("secretKey",
             crypto::Hex(reinterpret_cast<const uint8_t*>(secret_key->key().data()), secret_key->key().size()));
    return d;
  };
  // Membership: a new server is a voter while the cluster has fewer than three,
  // a standby otherwise; balance() brings standbys up to three or five voters.
  ctx.add_server = [&replica, &changing, &peer_address](uint64_t id, const std::string& address,
                                                        std::function<void(Result<json::Doc>)> done) {
    replica::LogStatus st = replica->Describe();
    if (!st.leader) {
      return done(Error{ErrorKind::kUnavailable, "NotLeader", "this server is not the cluster's leader"});
    }
    for (const replica::ServerView& v : st.servers) {
      if (v.id == st.id && v.address != peer_address) {
        return done(Error{ErrorKind::kConflict, "LeaderAddress",
                          "this server is in the log at " + v.address + ", where other servers cannot reach it; " +
                              "it now listens at " + peer_address +
                              " (a log made by an older berth keeps the first "
                              "address: start a new cluster to have peers)"});
      }
    }
    bool voter = replica->Voters(id) < 3;
    changing = true;
    replica->AddServer(id, address, voter, [id, voter, done, &changing](Status s) {
      changing = false;
      if (!s) return done(s.take_error());
      json::Doc d = json::Doc::Object();
      d.Set("id", std::to_string(id)).Set("role", voter ? "voter" : "standby");
      done(std::move(d));
    });
  };
  ctx.remove_server = [&replica, &changing](uint64_t id, std::function<void(Status)> done) {
    if (!replica->leader()) {
      return done(Error{ErrorKind::kUnavailable, "NotLeader", "this server is not the cluster's leader"});
    }
    changing = true;
    replica->RemoveServer(id, [done, &changing](Status s) {
      changing = false;
      done(std::move(s));
    });
  };
  ctx.raft_connect = [&replica](const net::http::ExchangePtr& ex) {
    const net::http::Request& req = ex->request();
    std::string id_text(req.Header("berth-raft-id"));
    std::string address(req.Header("berth-raft-address"));
    char* end = nullptr;
    unsigned long long id = strtoull(id_text.c_str(), &end, 10);
    if (id_text.empty() || *end != '\0' || id == 0 || ex->principal != "server:" + id_text) {
      return ex->Respond(net::http::ErrorResponse(
          403, "Forbidden", "Berth-Raft-Id must be the id the peer certificate names (" + ex->principal + ")"));
    }
    if (!replica->MayConnect(id)) {
      return ex->Respond(net::http::ErrorResponse(
          403, "NotAMember", "server " + id_text + " is not a member of this cluster (removed, or never added)"));
    }
    replica::Replica* r = replica.get();
    bool taken = ex->Upgrade("berth-raft", {}, [r, id, address](std::unique_ptr<net::Stream> s, std::string early) {
      r->AcceptPeer(id, address, std::move(s), std::move(early));
    });
    if (!taken) {
      ex->Respond(net::http::ErrorResponse(400, "UpgradeRequired",
                                           "GET /v1/raft switches to the raft protocol: send Connection: Upgrade "
                                           "and Upgrade: berth-raft, and no body"));
    }
  };
  net::http::Router router;
  api::AddRoutes(&router, &ctx);
  agents.AddRoutes(&router);
  // What a new box installs from (server/install.h, docs/install.md).
  Result<std::unique_ptr<SelfBinary>> self_binary = SelfBinary::Open();
  if (!self_binary) {
    log::Warn("install", "the binary is not served", {{"error", self_binary.error().message}});
  }
  InstallOptions install_options;
  install_options.tls = o.tls;
  install_options.server_key_pem = [&ca] { return ca->server_key_pem(); };
  install_options.state = &state;
  install_options.now_ms = [] { return SystemClock::Get().NowUnixMs(); };
  AddInstallRoutes(&router, self_binary ? self_binary->get() : nullptr, &install_options);
  // What the servers ask of each other beside the log (server/peers.h): changes
  // forwarded to the leader, and the registry's blobs.
  PeerClients peer_clients(loop, [&peer_tls] { return peer_tls; });
  Forwarder forwarder(replica.get(), store.get(), &state, &peer_clients);
  ctx.submit_anywhere = [&forwarder](store::CommandPtr cmd, store::Store::Reply reply) {
    forwarder.Submit(std::move(cmd), std::move(reply));
  };
  ctx.session_ttl_ms = o.session_ttl_ms;
  ctx.tls = o.tls;
  auto member = [&replica](const std::string& principal) {
    if (!principal.starts_with("server:")) return false;
    char* end = nullptr;
    unsigned long long id = strtoull(principal.c_str() + 7, &end, 10);
    return id != 0 && *end == '\0' && replica->MayConnect(id);
  };
  {
    net::http::RouteOptions peer;
    peer.access = net::http::Access::kPeer;
    peer.audit = false;
    peer.max_body = Forwarder::kMaxBody;
    router.Add(
        "POST", "/v1/raft/forward",
        [&forwarder, member](const net::http::ExchangePtr& ex) {
          if (!member(ex->principal)) {
            return ex->Respond(
                net::http::ErrorResponse(403, "NotAMember", ex->principal + " is not a member of this cluster"));
          }
          forwarder.Handle(ex);
        },
        peer);
  }
  registry::Options registry_options;
  registry_options.dir = o.data_dir + "/registry";
  registry_options.auto_create = o.registry_auto_create;
  registry_options.gc_interval_ms = o.registry_gc_interval_ms;
  registry_options.gc_grace_ms = o.registry_gc_grace_ms;
  registry_options.upload_expiry_ms = o.registry_upload_expiry_ms;
  registry::Registry image_registry(loop, &registry_state, &state, store.get(), &SystemClock::Get(), registry_options);
  registry::Cluster registry_cluster;
  registry_cluster.submit = [&forwarder](store::CommandPtr cmd, store::Store::Reply reply) {
    forwarder.Submit(std::move(cmd), std::move(reply));
  };
  registry_cluster.acting = [&replica] { return replica->acting(); };
  registry_cluster.peers = [&replica] {
    replica::LogStatus st = replica->Describe();
    std::vector<std::string> out;
    for (const replica::ServerView& v : st.servers) {
      if (v.id == st.id) continue;
      if (v.leader)
        out.insert(out.begin(), v.address);
      else
        out.push_back(v.address);
    }
    return out;
  };
  registry_cluster.has_peers = [&replica] { return replica->Members() > 1; };
  registry_cluster.copies_needed = [&replica] { return size_t{replica->Voters() / 2 + 1}; };
  registry_cluster.client = [&peer_clients](const std::string& address) {
    return peer_clients.For(address, PeerClients::Lane::kBlobs);
  };
  registry_cluster.member = member;
  image_registry.SetCluster(std::move(registry_cluster));
  // ECR login passwords (registry/auth.h) verify with the access key's secret,
  // opened with the key that seals secrets (as every server of the cluster holds).
  image_registry.auth().SetAccessKeyOpener([&ctx](const model::Token& key) -> std::optional<std::string> {
    Result<std::string> secret = api::AccessKeySecret(ctx, key);
    if (!secret) {
      log::Warn("registry", "an access key's secret did not open",
                {{"key", key.id}, {"error", secret.error().message}});
      return std::nullopt;
    }
    return std::move(secret.value());
  });
  if (Status s = image_registry.Start(); !s) {
    fprintf(stderr, "berth server: registry: %s\n", s.error().message.c_str());
    return 1;
  }
  image_registry.AddRoutes(&router);
  aws::Options aws_options;
  aws_options.account = o.aws_account;
  aws_options.acting = [&replica] { return replica->acting(); };
  aws_options.to_leader = [&replica, &peer_clients, &store](const net::http::Request& req,
                                                            std::function<void(net::http::Response)> done) {
    auto unavailable = [](std::string message) {
      net::http::Response r;
      r.status = 503;
      r.content_type = "application/x-amz-json-1.1";
      r.body = json::Doc::Object().Set("__type", "ServerException").Set("message", message).Print();
      r.headers.push_back({"Retry-After", "1"});
      return r;
    };
    std::string leader = replica->LeaderAddress();
    if (replica->leader() || leader.empty()) {
      return done(unavailable("the cluster has no leader at the moment (an election is under way); try again shortly"));
    }
    net::http::Client* client = peer_clients.For(leader, PeerClients::Lane::kCommands);
    if (!client) return done(unavailable("the leader at " + leader + " cannot be reached without TLS between servers"));
    net::http::ClientRequest fwd;
    fwd.method = "POST";
    fwd.target = "/";
    for (const auto& [name, value] : req.headers) {
      std::string lower = name;
      for (char& ch : lower) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
      if (lower == "connection" || lower == "content-length" || lower == "transfer-encoding" || lower == "keep-alive" ||
          lower == "expect") {
        continue;
      }
      fwd.headers.push_back({name, value});
    }
    fwd.body = req.body;
    store::Store* st = store.get();
    client->Send(std::move(fwd), [st, leader, done, unavailable](Result<net::http::ClientResponse> r) {
      if (!r) {
        return done(unavailable("the leader at " + leader + " did not answer (" + r.error().message +
                                "); the change may or may not have been made"));
      }
      net::http::Response answer;
      answer.status = r->status;
      answer.content_type = std::string(r->Header("content-type"));
      answer.body = std::move(r->body);
      if (std::string_view t = r->Header("x-amzn-errortype"); !t.empty()) {
        answer.headers.push_back({"x-amzn-ErrorType", std::string(t)});
      }
      uint64_t index = strtoull(std::string(r->Header("berth-applied-index")).c_str(), nullptr, 10);
      st->WhenApplied(index, [done, answer = std::move(answer)]() mutable { done(std::move(answer)); });
    });
  };
  aws::AddRoutes(&router, &ctx, &image_registry, aws_options);
  // Nodes pull from here with credentials for their tasks' repositories only.
  agents.SetPullTokens(
      [&image_registry](const std::string& node_id, const std::string& repository) {
        registry::Caller node{"node:" + node_id, "agent", {}, false};
        std::vector<std::string> granted;
        return image_registry.auth().Issue(node, {"repository:" + repository + ":pull"}, SystemClock::Get().NowUnixMs(),
                                           nullptr, &granted);
      },
      image_registry.auth().token_ttl_ms());
  auto server = std::make_unique<net::http::Server>(loop, &router, o.limits, &registry);
  http_server = server.get();
  // A follower serves reads from what it has applied; changes go to the leader
  // (307 to the same path there: clients re-send them), as do agents. The
  // routes of membership and of the log itself are every server's.
  const char* scheme = o.tls ? "https" : "http";
  server->SetGate([&state, &replica, scheme](net::http::Exchange& ex) -> std::optional<net::http::Response> {
    const net::http::Request& req = ex.request();
    net::http::Access access = ex.route().access();
    bool read = (req.method == "GET" || req.method == "HEAD") && access != net::http::Access::kAgent;
    // A browser's session opens and closes on any server (api/session.h).
    bool everyones =
        read || access == net::http::Access::kPeer || req.path == "/v1/servers/join" || req.path == "/v1/session";
    if (everyones || replica->acting()) {
      return api::Authenticate(state, SystemClock::Get().NowUnixMs(), ex);
    }
    // A change on a server that does not act: sent on before the credentials are
    // looked at, as a follower may not have applied a token the leader knows.
    if (replica->leader()) {
      // Cut off from the majority: a change would not commit, and another leader
      // may be elected on the other side. Or just elected, and what earlier
      // leaders committed is not applied here yet. Refused at once, not held.
      net::http::Response r = net::http::ErrorResponse(
          503, "NoLeader",
          replica->ready() ? "this server leads but has not heard from a majority of the cluster within the lease; "
                             "try another server"
                           : "this server was just elected and has not yet applied what earlier leaders committed; "
                             "try again shortly");
      r.headers.push_back({"Retry-After", "1"});
      return r;
    }
    std::string leader = replica->LeaderAddress();
    if (leader.empty()) {
      net::http::Response r = net::http::ErrorResponse(
          503, "NoLeader", "the cluster has no leader at the moment (an election is under way); try again shortly");
      r.headers.push_back({"Retry-After", "1"});
      return r;
    }
    std::string url = std::string(scheme) + "://" + leader;
    if (req.Header("authorization").empty() && api::CookieValue(req.Header("cookie"), api::kSessionCookie)) {
      // A browser does not follow a 307 to another origin, nor would its cookie
      // go there: the dashboard tells its user where the leader is instead.
      return net::http::JsonResponse(
          421, json::Doc::Object()
                   .Set("error", json::Doc::Object()
                                     .Set("code", "NotLeader")
                                     .Set("message",
                                          "this server is not the cluster's leader; make changes in the "
                                          "dashboard of the leader at " +
                                              url + "/ui/")
                                     .Set("leader", url))
                   .Print());
    }
    net::http::Response r = net::http::ErrorResponse(
        307, "NotLeader", "this server is not the cluster's leader; send changes to the leader at " + url);
    r.headers.push_back({"Location", url + req.target});
    return r;
  });
  // How fresh an answer is (docs/api.md): the index applied when it was made,
  // and for a read whether it is the acting leader's.
  server->SetAnswerHeaders([&replica](const net::http::Exchange& ex, net::http::Headers* headers) {
    headers->push_back({"Berth-Applied-Index", std::to_string(replica->applied_index())});
    const std::string& method = ex.request().method;
    if (method == "GET" || method == "HEAD") {
      headers->push_back({"Berth-Read", replica->acting() ? "leader" : "stale"});
    }
  });
  server->SetObserver([&state, &store](const net::http::Exchange& ex) {
    api::AuditExchange(state, store.get(), SystemClock::Get().NowUnixMs(), ex);
  });

  metrics::Gauge* lag_gauge =
      registry.Gauges("berth_loop_lag_seconds", "How late the event loop ran its last 100 ms timer")->With({});
  metrics::Histogram* lag_hist =
      registry.Histograms("berth_loop_lag_distribution_seconds", "Event-loop lag samples", metrics::LatencyBuckets())
          ->With({});
  net::LagProbe lag(loop, [lag_gauge, lag_hist](double s) {
    lag_gauge->Set(s);
    lag_hist->Observe(s);
  });

  // TLS on the TCP listener unless --no-tls; the certificate is renewed in place.
  std::unique_ptr<net::tls::ServerContext> tls;
  std::vector<std::string> dns_names, addresses;
  HostNames(o.advertise, &dns_names, &addresses);
  net::Timer renew(loop);
  if (o.tls) {
    Result<bool> issued = ca->EnsureServerCert(dns_names, addresses, time(nullptr), o.cert_lifetime_s);
    if (!issued) {
      fprintf(stderr, "berth server: server certificate: %s\n", issued.error().message.c_str());
      return 1;
    }
    net::tls::ServerSettings ts;
    ts.cert_pem = ca->server_chain_pem();
    ts.key_pem = ca->server_key_pem();
    ts.client_ca_pem = ca->ca_pem();
    // Nobody is authenticated during a handshake: it has the unauthenticated deadline too.
    ts.handshake_timeout_ms = std::min(o.limits.header_timeout_ms, o.limits.preauth_timeout_ms);
    Result<std::unique_ptr<net::tls::ServerContext>> made = net::tls::ServerContext::Create(loop, ts);
    if (!made) {
      fprintf(stderr, "berth server: TLS: %s\n", made.error().message.c_str());
      return 1;
    }
    tls = std::move(made.value());
    server->SetTls(tls.get());
    // Checked often enough to renew well within the last third of the life.
    uint64_t every_ms = static_cast<uint64_t>(std::clamp<int64_t>(o.cert_lifetime_s / 10, 1, 3600)) * 1000;
    renew.Start(every_ms, every_ms, [&] {
      std::vector<std::string> now_dns, now_addresses;
      HostNames(o.advertise, &now_dns, &now_addresses);
      Result<bool> changed = ca->EnsureServerCert(now_dns, now_addresses, time(nullptr), o.cert_lifetime_s);
      if (!changed) {
        log::Error("tls", "renewing the server certificate failed", {{"error", changed.error().message}});
      } else if (changed.value()) {
        if (Status s = tls->SetIdentity(ca->server_chain_pem(), ca->server_key_pem()); !s) {
          log::Error("tls", "the renewed certificate was refused", {{"error", s.error().message}});
        }
      }
    });
    renew.Unref();
  }

  Result<int> port = server->Listen(where.value());
  if (!port) {
    fprintf(stderr, "berth server: %s\n", port.error().message.c_str());
    return 1;
  }
  if (!o.listen_unix.empty()) {
    Result<net::Endpoint> u = net::Endpoint::Parse(o.listen_unix);
    Result<int> up = u ? server->Listen(u.value()) : Result<int>(u.error());
    if (!up) {
      fprintf(stderr, "berth server: --listen-unix: %s\n", up.error().message.c_str());
      return 1;
    }
  }
  std::unique_ptr<agent::NodeAgent> local_agent;
  bool stopping = false;
  auto stop = [&](int sig) {
    if (stopping) {
      log::Warn("server", "second signal; exiting now");
      _exit(1);  // what was acknowledged is in the log and state.db already
    }
    stopping = true;
    log::Info("server", "shutting down", {{"signal", sig}});
    notify::Stopping("shutting down (signal " + std::to_string(sig) + ")");
    if (local_agent) local_agent->Shutdown();  // its containers keep running
    streams.CloseAll();                        // they would hold the shutdown to its deadline
    server->Shutdown(o.shutdown_grace_ms, [&] {
      store->Flush();
      net::StopLoop(loop);
    });
  };
  net::SignalWatch sigterm(loop, SIGTERM, stop);
  net::SignalWatch sigint(loop, SIGINT, stop);

  std::string host = where->host == "0.0.0.0" ? "127.0.0.1" : where->host;
  net::Endpoint shown = where.value();
  shown.host = host;
  shown.port = port.value();
  printf("berth: listening on %s://%s (API and registry; bound to %s:%d)\n", scheme, shown.ToString().c_str(),
         where->host.c_str(), port.value());
  if (o.tls) {
    printf(
        "berth: cluster CA %s/ca.crt, SHA-256 fingerprint %s\n"
        "berth: every token berth prints carries that fingerprint, so 'berth configure --server %s://%s --token "
        "TOKEN' needs nothing else; for curl and browsers, trust %s/ca.crt (curl --cacert %s/ca.crt)\n",
        o.data_dir.c_str(), ca->fingerprint().c_str(), scheme, shown.ToString().c_str(), o.data_dir.c_str(),
        o.data_dir.c_str());
  } else {
    printf(
        "berth: WARNING: --no-tls: plain HTTP, tokens cross the network in clear; only behind a TLS proxy or on "
        "a network you trust\n");
    log::Warn("server", "TLS is off (--no-tls)");
  }
  fflush(stdout);
  log::Info("server", "listening", {{"addr", where->host + ":" + std::to_string(port.value())}});

  // systemd (Type=notify, base/notify.h): ready now that the listeners are
  // bound and, for a cluster of one, the log is applied; the status line says
  // this server's part in the cluster, and changes with it.
  std::string serving = std::string(scheme) + "://" + shown.ToString();
  auto describe = [&replica, &serving] {
    replica::LogStatus st = replica->Describe();
    std::string role = replica->acting()   ? "leader"
                       : replica->leader() ? "leader, not acting yet"
                       : st.leader_id != 0 ? "follower of server " + std::to_string(st.leader_id)
                                           : "no leader (an election is under way)";
    return "serving " + serving + "; " + role + ", term " + std::to_string(st.term) + ", " +
           std::to_string(st.servers.size()) + (st.servers.size() == 1 ? " server" : " servers");
  };
  // <data>/member, once this server is a member of its cluster and knows the
  // leader: "<id> <leader address> <unix time>" (what packaging/install.sh waits
  // for after starting a server it installed). Written once per start.
  bool member_noted = false;
  auto note_member = [&replica, &member_noted, &o] {
    if (member_noted) return;
    replica::LogStatus st = replica->Describe();
    std::string leader;
    bool in = false;
    for (const replica::ServerView& v : st.servers) {
      in = in || v.id == st.id;
      if (v.id == st.leader_id) leader = v.address;
    }
    if (!in || leader.empty()) return;
    member_noted = true;
    std::string text = std::to_string(st.id) + " " + leader + " " + std::to_string(time(nullptr)) + "\n";
    if (Status s = files::WriteAtomically(o.data_dir + "/member", text, 0644); !s) {
      log::Warn("server", "cannot note the membership", {{"error", s.error().message}});
    }
  };
  note_member();
  std::string status_shown = describe();
  notify::Ready(status_shown);
  net::Timer status_timer(loop);
  status_timer.Start(1000, 1000, [&describe, &status_shown, &note_member] {
    note_member();
    std::string now = describe();
    if (now == status_shown) return;
    status_shown = now;
    notify::SetStatus(now);
  });
  status_timer.Unref();
  // The watchdog's keep-alive comes from the loop, so a stuck loop stops it.
  net::Timer watchdog(loop);
  if (uint64_t every_ms = notify::WatchdogIntervalMs(); every_ms > 0) {
    watchdog.Start(every_ms, every_ms, [] { notify::Watchdog(); });
    watchdog.Unref();
  }
  // SIGHUP reloads what is safe to take while serving: the server certificate
  // and key from the data directory (an operator's replacement, checked as at
  // start), and the host's names and addresses it must name. Everything else
  // is a flag or state and needs a restart (docs/operations.md).
  auto reload = [&](int) {
    if (stopping) return;
    notify::Reloading("reloading (SIGHUP)");
    std::string reloaded = "nothing (TLS is off)";
    if (o.tls) {
      ca->ForgetServerCert();
      std::vector<std::string> now_dns, now_addresses;
      HostNames(o.advertise, &now_dns, &now_addresses);
      Result<bool> issued = ca->EnsureServerCert(now_dns, now_addresses, time(nullptr), o.cert_lifetime_s);
      if (!issued) {
        reloaded = "nothing";
        log::Error("tls", "reloading the server certificate failed; the one served is kept",
                   {{"error", issued.error().message}});
      } else if (Status s = tls->SetIdentity(ca->server_chain_pem(), ca->server_key_pem()); !s) {
        reloaded = "nothing";
        log::Error("tls", "the server certificate in the data directory was refused; the one served is kept",
                   {{"error", s.error().message}});
      } else {
        reloaded = issued.value() ? "server certificate (issued anew)" : "server certificate";
      }
    }
    log::Info("server", "reloaded on SIGHUP",
              {{"reloaded", reloaded}, {"not_reloaded", "flags, the CA, the secret key (restart for those)"}});
    status_shown = describe();
    notify::Ready(status_shown);
  };
  net::SignalWatch sighup(loop, SIGHUP, reload);

  std::unique_ptr<JoinRequest> join;
  if (joining) {
    printf("berth: joining the cluster at %s as server %llu (peers reach it at %s)\n", o.join.c_str(),
           static_cast<unsigned long long>(server_id.value()), peer_address.c_str());
    fflush(stdout);
    join = std::make_unique<JoinRequest>(loop, o, server_id.value(), peer_address);
    join->Start();
  }

  if (o.local_agent && !replica->leader()) {
    // Its token is made by the leader; agents of a cluster of servers are started
    // with `berth agent` (docs/decisions.md).
    log::Info("server", "no local agent on a server that does not lead at start");
  } else if (o.local_agent) {
    Result<net::Endpoint> docker = net::Endpoint::Parse(o.docker);
    bool reachable = docker && (docker->kind != net::Endpoint::Kind::kUnix || access(docker->path.c_str(), W_OK) == 0);
    if (!reachable) {
      log::Info("server", "no Docker engine here: running without a local agent", {{"docker", o.docker}});
    } else if (Result<std::string> token = LocalAgentToken(o, &state, store.get()); !token) {
      log::Error("server", "cannot make the local agent's token", {{"error", token.error().message}});
    } else {
      agent::NodeAgentOptions ao;
      ao.server = std::string(scheme) + "://" + shown.ToString();
      ao.token = token.value();
      ao.ca_pem = ca->ca_pem();
      // Images may name the registry by an advertised name as well.
      for (const std::string& h : o.advertise) {
        std::string host = h.find(':') != std::string::npos ? "[" + h + "]" : h;
        ao.registry_hosts.push_back(host + ":" + std::to_string(port.value()));
      }
      ao.docker = o.docker;
      ao.state_dir = o.data_dir + "/agent";
      // Under systemd, secret files go to the unit's RuntimeDirectory (on /run, a
      // tmpfs the Docker engine sees): a tmpfs the agent mounted itself would
      // live in the unit's own mount namespace, where the engine cannot see it.
      if (const char* run = getenv("RUNTIME_DIRECTORY"); run && run[0] == '/' && !strchr(run, ':')) {
        ao.secrets_dir = std::string(run) + "/agent-secrets";
      }
      // The server's tokens, keys and state live here: no task of this host sees them.
      ao.forbidden_paths.push_back(o.data_dir);
      ao.attributes = o.agent_attributes;
      ao.docker_concurrency = o.docker_concurrency;
      local_agent = std::make_unique<agent::NodeAgent>(loop, ao);
      if (Status s = local_agent->Start(); !s) {
        log::Error("server", "local agent", {{"error", s.error().message}});
        local_agent.reset();
      } else {
        log::Info("server", "local agent started", {{"docker", o.docker}});
      }
    }
  }

  net::RunLoop(loop);
  status_timer.Stop();
  watchdog.Stop();

  // Nothing may reach the store once it is closed: the loop runs once more below
  // (handle closes), and a timer due then would write to a closed database.
  ticker.Stop();
  image_registry.Stop();
  peer_clients.Close();
  local_agent.reset();
  join.reset();
  store->SetAfterFlush(nullptr);
  // What was proposed is applied (or answered) before the log closes; in a
  // cluster that needs the peers, so it waits a few seconds at most.
  {
    net::Timer give_up(loop);
    bool late = false;
    give_up.Start(5000, 0, [&late] { late = true; });
    net::RunLoopUntil(loop, [&store, &late] { return store->in_flight() == 0 || late; });
    give_up.Stop();
  }
  replica->ClosePeers();
  http_server = nullptr;
  server.reset();
  bool closed = false;
  replica->Close([&closed] { closed = true; });
  net::RunLoopUntil(loop, [&closed] { return closed; });
  if (Status s = store->Close(); !s) {
    log::Error("server", "closing the store failed", {{"error", s.error().message}});
    return 1;
  }
  // Let the handle closes run, then leave.
  net::RunLoopNoWait(loop);
  log::Info("server", "stopped");
  close(lock_fd);
  return 0;
}

}  // namespace berth::server
