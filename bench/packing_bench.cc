// How well the engine's binpack packs, against offline First-Fit-Decreasing. Run
// by bench/packing.sh; see bench/README.md.
//
// Workload (per seed): a stream of 3,000 tasks, far more than fit, each of one of
// three kinds — 50% small (CPU 64-512 units, memory 128-1024 MiB), 35% medium
// (512-1536, 1024-3072), 15% large (1536-3072, 3072-6144); CPU and memory drawn
// independently and uniformly within the kind's ranges, in steps of 32 units and
// 64 MiB. Nodes: 100 empty nodes of 4096 CPU units and 8192 MiB.
//
// binpack: the engine places the stream in order, Place(task, 1) with
// binpack(memory) (or binpack(cpu)), until the first task it cannot place; the
// score is the number placed before that failure.
//
// FFD, offline: for a prefix of the stream, sort its tasks by size decreasing and
// put each into the first node (in a fixed node order) where it fits in both CPU
// and memory; the prefix "packs" if every task found a node. The score is the
// longest prefix length k such that prefixes 1..k all pack (the FFD counterpart of
// "placed before the first failure"). A task's size, for the sort, is its 2-D
// demand normalised by the node: cpu/4096 + memory/8192 (ties keep stream order).
//
// Prints, per seed, both binpack scores, the FFD score and the ratios; last line:
//   binpack_vs_ffd=<mean ratio over seeds and both fields> memory=<mean> cpu=<mean>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "sched/engine.h"

using berth::sched::Engine;
using berth::sched::NodeSpec;
using berth::sched::Request;
using berth::sched::Strategy;
using berth::sched::TaskShape;

namespace {

constexpr int64_t kNodeCpu = 4096;
constexpr int64_t kNodeMem = 8192;
constexpr int kNodes = 100;
constexpr int kTasks = 3000;

struct Task {
  int64_t cpu, mem;
};

std::vector<Task> Workload(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto in = [&](int64_t lo, int64_t hi, int64_t step) {
    return std::uniform_int_distribution<int64_t>(lo / step, hi / step)(rng) * step;
  };
  std::vector<Task> tasks;
  for (int i = 0; i < kTasks; i++) {
    int kind = std::uniform_int_distribution<int>(0, 99)(rng);
    if (kind < 50) {
      tasks.push_back({in(64, 512, 32), in(128, 1024, 64)});
    } else if (kind < 85) {
      tasks.push_back({in(512, 1536, 32), in(1024, 3072, 64)});
    } else {
      tasks.push_back({in(1536, 3072, 32), in(3072, 6144, 64)});
    }
  }
  return tasks;
}

// Tasks of the stream the engine placed with binpack on `field` before its first failure.
int Binpack(const std::vector<Task>& tasks, const char* field, double* cpu_use, double* mem_use) {
  Engine e(1);
  std::vector<Engine::NodeRef> nodes;
  for (int i = 0; i < kNodes; i++) {
    NodeSpec n;
    n.id = "n" + std::to_string(i);
    n.cpu = kNodeCpu;
    n.memory = kNodeMem;
    nodes.push_back(e.AddNode(n));
  }
  Request r;
  r.group = "service:packing";
  r.strategies.push_back(Strategy::Make("binpack", field).value());
  int placed = 0;
  for (const Task& t : tasks) {
    r.shape.cpu = t.cpu;
    r.shape.memory = t.mem;
    if (e.Place(r, 1).nodes.empty()) break;
    placed++;
  }
  int64_t cpu_free = 0, mem_free = 0;
  for (auto n : nodes) {
    cpu_free += e.FreeCpu(n);
    mem_free += e.FreeMemory(n);
  }
  *cpu_use = 100.0 - 100.0 * static_cast<double>(cpu_free) / (kNodeCpu * kNodes);
  *mem_use = 100.0 - 100.0 * static_cast<double>(mem_free) / (kNodeMem * kNodes);
  return placed;
}

// Whether First-Fit-Decreasing packs the first k tasks onto the empty nodes.
bool FfdPacks(const std::vector<Task>& tasks, int k, double* cpu_use, double* mem_use) {
  std::vector<int> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  auto size = [&](int i) {
    const Task& t = tasks[static_cast<size_t>(i)];
    return static_cast<double>(t.cpu) / kNodeCpu + static_cast<double>(t.mem) / kNodeMem;
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return size(a) > size(b); });
  std::vector<int64_t> cpu(kNodes, kNodeCpu), mem(kNodes, kNodeMem);
  for (int i : order) {
    const Task& t = tasks[static_cast<size_t>(i)];
    int n = 0;
    while (n < kNodes && (cpu[static_cast<size_t>(n)] < t.cpu || mem[static_cast<size_t>(n)] < t.mem)) n++;
    if (n == kNodes) return false;
    cpu[static_cast<size_t>(n)] -= t.cpu;
    mem[static_cast<size_t>(n)] -= t.mem;
  }
  *cpu_use =
      100.0 - 100.0 * static_cast<double>(std::accumulate(cpu.begin(), cpu.end(), int64_t{0})) / (kNodeCpu * kNodes);
  *mem_use =
      100.0 - 100.0 * static_cast<double>(std::accumulate(mem.begin(), mem.end(), int64_t{0})) / (kNodeMem * kNodes);
  return true;
}

// The longest k such that FFD packs every prefix 1..k.
int Ffd(const std::vector<Task>& tasks, double* cpu_use, double* mem_use) {
  int k = 0;
  double c = 0, m = 0;
  while (k < static_cast<int>(tasks.size()) && FfdPacks(tasks, k + 1, &c, &m)) {
    k++;
    *cpu_use = c;
    *mem_use = m;
  }
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  int seeds = argc > 1 ? atoi(argv[1]) : 10;
  if (seeds < 1) {
    fprintf(stderr, "usage: %s [seeds]\n", argv[0]);
    return 2;
  }
  printf("%d empty nodes of %ld CPU units / %ld MiB; %d-task streams; FFD size = cpu/%ld + memory/%ld\n", kNodes,
         static_cast<long>(kNodeCpu), static_cast<long>(kNodeMem), kTasks, static_cast<long>(kNodeCpu),
         static_cast<long>(kNodeMem));
  double sum_mem = 0, sum_cpu = 0;
  for (int s = 1; s <= seeds; s++) {
    std::vector<Task> tasks = Workload(static_cast<uint64_t>(s));
    double fc = 0, fm = 0, mc = 0, mm = 0, cc = 0, cm = 0;
    int ffd = Ffd(tasks, &fc, &fm);
    int by_mem = Binpack(tasks, "memory", &mc, &mm);
    int by_cpu = Binpack(tasks, "cpu", &cc, &cm);
    double rm = static_cast<double>(by_mem) / ffd, rc = static_cast<double>(by_cpu) / ffd;
    sum_mem += rm;
    sum_cpu += rc;
    printf(
        "seed=%d ffd=%d (cpu %.1f%% mem %.1f%%) binpack_memory=%d (cpu %.1f%% mem %.1f%%) ratio=%.3f "
        "binpack_cpu=%d (cpu %.1f%% mem %.1f%%) ratio=%.3f\n",
        s, ffd, fc, fm, by_mem, mc, mm, rm, by_cpu, cc, cm, rc);
  }
  printf("binpack_vs_ffd=%.3f memory=%.3f cpu=%.3f\n", (sum_mem + sum_cpu) / (2 * seeds), sum_mem / seeds,
         sum_cpu / seeds);
  return 0;
}
