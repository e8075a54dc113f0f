// `berth join-command`: the one line that installs and joins a new box
// (docs/install.md).
#pragma once

#include <string>
#include <vector>

namespace berth::cli {

int JoinCommand(const std::vector<std::string>& args);

}  // namespace berth::cli
