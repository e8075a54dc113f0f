// The state path: an ordered log of typed commands, applied one at a time on the
// loop thread. Applying a command is one change to SQLite plus the update of the
// in-memory state; commands queued during one loop iteration share one
// transaction (group commit), and their replies go out only after it commits.
//
// The log (table command_log: seq, term, type, payload, time) is what a
// replication layer ships: a follower decodes each entry with
// StateMachine::Decode and applies it the same way.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
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
  bool group_commit = true;  // off: one transaction per command (for comparison)
  size_t max_batch = 4096;   // commands per transaction at most
  // The command log keeps the last this many entries (0: all). Until replication
  // truncates it behind snapshots, nothing reads older ones, and a log that grows
  // forever would grow state.db with it (docs/decisions.md).
  uint64_t log_keep = 1000;
};

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
  // Applies and commits everything queued. Returns after the replies went out.
  void Flush();
  // Queues an audit entry: written with the next batch of commands, or at the end
  // of the Flush that made its answer (before the answer is handed to the socket).
  void Audit(AuditEntry entry);
  size_t queued() const { return queue_.size(); }

  // Sequence number of the last committed command.
  uint64_t last_seq() const { return last_seq_; }
  int schema_version() const { return schema_version_; }
  Db& db() { return *db_; }
  // Flushes what is queued and closes the database (checkpointing the WAL).
  Status Close();

  static constexpr int kSchemaVersion = 14;

  // Checkpoints the WAL into the database file from a thread of its own, so a
  // commit never pays for one (SQLite's automatic checkpoint would run inside the
  // committing transaction, on the loop thread).
  void StartCheckpointer();

 private:
  Store() = default;
  Status Migrate();
  Status Run(const char* sql);  // a cached statement without parameters
  void FlushQueue();
  Status WriteAudit();  // inside an open transaction: the queued entries
  Status ApplyOne(const Command& cmd, std::string* reply, Error* error, bool* applied);

  struct Item {
    CommandPtr cmd;
    Reply reply;
  };

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
  uint64_t last_seq_ = 0;
  uint64_t log_first_ = 1;  // the oldest seq the log holds
  int schema_version_ = 0;

  metrics::Histogram* batch_size_ = nullptr;
  metrics::Histogram* commit_seconds_ = nullptr;
  metrics::Counter* commands_ok_ = nullptr;
  metrics::Counter* commands_refused_ = nullptr;
  metrics::Counter* commit_failures_ = nullptr;
};

}  // namespace berth::store
