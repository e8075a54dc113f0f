#include "sched/capacity_tree.h"

#include <algorithm>

namespace berth::sched {

uint32_t CapacityTree::Alloc(uint32_t node, int64_t primary, int64_t secondary) {
  // xorshift32: priorities only need to look random to keep the treap balanced.
  seed_ ^= seed_ << 13;
  seed_ ^= seed_ >> 17;
  seed_ ^= seed_ << 5;
  Item it{primary, secondary, secondary, node, seed_, 1};
  if (!free_.empty()) {
    uint32_t i = free_.back();
    free_.pop_back();
    items_[i] = it;
    return i;
  }
  items_.push_back(it);
  return static_cast<uint32_t>(items_.size() - 1);
}

void CapacityTree::Pull(uint32_t t) {
  Item& x = items_[t];
  x.max_secondary = x.secondary;
  x.count = 1;
  if (x.left != kNone) {
    x.max_secondary = std::max(x.max_secondary, items_[x.left].max_secondary);
    x.count += items_[x.left].count;
  }
  if (x.right != kNone) {
    x.max_secondary = std::max(x.max_secondary, items_[x.right].max_secondary);
    x.count += items_[x.right].count;
  }
}

size_t CapacityTree::CountFrom(int64_t min_primary) const {
  size_t n = 0;
  for (uint32_t t = root_; t != kNone;) {
    const Item& x = items_[t];
    if (x.primary >= min_primary) {
      n += 1 + (x.right != kNone ? items_[x.right].count : 0);
      t = x.left;
    } else {
      t = x.right;
    }
  }
  return n;
}

uint32_t CapacityTree::Select(size_t rank) const {
  for (uint32_t t = root_; t != kNone;) {
    const Item& x = items_[t];
    size_t left = x.left != kNone ? items_[x.left].count : 0;
    if (rank < left) {
      t = x.left;
    } else if (rank == left) {
      return x.node;
    } else {
      rank -= left + 1;
      t = x.right;
    }
  }
  return kNone;
}

void CapacityTree::Split(uint32_t t, int64_t p, uint32_t n, uint32_t* l, uint32_t* r) {
  if (t == kNone) {
    *l = *r = kNone;
    return;
  }
  Item& x = items_[t];
  if (Less(x.primary, x.node, p, n)) {
    uint32_t rl, rr;
    Split(x.right, p, n, &rl, &rr);
    items_[t].right = rl;
    Pull(t);
    *l = t;
    *r = rr;
  } else {
    uint32_t ll, lr;
    Split(x.left, p, n, &ll, &lr);
    items_[t].left = lr;
    Pull(t);
    *l = ll;
    *r = t;
  }
}

uint32_t CapacityTree::Merge(uint32_t a, uint32_t b) {
  if (a == kNone) return b;
  if (b == kNone) return a;
  if (items_[a].prio > items_[b].prio) {
    items_[a].right = Merge(items_[a].right, b);
    Pull(a);
    return a;
  }
  items_[b].left = Merge(a, items_[b].left);
  Pull(b);
  return b;
}

void CapacityTree::Insert(uint32_t node, int64_t primary, int64_t secondary) {
  uint32_t item = Alloc(node, primary, secondary);
  uint32_t l, r;
  Split(root_, primary, node, &l, &r);
  root_ = Merge(Merge(l, item), r);
  size_++;
}

void CapacityTree::Erase(uint32_t node, int64_t primary) {
  uint32_t l, mid, r;
  Split(root_, primary, node, &l, &r);
  // r starts with (primary, node) if present: split it off.
  Split(r, primary, node + 1, &mid, &r);
  if (mid != kNone) {
    free_.push_back(mid);
    size_--;
  }
  root_ = Merge(l, r);
}

// Leftmost item in subtree t with key >= (min_p, min_n) and secondary >= min_s.
uint32_t CapacityTree::Find(uint32_t t, int64_t min_p, uint32_t min_n, int64_t min_s) const {
  while (t != kNone) {
    const Item& x = items_[t];
    if (x.max_secondary < min_s) return kNone;
    if (Less(x.primary, x.node, min_p, min_n)) {
      t = x.right;  // everything left of here is too small as well
      continue;
    }
    // x qualifies on the key: the answer is in the left subtree, x, or the right.
    uint32_t left = Find(x.left, min_p, min_n, min_s);
    if (left != kNone) return left;
    if (x.secondary >= min_s) return t;
    t = x.right;
  }
  return kNone;
}

uint32_t CapacityTree::FirstFitAfter(int64_t min_primary, int64_t min_secondary, int64_t after_primary,
                                     uint32_t after_node) const {
  int64_t p = min_primary;
  uint32_t n = 0;
  if (after_node != kNone && !Less(after_primary, after_node, min_primary, 0)) {
    p = after_primary;
    n = after_node + 1;  // node indices never reach kNone, so this cannot wrap
  }
  uint32_t t = Find(root_, p, n, min_secondary);
  return t == kNone ? kNone : items_[t].node;
}

}  // namespace berth::sched
