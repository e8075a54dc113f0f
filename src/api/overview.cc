// GET /v1/overview: what the dashboard's first page shows of one cluster, in
// one answer of bounded size whatever the cluster's size (at most 50 services
// and 20 events). Nodes keep their tasks' counts and resources as tasks come
// and go, and retention keeps each cluster's stopped tasks by the time they
// stopped, so the answer costs a walk over the nodes and services and over the
// tasks stopped in the last hour, never one over every task.
#include "api/overview.h"

#include <algorithm>

#include "api/api.h"
#include "control/retention.h"
#include "net/router.h"

namespace berth::api {

namespace http = net::http;

namespace {

struct Usage {
  int64_t nodes = 0;
  int64_t cpu = 0, cpu_used = 0, memory = 0, memory_used = 0;
  void Add(const model::Node& n) {
    nodes++;
    cpu += n.cpu;
    cpu_used += n.used_cpu;
    memory += n.memory;
    memory_used += n.used_memory;
  }
  json::Doc Resource(int64_t registered, int64_t allocated) const {
    json::Doc d = json::Doc::Object();
    d.Set("registered", registered).Set("allocated", allocated);
    return d;
  }
};

// The zone a node is in, by its attributes ("" none).
std::string ZoneOf(const model::Node& n) {
  for (const char* name : {"zone", "ecs.availability-zone"}) {
    if (auto it = n.attributes.find(name); it != n.attributes.end()) return it->second;
  }
  return "";
}

void Overview(Context* ctx, const http::ExchangePtr& ex) {
  std::optional<std::string> cluster = ex->request().Query("cluster");
  if (!cluster || cluster->empty()) {
    return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "cluster: the overview is of one cluster"));
  }
  if (!ctx->state->FindCluster(*cluster)) {
    return ex->Respond(http::ErrorResponse(404, "ClusterNotFound", "cluster " + *cluster + " does not exist"));
  }
  if (!ClusterInScope(*ctx->state, ex, *cluster)) return;
  int64_t now = ctx->clock->NowUnixMs();

  int64_t active = 0, draining = 0, inactive = 0, connected = 0, running = 0, pending = 0;
  Usage all;
  std::map<std::string, Usage> zones;
  for (const auto& [id, n] : ctx->state->nodes()) {
    if (n.cluster != *cluster) continue;
    all.Add(n);
    zones[ZoneOf(n)].Add(n);
    active += n.status == "ACTIVE";
    draining += n.status == "DRAINING";
    inactive += n.status == "INACTIVE";
    connected += n.connected;
    running += n.running;
    pending += n.pending;
  }
  int64_t stopped_last_hour = static_cast<int64_t>(ctx->retention->StoppedSince(*cluster, now - 3600 * 1000));

  struct Row {
    const model::Service* svc;
    int64_t running = 0, pending = 0;
    bool steady = false;
  };
  std::vector<Row> rows;
  struct Event {
    int64_t at_ms;
    const std::string* service;
    const std::string* message;
  };
  std::vector<Event> events;
  for (const auto& [key, svc] : ctx->state->services()) {
    if (svc.cluster != *cluster) continue;
    Row r{&svc};
    for (const model::DeploymentCounts& c : ctx->services->Counts(svc)) {
      r.running += c.running;
      r.pending += c.pending;
    }
    r.steady = svc.deployments.size() == 1 && svc.primary().rollout_state == "COMPLETED" && r.running == svc.desired &&
               r.pending == 0;
    rows.push_back(r);
    // Each service's events are newest first: its 20 newest are all that can count.
    size_t taken = 0;
    for (const model::ServiceEvent& e : svc.events) {
      if (taken++ == 20) break;
      events.push_back({e.at_ms, &svc.name, &e.message});
    }
  }
  std::sort(rows.begin(), rows.end(),
            [](const Row& a, const Row& b) { return a.steady != b.steady ? !a.steady : a.svc->name < b.svc->name; });
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.at_ms > b.at_ms; });

  json::Doc out = json::Doc::Object();
  out.Set("cluster", *cluster);
  json::Doc nodes = json::Doc::Object();
  nodes.Set("total", all.nodes)
      .Set("active", active)
      .Set("draining", draining)
      .Set("inactive", inactive)
      .Set("connected", connected)
      .Set("disconnected", all.nodes - connected);
  out.Set("nodes", std::move(nodes));
  json::Doc resources = json::Doc::Object();
  resources.Set("cpu", all.Resource(all.cpu, all.cpu_used)).Set("memory", all.Resource(all.memory, all.memory_used));
  out.Set("resources", std::move(resources));
  json::Doc zone_list = json::Doc::Array();
  for (const auto& [zone, u] : zones) {
    json::Doc z = json::Doc::Object();
    z.Set("zone", zone)
        .Set("nodes", u.nodes)
        .Set("cpu", u.Resource(u.cpu, u.cpu_used))
        .Set("memory", u.Resource(u.memory, u.memory_used));
    zone_list.Push(std::move(z));
  }
  out.Set("zones", std::move(zone_list));
  json::Doc tasks = json::Doc::Object();
  tasks.Set("running", running).Set("pending", pending).Set("stoppedLastHour", stopped_last_hour);
  out.Set("tasks", std::move(tasks));
  json::Doc services = json::Doc::Array();
  for (size_t i = 0; i < rows.size() && i < 50; i++) {
    const model::Service& s = *rows[i].svc;
    json::Doc d = json::Doc::Object();
    d.Set("serviceName", s.name)
        .Set("desiredCount", s.desired)
        .Set("runningCount", rows[i].running)
        .Set("pendingCount", rows[i].pending)
        .Set("steady", rows[i].steady)
        .Set("taskDefinition",
             s.deployments.empty() ? std::string() : s.primary().family + ":" + std::to_string(s.primary().revision));
    services.Push(std::move(d));
  }
  out.Set("services", std::move(services)).Set("servicesTotal", static_cast<int64_t>(rows.size()));
  json::Doc event_list = json::Doc::Array();
  for (size_t i = 0; i < events.size() && i < 20; i++) {
    json::Doc e = json::Doc::Object();
    e.Set("createdAt", static_cast<double>(events[i].at_ms) / 1000.0)
        .Set("service", *events[i].service)
        .Set("message", *events[i].message);
    event_list.Push(std::move(e));
  }
  out.Set("events", std::move(event_list));
  ex->Respond(http::JsonResponse(200, out.Print()));
}

}  // namespace

void AddOverviewRoutes(http::Router* router, Context* ctx) {
  http::RouteOptions read;
  read.access = http::Access::kRead;
  read.scope = http::Scope::kCluster;
  router->Add(
      "GET", "/v1/overview", [ctx](const http::ExchangePtr& ex) { Overview(ctx, ex); }, read);
}

}  // namespace berth::api
