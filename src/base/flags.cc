#include "base/flags.h"

#include <cctype>

namespace berth::flags {

std::string Parsed::Get(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  return it == values.end() ? fallback : it->second;
}

Result<Parsed> ParseFlags(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs) {
  Parsed out;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    if (only_positional || a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      out.help = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) return Error::Invalid("unknown flag " + a + " (flags are written --name)");
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (!spec) return Error::Invalid("unknown flag --" + name);
    if (spec->takes_value) {
      if (!has_value) {
        if (i + 1 >= args.size()) return Error::Invalid("flag --" + name + " needs a value");
        value = args[++i];
      }
    } else {
      if (has_value && value != "true" && value != "false") {
        return Error::Invalid("flag --" + name + " takes no value");
      }
      if (!has_value) value = "true";
      if (value == "false") continue;
    }
    out.values[name] = value;
    out.all[name].push_back(value);
  }
  return out;
}

std::string FlagsHelp(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const FlagSpec& s : specs) {
    std::string left = "  --" + s.name + (s.takes_value ? " " + (s.value_name.empty() ? "VALUE" : s.value_name) : "");
    if (left.size() < 28)
      left.resize(28, ' ');
    else
      left += "  ";
    out += left + s.help + "\n";
  }
  return out;
}

namespace {

Result<std::pair<uint64_t, std::string>> SplitNumber(const std::string& text, const std::string& flag) {
  size_t i = 0;
  uint64_t n = 0;
  while (i < text.size() && isdigit(static_cast<unsigned char>(text[i]))) {
    if (n > (UINT64_MAX - 9) / 10) return Error::Invalid("--" + flag + ": number too large: " + text);
    n = n * 10 + static_cast<uint64_t>(text[i] - '0');
    i++;
  }
  if (i == 0) return Error::Invalid("--" + flag + ": expected a number, got '" + text + "'");
  return std::make_pair(n, text.substr(i));
}

// n * unit, or an error when that does not fit in 64 bits.
Result<uint64_t> Scale(uint64_t n, uint64_t unit, const std::string& text, const std::string& flag) {
  if (n > UINT64_MAX / unit) return Error::Invalid("--" + flag + ": number too large: " + text);
  return n * unit;
}

}  // namespace

Result<uint64_t> ParseDuration(const std::string& text, const std::string& flag) {
  auto r = SplitNumber(text, flag);
  if (!r) return r.take_error();
  auto [n, unit] = r.value();
  if (unit.empty() || unit == "ms") return n;
  if (unit == "s") return Scale(n, 1000, text, flag);
  if (unit == "m") return Scale(n, 60000, text, flag);
  if (unit == "h") return Scale(n, 3600000, text, flag);
  return Error::Invalid("--" + flag + ": unknown duration unit '" + unit + "' (use ms, s, m or h)");
}

Result<uint64_t> ParseSize(const std::string& text, const std::string& flag) {
  auto r = SplitNumber(text, flag);
  if (!r) return r.take_error();
  auto [n, unit] = r.value();
  if (unit.empty() || unit == "B") return n;
  if (unit == "KiB" || unit == "K") return Scale(n, uint64_t{1} << 10, text, flag);
  if (unit == "MiB" || unit == "M") return Scale(n, uint64_t{1} << 20, text, flag);
  if (unit == "GiB" || unit == "G") return Scale(n, uint64_t{1} << 30, text, flag);
  return Error::Invalid("--" + flag + ": unknown size unit '" + unit + "' (use KiB, MiB or GiB)");
}

Result<uint64_t> ParseCount(const std::string& text, const std::string& flag) {
  auto r = SplitNumber(text, flag);
  if (!r) return r.take_error();
  if (!r->second.empty()) return Error::Invalid("--" + flag + ": expected a whole number, got '" + text + "'");
  return r->first;
}

Result<std::map<std::string, std::string>> ParseKeyValues(const std::vector<std::string>& values,
                                                          const std::string& flag) {
  std::map<std::string, std::string> out;
  for (const std::string& kv : values) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return Error::Invalid("--" + flag + " " + kv + ": expected NAME=VALUE");
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

}  // namespace berth::flags
