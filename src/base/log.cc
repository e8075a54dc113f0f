#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

#include "base/json.h"

namespace berth::log {

namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

void AppendTime(std::string* out) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char buf[96];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
           t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
  out->append(buf);
}

}  // namespace

Field::Field(std::string_view k, double v) : key(k) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.6g", v);
  value = buf;
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level)); }
bool Enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

bool ParseLevel(std::string_view text, Level* out) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (text == LevelName(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

void AppendValue(std::string* out, std::string_view value) {
  bool quote = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      quote = true;
      break;
    }
  }
  if (!quote) {
    out->append(value);
    return;
  }
  // A quoted logfmt value takes JSON's escapes: one escaper for both.
  json::AppendQuoted(out, value);
}

void Write(Level level, std::string_view subsystem, std::string_view msg, std::initializer_list<Field> fields) {
  std::string line;
  line.reserve(160);
  line.append("ts=");
  AppendTime(&line);
  line.append(" level=").append(LevelName(level));
  line.append(" sub=").append(subsystem);
  line.append(" msg=");
  AppendValue(&line, msg);
  for (const Field& f : fields) {
    line.push_back(' ');
    line.append(f.key);
    line.push_back('=');
    AppendValue(&line, f.value);
  }
  line.push_back('\n');
  // One write per line; a short write on stderr is not worth retrying piecemeal.
  ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  (void)n;
}

}  // namespace berth::log
