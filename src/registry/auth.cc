#include "registry/auth.h"

#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include <algorithm>
#include <cstdlib>

#include "base/crypto.h"
#include "model/state.h"
#include "net/http.h"

namespace berth::registry {

namespace {

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); i++) {
    if (tolower(static_cast<unsigned char>(s[i])) != tolower(static_cast<unsigned char>(prefix[i]))) return false;
  }
  return true;
}

bool Unhex(std::string_view hex, std::string* out) {
  if (hex.size() % 2) return false;
  out->clear();
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    int a = val(hex[i]), b = val(hex[i + 1]);
    if (a < 0 || b < 0) return false;
    out->push_back(static_cast<char>(a * 16 + b));
  }
  return true;
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t p = s.find(sep, start);
    if (p == std::string_view::npos) p = s.size();
    out.emplace_back(s.substr(start, p - start));
    start = p + 1;
  }
  return out;
}

}  // namespace

Auth::Auth(const model::State* state, int64_t token_ttl_ms) : state_(state), ttl_ms_(token_ttl_ms) {
  uint8_t raw[32];
  if (!crypto::RandomBytes(raw, sizeof raw)) abort();  // the kernel refusing randomness is fatal
  key_.assign(reinterpret_cast<const char*>(raw), sizeof raw);
}

Auth::Auth(const model::State* state, int64_t token_ttl_ms, std::string key)
    : state_(state), ttl_ms_(token_ttl_ms), key_(std::move(key)) {}

std::string Auth::Sign(std::string_view payload) const {
  unsigned char mac[32];
  mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), reinterpret_cast<const unsigned char*>(key_.data()),
                  key_.size(), reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac);
  return crypto::Hex(mac, sizeof mac);
}

bool Auth::RoleAllows(std::string_view role, std::string_view action) {
  if (role == "admin" || role == "deploy") return true;
  if (role == "read-only" || role == "agent") return action == "pull" || action == "catalog";
  if (role == "anonymous") return action == "pull";  // only where the repository allows it
  return false;
}

bool Auth::TokenLimitsAllow(const Caller& caller, std::string_view repo, std::string_view action) const {
  if (action == "catalog") return true;
  const model::Token* t = state_->FindToken(caller.subject);
  return !t || t->scope.AllowsRepo(repo, action != "pull");
}

bool Auth::Allows(const Caller& caller, std::string_view repo, std::string_view action) const {
  if (!RoleAllows(caller.role, action)) return false;
  // The berth token behind the caller (directly, or as a registry token's
  // subject) may be limited to some repositories.
  if (!TokenLimitsAllow(caller, repo, action)) return false;
  if (!caller.scoped) return true;
  for (const std::string& s : caller.scopes) {
    std::vector<std::string> parts = Split(s, ':');
    if (parts.size() != 3) continue;
    if (action == "catalog") {
      if (parts[0] == "registry" && parts[1] == "catalog") return true;
      continue;
    }
    if (parts[0] != "repository" || parts[1] != repo) continue;
    for (const std::string& a : Split(parts[2], ',')) {
      if (a == action || a == "*") return true;
    }
  }
  return false;
}

std::string Auth::EcrPassword(std::string_view key_id, std::string_view secret, int64_t expires_ms) {
  std::string payload = "berthecr1." + std::string(key_id) + "." + std::to_string(expires_ms);
  return payload + "." + crypto::Hex(crypto::HmacSha256(secret, payload));
}

Auth::Outcome Auth::VerifyEcrPassword(std::string_view password, int64_t now_ms, Caller* caller,
                                      std::string* why) const {
  auto refuse = [why](std::string message) {
    if (why) *why = std::move(message);
    return Outcome::kInvalid;
  };
  // berthecr1.<key id>.<expires ms>.<64 hex>
  std::vector<std::string> parts = Split(password, '.');
  if (parts.size() != 4 || parts[1].empty() || parts[1].size() > 128 || parts[2].empty() || parts[2].size() > 18 ||
      parts[3].size() != 64) {
    return refuse("the ECR password is malformed");
  }
  char* end = nullptr;
  long long expires = strtoll(parts[2].c_str(), &end, 10);
  if (*end || parts[2][0] == '-' || parts[2][0] == '+') return refuse("the ECR password is malformed");
  const model::Token* key = state_->FindToken(parts[1]);
  if (!key || !key->access_key()) return refuse("the ECR password names no access key");
  if (key->expires_ms && key->expires_ms <= now_ms) return refuse("access key " + key->id + " expired");
  if (expires <= now_ms) return refuse("the ECR password expired; get a new one (aws ecr get-login-password)");
  if (expires - now_ms > kEcrPasswordMaxLifetimeMs) {
    return refuse("the ECR password claims to live longer than 12 hours");
  }
  if (!open_access_key_) return refuse("this server does not take ECR passwords");
  std::optional<std::string> secret = open_access_key_(*key);
  if (!secret) return refuse("the secret of access key " + key->id + " does not open on this server");
  std::string expected = EcrPassword(key->id, *secret, expires);
  std::fill(secret->begin(), secret->end(), '\0');
  if (!crypto::ConstantTimeEqual(expected, password)) return refuse("the ECR password is not valid");
  caller->subject = key->id;
  caller->role = key->role;
  caller->scopes.clear();
  caller->scoped = false;
  return Outcome::kValid;
}

Auth::Outcome Auth::Identify(const net::http::Request& req, int64_t now_ms, Caller* caller, std::string* why) const {
  std::string_view auth = req.Header("authorization");
  if (auth.empty()) return Outcome::kNone;
  std::string secret;
  if (StartsWithNoCase(auth, "Basic ")) {
    std::string_view b64 = auth.substr(6);
    while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
    unsigned char buf[1024];
    size_t n = 0;
    if (b64.size() > 1300 ||
        mbedtls_base64_decode(buf, sizeof buf, &n, reinterpret_cast<const unsigned char*>(b64.data()), b64.size()) !=
            0) {
      return Outcome::kInvalid;
    }
    std::string_view userpass(reinterpret_cast<const char*>(buf), n);
    size_t colon = userpass.find(':');
    if (colon == std::string_view::npos) return Outcome::kInvalid;
    secret = std::string(userpass.substr(colon + 1));
    if (secret.starts_with("berthecr1.")) return VerifyEcrPassword(secret, now_ms, caller, why);
  } else if (StartsWithNoCase(auth, "Bearer ")) {
    std::string_view token = auth.substr(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    if (token.starts_with("brt1."))
      return VerifyRegistryToken(token, now_ms, caller) ? Outcome::kValid : Outcome::kInvalid;
    secret = std::string(token);
  } else {
    return Outcome::kInvalid;
  }
  const model::Token* t = state_->FindTokenBySecret(secret);
  if (!t) {
    // An access key's id where its secret or a token belongs: say what it is.
    if (const model::Token* key = state_->FindToken(secret); key && key->access_key()) {
      if (why) *why = model::AccessKeyNotBearer(key->id);
    }
    return Outcome::kInvalid;
  }
  if (t->access_key()) {
    if (why) *why = model::AccessKeyNotBearer(t->id);
    return Outcome::kInvalid;
  }
  if (t->expires_ms && t->expires_ms <= now_ms) return Outcome::kInvalid;
  caller->subject = t->id;
  caller->role = t->role;
  caller->scopes.clear();
  caller->scoped = false;
  return Outcome::kValid;
}

std::string Auth::Issue(const Caller& caller, const std::vector<std::string>& requested, int64_t now_ms,
                        const std::function<bool(std::string_view)>& anonymous_pull,
                        std::vector<std::string>* granted) const {
  granted->clear();
  for (const std::string& s : requested) {
    // type:name:actions; a name holds no ':', but the grammar allows "name:tag".
    std::vector<std::string> parts = Split(s, ':');
    if (parts.size() < 3) continue;
    const std::string& type = parts[0];
    const std::string& name = parts[1];
    // The token's own separators: such a name names no repository, and in the
    // payload it would break the token (or split its scope in two).
    if (name.find_first_of("|;") != std::string::npos) continue;
    std::string allowed;
    if (type == "registry" && name == "catalog") {
      if (RoleAllows(caller.role, "catalog")) allowed = "*";
    } else if (type == "repository") {
      for (const std::string& a : Split(parts.back(), ',')) {
        std::vector<std::string> actions =
            a == "*" ? std::vector<std::string>{"pull", "push", "delete"} : std::vector<std::string>{a};
        for (const std::string& action : actions) {
          if (action != "pull" && action != "push" && action != "delete") continue;
          if (!RoleAllows(caller.role, action) || allowed.find(action) != std::string::npos) continue;
          if (!TokenLimitsAllow(caller, name, action)) continue;
          if (caller.role == "anonymous" && !(anonymous_pull && anonymous_pull(name))) continue;
          if (!allowed.empty()) allowed += ",";
          allowed += action;
        }
      }
    }
    if (!allowed.empty()) granted->push_back(type + ":" + name + ":" + allowed);
  }
  std::string scopes;
  for (const std::string& g : *granted) {
    if (!scopes.empty()) scopes += ";";
    scopes += g;
  }
  std::string payload = std::to_string(now_ms + ttl_ms_) + "|" + caller.subject + "|" + caller.role + "|" + scopes;
  return "brt1." + crypto::Hex(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()) + "." + Sign(payload);
}

bool Auth::VerifyRegistryToken(std::string_view token, int64_t now_ms, Caller* caller) const {
  token.remove_prefix(5);
  size_t dot = token.find('.');
  if (dot == std::string_view::npos || token.size() > 16384) return false;
  std::string payload;
  if (!Unhex(token.substr(0, dot), &payload)) return false;
  if (!crypto::ConstantTimeEqual(Sign(payload), token.substr(dot + 1))) return false;
  std::vector<std::string> parts = Split(payload, '|');
  if (parts.size() != 4) return false;
  char* end = nullptr;
  long long exp = strtoll(parts[0].c_str(), &end, 10);
  if (*end || exp <= now_ms) return false;
  // A registry token lives only as long as what it was issued to: a revoked or
  // expired API token, or a node removed, ends its sessions at once.
  const std::string& subject = parts[1];
  if (subject.starts_with("node:")) {
    if (!state_->FindNode(std::string_view(subject).substr(5))) return false;
  } else if (parts[2] != "anonymous") {
    const model::Token* t = state_->FindToken(subject);
    if (!t || (t->expires_ms && t->expires_ms <= now_ms)) return false;
  }
  caller->subject = subject;
  caller->role = parts[2];
  caller->scopes = parts[3].empty() ? std::vector<std::string>{} : Split(parts[3], ';');
  caller->scoped = true;
  return true;
}

}  // namespace berth::registry
