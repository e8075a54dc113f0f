// registry/manifest: the four accepted media types, their references, and errors.
#include "registry/manifest.h"

#include <catch2/catch.hpp>

using namespace berth::registry;

namespace {
const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');
}  // namespace

TEST_CASE("registry manifest: a Docker v2 schema 2 image", "[registry]") {
  std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":10,"digest":")" +
                     kA + R"("},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":100,"digest":")" +
                     kB + R"("},
              {"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":5,"digest":")" +
                     kC + R"(","urls":["http://x"]}]})";
  auto m = ParseManifest("application/vnd.docker.distribution.manifest.v2+json", body);
  REQUIRE(m.ok());
  CHECK_FALSE(m->is_index);
  CHECK(m->blobs == std::vector<std::string>{kA, kB});  // the foreign layer is not required here
  CHECK(m->image_size == 115);
  CHECK(m->artifact_type == "application/vnd.docker.container.image.v1+json");
  // Without a Content-Type the body's mediaType decides.
  auto same = ParseManifest("", body);
  REQUIRE(same.ok());
  CHECK(same->media_type == std::string(kDockerManifest));
}

TEST_CASE("registry manifest: an OCI index and an artifact with a subject", "[registry]") {
  std::string index = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
    "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7,"digest":")" +
                      kA + R"("},
                 {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7,"digest":")" +
                      kB + R"("}]})";
  auto m = ParseManifest("application/vnd.oci.image.index.v1+json", index);
  REQUIRE(m.ok());
  CHECK(m->is_index);
  CHECK(m->children == std::vector<std::string>{kA, kB});
  CHECK(m->blobs.empty());
  std::string art = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "artifactType":"application/x-sbom",
    "config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":")" +
                    kA + R"("},
    "layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":9,"digest":")" +
                    kC + R"("},"annotations":{"k":"v"}})";
  auto a = ParseManifest("application/vnd.oci.image.manifest.v1+json", art);
  REQUIRE(a.ok());
  CHECK(a->subject == kC);
  CHECK(a->artifact_type == "application/x-sbom");
  CHECK(a->annotations == R"({"k":"v"})");
  auto list = ParseManifest(
      "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8",
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]})");
  REQUIRE(list.ok());
  CHECK(list->is_index);
}

TEST_CASE("registry manifest: errors name what is wrong", "[registry]") {
  auto err = [](std::string_view type, std::string_view body) {
    auto m = ParseManifest(type, body);
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().code == "MANIFEST_INVALID");
    return m.error().message;
  };
  std::string oci(kOciManifest);
  CHECK_THAT(err(oci, "{not json"), Catch::Contains("not JSON"));
  CHECK_THAT(err(oci, "[]"), Catch::Contains("JSON object"));
  CHECK_THAT(err(oci, R"({"schemaVersion":1,"config":{},"layers":[]})"), Catch::Contains("schemaVersion"));
  CHECK_THAT(err(oci, R"({"schemaVersion":2,"layers":[]})"), Catch::Contains("config"));
  CHECK_THAT(err(oci, R"({"schemaVersion":2,"config":{"digest":"sha256:zz","size":1},"layers":[]})"),
             Catch::Contains("config.digest"));
  CHECK_THAT(err(oci, R"({"schemaVersion":2,"config":{"digest":")" + kA + R"(","size":1},"layers":[{"digest":")" + kB +
                          R"(","size":-1}]})"),
             Catch::Contains("layers[0].size"));
  CHECK_THAT(err("application/vnd.unknown+json", R"({"schemaVersion":2})"),
             Catch::Contains("unsupported manifest media type"));
  CHECK_THAT(err(oci, R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})"),
             Catch::Contains("Content-Type"));
}
