#include "control/scheduler.h"

#include <algorithm>

#include "base/crypto.h"
#include "control/proxy_config.h"

namespace berth::control {

Status ParsePlacement(json::View constraints, json::View strategies, std::string_view path, sched::Request* out) {
  std::string base(path);
  auto at = [&](const char* field, size_t i) {
    return (base.empty() ? std::string() : base + ".") + field + "[" + std::to_string(i) + "]";
  };
  if (constraints.valid() && !constraints.IsNull()) {
    if (!constraints.IsArray()) return Error::Invalid(at("placementConstraints", 0) + ": must be an array");
    if (constraints.Size() > 10) return Error::Invalid("placementConstraints: at most 10");
    size_t i = 0;
    for (json::View c : constraints) {
      std::string p = at("placementConstraints", i++);
      Result<std::string> type = json::RequireString(c, "type", p + ".type");
      if (!type) return type.take_error();
      if (*type == "distinctInstance") {
        out->distinct_instance = true;
      } else if (*type == "memberOf") {
        Result<std::string> expr = json::RequireString(c, "expression", p + ".expression");
        if (!expr) return expr.take_error();
        auto e = sched::Expr::Parse(*expr);
        if (!e) return Error::Invalid(p + ".expression: " + e.error().message);
        out->member_of.push_back(e.value());
      } else {
        return Error::Invalid(p + ".type: must be distinctInstance or memberOf");
      }
    }
  }
  if (strategies.valid() && !strategies.IsNull()) {
    if (!strategies.IsArray()) return Error::Invalid("placementStrategy: must be an array");
    if (strategies.Size() > 5) return Error::Invalid("placementStrategy: at most 5");
    size_t i = 0;
    for (json::View s : strategies) {
      std::string p = at("placementStrategy", i++);
      Result<std::string> type = json::RequireString(s, "type", p + ".type");
      if (!type) return type.take_error();
      Result<std::string> field = json::OptionalString(s, "field", p + ".field");
      if (!field) return field.take_error();
      std::string f = *field;
      if (*type == "binpack") {
        for (char& ch : f) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
      }
      auto st = sched::Strategy::Make(*type, f);
      if (!st) return Error::Invalid(p + ": " + st.error().message);
      out->strategies.push_back(st.value());
    }
  }
  return {};
}

Scheduler::Scheduler(model::State* state, uint64_t seed) : state_(state), seed_(seed) {
  state_->AddObserver(this);
  OnReloaded();
}

Scheduler::~Scheduler() = default;

Scheduler::ClusterEngine& Scheduler::For(const std::string& cluster) {
  auto it = engines_.find(cluster);
  if (it == engines_.end()) it = engines_.emplace(cluster, std::make_unique<ClusterEngine>(seed_)).first;
  return *it->second;
}

std::vector<std::pair<int, bool>> Scheduler::Reserved(const model::Node& n) const {
  std::vector<std::pair<int, bool>> ports = n.reserved_ports;
  if (proxies_) {
    for (const auto& p : proxies_->ListenerPorts(n)) {
      if (std::find(ports.begin(), ports.end(), p) == ports.end()) ports.push_back(p);
    }
  }
  return ports;
}

std::string Scheduler::Signature(const model::Node& n) const {
  std::string s = std::to_string(n.cpu) + "/" + std::to_string(n.memory);
  for (const auto& [k, v] : n.attributes) s += "|" + k + "=" + v;
  return s + "|ports=" + model::PortsText(Reserved(n));
}

void Scheduler::SetProxyConfigs(const ProxyConfigs* proxies) {
  proxies_ = proxies;
  OnReloaded();
}

void Scheduler::OnCommandApplied(const store::Command& cmd) {
  // A listener added or removed (or its load balancer) changes what the nodes of
  // its cluster reserve: their signatures tell which must be added again.
  std::string_view type = cmd.Type();
  std::string cluster;
  if (type == "CreateListener") cluster = static_cast<const model::CreateListener&>(cmd).cluster;
  if (type == "DeleteListener") cluster = static_cast<const model::DeleteListener&>(cmd).cluster;
  if (type == "DeleteLoadBalancer") cluster = static_cast<const model::DeleteLoadBalancer&>(cmd).cluster;
  if (cluster.empty() || !proxies_) return;
  for (const auto& [id, n] : state_->nodes()) {
    if (n.cluster == cluster) OnNodeChanged(n);
  }
}

sched::TaskShape Scheduler::Shape(const model::Task& t) {
  sched::TaskShape shape;
  shape.cpu = t.cpu;
  shape.memory = t.memory;
  for (const auto& [port, udp] : t.fixed_ports) shape.ports.push_back({static_cast<uint16_t>(port), udp});
  return shape;
}

void Scheduler::AddNode(ClusterEngine& ce, const model::Node& n) {
  sched::NodeSpec spec;
  spec.id = n.id;
  spec.attributes = n.attributes;
  spec.cpu = n.cpu;
  spec.memory = n.memory;
  for (const auto& [port, udp] : Reserved(n)) spec.reserved_ports.push_back({static_cast<uint16_t>(port), udp});
  sched::Engine::NodeRef ref = ce.engine.AddNode(spec);
  if (ce.ids.size() <= ref) ce.ids.resize(ref + 1);
  ce.ids[ref] = n.id;
  ce.nodes[n.id] = NodeEntry{ref, Signature(n)};
  ce.engine.SetStatus(ref, n.status == "ACTIVE", n.connected);
  for (const auto& [id, t] : n.tasks) ce.engine.AddTask(ref, Shape(*t), t->group);
}

void Scheduler::OnNodeChanged(const model::Node& n) {
  ClusterEngine& ce = For(n.cluster);
  auto it = ce.nodes.find(n.id);
  if (it != ce.nodes.end() && it->second.signature != Signature(n)) {
    ce.engine.RemoveNode(it->second.ref);
    ce.nodes.erase(it);
    it = ce.nodes.end();
  }
  if (it == ce.nodes.end()) {
    AddNode(ce, n);
    return;
  }
  ce.engine.SetStatus(it->second.ref, n.status == "ACTIVE", n.connected);
}

void Scheduler::OnNodeRemoved(const model::Node& n) {
  ClusterEngine& ce = For(n.cluster);
  auto it = ce.nodes.find(n.id);
  if (it == ce.nodes.end()) return;
  ce.engine.RemoveNode(it->second.ref);
  ce.nodes.erase(it);
}

void Scheduler::OnTaskAccounted(const model::Task& t, const model::Node& n) {
  if (provisional_.erase(t.id)) return;  // planned here: already in the engine
  ClusterEngine& ce = For(n.cluster);
  auto it = ce.nodes.find(n.id);
  if (it != ce.nodes.end()) ce.engine.AddTask(it->second.ref, Shape(t), t.group);
}

void Scheduler::OnTaskReleased(const model::Task& t, const model::Node& n) {
  ClusterEngine& ce = For(n.cluster);
  auto it = ce.nodes.find(n.id);
  if (it != ce.nodes.end()) ce.engine.RemoveTask(it->second.ref, Shape(t), t.group);
}

void Scheduler::OnReloaded() {
  engines_.clear();
  provisional_.clear();
  for (const auto& [id, n] : state_->nodes()) AddNode(For(n.cluster), n);
}

Scheduler::Plan Scheduler::Place(const std::string& cluster, const model::TaskDefinition& td, sched::Request request,
                                 int count, int64_t now_ms) {
  passes_++;
  Plan plan;
  ClusterEngine& ce = For(cluster);
  request.shape.cpu = td.cpu;
  request.shape.memory = td.memory;
  request.shape.ports.clear();
  for (const auto& [port, udp] : td.FixedPorts()) request.shape.ports.push_back({static_cast<uint16_t>(port), udp});
  sched::Engine::Placement p = ce.engine.Place(request, count);
  plan.reason = p.reason;
  // Task ids are 32 hex digits: the creation time in milliseconds (12 digits),
  // then 80 random bits. Ids made later sort later, so SQLite adds a new task's
  // key at the right edge of its index instead of dirtying a page anywhere in it
  // (random keys made every batch of placements rewrite most of the index).
  constexpr size_t kRandom = 10;
  std::vector<uint8_t> raw(p.nodes.size() * kRandom);
  if (!raw.empty() && !crypto::RandomBytes(raw.data(), raw.size())) {
    // No randomness: give every placement back.
    for (sched::Engine::NodeRef ref : p.nodes) ce.engine.RemoveTask(ref, request.shape, request.group);
    plan.reason = "the kernel refused random bytes for task ids";
    return plan;
  }
  uint8_t stamp[6];
  uint64_t ms = static_cast<uint64_t>(std::max<int64_t>(now_ms, 0));
  for (int i = 5; i >= 0; i--, ms >>= 8) stamp[i] = static_cast<uint8_t>(ms & 0xff);
  std::string prefix = crypto::Hex(stamp, sizeof stamp);
  plan.nodes.reserve(p.nodes.size());
  plan.task_ids.reserve(p.nodes.size());
  for (size_t i = 0; i < p.nodes.size(); i++) {
    std::string id = prefix + crypto::Hex(raw.data() + i * kRandom, kRandom);
    plan.nodes.push_back(ce.ids[p.nodes[i]]);
    plan.task_ids.push_back(id);
    provisional_.insert(std::move(id));
  }
  return plan;
}

void Scheduler::Release(const std::string& cluster, const model::TaskDefinition& td, const std::string& group,
                        const Plan& plan) {
  ClusterEngine& ce = For(cluster);
  sched::TaskShape shape;
  shape.cpu = td.cpu;
  shape.memory = td.memory;
  for (const auto& [port, udp] : td.FixedPorts()) shape.ports.push_back({static_cast<uint16_t>(port), udp});
  for (size_t i = 0; i < plan.task_ids.size(); i++) {
    if (!provisional_.erase(plan.task_ids[i])) continue;  // applied after all
    auto it = ce.nodes.find(plan.nodes[i]);
    if (it != ce.nodes.end()) ce.engine.RemoveTask(it->second.ref, shape, group);
  }
}

}  // namespace berth::control
