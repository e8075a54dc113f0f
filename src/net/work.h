// Blocking work off the event loop: runs a function on libuv's thread pool and
// then a completion on the loop thread. For file syncs that would otherwise stall
// every connection (the registry's fsync and rename of a finished blob).
#pragma once

#include <functional>

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net {

// Runs `work` on a pool thread, then `done` on the loop thread. `work` must touch
// nothing the loop thread uses meanwhile; `done` does not run if the loop is
// never run again (the process is ending).
void RunOffLoop(uv_loop_t* loop, std::function<void()> work, std::function<void()> done);

}  // namespace berth::net
