// Fuzzes the AWS front end's parsing of what a client sends: the SigV4
// Authorization header (aws::ParseAuthorization), X-Amz-Date (ParseAmzDate), the
// checks on a request (CheckRequest: dates, signed headers, the payload hash) and
// the canonical request and signature over any headers, query and body
// (SignatureMatches), and the JSON 1.1 body as the operations read it.
//
// The input is lines: the Authorization header, X-Amz-Date, X-Amz-Target, a query
// string, then the body (the rest).
//
// Invariants checked besides the sanitizers: a parsed header has the shape its
// parser promises (a 64-hex signature, an 8-digit date, lower-case signed
// headers); a request this harness signs itself, over the input's headers, query
// and body, verifies with its secret and not with another, and not once any byte
// of its body changes.
#include <cstdint>
#include <string>
#include <string_view>

#include "aws/sigv4.h"
#include "base/crypto.h"
#include "base/json.h"
#include "fuzz_common.h"

namespace {

using namespace berth;

std::string_view Line(std::string_view* in) {
  size_t nl = in->find('\n');
  std::string_view line = in->substr(0, nl);
  *in = nl == std::string_view::npos ? std::string_view() : in->substr(nl + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return fuzz::QuietLogs(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view authz = Line(&in), date = Line(&in), target = Line(&in), query = Line(&in);
  std::string_view body = in;

  Result<aws::Authorization> a = aws::ParseAuthorization(authz);
  if (a) {
    if (a->signature.size() != 64) fuzz::Fail("signature length", a->signature);
    if (a->date.size() != 8) fuzz::Fail("scope date", a->date);
    for (const std::string& h : a->signed_headers) {
      for (char c : h) {
        if (c >= 'A' && c <= 'Z') fuzz::Fail("upper-case signed header", h);
      }
    }
  }
  std::optional<int64_t> when = aws::ParseAmzDate(date);

  net::http::Request req;
  req.method = "POST";
  req.path = "/";
  req.query = std::string(query);
  req.body = std::string(body);
  req.headers = {{"Host", "127.0.0.1:7070"},
                 {"X-Amz-Date", std::string(date)},
                 {"X-Amz-Target", std::string(target)},
                 {"Content-Type", "application/x-amz-json-1.1"}};
  if (a) {
    (void)aws::CheckRequest(req, *a, when.value_or(0));
    (void)aws::SignatureMatches(req, *a, "secret");
  }

  // Sign the request here, then verify it.
  aws::Authorization own;
  own.access_key_id = "BKIAFUZZFUZZFUZZFUZZ";
  own.date = date.size() >= 8 ? std::string(date.substr(0, 8)) : "20261206";
  own.region = "eu-north-1";
  own.service = "ecs";
  own.signed_headers = {"content-type", "host", "x-amz-date", "x-amz-target"};
  std::string canonical = aws::CanonicalRequest(req, own, crypto::Hex(crypto::Sha256(req.body)));
  own.signature = aws::Sign("secret", own, aws::StringToSign(date, own, canonical));
  if (!aws::SignatureMatches(req, own, "secret")) fuzz::Fail("own signature does not verify");
  if (aws::SignatureMatches(req, own, "secreT")) fuzz::Fail("another secret verifies");
  if (!req.body.empty()) {
    req.body[req.body.size() / 2] ^= 1;
    if (aws::SignatureMatches(req, own, "secret")) fuzz::Fail("a changed body verifies");
  }

  Result<json::Doc> doc = json::Doc::Parse(body);
  if (doc && doc->view().IsObject()) {
    for (json::View m : doc->view()) (void)m.Key();
  }
  return 0;
}
