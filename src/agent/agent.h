// `berth agent`: the node side of the cluster: the Docker agent
// (node_agent.h) or, with --simulate, simulated nodes (sim.h).
#pragma once

#include <string>
#include <vector>

namespace berth::agent {

// `berth agent [flags]`. Returns the exit code.
int Main(const std::vector<std::string>& args);

}  // namespace berth::agent
