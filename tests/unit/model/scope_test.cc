// model/scope: what a token may reach besides its role.
#include "model/scope.h"

#include <catch2/catch.hpp>

using namespace berth;

namespace {

model::TokenScope Parse(std::string_view text) {
  Result<json::Doc> doc = json::Doc::Parse(text);
  REQUIRE(doc);
  Result<model::TokenScope> s = model::ParseTokenScope(doc->view());
  REQUIRE(s);
  return s.value();
}

}  // namespace

TEST_CASE("scope: clusters and repository patterns, push or pull", "[model][scope]") {
  model::TokenScope none = Parse("{}");
  CHECK(!none.limited());
  CHECK(none.AllowsCluster("anything"));
  CHECK(none.AllowsRepo("any/repo", true));

  model::TokenScope s = Parse(R"({"clusters":["prod","prod","dev"],"repositories":["team/*","base/*:pull","x:push"]})");
  CHECK(s.limited());
  CHECK(s.clusters == std::vector<std::string>{"prod", "dev"});
  CHECK(s.AllowsCluster("prod"));
  CHECK(!s.AllowsCluster("staging"));
  CHECK(s.AllowsRepo("team/app", true));
  CHECK(s.AllowsRepo("base/debian", false));
  CHECK(!s.AllowsRepo("base/debian", true));
  CHECK(s.AllowsRepo("x", true));
  CHECK(!s.AllowsRepo("other/app", false));
  CHECK(s.Describe() == "clusters prod, dev; repositories team/*, base/*:pull, x");
  CHECK(s.ToJson().Print() == R"({"clusters":["prod","dev"],"repositories":["team/*","base/*:pull","x"]})");
  CHECK(Parse(s.ToJson().Print()) == s);
}

TEST_CASE("scope: what is refused, naming the field", "[model][scope]") {
  struct Case {
    const char* body;
    const char* error;
  } cases[] = {
      {R"({"clusters":"prod"})", "clusters: must be an array of cluster names"},
      {R"({"clusters":["bad name"]})", "clusters[0]: must be 1-255 characters"},
      {R"({"repositories":[1]})", "repositories[0]: must be a pattern"},
      {R"({"repositories":["Team/*"]})", "repositories[0]: must be a repository name or pattern"},
      {R"({"repositories":[":pull"]})", "repositories[0]: must be a repository name or pattern"},
  };
  for (const Case& c : cases) {
    INFO(c.body);
    Result<json::Doc> doc = json::Doc::Parse(c.body);
    REQUIRE(doc);
    Result<model::TokenScope> s = model::ParseTokenScope(doc->view());
    REQUIRE(!s);
    CHECK(s.error().message.find(c.error) == 0);
  }
}
