// proxy/tls and the contract's TLS fields: certificates in the document and their
// refusals, SNI's choice of certificate, and the redirect to https.
#include "proxy/tls.h"

#include <catch2/catch.hpp>
#include <string>

#include "net/pki.h"
#include "proxy/balance.h"
#include "proxy/config.h"

using namespace berth;
using namespace berth::proxy;

namespace {

struct Pair {
  std::string cert, key;
};

// A certificate for `dns` (CN `cn`) and its key, signed by a fresh CA.
Pair MakeCert(const std::string& cn, std::vector<std::string> dns) {
  auto ca_key = net::pki::NewKey();
  REQUIRE(ca_key.ok());
  net::pki::CertSpec ca;
  ca.use = net::pki::CertSpec::Use::kCa;
  ca.common_name = "test CA";
  ca.not_before_unix = 1700000000;
  ca.not_after_unix = 2000000000;
  auto ca_cert = net::pki::SelfSign(*ca_key, ca);
  REQUIRE(ca_cert.ok());
  auto key = net::pki::NewKey();
  REQUIRE(key.ok());
  net::pki::CertSpec spec;
  spec.common_name = cn;
  spec.dns_names = std::move(dns);
  spec.not_before_unix = 1700000000;
  spec.not_after_unix = 2000000000;
  auto cert = net::pki::Issue(*ca_cert, *ca_key, *key, spec);
  REQUIRE(cert.ok());
  return {*cert, *key};
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A document with one HTTPS listener on `site` (and whatever `listener_extra` and
// `certs` say), forwarding to the HTTP group "web".
std::string Doc(const std::string& certs, const std::string& listener) {
  return R"({"version": 1, "certificates": [)" + certs + R"(], "listeners": [)" + listener +
         R"(], "targetGroups": [{"name": "web", "protocol": "HTTP", "targets": []},
                              {"name": "db", "protocol": "TCP", "targets": []}]})";
}

std::string Cert(const std::string& name, const Pair& p) {
  return R"({"name": ")" + name + R"(", "certPem": )" + JsonString(p.cert) + R"(, "keyPem": )" + JsonString(p.key) +
         "}";
}

const char* kHttps = R"({"port": 443, "protocol": "HTTPS", "defaultTargetGroup": "web", "certificates": ["site"]})";

std::string Refusal(const std::string& text) {
  auto c = ParseConfig(text);
  REQUIRE_FALSE(c.ok());
  return c.error().message;
}

}  // namespace

TEST_CASE("proxy tls: certificates and HTTPS/TLS listeners parse", "[proxy]") {
  Pair site = MakeCert("site", {"example.com", "*.example.com"});
  Pair other = MakeCert("other.test", {});
  auto c = ParseConfig(
      Doc(Cert("site", site) + "," + Cert("other", other),
          std::string(kHttps) +
              R"(, {"port": 8443, "protocol": "TLS", "defaultTargetGroup": "db", "certificates": ["other", "site"]})"));
  REQUIRE(c.ok());
  REQUIRE(c->certificates.size() == 2);
  CHECK(c->listeners[0].protocol == Protocol::kHttps);
  CHECK(c->listeners[1].protocol == Protocol::kTls);
  CHECK(c->listeners[1].certificates == std::vector<std::string>{"other", "site"});
  const Certificate* s = c->FindCertificate("site");
  REQUIRE(s);
  REQUIRE(s->identity);
  CHECK(s->identity->names() == std::vector<std::string>{"example.com", "*.example.com"});
  // No DNS subjectAltName: the subject's CN is the name.
  const Certificate* o = c->FindCertificate("other");
  REQUIRE(o);
  auto names = o->identity->names();
  CHECK(std::find(names.begin(), names.end(), "other.test") != names.end());
  CHECK(TargetProtocol(Protocol::kHttps) == Protocol::kHttp);
  CHECK(TargetProtocol(Protocol::kTls) == Protocol::kTcp);
}

TEST_CASE("proxy tls: bad certificates and listeners are refused with their path", "[proxy]") {
  Pair site = MakeCert("site", {"example.com"});
  Pair other = MakeCert("other", {"other.test"});

  Pair bad_pem = site;
  bad_pem.cert = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
  CHECK_THAT(Refusal(Doc(Cert("site", bad_pem), kHttps)), Catch::StartsWith("certificates[0].certPem: "));
  Pair no_pem = site;
  no_pem.cert = "hello";
  CHECK(Refusal(Doc(Cert("site", no_pem), kHttps)) == "certificates[0].certPem: holds no PEM certificate");
  Pair bad_key = site;
  bad_key.key = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
  CHECK_THAT(Refusal(Doc(Cert("site", bad_key), kHttps)), Catch::StartsWith("certificates[0].keyPem: "));
  Pair mismatched{site.cert, other.key};
  CHECK(Refusal(Doc(Cert("x", other) + "," + Cert("site", mismatched), kHttps)) ==
        "certificates[1].keyPem: is not the key of the certificate in certPem");
  CHECK(Refusal(Doc(Cert("site", site) + "," + Cert("site", other), kHttps)) ==
        "certificates[1].name: \"site\" appears twice");
  CHECK(Refusal(Doc(R"({"name": "site", "certPem": "x"})", kHttps)) == "certificates[0].keyPem: is required");
  CHECK(Refusal(Doc(R"({"name": "site", "certPem": "x", "keyPem": "y", "chain": 1})", kHttps)) ==
        "certificates[0].chain: unknown field");

  CHECK(Refusal(Doc(Cert("site", site),
                    R"({"port": 443, "protocol": "HTTPS", "defaultTargetGroup": "web", "certificates": ["nope"]})")) ==
        "listeners[0].certificates[0]: no certificate named \"nope\"");
  CHECK(Refusal(Doc(Cert("site", site), R"({"port": 443, "protocol": "HTTPS", "defaultTargetGroup": "web"})")) ==
        "listeners[0].certificates: an HTTPS listener needs at least one certificate");
  CHECK(Refusal(Doc(Cert("site", site), R"({"port": 443, "protocol": "TLS", "defaultTargetGroup": "db",
                                            "certificates": []})")) ==
        "listeners[0].certificates: an TLS listener needs at least one certificate");
  CHECK(Refusal(Doc(Cert("site", site), R"({"port": 80, "protocol": "HTTP", "defaultTargetGroup": "web",
                                            "certificates": ["site"]})")) ==
        "listeners[0].certificates: are for HTTPS and TLS listeners only");
  // HTTPS forwards to HTTP groups, TLS to TCP groups; groups are never HTTPS or TLS.
  CHECK(Refusal(Doc(Cert("site", site), R"({"port": 443, "protocol": "HTTPS", "defaultTargetGroup": "db",
                                            "certificates": ["site"]})")) ==
        "listeners[0].defaultTargetGroup: target group \"db\" is TCP, the listener HTTPS");
  CHECK(Refusal(R"({"version": 1, "targetGroups": [{"name": "w", "protocol": "HTTPS"}]})") ==
        "targetGroups[0].protocol: must be \"HTTP\" or \"TCP\", not \"HTTPS\"");
  CHECK(Refusal(Doc("", R"({"port": 443, "protocol": "QUIC", "defaultTargetGroup": "web"})")) ==
        "listeners[0].protocol: must be \"HTTP\", \"HTTPS\", \"TCP\" or \"TLS\", not \"QUIC\"");
  // Rules on HTTPS are fine; on TLS they are not.
  CHECK(ParseConfig(Doc(Cert("site", site), R"({"port": 443, "protocol": "HTTPS", "defaultTargetGroup": "web",
      "certificates": ["site"], "rules": [{"priority": 1, "paths": ["/a"], "targetGroup": "web"}]})"))
            .ok());
  CHECK(Refusal(Doc(Cert("site", site), R"({"port": 443, "protocol": "TLS", "defaultTargetGroup": "db",
      "certificates": ["site"], "rules": [{"priority": 1, "paths": ["/a"], "targetGroup": "db"}]})")) ==
        "listeners[0].rules: are for HTTP and HTTPS listeners only");
}

TEST_CASE("proxy tls: redirectToHttps parses and is refused where it does not belong", "[proxy]") {
  auto c = ParseConfig(Doc("", R"({"port": 80, "protocol": "HTTP", "redirectToHttps": {"port": 8443}},
                                 {"port": 81, "protocol": "HTTP", "redirectToHttps": {"port": 443, "statusCode": 302},
                                  "defaultTargetGroup": "web"})"));
  REQUIRE(c.ok());
  REQUIRE(c->listeners[0].redirect);
  CHECK(c->listeners[0].redirect->port == 8443);
  CHECK(c->listeners[0].redirect->status == 301);
  CHECK(c->listeners[0].default_target_group.empty());
  CHECK(c->listeners[1].redirect->status == 302);
  CHECK_FALSE(c->listeners[0].redirect == std::nullopt);

  CHECK(Refusal(Doc("", R"({"port": 80, "protocol": "HTTP", "redirectToHttps": {"port": 443, "statusCode": 307}})")) ==
        "listeners[0].redirectToHttps.statusCode: must be 301 or 302");
  CHECK(Refusal(Doc("", R"({"port": 80, "protocol": "HTTP", "redirectToHttps": {}})")) ==
        "listeners[0].redirectToHttps.port: is required");
  CHECK(Refusal(Doc("", R"({"port": 80, "protocol": "HTTP", "redirectToHttps": {"port": 0}})")) ==
        "listeners[0].redirectToHttps.port: must be between 1 and 65535");
  CHECK(Refusal(Doc("", R"({"port": 80, "protocol": "TCP", "redirectToHttps": {"port": 443}})")) ==
        "listeners[0].redirectToHttps: is for HTTP listeners only");
  CHECK(Refusal(Doc("", R"({"port": 80, "protocol": "HTTP", "redirectToHttps": {"port": 443},
                           "defaultTargetGroup": "nope"})")) ==
        "listeners[0].defaultTargetGroup: no target group named \"nope\"");
  CHECK(Refusal(Doc("", R"({"port": 80, "protocol": "HTTP", "redirectToHttps": {"port": 443},
                           "rules": [{"priority": 1, "targetGroup": "web"}]})")) ==
        "listeners[0].rules: are not used with redirectToHttps");
  // Without a redirect, a default group is still required.
  CHECK(Refusal(Doc("", R"({"port": 80, "protocol": "HTTP"})")) == "listeners[0].defaultTargetGroup: is required");
}

TEST_CASE("proxy tls: SNI picks the certificate whose leaf covers the name, else the first", "[proxy]") {
  CHECK(NameCovers("example.com", "example.com"));
  CHECK(NameCovers("Example.COM", "example.com."));
  CHECK(NameCovers("*.example.com", "a.example.com"));
  CHECK(NameCovers("*.example.com", "A.Example.Com"));
  CHECK_FALSE(NameCovers("*.example.com", "example.com"));
  CHECK_FALSE(NameCovers("*.example.com", "a.b.example.com"));
  CHECK_FALSE(NameCovers("*.example.com", ".example.com"));
  CHECK_FALSE(NameCovers("example.com", "a.example.com"));
  CHECK_FALSE(NameCovers("", "example.com"));
  CHECK_FALSE(NameCovers("example.com", ""));

  std::vector<std::vector<std::string>> names = {{"first.test"}, {"*.example.com"}, {"b.example.com", "other.test"}};
  CHECK(PickCertificate(names, "first.test") == 0);
  CHECK(PickCertificate(names, "a.example.com") == 1);
  CHECK(PickCertificate(names, "b.example.com") == 1);  // the first that covers it
  CHECK(PickCertificate(names, "other.test") == 2);
  CHECK(PickCertificate(names, "unknown.test") == 0);  // nobody: the default
  CHECK(PickCertificate(names, "") == 0);

  // Identity::Load reads the names SNI compares from real certificates.
  Pair p = MakeCert("cn.test", {"san.test"});
  auto id = Identity::Load(p.cert, p.key);
  REQUIRE(id.ok());
  CHECK((*id)->names() == std::vector<std::string>{"san.test"});  // SANs, not the CN
}

TEST_CASE("proxy tls: the redirect's Location", "[proxy]") {
  auto loc = [](std::string_view host, std::string_view target, int port) {
    auto r = RedirectLocation(host, target, port);
    return r.ok() ? *r : "error: " + r.error().message;
  };
  CHECK(loc("example.com", "/", 443) == "https://example.com/");
  CHECK(loc("example.com:8080", "/a/b?x=1&y=2", 443) == "https://example.com/a/b?x=1&y=2");
  CHECK(loc("example.com", "/a", 8443) == "https://example.com:8443/a");
  CHECK(loc("[::1]:80", "/p?q", 8443) == "https://[::1]:8443/p?q");
  CHECK(loc("127.0.0.1:80", "/", 443) == "https://127.0.0.1/");
  CHECK(loc("example.com", "*", 443) == "https://example.com/");
  // An absolute-form target names the host itself (RFC 9112 3.2.2).
  CHECK(loc("ignored.test", "http://example.com:80/x?y", 443) == "https://example.com/x?y");
  CHECK(loc("ignored.test", "http://example.com?y", 443) == "https://example.com/?y");
  CHECK(loc("ignored.test", "http://example.com", 443) == "https://example.com/");
  CHECK(loc("", "/", 443) == "error: the request has no Host header to redirect to");
  CHECK(loc("evil.test/x", "/", 443) == "error: the Host header is not a host name or address");
  CHECK(loc("a@b", "/", 443) == "error: the Host header is not a host name or address");
  CHECK(loc("[::1", "/", 443) == "error: the Host header is not a host name or address");
  CHECK(loc("example.com", "example.com:443", 443) == "error: the request target must be a path or an absolute URL");
}
