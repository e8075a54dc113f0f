// berth: picks the mode from the first argument and hands over. Everything else
// is in the library (src/*/) that the tests link.
#include <cstdio>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "cli/cli.h"
#include "proxy/proxy.h"
#include "server/server.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    if (args.size() >= 2) {
      std::vector<std::string> sub = {args[1], "--help"};
      if (args[1] == "server") return berth::server::Main({"--help"});
      if (args[1] == "agent") return berth::agent::Main({"--help"});
      if (args[1] == "proxy") return berth::proxy::Main({"--help"});
      return berth::cli::Main(sub);
    }
    printf("%s", berth::cli::Usage().c_str());
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") args[0] = "version";
  // `berth server ls` is a client command; `berth server [flags]` runs one.
  if (args[0] == "server" && args.size() >= 2 &&
      (args[1] == "ls" || args[1] == "list" || args[1] == "rm" || args[1] == "remove")) {
    return berth::cli::Main(args);
  }
  if (args[0] == "server") return berth::server::Main(std::vector<std::string>(args.begin() + 1, args.end()));
  if (args[0] == "agent") return berth::agent::Main(std::vector<std::string>(args.begin() + 1, args.end()));
  if (args[0] == "proxy") return berth::proxy::Main(std::vector<std::string>(args.begin() + 1, args.end()));
  return berth::cli::Main(args);
}
