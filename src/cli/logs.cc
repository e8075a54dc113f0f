// `berth logs TASK [--container NAME] [-f] [--tail N]`: a container's output,
// streamed through the server from the agent of the task's node.
#include <cstdio>

#include "base/flags.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "net/http.h"

namespace berth::cli {

int LogsCommand(const std::vector<std::string>& args) {
  std::vector<flags::FlagSpec> specs = {
      {"container", true, "NAME", "the container of the task (default: its first)"},
      {"follow", false, "", "keep streaming new output until interrupted (also -f)"},
      {"tail", true, "N", "only the last N lines (default: all)"},
  };
  std::vector<std::string> rewritten;
  for (const std::string& a : args) rewritten.push_back(a == "-f" ? "--follow" : a);
  Result<flags::Parsed> p = flags::ParseFlags(rewritten, specs);
  if (!p) return UsageError("logs", p.error().message);
  if (p->help || p->positional.size() != 1) {
    printf(
        "Usage: berth logs TASK [--container NAME] [-f] [--tail N]\n\n"
        "Prints a task's container output (stdout and stderr), fetched through the server\n"
        "from the agent of the task's node. TASK is the short id 'berth ps' shows, the\n"
        "full id, its ARN or a prefix of 6 or more characters.\n\nFlags:\n%s",
        flags::FlagsHelp(specs).c_str());
    return p->help ? kOk : kUsage;
  }
  std::string target =
      "/v1/tasks/" + net::http::UrlEncode(p->positional[0]) + "/logs?follow=" + (p->Has("follow") ? "true" : "false");
  if (p->Has("container")) target += "&container=" + net::http::UrlEncode(p->Get("container"));
  if (p->Has("tail")) {
    Result<uint64_t> n = flags::ParseCount(p->Get("tail"), "tail");
    if (!n) return UsageError("logs", n.error().message);
    target += "&tail=" + std::to_string(n.value());
  }
  return CallStreamed(target, [](std::string_view data) {
    fwrite(data.data(), 1, data.size(), stdout);
    fflush(stdout);
  });
}

}  // namespace berth::cli
