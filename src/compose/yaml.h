// YAML documents as a small tree of nodes that remember where they came from.
// libyaml (Debian's libyaml-dev) does the parsing; this file turns its document
// into `Node`s with aliases expanded (up to a bound, so an alias bomb is an
// error, not a hang) and merge keys (`<<: *x`, `<<: [*a, *b]`) applied.
// Scalars keep their text exactly as written: whether `yes`, `80:80` or `1.0`
// is a string, a boolean or a number is decided by the reader of each key, as
// Compose does (YAML 1.1's implicit types would turn `80:80` into 4880).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace berth::compose::yaml {

enum class Kind { kNull, kScalar, kSequence, kMapping };

struct Node;
using NodePtr = std::shared_ptr<Node>;

struct Node {
  Kind kind = Kind::kNull;
  std::string text;            // a scalar's text (for kNull, what was written: "", "~" or "null")
  bool quoted = false;         // a quoted or block scalar: never null, a bool or a number
  std::string file;            // the file it was read from, as named to Parse
  int line = 0;                // 1-based
  std::vector<NodePtr> items;  // kSequence
  std::vector<std::pair<std::string, NodePtr>> pairs;  // kMapping, in order; keys are scalar texts
  std::vector<int> key_lines;                          // kMapping: the line of each key

  bool IsScalar() const { return kind == Kind::kScalar; }
  bool IsNull() const { return kind == Kind::kNull; }
  bool IsMap() const { return kind == Kind::kMapping; }
  bool IsSeq() const { return kind == Kind::kSequence; }
  // The member named `key` of a mapping, or nullptr.
  const Node* Get(std::string_view key) const;
  Node* GetMutable(std::string_view key);
  // "FILE:LINE" for error messages.
  std::string Where() const { return file + ":" + std::to_string(line); }
  // What kind of node it is, for error messages: "a mapping", "a list", ...
  const char* KindName() const;
};

// Parses the first document of `text`. An empty document is a kNull node.
// Errors name "FILE:LINE: ..." (libyaml's problem, or the expansion bound).
Result<NodePtr> Parse(std::string_view text, const std::string& file);

// A deep copy of `n` (merged trees must not share nodes that later change).
NodePtr Clone(const Node& n);

}  // namespace berth::compose::yaml
