#include "sched/expr.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace berth::sched {

namespace {

enum class Subject { kAttribute, kAgentConnected, kRunningTasksCount, kTaskGroup, kInstanceId };
enum class Op { kEq, kNe, kGt, kGe, kLt, kLe, kIn, kNotIn, kMatch, kNotMatch };

bool ParseNumber(std::string_view s, double* out) {
  if (s.empty() || s.size() > 40) return false;
  std::string tmp(s);
  char* end = nullptr;
  *out = strtod(tmp.c_str(), &end);
  // "nan" and "inf" are text: a NaN would make every ordering (< and >=) true at once.
  return end == tmp.c_str() + tmp.size() && std::isfinite(*out);
}

// Compares for the ordering operators: numerically when both parse, else as text.
int Compare(std::string_view a, std::string_view b) {
  double x, y;
  if (ParseNumber(a, &x) && ParseNumber(b, &y)) return x < y ? -1 : (x > y ? 1 : 0);
  return a < b ? -1 : (a > b ? 1 : 0);
}

class Cmp final : public Expr {
 public:
  Cmp(Subject s, std::string attr, Op op, std::vector<std::string> values)
      : subject_(s), attr_(std::move(attr)), op_(op), values_(std::move(values)) {}

  bool AttributesOnly() const override { return subject_ == Subject::kAttribute; }

  bool Eval(const NodeFacts& n) const override {
    if (subject_ == Subject::kTaskGroup) {
      // task:group == g: a task of group g runs there; in [..]: any of them.
      bool any = false;
      for (const std::string& v : values_) any = any || n.HasTaskGroup(v);
      switch (op_) {
        case Op::kEq:
        case Op::kIn: return any;
        case Op::kNe:
        case Op::kNotIn: return !any;
        default: return false;  // refused at parse time
      }
    }
    std::string value;
    bool present = true;
    switch (subject_) {
      case Subject::kAttribute: {
        const std::string* v = n.Attribute(attr_);
        present = v != nullptr;
        if (v) value = *v;
        break;
      }
      case Subject::kAgentConnected: value = n.AgentConnected() ? "true" : "false"; break;
      case Subject::kRunningTasksCount: value = std::to_string(n.RunningTasksCount()); break;
      case Subject::kInstanceId: value = std::string(n.InstanceId()); break;
      case Subject::kTaskGroup: break;
    }
    // A node without the attribute satisfies only the negative operators.
    if (!present) return op_ == Op::kNe || op_ == Op::kNotIn || op_ == Op::kNotMatch;
    // runningTasksCount is a number (checked at parse time): 0 and 0.0 are equal.
    bool numeric = subject_ == Subject::kRunningTasksCount;
    switch (op_) {
      case Op::kEq: return numeric ? Compare(value, values_[0]) == 0 : value == values_[0];
      case Op::kNe: return numeric ? Compare(value, values_[0]) != 0 : value != values_[0];
      case Op::kGt: return Compare(value, values_[0]) > 0;
      case Op::kGe: return Compare(value, values_[0]) >= 0;
      case Op::kLt: return Compare(value, values_[0]) < 0;
      case Op::kLe: return Compare(value, values_[0]) <= 0;
      case Op::kIn:
      case Op::kNotIn: {
        bool in = false;
        for (const std::string& v : values_) in = in || v == value;
        return op_ == Op::kIn ? in : !in;
      }
      case Op::kMatch: return WildcardMatch(values_[0], value);
      case Op::kNotMatch: return !WildcardMatch(values_[0], value);
    }
    return false;
  }

 private:
  Subject subject_;
  std::string attr_;
  Op op_;
  std::vector<std::string> values_;
};

class Not final : public Expr {
 public:
  explicit Not(std::shared_ptr<const Expr> e) : e_(std::move(e)) {}
  bool Eval(const NodeFacts& n) const override { return !e_->Eval(n); }
  bool AttributesOnly() const override { return e_->AttributesOnly(); }

 private:
  std::shared_ptr<const Expr> e_;
};

class Binary final : public Expr {
 public:
  Binary(bool is_and, std::shared_ptr<const Expr> a, std::shared_ptr<const Expr> b)
      : and_(is_and), a_(std::move(a)), b_(std::move(b)) {}
  bool Eval(const NodeFacts& n) const override {
    return and_ ? (a_->Eval(n) && b_->Eval(n)) : (a_->Eval(n) || b_->Eval(n));
  }
  bool AttributesOnly() const override { return a_->AttributesOnly() && b_->AttributesOnly(); }

 private:
  bool and_;
  std::shared_ptr<const Expr> a_, b_;
};

// Recursive descent over the text; every error carries the position.
class Parser {
 public:
  explicit Parser(std::string_view text) : t_(text) {}

  Result<std::shared_ptr<const Expr>> Run() {
    auto e = ParseOr(0);
    if (!e) return e;
    SkipSpace();
    if (p_ < t_.size()) return Fail("unexpected '" + std::string(t_.substr(p_, 12)) + "'");
    return e;
  }

 private:
  static constexpr int kMaxDepth = 64;

  Error Fail(const std::string& what) const {
    return Error::Invalid("expression error at position " + std::to_string(p_) + ": " + what);
  }

  void SkipSpace() {
    while (p_ < t_.size() && isspace(static_cast<unsigned char>(t_[p_]))) p_++;
  }

  static bool WordChar(char c) {
    return isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == ':' || c == '*' ||
           c == '/' || c == '@' || c == '+';
  }

  // A bare word at p_ (no advance when `peek`).
  std::string_view Word(bool peek = false) {
    SkipSpace();
    size_t start = p_, q = p_;
    while (q < t_.size() && WordChar(t_[q])) q++;
    if (!peek) p_ = q;
    return t_.substr(start, q - start);
  }

  bool Keyword(std::string_view kw) {
    std::string_view w = Word(true);
    if (w.size() != kw.size()) return false;
    for (size_t i = 0; i < kw.size(); i++) {
      if (tolower(static_cast<unsigned char>(w[i])) != kw[i]) return false;
    }
    Word();
    return true;
  }

  Result<std::shared_ptr<const Expr>> ParseOr(int depth) {
    auto left = ParseAnd(depth);
    if (!left) return left;
    std::shared_ptr<const Expr> e = left.value();
    while (Keyword("or")) {
      auto right = ParseAnd(depth);
      if (!right) return right;
      e = std::make_shared<Binary>(false, e, right.value());
    }
    return e;
  }

  Result<std::shared_ptr<const Expr>> ParseAnd(int depth) {
    auto left = ParseUnary(depth);
    if (!left) return left;
    std::shared_ptr<const Expr> e = left.value();
    while (Keyword("and")) {
      auto right = ParseUnary(depth);
      if (!right) return right;
      e = std::make_shared<Binary>(true, e, right.value());
    }
    return e;
  }

  Result<std::shared_ptr<const Expr>> ParseUnary(int depth) {
    if (depth > kMaxDepth) return Fail("expression nested too deeply");
    SkipSpace();
    if (p_ < t_.size() && t_[p_] == '(') {
      p_++;
      auto e = ParseOr(depth + 1);
      if (!e) return e;
      SkipSpace();
      if (p_ >= t_.size() || t_[p_] != ')') return Fail("expected ')'");
      p_++;
      return e;
    }
    if (Keyword("not")) {
      auto e = ParseUnary(depth + 1);
      if (!e) return e;
      return std::shared_ptr<const Expr>(std::make_shared<Not>(e.value()));
    }
    return ParseCmp();
  }

  Result<std::string> ParseValue() {
    SkipSpace();
    if (p_ < t_.size() && (t_[p_] == '\'' || t_[p_] == '"')) {
      char q = t_[p_];
      size_t end = t_.find(q, p_ + 1);
      if (end == std::string_view::npos) return Fail("unterminated quoted value");
      std::string v(t_.substr(p_ + 1, end - p_ - 1));
      p_ = end + 1;
      return v;
    }
    std::string_view w = Word();
    if (w.empty()) return Fail("expected a value");
    return std::string(w);
  }

  Result<std::shared_ptr<const Expr>> ParseCmp() {
    SkipSpace();
    size_t subject_pos = p_;
    std::string_view w = Word();
    if (w.empty())
      return Fail(p_ < t_.size() ? "expected a subject, not '" + std::string(1, t_[p_]) + "'"
                                 : "expected a subject such as attribute:zone");
    Subject subject;
    std::string attr;
    if (w.starts_with("attribute:")) {
      subject = Subject::kAttribute;
      attr = std::string(w.substr(10));
      if (attr.empty()) {
        p_ = subject_pos;
        return Fail("attribute: needs a name, as in attribute:zone");
      }
    } else if (w == "agentConnected") {
      subject = Subject::kAgentConnected;
    } else if (w == "runningTasksCount") {
      subject = Subject::kRunningTasksCount;
    } else if (w == "task:group") {
      subject = Subject::kTaskGroup;
    } else if (w == "instanceId" || w == "ec2InstanceId") {
      subject = Subject::kInstanceId;
    } else {
      p_ = subject_pos;
      return Fail("unknown subject '" + std::string(w) +
                  "' (use attribute:<name>, agentConnected, runningTasksCount, task:group or instanceId)");
    }
    SkipSpace();
    size_t op_pos = p_;
    Op op;
    auto sym = [&](std::string_view s) {
      if (t_.substr(p_, s.size()) == s) {
        p_ += s.size();
        return true;
      }
      return false;
    };
    if (sym("=="))
      op = Op::kEq;
    else if (sym("!="))
      op = Op::kNe;
    else if (sym(">="))
      op = Op::kGe;
    else if (sym("<="))
      op = Op::kLe;
    else if (sym(">"))
      op = Op::kGt;
    else if (sym("<"))
      op = Op::kLt;
    else if (sym("=~"))
      op = Op::kMatch;
    else if (sym("!~"))
      op = Op::kNotMatch;
    else if (sym("!in"))
      op = Op::kNotIn;
    else if (Keyword("in"))
      op = Op::kIn;
    else if (Keyword("not_in"))
      op = Op::kNotIn;
    else
      return Fail("expected an operator (== != > >= < <= in !in =~ !~) after '" + std::string(w) + "'");

    bool ordering = op == Op::kGt || op == Op::kGe || op == Op::kLt || op == Op::kLe;
    bool matching = op == Op::kMatch || op == Op::kNotMatch;
    if (subject == Subject::kTaskGroup && (ordering || matching)) {
      p_ = op_pos;
      return Fail("task:group takes only ==, !=, in and !in");
    }
    if (subject == Subject::kAgentConnected && ordering) {
      p_ = op_pos;
      return Fail("agentConnected takes no ordering operator");
    }
    if (subject == Subject::kRunningTasksCount && (matching || op == Op::kIn || op == Op::kNotIn)) {
      p_ = op_pos;
      return Fail("runningTasksCount takes only == != > >= < <=");
    }
    std::vector<std::string> values;
    SkipSpace();
    if (op == Op::kIn || op == Op::kNotIn) {
      if (p_ >= t_.size() || t_[p_] != '[') return Fail("expected '[' to start the list");
      p_++;
      for (;;) {
        auto v = ParseValue();
        if (!v) return v.take_error();
        values.push_back(std::move(v.value()));
        SkipSpace();
        if (p_ < t_.size() && t_[p_] == ',') {
          p_++;
          continue;
        }
        if (p_ < t_.size() && t_[p_] == ']') {
          p_++;
          break;
        }
        return Fail("expected ',' or ']' in the list");
      }
    } else {
      size_t value_pos = p_;
      auto v = ParseValue();
      if (!v) return v.take_error();
      if (subject == Subject::kRunningTasksCount) {
        double d;
        if (!ParseNumber(v.value(), &d)) {
          p_ = value_pos;
          return Fail("runningTasksCount compares with a number, not '" + v.value() + "'");
        }
      }
      values.push_back(std::move(v.value()));
    }
    return std::shared_ptr<const Expr>(std::make_shared<Cmp>(subject, std::move(attr), op, std::move(values)));
  }

  std::string_view t_;
  size_t p_ = 0;
};

}  // namespace

Result<std::shared_ptr<const Expr>> Expr::Parse(std::string_view text) {
  if (text.size() > 4096) return Error::Invalid("expression longer than 4096 characters");
  return Parser(text).Run();
}

}  // namespace berth::sched
