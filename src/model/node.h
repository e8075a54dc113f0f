// Nodes (ECS "container instances"): a Docker host running `berth agent`, with the
// CPU and memory it registered, what its tasks use, its host ports in use, its
// attributes and status. Registration and status are state (persisted); the agent's
// connection and heartbeat are facts of the running server only.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::model {

struct Task;

struct Node {
  std::string id;  // chosen by the agent (kept in its state dir) or by the server
  std::string cluster;
  std::string arn;
  std::string hostname;
  std::string status = "ACTIVE";  // ACTIVE, DRAINING, INACTIVE
  int64_t cpu = 0;                // registered CPU units
  int64_t memory = 0;             // registered MiB
  // What placement and DescribeContainerInstances see: the agent's attributes
  // (--attr, registered) merged with the custom ones put through the API, which
  // win for a name both have (as ECS custom attributes).
  std::map<std::string, std::string> attributes;
  std::map<std::string, std::string> agent_attributes;
  std::map<std::string, std::string> custom_attributes;
  // Sets `attributes` from the two sources.
  void MergeAttributes() {
    attributes = agent_attributes;
    for (const auto& [k, v] : custom_attributes) attributes[k] = v;
  }
  std::vector<std::pair<int, bool>> reserved_ports;  // (port, udp) the host keeps for itself
  int64_t registered_ms = 0;
  // What proves this node's identity: "cert:<serial hex>", the one certificate
  // the cluster CA issued it (mutual TLS), or "token:<id>", the token that joined
  // it without a certificate (the simulator, an agent under --no-tls).
  std::string identity;
  std::string agent_version;  // what the agent said it is at its last registration ("" before 18)
  // The address the node's host ports answer on (`berth agent --advertise`, else
  // the address its registration came from); what proxies send targets' traffic to.
  std::string address;

  // Derived from the tasks placed here and not yet STOPPED.
  int64_t used_cpu = 0;
  int64_t used_memory = 0;
  std::multiset<std::pair<int, bool>> ports;  // (host port, udp) in use
  // The tasks here not yet STOPPED, by id. They live in State::tasks(), which never
  // drops a task while a node holds it; the pointer saves a lookup per task each
  // time the node's desired set is sent.
  std::map<std::string, const Task*, std::less<>> tasks;
  int64_t running = 0;  // of those, RUNNING
  int64_t pending = 0;  // of those, PROVISIONING or PENDING

  // The running server's view of the agent (not persisted).
  bool connected = false;
  int64_t last_heartbeat_ms = 0;
  int64_t disconnected_since_ms = 0;
  uint64_t desired_version = 0;  // bumped whenever the node's desired task set changes
  int64_t proxy_version = 0;     // the proxy configuration version the agent last reported applied
};

std::string NodeArn(std::string_view cluster, std::string_view id);
// Node ids: 1-100 letters, digits, hyphens, underscores and dots.
Status ValidateNodeId(std::string_view id, std::string_view field = "nodeId");
// Attribute names and values: ECS's rules (names 1-128 of letters, digits, - _ . /;
// values up to 128 printable characters).
Status ValidateAttribute(std::string_view name, std::string_view value);
// Reserved ports as stored and logged: "22,7070,53/udp" (sorted, no repeats), and back.
std::string PortsText(const std::vector<std::pair<int, bool>>& ports);
Result<std::vector<std::pair<int, bool>>> ParsePortsText(std::string_view text);
// The ECS `ContainerInstance` JSON shape.
json::Doc NodeJson(const Node& n);

}  // namespace berth::model
