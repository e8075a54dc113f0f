// The proxy's data plane: worker threads, each with its own libuv loop, each
// listening on every listener with SO_REUSEPORT so the kernel spreads
// connections among them. HTTP/1.1 listeners route requests by rules to kept-alive
// target connections; TCP listeners splice bytes; HTTPS and TLS listeners do the
// same behind TLS termination (proxy/tls.h); UDP listeners forward datagrams
// by per-client flows (proxy/udp.h). See docs/load-balancing.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "proxy/balance.h"
#include "proxy/config.h"

namespace berth::proxy {

// Bounds on every listener, and the timings of the proxy's own decisions.
struct Limits {
  size_t max_header_bytes = 16 * 1024;        // request line and headers: 431 above
  size_t max_headers = 100;                   // 431 above
  uint64_t header_timeout_ms = 10000;         // first byte of a request to the end of its headers: 408
  uint64_t idle_timeout_ms = 60000;           // kept-alive client connection waiting for a request: closed
  size_t max_connections = 10000;             // per listener and worker: 503 (HTTP) or closed (TCP) above
  uint64_t connect_timeout_ms = 3000;         // a target that does not accept in time: retried elsewhere
  uint64_t response_timeout_ms = 60000;       // request sent to the first response byte: 504
  uint64_t tcp_idle_timeout_ms = 300000;      // a TCP splice with no byte either way: closed
  uint64_t tls_handshake_timeout_ms = 10000;  // accept to the end of the TLS handshake (HTTPS, TLS): closed
  size_t max_queued_bytes = 256 * 1024;       // a side stops reading while the other has this much unsent
  size_t max_replay_bytes = 64 * 1024;        // a request body kept for a retry up to this size
  size_t max_idle_per_target = 1024;          // kept-alive target connections per target and worker
  uint64_t target_idle_timeout_ms = 30000;    // a pooled target connection unused this long is closed
  uint64_t udp_idle_timeout_ms = 120000;      // a UDP flow with no datagram either way: closed (as an NLB's)
  size_t max_udp_flows = 10000;               // per UDP listener and worker: new clients' datagrams dropped above
};

struct Options {
  int threads = 1;
  Limits limits;
  EjectionPolicy ejection;
};

class Proxy {
 public:
  // Starts the worker threads with no listeners; Apply gives them a configuration.
  static Result<std::unique_ptr<Proxy>> Start(const Options& options);
  ~Proxy();  // Stop(0) if not stopped
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Replaces the configuration whole, on every worker, from any thread; returns
  // at once. Each worker swaps at its next loop iteration: new requests and
  // connections use the new configuration, those in flight finish on their
  // target. Listeners are opened and closed as the set changes; one that cannot
  // be opened is logged and left out.
  void Apply(Config config);
  // The version every worker has applied (the lowest), -1 before the first.
  int64_t AppliedVersion() const;

  // What one target has in flight on all workers, for draining to wait on.
  struct InFlight {
    int64_t requests = 0;
    int64_t connections = 0;
  };
  InFlight TargetInFlight(std::string_view group, std::string_view target_id) const;

  // Appends the proxy's metrics in Prometheus' text format, summed over the
  // workers (docs/load-balancing.md, metrics): per listener, per target group
  // and per target of the running configuration (and targets leaving it with
  // something in flight). Any thread.
  void RenderMetrics(std::string* out) const;

  // Stops accepting at once, lets requests and connections in flight finish for
  // up to grace_ms, then cuts what is left and joins the workers. Returns the
  // libuv handles left open (each logged; 0 unless a connection leaked).
  size_t Stop(uint64_t grace_ms);

  struct Impl;

 private:
  Proxy() = default;
  std::unique_ptr<Impl> impl_;
};

// `berth proxy --config FILE [--proxy-threads N]`: the proxy alone, configured
// from a file in the contract's format; SIGHUP reloads it, SIGTERM stops.
int Main(const std::vector<std::string>& args);

}  // namespace berth::proxy
