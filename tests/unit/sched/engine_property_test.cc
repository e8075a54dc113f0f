// sched/engine: property tests. Random clusters and workloads (fixed seeds) run
// against an independent model of the cluster kept by the test. After every
// placement the model checks that
//   - the chosen node could take the task: ACTIVE and connected, enough CPU and
//     memory, its host ports free, distinctInstance and every memberOf satisfied;
//   - the choice follows the strategies: spread picks a value/node holding the
//     fewest tasks of the group among the feasible ones, binpack the feasible node
//     with the least room left (exactly, lowest ref on ties);
//   - when Place gives up, no node could have taken the task (completeness);
//   - the engine's accounting (free CPU and memory, tasks per group, ports) equals
//     the model's, and nothing is over-committed.
#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "sched/engine_helpers.h"

using namespace berth::sched;
using namespace berth::sched::testing;

namespace {

uint32_t Key(PortSpec p) { return p.port | (p.udp ? 0x10000u : 0u); }

struct MTask {
  Engine::NodeRef node;
  TaskShape shape;
  std::string group;
};

struct MNode final : NodeFacts {
  std::string id;
  std::map<std::string, std::string> attrs;
  int64_t cpu = 0, mem = 0, cpu_used = 0, mem_used = 0;
  bool active = true, connected = true;
  int64_t running = 0;
  std::set<uint32_t> ports;
  std::map<std::string, int64_t> groups;

  int64_t CpuFree() const { return cpu - cpu_used; }
  int64_t MemFree() const { return mem - mem_used; }
  int64_t InGroup(const std::string& g) const {
    auto it = groups.find(g);
    return it == groups.end() ? 0 : it->second;
  }
  const std::string* Attribute(std::string_view n) const override {
    auto it = attrs.find(std::string(n));
    return it == attrs.end() ? nullptr : &it->second;
  }
  std::string_view InstanceId() const override { return id; }
  bool AgentConnected() const override { return connected; }
  int64_t RunningTasksCount() const override { return running; }
  bool HasTaskGroup(std::string_view g) const override { return InGroup(std::string(g)) > 0; }
};

class Model {
 public:
  std::map<Engine::NodeRef, MNode> nodes;
  std::vector<MTask> tasks;

  // Whether `n` could take the task now, with every binding constraint.
  bool Feasible(Engine::NodeRef ref, const Request& r) const {
    const MNode& n = nodes.at(ref);
    if (!n.active || !n.connected) return false;
    if (n.CpuFree() < r.shape.cpu || n.MemFree() < r.shape.memory) return false;
    for (PortSpec p : r.shape.ports) {
      if (n.ports.count(Key(p))) return false;
    }
    if (r.distinct_instance && n.InGroup(r.group) > 0) return false;
    for (const auto& e : r.member_of) {
      if (!e->Eval(n)) return false;
    }
    return true;
  }

  // The nodes the strategies allow: the feasible ones, narrowed by each strategy in turn.
  std::vector<Engine::NodeRef> Allowed(const Request& r) const {
    std::vector<Engine::NodeRef> c;
    for (const auto& [ref, n] : nodes) {
      if (Feasible(ref, r)) c.push_back(ref);
    }
    for (const Strategy& s : r.strategies) {
      if (c.empty()) break;
      if (s.type == StrategyType::kRandom) break;
      if (s.type == StrategyType::kBinpack) {
        bool mem = s.field == "memory";
        auto room = [&](Engine::NodeRef x) { return mem ? nodes.at(x).MemFree() : nodes.at(x).CpuFree(); };
        Engine::NodeRef best = c[0];
        for (auto x : c) {
          if (room(x) < room(best) || (room(x) == room(best) && x < best)) best = x;
        }
        return {best};
      }
      std::map<Engine::NodeRef, int64_t> count;
      if (s.field == "instanceId") {
        for (auto x : c) count[x] = nodes.at(x).InGroup(r.group);
      } else {
        // A value's count is over every node that has it (in any state); no attribute is a value too.
        std::string attr = s.field.substr(10);
        auto value = [&](const MNode& n) {
          auto it = n.attrs.find(attr);
          return it == n.attrs.end() ? std::string() : it->second;
        };
        std::map<std::string, int64_t> per_value;
        for (const auto& [ref, n] : nodes) per_value[value(n)] += n.InGroup(r.group);
        for (auto x : c) count[x] = per_value[value(nodes.at(x))];
      }
      int64_t least = INT64_MAX;
      for (auto x : c) least = std::min(least, count[x]);
      std::vector<Engine::NodeRef> kept;
      for (auto x : c) {
        if (count[x] == least) kept.push_back(x);
      }
      c = kept;
    }
    return c;
  }

  void Add(Engine::NodeRef ref, const TaskShape& shape, const std::string& group) {
    MNode& n = nodes.at(ref);
    n.cpu_used += shape.cpu;
    n.mem_used += shape.memory;
    n.running++;
    for (PortSpec p : shape.ports) n.ports.insert(Key(p));
    n.groups[group]++;
    tasks.push_back({ref, shape, group});
  }

  void Remove(size_t task) {
    MTask t = tasks[task];
    tasks.erase(tasks.begin() + static_cast<std::ptrdiff_t>(task));
    MNode& n = nodes.at(t.node);
    n.cpu_used -= t.shape.cpu;
    n.mem_used -= t.shape.memory;
    n.running--;
    for (PortSpec p : t.shape.ports) n.ports.erase(Key(p));
    if (--n.groups[t.group] == 0) n.groups.erase(t.group);
  }

  void RemoveNode(Engine::NodeRef ref) {
    nodes.erase(ref);
    std::erase_if(tasks, [&](const MTask& t) { return t.node == ref; });
  }
};

const PortSpec kPorts[] = {{80, false}, {80, true}, {443, false}, {8080, false}};

// clang-format off
const char* const kExprs[] = {
    "attribute:zone in [z0, z1]",
    "attribute:zone != z2",
    "attribute:type =~ big*",
    "not(attribute:type == small)",
    "attribute:rack > 6",
    "attribute:rack <= 3 or attribute:zone == z1",
    "attribute:missing != x",
    "runningTasksCount < 6",
    "task:group != service:g1",
    "task:group == service:g2 or attribute:zone == z0",
    "instanceId !~ *7",
    "agentConnected == true and not(instanceId in [n3, n4])",
};
// clang-format on

const std::vector<std::vector<std::string>> kStrategyChains = {
    {},
    {"random"},
    {"binpack:memory"},
    {"binpack:cpu"},
    {"spread:attribute:zone"},
    {"spread:instanceId"},
    {"spread:attribute:zone", "spread:instanceId"},
    {"spread:attribute:zone", "binpack:memory"},
    {"spread:instanceId", "binpack:cpu"},
    {"spread:attribute:rack", "spread:instanceId"},
    {"spread:attribute:type", "random"},
    {"binpack:memory", "spread:attribute:zone"},
    {"spread:attribute:zone", "spread:attribute:type", "spread:instanceId", "binpack:cpu"},
};

struct Config {
  int min_nodes, max_nodes;
  int ops;
  int groups;  // how many groups the workload uses
  // Nodes differ only in zone (three big classes, so groups on most of a class's
  // nodes get a set of the nodes free of them), and the second half of the walk
  // removes more than it places (so those sets go again).
  bool few_classes = false;
};

class Walk {
 public:
  Walk(uint64_t seed, Config cfg) : rng_(seed), cfg_(cfg), engine_(seed) {}

  void Run() {
    int initial = Uniform(cfg_.min_nodes, cfg_.max_nodes);
    for (int i = 0; i < initial; i++) AddNode();
    for (int op = 0; op < cfg_.ops; op++) {
      INFO("op " << op);
      int what = Uniform(0, 99);
      if (what < 3) {
        AddNode();
      } else if (what < 5 && model_.nodes.size() > 1) {
        auto ref = AnyNode();
        engine_.RemoveNode(ref);
        model_.RemoveNode(ref);
      } else if (what < 10 && !model_.nodes.empty()) {
        auto ref = AnyNode();
        int s = Uniform(0, 5);
        bool active = s != 0, connected = s != 1;  // mostly back to normal
        engine_.SetStatus(ref, active, connected);
        model_.nodes.at(ref).active = active;
        model_.nodes.at(ref).connected = connected;
      } else if (what < 15 && !model_.nodes.empty()) {
        // A task found running (accounted, not placed); only if it fits, so nothing is over-committed.
        auto ref = AnyNode();
        Request r = RandomRequest();
        r.member_of.clear();
        r.distinct_instance = false;
        const MNode& n = model_.nodes.at(ref);
        bool fits = n.CpuFree() >= r.shape.cpu && n.MemFree() >= r.shape.memory;
        for (PortSpec p : r.shape.ports) fits = fits && !n.ports.count(Key(p));
        if (fits) {
          engine_.AddTask(ref, r.shape, r.group);
          model_.Add(ref, r.shape, r.group);
        }
      } else if (what < (cfg_.few_classes && op > cfg_.ops / 2 ? 95 : 35) && !model_.tasks.empty()) {
        size_t t = static_cast<size_t>(Uniform(0, static_cast<int>(model_.tasks.size()) - 1));
        const MTask& task = model_.tasks[t];
        engine_.RemoveTask(task.node, task.shape, task.group);
        model_.Remove(t);
      } else {
        Place();
      }
      if (op % 16 == 0) Compare();
    }
    Compare();
    // The walk did place a fair number of times.
    CHECK(placed_ > cfg_.ops / 4);
  }

  int placed_ = 0, failed_ = 0;

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  Engine::NodeRef AnyNode() {
    auto it = model_.nodes.begin();
    std::advance(it, Uniform(0, static_cast<int>(model_.nodes.size()) - 1));
    return it->first;
  }

  void AddNode() {
    std::map<std::string, std::string> attrs;
    if (cfg_.few_classes) {
      attrs["zone"] = "z" + std::to_string(Uniform(0, 2));
    } else {
      if (Uniform(0, 9) > 0) attrs["zone"] = "z" + std::to_string(Uniform(0, 2));
      attrs["type"] = Uniform(0, 1) ? "big" : "small";
      if (Uniform(0, 3) > 0) attrs["rack"] = std::to_string(Uniform(1, 12));
    }
    int64_t cpu = 1024 << Uniform(0, 2), mem = 2048 << Uniform(0, 2);
    std::string id = "n" + std::to_string(next_id_++);
    auto ref = engine_.AddNode(Node(id, cpu, mem, attrs));
    REQUIRE(model_.nodes.count(ref) == 0);
    MNode& n = model_.nodes[ref];
    n.id = id;
    n.attrs = attrs;
    n.cpu = cpu;
    n.mem = mem;
  }

  Request RandomRequest() {
    static const int64_t kCpu[] = {0, 64, 128, 256, 512, 1024, 2048};
    static const int64_t kMem[] = {0, 128, 256, 512, 1024, 2048, 4096};
    Request r;
    r.shape.cpu = kCpu[Uniform(0, 6)];
    r.shape.memory = kMem[Uniform(0, 6)];
    if (Uniform(0, 9) < 2) r.shape.ports.push_back(kPorts[Uniform(0, 3)]);
    if (Uniform(0, 19) == 0) r.shape.ports.push_back(kPorts[Uniform(0, 1) + 2]);
    if (r.shape.ports.size() == 2 && Key(r.shape.ports[0]) == Key(r.shape.ports[1])) r.shape.ports.pop_back();
    r.group = "service:g" + std::to_string(Uniform(0, cfg_.groups - 1));
    r.distinct_instance = Uniform(0, 4) == 0;
    int exprs = Uniform(0, 5) < 3 ? 0 : Uniform(1, 2);
    for (int i = 0; i < exprs; i++)
      r.member_of.push_back(E(kExprs[Uniform(0, static_cast<int>(std::size(kExprs)) - 1)]));
    for (const std::string& s :
         kStrategyChains[static_cast<size_t>(Uniform(0, static_cast<int>(kStrategyChains.size()) - 1))]) {
      r.strategies.push_back(S(s));
    }
    return r;
  }

  std::string Describe(const Request& r) const {
    std::string d = r.group + " cpu=" + std::to_string(r.shape.cpu) + " mem=" + std::to_string(r.shape.memory);
    for (PortSpec p : r.shape.ports) d += " port=" + std::to_string(p.port) + (p.udp ? "/udp" : "/tcp");
    if (r.distinct_instance) d += " distinct";
    for (const Strategy& s : r.strategies) {
      d += s.type == StrategyType::kSpread ? " spread:" : s.type == StrategyType::kBinpack ? " binpack:" : " random";
      d += s.field;
    }
    d += " memberOf x" + std::to_string(r.member_of.size());
    return d;
  }

  void Place() {
    Request r = RandomRequest();
    int count = Uniform(0, 4) == 0 ? Uniform(5, 20) : Uniform(1, 3);
    auto p = engine_.Place(r, count);
    INFO(Describe(r) << " count=" << count);
    REQUIRE(p.nodes.size() <= static_cast<size_t>(count));
    for (Engine::NodeRef n : p.nodes) {
      REQUIRE(model_.nodes.count(n) == 1);
      INFO("placed on " << model_.nodes.at(n).id);
      REQUIRE(model_.Feasible(n, r));
      std::vector<Engine::NodeRef> allowed = model_.Allowed(r);
      REQUIRE(std::find(allowed.begin(), allowed.end(), n) != allowed.end());
      model_.Add(n, r.shape, r.group);
      placed_++;
    }
    if (p.nodes.size() < static_cast<size_t>(count)) {
      failed_++;
      INFO("reason: " << p.reason);
      CHECK_FALSE(p.reason.empty());
      CHECK(p.reason.find("bug") == std::string::npos);
      for (const auto& [ref, n] : model_.nodes) {
        INFO("but " << n.id << " could have taken it");
        REQUIRE_FALSE(model_.Feasible(ref, r));
      }
    } else {
      CHECK(p.reason.empty());
    }
  }

  void Compare() {
    REQUIRE(engine_.node_count() == model_.nodes.size());
    std::set<std::string> groups;
    for (const MTask& t : model_.tasks) groups.insert(t.group);
    for (const auto& [ref, n] : model_.nodes) {
      INFO(n.id);
      REQUIRE(n.CpuFree() >= 0);
      REQUIRE(n.MemFree() >= 0);
      REQUIRE(engine_.FreeCpu(ref) == n.CpuFree());
      REQUIRE(engine_.FreeMemory(ref) == n.MemFree());
      for (PortSpec p : kPorts) REQUIRE(engine_.PortInUse(ref, p) == (n.ports.count(Key(p)) > 0));
      for (const std::string& g : groups) REQUIRE(engine_.TasksInGroup(ref, g) == n.InGroup(g));
    }
    // No port twice on a node: every task's ports are distinct from the others' on its node.
    std::map<std::pair<Engine::NodeRef, uint32_t>, int> uses;
    for (const MTask& t : model_.tasks) {
      for (PortSpec p : t.shape.ports) REQUIRE(++uses[{t.node, Key(p)}] == 1);
    }
  }

  std::mt19937_64 rng_;
  Config cfg_;
  Engine engine_;
  Model model_;
  int next_id_ = 0;
};

}  // namespace

TEST_CASE("engine property: small random clusters", "[sched][engine][property]") {
  int placed = 0, failed = 0;
  for (uint64_t seed = 1; seed <= 40; seed++) {
    INFO("seed " << seed);
    Walk w(seed, {2, 30, 400, 8});
    w.Run();
    placed += w.placed_;
    failed += w.failed_;
  }
  CHECK(placed > 10000);
  CHECK(failed > 500);
}

TEST_CASE("engine property: groups on most nodes of big classes, then on few", "[sched][engine][property]") {
  for (uint64_t seed = 300; seed < 306; seed++) {
    INFO("seed " << seed);
    Walk(seed, {200, 300, 5000, 3, true}).Run();
  }
}

TEST_CASE("engine property: many groups", "[sched][engine][property]") {
  for (uint64_t seed = 100; seed < 110; seed++) {
    INFO("seed " << seed);
    Walk(seed, {10, 40, 600, 150}).Run();
  }
}

TEST_CASE("engine property: a few hundred nodes", "[sched][engine][property]") {
  for (uint64_t seed = 200; seed < 203; seed++) {
    INFO("seed " << seed);
    Walk(seed, {250, 400, 600, 20}).Run();
  }
}

TEST_CASE("engine property: spread is even when every node has room", "[sched][engine][property]") {
  for (uint64_t seed = 1; seed <= 10; seed++) {
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    Engine e(seed);
    // Zones of unequal sizes (1 to 9 nodes), a few shapes per zone.
    std::map<Engine::NodeRef, std::string> zone_of;
    std::map<std::string, std::vector<Engine::NodeRef>> zone_nodes;
    for (int z = 0; z < 3; z++) {
      int n = std::uniform_int_distribution<int>(1, 9)(rng);
      for (int i = 0; i < n; i++) {
        std::string zone = "z" + std::to_string(z);
        auto ref = e.AddNode(
            Node(zone + "-" + std::to_string(i), 1 << 20, 1 << 20, {{"zone", zone}, {"shape", std::to_string(i % 3)}}));
        zone_of[ref] = zone;
        zone_nodes[zone].push_back(ref);
        // Tasks of other groups must not matter.
        for (int k = 0; k < i % 4; k++) e.AddTask(ref, TaskShape{1, 1, {}}, "service:other");
      }
    }
    Request zone_then_node = Req(1, 1, "service:a", {"spread:attribute:zone", "spread:instanceId"});
    Request node_only = Req(1, 1, "service:b", {"spread:instanceId"});
    for (int batch = 0; batch < 30; batch++) {
      int k = std::uniform_int_distribution<int>(1, 7)(rng);
      REQUIRE(e.Place(zone_then_node, k).nodes.size() == static_cast<size_t>(k));
      REQUIRE(e.Place(node_only, k).nodes.size() == static_cast<size_t>(k));
      std::map<std::string, int64_t> per_zone;
      int64_t lo = INT64_MAX, hi = 0;
      for (const auto& [ref, zone] : zone_of) {
        per_zone[zone] += e.TasksInGroup(ref, "service:a");
        lo = std::min(lo, e.TasksInGroup(ref, "service:b"));
        hi = std::max(hi, e.TasksInGroup(ref, "service:b"));
      }
      CHECK(hi - lo <= 1);
      int64_t zlo = INT64_MAX, zhi = 0;
      for (const auto& [zone, n] : per_zone) {
        zlo = std::min(zlo, n);
        zhi = std::max(zhi, n);
        int64_t nlo = INT64_MAX, nhi = 0;
        for (auto ref : zone_nodes[zone]) {
          nlo = std::min(nlo, e.TasksInGroup(ref, "service:a"));
          nhi = std::max(nhi, e.TasksInGroup(ref, "service:a"));
        }
        CHECK(nhi - nlo <= 1);
      }
      CHECK(zhi - zlo <= 1);
    }
  }
}
