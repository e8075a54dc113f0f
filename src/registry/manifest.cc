#include "registry/manifest.h"

#include "base/json.h"
#include "registry/names.h"

namespace berth::registry {

namespace {

Error Invalid(std::string message) { return Error{ErrorKind::kInvalid, "MANIFEST_INVALID", std::move(message)}; }

// A descriptor's digest and size, checked.
Status ReadDescriptor(json::View d, const std::string& path, std::string* digest, int64_t* size) {
  if (!d.IsObject()) return Invalid(path + ": must be a descriptor object");
  json::View dg = d.Get("digest");
  if (!dg.IsString()) return Invalid(path + ".digest: must be a string");
  if (!IsSha256Digest(dg.String())) {
    return Invalid(path + ".digest: '" + std::string(dg.String().substr(0, 80)) + "' is not a sha256 digest");
  }
  json::View sz = d.Get("size");
  if (!sz.IsNumber() || sz.Number() < 0 || sz.Number() > 9.0e15)
    return Invalid(path + ".size: must be a number of bytes");
  *digest = std::string(dg.String());
  *size = static_cast<int64_t>(sz.Number());
  return {};
}

}  // namespace

Result<ManifestInfo> ParseManifest(std::string_view content_type, std::string_view body) {
  Result<json::Doc> doc = json::Doc::Parse(body);
  if (!doc) return Invalid("the manifest is not JSON: " + doc.error().message);
  json::View v = doc->view();
  if (!v.IsObject()) return Invalid("the manifest must be a JSON object");
  ManifestInfo info;
  std::string_view type = content_type;
  if (size_t semi = type.find(';'); semi != std::string_view::npos) type = type.substr(0, semi);
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  json::View mt = v.Get("mediaType");
  if (mt.valid() && !mt.IsString()) return Invalid("mediaType: must be a string");
  if (type.empty() || type == "application/json" || type == "application/octet-stream") {
    type = mt.String();
    if (type.empty() && v.Get("manifests").IsArray()) type = kOciIndex;
    if (type.empty() && v.Get("layers").IsArray()) type = kOciManifest;
  }
  if (mt.IsString() && mt.String() != type) {
    return Invalid("mediaType: the body says '" + std::string(mt.String()) + "' but Content-Type is '" +
                   std::string(type) + "'");
  }
  if (type != kDockerManifest && type != kDockerManifestList && type != kOciManifest && type != kOciIndex) {
    return Invalid("unsupported manifest media type '" + std::string(type.substr(0, 120)) +
                   "'; accepted: Docker v2 schema 2 manifest and manifest list, OCI image manifest and index");
  }
  info.media_type = std::string(type);
  json::View sv = v.Get("schemaVersion");
  if (!sv.IsNumber() || sv.Number() != 2) return Invalid("schemaVersion: must be 2");
  info.is_index = type == kDockerManifestList || type == kOciIndex;
  if (info.is_index) {
    json::View list = v.Get("manifests");
    if (!list.IsArray()) return Invalid("manifests: must be an array");
    size_t i = 0;
    for (json::View d : list) {
      std::string digest;
      int64_t size = 0;
      if (Status s = ReadDescriptor(d, "manifests[" + std::to_string(i) + "]", &digest, &size); !s)
        return s.take_error();
      info.children.push_back(std::move(digest));
      i++;
    }
  } else {
    std::string digest;
    int64_t size = 0;
    if (Status s = ReadDescriptor(v.Get("config"), "config", &digest, &size); !s) return s.take_error();
    info.blobs.push_back(digest);
    info.image_size += size;
    if (json::View cmt = v.Get("config").Get("mediaType"); cmt.IsString())
      info.artifact_type = std::string(cmt.String());
    json::View layers = v.Get("layers");
    if (!layers.IsArray()) return Invalid("layers: must be an array");
    size_t i = 0;
    for (json::View d : layers) {
      std::string path = "layers[" + std::to_string(i) + "]";
      if (Status s = ReadDescriptor(d, path, &digest, &size); !s) return s.take_error();
      info.image_size += size;
      // Foreign layers (with urls) live elsewhere and are not required here.
      if (!d.Get("urls").IsArray()) info.blobs.push_back(digest);
      i++;
    }
  }
  if (json::View at = v.Get("artifactType"); at.valid()) {
    if (!at.IsString()) return Invalid("artifactType: must be a string");
    info.artifact_type = std::string(at.String());
  }
  if (json::View subject = v.Get("subject"); subject.valid() && !subject.IsNull()) {
    int64_t size = 0;
    if (Status s = ReadDescriptor(subject, "subject", &info.subject, &size); !s) return s.take_error();
  }
  if (json::View ann = v.Get("annotations"); ann.valid() && !ann.IsNull()) {
    if (!ann.IsObject()) return Invalid("annotations: must be an object");
    info.annotations = ann.Print();
  }
  return info;
}

}  // namespace berth::registry
