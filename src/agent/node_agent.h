// `berth agent`: one node's agent on a real Docker engine.
//
// It registers the node (resources from the host, attributes), holds the
// desired-state stream (docs/agent-protocol.md), reports what Docker shows and
// relays container logs; what to do with containers is the Reconciler's
// (reconciler.h: pull, create from container_spec.h, start in dependsOn order,
// watch through /events, stop, remove; at most `docker_concurrency` engine
// calls at once, stops first).
//
// Containers carry labels (berth.task, berth.node, ...), so an agent that restarts
// adopts what runs instead of restarting it. With the server unreachable nothing
// stops: reports wait (the latest state of each task is the buffer) and go out
// when a server answers, with exponential backoff and jitter. Of a cluster's
// servers it talks to the leader (ServerList).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "model/policy.h"
#include "net/socket.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::agent {

class ProxySink;

struct NodeAgentOptions {
  // The servers of the cluster, URLs separated by commas; the first is asked
  // first (ServerList).
  std::string server = "https://127.0.0.1:7070";
  std::string token;   // bare, or pinned (base/crypto.h): the pin then vouches for the server
  std::string ca_pem;  // CA certificates to trust the server by, besides a token's pin
  // Where this host's Docker engine looks for registry CAs (<dir>/<host:port>/ca.crt);
  // empty: not written.
  std::string docker_certs_dir = "/etc/docker/certs.d";
  std::string cluster = "default";
  std::string docker = "unix:///var/run/docker.sock";
  std::string state_dir = "/var/lib/berth-agent";  // keeps the node id
  // Where secret files of tasks are written (a tmpfs, mounted there when it is
  // not one); empty: STATE/secrets.
  std::string secrets_dir;
  std::map<std::string, std::string> attributes;
  int64_t reserved_memory_mib = 256;
  // Host ports tasks may not take ("22", "53/udp"); the server's own port is
  // added when the server runs on this host.
  std::vector<std::string> reserved_ports = {"22"};
  int64_t container_retention_ms = 3600 * 1000;  // stopped containers are removed after this
  int64_t image_cleanup_after_ms = 3600 * 1000;  // images we pulled, unused this long, are removed
  int64_t resync_ms = 30 * 1000;                 // full comparison with Docker, besides /events
  int64_t default_stop_timeout_s = 30;
  // Engine calls in flight at most (reconciler.h, call_queue.h); the default was
  // measured with bench/docker-concurrency.sh (docs/decisions.md).
  size_t docker_concurrency = 4;
  // Registry hosts ("host:port") whose images are pulled with the agent's token:
  // the server's own registry. The server's address is always one of them.
  std::vector<std::string> registry_hosts;
  // What this host lets tasks ask of it, besides the cluster's task policy
  // (model/policy.h), which the server sends: a task must pass both. Unset, the
  // cluster's policy holds, except that the host's root (/) and a container
  // engine's socket are never mounted unless this host allows them itself.
  std::optional<model::TaskPolicy> host_policy;
  // Paths no task may mount, whatever any policy says (a local server's data
  // directory); the agent's state directory is always one.
  std::vector<std::string> forbidden_paths;
  // Where this node's host ports answer for the proxies of load balancers
  // (--advertise); empty: the server takes the address the registration came from.
  std::string advertise;
  // Where the proxy configurations from the server go (agent/proxy_sink.h); it
  // must outlive the agent. Unset: the node's own data plane (DataPlaneSink),
  // with this many worker threads once a load balancer takes the node.
  ProxySink* proxy_sink = nullptr;
  int proxy_threads = 1;
  // Where the node's data plane serves GET /metrics (ADDR:PORT,
  // --proxy-metrics-listen); empty: not served.
  std::string proxy_metrics_listen;
  // The arguments of `berth agent` (after "agent"), for a successor started
  // with the same ones at SIGUSR2 (docs/operations.md, "Upgrading an agent").
  std::vector<std::string> args;
  // Set in such a successor (BERTH_AGENT_TAKEOVER): the process it takes over
  // from, its parent. It opens the kept proxy listeners beside the parent's,
  // tells the parent (SIGUSR1) and waits for it to be gone before it touches
  // Docker or a server.
  int takeover_from = 0;
  // Called on the loop thread each time the node is registered with a server
  // (at start, and again after a server was lost): `berth agent` tells systemd.
  std::function<void(const std::string& node_id, const std::string& server)> registered;
};

// The servers an agent knows and the one it talks to. Followers send agents to
// the leader (307: Follow); a server that does not answer, or whose cluster has no
// leader, is left for the next one, round robin (Next). The configured servers
// come first, then those the cluster named at registration (Learn), which the
// agent keeps in its state directory, so it finds the cluster again when every
// configured server is gone.
class ServerList {
 public:
  // A learned list longer than this is cut: a cluster has a handful of servers.
  static constexpr size_t kMaxLearned = 32;

  // --server: URLs separated by commas. Fails on none, on an unparsable one, and
  // on a mix of schemes (one TLS trust is used for every server).
  static Result<ServerList> Parse(std::string_view text, int default_port = 7070);
  // "https://host:port", "http://host:port" or "unix:///path".
  static std::string Url(const net::Endpoint& e);

  // The server talked to now. Valid once Parse gave this list.
  const net::Endpoint& current() const { return servers_[at_]; }
  const std::vector<net::Endpoint>& all() const { return servers_; }
  // The servers the cluster named (registration's `servers`, or those kept from
  // a run before) replace those learned before, after the configured ones;
  // duplicates, unparsable URLs and other schemes are skipped. The current
  // server stays current (and known).
  void Learn(const std::vector<std::string>& urls);
  // The URLs learned (what the agent keeps), in order.
  std::vector<std::string> learned() const;

  // A follower's 307: the origin (scheme://host:port) of `location` becomes the
  // current server, and a known one. False, changing nothing, when it is not an
  // absolute URL of this list's scheme. A follower answered: the cluster is up,
  // so the count of servers that failed in a row starts again.
  bool Follow(std::string_view location);
  // The current server did not answer (or had no leader): the next one becomes
  // current, and a chain of 307s is broken. Returns true while not every known
  // server has failed in a row (worth trying the next soon), false once all have
  // (time to back off).
  bool Next();
  // The current server took the registration: the counts start again.
  void Reached() { hops_ = misses_ = 0; }
  // 307s followed in a row, with no registration and no server failing between
  // them: past a few, followers are naming each other.
  int hops() const { return hops_; }

 private:
  bool SameScheme(const net::Endpoint& e) const;
  // servers_ from configured_ then learned_, `keep` added when missing; `keep` becomes current.
  void Rebuild(const net::Endpoint& keep);

  std::vector<net::Endpoint> configured_;
  std::vector<net::Endpoint> learned_;
  std::vector<net::Endpoint> servers_;
  size_t at_ = 0;
  int hops_ = 0;
  size_t misses_ = 0;
};

class NodeAgentImpl;

class NodeAgent {
 public:
  NodeAgent(uv_loop_t* loop, NodeAgentOptions options);
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Starts connecting to Docker and the server; returns at once. Fails only on
  // bad options (an unparsable address).
  Status Start();
  // Closes every connection; containers keep running.
  void Shutdown();
  // The node id once known (from the state directory or the server), else "".
  std::string node_id() const;

 private:
  std::unique_ptr<NodeAgentImpl> impl_;
};

// `berth agent --server URL --token T ...` until SIGINT/SIGTERM. Returns the exit code.
int RunNodeAgent(const NodeAgentOptions& options);

}  // namespace berth::agent
