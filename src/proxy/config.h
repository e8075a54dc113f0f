// The proxy's configuration: the typed form of the JSON document that
// docs/load-balancing.md defines (the contract), and its parser.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::proxy {

enum class Protocol { kHttp, kTcp };
enum class Algorithm { kLeastOutstandingRequests, kLeastConnections, kRoundRobin };
// As ELB names them; only kHealthy takes new requests and connections.
enum class TargetState { kInitial, kHealthy, kUnhealthy, kDraining };

struct Target {
  std::string id;
  std::string address;
  int port = 0;
  TargetState state = TargetState::kInitial;
};

struct TargetGroup {
  std::string name;
  Protocol protocol = Protocol::kHttp;
  Algorithm algorithm = Algorithm::kLeastOutstandingRequests;
  int64_t slow_start_seconds = 0;
  std::vector<Target> targets;
};

struct Rule {
  int64_t priority = 0;
  std::vector<std::string> hosts;  // empty: any host
  std::vector<std::string> paths;  // empty: any path
  std::string target_group;
};

struct Listener {
  int port = 0;
  Protocol protocol = Protocol::kHttp;
  std::string address = "0.0.0.0";
  std::string default_target_group;
  std::vector<Rule> rules;  // sorted by ascending priority

  // What tells two listeners apart: a port is listened on once per protocol family.
  std::string Key() const;
};

struct Config {
  int64_t version = 0;
  std::vector<Listener> listeners;
  std::vector<TargetGroup> target_groups;

  const TargetGroup* FindGroup(std::string_view name) const;
};

// Parses and checks a whole document. Errors name the field by its path
// ("listeners[1].rules[0].paths[2]: must start with \"/\""); nothing is partial.
Result<Config> ParseConfig(std::string_view json_text);

const char* ProtocolName(Protocol p);
const char* TargetStateName(TargetState s);

}  // namespace berth::proxy
