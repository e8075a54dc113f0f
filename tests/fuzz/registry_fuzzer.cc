// Fuzzes the registry's parsers of outside input and the placement language: /v2/
// paths, Range and Content-Range, manifests of every media type, lifecycle
// policies (and their evaluation over a few images), ECR tag patterns, names,
// tags and digests, and `memberOf` expressions. Every parser sees the whole input;
// the pattern matcher sees it cut at its first newline into pattern and tag.
//
// Invariants checked besides the sanitizers: a satisfiable range lies inside the
// blob; a parsed Content-Range is ordered; a manifest's blobs are digests.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "registry/lifecycle.h"
#include "registry/manifest.h"
#include "registry/names.h"
#include "sched/expr.h"

namespace {

using namespace berth;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  registry::V2Path p = registry::ParseV2Path(text);
  if (p.kind != registry::V2Path::Kind::kInvalid) {
    (void)registry::IsValidName(p.name);
    (void)registry::IsValidTag(p.reference);
    (void)registry::LooksLikeDigest(p.reference);
    (void)registry::IsValidUploadId(p.reference);
  }
  (void)registry::IsSha256Digest(text);

  for (uint64_t blob : {uint64_t{0}, uint64_t{1}, uint64_t{4096}, static_cast<uint64_t>(size) * 977}) {
    Result<std::optional<registry::ByteRange>> r = registry::ParseRange(text, blob);
    if (r && r->has_value() && ((*r)->first > (*r)->last || (*r)->last >= blob)) fuzz::Fail("a range outside the blob");
  }
  if (Result<registry::ByteRange> cr = registry::ParseContentRange(text); cr && cr->first > cr->last) {
    fuzz::Fail("an unordered Content-Range");
  }

  for (std::string_view type : {registry::kDockerManifest, registry::kDockerManifestList, registry::kOciManifest,
                                registry::kOciIndex, std::string_view()}) {
    Result<registry::ManifestInfo> m = registry::ParseManifest(type, text);
    if (!m) continue;
    for (const std::string& b : m->blobs) {
      if (!registry::LooksLikeDigest(b)) fuzz::Fail("a manifest blob that is not a digest");
    }
  }

  if (Result<registry::LifecyclePolicy> lp = registry::ParseLifecyclePolicy(text); lp) {
    std::vector<registry::ImageFacts> images = {
        {"sha256:" + std::string(64, 'a'), {"v1", "prod-1"}, 1000},
        {"sha256:" + std::string(64, 'b'), {}, 5000},
        {"sha256:" + std::string(64, 'c'), {"latest"}, 90LL * 86400 * 1000},
    };
    (void)registry::EvaluatePolicy(*lp, images, 100LL * 86400 * 1000);
  }

  size_t nl = text.find('\n');
  if (nl != std::string_view::npos && nl < 256 && size - nl < 512) {
    (void)registry::MatchTagPattern(text.substr(0, nl), text.substr(nl + 1));
  }

  if (size < 4096) (void)sched::Expr::Parse(text);
  return 0;
}
