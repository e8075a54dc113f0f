// The proxy's metrics over HTTP: `GET /metrics` answered with
// Proxy::RenderMetrics, for `berth proxy --metrics-listen` and `berth agent
// --proxy-metrics-listen`. Off unless asked for.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

typedef struct uv_loop_s uv_loop_t;

namespace berth::proxy {

class MetricsEndpoint {
 public:
  // Appends the metrics text to its argument; called on `loop` for each scrape.
  using Render = std::function<void(std::string*)>;

  // Listens on `where` ("ADDR:PORT"; port 0 picks one) on `loop`, serving what
  // `render` writes with net's HTTP server and small bounds: 4 KiB of request
  // head, 8 KiB of body, 64 connections, 10 s for a request and 30 s idle.
  // Fails when `where` is bad or cannot be bound.
  static Result<std::unique_ptr<MetricsEndpoint>> Start(uv_loop_t* loop, Render render, std::string_view where);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;
  struct Parts;
  std::unique_ptr<Parts> parts_;
  int port_ = 0;
};

}  // namespace berth::proxy
