// The placement engine alone, in process: the cost of one placement as the cluster
// grows from 100 to 10,000 nodes. Run by bench/scheduler.sh; see bench/README.md.
//
// Each cluster: nodes of 4096 CPU units and 8192 MiB over three zones (attribute
// `zone`), pre-filled with tasks of mixed sizes from many services until the
// cluster is at 90% of its CPU and of its memory (each node filled to its own
// target, drawn from 80-100%, so some nodes are full and some have room). Then
// 1,000 more placements of small mixed shapes, each Place(request, 1) timed alone:
// spread(attribute:zone), spread(instanceId) — the ECS service default — plus a
// memberOf constraint keeping them out of zone-c. The sizes take turns, 100
// placements at a time, so noise from the rest of the machine falls on all alike. The services placed to are a
// working set of --services (default 50) that also have tasks from the pre-fill.
// The load stays at 90%: once 50 of the run's own tasks are placed, each placement
// is followed (outside the timing) by the stop of a random one of them, so the
// small cluster does not fill up and every size is measured in the same state.
//
// Prints one line per size, then two informational runs (binpack(memory) instead
// of the spread pair; and placements spread over many more services than the
// engine keeps group indexes for), and last:
//   flatness=<median at 10000 / median at 100> placements_per_s=<1e6 / median at 10000>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sched/engine.h"

using berth::sched::Engine;
using berth::sched::Expr;
using berth::sched::NodeSpec;
using berth::sched::Request;
using berth::sched::Strategy;
using berth::sched::TaskShape;

namespace {

constexpr int64_t kNodeCpu = 4096;
constexpr int64_t kNodeMem = 8192;
constexpr int kPrefillServices = 2000;

struct Cluster {
  Engine engine;
  std::vector<Engine::NodeRef> nodes;
  int64_t cpu_used = 0, mem_used = 0;
  explicit Cluster(uint64_t seed) : engine(seed) {}
};

// Fills each node to its own target (80-100% of CPU and of memory, independently)
// with tasks of mixed sizes from kPrefillServices services, the last task on a
// node taking exactly what is left of its target.
void Build(Cluster* c, int n, std::mt19937_64& rng) {
  static const int64_t kCpu[] = {128, 256, 512, 1024};
  static const int64_t kMem[] = {256, 512, 1024, 2048};
  std::uniform_real_distribution<double> target(0.8, 1.0);
  std::uniform_int_distribution<int> pick(0, 3), service(0, kPrefillServices - 1);
  for (int i = 0; i < n; i++) {
    NodeSpec spec;
    char id[32];
    snprintf(id, sizeof id, "i-%05d", i);
    spec.id = id;
    spec.cpu = kNodeCpu;
    spec.memory = kNodeMem;
    spec.attributes = {{"zone", std::string("zone-") + static_cast<char>('a' + i % 3)},
                       {"ecs.instance-type", "m5.xlarge"}};
    Engine::NodeRef ref = c->engine.AddNode(spec);
    c->nodes.push_back(ref);
    int64_t cpu_left = static_cast<int64_t>(target(rng) * kNodeCpu);
    int64_t mem_left = static_cast<int64_t>(target(rng) * kNodeMem);
    for (int misses = 0; misses < 4;) {
      TaskShape t{kCpu[pick(rng)], kMem[pick(rng)], {}};
      if (t.cpu > cpu_left || t.memory > mem_left) {
        misses++;
        continue;
      }
      c->engine.AddTask(ref, t, "service:svc-" + std::to_string(service(rng)));
      cpu_left -= t.cpu;
      mem_left -= t.memory;
    }
    if (cpu_left > 0 || mem_left > 0) {
      c->engine.AddTask(ref, TaskShape{cpu_left, mem_left, {}}, "service:svc-" + std::to_string(service(rng)));
    }
    c->cpu_used += kNodeCpu - c->engine.FreeCpu(ref);
    c->mem_used += kNodeMem - c->engine.FreeMemory(ref);
  }
}

struct Stats {
  double median = 0, p90 = 0, p99 = 0, max = 0;
  int failed = 0;
  double fill_cpu = 0, fill_mem = 0;
};

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[i];
}

enum class Mode { kSpread, kBinpack };

// One cluster and its stream of placements.
class Run {
 public:
  Run(int n, Mode mode, int services) : rng_(1000 + static_cast<uint64_t>(n)), c_(1000 + static_cast<uint64_t>(n)) {
    Build(&c_, n, rng_);
    st_.fill_cpu = 100.0 * static_cast<double>(c_.cpu_used) / static_cast<double>(kNodeCpu * n);
    st_.fill_mem = 100.0 * static_cast<double>(c_.mem_used) / static_cast<double>(kNodeMem * n);
    // The requests, built before any clock starts: one per service, with two
    // spellings of the same memberOf.
    auto in_ab = Expr::Parse("attribute:zone in [zone-a, zone-b]");
    auto not_c = Expr::Parse("attribute:zone != zone-c");
    if (!in_ab || !not_c) abort();
    reqs_.resize(static_cast<size_t>(services));
    for (int s = 0; s < services; s++) {
      Request& r = reqs_[static_cast<size_t>(s)];
      r.group = "service:svc-" + std::to_string(s);  // these also have pre-fill tasks
      r.member_of.push_back(s % 2 ? in_ab.value() : not_c.value());
      if (mode == Mode::kSpread) {
        r.strategies.push_back(Strategy::Make("spread", "attribute:zone").value());
        r.strategies.push_back(Strategy::Make("spread", "instanceId").value());
      } else {
        r.strategies.push_back(Strategy::Make("binpack", "memory").value());
      }
    }
  }

  // `count` more placements, each Place(req, 1) timed alone.
  void Step(int count) {
    static const int64_t kCpu[] = {64, 128, 256};
    static const int64_t kMem[] = {128, 256, 512};
    std::uniform_int_distribution<int> shape(0, 2), which(0, static_cast<int>(reqs_.size()) - 1);
    for (int i = 0; i < count; i++) {
      Request& r = reqs_[static_cast<size_t>(which(rng_))];
      r.shape.cpu = kCpu[shape(rng_)];
      r.shape.memory = kMem[shape(rng_)];
      auto t0 = std::chrono::steady_clock::now();
      Engine::Placement p = c_.engine.Place(r, 1);
      auto t1 = std::chrono::steady_clock::now();
      us_.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      if (p.nodes.empty()) {
        st_.failed++;
      } else {
        running_.push_back({p.nodes[0], r.shape, &r.group});
      }
      if (running_.size() > 50) {
        size_t k = std::uniform_int_distribution<size_t>(0, running_.size() - 1)(rng_);
        c_.engine.RemoveTask(running_[k].node, running_[k].shape, *running_[k].group);
        running_[k] = running_.back();
        running_.pop_back();
      }
    }
  }

  Stats Result() {
    st_.median = Quantile(us_, 0.5);
    st_.p90 = Quantile(us_, 0.9);
    st_.p99 = Quantile(us_, 0.99);
    st_.max = Quantile(us_, 1.0);
    return st_;
  }

 private:
  struct Running {
    Engine::NodeRef node;
    TaskShape shape;
    const std::string* group;
  };
  std::mt19937_64 rng_;
  Cluster c_;
  std::vector<Request> reqs_;
  std::vector<Running> running_;
  std::vector<double> us_;
  Stats st_;
};

// 1,000 placements into a fresh cluster of each size. The sizes take turns, 100
// placements at a time, so that a burst of noise from the rest of the machine
// falls on all of them alike.
std::vector<Stats> Measure(const char* label, const std::vector<int>& sizes, Mode mode, int services) {
  std::vector<std::unique_ptr<Run>> runs;
  for (int n : sizes) runs.push_back(std::make_unique<Run>(n, mode, services));
  for (int chunk = 0; chunk < 10; chunk++) {
    for (auto& r : runs) r->Step(100);
  }
  std::vector<Stats> out;
  for (size_t i = 0; i < runs.size(); i++) {
    Stats s = runs[i]->Result();
    printf(
        "%-8s nodes=%-6d fill_cpu=%.1f%% fill_mem=%.1f%% median_us=%.2f p90_us=%.2f p99_us=%.2f max_us=%.1f "
        "failed=%d\n",
        label, sizes[i], s.fill_cpu, s.fill_mem, s.median, s.p90, s.p99, s.max, s.failed);
    out.push_back(s);
  }
  fflush(stdout);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int services = 50;
  bool info = true;
  std::vector<int> sizes = {100, 1000, 10000};
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "--services=", 11)) {
      services = atoi(argv[i] + 11);
    } else if (!strncmp(argv[i], "--sizes=", 8)) {  // e.g. --sizes=10000 to profile one size
      sizes.clear();
      for (const char* p = argv[i] + 8; *p;) {
        sizes.push_back(atoi(p));
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
      }
    } else if (!strcmp(argv[i], "--no-info")) {
      info = false;
    } else {
      fprintf(stderr, "usage: %s [--services=N] [--sizes=N,N...] [--no-info]\n", argv[0]);
      return 2;
    }
  }
  for (int n : sizes) {
    if (n < 3) {
      fprintf(stderr, "sizes must be at least 3 nodes\n");
      return 2;
    }
  }
  if (services < 1 || services > kPrefillServices) {
    fprintf(stderr, "--services must be 1..%d\n", kPrefillServices);
    return 2;
  }
  printf("1000 placements per size, each Place(req, 1) timed alone; cluster pre-filled to 90%%\n");
  printf("spread(attribute:zone), spread(instanceId), memberOf zone-a/zone-b; %d services:\n", services);
  std::vector<Stats> main_run = Measure("spread", sizes, Mode::kSpread, services);

  if (info) {
    printf("information: binpack(memory) with the same memberOf, %d services:\n", services);
    Measure("binpack", sizes, Mode::kBinpack, services);
    printf("information: spread pair over %d services:\n", kPrefillServices);
    Measure("spread", sizes, Mode::kSpread, kPrefillServices);
  }

  double flatness = main_run.back().median / main_run.front().median;
  printf("flatness=%.2f placements_per_s=%.0f\n", flatness, 1e6 / main_run.back().median);
  return 0;
}
