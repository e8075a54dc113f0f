// TLS over the Stream seam, by mbedTLS: a TLS stream wraps any Stream (a TCP
// connection, or an in-memory pair in tests), so HTTP code never sees it.
//
// Only TLS 1.2 (what Debian's mbedTLS 2.28 offers) with ECDHE key exchange and an
// AEAD cipher (AES-GCM or ChaCha20-Poly1305). Servers resume sessions by tickets
// and by a session cache; clients keep their last session and offer it again.
//
// A client trusts a server through a CA certificate, or through a pin: the SHA-256
// fingerprint of the CA certificate (what berth's tokens carry), checked against
// the top of the chain the server sends. A refused chain ends the stream with a
// FailureText() that says why (for a pin: both fingerprints).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "net/stream.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;
struct mbedtls_pk_context;
struct mbedtls_ssl_config;

namespace berth::net::tls {

struct ServerSettings {
  std::string cert_pem;  // the server's certificate, then the chain up to the CA
  std::string key_pem;
  // When set, a client may present a certificate signed by this CA (mutual TLS);
  // the stream's PeerCertificateName() is then its subject's common name.
  std::string client_ca_pem;
  uint64_t handshake_timeout_ms = 10000;
  // Handshake steps (an ECDHE key, a signature, a shared secret: about 1.5 ms of
  // CPU on mbedTLS 2.28) run on libuv's thread pool, at most a few at once, so a
  // storm of new connections never stalls the loop. Off: on the loop thread
  // (deterministic, for a harness that turns the loop by hand).
  bool handshakes_off_loop = true;
};

struct ClientSettings {
  std::string ca_pem;      // trusted CA certificates (PEM); or
  std::string pin_sha256;  // the hex SHA-256 of the DER of the CA the chain must end at
  // The client's own certificate and key, for a server that asks (mutual TLS).
  std::string cert_pem;
  std::string key_pem;
  uint64_t handshake_timeout_ms = 30000;
};

class ServerConfig;
class ClientConfig;

// The server side: certificates, tickets and the session cache, shared by every
// connection a server accepts. Called on the loop thread only (handshake steps
// it sends to the pool touch only their own connection and the thread-safe cache,
// tickets and key).
class ServerContext {
 public:
  static Result<std::unique_ptr<ServerContext>> Create(uv_loop_t* loop, const ServerSettings& settings);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // New handshakes use this certificate and key (renewal); connections already
  // open keep theirs.
  Status SetIdentity(const std::string& cert_pem, const std::string& key_pem);
  // Starts the server side of a handshake on `inner`.
  std::unique_ptr<Stream> Wrap(std::unique_ptr<Stream> inner);

 private:
  ServerContext() = default;
  struct Shared;
  uv_loop_t* loop_ = nullptr;
  ServerSettings settings_;
  std::shared_ptr<Shared> shared_;  // tickets and cache, outliving every config
  std::shared_ptr<ServerConfig> config_;
};

// The client side: what it trusts, its own certificate, and the last session (to
// resume). Single-threaded (the loop thread).
class ClientContext {
 public:
  static Result<std::shared_ptr<ClientContext>> Create(const ClientSettings& settings);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // Starts the client side of a handshake on `inner`, to `host` (a DNS name is
  // checked against the certificate; an address is not: the pin or CA vouches).
  std::unique_ptr<Stream> Wrap(uv_loop_t* loop, std::unique_ptr<Stream> inner, const std::string& host);
  const std::string& pin() const { return settings_.pin_sha256; }

 private:
  friend class TlsStream;
  ClientContext() = default;
  ClientSettings settings_;
  std::shared_ptr<ClientConfig> config_;
};

// What berth's TLS servers share with the proxy's (src/proxy/tls.cc), which
// drives mbedTLS on its own loops:
// TLS 1.2 only, ECDHE with an AEAD cipher, the curves fastest first, the RNG, no
// renegotiation.
void ConfigureProtocol(mbedtls_ssl_config* conf);
// Parses a PEM private key into `pk` (initialised); an EC key is held ready to
// sign fast from several threads. 0 or an mbedTLS error code.
int ParsePrivateKey(mbedtls_pk_context* pk, const std::string& pem);
// 0 when `prv` is the private key of the public key `pub`, else an mbedTLS error.
int CheckKeyPair(const mbedtls_pk_context& pub, const mbedtls_pk_context& prv);
// An mbedTLS error code in words.
std::string MbedError(int code);

// The client context for a server trusted by `pin` (a token's) and/or the CA
// certificates in `ca_pem`; nullptr, and no error, when both are empty.
Result<std::shared_ptr<ClientContext>> ClientContextFor(const std::string& pin, const std::string& ca_pem);

}  // namespace berth::net::tls
