// `berth server`: wires the store, the state, the API and the HTTP server onto one
// event loop, does the first-start setup (default cluster, admin token), and
// shuts down gracefully on SIGTERM/SIGINT.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "net/http_server.h"

namespace berth::server {

struct Options {
  std::string data_dir = "./berth-data";
  std::string secret_key_file;  // empty: DIR/secret.key, made at first start
  std::string listen = "0.0.0.0:7070";
  std::string listen_unix;  // optional extra Unix-socket listener
  bool group_commit = true;
  unsigned snapshot_entries = 1024;    // log entries between snapshots (replica/replica.h)
  unsigned election_timeout_ms = 500;  // the heartbeat is a tenth, the lease three quarters
  // A voter the leader has not heard from for this long is replaced by a
  // standby it hears from (server.cc, balance()).
  uint64_t server_dead_after_ms = 30000;
  uint64_t shutdown_grace_ms = 10000;
  net::http::ServerLimits limits;
  int64_t heartbeat_interval_ms = 2000;
  int64_t max_heartbeats_per_s = 1000;  // over all agents; the interval grows past it
  int64_t node_lost_after_ms = 10000;
  // Retention (src/control/retention.h).
  int64_t task_retention_ms = 3600 * 1000;
  int64_t stopped_tasks_per_service = 100;
  // The built-in registry (src/registry/registry.h).
  bool registry_auto_create = true;
  int64_t registry_gc_interval_ms = 3600 * 1000;
  int64_t registry_gc_grace_ms = 3600 * 1000;
  int64_t registry_upload_expiry_ms = 24 * 3600 * 1000;
  // What one log entry is expected to take to apply at most (store::StoreOptions's
  // entry_budget_ns); 0: no bound but the entry's count of commands.
  int64_t apply_budget_ms = 8;
  // A dashboard session's life (api/session.h).
  int64_t session_ttl_ms = 12 * 3600 * 1000;
  // A keepalive comment on every change stream this often (api/stream.h).
  int64_t stream_keepalive_ms = 15000;
  // Change streams open at most, on this server and per token or session
  // (api/stream.h's StreamLimits).
  int64_t stream_max = 1000;
  int64_t stream_max_per_token = 32;
  // The in-process agent for the local Docker engine (all-in-one), started when
  // the engine's socket is there.
  bool local_agent = true;
  std::string docker = "unix:///var/run/docker.sock";
  std::map<std::string, std::string> agent_attributes;
  size_t docker_concurrency = 4;  // the local agent's (node_agent.h)
  // TLS (server/cluster_ca.h): on unless --no-tls.
  bool tls = true;
  std::vector<std::string> advertise;  // more names or addresses for the certificate
  // A cluster of servers (replica/replica.h): the URL and server token of a
  // member to join at first start, and where peers reach this server.
  std::string join;
  std::string join_token;
  std::string peer_address;
  int64_t cert_lifetime_s = 90 * 24 * 3600;  // of the server's and the nodes' certificates
  // The account id in the ARNs of the AWS front end (src/aws/frontend.h).
  std::string aws_account = "000000000000";
  // The audit log (store/audit.h).
  uint64_t audit_retention_ms = 90ull * 24 * 3600 * 1000;
  size_t audit_max_entries = 1000000;
};

// Runs the server until a signal stops it. Returns the process exit code.
int Run(const Options& options);

}  // namespace berth::server

namespace berth::server {
// `berth server [flags]`: parses the flags and runs. Returns the exit code.
int Main(const std::vector<std::string>& args);
}  // namespace berth::server
