// The change stream (api/stream.h): its wire format, and ChangeStreams' batching
// and bounds over a real HTTP server.
#include "api/stream.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "model/task.h"
#include "net/router.h"
#include "net/socket.h"
#include "support/test_loop.h"

using namespace berth;

TEST_CASE("stream: an event names the kinds that changed, in one order", "[api]") {
  CHECK(api::FormatChangeEvent(17, 3, api::kChangedTasks | api::kChangedNodes, 2) ==
        "id: 17-3\nevent: change\ndata: {\"seq\":3,\"changed\":[\"nodes\",\"tasks\"],\"tasks\":2}\n\n");
  CHECK(api::FormatChangeEvent(1, 0, api::kChangedEverything, 0) ==
        "id: 1-0\nevent: change\ndata: {\"seq\":0,\"changed\":[\"nodes\",\"tasks\",\"services\",\"taskdefinitions\","
        "\"repositories\",\"clusters\"],\"tasks\":0}\n\n");
}

TEST_CASE("stream: Last-Event-ID is <epoch>-<seq>, nothing else", "[api]") {
  uint64_t epoch = 0, seq = 0;
  REQUIRE(api::ParseEventId("1765000000000-42", &epoch, &seq));
  CHECK(epoch == 1765000000000u);
  CHECK(seq == 42);
  for (const char* bad : {"", "-", "1-", "-1", "1-x", "x-1", "1-2-3", "1 -2", "123456789012345678901-1"}) {
    CHECK_FALSE(api::ParseEventId(bad, &epoch, &seq));
  }
}

// --- ChangeStreams over a real HTTP server ---

namespace {

namespace http = net::http;
using berth::testing::RawConn;
using berth::testing::TestLoop;

// ChangeStreams behind GET /s (cluster c1, no gate) on 127.0.0.1:0. The route
// also keeps each exchange, so a test can fill its output as a client that
// stopped reading would find it.
struct StreamFixture {
  TestLoop loop;
  metrics::Registry metrics;
  model::State state;
  ManualClock clock;
  http::Router router;
  std::unique_ptr<api::ChangeStreams> streams;
  std::unique_ptr<http::Server> server;
  std::unique_ptr<net::Listener> listener;
  std::vector<http::ExchangePtr> opened;

  explicit StreamFixture(api::StreamLimits limits) {
    streams = std::make_unique<api::ChangeStreams>(loop.get(), &state, &clock, limits);
    router.Add("GET", "/s", [this](const http::ExchangePtr& ex) {
      opened.push_back(ex);
      streams->Open(ex, "c1", "");
    });
    server = std::make_unique<http::Server>(loop.get(), &router, http::ServerLimits{}, &metrics);
    auto l = net::Listener::Open(loop.get(), net::Endpoint::Parse("127.0.0.1:0").value(),
                                 [this](std::unique_ptr<net::Stream> s) { server->Serve(std::move(s)); });
    REQUIRE(l.ok());
    listener = std::move(l.value());
  }
  ~StreamFixture() {
    streams->CloseAll();
    opened.clear();
    server.reset();
    listener.reset();
    streams.reset();
  }

  // A client with its stream open (its first bytes, "retry: 2000", received).
  std::unique_ptr<RawConn> Open() {
    auto c = std::make_unique<RawConn>(&loop, listener->endpoint());
    c->Send("GET /s HTTP/1.1\r\nHost: t\r\n\r\n");
    RawConn* raw = c.get();
    REQUIRE(loop.RunUntil([raw] { return raw->received().find("retry: 2000") != std::string::npos; }));
    return c;
  }

  // A task of cluster c1 changed (as the state tells its observers).
  void TaskChanged(const std::string& id) {
    model::Task t;
    t.id = id;
    t.cluster = "c1";
    streams->OnTaskChanged(t);
  }
};

size_t Count(const std::string& text, std::string_view what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) n++;
  return n;
}

}  // namespace

TEST_CASE("stream: many changes inside one batch window leave as one event", "[api][stream]") {
  StreamFixture f{api::StreamLimits{}};
  std::unique_ptr<RawConn> c = f.Open();
  // All within one turn of the loop, so surely within one 250 ms window.
  for (int i = 0; i < 50; i++) f.TaskChanged("t" + std::to_string(i));
  f.TaskChanged("t0");
  REQUIRE(f.loop.RunUntil([&] { return Count(c->received(), "event: change") >= 1; }));
  // One more change makes a second event; the first window's changes gave one.
  f.TaskChanged("later");
  REQUIRE(f.loop.RunUntil([&] { return Count(c->received(), "event: change") >= 2; }));
  CHECK(Count(c->received(), "event: change") == 2);
  CHECK(Count(c->received(), "\"changed\":[\"tasks\"],\"tasks\":50}") == 1);
  CHECK(Count(c->received(), "\"changed\":[\"tasks\"],\"tasks\":1}") == 1);
}

TEST_CASE("stream: a client more than max_buffered behind is dropped at the next event", "[api][stream]") {
  api::StreamLimits limits;
  limits.batch_ms = 1;
  StreamFixture f{limits};
  std::unique_ptr<RawConn> slow = f.Open();
  std::unique_ptr<RawConn> fast = f.Open();
  REQUIRE(f.streams->count() == 2);
  REQUIRE(f.opened.size() == 2);
  // The slow client stops reading while 32 MiB are on their way to it: the
  // socket's buffers take some, the rest waits with the server.
  slow->PauseReading();
  f.opened[0]->Write(std::string(32 << 20, ':'));
  f.loop.Spin(16);
  REQUIRE(f.opened[0]->PendingWriteBytes() > limits.max_buffered);

  f.TaskChanged("t1");
  REQUIRE(f.loop.RunUntil([&] { return Count(fast->received(), "event: change") == 1; }));
  CHECK(f.streams->count() == 1);
  // The fast one still hears of changes; the slow one's answer ends once it
  // reads again (the end of its chunked body after what was queued).
  f.TaskChanged("t2");
  REQUIRE(f.loop.RunUntil([&] { return Count(fast->received(), "event: change") == 2; }));
  slow->ResumeReading();
  REQUIRE(f.loop.RunUntil([&] { return slow->received().ends_with("0\r\n\r\n"); }));
  CHECK(Count(slow->received(), "event: change") == 0);
}
