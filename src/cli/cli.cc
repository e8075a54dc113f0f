#include "cli/cli.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/crypto.h"
#include "base/flags.h"
#include "base/json.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/config.h"
#include "cli/join.h"
#include "cli/lb.h"
#include "cli/registry.h"
#include "cli/table.h"
#include "model/secret.h"
#include "net/http_client.h"
#include "net/pki.h"
#include "net/url.h"

namespace berth::cli {

namespace http = net::http;

namespace {

void PrintClusters(const std::vector<json::View>& clusters) {
  Table t({"NAME", "STATUS", "NODES", "SERVICES", "RUNNING", "PENDING", "ARN"});
  for (json::View c : clusters) {
    t.Add({Str(c, "clusterName"), Str(c, "status"), Num(c, "registeredContainerInstancesCount"),
           Num(c, "activeServicesCount"), Num(c, "runningTasksCount"), Num(c, "pendingTasksCount"),
           Str(c, "clusterArn")});
  }
  printf("%s", t.Render().c_str());
}

const char kClusterUsage[] =
    "Usage:\n"
    "  berth cluster create NAME   create a cluster\n"
    "  berth cluster ls            list clusters\n"
    "  berth cluster describe NAME show one cluster\n"
    "  berth cluster rm NAME       delete a cluster (refused while it has nodes or services)\n"
    "  berth cluster update NAME [--allow-... | --deny-...]...\n"
    "                              change what the cluster's tasks may ask of their hosts (admin);\n"
    "                              all of it is refused until allowed here:\n"
    "\n"
    "Flags:\n"
    "  --json                      print the ECS-shaped JSON instead of a table\n"
    "  --allow-host-path PATH[:rw] bind mounts of host paths under PATH (read-only unless :rw); repeatable\n"
    "  --deny-host-path PATH       take PATH off the list again; repeatable\n"
    "  --allow-host-network, --deny-host-network        networkMode host\n"
    "  --allow-host-pid, --deny-host-pid                pidMode host\n"
    "  --allow-docker-socket, --deny-docker-socket      a host path that holds the Docker socket\n"
    "  --allow-external-volumes, --deny-external-volumes  Docker volumes berth did not create\n"
    "                              (dockerVolumeConfiguration.autoprovision false)\n"
    "  --allow-log-driver NAME, --deny-log-driver NAME  log drivers besides json-file, local, none\n"
    "  --reset                     start from nothing allowed\n";

void PrintPolicy(json::View p) {
  std::string paths;
  for (json::View h : p.Get("hostPaths")) {
    paths +=
        (paths.empty() ? "" : ", ") + std::string(h.Get("path").String()) + (h.Get("readWrite").Bool() ? ":rw" : ":ro");
  }
  std::string drivers = "json-file, local, none";
  for (json::View d : p.Get("logDrivers")) drivers += ", " + std::string(d.String());
  auto yes = [&](const char* k) { return p.Get(k).Bool() ? "allowed" : "refused"; };
  printf("Task policy:\n");
  printf("  host paths:       %s\n", paths.empty() ? "none" : paths.c_str());
  printf("  host network:     %s\n", yes("hostNetwork"));
  printf("  host PID:         %s\n", yes("hostPid"));
  printf("  Docker socket:    %s\n", yes("dockerSocket"));
  printf("  external volumes: %s\n", yes("externalVolumes"));
  printf("  log drivers:      %s\n", drivers.c_str());
}

// `berth cluster update`: the policy as the server has it, changed by the flags,
// sent back whole (the server checks it).
int UpdateClusterPolicy(const std::string& name, const flags::Parsed& p, bool as_json) {
  json::Doc policy = json::Doc::Object();
  if (!p.Has("reset")) {
    CallResult r = Call("GET", "/v1/clusters/" + http::UrlEncode(name));
    if (r.exit) return r.exit;
    json::View current = r.body.view().Get("cluster").Get("taskPolicy");
    if (current.IsObject()) policy = json::Doc::Copy(current);
  }
  for (const char* setting : {"host-network", "host-pid", "docker-socket", "external-volumes"}) {
    std::string key = setting == std::string("host-network")    ? "hostNetwork"
                      : setting == std::string("host-pid")      ? "hostPid"
                      : setting == std::string("docker-socket") ? "dockerSocket"
                                                                : "externalVolumes";
    bool allow = p.Has(std::string("allow-") + setting), deny = p.Has(std::string("deny-") + setting);
    if (allow && deny) return UsageError("cluster", std::string("--allow-") + setting + " and --deny-" + setting);
    if (allow || deny) policy.Set(key, allow);
  }
  // Host paths by path; a later flag for the same path wins.
  std::vector<std::pair<std::string, bool>> paths;
  for (json::View h : policy.view().Get("hostPaths")) {
    paths.emplace_back(std::string(h.Get("path").String()), h.Get("readWrite").Bool());
  }
  auto drop = [&](const std::string& path) { std::erase_if(paths, [&](const auto& e) { return e.first == path; }); };
  for (const std::string& d : p.GetAll("deny-host-path")) drop(d);
  for (std::string a : p.GetAll("allow-host-path")) {
    bool rw = false;
    if (a.ends_with(":rw") || a.ends_with(":ro")) {
      rw = a.ends_with(":rw");
      a.resize(a.size() - 3);
    }
    drop(a);
    paths.emplace_back(a, rw);
  }
  json::Doc hp = json::Doc::Array();
  for (const auto& [path, rw] : paths) hp.Push(json::Doc::Object().Set("path", path).Set("readWrite", rw));
  policy.Set("hostPaths", hp);
  std::vector<std::string> drivers;
  for (json::View d : policy.view().Get("logDrivers")) drivers.emplace_back(d.String());
  for (const std::string& d : p.GetAll("deny-log-driver")) std::erase(drivers, d);
  for (const std::string& d : p.GetAll("allow-log-driver")) {
    if (std::find(drivers.begin(), drivers.end(), d) == drivers.end()) drivers.push_back(d);
  }
  json::Doc ld = json::Doc::Array();
  for (const std::string& d : drivers) ld.Push(d);
  policy.Set("logDrivers", ld);
  CallResult r =
      Call("PATCH", "/v1/clusters/" + http::UrlEncode(name), json::Doc::Object().Set("taskPolicy", policy).Print());
  if (r.exit) return r.exit;
  json::View c = r.body.view().Get("cluster");
  if (as_json) {
    printf("%s\n", c.Print().c_str());
  } else {
    printf("updated %s\n", Str(c, "clusterArn").c_str());
    PrintPolicy(c.Get("taskPolicy"));
  }
  return kOk;
}

int ClusterCommand(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, {{"json", false, "", "print JSON"},
                                                     {"allow-host-path", true, "PATH[:rw]", ""},
                                                     {"deny-host-path", true, "PATH", ""},
                                                     {"allow-host-network", false, "", ""},
                                                     {"deny-host-network", false, "", ""},
                                                     {"allow-host-pid", false, "", ""},
                                                     {"deny-host-pid", false, "", ""},
                                                     {"allow-docker-socket", false, "", ""},
                                                     {"deny-docker-socket", false, "", ""},
                                                     {"allow-external-volumes", false, "", ""},
                                                     {"deny-external-volumes", false, "", ""},
                                                     {"allow-log-driver", true, "NAME", ""},
                                                     {"deny-log-driver", true, "NAME", ""},
                                                     {"reset", false, "", ""}});
  if (!p) return UsageError("cluster", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s", kClusterUsage);
    return p->help ? kOk : kUsage;
  }
  bool as_json = p->Has("json");
  const std::string& sub = p->positional[0];
  auto need_name = [&]() -> const std::string* {
    if (p->positional.size() != 2) return nullptr;
    return &p->positional[1];
  };
  if (sub == "ls" || sub == "list") {
    if (p->positional.size() != 1) return UsageError("cluster", "ls takes no arguments");
    CallResult r = Call("GET", "/v1/clusters");
    if (r.exit) return r.exit;
    if (as_json) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    std::vector<json::View> list;
    for (json::View c : r.body.view().Get("clusters")) list.push_back(c);
    PrintClusters(list);
    return kOk;
  }
  if (sub == "update") {
    const std::string* name = need_name();
    if (!name) return UsageError("cluster", "update takes exactly one NAME");
    return UpdateClusterPolicy(*name, *p, as_json);
  }
  if (sub == "create" || sub == "describe" || sub == "rm" || sub == "delete") {
    const std::string* name = need_name();
    if (!name) return UsageError("cluster", sub + " takes exactly one NAME");
    CallResult r;
    if (sub == "create") {
      r = Call("POST", "/v1/clusters", json::Doc::Object().Set("clusterName", *name).Print());
    } else {
      r = Call(sub == "describe" ? "GET" : "DELETE", "/v1/clusters/" + http::UrlEncode(*name));
    }
    if (r.exit) return r.exit;
    json::View c = r.body.view().Get("cluster");
    if (as_json) {
      printf("%s\n", c.Print().c_str());
    } else if (sub == "describe") {
      PrintClusters({c});
      printf("\n");
      PrintPolicy(c.Get("taskPolicy"));
    } else {
      printf("%s %s\n", sub == "create" ? "created" : "deleted", Str(c, "clusterArn").c_str());
    }
    return kOk;
  }
  return UsageError("cluster", "unknown subcommand '" + sub + "'");
}

const char kTaskdefUsage[] =
    "Usage:\n"
    "  berth taskdef register FILE.json   register a new revision (ECS RegisterTaskDefinition JSON; - for stdin)\n"
    "  berth taskdef ls [--all]           list ACTIVE revisions (--all: INACTIVE too)\n"
    "  berth taskdef families             list families with an ACTIVE revision\n"
    "  berth taskdef describe FAMILY[:REV] show one (the latest ACTIVE revision without :REV)\n"
    "  berth taskdef rm FAMILY:REV        deregister a revision (it becomes INACTIVE)\n"
    "\n"
    "Flags:\n"
    "  --json                             print JSON instead of a table\n";

int TaskdefCommand(const std::vector<std::string>& args) {
  Result<flags::Parsed> p =
      flags::ParseFlags(args, {{"json", false, "", "print JSON"}, {"all", false, "", "include INACTIVE"}});
  if (!p) return UsageError("taskdef", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s", kTaskdefUsage);
    return p->help ? kOk : kUsage;
  }
  bool as_json = p->Has("json");
  const std::string& sub = p->positional[0];
  if (sub == "ls" || sub == "list" || sub == "families") {
    if (p->positional.size() != 1) return UsageError("taskdef", sub + " takes no arguments");
    CallResult r = sub == "families"
                       ? Call("GET", "/v1/taskdefinitions/families")
                       : Call("GET", std::string("/v1/taskdefinitions?status=") + (p->Has("all") ? "ALL" : "ACTIVE"));
    if (r.exit) return r.exit;
    if (as_json) {
      printf("%s\n", r.body.Print().c_str());
    } else if (sub == "families") {
      for (json::View f : r.body.view().Get("families")) printf("%s\n", std::string(f.String()).c_str());
    } else {
      Table t({"FAMILY", "REVISION", "STATUS", "CONTAINERS", "CPU", "MEMORY", "REGISTERED"});
      for (json::View d : r.body.view().Get("taskDefinitions")) {
        t.Add({Str(d, "family"), Num(d, "revision"), Str(d, "status"), Num(d, "containers"), Num(d, "cpu"),
               Num(d, "memory"), Seconds(d, "registeredAt")});
      }
      printf("%s", t.Render().c_str());
    }
    return kOk;
  }
  if (p->positional.size() != 2) return UsageError("taskdef", sub + " takes exactly one argument");
  const std::string& arg = p->positional[1];
  CallResult r;
  if (sub == "register") {
    std::string body;
    if (!ReadFile(arg, &body)) {
      fprintf(stderr, "berth taskdef: cannot read %s\n", arg.c_str());
      return kUsage;
    }
    Result<json::Doc> doc = json::Doc::Parse(body);
    if (!doc) {
      fprintf(stderr, "berth taskdef: %s: %s\n", arg.c_str(), doc.error().message.c_str());
      return kUsage;
    }
    r = Call("POST", "/v1/taskdefinitions", body);
  } else if (sub == "describe") {
    r = Call("GET", "/v1/taskdefinitions/" + http::UrlEncode(arg));
  } else if (sub == "rm" || sub == "deregister") {
    r = Call("DELETE", "/v1/taskdefinitions/" + http::UrlEncode(arg));
  } else {
    return UsageError("taskdef", "unknown subcommand '" + sub + "'");
  }
  if (r.exit) return r.exit;
  json::View td = r.body.view().Get("taskDefinition");
  if (as_json || sub == "describe") {
    printf("%s\n", td.Print().c_str());
  } else {
    printf("%s %s\n", sub == "register" ? "registered" : "deregistered", Str(td, "taskDefinitionArn").c_str());
  }
  return kOk;
}

// A token's or access key's limits for a table: "cluster a,b repo team/*", or "-".
std::string LimitsText(json::View tok) {
  std::string limits;
  for (json::View c : tok.Get("clusters")) limits += (limits.empty() ? "cluster " : ",") + std::string(c.String());
  std::string repos;
  for (json::View rp : tok.Get("repositories")) repos += (repos.empty() ? "repo " : ",") + std::string(rp.String());
  if (!repos.empty()) limits += (limits.empty() ? "" : " ") + repos;
  return limits.empty() ? "-" : limits;
}

const char kTokenUsage[] =
    "Usage:\n"
    "  berth token create --role ROLE [--ttl DURATION] [--uses N] [--cluster NAME]... [--repo PATTERN]...\n"
    "                                   make a token (admin, deploy, read-only, agent or server); the secret is shown\n"
    "                                   once, with the cluster CA's fingerprint (all a client needs). --cluster\n"
    "                                   and --repo limit it (not an admin token): to those clusters, and to\n"
    "                                   repositories matching PATTERN (team/*; :pull for pulls only)\n"
    "  berth token ls                   list tokens: role, created, last used, expiry, uses left (never secrets)\n"
    "  berth token rm ID                revoke a token at once (its streams and registry sessions end)\n";

int TokenCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      {"json", false, "", "print JSON"},
      {"role", true, "ROLE", "admin, deploy, read-only, agent or server"},
      {"ttl", true, "DURATION", "the token expires this long after it is made (e.g. 24h)"},
      {"uses", true, "N", "an agent token: how many nodes may join with it"},
      {"cluster", true, "NAME", "limit the token to this cluster (repeatable)"},
      {"repo", true, "PATTERN", "limit the token to repositories matching PATTERN, e.g. team/* or base/*:pull"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("token", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s\nFlags:\n%s", kTokenUsage, flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  if (sub == "create") {
    if (!p->Has("role")) return UsageError("token", "create needs --role");
    json::Doc body = json::Doc::Object();
    body.Set("role", p->Get("role"));
    if (p->Has("ttl")) {
      Result<uint64_t> ttl = flags::ParseDuration(p->Get("ttl"), "ttl");
      if (!ttl || ttl.value() < 1000)
        return UsageError("token", "--ttl: expected a duration of 1s or more, such as 24h");
      body.Set("ttlSeconds", static_cast<int64_t>(ttl.value() / 1000));
    }
    if (p->Has("uses")) {
      Result<uint64_t> uses = flags::ParseCount(p->Get("uses"), "uses");
      if (!uses || uses.value() < 1) return UsageError("token", "--uses: expected a whole number of 1 or more");
      body.Set("uses", static_cast<int64_t>(uses.value()));
    }
    for (auto [flag, field] : {std::pair{"cluster", "clusters"}, std::pair{"repo", "repositories"}}) {
      if (!p->Has(flag)) continue;
      json::Doc list = json::Doc::Array();
      for (const std::string& v : p->GetAll(flag)) list.Push(v);
      body.Set(field, list);
    }
    CallResult r = Call("POST", "/v1/tokens", body.Print());
    if (r.exit) return r.exit;
    json::View t = r.body.view().Get("token");
    if (p->Has("json"))
      printf("%s\n", t.Print().c_str());
    else
      printf("%s\n", Str(t, "secret").c_str());
    return kOk;
  }
  if (sub == "ls" || sub == "list") {
    CallResult r = Call("GET", "/v1/tokens");
    if (r.exit) return r.exit;
    if (p->Has("json")) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    Table t({"ID", "ROLE", "CREATED", "LAST USED", "EXPIRES", "USES LEFT", "LIMITED TO"});
    for (json::View tok : r.body.view().Get("tokens")) {
      t.Add({Str(tok, "id"), Str(tok, "role"), Seconds(tok, "createdAt"), Seconds(tok, "lastUsedAt"),
             tok.Get("expiresAt").valid() ? Seconds(tok, "expiresAt") : "never",
             tok.Get("usesLeft").valid() ? Num(tok, "usesLeft") : "-", LimitsText(tok)});
    }
    printf("%s", t.Render().c_str());
    return kOk;
  }
  if (sub == "rm" || sub == "delete") {
    if (p->positional.size() != 2) return UsageError("token", "rm takes one token ID (see berth token ls)");
    CallResult r = Call("DELETE", "/v1/tokens/" + p->positional[1]);
    if (r.exit) return r.exit;
    printf("removed %s\n", p->positional[1].c_str());
    return kOk;
  }
  return UsageError("token", "unknown subcommand '" + sub + "'");
}

const char kAccessKeyUsage[] =
    "Usage:\n"
    "  berth accesskey create [--role ROLE] [--ttl DURATION] [--cluster NAME]... [--repo PATTERN]...\n"
    "                                   make an access key pair for AWS tools (aws ecs, aws ecr, SDKs): role\n"
    "                                   admin, deploy (the default) or read-only; --cluster and --repo limit it\n"
    "                                   as they do tokens. The secret is shown once; the server keeps it\n"
    "                                   sealed with the key that seals secrets\n"
    "  berth accesskey ls               list access keys: id, role, created, last used, expiry (never secrets)\n"
    "  berth accesskey rm ID            revoke an access key at once\n";

int AccessKeyCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      {"json", false, "", "print JSON"},
      {"role", true, "ROLE", "admin, deploy or read-only (default deploy)"},
      {"ttl", true, "DURATION", "the key expires this long after it is made (e.g. 720h)"},
      {"cluster", true, "NAME", "limit the key to this cluster (repeatable)"},
      {"repo", true, "PATTERN", "limit the key to repositories matching PATTERN, e.g. team/* or base/*:pull"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("accesskey", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s\nFlags:\n%s", kAccessKeyUsage, flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  if (sub == "create") {
    if (p->positional.size() != 1) return UsageError("accesskey", "create takes no arguments, only flags");
    json::Doc body = json::Doc::Object();
    body.Set("role", p->Get("role", "deploy"));
    if (p->Has("ttl")) {
      Result<uint64_t> ttl = flags::ParseDuration(p->Get("ttl"), "ttl");
      if (!ttl || ttl.value() < 1000)
        return UsageError("accesskey", "--ttl: expected a duration of 1s or more, such as 720h");
      body.Set("ttlSeconds", static_cast<int64_t>(ttl.value() / 1000));
    }
    for (auto [flag, field] : {std::pair{"cluster", "clusters"}, std::pair{"repo", "repositories"}}) {
      if (!p->Has(flag)) continue;
      json::Doc list = json::Doc::Array();
      for (const std::string& v : p->GetAll(flag)) list.Push(v);
      body.Set(field, list);
    }
    CallResult r = Call("POST", "/v1/accesskeys", body.Print());
    if (r.exit) return r.exit;
    json::View k = r.body.view().Get("accessKey");
    if (p->Has("json")) {
      printf("%s\n", k.Print().c_str());
      return kOk;
    }
    printf("AccessKeyId:     %s\nSecretAccessKey: %s\nRole:            %s\n", Str(k, "accessKeyId").c_str(),
           Str(k, "secretAccessKey").c_str(), Str(k, "role").c_str());
    if (k.Get("expiresAt").valid()) printf("Expires:         %s\n", Seconds(k, "expiresAt").c_str());
    printf(
        "\nThe secret is shown this once. Give both to AWS tools with `aws configure` (any region),\n"
        "or as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and point them at this server with\n"
        "--endpoint-url.\n");
    return kOk;
  }
  if (sub == "ls" || sub == "list") {
    CallResult r = Call("GET", "/v1/accesskeys");
    if (r.exit) return r.exit;
    if (p->Has("json")) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    Table t({"ACCESS KEY ID", "ROLE", "CREATED", "LAST USED", "EXPIRES", "LIMITED TO"});
    for (json::View k : r.body.view().Get("accessKeys")) {
      t.Add({Str(k, "accessKeyId"), Str(k, "role"), Seconds(k, "createdAt"), Seconds(k, "lastUsedAt"),
             k.Get("expiresAt").valid() ? Seconds(k, "expiresAt") : "never", LimitsText(k)});
    }
    printf("%s", t.Render().c_str());
    return kOk;
  }
  if (sub == "rm" || sub == "delete") {
    if (p->positional.size() != 2)
      return UsageError("accesskey", "rm takes one access key ID (see berth accesskey ls)");
    CallResult r = Call("DELETE", "/v1/accesskeys/" + p->positional[1]);
    if (r.exit) return r.exit;
    printf("removed %s\n", p->positional[1].c_str());
    return kOk;
  }
  return UsageError("accesskey", "unknown subcommand '" + sub + "'");
}

const char kSecretUsage[] =
    "Usage:\n"
    "  berth secret create NAME [--from-file PATH] [--cluster NAME]...\n"
    "                                                 store a secret; the value is read from PATH, or from\n"
    "                                                 stdin, byte for byte (use printf, not echo, to leave\n"
    "                                                 out a newline); with --cluster, only tasks of those\n"
    "                                                 clusters may take it\n"
    "  berth secret rotate NAME [--from-file PATH]   replace its value (tasks started later get the new one)\n"
    "  berth secret ls                               names, versions, and the task definitions using each\n"
    "  berth secret rm NAME                          remove a secret\n"
    "\n"
    "Values are sealed with AES-256-GCM under the server's key and never shown again.\n"
    "A task definition takes one as ECS does, in a container definition:\n"
    "  \"secrets\": [{\"name\": \"DB_PASSWORD\", \"valueFrom\": \"NAME\"}]\n"
    "and as a file /run/secrets/<name> on a tmpfs with \"berthTarget\": \"file\".\n";

// A secret's value: the whole of `path` ("-" or empty: stdin), at most the
// server's bound (one byte more is read, to say it is too long).
Result<std::string> ReadSecretValue(const std::string& path) {
  FILE* f = path.empty() || path == "-" ? stdin : fopen(path.c_str(), "rb");
  if (!f) return Error::Invalid("--from-file " + path + ": " + strerror(errno));
  std::string value;
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0 && value.size() <= model::kMaxSecretBytes) value.append(buf, n);
  if (f != stdin) fclose(f);
  std::fill(std::begin(buf), std::end(buf), '\0');
  if (value.empty()) return Error::Invalid("the secret's value is empty (give it on stdin or with --from-file)");
  if (value.size() > model::kMaxSecretBytes) {
    return Error::Invalid("the secret's value is longer than " + std::to_string(model::kMaxSecretBytes) + " bytes");
  }
  return value;
}

int SecretCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      {"json", false, "", "print JSON"},
      {"from-file", true, "PATH", "read the value from PATH (default: stdin)"},
      {"cluster", true, "NAME", "create: only tasks of this cluster may take it (repeatable; default every cluster)"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("secret", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s\nFlags:\n%s", kSecretUsage, flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  const std::string& sub = p->positional[0];
  if (sub == "create" || sub == "rotate") {
    if (p->positional.size() != 2) return UsageError("secret", sub + " takes one secret NAME");
    const std::string& name = p->positional[1];
    if (Status s = model::ValidateSecretName(name, "NAME"); !s) return UsageError("secret", s.error().message);
    Result<std::string> value = ReadSecretValue(p->Get("from-file", ""));
    if (!value) return UsageError("secret", value.error().message);
    json::Doc body = json::Doc::Object();
    if (sub == "create") body.Set("name", name);
    if (sub == "create" && p->Has("cluster")) {
      json::Doc list = json::Doc::Array();
      for (const std::string& c : p->GetAll("cluster")) list.Push(c);
      body.Set("clusters", list);
    }
    body.Set("valueBase64", crypto::Base64Encode(value.value()));
    std::fill(value->begin(), value->end(), '\0');
    CallResult r =
        sub == "create" ? Call("POST", "/v1/secrets", body.Print()) : Call("PUT", "/v1/secrets/" + name, body.Print());
    if (r.exit) return r.exit;
    json::View sec = r.body.view().Get("secret");
    if (p->Has("json"))
      printf("%s\n", sec.Print().c_str());
    else
      printf("%s %s (version %s)\n", sub == "create" ? "created" : "rotated", Str(sec, "name").c_str(),
             Num(sec, "version").c_str());
    return kOk;
  }
  if (sub == "ls" || sub == "list") {
    CallResult r = Call("GET", "/v1/secrets");
    if (r.exit) return r.exit;
    if (p->Has("json")) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    Table t({"NAME", "VERSION", "UPDATED", "KEY", "USED BY"});
    for (json::View sec : r.body.view().Get("secrets")) {
      std::string users;
      for (json::View u : sec.Get("usedBy")) users += (users.empty() ? "" : ",") + std::string(u.String());
      t.Add({Str(sec, "name"), Num(sec, "version"), Str(sec, "updatedAt"), Str(sec, "keyId"),
             users.empty() ? "-" : users});
    }
    printf("%s", t.Render().c_str());
    return kOk;
  }
  if (sub == "rm" || sub == "delete") {
    if (p->positional.size() != 2) return UsageError("secret", "rm takes one secret NAME");
    CallResult r = Call("DELETE", "/v1/secrets/" + p->positional[1]);
    if (r.exit) return r.exit;
    printf("removed %s\n", p->positional[1].c_str());
    return kOk;
  }
  return UsageError("secret", "unknown subcommand '" + sub + "'");
}

const char kAuditUsage[] =
    "Usage:\n"
    "  berth audit ls [--since TIME|DURATION] [--token ID] [--limit N] [--json]\n"
    "      the audit log, newest first (admin only): every change and every refused\n"
    "      credential, with who (token id and role, or node), from which address, and\n"
    "      how it ended\n";

int AuditCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      {"json", false, "", "print JSON"},
      {"since", true, "TIME", "entries since this UTC time (2026-12-06T03:00:00Z) or this long ago (1h)"},
      {"token", true, "ID", "only what this token (or node:ID) did, itself or through its dashboard sessions"},
      {"limit", true, "N", "at most N entries (default 100, at most 1000)"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("audit", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s\nFlags:\n%s", kAuditUsage, flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  if (p->positional[0] != "ls" && p->positional[0] != "list") {
    return UsageError("audit", "unknown subcommand '" + p->positional[0] + "'");
  }
  std::string query;
  for (const char* name : {"since", "token", "limit"}) {
    if (p->Has(name)) query += std::string(query.empty() ? "?" : "&") + name + "=" + net::http::UrlEncode(p->Get(name));
  }
  CallResult r = Call("GET", "/v1/audit" + query);
  if (r.exit) return r.exit;
  if (p->Has("json")) {
    printf("%s\n", r.body.Print().c_str());
    return kOk;
  }
  Table t({"TIME", "WHO", "ROLE", "ADDRESS", "REQUEST", "RESULT"});
  for (json::View e : r.body.view().Get("events")) {
    std::string result = Num(e, "status");
    if (e.Get("errorCode").valid()) result += " " + Str(e, "errorCode") + ": " + Str(e, "errorMessage");
    if (result.size() > 120) result = result.substr(0, 117) + "...";
    t.Add({Str(e, "time"), Str(e, "actor"), Str(e, "role"), Str(e, "address"), Str(e, "method") + " " + Str(e, "path"),
           result});
  }
  printf("%s", t.Render().c_str());
  return kOk;
}

const std::vector<flags::FlagSpec> kConfigureFlags = {
    {"server", true, "URL[,URL]...", "the server's address, e.g. https://10.0.0.5:7070, or a cluster's servers"},
    {"token", true, "TOKEN",
     "an API token as berth printed it (it carries the CA's fingerprint; the admin token is in the server's "
     "DIR/admin-token)"},
    {"ca-file", true, "PATH", "trust the server by the CA certificates in PATH instead (e.g. the server's ca.crt)"},
};

int ConfigureCommand(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, kConfigureFlags);
  if (!p) return UsageError("configure", p.error().message);
  if (p->help) {
    printf(
        "Usage: berth configure [--server URL[,URL]...] [--token TOKEN] [--ca-file PATH]\n\nWrites %s (mode "
        "0600).\nThe servers of a cluster go comma-separated; each call goes to the first that answers.\n"
        "BERTH_SERVER, BERTH_TOKEN and BERTH_CA_FILE override it. A token berth printed carries\n"
        "the SHA-256 fingerprint of the cluster CA, which is kept as the pin the server's\n"
        "certificate chain must end at.\n\nFlags:\n%s",
        ConfigPath().c_str(), flags::FlagsHelp(kConfigureFlags).c_str());
    return kOk;
  }
  if (!p->positional.empty()) return UsageError("configure", "unexpected argument '" + p->positional[0] + "'");
  if (!p->Has("server") && !p->Has("token") && !p->Has("ca-file")) {
    return UsageError("configure", "give --server, --token, --ca-file or more");
  }
  Config c;
  Result<Config> old = LoadConfig();
  if (old) c = old.value();
  if (p->Has("server")) {
    // A cluster's servers, comma-separated: the CLI asks the first that answers.
    Result<std::vector<net::Endpoint>> servers = net::ParseServerList(p->Get("server"), 7070);
    if (!servers) return UsageError("configure", "--server: " + servers.error().message);
    c.server = p->Get("server");
  }
  if (p->Has("token")) {
    c.token = p->Get("token");
    std::string pin = crypto::SplitToken(c.token).pin;
    if (!pin.empty()) c.ca_pin = pin;
  }
  if (p->Has("ca-file")) {
    std::string pem;
    if (!ReadFile(p->Get("ca-file"), &pem) || pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return UsageError("configure", "--ca-file: " + p->Get("ca-file") + " is not a readable PEM certificate file");
    }
    c.ca_file = p->Get("ca-file");
  }
  if (Status s = SaveConfig(c); !s) {
    fprintf(stderr, "berth configure: %s\n", s.error().message.c_str());
    return kRefused;
  }
  printf("wrote %s\n", ConfigPath().c_str());
  return kOk;
}

// `berth ca show`: the cluster CA and its fingerprint, from a data directory or
// from the configured server (trusted by the pin or CA file as every call is).
int CaCommand(const std::vector<std::string>& args) {
  const std::vector<flags::FlagSpec> kCaFlags = {
      {"data", true, "DIR", "read DIR/ca.crt (a server's data directory) instead of asking the server"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, kCaFlags);
  if (!p) return UsageError("ca", p.error().message);
  if (p->help || p->positional.empty()) {
    printf(
        "Usage: berth ca show [--data DIR]\n\nPrints the cluster CA certificate (PEM) and its SHA-256 fingerprint,\n"
        "the pin every token berth prints carries.\n\nFlags:\n%s",
        flags::FlagsHelp(kCaFlags).c_str());
    return p->help ? kOk : kUsage;
  }
  if (p->positional[0] != "show" || p->positional.size() > 1) {
    return UsageError("ca", "unknown subcommand '" + p->positional.back() + "'");
  }
  std::string pem;
  if (p->Has("data")) {
    std::string path = p->Get("data") + "/ca.crt";
    if (!ReadFile(path, &pem) || pem.empty()) {
      fprintf(stderr, "berth ca: cannot read %s\n", path.c_str());
      return kRefused;
    }
  } else if (int exit = CallRaw("GET", "/v1/ca", &pem); exit != kOk) {
    return exit;
  }
  Result<net::pki::CertInfo> info = net::pki::Inspect(pem);
  if (!info) {
    fprintf(stderr, "berth ca: %s\n", info.error().message.c_str());
    return kRefused;
  }
  std::string colons;
  for (size_t i = 0; i < info->fingerprint.size(); i += 2) {
    if (i) colons += ':';
    colons += static_cast<char>(toupper(info->fingerprint[i]));
    colons += static_cast<char>(toupper(info->fingerprint[i + 1]));
  }
  time_t until = static_cast<time_t>(info->not_after_unix);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&until));
  printf("%s", net::pki::FirstCertificate(pem).c_str());
  printf("subject: CN=%s\nvalid until: %s\nSHA-256 fingerprint: %s\n(as in tokens: %s)\n", info->common_name.c_str(),
         when, colons.c_str(), info->fingerprint.c_str());
  return kOk;
}

int VersionCommand(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, {{"json", false, "", "print JSON"}});
  if (!p) return UsageError("version", p.error().message);
  if (p->help) {
    printf("Usage: berth version [--json]\n\nPrints this binary's version.\n");
    return kOk;
  }
  if (p->Has("json")) {
    printf("%s\n", json::Doc::Object().Set("version", BERTH_VERSION).Set("git", BERTH_GIT).Print().c_str());
  } else {
    printf("berth %s (%s)\n", BERTH_VERSION, BERTH_GIT);
  }
  return kOk;
}

}  // namespace

std::string Usage() {
  return "Usage: berth COMMAND [ARGS]\n"
         "\n"
         "Berth turns a few Linux boxes running Docker into a container cluster.\n"
         "\n"
         "Commands:\n"
         "  server      run the control plane (state, API, metrics)\n"
         "  configure   set the server address and token this client uses\n"
         "  ca          show the cluster CA and its fingerprint\n"
         "  cluster     create, list, describe and delete clusters\n"
         "  taskdef     register, list, describe and deregister task definitions\n"
         "  token       create and list API tokens (admin only)\n"
         "  join-command  print the one line that installs and joins a new box (docs/install.md)\n"
         "  accesskey   create, list and revoke access keys for AWS tools (admin only)\n"
         "  secret      create, rotate, list and remove secrets tasks take\n"
         "  audit       who changed what, from where, and every refused credential (admin only)\n"
         "  server      run a server (berth server --help), or list the servers: server ls\n"
         "  node        list, describe, drain, activate and remove nodes\n"
         "  run         run standalone tasks of a task definition\n"
         "  task        list, describe and stop tasks\n"
         "  ps          tasks with their service, node, state and age\n"
         "  service     create, update, scale, describe, list and delete services\n"
         "  tg          target groups: create, list, describe, remove, health of their targets\n"
         "  lb          load balancers, their listeners and rules\n"
         "  repo        create, list, describe and delete image repositories; lifecycle policies\n"
         "  image       list and remove images in a repository\n"
         "  registry    registry maintenance: gc\n"
         "  logs        print or follow a task's container output\n"
         "  compose     run a Compose project as a service: up, down, ps, scale, logs, config\n"
         "  agent       run this host's node agent (Docker), or --simulate N nodes\n"
         "  proxy       run the load-balancing proxy alone from a configuration file\n"
         "  version     print the version\n"
         "  help        print this help, or 'berth help COMMAND'\n"
         "\n"
         "Every command takes --help. Client exit codes: 0 ok, 1 refused by the server,\n"
         "2 usage error, 3 server unreachable, 4 authentication failed, 130/143 interrupted\n"
         "by SIGINT/SIGTERM.\n";
}

int Main(const std::vector<std::string>& args) {
  const std::string& cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "cluster" || cmd == "clusters") return ClusterCommand(rest);
  if (cmd == "configure") return ConfigureCommand(rest);
  if (cmd == "ca") return CaCommand(rest);
  if (cmd == "taskdef" || cmd == "taskdefs") return TaskdefCommand(rest);
  if (cmd == "token" || cmd == "tokens") return TokenCommand(rest);
  if (cmd == "join-command") return JoinCommand(rest);
  if (cmd == "accesskey" || cmd == "accesskeys") return AccessKeyCommand(rest);
  if (cmd == "secret" || cmd == "secrets") return SecretCommand(rest);
  if (cmd == "tg" || cmd == "targetgroup" || cmd == "targetgroups") return TargetGroupCommand(rest);
  if (cmd == "lb" || cmd == "loadbalancer" || cmd == "loadbalancers") return LoadBalancerCommand(rest);
  if (cmd == "audit") return AuditCommand(rest);
  if (cmd == "node" || cmd == "nodes") return NodeCommand(rest);
  if (cmd == "server") return ServerCommand(rest);
  if (cmd == "run") return RunCommand(rest);
  if (cmd == "task" || cmd == "tasks") return TaskCommand(rest);
  if (cmd == "ps") return PsCommand(rest);
  if (cmd == "logs") return LogsCommand(rest);
  if (cmd == "compose") return ComposeCommand(rest);
  if (cmd == "service" || cmd == "services") return ServiceCommand(rest);
  if (cmd == "repo" || cmd == "repos") return RepoCommand(rest);
  if (cmd == "image" || cmd == "images") return ImageCommand(rest);
  if (cmd == "registry") return RegistryCommand(rest);
  if (cmd == "version") return VersionCommand(rest);
  fprintf(stderr, "berth: unknown command '%s'\n\n%s", cmd.c_str(), Usage().c_str());
  return kUsage;
}

}  // namespace berth::cli
