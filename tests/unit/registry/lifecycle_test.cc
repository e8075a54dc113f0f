// registry/lifecycle: ECR policy validation and evaluation.
#include "registry/lifecycle.h"

#include <catch2/catch.hpp>

using namespace berth::registry;

namespace {

constexpr int64_t kDay = 86400000;
constexpr int64_t kNow = 1700000000000;

ImageFacts Img(std::string digest, std::vector<std::string> tags, int64_t age_days) {
  return ImageFacts{std::move(digest), std::move(tags), kNow - age_days * kDay};
}

std::vector<std::string> Expired(const std::string& policy, const std::vector<ImageFacts>& images) {
  auto p = ParseLifecyclePolicy(policy);
  REQUIRE(p.ok());
  std::vector<std::string> out;
  for (const Expiry& e : EvaluatePolicy(*p, images, kNow)) out.push_back(e.digest);
  std::sort(out.begin(), out.end());
  return out;
}

std::string PolicyError(const std::string& policy) {
  auto p = ParseLifecyclePolicy(policy);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == "InvalidLifecyclePolicy");
  return p.error().message;
}

}  // namespace

TEST_CASE("registry lifecycle: tag patterns", "[registry]") {
  CHECK(MatchTagPattern("prod*", "prod-1"));
  CHECK(MatchTagPattern("*-rc*", "v1-rc2"));
  CHECK(MatchTagPattern("*", ""));
  CHECK(MatchTagPattern("a*b*c", "aXXbYYc"));
  CHECK_FALSE(MatchTagPattern("a*b*c", "aXXbYY"));
  CHECK_FALSE(MatchTagPattern("prod", "prod-1"));
}

TEST_CASE("registry lifecycle: validation as ECR does it", "[registry]") {
  CHECK_THAT(PolicyError("{"), Catch::Contains("not JSON"));
  CHECK_THAT(PolicyError(R"({"rules":[]})"), Catch::Contains("rules"));
  const std::string sel = R"("countType":"imageCountMoreThan","countNumber":1})";
  CHECK_THAT(PolicyError(R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged",)" + sel +
                         R"(,"action":{"type":"expire"}}]})"),
             Catch::Contains("rules[0].selection: a rule with tagStatus tagged needs exactly one"));
  CHECK_THAT(PolicyError(R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","tagPrefixList":["a"],)" +
                         sel + R"(,"action":{"type":"expire"}}]})"),
             Catch::Contains("only allowed with tagStatus tagged"));
  CHECK_THAT(
      PolicyError(
          R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countNumber":3},"action":{"type":"expire"}}]})"),
      Catch::Contains("countUnit"));
  CHECK_THAT(
      PolicyError(
          R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countUnit":"days","countNumber":3},"action":{"type":"expire"}}]})"),
      Catch::Contains("countUnit: not allowed"));
  CHECK_THAT(PolicyError(R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"any",)" + sel +
                         R"(,"action":{"type":"keep"}}]})"),
             Catch::Contains("action.type"));
  CHECK_THAT(PolicyError(R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"any",)" + sel +
                         R"(,"action":{"type":"expire"}},{"rulePriority":1,"selection":{"tagStatus":"untagged",)" +
                         sel + R"(,"action":{"type":"expire"}}]})"),
             Catch::Contains("is used by another rule"));
  CHECK_THAT(PolicyError(R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"any",)" + sel +
                         R"(,"action":{"type":"expire"}},{"rulePriority":2,"selection":{"tagStatus":"untagged",)" +
                         sel + R"(,"action":{"type":"expire"}}]})"),
             Catch::Contains("tagStatus any must have the highest rulePriority"));
  CHECK_THAT(
      PolicyError(R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["a*b*c*d*e*f"],)" +
                  sel + R"(,"action":{"type":"expire"}}]})"),
      Catch::Contains("wildcards"));
  CHECK_THAT(PolicyError(R"({"rules":[{"rulePriority":1,"bogus":1,"selection":{"tagStatus":"any",)" + sel +
                         R"(,"action":{"type":"expire"}}]})"),
             Catch::Contains("rules[0].bogus: unknown field"));
}

TEST_CASE("registry lifecycle: count rules keep the newest", "[registry]") {
  std::vector<ImageFacts> images = {Img("a", {"prod-1"}, 5), Img("b", {"prod-2"}, 4), Img("c", {"prod-3"}, 3),
                                    Img("d", {"dev-1"}, 9),  Img("e", {}, 30),        Img("f", {}, 1)};
  CHECK(
      Expired(
          R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]})",
          images) == std::vector<std::string>{"a"});
  CHECK(
      Expired(
          R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]})",
          images) == std::vector<std::string>{"e"});
  CHECK(
      Expired(
          R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}}]})",
          images) == std::vector<std::string>{"a", "d", "e"});
}

TEST_CASE("registry lifecycle: an image belongs to the first rule that selects it", "[registry]") {
  // prod images are selected (and kept) by rule 1, so the 'any' rule cannot expire them.
  std::vector<ImageFacts> images = {Img("p1", {"prod-1"}, 10), Img("p2", {"prod-2"}, 9), Img("x", {"x"}, 8),
                                    Img("y", {"y"}, 7), Img("z", {}, 6)};
  CHECK(Expired(R"({"rules":[
      {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["prod-*"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}},
      {"rulePriority":2,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]})",
                images) == std::vector<std::string>{"x", "y"});
  // With several prefixes an image must match them all.
  std::vector<ImageFacts> multi = {Img("both", {"prod-1", "stable-1"}, 3), Img("one", {"prod-2"}, 2)};
  CHECK(
      Expired(
          R"({"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod","stable"],"countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]})",
          multi) == std::vector<std::string>{"both"});
}
