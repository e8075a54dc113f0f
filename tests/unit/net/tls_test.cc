// net/pki and net/tls: certificates made here, then an HTTP server and client
// speaking TLS over real sockets on 127.0.0.1, trusting by pin or by CA file.
#include "net/tls.h"

#include <catch2/catch.hpp>
#include <ctime>
#include <optional>

#include "base/metrics.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/pki.h"
#include "net/router.h"
#include "support/test_loop.h"

using namespace berth;
using namespace berth::net;
using berth::testing::RawConn;
using berth::testing::TestLoop;

namespace {

// A CA and what it issued, all made in memory.
struct Pki {
  std::string ca_key, ca_pem, fingerprint;

  explicit Pki(std::string cn = "berth cluster CA") {
    ca_key = pki::NewKey().value();
    pki::CertSpec spec;
    spec.use = pki::CertSpec::Use::kCa;
    spec.common_name = std::move(cn);
    spec.not_before_unix = time(nullptr) - 60;
    spec.not_after_unix = time(nullptr) + 86400;
    ca_pem = pki::SelfSign(ca_key, spec).value();
    fingerprint = pki::Inspect(ca_pem).value().fingerprint;
  }

  // A certificate and key for `use`; the chain (certificate then CA) for a server.
  std::pair<std::string, std::string> Issue(pki::CertSpec::Use use, std::string cn, int64_t life_s = 86400) const {
    std::string key = pki::NewKey().value();
    pki::CertSpec spec;
    spec.use = use;
    spec.common_name = std::move(cn);
    spec.dns_names = {"localhost"};
    spec.addresses = {"127.0.0.1"};
    spec.not_before_unix = time(nullptr) - 60;
    spec.not_after_unix = time(nullptr) + life_s;
    Result<std::string> cert = pki::Issue(ca_pem, ca_key, key, spec);
    REQUIRE(cert.ok());
    return {use == pki::CertSpec::Use::kServer ? cert.value() + ca_pem : cert.value(), key};
  }
};

struct TlsFixture {
  TestLoop loop;
  metrics::Registry metrics;
  http::Router router;
  std::unique_ptr<tls::ServerContext> tls;
  std::unique_ptr<http::Server> server;
  Endpoint endpoint;

  TlsFixture() {
    router.Add("GET", "/hello", [](const http::ExchangePtr& ex) {
      http::Response r;
      r.content_type = "text/plain";
      r.body = std::string(ex->request().tls ? "tls:" : "plain:") + ex->request().peer_cert_cn;
      ex->Respond(std::move(r));
    });
  }
  ~TlsFixture() {
    server.reset();
    tls.reset();
  }

  void Start(const std::string& chain, const std::string& key, const std::string& client_ca = "",
             uint64_t handshake_timeout_ms = 10000, bool write_thread = false) {
    tls::ServerSettings ts;
    ts.cert_pem = chain;
    ts.key_pem = key;
    ts.client_ca_pem = client_ca;
    ts.handshake_timeout_ms = handshake_timeout_ms;
    auto made = tls::ServerContext::Create(loop.get(), ts);
    REQUIRE(made.ok());
    tls = std::move(made.value());
    http::ServerLimits limits;
    limits.write_thread = write_thread;
    server = std::make_unique<http::Server>(loop.get(), &router, limits, &metrics);
    server->SetGate([](http::Exchange&) { return std::nullopt; });
    server->SetTls(tls.get());
    Result<int> port = server->Listen(Endpoint::Parse("127.0.0.1:0").value());
    REQUIRE(port.ok());
    endpoint = Endpoint::Parse("https://127.0.0.1:" + std::to_string(port.value())).value();
  }

  Result<http::ClientResponse> Get(const std::shared_ptr<tls::ClientContext>& ctx, Endpoint where = {}) {
    if (where.port == 0) where = endpoint;
    http::ClientOptions opts;
    opts.tls = ctx;
    opts.timeout_ms = 20000;
    http::Client client(loop.get(), where, opts);
    std::optional<Result<http::ClientResponse>> out;
    http::ClientRequest req;
    req.target = "/hello";
    client.Send(std::move(req), [&](Result<http::ClientResponse> r) { out.emplace(std::move(r)); });
    REQUIRE(loop.RunUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }
};

std::shared_ptr<tls::ClientContext> Client(tls::ClientSettings s) {
  auto c = tls::ClientContext::Create(s);
  REQUIRE(c.ok());
  return c.value();
}

}  // namespace

TEST_CASE("pki: a CA, a server certificate and a node certificate from a signing request", "[net][tls]") {
  Pki ca;
  Result<pki::CertInfo> info = pki::Inspect(ca.ca_pem);
  REQUIRE(info.ok());
  CHECK(info->common_name == "berth cluster CA");
  CHECK(info->fingerprint.size() == 64);
  auto [chain, key] = ca.Issue(pki::CertSpec::Use::kServer, "server-1");
  Result<pki::CertInfo> leaf = pki::Inspect(chain);
  REQUIRE(leaf.ok());
  CHECK(leaf->common_name == "server-1");
  CHECK(leaf->dns_names == std::vector<std::string>{"localhost"});
  CHECK(leaf->not_after_unix - leaf->not_before_unix == 86400 + 60);
  CHECK(pki::SignedBy(pki::FirstCertificate(chain), ca.ca_pem));
  Pki other;
  CHECK_FALSE(pki::SignedBy(pki::FirstCertificate(chain), other.ca_pem));

  std::string node_key = pki::NewKey().value();
  Result<std::string> csr = pki::NewRequest(node_key, "node-abc");
  REQUIRE(csr.ok());
  Result<std::string> pub = pki::RequestPublicKey(csr.value());
  REQUIRE(pub.ok());
  CHECK_THAT(pub.value(), Catch::StartsWith("-----BEGIN PUBLIC KEY-----"));
  // A request whose body was changed after signing is refused.
  std::string tampered = csr.value();
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  CHECK_FALSE(pki::RequestPublicKey(tampered).ok());
  CHECK_FALSE(pki::NewRequest(node_key, "a,b").ok());  // not one name
}

TEST_CASE_METHOD(TlsFixture, "tls: a client trusting by pin gets its answer over TLS", "[net][tls]") {
  Pki ca;
  auto [chain, key] = ca.Issue(pki::CertSpec::Use::kServer, "server");
  for (bool write_thread : {false, true}) {
    Start(chain, key, "", 10000, write_thread);
    auto ctx = Client({.pin_sha256 = ca.fingerprint});
    for (int i = 0; i < 3; i++) {  // the second and third resume the session
      Result<http::ClientResponse> r = Get(ctx);
      REQUIRE(r.ok());
      CHECK(r->status == 200);
      CHECK(r->body == "tls:");
    }
    server.reset();
  }
}

TEST_CASE_METHOD(TlsFixture, "tls: a chain that does not end at the pinned CA is refused, naming both", "[net][tls]") {
  Pki ca, other;
  auto [chain, key] = ca.Issue(pki::CertSpec::Use::kServer, "server");
  Start(chain, key);
  Result<http::ClientResponse> r = Get(Client({.pin_sha256 = other.fingerprint}));
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("ends at a CA with SHA-256 fingerprint " + ca.fingerprint));
  CHECK_THAT(r.error().message, Catch::Contains("not the pinned " + other.fingerprint));
}

TEST_CASE_METHOD(TlsFixture, "tls: the pinned CA on top of a chain it did not sign is refused", "[net][tls]") {
  // An impostor sends its own certificate (from a CA of the same name) with the
  // real CA on top: the pin matches the top, but the signature does not hold.
  Pki real, impostor;
  auto [fake_chain, fake_key] = impostor.Issue(pki::CertSpec::Use::kServer, "server");
  Start(pki::FirstCertificate(fake_chain) + real.ca_pem, fake_key);
  Result<http::ClientResponse> r = Get(Client({.pin_sha256 = real.fingerprint}));
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("refus"));
}

TEST_CASE_METHOD(TlsFixture, "tls: a node's certificate is not a server certificate", "[net][tls]") {
  Pki ca;
  auto [cert, key] = ca.Issue(pki::CertSpec::Use::kClient, "node-1");
  Start(cert + ca.ca_pem, key);
  CHECK_FALSE(Get(Client({.pin_sha256 = ca.fingerprint})).ok());
  CHECK_FALSE(Get(Client({.ca_pem = ca.ca_pem})).ok());
}

TEST_CASE_METHOD(TlsFixture, "tls: trust by CA file, and a DNS name checked against the certificate", "[net][tls]") {
  Pki ca, other;
  auto [chain, key] = ca.Issue(pki::CertSpec::Use::kServer, "server");
  Start(chain, key);
  CHECK(Get(Client({.ca_pem = ca.ca_pem})).ok());
  Result<http::ClientResponse> wrong = Get(Client({.ca_pem = other.ca_pem}));
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.error().message, Catch::Contains("not trusted"));
  Endpoint by_name = endpoint;
  by_name.host = "localhost";  // named in the certificate
  CHECK(Get(Client({.ca_pem = ca.ca_pem}), by_name).ok());
  // A certificate for other names only.
  std::string k2 = pki::NewKey().value();
  pki::CertSpec spec;
  spec.use = pki::CertSpec::Use::kServer;
  spec.common_name = "elsewhere";
  spec.dns_names = {"elsewhere.example"};
  spec.not_before_unix = time(nullptr) - 60;
  spec.not_after_unix = time(nullptr) + 3600;
  std::string c2 = pki::Issue(ca.ca_pem, ca.ca_key, k2, spec).value();
  REQUIRE(tls->SetIdentity(c2 + ca.ca_pem, k2).ok());
  Result<http::ClientResponse> mismatch = Get(Client({.ca_pem = ca.ca_pem}), by_name);
  REQUIRE_FALSE(mismatch.ok());
  CHECK_THAT(mismatch.error().message, Catch::Contains("not trusted"));
}

TEST_CASE_METHOD(TlsFixture, "tls: a renewed identity is used by new handshakes", "[net][tls]") {
  Pki ca, next;
  auto [chain, key] = ca.Issue(pki::CertSpec::Use::kServer, "server");
  Start(chain, key);
  CHECK(Get(Client({.pin_sha256 = ca.fingerprint})).ok());
  auto [chain2, key2] = next.Issue(pki::CertSpec::Use::kServer, "server");
  REQUIRE(tls->SetIdentity(chain2, key2).ok());
  CHECK_FALSE(Get(Client({.pin_sha256 = ca.fingerprint})).ok());
  CHECK(Get(Client({.pin_sha256 = next.fingerprint})).ok());
  CHECK_FALSE(tls->SetIdentity("not a certificate", key2).ok());
}

TEST_CASE_METHOD(TlsFixture, "tls: a client certificate from the CA names the caller; others name no one",
                 "[net][tls]") {
  Pki ca, other;
  auto [chain, key] = ca.Issue(pki::CertSpec::Use::kServer, "server");
  Start(chain, key, ca.ca_pem);
  auto [node_cert, node_key] = ca.Issue(pki::CertSpec::Use::kClient, "node-7");
  Result<http::ClientResponse> r =
      Get(Client({.pin_sha256 = ca.fingerprint, .cert_pem = node_cert, .key_pem = node_key}));
  REQUIRE(r.ok());
  CHECK(r->body == "tls:node-7");
  auto [stranger_cert, stranger_key] = other.Issue(pki::CertSpec::Use::kClient, "node-7");
  r = Get(Client({.pin_sha256 = ca.fingerprint, .cert_pem = stranger_cert, .key_pem = stranger_key}));
  REQUIRE(r.ok());
  CHECK(r->body == "tls:");
  r = Get(Client({.pin_sha256 = ca.fingerprint}));
  REQUIRE(r.ok());
  CHECK(r->body == "tls:");
}

TEST_CASE_METHOD(TlsFixture, "tls: a handshake that does not finish in time is dropped", "[net][tls]") {
  Pki ca;
  auto [chain, key] = ca.Issue(pki::CertSpec::Use::kServer, "server");
  Start(chain, key, "", 100);
  Endpoint plain = endpoint;
  plain.tls = false;
  RawConn silent(&loop, plain);
  REQUIRE(loop.RunUntil([&] { return silent.ended(); }));
  RawConn partial(&loop, plain);
  partial.Send(std::string("\x16\x03\x01\x02\x00", 5));  // a record header, then nothing
  REQUIRE(loop.RunUntil([&] { return partial.ended(); }));
  REQUIRE(loop.RunUntil([&] { return server->connection_count() == 0; }));
  // Plain HTTP on the TLS port is refused, not answered.
  RawConn plain_http(&loop, plain);
  plain_http.Send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(loop.RunUntil([&] { return plain_http.ended(); }));
  CHECK(plain_http.Statuses().empty());
}

TEST_CASE("tls: a client needs something to trust", "[net][tls]") {
  CHECK_FALSE(tls::ClientContext::Create({}).ok());
  CHECK_FALSE(tls::ClientContext::Create({.ca_pem = "garbage"}).ok());
  Result<std::shared_ptr<tls::ClientContext>> none = tls::ClientContextFor("", "");
  REQUIRE(none.ok());
  CHECK(none.value() == nullptr);
}
