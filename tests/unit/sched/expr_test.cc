// sched/expr: the ECS cluster query language used by memberOf — every operator and
// subject, missing attributes, wildcards, number-vs-text ordering, precedence, and
// parse errors with their positions. Most cases are rows of one table: an
// expression and the fixture nodes (below) it must select.
#include "sched/expr.h"

#include <catch2/catch.hpp>
#include <map>
#include <set>

using namespace berth;
using berth::sched::Expr;
using berth::sched::NodeFacts;
using berth::sched::WildcardMatch;

namespace {

struct FakeNode final : NodeFacts {
  std::string name;  // A, B, C, D: how the table names it
  std::string id;
  std::map<std::string, std::string> attrs;
  bool connected = true;
  int64_t running = 0;
  std::set<std::string> groups;

  const std::string* Attribute(std::string_view n) const override {
    auto it = attrs.find(std::string(n));
    return it == attrs.end() ? nullptr : &it->second;
  }
  std::string_view InstanceId() const override { return id; }
  bool AgentConnected() const override { return connected; }
  int64_t RunningTasksCount() const override { return running; }
  bool HasTaskGroup(std::string_view g) const override { return groups.count(std::string(g)) > 0; }
};

// A: a t2.micro in us-east-1a with nothing running.
// B: an m5.large in us-east-1b running three tasks of service:production.
// C: a t2.large in us-east-1c without an os-type attribute, agent disconnected.
// D: no attributes at all, twelve tasks (service:production and family:web).
std::vector<FakeNode> Fixture() {
  std::vector<FakeNode> v(4);
  v[0].name = "A";
  v[0].id = "i-aaa";
  v[0].attrs = {{"ecs.instance-type", "t2.micro"},
                {"ecs.availability-zone", "us-east-1a"},
                {"ecs.os-type", "linux"},
                {"cores", "4"},
                {"rack", "r10"}};
  v[1].name = "B";
  v[1].id = "i-bbb";
  v[1].attrs = {{"ecs.instance-type", "m5.large"},
                {"ecs.availability-zone", "us-east-1b"},
                {"ecs.os-type", "linux"},
                {"cores", "16"},
                {"rack", "r9"}};
  v[1].running = 3;
  v[1].groups = {"service:production"};
  v[2].name = "C";
  v[2].id = "i-ccc";
  v[2].attrs = {
      {"ecs.instance-type", "t2.large"}, {"ecs.availability-zone", "us-east-1c"}, {"cores", "8"}, {"rack", "r100"}};
  v[2].connected = false;
  v[2].running = 1;
  v[2].groups = {"service:batch"};
  v[3].name = "D";
  v[3].id = "i-ddd";
  v[3].running = 12;
  v[3].groups = {"service:production", "family:web"};
  return v;
}

// The names of the fixture nodes `text` selects, e.g. "AC"; "parse error: ..." if it fails.
std::string Selected(const std::string& text) {
  auto e = Expr::Parse(text);
  if (!e) return "parse error: " + e.error().message;
  std::string out;
  for (const FakeNode& n : Fixture()) {
    if (e.value()->Eval(n)) out += n.name;
  }
  return out;
}

struct Case {
  const char* expr;
  const char* selects;
};

// clang-format off
const Case kCases[] = {
    // == and != compare text; a node without the attribute satisfies only the negative operators.
    {"attribute:ecs.os-type == linux",                      "AB"},
    {"attribute:ecs.os-type != linux",                      "CD"},
    {"attribute:cores == 4",                                "A"},
    {"attribute:cores == 4.0",                              ""},    // equality is textual
    {"attribute:absent == x",                               ""},
    {"attribute:absent != x",                               "ABCD"},
    // Ordering: numbers when both sides are numbers, text otherwise.
    {"attribute:cores > 10",                                "B"},   // as text, "4" and "8" would be > "10"
    {"attribute:cores >= 8",                                "BC"},
    {"attribute:cores < 8",                                 "A"},
    {"attribute:cores <= 4",                                "A"},
    {"attribute:cores < 1e2",                               "ABC"},
    {"attribute:cores >= nan",                              ""},    // nan and inf are text, not numbers
    {"attribute:cores < nan",                               "ABC"},
    {"attribute:rack > r50",                                "B"},   // text: "r9" > "r50" > "r100" > "r10"
    {"attribute:rack <= r100",                              "AC"},
    {"attribute:ecs.os-type > a",                           "AB"},  // missing: false for every ordering
    {"attribute:ecs.os-type < z",                           "AB"},
    // in, !in (also spelt not_in), with bare and quoted values.
    {"attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",     "AB"},
    {"attribute:ecs.availability-zone !in [us-east-1a, us-east-1b]",    "CD"},
    {"attribute:ecs.availability-zone not_in [us-east-1a]",             "BCD"},
    {"attribute:ecs.availability-zone in ['us-east-1a', \"us-east-1c\"]", "AC"},
    {"attribute:ecs.availability-zone in [us-east-1c]",                 "C"},
    {"attribute:ecs.os-type in [linux]",                    "AB"},
    {"attribute:ecs.os-type !in [linux]",                   "CD"},
    {"attribute:ecs.instance-type in['t2.micro','m5.large']", "AB"},
    // =~ and !~: `*` is any run of characters, and the pattern covers the whole value.
    {"attribute:ecs.instance-type =~ t2.*",                 "AC"},
    {"attribute:ecs.instance-type =~ *.large",              "BC"},
    {"attribute:ecs.instance-type =~ t2*e",                 "C"},
    {"attribute:ecs.instance-type =~ *5*",                  "B"},
    {"attribute:ecs.instance-type =~ m5.large",             "B"},
    {"attribute:ecs.instance-type =~ t2.",                  ""},
    {"attribute:ecs.instance-type =~ *",                    "ABC"},
    {"attribute:ecs.instance-type !~ t2.*",                 "BD"},
    {"attribute:ecs.os-type =~ li*",                        "AB"},
    {"attribute:ecs.os-type !~ li*",                        "CD"},
    {"attribute:ecs.instance-type =~ 't2.*'",               "AC"},
    // agentConnected.
    {"agentConnected == true",                              "ABD"},
    {"agentConnected == false",                             "C"},
    {"agentConnected != true",                              "C"},
    {"agentConnected in [false]",                           "C"},
    // runningTasksCount compares numerically.
    {"runningTasksCount == 0",                              "A"},
    {"runningTasksCount > 2",                               "BD"},  // as text, "12" < "2"
    {"runningTasksCount >= 12",                             "D"},
    {"runningTasksCount <= 1",                              "AC"},
    {"runningTasksCount < 3",                               "AC"},
    {"runningTasksCount != 0",                              "BCD"},
    {"runningTasksCount == 0.0",                            "A"},   // a number, so 0 and 0.0 are equal
    {"runningTasksCount != 3.0",                            "ACD"},
    {"runningTasksCount == 12e0",                           "D"},
    // task:group: whether a task of the group runs on the node.
    {"task:group == service:production",                    "BD"},
    {"task:group != service:production",                    "AC"},
    {"task:group in [service:batch, family:web]",           "CD"},
    {"task:group !in [service:batch]",                      "ABD"},
    {"task:group == service:none",                          ""},
    // instanceId and its ECS spelling ec2InstanceId.
    {"instanceId == i-aaa",                                 "A"},
    {"instanceId != i-aaa",                                 "BCD"},
    {"ec2InstanceId in [i-bbb, i-ccc]",                     "BC"},
    {"ec2InstanceId in ['i-bbb', 'i-ddd']",                 "BD"},
    {"instanceId =~ i-a*",                                  "A"},
    {"instanceId > i-bbb",                                  "CD"},
    // not, and, or: not binds tightest, then and, then or; parentheses group.
    {"not attribute:ecs.os-type == linux",                  "CD"},
    {"not(attribute:ecs.os-type == linux)",                 "CD"},
    {"not not agentConnected == true",                      "ABD"},
    {"attribute:ecs.os-type == linux or agentConnected == false and runningTasksCount > 5", "AB"},
    {"(attribute:ecs.os-type == linux or agentConnected == false) and runningTasksCount > 0", "BC"},
    {"not attribute:ecs.os-type == linux and runningTasksCount > 5", "D"},
    {"not (attribute:ecs.os-type == linux and runningTasksCount > 5)", "ABCD"},
    {"((instanceId == i-aaa) or (instanceId == i-ddd))",    "AD"},
    {"instanceId == i-aaa or instanceId == i-bbb or instanceId == i-ccc", "ABC"},
    {"agentConnected == true and runningTasksCount > 0 and task:group == family:web", "D"},
    {"NOT agentConnected == true",                          "C"},   // keywords in any case
    {"attribute:ecs.os-type == linux AND runningTasksCount == 0", "A"},
    {"instanceId == i-aaa Or instanceId == i-ccc",          "AC"},
    {"  attribute:cores==4  ",                              "A"},   // spaces are optional around operators
    // The examples of the ECS documentation (cluster query language).
    {"attribute:ecs.instance-type == t2.small",             ""},
    {"attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", "AB"},
    {"attribute:ecs.instance-type =~ g2.*",                 ""},
    {"attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d", "AC"},
    {"not(attribute:ecs.instance-type =~ t2.*)",            "BD"},
    {"task:group == service:production",                    "BD"},
    {"not(task:group == database)",                         "ABCD"},
    {"runningTasksCount == 1",                              "C"},
    {"runningTasksCount == 0",                              "A"},
    {"agentConnected == false",                             "C"},
    {"ec2InstanceId in ['i-abcd1234', 'i-wxyz4567']",       ""},
    {"attribute:ecs.instance-type =~ t2.* or attribute:ecs.instance-type =~ m5.*", "ABC"},
};
// clang-format on

struct BadCase {
  std::string expr;
  size_t position;
  const char* says;
};

std::string ParseError(const std::string& text) {
  auto e = Expr::Parse(text);
  if (e) return "(parsed)";
  CHECK(e.error().kind == ErrorKind::kInvalid);
  return e.error().message;
}

}  // namespace

TEST_CASE("expr: every operator, subject and combinator selects the right nodes", "[sched][expr]") {
  for (const Case& c : kCases) {
    INFO(c.expr);
    CHECK(Selected(c.expr) == c.selects);
  }
}

TEST_CASE("expr: parse errors name the position and what was expected", "[sched][expr]") {
  std::string deep = std::string(70, '(') + "attribute:a == b" + std::string(70, ')');
  // clang-format off
  const BadCase kBad[] = {
      {"",                              0,  "expected a subject such as attribute:zone"},
      {"   ",                           3,  "expected a subject such as attribute:zone"},
      {")",                             0,  "expected a subject, not ')'"},
      {"attribute:zone",                14, "expected an operator (== != > >= < <= in !in =~ !~) after 'attribute:zone'"},
      {"attribute:zone =! a",           15, "expected an operator"},
      {"attribute:zone inside [a]",     15, "expected an operator"},
      {"attribute:zone == ",            18, "expected a value"},
      {"attribute:zone in a, b]",       18, "expected '[' to start the list"},
      {"attribute:zone in [a, b",       23, "expected ',' or ']' in the list"},
      {"attribute:zone in [a b]",       21, "expected ',' or ']' in the list"},
      {"attribute:zone in []",          19, "expected a value"},
      {"(attribute:zone == a",          20, "expected ')'"},
      {"attribute:zone == a b",         20, "unexpected 'b'"},
      {"attribute:a == b)",             16, "unexpected ')'"},
      {"attribute:a == b and",          20, "expected a subject such as attribute:zone"},
      {"attribute:a == b or not",       23, "expected a subject such as attribute:zone"},
      {"attribute:a == 'b",             15, "unterminated quoted value"},
      {"colour == red",                 0,  "unknown subject 'colour'"},
      {"  colour == red",               2,  "unknown subject 'colour'"},
      {"attribute:a == b and zone == c", 21, "unknown subject 'zone'"},
      {"attribute: == a",               0,  "attribute: needs a name"},
      {"task:group > a",                11, "task:group takes only ==, !=, in and !in"},
      {"task:group =~ service:*",       11, "task:group takes only ==, !=, in and !in"},
      {"agentConnected > true",         15, "agentConnected takes no ordering operator"},
      {"runningTasksCount =~ 1*",       18, "runningTasksCount takes only == != > >= < <="},
      {"runningTasksCount in [1, 2]",   18, "runningTasksCount takes only == != > >= < <="},
      {"runningTasksCount == many",     21, "runningTasksCount compares with a number, not 'many'"},
      {deep,                            65, "expression nested too deeply"},
  };
  // clang-format on
  for (const BadCase& b : kBad) {
    INFO("'" << b.expr << "'");
    std::string msg = ParseError(b.expr);
    CHECK_THAT(msg, Catch::StartsWith("expression error at position " + std::to_string(b.position) + ": "));
    CHECK_THAT(msg, Catch::Contains(b.says));
  }
}

TEST_CASE("expr: length and nesting limits", "[sched][expr]") {
  std::string longest = "attribute:a == " + std::string(4096 - 15, 'x');
  REQUIRE(longest.size() == 4096);
  CHECK(Expr::Parse(longest).ok());
  CHECK(ParseError(longest + "x") == "expression longer than 4096 characters");
  // 64 levels of parentheses are fine; the 65th is refused (see the table above).
  std::string ok = std::string(64, '(') + "attribute:a == b" + std::string(64, ')');
  CHECK(Expr::Parse(ok).ok());
  std::string nots;
  for (int i = 0; i < 64; i++) nots += "not ";
  CHECK(Selected(nots + "agentConnected == true") == "ABD");  // an even number of nots
}

TEST_CASE("expr: AttributesOnly tells which expressions read only attributes", "[sched][expr]") {
  auto only = [](const char* text) {
    auto e = Expr::Parse(text);
    REQUIRE(e.ok());
    return e.value()->AttributesOnly();
  };
  CHECK(only("attribute:zone == a"));
  CHECK(only("not(attribute:zone == a) and (attribute:b in [x] or attribute:c =~ y*)"));
  CHECK_FALSE(only("agentConnected == true"));
  CHECK_FALSE(only("runningTasksCount == 0"));
  CHECK_FALSE(only("task:group == service:a"));
  CHECK_FALSE(only("instanceId == i-1"));
  CHECK_FALSE(only("attribute:zone == a and runningTasksCount == 0"));
  CHECK_FALSE(only("attribute:zone == a or not instanceId == x"));
}

TEST_CASE("expr: wildcard matching", "[sched][expr]") {
  struct W {
    const char* pattern;
    const char* text;
    bool match;
  };
  // clang-format off
  const W kW[] = {
      {"", "", true},          {"", "a", false},         {"*", "", true},          {"**", "x", true},
      {"a", "a", true},        {"a", "ab", false},       {"ab", "a", false},       {"a*", "a", true},
      {"*a", "ba", true},      {"*a", "ab", false},      {"a*b*c", "aXXbYYc", true}, {"a*b*c", "aXXbYY", false},
      {"*ab", "aab", true},    {"*aab", "aaab", true},   {"a*a*a", "aa", false},   {"a*a*a", "aaa", true},
      {"t2.*", "t2.micro", true}, {"t2.*", "t2", false}, {"*.*", "a.b.c", true},    {"*x*", "abc", false},
      {".*", "abc", false},    // not a regular expression: '.' is a literal dot
      {"a?c", "abc", false},   // nor is '?'
  };
  // clang-format on
  for (const W& w : kW) {
    INFO(w.pattern << " vs " << w.text);
    CHECK(WildcardMatch(w.pattern, w.text) == w.match);
  }
  // Many stars against a long near-miss: still answered (the matcher backtracks only to the last star).
  std::string pattern;
  for (int i = 0; i < 200; i++) pattern += "*a";
  pattern += "*b";
  CHECK_FALSE(WildcardMatch(pattern, std::string(4000, 'a')));
  CHECK(WildcardMatch(pattern, std::string(4000, 'a') + "b"));
}
