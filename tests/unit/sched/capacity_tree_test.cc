// sched/capacity_tree: the treap of candidate nodes ordered by one free resource,
// checked against a brute-force model (a sorted set) over many random operations.
#include "sched/capacity_tree.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <utility>

using berth::sched::CapacityTree;

namespace {

// The model: keys (primary, node) in order, and each node's secondary.
struct Model {
  std::set<std::pair<int64_t, uint32_t>> keys;
  std::map<uint32_t, std::pair<int64_t, int64_t>> values;  // node → (primary, secondary)

  uint32_t FirstFitAfter(int64_t min_p, int64_t min_s, int64_t after_p, uint32_t after_n) const {
    for (const auto& [p, n] : keys) {
      if (p < min_p || values.at(n).second < min_s) continue;
      if (after_n != CapacityTree::kNone && std::make_pair(p, n) <= std::make_pair(after_p, after_n)) continue;
      return n;
    }
    return CapacityTree::kNone;
  }
};

std::vector<uint32_t> InOrder(const CapacityTree& t) {
  std::vector<uint32_t> v;
  t.ForEach([&](uint32_t n) { v.push_back(n); });
  return v;
}

}  // namespace

TEST_CASE("capacity_tree: a small hand-made case", "[sched][capacity_tree]") {
  CapacityTree t;
  CHECK(t.empty());
  CHECK(t.FirstFit(0, 0) == CapacityTree::kNone);
  // node: (free memory, free cpu)
  t.Insert(0, 1000, 100);
  t.Insert(1, 500, 800);
  t.Insert(2, 500, 50);
  t.Insert(3, 2000, 10);
  CHECK(t.size() == 4);
  CHECK(InOrder(t) == std::vector<uint32_t>{1, 2, 0, 3});
  CHECK(t.FirstFit(0, 0) == 1);
  CHECK(t.FirstFit(501, 0) == 0);
  CHECK(t.FirstFit(400, 90) == 1);
  CHECK(t.FirstFit(400, 900) == CapacityTree::kNone);
  CHECK(t.FirstFit(600, 101) == CapacityTree::kNone);
  CHECK(t.FirstFit(600, 100) == 0);
  // Continuing a scan past a node that was rejected for another reason.
  CHECK(t.FirstFitAfter(0, 0, 500, 1) == 2);
  CHECK(t.FirstFitAfter(0, 0, 500, 2) == 0);
  CHECK(t.FirstFitAfter(0, 60, 500, 1) == 0);
  CHECK(t.FirstFitAfter(0, 0, 2000, 3) == CapacityTree::kNone);
  // A start below min_primary does not lower it.
  CHECK(t.FirstFitAfter(1000, 0, 10, 7) == 0);
  t.Erase(1, 500);
  CHECK(t.size() == 3);
  CHECK(t.FirstFit(400, 90) == 0);
  t.Erase(0, 1000);
  t.Erase(2, 500);
  t.Erase(3, 2000);
  CHECK(t.empty());
  CHECK(t.FirstFit(INT64_MIN, INT64_MIN) == CapacityTree::kNone);
}

TEST_CASE("capacity_tree: random operations agree with a brute-force model", "[sched][capacity_tree]") {
  for (uint64_t seed : {1u, 2u, 3u, 42u}) {
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    CapacityTree tree;
    Model model;
    // Small value ranges so that equal primaries (ties broken by node) are common.
    const int64_t range = seed == 3 ? 8 : 64;
    auto value = [&] { return std::uniform_int_distribution<int64_t>(-2, range)(rng); };
    auto node = [&] { return std::uniform_int_distribution<uint32_t>(0, 299)(rng); };
    int queries = 0, found = 0;
    for (int op = 0; op < 20000; op++) {
      int what = std::uniform_int_distribution<int>(0, 9)(rng);
      uint32_t n = node();
      bool present = model.values.count(n) > 0;
      if (what <= 2 && !present) {
        int64_t p = value(), s = value();
        tree.Insert(n, p, s);
        model.keys.insert({p, n});
        model.values[n] = {p, s};
      } else if (what <= 4 && present) {
        // Erase, and half the time put it back with new values (a task came or went).
        auto [p, s] = model.values[n];
        tree.Erase(n, p);
        model.keys.erase({p, n});
        model.values.erase(n);
        if (what == 4) {
          p = value();
          s = value();
          tree.Insert(n, p, s);
          model.keys.insert({p, n});
          model.values[n] = {p, s};
        }
      } else {
        int64_t min_p = value(), min_s = value();
        uint32_t after_n = CapacityTree::kNone;
        int64_t after_p = 0;
        if (what >= 8) {
          // Start after an existing key (as the engine does) or after an arbitrary one.
          if (present && what == 8) {
            after_p = model.values[n].first;
          } else {
            after_p = value();
          }
          after_n = n;
        }
        uint32_t want = model.FirstFitAfter(min_p, min_s, after_p, after_n);
        uint32_t got = after_n == CapacityTree::kNone ? tree.FirstFit(min_p, min_s)
                                                      : tree.FirstFitAfter(min_p, min_s, after_p, after_n);
        INFO("op " << op << ": min " << min_p << "/" << min_s << " after " << after_p << "," << after_n);
        REQUIRE(got == want);
        queries++;
        found += want != CapacityTree::kNone;
        // Counting from a primary value, and selecting by rank, agree with the model's order.
        size_t from = 0;
        for (const auto& [p, m] : model.keys) from += p >= min_p;
        REQUIRE(tree.CountFrom(min_p) == from);
        if (!model.keys.empty()) {
          size_t rank = std::uniform_int_distribution<size_t>(0, model.keys.size() - 1)(rng);
          REQUIRE(tree.Select(rank) == std::next(model.keys.begin(), static_cast<std::ptrdiff_t>(rank))->second);
        }
      }
      REQUIRE(tree.size() == model.values.size());
      REQUIRE(tree.empty() == model.values.empty());
      if (op % 1000 == 0) {
        std::vector<uint32_t> order;
        for (const auto& [p, m] : model.keys) order.push_back(m);
        REQUIRE(InOrder(tree) == order);
      }
    }
    // The walk exercised both answers.
    CHECK(queries > 5000);
    CHECK(found > queries / 10);
    CHECK(found < queries);
  }
}

TEST_CASE("capacity_tree: many nodes with one value, drained and refilled", "[sched][capacity_tree]") {
  CapacityTree t;
  for (uint32_t n = 0; n < 5000; n++) t.Insert(n, 100, n % 7);
  CHECK(t.FirstFit(100, 6) == 6);
  CHECK(t.FirstFitAfter(100, 6, 100, 6) == 13);
  CHECK(t.FirstFit(101, 0) == CapacityTree::kNone);
  for (uint32_t n = 0; n < 5000; n += 2) t.Erase(n, 100);
  CHECK(t.size() == 2500);
  CHECK(t.FirstFit(0, 6) == 13);
  for (uint32_t n = 0; n < 5000; n += 2) t.Insert(n, 50, 1000);
  CHECK(t.FirstFit(0, 7) == 0);
  CHECK(t.FirstFitAfter(0, 7, 50, 4998) == CapacityTree::kNone);
  CHECK(t.FirstFitAfter(0, 6, 50, 4998) == 13);
}
