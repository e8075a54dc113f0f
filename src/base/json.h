// RAII over cJSON. json::Doc owns a tree; json::View reads one without owning it.
// Parse errors carry the byte offset, line and column of the first bad byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

struct cJSON;

namespace berth::json {

class View {
 public:
  View() = default;
  explicit View(const cJSON* node) : node_(node) {}

  bool valid() const { return node_ != nullptr; }
  bool IsNull() const;
  bool IsObject() const;
  bool IsArray() const;
  bool IsString() const;
  bool IsNumber() const;
  bool IsBool() const;
  // The JSON type as a word for error messages: "string", "number", "object", ...
  const char* TypeName() const;

  // Member lookup (case-sensitive); an invalid View when absent or not an object.
  View Get(std::string_view key) const;
  std::string_view Key() const;  // this node's key inside its parent object

  std::string_view String() const;  // empty unless IsString()
  double Number() const;
  // The number truncated, when it is one in [lo, hi]; otherwise `fallback`
  // (never a cast of NaN or of a value out of range).
  int64_t IntIn(int64_t lo, int64_t hi, int64_t fallback) const;
  bool Bool() const;

  size_t Size() const;  // members of an object or elements of an array

  class Iterator {
   public:
    explicit Iterator(const cJSON* n) : n_(n) {}
    View operator*() const { return View(n_); }
    Iterator& operator++();
    bool operator!=(const Iterator& o) const { return n_ != o.n_; }

   private:
    const cJSON* n_;
  };
  Iterator begin() const;
  Iterator end() const { return Iterator(nullptr); }

  std::string Print() const;  // compact JSON text of this node

  const cJSON* raw() const { return node_; }

 private:
  const cJSON* node_ = nullptr;
};

class Doc {
 public:
  Doc() = default;
  ~Doc();
  Doc(Doc&& o) noexcept : root_(o.root_) { o.root_ = nullptr; }
  Doc& operator=(Doc&& o) noexcept;
  Doc(const Doc&) = delete;
  Doc& operator=(const Doc&) = delete;

  // Parses `text`, which need not be NUL-terminated. Trailing non-space bytes are an
  // error. The error's message names the offset, line and column.
  static Result<Doc> Parse(std::string_view text);
  static Doc Object();
  static Doc Array();
  static Doc Copy(View v);

  // Object setters; each replaces an existing member of the same key.
  Doc& Set(std::string_view key, std::string_view value);
  Doc& Set(std::string_view key, const char* value) { return Set(key, std::string_view(value)); }
  Doc& Set(std::string_view key, const std::string& value) { return Set(key, std::string_view(value)); }
  Doc& Set(std::string_view key, int64_t value);
  Doc& Set(std::string_view key, int value) { return Set(key, static_cast<int64_t>(value)); }
  Doc& Set(std::string_view key, double value);
  Doc& Set(std::string_view key, bool value);
  Doc& Set(std::string_view key, Doc&& value);
  // Takes `value`'s tree (leaving it empty), so built-up temporaries chain:
  // Doc::Object().Set("a", Doc::Object().Set("b", 1)).
  Doc& Set(std::string_view key, Doc& value) { return Set(key, std::move(value)); }
  Doc& SetNull(std::string_view key);
  // Inserts `json_text` as it is; the caller vouches that it is valid JSON.
  Doc& SetRaw(std::string_view key, std::string_view json_text);
  // Array appenders.
  Doc& Push(Doc&& value);
  Doc& Push(Doc& value) { return Push(std::move(value)); }  // takes the tree, as Set does
  Doc& Push(std::string_view value);
  // Appends JSON text as it is, printed verbatim (the caller vouches for it).
  Doc& PushRaw(std::string_view json_text);

  View view() const { return View(root_); }
  bool valid() const { return root_ != nullptr; }
  std::string Print() const { return view().Print(); }

 private:
  explicit Doc(cJSON* root) : root_(root) {}
  void SetItem(std::string_view key, cJSON* item);
  cJSON* root_ = nullptr;
};

// Typed field access for validating request bodies. `path` names the field in
// errors ("containerDefinitions[0].name"). A missing optional field gives `fallback`.
Result<std::string> RequireString(View obj, std::string_view key, std::string_view path);
Result<std::string> OptionalString(View obj, std::string_view key, std::string_view path, std::string fallback = {});
Result<int64_t> OptionalInt(View obj, std::string_view key, std::string_view path, int64_t fallback);
Result<bool> OptionalBool(View obj, std::string_view key, std::string_view path, bool fallback);

// Appends `s` as a JSON string literal (with quotes) to `out`.
void AppendQuoted(std::string* out, std::string_view s);

}  // namespace berth::json
