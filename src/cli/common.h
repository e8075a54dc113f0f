// What every client command shares: calling the server, exit codes, field reads
// for tables.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "base/json.h"

namespace berth::cli {

// 130 and 143: ended by SIGINT or SIGTERM (128 + the signal), as shells report it.
enum Exit { kOk = 0, kRefused = 1, kUsage = 2, kUnreachable = 3, kAuth = 4, kInterrupted = 130, kTerminated = 143 };

// Prints "berth CMD: MESSAGE" and where to find usage; returns kUsage.
int UsageError(const std::string& cmd, const std::string& message);

// One API call: the answer's JSON body, or an exit code with the error printed.
struct CallResult {
  int exit = kOk;
  json::Doc body;
};
CallResult Call(const std::string& method, const std::string& target, const std::string& body = "");
// A GET whose answer streams to `on_body` as it arrives (logs); returns the exit code.
int CallStreamed(const std::string& target, const std::function<void(std::string_view)>& on_body);

std::string Str(json::View v, const char* key);
std::string Num(json::View v, const char* key);
// A time in seconds since the epoch (ECS style) as an ISO-8601 UTC time, "-" if absent.
std::string Seconds(json::View v, const char* key);
// Time since `v[key]` (seconds since the epoch) as "5s", "3m", "2h", "4d".
std::string Age(json::View v, const char* key);
// Reads a whole file ("-": standard input) of at most 8 MiB.
bool ReadFile(const std::string& path, std::string* out);

}  // namespace berth::cli
