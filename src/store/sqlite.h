// A thin RAII layer over SQLite: a database handle and prepared statements with
// bound parameters (no SQL is ever built from input).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace berth::store {

class Db;

class Stmt {
 public:
  Stmt() = default;
  ~Stmt();
  Stmt(Stmt&& o) noexcept : s_(o.s_), db_(o.db_), owner_(o.owner_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binding is 1-based, as in SQLite.
  Stmt& Bind(int i, std::string_view v);
  Stmt& Bind(int i, int64_t v);
  Stmt& BindNull(int i);
  // Steps once: true with a row, false when done; an Error on failure.
  Result<bool> Step();
  // Runs to completion (for writes).
  Status Run();
  void Reset();

  int64_t Int(int col) const;
  std::string_view Text(int col) const;
  bool IsNull(int col) const;

 private:
  friend class Db;
  explicit Stmt(sqlite3_stmt* s, Db* owner);
  sqlite3_stmt* s_ = nullptr;
  sqlite3* db_ = nullptr;
  Db* owner_ = nullptr;
};

class Db {
 public:
  // Opens (creating if needed) the database at `path`, in WAL mode with
  // synchronous=FULL.
  static Result<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status Exec(std::string_view sql);
  Result<Stmt> Prepare(std::string_view sql);
  // A statement prepared once and kept for the life of the handle (hot paths).
  Result<Stmt*> Cached(const char* sql);
  Result<int64_t> QueryInt(std::string_view sql);
  Status Close();
  const std::string& path() const { return path_; }
  sqlite3* raw() { return db_; }

  // The seam for storage failures in tests: called before each statement steps
  // with the statement's SQL; a non-zero SQLite result code (SQLITE_FULL,
  // SQLITE_IOERR, ...) makes that step fail as if SQLite had returned it.
  // Statements run through Exec (BEGIN, COMMIT, SAVEPOINT) are not offered to it.
  using Fault = std::function<int(std::string_view sql)>;
  void SetFault(Fault fault) { fault_ = std::move(fault); }

 private:
  friend class Stmt;
  Db() = default;
  Error Fail(std::string_view what) const;
  sqlite3* db_ = nullptr;
  std::string path_;
  std::vector<std::pair<const char*, std::unique_ptr<Stmt>>> cache_;
  Fault fault_;
};

}  // namespace berth::store
