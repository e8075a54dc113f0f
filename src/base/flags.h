// Command-line flags: `--name value`, `--name=value`, boolean `--name`, `-h`/`--help`,
// and positional arguments. Unknown flags are errors that name the flag.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"

namespace berth::flags {

struct FlagSpec {
  std::string name;  // without dashes
  bool takes_value = true;
  std::string value_name;  // for help: "DIR"
  std::string help;
};

struct Parsed {
  std::map<std::string, std::string> values;            // flag → value ("true" for booleans); the last one given
  std::map<std::string, std::vector<std::string>> all;  // flag → every value given, in order
  std::vector<std::string> positional;
  bool help = false;

  bool Has(const std::string& name) const { return values.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // Every value of a repeatable flag (--attr a=1 --attr b=2), in order.
  std::vector<std::string> GetAll(const std::string& name) const {
    auto it = all.find(name);
    return it == all.end() ? std::vector<std::string>{} : it->second;
  }
};

Result<Parsed> ParseFlags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs);

// The flags part of a help text, one line per flag.
std::string FlagsHelp(const std::vector<FlagSpec>& specs);

// "250ms", "10s", "2m", "1h" (or a bare number of milliseconds) → milliseconds.
Result<uint64_t> ParseDuration(const std::string& text, const std::string& flag);
// "16KiB", "1MiB", "4096" → bytes.
Result<uint64_t> ParseSize(const std::string& text, const std::string& flag);
Result<uint64_t> ParseCount(const std::string& text, const std::string& flag);
// Repeated "--flag NAME=VALUE" (node attributes) → a map; a later NAME wins.
Result<std::map<std::string, std::string>> ParseKeyValues(const std::vector<std::string>& values,
                                                          const std::string& flag);

}  // namespace berth::flags
