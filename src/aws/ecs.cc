// The ECS operations of the AWS front end (frontend.h): each reads its AWS input,
// calls the native routes and reshapes their answers.
#include <algorithm>
#include <map>

#include "aws/frontend.h"

namespace berth::aws {

namespace http = net::http;

namespace {

// The native answer's JSON; an empty object when it is not JSON.
json::Doc Body(const http::Response& r) {
  Result<json::Doc> d = json::Doc::Parse(r.body);
  return d ? std::move(d.value()) : json::Doc::Object();
}

bool Ok(const http::Response& r) { return r.status >= 200 && r.status < 300; }

// The value of a native answer that is one object of one field,
// `{"<field>":<value>}`, as berth's own API prints it: taken as text, neither
// parsed nor printed again (a service with its events is tens of kilobytes).
// Parsed and printed when the answer has another shape.
std::string_view SoleField(const http::Response& r, std::string_view field, std::string* fallback) {
  const std::string& b = r.body;
  size_t n = field.size() + 4;  // {"field":
  if (b.size() > n + 1 && b[0] == '{' && b[1] == '"' && b.compare(2, field.size(), field) == 0 &&
      b[2 + field.size()] == '"' && b[3 + field.size()] == ':' && b.back() == '}') {
    return std::string_view(b).substr(n, b.size() - n - 1);
  }
  *fallback = Body(r).view().Get(field).Print();
  return *fallback;
}

// A list field of strings; fails the call (and returns nullopt) when it is not one.
std::optional<std::vector<std::string>> Strings(const CallPtr& c, std::string_view field, bool required) {
  json::View v = c->input().Get(field);
  std::vector<std::string> out;
  if (!v.valid() || v.IsNull()) {
    if (required) {
      c->Fail("InvalidParameterException", std::string(field) + ": is required");
      return std::nullopt;
    }
    return out;
  }
  if (!v.IsArray()) {
    c->Fail("InvalidParameterException", std::string(field) + ": must be a list of strings");
    return std::nullopt;
  }
  for (json::View e : v) {
    if (!e.IsString()) {
      c->Fail("InvalidParameterException", std::string(field) + ": must be a list of strings");
      return std::nullopt;
    }
    out.emplace_back(e.String());
  }
  if (out.size() > 100) {
    c->Fail("InvalidParameterException",
            std::string(field) + ": at most 100 entries, not " + std::to_string(out.size()));
    return std::nullopt;
  }
  return out;
}

std::string Cluster(const CallPtr& c) { return ClusterName(c->OptionalString("cluster")); }

// ECS pages hold at most 100 entries.
constexpr int64_t kPage = 100;

// A native list as a page of its entries' ARNs: `arn_field` of each entry of
// `list_field` in the answer to GET `target` (those `keep` accepts).
void ListArns(const CallPtr& c, std::string target, std::string list_field, std::string arn_field,
              std::string out_field, std::function<bool(json::View)> keep = nullptr) {
  c->Native("GET", target, "", [c, list_field, arn_field, out_field, keep](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    json::Doc arns = json::Doc::Array();
    for (json::View e : b.view().Get(list_field)) {
      if (!keep || keep(e)) arns.Push(e.Get(arn_field).String());
    }
    c->ReplyPage(arns.view(), out_field, kPage);
  });
}

// Describe* over several names: one native GET each; 404s become failures
// {"arn", "reason": "MISSING"}.
void DescribeEach(const CallPtr& c, std::vector<std::pair<std::string, std::string>> gets,
                  std::vector<std::string> names, std::string native_field, std::string out_field,
                  std::function<bool(json::View)> keep = nullptr) {
  c->NativeAll(std::move(gets), [c, names, native_field, out_field, keep](std::vector<http::Response> answers) {
    std::string items;
    json::Doc failures = json::Doc::Array();
    for (size_t i = 0; i < answers.size(); i++) {
      if (answers[i].status == 404 || (answers[i].status == 400 && names[i].size() < 6)) {
        failures.Push(json::Doc::Object().Set("arn", names[i]).Set("reason", "MISSING"));
        continue;
      }
      if (!Ok(answers[i])) return c->FailNative(answers[i]);
      if (keep) {
        json::Doc body = Body(answers[i]);
        if (!keep(body.view().Get(native_field))) {
          failures.Push(json::Doc::Object().Set("arn", names[i]).Set("reason", "MISSING"));
          continue;
        }
      }
      std::string fallback;
      items.append(items.empty() ? "" : ",").append(SoleField(answers[i], native_field, &fallback));
    }
    c->ReplyText("{\"" + out_field + "\":[" + items + "],\"failures\":" + failures.Print() + "}");
  });
}

// Answers with the native body's `field` under `out_field` (the same by default).
void Forward(const CallPtr& c, std::string method, std::string target, std::string body, std::string field,
             std::string out_field = {}) {
  if (out_field.empty()) out_field = field;
  c->Native(std::move(method), std::move(target), std::move(body), [c, field, out_field](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    std::string fallback;
    std::string_view value = SoleField(r, field, &fallback);
    std::string text;
    text.reserve(value.size() + out_field.size() + 8);
    text.append("{\"").append(out_field).append("\":").append(value).append("}");
    c->ReplyText(std::move(text));
  });
}

// Runs `then` once the call's cluster is known to exist (ClusterNotFoundException
// otherwise), for the calls that name things by id, not by cluster (the native
// lists filtered by a cluster answer ClusterNotFound themselves).
void WithCluster(const CallPtr& c, std::function<void()> then) {
  c->Native("GET", "/v1/clusters/" + http::UrlEncode(Cluster(c)), "", [c, then](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    then();
  });
}

// --- clusters ---

void CreateCluster(const CallPtr& c) {
  std::string name = c->OptionalString("clusterName", "default");
  c->Forwarded();  // notes the ignored fields sent
  std::string body = json::Doc::Object().Set("clusterName", name).Print();
  c->Native("POST", "/v1/clusters", body, [c, name](http::Response r) {
    if (r.status == 409) {
      // ECS's CreateCluster is idempotent: the cluster as it is.
      return Forward(c, "GET", "/v1/clusters/" + http::UrlEncode(name), "", "cluster");
    }
    if (!Ok(r)) return c->FailNative(r);
    c->Reply(json::Doc::Object().Set("cluster", json::Doc::Copy(Body(r).view().Get("cluster"))));
  });
}

void DeleteCluster(const CallPtr& c) {
  std::optional<std::string> name = c->RequireString("cluster");
  if (!name) return;
  Forward(c, "DELETE", "/v1/clusters/" + http::UrlEncode(ClusterName(*name)), "", "cluster");
}

void DescribeClusters(const CallPtr& c) {
  std::optional<std::vector<std::string>> names = Strings(c, "clusters", false);
  if (!names) return;
  if (names->empty()) names->push_back("default");
  std::vector<std::pair<std::string, std::string>> gets;
  for (const std::string& n : *names) gets.emplace_back("GET", "/v1/clusters/" + http::UrlEncode(ClusterName(n)));
  DescribeEach(c, std::move(gets), *names, "cluster", "clusters");
}

void ListClusters(const CallPtr& c) { ListArns(c, "/v1/clusters", "clusters", "clusterArn", "clusterArns"); }

void UpdateCluster(const CallPtr& c) {
  std::optional<std::string> name = c->RequireString("cluster");
  if (!name) return;
  c->Forwarded();
  Forward(c, "GET", "/v1/clusters/" + http::UrlEncode(ClusterName(*name)), "", "cluster");
}

// --- task definitions ---

void RegisterTaskDefinition(const CallPtr& c) {
  json::Doc body = c->Forwarded();
  c->Native("POST", "/v1/taskdefinitions", body.Print(), [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    json::Doc out = json::Doc::Object();
    out.Set("taskDefinition", json::Doc::Copy(b.view().Get("taskDefinition")));
    json::View tags = b.view().Get("taskDefinition").Get("tags");
    out.Set("tags", tags.valid() ? json::Doc::Copy(tags) : json::Doc::Array());
    c->Reply(std::move(out));
  });
}

void DescribeTaskDefinition(const CallPtr& c) {
  std::optional<std::string> ref = c->RequireString("taskDefinition");
  if (!ref) return;
  c->Native("GET", "/v1/taskdefinitions/" + http::UrlEncode(*ref), "", [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    json::Doc out = json::Doc::Object();
    out.Set("taskDefinition", json::Doc::Copy(b.view().Get("taskDefinition")));
    json::View tags = b.view().Get("taskDefinition").Get("tags");
    out.Set("tags", tags.valid() ? json::Doc::Copy(tags) : json::Doc::Array());
    c->Reply(std::move(out));
  });
}

void DeregisterTaskDefinition(const CallPtr& c) {
  std::optional<std::string> ref = c->RequireString("taskDefinition");
  if (!ref) return;
  std::string name = *ref;
  if (name.starts_with("arn:")) name = name.substr(name.find("task-definition/") + 16);
  if (name.find(':') == std::string::npos) {
    return c->Fail("InvalidParameterException", "taskDefinition: a revision is required (family:revision or its ARN)");
  }
  Forward(c, "DELETE", "/v1/taskdefinitions/" + http::UrlEncode(name), "", "taskDefinition");
}

// Berth forgets an INACTIVE revision no task or service uses once the task
// retention has passed (control/retention.h): a deletion asked here is that one,
// reported as AWS reports its own, DELETE_IN_PROGRESS.
void DeleteTaskDefinitions(const CallPtr& c) {
  std::optional<std::vector<std::string>> refs = Strings(c, "taskDefinitions", true);
  if (!refs) return;
  if (refs->empty() || refs->size() > 10) {
    return c->Fail("InvalidParameterException", "taskDefinitions: 1-10 revisions");
  }
  std::vector<std::pair<std::string, std::string>> gets;
  for (const std::string& r : *refs) gets.emplace_back("GET", "/v1/taskdefinitions/" + http::UrlEncode(r));
  std::vector<std::string> names = *refs;
  c->NativeAll(std::move(gets), [c, names](std::vector<http::Response> answers) {
    json::Doc defs = json::Doc::Array();
    json::Doc failures = json::Doc::Array();
    for (size_t i = 0; i < answers.size(); i++) {
      if (!Ok(answers[i])) {
        failures.Push(
            json::Doc::Object().Set("arn", names[i]).Set("reason", "The specified task definition does not exist."));
        continue;
      }
      json::Doc td = json::Doc::Copy(Body(answers[i]).view().Get("taskDefinition"));
      if (td.view().Get("status").String() != "INACTIVE") {
        failures.Push(json::Doc::Object()
                          .Set("arn", names[i])
                          .Set("reason",
                               "The specified task definition is still in ACTIVE status. Please deregister "
                               "the target and try again."));
        continue;
      }
      json::Doc copy = json::Doc::Object();
      for (json::View m : td.view()) {
        if (m.Key() != "status") copy.SetRaw(m.Key(), m.Print());
      }
      copy.Set("status", "DELETE_IN_PROGRESS");
      defs.Push(copy);
    }
    c->Reply(json::Doc::Object().Set("taskDefinitions", defs).Set("failures", failures));
  });
}

void ListTaskDefinitions(const CallPtr& c) {
  std::string target = "/v1/taskdefinitions?status=" + http::UrlEncode(c->OptionalString("status", "ACTIVE"));
  if (std::string p = c->OptionalString("familyPrefix"); !p.empty()) target += "&familyPrefix=" + http::UrlEncode(p);
  bool desc = c->OptionalString("sort", "ASC") == "DESC";
  c->Native("GET", target, "", [c, desc](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    std::vector<std::pair<std::pair<std::string, int64_t>, std::string>> arns;
    for (json::View t : b.view().Get("taskDefinitions")) {
      arns.push_back({{std::string(t.Get("family").String()), static_cast<int64_t>(t.Get("revision").Number())},
                      std::string(t.Get("taskDefinitionArn").String())});
    }
    std::sort(arns.begin(), arns.end());
    if (desc) std::reverse(arns.begin(), arns.end());
    json::Doc all = json::Doc::Array();
    for (const auto& a : arns) all.Push(a.second);
    c->ReplyPage(all.view(), "taskDefinitionArns", kPage);
  });
}

void ListTaskDefinitionFamilies(const CallPtr& c) {
  std::string status = c->OptionalString("status", "ACTIVE");
  std::string prefix = c->OptionalString("familyPrefix");
  std::string target = "/v1/taskdefinitions?status=" + http::UrlEncode(status);
  if (!prefix.empty()) target += "&familyPrefix=" + http::UrlEncode(prefix);
  c->Native("GET", target, "", [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    std::vector<std::string> families;
    for (json::View t : b.view().Get("taskDefinitions")) families.emplace_back(t.Get("family").String());
    std::sort(families.begin(), families.end());
    families.erase(std::unique(families.begin(), families.end()), families.end());
    json::Doc all = json::Doc::Array();
    for (const std::string& f : families) all.Push(f);
    c->ReplyPage(all.view(), "families", kPage);
  });
}

// --- tasks ---

void RunTask(const CallPtr& c) {
  json::Doc body = c->Forwarded({"cluster"});
  body.Set("cluster", Cluster(c));
  c->Native("POST", "/v1/tasks", body.Print(), [c](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    c->Reply(json::Doc::Object()
                 .Set("tasks", json::Doc::Copy(b.view().Get("tasks")))
                 .Set("failures", json::Doc::Copy(b.view().Get("failures"))));
  });
}

// StartTask places one task on each named container instance: RunTask with a
// memberOf on the instance id.
void StartTask(const CallPtr& c) {
  std::optional<std::vector<std::string>> instances = Strings(c, "containerInstances", true);
  if (!instances) return;
  if (instances->empty() || instances->size() > 10) {
    return c->Fail("InvalidParameterException", "containerInstances: 1-10 container instances");
  }
  std::vector<std::string> ids;
  for (const std::string& i : *instances) ids.push_back(LastPart(i));
  auto results = std::make_shared<std::pair<json::Doc, json::Doc>>(json::Doc::Array(), json::Doc::Array());
  auto left = std::make_shared<size_t>(ids.size());
  for (const std::string& id : ids) {
    json::Doc body = c->Forwarded({"cluster", "containerInstances"});
    body.Set("cluster", Cluster(c));
    json::Doc constraint = json::Doc::Object();
    constraint.Set("type", "memberOf").Set("expression", "instanceId == " + id);
    body.Set("placementConstraints", json::Doc::Array().Push(constraint));
    body.Set("count", 1);
    c->Native("POST", "/v1/tasks", body.Print(), [c, results, left, id](http::Response r) {
      if (!Ok(r)) {
        json::Doc b = Body(r);
        results->second.Push(json::Doc::Object().Set("arn", id).Set(
            "reason", std::string(b.view().Get("error").Get("message").String())));
      } else {
        json::Doc b = Body(r);
        for (json::View t : b.view().Get("tasks")) results->first.Push(json::Doc::Copy(t));
        for (json::View f : b.view().Get("failures")) results->second.Push(json::Doc::Copy(f));
      }
      if (--*left == 0) {
        c->Reply(json::Doc::Object().Set("tasks", results->first).Set("failures", results->second));
      }
    });
  }
}

void StopTask(const CallPtr& c) {
  std::optional<std::string> task = c->RequireString("task");
  if (!task) return;
  std::string id = http::UrlEncode(LastPart(*task));
  std::string reason = c->OptionalString("reason", "Task stopped by the user");
  c->Native("POST", "/v1/tasks/" + id + "/stop", json::Doc::Object().Set("reason", reason).Print(),
            [c, id](http::Response r) {
              if (!Ok(r)) return c->FailNative(r);
              Forward(c, "GET", "/v1/tasks/" + id, "", "task");
            });
}

void DescribeTasks(const CallPtr& c) {
  std::optional<std::vector<std::string>> tasks = Strings(c, "tasks", true);
  if (!tasks) return;
  std::string cluster = Cluster(c);
  std::vector<std::pair<std::string, std::string>> gets;
  for (const std::string& t : *tasks) gets.emplace_back("GET", "/v1/tasks/" + http::UrlEncode(LastPart(t)));
  WithCluster(c, [c, gets = std::move(gets), names = *tasks, cluster]() mutable {
    DescribeEach(c, std::move(gets), names, "task", "tasks",
                 [cluster](json::View t) { return ClusterName(t.Get("clusterArn").String()) == cluster; });
  });
}

void ListTasks(const CallPtr& c) {
  std::string target = "/v1/tasks?cluster=" + http::UrlEncode(Cluster(c)) +
                       "&desiredStatus=" + http::UrlEncode(c->OptionalString("desiredStatus", "RUNNING"));
  if (std::string s = c->OptionalString("serviceName"); !s.empty())
    target += "&service=" + http::UrlEncode(LastPart(s));
  if (std::string n = c->OptionalString("containerInstance"); !n.empty())
    target += "&node=" + http::UrlEncode(LastPart(n));
  if (std::string f = c->OptionalString("family"); !f.empty()) target += "&family=" + http::UrlEncode(f);
  std::string started_by = c->OptionalString("startedBy");
  ListArns(c, target, "tasks", "taskArn", "taskArns",
           [started_by](json::View t) { return started_by.empty() || t.Get("startedBy").String() == started_by; });
}

// --- services ---

void CreateService(const CallPtr& c) {
  json::Doc body = c->Forwarded({"cluster"});
  body.Set("cluster", Cluster(c));
  Forward(c, "POST", "/v1/services", body.Print(), "service");
}

void UpdateService(const CallPtr& c) {
  std::optional<std::string> service = c->RequireString("service");
  if (!service) return;
  json::Doc body = c->Forwarded({"cluster", "service"});
  Forward(c, "PATCH", "/v1/services/" + http::UrlEncode(LastPart(*service)) + "?cluster=" + http::UrlEncode(Cluster(c)),
          body.Print(), "service");
}

void DeleteService(const CallPtr& c) {
  std::optional<std::string> service = c->RequireString("service");
  if (!service) return;
  json::View force = c->input().Get("force");
  std::string target =
      "/v1/services/" + http::UrlEncode(LastPart(*service)) + "?cluster=" + http::UrlEncode(Cluster(c));
  if (force.IsBool() && force.Bool()) target += "&force=true";
  Forward(c, "DELETE", target, "", "service");
}

void DescribeServices(const CallPtr& c) {
  std::optional<std::vector<std::string>> services = Strings(c, "services", true);
  if (!services) return;
  std::string cluster = http::UrlEncode(Cluster(c));
  std::vector<std::pair<std::string, std::string>> gets;
  for (const std::string& s : *services)
    gets.emplace_back("GET", "/v1/services/" + http::UrlEncode(LastPart(s)) + "?cluster=" + cluster);
  c->NativeAll(std::move(gets), [c, names = *services](std::vector<http::Response> answers) {
    if (!answers.empty() && answers[0].status == 404) {
      json::Doc b = Body(answers[0]);
      if (b.view().Get("error").Get("code").String() == "ClusterNotFound") return c->FailNative(answers[0]);
    }
    std::string items;
    json::Doc failures = json::Doc::Array();
    for (size_t i = 0; i < answers.size(); i++) {
      if (answers[i].status == 404) {
        failures.Push(json::Doc::Object().Set("arn", names[i]).Set("reason", "MISSING"));
        continue;
      }
      if (!Ok(answers[i])) return c->FailNative(answers[i]);
      std::string fallback;
      items.append(items.empty() ? "" : ",").append(SoleField(answers[i], "service", &fallback));
    }
    c->ReplyText("{\"services\":[" + items + "],\"failures\":" + failures.Print() + "}");
  });
}

void ListServices(const CallPtr& c) {
  ListArns(c, "/v1/services?cluster=" + http::UrlEncode(Cluster(c)), "services", "serviceArn", "serviceArns");
}

// --- container instances (berth's nodes) ---

void ListContainerInstances(const CallPtr& c) {
  std::string target = "/v1/nodes?cluster=" + http::UrlEncode(Cluster(c));
  if (std::string s = c->OptionalString("status"); !s.empty()) target += "&status=" + http::UrlEncode(s);
  c->Forwarded();
  ListArns(c, target, "containerInstances", "containerInstanceArn", "containerInstanceArns");
}

void DescribeContainerInstances(const CallPtr& c) {
  std::optional<std::vector<std::string>> ids = Strings(c, "containerInstances", true);
  if (!ids) return;
  std::string cluster = Cluster(c);
  std::vector<std::pair<std::string, std::string>> gets;
  for (const std::string& i : *ids) gets.emplace_back("GET", "/v1/nodes/" + http::UrlEncode(LastPart(i)));
  WithCluster(c, [c, gets = std::move(gets), names = *ids, cluster]() mutable {
    DescribeEach(c, std::move(gets), names, "containerInstance", "containerInstances",
                 [cluster](json::View n) { return n.Get("cluster").String() == cluster; });
  });
}

void UpdateContainerInstancesState(const CallPtr& c) {
  std::optional<std::vector<std::string>> ids = Strings(c, "containerInstances", true);
  if (!ids) return;
  std::optional<std::string> status = c->RequireString("status");
  if (!status) return;
  if (*status != "ACTIVE" && *status != "DRAINING") {
    return c->Fail("InvalidParameterException", "status: must be ACTIVE or DRAINING, not " + *status);
  }
  std::string action = *status == "DRAINING" ? "drain" : "activate";
  auto left = std::make_shared<size_t>(ids->size());
  auto failures = std::make_shared<json::Doc>(json::Doc::Array());
  auto done = std::make_shared<std::vector<std::string>>();
  if (ids->empty())
    return c->Reply(
        json::Doc::Object().Set("containerInstances", json::Doc::Array()).Set("failures", json::Doc::Array()));
  for (const std::string& raw : *ids) {
    std::string id = LastPart(raw);
    c->Native(
        "POST", "/v1/nodes/" + http::UrlEncode(id) + "/" + action, "{}",
        [c, left, failures, done, id, raw](http::Response r) {
          if (Ok(r)) {
            done->push_back(id);
          } else {
            failures->Push(json::Doc::Object()
                               .Set("arn", raw)
                               .Set("reason", r.status == 404
                                                  ? "MISSING"
                                                  : std::string(Body(r).view().Get("error").Get("message").String())));
          }
          if (--*left) return;
          std::vector<std::pair<std::string, std::string>> gets;
          for (const std::string& d : *done) gets.emplace_back("GET", "/v1/nodes/" + http::UrlEncode(d));
          c->NativeAll(std::move(gets), [c, failures](std::vector<http::Response> answers) {
            json::Doc items = json::Doc::Array();
            for (const http::Response& a : answers) {
              if (Ok(a)) items.Push(json::Doc::Copy(Body(a).view().Get("containerInstance")));
            }
            c->Reply(json::Doc::Object().Set("containerInstances", items).Set("failures", std::move(*failures)));
          });
        });
  }
}

void DeregisterContainerInstance(const CallPtr& c) {
  std::optional<std::string> instance = c->RequireString("containerInstance");
  if (!instance) return;
  std::string id = http::UrlEncode(LastPart(*instance));
  json::View force = c->input().Get("force");
  bool forced = force.IsBool() && force.Bool();
  c->Native("GET", "/v1/nodes/" + id, "", [c, id, forced](http::Response before) {
    if (!Ok(before)) return c->FailNative(before);
    json::Doc node = Body(before);
    c->Native("DELETE", "/v1/nodes/" + id + (forced ? "?force=true" : ""), "",
              [c, node = std::make_shared<json::Doc>(std::move(node))](http::Response r) {
                if (!Ok(r)) return c->FailNative(r);
                json::Doc ci = json::Doc::Object();
                for (json::View m : node->view().Get("containerInstance")) {
                  if (m.Key() != "status") ci.SetRaw(m.Key(), m.Print());
                }
                ci.Set("status", "INACTIVE");
                c->Reply(json::Doc::Object().Set("containerInstance", ci));
              });
  });
}

// --- tags (any ECS resource, by ARN) ---

// The resourceArn of the input in berth's form; fails the call when it is not
// an ECS ARN.
std::optional<std::string> ResourceArn(const CallPtr& c) {
  std::optional<std::string> arn = c->RequireString("resourceArn");
  if (!arn) return std::nullopt;
  std::string ours = BerthArn(*arn, "ecs");
  if (ours.empty()) {
    c->Fail("InvalidParameterException", "resourceArn: " + *arn + " is not an ECS resource ARN");
    return std::nullopt;
  }
  return ours;
}

// A native answer about a tagged resource: ECS's own message for one not found.
void FailTags(const CallPtr& c, const http::Response& r) {
  if (r.status == 404) return c->Fail("InvalidParameterException", "The specified resource is not found.");
  c->FailNative(r);
}

void TagResource(const CallPtr& c) {
  std::optional<std::string> arn = ResourceArn(c);
  if (!arn) return;
  json::View tags = c->input().Get("tags");
  if (!tags.IsArray()) return c->Fail("InvalidParameterException", "tags: is required, a list of {key, value}");
  json::Doc list = json::Doc::Array();
  for (json::View t : tags) {
    list.Push(json::Doc::Object().Set("key", t.Get("key").String()).Set("value", t.Get("value").String()));
  }
  std::string body = json::Doc::Object().Set("resource", *arn).Set("tags", list).Print();
  c->Native("POST", "/v1/tags", body, [c](http::Response r) {
    if (!Ok(r)) return FailTags(c, r);
    c->Reply(json::Doc::Object());
  });
}

void UntagResource(const CallPtr& c) {
  std::optional<std::string> arn = ResourceArn(c);
  if (!arn) return;
  std::optional<std::vector<std::string>> keys = Strings(c, "tagKeys", true);
  if (!keys) return;
  json::Doc list = json::Doc::Array();
  for (const std::string& k : *keys) list.Push(k);
  std::string body = json::Doc::Object().Set("resource", *arn).Set("tagKeys", list).Print();
  c->Native("POST", "/v1/tags/remove", body, [c](http::Response r) {
    if (!Ok(r)) return FailTags(c, r);
    c->Reply(json::Doc::Object());
  });
}

void ListTagsForResource(const CallPtr& c) {
  std::optional<std::string> arn = ResourceArn(c);
  if (!arn) return;
  c->Native("GET", "/v1/tags?resource=" + http::UrlEncode(*arn), "", [c](http::Response r) {
    if (!Ok(r)) return FailTags(c, r);
    std::string fallback;
    c->ReplyText("{\"tags\":" + std::string(SoleField(r, "tags", &fallback)) + "}");
  });
}

// --- attributes (custom attributes of container instances) ---

// The attributes of the input, each {name, value?, targetType?, targetId}, by
// target id; fails the call (and returns nullopt) on a malformed one.
std::optional<std::map<std::string, std::vector<std::pair<std::string, std::string>>>> AttributesByTarget(
    const CallPtr& c) {
  json::View attrs = c->input().Get("attributes");
  if (!attrs.IsArray() || attrs.Size() == 0 || attrs.Size() > 10) {
    c->Fail("InvalidParameterException", "attributes: 1-10 {name, value, targetType, targetId}");
    return std::nullopt;
  }
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
  for (json::View a : attrs) {
    std::string type(a.Get("targetType").String());
    if (!type.empty() && type != "container-instance") {
      c->Fail("InvalidParameterException", "targetType: only container-instance, not " + type);
      return std::nullopt;
    }
    std::string target = LastPart(a.Get("targetId").String());
    if (target.empty()) {
      c->Fail("InvalidParameterException", "targetId: is required (a container instance's id or ARN)");
      return std::nullopt;
    }
    out[target].emplace_back(a.Get("name").String(), a.Get("value").String());
  }
  return out;
}

// PutAttributes and DeleteAttributes: one native call per target, in turn (the
// first that fails answers); the answer is the input's attributes.
void ChangeAttributes(const CallPtr& c, bool put) {
  auto targets = AttributesByTarget(c);
  if (!targets) return;
  std::string cluster = Cluster(c);
  auto work = std::make_shared<std::vector<std::pair<std::string, std::string>>>();  // (target, native body)
  for (const auto& [target, attrs] : *targets) {
    json::Doc list = json::Doc::Array();
    for (const auto& [name, value] : attrs) {
      if (put) {
        list.Push(json::Doc::Object().Set("name", name).Set("value", value));
      } else {
        list.Push(name);
      }
    }
    work->emplace_back(target, json::Doc::Object().Set(put ? "attributes" : "names", list).Print());
  }
  // Each step holds itself only weakly; the native call in flight holds it.
  using Step = std::function<void(size_t)>;
  auto step = std::make_shared<Step>();
  std::weak_ptr<Step> weak = step;
  *step = [c, work, put, cluster, weak](size_t i) {
    if (i == work->size()) {
      return c->Reply(json::Doc::Object().Set("attributes", json::Doc::Copy(c->input().Get("attributes"))));
    }
    std::shared_ptr<Step> self = weak.lock();
    const std::string& target = (*work)[i].first;
    c->Native("GET", "/v1/nodes/" + http::UrlEncode(target), "", [c, work, put, cluster, self, i](http::Response got) {
      const std::string& target = (*work)[i].first;
      json::Doc node = Body(got);
      if (got.status == 404 || (Ok(got) && node.view().Get("containerInstance").Get("cluster").String() != cluster)) {
        return c->Fail("TargetNotFoundException", "Could not find " + target + " in cluster " + cluster + ".");
      }
      if (!Ok(got)) return c->FailNative(got);
      std::string path = "/v1/nodes/" + http::UrlEncode(target) + (put ? "/attributes" : "/attributes/remove");
      c->Native(put ? "PUT" : "POST", path, (*work)[i].second, [c, self, i](http::Response r) {
        if (!Ok(r)) return c->FailNative(r);
        (*self)(i + 1);
      });
    });
  };
  WithCluster(c, [step] { (*step)(0); });
}

void PutAttributes(const CallPtr& c) { ChangeAttributes(c, true); }
void DeleteAttributes(const CallPtr& c) { ChangeAttributes(c, false); }

void ListAttributes(const CallPtr& c) {
  std::optional<std::string> type = c->RequireString("targetType");
  if (!type) return;
  if (*type != "container-instance") {
    return c->Fail("InvalidParameterException", "targetType: only container-instance, not " + *type);
  }
  std::string name = c->OptionalString("attributeName");
  std::string value = c->OptionalString("attributeValue");
  if (!value.empty() && name.empty()) {
    return c->Fail("InvalidParameterException", "attributeValue: needs attributeName");
  }
  std::string target = "/v1/nodes?cluster=" + http::UrlEncode(Cluster(c));
  c->Native("GET", target, "", [c, name, value](http::Response r) {
    if (!Ok(r)) return c->FailNative(r);
    json::Doc b = Body(r);
    json::Doc all = json::Doc::Array();
    for (json::View n : b.view().Get("containerInstances")) {
      for (json::View a : n.Get("attributes")) {
        if (!name.empty() && a.Get("name").String() != name) continue;
        if (!value.empty() && a.Get("value").String() != value) continue;
        json::Doc item = json::Doc::Object();
        item.Set("name", a.Get("name").String());
        if (a.Get("value").valid()) item.Set("value", a.Get("value").String());
        item.Set("targetType", "container-instance").Set("targetId", n.Get("containerInstanceArn").String());
        all.Push(item);
      }
    }
    c->ReplyPage(all.view(), "attributes", kPage);
  });
}

constexpr Exception kEcsExceptions[] = {
    {"ClusterNotFound", "ClusterNotFoundException"},
    {"ServiceNotFound", "ServiceNotFoundException"},
    {"ServiceNotActive", "ServiceNotActiveException"},
    {"ServiceInactive", "ServiceNotActiveException"},
    {"ClusterContainsContainerInstances", "ClusterContainsContainerInstancesException"},
    {"ClusterContainsServices", "ClusterContainsServicesException"},
    {"ClusterContainsTasks", "ClusterContainsTasksException"},
    {"TaskDefinitionNotFound", "ClientException"},
    {"TaskDefinitionInactive", "ClientException"},
    {"TaskNotFound", "InvalidParameterException"},
    {"TaskIdAmbiguous", "InvalidParameterException"},
    {"NodeNotFound", "InvalidParameterException"},
    {"ResourceNotFound", "InvalidParameterException"},
    {"NodeHasTasks", "InvalidParameterException"},
    {"ServiceAlreadyExists", "InvalidParameterException"},
    {"ServiceNotScaledDown", "InvalidParameterException"},
    {"TaskPolicyRefused", "AccessDeniedException"},
    {"Forbidden", "AccessDeniedException"},
    {"NoLeader", "ServerException"},
    {"NotLeader", "ServerException"},
};

// Fields of the AWS input that berth accepts and does not act on: Fargate and
// capacity providers, load balancers and service discovery (until berth has
// them), IAM roles and network configuration (berth runs containers with Docker's
// bridge and host networks).
const Operation kOperations[] = {
    {"CreateCluster", Support::kPartial, CreateCluster,
     "tags, settings, configuration, capacityProviders, defaultCapacityProviderStrategy, serviceConnectDefaults"},
    {"DeleteCluster", Support::kFull, DeleteCluster, ""},
    {"DescribeClusters", Support::kPartial, DescribeClusters, "include"},
    {"ListClusters", Support::kFull, ListClusters, ""},
    {"UpdateCluster", Support::kPartial, UpdateCluster, "settings, configuration, serviceConnectDefaults"},
    {"RegisterTaskDefinition", Support::kPartial, RegisterTaskDefinition,
     "taskRoleArn, executionRoleArn, runtimePlatform, ephemeralStorage, proxyConfiguration, inferenceAccelerators"},
    {"DeregisterTaskDefinition", Support::kFull, DeregisterTaskDefinition, ""},
    {"DeleteTaskDefinitions", Support::kFull, DeleteTaskDefinitions, ""},
    {"DescribeTaskDefinition", Support::kPartial, DescribeTaskDefinition, "include"},
    {"ListTaskDefinitions", Support::kFull, ListTaskDefinitions, ""},
    {"ListTaskDefinitionFamilies", Support::kFull, ListTaskDefinitionFamilies, ""},
    {"RunTask", Support::kPartial, RunTask,
     "launchType, capacityProviderStrategy, networkConfiguration, platformVersion, enableECSManagedTags, "
     "propagateTags, tags, referenceId, enableExecuteCommand, clientToken"},
    {"StartTask", Support::kPartial, StartTask,
     "networkConfiguration, enableECSManagedTags, propagateTags, tags, referenceId, enableExecuteCommand"},
    {"StopTask", Support::kFull, StopTask, ""},
    {"DescribeTasks", Support::kPartial, DescribeTasks, "include"},
    {"ListTasks", Support::kPartial, ListTasks, "launchType"},
    {"CreateService", Support::kPartial, CreateService,
     "serviceRegistries, launchType, capacityProviderStrategy, platformVersion, role, "
     "networkConfiguration, schedulingStrategy, deploymentController, tags, "
     "enableECSManagedTags, propagateTags, enableExecuteCommand, serviceConnectConfiguration, clientToken"},
    {"UpdateService", Support::kPartial, UpdateService,
     "capacityProviderStrategy, networkConfiguration, platformVersion, enableExecuteCommand, "
     "enableECSManagedTags, propagateTags, serviceRegistries, serviceConnectConfiguration"},
    {"DeleteService", Support::kFull, DeleteService, ""},
    {"DescribeServices", Support::kPartial, DescribeServices, "include"},
    {"ListServices", Support::kPartial, ListServices, "launchType, schedulingStrategy"},
    {"ListContainerInstances", Support::kPartial, ListContainerInstances, "filter"},
    {"DescribeContainerInstances", Support::kPartial, DescribeContainerInstances, "include"},
    {"UpdateContainerInstancesState", Support::kFull, UpdateContainerInstancesState, ""},
    {"DeregisterContainerInstance", Support::kFull, DeregisterContainerInstance, ""},
    {"TagResource", Support::kFull, TagResource, ""},
    {"UntagResource", Support::kFull, UntagResource, ""},
    {"ListTagsForResource", Support::kFull, ListTagsForResource, ""},
    {"PutAttributes", Support::kFull, PutAttributes, ""},
    {"DeleteAttributes", Support::kFull, DeleteAttributes, ""},
    {"ListAttributes", Support::kFull, ListAttributes, ""},
};

}  // namespace

const Service& Ecs() {
  static const Service s{"AmazonEC2ContainerServiceV20141113",       "ecs",         "ecs", kOperations,
                         sizeof kOperations / sizeof kOperations[0], kEcsExceptions};
  return s;
}

}  // namespace berth::aws
