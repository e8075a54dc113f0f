#include "model/scope.h"

#include <algorithm>

#include "base/wildcard.h"
#include "model/cluster.h"

namespace berth::model {

bool TokenScope::AllowsCluster(std::string_view cluster) const {
  return clusters.empty() || std::find(clusters.begin(), clusters.end(), cluster) != clusters.end();
}

bool TokenScope::AllowsRepo(std::string_view repo, bool push) const {
  if (repos.empty()) return true;
  for (const RepoRule& r : repos) {
    if ((r.push || !push) && WildcardMatch(r.pattern, repo)) return true;
  }
  return false;
}

json::Doc TokenScope::ToJson() const {
  json::Doc d = json::Doc::Object();
  if (!clusters.empty()) {
    json::Doc list = json::Doc::Array();
    for (const std::string& c : clusters) list.Push(c);
    d.Set("clusters", list);
  }
  if (!repos.empty()) {
    json::Doc list = json::Doc::Array();
    for (const RepoRule& r : repos) list.Push(r.pattern + (r.push ? "" : ":pull"));
    d.Set("repositories", list);
  }
  return d;
}

std::string TokenScope::Describe() const {
  std::string out;
  if (!clusters.empty()) {
    out = "clusters ";
    for (size_t i = 0; i < clusters.size(); i++) out += (i ? ", " : "") + clusters[i];
  }
  if (!repos.empty()) {
    out += out.empty() ? "repositories " : "; repositories ";
    for (size_t i = 0; i < repos.size(); i++)
      out += (i ? ", " : "") + repos[i].pattern + (repos[i].push ? "" : ":pull");
  }
  return out;
}

Result<TokenScope> ParseTokenScope(json::View v) {
  TokenScope s;
  if (!v.valid() || v.IsNull()) return s;
  if (!v.IsObject()) return Error::Invalid(std::string("scope: must be an object, not ") + v.TypeName());
  json::View clusters = v.Get("clusters");
  if (clusters.valid() && !clusters.IsNull()) {
    if (!clusters.IsArray()) return Error::Invalid("clusters: must be an array of cluster names");
    size_t i = 0;
    for (json::View c : clusters) {
      std::string field = "clusters[" + std::to_string(i++) + "]";
      if (!c.IsString()) return Error::Invalid(field + ": must be a cluster name");
      if (Status st = ValidateClusterName(c.String(), field); !st) return st.take_error();
      if (std::find(s.clusters.begin(), s.clusters.end(), c.String()) == s.clusters.end()) {
        s.clusters.emplace_back(c.String());
      }
    }
    if (s.clusters.size() > 100) return Error::Invalid("clusters: at most 100");
  }
  json::View repos = v.Get("repositories");
  if (repos.valid() && !repos.IsNull()) {
    if (!repos.IsArray()) return Error::Invalid("repositories: must be an array of patterns such as team/*");
    size_t i = 0;
    for (json::View r : repos) {
      std::string field = "repositories[" + std::to_string(i++) + "]";
      if (!r.IsString()) return Error::Invalid(field + ": must be a pattern such as team/* or team/*:pull");
      std::string_view text = r.String();
      RepoRule rule;
      if (text.ends_with(":pull")) {
        rule.push = false;
        text.remove_suffix(5);
      } else if (text.ends_with(":push")) {
        text.remove_suffix(5);
      }
      bool ok = !text.empty() && text.size() <= 255;
      for (char c : text) {
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '/' ||
                    c == '*');
      }
      if (!ok) {
        return Error::Invalid(field + ": must be a repository name or pattern (lower-case letters, digits, . _ - / " +
                              "and *), optionally followed by :pull or :push");
      }
      rule.pattern = std::string(text);
      s.repos.push_back(std::move(rule));
    }
    if (s.repos.size() > 100) return Error::Invalid("repositories: at most 100");
  }
  return s;
}

}  // namespace berth::model
