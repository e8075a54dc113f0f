#include "agent/target_checks.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>

#include "base/log.h"
#include "net/socket.h"
#include "net/stream.h"
#include "net/uv.h"

namespace berth::agent {

namespace {

constexpr size_t kMaxDescription = 256;

// The number at `key` when it is a whole one in [lo, hi]; `fallback` when it is
// absent and `required` is false.
Result<int64_t> WholeIn(const json::View& obj, std::string_view key, const std::string& path, int64_t lo, int64_t hi,
                        bool required, int64_t fallback = 0) {
  json::View v = obj.Get(key);
  std::string where = path + "." + std::string(key);
  if (!v.valid() || v.IsNull()) {
    if (required) return Error::Invalid(where + ": is required");
    return fallback;
  }
  std::string range = std::to_string(lo) + "-" + std::to_string(hi);
  if (!v.IsNumber()) return Error::Invalid(where + ": must be a whole number of " + range + ", not " + v.TypeName());
  double d = v.Number();
  if (d != std::floor(d) || d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    return Error::Invalid(where + ": must be " + range);
  }
  return static_cast<int64_t>(d);
}

// The string at `key`, 1 to `max` bytes; `fallback` when absent and not required.
Result<std::string> Text(const json::View& obj, std::string_view key, const std::string& path, size_t max,
                         bool required, std::string fallback = {}) {
  json::View v = obj.Get(key);
  std::string where = path + "." + std::string(key);
  if (!v.valid() || v.IsNull()) {
    if (required) return Error::Invalid(where + ": is required");
    return fallback;
  }
  if (!v.IsString()) return Error::Invalid(where + ": must be a string, not " + std::string(v.TypeName()));
  if (v.String().empty() || v.String().size() > max) {
    return Error::Invalid(where + ": must be 1-" + std::to_string(max) + " characters");
  }
  return std::string(v.String());
}

Result<TargetCheck> ParseTarget(const json::View& t, const std::string& path) {
  if (!t.IsObject()) return Error::Invalid(path + ": must be an object, not " + std::string(t.TypeName()));
  TargetCheck c;
  Result<std::string> task = Text(t, "taskId", path, 128, true);
  if (!task) return task.take_error();
  c.task_id = std::move(task.value());
  Result<std::string> group = Text(t, "targetGroup", path, 255, true);
  if (!group) return group.take_error();
  c.target_group = std::move(group.value());
  Result<std::string> address = Text(t, "address", path, 253, true);
  if (!address) return address.take_error();
  c.address = std::move(address.value());
  for (unsigned char ch : c.address) {
    if (ch <= ' ' || ch == '/' || ch == '[' || ch == ']' || ch >= 0x7f) {
      return Error::Invalid(path + ".address: must be an IP address or a host name");
    }
  }
  Result<int64_t> port = WholeIn(t, "port", path, 1, 65535, true);
  if (!port) return port.take_error();
  c.port = static_cast<int>(*port);
  Result<std::string> protocol = Text(t, "protocol", path, 8, true);
  if (!protocol) return protocol.take_error();
  if (*protocol == "HTTP") {
    c.protocol = CheckProtocol::kHttp;
  } else if (*protocol == "TCP") {
    c.protocol = CheckProtocol::kTcp;
  } else {
    return Error::Invalid(path + ".protocol: must be HTTP or TCP");
  }
  if (c.protocol == CheckProtocol::kHttp) {
    Result<std::string> p = Text(t, "path", path, 1024, false, "/");
    if (!p) return p.take_error();
    c.path = std::move(p.value());
    // It goes into the request line as it is.
    bool printable = std::all_of(c.path.begin(), c.path.end(), [](unsigned char ch) { return ch > ' ' && ch < 0x7f; });
    if (c.path[0] != '/' || !printable) {
      return Error::Invalid(path + ".path: must start with / and hold no spaces or control characters");
    }
    Result<std::string> m = Text(t, "matcher", path, 256, false, "200");
    if (!m) return m.take_error();
    Result<StatusMatcher> codes = ParseMatcher(*m);
    if (!codes) return Error::Invalid(path + ".matcher: " + codes.error().message);
    c.matcher = std::move(m.value());
    c.codes = std::move(codes.value());
  } else {
    c.path.clear();
    c.matcher.clear();
  }
  // Seconds as the server sends them; milliseconds (tests) take their place.
  Result<int64_t> ims = WholeIn(t, "intervalMs", path, 50, 300000, false, -1);
  if (!ims) return ims.take_error();
  Result<int64_t> tms = WholeIn(t, "timeoutMs", path, 50, 120000, false, -1);
  if (!tms) return tms.take_error();
  if (*ims >= 0) {
    c.interval_ms = static_cast<uint64_t>(*ims);
  } else {
    Result<int64_t> s = WholeIn(t, "intervalSeconds", path, 5, 300, true);
    if (!s) return s.take_error();
    c.interval_ms = static_cast<uint64_t>(*s) * 1000;
  }
  if (*tms >= 0) {
    c.timeout_ms = static_cast<uint64_t>(*tms);
  } else {
    Result<int64_t> s = WholeIn(t, "timeoutSeconds", path, 2, 120, true);
    if (!s) return s.take_error();
    c.timeout_ms = static_cast<uint64_t>(*s) * 1000;
  }
  if (c.timeout_ms >= c.interval_ms) {
    return Error::Invalid(path + ".timeoutSeconds: must be less than intervalSeconds");
  }
  Result<int64_t> healthy = WholeIn(t, "healthyThreshold", path, 2, 10, true);
  if (!healthy) return healthy.take_error();
  c.healthy_threshold = static_cast<int>(*healthy);
  Result<int64_t> unhealthy = WholeIn(t, "unhealthyThreshold", path, 2, 10, true);
  if (!unhealthy) return unhealthy.take_error();
  c.unhealthy_threshold = static_cast<int>(*unhealthy);
  return c;
}

// "cannot connect to 10.0.0.2:80: ECONNREFUSED: connection refused" → "connection refused".
std::string LastPart(const std::string& message) {
  size_t at = message.rfind(": ");
  return at == std::string::npos ? message : message.substr(at + 2);
}

std::string Cut(std::string s) {
  if (s.size() > kMaxDescription) s.resize(kMaxDescription);
  return s;
}

}  // namespace

// --- the document ---

bool TargetCheck::SameSettings(const TargetCheck& o) const {
  return address == o.address && port == o.port && protocol == o.protocol && path == o.path && matcher == o.matcher &&
         interval_ms == o.interval_ms && timeout_ms == o.timeout_ms && healthy_threshold == o.healthy_threshold &&
         unhealthy_threshold == o.unhealthy_threshold;
}

Result<ChecksDoc> ParseChecks(const json::View& doc) {
  if (!doc.IsObject()) return Error::Invalid("checks: must be an object, not " + std::string(doc.TypeName()));
  ChecksDoc out;
  json::View v = doc.Get("version");
  if (!v.IsNumber() || v.Number() < 1 || v.Number() != std::floor(v.Number()) || v.Number() > 9007199254740992.0) {
    return Error::Invalid("checks.version: must be a whole number of 1 or more");
  }
  out.version = static_cast<int64_t>(v.Number());
  json::View list = doc.Get("targets");
  if (!list.valid() || list.IsNull()) return out;
  if (!list.IsArray()) return Error::Invalid("checks.targets: must be an array");
  if (list.Size() > kMaxChecks) {
    return Error::Invalid("checks.targets: at most " + std::to_string(kMaxChecks) + " checks on a node");
  }
  std::set<std::pair<std::string, std::string>> seen;
  size_t i = 0;
  for (json::View t : list) {
    std::string path = "checks.targets[" + std::to_string(i++) + "]";
    Result<TargetCheck> c = ParseTarget(t, path);
    if (!c) return c.take_error();
    if (!seen.emplace(c->task_id, c->target_group).second) {
      return Error::Invalid(path + ": task " + c->task_id + " is checked twice for target group " + c->target_group);
    }
    out.targets.push_back(std::move(c.value()));
  }
  return out;
}

const char* HealthStateName(HealthState s) {
  switch (s) {
    case HealthState::kInitial: return "initial";
    case HealthState::kHealthy: return "healthy";
    case HealthState::kUnhealthy: return "unhealthy";
  }
  return "initial";
}

std::string TargetHealth::ToJson() const {
  std::string out = "{\"taskId\":";
  json::AppendQuoted(&out, task_id);
  out += ",\"targetGroup\":";
  json::AppendQuoted(&out, target_group);
  out += ",\"state\":";
  json::AppendQuoted(&out, HealthStateName(state));
  out += ",\"reason\":";
  json::AppendQuoted(&out, reason);
  out += ",\"description\":";
  json::AppendQuoted(&out, description);
  return out + "}";
}

// --- probes ---

// One probe of one target: connect, and for HTTP send the request and read the
// status line, all within the check's timeout. `done` fires once, unless the
// probe is destroyed first; the probe may be destroyed from inside `done`.
class TargetChecks::Probe final : public net::Stream::Handler {
 public:
  using Done = std::function<void(bool passed, std::string reason, std::string description)>;

  Probe(uv_loop_t* loop, const TargetCheck& check, Done done)
      : loop_(loop), check_(check), done_(std::move(done)), timer_(loop), alive_(std::make_shared<bool>(true)) {}
  ~Probe() override {
    *alive_ = false;
    if (stream_) stream_->Close();
  }
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Starts the probe. `done` may fire (and the probe go) before this returns.
  void Start() {
    timer_.Start(check_.timeout_ms, 0, [this] { Finish(false, "Target.Timeout", "Request timed out"); });
    net::Endpoint where;
    where.host = check_.address;
    where.port = check_.port;
    // The connect cannot be called off: its answer finds out whether this probe is still there.
    net::Connect(loop_, where, [this, alive = alive_](Result<std::unique_ptr<net::Stream>> s) {
      if (!*alive) return;  // the stream, if any, closes as it goes
      Connected(std::move(s));
    });
  }

  void OnData(std::string_view data) override {
    size_t room = kMaxCheckAnswerBytes - answer_.size();
    answer_.append(data.substr(0, room));
    size_t eol = answer_.find('\n');
    if (eol == std::string::npos) {
      if (answer_.size() >= kMaxCheckAnswerBytes)
        Finish(false, "Target.FailedHealthChecks", "No status line in the answer");
      return;
    }
    // "HTTP/1.1 200 OK": the code is the three digits after the first space.
    std::string_view line(answer_.data(), eol);
    size_t sp = line.find(' ');
    int code = 0;
    if (line.starts_with("HTTP/") && sp != std::string_view::npos && line.size() >= sp + 4) {
      std::from_chars(line.data() + sp + 1, line.data() + sp + 4, code);
    }
    if (code < 100 || code > 599)
      return Finish(false, "Target.FailedHealthChecks", "Invalid status line in the answer");
    if (check_.codes.Accepts(code)) return Finish(true, "", "");
    Finish(false, "Target.ResponseCodeMismatch",
           "Health checks failed with these codes: [" + std::to_string(code) + "]");
  }

  void OnEnd(int err) override {
    if (err != 0) return Finish(false, "Target.FailedHealthChecks", LastPart(net::UvError(err)));
    Finish(false, "Target.FailedHealthChecks", "Connection closed before an answer");
  }

 private:
  void Connected(Result<std::unique_ptr<net::Stream>> s) {
    if (!s) return Finish(false, "Target.FailedHealthChecks", LastPart(s.error().message));
    if (check_.protocol == CheckProtocol::kTcp) {
      s.value()->Close();
      return Finish(true, "", "");
    }
    stream_ = std::move(s.value());
    stream_->SetHandler(this);
    stream_->ReadStart();
    std::string host = check_.address.find(':') != std::string::npos ? "[" + check_.address + "]" : check_.address;
    stream_->Write("GET " + check_.path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(check_.port) +
                   "\r\nUser-Agent: berth-health-check\r\nConnection: close\r\n\r\n");
  }

  // Ends the probe: nothing of it fires after, and `done_` is its last act.
  void Finish(bool passed, std::string reason, std::string description) {
    if (finished_) return;
    finished_ = true;
    timer_.Stop();
    *alive_ = false;
    if (stream_) {
      stream_->Close();
      stream_.reset();
    }
    Done done = std::move(done_);
    done(passed, std::move(reason), Cut(std::move(description)));
  }

  uv_loop_t* loop_;
  const TargetCheck& check_;  // its target's, which owns the probe
  Done done_;
  net::Timer timer_;
  std::shared_ptr<bool> alive_;  // false once the connect's answer is no longer wanted
  std::unique_ptr<net::Stream> stream_;
  std::string answer_;
  bool finished_ = false;
};

// --- the targets ---

struct TargetChecks::Target {
  explicit Target(uv_loop_t* loop, TargetCheck c) : check(std::move(c)), timer(loop) {}

  TargetCheck check;
  HealthState state = HealthState::kInitial;
  std::string reason, description;
  int successes = 0;  // in a row
  int failures = 0;   // in a row
  // What the server last acknowledged (state and reason); unset: nothing.
  bool acknowledged = false;
  HealthState acknowledged_state = HealthState::kInitial;
  std::string acknowledged_reason;
  net::Timer timer;              // the next probe
  std::unique_ptr<Probe> probe;  // the one in flight
};

TargetChecks::TargetChecks(uv_loop_t* loop, std::function<void()> on_pending)
    : loop_(loop), on_pending_(std::move(on_pending)) {}

// The targets go first: their probes and timers close, so nothing calls back.
TargetChecks::~TargetChecks() { targets_.clear(); }

bool TargetChecks::Apply(ChecksDoc doc) {
  if (doc.version <= version_) return false;
  version_ = doc.version;
  std::map<Key, std::unique_ptr<Target>> next;
  for (TargetCheck& c : doc.targets) {
    Key key(c.task_id, c.target_group);
    auto it = targets_.find(key);
    if (it != targets_.end() && it->second->check.SameSettings(c)) {
      next[key] = std::move(it->second);
      continue;
    }
    // New, or checked differently: from `initial` again, and reported anew.
    unacknowledged_.erase(key);
    auto t = std::make_unique<Target>(loop_, std::move(c));
    Target* raw = t.get();
    // A little spread, so that the probes of a whole set do not all go at once.
    uint64_t spread = std::min<uint64_t>(raw->check.interval_ms / 10, 1000);
    uint64_t first = spread ? std::hash<std::string>{}(key.first + key.second) % spread : 0;
    raw->timer.Start(first, raw->check.interval_ms, [this, raw] { StartProbe(raw); });
    next[key] = std::move(t);
  }
  for (auto& [key, t] : targets_) {
    if (t) unacknowledged_.erase(key);  // no longer listed (or replaced, above)
  }
  targets_ = std::move(next);
  return true;
}

void TargetChecks::Clear() {
  targets_.clear();
  unacknowledged_.clear();
}

void TargetChecks::StartProbe(Target* t) {
  if (t->probe) return;  // one at a time: the one in flight is still within its timeout
  probes_started_++;
  t->probe = std::make_unique<Probe>(loop_, t->check, [this, t](bool passed, std::string reason, std::string d) {
    Record(t, passed, std::move(reason), std::move(d));
    // Last: this runs inside the probe, which goes now.
    t->probe.reset();
  });
  t->probe->Start();
}

void TargetChecks::Record(Target* t, bool passed, std::string reason, std::string description) {
  HealthState before = t->state;
  std::string before_reason = t->reason;
  if (passed) {
    t->failures = 0;
    t->successes++;
    // From `initial` one pass is enough, so that a deploy is quick.
    if (t->state == HealthState::kInitial ||
        (t->state == HealthState::kUnhealthy && t->successes >= t->check.healthy_threshold)) {
      t->state = HealthState::kHealthy;
      t->reason.clear();
      t->description.clear();
    }
  } else {
    t->successes = 0;
    t->failures++;
    if (t->state == HealthState::kUnhealthy) {
      // Still unhealthy: the latest failure says why.
      t->reason = std::move(reason);
      t->description = std::move(description);
    } else if (t->failures >= t->check.unhealthy_threshold) {
      t->state = HealthState::kUnhealthy;
      t->reason = std::move(reason);
      t->description = std::move(description);
    }
  }
  if (t->state == before && t->reason == before_reason) return;
  log::Info("agent", "target health changed",
            {{"task", t->check.task_id},
             {"targetGroup", t->check.target_group},
             {"state", HealthStateName(t->state)},
             {"reason", t->reason},
             {"description", t->description}});
  NoteChange(t);
}

void TargetChecks::NoteChange(Target* t) {
  Key key(t->check.task_id, t->check.target_group);
  bool same = t->state == HealthState::kInitial ||
              (t->acknowledged && t->acknowledged_state == t->state && t->acknowledged_reason == t->reason);
  if (same) {
    unacknowledged_.erase(key);
    return;
  }
  unacknowledged_.insert(key);
  if (on_pending_) on_pending_();
}

TargetChecks::Batch TargetChecks::Pending(size_t max) const {
  Batch out;
  out.epoch = epoch_;
  for (const Key& key : unacknowledged_) {
    if (out.entries.size() >= max) break;
    auto it = targets_.find(key);
    if (it == targets_.end()) continue;
    const Target& t = *it->second;
    out.entries.push_back({key.first, key.second, t.state, t.reason, t.description});
  }
  return out;
}

void TargetChecks::Acknowledge(const Batch& sent) {
  // Taken by a server that the new stream's may have replaced: sent again.
  if (sent.epoch != epoch_) return;
  for (const TargetHealth& h : sent.entries) {
    Key key(h.task_id, h.target_group);
    auto it = targets_.find(key);
    if (it == targets_.end()) continue;
    Target& t = *it->second;
    // Taken: it is what the server knows, whatever happened since.
    t.acknowledged = true;
    t.acknowledged_state = h.state;
    t.acknowledged_reason = h.reason;
    if (t.state == h.state && t.reason == h.reason) unacknowledged_.erase(key);
  }
}

void TargetChecks::ForgetAcknowledged() {
  epoch_++;
  unacknowledged_.clear();
  for (auto& [key, t] : targets_) {
    t->acknowledged = false;
    if (t->state != HealthState::kInitial) unacknowledged_.insert(key);
  }
  if (!unacknowledged_.empty() && on_pending_) on_pending_();
}

TargetHealth TargetChecks::Health(const std::string& task_id, const std::string& target_group) const {
  auto it = targets_.find(Key(task_id, target_group));
  if (it == targets_.end()) return {task_id, target_group, HealthState::kInitial, "", ""};
  const Target& t = *it->second;
  return {task_id, target_group, t.state, t.reason, t.description};
}

}  // namespace berth::agent
