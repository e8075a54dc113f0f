// The registry's grammar: repository names, tags, digests and the byte ranges of
// Range and Content-Range headers, checked before any of them reaches a path, a
// query or a file offset. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace berth::registry {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

// OCI: path components of [a-z0-9]+ joined by '.', '_', '__' or runs of '-',
// separated by '/'; 255 characters at most.
bool IsValidName(std::string_view name);
// OCI: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
bool IsValidTag(std::string_view tag);
// "sha256:" and 64 lower-case hex digits: the only algorithm this registry stores.
bool IsSha256Digest(std::string_view digest);
// algorithm ":" encoded, as the OCI grammar allows (for a clear "unsupported"
// answer to other algorithms).
bool LooksLikeDigest(std::string_view digest);
// The 32 lower-case hex characters of an upload session id.
bool IsValidUploadId(std::string_view id);

// An inclusive byte range [first, last].
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;
};

// A PATCH's Content-Range: "first-last", with or without a "bytes " prefix.
// An Error (kInvalid) says what is malformed.
Result<ByteRange> ParseContentRange(std::string_view value);

// A GET's Range against a blob of `size` bytes: "bytes=a-b", "bytes=a-" or
// "bytes=-n" (one range only). nullopt: not satisfiable (416). An Error: malformed.
Result<std::optional<ByteRange>> ParseRange(std::string_view value, uint64_t size);

// What a /v2/ path (after "/v2/") asks for.
struct V2Path {
  enum class Kind { kInvalid, kUploadStart, kUpload, kBlob, kManifest, kTags, kReferrers };
  Kind kind = Kind::kInvalid;
  std::string name;       // repository name, not yet validated
  std::string reference;  // upload id, digest or tag
};
V2Path ParseV2Path(std::string_view rest);

}  // namespace berth::registry
