// The `berth server` command line.
#include <cstdio>
#include <tuple>

#include "base/flags.h"
#include "base/log.h"
#include "server/server.h"

namespace berth::server {

namespace {

const std::vector<flags::FlagSpec> kFlags = {
    {"data", true, "DIR", "state directory (default ./berth-data)"},
    {"secret-key-file", true, "PATH",
     "the key that seals secrets (32 bytes, 64 hex digits or base64; mode 0600); default DIR/secret.key, made at first "
     "start"},
    {"listen", true, "HOST:PORT", "API and registry address (default 0.0.0.0:7070; port 0 picks one)"},
    {"listen-unix", true, "PATH", "also serve on a Unix socket (plain HTTP: the socket's mode guards it)"},
    {"no-tls", false, "", "serve plain HTTP (behind a TLS proxy only: tokens cross the network in clear)"},
    {"join", true, "URL",
     "join the cluster of the server at URL (https://HOST:PORT) with --token, a server token; the data directory "
     "must be new"},
    {"token", true, "TOKEN",
     "the server token to --join with (berth token create --role server); default $BERTH_TOKEN, which keeps it out "
     "of the process list"},
    {"peer-address", true, "HOST:PORT",
     "where the other servers reach this one (default: the --listen address, or this host's first address when "
     "listening on every address)"},
    {"advertise", true, "HOST", "a host name or address clients use, named in the server certificate (repeatable)"},
    {"cert-lifetime", true, "DURATION",
     "life of the server's and the nodes' certificates, renewed in the last third (default 2160h = 90 days)"},
    {"log-level", true, "LEVEL", "debug, info, warn or error (default info)"},
    {"no-group-commit", false, "", "one log entry and transaction per command (for comparison; slower)"},
    {"apply-budget", true, "DURATION",
     "what one log entry may be expected to take to apply; the loop serves no socket meanwhile: less answers "
     "sooner during big deployments, more places tasks faster (default 8ms; 0: up to 4096 commands an entry)"},
    {"election-timeout", true, "DURATION",
     "a follower that hears no leader for this long (to twice as long, at random) starts an election; the leader "
     "acts only while a majority answered within three quarters of it (default 500ms; raise it for slow links or "
     "overloaded servers)"},
    {"server-dead-after", true, "DURATION",
     "a voter the leader has not heard from for this long is replaced by a standby, if one answers, and becomes a "
     "standby itself (default 30s, from 2s to 1h)"},
    {"aws-account-id", true, "ID",
     "the account id in the ARNs the AWS front end (aws ecs, aws ecr) shows: 12 digits (default 000000000000)"},
    {"snapshot-entries", true, "N",
     "log entries between snapshots of the state; the log behind a snapshot is truncated (default 1024)"},
    {"no-write-thread", false, "", "write answers on the loop thread, not a thread of their own (for comparison)"},
    {"no-agent", false, "", "do not run a local agent for this host's Docker engine"},
    {"docker", true, "ADDR", "the local Docker engine (default unix:///var/run/docker.sock)"},
    {"attr", true, "K=V", "an attribute of the local agent's node (repeatable)"},
    {"docker-concurrency", true, "N", "the local agent's Docker calls in flight at most, stops first (default 4)"},
    {"shutdown-grace", true, "DURATION", "how long requests in flight may finish on SIGTERM (default 10s)"},
    {"max-connections", true, "N", "open connections at most (default 20000)"},
    {"heartbeat-interval", true, "DURATION", "how often agents report at least (default 2s)"},
    {"max-heartbeats-per-second", true, "N",
     "heartbeats taken per second over all agents at most; the interval grows past it (default 1000; 0 no bound)"},
    {"node-lost-after", true, "DURATION", "an agent away this long loses its node's tasks (default 10s)"},
    {"task-retention", true, "DURATION",
     "a STOPPED task, and an unused INACTIVE task definition revision, is forgotten this long after (default 1h)"},
    {"stopped-tasks-per-service", true, "N",
     "each service keeps at most N STOPPED tasks, the newest (default 100; 0 no bound but the retention)"},
    {"registry-auto-create", true, "BOOL", "a push to a repository that does not exist creates it (default true)"},
    {"registry-gc-interval", true, "DURATION",
     "how often unreferenced registry blobs are collected (default 1h; 0 off)"},
    {"registry-gc-grace", true, "DURATION", "registry blobs used this recently are never collected (default 1h)"},
    {"registry-upload-expiry", true, "DURATION", "an idle registry upload session is removed after this (default 24h)"},
    {"session-ttl", true, "DURATION", "a dashboard session lasts this long, at most its token's life (default 12h)"},
    {"stream-keepalive", true, "DURATION", "a keepalive comment on every change stream this often (default 15s)"},
    {"max-streams", true, "N", "dashboard change streams open on this server at most (default 1000)"},
    {"max-streams-per-token", true, "N", "dashboard change streams open per token or session at most (default 32)"},
    {"max-header-bytes", true, "SIZE", "request line and headers at most (default 16KiB)"},
    {"header-timeout", true, "DURATION", "time to receive a request's headers (default 10s)"},
    {"body-timeout", true, "DURATION", "longest silence while a body arrives (default 30s)"},
    {"idle-timeout", true, "DURATION", "keep-alive wait for the next request (default 60s)"},
    {"write-timeout", true, "DURATION", "time a client may take to read an answer (default 30s)"},
    {"unauthenticated-body", true, "SIZE", "body a request no credential vouches for may send (default 8KiB)"},
    {"unauthenticated-timeout", true, "DURATION",
     "time for the whole of an unauthenticated request, and idle wait of a connection not yet authenticated "
     "(default 10s)"},
    {"unauthenticated-connections", true, "N",
     "connections not yet authenticated per client address (default 32; 0 no bound; loopback exempt)"},
    {"auth-failures-per-minute", true, "N",
     "failed authentications per client address before 429 with Retry-After (default 10; 0 no bound; loopback "
     "exempt)"},
    {"limit-loopback", false, "",
     "apply the per-address bounds on unauthenticated traffic to loopback and Unix-socket clients too"},
    {"audit-retention", true, "DURATION", "how long the audit log keeps an entry (default 2160h = 90 days)"},
    {"audit-max-entries", true, "N", "entries the audit log keeps at most, the newest (default 1000000)"},
};

const char kUsage[] =
    "Usage: berth server [flags]\n"
    "\n"
    "Runs the control plane: the state store, the API (/v1), /metrics, /healthz and\n"
    "the dashboard (/ui/, logged in with a token).\n"
    "At first start it creates the data directory, the `default` cluster, the\n"
    "cluster CA (DIR/ca.crt) and an admin token, printed this once and kept in\n"
    "DIR/admin-token. It serves HTTPS with a certificate from that CA unless --no-tls.\n"
    "\n"
    "SIGTERM or SIGINT stops it gracefully. SIGHUP (systemctl reload berth-server)\n"
    "reloads what is safe while serving: the server certificate and key, read again\n"
    "from DIR/server.crt and DIR/server.key (a replacement must be signed by the\n"
    "cluster CA and name this host's names and addresses, or it is issued anew as at\n"
    "start; a key that is not the certificate's is refused and the served one kept),\n"
    "and the host's names and addresses the certificate must name. Flags, the log\n"
    "level, the CA and the secret key are read at start only: restart for those.\n"
    "Under systemd (Type=notify) it reports READY=1 once it serves, RELOADING=1 and\n"
    "STOPPING=1, its role and term as STATUS, and WATCHDOG=1 when WatchdogSec= is set\n"
    "(docs/operations.md).\n"
    "\n"
    "Flags:\n";

}  // namespace

int Main(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, kFlags);
  if (!p) {
    fprintf(stderr, "berth server: %s\nRun 'berth server --help' for the flags.\n", p.error().message.c_str());
    return 2;
  }
  if (p->help) {
    printf("%s%s", kUsage, flags::FlagsHelp(kFlags).c_str());
    return 0;
  }
  if (!p->positional.empty()) {
    fprintf(stderr, "berth server: unexpected argument '%s'\n", p->positional[0].c_str());
    return 2;
  }
  Options o;
  o.data_dir = p->Get("data", o.data_dir);
  o.secret_key_file = p->Get("secret-key-file", "");
  o.listen = p->Get("listen", o.listen);
  o.listen_unix = p->Get("listen-unix");
  o.group_commit = !p->Has("no-group-commit");
  o.limits.write_thread = !p->Has("no-write-thread");
  o.limits.limit_loopback = p->Has("limit-loopback");
  o.local_agent = !p->Has("no-agent");
  o.tls = !p->Has("no-tls");
  o.advertise = p->GetAll("advertise");
  o.join = p->Get("join");
  o.join_token = p->Get("token");
  if (const char* env = getenv("BERTH_TOKEN"); o.join_token.empty() && !o.join.empty() && env) o.join_token = env;
  o.peer_address = p->Get("peer-address");
  if (o.join.empty() != o.join_token.empty()) {
    fprintf(stderr,
            "berth server: --join and --token go together (a server token: berth token create --role server)\n");
    return 2;
  }
  if (!o.join.empty() && !o.tls) {
    fprintf(stderr, "berth server: --join needs TLS: the servers of a cluster speak to each other over mutual TLS\n");
    return 2;
  }
  if (p->Has("cert-lifetime")) {
    Result<uint64_t> v = flags::ParseDuration(p->Get("cert-lifetime"), "cert-lifetime");
    if (!v || v.value() < 3000 || v.value() > 10ull * 365 * 86400 * 1000) {
      fprintf(stderr, "berth server: --cert-lifetime: expected a duration from 3s to 87600h, such as 2160h\n");
      return 2;
    }
    o.cert_lifetime_s = static_cast<int64_t>(v.value() / 1000);
  }
  o.docker = p->Get("docker", o.docker);
  Result<std::map<std::string, std::string>> attrs = flags::ParseKeyValues(p->GetAll("attr"), "attr");
  if (!attrs) {
    fprintf(stderr, "berth server: %s\n", attrs.error().message.c_str());
    return 2;
  }
  o.agent_attributes = std::move(attrs.value());
  if (p->Has("log-level")) {
    log::Level level;
    if (!log::ParseLevel(p->Get("log-level"), &level)) {
      fprintf(stderr, "berth server: --log-level: expected debug, info, warn or error\n");
      return 2;
    }
    log::SetLevel(level);
  }
  struct DurationFlag {
    const char* name;
    uint64_t* dest;
  };
  for (DurationFlag d : {DurationFlag{"shutdown-grace", &o.shutdown_grace_ms},
                         DurationFlag{"header-timeout", &o.limits.header_timeout_ms},
                         DurationFlag{"body-timeout", &o.limits.body_timeout_ms},
                         DurationFlag{"idle-timeout", &o.limits.idle_timeout_ms},
                         DurationFlag{"write-timeout", &o.limits.write_timeout_ms},
                         DurationFlag{"unauthenticated-timeout", &o.limits.preauth_timeout_ms},
                         DurationFlag{"audit-retention", &o.audit_retention_ms}}) {
    if (!p->Has(d.name)) continue;
    Result<uint64_t> v = flags::ParseDuration(p->Get(d.name), d.name);
    if (!v || v.value() == 0) {
      fprintf(stderr, "berth server: %s\n",
              v ? ("--" + std::string(d.name) + ": must be more than 0").c_str() : v.error().message.c_str());
      return 2;
    }
    *d.dest = v.value();
  }
  for (auto [name, dest] :
       {std::pair{"heartbeat-interval", &o.heartbeat_interval_ms}, std::pair{"node-lost-after", &o.node_lost_after_ms},
        std::pair{"task-retention", &o.task_retention_ms}}) {
    if (!p->Has(name)) continue;
    Result<uint64_t> v = flags::ParseDuration(p->Get(name), name);
    if (!v || v.value() == 0) {
      fprintf(stderr, "berth server: --%s: expected a duration above 0 such as 2s\n", name);
      return 2;
    }
    *dest = static_cast<int64_t>(v.value());
  }
  if (p->Has("registry-auto-create")) {
    std::string v = p->Get("registry-auto-create");
    if (v != "true" && v != "false") {
      fprintf(stderr, "berth server: --registry-auto-create: expected true or false\n");
      return 2;
    }
    o.registry_auto_create = v == "true";
  }
  for (auto [name, dest, zero_ok] : {std::tuple{"apply-budget", &o.apply_budget_ms, true},
                                     std::tuple{"registry-gc-interval", &o.registry_gc_interval_ms, true},
                                     std::tuple{"registry-gc-grace", &o.registry_gc_grace_ms, true},
                                     std::tuple{"registry-upload-expiry", &o.registry_upload_expiry_ms, false},
                                     std::tuple{"session-ttl", &o.session_ttl_ms, false},
                                     std::tuple{"stream-keepalive", &o.stream_keepalive_ms, false}}) {
    if (!p->Has(name)) continue;
    Result<uint64_t> v = flags::ParseDuration(p->Get(name), name);
    if (!v || (!zero_ok && v.value() == 0)) {
      fprintf(stderr, "berth server: --%s: expected a duration such as 30m%s\n", name, zero_ok ? "" : " (above 0)");
      return 2;
    }
    *dest = static_cast<int64_t>(v.value());
  }
  for (auto [name, dest] :
       {std::pair{"max-streams", &o.stream_max}, std::pair{"max-streams-per-token", &o.stream_max_per_token}}) {
    if (!p->Has(name)) continue;
    Result<uint64_t> v = flags::ParseCount(p->Get(name), name);
    if (!v || v.value() == 0 || v.value() > 1000000) {
      fprintf(stderr, "berth server: --%s: must be a whole number from 1 to 1000000\n", name);
      return 2;
    }
    *dest = static_cast<int64_t>(v.value());
  }
  if (p->Has("stopped-tasks-per-service")) {
    Result<uint64_t> v = flags::ParseCount(p->Get("stopped-tasks-per-service"), "stopped-tasks-per-service");
    if (!v || v.value() > 1000000000) {
      fprintf(stderr, "berth server: --stopped-tasks-per-service: must be a whole number from 0 to 1000000000\n");
      return 2;
    }
    o.stopped_tasks_per_service = static_cast<int64_t>(v.value());
  }
  if (p->Has("election-timeout")) {
    Result<uint64_t> v = flags::ParseDuration(p->Get("election-timeout"), "election-timeout");
    if (!v || v.value() < 200 || v.value() > 60000) {
      fprintf(stderr, "berth server: --election-timeout: expected a duration from 200ms to 60s, such as 500ms\n");
      return 2;
    }
    o.election_timeout_ms = static_cast<unsigned>(v.value());
  }
  if (p->Has("server-dead-after")) {
    Result<uint64_t> v = flags::ParseDuration(p->Get("server-dead-after"), "server-dead-after");
    if (!v || v.value() < 2000 || v.value() > 3600 * 1000) {
      fprintf(stderr, "berth server: --server-dead-after: expected a duration from 2s to 1h, such as 30s\n");
      return 2;
    }
    o.server_dead_after_ms = v.value();
  }
  if (p->Has("aws-account-id")) {
    std::string id = p->Get("aws-account-id");
    if (id.size() != 12 || id.find_first_not_of("0123456789") != std::string::npos) {
      fprintf(stderr, "berth server: --aws-account-id: expected 12 digits, such as 123456789012\n");
      return 2;
    }
    o.aws_account = id;
  }
  if (p->Has("snapshot-entries")) {
    Result<uint64_t> v = flags::ParseCount(p->Get("snapshot-entries"), "snapshot-entries");
    if (!v || v.value() < 4 || v.value() > 1000000) {
      fprintf(stderr, "berth server: --snapshot-entries: must be a whole number from 4 to 1000000\n");
      return 2;
    }
    o.snapshot_entries = static_cast<unsigned>(v.value());
  }
  if (p->Has("docker-concurrency")) {
    Result<uint64_t> v = flags::ParseCount(p->Get("docker-concurrency"), "docker-concurrency");
    if (!v || v.value() < 1 || v.value() > 256) {
      fprintf(stderr, "berth server: --docker-concurrency: must be a whole number from 1 to 256\n");
      return 2;
    }
    o.docker_concurrency = static_cast<size_t>(v.value());
  }
  if (p->Has("max-heartbeats-per-second")) {
    Result<uint64_t> v = flags::ParseCount(p->Get("max-heartbeats-per-second"), "max-heartbeats-per-second");
    if (!v || v.value() > 1000000) {
      fprintf(stderr, "berth server: --max-heartbeats-per-second: must be a whole number from 0 to 1000000\n");
      return 2;
    }
    o.max_heartbeats_per_s = static_cast<int64_t>(v.value());
  }
  if (p->Has("max-connections")) {
    Result<uint64_t> v = flags::ParseCount(p->Get("max-connections"), "max-connections");
    if (!v || v.value() == 0) {
      fprintf(stderr, "berth server: --max-connections: must be a whole number above 0\n");
      return 2;
    }
    o.limits.max_connections = v.value();
  }
  for (auto [name, dest] : {std::pair{"unauthenticated-connections", &o.limits.preauth_connections_per_address},
                            std::pair{"auth-failures-per-minute", &o.limits.auth_failures_per_minute},
                            std::pair{"audit-max-entries", &o.audit_max_entries}}) {
    if (!p->Has(name)) continue;
    Result<uint64_t> v = flags::ParseCount(p->Get(name), name);
    if (!v || v.value() > 1000000000) {
      fprintf(stderr, "berth server: --%s: must be a whole number from 0 to 1000000000\n", name);
      return 2;
    }
    *dest = static_cast<size_t>(v.value());
  }
  if (p->Has("unauthenticated-body")) {
    Result<uint64_t> v = flags::ParseSize(p->Get("unauthenticated-body"), "unauthenticated-body");
    if (!v || v.value() > (1u << 20)) {
      fprintf(stderr, "berth server: --unauthenticated-body: must be a size of at most 1MiB\n");
      return 2;
    }
    o.limits.preauth_max_body = v.value();
  }
  if (p->Has("max-header-bytes")) {
    Result<uint64_t> v = flags::ParseSize(p->Get("max-header-bytes"), "max-header-bytes");
    if (!v || v.value() < 256) {
      fprintf(stderr, "berth server: --max-header-bytes: must be a size of at least 256 bytes\n");
      return 2;
    }
    o.limits.max_header_bytes = v.value();
  }
  return Run(o);
}

}  // namespace berth::server
