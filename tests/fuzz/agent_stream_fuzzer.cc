// Fuzzes what an agent does with the bytes of its desired-state stream: the line
// splitter (bounded lines), each line's JSON, folding "desired" and "changes"
// lines into the node's set (tasks, definitions, the cluster's task policy,
// secret values in base64), the target health checks a line carries (and each
// line as a check's status matcher), and, for every task the set then holds,
// the policy check and the plan of its containers with the secrets it was sent.
//
// Invariants checked besides the sanitizers: a line over the bound is dropped,
// never delivered; a plan's create bodies are JSON; secret values never reach a
// container's labels (unless the same bytes are in the task definition or the
// task's own fields, which labels carry in the open).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "agent/container_spec.h"
#include "agent/docker.h"
#include "agent/reconciler.h"
#include "agent/target_checks.h"
#include "base/json.h"
#include "fuzz_common.h"
#include "model/lb.h"
#include "model/policy.h"

namespace {

using namespace berth;

constexpr size_t kMaxLine = 64 * 1024;  // the agent's is 64 MiB; smaller here so the bound is reached

// A line's target health checks (agent/target_checks.h): a refusal names its
// field; what is taken is within the documented bounds, each target once.
void CheckChecks(json::View c) {
  Result<agent::ChecksDoc> doc = agent::ParseChecks(c);
  if (!doc) {
    if (doc.error().message.rfind("checks", 0) != 0) fuzz::Fail("a refusal without its path", doc.error().message);
    return;
  }
  if (doc->targets.size() > agent::kMaxChecks) fuzz::Fail("too many checks taken", c.Print());
  std::set<std::pair<std::string, std::string>> seen;
  for (const agent::TargetCheck& t : doc->targets) {
    if (!seen.emplace(t.task_id, t.target_group).second) fuzz::Fail("a target checked twice", t.task_id);
    if (t.port < 1 || t.port > 65535 || t.timeout_ms >= t.interval_ms || t.timeout_ms < 50 || t.healthy_threshold < 2 ||
        t.healthy_threshold > 10 || t.unhealthy_threshold < 2 || t.unhealthy_threshold > 10) {
      fuzz::Fail("a check out of bounds", c.Print());
    }
    if (t.protocol == agent::CheckProtocol::kHttp && (t.codes.ranges.empty() || t.path.empty() || t.path[0] != '/' ||
                                                      t.path.find_first_of(" \r\n") != std::string::npos)) {
      fuzz::Fail("an HTTP check whose request line could break", c.Print());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, agent::DesiredTask> tasks;
  std::map<std::string, json::Doc, std::less<>> defs;
  model::TaskPolicy policy;
  std::string policy_error;
  agent::docker::LineSplitter lines(
      [&](std::string_view line) {
        if (line.size() > kMaxLine) fuzz::Fail("a line over the bound was delivered", std::string(line));
        // As a health check's matcher (model/lb.h): what parses is ranges of 100-599.
        if (line.size() <= 300) {
          if (Result<model::StatusMatcher> m = model::ParseMatcher(line)) {
            for (const auto& [lo, hi] : m->ranges) {
              if (lo < 100 || hi > 599 || lo > hi) fuzz::Fail("a matcher range out of bounds", std::string(line));
            }
          }
        }
        Result<json::Doc> msg = json::Doc::Parse(line);
        if (!msg) return;
        if (json::View c = msg->view().Get("checks"); c.valid()) CheckChecks(c);
        std::string_view type = msg->view().Get("type").String();
        if (type != "desired" && type != "changes") return;
        agent::TakeDesiredLine(msg->view(), type == "desired", &tasks, &defs, &policy, &policy_error);
      },
      kMaxLine);
  // Fed in two pieces, split where the first byte says, as a socket would.
  size_t cut = size > 0 ? data[0] % (size + 1) : 0;
  std::string_view all(reinterpret_cast<const char*>(data), size);
  (void)lines.Feed(all.substr(0, cut));
  (void)lines.Feed(all.substr(cut));

  model::HostView host;
  host.socket_paths = model::DefaultSocketPaths();
  for (auto& [id, t] : tasks) {
    auto def = defs.find(t.task_definition);
    if (def == defs.end()) continue;
    (void)model::CheckTaskPolicy(def->second.view(), policy, t.cluster, host, true);
    agent::TaskIdentity ident;
    ident.id = id;
    ident.cluster = t.cluster;
    ident.node = "n";
    ident.service = t.service;
    ident.task_definition = t.task_definition;
    agent::PlanOptions po;
    po.secrets = t.secrets;
    for (const agent::SecretValue& v : t.secrets) {
      if (v.file) po.secret_dirs[v.container] = "/run/berth/secrets/t/" + v.container;
    }
    Result<agent::TaskPlan> plan = agent::PlanTask(ident, def->second.view(), po);
    if (!plan) continue;
    // What labels may carry in the open: the definition (container names, its
    // family) and the task's own fields, printed as JSON strings are.
    std::string open_text = def->second.Print();
    for (std::string_view f : {std::string_view(id), std::string_view(t.cluster), std::string_view(t.service),
                               std::string_view(t.task_definition)}) {
      json::AppendQuoted(&open_text, f);
    }
    for (const agent::ContainerPlan& c : plan->containers) {
      Result<json::Doc> body = json::Doc::Parse(c.create_body);
      if (!body) fuzz::Fail("a create body that is not JSON", c.create_body);
      std::string labels = body->view().Get("Labels").Print();
      for (const agent::SecretValue& v : t.secrets) {
        if (v.value.size() < 8 || labels.find(v.value) == std::string::npos) continue;
        if (open_text.find(v.value) != std::string::npos) continue;  // in labels as the name it also is
        fuzz::Fail("a secret in labels", labels);
      }
    }
  }
  return 0;
}
