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
