// `berth server`: wires the store, the state, the API and the HTTP server onto one
// event loop, does the first-start setup (default cluster, admin token), and
// shuts down gracefully on SIGTERM/SIGINT.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "net/http_server.h"

namespace berth::server {

struct Options {
  std::string data_dir = "./berth-data";
  std::string listen = "0.0.0.0:7070";
  std::string listen_unix;  // optional extra Unix-socket listener
  bool group_commit = true;
  uint64_t shutdown_grace_ms = 10000;
  net::http::ServerLimits limits;
  int64_t heartbeat_interval_ms = 2000;
  int64_t node_lost_after_ms = 10000;
};

// Runs the server until a signal stops it. Returns the process exit code.
int Run(const Options& options);

}  // namespace berth::server

namespace berth::server {
// `berth server [flags]`: parses the flags and runs. Returns the exit code.
int Main(const std::vector<std::string>& args);
}  // namespace berth::server
