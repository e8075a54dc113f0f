// The registry's client commands: repo, image, registry.
#pragma once

#include <string>
#include <vector>

namespace berth::cli {

int RepoCommand(const std::vector<std::string>& args);
int ImageCommand(const std::vector<std::string>& args);
int RegistryCommand(const std::vector<std::string>& args);

}  // namespace berth::cli
