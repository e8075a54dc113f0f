// What every client command shares: calling the server, exit codes, field reads
// for tables.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/result.h"

namespace berth::net::tls {
class ClientContext;
}

namespace berth::cli {

struct Config;

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
// One API call whose answer is not JSON: its body, or an exit code with the error printed.
int CallRaw(const std::string& method, const std::string& target, std::string* body);
// A GET whose answer streams to `on_body` as it arrives (logs); returns the exit code.
int CallStreamed(const std::string& target, const std::function<void(std::string_view)>& on_body);

// What an https:// server is trusted by: the token's pin (or the configured one)
// and the CA file, if any. An error says what to give when there is nothing.
Result<std::shared_ptr<net::tls::ClientContext>> TrustFor(const Config& cfg);

std::string Str(json::View v, const char* key);
std::string Num(json::View v, const char* key);
// A time in seconds since the epoch (ECS style) as an ISO-8601 UTC time, "-" if absent.
std::string Seconds(json::View v, const char* key);
// Time since `v[key]` (seconds since the epoch) as "5s", "3m", "2h", "4d".
std::string Age(json::View v, const char* key);
// Reads a whole file ("-": standard input) of at most 8 MiB.
bool ReadFile(const std::string& path, std::string* out);

}  // namespace berth::cli
