// Fuzzes what a task definition goes through from the body of
// RegisterTaskDefinition to the Docker create call: JSON parsing, ECS validation,
// the summary, the task policy (as a cluster's and as a host's, with a host view
// whose paths resolve oddly), the agent's plan with the secrets it takes, and,
// over the same bytes, the task policy parser, secret references, secret key
// files and the audit log's time parser.
//
// Invariants checked besides the sanitizers: a definition that validates
// validates again as it was normalised (the agent re-validates what the server
// sent), and its plan never fails for a reason validation should have caught.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agent/container_spec.h"
#include "base/clock.h"
#include "base/json.h"
#include "fuzz_common.h"
#include "model/policy.h"
#include "model/secret.h"
#include "model/taskdef.h"

namespace {

using namespace berth;

const model::TaskPolicy& Permissive() {
  static const model::TaskPolicy p = [] {
    model::TaskPolicy t;
    t.host_paths = {{"/srv", true}, {"/etc/ssl", false}};
    t.host_network = t.host_pid = t.external_volumes = true;
    t.log_drivers = {"syslog"};
    return t;
  }();
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The same bytes as a secret's reference, a key file, a time.
  if (Result<std::string> name = model::SecretNameFromRef(text, "valueFrom"); name) {
    if (!model::ValidateSecretName(*name)) fuzz::Fail("a reference to an invalid name", *name);
  }
  if (Result<model::SecretBox> box = model::SecretBox::FromKeyText(text, "key"); box) {
    Result<model::Secret> sealed = box->Seal("n", text);
    if (!sealed || !box->Open(*sealed) || *box->Open(*sealed) != text) fuzz::Fail("seal and open", box->id());
  }
  if (std::optional<int64_t> t = ParseUtcIso8601(text); t && !ParseUtcIso8601(UtcIso8601(*t))) {
    fuzz::Fail("a time that does not read back", std::string(text));
  }
  Result<json::Doc> doc = json::Doc::Parse(text);
  if (!doc) return 0;

  // The same bytes as a task policy.
  if (Result<model::TaskPolicy> p = model::ParseTaskPolicy(doc->view()); p) {
    Result<model::TaskPolicy> back = model::ParseTaskPolicy(p->ToJson().view());
    if (!back || !(back.value() == p.value())) fuzz::Fail("policy round trip", p->ToJson().Print());
  }

  Result<json::Doc> valid = model::ValidateTaskDefinition(doc->view());
  if (!valid) return 0;
  Result<json::Doc> again = model::ValidateTaskDefinition(valid->view());
  if (!again) fuzz::Fail("a normalised definition no longer validates", again.error().message);

  model::TaskDefinition td;
  td.family = std::string(valid->view().Get("family").String());
  td.revision = 1;
  td.doc = valid->Print();
  if (Status s = model::SummariseTaskDefinition(&td); !s) fuzz::Fail("summary", s.error().message);
  json::Doc full = model::TaskDefinitionJson(td);

  model::HostView server;
  server.socket_paths = model::DefaultSocketPaths();
  model::HostView host = server;
  host.forbidden = {"/var/lib/berth"};
  host.resolve = [](const std::string& p) { return p.size() % 3 == 0 ? std::string("/etc") : p + "/./x/"; };
  for (const model::TaskPolicy* policy : {&Permissive(), static_cast<const model::TaskPolicy*>(nullptr)}) {
    model::TaskPolicy none;
    const model::TaskPolicy& p = policy ? *policy : none;
    Status a = model::CheckTaskPolicy(valid->view(), p, "c", server);
    Status b = model::CheckTaskPolicy(full.view(), p, "c", host, true);
    if (!a && a.error().message.empty()) fuzz::Fail("a refusal without a message", "");
    if (!b && b.error().message.empty()) fuzz::Fail("a refusal without a message", "");
  }

  agent::TaskIdentity task;
  task.id = "0123456789abcdef0123456789abcdef";
  task.cluster = "default";
  task.node = "n";
  task.task_definition = td.family + ":1";
  agent::PlanOptions po;
  for (const model::SecretRef& r : td.secrets) {
    po.secrets.push_back(agent::SecretValue{r.container, r.name, "v=" + r.secret, r.file});
    if (r.file) po.secret_dirs[r.container] = "/run/berth/secrets/t/" + r.container;
  }
  Result<agent::TaskPlan> plan = agent::PlanTask(task, full.view(), po);
  if (plan) {
    for (const agent::ContainerPlan& c : plan->containers) {
      if (!json::Doc::Parse(c.create_body)) fuzz::Fail("a create body that is not JSON", c.create_body);
    }
  }
  return 0;
}
