#include "base/json.h"

#include <cJSON.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace berth::json {

namespace {

struct FreeDeleter {
  void operator()(char* p) const { cJSON_free(p); }
};

std::string Describe(std::string_view path) { return std::string(path); }

}  // namespace

bool View::IsNull() const { return node_ && cJSON_IsNull(node_); }
bool View::IsObject() const { return node_ && cJSON_IsObject(node_); }
bool View::IsArray() const { return node_ && cJSON_IsArray(node_); }
bool View::IsString() const { return node_ && cJSON_IsString(node_); }
bool View::IsNumber() const { return node_ && cJSON_IsNumber(node_); }
bool View::IsBool() const { return node_ && cJSON_IsBool(node_); }

const char* View::TypeName() const {
  if (!node_) return "nothing";
  if (cJSON_IsNull(node_)) return "null";
  if (cJSON_IsObject(node_)) return "an object";
  if (cJSON_IsArray(node_)) return "an array";
  if (cJSON_IsString(node_)) return "a string";
  if (cJSON_IsNumber(node_)) return "a number";
  if (cJSON_IsBool(node_)) return "a boolean";
  return "unknown";
}

View View::Get(std::string_view key) const {
  if (!IsObject()) return View();
  for (const cJSON* c = node_->child; c; c = c->next) {
    if (c->string && key == c->string) return View(c);
  }
  return View();
}

std::string_view View::Key() const { return node_ && node_->string ? node_->string : std::string_view(); }
std::string_view View::String() const { return IsString() && node_->valuestring ? node_->valuestring : ""; }
double View::Number() const { return IsNumber() ? node_->valuedouble : 0; }

int64_t View::IntIn(int64_t lo, int64_t hi, int64_t fallback) const {
  if (!IsNumber()) return fallback;
  double d = node_->valuedouble;
  // Both bounds as doubles: ±2^63 and ±2^53 compare exactly; NaN fails both.
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi))) return fallback;
  if (d >= 9223372036854775807.0) return hi;  // hi rounded up to 2^63
  return static_cast<int64_t>(d);
}
bool View::Bool() const { return node_ && cJSON_IsTrue(node_); }

size_t View::Size() const {
  if (!IsObject() && !IsArray()) return 0;
  size_t n = 0;
  for (const cJSON* c = node_->child; c; c = c->next) n++;
  return n;
}

View::Iterator& View::Iterator::operator++() {
  n_ = n_->next;
  return *this;
}

View::Iterator View::begin() const { return Iterator((IsObject() || IsArray()) ? node_->child : nullptr); }

std::string View::Print() const {
  if (!node_) return "null";
  std::unique_ptr<char, FreeDeleter> text(cJSON_PrintUnformatted(node_));
  if (!text) abort();  // cJSON fails only when out of memory, which is fatal.
  return std::string(text.get());
}

Doc::~Doc() {
  if (root_) cJSON_Delete(root_);
}

Doc& Doc::operator=(Doc&& o) noexcept {
  if (this != &o) {
    if (root_) cJSON_Delete(root_);
    root_ = o.root_;
    o.root_ = nullptr;
  }
  return *this;
}

namespace {

// cJSON keeps strings as C strings, so a \u0000 escape would silently cut a string
// short. Returns the offset of the first such escape inside a string, or npos.
size_t FindNulEscape(std::string_view text) {
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (!in_string) {
      if (c == '"') in_string = true;
      continue;
    }
    if (c == '"') {
      in_string = false;
    } else if (c == '\\' && i + 1 < text.size()) {
      if (text[i + 1] == 'u' && i + 5 < text.size() && text.substr(i + 2, 4) == "0000") return i;
      i++;  // skip the escaped character
    }
  }
  return std::string_view::npos;
}

}  // namespace

Result<Doc> Doc::Parse(std::string_view text) {
  if (size_t nul = FindNulEscape(text); nul != std::string_view::npos) {
    return Error{ErrorKind::kInvalid, "MalformedJSON",
                 "malformed JSON at byte " + std::to_string(nul) + ": strings must not contain \\u0000"};
  }
  const char* end = nullptr;
  cJSON* root = cJSON_ParseWithLengthOpts(text.data(), text.size(), &end, false);
  size_t offset = text.size();
  if (root) {
    size_t consumed = static_cast<size_t>(end - text.data());
    while (consumed < text.size() &&
           (text[consumed] == ' ' || text[consumed] == '\n' || text[consumed] == '\r' || text[consumed] == '\t')) {
      consumed++;
    }
    if (consumed == text.size()) return Doc(root);
    cJSON_Delete(root);
    offset = consumed;
  } else if (end && end >= text.data() && end <= text.data() + text.size()) {
    offset = static_cast<size_t>(end - text.data());
  }
  if (text.empty()) return Error{ErrorKind::kInvalid, "MalformedJSON", "malformed JSON: the body is empty"};
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); i++) {
    if (text[i] == '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  char buf[160];
  snprintf(buf, sizeof buf, "malformed JSON at byte %zu (line %zu, column %zu)", offset, line, column);
  return Error{ErrorKind::kInvalid, "MalformedJSON", buf};
}

Doc Doc::Object() { return Doc(cJSON_CreateObject()); }
Doc Doc::Array() { return Doc(cJSON_CreateArray()); }
Doc Doc::Copy(View v) { return Doc(cJSON_Duplicate(v.raw(), true)); }

void Doc::SetItem(std::string_view key, cJSON* item) {
  std::string k(key);
  if (cJSON_GetObjectItemCaseSensitive(root_, k.c_str())) {
    cJSON_ReplaceItemInObjectCaseSensitive(root_, k.c_str(), item);
  } else {
    cJSON_AddItemToObject(root_, k.c_str(), item);
  }
}

Doc& Doc::Set(std::string_view key, std::string_view value) {
  std::string v(value);
  SetItem(key, cJSON_CreateString(v.c_str()));
  return *this;
}
Doc& Doc::Set(std::string_view key, int64_t value) {
  SetItem(key, cJSON_CreateNumber(static_cast<double>(value)));
  return *this;
}
Doc& Doc::Set(std::string_view key, double value) {
  SetItem(key, cJSON_CreateNumber(value));
  return *this;
}
Doc& Doc::Set(std::string_view key, bool value) {
  SetItem(key, cJSON_CreateBool(value));
  return *this;
}
Doc& Doc::Set(std::string_view key, Doc&& value) {
  SetItem(key, value.root_);
  value.root_ = nullptr;
  return *this;
}
Doc& Doc::SetRaw(std::string_view key, std::string_view json_text) {
  std::string v(json_text);
  SetItem(key, cJSON_CreateRaw(v.c_str()));
  return *this;
}

Doc& Doc::SetNull(std::string_view key) {
  SetItem(key, cJSON_CreateNull());
  return *this;
}
Doc& Doc::Push(Doc&& value) {
  cJSON_AddItemToArray(root_, value.root_);
  value.root_ = nullptr;
  return *this;
}
Doc& Doc::Push(std::string_view value) {
  std::string v(value);
  cJSON_AddItemToArray(root_, cJSON_CreateString(v.c_str()));
  return *this;
}

Doc& Doc::PushRaw(std::string_view json_text) {
  std::string v(json_text);
  cJSON_AddItemToArray(root_, cJSON_CreateRaw(v.c_str()));
  return *this;
}

Result<std::string> RequireString(View obj, std::string_view key, std::string_view path) {
  View v = obj.Get(key);
  if (!v.valid() || v.IsNull()) return Error::Invalid(Describe(path) + ": is required");
  if (!v.IsString()) return Error::Invalid(Describe(path) + ": must be a string, not " + v.TypeName());
  return std::string(v.String());
}

Result<std::string> OptionalString(View obj, std::string_view key, std::string_view path, std::string fallback) {
  View v = obj.Get(key);
  if (!v.valid() || v.IsNull()) return fallback;
  if (!v.IsString()) return Error::Invalid(Describe(path) + ": must be a string, not " + v.TypeName());
  return std::string(v.String());
}

Result<int64_t> OptionalInt(View obj, std::string_view key, std::string_view path, int64_t fallback) {
  View v = obj.Get(key);
  if (!v.valid() || v.IsNull()) return fallback;
  if (!v.IsNumber()) return Error::Invalid(Describe(path) + ": must be a number, not " + v.TypeName());
  double d = v.Number();
  if (d != std::floor(d) || d < -9007199254740992.0 || d > 9007199254740992.0) {
    return Error::Invalid(Describe(path) + ": must be a whole number");
  }
  return static_cast<int64_t>(d);
}

Result<bool> OptionalBool(View obj, std::string_view key, std::string_view path, bool fallback) {
  View v = obj.Get(key);
  if (!v.valid() || v.IsNull()) return fallback;
  if (!v.IsBool()) return Error::Invalid(Describe(path) + ": must be true or false, not " + v.TypeName());
  return v.Bool();
}

void AppendQuoted(std::string* out, std::string_view s) {
  out->push_back('"');
  // The usual case (ids, ARNs, statuses): nothing to escape, one append.
  auto plain = [](char c) { return c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20; };
  if (std::all_of(s.begin(), s.end(), plain)) {
    out->append(s);
    out->push_back('"');
    return;
  }
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
          out->append(buf);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace berth::json
