#include "model/node.h"

#include <set>

#include "model/cluster.h"

namespace berth::model {

std::string NodeArn(std::string_view cluster, std::string_view id) {
  std::string arn = "arn:aws:ecs:";
  arn.append(kRegion)
      .append(":")
      .append(kAccount)
      .append(":container-instance/")
      .append(cluster)
      .append("/")
      .append(id);
  return arn;
}

Status ValidateNodeId(std::string_view id, std::string_view field) {
  if (id.empty() || id.size() > 100) return Error::Invalid(std::string(field) + ": must be 1-100 characters");
  for (char c : id) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!ok) return Error::Invalid(std::string(field) + ": only letters, digits, '-', '_' and '.' are allowed");
  }
  return {};
}

Status ValidateAttribute(std::string_view name, std::string_view value) {
  if (name.empty() || name.size() > 128) return Error::Invalid("attribute names must be 1-128 characters");
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == '/';
    if (!ok) return Error::Invalid("attribute " + std::string(name) + ": names take letters, digits, - _ . /");
  }
  if (value.size() > 128)
    return Error::Invalid("attribute " + std::string(name) + ": values are at most 128 characters");
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20)
      return Error::Invalid("attribute " + std::string(name) + ": control character in value");
  }
  return {};
}

std::string PortsText(const std::vector<std::pair<int, bool>>& ports) {
  std::set<std::pair<int, bool>> sorted(ports.begin(), ports.end());
  std::string out;
  for (const auto& [port, udp] : sorted) {
    if (!out.empty()) out += ",";
    out += std::to_string(port) + (udp ? "/udp" : "");
  }
  return out;
}

Result<std::vector<std::pair<int, bool>>> ParsePortsText(std::string_view text) {
  std::vector<std::pair<int, bool>> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t comma = text.find(',', at);
    std::string_view item = text.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
    at = comma == std::string_view::npos ? text.size() : comma + 1;
    bool udp = false;
    if (item.ends_with("/udp")) {
      udp = true;
      item.remove_suffix(4);
    } else if (item.ends_with("/tcp")) {
      item.remove_suffix(4);
    }
    int port = 0;
    for (char c : item) port = c >= '0' && c <= '9' && port < 100000 ? port * 10 + (c - '0') : 1 << 30;
    if (item.empty() || port < 1 || port > 65535) {
      return Error::Invalid("reserved port '" + std::string(item) + "': must be 1-65535, optionally with /tcp or /udp");
    }
    out.emplace_back(port, udp);
    if (out.size() > 100) return Error::Invalid("reserved ports: at most 100");
  }
  return out;
}

json::Doc NodeJson(const Node& n) {
  json::Doc attrs = json::Doc::Array();
  for (const auto& [k, v] : n.attributes) attrs.Push(json::Doc::Object().Set("name", k).Set("value", v));
  // As ECS shows them: registered PORTS are the host's reserved ones; remaining
  // PORTS are every port in use (reserved and the tasks').
  auto resources = [](int64_t cpu, int64_t mem, const std::multiset<std::pair<int, bool>>& ports) {
    json::Doc r = json::Doc::Array();
    r.Push(json::Doc::Object().Set("name", "CPU").Set("type", "INTEGER").Set("integerValue", cpu));
    r.Push(json::Doc::Object().Set("name", "MEMORY").Set("type", "INTEGER").Set("integerValue", mem));
    json::Doc tcp = json::Doc::Array(), udp = json::Doc::Array();
    int last_tcp = -1, last_udp = -1;
    for (const auto& [port, is_udp] : ports) {
      if (is_udp && port != last_udp) udp.Push(std::to_string(port)), last_udp = port;
      if (!is_udp && port != last_tcp) tcp.Push(std::to_string(port)), last_tcp = port;
    }
    r.Push(json::Doc::Object().Set("name", "PORTS").Set("type", "STRINGSET").Set("stringSetValue", tcp));
    r.Push(json::Doc::Object().Set("name", "PORTS_UDP").Set("type", "STRINGSET").Set("stringSetValue", udp));
    return r;
  };
  json::Doc d = json::Doc::Object();
  d.Set("containerInstanceArn", n.arn)
      .Set("ec2InstanceId", n.id)
      .Set("nodeId", n.id)
      .Set("cluster", n.cluster)
      .Set("hostname", n.hostname)
      .Set("status", n.status)
      .Set("agentConnected", n.connected)
      .Set("agentVersion", n.agent_version)
      .Set("address", n.address)
      .Set("proxyVersion", n.proxy_version)
      .Set("runningTasksCount", n.running)
      .Set("pendingTasksCount", n.pending)
      .Set("registeredResources",
           resources(n.cpu, n.memory,
                     std::multiset<std::pair<int, bool>>(n.reserved_ports.begin(), n.reserved_ports.end())))
      .Set("remainingResources", resources(n.cpu - n.used_cpu, n.memory - n.used_memory, n.ports))
      .Set("attributes", attrs)
      .Set("registeredAt", static_cast<double>(n.registered_ms) / 1000.0);
  if (n.last_heartbeat_ms > 0) d.Set("lastHeartbeatAt", static_cast<double>(n.last_heartbeat_ms) / 1000.0);
  return d;
}

}  // namespace berth::model
