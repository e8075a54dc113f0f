// The dashboard's live updates: GET /v1/stream?cluster= is a server-sent event
// stream that says what kinds of things changed, never what they are now (the
// dashboard reads those through the API, paged). ChangeStreams watches the
// state (a StateObserver), gathers what changed for 250 ms, and sends each open
// stream one event naming the kinds that changed for its cluster:
//
//   id: <epoch>-<seq>
//   event: change
//   data: {"seq":N,"changed":["nodes","tasks",...],"tasks":N}
//
// The epoch is when this server started (ms), so a client that comes back with
// a Last-Event-ID of another server or an earlier run is told everything
// changed. An idle stream costs a socket and a few hundred bytes: there is one
// timer for the batching, armed only while changes wait, one for the keepalive
// comments of every stream, and one for the nearest end of a stream's session
// (or token), when that session expires.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

#include "base/clock.h"
#include "model/state.h"
#include "net/http_server.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net {
class Timer;
}
namespace berth::net::http {
class Router;
}

namespace berth::api {

struct Context;

// The kinds of things an event can name, as bits.
enum ChangeKind : uint32_t {
  kChangedNodes = 1,
  kChangedTasks = 2,
  kChangedServices = 4,
  kChangedTaskDefinitions = 8,
  kChangedRepositories = 16,
  kChangedClusters = 32,
  kChangedEverything = 63,
};

// The text of one change event (ending with its blank line).
std::string FormatChangeEvent(uint64_t epoch, uint64_t seq, uint32_t kinds, size_t tasks);
// Reads a Last-Event-ID ("<epoch>-<seq>", both decimal); false for anything else.
bool ParseEventId(std::string_view id, uint64_t* epoch, uint64_t* seq);

struct StreamLimits {
  size_t max_streams = 1000;      // on this server (429 above)
  size_t max_per_token = 32;      // per token or session (429 above)
  uint64_t batch_ms = 250;        // changes gathered this long into one event
  uint64_t keepalive_ms = 15000;  // a comment on every stream this often
  size_t max_buffered = 1 << 20;  // a stream whose client lets this much pile up is dropped
};

class ChangeStreams final : public model::StateObserver {
 public:
  ChangeStreams(uv_loop_t* loop, model::State* state, const Clock* clock, StreamLimits limits);
  ~ChangeStreams() override;
  ChangeStreams(const ChangeStreams&) = delete;
  ChangeStreams& operator=(const ChangeStreams&) = delete;

  // Serves GET /v1/stream for `cluster` (the caller checked it may read it):
  // answers 429 over the bounds, else starts the stream; `last_event_id` as the
  // client sent it ("" none).
  void Open(const net::http::ExchangePtr& ex, std::string cluster, std::string_view last_event_id);
  // Ends every stream (shutdown).
  void CloseAll();
  size_t count() const { return streams_.size(); }
  uint64_t epoch() const { return epoch_; }

  void OnNodeChanged(const model::Node& n) override { Note(n.cluster, kChangedNodes); }
  void OnNodeRemoved(const model::Node& n) override { Note(n.cluster, kChangedNodes); }
  void OnTaskAccounted(const model::Task&, const model::Node& n) override { Note(n.cluster, kChangedNodes); }
  void OnTaskReleased(const model::Task&, const model::Node& n) override { Note(n.cluster, kChangedNodes); }
  void OnTaskChanged(const model::Task& t) override;
  void OnTaskForgotten(const model::Task& t) override;
  void OnServiceChanged(const model::Service& s) override { Note(s.cluster, kChangedServices); }
  void OnServiceRemoved(const model::Service& s) override { Note(s.cluster, kChangedServices); }
  void OnTokenRemoved(const model::Token& t) override;
  void OnCommandApplied(const store::Command& cmd) override;
  void OnReloaded() override { Note("", kChangedEverything); }

 private:
  struct Stream {
    net::http::ExchangePtr ex;
    std::string cluster;
    std::string token;    // the token it was opened with
    std::string session;  // and the session, if a cookie
    int64_t expires_ms;   // when the session (or the token) expires, unix ms; 0 never
  };
  struct Pending {
    uint32_t kinds = 0;
    std::unordered_set<std::string> tasks;
  };
  // Something of `kinds` changed in `cluster` ("": for every stream).
  void Note(const std::string& cluster, uint32_t kinds);
  void Flush();
  void Keepalive();
  // Ends the streams whose session or token has expired, and arms expiry_ for
  // the nearest end of those left.
  void Expire();
  // Sends `text`, or drops a stream whose client does not read; false if dropped.
  bool Send(std::list<Stream>::iterator it, std::string_view text);
  void End(std::list<Stream>::iterator it);

  model::State* state_;
  const Clock* clock_;
  StreamLimits limits_;
  uint64_t epoch_;
  uint64_t seq_ = 0;
  std::list<Stream> streams_;
  uint32_t pending_all_ = 0;
  std::map<std::string, Pending> pending_;
  std::unique_ptr<net::Timer> batch_;
  bool batch_armed_ = false;
  std::unique_ptr<net::Timer> keepalive_;
  bool keepalive_on_ = false;
  std::unique_ptr<net::Timer> expiry_;
  int64_t expiry_at_ms_ = 0;  // when expiry_ fires, unix ms (0: not armed)
};

// GET /v1/stream (read roles, cluster scope).
void AddStreamRoutes(net::http::Router* router, Context* ctx);

}  // namespace berth::api
