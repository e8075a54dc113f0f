// What a token may reach besides what its role allows: some clusters, some
// repositories (docs/security.md, "Scoped tokens"). Empty lists mean no limit.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::model {

struct RepoRule {
  std::string pattern;  // a repository name, `*` matching any run of characters ("team/*")
  bool push = true;     // false: pull only
  bool operator==(const RepoRule&) const = default;
};

struct TokenScope {
  std::vector<std::string> clusters;  // empty: every cluster
  std::vector<RepoRule> repos;        // empty: every repository
  bool operator==(const TokenScope&) const = default;

  bool limited() const { return !clusters.empty() || !repos.empty(); }
  bool AllowsCluster(std::string_view cluster) const;
  // `push`: pushing or deleting (else pulling) is asked.
  bool AllowsRepo(std::string_view repo, bool push) const;
  // {"clusters":["prod"],"repositories":["team/*","base/*:pull"]}, only what is set.
  json::Doc ToJson() const;
  // "clusters prod; repositories team/*, base/*:pull" (for messages).
  std::string Describe() const;
};

// Reads "clusters" and "repositories" of `v` (an object; both optional): cluster
// names, and repository patterns with an optional ":pull" or ":push" (push: the
// default). Errors name the field.
Result<TokenScope> ParseTokenScope(json::View v);

}  // namespace berth::model
