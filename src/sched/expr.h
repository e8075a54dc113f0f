// The ECS cluster query language, used by `memberOf` placement constraints:
//
//   subject operator argument      e.g.  attribute:zone in [a, b]
//   expr and expr, expr or expr, not expr, ( expr )
//
// Subjects: attribute:<name>, agentConnected, runningTasksCount, task:group,
// instanceId (also ec2InstanceId). Operators: == != > >= < <= in !in =~ !~.
// `=~` and `!~` match a pattern in which `*` stands for any run of characters
// (never a regular expression: untrusted input must not cost more than linear time).
// `>`-style operators compare numbers when both sides are numbers, text otherwise.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/wildcard.h"

namespace berth::sched {

// What an expression may ask about one node.
class NodeFacts {
 public:
  virtual ~NodeFacts() = default;
  // The value of attribute `name`, or nullptr when the node lacks it.
  virtual const std::string* Attribute(std::string_view name) const = 0;
  virtual std::string_view InstanceId() const = 0;
  virtual bool AgentConnected() const = 0;
  virtual int64_t RunningTasksCount() const = 0;
  // Whether a task of group `group` runs on the node.
  virtual bool HasTaskGroup(std::string_view group) const = 0;
};

class Expr {
 public:
  // Parses `text`; an error names the position (0-based character offset) and
  // what was expected there.
  static Result<std::shared_ptr<const Expr>> Parse(std::string_view text);
  virtual ~Expr() = default;
  virtual bool Eval(const NodeFacts& node) const = 0;
  // True when the result depends only on the node's attributes, so it can be
  // evaluated once per set of nodes sharing the same attributes.
  virtual bool AttributesOnly() const = 0;
};

// `=~` and `!~` match with berth::WildcardMatch (base/wildcard.h).
using berth::WildcardMatch;

}  // namespace berth::sched
