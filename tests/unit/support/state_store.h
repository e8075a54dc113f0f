// Test support for the state path: a model::State over a Store in a temporary
// directory, and helpers that make commands and apply them synchronously.
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>

#include "base/metrics.h"
#include "model/commands.h"
#include "model/state.h"
#include "store/store.h"
#include "support/test_loop.h"

namespace berth::testing {

// Submits one command to `st`, flushes, and returns its reply.
inline Result<std::string> ApplyNow(store::Store& st, store::CommandPtr cmd) {
  std::optional<Result<std::string>> out;
  st.Submit(std::move(cmd), [&out](Result<std::string> r) { out.emplace(std::move(r)); });
  st.Flush();
  REQUIRE(out.has_value());
  return std::move(*out);
}

inline store::CommandPtr MakeCreateCluster(std::string name, int64_t time_ms = 1700000000000) {
  auto c = std::make_unique<model::CreateCluster>();
  c->name = std::move(name);
  c->time_ms = time_ms;
  return c;
}

inline store::CommandPtr MakeDeleteCluster(std::string name, int64_t time_ms = 1700000000000) {
  auto c = std::make_unique<model::DeleteCluster>();
  c->name = std::move(name);
  c->time_ms = time_ms;
  return c;
}

inline store::CommandPtr MakeCreateToken(std::string id, std::string role, std::string hash,
                                         int64_t time_ms = 1700000000000) {
  auto c = std::make_unique<model::CreateToken>();
  c->id = std::move(id);
  c->role = std::move(role);
  c->hash = std::move(hash);
  c->time_ms = time_ms;
  return c;
}

struct StateStore {
  TempDir dir;
  metrics::Registry metrics;
  model::State state;
  std::unique_ptr<store::Store> store;

  explicit StateStore(bool group_commit = true) { Open(group_commit); }
  // With `options` (its path is set here).
  explicit StateStore(store::StoreOptions options) { Open(std::move(options)); }

  std::string path() const { return dir.File("state.db"); }

  void Open(bool group_commit = true) {
    store::StoreOptions o;
    o.group_commit = group_commit;
    Open(std::move(o));
  }
  void Open(store::StoreOptions o) {
    o.path = path();
    auto s = store::Store::Open(o, &state, &metrics);
    REQUIRE(s.ok());
    store = std::move(s.value());
  }

  // Submits one command, flushes, and returns its reply.
  Result<std::string> Apply(store::CommandPtr cmd) { return ApplyNow(*store, std::move(cmd)); }

  int64_t Count(const std::string& sql) {
    auto n = store->db().QueryInt(sql);
    REQUIRE(n.ok());
    return n.value();
  }

  // The clusters, as memory holds them and as their rows say (to compare stores).
  std::string ClusterDump() {
    std::string out;
    for (const auto& [name, c] : state.clusters()) {
      out += name + " " + c.arn + " " + c.status + " " + std::to_string(c.created_ms) + "\n";
    }
    out += "--\n";
    auto rows = store->db().Prepare("SELECT name, arn, status, created_ms FROM clusters ORDER BY name");
    REQUIRE(rows.ok());
    while (rows->Step().value()) {
      out += std::string(rows->Text(0)) + " " + std::string(rows->Text(1)) + " " + std::string(rows->Text(2)) + " " +
             std::to_string(rows->Int(3)) + "\n";
    }
    return out;
  }
};

}  // namespace berth::testing
