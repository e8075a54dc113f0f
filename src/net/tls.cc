#include "net/tls.h"

#include <mbedtls/ecdsa.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>
#include <uv.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <thread>
#include <utility>

#include "base/crypto.h"
#include "base/log.h"
#include "net/tls_buffers.h"
#include "net/uv.h"
#include "net/work.h"

namespace berth::net::tls {

namespace {

// ECDHE with an AEAD cipher only, ECDSA first (berth's certificates are P-256).
const int kCiphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

// Key exchange groups, fastest first: mbedTLS's own order starts at P-521, which
// costs a full handshake several times what X25519 does.
const mbedtls_ecp_group_id kCurves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

int Random(void*, unsigned char* out, size_t len) { return crypto::RandomBytes(out, len) ? 0 : -1; }

}  // namespace

std::string MbedError(int code) {
  char buf[160];
  mbedtls_strerror(code, buf, sizeof buf);
  return buf;
}

namespace {

// PEM text for mbedTLS's parsers, which count the terminating NUL.
int ParseCerts(mbedtls_x509_crt* crt, const std::string& pem) {
  return mbedtls_x509_crt_parse(crt, reinterpret_cast<const unsigned char*>(pem.c_str()), pem.size() + 1);
}
}  // namespace

// 0 when `prv` is the private key of `pub`. An EC key is held as ECDSA (see
// ParsePrivateKey), which mbedtls_pk_check_pair calls another type: the points are compared.
int CheckKeyPair(const mbedtls_pk_context& pub, const mbedtls_pk_context& prv) {
  auto is_ec = [](const mbedtls_pk_context& k) {
    mbedtls_pk_type_t t = mbedtls_pk_get_type(&k);
    return t == MBEDTLS_PK_ECKEY || t == MBEDTLS_PK_ECKEY_DH || t == MBEDTLS_PK_ECDSA;
  };
  if (is_ec(pub) && is_ec(prv)) return mbedtls_ecp_check_pub_priv(mbedtls_pk_ec(pub), mbedtls_pk_ec(prv));
  return mbedtls_pk_check_pair(&pub, &prv);
}

// A private key for signing handshakes. An EC key is held as an ECDSA context:
// mbedTLS 2.28 signs with a plain EC key through a copy of it, whose fresh curve
// group rebuilds the fixed-base table on every signature (1.3 ms where 0.57 ms
// do on this machine). One signature at load fills the table before the key is
// shared, so later handshakes only read it.
int ParsePrivateKey(mbedtls_pk_context* pk, const std::string& pem) {
  mbedtls_pk_context parsed;
  mbedtls_pk_init(&parsed);
  int r =
      mbedtls_pk_parse_key(&parsed, reinterpret_cast<const unsigned char*>(pem.c_str()), pem.size() + 1, nullptr, 0);
  if (r == 0 && mbedtls_pk_get_type(&parsed) == MBEDTLS_PK_ECKEY) {
    r = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA));
    if (r == 0) r = mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(*pk), mbedtls_pk_ec(parsed));
    unsigned char hash[32] = {1}, sig[MBEDTLS_ECDSA_MAX_LEN];
    size_t sig_len = 0;
    if (r == 0) r = mbedtls_pk_sign(pk, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, &sig_len, Random, nullptr);
  } else if (r == 0) {
    std::swap(*pk, parsed);
  }
  mbedtls_pk_free(&parsed);
  return r;
}

namespace {

std::string Fingerprint(const mbedtls_x509_crt* crt) {
  return crypto::Hex(crypto::Sha256(std::string_view(reinterpret_cast<const char*>(crt->raw.p), crt->raw.len)));
}

}  // namespace

void ConfigureProtocol(mbedtls_ssl_config* conf) {
  mbedtls_ssl_conf_rng(conf, Random, nullptr);
  mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(conf, kCiphersuites);
  mbedtls_ssl_conf_curves(conf, kCurves);
  mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
}

namespace {
int ParseKey(mbedtls_pk_context* pk, const std::string& pem) { return ParsePrivateKey(pk, pem); }
void CommonSetup(mbedtls_ssl_config* conf) { ConfigureProtocol(conf); }
}  // namespace

// One mbedTLS configuration with what it points at; shared by the connections
// made with it, so a renewed certificate never pulls one from under a handshake.
class ServerConfig {
 public:
  ServerConfig() {
    mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&cert);
    mbedtls_x509_crt_init(&client_ca);
    mbedtls_pk_init(&key);
  }
  ~ServerConfig() {
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&cert);
    mbedtls_x509_crt_free(&client_ca);
    mbedtls_pk_free(&key);
  }
  mbedtls_ssl_config conf;
  mbedtls_x509_crt cert;
  mbedtls_x509_crt client_ca;
  mbedtls_pk_context key;
};

class ClientConfig {
 public:
  ClientConfig() {
    mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&ca);
    mbedtls_x509_crt_init(&cert);
    mbedtls_pk_init(&key);
    mbedtls_ssl_session_init(&session);
  }
  ~ClientConfig() {
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&ca);
    mbedtls_x509_crt_free(&cert);
    mbedtls_pk_free(&key);
    mbedtls_ssl_session_free(&session);
  }
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca;
  mbedtls_x509_crt cert;
  mbedtls_pk_context key;
  std::string pin;
  mbedtls_ssl_session session;  // the last one, offered again
  bool have_session = false;
};

// What a handshake step touches: the mbedTLS context and its ciphertext buffers.
// A server's step may run on a pool thread (HandshakeQueue), so this lives apart
// from the stream: a stream closed meanwhile leaves it to the step, which frees
// it when done. Loop-side code touches it only while no step is out.
struct Engine : CipherBuffers {
  Engine() { mbedtls_ssl_init(&ssl); }
  ~Engine() { mbedtls_ssl_free(&ssl); }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  std::shared_ptr<void> keep;  // the configuration ssl points at
  mbedtls_ssl_context ssl;
};

// Server handshake steps on libuv's pool, a few at once: the rest wait here in
// order, so file syncs and name lookups (the same pool) always find a thread.
// Loop thread only.
class HandshakeQueue : public std::enable_shared_from_this<HandshakeQueue> {
 public:
  explicit HandshakeQueue(uv_loop_t* loop)
      : loop_(loop), limit_(std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 3)) {}

  // Runs `step` on the pool, then `done(result)` on the loop thread unless `alive`
  // is false by then.
  void Submit(std::shared_ptr<Engine> engine, std::shared_ptr<bool> alive, std::function<void(int)> done) {
    waiting_.push_back({std::move(engine), std::move(alive), std::move(done)});
    StartWaiting();
  }

 private:
  struct Step {
    std::shared_ptr<Engine> engine;
    std::shared_ptr<bool> alive;
    std::function<void(int)> done;
  };

  void StartWaiting() {
    while (in_flight_ < limit_ && !waiting_.empty()) {
      auto step = std::make_shared<Step>(std::move(waiting_.front()));
      waiting_.pop_front();
      if (!*step->alive) continue;  // closed while it waited
      ++in_flight_;
      auto result = std::make_shared<int>(0);
      RunOffLoop(
          loop_, [step, result] { *result = mbedtls_ssl_handshake(&step->engine->ssl); },
          [self = shared_from_this(), step, result] {
            --self->in_flight_;
            if (*step->alive) step->done(*result);
            self->StartWaiting();
          });
    }
  }
  uv_loop_t* loop_;
  int limit_;
  int in_flight_ = 0;
  std::deque<Step> waiting_;
};

struct ServerContext::Shared {
  Shared() {
    mbedtls_ssl_ticket_init(&ticket);
    mbedtls_ssl_cache_init(&cache);
  }
  ~Shared() {
    mbedtls_ssl_ticket_free(&ticket);
    mbedtls_ssl_cache_free(&cache);
  }
  mbedtls_ssl_ticket_context ticket;
  mbedtls_ssl_cache_context cache;
  std::shared_ptr<HandshakeQueue> queue;  // null: handshakes on the loop thread
};

// The TLS stream: ciphertext below (`inner_`), plaintext above (the handler).
class TlsStream final : public Stream, private Stream::Handler {
 public:
  TlsStream(uv_loop_t* loop, std::unique_ptr<Stream> inner, const mbedtls_ssl_config* conf, std::shared_ptr<void> keep,
            std::shared_ptr<ClientConfig> client, std::shared_ptr<HandshakeQueue> queue, uint64_t handshake_timeout_ms)
      : inner_(std::move(inner)),
        e_(std::make_shared<Engine>()),
        client_(std::move(client)),
        queue_(std::move(queue)),
        timer_(loop) {
    e_->keep = std::move(keep);
    setup_error_ = mbedtls_ssl_setup(&e_->ssl, conf);
    e_->Attach(&e_->ssl);
    if (client_) {
      mbedtls_ssl_set_verify(&e_->ssl, &TlsStream::Verify, this);
      if (client_->have_session) mbedtls_ssl_set_session(&e_->ssl, &client_->session);
    }
    inner_->SetHandler(this);
    timer_.Start(handshake_timeout_ms, 0, [this, handshake_timeout_ms] {
      Fail(UV_ETIMEDOUT, "the TLS handshake did not finish within " + std::to_string(handshake_timeout_ms) + " ms");
    });
  }
  ~TlsStream() override {
    *alive_ = false;
    if (inner_) inner_->Close();
  }

  // Starts: reads the peer's hello (server) or sends ours (client).
  void Begin(const std::string& host) {
    if (setup_error_ != 0) {
      Fail(UV_EPROTO, "TLS setup: " + MbedError(setup_error_));
      return;
    }
    if (!host.empty()) mbedtls_ssl_set_hostname(&e_->ssl, host.c_str());
    inner_->ReadStart();
    if (client_) Pump();
  }

  void SetHandler(Stream::Handler* handler) override { handler_ = handler; }
  void ReadStart() override {
    if (reading_ || closed_) return;
    reading_ = true;
    inner_->ReadStart();
    // Plaintext already decrypted or ciphertext already here is delivered on the
    // next iteration, as a socket would (never from inside this call).
    if (handshake_done_ && (e_->HasInput() || mbedtls_ssl_get_bytes_avail(&e_->ssl) > 0)) {
      timer_.Start(0, 0, [this] { Pump(); });
    }
  }
  void ReadStop() override {
    if (!reading_) return;
    reading_ = false;
    // During the handshake the peer's flights are still read (they are not data).
    if (handshake_done_) inner_->ReadStop();
  }
  void Write(std::string data) override {
    if (closed_ || failed_) return;
    if (!handshake_done_) {
      early_.append(data);
      return;
    }
    WritePlain(data);
  }
  size_t PendingWriteBytes() const override { return early_.size() + (inner_ ? inner_->PendingWriteBytes() : 0); }
  void Shutdown() override {
    if (closed_ || failed_) return;
    if (!handshake_done_) {
      shutdown_after_handshake_ = true;
      return;
    }
    mbedtls_ssl_close_notify(&e_->ssl);
    FlushOut();
    inner_->Shutdown();
  }
  void Close() override {
    if (closed_) return;
    closed_ = true;
    timer_.Stop();
    inner_->Close();
  }
  std::string PeerName() const override { return inner_->PeerName(); }
  std::string PeerCertificateName() const override { return peer_name_; }
  std::string PeerCertificateSerial() const override { return peer_serial_; }
  std::string FailureText() const override { return failure_; }
  bool Secure() const override { return true; }

 private:
  // Called for each certificate of the server's chain, the top first (a client's
  // handshake, which runs on the loop thread).
  static int Verify(void* self, mbedtls_x509_crt* crt, int depth, uint32_t* flags) {
    auto* s = static_cast<TlsStream*>(self);
    if (depth > s->top_depth_ || s->top_depth_ < 0) {
      s->top_depth_ = depth;
      s->top_fingerprint_ = Fingerprint(crt);
    }
    const std::string& pin = s->client_->pin;
    if (!pin.empty() && depth == s->top_depth_ && (*flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) &&
        crypto::ConstantTimeEqual(Fingerprint(crt), pin)) {
      *flags &= ~static_cast<uint32_t>(MBEDTLS_X509_BADCERT_NOT_TRUSTED);
    }
    return 0;
  }

  void FlushOut() {
    if (e_->out.empty() || closed_ || stepping_) return;
    std::string out;
    out.swap(e_->out);
    inner_->Write(std::move(out));
  }

  void WritePlain(std::string_view data) {
    while (!data.empty()) {
      int n = mbedtls_ssl_write(&e_->ssl, reinterpret_cast<const unsigned char*>(data.data()), data.size());
      if (n < 0) {
        // Write is called by the handler: it hears of the failure on the next
        // iteration, never from inside its own call (as with a socket).
        FailLater(UV_EPROTO, "TLS write: " + MbedError(n));
        return;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    FlushOut();
  }

  // Why a handshake was refused, in words.
  std::string HandshakeError(int r) {
    if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && client_) {
      uint32_t flags = mbedtls_ssl_get_verify_result(&e_->ssl);
      if ((flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) && !client_->pin.empty()) {
        return "the server's certificate chain ends at a CA with SHA-256 fingerprint " +
               (top_fingerprint_.empty() ? std::string("(none)") : top_fingerprint_) + ", not the pinned " +
               client_->pin + " (the token's): refusing it";
      }
      char buf[512];
      int n = mbedtls_x509_crt_verify_info(buf, sizeof buf, "", flags);
      std::string why = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown reason";
      for (char& c : why) {
        if (c == '\n') c = ';';
      }
      while (!why.empty() && why.back() == ';') why.pop_back();
      return "the server's certificate is not trusted: " + why;
    }
    return "TLS handshake failed: " + MbedError(r);
  }

  void Pump() {
    if (closed_ || failed_ || stepping_) return;
    if (!handshake_done_) {
      if (queue_) {
        // The step runs on the pool; bytes that arrive meanwhile wait in arriving_.
        stepping_ = true;
        queue_->Submit(e_, alive_, [this](int r) { StepDone(r); });
        return;
      }
      if (!HandshakeStepDone(mbedtls_ssl_handshake(&e_->ssl))) return;
    }
    ReadPlain();
  }

  void StepDone(int r) {
    stepping_ = false;
    if (!arriving_.empty()) {
      e_->in.append(arriving_);
      arriving_.clear();
    }
    if (closed_ || failed_) return;
    std::shared_ptr<bool> alive = alive_;
    if (!HandshakeStepDone(r)) {
      // The peer's next flight may already be here (unless the handler, told of
      // a failure, let go of this stream).
      if (*alive && !handshake_done_ && !failed_ && !closed_ && e_->HasInput()) Pump();
      return;
    }
    ReadPlain();
  }

  // After a handshake step that returned `r`: true when the handshake is done and
  // the stream is still open.
  bool HandshakeStepDone(int r) {
    std::shared_ptr<bool> alive = alive_;
    FlushOut();
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
      if (e_->in_eof) Fail(UV_EPROTO, "the peer closed the connection during the TLS handshake");
      return false;
    }
    if (r != 0) {
      Fail(UV_EPROTO, HandshakeError(r));
      return false;
    }
    if (client_ && mbedtls_ssl_get_verify_result(&e_->ssl) != 0) {
      mbedtls_ssl_send_alert_message(&e_->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL, MBEDTLS_SSL_ALERT_MSG_BAD_CERT);
      Fail(UV_EPROTO, HandshakeError(MBEDTLS_ERR_X509_CERT_VERIFY_FAILED));
      return false;
    }
    handshake_done_ = true;
    timer_.Stop();
    const mbedtls_x509_crt* peer = mbedtls_ssl_get_peer_cert(&e_->ssl);
    if (!client_ && peer && mbedtls_ssl_get_verify_result(&e_->ssl) == 0) {
      peer_name_ = CommonName(peer);
      peer_serial_ = crypto::Hex(peer->serial.p, peer->serial.len);
    }
    if (client_ && mbedtls_ssl_get_session(&e_->ssl, &client_->session) == 0) client_->have_session = true;
    if (!reading_) inner_->ReadStop();
    if (!early_.empty()) {
      std::string early;
      early.swap(early_);
      WritePlain(early);
      if (!*alive || failed_) return false;
    }
    if (shutdown_after_handshake_) Shutdown();
    return *alive && !closed_ && !failed_;
  }

  void ReadPlain() {
    std::shared_ptr<bool> alive = alive_;
    unsigned char buf[16384];
    while (reading_ && !closed_ && !failed_) {
      int n = mbedtls_ssl_read(&e_->ssl, buf, sizeof buf);
      if (n > 0) {
        if (handler_) handler_->OnData(std::string_view(reinterpret_cast<const char*>(buf), static_cast<size_t>(n)));
        if (!*alive) return;
        continue;
      }
      FlushOut();
      if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE) {
        if (e_->in_eof) End(in_err_);
        return;
      }
      if (n == 0 || n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        End(0);
        return;
      }
      Fail(UV_EPROTO, "TLS: " + MbedError(n));
      return;
    }
  }

  static std::string CommonName(const mbedtls_x509_crt* crt) {
    for (const mbedtls_x509_name* n = &crt->subject; n; n = n->next) {
      if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
        return std::string(reinterpret_cast<const char*>(n->val.p), n->val.len);
      }
    }
    return {};
  }

  void End(int err) {
    if (ended_ || closed_) return;
    ended_ = true;
    if (handler_) handler_->OnEnd(err);
  }

  void FailLater(int err, std::string why) {
    if (failed_ || closed_) return;
    failed_ = true;
    failure_ = std::move(why);
    FlushOut();
    timer_.Start(0, 0, [this, err] { End(err); });
  }

  void Fail(int err, std::string why) {
    if (failed_ || closed_) return;
    failed_ = true;
    failure_ = std::move(why);
    timer_.Stop();
    FlushOut();  // the alert, if mbedTLS wrote one (none while a step is out)
    log::Debug("tls", "connection failed", {{"peer", inner_->PeerName()}, {"error", failure_}});
    End(err);
  }

  // The inner stream's events.
  void OnData(std::string_view data) override {
    if (stepping_) {
      arriving_.append(data);
      return;
    }
    e_->in.append(data);
    Pump();
  }
  void OnEnd(int err) override {
    in_err_ = err;
    if (!handshake_done_) {
      Fail(err ? err : UV_EPROTO, err ? "connection failed during the TLS handshake: " + UvError(err)
                                      : "the peer closed the connection during the TLS handshake");
      return;
    }
    e_->in_eof = true;
    if (reading_) {
      Pump();  // what is left, then the end
      return;
    }
    End(err);
  }
  void OnDrained() override {
    if (handshake_done_ && early_.empty() && handler_) handler_->OnDrained();
  }

  std::unique_ptr<Stream> inner_;
  std::shared_ptr<Engine> e_;
  std::shared_ptr<ClientConfig> client_;
  std::shared_ptr<HandshakeQueue> queue_;  // null: handshake steps on the loop thread
  Timer timer_;                            // the handshake deadline, then deferred reads
  int setup_error_ = 0;
  Stream::Handler* handler_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::string arriving_;  // ciphertext that came while a step was out
  std::string early_;     // plaintext written before the handshake finished
  std::string peer_name_;
  std::string peer_serial_;
  std::string failure_;
  std::string top_fingerprint_;
  int top_depth_ = -1;
  int in_err_ = 0;
  bool reading_ = false;
  bool stepping_ = false;  // a handshake step is on the pool
  bool handshake_done_ = false;
  bool shutdown_after_handshake_ = false;
  bool closed_ = false;
  bool failed_ = false;
  bool ended_ = false;
};

// --- server ---

Result<std::unique_ptr<ServerContext>> ServerContext::Create(uv_loop_t* loop, const ServerSettings& settings) {
  std::unique_ptr<ServerContext> ctx(new ServerContext());
  ctx->loop_ = loop;
  ctx->settings_ = settings;
  ctx->shared_ = std::make_shared<Shared>();
  int r = mbedtls_ssl_ticket_setup(&ctx->shared_->ticket, Random, nullptr, MBEDTLS_CIPHER_AES_256_GCM, 24 * 3600);
  if (r != 0) return Error::Internal("TLS session tickets: " + MbedError(r));
  mbedtls_ssl_cache_set_max_entries(&ctx->shared_->cache, 10000);
  if (settings.handshakes_off_loop) ctx->shared_->queue = std::make_shared<HandshakeQueue>(loop);
  if (Status s = ctx->SetIdentity(settings.cert_pem, settings.key_pem); !s) return s.take_error();
  return ctx;
}

ServerContext::~ServerContext() = default;

Status ServerContext::SetIdentity(const std::string& cert_pem, const std::string& key_pem) {
  auto c = std::make_shared<ServerConfig>();
  if (int r = ParseCerts(&c->cert, cert_pem); r != 0) return Error::Invalid("server certificate: " + MbedError(r));
  if (int r = ParseKey(&c->key, key_pem); r != 0) return Error::Invalid("server key: " + MbedError(r));
  if (int r = CheckKeyPair(c->cert.pk, c->key); r != 0) {
    return Error::Invalid("the server key is not the key of the server certificate: " + MbedError(r));
  }
  int r = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
  if (r != 0) return Error::Internal("TLS config: " + MbedError(r));
  CommonSetup(&c->conf);
  if ((r = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key)) != 0) {
    return Error::Invalid("server certificate and key: " + MbedError(r));
  }
  if (!settings_.client_ca_pem.empty()) {
    if ((r = ParseCerts(&c->client_ca, settings_.client_ca_pem)) != 0) {
      return Error::Invalid("client CA: " + MbedError(r));
    }
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->client_ca, nullptr);
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
  } else {
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
  }
  mbedtls_ssl_conf_session_tickets_cb(&c->conf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse, &shared_->ticket);
  mbedtls_ssl_conf_session_cache(&c->conf, &shared_->cache, mbedtls_ssl_cache_get, mbedtls_ssl_cache_set);
  settings_.cert_pem = cert_pem;
  settings_.key_pem = key_pem;
  config_ = std::move(c);
  return {};
}

std::unique_ptr<Stream> ServerContext::Wrap(std::unique_ptr<Stream> inner) {
  // The stream keeps both its configuration and the shared tickets and cache.
  auto keep = std::make_shared<std::pair<std::shared_ptr<ServerConfig>, std::shared_ptr<Shared>>>(config_, shared_);
  auto s = std::make_unique<TlsStream>(loop_, std::move(inner), &config_->conf, keep, nullptr, shared_->queue,
                                       settings_.handshake_timeout_ms);
  s->Begin("");
  return s;
}

// --- client ---

Result<std::shared_ptr<ClientContext>> ClientContext::Create(const ClientSettings& settings) {
  std::shared_ptr<ClientContext> ctx(new ClientContext());
  ctx->settings_ = settings;
  auto c = std::make_shared<ClientConfig>();
  int r = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
  if (r != 0) return Error::Internal("TLS config: " + MbedError(r));
  CommonSetup(&c->conf);
  if (!settings.ca_pem.empty()) {
    if ((r = ParseCerts(&c->ca, settings.ca_pem)) != 0) return Error::Invalid("CA certificate: " + MbedError(r));
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, nullptr);
  } else if (settings.pin_sha256.empty()) {
    return Error::Invalid("nothing to trust the server by: give a CA certificate or a pinned fingerprint");
  }
  c->pin = settings.pin_sha256;
  for (char& ch : c->pin) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  // With a pin alone mbedTLS has no CA to require: the chain is verified all the
  // same (Verify clears "not trusted" for the pinned top), and the handshake is
  // refused after it unless the result is clean (TlsStream::Pump).
  mbedtls_ssl_conf_authmode(&c->conf,
                            settings.ca_pem.empty() ? MBEDTLS_SSL_VERIFY_OPTIONAL : MBEDTLS_SSL_VERIFY_REQUIRED);
  if (!settings.cert_pem.empty()) {
    if ((r = ParseCerts(&c->cert, settings.cert_pem)) != 0) {
      return Error::Invalid("client certificate: " + MbedError(r));
    }
    if ((r = ParseKey(&c->key, settings.key_pem)) != 0) return Error::Invalid("client key: " + MbedError(r));
    if ((r = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key)) != 0) {
      return Error::Invalid("client certificate and key: " + MbedError(r));
    }
  }
  ctx->config_ = std::move(c);
  return ctx;
}

ClientContext::~ClientContext() = default;

std::unique_ptr<Stream> ClientContext::Wrap(uv_loop_t* loop, std::unique_ptr<Stream> inner, const std::string& host) {
  // An address is not checked against the certificate (mbedTLS 2.28 reads no
  // iPAddress names); a DNS name is.
  bool is_address = host.find(':') != std::string::npos ||
                    (!host.empty() && host.find_first_not_of("0123456789.") == std::string::npos);
  auto s = std::make_unique<TlsStream>(loop, std::move(inner), &config_->conf, config_, config_, nullptr,
                                       settings_.handshake_timeout_ms);
  s->Begin(is_address ? "" : host);
  return s;
}

Result<std::shared_ptr<ClientContext>> ClientContextFor(const std::string& pin, const std::string& ca_pem) {
  if (pin.empty() && ca_pem.empty()) return std::shared_ptr<ClientContext>();
  ClientSettings settings;
  settings.pin_sha256 = pin;
  settings.ca_pem = ca_pem;
  return ClientContext::Create(settings);
}

}  // namespace berth::net::tls
