// TLS termination for the proxy (tls.h), on mbedTLS 2.28.
#include "proxy/tls.h"

#include <strings.h>

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include <algorithm>
#include <cstring>

#include "base/crypto.h"
#include "net/tls.h"
#include "net/tls_buffers.h"

namespace berth::proxy {

namespace {

int Random(void*, unsigned char* out, size_t len) { return crypto::RandomBytes(out, len) ? 0 : -1; }

bool EqualNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

// ============================================================================
// Certificates
// ============================================================================

struct Identity::Parts {
  Parts() {
    mbedtls_x509_crt_init(&chain);
    mbedtls_pk_init(&key);
  }
  ~Parts() {
    mbedtls_x509_crt_free(&chain);
    mbedtls_pk_free(&key);
  }
  mbedtls_x509_crt chain;
  mbedtls_pk_context key;
};

Identity::Identity() : parts_(std::make_unique<Parts>()) {}
Identity::~Identity() = default;

Result<std::shared_ptr<const Identity>> Identity::Load(const std::string& cert_pem, const std::string& key_pem) {
  std::shared_ptr<Identity> id(new Identity());
  if (cert_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Error::Invalid("certPem: holds no PEM certificate");
  }
  // mbedTLS's PEM parser counts the terminating NUL.
  int r = mbedtls_x509_crt_parse(&id->parts_->chain, reinterpret_cast<const unsigned char*>(cert_pem.c_str()),
                                 cert_pem.size() + 1);
  if (r != 0) return Error::Invalid("certPem: " + net::tls::MbedError(r));
  r = net::tls::ParsePrivateKey(&id->parts_->key, key_pem);
  if (r != 0) return Error::Invalid("keyPem: " + net::tls::MbedError(r));
  if (net::tls::CheckKeyPair(id->parts_->chain.pk, id->parts_->key) != 0) {
    return Error::Invalid("keyPem: is not the key of the certificate in certPem");
  }
  const mbedtls_x509_crt& leaf = id->parts_->chain;
  for (const mbedtls_x509_sequence* s = &leaf.subject_alt_names; s && s->buf.p; s = s->next) {
    if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME)) {
      id->names_.emplace_back(reinterpret_cast<const char*>(s->buf.p), s->buf.len);
    }
  }
  if (id->names_.empty()) {
    for (const mbedtls_x509_name* n = &leaf.subject; n; n = n->next) {
      if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
        id->names_.emplace_back(reinterpret_cast<const char*>(n->val.p), n->val.len);
      }
    }
  }
  return std::shared_ptr<const Identity>(std::move(id));
}

bool NameCovers(std::string_view pattern, std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // a fully qualified name
  if (pattern.empty() || host.empty()) return false;
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    size_t dot = host.find('.');
    if (dot == std::string_view::npos || dot == 0) return false;
    return EqualNoCase(pattern.substr(1), host.substr(dot));
  }
  return EqualNoCase(pattern, host);
}

size_t PickCertificate(const std::vector<std::vector<std::string>>& names, std::string_view server_name) {
  for (size_t i = 0; i < names.size(); i++) {
    for (const std::string& n : names[i]) {
      if (NameCovers(n, server_name)) return i;
    }
  }
  return 0;
}

// ============================================================================
// Tickets and per-listener configurations
// ============================================================================

struct TicketKeys::Parts {
  Parts() { mbedtls_ssl_ticket_init(&ticket); }
  ~Parts() { mbedtls_ssl_ticket_free(&ticket); }
  mbedtls_ssl_ticket_context ticket;
};

TicketKeys::TicketKeys() : parts_(std::make_unique<Parts>()) {}
TicketKeys::~TicketKeys() = default;

Result<std::shared_ptr<TicketKeys>> TicketKeys::Create() {
  std::shared_ptr<TicketKeys> t(new TicketKeys());
  int r = mbedtls_ssl_ticket_setup(&t->parts_->ticket, Random, nullptr, MBEDTLS_CIPHER_AES_256_GCM, 24 * 3600);
  if (r != 0) return Error::Internal("TLS session tickets: " + net::tls::MbedError(r));
  return t;
}

struct TlsContext::Parts {
  Parts() { mbedtls_ssl_config_init(&conf); }
  ~Parts() { mbedtls_ssl_config_free(&conf); }
  mbedtls_ssl_config conf;
  std::vector<std::shared_ptr<const Identity>> identities;
  std::vector<std::vector<std::string>> names;
  std::shared_ptr<TicketKeys> tickets;

  // mbedTLS's SNI callback, during a handshake on the worker thread: sets the
  // certificate of the one handshake `ssl`; reads only what is fixed since Create.
  static int Sni(void* self, mbedtls_ssl_context* ssl, const unsigned char* name, size_t len) {
    auto* p = static_cast<Parts*>(self);
    size_t i = PickCertificate(p->names, std::string_view(reinterpret_cast<const char*>(name), len));
    Identity::Parts* id = p->identities[i]->parts();
    return mbedtls_ssl_set_hs_own_cert(ssl, &id->chain, &id->key);
  }
};

TlsContext::TlsContext() : parts_(std::make_unique<Parts>()) {}
TlsContext::~TlsContext() = default;

Result<std::shared_ptr<const TlsContext>> TlsContext::Create(std::vector<std::shared_ptr<const Identity>> identities,
                                                             std::shared_ptr<TicketKeys> tickets) {
  if (identities.empty()) return Error::Invalid("a TLS listener needs a certificate");
  std::shared_ptr<TlsContext> c(new TlsContext());
  Parts* p = c->parts_.get();
  p->identities = std::move(identities);
  p->tickets = std::move(tickets);
  for (const auto& id : p->identities) p->names.push_back(id->names());
  int r = mbedtls_ssl_config_defaults(&p->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
  if (r != 0) return Error::Internal("TLS configuration: " + net::tls::MbedError(r));
  net::tls::ConfigureProtocol(&p->conf);
  Identity::Parts* first = p->identities[0]->parts();
  r = mbedtls_ssl_conf_own_cert(&p->conf, &first->chain, &first->key);
  if (r != 0) return Error::Internal("TLS certificate: " + net::tls::MbedError(r));
  mbedtls_ssl_conf_sni(&p->conf, &Parts::Sni, p);
  if (p->tickets) {
    mbedtls_ssl_conf_session_tickets_cb(&p->conf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                        &p->tickets->parts()->ticket);
  }
  return std::shared_ptr<const TlsContext>(std::move(c));
}

// ============================================================================
// One connection
// ============================================================================

struct TlsSession::Engine : net::tls::CipherBuffers {
  Engine() { mbedtls_ssl_init(&ssl); }
  ~Engine() { mbedtls_ssl_free(&ssl); }

  std::shared_ptr<const TlsContext> context;  // what ssl points at, kept while it lasts
  mbedtls_ssl_context ssl;
  int setup_error = 0;
};

TlsSession::TlsSession(std::shared_ptr<const TlsContext> context) : e_(std::make_unique<Engine>()) {
  e_->context = std::move(context);
  e_->setup_error = mbedtls_ssl_setup(&e_->ssl, &e_->context->parts()->conf);
  e_->Attach(&e_->ssl);
}

TlsSession::~TlsSession() = default;

void TlsSession::Feed(const char* data, size_t len) { e_->in.append(data, len); }

TlsSession::Step TlsSession::Handshake() {
  if (done_) return Step::kDone;
  if (!error_.empty()) return Step::kFailed;
  if (e_->setup_error != 0) {
    error_ = "TLS setup: " + net::tls::MbedError(e_->setup_error);
    return Step::kFailed;
  }
  int r = mbedtls_ssl_handshake(&e_->ssl);
  if (r == 0) {
    done_ = true;
    return Step::kDone;
  }
  if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return Step::kMore;
  error_ = "TLS handshake: " + net::tls::MbedError(r);
  return Step::kFailed;
}

long TlsSession::Read(char* buf, size_t cap) {
  int n = mbedtls_ssl_read(&e_->ssl, reinterpret_cast<unsigned char*>(buf), cap);
  if (n > 0) return n;
  if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
  if (n == 0 || n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return -1;
  error_ = "TLS: " + net::tls::MbedError(n);
  return -2;
}

bool TlsSession::Write(std::string_view plain) {
  while (!plain.empty()) {
    int n = mbedtls_ssl_write(&e_->ssl, reinterpret_cast<const unsigned char*>(plain.data()), plain.size());
    if (n < 0) {
      error_ = "TLS write: " + net::tls::MbedError(n);
      return false;
    }
    plain.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void TlsSession::CloseNotify() {
  if (done_) mbedtls_ssl_close_notify(&e_->ssl);
}

std::string& TlsSession::out() { return e_->out; }

}  // namespace berth::proxy
