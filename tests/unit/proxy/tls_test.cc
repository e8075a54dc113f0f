// proxy/tls and the contract's TLS fields: certificates in the document and their
// refusals, SNI's choice of certificate, and the redirect to https.
#include "proxy/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "base/crypto.h"
#include "net/pki.h"
#include "proxy/balance.h"
#include "proxy/config.h"
#include "proxy/proxy.h"
#include "support/loopback.h"

using namespace berth;
using namespace berth::proxy;
using testing::ConnectLoopback;

namespace {

struct Pair {
  std::string cert, key;
};

// A test CA: its certificate and key.
Pair MakeCa() {
  auto ca_key = net::pki::NewKey();
  REQUIRE(ca_key.ok());
  net::pki::CertSpec ca;
  ca.use = net::pki::CertSpec::Use::kCa;
  ca.common_name = "test CA";
  ca.not_before_unix = 1700000000;
  ca.not_after_unix = 2000000000;
  auto ca_cert = net::pki::SelfSign(*ca_key, ca);
  REQUIRE(ca_cert.ok());
  return {*ca_cert, *ca_key};
}

// A certificate for `dns` (CN `cn`) and its key, signed by `ca` (a fresh CA if none).
Pair MakeCert(const std::string& cn, std::vector<std::string> dns, Pair ca = {}) {
  if (ca.cert.empty()) ca = MakeCa();
  const std::string* ca_cert = &ca.cert;
  const std::string* ca_key = &ca.key;
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
        "listeners[0].certificates: a TLS listener needs at least one certificate");
  CHECK(Refusal(Doc(Cert("site", site), R"({"port": 80, "protocol": "HTTP", "defaultTargetGroup": "web",
                                            "certificates": ["site"]})")) ==
        "listeners[0].certificates: are for HTTPS and TLS listeners only");
  // HTTPS forwards to HTTP groups, TLS to TCP groups; groups are never HTTPS or TLS.
  CHECK(Refusal(Doc(Cert("site", site), R"({"port": 443, "protocol": "HTTPS", "defaultTargetGroup": "db",
                                            "certificates": ["site"]})")) ==
        "listeners[0].defaultTargetGroup: target group \"db\" is TCP, the listener HTTPS");
  CHECK(Refusal(R"({"version": 1, "targetGroups": [{"name": "w", "protocol": "HTTPS"}]})") ==
        "targetGroups[0].protocol: must be \"HTTP\", \"TCP\" or \"UDP\", not \"HTTPS\"");
  CHECK(Refusal(Doc("", R"({"port": 443, "protocol": "QUIC", "defaultTargetGroup": "web"})")) ==
        "listeners[0].protocol: must be \"HTTP\", \"HTTPS\", \"TCP\", \"TLS\" or \"UDP\", not \"QUIC\"");
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

namespace {

// A blocking mbedTLS client on a connected socket, trusting `ca_pem`, sending SNI
// `name` (and checking the certificate covers it unless `any_name`).
class BlockingTlsClient {
 public:
  BlockingTlsClient(int fd, const std::string& ca_pem, const std::string& name, bool any_name = false) : fd_(fd) {
    mbedtls_ssl_init(&ssl_);
    mbedtls_ssl_config_init(&conf_);
    mbedtls_x509_crt_init(&ca_);
    REQUIRE(mbedtls_x509_crt_parse(&ca_, reinterpret_cast<const unsigned char*>(ca_pem.c_str()), ca_pem.size() + 1) ==
            0);
    REQUIRE(mbedtls_ssl_config_defaults(&conf_, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT) == 0);
    mbedtls_ssl_conf_rng(
        &conf_, [](void*, unsigned char* out, size_t len) { return crypto::RandomBytes(out, len) ? 0 : -1; }, nullptr);
    mbedtls_ssl_conf_authmode(&conf_, any_name ? MBEDTLS_SSL_VERIFY_OPTIONAL : MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf_, &ca_, nullptr);
    REQUIRE(mbedtls_ssl_setup(&ssl_, &conf_) == 0);
    mbedtls_ssl_set_hostname(&ssl_, name.c_str());
    mbedtls_ssl_set_bio(
        &ssl_, &fd_,
        [](void* f, const unsigned char* b, size_t n) {
          return static_cast<int>(send(*static_cast<int*>(f), b, n, MSG_NOSIGNAL));
        },
        [](void* f, unsigned char* b, size_t n) { return static_cast<int>(recv(*static_cast<int*>(f), b, n, 0)); },
        nullptr);
  }
  ~BlockingTlsClient() {
    mbedtls_ssl_free(&ssl_);
    mbedtls_ssl_config_free(&conf_);
    mbedtls_x509_crt_free(&ca_);
    close(fd_);
  }
  int Handshake() { return mbedtls_ssl_handshake(&ssl_); }
  // The served certificate's subject CN.
  std::string PeerName() {
    const mbedtls_x509_crt* peer = mbedtls_ssl_get_peer_cert(&ssl_);
    if (!peer) return {};
    char buf[256];
    mbedtls_x509_dn_gets(buf, sizeof buf, &peer->subject);
    return buf;
  }
  void Write(const std::string& s) {
    REQUIRE(mbedtls_ssl_write(&ssl_, reinterpret_cast<const unsigned char*>(s.data()), s.size()) ==
            static_cast<int>(s.size()));
  }
  // Reads until `marker` has been seen or the stream ends.
  std::string ReadUntil(const std::string& marker) {
    std::string got;
    unsigned char buf[4096];
    while (got.find(marker) == std::string::npos) {
      int n = mbedtls_ssl_read(&ssl_, buf, sizeof buf);
      if (n <= 0) break;
      got.append(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
    }
    return got;
  }

 private:
  int fd_;
  mbedtls_ssl_context ssl_;
  mbedtls_ssl_config conf_;
  mbedtls_x509_crt ca_;
};

}  // namespace

// In process (so the sanitizer builds see the TLS engine): an HTTPS listener with
// two certificates, SNI choosing, the request forwarded in plain HTTP with
// X-Forwarded-Proto: https, and the answer back through TLS.
TEST_CASE("proxy tls: an HTTPS listener terminates TLS, picks by SNI and forwards", "[proxy]") {
  Pair ca = MakeCa();
  Pair a = MakeCert("a.test", {"a.test"}, ca);
  Pair b = MakeCert("b.test", {"*.b.test"}, ca);
  int target_port = 0;
  int target_fd = testing::ListenLoopback(&target_port);
  int listen_port = 0;
  close(testing::ListenLoopback(&listen_port));
  auto config = ParseConfig(
      Doc(Cert("a", a) + "," + Cert("b", b), R"({"port": )" + std::to_string(listen_port) + R"(, "protocol": "HTTPS",
      "address": "127.0.0.1", "defaultTargetGroup": "web", "certificates": ["a", "b"]})"));
  REQUIRE(config.ok());
  config->target_groups[0].targets.push_back({"t", "127.0.0.1", target_port, TargetState::kHealthy});
  auto proxy = Proxy::Start(Options{});
  REQUIRE(proxy.ok());
  (*proxy)->Apply(*config);
  int fd = -1;
  for (int i = 0; i < 500 && fd < 0; i++) {
    if ((fd = ConnectLoopback(listen_port)) < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(fd >= 0);

  // The target: answers one request with its head as the body.
  std::thread target([target_fd] {
    int c = accept(target_fd, nullptr, nullptr);
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      head.append(buf, static_cast<size_t>(n));
    }
    std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(head.size()) + "\r\n\r\n" + head;
    send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
    close(c);
  });

  {
    BlockingTlsClient client(fd, ca.cert, "x.b.test");
    REQUIRE(client.Handshake() == 0);
    CHECK(client.PeerName() == "CN=b.test");
    client.Write("GET /p?q=1 HTTP/1.1\r\nHost: x.b.test\r\nX-Forwarded-Proto: forged\r\n\r\n");
    // The answer's body is the head the target got, which ends with the proxy's X-Forwarded-Port.
    std::string answer = client.ReadUntil("X-Forwarded-Port: " + std::to_string(listen_port) + "\r\n\r\n");
    CHECK(answer.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(answer.find("GET /p?q=1 HTTP/1.1\r\n") != std::string::npos);
    CHECK(answer.find("X-Forwarded-Proto: https\r\n") != std::string::npos);
    CHECK(answer.find("forged") == std::string::npos);
  }
  target.join();
  {
    int fd2 = ConnectLoopback(listen_port);
    REQUIRE(fd2 >= 0);
    BlockingTlsClient client(fd2, ca.cert, "nobody.test", true);
    REQUIRE(client.Handshake() == 0);
    CHECK(client.PeerName() == "CN=a.test");  // no certificate covers it: the first
  }
  (*proxy)->Stop(1000);
  close(target_fd);
}
