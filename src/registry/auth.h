// Who may pull and push on /v2/. Callers present either HTTP Basic (any user
// name; the password is a berth API token, or an ECR login password made from an
// access key, EcrPassword) or a Bearer token: a berth API token, or a
// short-lived registry token this server signed at /v2/token (Docker's token
// flow) for the scopes asked for and allowed. An access key's own id or secret
// is refused: it only signs requests. Roles: admin and deploy pull, push
// and delete; read-only and agent pull. A caller without credentials has the
// role "anonymous": it may pull repositories that allow anonymous pulls.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::model {
class State;
struct Token;
}  // namespace berth::model
namespace berth::net::http {
struct Request;
}

namespace berth::registry {

struct Caller {
  std::string subject;  // the berth token's id
  std::string role;
  // For registry tokens: "repository:NAME:ACTIONS" entries granted; empty for
  // callers that presented a berth token (their role decides everything).
  std::vector<std::string> scopes;
  bool scoped = false;
};

class Auth {
 public:
  Auth(const model::State* state, int64_t token_ttl_ms);
  // With `key` as the HMAC-SHA256 key instead of a fresh random one (tests and the
  // fuzz harness, whose registry tokens must verify from one run to the next).
  Auth(const model::State* state, int64_t token_ttl_ms, std::string key);

  enum class Outcome { kNone, kValid, kInvalid };
  // Reads the Authorization header: kNone when absent, kInvalid when present but
  // wrong (bad encoding, unknown token, expired or forged registry token, an
  // access key presented as a token, a wrong or stale ECR password). For
  // kInvalid, `why` (when given) receives a message for the 401 (or is left
  // empty when there is nothing more to say than "not valid").
  Outcome Identify(const net::http::Request& req, int64_t now_ms, Caller* caller, std::string* why = nullptr) const;

  // An ECR login password for access key `key_id` (what `aws ecr
  // get-login-password` prints, for `docker login --username AWS`), valid until
  // `expires_ms` (unix ms) on every server of the cluster, and no longer than the
  // key itself: "berthecr1.<key_id>.<expires_ms>.<hex HMAC-SHA256(secret,
  // "berthecr1.<key_id>.<expires_ms>")>". Stateless: Identify verifies it with
  // the key's secret. Identify refuses one whose expires_ms lies more than
  // kEcrPasswordMaxLifetimeMs ahead.
  static std::string EcrPassword(std::string_view key_id, std::string_view secret, int64_t expires_ms);
  static constexpr int64_t kEcrPasswordMaxLifetimeMs = (12 * 60 + 15) * 60 * 1000;  // ECR's 12 h, and clock skew
  // How Identify opens an access key's secret (api::AccessKeySecret's work: the
  // SecretBox); nullopt when it will not open. Without one, ECR passwords are refused.
  void SetAccessKeyOpener(std::function<std::optional<std::string>(const model::Token&)> opener) {
    open_access_key_ = std::move(opener);
  }
  // Whether `caller` may do `action` ("pull", "push" or "delete") on `repo`;
  // `repo` empty with action "catalog" for the catalog.
  static bool RoleAllows(std::string_view role, std::string_view action);
  bool Allows(const Caller& caller, std::string_view repo, std::string_view action) const;

  // A registry token for `caller` covering the parts of `requested` scopes its
  // role allows (for "anonymous": pull, where `anonymous_pull(name)` says so);
  // `granted` receives them. Valid for token_ttl_ms from `now_ms`.
  std::string Issue(const Caller& caller, const std::vector<std::string>& requested, int64_t now_ms,
                    const std::function<bool(std::string_view)>& anonymous_pull,
                    std::vector<std::string>* granted) const;
  int64_t token_ttl_ms() const { return ttl_ms_; }

 private:
  bool VerifyRegistryToken(std::string_view token, int64_t now_ms, Caller* caller) const;
  Outcome VerifyEcrPassword(std::string_view password, int64_t now_ms, Caller* caller, std::string* why) const;
  // The limits of the berth token `caller` stands for (model/scope.h).
  bool TokenLimitsAllow(const Caller& caller, std::string_view repo, std::string_view action) const;
  std::string Sign(std::string_view payload) const;

  const model::State* state_;
  int64_t ttl_ms_;
  std::string key_;  // HMAC-SHA256 key, fresh at every start: tokens die with the process
  std::function<std::optional<std::string>(const model::Token&)> open_access_key_;
};

}  // namespace berth::registry
