// The byte-stream seam under HTTP. HTTP code reads and writes a Stream and never
// sees a socket, so TLS (a Stream wrapping a Stream) slots in without touching it,
// and tests can drive HTTP over an in-memory stream.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace berth::net {

class Stream {
 public:
  // Callbacks on the loop thread. After Close() none fires.
  class Handler {
   public:
    virtual ~Handler() = default;
    // Bytes arrived. `data` is valid only during the call.
    virtual void OnData(std::string_view data) = 0;
    // The peer finished sending (err == 0) or the stream failed (libuv error code).
    // Writes may still be pending; the handler decides when to Close().
    virtual void OnEnd(int err) = 0;
    // Every queued write has been handed to the kernel.
    virtual void OnDrained() {}
  };

  virtual ~Stream() = default;
  virtual void SetHandler(Handler* handler) = 0;
  virtual void ReadStart() = 0;
  virtual void ReadStop() = 0;
  // Queues `data` for sending, in order. A failure is reported through OnEnd.
  virtual void Write(std::string data) = 0;
  virtual void Write(std::string_view data) { Write(std::string(data)); }
  // Bytes queued but not yet handed to the kernel.
  virtual size_t PendingWriteBytes() const = 0;
  // Sends FIN after the queued writes.
  virtual void Shutdown() = 0;
  // Releases the stream at once; pending writes are dropped. Safe to destroy after.
  virtual void Close() = 0;
  // The peer's address as "ip:port" or the socket path, for logs.
  virtual std::string PeerName() const = 0;
  // TLS: true over a TLS session.
  virtual bool Secure() const { return false; }
  // TLS: the common name of the certificate the peer proved it holds, verified
  // against the CA the server was given (mutual TLS); empty otherwise.
  virtual std::string PeerCertificateName() const { return {}; }
  // TLS: that certificate's serial number (hex); empty otherwise.
  virtual std::string PeerCertificateSerial() const { return {}; }
  // Why the stream ended, in words, when its error code says too little (a TLS
  // handshake refused, and why); empty otherwise.
  virtual std::string FailureText() const { return {}; }
};

}  // namespace berth::net
