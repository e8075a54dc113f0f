#include "store/audit.h"

#include <sqlite3.h>

#include "base/clock.h"

namespace berth::store {

json::Doc AuditJson(const AuditEntry& e) {
  json::Doc d = json::Doc::Object();
  d.Set("id", e.id)
      .Set("time", UtcIso8601(e.time_ms))
      .Set("actor", e.actor)
      .Set("role", e.role)
      .Set("address", e.address)
      .Set("method", e.method)
      .Set("path", e.path)
      .Set("status", static_cast<int64_t>(e.status));
  if (!e.code.empty()) d.Set("errorCode", e.code);
  if (!e.message.empty()) d.Set("errorMessage", e.message);
  return d;
}

Status InsertAudit(Db& db, const AuditEntry& e) {
  Result<Stmt*> ins = db.Cached(
      "INSERT INTO audit (time_ms, actor, role, address, method, path, status, code, message) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (!ins) return ins.take_error();
  (*ins)
      ->Bind(1, e.time_ms)
      .Bind(2, e.actor)
      .Bind(3, e.role)
      .Bind(4, e.address)
      .Bind(5, e.method)
      .Bind(6, e.path)
      .Bind(7, static_cast<int64_t>(e.status))
      .Bind(8, e.code)
      .Bind(9, e.message);
  return (*ins)->Run();
}

Result<std::vector<AuditEntry>> ReadAudit(Db& db, const AuditQuery& q) {
  Result<Stmt*> sel = db.Cached(
      "SELECT id, time_ms, actor, role, address, method, path, status, code, message FROM audit "
      "WHERE time_ms >= ?1 AND (?2 = '' OR actor = ?2 OR actor = ?2 || ' (session)') AND (?3 = 0 OR id < ?3) "
      "ORDER BY id DESC LIMIT ?4");
  if (!sel) return sel.take_error();
  Stmt* s = *sel;
  s->Bind(1, q.since_ms).Bind(2, q.actor).Bind(3, q.before_id).Bind(4, static_cast<int64_t>(q.limit));
  std::vector<AuditEntry> out;
  for (;;) {
    Result<bool> row = s->Step();
    if (!row) {
      s->Reset();
      return row.take_error();
    }
    if (!row.value()) break;
    AuditEntry e;
    e.id = s->Int(0);
    e.time_ms = s->Int(1);
    e.actor = s->Text(2);
    e.role = s->Text(3);
    e.address = s->Text(4);
    e.method = s->Text(5);
    e.path = s->Text(6);
    e.status = static_cast<int>(s->Int(7));
    e.code = s->Text(8);
    e.message = s->Text(9);
    out.push_back(std::move(e));
  }
  s->Reset();
  return out;
}

Result<int64_t> TrimAudit(Db& db, int64_t cutoff_ms, size_t max_entries) {
  Result<Stmt*> old = db.Cached("DELETE FROM audit WHERE time_ms < ?1");
  if (!old) return old.take_error();
  (*old)->Bind(1, cutoff_ms);
  if (Status s = (*old)->Run(); !s) return s.take_error();
  int64_t removed = sqlite3_changes(db.raw());
  Result<Stmt*> extra =
      db.Cached("DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?1)");
  if (!extra) return extra.take_error();
  (*extra)->Bind(1, static_cast<int64_t>(max_entries));
  if (Status s = (*extra)->Run(); !s) return s.take_error();
  return removed + sqlite3_changes(db.raw());
}

}  // namespace berth::store
