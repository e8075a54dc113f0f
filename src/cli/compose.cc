// `berth compose`: a Compose project as one task definition run as one service
// (src/compose/compose.h translates; docs/compose.md has the table). `config`
// needs no server; the other subcommands call the native API.
#include "compose/compose.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "base/flags.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/describe.h"
#include "cli/table.h"
#include "net/http.h"

extern char** environ;

namespace berth::cli {

namespace {

namespace http = net::http;

std::string Q(const std::string& s) { return http::UrlEncode(s); }

const char kComposeUsage[] =
    "Usage: berth compose [-f FILE]... [-p PROJECT] [--cluster NAME] [--ignore-unsupported] COMMAND\n"
    "\n"
    "A Compose project runs as one task definition (family PROJECT) whose containers are\n"
    "its services, as one berth service named PROJECT (docs/compose.md).\n"
    "\n"
    "Commands:\n"
    "  config        print the translated task definition (RegisterTaskDefinition JSON); no server needed\n"
    "  up            register the task definition (a new revision only when it changed) and create or\n"
    "                update the service (a new revision rolls out under the service's deployment rules)\n"
    "  ps [--json]   the project's tasks and their containers\n"
    "  scale N       set the service's desired count\n"
    "  logs [-f]     the containers' output, each line prefixed with its service\n"
    "  down          scale the service to 0 and delete it (task definitions stay, as revisions)\n"
    "\n"
    "-f defaults to compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml in the\n"
    "current directory; several -f merge as Compose merges them. The project name defaults to the\n"
    "top-level name: or the first file's directory.\n\nFlags:\n%s";

// Loads and translates the project; prints warnings. Returns an exit code, or kOk with *out set.
int LoadProject(const flags::Parsed& p, compose::Project* out) {
  compose::Options o;
  o.files = p.GetAll("file");
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) {
    fprintf(stderr, "berth compose: cannot read the current directory\n");
    return kUsage;
  }
  o.cwd = cwd;
  if (o.files.empty()) {
    for (const char* name : {"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"}) {
      if (access(name, R_OK) == 0) {
        o.files.push_back(name);
        break;
      }
    }
    if (o.files.empty()) {
      fprintf(stderr,
              "berth compose: no compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml here; "
              "name one with -f FILE\n");
      return kUsage;
    }
  }
  o.project = p.Get("project-name");
  o.ignore_unsupported = p.Has("ignore-unsupported");
  for (char** e = environ; *e; e++) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) o.environment[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (const char* home = getenv("HOME")) o.home = home;
  Result<compose::Project> r = compose::Load(o);
  if (!r) {
    fprintf(stderr, "%s\n", r.error().message.c_str());
    return kUsage;
  }
  for (const std::string& w : r->warnings) fprintf(stderr, "warning: %s\n", w.c_str());
  *out = std::move(r.value());
  return kOk;
}

// The service named `name` in `cluster`, or an invalid view (the list holds it).
json::View FindService(const CallResult& list, const std::string& name) {
  for (json::View s : list.body.view().Get("services")) {
    if (s.Get("serviceName").String() == name && s.Get("status").String() != "INACTIVE") return s;
  }
  return json::View();
}

// Whether the ACTIVE revision `current` holds the same definition as `wanted`
// (the server adds its own fields: arn, revision, status, times, compatibilities).
bool SameDefinition(json::View current, json::View wanted) {
  size_t ours = 0;
  for (json::View f : wanted) {
    ours++;
    json::View theirs = current.Get(f.Key());
    if (!theirs.valid() || theirs.Print() != f.Print()) return false;
  }
  size_t server_fields = 0;
  for (const char* k : {"taskDefinitionArn", "revision", "status", "registeredAt", "compatibilities", "deregisteredAt",
                        "registeredBy"}) {
    if (current.Get(k).valid()) server_fields++;
  }
  return current.Size() == ours + server_fields;
}

int Up(const compose::Project& project, const std::string& cluster) {
  const std::string& family = project.name;
  // The latest ACTIVE revision of the family, if any, and whether it is this one.
  std::string ref;
  CallResult list = Call("GET", "/v1/taskdefinitions?status=ACTIVE&familyPrefix=" + Q(family));
  if (list.exit) return list.exit;
  int64_t latest = 0;
  for (json::View d : list.body.view().Get("taskDefinitions")) {
    if (d.Get("family").String() == family) latest = std::max(latest, d.Get("revision").IntIn(0, INT32_MAX, 0));
  }
  if (latest > 0) {
    CallResult cur = Call("GET", "/v1/taskdefinitions/" + Q(family + ":" + std::to_string(latest)));
    if (cur.exit) return cur.exit;
    if (SameDefinition(cur.body.view().Get("taskDefinition"), project.task_definition.view())) {
      ref = family + ":" + std::to_string(latest);
      printf("task definition %s is unchanged\n", ref.c_str());
    }
  }
  if (ref.empty()) {
    CallResult reg = Call("POST", "/v1/taskdefinitions", project.task_definition.Print());
    if (reg.exit) return reg.exit;
    json::View td = reg.body.view().Get("taskDefinition");
    ref = family + ":" + Num(td, "revision");
    printf("registered task definition %s\n", ref.c_str());
  }
  CallResult services = Call("GET", "/v1/services?cluster=" + Q(cluster));
  if (services.exit) return services.exit;
  json::View svc = FindService(services, family);
  if (!svc.valid()) {
    json::Doc body = json::Doc::Object();
    body.Set("cluster", cluster).Set("serviceName", family).Set("taskDefinition", ref).Set("desiredCount", 1);
    CallResult r = Call("POST", "/v1/services", body.Print());
    if (r.exit) return r.exit;
    printf("created service %s in cluster %s (%s, 1 task)\n", family.c_str(), cluster.c_str(), ref.c_str());
    return kOk;
  }
  std::string current(svc.Get("taskDefinition").String());
  if (current.ends_with("/" + ref)) {
    printf("service %s already runs %s\n", family.c_str(), ref.c_str());
    return kOk;
  }
  CallResult r = Call("PATCH", "/v1/services/" + Q(family) + "?cluster=" + Q(cluster),
                      json::Doc::Object().Set("taskDefinition", ref).Print());
  if (r.exit) return r.exit;
  printf("updated service %s to %s (rolling out)\n", family.c_str(), ref.c_str());
  return kOk;
}

int Down(const std::string& name, const std::string& cluster) {
  CallResult services = Call("GET", "/v1/services?cluster=" + Q(cluster));
  if (services.exit) return services.exit;
  json::View svc = FindService(services, name);
  if (!svc.valid()) {
    printf("no service %s in cluster %s: nothing to do\n", name.c_str(), cluster.c_str());
    return kOk;
  }
  // A down run again before the first one's tasks have stopped: DRAINING takes no
  // change, and the deletion already asked for is all there is to do.
  if (svc.Get("status").String() == "DRAINING") {
    printf("service %s is already being deleted (its tasks are stopping): nothing to do\n", name.c_str());
    return kOk;
  }
  std::string path = "/v1/services/" + Q(name) + "?cluster=" + Q(cluster);
  CallResult r = Call("PATCH", path, json::Doc::Object().Set("desiredCount", 0).Print());
  if (r.exit) return r.exit;
  r = Call("DELETE", path);
  if (r.exit) return r.exit;
  printf("deleted service %s (its tasks are stopping)\n", name.c_str());
  return kOk;
}

std::string Bindings(json::View container) {
  std::string out;
  for (json::View b : container.Get("networkBindings")) {
    if (!out.empty()) out += ",";
    out += Num(b, "hostPort") + "->" + Num(b, "containerPort") + "/" + Str(b, "protocol");
  }
  return out.empty() ? "-" : out;
}

int Ps(const std::string& name, const std::string& cluster, bool as_json) {
  CallResult r = Call("GET", "/v1/tasks?cluster=" + Q(cluster) + "&service=" + Q(name) + "&desiredStatus=RUNNING");
  if (r.exit) return r.exit;
  if (as_json) {
    printf("%s\n", r.body.Print().c_str());
    return kOk;
  }
  Table t({"TASK", "SERVICE", "TASKDEF", "NODE", "LAST", "HEALTH", "PORTS"});
  for (json::View task : r.body.view().Get("tasks")) {
    std::string arn(task.Get("taskDefinitionArn").String());
    std::string td = arn.substr(arn.rfind('/') + 1);
    for (json::View c : task.Get("containers")) {
      t.Add({ShortTaskId(Str(task, "taskId")), Str(c, "name"), td, Str(task, "nodeId"), Str(c, "lastStatus"),
             Str(c, "healthStatus"), Bindings(c)});
    }
  }
  printf("%s", t.Render().c_str());
  return kOk;
}

// One container's log stream, each line prefixed "SERVICE | ".
int StreamLogs(const std::string& task, const std::string& container, bool follow, const std::string& prefix) {
  std::string target =
      "/v1/tasks/" + Q(task) + "/logs?follow=" + (follow ? "true" : "false") + "&container=" + Q(container);
  std::string partial;
  bool at_line_start = true;
  int exit = CallStreamed(target, [&](std::string_view data) {
    std::string out;
    for (char ch : data) {
      if (at_line_start) out += prefix;
      out += ch;
      at_line_start = ch == '\n';
    }
    fwrite(out.data(), 1, out.size(), stdout);
    fflush(stdout);
  });
  if (!at_line_start) printf("\n");
  return exit;
}

int Logs(const compose::Project& project, const std::string& cluster, bool follow) {
  CallResult r =
      Call("GET", "/v1/tasks?cluster=" + Q(cluster) + "&service=" + Q(project.name) + "&desiredStatus=RUNNING");
  if (r.exit) return r.exit;
  size_t width = 0;
  for (const std::string& s : project.services) width = std::max(width, s.size());
  std::vector<std::pair<std::string, std::string>> streams;  // (task, container)
  for (json::View task : r.body.view().Get("tasks")) {
    for (json::View c : task.Get("containers")) streams.emplace_back(Str(task, "taskId"), Str(c, "name"));
  }
  if (streams.empty()) {
    fprintf(stderr, "berth compose: service %s has no running task\n", project.name.c_str());
    return kRefused;
  }
  auto prefix = [&](const std::string& name) {
    return name + std::string(width - std::min(width, name.size()), ' ') + " | ";
  };
  if (!follow) {
    for (const auto& [task, container] : streams) {
      if (int exit = StreamLogs(task, container, false, prefix(container)); exit != kOk) return exit;
    }
    return kOk;
  }
  // Following: one process per stream (each call runs its own event loop), all
  // ended together by Ctrl-C as one process group.
  std::vector<pid_t> children;
  for (const auto& [task, container] : streams) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // no stream outlives the command
      _exit(StreamLogs(task, container, true, prefix(container)));
    }
    if (pid > 0) children.push_back(pid);
  }
  int worst = kOk;
  for (pid_t pid : children) {
    int status = 0;
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) != kOk) {
      worst = WEXITSTATUS(status);
    }
  }
  return worst;
}

}  // namespace

int ComposeCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      {"file", true, "FILE", "a compose file (repeatable: later files override earlier ones; also -f)"},
      {"project-name", true, "NAME", "the project: task definition family and service name (also -p)"},
      {"cluster", true, "NAME", "the cluster (default: default)"},
      {"ignore-unsupported", false, "", "warn about keys berth cannot honour and skip them, instead of refusing"},
      {"json", false, "", "ps: print JSON"},
      {"follow", false, "", "logs: keep streaming (also -f after logs)"},
  };
  // -f is --file before the subcommand and --follow after `logs`; -p is --project-name.
  std::vector<std::string> rewritten;
  bool after_logs = false;
  for (const std::string& a : args) {
    if (a == "logs") after_logs = true;
    if (a == "-f") {
      rewritten.push_back(after_logs ? "--follow" : "--file");
    } else if (a == "-p") {
      rewritten.push_back("--project-name");
    } else {
      rewritten.push_back(a);
    }
  }
  Result<flags::Parsed> p = flags::ParseFlags(rewritten, specs);
  if (!p) return UsageError("compose", p.error().message);
  if (p->help || p->positional.empty()) {
    printf(kComposeUsage, flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  std::string cluster = p->Get("cluster", "default");
  size_t want_args = sub == "scale" ? 2 : 1;
  if (p->positional.size() != want_args) {
    return UsageError("compose", sub == "scale" ? "scale takes a count" : sub + " takes no arguments");
  }
  if (sub != "config" && sub != "up" && sub != "down" && sub != "ps" && sub != "scale" && sub != "logs") {
    return UsageError("compose", "unknown subcommand '" + sub + "'");
  }
  compose::Project project;
  if (int exit = LoadProject(*p, &project); exit != kOk) return exit;
  if (sub == "config") {
    printf("%s\n", compose::PrettyJson(project.task_definition.Print()).c_str());
    return kOk;
  }
  if (sub == "up") return Up(project, cluster);
  if (sub == "down") return Down(project.name, cluster);
  if (sub == "ps") return Ps(project.name, cluster, p->Has("json"));
  if (sub == "logs") return Logs(project, cluster, p->Has("follow"));
  Result<uint64_t> n = flags::ParseCount(p->positional[1], "count");
  if (!n || *n > 1000000) return UsageError("compose", "scale: expected a whole number of tasks");
  CallResult r = Call("PATCH", "/v1/services/" + Q(project.name) + "?cluster=" + Q(cluster),
                      json::Doc::Object().Set("desiredCount", static_cast<int64_t>(*n)).Print());
  if (r.exit) return r.exit;
  printf("service %s: desired count %llu\n", project.name.c_str(), static_cast<unsigned long long>(*n));
  return kOk;
}

}  // namespace berth::cli
