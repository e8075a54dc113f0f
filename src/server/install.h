// What a new box needs to join the cluster from this server alone
// (docs/install.md): the installer, this server's own binary with its checksum,
// the uninstaller and the systemd units (built in from the tree, base/embedded.h),
// the pin of this server's TLS key, and a check of a join token. All public
// routes: nobody on the new box holds a credential the server knows yet, so they
// carry the small bounds of unauthenticated traffic (no body, the preauth
// deadline); the install line pins the server's key and the installer the CA.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/result.h"

namespace berth::model {
class State;
}
namespace berth::net::http {
class Router;
}

namespace berth::server {

struct InstallOptions {
  bool tls = true;  // the scheme of the URL the installer is told to use
  // The server's TLS key (PEM) at the time of the call: renewals keep it, but a
  // broken key is replaced, so it is read each time.
  std::function<std::string()> server_key_pem;
  const model::State* state = nullptr;  // tokens, for GET /install/token
  std::function<int64_t()> now_ms;
};

// The running binary (/proc/self/exe), opened once with its SHA-256 computed
// once, served from the open descriptor: an upgrade that replaces the file on
// disk does not change what this process serves.
class SelfBinary {
 public:
  static Result<std::unique_ptr<SelfBinary>> Open();
  ~SelfBinary();
  int fd() const { return fd_; }
  int64_t size() const { return size_; }
  const std::string& sha256_hex() const { return sha256_hex_; }

 private:
  SelfBinary() = default;
  int fd_ = -1;
  int64_t size_ = 0;
  std::string sha256_hex_;
};

// Adds GET /install.sh, GET /download/{file}, GET /install/pin and
// GET /install/token. `binary` may be null (the binary is then not served:
// 404); it and `options` must outlive the router.
void AddInstallRoutes(net::http::Router* router, const SelfBinary* binary, const InstallOptions* options);

// The URL the installer is told to reach this server at: scheme and the Host
// header when it reads as a host name or address with an optional port, else
// empty (the installer then needs --server).
std::string ServedFromUrl(bool tls, std::string_view host_header);

}  // namespace berth::server
