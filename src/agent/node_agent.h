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
// when a server answers, with exponential backoff and jitter.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/policy.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::agent {

struct NodeAgentOptions {
  std::string server = "https://127.0.0.1:7070";
  std::string token;   // bare, or pinned (base/crypto.h): the pin then vouches for the server
  std::string ca_pem;  // CA certificates to trust the server by, besides a token's pin
  // Where this host's Docker engine looks for registry CAs (<dir>/<host:port>/ca.crt);
  // empty: not written.
  std::string docker_certs_dir = "/etc/docker/certs.d";
  std::string cluster = "default";
  std::string docker = "unix:///var/run/docker.sock";
  std::string state_dir = "/var/lib/berth-agent";  // keeps the node id
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
