#include "sched/engine.h"

#include <algorithm>

namespace berth::sched {

namespace {

// A class's nodes free of a group are kept as a set of their own only while the
// group is on more than half of them (and the class is this big); below a quarter
// the set goes. Otherwise they are the class's set, stepping over the group's nodes.
constexpr size_t kMinZeroSet = 64;
// Random draws before a random pick falls back to the exact ordered search.
constexpr int kRandomProbes = 16;

uint32_t PortKey(PortSpec p) { return p.port | (p.udp ? 0x10000u : 0u); }

// A node's few (group id → value) entries in one small vector: a node holds tasks
// of tens of groups at most, and scanning a cache line or two beats a hash
// table's pointer chasing once the cluster no longer fits in the caches.
template <class V>
class SmallMap {
 public:
  V* Find(uint32_t key) {
    for (auto& e : v_) {
      if (e.first == key) return &e.second;
    }
    return nullptr;
  }
  const V* Find(uint32_t key) const { return const_cast<SmallMap*>(this)->Find(key); }
  bool Contains(uint32_t key) const { return Find(key) != nullptr; }
  V& operator[](uint32_t key) {
    if (V* found = Find(key)) return *found;
    return v_.emplace_back(key, V{}).second;
  }
  void Erase(uint32_t key) {
    for (auto& e : v_) {
      if (e.first == key) {
        e = v_.back();
        v_.pop_back();
        return;
      }
    }
  }
  void Clear() { v_.clear(); }
  auto begin() const { return v_.begin(); }
  auto end() const { return v_.end(); }

 private:
  std::vector<std::pair<uint32_t, V>> v_;
};

}  // namespace

Result<Strategy> Strategy::Make(std::string_view type, std::string_view field) {
  Strategy s;
  if (type == "binpack") {
    if (field != "cpu" && field != "memory") {
      return Error::Invalid("binpack field must be cpu or memory, not '" + std::string(field) + "'");
    }
    s.type = StrategyType::kBinpack;
  } else if (type == "spread") {
    if (field != "instanceId" && field != "host" && !(field.starts_with("attribute:") && field.size() > 10)) {
      return Error::Invalid("spread field must be instanceId or attribute:<name>, not '" + std::string(field) + "'");
    }
    s.type = StrategyType::kSpread;
    if (field == "host") field = "instanceId";
  } else if (type == "random") {
    if (!field.empty()) return Error::Invalid("random takes no field");
    s.type = StrategyType::kRandom;
  } else {
    return Error::Invalid("strategy type must be binpack, spread or random, not '" + std::string(type) + "'");
  }
  s.field = std::string(field);
  return s;
}

// A set of candidate nodes. The members vector gives O(1) insert, remove and
// uniform random choice; the two ordered trees (by free memory with the most free
// CPU in each subtree, and by free CPU with the most free memory) answer exact
// "least room that still fits" queries in O(log n). They are built the first time
// a query needs them and kept in step after that.
struct Engine::NodeSet {
  std::vector<NodeRef> members;
  std::unique_ptr<CapacityTree> by_mem, by_cpu;

  // `slot(n)` is where node n's position in `members` is kept.
  template <class Slot>
  void Insert(NodeRef n, int64_t mem, int64_t cpu, Slot slot) {
    slot(n) = static_cast<uint32_t>(members.size());
    members.push_back(n);
    if (by_mem) by_mem->Insert(n, mem, cpu);
    if (by_cpu) by_cpu->Insert(n, cpu, mem);
  }
  template <class Slot>
  void Erase(NodeRef n, int64_t mem, int64_t cpu, Slot slot) {
    uint32_t i = slot(n);
    NodeRef last = members.back();
    members[i] = last;
    slot(last) = i;
    members.pop_back();
    if (by_mem) by_mem->Erase(n, mem);
    if (by_cpu) by_cpu->Erase(n, cpu);
  }
  // The node's free resources changed: its place in the trees (if any) moves.
  void Rekey(NodeRef n, int64_t old_mem, int64_t old_cpu, int64_t mem, int64_t cpu) {
    if (by_mem) {
      by_mem->Erase(n, old_mem);
      by_mem->Insert(n, mem, cpu);
    }
    if (by_cpu) {
      by_cpu->Erase(n, old_cpu);
      by_cpu->Insert(n, cpu, mem);
    }
  }
  bool empty() const { return members.empty(); }
};

struct Engine::Node {
  std::string id;
  uint32_t cls = 0;
  int64_t cpu_total = 0, mem_total = 0, cpu_free = 0, mem_free = 0;
  int64_t running = 0;
  uint32_t cls_pos = 0;  // position in its class's candidate set
  bool alive = false, active = true, connected = true;
  std::unordered_set<uint32_t> ports;
  struct InGroup {
    int32_t k = 0;     // tasks of the group here
    uint32_t pos = 0;  // position in the group's level-k set of this class
  };
  SmallMap<InGroup> groups;     // group id → its tasks here
  SmallMap<uint32_t> zero_pos;  // group id → position in its zero set
  int32_t K(uint32_t gid) const {
    const InGroup* in = groups.Find(gid);
    return in ? in->k : 0;
  }
};

// Nodes with identical attributes: a constraint on attributes is decided once per class.
struct Engine::Class {
  std::map<std::string, std::string> attrs;
  NodeSet all;  // candidate nodes of the class
  size_t live = 0;
  int64_t max_mem = 0;
  std::vector<uint32_t> zero_groups;  // groups with a zero set for this class
};

struct Engine::Group {
  std::string name;
  std::vector<int64_t> per_class;  // tasks of the group in each class
  // levels[class][k], k >= 1: candidate nodes of the class holding exactly k tasks
  // of the group. Their size is bounded by the group's tasks, whatever the cluster's.
  std::vector<std::vector<std::unique_ptr<NodeSet>>> levels;
  // zero[class]: the class's candidate nodes holding none of the group, kept only
  // for a group on most of the class's nodes (see kMinZeroSet).
  std::vector<std::unique_ptr<NodeSet>> zero;
  bool has_trees = false;  // some set of the group has its ordered trees (to keep in step)

  NodeSet* Level(uint32_t cls, int32_t k, bool create) {
    if (levels.size() <= cls) {
      if (!create) return nullptr;
      levels.resize(cls + 1);
    }
    auto& v = levels[cls];
    if (v.size() <= static_cast<size_t>(k)) {
      if (!create) return nullptr;
      v.resize(static_cast<size_t>(k) + 1);
    }
    if (!v[static_cast<size_t>(k)] && create) v[static_cast<size_t>(k)] = std::make_unique<NodeSet>();
    return v[static_cast<size_t>(k)].get();
  }
  NodeSet* Zero(uint32_t cls) const { return cls < zero.size() ? zero[cls].get() : nullptr; }
  // Candidate nodes of the class holding at least one task of the group.
  size_t Members(uint32_t cls) const {
    size_t n = 0;
    if (cls < levels.size()) {
      for (size_t k = 1; k < levels[cls].size(); k++) n += levels[cls][k] ? levels[cls][k]->members.size() : 0;
    }
    return n;
  }
};

// What the query language may ask about a node (or, with node == nullptr, a class).
class Engine::Facts final : public NodeFacts {
 public:
  Facts(const Engine* e, const Node* n, const Class* c) : e_(e), n_(n), c_(c) {}
  const std::string* Attribute(std::string_view name) const override {
    auto it = c_->attrs.find(std::string(name));
    return it == c_->attrs.end() ? nullptr : &it->second;
  }
  std::string_view InstanceId() const override { return n_ ? std::string_view(n_->id) : std::string_view(); }
  bool AgentConnected() const override { return n_ && n_->connected; }
  int64_t RunningTasksCount() const override { return n_ ? n_->running : 0; }
  bool HasTaskGroup(std::string_view group) const override {
    if (!n_) return false;
    auto it = e_->group_by_name_.find(std::string(group));
    if (it == e_->group_by_name_.end()) return false;
    return n_->K(it->second) > 0;
  }

 private:
  const Engine* e_;
  const Node* n_;
  const Class* c_;
};

Engine::Engine(uint64_t seed) : rng_(seed) {}
Engine::~Engine() = default;

uint32_t Engine::GroupId(std::string_view group) {
  auto it = group_by_name_.find(std::string(group));
  if (it != group_by_name_.end()) return it->second;
  auto g = std::make_unique<Group>();
  g->name = std::string(group);
  uint32_t id = static_cast<uint32_t>(groups_.size());
  groups_.push_back(std::move(g));
  group_by_name_.emplace(std::string(group), id);
  return id;
}

bool Engine::Candidate(NodeRef n) const {
  const Node& x = nodes_[n];
  return x.alive && x.active && x.connected;
}

// Where node m's position is kept in group gid's level sets and zero set.
auto Engine::LevelSlot(uint32_t gid) {
  return [this, gid](NodeRef m) -> uint32_t& { return nodes_[m].groups.Find(gid)->pos; };
}
auto Engine::ZeroSlot(uint32_t gid) {
  return [this, gid](NodeRef m) -> uint32_t& { return nodes_[m].zero_pos[gid]; };
}

void Engine::IndexNode(NodeRef n) {
  if (!Candidate(n)) return;
  Node& x = nodes_[n];
  Class& c = *classes_[x.cls];
  c.all.Insert(n, x.mem_free, x.cpu_free, [this](NodeRef m) -> uint32_t& { return nodes_[m].cls_pos; });
  for (const auto& [gid, in] : x.groups) {
    groups_[gid]->Level(x.cls, in.k, true)->Insert(n, x.mem_free, x.cpu_free, LevelSlot(gid));
  }
  for (uint32_t gid : c.zero_groups) {
    if (!x.groups.Contains(gid)) groups_[gid]->Zero(x.cls)->Insert(n, x.mem_free, x.cpu_free, ZeroSlot(gid));
  }
}

void Engine::UnindexNode(NodeRef n) {
  if (!Candidate(n)) return;
  Node& x = nodes_[n];
  Class& c = *classes_[x.cls];
  c.all.Erase(n, x.mem_free, x.cpu_free, [this](NodeRef m) -> uint32_t& { return nodes_[m].cls_pos; });
  for (const auto& [gid, in] : x.groups) {
    groups_[gid]->Level(x.cls, in.k, false)->Erase(n, x.mem_free, x.cpu_free, LevelSlot(gid));
  }
  for (const auto& [gid, pos] : x.zero_pos) groups_[gid]->Zero(x.cls)->Erase(n, x.mem_free, x.cpu_free, ZeroSlot(gid));
  x.zero_pos.Clear();
}

// Builds a set's ordered trees the first time an exact query needs them.
void Engine::EnsureTrees(NodeSet* set, bool cpu_order) {
  if (!set->by_mem) {
    set->by_mem = std::make_unique<CapacityTree>();
    for (NodeRef n : set->members) set->by_mem->Insert(n, nodes_[n].mem_free, nodes_[n].cpu_free);
  }
  if (cpu_order && !set->by_cpu) {
    set->by_cpu = std::make_unique<CapacityTree>();
    for (NodeRef n : set->members) set->by_cpu->Insert(n, nodes_[n].cpu_free, nodes_[n].mem_free);
  }
}

// Keeps or drops group gid's zero set for class cls as the share of the class's
// nodes the group is on crosses a half (up) or a quarter (down). Building costs
// O(class), paid once for the at least class/4 placements that crossed it.
void Engine::BalanceZero(uint32_t gid, uint32_t cls) {
  Group& g = *groups_[gid];
  Class& c = *classes_[cls];
  size_t size = c.all.members.size();
  size_t members = g.Members(cls);
  NodeSet* zero = g.Zero(cls);
  if (!zero && size >= kMinZeroSet && members * 2 > size) {
    if (g.zero.size() <= cls) g.zero.resize(cls + 1);
    g.zero[cls] = std::make_unique<NodeSet>();
    for (NodeRef n : c.all.members) {
      const Node& x = nodes_[n];
      if (!x.groups.Contains(gid)) g.zero[cls]->Insert(n, x.mem_free, x.cpu_free, ZeroSlot(gid));
    }
    c.zero_groups.push_back(gid);
  } else if (zero && members * 4 < size) {
    for (NodeRef n : zero->members) nodes_[n].zero_pos.Erase(gid);
    g.zero[cls].reset();
    c.zero_groups.erase(std::find(c.zero_groups.begin(), c.zero_groups.end(), gid));
  }
}

Engine::NodeRef Engine::AddNode(const NodeSpec& spec) {
  std::string key;
  for (const auto& [k, v] : spec.attributes) {
    key.append(k).push_back('\0');
    key.append(v).push_back('\0');
  }
  uint32_t cls;
  auto it = class_by_key_.find(key);
  if (it != class_by_key_.end()) {
    cls = it->second;
  } else {
    cls = static_cast<uint32_t>(classes_.size());
    auto c = std::make_unique<Class>();
    c->attrs = spec.attributes;
    classes_.push_back(std::move(c));
    class_by_key_.emplace(std::move(key), cls);
  }
  NodeRef ref;
  if (!free_refs_.empty()) {
    ref = free_refs_.back();
    free_refs_.pop_back();
  } else {
    ref = static_cast<NodeRef>(nodes_.size());
    nodes_.emplace_back();
  }
  Node& x = nodes_[ref];
  x = Node();
  x.id = spec.id;
  x.cls = cls;
  x.cpu_total = x.cpu_free = spec.cpu;
  x.mem_total = x.mem_free = spec.memory;
  for (PortSpec p : spec.reserved_ports) x.ports.insert(PortKey(p));
  x.alive = true;
  Class& c = *classes_[cls];
  c.live++;
  c.max_mem = std::max(c.max_mem, spec.memory);
  live_nodes_++;
  IndexNode(ref);
  return ref;
}

void Engine::RemoveNode(NodeRef n) {
  if (n >= nodes_.size() || !nodes_[n].alive) return;
  UnindexNode(n);
  Node& x = nodes_[n];
  for (const auto& [gid, in] : x.groups) groups_[gid]->per_class[x.cls] -= in.k;
  classes_[x.cls]->live--;
  x = Node();
  free_refs_.push_back(n);
  live_nodes_--;
}

void Engine::SetStatus(NodeRef n, bool active, bool connected) {
  if (n >= nodes_.size() || !nodes_[n].alive) return;
  UnindexNode(n);
  nodes_[n].active = active;
  nodes_[n].connected = connected;
  IndexNode(n);
}

void Engine::AddTask(NodeRef n, const TaskShape& shape, std::string_view group) {
  if (n >= nodes_.size() || !nodes_[n].alive) return;
  uint32_t gid = GroupId(group);
  Node& x = nodes_[n];
  int64_t old_mem = x.mem_free, old_cpu = x.cpu_free;
  x.cpu_free -= shape.cpu;
  x.mem_free -= shape.memory;
  x.running++;
  for (PortSpec p : shape.ports) x.ports.insert(PortKey(p));
  Group& g = *groups_[gid];
  if (g.per_class.size() <= x.cls) g.per_class.resize(classes_.size(), 0);
  g.per_class[x.cls]++;
  Reindex(n, gid, +1, old_mem, old_cpu);
}

void Engine::RemoveTask(NodeRef n, const TaskShape& shape, std::string_view group) {
  if (n >= nodes_.size() || !nodes_[n].alive) return;
  uint32_t gid = GroupId(group);
  Node& x = nodes_[n];
  int64_t old_mem = x.mem_free, old_cpu = x.cpu_free;
  x.cpu_free += shape.cpu;
  x.mem_free += shape.memory;
  x.running--;
  for (PortSpec p : shape.ports) x.ports.erase(PortKey(p));
  Group& g = *groups_[gid];
  if (g.per_class.size() > x.cls) g.per_class[x.cls]--;
  Reindex(n, gid, x.K(gid) > 0 ? -1 : 0, old_mem, old_cpu);
}

void Engine::Reindex(NodeRef n, uint32_t gid, int delta, int64_t old_mem, int64_t old_cpu) {
  Node& x = nodes_[n];
  Group& g = *groups_[gid];
  bool candidate = Candidate(n);
  int32_t old_k = x.K(gid);
  int32_t k = old_k + delta;
  if (candidate) {
    classes_[x.cls]->all.Rekey(n, old_mem, old_cpu, x.mem_free, x.cpu_free);
    // Out of the set for old_k (the entry still holds the position)...
    if (old_k > 0) {
      g.Level(x.cls, old_k, false)->Erase(n, old_mem, old_cpu, LevelSlot(gid));
    } else if (NodeSet* zero = g.Zero(x.cls)) {
      zero->Erase(n, old_mem, old_cpu, ZeroSlot(gid));
      x.zero_pos.Erase(gid);
    }
  }
  if (k > 0) {
    x.groups[gid].k = k;
  } else {
    x.groups.Erase(gid);
  }
  if (!candidate) return;
  // ...into the one for k.
  if (k > 0) {
    g.Level(x.cls, k, true)->Insert(n, x.mem_free, x.cpu_free, LevelSlot(gid));
  } else if (NodeSet* zero = g.Zero(x.cls)) {
    zero->Insert(n, x.mem_free, x.cpu_free, ZeroSlot(gid));
  }
  // Its room changed: other groups' ordered sets that hold it re-key it.
  for (const auto& [other, in] : x.groups) {
    Group& o = *groups_[other];
    if (other != gid && o.has_trees) o.Level(x.cls, in.k, false)->Rekey(n, old_mem, old_cpu, x.mem_free, x.cpu_free);
  }
  for (const auto& [other, pos] : x.zero_pos) {  // the zero sets that hold it
    Group& o = *groups_[other];
    if (other != gid && o.has_trees) o.Zero(x.cls)->Rekey(n, old_mem, old_cpu, x.mem_free, x.cpu_free);
  }
  if ((old_k == 0) != (k == 0)) BalanceZero(gid, x.cls);
}

bool Engine::Feasible(NodeRef n, const Request& req, uint32_t gid, bool free_of_group) const {
  const Node& x = nodes_[n];
  for (PortSpec p : req.shape.ports) {
    if (x.ports.count(PortKey(p))) return false;
  }
  if ((req.distinct_instance || free_of_group) && x.K(gid) > 0) return false;
  Facts facts(this, &x, classes_[x.cls].get());
  for (const auto& e : req.member_of) {
    if (!e->AttributesOnly() && !e->Eval(facts)) return false;
  }
  return true;
}

// The first node of `tree`, in its order from after (after_primary, after_node),
// that has room and passes every other check. Nodes rejected for ports or
// node-level constraints are stepped over; nothing else is visited.
Engine::NodeRef Engine::FirstFeasible(const CapacityTree& tree, bool memory_primary, const Request& req, uint32_t gid,
                                      bool free_of_group, int64_t after_primary, NodeRef after_node) {
  int64_t min_p = memory_primary ? req.shape.memory : req.shape.cpu;
  int64_t min_s = memory_primary ? req.shape.cpu : req.shape.memory;
  uint32_t n = tree.FirstFitAfter(min_p, min_s, after_primary, after_node);
  while (n != CapacityTree::kNone && !Feasible(n, req, gid, free_of_group)) {
    int64_t p = memory_primary ? nodes_[n].mem_free : nodes_[n].cpu_free;
    n = tree.FirstFitAfter(min_p, min_s, p, n);
  }
  return n == CapacityTree::kNone ? kNoNode : n;
}

Engine::NodeRef Engine::Pick(const Request& req, uint32_t gid, const Strategy* s, const std::vector<uint32_t>& classes,
                             int level) {
  // The class's nodes at this level of the group: a level set; or for level 0 the
  // group's zero set when it keeps one, else the class's set minus the group's
  // nodes (free_of_group: they are stepped over, and are under half of it).
  Group& g = *groups_[gid];
  auto set_of = [&](uint32_t c, bool* free_of_group) -> NodeSet* {
    *free_of_group = false;
    if (level < 0) return &classes_[c]->all;
    if (level > 0) return g.Level(c, level, false);
    if (NodeSet* zero = g.Zero(c)) return zero;
    if (g.Members(c) >= classes_[c]->all.members.size()) return nullptr;
    *free_of_group = true;
    return &classes_[c]->all;
  };
  if (s && s->type == StrategyType::kBinpack) {
    bool mem = s->field == "memory";
    NodeRef best = kNoNode;
    for (uint32_t c : classes) {
      bool free_of_group;
      NodeSet* set = set_of(c, &free_of_group);
      if (!set || set->empty()) continue;
      EnsureTrees(set, !mem);
      if (level >= 0) g.has_trees = true;
      NodeRef n = FirstFeasible(mem ? *set->by_mem : *set->by_cpu, mem, req, gid, free_of_group, INT64_MIN,
                                CapacityTree::kNone);
      if (n == kNoNode) continue;
      if (best == kNoNode) {
        best = n;
        continue;
      }
      int64_t a = mem ? nodes_[n].mem_free : nodes_[n].cpu_free;
      int64_t b = mem ? nodes_[best].mem_free : nodes_[best].cpu_free;
      if (a < b || (a == b && n < best)) best = n;
    }
    return best;
  }
  // Random (or a tie the strategies left): uniform over the candidates by rejection
  // sampling. `count[k]` candidates of sets_[k], the i-th of them at_rank(k, i):
  // a draw over all of them is kept if the node fits.
  auto sample = [&](const std::vector<size_t>& count, int probes, auto at_rank) -> NodeRef {
    size_t total = 0;
    for (size_t c : count) total += c;
    for (int probe = 0; probe < probes && total > 0; probe++) {
      size_t i = std::uniform_int_distribution<size_t>(0, total - 1)(rng_);
      size_t k = 0;
      while (i >= count[k]) i -= count[k++];
      NodeRef n = at_rank(k, i);
      const Node& x = nodes_[n];
      if (x.cpu_free >= req.shape.cpu && x.mem_free >= req.shape.memory && Feasible(n, req, gid, sets_[k].second)) {
        return n;
      }
    }
    return kNoNode;
  };
  sets_.clear();
  std::vector<size_t> count;
  for (uint32_t c : classes) {
    bool free_of_group;
    NodeSet* set = set_of(c, &free_of_group);
    if (!set || set->empty()) continue;
    sets_.emplace_back(set, free_of_group);
    count.push_back(set->members.size());
  }
  if (sets_.empty()) return kNoNode;
  // O(1) expected while most candidates have room. A class's set standing for
  // the nodes free of the group has the group's nodes too (under half of it):
  // twice the draws keep the odds of a hit.
  bool stepping = std::any_of(sets_.begin(), sets_.end(), [](const auto& s) { return s.second; });
  NodeRef n =
      sample(count, (stepping ? 2 : 1) * kRandomProbes, [&](size_t k, size_t i) { return sets_[k].first->members[i]; });
  if (n != kNoNode) return n;
  // When they are scarce, the same among the nodes with enough free memory only:
  // the last ones of each set's memory-ordered tree, drawn by rank, so still
  // uniform, O(log n) a draw.
  for (size_t k = 0; k < sets_.size(); k++) {
    EnsureTrees(sets_[k].first, false);
    if (level >= 0) g.has_trees = true;
    count[k] = sets_[k].first->by_mem->CountFrom(req.shape.memory);
  }
  if (std::all_of(count.begin(), count.end(), [](size_t c) { return c == 0; })) return kNoNode;
  n = sample(count, 2 * kRandomProbes, [&](size_t k, size_t i) {
    const CapacityTree& tree = *sets_[k].first->by_mem;
    return tree.Select(tree.size() - count[k] + i);
  });
  if (n != kNoNode) return n;
  // When few of those fit for another reason (CPU, a port, a node-level
  // constraint), the exact search: the first fitting node from a random point of
  // each set (this one favours nodes after a gap in free memory).
  std::shuffle(sets_.begin(), sets_.end(), rng_);
  for (const auto& [set, free_of_group] : sets_) {
    int64_t start = std::uniform_int_distribution<int64_t>(req.shape.memory, req.shape.memory + 65536)(rng_);
    NodeRef after = static_cast<NodeRef>(std::uniform_int_distribution<uint64_t>(0, nodes_.size())(rng_));
    n = FirstFeasible(*set->by_mem, true, req, gid, free_of_group, start, after);
    if (n == kNoNode) n = FirstFeasible(*set->by_mem, true, req, gid, free_of_group, INT64_MIN, CapacityTree::kNone);
    if (n != kNoNode) return n;
  }
  return kNoNode;
}

// Applies strategies[i..] to the candidate classes (and group level, -1 = any).
Engine::NodeRef Engine::Search(const Request& req, uint32_t gid, size_t i, const std::vector<uint32_t>& classes,
                               int level) {
  if (i >= req.strategies.size()) return Pick(req, gid, nullptr, classes, level);
  const Strategy& s = req.strategies[i];
  if (s.type != StrategyType::kSpread) return Pick(req, gid, &s, classes, level);
  Group& g = *groups_[gid];
  if (s.field == "instanceId") {
    if (level >= 0) return Search(req, gid, i + 1, classes, level);  // already fixed
    // Nodes with the fewest tasks of the group first (level 0 always exists).
    size_t max_level = 1;
    for (uint32_t c : classes) {
      if (c < g.levels.size()) max_level = std::max(max_level, g.levels[c].size());
    }
    size_t top = req.distinct_instance ? std::min<size_t>(max_level, 1) : max_level;
    for (size_t k = 0; k < top; k++) {
      NodeRef n = Search(req, gid, i + 1, classes, static_cast<int>(k));
      if (n != kNoNode) return n;
    }
    return kNoNode;
  }
  // spread on attribute:<name>: values with the fewest tasks of the group first;
  // equal counts form one tier.
  std::string attr = s.field.substr(10);
  auto value_of = [&](uint32_t c) {
    auto it = classes_[c]->attrs.find(attr);
    return it == classes_[c]->attrs.end() ? std::string() : it->second;
  };
  std::map<std::string, std::pair<int64_t, std::vector<uint32_t>>> by_value;
  for (uint32_t c : classes) by_value[value_of(c)].second.push_back(c);
  // A value's count takes in all its classes, also those with no room left.
  for (uint32_t c = 0; c < classes_.size() && c < g.per_class.size(); c++) {
    if (g.per_class[c] == 0) continue;
    auto it = by_value.find(value_of(c));
    if (it != by_value.end()) it->second.first += g.per_class[c];
  }
  std::vector<std::pair<int64_t, const std::vector<uint32_t>*>> tiers;
  for (const auto& [value, slot] : by_value) tiers.emplace_back(slot.first, &slot.second);
  std::stable_sort(tiers.begin(), tiers.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t t = 0; t < tiers.size();) {
    std::vector<uint32_t> tier;
    size_t u = t;
    while (u < tiers.size() && tiers[u].first == tiers[t].first) {
      tier.insert(tier.end(), tiers[u].second->begin(), tiers[u].second->end());
      u++;
    }
    NodeRef n = Search(req, gid, i + 1, tier, level);
    if (n != kNoNode) return n;
    t = u;
  }
  return kNoNode;
}

// Why the rest of a batch could not be placed: the binding constraint that
// excludes each node, counted. Examines at most kExplainNodes nodes (the first
// ones by ref, so the same cluster gives the same text), so a failed placement
// costs the same at 10 nodes as at 10,000; the text says when it looked at only
// part of the cluster.
std::string Engine::Explain(const Request& req, uint32_t gid) const {
  if (live_nodes_ == 0) return "no nodes are registered in the cluster";
  size_t examined = 0;
  std::vector<std::pair<std::string, int64_t>> counts;
  auto add = [&](const std::string& why) {
    for (auto& [w, n] : counts) {
      if (w == why) {
        n++;
        return;
      }
    }
    counts.emplace_back(why, 1);
  };
  for (NodeRef n = 0; n < nodes_.size() && examined < kExplainNodes; n++) {
    const Node& x = nodes_[n];
    if (!x.alive) continue;
    examined++;
    if (!x.connected) {
      add("agent disconnected");
      continue;
    }
    if (!x.active) {
      add("node not ACTIVE");
      continue;
    }
    Facts facts(this, &x, classes_[x.cls].get());
    bool member = true;
    for (const auto& e : req.member_of) member = member && e->Eval(facts);
    if (!member) {
      add("memberOf constraint");
      continue;
    }
    if (req.distinct_instance && x.K(gid) > 0) {
      add("distinctInstance");
      continue;
    }
    bool port_busy = false;
    for (PortSpec p : req.shape.ports) {
      if (x.ports.count(PortKey(p))) {
        add("host port " + std::to_string(p.port) + (p.udp ? "/udp" : "/tcp") + " in use");
        port_busy = true;
        break;
      }
    }
    if (port_busy) continue;
    if (x.cpu_free < req.shape.cpu) {
      add("insufficient CPU");
      continue;
    }
    if (x.mem_free < req.shape.memory) {
      add("insufficient memory");
      continue;
    }
    add("no reason found (a scheduler bug)");
  }
  std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out;
  for (const auto& [why, n] : counts) {
    if (!out.empty()) out += "; ";
    out += why + " on " + std::to_string(n) + (n == 1 ? " node" : " nodes");
  }
  if (examined < live_nodes_) {
    out += " (" + std::to_string(examined) + " of the cluster's " + std::to_string(live_nodes_) + " nodes examined)";
  }
  return out;
}

Engine::Placement Engine::Place(const Request& req, int count) {
  Placement out;
  uint32_t gid = GroupId(req.group);
  // Classes passing the attribute-only constraints: decided once for the batch.
  std::vector<uint32_t> classes;
  for (uint32_t c = 0; c < classes_.size(); c++) {
    if (classes_[c]->all.empty()) continue;
    Facts facts(this, nullptr, classes_[c].get());
    bool ok = true;
    for (const auto& e : req.member_of) ok = ok && (!e->AttributesOnly() || e->Eval(facts));
    if (ok) classes.push_back(c);
  }
  // distinctInstance without spread on instanceId still needs level 0 only.
  bool spread_instance = false;
  for (const Strategy& s : req.strategies)
    spread_instance = spread_instance || (s.type == StrategyType::kSpread && s.field == "instanceId");
  int level = req.distinct_instance && !spread_instance ? 0 : -1;
  out.nodes.reserve(static_cast<size_t>(std::max(count, 0)));
  for (int k = 0; k < count; k++) {
    NodeRef n = Search(req, gid, 0, classes, level);
    if (n == kNoNode) {
      out.reason = Explain(req, gid);
      break;
    }
    AddTask(n, req.shape, req.group);
    out.nodes.push_back(n);
  }
  return out;
}

const std::string& Engine::NodeId(NodeRef n) const { return nodes_[n].id; }
int64_t Engine::FreeCpu(NodeRef n) const { return nodes_[n].cpu_free; }
int64_t Engine::FreeMemory(NodeRef n) const { return nodes_[n].mem_free; }
bool Engine::PortInUse(NodeRef n, PortSpec p) const { return nodes_[n].ports.count(PortKey(p)) > 0; }
int64_t Engine::TasksInGroup(NodeRef n, std::string_view group) const {
  auto it = group_by_name_.find(std::string(group));
  if (it == group_by_name_.end()) return 0;
  return nodes_[n].K(it->second);
}

}  // namespace berth::sched
