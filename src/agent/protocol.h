// What the Docker agent and the simulator both read from the server's answers
// (docs/agent-protocol.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/json.h"

namespace berth::agent {

// The heartbeat interval a registration or report answer tells the agent to keep
// (it grows with the number of agents); nothing for a value out of all reason.
inline std::optional<int64_t> HeartbeatIntervalOf(json::View answer) {
  json::View v = answer.Get("heartbeatIntervalMs");
  if (!v.IsNumber() || v.Number() < 100 || v.Number() > 600000) return std::nullopt;
  return static_cast<int64_t>(v.Number());
}

// Fencing: every desired-state (and deregistered) line carries the term of the
// leader that sent it. A line from an older term than one already seen comes
// from a deposed leader and is refused (false, with why); otherwise *highest
// rises to the line's term. A line without a term (a server before fencing) is
// taken.
inline bool AdmitTerm(json::View line, uint64_t* highest, std::string* why) {
  json::View t = line.Get("term");
  if (!t.IsNumber() || t.Number() < 0) return true;
  auto term = static_cast<uint64_t>(t.Number());
  if (term < *highest) {
    *why = "a line from term " + std::to_string(term) + ", older than term " + std::to_string(*highest) +
           " this agent has seen: its sender is no longer the leader";
    return false;
  }
  *highest = term;
  return true;
}

}  // namespace berth::agent
