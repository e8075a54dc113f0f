// The `berth` command-line client (configure, cluster, taskdef, token, node, run,
// task, ps, service, logs, repo, image, registry, version, help; `berth help`
// lists them). It talks to the server only over the HTTP API, with the token from
// the config file or the environment.
//
// Exit codes: 0 ok; 1 the server refused the request; 2 usage error; 3 the
// server could not be reached; 4 authentication failed; 130 and 143 ended by
// SIGINT or SIGTERM (which end any call at once).
#pragma once

#include <string>
#include <vector>

namespace berth::cli {

// Runs the client command in `args` (args[0] is the command, e.g. "cluster").
int Main(const std::vector<std::string>& args);

// The top-level help text.
std::string Usage();

}  // namespace berth::cli
