// Fuzzes the bodies of RunTask (POST /v1/tasks), CreateService (POST
// /v1/services) and UpdateService (PATCH /v1/services/{name}) as the routes read
// them (api/bodies.h: every field, deploymentConfiguration, placementConstraints
// and placementStrategy), and what an accepted one becomes: the service document
// kept in state.db, and the CreateService and UpdateService commands of the log.
// Every input goes to all three readers.
//
// Invariants checked besides the sanitizers: an accepted body, encoded again from
// what was read, reads the same; an accepted service's document parses back to
// the same document, and its placement JSON, which the service controller reads
// again at every placement, still parses; the commands decode to what was encoded.
#include <cstdint>
#include <string>
#include <string_view>

#include "api/bodies.h"
#include "base/json.h"
#include "control/scheduler.h"
#include "fuzz_common.h"
#include "model/commands.h"
#include "model/service.h"

namespace {

using namespace berth;

bool SamePlacement(const sched::Request& a, const sched::Request& b) {
  return a.distinct_instance == b.distinct_instance && a.member_of.size() == b.member_of.size() &&
         a.strategies.size() == b.strategies.size();
}

bool SameSettings(const api::ServiceSettings& a, const api::ServiceSettings& b) {
  return a.min_healthy_pct == b.min_healthy_pct && a.max_pct == b.max_pct && a.breaker == b.breaker &&
         a.rollback == b.rollback && a.constraints == b.constraints && a.strategy == b.strategy;
}

// The body fields that carry `s`.
void SetSettings(json::Doc* body, const api::ServiceSettings& s) {
  if (s.min_healthy_pct != -1 || s.max_pct != -1 || s.breaker != -1) {
    json::Doc dc = json::Doc::Object();
    if (s.min_healthy_pct != -1) dc.Set("minimumHealthyPercent", s.min_healthy_pct);
    if (s.max_pct != -1) dc.Set("maximumPercent", s.max_pct);
    if (s.breaker != -1) {
      dc.Set("deploymentCircuitBreaker",
             json::Doc::Object().Set("enable", s.breaker == 1).Set("rollback", s.rollback == 1));
    }
    body->Set("deploymentConfiguration", std::move(dc));
  }
  for (auto [key, text] : {std::pair{"placementConstraints", &s.constraints}, {"placementStrategy", &s.strategy}}) {
    if (text->empty()) continue;
    Result<json::Doc> doc = json::Doc::Parse(*text);
    if (!doc) fuzz::Fail("placement JSON that does not parse", *text);
    body->Set(key, std::move(doc.value()));
  }
}

// What the service controller does with the placement a service keeps.
void CheckKeptPlacement(const std::string& constraints, const std::string& strategy) {
  Result<json::Doc> c = json::Doc::Parse(constraints), s = json::Doc::Parse(strategy);
  if (!c || !s) fuzz::Fail("a service's placement that is not JSON", constraints + " " + strategy);
  sched::Request req;
  if (!control::ParsePlacement(c->view(), s->view(), "", &req)) {
    fuzz::Fail("a service's placement that no longer parses", constraints + " " + strategy);
  }
}

void CheckRunTask(json::View v) {
  api::RunTaskBody b = api::ReadRunTask(v);
  if (!b.cluster || !b.task_definition || !b.count || !b.group || !b.started_by || !b.placement) return;
  json::Doc again = json::Doc::Object();
  again.Set("cluster", *b.cluster).Set("taskDefinition", *b.task_definition).Set("count", *b.count);
  if (*b.group) again.Set("group", **b.group);
  again.Set("startedBy", *b.started_by);
  for (const char* key : {"placementConstraints", "placementStrategy"}) {
    if (v.Get(key).valid()) again.Set(key, json::Doc::Parse(v.Get(key).Print()).value());
  }
  api::RunTaskBody c = api::ReadRunTask(again.view());
  if (!c.cluster || !c.task_definition || !c.count || !c.group || !c.started_by || !c.placement ||
      *c.cluster != *b.cluster || *c.task_definition != *b.task_definition || *c.count != *b.count ||
      *c.group != *b.group || *c.started_by != *b.started_by || !SamePlacement(*c.placement, *b.placement)) {
    fuzz::Fail("a RunTask body that reads otherwise once encoded again", again.Print());
  }
}

void CheckCreateService(json::View v) {
  api::CreateServiceBody b = api::ReadCreateService(v);
  if (!b.cluster || !b.name || !b.task_definition || !b.desired || !b.settings) return;
  json::Doc again = json::Doc::Object();
  again.Set("cluster", *b.cluster)
      .Set("serviceName", *b.name)
      .Set("taskDefinition", *b.task_definition)
      .Set("desiredCount", *b.desired);
  SetSettings(&again, *b.settings);
  api::CreateServiceBody c = api::ReadCreateService(again.view());
  if (!c.cluster || !c.name || !c.task_definition || !c.desired || !c.settings || *c.cluster != *b.cluster ||
      *c.name != *b.name || *c.task_definition != *b.task_definition || *c.desired != *b.desired ||
      !SameSettings(*c.settings, *b.settings)) {
    fuzz::Fail("a CreateService body that reads otherwise once encoded again", again.Print());
  }

  // The service as the route makes it, kept and read back.
  model::Service svc;
  svc.name = *b.name;
  svc.cluster = *b.cluster;
  svc.arn = model::ServiceArn(svc.cluster, svc.name);
  svc.desired = *b.desired;
  const api::ServiceSettings& s = *b.settings;
  if (s.min_healthy_pct >= 0) svc.min_healthy_pct = s.min_healthy_pct;
  if (s.max_pct >= 0) svc.max_pct = s.max_pct;
  svc.breaker = s.breaker == 1;
  svc.rollback = s.rollback == 1;
  if (!s.constraints.empty()) svc.constraints = s.constraints;
  if (!s.strategy.empty()) svc.strategy = s.strategy;
  model::Deployment d;
  d.id = "ecs-svc/1";
  d.family = "web";
  d.revision = 1;
  svc.deployments.push_back(d);
  std::string doc = model::ServiceDoc(svc);
  Result<model::Service> back = model::ParseServiceDoc(doc);
  if (!back || model::ServiceDoc(back.value()) != doc) fuzz::Fail("a service document that reads back otherwise", doc);
  CheckKeptPlacement(back->constraints, back->strategy);
  model::CreateService cmd;
  cmd.doc = doc;
  Result<store::CommandPtr> decoded = model::DecodeCommand(cmd.Type(), cmd.Encode(), 0);
  const auto* dc = decoded ? dynamic_cast<const model::CreateService*>(decoded->get()) : nullptr;
  if (!dc || dc->doc != doc) fuzz::Fail("a CreateService command that decodes otherwise", doc);
}

void CheckUpdateService(json::View v) {
  api::UpdateServiceBody b = api::ReadUpdateService(v);
  if (!b.desired || !b.settings || !b.task_definition || !b.force_new) return;
  json::Doc again = json::Doc::Object();
  if (*b.desired != -1) again.Set("desiredCount", *b.desired);
  SetSettings(&again, *b.settings);
  if (!b.task_definition->empty()) again.Set("taskDefinition", *b.task_definition);
  again.Set("forceNewDeployment", *b.force_new);
  api::UpdateServiceBody c = api::ReadUpdateService(again.view());
  if (!c.desired || !c.settings || !c.task_definition || !c.force_new || *c.desired != *b.desired ||
      !SameSettings(*c.settings, *b.settings) || *c.task_definition != *b.task_definition ||
      *c.force_new != *b.force_new) {
    fuzz::Fail("an UpdateService body that reads otherwise once encoded again", again.Print());
  }
  if (!b.settings->constraints.empty() || !b.settings->strategy.empty()) {
    CheckKeptPlacement(b.settings->constraints.empty() ? "[]" : b.settings->constraints,
                       b.settings->strategy.empty() ? "[]" : b.settings->strategy);
  }

  model::UpdateService cmd;
  cmd.cluster = "default";
  cmd.name = "web";
  cmd.desired = *b.desired;
  cmd.min_healthy_pct = b.settings->min_healthy_pct;
  cmd.max_pct = b.settings->max_pct;
  cmd.breaker = b.settings->breaker;
  cmd.rollback = b.settings->rollback;
  cmd.constraints = b.settings->constraints;
  cmd.strategy = b.settings->strategy;
  cmd.family = b.task_definition->empty() ? "" : "web";
  cmd.revision = b.task_definition->empty() ? 0 : 2;
  cmd.force_new = *b.force_new;
  cmd.new_deployment = "ecs-svc/2";
  std::string payload = cmd.Encode();
  Result<store::CommandPtr> decoded = model::DecodeCommand(cmd.Type(), payload, 0);
  const auto* u = decoded ? dynamic_cast<const model::UpdateService*>(decoded->get()) : nullptr;
  if (!u || u->cluster != cmd.cluster || u->name != cmd.name || u->desired != cmd.desired ||
      u->min_healthy_pct != cmd.min_healthy_pct || u->max_pct != cmd.max_pct || u->breaker != cmd.breaker ||
      u->rollback != cmd.rollback || u->constraints != cmd.constraints || u->strategy != cmd.strategy ||
      u->family != cmd.family || u->revision != cmd.revision || u->force_new != cmd.force_new ||
      u->new_deployment != cmd.new_deployment) {
    fuzz::Fail("an UpdateService command that decodes otherwise", payload);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<json::Doc> body = json::Doc::Parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!body || !body->view().IsObject()) return 0;  // the routes refuse these before reading a field
  CheckRunTask(body->view());
  CheckCreateService(body->view());
  CheckUpdateService(body->view());
  return 0;
}
