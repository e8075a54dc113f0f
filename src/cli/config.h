// The client's configuration: ~/.config/berth/config.json (mode 0600), overridden
// by BERTH_SERVER and BERTH_TOKEN.
#pragma once

#include <string>

#include "base/result.h"

namespace berth::cli {

struct Config {
  std::string server = "http://127.0.0.1:7070";
  std::string token;
};

std::string ConfigPath();
// The file (if any) with the environment applied on top.
Result<Config> LoadConfig();
// Writes the file, creating its directory; mode 0600.
Status SaveConfig(const Config& c);

}  // namespace berth::cli
