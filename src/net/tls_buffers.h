// mbedTLS's I/O over memory: the ciphertext read from a socket and not yet
// taken by mbedTLS, and the ciphertext mbedTLS wrote and the socket has not yet
// taken. The callbacks never block and never touch a socket, so a TLS engine
// can run wherever its owner pumps it (net/tls.cc's streams, the proxy's
// connections in proxy/tls.cc).
#pragma once

#include <mbedtls/ssl.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace berth::net::tls {

struct CipherBuffers {
  std::string in;  // ciphertext not yet read by mbedTLS, from in_pos
  size_t in_pos = 0;
  bool in_eof = false;  // the peer's side ended: reads give 0 once `in` is empty
  std::string out;      // ciphertext mbedTLS wrote, not yet handed down

  bool HasInput() const { return in_pos < in.size(); }
  // Points `ssl`'s I/O at these buffers (which must outlive it).
  void Attach(mbedtls_ssl_context* ssl) { mbedtls_ssl_set_bio(ssl, this, &Send, &Recv, nullptr); }

  static int Send(void* self, const unsigned char* buf, size_t len) {
    static_cast<CipherBuffers*>(self)->out.append(reinterpret_cast<const char*>(buf), len);
    return static_cast<int>(len);
  }
  static int Recv(void* self, unsigned char* buf, size_t len) {
    auto* b = static_cast<CipherBuffers*>(self);
    size_t left = b->in.size() - b->in_pos;
    if (left == 0) return b->in_eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = std::min(len, left);
    memcpy(buf, b->in.data() + b->in_pos, n);
    b->in_pos += n;
    if (b->in_pos == b->in.size()) {
      b->in.clear();
      b->in_pos = 0;
    }
    return static_cast<int>(n);
  }
};

}  // namespace berth::net::tls
