// CapacityTree: the set of nodes a placement may choose from, ordered by one free
// resource (the primary) and augmented with the maximum of the other (the
// secondary) over every subtree. It answers "the node with the least primary
// resource that still has at least p of it and at least s of the secondary" in
// O(log n), which is what makes a placement cost independent of cluster size.
//
// A treap with its nodes in one vector (indices, no pointers); keys are
// (primary free, node index), so every key is distinct.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace berth::sched {

class CapacityTree {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  void Insert(uint32_t node, int64_t primary, int64_t secondary);
  // Removes `node`, which must be in the tree with this primary value.
  void Erase(uint32_t node, int64_t primary);
  bool empty() const { return root_ == kNone; }
  size_t size() const { return size_; }

  // The node with the smallest key whose primary is >= min_primary and whose
  // secondary is >= min_secondary; kNone if there is none.
  uint32_t FirstFit(int64_t min_primary, int64_t min_secondary) const {
    return FirstFitAfter(min_primary, min_secondary, INT64_MIN, kNone);
  }
  // The same, among keys after (after_primary, after_node): continues a scan past a
  // node rejected for another reason, or starts one at a random point.
  uint32_t FirstFitAfter(int64_t min_primary, int64_t min_secondary, int64_t after_primary, uint32_t after_node) const;
  // How many nodes have a primary >= min_primary: they are the last ones in key
  // order. O(log n).
  size_t CountFrom(int64_t min_primary) const;
  // The node at `rank` (0-based) in key order; rank < size(). O(log n). With
  // CountFrom, a uniform draw among the nodes with enough of the primary.
  uint32_t Select(size_t rank) const;
  // Calls `fn(node)` for every node in key order (tests and diagnostics).
  template <class Fn>
  void ForEach(Fn fn) const {
    Walk(root_, fn);
  }

 private:
  struct Item {
    int64_t primary;
    int64_t secondary;
    int64_t max_secondary;  // over the subtree
    uint32_t node;
    uint32_t prio;
    uint32_t count;  // items in the subtree
    uint32_t left = kNone, right = kNone;
  };

  template <class Fn>
  void Walk(uint32_t t, Fn& fn) const {
    if (t == kNone) return;
    Walk(items_[t].left, fn);
    fn(items_[t].node);
    Walk(items_[t].right, fn);
  }

  static bool Less(int64_t p1, uint32_t n1, int64_t p2, uint32_t n2) { return p1 < p2 || (p1 == p2 && n1 < n2); }
  void Pull(uint32_t t);
  // Splits t into keys < (p, n) and keys >= (p, n).
  void Split(uint32_t t, int64_t p, uint32_t n, uint32_t* l, uint32_t* r);
  uint32_t Merge(uint32_t a, uint32_t b);
  uint32_t Find(uint32_t t, int64_t min_p, uint32_t min_n, int64_t min_s) const;
  uint32_t Alloc(uint32_t node, int64_t primary, int64_t secondary);

  std::vector<Item> items_;
  std::vector<uint32_t> free_;
  uint32_t root_ = kNone;
  size_t size_ = 0;
  uint32_t seed_ = 2463534242u;
};

}  // namespace berth::sched
