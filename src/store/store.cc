#include "store/store.h"

#include <sys/statvfs.h>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstring>
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
    // 14 -> 15: the command log is Raft's (replica/); state.db keeps only the index
    // of the last entry it holds, written in each entry's transaction.
    R"sql(
    DROP TABLE command_log;
    CREATE TABLE log_applied (
      id  INTEGER PRIMARY KEY CHECK (id = 1),
      idx INTEGER NOT NULL
    );
    INSERT INTO log_applied (id, idx) VALUES (1, 0);
    )sql",
    // 15 -> 16: access keys (AWS Signature Version 4) are tokens that keep their
    // secret, sealed by the SecretBox (base64; '' for a bearer token), with the
    // id of the key that sealed it.
    R"sql(
    ALTER TABLE tokens ADD COLUMN sealed_secret TEXT NOT NULL DEFAULT '';
    ALTER TABLE tokens ADD COLUMN secret_key_id TEXT NOT NULL DEFAULT '';
    )sql",
    // 16 -> 17: tags on resources, by the resource's ARN in berth's form (ECS and
    // ECR TagResource), and the custom attributes of nodes put through the API
    // (ECS PutAttributes; the agent's own stay in nodes.attributes).
    R"sql(
    CREATE TABLE resource_tags (
      resource TEXT NOT NULL,
      key      TEXT NOT NULL,
      value    TEXT NOT NULL,
      PRIMARY KEY (resource, key)
    );
    CREATE TABLE node_attributes (
      node  TEXT NOT NULL,
      name  TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY (node, name)
    );
    )sql",
    // 17 -> 18: browser sessions (POST /v1/session) are tokens of role 'session'
    // that act for another token, named here ('' for every other token); and a
    // node's agent version, as it registered (the dashboard shows it).
    R"sql(
    ALTER TABLE tokens ADD COLUMN parent TEXT NOT NULL DEFAULT '';
    ALTER TABLE nodes ADD COLUMN agent_version TEXT NOT NULL DEFAULT '';
    )sql",
    // 18 -> 19: load balancing (model/lb.h): target groups, and load balancers
    // with their listeners and rules in their doc; a node's advertised address.
    R"sql(
    CREATE TABLE target_groups (
      cluster TEXT NOT NULL,
      name    TEXT NOT NULL,
      doc     TEXT NOT NULL,
      PRIMARY KEY (cluster, name)
    );
    CREATE TABLE load_balancers (
      cluster TEXT NOT NULL,
      name    TEXT NOT NULL,
      doc     TEXT NOT NULL,
      PRIMARY KEY (cluster, name)
    );
    ALTER TABLE nodes ADD COLUMN address TEXT NOT NULL DEFAULT '';
    )sql",
    // 19 -> 20: what the agents reported of their tasks' target group health checks.
    R"sql(
    ALTER TABLE tasks ADD COLUMN target_health TEXT NOT NULL DEFAULT '';
    )sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == Store::kSchemaVersion,
              "one migration per schema version");

// The codes store::Db gives SQLite's failures (sqlite.cc).
bool IsStorageError(const Error& e) { return e.code.rfind("Storage", 0) == 0; }

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads little-endian integers and length-prefixed strings off an entry.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) { return Int(4, v); }
  bool U64(uint64_t* v) { return Int(8, v); }
  bool Bytes(size_t n, std::string_view* v) {
    if (in_.size() - pos_ < n) return false;
    *v = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }

 private:
  template <typename T>
  bool Int(int bytes, T* v) {
    if (in_.size() - pos_ < static_cast<size_t>(bytes)) return false;
    *v = 0;
    for (int i = 0; i < bytes; i++) *v |= static_cast<T>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    pos_ += static_cast<size_t>(bytes);
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
};

constexpr std::string_view kBatchMagic = "BB1";

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
  s->cost_ = ApplyCost(s->options_.unknown_cost_ns);
  Result<std::unique_ptr<Db>> db = Db::Open(s->options_.path);
  if (!db) return db.take_error();
  s->db_ = std::move(db.value());
  if (Status st = s->Migrate(); !st) return st.take_error();
  Result<int64_t> applied = s->db_->QueryInt("SELECT idx FROM log_applied WHERE id = 1");
  if (!applied) return applied.take_error();
  s->applied_index_ = static_cast<uint64_t>(applied.value());
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
             {"applied_index", s->applied_index_},
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

Status Store::SetLog(Log* log) {
  log_ = log;
  if (replicated_ || !log) return {};
  replicated_ = true;
  return db_->Exec("PRAGMA synchronous=NORMAL");
}

void Store::Submit(CommandPtr cmd, Reply reply) {
  bool first = queue_.empty();
  queue_.push_back(Item{std::move(cmd), std::move(reply)});
  if (first && wakeup_) wakeup_();
}

// Applies one command inside the open transaction, under a savepoint so that a
// refused command leaves no rows behind.
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
  if (Status s = Run("RELEASE cmd"); !s) return s;
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
    // Replicated, controllers run when an entry is applied (see FlushQueue).
    if (!after_flush_ || replicated_) break;
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
    if (Status full = db_->Exec(replicated_ ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL"); !full) {
      log::Error("store", "cannot restore the synchronous mode", {{"error", full.error().message}});
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
  // What is left waits for the next iteration, or, replicated and the log busy,
  // for the entry in flight to be applied (its callback wakes the owner).
  bool log_busy = replicated_ && log_ && in_flight_ >= options_.max_in_flight;
  if (!queue_.empty() && wakeup_ && !log_busy) wakeup_();
}

void Store::FlushQueue() {
  while (!queue_.empty() && (!replicated_ || !log_ || in_flight_ < options_.max_in_flight)) {
    std::vector<Item> batch;
    size_t n = options_.group_commit ? NextEntryLength() : 1;
    batch.reserve(n);
    for (size_t i = 0; i < n; i++) batch.push_back(std::move(queue_[i]));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<long>(n));
    int64_t t0 = MonotonicNs();
    std::vector<const Command*> commands;
    commands.reserve(n);
    for (const Item& it : batch) commands.push_back(it.cmd.get());

    if (!replicated_) {
      Answer(batch, ApplyCommands(applied_index_ + 1, commands), t0);
      continue;
    }
    if (!log_) {
      Answer(
          batch,
          Error{ErrorKind::kUnavailable, "ServerUnavailable", "the server is shutting down; the change was not made"},
          t0);
      continue;
    }
    std::string entry = EncodeBatch(commands);
    if (Status room = RoomFor(entry.size()); !room) {
      commit_failures_->Inc();
      Answer(batch, room.take_error(), t0);
      continue;
    }
    in_flight_++;
    auto held = std::make_shared<Proposed>();
    held->items = std::move(batch);
    held->entry = std::move(entry);
    auto index = std::make_shared<uint64_t>(0);
    *index = log_->Propose(held->entry, [this, held, index, t0](Result<Results> r) {
      in_flight_--;
      proposed_.erase(*index);
      Answer(held->items, std::move(r), t0);
      // Controllers react to what was applied; what they queue goes with the
      // next batch, after this iteration's I/O.
      if (after_flush_ && !in_flush_) after_flush_();
      if (!queue_.empty() && wakeup_) wakeup_();
    });
    if (*index != 0) proposed_[*index] = held;
  }
}

size_t Store::NextEntryLength() const {
  return ApplyCost::Fit(queue_.size(), options_.entry_budget_ns, options_.max_batch,
                        [this](size_t i) { return cost_.Estimate(*queue_[i].cmd); });
}

int64_t ApplyCost::Estimate(const Command& cmd) const {
  auto it = ns_per_unit_.find(cmd.Type());
  double per_unit = it == ns_per_unit_.end() ? static_cast<double>(unknown_ns_) : it->second;
  return static_cast<int64_t>(per_unit * static_cast<double>(std::max<size_t>(cmd.Work(), 1)));
}

void ApplyCost::Observe(std::string_view type, int64_t ns, size_t units) {
  if (units == 0) return;
  double sample = static_cast<double>(ns) / static_cast<double>(units);
  auto [it, fresh] = ns_per_unit_.emplace(type, sample);
  // A quarter of the new entry: one slow entry (a page fault, a busy core) moves
  // the estimate, and a few in a row take it over.
  if (!fresh) it->second += (sample - it->second) / 4;
}

void Store::Answer(std::vector<Item>& batch, Result<Results> results, int64_t t0) {
  if (!results) {
    // SQLite's failures (and the log's) say the change was not stored; others
    // (not the leader, shutting down) say what they say.
    Error e = results.take_error();
    if (IsStorageError(e)) {
      e.kind = e.code == "StorageBusy"   ? ErrorKind::kUnavailable
               : e.code == "StorageFull" ? ErrorKind::kInsufficientStorage
                                         : ErrorKind::kInternal;
      e.message = "the change could not be stored: " + e.message;
    }
    for (Item& it : batch) it.reply(e);
    return;
  }
  batch_size_->Observe(static_cast<double>(batch.size()));
  double seconds = static_cast<double>(MonotonicNs() - t0) / 1e9;
  commit_seconds_->Observe(seconds);
  if (seconds > 0.25) {
    log::Warn("store", "slow commit",
              {{"seconds", seconds}, {"commands", batch.size()}, {"first", batch[0].cmd->Type()}});
  }
  Results& r = results.value();
  for (size_t i = 0; i < batch.size(); i++) {
    if (i >= r.size()) {  // the entry was already applied (cannot happen to a new proposal)
      batch[i].reply(Error::Internal("the change was applied before this server proposed it"));
      continue;
    }
    if (r[i])
      commands_ok_->Inc();
    else
      commands_refused_->Inc();
    batch[i].reply(std::move(r[i]));
  }
}

Status Store::RoomFor(size_t entry_bytes) const {
  struct statvfs fs {};
  std::string dir =
      options_.path.substr(0, options_.path.rfind('/') == std::string::npos ? 0 : options_.path.rfind('/'));
  if (statvfs(dir.empty() ? "." : dir.c_str(), &fs) != 0) return {};  // cannot tell: let the write say
  uint64_t avail = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  uint64_t need = 4 * static_cast<uint64_t>(entry_bytes) + options_.reserve_bytes;
  if (avail >= need) return {};
  return Error{ErrorKind::kInsufficientStorage, "StorageFull",
               "the disk holding " + options_.path + " is full (" + std::to_string(avail) + " bytes free, " +
                   std::to_string(need) + " needed to log and apply this change)"};
}

Result<Results> Store::ApplyEntry(uint64_t index, std::string_view entry) {
  if (!db_) return Error{ErrorKind::kUnavailable, "StorageClosed", "the store is closed"};
  if (index <= applied_index_) return Results{};
  // One of ours: the commands are at hand.
  if (auto own = proposed_.find(index); own != proposed_.end() && own->second->entry == entry) {
    std::vector<const Command*> commands;
    commands.reserve(own->second->items.size());
    for (const Item& it : own->second->items) commands.push_back(it.cmd.get());
    return ApplyCommands(index, commands);
  }
  Result<std::vector<CommandPtr>> decoded = DecodeBatch(entry, sm_);
  if (!decoded) {
    // Every server decodes the same bytes the same way: a batch no server can
    // read is applied as nothing (its proposer hears why), so the log moves on.
    log::Error("store", "a log entry does not decode; skipped", {{"index", index}, {"error", decoded.error().message}});
    Result<Results> none = ApplyCommands(index, {});
    if (!none) return none;
    return decoded.take_error();
  }
  std::vector<const Command*> commands;
  commands.reserve(decoded->size());
  for (const CommandPtr& c : decoded.value()) commands.push_back(c.get());
  return ApplyCommands(index, commands);
}

Result<Results> Store::ApplyCommands(uint64_t index, const std::vector<const Command*>& commands) {
  Results results;
  results.reserve(commands.size());
  // Time and work per command type in this entry, for the costs that cut the
  // next ones. The clock is read where the type changes (an entry is mostly runs
  // of one type: a pass's PlaceTasks, agents' reports), not around each command.
  struct Spent {
    std::string_view type;
    int64_t ns = 0;
    size_t units = 0;
  };
  std::vector<Spent> spent;  // a few types at most: searched, not mapped
  size_t run = 0;            // spent[run - 1] is the type of the run being timed; 0: none yet
  int64_t run_start = 0;
  auto close_run = [&](int64_t now) {
    if (run) spent[run - 1].ns += now - run_start;
    run_start = now;
  };
  Status tx = Run("BEGIN IMMEDIATE");
  for (size_t i = 0; i < commands.size() && tx; i++) {
    if (options_.learn_costs) {
      std::string_view type = commands[i]->Type();
      if (!run || spent[run - 1].type != type) {
        close_run(MonotonicNs());
        auto it = std::find_if(spent.begin(), spent.end(), [&](const Spent& sp) { return sp.type == type; });
        if (it == spent.end()) it = spent.insert(spent.end(), Spent{type, 0, 0});
        run = static_cast<size_t>(it - spent.begin()) + 1;
      }
      spent[run - 1].units += std::max<size_t>(commands[i]->Work(), 1);
    }
    std::string reply;
    Error err;
    bool applied = false;
    tx = ApplyOne(*commands[i], &reply, &err, &applied);
    if (!tx) break;
    if (applied)
      results.emplace_back(std::move(reply));
    else
      results.emplace_back(std::move(err));
  }
  if (options_.learn_costs) close_run(MonotonicNs());
  if (tx) {
    Result<Stmt*> mark = db_->Cached("UPDATE log_applied SET idx = ?1 WHERE id = 1");
    tx = mark ? (*mark)->Bind(1, static_cast<int64_t>(index)).Run() : Status(mark.take_error());
  }
  // Audit entries queued since the last commit ride along.
  std::vector<AuditEntry> audited;
  if (tx && !audit_queue_.empty()) {
    audited = audit_queue_;
    tx = WriteAudit();
  }
  if (tx) tx = Run("COMMIT");
  if (!tx && !audited.empty()) audit_queue_ = std::move(audited);  // tried again at the end of the flush
  if (!tx) {
    // The entry is undone as a whole: the rows rolled back, memory rebuilt from disk.
    commit_failures_->Inc();
    (void)db_->Exec("ROLLBACK");
    log::Error("store", "applying a log entry failed; undone",
               {{"error", tx.error().message}, {"index", index}, {"commands", commands.size()}});
    if (Status s = sm_->Load(*db_); !s) {
      log::Error("store", "reloading state after a failed commit failed", {{"error", s.error().message}});
      abort();  // memory no longer matches disk: continuing would serve wrong state
    }
    return tx.take_error();
  }
  applied_index_ = index;
  commits_since_checkpoint_.fetch_add(1, std::memory_order_relaxed);
  for (const Spent& sp : spent) cost_.Observe(sp.type, sp.ns, sp.units);
  RunWaiting();
  return results;
}

void Store::WhenApplied(uint64_t index, std::function<void()> fn) {
  if (index <= applied_index_) return fn();
  waiting_.emplace(index, std::move(fn));
}

void Store::RunWaiting() {
  while (!waiting_.empty() && waiting_.begin()->first <= applied_index_) {
    std::function<void()> fn = std::move(waiting_.begin()->second);
    waiting_.erase(waiting_.begin());
    fn();
  }
}

Status Store::ResetAppliedIndex() {
  Result<Stmt*> mark = db_->Cached("UPDATE log_applied SET idx = 0 WHERE id = 1");
  if (!mark) return mark.take_error();
  if (Status s = (*mark)->Run(); !s) return s;
  applied_index_ = 0;
  return {};
}

Result<std::string> Store::SnapshotBytes() {
  sqlite3_int64 size = 0;
  unsigned char* bytes = sqlite3_serialize(db_->raw(), "main", &size, 0);
  if (!bytes) return Error::Internal("cannot read state.db for a snapshot (out of memory?)");
  std::string out(reinterpret_cast<const char*>(bytes), static_cast<size_t>(size));
  sqlite3_free(bytes);
  // A WAL database's header says so (bytes 18 and 19 are 2); its copy is read as
  // an ordinary database file, with no WAL beside it.
  if (out.size() >= 100) out[18] = out[19] = 1;
  return out;
}

Status Store::Restore(uint64_t index, std::string_view bytes) {
  if (bytes.size() < 100 || memcmp(bytes.data(), "SQLite format 3", 16) != 0) {
    return Error::Invalid("a snapshot that is not an SQLite database (" + std::to_string(bytes.size()) + " bytes)");
  }
  sqlite3* mem = nullptr;
  if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close(mem);
    return Error::Internal("cannot open an in-memory database for a snapshot");
  }
  auto* copy = static_cast<unsigned char*>(sqlite3_malloc64(bytes.size()));
  if (!copy) {
    sqlite3_close(mem);
    return Error::Internal("out of memory restoring a snapshot");
  }
  memcpy(copy, bytes.data(), bytes.size());
  int rc = sqlite3_deserialize(mem, "main", copy, static_cast<sqlite3_int64>(bytes.size()),
                               static_cast<sqlite3_int64>(bytes.size()),
                               SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
  if (rc != SQLITE_OK) {
    sqlite3_close(mem);
    return Error::Internal(std::string("cannot read a snapshot: ") + sqlite3_errstr(rc));
  }
  // The audit log is this server's own, never replicated: the snapshot carries
  // the sending server's, which gives way to the one state.db holds.
  char* keep = sqlite3_mprintf(
      "DELETE FROM main.audit; ATTACH DATABASE %Q AS live; INSERT INTO main.audit SELECT * FROM live.audit; "
      "DETACH DATABASE live;",
      options_.path.c_str());
  char* err = nullptr;
  rc = keep ? sqlite3_exec(mem, keep, nullptr, nullptr, &err) : SQLITE_NOMEM;
  sqlite3_free(keep);
  if (rc != SQLITE_OK) {
    std::string why = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    sqlite3_close(mem);
    return Error::Internal("cannot keep this server's audit log across a snapshot: " + why);
  }
  sqlite3_backup* b = sqlite3_backup_init(db_->raw(), "main", mem, "main");
  if (!b) {
    std::string why = sqlite3_errmsg(db_->raw());
    sqlite3_close(mem);
    return Error::Internal("cannot install a snapshot: " + why);
  }
  rc = sqlite3_backup_step(b, -1);
  int fin = sqlite3_backup_finish(b);
  sqlite3_close(mem);
  if (rc != SQLITE_DONE || fin != SQLITE_OK) {
    Error e =
        Error::Internal(std::string("installing a snapshot failed: ") + sqlite3_errstr(rc != SQLITE_DONE ? rc : fin));
    (void)sm_->Load(*db_);
    return e;
  }
  if (Status s = db_->Exec("PRAGMA journal_mode=WAL"); !s) return s;
  if (Status s = Migrate(); !s) return s;
  Result<Stmt*> mark = db_->Cached("UPDATE log_applied SET idx = ?1 WHERE id = 1");
  if (!mark) return mark.take_error();
  if (Status s = (*mark)->Bind(1, static_cast<int64_t>(index)).Run(); !s) return s;
  applied_index_ = index;
  if (Status s = sm_->Load(*db_); !s) {
    log::Error("store", "loading an installed snapshot failed", {{"error", s.error().message}});
    abort();  // memory no longer matches disk
  }
  log::Info("store", "installed a snapshot", {{"index", index}, {"bytes", bytes.size()}});
  RunWaiting();
  return {};
}

std::string EncodeBatch(const std::vector<const Command*>& commands) {
  std::string out(kBatchMagic);
  PutU32(&out, static_cast<uint32_t>(commands.size()));
  for (const Command* c : commands) {
    std::string_view type = c->Type();
    std::string payload = c->Encode();
    PutU32(&out, static_cast<uint32_t>(type.size()));
    out.append(type);
    PutU64(&out, static_cast<uint64_t>(c->time_ms));
    PutU32(&out, static_cast<uint32_t>(payload.size()));
    out.append(payload);
  }
  // libraft stores an entry's bytes in whole 8-byte words (and reads a length
  // that is not one wrongly): zeros fill the last.
  out.resize((out.size() + 7) / 8 * 8, '\0');
  return out;
}

Result<std::vector<CommandPtr>> DecodeBatch(std::string_view entry, StateMachine* sm) {
  if (entry.substr(0, kBatchMagic.size()) != kBatchMagic) {
    return Error::Invalid("a log entry without the batch mark (" + std::to_string(entry.size()) + " bytes)");
  }
  Reader in(entry.substr(kBatchMagic.size()));
  uint32_t n = 0;
  if (!in.U32(&n)) return Error::Invalid("a log entry cut short before its count");
  std::vector<CommandPtr> out;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t type_len = 0, payload_len = 0;
    uint64_t time = 0;
    std::string_view type, payload;
    if (!in.U32(&type_len) || !in.Bytes(type_len, &type) || !in.U64(&time) || !in.U32(&payload_len) ||
        !in.Bytes(payload_len, &payload)) {
      return Error::Invalid("a log entry cut short in command " + std::to_string(i + 1) + " of " + std::to_string(n));
    }
    Result<CommandPtr> cmd = sm->Decode(type, payload, static_cast<int64_t>(time));
    if (!cmd) {
      return Error::Invalid("command " + std::to_string(i + 1) + " (" + std::string(type) +
                            ") of a log entry: " + cmd.error().message);
    }
    out.push_back(std::move(cmd.value()));
  }
  std::string_view rest;
  if (!in.Bytes(entry.size() - kBatchMagic.size() - in.pos(), &rest) || rest.size() >= 8 ||
      rest.find_first_not_of('\0') != std::string_view::npos) {
    return Error::Invalid("a log entry with bytes after its last command");
  }
  return out;
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
  Flush();  // replicated: the log is gone by now, and what is queued is refused
  waiting_.clear();
  (void)db_->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  Status s = db_->Close();
  db_.reset();
  return s;
}

}  // namespace berth::store
