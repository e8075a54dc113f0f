#include "store/sqlite.h"

#include <sqlite3.h>

namespace berth::store {

namespace {

Error SqlError(sqlite3* db, int rc, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  ErrorKind kind = ErrorKind::kInternal;
  std::string code = "StorageError";
  int primary = rc & 0xff;  // extended result codes are on
  if (primary == SQLITE_FULL) code = "StorageFull";
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    kind = ErrorKind::kUnavailable;
    code = "StorageBusy";
  }
  return Error{kind, code, msg};
}

}  // namespace

Stmt::Stmt(sqlite3_stmt* s, Db* owner) : s_(s), db_(owner->db_), owner_(owner) {}

Stmt::~Stmt() {
  if (s_) sqlite3_finalize(s_);
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    if (s_) sqlite3_finalize(s_);
    s_ = o.s_;
    db_ = o.db_;
    owner_ = o.owner_;
    o.s_ = nullptr;
  }
  return *this;
}

Stmt& Stmt::Bind(int i, std::string_view v) {
  sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}

Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(s_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  if (owner_ && owner_->fault_) {
    if (int injected = owner_->fault_(sqlite3_sql(s_)); injected != 0) {
      sqlite3_reset(s_);
      return SqlError(nullptr, injected, std::string(sqlite3_sql(s_)) + " (injected)");
    }
  }
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Error e = SqlError(db_, rc, sqlite3_sql(s_));
  sqlite3_reset(s_);
  return e;
}

Status Stmt::Run() {
  Result<bool> r = Step();
  while (r.ok() && r.value()) r = Step();
  Reset();
  if (!r) return r.take_error();
  return {};
}

void Stmt::Reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(s_, col); }

std::string_view Stmt::Text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
  if (!p) return {};
  return std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s_, col)));
}

bool Stmt::IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

Result<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  std::unique_ptr<Db> db(new Db());
  db->path_ = path;
  int rc = sqlite3_open_v2(path.c_str(), &db->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) return SqlError(db->db_, rc, "open " + path);
  sqlite3_extended_result_codes(db->db_, 1);
  // WAL with synchronous=FULL: a commit is durable when COMMIT returns.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
                             "PRAGMA busy_timeout=5000", "PRAGMA temp_store=MEMORY",
                             // 64 MiB of page cache: the state's tables stay in memory.
                             "PRAGMA cache_size=-65536",
                             // A WAL that a burst of writes grew is cut back to 32 MiB when
                             // it restarts, so an idle server gives the space back.
                             "PRAGMA journal_size_limit=33554432"}) {
    if (Status s = db->Exec(pragma); !s) return s.take_error();
  }
  Result<Stmt> mode = db->Prepare("PRAGMA journal_mode");
  if (!mode) return mode.take_error();
  if (Result<bool> r = mode->Step(); !r || !r.value() || mode->Text(0) != "wal") {
    return Error::Internal("could not put " + path + " in WAL mode");
  }
  return db;
}

Db::~Db() { (void)Close(); }

Error Db::Fail(std::string_view what) const { return SqlError(db_, sqlite3_errcode(db_), what); }

Status Db::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Error e = SqlError(nullptr, rc, s.substr(0, 60));
    e.message = s.substr(0, 60) + ": " + msg;
    return e;
  }
  return {};
}

Result<Stmt> Db::Prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr);
  if (rc != SQLITE_OK) return SqlError(db_, rc, "prepare " + std::string(sql.substr(0, 60)));
  return Stmt(s, this);
}

Result<Stmt*> Db::Cached(const char* sql) {
  for (auto& [key, stmt] : cache_) {
    if (key == sql) return stmt.get();
  }
  Result<Stmt> s = Prepare(sql);
  if (!s) return s.take_error();
  cache_.emplace_back(sql, std::make_unique<Stmt>(std::move(s.value())));
  return cache_.back().second.get();
}

Result<int64_t> Db::QueryInt(std::string_view sql) {
  Result<Stmt> s = Prepare(sql);
  if (!s) return s.take_error();
  Result<bool> r = s->Step();
  if (!r) return r.take_error();
  if (!r.value()) return Error::Internal("no row from " + std::string(sql));
  return s->Int(0);
}

Status Db::Close() {
  if (!db_) return {};
  cache_.clear();
  int rc = sqlite3_close(db_);
  if (rc != SQLITE_OK) return SqlError(db_, rc, "close " + path_);
  db_ = nullptr;
  return {};
}

}  // namespace berth::store
