#include "api/stream.h"

#include <algorithm>
#include <cstdlib>

#include "api/api.h"
#include "net/router.h"
#include "net/uv.h"

namespace berth::api {

namespace http = net::http;

namespace {

constexpr std::pair<uint32_t, const char*> kKindNames[] = {
    {kChangedNodes, "nodes"},
    {kChangedTasks, "tasks"},
    {kChangedServices, "services"},
    {kChangedTaskDefinitions, "taskdefinitions"},
    {kChangedRepositories, "repositories"},
    {kChangedClusters, "clusters"},
};

// The kinds a command of `type` changes that no other hook tells of.
uint32_t KindsOf(const model::State& state, std::string_view type) {
  if (type == "CreateCluster" || type == "DeleteCluster" || type == "UpdateCluster") return kChangedClusters;
  if (type == "RegisterTaskDefinition" || type == "DeregisterTaskDefinition" || type == "ForgetTaskDefinitions") {
    return kChangedTaskDefinitions;
  }
  if (state.PartOwns(type)) return kChangedRepositories;  // the registry's commands
  return 0;
}

}  // namespace

std::string FormatChangeEvent(uint64_t epoch, uint64_t seq, uint32_t kinds, size_t tasks) {
  std::string out = "id: " + std::to_string(epoch) + "-" + std::to_string(seq) + "\nevent: change\ndata: {\"seq\":";
  out += std::to_string(seq) + ",\"changed\":[";
  bool first = true;
  for (const auto& [bit, name] : kKindNames) {
    if (!(kinds & bit)) continue;
    if (!first) out += ",";
    out += "\"";
    out += name;
    out += "\"";
    first = false;
  }
  out += "],\"tasks\":" + std::to_string(tasks) + "}\n\n";
  return out;
}

bool ParseEventId(std::string_view id, uint64_t* epoch, uint64_t* seq) {
  size_t dash = id.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 >= id.size()) return false;
  auto number = [](std::string_view s, uint64_t* out) {
    if (s.size() > 19) return false;
    uint64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    *out = v;
    return true;
  };
  return number(id.substr(0, dash), epoch) && number(id.substr(dash + 1), seq);
}

ChangeStreams::ChangeStreams(uv_loop_t* loop, model::State* state, const Clock* clock, StreamLimits limits)
    : state_(state),
      clock_(clock),
      limits_(limits),
      epoch_(static_cast<uint64_t>(clock->NowUnixMs())),
      batch_(std::make_unique<net::Timer>(loop)),
      keepalive_(std::make_unique<net::Timer>(loop)),
      expiry_(std::make_unique<net::Timer>(loop)) {
  state_->AddObserver(this);
}

ChangeStreams::~ChangeStreams() = default;

void ChangeStreams::Open(const http::ExchangePtr& ex, std::string cluster, std::string_view last_event_id) {
  size_t mine = 0;
  for (const Stream& s : streams_) {
    if (ex->session.empty() ? s.token == ex->principal && s.session.empty() : s.session == ex->session) mine++;
  }
  if (streams_.size() >= limits_.max_streams || mine >= limits_.max_per_token) {
    http::Response r = http::ErrorResponse(
        429, "TooManyStreams",
        streams_.size() >= limits_.max_streams
            ? "this server has " + std::to_string(streams_.size()) + " change streams open, its most; try another"
            : (ex->session.empty() ? "token " + ex->principal : "this session") + " has " + std::to_string(mine) +
                  " change streams open, its most; close one (a tab of the dashboard) first");
    r.headers.push_back({"Retry-After", "5"});
    return ex->Respond(std::move(r));
  }
  http::Headers headers = {{"Cache-Control", "no-store"}, {"X-Accel-Buffering", "no"}};
  if (ex->request().method == "HEAD") {
    http::Response r;
    r.content_type = "text/event-stream";
    r.headers = headers;
    return ex->Respond(std::move(r));
  }
  // A session's expiry is never past its token's (api/session.cc); neither
  // changes once made, so the stream's end is known now.
  const model::Token* holder = state_->FindToken(ex->session.empty() ? ex->principal : ex->session);
  int64_t expires = holder ? holder->expires_ms : 0;
  ex->Begin(200, headers, -1, "text/event-stream");
  streams_.push_back(Stream{ex, std::move(cluster), ex->principal, ex->session, expires});
  auto it = std::prev(streams_.end());
  ex->on_abort = [this, it] { streams_.erase(it); };
  if (expires && (!expiry_at_ms_ || expires < expiry_at_ms_)) {
    expiry_at_ms_ = expires;
    expiry_->Start(static_cast<uint64_t>(std::max<int64_t>(0, expires - clock_->NowUnixMs())), 0, [this] { Expire(); });
  }
  std::string first = "retry: 2000\n\n";
  // A client that saw events of another run, or missed some, is told every kind
  // changed; one that is up to date waits for the next change.
  uint64_t epoch = 0, seq = 0;
  if (!last_event_id.empty() && (!ParseEventId(last_event_id, &epoch, &seq) || epoch != epoch_ || seq < seq_)) {
    first += FormatChangeEvent(epoch_, seq_, kChangedEverything, 0);
  }
  if (!Send(it, first)) return;
  if (!keepalive_on_) {
    keepalive_on_ = true;
    keepalive_->Start(limits_.keepalive_ms, limits_.keepalive_ms, [this] { Keepalive(); });
  }
}

void ChangeStreams::CloseAll() {
  while (!streams_.empty()) End(streams_.begin());
  keepalive_->Stop();
  keepalive_on_ = false;
  batch_->Stop();
  batch_armed_ = false;
  expiry_->Stop();
  expiry_at_ms_ = 0;
}

void ChangeStreams::OnTaskChanged(const model::Task& t) {
  Note(t.cluster, kChangedTasks);
  if (!streams_.empty()) pending_[t.cluster].tasks.insert(t.id);
}

void ChangeStreams::OnTaskForgotten(const model::Task& t) {
  Note(t.cluster, kChangedTasks);
  if (!streams_.empty()) pending_[t.cluster].tasks.insert(t.id);
}

void ChangeStreams::OnTokenRemoved(const model::Token& t) {
  // Logout, or the token revoked: what it opened closes with it.
  for (auto it = streams_.begin(); it != streams_.end();) {
    auto next = std::next(it);
    if (it->token == t.id || it->session == t.id) End(it);
    it = next;
  }
}

void ChangeStreams::OnCommandApplied(const store::Command& cmd) {
  if (uint32_t kinds = KindsOf(*state_, cmd.Type())) Note("", kinds);
}

void ChangeStreams::Note(const std::string& cluster, uint32_t kinds) {
  // Nobody listens: nothing to gather (a stream that opens later starts afresh).
  if (streams_.empty()) return;
  if (cluster.empty()) {
    pending_all_ |= kinds;
  } else {
    pending_[cluster].kinds |= kinds;
  }
  if (!batch_armed_) {
    batch_armed_ = true;
    batch_->Start(limits_.batch_ms, 0, [this] { Flush(); });
  }
}

void ChangeStreams::Flush() {
  batch_armed_ = false;
  seq_++;
  for (auto it = streams_.begin(); it != streams_.end();) {
    auto next = std::next(it);
    uint32_t kinds = pending_all_;
    size_t tasks = 0;
    if (auto p = pending_.find(it->cluster); p != pending_.end()) {
      kinds |= p->second.kinds;
      tasks = p->second.tasks.size();
    }
    if (kinds) Send(it, FormatChangeEvent(epoch_, seq_, kinds, tasks));
    it = next;
  }
  pending_all_ = 0;
  pending_.clear();
}

void ChangeStreams::Keepalive() {
  for (auto it = streams_.begin(); it != streams_.end();) {
    auto next = std::next(it);
    Send(it, ": keepalive\n\n");
    it = next;
  }
  if (streams_.empty()) {
    keepalive_->Stop();
    keepalive_on_ = false;
  }
}

void ChangeStreams::Expire() {
  int64_t now = clock_->NowUnixMs();
  int64_t nearest = 0;
  for (auto it = streams_.begin(); it != streams_.end();) {
    auto next = std::next(it);
    if (it->expires_ms && it->expires_ms <= now) {
      End(it);  // the session (or token) expired: its stream goes with it
    } else if (it->expires_ms && (!nearest || it->expires_ms < nearest)) {
      nearest = it->expires_ms;
    }
    it = next;
  }
  expiry_at_ms_ = nearest;
  if (nearest) expiry_->Start(static_cast<uint64_t>(nearest - now), 0, [this] { Expire(); });
}

bool ChangeStreams::Send(std::list<Stream>::iterator it, std::string_view text) {
  if (it->ex->PendingWriteBytes() > limits_.max_buffered) {
    // Its client stopped reading: end the answer (the server's write timeout
    // closes the connection if the bytes never go).
    End(it);
    return false;
  }
  it->ex->Write(text);
  return true;
}

void ChangeStreams::End(std::list<Stream>::iterator it) {
  http::ExchangePtr ex = std::move(it->ex);
  streams_.erase(it);
  ex->on_abort = nullptr;
  ex->End();
}

void AddStreamRoutes(http::Router* router, Context* ctx) {
  http::RouteOptions read;
  read.access = http::Access::kRead;
  read.scope = http::Scope::kCluster;
  read.audit = false;
  router->Add(
      "GET", "/v1/stream",
      [ctx](const http::ExchangePtr& ex) {
        const http::Request& req = ex->request();
        std::optional<std::string> cluster = req.Query("cluster");
        if (!cluster || cluster->empty()) {
          return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "cluster: the stream is of one cluster"));
        }
        if (!ctx->state->FindCluster(*cluster)) {
          return ex->Respond(http::ErrorResponse(404, "ClusterNotFound", "cluster " + *cluster + " does not exist"));
        }
        if (!ClusterInScope(*ctx->state, ex, *cluster)) return;
        if (!ctx->streams) {
          return ex->Respond(http::ErrorResponse(503, "Unavailable", "this server keeps no change streams"));
        }
        std::string last(req.Header("last-event-id"));
        if (last.empty()) last = req.Query("lastEventId").value_or("");
        ctx->streams->Open(ex, std::move(*cluster), last);
      },
      read);
}

}  // namespace berth::api
