#include "net/work.h"

#include <uv.h>

#include <cstdlib>
#include <memory>

namespace berth::net {

namespace {

struct Job {
  uv_work_t req{};
  std::function<void()> work;
  std::function<void()> done;
};

}  // namespace

void RunOffLoop(uv_loop_t* loop, std::function<void()> work, std::function<void()> done) {
  auto job = std::make_unique<Job>();
  job->work = std::move(work);
  job->done = std::move(done);
  job->req.data = job.get();
  int rc = uv_queue_work(
      loop, &job->req, [](uv_work_t* r) { static_cast<Job*>(r->data)->work(); },
      [](uv_work_t* r, int) {
        std::unique_ptr<Job> j(static_cast<Job*>(r->data));  // back from libuv
        j->done();
      });
  // uv_queue_work fails only for a null callback: a bug of ours.
  if (rc != 0) abort();
  (void)job.release();  // libuv holds it until the completion above
}

}  // namespace berth::net
