#include "control/retention.h"

#include <iterator>
#include <vector>

#include "base/log.h"

namespace berth::control {

namespace {

// Ids per ForgetTasks command: a transaction of a few thousand row deletes.
constexpr size_t kIdsPerCommand = 5000;

}  // namespace

RetentionController::RetentionController(model::State* state, store::Store* store, const Clock* clock,
                                         RetentionOptions options)
    : state_(state), store_(store), clock_(clock), options_(options) {
  state_->AddObserver(this);
  OnReloaded();
}

RetentionController::~RetentionController() = default;

void RetentionController::Index(const model::Task& t) {
  Entry e{t.stopped_ms, &t};
  if (by_cluster_[t.cluster].insert(e).second) stopped_++;
  if (t.service.empty()) return;
  std::string key = model::State::ServiceKey(t.cluster, t.service);
  std::set<Entry>& mine = by_service_[key];
  mine.insert(e);
  if (options_.stopped_per_service > 0 && static_cast<int64_t>(mine.size()) > options_.stopped_per_service) {
    over_.insert(std::move(key));
  }
}

void RetentionController::OnTaskChanged(const model::Task& t) {
  if (t.stopped()) Index(t);
}

void RetentionController::OnTaskForgotten(const model::Task& t) {
  Entry e{t.stopped_ms, &t};
  submitted_.erase(t.id);
  if (auto c = by_cluster_.find(t.cluster); c != by_cluster_.end()) {
    stopped_ -= c->second.erase(e);
    if (c->second.empty()) by_cluster_.erase(c);
  }
  if (t.service.empty()) return;
  auto it = by_service_.find(model::State::ServiceKey(t.cluster, t.service));
  if (it == by_service_.end()) return;
  it->second.erase(e);
  if (it->second.empty()) {
    over_.erase(it->first);
    by_service_.erase(it);
  }
}

void RetentionController::OnTokenRemoved(const model::Token& t) {
  if (t.session()) sessions_.erase({t.expires_ms, t.id});
}

void RetentionController::OnCommandApplied(const store::Command& cmd) {
  if (std::string_view(cmd.Type()) != "CreateToken") return;
  const auto& c = static_cast<const model::CreateToken&>(cmd);
  if (!c.parent.empty() && c.expires_ms) sessions_.emplace(c.expires_ms, c.id);
}

void RetentionController::OnReloaded() {
  by_service_.clear();
  by_cluster_.clear();
  stopped_ = 0;
  over_.clear();
  submitted_.clear();  // their commands' replies come, and change nothing here
  sessions_submitted_.clear();
  sessions_.clear();
  for (const auto& [id, t] : state_->tasks()) {
    if (t.stopped()) Index(t);
  }
  for (const model::Token& t : state_->tokens()) {
    if (t.session() && t.expires_ms) sessions_.emplace(t.expires_ms, t.id);
  }
}

void RetentionController::Submit(std::vector<std::string> ids) {
  for (const std::string& id : ids) submitted_.insert(id);
  auto cmd = std::make_unique<model::ForgetTasks>();
  cmd->ids = std::move(ids);
  cmd->time_ms = clock_->NowUnixMs();
  std::vector<std::string> copy = cmd->ids;
  store_->Submit(std::move(cmd), [this, copy = std::move(copy)](Result<std::string> r) {
    // Forgotten ones left submitted_ as they went; the rest may be tried again.
    for (const std::string& id : copy) submitted_.erase(id);
    if (!r) log::Warn("retention", "forgetting stopped tasks failed", {{"error", r.error().message}});
  });
}

void RetentionController::Tick() {
  int64_t now = clock_->NowUnixMs();
  std::vector<std::string> ids;
  auto take = [&](const model::Task* t) {
    if (ids.size() >= options_.max_per_tick || submitted_.count(t->id)) return;
    ids.push_back(t->id);
  };
  // Past the bound of their service: the oldest first.
  for (auto it = over_.begin(); it != over_.end();) {
    auto mine = by_service_.find(*it);
    if (mine == by_service_.end() || static_cast<int64_t>(mine->second.size()) <= options_.stopped_per_service) {
      it = over_.erase(it);
      continue;
    }
    size_t excess = mine->second.size() - static_cast<size_t>(options_.stopped_per_service);
    for (auto e = mine->second.begin(); e != mine->second.end() && excess > 0; ++e, --excess) take(e->second);
    ++it;
  }
  // Past their time: each cluster's oldest first.
  for (const auto& [cluster, stopped] : by_cluster_) {
    for (auto it = stopped.begin(); it != stopped.end() && ids.size() < options_.max_per_tick; ++it) {
      if (it->first + options_.task_retention_ms > now) break;
      take(it->second);
    }
  }
  for (size_t from = 0; from < ids.size(); from += kIdsPerCommand) {
    size_t to = std::min(ids.size(), from + kIdsPerCommand);
    Submit(std::vector<std::string>(ids.begin() + static_cast<long>(from), ids.begin() + static_cast<long>(to)));
  }
  ForgetSessions(now);
  if (now - last_taskdef_scan_ms_ >= options_.taskdef_scan_ms) {
    last_taskdef_scan_ms_ = now;
    ForgetRevisions(now);
  }
}

size_t RetentionController::StoppedSince(std::string_view cluster, int64_t since_ms) const {
  auto c = by_cluster_.find(cluster);
  if (c == by_cluster_.end()) return 0;
  // Entries order by time, then by address: the first at since_ms is the first
  // whose pair is not below (since_ms, nullptr).
  auto from = c->second.lower_bound(Entry{since_ms, nullptr});
  return static_cast<size_t>(std::distance(from, c->second.end()));
}

// Sessions past their expiry, the oldest first, in one command of at most
// sessions_per_tick ids.
void RetentionController::ForgetSessions(int64_t now_ms) {
  auto cmd = std::make_unique<model::ForgetSessions>();
  for (auto it = sessions_.begin(); it != sessions_.end() && it->first <= now_ms; ++it) {
    if (cmd->ids.size() >= options_.sessions_per_tick) break;
    if (!sessions_submitted_.count(it->second)) cmd->ids.push_back(it->second);
  }
  if (cmd->ids.empty()) return;
  for (const std::string& id : cmd->ids) sessions_submitted_.insert(id);
  cmd->time_ms = now_ms;
  std::vector<std::string> copy = cmd->ids;
  store_->Submit(std::move(cmd), [this, copy = std::move(copy)](Result<std::string> r) {
    for (const std::string& id : copy) sessions_submitted_.erase(id);
    if (!r) log::Warn("retention", "forgetting expired sessions failed", {{"error", r.error().message}});
  });
}

// INACTIVE revisions past the retention that nothing uses, the latest of each
// family excepted. A scan of the revisions (not of the tasks: each revision
// counts the tasks made from it) once a minute.
void RetentionController::ForgetRevisions(int64_t now_ms) {
  auto cmd = std::make_unique<model::ForgetTaskDefinitions>();
  for (const auto& [family, revisions] : state_->task_definitions()) {
    if (revisions.empty()) continue;
    int64_t latest = revisions.rbegin()->first;
    for (const auto& [revision, td] : revisions) {
      if (revision == latest || td.status != "INACTIVE" || td.task_refs > 0) continue;
      if (td.deregistered_ms + options_.task_retention_ms > now_ms) continue;
      if (state_->ServicesUse(family, revision)) continue;
      cmd->revisions.emplace_back(family, revision);
      if (cmd->revisions.size() >= 1000) break;
    }
    if (cmd->revisions.size() >= 1000) break;
  }
  if (cmd->revisions.empty()) return;
  cmd->time_ms = now_ms;
  store_->Submit(std::move(cmd), [](Result<std::string> r) {
    if (!r) log::Warn("retention", "forgetting task definitions failed", {{"error", r.error().message}});
  });
}

}  // namespace berth::control
