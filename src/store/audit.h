// The audit log: who changed what, from where, and how it ended; and every
// refusal of a credential. Rows live in state.db's `audit` table, written in the
// store's transactions (Store::Audit), so an entry is durable before the answer
// it records leaves. Not state: never in the command log, never replayed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "store/sqlite.h"

namespace berth::store {

struct AuditEntry {
  int64_t id = 0;  // given when written, in time order
  int64_t time_ms = 0;
  std::string actor;    // token id, "node:<id>", or "-" when nobody vouched
  std::string role;     // the token's role, "node", or "-"
  std::string address;  // the client's address
  std::string method;
  std::string path;
  int status = 0;
  std::string code;     // the error's code, when it failed
  std::string message;  // the error's message (bounded), when it failed
};

json::Doc AuditJson(const AuditEntry& e);

Status InsertAudit(Db& db, const AuditEntry& e);

struct AuditQuery {
  int64_t since_ms = 0;   // entries at or after
  std::string actor;      // only this actor and its sessions, "<actor> (session)" ("" all)
  int64_t before_id = 0;  // entries older than this id (paging; 0: from the newest)
  size_t limit = 100;
};
// Newest first.
Result<std::vector<AuditEntry>> ReadAudit(Db& db, const AuditQuery& q);

// Removes entries older than `cutoff_ms` and all but the newest `max_entries`.
// Returns how many went.
Result<int64_t> TrimAudit(Db& db, int64_t cutoff_ms, size_t max_entries);

}  // namespace berth::store
