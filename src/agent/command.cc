// The `berth agent` command line.
#include <cstdio>
#include <cstdlib>

#include "agent/agent.h"
#include "agent/node_agent.h"
#include "agent/sim.h"
#include "base/files.h"
#include "base/flags.h"
#include "model/node.h"
#include "model/policy.h"

namespace berth::agent {

namespace {

const std::vector<flags::FlagSpec> kFlags = {
    {"server", true, "URL[,URL]...",
     "the server, https://HOST:7070, or the servers of a cluster, comma-separated: the agent follows the leader and "
     "learns the others when it registers; --simulate takes one (default $BERTH_SERVER or https://127.0.0.1:7070)"},
    {"token", true, "TOKEN",
     "a token with role agent (berth token create --role agent; default $BERTH_TOKEN); it carries the pin of the "
     "cluster CA, so nothing else is needed to trust the server"},
    {"ca-file", true, "PATH",
     "trust an https:// server by the CA certificates in PATH (needed only when the token carries no pin; default "
     "$BERTH_CA_FILE)"},
    {"cluster", true, "NAME", "the cluster to join (default: default)"},
    {"docker-certs-dir", true, "DIR",
     "where the Docker engine reads registry CAs; the cluster CA is written to DIR/HOST:PORT/ca.crt (default "
     "/etc/docker/certs.d; empty: not written)"},
    {"docker", true, "ADDR", "the Docker engine's socket (default unix:///var/run/docker.sock)"},
    {"attr", true, "K=V", "a node attribute for placement (repeatable; e.g. --attr zone=a)"},
    {"advertise", true, "ADDR",
     "the address this node's host ports answer on, where load balancers' proxies send traffic (default: the "
     "address the server sees this agent connect from)"},
    {"state-dir", true, "DIR", "where the agent keeps its node id (default /var/lib/berth-agent)"},
    {"secrets-dir", true, "DIR",
     "where tasks' secret files are written, on a tmpfs (mounted there unless it is one already; default "
     "STATE-DIR/secrets; the systemd unit gives /run/berth-agent/secrets, which the Docker engine sees)"},
    {"reserved-memory", true, "MIB", "memory kept back from tasks (default 256)"},
    {"reserved-ports", true, "LIST",
     "host ports tasks may not take, e.g. 22,53/udp (default 22, and a local server's port)"},
    {"container-retention", true, "DURATION", "stopped containers are removed after this (default 1h)"},
    {"image-cleanup-after", true, "DURATION", "images the agent pulled, unused this long, are removed (default 1h)"},
    {"docker-concurrency", true, "N", "Docker calls in flight at most, stops first (default 4)"},
    {"proxy-threads", true, "N",
     "worker threads of the node's proxy, once a load balancer has a listener here (default 1, at most 64)"},
    {"proxy-metrics-listen", true, "ADDR:PORT",
     "serve the node's proxy metrics (GET /metrics, Prometheus text) there (default: off)"},
    {"allow-host-path", true, "PATH[:rw]",
     "this host lets tasks bind-mount host paths under PATH (read-only unless :rw), if their cluster allows it too; "
     "repeatable. Any --allow-... flag makes this host's list the whole of what it allows besides the cluster's "
     "limits; with none, the cluster's task policy holds, less / and the Docker socket"},
    {"allow-host-network", false, "", "this host lets tasks use its network (networkMode host)"},
    {"allow-host-pid", false, "", "this host lets tasks share its process namespace (pidMode host)"},
    {"allow-docker-socket", false, "", "this host lets tasks mount the container engine's socket"},
    {"allow-external-volumes", false, "", "this host lets tasks mount Docker volumes berth did not create"},
    {"allow-log-driver", true, "NAME", "this host lets tasks use log driver NAME (repeatable)"},
    {"allow-nothing-privileged", false, "", "this host allows no privileged task feature, whatever the cluster allows"},
    {"simulate", true, "N", "run N simulated nodes (no Docker) for scale tests"},
    {"node-cpu", true, "UNITS", "simulated nodes' CPU units (default 4096)"},
    {"node-memory", true, "MIB", "simulated nodes' memory (default 8192)"},
    {"zones", true, "N", "spread simulated nodes over N zones (default 3)"},
    {"start-delay-ms", true, "MS", "time a simulated task takes from PENDING to RUNNING (default 0)"},
    {"report-connections", true, "N",
     "connections the simulated nodes share for reports (default one per 2 nodes, 32 to 4096)"},
    {"fail-rate", true, "P", "chance 0-1 that a simulated task fails to start (default 0)"},
    {"id-prefix", true, "TEXT", "simulated node ids are TEXT-00000... (default sim)"},
    {"log-level", true, "LEVEL", "debug, info, warn or error"},
};

const char kUsage[] =
    "Usage: berth agent --server URL --token TOKEN [--attr K=V]... [flags]\n"
    "       berth agent --simulate N --token TOKEN [flags]\n"
    "\n"
    "Runs this host's node agent: registers the node with the server and runs the\n"
    "tasks placed on it as Docker containers, adopting the ones already running\n"
    "after a restart. With --simulate, N simulated nodes in this process speak the\n"
    "real agent protocol instead, and their tasks run nowhere (for scale tests).\n"
    "\n"
    "SIGTERM stops the agent (containers keep running). SIGUSR2 (systemctl reload)\n"
    "upgrades it: the binary now at its path starts, listens beside it on the\n"
    "node's load balancer ports, and takes over (docs/operations.md).\n"
    "\n"
    "Flags:\n";

// --ca-file (or $BERTH_CA_FILE) into `pem`; false, having said why, when unreadable.
bool ReadCaFile(const flags::Parsed& p, std::string* pem) {
  const char* env = getenv("BERTH_CA_FILE");
  std::string path = p.Get("ca-file", env ? env : "");
  if (path.empty()) return true;
  *pem = files::ReadTrimmed(path);
  if (pem->empty()) {
    fprintf(stderr, "berth agent: --ca-file: cannot read %s\n", path.c_str());
    return false;
  }
  *pem += "\n";
  return true;
}

// The Docker agent: flags to options.
int RunDocker(const std::vector<std::string>& args, const flags::Parsed& p, const char* env_server,
              const char* env_token) {
  NodeAgentOptions o;
  o.server = p.Get("server", env_server && *env_server ? env_server : o.server);
  o.token = p.Get("token", env_token ? env_token : "");
  if (o.token.empty()) {
    fprintf(stderr, "berth agent: give --token (a token with role agent) or set BERTH_TOKEN\n");
    return 2;
  }
  if (!ReadCaFile(p, &o.ca_pem)) return 2;
  o.cluster = p.Get("cluster", o.cluster);
  o.advertise = p.Get("advertise", "");
  o.docker = p.Get("docker", o.docker);
  if (p.Has("docker-certs-dir")) o.docker_certs_dir = p.Get("docker-certs-dir");
  o.state_dir = p.Get("state-dir", o.state_dir);
  o.secrets_dir = p.Get("secrets-dir");
  if (!o.secrets_dir.empty() && o.secrets_dir[0] != '/') {
    fprintf(stderr, "berth agent: --secrets-dir: expected an absolute path\n");
    return 2;
  }
  Result<std::map<std::string, std::string>> attrs = flags::ParseKeyValues(p.GetAll("attr"), "attr");
  if (!attrs) {
    fprintf(stderr, "berth agent: %s\n", attrs.error().message.c_str());
    return 2;
  }
  o.attributes = std::move(attrs.value());
  if (p.Has("reserved-ports")) {
    // Checked here (1-65535, /tcp or /udp) so a typo fails at start, not at registration.
    Result<std::vector<std::pair<int, bool>>> ports = model::ParsePortsText(p.Get("reserved-ports"));
    if (!ports) {
      fprintf(stderr, "berth agent: --reserved-ports: %s\n", ports.error().message.c_str());
      return 2;
    }
    o.reserved_ports.clear();
    for (const auto& [port, udp] : ports.value())
      o.reserved_ports.push_back(std::to_string(port) + (udp ? "/udp" : ""));
  }
  if (p.Has("reserved-memory")) {
    Result<uint64_t> v = flags::ParseCount(p.Get("reserved-memory"), "reserved-memory");
    if (!v) {
      fprintf(stderr, "berth agent: %s\n", v.error().message.c_str());
      return 2;
    }
    o.reserved_memory_mib = static_cast<int64_t>(v.value());
  }
  if (p.Has("proxy-threads")) {
    Result<uint64_t> v = flags::ParseCount(p.Get("proxy-threads"), "proxy-threads");
    if (!v || v.value() < 1 || v.value() > 64) {
      fprintf(stderr, "berth agent: --proxy-threads: must be a whole number from 1 to 64\n");
      return 2;
    }
    o.proxy_threads = static_cast<int>(v.value());
  }
  if (p.Has("proxy-metrics-listen")) o.proxy_metrics_listen = p.Get("proxy-metrics-listen");
  o.args = args;
  if (const char* from = getenv("BERTH_AGENT_TAKEOVER"); from && *from) {
    o.takeover_from = atoi(from);
    unsetenv("BERTH_AGENT_TAKEOVER");  // not for this process's own successor
  }
  if (p.Has("docker-concurrency")) {
    Result<uint64_t> v = flags::ParseCount(p.Get("docker-concurrency"), "docker-concurrency");
    if (!v || v.value() < 1 || v.value() > 256) {
      fprintf(stderr, "berth agent: --docker-concurrency: must be a whole number from 1 to 256\n");
      return 2;
    }
    o.docker_concurrency = static_cast<size_t>(v.value());
  }
  for (auto [name, dest] : {std::pair{"container-retention", &o.container_retention_ms},
                            std::pair{"image-cleanup-after", &o.image_cleanup_after_ms}}) {
    if (!p.Has(name)) continue;
    Result<uint64_t> v = flags::ParseDuration(p.Get(name), name);
    if (!v) {
      fprintf(stderr, "berth agent: %s\n", v.error().message.c_str());
      return 2;
    }
    *dest = static_cast<int64_t>(v.value());
  }
  // This host's own task policy (model/policy.h), given by any --allow-... flag.
  bool any = p.Has("allow-nothing-privileged");
  model::TaskPolicy host;
  for (const std::string& text : p.GetAll("allow-host-path")) {
    Result<model::HostPathRule> rule = model::ParseHostPathRule(text, "--allow-host-path");
    if (!rule) {
      fprintf(stderr, "berth agent: %s\n", rule.error().message.c_str());
      return 2;
    }
    host.host_paths.push_back(std::move(rule.value()));
    any = true;
  }
  for (auto [name, dest] :
       {std::pair{"allow-host-network", &host.host_network}, std::pair{"allow-host-pid", &host.host_pid},
        std::pair{"allow-docker-socket", &host.docker_socket},
        std::pair{"allow-external-volumes", &host.external_volumes}}) {
    if (p.Has(name)) *dest = any = true;
  }
  for (const std::string& d : p.GetAll("allow-log-driver")) {
    host.log_drivers.push_back(d);
    any = true;
  }
  if (any) {
    // Read back through the parser: the same checks as a cluster's policy.
    Result<model::TaskPolicy> checked = model::ParseTaskPolicy(host.ToJson().view(), "--allow-...");
    if (!checked) {
      fprintf(stderr, "berth agent: %s\n", checked.error().message.c_str());
      return 2;
    }
    o.host_policy = std::move(checked.value());
  }
  return RunNodeAgent(o);
}

}  // namespace

int Main(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, kFlags);
  if (!p) {
    fprintf(stderr, "berth agent: %s\nRun 'berth agent --help' for the flags.\n", p.error().message.c_str());
    return 2;
  }
  if (p->help) {
    printf("%s%s", kUsage, flags::FlagsHelp(kFlags).c_str());
    return 0;
  }
  if (!p->positional.empty()) {
    fprintf(stderr, "berth agent: unexpected argument '%s'\n", p->positional[0].c_str());
    return 2;
  }
  const char* env_server = getenv("BERTH_SERVER");
  const char* env_token = getenv("BERTH_TOKEN");
  if (!p->Has("simulate")) return RunDocker(args, *p, env_server, env_token);
  SimOptions o;
  o.server = p->Get("server", env_server && *env_server ? env_server : o.server);
  o.token = p->Get("token", env_token ? env_token : "");
  if (o.token.empty()) {
    fprintf(stderr, "berth agent: give --token (a token with role agent) or set BERTH_TOKEN\n");
    return 2;
  }
  if (!ReadCaFile(*p, &o.ca_pem)) return 2;
  o.cluster = p->Get("cluster", o.cluster);
  o.id_prefix = p->Get("id-prefix", o.id_prefix);
  struct IntFlag {
    const char* name;
    int64_t* dest;
    int64_t lo, hi;
  };
  int64_t nodes = 0, zones = o.zones, report_connections = 0;
  for (IntFlag f : {IntFlag{"simulate", &nodes, 1, 100000}, IntFlag{"node-cpu", &o.node_cpu, 1, 1 << 24},
                    IntFlag{"node-memory", &o.node_memory, 1, 1 << 30}, IntFlag{"zones", &zones, 1, 26},
                    IntFlag{"start-delay-ms", &o.start_delay_ms, 0, 3600000},
                    IntFlag{"report-connections", &report_connections, 1, 100000}}) {
    if (!p->Has(f.name)) continue;
    Result<uint64_t> v = flags::ParseCount(p->Get(f.name), f.name);
    if (!v || static_cast<int64_t>(v.value()) < f.lo || static_cast<int64_t>(v.value()) > f.hi) {
      fprintf(stderr, "berth agent: --%s: expected a whole number from %lld to %lld\n", f.name,
              static_cast<long long>(f.lo), static_cast<long long>(f.hi));
      return 2;
    }
    *f.dest = static_cast<int64_t>(v.value());
  }
  o.nodes = static_cast<int>(nodes);
  o.zones = static_cast<int>(zones);
  o.report_connections = static_cast<int>(report_connections);
  if (p->Has("fail-rate")) {
    char* end = nullptr;
    std::string text = p->Get("fail-rate");
    o.fail_rate = strtod(text.c_str(), &end);
    if (text.empty() || *end || o.fail_rate < 0 || o.fail_rate > 1) {
      fprintf(stderr, "berth agent: --fail-rate: expected a number from 0 to 1\n");
      return 2;
    }
  }
  return RunSimulation(o);
}

}  // namespace berth::agent
