// registry/auth: Basic and Bearer credentials, scoped registry tokens.
#include "registry/auth.h"

#include <mbedtls/base64.h>

#include <catch2/catch.hpp>

#include "base/crypto.h"
#include "net/http.h"
#include "support/state_store.h"

using namespace berth;
using namespace berth::registry;

namespace {

net::http::Request WithAuth(const std::string& value) {
  net::http::Request r;
  r.headers.push_back({"authorization", value});
  return r;
}

std::string Basic(const std::string& userpass) {
  unsigned char out[256];
  size_t n = 0;
  REQUIRE(mbedtls_base64_encode(out, sizeof out, &n, reinterpret_cast<const unsigned char*>(userpass.data()),
                                userpass.size()) == 0);
  return "Basic " + std::string(reinterpret_cast<char*>(out), n);
}

}  // namespace

TEST_CASE("registry auth: berth tokens over Basic and Bearer, roles decide", "[registry]") {
  testing::StateStore s;
  REQUIRE(s.Apply(testing::MakeCreateToken("ro", "read-only", crypto::Hex(crypto::Sha256("secret-ro")))).ok());
  REQUIRE(s.Apply(testing::MakeCreateToken("dep", "deploy", crypto::Hex(crypto::Sha256("secret-dep")))).ok());
  Auth auth(&s.state, 300000);
  Caller c;
  CHECK(auth.Identify(net::http::Request{}, 0, &c) == Auth::Outcome::kNone);
  CHECK(auth.Identify(WithAuth(Basic("anyone:secret-ro")), 0, &c) == Auth::Outcome::kValid);
  CHECK(c.role == "read-only");
  CHECK(auth.Allows(c, "app", "pull"));
  CHECK_FALSE(auth.Allows(c, "app", "push"));
  CHECK(auth.Identify(WithAuth("Bearer secret-dep"), 0, &c) == Auth::Outcome::kValid);
  CHECK(auth.Allows(c, "app", "push"));
  CHECK(auth.Identify(WithAuth(Basic("x:wrong")), 0, &c) == Auth::Outcome::kInvalid);
  CHECK(auth.Identify(WithAuth("Basic !!!"), 0, &c) == Auth::Outcome::kInvalid);
  CHECK(auth.Identify(WithAuth(Basic("no-colon")), 0, &c) == Auth::Outcome::kInvalid);
  CHECK(auth.Identify(WithAuth("Digest x"), 0, &c) == Auth::Outcome::kInvalid);
  CHECK(Auth::RoleAllows("agent", "pull"));
  CHECK_FALSE(Auth::RoleAllows("agent", "push"));
}

TEST_CASE("registry auth: registry tokens carry only the scopes the role allows, and expire", "[registry]") {
  testing::StateStore s;
  REQUIRE(s.Apply(testing::MakeCreateToken("ro", "read-only", crypto::Hex(crypto::Sha256("secret-ro")))).ok());
  Auth auth(&s.state, 1000);
  Caller ro;
  REQUIRE(auth.Identify(WithAuth(Basic("x:secret-ro")), 0, &ro) == Auth::Outcome::kValid);
  std::vector<std::string> granted;
  std::string token =
      auth.Issue(ro, {"repository:app:pull,push", "repository:other:delete", "bogus"}, 5000, nullptr, &granted);
  CHECK(granted == std::vector<std::string>{"repository:app:pull"});
  Caller c;
  REQUIRE(auth.Identify(WithAuth("Bearer " + token), 5500, &c) == Auth::Outcome::kValid);
  CHECK(c.scoped);
  CHECK(auth.Allows(c, "app", "pull"));
  CHECK_FALSE(auth.Allows(c, "app", "push"));
  CHECK_FALSE(auth.Allows(c, "other", "pull"));
  CHECK(auth.Identify(WithAuth("Bearer " + token), 6000, &c) == Auth::Outcome::kInvalid);  // expired
  std::string forged = token;
  forged.back() = forged.back() == '0' ? '1' : '0';
  CHECK(auth.Identify(WithAuth("Bearer " + forged), 5500, &c) == Auth::Outcome::kInvalid);
  Auth other_server(&s.state, 1000);  // another key: tokens do not travel
  CHECK(other_server.Identify(WithAuth("Bearer " + token), 5500, &c) == Auth::Outcome::kInvalid);

  // Anonymous callers get pull, and only where the repository allows it.
  Caller anon{"anonymous", "anonymous", {}, false};
  auto open_repo = [](std::string_view name) { return name == "public"; };
  auth.Issue(anon, {"repository:public:pull,push", "repository:private:pull"}, 5000, open_repo, &granted);
  CHECK(granted == std::vector<std::string>{"repository:public:pull"});
}

namespace {

// An access key as the API makes one, sealed with the test's opener in mind.
store::CommandPtr MakeAccessKey(std::string id, std::string role, std::string secret, int64_t expires_ms = 0,
                                std::string scope = "") {
  auto c = std::make_unique<model::CreateToken>();
  c->id = std::move(id);
  c->role = std::move(role);
  c->hash = crypto::Hex(crypto::Sha256(secret));
  c->sealed_secret = "sealed:" + secret;  // the test's opener takes it apart
  c->secret_key_id = "k";
  c->expires_ms = expires_ms;
  c->scope = std::move(scope);
  c->time_ms = 1;
  return c;
}

std::optional<std::string> TestOpener(const model::Token& key) {
  if (!key.sealed_secret.starts_with("sealed:")) return std::nullopt;
  return key.sealed_secret.substr(7);
}

}  // namespace

TEST_CASE("registry auth: ECR passwords from access keys verify, expire and fail when altered", "[registry]") {
  testing::StateStore s;
  std::string secret(40, 'S');
  REQUIRE(s.Apply(MakeAccessKey("BKIADEPLOY", "deploy", secret, 50000000)).ok());
  REQUIRE(s.Apply(MakeAccessKey("BKIAREAD", "read-only", "ro-secret")).ok());
  REQUIRE(s.Apply(testing::MakeCreateToken("tok", "deploy", crypto::Hex(crypto::Sha256("tok-secret")))).ok());
  Auth auth(&s.state, 300000);
  auth.SetAccessKeyOpener(TestOpener);
  Caller c;
  std::string why;
  const int64_t now = 1000000;
  const int64_t exp = now + 3600000;

  std::string password = Auth::EcrPassword("BKIADEPLOY", secret, exp);
  // The formula, as a client computes it.
  CHECK(password == "berthecr1.BKIADEPLOY." + std::to_string(exp) + "." +
                        crypto::Hex(crypto::HmacSha256(secret, "berthecr1.BKIADEPLOY." + std::to_string(exp))));
  REQUIRE(auth.Identify(WithAuth(Basic("AWS:" + password)), now, &c, &why) == Auth::Outcome::kValid);
  CHECK(c.subject == "BKIADEPLOY");
  CHECK(c.role == "deploy");
  CHECK_FALSE(c.scoped);
  CHECK(auth.Allows(c, "app", "push"));
  // Any user name.
  CHECK(auth.Identify(WithAuth(Basic("someone:" + password)), now, &c) == Auth::Outcome::kValid);
  // A read-only key's password pulls only.
  REQUIRE(auth.Identify(WithAuth(Basic("AWS:" + Auth::EcrPassword("BKIAREAD", "ro-secret", exp))), now, &c) ==
          Auth::Outcome::kValid);
  CHECK(c.role == "read-only");
  CHECK_FALSE(auth.Allows(c, "app", "push"));

  auto refused = [&](const std::string& pw, int64_t at) {
    why.clear();
    return auth.Identify(WithAuth(Basic("AWS:" + pw)), at, &c, &why) == Auth::Outcome::kInvalid;
  };
  SECTION("expired: the password, or the key") {
    CHECK(refused(password, exp));
    CHECK_THAT(why, Catch::Contains("expired"));
    std::string late = Auth::EcrPassword("BKIADEPLOY", secret, 50000000 + 1000);
    CHECK(refused(late, 50000000));
    CHECK_THAT(why, Catch::Contains("access key BKIADEPLOY expired"));
  }
  SECTION("no longer than 12 hours (and some skew) ahead") {
    CHECK_FALSE(refused(Auth::EcrPassword("BKIADEPLOY", secret, now + Auth::kEcrPasswordMaxLifetimeMs), now));
    CHECK(refused(Auth::EcrPassword("BKIADEPLOY", secret, now + Auth::kEcrPasswordMaxLifetimeMs + 1), now));
  }
  SECTION("any changed byte fails") {
    for (size_t i = 0; i < password.size(); i++) {
      std::string bad = password;
      bad[i] = bad[i] == '1' ? '2' : '1';
      CHECK(refused(bad, now));
    }
    CHECK(refused(password + "0", now));
    CHECK(refused(password.substr(0, password.size() - 1), now));
    // Another expiry under the same MAC, another key's id, the wrong secret.
    CHECK(refused("berthecr1.BKIADEPLOY." + std::to_string(exp + 1) + password.substr(password.rfind('.')), now));
    CHECK(refused(Auth::EcrPassword("BKIAREAD", secret, exp), now));
    CHECK(refused(Auth::EcrPassword("BKIADEPLOY", "wrong", exp), now));
    CHECK(refused("berthecr1.", now));
    CHECK(refused("berthecr1.BKIADEPLOY.-5." + std::string(64, '0'), now));
  }
  SECTION("a token's id is no access key; revoked keys and servers without an opener refuse") {
    CHECK(refused(Auth::EcrPassword("tok", "tok-secret", exp), now));
    CHECK_THAT(why, Catch::Contains("names no access key"));
    Auth no_opener(&s.state, 300000);
    CHECK(no_opener.Identify(WithAuth(Basic("AWS:" + password)), now, &c) == Auth::Outcome::kInvalid);
    auto rm = std::make_unique<model::DeleteToken>();
    rm->id = "BKIADEPLOY";
    REQUIRE(s.Apply(std::move(rm)).ok());
    CHECK(refused(password, now));
  }
}

TEST_CASE("registry auth: an access key's secret or id is no token, over Basic or Bearer", "[registry]") {
  testing::StateStore s;
  REQUIRE(s.Apply(MakeAccessKey("BKIAKEY", "admin", "key-secret")).ok());
  Auth auth(&s.state, 300000);
  auth.SetAccessKeyOpener(TestOpener);
  Caller c;
  for (const std::string& header : {Basic("AWS:key-secret"), std::string("Bearer key-secret"), Basic("AWS:BKIAKEY"),
                                    std::string("Bearer BKIAKEY")}) {
    std::string why;
    CHECK(auth.Identify(WithAuth(header), 0, &c, &why) == Auth::Outcome::kInvalid);
    CHECK(why == model::AccessKeyNotBearer("BKIAKEY"));
    CHECK_THAT(why, Catch::Contains("is an access key: it signs requests (AWS Signature Version 4) and is not a "
                                    "bearer token"));
  }
}
