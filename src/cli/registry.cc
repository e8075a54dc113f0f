// The registry's client commands: repo, image and registry. They call the
// server's /v1/repositories and /v1/registry routes.
#include "cli/registry.h"

#include <sys/stat.h>

#include <cstdio>

#include "base/files.h"
#include "base/flags.h"
#include "base/json.h"
#include "cli/common.h"
#include "cli/config.h"
#include "cli/table.h"
#include "net/http.h"
#include "net/pki.h"
#include "net/socket.h"

namespace berth::cli {

namespace http = net::http;

namespace {

std::string RepoPath(const std::string& name) { return "/v1/repositories/" + http::UrlEncode(name); }

std::string Bytes(json::View v, const char* key) {
  json::View n = v.Get(key);
  if (!n.IsNumber()) return "-";
  double b = n.Number();
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    u++;
  }
  char buf[32];
  snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string Joined(json::View list) {
  std::string out;
  for (json::View t : list) {
    if (!out.empty()) out += ",";
    out.append(t.String());
  }
  return out.empty() ? "<untagged>" : out;
}

void PrintRepositories(const std::vector<json::View>& repos) {
  Table t({"NAME", "TAGS", "IMAGES", "POLICY", "ANONYMOUS", "CREATED", "URI"});
  for (json::View r : repos) {
    t.Add({Str(r, "repositoryName"), Str(r, "imageTagMutability"), Num(r, "imageCount"),
           r.Get("hasLifecyclePolicy").Bool() ? "yes" : "no", r.Get("anonymousPull").Bool() ? "pull" : "no",
           Seconds(r, "createdAt"), Str(r, "repositoryUri")});
  }
  printf("%s", t.Render().c_str());
}

const char kRepoUsage[] =
    "Usage:\n"
    "  berth repo create NAME [--immutable] [--anonymous-pull true]\n"
    "                                         create a repository (tags MUTABLE unless --immutable;\n"
    "                                         pulls need credentials unless --anonymous-pull true)\n"
    "  berth repo update NAME [--tag-mutability MUTABLE|IMMUTABLE] [--anonymous-pull true|false]\n"
    "  berth repo ls                          list repositories\n"
    "  berth repo describe NAME               show one repository\n"
    "  berth repo rm NAME [--force]           delete a repository (refused while it holds images unless --force)\n"
    "  berth repo policy set NAME FILE.json   set the lifecycle policy (ECR JSON; - for stdin)\n"
    "  berth repo policy get NAME             print the lifecycle policy\n"
    "  berth repo policy rm NAME              remove the lifecycle policy\n"
    "  berth repo policy preview NAME [FILE]  list the images the policy (or FILE) would expire now\n"
    "\n"
    "Flags:\n"
    "  --json                                 print JSON instead of a table\n";

int PolicyCommand(const std::vector<std::string>& pos, bool as_json) {
  if (pos.size() < 3) return UsageError("repo", "policy needs a subcommand and a repository NAME");
  const std::string& sub = pos[1];
  const std::string& name = pos[2];
  CallResult r;
  if (sub == "set" || (sub == "preview" && pos.size() == 4)) {
    if (pos.size() != 4) return UsageError("repo", "policy set takes NAME FILE.json");
    std::string text;
    if (!ReadFile(pos[3], &text)) {
      fprintf(stderr, "berth repo: cannot read %s\n", pos[3].c_str());
      return kUsage;
    }
    r = sub == "set" ? Call("PUT", RepoPath(name) + "/policy", text)
                     : Call("POST", RepoPath(name) + "/policy/preview", text);
  } else if (pos.size() != 3) {
    return UsageError("repo", "policy " + sub + " takes one NAME");
  } else if (sub == "get") {
    r = Call("GET", RepoPath(name) + "/policy");
  } else if (sub == "rm" || sub == "delete") {
    r = Call("DELETE", RepoPath(name) + "/policy");
  } else if (sub == "preview") {
    r = Call("GET", RepoPath(name) + "/policy/preview");
  } else {
    return UsageError("repo", "unknown policy subcommand '" + sub + "'");
  }
  if (r.exit) return r.exit;
  if (as_json) {
    printf("%s\n", r.body.Print().c_str());
  } else if (sub == "get") {
    Result<json::Doc> doc = json::Doc::Parse(r.body.view().Get("lifecyclePolicyText").String());
    printf("%s\n", doc ? doc->Print().c_str() : std::string(r.body.view().Get("lifecyclePolicyText").String()).c_str());
  } else if (sub == "preview") {
    Table t({"DIGEST", "TAGS", "PUSHED", "RULE"});
    for (json::View e : r.body.view().Get("previewResults")) {
      t.Add({Str(e, "imageDigest"), Joined(e.Get("imageTags")), Seconds(e, "imagePushedAt"),
             Num(e, "appliedRulePriority")});
    }
    printf("%s", t.Render().c_str());
  } else {
    printf("%s the lifecycle policy of %s\n", sub == "set" ? "set" : "removed", name.c_str());
  }
  return kOk;
}

}  // namespace

int RepoCommand(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, {{"json", false, "", "print JSON"},
                                                     {"immutable", false, "", "tags cannot be moved"},
                                                     {"force", false, "", "delete the images too"},
                                                     {"tag-mutability", true, "MUTABLE|IMMUTABLE", "for update"},
                                                     {"anonymous-pull", true, "BOOL", "pulls need no credentials"}});
  if (!p) return UsageError("repo", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s", kRepoUsage);
    return p->help ? kOk : kUsage;
  }
  bool as_json = p->Has("json");
  const std::vector<std::string>& pos = p->positional;
  const std::string& sub = pos[0];
  if (sub == "policy") return PolicyCommand(pos, as_json);
  if (sub == "ls" || sub == "list") {
    if (pos.size() != 1) return UsageError("repo", "ls takes no arguments");
    CallResult r = Call("GET", "/v1/repositories");
    if (r.exit) return r.exit;
    if (as_json) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    std::vector<json::View> list;
    for (json::View v : r.body.view().Get("repositories")) list.push_back(v);
    PrintRepositories(list);
    return kOk;
  }
  if (sub != "create" && sub != "describe" && sub != "rm" && sub != "delete" && sub != "update") {
    return UsageError("repo", "unknown subcommand '" + sub + "'");
  }
  if (pos.size() != 2) return UsageError("repo", sub + " takes exactly one NAME");
  const std::string& name = pos[1];
  CallResult r;
  std::string anonymous = p->Get("anonymous-pull");
  if (!anonymous.empty() && anonymous != "true" && anonymous != "false") {
    return UsageError("repo", "--anonymous-pull: expected true or false");
  }
  if (sub == "create") {
    r = Call("POST", "/v1/repositories",
             json::Doc::Object()
                 .Set("repositoryName", name)
                 .Set("imageTagMutability", p->Has("immutable") ? "IMMUTABLE" : "MUTABLE")
                 .Set("anonymousPull", anonymous == "true")
                 .Print());
  } else if (sub == "update") {
    json::Doc body = json::Doc::Object();
    if (p->Has("tag-mutability")) body.Set("imageTagMutability", p->Get("tag-mutability"));
    if (!anonymous.empty()) body.Set("anonymousPull", anonymous == "true");
    if (body.view().Size() == 0) return UsageError("repo", "update needs --tag-mutability, --anonymous-pull or both");
    r = Call("PATCH", RepoPath(name), body.Print());
  } else if (sub == "describe") {
    r = Call("GET", RepoPath(name));
  } else {
    r = Call("DELETE", RepoPath(name) + (p->Has("force") ? "?force=true" : ""));
  }
  if (r.exit) return r.exit;
  json::View repo = r.body.view().Get("repository");
  if (as_json) {
    printf("%s\n", repo.Print().c_str());
  } else if (sub == "describe" || sub == "update") {
    PrintRepositories({repo});
  } else {
    printf("%s %s\n", sub == "create" ? "created" : "deleted", Str(repo, "repositoryUri").c_str());
  }
  return kOk;
}

const char kImageUsage[] =
    "Usage:\n"
    "  berth image ls REPO [--tagged|--untagged]   list a repository's images, newest first\n"
    "  berth image rm REPO:TAG                     remove a tag (the image stays under its digest)\n"
    "  berth image rm REPO@DIGEST                  remove an image and all its tags\n"
    "\n"
    "Flags:\n"
    "  --json                                      print JSON instead of a table\n";

int ImageCommand(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, {{"json", false, "", "print JSON"},
                                                     {"tagged", false, "", "only tagged images"},
                                                     {"untagged", false, "", "only untagged images"}});
  if (!p) return UsageError("image", p.error().message);
  if (p->help || p->positional.empty()) {
    printf("%s", kImageUsage);
    return p->help ? kOk : kUsage;
  }
  bool as_json = p->Has("json");
  const std::vector<std::string>& pos = p->positional;
  const std::string& sub = pos[0];
  if (pos.size() != 2) return UsageError("image", sub + " takes exactly one argument");
  if (sub == "ls" || sub == "list") {
    std::string q = p->Has("tagged") ? "?tagStatus=TAGGED" : p->Has("untagged") ? "?tagStatus=UNTAGGED" : "";
    CallResult r = Call("GET", RepoPath(pos[1]) + "/images" + q);
    if (r.exit) return r.exit;
    if (as_json) {
      printf("%s\n", r.body.Print().c_str());
      return kOk;
    }
    Table t({"DIGEST", "TAGS", "SIZE", "PUSHED", "TYPE"});
    for (json::View i : r.body.view().Get("imageDetails")) {
      t.Add({Str(i, "imageDigest"), Joined(i.Get("imageTags")), Bytes(i, "imageSizeInBytes"),
             Seconds(i, "imagePushedAt"), Str(i, "imageManifestMediaType")});
    }
    printf("%s", t.Render().c_str());
    return kOk;
  }
  if (sub != "rm" && sub != "delete") return UsageError("image", "unknown subcommand '" + sub + "'");
  const std::string& ref = pos[1];
  size_t at = ref.find('@');
  size_t colon = ref.rfind(':');
  std::string repo, id;
  if (at != std::string::npos) {
    repo = ref.substr(0, at);
    id = ref.substr(at + 1);
  } else if (colon != std::string::npos) {
    repo = ref.substr(0, colon);
    id = ref.substr(colon + 1);
  }
  if (repo.empty() || id.empty()) return UsageError("image", "rm takes REPO:TAG or REPO@DIGEST");
  CallResult r = Call("DELETE", RepoPath(repo) + "/images/" + http::UrlEncode(id));
  if (r.exit) return r.exit;
  if (as_json) {
    printf("%s\n", r.body.Print().c_str());
  } else {
    printf("removed %s\n", ref.c_str());
  }
  return kOk;
}

namespace {

// `berth registry trust`: this host's Docker engine trusts the cluster CA for the
// configured server's registry (DIR/HOST:PORT/ca.crt), the CA fetched from the
// server over a connection the token's pin (or the CA file) vouches for.
int RegistryTrust(const flags::Parsed& p) {
  Result<Config> cfg = LoadConfig();
  if (!cfg) {
    fprintf(stderr, "berth: %s\n", cfg.error().message.c_str());
    return kUsage;
  }
  Result<net::Endpoint> ep = net::Endpoint::Parse(cfg->server, 7070);
  if (!ep || ep->kind != net::Endpoint::Kind::kTcp) {
    return UsageError("registry", "the configured server " + cfg->server + " is not a host:port");
  }
  if (!ep->tls) return UsageError("registry", "the configured server " + cfg->server + " does not speak TLS");
  std::string pem;
  if (int exit = CallRaw("GET", "/v1/ca", &pem); exit != kOk) return exit;
  Result<net::pki::CertInfo> info = net::pki::Inspect(pem);
  if (!info) {
    fprintf(stderr, "berth registry: the server's CA: %s\n", info.error().message.c_str());
    return kRefused;
  }
  std::string pin = cfg->Pin();
  if (!pin.empty() && info->fingerprint != pin) {
    fprintf(stderr, "berth registry: the server sent a CA with fingerprint %s, not the pinned %s\n",
            info->fingerprint.c_str(), pin.c_str());
    return kRefused;
  }
  std::string base = p.Get("docker-certs-dir", "/etc/docker/certs.d");
  std::string dir = base + "/" + ep->ToString();
  for (const std::string& d : {base.substr(0, base.rfind('/')), base, dir}) {
    if (!d.empty()) mkdir(d.c_str(), 0755);
  }
  if (Status s = files::WriteAtomically(dir + "/ca.crt", net::pki::FirstCertificate(pem), 0644); !s) {
    fprintf(stderr, "berth registry: %s\n", s.error().message.c_str());
    return kRefused;
  }
  printf("wrote %s/ca.crt (CA %s): docker pull and push to %s now verify the registry\n", dir.c_str(),
         info->fingerprint.c_str(), ep->ToString().c_str());
  return kOk;
}

}  // namespace

int RegistryCommand(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(
      args,
      {{"json", false, "", "print JSON"},
       {"dry-run", false, "", "only list what would go"},
       {"docker-certs-dir", true, "DIR", "trust: where Docker reads registry CAs (default /etc/docker/certs.d)"}});
  if (!p) return UsageError("registry", p.error().message);
  bool known = p->positional.size() == 1 && (p->positional[0] == "gc" || p->positional[0] == "trust");
  if (p->help || !known) {
    printf(
        "Usage:\n"
        "  berth registry gc [--dry-run]   remove blobs no image references (online; pushes go on)\n"
        "  berth registry trust            make this host's Docker trust the cluster CA for the server's registry\n"
        "                                  (writes /etc/docker/certs.d/HOST:PORT/ca.crt)\n"
        "\nFlags:\n  --json                         print JSON\n"
        "  --docker-certs-dir DIR         trust: where Docker reads registry CAs\n");
    return p->help ? kOk : kUsage;
  }
  if (p->positional[0] == "trust") return RegistryTrust(*p);
  CallResult r = Call("POST", std::string("/v1/registry/gc") + (p->Has("dry-run") ? "?dryRun=true" : ""));
  if (r.exit) return r.exit;
  if (p->Has("json")) {
    printf("%s\n", r.body.Print().c_str());
    return kOk;
  }
  json::View v = r.body.view();
  for (json::View d : v.Get("removedBlobs"))
    printf("%s %s\n", p->Has("dry-run") ? "would remove" : "removed", std::string(d.String()).c_str());
  printf("%s %zu blob(s), %s; kept %s\n", p->Has("dry-run") ? "would remove" : "removed", v.Get("removedBlobs").Size(),
         Bytes(v, "removedBytes").c_str(), Num(v, "keptBlobs").c_str());
  return kOk;
}

}  // namespace berth::cli
