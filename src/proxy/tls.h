// TLS termination for the proxy's HTTPS and TLS listeners: certificates parsed
// once per document, a per-listener mbedTLS configuration that picks a
// certificate by SNI, and a per-connection engine over in-memory buffers that
// the proxy's Pipe drives between uv_read and its owner, and between its owner's
// writes and uv_write. Handshakes run on the worker's own loop thread: the
// proxy's workers are its own threads, and a handshake step is a few ms of CPU
// at most, never I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace berth::proxy {

// A certificate chain (leaf first) and its private key, parsed and checked;
// read-only afterwards, so every worker thread may hand it to handshakes.
class Identity {
 public:
  // Errors start with the field at fault: "certPem: ..." or "keyPem: ...".
  static Result<std::shared_ptr<const Identity>> Load(const std::string& cert_pem, const std::string& key_pem);
  ~Identity();
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;

  // The names the leaf covers: its DNS subjectAltNames, else its subject CN.
  const std::vector<std::string>& names() const { return names_; }

  struct Parts;
  Parts* parts() const { return parts_.get(); }

 private:
  Identity();
  std::unique_ptr<Parts> parts_;
  std::vector<std::string> names_;
};

// True when a certificate name covers `host` (both compared without case): the
// same name, or "*.rest" against a host of one more label ending in ".rest".
bool NameCovers(std::string_view pattern, std::string_view host);

// Which of a listener's certificates answers a handshake for `server_name` (SNI):
// the first whose names cover it, else the first (0). `names[i]` are the names of
// certificate i.
size_t PickCertificate(const std::vector<std::vector<std::string>>& names, std::string_view server_name);

// Session-ticket keys, shared by every listener of one proxy (so a ticket stays
// good across new documents); thread-safe (mbedTLS locks it).
class TicketKeys {
 public:
  static Result<std::shared_ptr<TicketKeys>> Create();
  ~TicketKeys();
  struct Parts;
  Parts* parts() const { return parts_.get(); }

 private:
  TicketKeys();
  std::unique_ptr<Parts> parts_;
};

// One HTTPS or TLS listener's TLS settings under one document: its certificates
// in order (the first is the default). Read-only once made; shared by the
// connections that started under it, which keep it while they last.
class TlsContext {
 public:
  static Result<std::shared_ptr<const TlsContext>> Create(std::vector<std::shared_ptr<const Identity>> identities,
                                                          std::shared_ptr<TicketKeys> tickets);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  struct Parts;
  Parts* parts() const { return parts_.get(); }

 private:
  TlsContext();
  std::unique_ptr<Parts> parts_;
};

// The server side of one TLS connection, over buffers: ciphertext in by Feed,
// out by out(); plaintext out by Read, in by Write. Single-threaded.
class TlsSession {
 public:
  explicit TlsSession(std::shared_ptr<const TlsContext> context);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  void Feed(const char* data, size_t len);
  enum class Step { kMore, kDone, kFailed };
  // Runs the handshake as far as the bytes fed allow; kDone once finished.
  Step Handshake();
  bool handshake_done() const { return done_; }
  // Decrypts into `buf`: > 0 bytes; 0 when more ciphertext is needed; -1 at the
  // peer's close_notify; -2 on an error (error()).
  long Read(char* buf, size_t cap);
  // Encrypts `plain`; the records wait in out(). False on an error.
  bool Write(std::string_view plain);
  void CloseNotify();
  // Ciphertext to send; the caller empties it.
  std::string& out();
  const std::string& error() const { return error_; }

 private:
  struct Engine;
  std::unique_ptr<Engine> e_;
  bool done_ = false;
  std::string error_;
};

}  // namespace berth::proxy
