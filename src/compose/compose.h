// Compose files to one ECS task definition, the model ecs-cli follows: the
// project is one task definition (family = project name) whose containers are
// the Compose services, sharing the task's network and reaching each other by
// service name. Interpolation (${VAR}, ${VAR:-d}, ${VAR:?e}, $$, from the
// environment and the .env file beside the first file), several files merged as
// Compose merges them, and every key either translated or refused with an error
// "FILE:LINE: services.NAME.KEY: why" (or, when asked, skipped with a warning).
// Pure but for reading the files it is given (through Options::read).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::compose {

struct Options {
  std::vector<std::string> files;  // as the user named them; at least one
  std::string project;             // -p; empty: the top-level name:, else the first file's directory
  bool ignore_unsupported = false;
  std::map<std::string, std::string> environment;  // the process environment (wins over .env)
  std::string home;                                // for ~ in bind mounts
  std::string cwd;                                 // what relative file names are relative to (absolute)
  // Reads a whole file; false when it cannot. The default reads the disk.
  std::function<bool(const std::string& path, std::string* out)> read;
};

struct Project {
  std::string name;
  json::Doc task_definition;          // validated by model::ValidateTaskDefinition
  std::vector<std::string> services;  // the container names, in order
  std::vector<std::string> warnings;  // what was skipped or changed, each "FILE:LINE: path: why"
};

// Reads, merges and translates the files. The error names the file and line.
Result<Project> Load(const Options& options);

// Compose's project name rule: lowercase, only [a-z0-9_-], starting with a letter or digit.
std::string NormaliseProjectName(std::string_view name);

// Interpolates `${...}` in `text` from `vars`; "$$" is a literal "$". The error
// says what is wrong (an unset ${VAR:?message} gives the message). The names of
// variables used without a default and not set go to `unset` (Compose warns).
Result<std::string> Interpolate(std::string_view text, const std::map<std::string, std::string>& vars,
                                std::vector<std::string>* unset = nullptr);

// "1m30s", "10s", "500ms", "1h", "2.5s" → milliseconds.
Result<int64_t> ParseDuration(std::string_view text);
// "512m", "1g", "1.5GB", "1024k", "1048576" (bytes) → bytes.
Result<int64_t> ParseBytes(std::string_view text);
// A command string split as a POSIX shell would (quotes and backslashes), as Compose does.
Result<std::vector<std::string>> ShellSplit(std::string_view text);
// Lines of a .env or env_file: KEY=VALUE, comments, `export `, quoted values.
std::vector<std::pair<std::string, std::string>> ParseEnvFile(std::string_view text);

// Compact JSON text → indented with two spaces, for people and diffs.
std::string PrettyJson(std::string_view compact);

}  // namespace berth::compose
