// What a task may ask of the host it runs on (docs/security.md, "Task policy").
// Host bind mounts, the host's network and PID namespaces, the Docker socket,
// Docker volumes berth did not create and log drivers that ship output elsewhere
// are each off unless a cluster's policy allows them. The server checks a task
// definition against its cluster's policy before it runs anything; the agent
// checks again what it receives, against the same policy narrowed by its own
// flags, with host paths resolved on the host (symbolic links followed).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::model {

struct HostPathRule {
  std::string prefix;  // absolute, normalised ("/" or without a trailing slash)
  bool read_write = false;
  bool operator==(const HostPathRule&) const = default;
};

struct TaskPolicy {
  std::vector<HostPathRule> host_paths;
  bool host_network = false;
  bool host_pid = false;
  bool docker_socket = false;            // a host path holding the Docker or containerd socket
  bool external_volumes = false;         // dockerVolumeConfiguration.autoprovision false: a volume berth did not make
  std::vector<std::string> log_drivers;  // besides json-file, local and none

  // {"hostPaths":[{"path":"/srv","readWrite":true}],"hostNetwork":false,...}
  json::Doc ToJson() const;
  bool operator==(const TaskPolicy&) const = default;
};

// Reads a policy; errors name the field under `field` ("taskPolicy.hostPaths[0].path").
Result<TaskPolicy> ParseTaskPolicy(json::View v, std::string_view field = "taskPolicy");

// "/srv/data" or "/srv/data:rw" / ":ro" (the CLI's --allow-host-path) → a rule.
Result<HostPathRule> ParseHostPathRule(std::string_view text, std::string_view flag);

// "/a//b/./c/" → "/a/b/c"; "" unless absolute. ".." is never accepted (validation refuses it).
std::string NormalisePath(std::string_view path);

// Where a task's requests meet the host. `resolve` turns a host path into the
// path it names on this host (the agent follows symbolic links; the server, which
// cannot see the host, leaves it as written); `socket_paths` are the paths of
// the container engines' sockets, `forbidden` paths no task may ever see
// (the agent's state, the server's data directory).
struct HostView {
  std::function<std::string(const std::string&)> resolve;
  std::vector<std::string> socket_paths;
  std::vector<std::string> forbidden;
};

// The paths a server assumes for the Docker and containerd sockets.
const std::vector<std::string>& DefaultSocketPaths();

// Checks a validated task definition against `policy`. The error (kForbidden)
// names the field and the setting that would allow it, e.g. "volumes[0].host.sourcePath:
// host path /srv is not allowed in cluster prod; allow it with `berth cluster
// update prod --allow-host-path /srv`". `who` says whose setting it is: a
// cluster's ("cluster prod") or this host's ("this node").
Status CheckTaskPolicy(json::View td, const TaskPolicy& policy, std::string_view cluster, const HostView& host,
                       bool host_setting = false);

}  // namespace berth::model
