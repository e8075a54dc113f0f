#include "agent/proxy_sink.h"

#include <algorithm>
#include <string>

#include "base/log.h"

namespace berth::agent {

Result<int64_t> ProxyDocVersion(const json::View& doc) {
  if (!doc.IsObject()) return Error::Invalid(std::string("proxy: must be an object, not ") + doc.TypeName());
  json::View v = doc.Get("version");
  if (!v.IsNumber() || v.Number() < 1 || v.Number() != static_cast<double>(static_cast<int64_t>(v.Number()))) {
    return Error::Invalid("proxy.version: must be a whole number of 1 or more");
  }
  for (const char* key : {"listeners", "targetGroups"}) {
    json::View list = doc.Get(key);
    if (list.valid() && !list.IsArray()) return Error::Invalid(std::string("proxy.") + key + ": must be an array");
  }
  return static_cast<int64_t>(v.Number());
}

DataPlaneSink::DataPlaneSink(int threads, uint64_t stop_grace_ms) : threads_(threads), stop_grace_ms_(stop_grace_ms) {}

DataPlaneSink::~DataPlaneSink() {
  if (proxy_) proxy_->Stop(stop_grace_ms_);
}

Result<int64_t> DataPlaneSink::ApplyProxy(const json::View& doc) {
  Result<proxy::Config> config = proxy::ParseConfig(doc.Print());
  if (!config) return Error::Invalid("proxy." + config.error().message);
  int64_t version = config->version;
  std::vector<std::pair<std::string, std::string>> draining;
  for (const proxy::TargetGroup& g : config->target_groups) {
    for (const proxy::Target& t : g.targets) {
      if (t.state == proxy::TargetState::kDraining) draining.emplace_back(t.id, g.name);
    }
  }
  std::sort(draining.begin(), draining.end());
  if (!proxy_) {
    // Nothing to serve: no threads until a load balancer takes this node.
    if (config->listeners.empty()) {
      version_ = version;
      draining_ = std::move(draining);
      return version;
    }
    proxy::Options o;
    o.threads = threads_;
    Result<std::unique_ptr<proxy::Proxy>> started = proxy::Proxy::Start(o);
    if (!started) return started.take_error();
    proxy_ = std::move(started.value());
    log::Info("agent", "proxy started", {{"threads", threads_}});
  }
  size_t listeners = config->listeners.size(), groups = config->target_groups.size();
  proxy_->Apply(std::move(config.value()));
  version_ = version;
  draining_ = std::move(draining);
  log::Info("agent", "proxy configuration applied",
            {{"version", std::to_string(version)}, {"listeners", listeners}, {"targetGroups", groups}});
  return version;
}

void DataPlaneSink::RenderMetrics(std::string* out) const {
  if (!proxy_) {
    out->append("# no proxy runs on this node: no load balancer has a listener here\n");
    return;
  }
  proxy_->RenderMetrics(out);
}

ProxySink::Status DataPlaneSink::ProxyStatus() const {
  Status s;
  // Workers take a new document at their next loop turn: until every one has,
  // the version reported is the one they all run.
  s.version = proxy_ ? std::min(version_, proxy_->AppliedVersion()) : version_;
  for (size_t i = 0; i < draining_.size();) {
    const std::string& id = draining_[i].first;
    bool idle = true;
    for (; i < draining_.size() && draining_[i].first == id; i++) {
      if (!proxy_) continue;
      proxy::Proxy::InFlight f = proxy_->TargetInFlight(draining_[i].second, id);
      idle = idle && f.requests == 0 && f.connections == 0;
    }
    if (idle) s.drained.push_back(id);
  }
  return s;
}

}  // namespace berth::agent
