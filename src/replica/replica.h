// The replicated command log: the store's batches as the entries of a Raft log
// kept by libraft (Debian's libraft-dev, on the server's libuv loop), applied to
// state.db by every server once committed. A single server is a cluster of one
// on the same path: its log is on disk under <data>/raft, an entry is committed
// once it is there, and a restart replays what state.db does not hold yet.
//
// Snapshots are copies of state.db (sqlite3_serialize) taken every
// `snapshot_threshold` entries; the log behind them is truncated (keeping
// `snapshot_trailing` entries) and a server that falls behind or joins installs
// one (Store::Restore).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "base/result.h"
#include "net/stream.h"
#include "store/store.h"

extern "C" {
#include <raft.h>
}

struct uv_loop_s;

namespace berth::net::tls {
class ClientContext;
}
namespace berth::net {
class AfterIo;
class Timer;
}  // namespace berth::net

namespace berth::replica {

// The state machine libraft applies committed entries to: the store. Usable with
// any raft instance (the server's, or raft/fixture.h's in tests).
class Fsm {
 public:
  explicit Fsm(store::Store* store);
  ~Fsm();
  raft_fsm* fsm() { return &fsm_; }
  // The raft instance this state machine serves (for the index of each entry).
  void Attach(raft* r) { raft_ = r; }
  // The results of the entry applied last (what a leader's raft_apply callback
  // is given), and how many snapshots were taken and installed.
  uint64_t snapshots_taken() const { return snapshots_taken_; }
  uint64_t snapshots_installed() const { return snapshots_installed_; }
  uint64_t last_snapshot_bytes() const { return last_snapshot_bytes_; }
  double last_snapshot_seconds() const { return last_snapshot_seconds_; }

  // From now on a follower applies committed entries after the acknowledgement
  // that carried their commit index has left, not before it: libraft applies
  // them just before it answers the leader, which would put every follower's
  // apply on the path of every commit. Without this call (tests on raft's
  // fixture) every entry is applied at once.
  void DeferFollowerApplies(uv_loop_s* loop);
  // Applies what was deferred, in order. False when the storage refused an entry
  // (it stays first in line; tried again on the next call).
  bool Drain();
  bool drained() const { return deferred_.empty(); }
  // The last index whose entry is in the store's state, given libraft's count:
  // a deferred entry is counted applied by libraft before the store has it.
  uint64_t AppliedBefore(uint64_t raft_applied) const {
    return deferred_.empty() ? raft_applied : deferred_.front().index - 1;
  }

 private:
  static int Apply(raft_fsm* fsm, const raft_buffer* buf, void** result);
  static int Snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs);
  static int Restore(raft_fsm* fsm, raft_buffer* buf);

  raft_fsm fsm_{};
  store::Store* store_;
  raft* raft_ = nullptr;
  struct Deferred {
    uint64_t index;
    std::string entry;
  };
  std::deque<Deferred> deferred_;
  std::unique_ptr<net::AfterIo> after_io_;  // set: followers defer
  std::unique_ptr<net::Timer> retry_;
  bool queued_now_ = false;  // an entry was deferred in this loop iteration
  void Arm();
  void RetryLater();
  Result<store::Results> last_{store::Results{}};
  uint64_t snapshots_taken_ = 0;
  uint64_t snapshots_installed_ = 0;
  uint64_t last_snapshot_bytes_ = 0;
  double last_snapshot_seconds_ = 0;
};

struct Options {
  std::string dir;      // the log and snapshots (<data>/raft), made 0700 if missing
  uint64_t id = 0;      // this server's id in the cluster, never 0
  std::string address;  // where peers reach it: host:port of its API
  // A new log is not bootstrapped as a cluster of one: this server waits for a
  // cluster's leader to add it (berth server --join).
  bool join = false;
  // How peers are reached: TLS trusting the cluster CA, presenting this
  // server's peer certificate (asked for each connection, so a renewed one is
  // used from then on). Without it no peer is ever reached.
  std::function<std::shared_ptr<net::tls::ClientContext>()> peer_tls;
  unsigned connect_retry_ms = 250;  // between attempts to reach a peer
  unsigned connect_timeout_ms = 2000;
  unsigned heartbeat_ms = 100;
  unsigned election_timeout_ms = 1000;
  // The leader acts only while a majority of voters was heard from within this
  // (the lease); shorter than the election timeout, so a leader cut off stops
  // acting before the others can elect another (docs/decisions.md).
  unsigned lease_ms = 750;
  unsigned snapshot_threshold = 1024;  // entries between snapshots
  unsigned snapshot_trailing = 1024;   // entries kept behind a snapshot
  // libraft keeps three open segments of this size made ahead of need (bigger
  // entries get a segment of their own).
  size_t segment_bytes = 4 << 20;
};

// One server of the cluster as this one sees it (`berth server ls`).
struct ServerView {
  uint64_t id = 0;
  std::string address;
  std::string role;  // voter, standby or spare
  bool leader = false;
  // Known on the leader (-1 elsewhere): the last index it holds, how long
  // since the leader last sent to it (0 for the leader itself), and whether it
  // answered within the election timeout (libraft keeps no time of the answer).
  int64_t match_index = -1;
  int64_t sent_ms_ago = -1;
  bool recent_contact = false;
  // Known on the leader (-1 elsewhere): how long since it last heard from the
  // server (Replica::SilentMs; 0 for itself).
  int64_t heard_ms_ago = -1;
};

struct LogStatus {
  uint64_t id = 0;
  uint64_t term = 0;
  bool leader = false;
  uint64_t leader_id = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t last_index = 0;
  std::vector<ServerView> servers;
};

class Replica : public store::Log {
 public:
  // Opens (or, the first time, bootstraps as a cluster of one) the log in
  // o.dir and starts it; the store's batches go to it from now on.
  static Result<std::unique_ptr<Replica>> Start(uv_loop_s* loop, Options o, store::Store* store,
                                                metrics::Registry* metrics);
  ~Replica() override;

  uint64_t Propose(const std::string& entry, Applied applied) override;
  // `done` fires once every entry before it is applied on this server (a
  // barrier entry committed in this leader's term), or with why not.
  void Barrier(std::function<void(Status)> done);
  // Stops taking proposals (the store refuses its batches from now on); `done`
  // fires at once. Call it once nothing is in flight. libraft stays on the loop
  // (its timer points into this object): the Replica must outlive the loop's
  // last run, as the server's does (it exits).
  void Close(std::function<void()> done);

  bool leader() const;
  uint64_t term() const { return raft_.current_term; }
  // The index of the last entry applied on this server (commands, barriers and
  // configurations alike), the one being applied included: libraft counts an
  // entry applied only once its callbacks, which send the answers, returned.
  // Never past what the state holds: a follower's deferred entries are not yet
  // counted (an answer's Berth-Applied-Index promises its body has them).
  uint64_t applied_index() const {
    return std::max<uint64_t>(fsm_.AppliedBefore(raft_.last_applied), store_->applied_index());
  }
  // The leader under its lease, ready: a majority of voters (itself included)
  // was heard from within lease_ms, and an entry of the current term was
  // committed and applied here (so was everything earlier leaders committed;
  // a barrier is proposed for it as soon as this server leads). What the
  // leader does beyond the log (controllers, agents, reads that say they are
  // the leader's) it does only then.
  bool acting() const;
  // Whether an entry of the current term was applied on this server.
  bool ready() const { return ready_term_ != 0 && ready_term_ == raft_.current_term; }
  // On the acting leader: milliseconds since server `id` last sent anything to
  // this one, counted from when this server started acting for one not heard
  // from since (0 for itself); -1 on a server that does not act.
  int64_t SilentMs(uint64_t id) const;
  // How many voters the configuration holds, server `except` not counted.
  unsigned Voters(uint64_t except = 0) const;
  // How many servers the configuration holds, whatever their role.
  unsigned Members() const { return raft_.configuration.n; }
  // The leader's address (host:port) as this server knows it; empty when none.
  std::string LeaderAddress();
  // The cluster's members and this server's view of the log.
  LogStatus Describe();
  const Fsm& fsm() const { return fsm_; }
  // Told whenever this server starts or stops acting as the leader (acting(),
  // checked every 20 ms).
  void OnLeadership(std::function<void(bool leader)> cb) { on_leadership_ = std::move(cb); }

  // Membership, on the leader: adds a server (as a voter or a standby, once it
  // has caught up with the log), or removes one.
  void AddServer(uint64_t id, const std::string& address, bool voter, std::function<void(Status)> done);
  void RemoveServer(uint64_t id, std::function<void(Status)> done);
  // Whether server `id` may open a peer connection to this one: a member, or
  // anyone while this server belongs to no cluster yet (it is being added).
  bool MayConnect(uint64_t id) const;
  // A peer's connection, taken over from the HTTP server (GET /v1/raft): `early`
  // holds bytes it sent after its request.
  void AcceptPeer(uint64_t id, const std::string& address, std::unique_ptr<net::Stream> stream, std::string early);
  // Closes every peer connection (shutdown, before the HTTP server goes).
  void ClosePeers();

 private:
  Replica(Options o, store::Store* store);
  void Observe();  // refreshes the gauges
  void WatchLeadership();
  // What became of an entry this server proposed in `term`: applied here (the
  // term is ready), or failed (another entry must make it ready).
  void NoteOutcome(uint64_t term, bool applied);
  struct Proposal;
  struct BarrierReq;

  Options options_;
  store::Store* store_;
  Fsm fsm_;
  raft raft_{};
  raft_io io_{};
  bool started_ = false;
  bool closing_ = false;
  struct Transport;
  std::unique_ptr<Transport> transport_;
  struct Gauges;
  std::unique_ptr<Gauges> gauges_;
  std::function<void(bool)> on_leadership_;
  bool was_leader_ = false;
  uint64_t acting_since_ms_ = 0;  // loop time this server last started acting
  uint64_t ready_term_ = 0;       // the last term an entry of which was applied here
  uint64_t pending_term_ = 0;     // the term of an entry in flight that will make it ready, 0 if none
};

}  // namespace berth::replica
