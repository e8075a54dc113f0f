// `berth agent --simulate N`: N simulated nodes in one process, speaking the real
// agent protocol (docs/agent-protocol.md) to a real server — like Kubernetes'
// hollow nodes. Each node registers, holds its desired-state stream, "starts" the
// tasks it is given (PENDING, then RUNNING after a delay, or a failure at the
// given rate), stops the ones it is told to stop, and reports, batching reports
// and heartbeats. No Docker is involved: this is the tool that proves scale.
#pragma once

#include <cstdint>
#include <string>

namespace berth::agent {

struct SimOptions {
  int nodes = 1;
  std::string server = "https://127.0.0.1:7070";
  std::string token;  // bare or pinned, as NodeAgentOptions
  std::string ca_pem;
  std::string cluster = "default";
  std::string id_prefix = "sim";
  int64_t node_cpu = 4096;
  int64_t node_memory = 8192;
  int zones = 3;
  int64_t start_delay_ms = 0;
  double fail_rate = 0;  // chance that a task fails to start (exit code 1)
  // Connections that carry reports (a real agent has one of its own; simulated
  // nodes share a pool). 0: one per 2 nodes, from 32 to 4096.
  int report_connections = 0;
  uint64_t seed = 1;
};

// Runs until SIGINT/SIGTERM. Returns the exit code.
int RunSimulation(const SimOptions& options);

}  // namespace berth::agent
