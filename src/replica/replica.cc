#include "replica/replica.h"

#include <sys/stat.h>

#include <uv.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "base/log.h"
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

int Fsm::Snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs) {
  auto* self = static_cast<Fsm*>(fsm->data);
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

// How libraft reaches peers. A cluster of one never connects; peers over mutual
// TLS on the server's port come with membership (docs/decisions.md).
struct Replica::Transport {
  raft_uv_transport t{};
  raft_uv_accept_cb accept = nullptr;

  Transport() {
    t.impl = this;  // (t.data is libraft's)
    t.init = [](raft_uv_transport*, raft_id, const char*) { return 0; };
    t.listen = [](raft_uv_transport* tr, raft_uv_accept_cb cb) {
      static_cast<Transport*>(tr->impl)->accept = cb;
      return 0;
    };
    t.connect = [](raft_uv_transport* tr, raft_uv_connect*, raft_id id, const char* address, raft_uv_connect_cb) {
      snprintf(tr->errmsg, sizeof tr->errmsg, "no route to server %llu at %s: this server is a cluster of one",
               static_cast<unsigned long long>(id), address);
      return RAFT_NOCONNECTION;
    };
    t.close = [](raft_uv_transport* tr, raft_uv_transport_close_cb cb) {
      if (cb) cb(tr);
    };
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
  std::unique_ptr<net::Timer> timer;
};

Replica::Replica(Options o, store::Store* store) : options_(std::move(o)), store_(store), fsm_(store) {}

Replica::~Replica() {
  if (gauges_ && gauges_->timer) gauges_->timer->Stop();
}

Result<std::unique_ptr<Replica>> Replica::Start(uv_loop_s* loop, Options o, store::Store* store,
                                                metrics::Registry* metrics) {
  if (o.id == 0) return Error::Invalid("a server id must not be 0");
  if (mkdir(o.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error::Internal("cannot create " + o.dir + ": " + strerror(errno));
  }
  std::unique_ptr<Replica> r(new Replica(std::move(o), store));
  r->transport_ = std::make_unique<Transport>();
  int rv = raft_uv_init(&r->io_, loop, r->options_.dir.c_str(), &r->transport_->t);
  if (rv != 0) return Error::Internal("the raft log in " + r->options_.dir + ": " + r->io_.errmsg);
  raft_uv_set_segment_size(&r->io_, r->options_.segment_bytes);
  rv = raft_init(&r->raft_, &r->io_, r->fsm_.fsm(), r->options_.id, r->options_.address.c_str());
  if (rv != 0) {
    Error e = Error::Internal(std::string("raft: ") + raft_errmsg(&r->raft_));
    raft_uv_close(&r->io_);
    return e;
  }
  r->fsm_.Attach(&r->raft_);
  raft_set_heartbeat_timeout(&r->raft_, r->options_.heartbeat_ms);
  raft_set_election_timeout(&r->raft_, r->options_.election_timeout_ms);
  raft_set_snapshot_threshold(&r->raft_, r->options_.snapshot_threshold);
  raft_set_snapshot_trailing(&r->raft_, r->options_.snapshot_trailing);
  raft_set_pre_vote(&r->raft_, true);

  // The first start makes a cluster of one; later starts find the log on disk.
  raft_configuration conf;
  raft_configuration_init(&conf);
  rv = raft_configuration_add(&conf, r->options_.id, r->options_.address.c_str(), RAFT_VOTER);
  if (rv == 0) rv = raft_bootstrap(&r->raft_, &conf);
  raft_configuration_close(&conf);
  if (rv == 0) {
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
  g->timer = std::make_unique<net::Timer>(loop);
  Replica* self = r.get();
  g->timer->Start(0, 1000, [self] { self->Observe(); });
  g->timer->Unref();
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
}

bool Replica::leader() const { return started_ && !closing_ && raft_state(const_cast<raft*>(&raft_)) == RAFT_LEADER; }

uint64_t Replica::term() const { return raft_.current_term; }

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
    }
    st.servers.push_back(std::move(v));
  }
  return st;
}

namespace {

struct Proposal {
  struct raft_apply req {};
  store::Log::Applied applied;
};

struct BarrierReq {
  struct raft_barrier req {};
  std::function<void(Status)> done;
};

}  // namespace

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
  int rv = raft_apply(&raft_, &p->req, &buf, 1, [](struct raft_apply* req, int status, void* result) {
    std::unique_ptr<Proposal> p(static_cast<Proposal*>(req->data));
    if (status != 0) {
      p->applied(ProposalError(status, ""));
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
  return p->req.index;
}

void Replica::Barrier(std::function<void(Status)> done) {
  auto* b = new BarrierReq;
  b->req.data = b;
  b->done = std::move(done);
  int rv = raft_barrier(&raft_, &b->req, [](struct raft_barrier* req, int status) {
    std::unique_ptr<BarrierReq> b(static_cast<BarrierReq*>(req->data));
    if (status != 0) {
      b->done(ProposalError(status, ""));
    } else {
      b->done({});
    }
  });
  if (rv != 0) {
    std::unique_ptr<BarrierReq> owned(b);
    owned->done(ProposalError(rv, raft_errmsg(&raft_)));
  }
}

void Replica::Close(std::function<void()> done) {
  // Proposals stop here. libraft itself is not closed: its log is durable at
  // every acknowledged entry, and libraft 0.15 was seen to call back into its
  // I/O after raft_uv_close released it (after a full disk), which crashed the
  // server on its way out. Leaving its files as a crash would is the path every
  // start already handles (docs/decisions.md).
  closing_ = true;
  (void)store_->SetLog(nullptr);
  if (gauges_ && gauges_->timer) gauges_->timer->Stop();
  if (done) done();
}

}  // namespace berth::replica
