// What the Docker agent and the simulator both read from the server's answers
// (docs/agent-protocol.md).
#pragma once

#include <cstdint>
#include <optional>

#include "base/json.h"

namespace berth::agent {

// The heartbeat interval a registration or report answer tells the agent to keep
// (it grows with the number of agents); nothing for a value out of all reason.
inline std::optional<int64_t> HeartbeatIntervalOf(json::View answer) {
  json::View v = answer.Get("heartbeatIntervalMs");
  if (!v.IsNumber() || v.Number() < 100 || v.Number() > 600000) return std::nullopt;
  return static_cast<int64_t>(v.Number());
}

}  // namespace berth::agent
