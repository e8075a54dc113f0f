#include "replica/replica.h"

#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <unordered_map>

#include "base/log.h"
#include "net/socket.h"
#include "net/splice.h"
#include "net/tls.h"
#include "net/uv.h"

extern "C" {
#include <raft/uv.h>
}

namespace berth::replica {

namespace {

// A snapshot is this mark, the index it was taken at, then state.db's bytes.
constexpr char kSnapshotMark[8] = {'B', 'S', 'N', 'A', 'P', '0', '0', '1'};
constexpr size_t kSnapshotHeader = 16;

double Seconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void PutU64(char* out, uint64_t v) {
  for (int i = 0; i < 8; i++) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

// What a failed proposal tells its callers. The log's own failures to store are
// storage errors (the store says "could not be stored" and answers 507 or 500).
Error ProposalError(int status, const char* detail) {
  std::string why = std::string(raft_strerror(status)) + (detail && *detail ? std::string(": ") + detail : "");
  switch (status) {
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
      return Error{ErrorKind::kUnavailable, "NotLeader",
                   "this server is not the cluster's leader (" + why + "); the change was not made"};
    case RAFT_SHUTDOWN:
      return Error{ErrorKind::kUnavailable, "ServerUnavailable",
                   "the server is shutting down; the change was not made"};
    case RAFT_NOSPACE:
      return Error{ErrorKind::kInsufficientStorage, "StorageFull", "the raft log's disk is full (" + why + ")"};
    default: return Error{ErrorKind::kInternal, "StorageLog", "the raft log refused the entry (" + why + ")"};
  }
}

// A proposal the log took, failed before it was applied here: the entry may
// still be committed by the next leader, so the change may or may not be made.
Error Undetermined(int status) {
  bool stopping = status == RAFT_SHUTDOWN;
  return Error{ErrorKind::kUnavailable, stopping ? "ServerUnavailable" : "LeadershipLost",
               std::string(stopping ? "the server stopped" : "this server lost the cluster's leadership") +
                   " before the change was applied (" + raft_strerror(status) +
                   "); the next leader may still make it: check before repeating it"};
}

// Entries a follower defers at most before it applies them anyway.
constexpr size_t kMaxDeferred = 64;

}  // namespace

// ---------------------------------------------------------------- the state machine

Fsm::Fsm(store::Store* store) : store_(store) {
  fsm_.version = 1;
  fsm_.data = this;
  fsm_.apply = &Fsm::Apply;
  fsm_.snapshot = &Fsm::Snapshot;
  fsm_.restore = &Fsm::Restore;
}

int Fsm::Apply(raft_fsm* fsm, const raft_buffer* buf, void** result) {
  auto* self = static_cast<Fsm*>(fsm->data);
  // libraft applies entries in order and counts one applied after this returns.
  uint64_t index = raft_last_applied(self->raft_) + 1;
  if (self->after_io_ && raft_state(self->raft_) != RAFT_LEADER) {
    // A follower's result goes nowhere: the entry is applied in a moment.
    self->deferred_.push_back(Deferred{index, std::string(static_cast<const char*>(buf->base), buf->len)});
    self->Arm();
    self->last_ = store::Results{};
    *result = &self->last_;
    return 0;
  }
  // What was deferred comes first (a follower just elected).
  if (!self->Drain()) return RAFT_IOERR;
  Result<store::Results> r =
      self->store_->ApplyEntry(index, std::string_view(static_cast<const char*>(buf->base), buf->len));
  if (!r && r.error().code.rfind("Storage", 0) == 0) {
    // Not applied: libraft keeps the entry and applies it again with the next
    // commit (Replica retries with barriers); nothing of it stayed.
    return RAFT_IOERR;
  }
  self->last_ = std::move(r);
  *result = &self->last_;
  return 0;
}

Fsm::~Fsm() = default;

void Fsm::DeferFollowerApplies(uv_loop_s* loop) {
  after_io_ = std::make_unique<net::AfterIo>(loop, [this] {
    // The iteration that deferred an entry also wrote the acknowledgement into
    // libraft's end of the socket pair; the splice sends it on in the next
    // iteration's I/O, after which the entries are applied.
    if (queued_now_ && deferred_.size() < kMaxDeferred) {
      queued_now_ = false;
      return after_io_->Arm();
    }
    queued_now_ = false;
    if (!Drain()) RetryLater();
  });
  retry_ = std::make_unique<net::Timer>(loop);
  retry_->Unref();
}

// A storage error: the entry stays first in line and is tried again in a second
// (a leader's entries wait behind it, see Apply).
void Fsm::RetryLater() {
  retry_->Start(1000, 0, [this] {
    if (!Drain()) RetryLater();
  });
}

void Fsm::Arm() {
  queued_now_ = true;
  after_io_->Arm();
}

bool Fsm::Drain() {
  while (!deferred_.empty()) {
    const Deferred& d = deferred_.front();
    Result<store::Results> r = store_->ApplyEntry(d.index, d.entry);
    if (!r && r.error().code.rfind("Storage", 0) == 0) {
      log::Warn("replica", "a committed entry could not be applied yet; kept",
                {{"index", d.index}, {"error", r.error().message}});
      return false;
    }
    deferred_.pop_front();
  }
  return true;
}

int Fsm::Snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs) {
  auto* self = static_cast<Fsm*>(fsm->data);
  // The snapshot is of every entry libraft counts as applied.
  if (!self->Drain()) return RAFT_BUSY;
  double t0 = Seconds();
  Result<std::string> bytes = self->store_->SnapshotBytes();
  if (!bytes) {
    log::Error("replica", "cannot take a snapshot", {{"error", bytes.error().message}});
    return RAFT_BUSY;  // tried again at the next threshold
  }
  auto* out = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
  if (!out) return RAFT_NOMEM;
  out->len = kSnapshotHeader + bytes->size();
  out->base = raft_malloc(out->len);
  if (!out->base) {
    raft_free(out);
    return RAFT_NOMEM;
  }
  auto* p = static_cast<char*>(out->base);
  memcpy(p, kSnapshotMark, sizeof kSnapshotMark);
  PutU64(p + 8, raft_last_applied(self->raft_));
  memcpy(p + kSnapshotHeader, bytes->data(), bytes->size());
  *bufs = out;
  *n_bufs = 1;
  self->snapshots_taken_++;
  self->last_snapshot_bytes_ = out->len;
  self->last_snapshot_seconds_ = Seconds() - t0;
  log::Info("replica", "snapshot taken",
            {{"index", static_cast<uint64_t>(raft_last_applied(self->raft_))},
             {"bytes", out->len},
             {"seconds", self->last_snapshot_seconds_}});
  return 0;
}

int Fsm::Restore(raft_fsm* fsm, raft_buffer* buf) {
  auto* self = static_cast<Fsm*>(fsm->data);
  const auto* p = static_cast<const char*>(buf->base);
  if (buf->len < kSnapshotHeader || memcmp(p, kSnapshotMark, sizeof kSnapshotMark) != 0) {
    log::Error("replica", "a snapshot without berth's mark", {{"bytes", buf->len}});
    return RAFT_MALFORMED;
  }
  uint64_t index = GetU64(p + 8);
  int rv = 0;
  // Entries deferred before a snapshot that follows them are in it.
  while (!self->deferred_.empty() && self->deferred_.front().index <= index) self->deferred_.pop_front();
  if (!self->Drain()) return RAFT_IOERR;
  if (index <= self->store_->applied_index()) {
    // state.db already holds it (a restart: the log's snapshot is older than the
    // database, which replays only what comes after it).
    log::Info("replica", "snapshot already in state.db",
              {{"index", index}, {"applied_index", self->store_->applied_index()}});
  } else if (Status s = self->store_->Restore(index, std::string_view(p + kSnapshotHeader, buf->len - kSnapshotHeader));
             !s) {
    log::Error("replica", "cannot install a snapshot", {{"index", index}, {"error", s.error().message}});
    rv = RAFT_IOERR;
  } else {
    self->snapshots_installed_++;
  }
  // On success the state machine owns the buffer.
  if (rv == 0) raft_free(buf->base);
  return rv;
}

// ---------------------------------------------------------------- peers

namespace {

constexpr size_t kMaxUpgradeAnswer = 8192;

// Gives libraft its end of a socket pair whose other end is spliced to `conn`;
// returns the libuv stream libraft owns (and frees with raft_free), or null.
uv_stream_t* SpliceForRaft(uv_loop_t* loop, std::unique_ptr<net::Stream> conn, std::string early, net::SpliceOptions so,
                           std::vector<std::unique_ptr<net::Splice>>* splices, const std::string& peer) {
  Result<net::SocketPair> pair = net::MakeSocketPair(loop);
  if (!pair) {
    log::Warn("replica", "cannot make a socket pair for a peer", {{"peer", peer}, {"error", pair.error().message}});
    conn->Close();
    return nullptr;
  }
  auto* pipe = static_cast<uv_pipe_t*>(raft_malloc(sizeof(uv_pipe_t)));
  if (!pipe) {
    close(pair->theirs);
    conn->Close();
    return nullptr;
  }
  uv_pipe_init(loop, pipe, 0);
  if (int rc = uv_pipe_open(pipe, pair->theirs); rc != 0) {
    close(pair->theirs);
    uv_close(reinterpret_cast<uv_handle_t*>(pipe), [](uv_handle_t* h) { raft_free(h); });
    conn->Close();
    return nullptr;
  }
  // Dead splices are let go here and by the gauges' timer (never inside their callbacks).
  std::erase_if(*splices, [](const std::unique_ptr<net::Splice>& sp) { return sp->closed(); });
  splices->push_back(std::make_unique<net::Splice>(
      loop, std::move(conn), std::move(pair->ours), std::move(early), so, [peer](const std::string& why) {
        if (!why.empty()) log::Info("replica", "peer connection ended", {{"peer", peer}, {"why", why}});
      }));
  return reinterpret_cast<uv_stream_t*>(pipe);
}

}  // namespace

// How libraft reaches peers: an HTTP Upgrade to `berth-raft` on the peer's API
// port, over TLS trusting the cluster CA with this server's peer certificate
// (docs/decisions.md). Each accepted or made connection is spliced to one end of
// a socket pair; libraft drives the other as its libuv stream.
struct Replica::Transport {
  raft_uv_transport t{};
  raft_uv_accept_cb accept = nullptr;
  uv_loop_t* loop = nullptr;
  const Options* options = nullptr;
  std::vector<std::unique_ptr<net::Splice>> splices;
  std::unordered_map<uint64_t, uint64_t> heard;  // peer id -> loop time (ms) it last sent

  // One attempt to reach a peer.
  struct Dial : net::Stream::Handler {
    Transport* tr = nullptr;
    raft_uv_connect* req = nullptr;
    raft_uv_connect_cb cb = nullptr;
    uint64_t id = 0;
    std::string address;
    std::unique_ptr<net::Stream> stream;
    std::string got;
    std::unique_ptr<net::Timer> deadline;
    bool finished = false;
    bool connecting = false;  // net::Connect holds a pointer to this

    void OnData(std::string_view data) override {
      if (finished) return;
      got.append(data);
      size_t end = got.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (got.size() > kMaxUpgradeAnswer) Fail("an answer of more than 8 KiB without an end of headers");
        return;
      }
      std::string head = got.substr(0, end);
      if (!head.starts_with("HTTP/1.1 101 ")) {
        std::string line = head.substr(0, head.find("\r\n"));
        size_t body = end + 4;
        Fail("refused: " + line + (body < got.size() ? " " + got.substr(body, 300) : ""));
        return;
      }
      std::string early = got.substr(end + 4);
      finished = true;
      deadline->Stop();
      stream->SetHandler(nullptr);
      stream->ReadStop();
      net::SpliceOptions so;
      uv_stream_t* s = SpliceForRaft(tr->loop, std::move(stream), std::move(early), so, &tr->splices,
                                     std::to_string(id) + "@" + address);
      cb(req, s, s ? 0 : RAFT_NOCONNECTION);
    }
    void OnEnd(int err) override {
      Fail(err == 0 ? "the peer closed the connection"
                    : (stream && !stream->FailureText().empty() ? stream->FailureText() : net::UvError(err)));
    }
    void Fail(const std::string& why) {
      if (finished) return;
      finished = true;
      if (deadline) deadline->Stop();
      if (stream) {
        stream->SetHandler(nullptr);
        stream->Close();
      }
      log::Debug("replica", "cannot reach a peer", {{"id", id}, {"address", address}, {"why", why}});
      cb(req, nullptr, RAFT_NOCONNECTION);
    }
  };
  std::vector<std::unique_ptr<Dial>> dials;

  Transport() {
    t.impl = this;  // (t.data is libraft's)
    t.init = [](raft_uv_transport*, raft_id, const char*) { return 0; };
    t.listen = [](raft_uv_transport* tr, raft_uv_accept_cb cb) {
      static_cast<Transport*>(tr->impl)->accept = cb;
      return 0;
    };
    t.connect = [](raft_uv_transport* tr, raft_uv_connect* req, raft_id id, const char* address,
                   raft_uv_connect_cb cb) { return static_cast<Transport*>(tr->impl)->Connect(req, id, address, cb); };
    t.close = [](raft_uv_transport* tr, raft_uv_transport_close_cb cb) {
      if (cb) cb(tr);
    };
  }

  int Connect(raft_uv_connect* req, raft_id id, const char* address, raft_uv_connect_cb cb) {
    std::shared_ptr<net::tls::ClientContext> tls = options->peer_tls ? options->peer_tls() : nullptr;
    if (!tls) {
      snprintf(t.errmsg, sizeof t.errmsg, "no way to reach server %llu at %s: peers need TLS",
               static_cast<unsigned long long>(id), address);
      return RAFT_NOCONNECTION;
    }
    Result<net::Endpoint> where = net::Endpoint::Parse(address);
    if (!where || where->kind != net::Endpoint::Kind::kTcp) {
      snprintf(t.errmsg, sizeof t.errmsg, "server %llu has no usable address: %s", static_cast<unsigned long long>(id),
               address);
      return RAFT_NOCONNECTION;
    }
    Sweep();
    auto dial = std::make_unique<Dial>();
    Dial* d = dial.get();
    d->tr = this;
    d->req = req;
    d->cb = cb;
    d->id = id;
    d->address = address;
    d->deadline = std::make_unique<net::Timer>(loop);
    d->deadline->Start(options->connect_timeout_ms, 0, [d] { d->Fail("no answer in time"); });
    dials.push_back(std::move(dial));
    std::string request =
        "GET /v1/raft HTTP/1.1\r\nHost: " + std::string(address) +
        "\r\nConnection: Upgrade\r\nUpgrade: berth-raft\r\nBerth-Raft-Id: " + std::to_string(options->id) +
        "\r\nBerth-Raft-Address: " + options->address + "\r\n\r\n";
    std::string host = where->host;
    d->connecting = true;
    net::Connect(loop, where.value(),
                 [d, tls, host, request = std::move(request)](Result<std::unique_ptr<net::Stream>> conn) mutable {
                   d->connecting = false;
                   if (d->finished) {
                     if (conn) conn.value()->Close();
                     return;
                   }
                   if (!conn) {
                     d->Fail(conn.error().message);
                     return;
                   }
                   d->stream = tls->Wrap(d->tr->loop, std::move(conn.value()), host);
                   d->stream->SetHandler(d);
                   d->stream->Write(std::move(request));
                   d->stream->ReadStart();
                 });
    return 0;
  }

  void Accept(uint64_t id, const std::string& address, std::unique_ptr<net::Stream> stream, std::string early) {
    if (!accept) {
      stream->Close();
      return;
    }
    net::SpliceOptions so;
    // A leader speaks every heartbeat; anything else reconnects when it needs to.
    so.idle_a_ms = 30000;
    // What a peer sends on the connection it opened answers this server (or asks
    // for its vote): it is alive and reaches us (the lease).
    so.on_data_a = [this, id] { heard[id] = uv_now(loop); };
    uv_stream_t* s =
        SpliceForRaft(loop, std::move(stream), std::move(early), so, &splices, std::to_string(id) + "@" + address);
    if (s) accept(&t, id, address.c_str(), s);
  }

  void Sweep() {
    std::erase_if(splices, [](const std::unique_ptr<net::Splice>& sp) { return sp->closed(); });
    std::erase_if(dials, [](const std::unique_ptr<Dial>& d) { return d->finished && !d->connecting; });
  }

  void CloseAll() {
    for (auto& d : dials) d->Fail("shutting down");
    for (auto& sp : splices) sp->Close();
  }
};

// ---------------------------------------------------------------- the replica

struct Replica::Gauges {
  metrics::Gauge* term;
  metrics::Gauge* leader;
  metrics::Gauge* commit;
  metrics::Gauge* applied;
  metrics::Gauge* last;
  metrics::Gauge* snapshot_bytes;
  metrics::Gauge* snapshot_seconds;
  metrics::Gauge* snapshots_taken;
  metrics::Gauge* snapshots_installed;
  metrics::Gauge* in_flight;
  metrics::Gauge* servers;
  metrics::Gauge* acting;
  metrics::Counter* elections_won;
  metrics::Family<metrics::Gauge>* peer_lag;
  std::unique_ptr<net::Timer> timer;
  std::unique_ptr<net::Timer> leadership;
};

Replica::Replica(Options o, store::Store* store) : options_(std::move(o)), store_(store), fsm_(store) {}

Replica::~Replica() {
  if (gauges_ && gauges_->timer) gauges_->timer->Stop();
  if (gauges_ && gauges_->leadership) gauges_->leadership->Stop();
}

Result<std::unique_ptr<Replica>> Replica::Start(uv_loop_s* loop, Options o, store::Store* store,
                                                metrics::Registry* metrics) {
  if (o.id == 0) return Error::Invalid("a server id must not be 0");
  if (mkdir(o.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::Internal("cannot create " + o.dir + ": " + strerror(errno));
  }
  std::unique_ptr<Replica> r(new Replica(std::move(o), store));
  r->transport_ = std::make_unique<Transport>();
  r->transport_->loop = loop;
  r->transport_->options = &r->options_;
  int rv = raft_uv_init(&r->io_, loop, r->options_.dir.c_str(), &r->transport_->t);
  if (rv != 0) return Error::Internal("the raft log in " + r->options_.dir + ": " + r->io_.errmsg);
  raft_uv_set_segment_size(&r->io_, r->options_.segment_bytes);
  raft_uv_set_connect_retry_delay(&r->io_, r->options_.connect_retry_ms);
  rv = raft_init(&r->raft_, &r->io_, r->fsm_.fsm(), r->options_.id, r->options_.address.c_str());
  if (rv != 0) {
    Error e = Error::Internal(std::string("raft: ") + raft_errmsg(&r->raft_));
    raft_uv_close(&r->io_);
    return e;
  }
  r->fsm_.Attach(&r->raft_);
  r->fsm_.DeferFollowerApplies(loop);
  raft_set_heartbeat_timeout(&r->raft_, r->options_.heartbeat_ms);
  raft_set_election_timeout(&r->raft_, r->options_.election_timeout_ms);
  raft_set_snapshot_threshold(&r->raft_, r->options_.snapshot_threshold);
  raft_set_snapshot_trailing(&r->raft_, r->options_.snapshot_trailing);
  raft_set_pre_vote(&r->raft_, true);

  // The first start makes a cluster of one, unless this server joins one; later
  // starts find the log on disk.
  raft_configuration conf;
  raft_configuration_init(&conf);
  rv = raft_configuration_add(&conf, r->options_.id, r->options_.address.c_str(), RAFT_VOTER);
  if (rv == 0) rv = r->options_.join ? RAFT_CANTBOOTSTRAP : raft_bootstrap(&r->raft_, &conf);
  raft_configuration_close(&conf);
  if (r->options_.join) {
    // What state.db holds is replaced by the cluster's log or snapshot.
    if (Status s = store->ResetAppliedIndex(); !s) return s.take_error();
  } else if (rv == 0) {
    // A new log: what state.db holds (an older berth's state, or nothing) is
    // where it starts from, and its entries count from 1 again.
    if (Status s = store->ResetAppliedIndex(); !s) return s.take_error();
    log::Info("replica", "bootstrapped a new log", {{"dir", r->options_.dir}, {"id", r->options_.id}});
  } else if (rv != RAFT_CANTBOOTSTRAP) {
    return Error::Internal(std::string("raft bootstrap: ") + raft_errmsg(&r->raft_));
  }
  rv = raft_start(&r->raft_);
  if (rv != 0) return Error::Internal(std::string("raft start: ") + raft_errmsg(&r->raft_));
  r->started_ = true;
  if (Status s = store->SetLog(r.get()); !s) return s.take_error();

  auto* g = new Gauges{};
  r->gauges_.reset(g);
  g->term = metrics->Gauges("berth_raft_term", "The raft term this server is in")->With({});
  g->leader = metrics->Gauges("berth_raft_leader", "1 while this server is the leader")->With({});
  g->commit = metrics->Gauges("berth_raft_commit_index", "The last log index known committed")->With({});
  g->applied = metrics->Gauges("berth_raft_applied_index", "The last log index applied to state.db")->With({});
  g->last = metrics->Gauges("berth_raft_last_index", "The last index in this server's log")->With({});
  g->snapshot_bytes = metrics->Gauges("berth_raft_snapshot_bytes", "Size of the last snapshot taken")->With({});
  g->snapshot_seconds =
      metrics->Gauges("berth_raft_snapshot_seconds", "Time the last snapshot took to copy state.db")->With({});
  g->snapshots_taken = metrics->Gauges("berth_raft_snapshots_taken", "Snapshots taken since start")->With({});
  g->snapshots_installed =
      metrics->Gauges("berth_raft_snapshots_installed", "Snapshots installed since start")->With({});
  g->in_flight = metrics->Gauges("berth_raft_proposals_in_flight", "Batches proposed and not yet applied")->With({});
  g->servers = metrics->Gauges("berth_raft_servers", "Servers in the cluster's configuration")->With({});
  g->acting =
      metrics
          ->Gauges("berth_raft_lease_held", "1 while this server leads and a majority was heard from within the lease")
          ->With({});
  g->elections_won =
      metrics->Counters("berth_raft_leadership_gained_total", "Times this server became the leader")->With({});
  g->peer_lag = metrics->Gauges("berth_raft_peer_lag_entries",
                                "On the leader: log entries a peer lacks (-1: this server does not lead)", {"peer"});
  g->timer = std::make_unique<net::Timer>(loop);
  Replica* self = r.get();
  g->timer->Start(0, 1000, [self] { self->Observe(); });
  g->timer->Unref();
  g->leadership = std::make_unique<net::Timer>(loop);
  g->leadership->Start(20, 20, [self] { self->WatchLeadership(); });
  g->leadership->Unref();
  log::Info("replica", "started",
            {{"id", r->options_.id},
             {"term", static_cast<uint64_t>(r->raft_.current_term)},
             {"last_index", static_cast<uint64_t>(raft_last_index(&r->raft_))},
             {"applied_index", store->applied_index()}});
  return r;
}

void Replica::Observe() {
  // An entry that failed to apply (a storage error) stays first in line; libraft
  // applies again with the next commit, which a barrier makes.
  if (leader() && raft_last_applied(&raft_) < raft_.commit_index) Barrier([](Status) {});
  gauges_->term->Set(static_cast<double>(raft_.current_term));
  gauges_->leader->Set(leader() ? 1 : 0);
  gauges_->commit->Set(static_cast<double>(raft_.commit_index));
  gauges_->applied->Set(static_cast<double>(raft_last_applied(&raft_)));
  gauges_->last->Set(static_cast<double>(raft_last_index(&raft_)));
  gauges_->snapshot_bytes->Set(static_cast<double>(fsm_.last_snapshot_bytes()));
  gauges_->snapshot_seconds->Set(fsm_.last_snapshot_seconds());
  gauges_->snapshots_taken->Set(static_cast<double>(fsm_.snapshots_taken()));
  gauges_->snapshots_installed->Set(static_cast<double>(fsm_.snapshots_installed()));
  gauges_->in_flight->Set(static_cast<double>(store_->in_flight()));
  gauges_->servers->Set(static_cast<double>(raft_.configuration.n));
  // How far each peer is behind, as the leader knows it (a follower does not).
  uint64_t last = raft_last_index(&raft_);
  for (unsigned i = 0; i < raft_.configuration.n; i++) {
    const raft_server& sv = raft_.configuration.servers[i];
    if (sv.id == options_.id) continue;
    double lag = -1;
    if (leader()) {
      raft_index match = raft_.leader_state.progress[i].match_index;
      lag = static_cast<double>(last >= match ? last - match : 0);
    }
    gauges_->peer_lag->With({std::to_string(sv.id)})->Set(lag);
  }
  transport_->Sweep();
}

void Replica::WatchLeadership() {
  // Elected with entries still deferred: applied before this server acts.
  if (leader() && !fsm_.drained()) fsm_.Drain();
  // A new leader may not hold yet what its predecessors committed; the first
  // entry of its own term, once applied, says it does (docs/decisions.md).
  // A proposal in flight does as well as a barrier.
  uint64_t term = raft_.current_term;
  if (leader() && !ready() && pending_term_ != term) {
    Barrier([term](Status s) {
      if (!s) log::Debug("replica", "the barrier of a new term failed", {{"term", term}, {"error", s.error().message}});
    });
  }
  bool now = acting();
  gauges_->acting->Set(now ? 1 : 0);
  if (now == was_leader_) return;
  was_leader_ = now;
  if (now) {
    gauges_->elections_won->Inc();
    acting_since_ms_ = uv_now(transport_->loop);
  }
  log::Info("replica",
            now         ? "this server leads the cluster"
            : !leader() ? "this server no longer leads the cluster"
            : ready()   ? "this server leads but has not heard from a majority within the lease: it stops acting"
                        : "this server leads but has not applied an entry of its term: it stops acting",
            {{"term", static_cast<uint64_t>(raft_.current_term)}, {"id", options_.id}});
  if (on_leadership_) on_leadership_(now);
}

std::string Replica::LeaderAddress() {
  raft_id id = 0;
  const char* address = nullptr;
  raft_leader(&raft_, &id, &address);
  return id != 0 && address ? std::string(address) : std::string();
}

bool Replica::MayConnect(uint64_t id) const {
  if (raft_.configuration.n == 0) return true;
  for (unsigned i = 0; i < raft_.configuration.n; i++) {
    if (raft_.configuration.servers[i].id == id) return true;
  }
  return false;
}

void Replica::AcceptPeer(uint64_t id, const std::string& address, std::unique_ptr<net::Stream> stream,
                         std::string early) {
  if (closing_) {
    stream->Close();
    return;
  }
  transport_->Accept(id, address, std::move(stream), std::move(early));
}

void Replica::ClosePeers() { transport_->CloseAll(); }

namespace {

struct Change {
  struct raft_change req {};
  std::function<void(Status)> done;
  raft* r = nullptr;
  uint64_t id = 0;
  int role = RAFT_VOTER;
};

Error ChangeError(int status, const std::string& what) {
  if (status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST) return ProposalError(status, "");
  if (status == RAFT_CANTCHANGE) {
    return Error{ErrorKind::kConflict, "ChangeInProgress",
                 what + ": another membership change is in progress; try again when it is done"};
  }
  if (status == RAFT_DUPLICATEID || status == RAFT_DUPLICATEADDRESS) {
    return Error{ErrorKind::kConflict, "ServerExists", what + ": " + raft_strerror(status)};
  }
  if (status == RAFT_NOTFOUND || status == RAFT_BADID) {
    return Error{ErrorKind::kNotFound, "ServerNotFound", what + ": " + raft_strerror(status)};
  }
  if (status == RAFT_NOCONNECTION) {
    return Error{
        ErrorKind::kUnavailable, "ServerUnreachable",
        what + ": the server did not catch up with the log (it is not reachable from the leader, or too slow)"};
  }
  return Error::Internal(what + ": " + raft_strerror(status));
}

// Gives server c->id the role c->role (a promotion waits until it caught up).
void Assign(Change* c) {
  c->req = {};
  c->req.data = c;
  int rv = raft_assign(c->r, &c->req, c->id, c->role, [](struct raft_change* req, int status) {
    std::unique_ptr<Change> c(static_cast<Change*>(req->data));
    if (status != 0) {
      c->done(ChangeError(status, "making server " + std::to_string(c->id) + " a member"));
    } else {
      c->done({});
    }
  });
  if (rv == 0) return;
  std::unique_ptr<Change> owned(c);
  if (rv == RAFT_BADROLE) {
    owned->done({});  // it has that role already
  } else {
    owned->done(ChangeError(rv, "making server " + std::to_string(c->id) + " a member"));
  }
}

}  // namespace

void Replica::AddServer(uint64_t id, const std::string& address, bool voter, std::function<void(Status)> done) {
  auto* c = new Change;
  c->req.data = c;
  c->done = std::move(done);
  c->r = &raft_;
  c->id = id;
  c->role = voter ? RAFT_VOTER : RAFT_STANDBY;
  std::string what = "adding server " + std::to_string(id) + " at " + address;
  // A member already (a join tried again): only its role is brought where asked.
  const raft_server* known = nullptr;
  for (unsigned i = 0; i < raft_.configuration.n; i++) {
    if (raft_.configuration.servers[i].id == id) known = &raft_.configuration.servers[i];
  }
  if (known) {
    if (!address.empty() && known->address && address != known->address) {
      std::unique_ptr<Change> owned(c);
      owned->done(Error{ErrorKind::kConflict, "ServerExists",
                        what + ": server " + std::to_string(id) + " is a member at " + known->address +
                            "; remove it first (berth server rm " + std::to_string(id) + ")"});
      return;
    }
    Assign(c);
    return;
  }
  int rv = raft_add(&raft_, &c->req, id, address.c_str(), [](struct raft_change* req, int status) {
    auto* c = static_cast<Change*>(req->data);
    if (status != 0) {
      std::unique_ptr<Change> owned(c);
      owned->done(ChangeError(status, "adding server " + std::to_string(c->id)));
      return;
    }
    // Now a spare: it catches up, then takes its role.
    Assign(c);
  });
  if (rv != 0) {
    std::unique_ptr<Change> owned(c);
    owned->done(ChangeError(rv, what));
  }
}

void Replica::RemoveServer(uint64_t id, std::function<void(Status)> done) {
  auto* c = new Change;
  c->req.data = c;
  c->done = std::move(done);
  c->r = &raft_;
  c->id = id;
  int rv = raft_remove(&raft_, &c->req, id, [](struct raft_change* req, int status) {
    std::unique_ptr<Change> c(static_cast<Change*>(req->data));
    if (status != 0) {
      c->done(ChangeError(status, "removing server " + std::to_string(c->id)));
    } else {
      c->done({});
    }
  });
  if (rv != 0) {
    std::unique_ptr<Change> owned(c);
    owned->done(ChangeError(rv, "removing server " + std::to_string(id)));
  }
}

bool Replica::acting() const {
  if (!leader() || !ready() || !fsm_.drained()) return false;
  uint64_t now = uv_now(transport_->loop);
  unsigned voters = 0, heard = 0;
  for (unsigned i = 0; i < raft_.configuration.n; i++) {
    const raft_server& s = raft_.configuration.servers[i];
    if (s.role != RAFT_VOTER) continue;
    voters++;
    if (s.id == options_.id) {
      heard++;
      continue;
    }
    auto it = transport_->heard.find(s.id);
    if (it != transport_->heard.end() && now - it->second < options_.lease_ms) heard++;
  }
  return heard * 2 > voters;
}

int64_t Replica::SilentMs(uint64_t id) const {
  if (!was_leader_) return -1;
  if (id == options_.id) return 0;
  uint64_t now = uv_now(transport_->loop);
  uint64_t since = acting_since_ms_;
  auto it = transport_->heard.find(id);
  if (it != transport_->heard.end()) since = std::max(since, it->second);
  return now > since ? static_cast<int64_t>(now - since) : 0;
}

unsigned Replica::Voters(uint64_t except) const {
  unsigned n = 0;
  for (unsigned i = 0; i < raft_.configuration.n; i++) {
    const raft_server& s = raft_.configuration.servers[i];
    n += s.role == RAFT_VOTER && s.id != except;
  }
  return n;
}

bool Replica::leader() const { return started_ && !closing_ && raft_state(const_cast<raft*>(&raft_)) == RAFT_LEADER; }

LogStatus Replica::Describe() {
  LogStatus st;
  st.id = options_.id;
  st.term = raft_.current_term;
  st.leader = leader();
  raft_id leader_id = 0;
  const char* leader_address = nullptr;
  raft_leader(&raft_, &leader_id, &leader_address);
  st.leader_id = leader_id;
  st.commit_index = raft_.commit_index;
  st.applied_index = raft_last_applied(&raft_);
  st.last_index = raft_last_index(&raft_);
  raft_time now = io_.time(&io_);
  for (unsigned i = 0; i < raft_.configuration.n; i++) {
    const raft_server& srv = raft_.configuration.servers[i];
    ServerView v;
    v.id = srv.id;
    v.address = srv.address ? srv.address : "";
    v.role = srv.role == RAFT_VOTER ? "voter" : srv.role == RAFT_STANDBY ? "standby" : "spare";
    v.leader = srv.id == leader_id;
    if (st.leader) {
      if (srv.id == options_.id) {
        v.match_index = static_cast<int64_t>(st.last_index);
        v.sent_ms_ago = 0;
        v.recent_contact = true;
      } else if (raft_.leader_state.progress) {
        const raft_progress& pr = raft_.leader_state.progress[i];
        v.match_index = static_cast<int64_t>(pr.match_index);
        v.sent_ms_ago = pr.last_send == 0 ? -1 : static_cast<int64_t>(now - pr.last_send);
        v.recent_contact = pr.recent_recv;
      }
      v.heard_ms_ago = SilentMs(srv.id);
    }
    st.servers.push_back(std::move(v));
  }
  return st;
}

namespace {}  // namespace

// A proposal and a barrier remember the term they were proposed in: applied,
// their entry is of that term.
struct Replica::Proposal {
  struct raft_apply req {};
  store::Log::Applied applied;
  Replica* replica = nullptr;
  uint64_t term = 0;
};

struct Replica::BarrierReq {
  struct raft_barrier req {};
  std::function<void(Status)> done;
  Replica* replica = nullptr;
  uint64_t term = 0;
};

void Replica::NoteOutcome(uint64_t term, bool applied) {
  if (applied && term > ready_term_) ready_term_ = term;
  if (pending_term_ == term) pending_term_ = 0;
}

uint64_t Replica::Propose(const std::string& entry, Applied applied) {
  if (closing_) {
    applied(ProposalError(RAFT_SHUTDOWN, ""));
    return 0;
  }
  raft_buffer buf;
  buf.len = entry.size();
  buf.base = raft_malloc(entry.size());
  if (!buf.base) {
    applied(Error::Internal("out of memory proposing an entry"));
    return 0;
  }
  memcpy(buf.base, entry.data(), entry.size());
  auto* p = new Proposal;
  p->req.data = p;
  p->applied = std::move(applied);
  p->replica = this;
  p->term = raft_.current_term;
  int rv = raft_apply(&raft_, &p->req, &buf, 1, [](struct raft_apply* req, int status, void* result) {
    std::unique_ptr<Proposal> p(static_cast<Proposal*>(req->data));
    p->replica->NoteOutcome(p->term, status == 0);
    if (status != 0) {
      p->applied(Undetermined(status));
      return;
    }
    auto* r = static_cast<Result<store::Results>*>(result);
    p->applied(std::move(*r));
  });
  if (rv != 0) {
    // Not the leader: refused before the log took the buffer, which is still
    // ours. Other refusals may come after libraft appended and discarded it
    // (freeing it): left alone (at worst a leak when memory ran out).
    if (rv == RAFT_NOTLEADER) raft_free(buf.base);
    std::unique_ptr<Proposal> owned(p);
    owned->applied(ProposalError(rv, raft_errmsg(&raft_)));
    return 0;
  }
  if (!ready()) pending_term_ = p->term;
  return p->req.index;
}

void Replica::Barrier(std::function<void(Status)> done) {
  auto* b = new BarrierReq;
  b->req.data = b;
  b->done = std::move(done);
  b->replica = this;
  b->term = raft_.current_term;
  int rv = raft_barrier(&raft_, &b->req, [](struct raft_barrier* req, int status) {
    std::unique_ptr<BarrierReq> b(static_cast<BarrierReq*>(req->data));
    b->replica->NoteOutcome(b->term, status == 0);
    if (status != 0) {
      b->done(ProposalError(status, ""));
    } else {
      b->done({});
    }
  });
  if (rv != 0) {
    std::unique_ptr<BarrierReq> owned(b);
    owned->done(ProposalError(rv, raft_errmsg(&raft_)));
    return;
  }
  if (!ready()) pending_term_ = b->term;
}

void Replica::Close(std::function<void()> done) {
  // Proposals stop here. libraft itself is not closed: its log is durable at
  // every acknowledged entry, and libraft 0.15 was seen to call back into its
  // I/O after raft_uv_close released it (after a full disk), which crashed the
  // server on its way out. Leaving its files as a crash would is the path every
  // start already handles (docs/decisions.md).
  closing_ = true;
  (void)fsm_.Drain();  // what a follower deferred is in state.db before it closes
  (void)store_->SetLog(nullptr);
  if (gauges_ && gauges_->timer) gauges_->timer->Stop();
  if (gauges_ && gauges_->leadership) gauges_->leadership->Stop();
  if (done) done();
}

}  // namespace berth::replica
