#include "aws/sigv4.h"

#include <mbedtls/md.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "base/clock.h"
#include "base/crypto.h"
#include "net/http.h"

namespace berth::aws {

namespace {

Error Incomplete(std::string message) {
  return Error{ErrorKind::kInvalid, "IncompleteSignatureException", std::move(message)};
}

std::string Hmac(std::string_view key, std::string_view data) {
  unsigned char out[32];
  mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), reinterpret_cast<const unsigned char*>(key.data()),
                  key.size(), reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// RFC 3986 percent-encoding of everything but the unreserved characters (and
// '/' when `keep_slash`), as SigV4 asks.
std::string UriEncode(std::string_view s, bool keep_slash) {
  if (!keep_slash) return net::http::UrlEncode(s);
  std::string out;
  for (size_t start = 0;;) {
    size_t slash = s.find('/', start);
    out +=
        net::http::UrlEncode(s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return out;
    out += '/';
    start = slash + 1;
  }
}

// A malformed escape is kept as sent (the signer saw those bytes).
std::string UriDecode(std::string_view s) {
  std::string out;
  if (!net::http::UrlDecode(s, &out, true)) out = std::string(s);
  return out;
}

// Sorted by name, then value, each encoded; "a=1&b=2".
std::string CanonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string name = UriDecode(part.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : UriDecode(part.substr(eq + 1));
    pairs.emplace_back(UriEncode(name, false), UriEncode(value, false));
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [n, v] : pairs) {
    if (!out.empty()) out += '&';
    out += n + "=" + v;
  }
  return out;
}

std::string HeaderValue(const net::http::Request& req, std::string_view lower_name) {
  // Several headers of one name are joined with commas; inner runs of spaces collapse.
  std::string joined;
  bool first = true;
  for (const auto& [name, value] : req.headers) {
    if (name.size() != lower_name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; i++) {
      same = tolower(static_cast<unsigned char>(name[i])) == lower_name[i];
    }
    if (!same) continue;
    if (!first) joined += ',';
    first = false;
    std::string_view v = net::http::TrimOws(value);
    bool space = false;
    for (char c : v) {
      if (c == ' ' || c == '\t') {
        space = true;
        continue;
      }
      if (space) joined += ' ';
      space = false;
      joined += c;
    }
  }
  return joined;
}

std::string PayloadHash(const net::http::Request& req) {
  std::string_view sent = req.Header("x-amz-content-sha256");
  if (!sent.empty()) return std::string(sent);
  return crypto::Hex(crypto::Sha256(req.body));
}

}  // namespace

Result<Authorization> ParseAuthorization(std::string_view header) {
  constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
  if (header.empty()) {
    return Error{ErrorKind::kUnauthorized, "MissingAuthenticationTokenException",
                 "missing Authorization header: sign the request with AWS Signature Version 4 (an access key from "
                 "`berth accesskey create`)"};
  }
  if (!header.starts_with(kAlgorithm) || header.size() == kAlgorithm.size() || header[kAlgorithm.size()] != ' ') {
    return Incomplete("Authorization header must start with 'AWS4-HMAC-SHA256 ' (Signature Version 4), not '" +
                      std::string(header.substr(0, std::min<size_t>(header.size(), 20))) + "'");
  }
  Authorization a;
  std::string_view rest = header.substr(kAlgorithm.size() + 1);
  std::string credential, signed_headers;
  bool have_signature = false;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view part = net::http::TrimOws(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return Incomplete("Authorization header: '" + std::string(part.substr(0, 40)) + "' is not name=value");
    }
    std::string_view name = part.substr(0, eq), value = part.substr(eq + 1);
    if (name == "Credential") {
      credential = value;
    } else if (name == "SignedHeaders") {
      signed_headers = value;
    } else if (name == "Signature") {
      a.signature = value;
      have_signature = true;
    } else {
      return Incomplete("Authorization header: unknown part '" + std::string(name.substr(0, 40)) + "'");
    }
  }
  if (credential.empty()) return Incomplete("Authorization header requires a 'Credential' parameter");
  if (signed_headers.empty()) return Incomplete("Authorization header requires a 'SignedHeaders' parameter");
  if (!have_signature) return Incomplete("Authorization header requires a 'Signature' parameter");
  // AKID/YYYYMMDD/region/service/aws4_request
  std::vector<std::string> parts;
  std::string_view c = credential;
  while (true) {
    size_t slash = c.find('/');
    parts.emplace_back(c.substr(0, slash));
    if (slash == std::string_view::npos) break;
    c = c.substr(slash + 1);
  }
  if (parts.size() != 5 || parts[4] != "aws4_request") {
    return Incomplete("Credential must be '<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request', not '" +
                      credential.substr(0, 120) + "'");
  }
  for (size_t i = 0; i < 4; i++) {
    if (parts[i].empty() || parts[i].size() > 128) {
      return Incomplete("Credential: part " + std::to_string(i + 1) + " of '" + credential.substr(0, 120) +
                        "' must be 1-128 characters");
    }
  }
  if (parts[1].size() != 8 ||
      !std::all_of(parts[1].begin(), parts[1].end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return Incomplete("Credential: the date must be YYYYMMDD, not '" + parts[1] + "'");
  }
  a.access_key_id = parts[0];
  a.date = parts[1];
  a.region = parts[2];
  a.service = parts[3];
  std::string_view sh = signed_headers;
  while (true) {
    size_t semi = sh.find(';');
    std::string h(sh.substr(0, semi));
    if (h.empty() || h.size() > 128) return Incomplete("SignedHeaders: an empty or over-long header name");
    for (char ch : h) {
      if (ch >= 'A' && ch <= 'Z') return Incomplete("SignedHeaders: header names must be lower case ('" + h + "')");
    }
    a.signed_headers.push_back(std::move(h));
    if (a.signed_headers.size() > 64) return Incomplete("SignedHeaders: more than 64 headers");
    if (semi == std::string_view::npos) break;
    sh = sh.substr(semi + 1);
  }
  if (a.signature.size() != 64 || !IsLowerHex(a.signature)) {
    return Incomplete("Signature must be 64 lower-case hex digits");
  }
  return a;
}

std::optional<int64_t> ParseAmzDate(std::string_view text) {
  // 20261206T230000Z is the basic form of 2026-12-06T23:00:00Z.
  if (text.size() != 16) return std::nullopt;
  std::string extended;
  extended.reserve(20);
  extended.append(text.substr(0, 4)).append("-").append(text.substr(4, 2)).append("-").append(text.substr(6, 3));
  extended.append(text.substr(9, 2)).append(":").append(text.substr(11, 2)).append(":").append(text.substr(13, 3));
  return ParseUtcIso8601(extended);
}

std::string CanonicalRequest(const net::http::Request& req, const Authorization& auth, std::string_view payload_hash) {
  std::string out = req.method + "\n";
  // The path as sent is already encoded once; SigV4 (for every service but S3)
  // encodes it again.
  out += (req.path.empty() ? std::string("/") : UriEncode(req.path, true)) + "\n";
  out += CanonicalQuery(req.query) + "\n";
  std::vector<std::string> names = auth.signed_headers;
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) out += n + ":" + HeaderValue(req, n) + "\n";
  out += "\n";
  for (size_t i = 0; i < names.size(); i++) out += (i ? ";" : "") + names[i];
  out += "\n";
  out += payload_hash;
  return out;
}

std::string StringToSign(std::string_view amz_date, const Authorization& auth, std::string_view canonical_request) {
  return "AWS4-HMAC-SHA256\n" + std::string(amz_date) + "\n" + auth.Scope() + "\n" +
         crypto::Hex(crypto::Sha256(canonical_request));
}

std::string Sign(std::string_view secret, const Authorization& auth, std::string_view string_to_sign) {
  std::string key = Hmac("AWS4" + std::string(secret), auth.date);
  key = Hmac(key, auth.region);
  key = Hmac(key, auth.service);
  key = Hmac(key, "aws4_request");
  std::string sig = Hmac(key, string_to_sign);
  return crypto::Hex(reinterpret_cast<const uint8_t*>(sig.data()), sig.size());
}

Status CheckRequest(const net::http::Request& req, const Authorization& auth, int64_t now_ms) {
  auto is_signed = [&](std::string_view h) {
    return std::find(auth.signed_headers.begin(), auth.signed_headers.end(), h) != auth.signed_headers.end();
  };
  std::string_view amz_date = req.Header("x-amz-date");
  if (amz_date.empty()) {
    return Incomplete("the request must carry an X-Amz-Date header (YYYYMMDDTHHMMSSZ), and sign it");
  }
  for (std::string_view h : {std::string_view("host"), std::string_view("x-amz-date")}) {
    if (!is_signed(h)) return Incomplete("SignedHeaders must include " + std::string(h));
  }
  if (!req.Header("x-amz-target").empty() && !is_signed("x-amz-target")) {
    return Incomplete("SignedHeaders must include x-amz-target: the operation has to be signed");
  }
  for (const std::string& h : auth.signed_headers) {
    if (HeaderValue(req, h).empty() && req.Header(h).data() == nullptr) {
      return Incomplete("SignedHeaders names " + h + ", which the request does not carry");
    }
  }
  std::optional<int64_t> when = ParseAmzDate(amz_date);
  if (!when) {
    return Incomplete("X-Amz-Date must be YYYYMMDDTHHMMSSZ, not '" +
                      std::string(amz_date.substr(0, std::min<size_t>(amz_date.size(), 40))) + "'");
  }
  if (amz_date.substr(0, 8) != auth.date) {
    return Error{ErrorKind::kUnauthorized, "InvalidSignatureException",
                 "Credential should be scoped to a valid date: the scope's " + auth.date + " is not X-Amz-Date's " +
                     std::string(amz_date.substr(0, 8))};
  }
  if (*when < now_ms - kMaxClockSkewMs || *when > now_ms + kMaxClockSkewMs) {
    time_t now_s = static_cast<time_t>(now_ms / 1000);
    tm v{};
    gmtime_r(&now_s, &v);
    char now_text[20];
    strftime(now_text, sizeof now_text, "%Y%m%dT%H%M%SZ", &v);
    return Error{ErrorKind::kUnauthorized, "InvalidSignatureException",
                 "Signature expired: " + std::string(amz_date) + " is more than 15 minutes from the server's time " +
                     now_text + " (check the client's clock)"};
  }
  std::string_view sent_hash = req.Header("x-amz-content-sha256");
  if (!sent_hash.empty() && sent_hash != crypto::Hex(crypto::Sha256(req.body))) {
    return Error{ErrorKind::kInvalid, "XAmzContentSHA256Mismatch",
                 "X-Amz-Content-Sha256 does not match the SHA-256 of the body received"};
  }
  return {};
}

bool SignatureMatches(const net::http::Request& req, const Authorization& auth, std::string_view secret) {
  std::string canonical = CanonicalRequest(req, auth, PayloadHash(req));
  std::string expected = Sign(secret, auth, StringToSign(req.Header("x-amz-date"), auth, canonical));
  return crypto::ConstantTimeEqual(expected, auth.signature);
}

}  // namespace berth::aws
