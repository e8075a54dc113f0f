// The control-plane client commands: node, run, task, ps, service, logs.
#pragma once

#include <string>
#include <vector>

namespace berth::cli {

int NodeCommand(const std::vector<std::string>& args);
// `berth server ls`: the control plane's servers (`berth server` with flags runs one).
int ServerCommand(const std::vector<std::string>& args);
int RunCommand(const std::vector<std::string>& args);
int TaskCommand(const std::vector<std::string>& args);
int PsCommand(const std::vector<std::string>& args);
int ServiceCommand(const std::vector<std::string>& args);
int LogsCommand(const std::vector<std::string>& args);
// `berth compose`: a Compose project as one task definition and one service (compose.cc).
int ComposeCommand(const std::vector<std::string>& args);

}  // namespace berth::cli
