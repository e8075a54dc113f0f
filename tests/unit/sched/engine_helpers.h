// Shorthands for the engine tests: requests from ECS-style strings, and counts of
// where a placement went.
#pragma once

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "sched/engine.h"

namespace berth::sched::testing {

// "binpack:memory", "spread:attribute:zone", "spread:instanceId", "random".
inline Strategy S(const std::string& spec) {
  size_t colon = spec.find(':');
  std::string type = spec.substr(0, colon);
  std::string field = colon == std::string::npos ? "" : spec.substr(colon + 1);
  auto s = Strategy::Make(type, field);
  REQUIRE(s.ok());
  return s.value();
}

inline std::shared_ptr<const Expr> E(const std::string& text) {
  auto e = Expr::Parse(text);
  INFO(text);
  REQUIRE(e.ok());
  return e.value();
}

inline Request Req(int64_t cpu, int64_t memory, std::string group = "service:web",
                   std::vector<std::string> strategies = {}) {
  Request r;
  r.shape.cpu = cpu;
  r.shape.memory = memory;
  r.group = std::move(group);
  for (const std::string& s : strategies) r.strategies.push_back(S(s));
  return r;
}

inline NodeSpec Node(std::string id, int64_t cpu, int64_t memory, std::map<std::string, std::string> attrs = {}) {
  NodeSpec n;
  n.id = std::move(id);
  n.cpu = cpu;
  n.memory = memory;
  n.attributes = std::move(attrs);
  return n;
}

// How many of `nodes` went to each node id.
inline std::map<std::string, int> CountById(const Engine& e, const std::vector<Engine::NodeRef>& nodes) {
  std::map<std::string, int> m;
  for (Engine::NodeRef n : nodes) m[e.NodeId(n)]++;
  return m;
}

}  // namespace berth::sched::testing
