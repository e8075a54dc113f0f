// Structured log lines in logfmt: `ts=... level=info sub=http msg="..." key=value`.
// One line per call, written with a single write(2) to stderr so lines from
// several threads never interleave.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace berth::log {

enum class Level { kDebug, kInfo, kWarn, kError };

void SetLevel(Level level);
bool Enabled(Level level);
// Parses "debug", "info", "warn", "error"; returns false on anything else.
bool ParseLevel(std::string_view text, Level* out);

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, int64_t v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, int v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, uint64_t v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, double v);
  std::string_view key;
  std::string value;
};

void Write(Level level, std::string_view subsystem, std::string_view msg, std::initializer_list<Field> fields);

inline void Debug(std::string_view sub, std::string_view msg, std::initializer_list<Field> f = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, sub, msg, f);
}
inline void Info(std::string_view sub, std::string_view msg, std::initializer_list<Field> f = {}) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, sub, msg, f);
}
inline void Warn(std::string_view sub, std::string_view msg, std::initializer_list<Field> f = {}) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, sub, msg, f);
}
inline void Error(std::string_view sub, std::string_view msg, std::initializer_list<Field> f = {}) {
  Write(Level::kError, sub, msg, f);
}

// Appends `value` to `out`, quoted and escaped when logfmt needs it.
void AppendValue(std::string* out, std::string_view value);

}  // namespace berth::log
