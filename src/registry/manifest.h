// Manifests as the registry reads them: the four media types it accepts (Docker
// image manifest v2 schema 2 and manifest list, OCI image manifest and index),
// what each references, and the facts the referrers API and the ECR views need.
// The bytes themselves are never rewritten: they are stored and served as sent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::registry {

inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";

constexpr size_t kMaxManifestBytes = 4 << 20;

struct ManifestInfo {
  std::string media_type;
  bool is_index = false;              // a manifest list or an OCI index
  std::vector<std::string> blobs;     // config and layers (image manifests), digests
  std::vector<std::string> children;  // manifests an index names, digests
  std::string subject;                // the referrers API's subject digest, if any
  std::string artifact_type;          // artifactType, or the config's media type
  std::string annotations;            // the annotations object as JSON, or empty
  int64_t image_size = 0;             // config and layer sizes, summed (ECR imageSizeInBytes)
};

// Parses `body` as a manifest of `content_type` (the request's Content-Type; when
// empty or generic, the body's mediaType). Every error, an unknown media type
// included, is kInvalid with code MANIFEST_INVALID and a message naming the field.
Result<ManifestInfo> ParseManifest(std::string_view content_type, std::string_view body);

}  // namespace berth::registry
