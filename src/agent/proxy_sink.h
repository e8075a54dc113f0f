// The seam between the agent and its node's proxy (the data plane, src/proxy/):
// each new proxy configuration the server sends on the desired-state stream
// ("proxy", docs/load-balancing.md) is handed to a ProxySink, and the version
// it applied is reported back to the server (`proxyVersion` on reports).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "proxy/proxy.h"

namespace berth::agent {

class ProxySink {
 public:
  virtual ~ProxySink() = default;
  // Applies `doc`, the whole configuration, which replaces the one before. It
  // passed ProxyDocVersion and its version is above any handed before. Called
  // on the agent's loop thread; `doc` lives only for the call (copy what is
  // kept). Returns the version now running, or why the document was refused
  // (the one before keeps running, and its version stays the one reported).
  virtual Result<int64_t> ApplyProxy(const json::View& doc) = 0;

  // What the agent reports (docs/load-balancing.md, "Draining"): the version
  // the proxy has applied, and the targets listed `draining` in it that have
  // nothing in flight on any of its workers.
  struct Status {
    int64_t version = 0;
    std::vector<std::string> drained;
  };
  virtual Status ProxyStatus() const = 0;
};

// The node's data plane (src/proxy/): the document is parsed and checked whole
// (proxy::ParseConfig) and applied to the proxy's worker threads, which are
// started at the first document that has listeners; a node in no load
// balancer runs none. Stops the proxy, letting what is in flight finish for up
// to `stop_grace_ms`, when it goes.
class DataPlaneSink final : public ProxySink {
 public:
  explicit DataPlaneSink(int threads, uint64_t stop_grace_ms = 5000);
  ~DataPlaneSink() override;
  Result<int64_t> ApplyProxy(const json::View& doc) override;
  Status ProxyStatus() const override;
  // The proxy's metrics in Prometheus' text format (proxy::Proxy::RenderMetrics),
  // or a comment saying none runs here yet. On the agent's loop thread.
  void RenderMetrics(std::string* out) const;

 private:
  int threads_;
  uint64_t stop_grace_ms_;
  std::unique_ptr<proxy::Proxy> proxy_;
  int64_t version_ = 0;  // of the last document applied
  // The draining targets of that document, (target id, group), sorted.
  std::vector<std::pair<std::string, std::string>> draining_;
};

// The shape the agent checks before handing a document on: an object with a
// whole `version` of 1 or more, `listeners` and `targetGroups` arrays when
// present. The data plane checks the rest.
Result<int64_t> ProxyDocVersion(const json::View& doc);

}  // namespace berth::agent
