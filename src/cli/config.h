// The client's configuration: ~/.config/berth/config.json (mode 0600), overridden
// by BERTH_SERVER, BERTH_TOKEN and BERTH_CA_FILE.
#pragma once

#include <string>

#include "base/result.h"

namespace berth::cli {

struct Config {
  std::string server = "https://127.0.0.1:7070";
  std::string token;    // as given: pinned (base/crypto.h) or a bare secret
  std::string ca_pin;   // the cluster CA's SHA-256, from the token given to `configure`
  std::string ca_file;  // CA certificates to trust the server by, instead of a pin

  // The pin to check the server against: the token's own, else the configured one.
  std::string Pin() const;
};

std::string ConfigPath();
// The file (if any) with the environment applied on top.
Result<Config> LoadConfig();
// Writes the file, creating its directory; mode 0600.
Status SaveConfig(const Config& c);

}  // namespace berth::cli
