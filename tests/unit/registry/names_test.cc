// registry/names: the grammar of names, tags, digests, ranges and /v2/ paths.
#include "registry/names.h"

#include <catch2/catch.hpp>

using namespace berth::registry;

TEST_CASE("registry names: the OCI repository name grammar", "[registry]") {
  for (const char* ok : {"a", "app", "regtest/app", "a.b", "a_b", "a__b", "a---b", "x/y/z", "0/9", "my-org/my.app_1"}) {
    INFO(ok);
    CHECK(IsValidName(ok));
  }
  for (const char* bad : {"", "A", "A/B", "../x", "a/../b", "a//b", "/a", "a/", "-a", "a-", "a.", ".a", "a___b", "a..b",
                          "a_.b", "a b", "a:b", "a%2fb"}) {
    INFO(bad);
    CHECK_FALSE(IsValidName(bad));
  }
  CHECK(IsValidName(std::string(255, 'a')));
  CHECK_FALSE(IsValidName(std::string(256, 'a')));
}

TEST_CASE("registry names: tags and digests", "[registry]") {
  CHECK(IsValidTag("latest"));
  CHECK(IsValidTag("_x.Y-1"));
  CHECK(IsValidTag(std::string(128, 'a')));
  CHECK_FALSE(IsValidTag(std::string(129, 'a')));
  CHECK_FALSE(IsValidTag(std::string(300, 'a')));
  CHECK_FALSE(IsValidTag(""));
  CHECK_FALSE(IsValidTag("-x"));
  CHECK_FALSE(IsValidTag(".x"));
  CHECK_FALSE(IsValidTag("a/b"));
  CHECK_FALSE(IsValidTag("a:b"));
  std::string hex(64, 'a');
  CHECK(IsSha256Digest("sha256:" + hex));
  CHECK_FALSE(IsSha256Digest("sha256:" + std::string(63, 'a')));
  CHECK_FALSE(IsSha256Digest("sha256:" + std::string(64, 'A')));
  CHECK_FALSE(IsSha256Digest("sha512:" + hex));
  CHECK_FALSE(IsSha256Digest("sha256:" + std::string(63, 'a') + "g"));
  CHECK(LooksLikeDigest("sha512:abc"));
  CHECK(LooksLikeDigest("sha256:" + hex));
  CHECK_FALSE(LooksLikeDigest("latest"));
  CHECK_FALSE(LooksLikeDigest(":abc"));
  CHECK(IsValidUploadId(std::string(32, 'f')));
  CHECK_FALSE(IsValidUploadId("../../etc/passwd"));
  CHECK_FALSE(IsValidUploadId(std::string(32, 'F')));
}

TEST_CASE("registry names: Content-Range of a chunk", "[registry]") {
  auto r = ParseContentRange("0-99");
  REQUIRE(r.ok());
  CHECK(r->first == 0);
  CHECK(r->last == 99);
  r = ParseContentRange("bytes 100-199/1000");
  REQUIRE(r.ok());
  CHECK(r->first == 100);
  CHECK(r->last == 199);
  for (const char* bad : {"", "abc", "10", "-5", "5-", "10-9", "bytes x-y", "1-2-3", "99999999999999999999-1"}) {
    INFO(bad);
    auto b = ParseContentRange(bad);
    REQUIRE_FALSE(b.ok());
    CHECK_THAT(b.error().message, Catch::Contains("Content-Range"));
  }
}

TEST_CASE("registry names: Range of a blob read", "[registry]") {
  auto r = ParseRange("bytes=0-9", 100);
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  CHECK((*r)->first == 0);
  CHECK((*r)->last == 9);
  r = ParseRange("bytes=90-", 100);
  REQUIRE((r.ok() && r->has_value()));
  CHECK((*r)->last == 99);
  r = ParseRange("bytes=-10", 100);
  REQUIRE((r.ok() && r->has_value()));
  CHECK((*r)->first == 90);
  r = ParseRange("bytes=50-500", 100);
  REQUIRE((r.ok() && r->has_value()));
  CHECK((*r)->last == 99);
  r = ParseRange("bytes=100-", 100);
  REQUIRE(r.ok());
  CHECK_FALSE(r->has_value());
  CHECK_FALSE(ParseRange("bytes=5-1", 100).ok());
  CHECK_FALSE(ParseRange("items=0-1", 100).ok());
  CHECK_FALSE(ParseRange("bytes=0-1,5-6", 100).ok());
}

TEST_CASE("registry names: /v2/ paths", "[registry]") {
  V2Path p = ParseV2Path("a/b/blobs/uploads/");
  CHECK(p.kind == V2Path::Kind::kUploadStart);
  CHECK(p.name == "a/b");
  p = ParseV2Path("a/blobs/uploads/0123");
  CHECK(p.kind == V2Path::Kind::kUpload);
  CHECK(p.name == "a");
  CHECK(p.reference == "0123");
  p = ParseV2Path("x/blobs/sha256:ab");
  CHECK(p.kind == V2Path::Kind::kBlob);
  p = ParseV2Path("blobs/manifests/latest");  // a repository may be called "blobs"
  CHECK(p.kind == V2Path::Kind::kManifest);
  CHECK(p.name == "blobs");
  p = ParseV2Path("a/b/c/tags/list");
  CHECK(p.kind == V2Path::Kind::kTags);
  CHECK(p.name == "a/b/c");
  p = ParseV2Path("a/referrers/sha256:x");
  CHECK(p.kind == V2Path::Kind::kReferrers);
  CHECK(ParseV2Path("a/nothing/here").kind == V2Path::Kind::kInvalid);
  CHECK(ParseV2Path("manifests/x").kind == V2Path::Kind::kInvalid);  // no name
  p = ParseV2Path("a//b/manifests/x");
  CHECK(p.name == "a//b");  // kept as sent; IsValidName refuses it
  CHECK_FALSE(IsValidName(p.name));
}
