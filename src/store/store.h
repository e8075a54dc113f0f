// The state path: an ordered log of typed commands, applied one at a time on the
// loop thread. Applying a command is one change to SQLite plus the update of the
// in-memory state; commands queued go, in order, as batches of what is expected to
// apply within a budget (StoreOptions::entry_budget_ns, ApplyCost), each one log
// entry applied in one transaction, and their replies go out only after it.
//
// The log is Raft's (replica::Replica, over libraft): a batch is encoded
// (EncodeBatch) and proposed to the Log; once committed, every server applies it
// with ApplyEntry, which records the entry's index in the same transaction, so a
// restart knows which entries state.db already holds. Without a Log (unit tests)
// a batch is applied at once by the same ApplyEntry path.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/metrics.h"
#include "base/result.h"
#include "store/audit.h"
#include "store/sqlite.h"

namespace berth::json {
class Doc;
}

namespace berth::store {

// A mutation. Concrete commands live in the model.
class Command {
 public:
  virtual ~Command() = default;
  virtual const char* Type() const = 0;
  // The command's fields as a JSON object (the log payload).
  virtual std::string Encode() const = 0;
  // How much applying it does, in its own unit (the tasks a PlaceTasks places,
  // the reports a ReportTasks carries): entries are cut by what their commands
  // are expected to cost (ApplyCost), and a command of thousands of tasks costs
  // thousands of times one of one.
  virtual size_t Work() const { return 1; }
  // Wall-clock time the command was accepted; part of the command, so replaying
  // the log gives the same state.
  int64_t time_ms = 0;
};
using CommandPtr = std::unique_ptr<Command>;

// The state the log builds. Implemented by the model.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Rebuilds the in-memory state from the tables (at start, and after a failed commit).
  virtual Status Load(Db& db) = 0;
  // Applies `cmd` inside the open transaction: checks all of it against the
  // current state before changing anything (a refusal changes nothing), then
  // writes its rows and updates memory. A storage error (code "Storage…") may come
  // after memory changed: the store then fails the whole batch and calls Load.
  // Returns the reply body.
  virtual Result<std::string> Apply(Db& db, const Command& cmd) = 0;
  // Reads back a logged command.
  virtual Result<CommandPtr> Decode(std::string_view type, std::string_view payload, int64_t time_ms) = 0;
};

struct StoreOptions {
  std::string path;          // the state.db file
  bool group_commit = true;  // off: one command per entry and transaction (for comparison)
  size_t max_batch = 4096;   // commands per entry at most
  // Entries proposed and not yet applied at most: what arrives meanwhile waits
  // and goes as one entry when the log is free, so each disk write carries what
  // came during the last one (group commit).
  size_t max_in_flight = 1;
  // A batch is refused (507) unless the file system of state.db has this much room
  // beyond four times the entry: a change the log accepted must also fit in
  // state.db, or it could be neither refused nor applied.
  uint64_t reserve_bytes = 1 << 20;
  // The time applying one entry is expected to take at most: an entry takes
  // commands from the queue while their estimated cost (ApplyCost) fits, and
  // at least one. The loop thread applies an entry in one go, so this bounds
  // how long it stops serving sockets for one. 0: no bound but max_batch.
  int64_t entry_budget_ns = 8'000'000;
  // What a unit of work of a command type not applied yet is taken to cost.
  int64_t unknown_cost_ns = 20'000;
  // Off: the costs stay as `unknown_cost_ns` (tests that count entries).
  bool learn_costs = true;
};

// What applying commands costs, per command type and unit of work
// (Command::Work), learned from the entries applied: a moving average of each
// entry's time per unit, so it follows the state's size and the machine's load.
class ApplyCost {
 public:
  explicit ApplyCost(int64_t unknown_ns = 20'000) : unknown_ns_(unknown_ns) {}
  // The nanoseconds `cmd` is expected to take to apply.
  int64_t Estimate(const Command& cmd) const;
  // Commands of `type` (a Command::Type(): text of static storage, kept by
  // reference) took `ns` for `units` of work in one entry.
  void Observe(std::string_view type, int64_t ns, size_t units);
  // How many of `count` queued commands one entry takes, `cost_of(i)` being
  // the estimate of the i-th: as many from the front as fit `budget_ns`
  // together, at least one, at most `max`. A budget of 0 takes `max`. Costs
  // are asked for in order, and no further than the first that does not fit.
  template <typename CostOf>
  static size_t Fit(size_t count, int64_t budget_ns, size_t max, CostOf cost_of) {
    size_t limit = std::min(count, max);
    if (budget_ns <= 0) return limit;
    int64_t sum = 0;
    size_t n = 0;
    while (n < limit) {
      sum += cost_of(n);
      if (n > 0 && sum > budget_ns) break;
      n++;
    }
    return n;
  }

 private:
  int64_t unknown_ns_;
  std::map<std::string_view, double> ns_per_unit_;
};

// What applying one entry gave: each command's reply or refusal, in order.
using Results = std::vector<Result<std::string>>;

// Where batches go when the state is replicated (replica::Replica). Propose takes
// one encoded batch; `applied` fires on this server once ApplyEntry applied it
// (its results), or with an error when the entry will never be applied here
// (not the leader, the log refused it). Propose returns the index the entry was
// given in the log, or 0 when it was refused at once (`applied` has fired).
class Log {
 public:
  virtual ~Log() = default;
  using Applied = std::function<void(Result<Results>)>;
  virtual uint64_t Propose(const std::string& entry, Applied applied) = 0;
};

// One batch as a log entry: "BB1", a count, then per command its type, time and
// payload, each length-prefixed (little-endian).
std::string EncodeBatch(const std::vector<const Command*>& commands);
Result<std::vector<CommandPtr>> DecodeBatch(std::string_view entry, StateMachine* sm);

class Store {
 public:
  using Reply = std::function<void(Result<std::string>)>;

  // Opens the database, runs migrations up to the current schema and loads the state.
  static Result<std::unique_ptr<Store>> Open(StoreOptions options, StateMachine* sm, metrics::Registry* metrics);
  ~Store();

  // Called when the first command of a new batch is queued; the owner arranges a
  // Flush() after the current loop iteration's I/O.
  void SetWakeup(std::function<void()> wakeup) { wakeup_ = std::move(wakeup); }
  // Called at the end of every Flush, after the replies; work it submits is
  // flushed in the same Flush (controllers reacting to what just committed).
  void SetAfterFlush(std::function<void()> fn) { after_flush_ = std::move(fn); }
  // Queues `cmd`; `reply` fires after the transaction holding it commits.
  void Submit(CommandPtr cmd, Reply reply);
  // Hands everything queued to the log (or, without one, applies and commits it
  // and returns after the replies went out).
  void Flush();
  // Replicated: batches go to `log` from now on (nullptr: refused, shutting
  // down), and state.db commits without an fsync of its own (the log's entry is
  // durable before it is applied; docs/decisions.md).
  Status SetLog(Log* log);
  // Applies one committed entry (the Log's state machine calls this on every
  // server, in log order): one transaction holding its commands and its index.
  // An entry at or below applied_index() is already in state.db (a restart
  // replaying its log) and is skipped. A storage failure undoes the whole entry
  // and rebuilds memory from disk; the entry must then be applied again.
  Result<Results> ApplyEntry(uint64_t index, std::string_view entry);
  // The database's bytes, for a snapshot at applied_index(); Restore replaces the
  // state with such bytes (taken at `index`) and reloads memory.
  Result<std::string> SnapshotBytes();
  Status Restore(uint64_t index, std::string_view bytes);
  // A new log starts at index 1: what state.db holds counts as before it.
  Status ResetAppliedIndex();
  // Batches handed to the log and not yet answered.
  size_t in_flight() const { return in_flight_; }
  // Queues an audit entry: written with the next batch of commands, or at the end
  // of the Flush that made its answer (before the answer is handed to the socket).
  void Audit(AuditEntry entry);
  size_t queued() const { return queue_.size(); }

  // The index of the last log entry applied to state.db.
  uint64_t applied_index() const { return applied_index_; }
  // Calls `fn` once the entry at `index` is applied here (at once when it is):
  // a follower answers a change the leader made for it only when its own state
  // shows it. Dropped, uncalled, when the store closes.
  void WhenApplied(uint64_t index, std::function<void()> fn);
  int schema_version() const { return schema_version_; }
  Db& db() { return *db_; }
  // Flushes what is queued and closes the database (checkpointing the WAL).
  Status Close();

  static constexpr int kSchemaVersion = 20;

  // Checkpoints the WAL into the database file from a thread of its own, so a
  // commit never pays for one (SQLite's automatic checkpoint would run inside the
  // committing transaction, on the loop thread).
  void StartCheckpointer();

 private:
  Store() = default;
  Status Migrate();
  Status Run(const char* sql);  // a cached statement without parameters
  void FlushQueue();
  size_t NextEntryLength() const;  // commands from the queue's front the next entry takes
  Status WriteAudit();             // inside an open transaction: the queued entries
  Status ApplyOne(const Command& cmd, std::string* reply, Error* error, bool* applied);
  // One transaction: the commands, their entry's index, the audit entries queued.
  Result<Results> ApplyCommands(uint64_t index, const std::vector<const Command*>& commands);
  Status RoomFor(size_t entry_bytes) const;

  struct Item {
    CommandPtr cmd;
    Reply reply;
  };
  void Answer(std::vector<Item>& batch, Result<Results> results, int64_t t0);
  // Batches this server proposed, by log index, with their encoding: applying
  // one of them uses the commands themselves instead of decoding the entry (the
  // same bytes decode to the same commands, tests/unit/store), once the entry
  // at that index proves to be those bytes.
  struct Proposed {
    std::vector<Item> items;
    std::string entry;
  };
  std::map<uint64_t, std::shared_ptr<Proposed>> proposed_;
  void RunWaiting();
  std::multimap<uint64_t, std::function<void()>> waiting_;  // WhenApplied, by index

  StoreOptions options_;
  StateMachine* sm_ = nullptr;
  std::unique_ptr<Db> db_;
  std::vector<Item> queue_;
  std::vector<AuditEntry> audit_queue_;
  std::function<void()> wakeup_;
  std::function<void()> after_flush_;
  std::thread checkpointer_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_stop_ = false;
  std::atomic<uint64_t> commits_since_checkpoint_{0};
  bool in_flush_ = false;
  Log* log_ = nullptr;
  bool replicated_ = false;
  size_t in_flight_ = 0;
  uint64_t applied_index_ = 0;
  int schema_version_ = 0;
  ApplyCost cost_;

  metrics::Histogram* batch_size_ = nullptr;
  metrics::Histogram* commit_seconds_ = nullptr;
  metrics::Counter* commands_ok_ = nullptr;
  metrics::Counter* commands_refused_ = nullptr;
  metrics::Counter* commit_failures_ = nullptr;
};

}  // namespace berth::store
