// MetricsEndpoint (metrics_endpoint.h): net's router and HTTP server, bounded.
#include "proxy/metrics_endpoint.h"

#include "base/metrics.h"
#include "net/http_server.h"
#include "net/router.h"
#include "net/socket.h"

namespace berth::proxy {

struct MetricsEndpoint::Parts {
  metrics::Registry registry;  // the server's own counters; not served
  net::http::Router router;
  std::unique_ptr<net::http::Server> server;
};

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(uv_loop_t* loop, Render render,
                                                                std::string_view where) {
  auto endpoint = net::Endpoint::Parse(where);
  if (!endpoint.ok())
    return Error::Invalid("metrics listen address " + std::string(where) + ": " + endpoint.error().message);
  if (endpoint->kind != net::Endpoint::Kind::kTcp || endpoint->tls) {
    return Error::Invalid("metrics listen address " + std::string(where) + ": expected ADDR:PORT");
  }
  std::unique_ptr<MetricsEndpoint> m(new MetricsEndpoint());
  m->parts_ = std::make_unique<Parts>();
  m->parts_->router.Add("GET", "/metrics", [render = std::move(render)](const net::http::ExchangePtr& ex) {
    net::http::Response r;
    r.content_type = "text/plain; version=0.0.4";
    render(&r.body);
    ex->Respond(std::move(r));
  });
  net::http::ServerLimits limits;
  limits.max_header_bytes = 4096;
  limits.max_headers = 32;
  limits.header_timeout_ms = 10000;
  limits.idle_timeout_ms = 30000;
  limits.max_connections = 64;
  limits.write_thread = false;  // a scrape now and then
  limits.preauth_max_body = 8 * 1024;
  limits.preauth_timeout_ms = 10000;
  m->parts_->server = std::make_unique<net::http::Server>(loop, &m->parts_->router, limits, &m->parts_->registry);
  // A gate that vouches for no one, so that the bounds on unauthenticated
  // traffic (body size, request time, connections per address) hold for every request.
  m->parts_->server->SetGate([](net::http::Exchange&) { return std::optional<net::http::Response>(); });
  auto port = m->parts_->server->Listen(*endpoint);
  if (!port.ok()) return port.take_error();
  m->port_ = *port;
  return m;
}

MetricsEndpoint::~MetricsEndpoint() = default;

}  // namespace berth::proxy
