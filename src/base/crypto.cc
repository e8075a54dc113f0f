#include "base/crypto.h"

#include <sys/random.h>

#include <mbedtls/base64.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/sha256.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <new>

namespace berth::crypto {

static_assert(sizeof(mbedtls_sha256_context) <= 256, "Sha256Stream::ctx_ too small");

Status RandomBytes(void* out, size_t len) {
  auto* p = static_cast<uint8_t*>(out);
  while (len > 0) {
    ssize_t n = getrandom(p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::Internal(std::string("getrandom: ") + strerror(errno));
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

namespace {

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

struct Gcm {
  mbedtls_gcm_context ctx;
  Gcm() { mbedtls_gcm_init(&ctx); }
  ~Gcm() { mbedtls_gcm_free(&ctx); }
  Gcm(const Gcm&) = delete;
  Gcm& operator=(const Gcm&) = delete;
};

const unsigned char* Bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

Result<std::string> Seal(std::string_view key, std::string_view aad, std::string_view plaintext) {
  if (key.size() != kSecretKeyBytes) return Error::Internal("AES-256-GCM needs a 32-byte key");
  Gcm gcm;
  if (mbedtls_gcm_setkey(&gcm.ctx, MBEDTLS_CIPHER_ID_AES, Bytes(key), 256) != 0) {
    return Error::Internal("mbedtls_gcm_setkey failed");
  }
  std::string out(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  if (Status s = RandomBytes(p, kNonceBytes); !s) return s.take_error();
  int rc =
      mbedtls_gcm_crypt_and_tag(&gcm.ctx, MBEDTLS_GCM_ENCRYPT, plaintext.size(), p, kNonceBytes, Bytes(aad), aad.size(),
                                Bytes(plaintext), p + kNonceBytes, kTagBytes, p + kNonceBytes + plaintext.size());
  if (rc != 0) return Error::Internal("AES-GCM encryption failed");
  return out;
}

Result<std::string> Open(std::string_view key, std::string_view aad, std::string_view sealed) {
  if (key.size() != kSecretKeyBytes) return Error::Internal("AES-256-GCM needs a 32-byte key");
  if (sealed.size() < kNonceBytes + kTagBytes) return Error::Invalid("sealed value too short");
  Gcm gcm;
  if (mbedtls_gcm_setkey(&gcm.ctx, MBEDTLS_CIPHER_ID_AES, Bytes(key), 256) != 0) {
    return Error::Internal("mbedtls_gcm_setkey failed");
  }
  size_t len = sealed.size() - kNonceBytes - kTagBytes;
  std::string out(len, '\0');
  const unsigned char* p = Bytes(sealed);
  int rc = mbedtls_gcm_auth_decrypt(&gcm.ctx, len, p, kNonceBytes, Bytes(aad), aad.size(), p + kNonceBytes + len,
                                    kTagBytes, p + kNonceBytes, reinterpret_cast<unsigned char*>(out.data()));
  if (rc != 0) return Error::Invalid("the value does not open with this key (wrong key, or altered)");
  return out;
}

std::string Base64Encode(std::string_view data, bool url) {
  const char* alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint32_t(uint8_t(data[i])) << 16) | (uint32_t(uint8_t(data[i + 1])) << 8) | uint8_t(data[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(v >> shift) & 63];
  }
  size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t(uint8_t(data[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(data[i + 1])) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  std::string padded(text);
  while (padded.size() % 4 != 0) padded += '=';
  std::string out((padded.size() / 4) * 3, '\0');
  size_t n = 0;
  if (mbedtls_base64_decode(reinterpret_cast<unsigned char*>(out.data()), out.size(), &n,
                            reinterpret_cast<const unsigned char*>(padded.data()), padded.size()) != 0) {
    return Error::Invalid("not valid base64");
  }
  out.resize(n);
  return out;
}

Result<std::string> NewToken(std::string_view prefix) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint8_t raw[32];
  if (Status s = RandomBytes(raw, sizeof raw); !s) return s.take_error();
  std::string out(prefix);
  // 256 bits as base64url without padding: 43 characters.
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

Result<std::string> RandomString(size_t len, std::string_view alphabet) {
  if (alphabet.size() < 2 || alphabet.size() > 256) return Error::Internal("RandomString: 2-256 characters");
  // Bytes at or above the largest multiple of the alphabet's size are drawn again.
  size_t limit = 256 - 256 % alphabet.size();
  std::string out;
  out.reserve(len);
  uint8_t raw[64];
  while (out.size() < len) {
    if (Status s = RandomBytes(raw, sizeof raw); !s) return s.take_error();
    for (uint8_t b : raw) {
      if (b < limit && out.size() < len) out.push_back(alphabet[b % alphabet.size()]);
    }
  }
  return out;
}

Sha256Digest HmacSha256(std::string_view key, std::string_view data) {
  Sha256Digest d{};
  mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), reinterpret_cast<const unsigned char*>(key.data()),
                  key.size(), reinterpret_cast<const unsigned char*>(data.data()), data.size(), d.data());
  return d;
}

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest d{};
  mbedtls_sha256_ret(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d.data(), 0);
  return d;
}

std::string Hex(const uint8_t* data, size_t len) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

std::string PinnedToken(std::string_view ca_fingerprint_hex, std::string_view secret) {
  std::string out = "B10";
  for (char c : ca_fingerprint_hex) out.push_back(static_cast<char>(tolower(static_cast<unsigned char>(c))));
  return out.append("::").append(secret);
}

TokenParts SplitToken(std::string_view token) {
  TokenParts out;
  if (token.size() > 3 + 64 + 2 && token.starts_with("B10") && token.substr(67, 2) == "::") {
    std::string_view hex = token.substr(3, 64);
    bool all_hex = true;
    for (char c : hex) all_hex = all_hex && isxdigit(static_cast<unsigned char>(c));
    if (all_hex) {
      for (char c : hex) out.pin.push_back(static_cast<char>(tolower(static_cast<unsigned char>(c))));
      out.secret = std::string(token.substr(69));
      return out;
    }
  }
  out.secret = std::string(token);
  return out;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); i++) diff = diff | static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

Sha256Stream::Sha256Stream() {
  auto* ctx = new (ctx_) mbedtls_sha256_context;
  mbedtls_sha256_init(ctx);
  mbedtls_sha256_starts_ret(ctx, 0);
}

Sha256Stream::~Sha256Stream() { mbedtls_sha256_free(reinterpret_cast<mbedtls_sha256_context*>(ctx_)); }

void Sha256Stream::Update(std::string_view data) {
  mbedtls_sha256_update_ret(reinterpret_cast<mbedtls_sha256_context*>(ctx_),
                            reinterpret_cast<const unsigned char*>(data.data()), data.size());
}

Sha256Digest Sha256Stream::Finish() {
  Sha256Digest d{};
  mbedtls_sha256_finish_ret(reinterpret_cast<mbedtls_sha256_context*>(ctx_), d.data());
  return d;
}

}  // namespace berth::crypto
