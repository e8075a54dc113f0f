#include "store/store.h"

#include <chrono>
#include <ctime>

#include "base/log.h"

namespace berth::store {

namespace {

// Schema migrations; entry i takes the schema from version i to i + 1. Never edit
// a shipped entry: add one.
const char* const kMigrations[] = {
    // 0 -> 1
    R"sql(
    CREATE TABLE command_log (
      seq     INTEGER PRIMARY KEY,
      term    INTEGER NOT NULL DEFAULT 0,
      type    TEXT NOT NULL,
      payload TEXT NOT NULL,
      time_ms INTEGER NOT NULL
    );
    CREATE TABLE clusters (
      name       TEXT PRIMARY KEY,
      arn        TEXT NOT NULL,
      status     TEXT NOT NULL,
      created_ms INTEGER NOT NULL
    );
    CREATE TABLE tokens (
      id         TEXT PRIMARY KEY,
      role       TEXT NOT NULL,
      hash       TEXT NOT NULL UNIQUE,
      created_ms INTEGER NOT NULL
    );
    )sql",
    // 1 -> 2
    R"sql(
    CREATE TABLE task_definitions (
      family        TEXT NOT NULL,
      revision      INTEGER NOT NULL,
      status        TEXT NOT NULL,
      doc           TEXT NOT NULL,
      registered_ms INTEGER NOT NULL,
      PRIMARY KEY (family, revision)
    );
    )sql",
    // 2 -> 3
    R"sql(
    CREATE TABLE nodes (
      id            TEXT PRIMARY KEY,
      cluster       TEXT NOT NULL,
      hostname      TEXT NOT NULL,
      status        TEXT NOT NULL,
      cpu           INTEGER NOT NULL,
      memory        INTEGER NOT NULL,
      attributes    TEXT NOT NULL,
      registered_ms INTEGER NOT NULL
    );
    CREATE TABLE tasks (
      id             TEXT PRIMARY KEY,
      cluster        TEXT NOT NULL,
      node           TEXT NOT NULL,
      family         TEXT NOT NULL,
      revision       INTEGER NOT NULL,
      grp            TEXT NOT NULL,
      started_by     TEXT NOT NULL,
      service        TEXT NOT NULL,
      deployment     TEXT NOT NULL,
      desired        TEXT NOT NULL,
      last           TEXT NOT NULL,
      stopped_reason TEXT NOT NULL,
      stop_code      TEXT NOT NULL,
      health         TEXT NOT NULL,
      containers     TEXT NOT NULL,
      created_ms     INTEGER NOT NULL,
      started_ms     INTEGER NOT NULL,
      stopping_ms    INTEGER NOT NULL,
      stopped_ms     INTEGER NOT NULL
    );
    CREATE INDEX tasks_by_node ON tasks (node);
    )sql",
    // 3 -> 4
    R"sql(
    CREATE TABLE services (
      cluster TEXT NOT NULL,
      name    TEXT NOT NULL,
      doc     TEXT NOT NULL,
      PRIMARY KEY (cluster, name)
    );
    )sql",
    // 4 -> 5: the registry (src/registry/state.h); blobs are files, not rows.
    R"sql(
    CREATE TABLE repositories (
      name           TEXT PRIMARY KEY,
      immutable      INTEGER NOT NULL,
      anonymous_pull INTEGER NOT NULL,
      policy         TEXT NOT NULL,
      created_ms     INTEGER NOT NULL
    );
    CREATE TABLE manifests (
      repo       TEXT NOT NULL,
      digest     TEXT NOT NULL,
      media_type TEXT NOT NULL,
      body       TEXT NOT NULL,
      pushed_ms  INTEGER NOT NULL,
      PRIMARY KEY (repo, digest)
    );
    CREATE TABLE tags (
      repo   TEXT NOT NULL,
      tag    TEXT NOT NULL,
      digest TEXT NOT NULL,
      PRIMARY KEY (repo, tag)
    );
    CREATE TABLE uploads (
      id         TEXT PRIMARY KEY,
      repo       TEXT NOT NULL,
      created_ms INTEGER NOT NULL
    );
    )sql",
    // 5 -> 6: host ports a node keeps for itself (sshd, berth), as "22,7070,53/udp".
    R"sql(
    ALTER TABLE nodes ADD COLUMN reserved_ports TEXT NOT NULL DEFAULT '';
    )sql",
    // 6 -> 7: tasks_by_node goes: nothing reads tasks by node from SQLite (the
    // state is in memory; the table is read whole at start), and every task
    // insert paid for a third B-tree.
    R"sql(
    DROP INDEX IF EXISTS tasks_by_node;
    )sql",
    // 7 -> 8: when a revision was deregistered, for its retention (INACTIVE rows
    // from before count from the migration).
    R"sql(
    ALTER TABLE task_definitions ADD COLUMN deregistered_ms INTEGER NOT NULL DEFAULT 0;
    UPDATE task_definitions SET deregistered_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000
      WHERE status = 'INACTIVE';
    )sql",
    // 8 -> 9: token lifecycle (expiry, uses left, last use) and node identities:
    // what proves each node (its certificate's serial, or the token that joined
    // it), and the node ids revoked.
    R"sql(
    ALTER TABLE tokens ADD COLUMN expires_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tokens ADD COLUMN uses_left INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN identity TEXT NOT NULL DEFAULT '';
    CREATE TABLE revoked_nodes (
      id         TEXT PRIMARY KEY,
      revoked_ms INTEGER NOT NULL
    );
    )sql",
    // 9 -> 10: a cluster's task policy (model/policy.h), as JSON; '{}' allows nothing privileged.
    R"sql(
    ALTER TABLE clusters ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
    )sql",
    // 10 -> 11: the blobs pushed (or mounted) into each repository: a blob is read
    // through a repository only if one of its manifests references it or it is here.
    R"sql(
    CREATE TABLE repo_blobs (
      repo     TEXT NOT NULL,
      digest   TEXT NOT NULL,
      added_ms INTEGER NOT NULL,
      PRIMARY KEY (repo, digest)
    );
    )sql",
    // 11 -> 12: secrets, sealed (model/secret.h): the value never in clear.
    R"sql(
    CREATE TABLE secrets (
      name       TEXT PRIMARY KEY,
      version    INTEGER NOT NULL,
      sealed     TEXT NOT NULL,
      key_id     TEXT NOT NULL,
      clusters   TEXT NOT NULL DEFAULT '[]',  -- the clusters whose tasks may take it; [] every one
      created_ms INTEGER NOT NULL,
      updated_ms INTEGER NOT NULL
    );
    )sql",
    // 12 -> 13: the audit log (store/audit.h): not state, never in the command log.
    R"sql(
    -- Ids grow (retention removes the oldest, never the newest). One index: the
    -- table is written with every change, and each index is another B-tree to write.
    CREATE TABLE audit (
      id      INTEGER PRIMARY KEY,
      time_ms INTEGER NOT NULL,
      actor   TEXT NOT NULL,
      role    TEXT NOT NULL,
      address TEXT NOT NULL,
      method  TEXT NOT NULL,
      path    TEXT NOT NULL,
      status  INTEGER NOT NULL,
      code    TEXT NOT NULL,
      message TEXT NOT NULL
    );
    CREATE INDEX audit_time ON audit (time_ms);
    )sql",
    // 13 -> 14: what a token is limited to (model/scope.h), as JSON; '{}' no limit.
    R"sql(
    ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT '{}';
    )sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == Store::kSchemaVersion,
              "one migration per schema version");

// The codes store::Db gives SQLite's failures (sqlite.cc).
bool IsStorageError(const Error& e) { return e.code.rfind("Storage", 0) == 0; }

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(StoreOptions options, StateMachine* sm, metrics::Registry* metrics) {
  std::unique_ptr<Store> s(new Store());
  s->options_ = std::move(options);
  s->sm_ = sm;
  Result<std::unique_ptr<Db>> db = Db::Open(s->options_.path);
  if (!db) return db.take_error();
  s->db_ = std::move(db.value());
  if (Status st = s->Migrate(); !st) return st.take_error();
  Result<int64_t> seq = s->db_->QueryInt("SELECT COALESCE(MAX(seq), 0) FROM command_log");
  if (!seq) return seq.take_error();
  s->last_seq_ = static_cast<uint64_t>(seq.value());
  Result<int64_t> first = s->db_->QueryInt("SELECT COALESCE(MIN(seq), 1) FROM command_log");
  if (!first) return first.take_error();
  s->log_first_ = static_cast<uint64_t>(first.value());
  if (Status st = sm->Load(*s->db_); !st) return st.take_error();

  std::vector<double> sizes = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
  s->batch_size_ =
      metrics->Histograms("berth_store_commit_batch_size", "Commands per committed transaction", sizes)->With({});
  s->commit_seconds_ = metrics
                           ->Histograms("berth_store_commit_duration_seconds",
                                        "Time to apply and commit one transaction", metrics::LatencyBuckets())
                           ->With({});
  auto* commands = metrics->Counters("berth_store_commands_total", "Commands by outcome", {"outcome"});
  s->commands_ok_ = commands->With({"applied"});
  s->commands_refused_ = commands->With({"refused"});
  s->commit_failures_ =
      metrics->Counters("berth_store_commit_failures_total", "Transactions that failed to commit")->With({});
  log::Info("store", "opened",
            {{"path", s->options_.path},
             {"schema", s->schema_version_},
             {"seq", s->last_seq_},
             {"group_commit", s->options_.group_commit ? "on" : "off"}});
  return s;
}

Store::~Store() { (void)Close(); }

void Store::StartCheckpointer() {
  if (checkpointer_.joinable()) return;
  (void)db_->Exec("PRAGMA wal_autocheckpoint=0");
  std::string path = options_.path;
  checkpointer_ = std::thread([this, path] {
    Result<std::unique_ptr<Db>> db = Db::Open(path);
    if (!db) {
      log::Error("store", "checkpointer cannot open the database", {{"error", db.error().message}});
      return;
    }
    std::unique_lock<std::mutex> lock(checkpoint_mu_);
    while (!checkpoint_stop_) {
      checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(500));
      if (checkpoint_stop_) break;
      if (commits_since_checkpoint_.exchange(0) == 0) continue;
      lock.unlock();
      // PASSIVE never waits for the writer and never blocks it.
      Status s = (*db)->Exec("PRAGMA wal_checkpoint(PASSIVE)");
      if (!s) log::Warn("store", "checkpoint failed", {{"error", s.error().message}});
      lock.lock();
    }
  });
}

Status Store::Run(const char* sql) {
  Result<Stmt*> st = db_->Cached(sql);
  if (!st) return st.take_error();
  return (*st)->Run();
}

Status Store::Migrate() {
  Result<int64_t> v = db_->QueryInt("PRAGMA user_version");
  if (!v) return v.take_error();
  int version = static_cast<int>(v.value());
  if (version > kSchemaVersion) {
    return Error::Internal("state.db has schema version " + std::to_string(version) +
                           ", newer than this berth understands (" + std::to_string(kSchemaVersion) +
                           "); run a newer berth");
  }
  while (version < kSchemaVersion) {
    if (Status s = db_->Exec("BEGIN IMMEDIATE"); !s) return s;
    Status s = db_->Exec(kMigrations[version]);
    if (s) s = db_->Exec("PRAGMA user_version=" + std::to_string(version + 1));
    if (s) s = db_->Exec("COMMIT");
    if (!s) {
      (void)db_->Exec("ROLLBACK");
      return Error::Internal("migration to schema " + std::to_string(version + 1) + " failed: " + s.error().message);
    }
    version++;
    log::Info("store", "migrated", {{"schema", version}});
  }
  schema_version_ = version;
  return {};
}

void Store::Audit(AuditEntry entry) {
  bool first = queue_.empty() && audit_queue_.empty();
  audit_queue_.push_back(std::move(entry));
  if (first && wakeup_ && !in_flush_) wakeup_();
}

Status Store::WriteAudit() {
  for (const AuditEntry& e : audit_queue_) {
    if (Status s = InsertAudit(*db_, e); !s) return s;
  }
  audit_queue_.clear();
  return {};
}

void Store::Submit(CommandPtr cmd, Reply reply) {
  bool first = queue_.empty();
  queue_.push_back(Item{std::move(cmd), std::move(reply)});
  if (first && wakeup_) wakeup_();
}

// Applies one command inside the open transaction, under a savepoint so that a
// refused command leaves no rows behind, and appends it to the log.
Status Store::ApplyOne(const Command& cmd, std::string* reply, Error* error, bool* applied) {
  *applied = false;
  if (Status s = Run("SAVEPOINT cmd"); !s) return s;
  Result<std::string> r = sm_->Apply(*db_, cmd);
  // A storage failure is not the command's fault, and the state machine may have
  // changed memory before the write that failed: the whole batch fails and memory
  // is rebuilt from disk (see FlushQueue), so a failed write changes nothing.
  if (!r && IsStorageError(r.error())) return r.take_error();
  if (!r) {
    *error = r.take_error();
    if (Status s = Run("ROLLBACK TO cmd"); !s) return s;
    return Run("RELEASE cmd");
  }
  Result<Stmt*> ins =
      db_->Cached("INSERT INTO command_log (seq, term, type, payload, time_ms) VALUES (?1, 0, ?2, ?3, ?4)");
  if (!ins) return ins.take_error();
  (*ins)->Bind(1, static_cast<int64_t>(last_seq_ + 1)).Bind(2, cmd.Type()).Bind(3, cmd.Encode()).Bind(4, cmd.time_ms);
  if (Status s = (*ins)->Run(); !s) return s;
  if (Status s = Run("RELEASE cmd"); !s) return s;
  last_seq_++;
  *reply = std::move(r.value());
  *applied = true;
  return {};
}

void Store::Flush() {
  if (!db_) return;       // closed: nothing more is written
  if (in_flush_) return;  // a reply that flushes again waits for the loop below
  in_flush_ = true;
  // The after-flush hook may queue more: one more round applies what it queued
  // at once; anything after that waits for the next loop iteration, so sockets
  // are served between rounds of a long piece of work.
  for (int round = 0; round < 2; round++) {
    FlushQueue();
    if (!after_flush_) break;
    after_flush_();
    if (queue_.empty()) break;
  }
  // Audit entries of the answers this flush made: committed before those answers
  // reach the socket (the HTTP server hands them over after this returns). Without
  // an fsync of their own (synchronous=NORMAL for this one transaction): in the
  // WAL they survive the process's crash at once, and a power loss from the next
  // commit of a change on, which fsyncs the WAL they are in.
  if (!audit_queue_.empty()) {
    Status tx = db_->Exec("PRAGMA synchronous=NORMAL");
    if (tx) tx = Run("BEGIN IMMEDIATE");
    if (tx) tx = WriteAudit();
    if (tx) tx = Run("COMMIT");
    if (Status full = db_->Exec("PRAGMA synchronous=FULL"); !full) {
      log::Error("store", "cannot restore synchronous=FULL", {{"error", full.error().message}});
      abort();  // every later commit would be acknowledged before it is durable
    }
    if (!tx) {
      (void)db_->Exec("ROLLBACK");
      log::Error("store", "audit entries could not be written",
                 {{"error", tx.error().message}, {"entries", audit_queue_.size()}});
      audit_queue_.clear();
    } else {
      commits_since_checkpoint_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  in_flush_ = false;
  if (!queue_.empty() && wakeup_) wakeup_();
}

void Store::FlushQueue() {
  while (!queue_.empty()) {
    std::vector<Item> batch;
    size_t n = std::min(queue_.size(), options_.group_commit ? options_.max_batch : size_t{1});
    batch.reserve(n);
    for (size_t i = 0; i < n; i++) batch.push_back(std::move(queue_[i]));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<long>(n));

    int64_t t0 = MonotonicNs();
    uint64_t seq_before = last_seq_;
    std::vector<Result<std::string>> results;
    results.reserve(n);
    Status tx = Run("BEGIN IMMEDIATE");
    for (size_t i = 0; i < n && tx; i++) {
      std::string reply;
      Error err;
      bool applied = false;
      tx = ApplyOne(*batch[i].cmd, &reply, &err, &applied);
      if (!tx) break;
      if (applied)
        results.emplace_back(std::move(reply));
      else
        results.emplace_back(std::move(err));
    }
    // The log's oldest entries go in the same transaction, a thousand or more at
    // a time (one range delete on the integer key).
    uint64_t keep_from = options_.log_keep > 0 && last_seq_ > options_.log_keep ? last_seq_ - options_.log_keep + 1 : 0;
    bool trim = tx && keep_from >= log_first_ + 1000;
    if (trim) {
      Result<Stmt*> del = db_->Cached("DELETE FROM command_log WHERE seq < ?1");
      if (!del)
        tx = del.take_error();
      else
        tx = (*del)->Bind(1, static_cast<int64_t>(keep_from)).Run();
    }
    // Audit entries queued since the last commit ride along.
    std::vector<AuditEntry> audited;
    if (tx && !audit_queue_.empty()) {
      audited = audit_queue_;
      tx = WriteAudit();
    }
    if (tx) tx = Run("COMMIT");
    if (!tx && !audited.empty()) audit_queue_ = std::move(audited);  // tried again at the end of the flush
    if (tx && trim) log_first_ = keep_from;
    if (!tx) {
      // The batch is lost as a whole: undo the rows and rebuild memory from disk.
      commit_failures_->Inc();
      (void)db_->Exec("ROLLBACK");
      last_seq_ = seq_before;
      log::Error("store", "commit failed; batch refused", {{"error", tx.error().message}, {"commands", n}});
      if (Status s = sm_->Load(*db_); !s) {
        log::Error("store", "reloading state after a failed commit failed", {{"error", s.error().message}});
        abort();  // memory no longer matches disk: continuing would serve wrong state
      }
      Error e = tx.error();
      e.kind = e.code == "StorageBusy"   ? ErrorKind::kUnavailable
               : e.code == "StorageFull" ? ErrorKind::kInsufficientStorage
                                         : ErrorKind::kInternal;
      e.message = "the change could not be stored: " + e.message;
      for (Item& it : batch) it.reply(e);
      continue;
    }
    commits_since_checkpoint_.fetch_add(1, std::memory_order_relaxed);
    batch_size_->Observe(static_cast<double>(n));
    double seconds = static_cast<double>(MonotonicNs() - t0) / 1e9;
    commit_seconds_->Observe(seconds);
    if (seconds > 0.25) {
      log::Warn("store", "slow commit", {{"seconds", seconds}, {"commands", n}, {"first", batch[0].cmd->Type()}});
    }
    for (size_t i = 0; i < n; i++) {
      if (results[i])
        commands_ok_->Inc();
      else
        commands_refused_->Inc();
      batch[i].reply(std::move(results[i]));
    }
  }
}

Status Store::Close() {
  if (!db_) return {};
  if (checkpointer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(checkpoint_mu_);
      checkpoint_stop_ = true;
    }
    checkpoint_cv_.notify_all();
    checkpointer_.join();
  }
  Flush();
  (void)db_->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  Status s = db_->Close();
  db_.reset();
  return s;
}

}  // namespace berth::store
