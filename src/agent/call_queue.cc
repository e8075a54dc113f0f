#include "agent/call_queue.h"

#include <memory>
#include <utility>

namespace berth::agent {

void CallQueue::Push(Lane lane, Call call, std::function<bool()> wanted, std::function<void()> dropped) {
  lanes_[static_cast<size_t>(lane)].push_back(Item{std::move(call), std::move(wanted), std::move(dropped)});
  Pump();
}

size_t CallQueue::waiting() const {
  size_t n = 0;
  for (const auto& lane : lanes_) n += lane.size();
  return n;
}

// Issues waiting calls while there are free slots. A call that finishes at once
// (or a `dropped` that queues more) comes back here: the loop below carries on
// instead of recursing.
void CallQueue::Pump() {
  if (pumping_) return;
  pumping_ = true;
  while (in_flight_ < limit_) {
    std::deque<Item>* lane = nullptr;
    for (auto& l : lanes_) {
      if (!l.empty()) {
        lane = &l;
        break;
      }
    }
    if (!lane) break;
    Item item = std::move(lane->front());
    lane->pop_front();
    if (item.wanted && !item.wanted()) {
      dropped_++;
      if (item.dropped) item.dropped();
      continue;
    }
    in_flight_++;
    if (in_flight_ > peak_) peak_ = in_flight_;
    auto once = std::make_shared<bool>(false);
    item.call([this, once] {
      if (*once) return;  // a second call of `finished` is our bug; it must not free a slot twice
      *once = true;
      in_flight_--;
      Pump();
    });
  }
  pumping_ = false;
}

}  // namespace berth::agent
