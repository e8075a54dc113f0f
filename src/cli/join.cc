#include "cli/join.h"

#include <cstdio>

#include "base/flags.h"
#include "base/json.h"
#include "cli/common.h"
#include "cli/config.h"

namespace berth::cli {

namespace {

const char kJoinUsage[] =
    "Usage: berth join-command [--role agent|server] [--ttl DURATION] [--uses N] [--attr K=V]...\n"
    "\n"
    "Makes a join token and prints the one line to paste, as root, on the new box:\n"
    "  curl -fsSL --pinnedpubkey 'sha256//KEY' -k https://SERVER/install.sh | sh -s - agent --token TOKEN\n"
    "curl checks this server's public key (KEY, learned over this CLI's CA-checked\n"
    "connection), the installer then trusts only the CA the token pins, checks the\n"
    "binary's SHA-256, installs and starts the systemd unit and waits until the box\n"
    "has joined. An agent token lets one node join (--uses) within --ttl (default 24h).\n"
    "\n"
    "Flags:\n";

// `s` as one shell word: bare when it holds only characters no shell reads
// specially, else single-quoted.
std::string ShellWord(const std::string& s) {
  bool plain = !s.empty();
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == '=' || c == ':' || c == '/' || c == ',' || c == '@' || c == '+';
    if (!ok) plain = false;
  }
  if (plain) return s;
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace

int JoinCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      {"role", true, "ROLE", "agent (a Docker host, the default) or server (another control-plane server)"},
      {"ttl", true, "DURATION", "the token expires this long after it is made (default 24h)"},
      {"uses", true, "N", "an agent token: how many nodes may join with it (default 1)"},
      {"attr", true, "K=V", "a node attribute the agent starts with (repeatable; e.g. --attr zone=b)"},
  };
  Result<flags::Parsed> p = flags::ParseFlags(args, specs);
  if (!p) return UsageError("join-command", p.error().message);
  if (p->help) {
    printf("%s%s", kJoinUsage, flags::FlagsHelp(specs).c_str());
    return kOk;
  }
  if (!p->positional.empty()) return UsageError("join-command", "takes no arguments, only flags");
  std::string role = p->Get("role", "agent");
  if (role != "agent" && role != "server") return UsageError("join-command", "--role: agent or server");
  if (role == "server" && (p->Has("attr") || p->Has("uses"))) {
    return UsageError("join-command", "--attr and --uses are for an agent's token");
  }
  Result<uint64_t> ttl = flags::ParseDuration(p->Get("ttl", "24h"), "ttl");
  if (!ttl || ttl.value() < 1000)
    return UsageError("join-command", "--ttl: expected a duration of 1s or more, such as 24h");
  Result<std::map<std::string, std::string>> attrs = flags::ParseKeyValues(p->GetAll("attr"), "attr");
  if (!attrs) return UsageError("join-command", attrs.error().message);
  Result<Config> cfg = LoadConfig();
  if (!cfg) {
    fprintf(stderr, "berth join-command: %s\n", cfg.error().message.c_str());
    return kUsage;
  }
  // The first server the CLI is configured with is the one the new box installs from.
  std::string url = cfg->server.substr(0, cfg->server.find(','));
  while (!url.empty() && url.back() == '/') url.pop_back();
  bool tls = url.starts_with("https://");

  // The key pin first: a server that cannot give it gets no token made for nothing.
  std::string pin;
  if (tls) {
    // This CLI's connection checks the server against the cluster CA, so what it
    // answers is the server's own word.
    CallResult r = Call("GET", "/install/pin");
    if (r.exit) return r.exit;
    pin = Str(r.body.view(), "pin");
    if (!pin.starts_with("sha256//")) {
      fprintf(stderr, "berth join-command: the server gave no key pin (an older server?)\n");
      return kRefused;
    }
  }
  json::Doc body = json::Doc::Object();
  body.Set("role", role);
  body.Set("ttlSeconds", static_cast<int64_t>(ttl.value() / 1000));
  if (role == "agent") {
    Result<uint64_t> uses = flags::ParseCount(p->Get("uses", "1"), "uses");
    if (!uses || uses.value() < 1) return UsageError("join-command", "--uses: expected a whole number of 1 or more");
    body.Set("uses", static_cast<int64_t>(uses.value()));
  }
  CallResult r = Call("POST", "/v1/tokens", body.Print());
  if (r.exit) return r.exit;
  std::string token = Str(r.body.view().Get("token"), "secret");

  std::string line = "curl -fsSL ";
  if (tls) line += "--pinnedpubkey '" + pin + "' -k ";
  line += url + "/install.sh | sh -s - " + role + " --token " + ShellWord(token);
  for (const auto& [k, v] : attrs.value()) line += " --attr " + ShellWord(k + "=" + v);
  if (!tls) {
    fprintf(stderr,
            "berth join-command: WARNING: %s is plain HTTP: nothing authenticates the installer or the binary\n",
            url.c_str());
  }
  printf("%s\n", line.c_str());
  return kOk;
}

}  // namespace berth::cli
