// Small cryptographic helpers over mbedTLS and the kernel's random source.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace berth::crypto {

// Fills `out` from getrandom(2); fails only if the kernel refuses.
Status RandomBytes(void* out, size_t len);

// A fresh secret token: `prefix` followed by 43 URL-safe base64 characters (256 bits).
Result<std::string> NewToken(std::string_view prefix);

// `len` characters drawn uniformly from `alphabet` (2-256 distinct characters)
// with getrandom(2), by rejection sampling (no modulo bias).
Result<std::string> RandomString(size_t len, std::string_view alphabet);

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
// HMAC-SHA256 (RFC 2104) of `data` under `key`.
Sha256Digest HmacSha256(std::string_view key, std::string_view data);
std::string Hex(const uint8_t* data, size_t len);
inline std::string Hex(const Sha256Digest& d) { return Hex(d.data(), d.size()); }

// Base64 (RFC 4648) with padding; `url` picks the URL-safe alphabet (- and _).
std::string Base64Encode(std::string_view data, bool url = false);
// Decodes standard base64 (with or without padding); an error names what was wrong.
Result<std::string> Base64Decode(std::string_view text);

// Tokens as berth prints them carry the SHA-256 fingerprint of the cluster CA, as
// k3s's do, so the one string an operator pastes is all a client needs to trust
// the server: "B10" + 64 hex digits + "::" + the secret. Only the secret is ever
// sent to the server.
std::string PinnedToken(std::string_view ca_fingerprint_hex, std::string_view secret);
struct TokenParts {
  std::string pin;  // lower-case hex; empty for a bare secret
  std::string secret;
};
// Splits a pinned token; anything else is a bare secret.
TokenParts SplitToken(std::string_view token);

// Equal iff a == b, in time that depends only on the lengths.
bool ConstantTimeEqual(std::string_view a, std::string_view b);

// Authenticated encryption with AES-256-GCM (mbedTLS) under a 32-byte key: the
// sealed form is a fresh 12-byte nonce, the ciphertext and the 16-byte tag.
// `aad` is bound to the ciphertext (authenticated, not stored): opening with
// another aad fails as a wrong key does.
inline constexpr size_t kSecretKeyBytes = 32;
Result<std::string> Seal(std::string_view key, std::string_view aad, std::string_view plaintext);
Result<std::string> Open(std::string_view key, std::string_view aad, std::string_view sealed);

// Incremental SHA-256, for hashing streamed bodies as they arrive.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(std::string_view data);
  Sha256Digest Finish();

 private:
  alignas(8) unsigned char ctx_[256];
};

}  // namespace berth::crypto
