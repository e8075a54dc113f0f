// ECR lifecycle policies: the JSON document (rules with rulePriority, selection and
// action), validated as ECR validates it, and its evaluation over a repository's
// images. Pure functions; the registry applies the result as commands.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::registry {

struct LifecycleRule {
  int64_t priority = 0;
  std::string description;
  std::string tag_status;  // "tagged", "untagged" or "any"
  std::vector<std::string> prefixes;
  std::vector<std::string> patterns;  // '*' matches any run of characters
  bool by_count = true;               // imageCountMoreThan; false: sinceImagePushed
  int64_t count = 0;                  // images kept, or days
};

struct LifecyclePolicy {
  std::vector<LifecycleRule> rules;  // by priority, lowest number first
};

// Parses and validates a policy; errors are kInvalid with code
// InvalidLifecyclePolicy and the path of the bad field ("rules[1].selection.countUnit").
Result<LifecyclePolicy> ParseLifecyclePolicy(std::string_view text);

// ECR's tagPatternList matching: '*' matches any (possibly empty) run of characters.
bool MatchTagPattern(std::string_view pattern, std::string_view tag);

struct ImageFacts {
  std::string digest;
  std::vector<std::string> tags;
  int64_t pushed_ms = 0;
};

struct Expiry {
  std::string digest;
  int64_t rule_priority = 0;
};

// The images `policy` expires at `now_ms`. Each image belongs to the first rule
// (by priority) whose selection matches it, and only that rule may expire it;
// imageCountMoreThan keeps the newest `count` of its images.
std::vector<Expiry> EvaluatePolicy(const LifecyclePolicy& policy, const std::vector<ImageFacts>& images,
                                   int64_t now_ms);

}  // namespace berth::registry
