// Fuzzes credentials: the API gate's reading of "Authorization: Bearer <token>"
// (api::BearerCredential) and the registry's (registry::Auth::Identify: Basic with
// a berth token as the password, Bearer with a berth token or a registry token),
// over a state holding a few berth tokens; registry tokens given as they come
// ("Bearer brt1." followed by the input); and registry tokens this harness issues
// (Auth::Issue, with a fixed key) for scopes taken from the input's lines, as
// admin, read-only, a deploy token limited to app/*, or anonymous; ECR passwords
// (Basic "AWS:berthecr1." followed by the input), and ECR passwords made with
// Auth::EcrPassword from an access key's secret for an expiry taken from the input.
//
// Invariants checked besides the sanitizers: a bearer credential is the header
// after its scheme, never empty; whoever Identify accepts holds a known role; a
// token the harness issued verifies, as its caller with the scopes granted, and
// allows exactly what was granted and nothing else asked; the same token with any
// one byte changed, cut short or lengthened does not verify; an ECR password made
// from the access key's secret verifies as that key, and changed, cut or
// lengthened does not; the access key's own secret is no token.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/api.h"
#include "base/crypto.h"
#include "base/metrics.h"
#include "fuzz_common.h"
#include "model/commands.h"
#include "model/state.h"
#include "net/http.h"
#include "registry/auth.h"
#include "store/store.h"

namespace {

using namespace berth;

constexpr int64_t kNow = 1700000000000;
constexpr char kKeySecret[] = "FuzzSecretFuzzSecretFuzzSecretFuzzSecret";

// The state the credentials are checked against: its tokens are applied through
// a store in a scratch directory, which goes once they are in memory.
const model::State& TheState() {
  static model::State* state = [] {
    auto* s = new model::State();
    char dir[] = "/tmp/berth-auth-fuzz-XXXXXX";
    if (!mkdtemp(dir)) fuzz::Fail("mkdtemp");
    std::string path = std::string(dir) + "/state.db";
    {
      metrics::Registry metrics;
      store::StoreOptions o;
      o.path = path;
      Result<std::unique_ptr<store::Store>> st = store::Store::Open(o, s, &metrics);
      if (!st) fuzz::Fail("opening the store", st.error().message);
      struct Tok {
        const char *id, *role, *secret, *scope;
      };
      for (const Tok& t : {Tok{"adm", "admin", "secret-admin", ""}, Tok{"ro", "read-only", "secret-ro", ""},
                           Tok{"agt", "agent", "secret-agent", ""},
                           Tok{"dep", "deploy", "secret-deploy", R"({"repositories":["app/*"]})"}}) {
        auto c = std::make_unique<model::CreateToken>();
        c->id = t.id;
        c->role = t.role;
        c->hash = crypto::Hex(crypto::Sha256(t.secret));
        c->scope = t.scope;
        c->time_ms = kNow;
        bool applied = false;
        (*st)->Submit(std::move(c), [&applied](Result<std::string> r) { applied = r.ok(); });
        (*st)->Flush();
        if (!applied) fuzz::Fail("creating a token", t.id);
      }
      // An access key, "sealed" as the harness's opener reads it back.
      auto key = std::make_unique<model::CreateToken>();
      key->id = "BKIAFUZZFUZZFUZZFUZZ";
      key->role = "deploy";
      key->hash = crypto::Hex(crypto::Sha256(kKeySecret));
      key->sealed_secret = std::string("sealed:") + kKeySecret;
      key->secret_key_id = "fuzz";
      key->time_ms = kNow;
      bool applied = false;
      (*st)->Submit(std::move(key), [&applied](Result<std::string> r) { applied = r.ok(); });
      (*st)->Flush();
      if (!applied) fuzz::Fail("creating an access key");
    }
    for (const char* f : {"", "-wal", "-shm"}) unlink((path + f).c_str());
    rmdir(dir);
    return s;
  }();
  return *state;
}

const registry::Auth& TheAuth() {
  static const registry::Auth auth = [] {
    registry::Auth a(&TheState(), 300000, std::string(32, 'k'));
    a.SetAccessKeyOpener([](const model::Token& key) -> std::optional<std::string> {
      if (!key.sealed_secret.starts_with("sealed:")) return std::nullopt;
      return key.sealed_secret.substr(7);
    });
    return a;
  }();
  return auth;
}

std::string Basic(std::string_view userpass) { return "Basic " + crypto::Base64Encode(userpass); }

registry::Auth::Outcome Identify(std::string value, registry::Caller* caller) {
  net::http::Request req;
  req.headers.push_back({"authorization", std::move(value)});
  return TheAuth().Identify(req, kNow, caller);
}

void CheckIdentify(std::string value) {
  registry::Caller c;
  if (Identify(std::move(value), &c) != registry::Auth::Outcome::kValid) return;
  if (c.role != "admin" && c.role != "read-only" && c.role != "agent" && c.role != "deploy" && c.role != "anonymous") {
    fuzz::Fail("a caller with an unknown role", c.role);
  }
}

// What a granted scope list allows: (name, action) pairs; "" names the catalog.
std::set<std::pair<std::string, std::string>> Grants(const std::vector<std::string>& granted) {
  std::set<std::pair<std::string, std::string>> out;
  for (const std::string& g : granted) {
    size_t a = g.find(':'), b = g.rfind(':');
    if (a == std::string::npos || a == b) fuzz::Fail("a granted scope without three parts", g);
    std::string type = g.substr(0, a), name = g.substr(a + 1, b - a - 1), actions = g.substr(b + 1);
    if (type == "registry") {
      if (name != "catalog" || actions != "*") fuzz::Fail("an odd registry scope", g);
      out.insert({"", "catalog"});
      continue;
    }
    if (type != "repository") fuzz::Fail("a granted scope of an unknown type", g);
    for (size_t at = 0; at <= actions.size();) {
      size_t comma = actions.find(',', at);
      if (comma == std::string::npos) comma = actions.size();
      out.insert({name, actions.substr(at, comma - at)});
      at = comma + 1;
    }
  }
  return out;
}

void CheckIssued(const uint8_t* data, size_t size, uint64_t hash) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> requested;
  for (size_t at = 0; at < text.size() && requested.size() < 8;) {
    size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) nl = text.size();
    requested.emplace_back(text.substr(at, std::min<size_t>(nl - at, 256)));
    at = nl + 1;
  }
  registry::Caller issuer;
  switch (hash % 4) {
    case 0: issuer = {"adm", "admin", {}, false}; break;
    case 1: issuer = {"ro", "read-only", {}, false}; break;
    case 2: issuer = {"dep", "deploy", {}, false}; break;
    default: issuer = {"anonymous", "anonymous", {}, false}; break;
  }
  auto anonymous_pull = [](std::string_view name) { return name.starts_with("public"); };
  std::vector<std::string> granted;
  std::string token = TheAuth().Issue(issuer, requested, kNow, anonymous_pull, &granted);

  registry::Caller c;
  if (Identify("Bearer " + token, &c) != registry::Auth::Outcome::kValid) fuzz::Fail("an issued token refused", token);
  if (c.subject != issuer.subject || c.role != issuer.role || !c.scoped || c.scopes != granted) {
    fuzz::Fail("an issued token verified as someone else", token);
  }
  std::set<std::pair<std::string, std::string>> grants = Grants(granted);
  for (const auto& [name, action] : grants) {
    if (!TheAuth().Allows(c, name, action)) fuzz::Fail("a granted action refused", name + " " + action);
    if (issuer.role == "anonymous" && (action != "pull" || !anonymous_pull(name))) {
      fuzz::Fail("anonymous granted more than public pulls", name + " " + action);
    }
    if (issuer.subject == "dep" && !name.empty() && !name.starts_with("app/")) {
      fuzz::Fail("a limited token granted another repository", name);
    }
  }
  for (const std::string& r : requested) {
    // The name as Issue reads it: between the first and the second ':'.
    size_t a = r.find(':'), b = a == std::string::npos ? a : r.find(':', a + 1);
    std::string name = b == std::string::npos ? r : r.substr(a + 1, b - a - 1);
    for (const char* action : {"pull", "push", "delete"}) {
      if (TheAuth().Allows(c, name, action) && !grants.count({name, action}) && !grants.count({name, "*"})) {
        fuzz::Fail("a token allows what it was not granted", name + " " + action);
      }
    }
  }

  // Any one byte changed (where and to what, from the hash), cut short, lengthened.
  std::string bad = token;
  size_t at = (hash >> 8) % bad.size();
  bad[at] = static_cast<char>(bad[at] ^ (1 + ((hash >> 24) % 255)));
  if (Identify("Bearer " + bad, &c) == registry::Auth::Outcome::kValid) fuzz::Fail("a changed token verified", bad);
  bad = token.substr(0, (hash >> 40) % token.size());
  if (Identify("Bearer " + bad, &c) == registry::Auth::Outcome::kValid) fuzz::Fail("a cut token verified", bad);
  bad = token + static_cast<char>(hash >> 56);
  if (Identify("Bearer " + bad, &c) == registry::Auth::Outcome::kValid) fuzz::Fail("a longer token verified", bad);
}

void CheckEcrPassword(uint64_t hash) {
  int64_t expires = kNow + 1 + static_cast<int64_t>(hash % registry::Auth::kEcrPasswordMaxLifetimeMs);
  std::string password = registry::Auth::EcrPassword("BKIAFUZZFUZZFUZZFUZZ", kKeySecret, expires);
  registry::Caller c;
  if (Identify(Basic("AWS:" + password), &c) != registry::Auth::Outcome::kValid) {
    fuzz::Fail("an ECR password refused", password);
  }
  if (c.subject != "BKIAFUZZFUZZFUZZFUZZ" || c.role != "deploy" || c.scoped) {
    fuzz::Fail("an ECR password verified as someone else", password);
  }
  std::string bad = password;
  size_t at = (hash >> 8) % bad.size();
  bad[at] = static_cast<char>(bad[at] ^ (1 + ((hash >> 24) % 255)));
  if (Identify(Basic("AWS:" + bad), &c) == registry::Auth::Outcome::kValid) fuzz::Fail("a changed password", bad);
  bad = password.substr(0, (hash >> 40) % password.size());
  if (Identify(Basic("AWS:" + bad), &c) == registry::Auth::Outcome::kValid) fuzz::Fail("a cut password", bad);
  bad = password + static_cast<char>(hash >> 56);
  if (Identify(Basic("AWS:" + bad), &c) == registry::Auth::Outcome::kValid) fuzz::Fail("a longer password", bad);
  for (const std::string& header : {Basic(std::string("AWS:") + kKeySecret), std::string("Bearer ") + kKeySecret}) {
    if (Identify(header, &c) == registry::Auth::Outcome::kValid) fuzz::Fail("an access key's secret as a token");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::QuietLogs();
  (void)TheAuth();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);

  if (std::optional<std::string_view> secret = api::BearerCredential(text)) {
    if (secret->empty() || secret->data() != text.data() + 7 || secret->size() != text.size() - 7) {
      fuzz::Fail("a bearer credential that is not the rest of the header", text);
    }
    for (size_t i = 0; i < 7; i++) {
      if (tolower(static_cast<unsigned char>(text[i])) != "bearer "[i]) fuzz::Fail("another scheme as Bearer", text);
    }
  }

  CheckIdentify(text);
  CheckIdentify("Bearer brt1." + text);
  CheckIdentify(Basic("AWS:berthecr1." + text));
  CheckIssued(data, size, fuzz::Fnv1a(data, size));
  CheckEcrPassword(fuzz::Fnv1a(data, size));
  return 0;
}
