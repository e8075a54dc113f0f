#include "registry/names.h"

#include <vector>

#include "net/http.h"

namespace berth::registry {

namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsHexLower(char c) { return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9'); }

// One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool IsValidComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (IsLowerAlnum(c[i])) {
      i++;
      continue;
    }
    // A separator: '.', '_', '__' or '-'+, followed by an alphanumeric.
    size_t j = i;
    if (c[i] == '.') {
      j = i + 1;
    } else if (c[i] == '_') {
      j = i + 1;
      if (j < c.size() && c[j] == '_') j++;
    } else if (c[i] == '-') {
      while (j < c.size() && c[j] == '-') j++;
    } else {
      return false;
    }
    if (j >= c.size() || !IsLowerAlnum(c[j])) return false;
    i = j;
  }
  return true;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  size_t start = 0;
  for (;;) {
    size_t slash = name.find('/', start);
    std::string_view comp =
        name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!IsValidComponent(comp)) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool IsValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagLength) return false;
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (!word(tag[0])) return false;
  for (char c : tag.substr(1)) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

bool IsSha256Digest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.size() != kPrefix.size() + 64 || !digest.starts_with(kPrefix)) return false;
  for (char c : digest.substr(kPrefix.size())) {
    if (!IsHexLower(c)) return false;
  }
  return true;
}

bool LooksLikeDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= digest.size() || digest.size() > 256) return false;
  for (char c : digest.substr(0, colon)) {
    if (!IsLowerAlnum(c) && c != '+' && c != '.' && c != '_' && c != '-') return false;
  }
  for (char c : digest.substr(colon + 1)) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '=' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsValidUploadId(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!IsHexLower(c)) return false;
  }
  return true;
}

Result<ByteRange> ParseContentRange(std::string_view value) {
  std::string_view v = net::http::TrimOws(value);
  if (v.starts_with("bytes ")) v = net::http::TrimOws(v.substr(6));
  if (v.starts_with("bytes=")) v = v.substr(6);
  size_t slash = v.find('/');
  if (slash != std::string_view::npos) v = v.substr(0, slash);  // "a-b/total": total is not needed
  size_t dash = v.find('-');
  ByteRange r;
  if (dash == std::string_view::npos || !ParseU64(v.substr(0, dash), &r.first) ||
      !ParseU64(v.substr(dash + 1), &r.last)) {
    return Error::Invalid("Content-Range: expected FIRST-LAST (byte offsets), got '" +
                          std::string(value.substr(0, 64)) + "'");
  }
  if (r.last < r.first) {
    return Error::Invalid("Content-Range: the last byte " + std::to_string(r.last) + " is before the first " +
                          std::to_string(r.first));
  }
  return r;
}

Result<std::optional<ByteRange>> ParseRange(std::string_view value, uint64_t size) {
  std::string_view v = net::http::TrimOws(value);
  if (!v.starts_with("bytes=")) return Error::Invalid("Range: expected bytes=FIRST-LAST");
  v = net::http::TrimOws(v.substr(6));
  if (v.find(',') != std::string_view::npos) return Error::Invalid("Range: only one range is supported");
  size_t dash = v.find('-');
  if (dash == std::string_view::npos) return Error::Invalid("Range: expected bytes=FIRST-LAST");
  std::string_view a = net::http::TrimOws(v.substr(0, dash)), b = net::http::TrimOws(v.substr(dash + 1));
  ByteRange r;
  if (a.empty()) {
    uint64_t n = 0;
    if (!ParseU64(b, &n)) return Error::Invalid("Range: expected bytes=-COUNT");
    if (n == 0 || size == 0) return std::optional<ByteRange>();
    r.first = n >= size ? 0 : size - n;
    r.last = size - 1;
    return std::optional<ByteRange>(r);
  }
  if (!ParseU64(a, &r.first)) return Error::Invalid("Range: the first byte is not a number");
  if (b.empty()) {
    r.last = size == 0 ? 0 : size - 1;
  } else if (!ParseU64(b, &r.last) || r.last < r.first) {
    return Error::Invalid("Range: the last byte must be a number not below the first");
  }
  if (r.first >= size) return std::optional<ByteRange>();
  if (r.last >= size) r.last = size - 1;
  return std::optional<ByteRange>(r);
}

V2Path ParseV2Path(std::string_view rest) {
  V2Path out;
  bool trailing = !rest.empty() && rest.back() == '/';
  if (trailing) rest.remove_suffix(1);
  std::vector<std::string_view> segs;
  size_t start = 0;
  while (start <= rest.size()) {
    size_t slash = rest.find('/', start);
    if (slash == std::string_view::npos) slash = rest.size();
    segs.push_back(rest.substr(start, slash - start));
    start = slash + 1;
  }
  size_t n = segs.size();
  auto name_of = [&](size_t count) {
    std::string name;
    for (size_t i = 0; i < count; i++) {
      if (i) name += '/';
      name.append(segs[i]);
    }
    return name;
  };
  if (n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads") {
    out.kind = V2Path::Kind::kUploadStart;
    out.name = name_of(n - 2);
  } else if (n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads") {
    out.kind = V2Path::Kind::kUpload;
    out.name = name_of(n - 3);
    out.reference = std::string(segs[n - 1]);
  } else if (n >= 3 && segs[n - 2] == "blobs" && !trailing) {
    out.kind = V2Path::Kind::kBlob;
    out.name = name_of(n - 2);
    out.reference = std::string(segs[n - 1]);
  } else if (n >= 3 && segs[n - 2] == "manifests" && !trailing) {
    out.kind = V2Path::Kind::kManifest;
    out.name = name_of(n - 2);
    out.reference = std::string(segs[n - 1]);
  } else if (n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" && !trailing) {
    out.kind = V2Path::Kind::kTags;
    out.name = name_of(n - 2);
  } else if (n >= 3 && segs[n - 2] == "referrers" && !trailing) {
    out.kind = V2Path::Kind::kReferrers;
    out.name = name_of(n - 2);
    out.reference = std::string(segs[n - 1]);
  }
  return out;
}

}  // namespace berth::registry
