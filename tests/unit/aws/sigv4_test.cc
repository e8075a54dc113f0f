#include "aws/sigv4.h"

#include <catch2/catch.hpp>

namespace berth::aws {
namespace {

// AWS's own test vector ("get-vanilla", the Signature Version 4 test suite).
net::http::Request GetVanilla() {
  net::http::Request r;
  r.method = "GET";
  r.target = r.path = "/";
  r.headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
  return r;
}

constexpr const char* kVanillaAuth =
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
constexpr const char* kExampleSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

// What botocore (Debian's awscli 2.9) signs for an ECS call: made with its
// SigV4Auth at a fixed time.
net::http::Request BotocoreDescribeServices() {
  net::http::Request r;
  r.method = "POST";
  r.target = r.path = "/";
  r.body = R"({"cluster":"prod","services":["web"]})";
  r.headers = {{"Host", "127.0.0.1:7070"},
               {"X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DescribeServices"},
               {"Content-Type", "application/x-amz-json-1.1"},
               {"X-Amz-Date", "20261206T193000Z"},
               {"Authorization",
                "AWS4-HMAC-SHA256 Credential=BKIAEXAMPLEEXAMPLE22/20261206/eu-west-1/ecs/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
                "Signature=6b3f31342fabcfe9bf4760ea21995f9492689e4685fb6afbaabcf9efed790dbb"}};
  return r;
}

constexpr int64_t k20261206T193000Z = 1796585400000;

TEST_CASE("the Authorization header is read into its parts", "[aws]") {
  Result<Authorization> a = ParseAuthorization(kVanillaAuth);
  REQUIRE(a);
  CHECK(a->access_key_id == "AKIDEXAMPLE");
  CHECK(a->date == "20150830");
  CHECK(a->region == "us-east-1");
  CHECK(a->service == "service");
  CHECK(a->signed_headers == std::vector<std::string>{"host", "x-amz-date"});
  CHECK(a->Scope() == "20150830/us-east-1/service/aws4_request");
}

TEST_CASE("AWS's get-vanilla vector verifies, and a wrong secret does not", "[aws]") {
  net::http::Request r = GetVanilla();
  Result<Authorization> a = ParseAuthorization(kVanillaAuth);
  REQUIRE(a);
  CHECK(SignatureMatches(r, *a, kExampleSecret));
  CHECK_FALSE(SignatureMatches(r, *a, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEX"));
  r.headers[0].value = "example.amazonaws.org";  // a signed header changed
  CHECK_FALSE(SignatureMatches(r, *a, kExampleSecret));
}

TEST_CASE("botocore's signature of an ECS call verifies; any change to what it signed breaks it", "[aws]") {
  net::http::Request r = BotocoreDescribeServices();
  Result<Authorization> a = ParseAuthorization(r.Header("authorization"));
  REQUIRE(a);
  REQUIRE(CheckRequest(r, *a, k20261206T193000Z + 60000));
  CHECK(SignatureMatches(r, *a, kExampleSecret));
  SECTION("the body") {
    r.body = R"({"cluster":"prod","services":["api"]})";
    CHECK_FALSE(SignatureMatches(r, *a, kExampleSecret));
  }
  SECTION("the operation") {
    r.headers[1].value = "AmazonEC2ContainerServiceV20141113.DeleteService";
    CHECK_FALSE(SignatureMatches(r, *a, kExampleSecret));
  }
  SECTION("the region of the scope") {
    a->region = "us-east-1";
    CHECK_FALSE(SignatureMatches(r, *a, kExampleSecret));
  }
}

TEST_CASE("a request dated more than 15 minutes from the server's clock is refused", "[aws]") {
  net::http::Request r = BotocoreDescribeServices();
  Result<Authorization> a = ParseAuthorization(r.Header("authorization"));
  REQUIRE(a);
  CHECK(CheckRequest(r, *a, k20261206T193000Z + 14 * 60000));
  CHECK(CheckRequest(r, *a, k20261206T193000Z - 14 * 60000));
  Status late = CheckRequest(r, *a, k20261206T193000Z + 16 * 60000);
  REQUIRE_FALSE(late);
  CHECK(late.error().code == "InvalidSignatureException");
  CHECK(late.error().message.find("Signature expired: 20261206T193000Z") != std::string::npos);
  CHECK_FALSE(CheckRequest(r, *a, k20261206T193000Z - 16 * 60000));
}

TEST_CASE("the operation, the host and the date must be signed", "[aws]") {
  net::http::Request r = BotocoreDescribeServices();
  Result<Authorization> a = ParseAuthorization(r.Header("authorization"));
  REQUIRE(a);
  a->signed_headers = {"content-type", "host", "x-amz-date"};
  Status s = CheckRequest(r, *a, k20261206T193000Z);
  REQUIRE_FALSE(s);
  CHECK(s.error().message.find("x-amz-target") != std::string::npos);
  a->signed_headers = {"content-type", "x-amz-date", "x-amz-target"};
  CHECK_FALSE(CheckRequest(r, *a, k20261206T193000Z));
}

TEST_CASE("a payload hash header that is not the body's is refused", "[aws]") {
  net::http::Request r = BotocoreDescribeServices();
  r.headers.push_back({"X-Amz-Content-Sha256", std::string(64, 'a')});
  Result<Authorization> a = ParseAuthorization(r.Header("authorization"));
  REQUIRE(a);
  Status s = CheckRequest(r, *a, k20261206T193000Z);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == "XAmzContentSHA256Mismatch");
}

TEST_CASE("malformed Authorization headers are named, not crashed on", "[aws]") {
  struct Case {
    const char* header;
    const char* says;
  };
  for (const Case& c : {
           Case{"", "missing Authorization"},
           Case{"Bearer abc", "AWS4-HMAC-SHA256"},
           Case{"AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host", "Signature"},
           Case{"AWS4-HMAC-SHA256 Credential=A/2015/r/s/aws4_request, SignedHeaders=host, Signature="
                "00",
                "YYYYMMDD"},
           Case{"AWS4-HMAC-SHA256 Credential=A/20150830/r/aws4_request, SignedHeaders=host, Signature=00",
                "Credential"},
           Case{"AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=Host, Signature=00",
                "lower case"},
           Case{"AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host, Signature=xyz", "64"},
           Case{"AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00, Extra=1",
                "unknown part"},
           Case{"AWS4-HMAC-SHA256 garbage", "name=value"},
       }) {
    Result<Authorization> a = ParseAuthorization(c.header);
    INFO(c.header);
    REQUIRE_FALSE(a);
    CHECK(a.error().message.find(c.says) != std::string::npos);
  }
}

TEST_CASE("X-Amz-Date is read exactly", "[aws]") {
  CHECK(ParseAmzDate("20261206T193000Z") == k20261206T193000Z);
  CHECK_FALSE(ParseAmzDate("2026-12-06T19:30:00Z"));
  CHECK_FALSE(ParseAmzDate("20261306T193000Z"));
  CHECK_FALSE(ParseAmzDate("20261206T193000"));
}

TEST_CASE("the canonical request sorts the query and signed headers, and trims values", "[aws]") {
  net::http::Request r;
  r.method = "GET";
  r.path = "/a b";
  r.query = "b=2&a=1";
  r.headers = {{"Host", "h"}, {"X-Amz-Date", "20150830T123600Z"}, {"My-Header", "  x   y  "}};
  Authorization a;
  a.signed_headers = {"x-amz-date", "my-header", "host"};
  CHECK(CanonicalRequest(r, a, "e3") ==
        "GET\n/a%20b\na=1&b=2\nhost:h\nmy-header:x y\nx-amz-date:20150830T123600Z\n\n"
        "host;my-header;x-amz-date\ne3");
}

}  // namespace
}  // namespace berth::aws
