// UDP listeners and their flows, one UdpWorker per proxy worker and on its
// loop (docs/load-balancing.md, "UDP"). A flow is one client address joined to
// one target through a connected UDP socket of its own: the client's datagrams
// go out on it, the target's replies come back on it and leave from the
// listener's socket to the client. proxy.cc's Worker owns one and calls it
// when a document is applied and when the worker stops.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "proxy/config.h"

struct uv_loop_s;

namespace berth::proxy {

struct Limits;

// A target's count of connections in flight, shared with Proxy::TargetInFlight:
// every open flow to the target counts one.
using FlowCounter = std::shared_ptr<std::atomic<int64_t>>;

// Where one UDP listener is counted for the metrics (Proxy::RenderMetrics):
// this worker's slot of the listener's series, which `keep` holds alive. Null
// pointers count nothing.
struct UdpListenerCounters {
  std::shared_ptr<void> keep;
  std::atomic<uint64_t>* flows = nullptr;    // flows opened
  std::atomic<int64_t>* active = nullptr;    // flows open now
  std::atomic<uint64_t>* dropped = nullptr;  // datagrams of new flows dropped
};

class UdpWorker {
 public:
  // On `loop`, which must outlive it; `worker` names the worker in logs.
  UdpWorker(uv_loop_s* loop, int worker, const Limits& limits);
  ~UdpWorker();
  UdpWorker(const UdpWorker&) = delete;
  UdpWorker& operator=(const UdpWorker&) = delete;

  // Takes a new document, on the loop's thread: opens the UDP listeners it
  // adds (SO_REUSEPORT), closes those it drops with their flows, and closes
  // every flow whose target is no longer the listener's group's, healthy or
  // draining. `counter(g, t)` is the counter of target t of
  // config->target_groups[g], `listener(i)` where config->listeners[i] is
  // counted; both are called here only.
  void Apply(std::shared_ptr<const Config> config, const std::function<FlowCounter(size_t, size_t)>& counter,
             const std::function<UdpListenerCounters(size_t)>& listener = {});
  // Closes every listener and flow and stops the idle sweep; the loop frees
  // the handles as it closes them. Apply does nothing afterwards.
  void Stop();

  // Target addresses it keeps state for (flows, slow start); on the loop's thread.
  size_t tracked() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::proxy
