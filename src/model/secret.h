// Secrets: named values kept sealed with AES-256-GCM under a key that lives apart
// from state.db (docs/security.md, "Secrets"). The state and the command log hold
// only the sealed form; the server opens a value only to put it in the desired
// line of the node that runs a task needing it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace berth::model {

inline constexpr size_t kMaxSecretBytes = 64 * 1024;

struct Secret {
  std::string name;
  int64_t version = 1;                // 1 at creation, one more at each rotation
  std::string sealed;                 // nonce, ciphertext and tag (crypto::Seal), bound to the name
  std::string key_id;                 // SecretBox::id of the key that sealed it
  std::vector<std::string> clusters;  // the clusters whose tasks may take it; empty: every cluster
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// 1-512 characters of letters, digits and / _ + = . @ - (as AWS Secrets Manager).
Status ValidateSecretName(std::string_view name, std::string_view field = "name");
std::string SecretArn(std::string_view name);
// What a task definition's `valueFrom` names: a secret's name, its ARN
// ("arn:...:secret:NAME"), or an SSM parameter ARN ("arn:...:parameter/NAME").
Result<std::string> SecretNameFromRef(std::string_view value_from, std::string_view field);

// The secret as the API shows it: never the value, sealed or not.
json::Doc SecretJson(const Secret& s);

// One `secrets` entry of a container definition (already validated).
struct SecretRef {
  std::string container;
  std::string name;    // the environment variable, or the file's name under /run/secrets
  std::string secret;  // the secret's name
  bool file = false;   // berthTarget "file": a file on a tmpfs, not the environment
};
std::vector<SecretRef> SecretRefs(json::View td);

// The key secrets are sealed with: 32 bytes, and an id (16 hex digits of its
// SHA-256) that each sealed value records, so a wrong key file is named as such.
class SecretBox {
 public:
  // `key`: 32 raw bytes, 64 hex digits or 44 base64 characters (a trailing newline is ignored).
  static Result<SecretBox> FromKeyText(std::string_view key, std::string_view where);
  const std::string& id() const { return id_; }
  // The key's 32 bytes (for a server joining the cluster).
  const std::string& key() const { return key_; }
  Result<Secret> Seal(std::string_view name, std::string_view value) const;
  Result<std::string> Open(const Secret& s) const;

 private:
  std::string key_;
  std::string id_;
};

}  // namespace berth::model
