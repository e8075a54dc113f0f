#include "registry/lifecycle.h"

#include <algorithm>
#include <set>

#include "base/json.h"
#include "base/wildcard.h"

namespace berth::registry {

namespace {

constexpr size_t kMaxRules = 50;
constexpr size_t kMaxTagFilters = 100;
constexpr int kMaxWildcards = 4;

Error Bad(const std::string& message) { return Error{ErrorKind::kInvalid, "InvalidLifecyclePolicy", message}; }

Status CheckKeys(json::View obj, const std::string& path, std::initializer_list<std::string_view> allowed) {
  for (json::View m : obj) {
    if (std::find(allowed.begin(), allowed.end(), m.Key()) == allowed.end()) {
      return Bad(path + "." + std::string(m.Key()) + ": unknown field");
    }
  }
  return {};
}

Status ReadStringList(json::View v, const std::string& path, std::vector<std::string>* out) {
  if (!v.IsArray() || v.Size() == 0) return Bad(path + ": must be a non-empty array of strings");
  if (v.Size() > kMaxTagFilters) return Bad(path + ": at most " + std::to_string(kMaxTagFilters) + " entries");
  size_t i = 0;
  for (json::View s : v) {
    std::string at = path + "[" + std::to_string(i++) + "]";
    if (!s.IsString() || s.String().empty() || s.String().size() > 128)
      return Bad(at + ": must be a string of 1-128 characters");
    out->emplace_back(s.String());
  }
  return {};
}

// Does one of `tags` satisfy `want` for every entry of `filters`?
template <class Pred>
bool AllMatched(const std::vector<std::string>& filters, const std::vector<std::string>& tags, Pred pred) {
  for (const std::string& f : filters) {
    bool any = false;
    for (const std::string& t : tags) any = any || pred(f, t);
    if (!any) return false;
  }
  return true;
}

bool Selects(const LifecycleRule& r, const ImageFacts& img) {
  if (r.tag_status == "any") return true;
  if (r.tag_status == "untagged") return img.tags.empty();
  if (img.tags.empty()) return false;
  if (!r.prefixes.empty()) {
    return AllMatched(r.prefixes, img.tags,
                      [](const std::string& p, const std::string& t) { return t.starts_with(p); });
  }
  return AllMatched(r.patterns, img.tags,
                    [](const std::string& p, const std::string& t) { return MatchTagPattern(p, t); });
}

}  // namespace

bool MatchTagPattern(std::string_view pattern, std::string_view tag) { return WildcardMatch(pattern, tag); }

Result<LifecyclePolicy> ParseLifecyclePolicy(std::string_view text) {
  Result<json::Doc> doc = json::Doc::Parse(text);
  if (!doc) return Bad("the policy is not JSON: " + doc.error().message);
  json::View v = doc->view();
  if (!v.IsObject()) return Bad("the policy must be a JSON object with a rules array");
  if (Status s = CheckKeys(v, "policy", {"rules"}); !s) return s.take_error();
  json::View rules = v.Get("rules");
  if (!rules.IsArray() || rules.Size() == 0) return Bad("rules: must be a non-empty array");
  if (rules.Size() > kMaxRules) return Bad("rules: at most " + std::to_string(kMaxRules) + " rules");
  LifecyclePolicy policy;
  std::set<int64_t> priorities;
  size_t i = 0;
  for (json::View r : rules) {
    std::string path = "rules[" + std::to_string(i++) + "]";
    if (!r.IsObject()) return Bad(path + ": must be an object");
    if (Status s = CheckKeys(r, path, {"rulePriority", "description", "selection", "action"}); !s)
      return s.take_error();
    LifecycleRule rule;
    json::View pr = r.Get("rulePriority");
    if (!pr.IsNumber() || pr.Number() < 1 || pr.Number() > 999 ||
        pr.Number() != static_cast<double>(static_cast<int64_t>(pr.Number()))) {
      return Bad(path + ".rulePriority: must be a whole number from 1 to 999");
    }
    rule.priority = static_cast<int64_t>(pr.Number());
    if (!priorities.insert(rule.priority).second) {
      return Bad(path + ".rulePriority: " + std::to_string(rule.priority) + " is used by another rule");
    }
    if (json::View d = r.Get("description"); d.valid()) {
      if (!d.IsString() || d.String().size() > 256)
        return Bad(path + ".description: must be a string of at most 256 characters");
      rule.description = std::string(d.String());
    }
    json::View sel = r.Get("selection");
    std::string sp = path + ".selection";
    if (!sel.IsObject()) return Bad(sp + ": must be an object");
    if (Status s = CheckKeys(sel, sp,
                             {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit", "countNumber"});
        !s) {
      return s.take_error();
    }
    json::View ts = sel.Get("tagStatus");
    if (!ts.IsString() || (ts.String() != "tagged" && ts.String() != "untagged" && ts.String() != "any")) {
      return Bad(sp + ".tagStatus: must be tagged, untagged or any");
    }
    rule.tag_status = std::string(ts.String());
    bool has_prefix = sel.Get("tagPrefixList").valid(), has_pattern = sel.Get("tagPatternList").valid();
    if (rule.tag_status == "tagged") {
      if (has_prefix == has_pattern) {
        return Bad(sp + ": a rule with tagStatus tagged needs exactly one of tagPrefixList and tagPatternList");
      }
      if (has_prefix) {
        if (Status s = ReadStringList(sel.Get("tagPrefixList"), sp + ".tagPrefixList", &rule.prefixes); !s)
          return s.take_error();
      } else {
        if (Status s = ReadStringList(sel.Get("tagPatternList"), sp + ".tagPatternList", &rule.patterns); !s)
          return s.take_error();
        for (const std::string& p : rule.patterns) {
          if (std::count(p.begin(), p.end(), '*') > kMaxWildcards) {
            return Bad(sp + ".tagPatternList: '" + p + "' has more than " + std::to_string(kMaxWildcards) +
                       " wildcards");
          }
        }
      }
    } else if (has_prefix || has_pattern) {
      return Bad(sp + ": tagPrefixList and tagPatternList are only allowed with tagStatus tagged");
    }
    json::View ct = sel.Get("countType");
    if (!ct.IsString() || (ct.String() != "imageCountMoreThan" && ct.String() != "sinceImagePushed")) {
      return Bad(sp + ".countType: must be imageCountMoreThan or sinceImagePushed");
    }
    rule.by_count = ct.String() == "imageCountMoreThan";
    json::View cu = sel.Get("countUnit");
    if (rule.by_count && cu.valid()) return Bad(sp + ".countUnit: not allowed with countType imageCountMoreThan");
    if (!rule.by_count && (!cu.IsString() || cu.String() != "days")) {
      return Bad(sp + ".countUnit: must be days with countType sinceImagePushed");
    }
    json::View cn = sel.Get("countNumber");
    if (!cn.IsNumber() || cn.Number() < 1 || cn.Number() > 1e9 ||
        cn.Number() != static_cast<double>(static_cast<int64_t>(cn.Number()))) {
      return Bad(sp + ".countNumber: must be a whole number of at least 1");
    }
    rule.count = static_cast<int64_t>(cn.Number());
    json::View act = r.Get("action");
    if (!act.IsObject() || !act.Get("type").IsString() || act.Get("type").String() != "expire") {
      return Bad(path + ".action.type: must be expire");
    }
    if (Status s = CheckKeys(act, path + ".action", {"type"}); !s) return s.take_error();
    policy.rules.push_back(std::move(rule));
  }
  std::sort(policy.rules.begin(), policy.rules.end(),
            [](const LifecycleRule& a, const LifecycleRule& b) { return a.priority < b.priority; });
  for (size_t k = 0; k + 1 < policy.rules.size(); k++) {
    if (policy.rules[k].tag_status == "any") {
      return Bad("rulePriority " + std::to_string(policy.rules[k].priority) +
                 ": a rule with tagStatus any must have the highest rulePriority");
    }
  }
  return policy;
}

std::vector<Expiry> EvaluatePolicy(const LifecyclePolicy& policy, const std::vector<ImageFacts>& images,
                                   int64_t now_ms) {
  std::vector<Expiry> out;
  std::vector<bool> claimed(images.size(), false);
  for (const LifecycleRule& rule : policy.rules) {
    std::vector<size_t> mine;
    for (size_t i = 0; i < images.size(); i++) {
      if (!claimed[i] && Selects(rule, images[i])) {
        claimed[i] = true;
        mine.push_back(i);
      }
    }
    if (rule.by_count) {
      std::sort(mine.begin(), mine.end(), [&](size_t a, size_t b) {
        if (images[a].pushed_ms != images[b].pushed_ms) return images[a].pushed_ms > images[b].pushed_ms;
        return images[a].digest < images[b].digest;
      });
      for (size_t k = static_cast<size_t>(rule.count); k < mine.size(); k++)
        out.push_back({images[mine[k]].digest, rule.priority});
    } else {
      int64_t cutoff = now_ms - rule.count * 86400000;
      for (size_t i : mine) {
        if (images[i].pushed_ms < cutoff) out.push_back({images[i].digest, rule.priority});
      }
    }
  }
  return out;
}

}  // namespace berth::registry
