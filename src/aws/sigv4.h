// AWS Signature Version 4 (the "AWS4-HMAC-SHA256" Authorization header), as the
// aws CLI and every AWS SDK sign requests: parsing the header, the canonical
// request and the string to sign, and verifying a signature against a secret.
// Pure: no I/O, no clock (the caller passes the time).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/http.h"

namespace berth::aws {

// How far X-Amz-Date may be from the server's clock, either way (AWS's bound).
inline constexpr int64_t kMaxClockSkewMs = 15 * 60 * 1000;

// "AWS4-HMAC-SHA256 Credential=AKID/20261206/us-east-1/ecs/aws4_request,
//  SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=<64 hex>"
struct Authorization {
  std::string access_key_id;
  std::string date;                         // YYYYMMDD, the scope's day
  std::string region;                       // any name: echoed in ARNs
  std::string service;                      // "ecs", "ecr"
  std::vector<std::string> signed_headers;  // lower case, in the order sent (sorted when valid)
  std::string signature;                    // 64 lower-case hex digits
  std::string Scope() const { return date + "/" + region + "/" + service + "/aws4_request"; }
};

// Reads the header; an error (code IncompleteSignatureException) names what is
// missing or malformed.
Result<Authorization> ParseAuthorization(std::string_view header);

// "YYYYMMDDTHHMMSSZ" (X-Amz-Date) as Unix milliseconds; nullopt for anything else.
std::optional<int64_t> ParseAmzDate(std::string_view text);

// The canonical request of `req` as signed with `auth`'s headers, the payload's
// hex SHA-256 given (the body's, or what X-Amz-Content-Sha256 says).
std::string CanonicalRequest(const net::http::Request& req, const Authorization& auth, std::string_view payload_hash);
std::string StringToSign(std::string_view amz_date, const Authorization& auth, std::string_view canonical_request);
// The hex HMAC-SHA256 signature of `string_to_sign` under the key derived from
// `secret` for the scope of `auth`.
std::string Sign(std::string_view secret, const Authorization& auth, std::string_view string_to_sign);

// Checks everything about the request's signature but the key's secret: the
// X-Amz-Date header is present, signed, within kMaxClockSkewMs of `now_ms` and
// on the scope's day; host, x-amz-date and (when sent) x-amz-target are signed;
// the payload hash header, if any, matches the body. Errors carry AWS's codes.
Status CheckRequest(const net::http::Request& req, const Authorization& auth, int64_t now_ms);

// Whether the signature of `req` is `secret`'s (after CheckRequest passed).
// Compared in constant time.
bool SignatureMatches(const net::http::Request& req, const Authorization& auth, std::string_view secret);

}  // namespace berth::aws
