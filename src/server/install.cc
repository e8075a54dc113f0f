#include "server/install.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/clock.h"
#include "base/crypto.h"
#include "base/embedded.h"
#include "base/json.h"
#include "base/log.h"
#include "model/state.h"
#include "net/file_body.h"
#include "net/http_server.h"
#include "net/pki.h"
#include "net/router.h"

namespace berth::server {

namespace {

namespace http = net::http;

constexpr const char kBinaryName[] = "berth-linux-amd64";
constexpr size_t kReadChunk = 256 * 1024;
// The line of packaging/install.sh that the server fills in with its URL.
constexpr std::string_view kServedFromLine = "served_from=''\n";

bool HostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

void ServeBinary(const http::ExchangePtr& ex, const SelfBinary& binary) {
  ex->Begin(200, {{"X-Berth-Sha256", binary.sha256_hex()}}, binary.size(), "application/octet-stream");
  if (ex->request().method == "HEAD") return ex->End();
  http::SendFileRange(ex, binary.fd(), 0, binary.size(), false, "the server's binary");
}

http::Response Text(std::string body, std::string content_type = "text/plain; charset=utf-8") {
  http::Response r;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

// GET /install/token: whether the bearer token may join (docs/install.md).
http::Response CheckToken(const InstallOptions& o, const http::Request& req) {
  auto refuse = [](std::string message) {
    http::Response r = http::ErrorResponse(401, "Unauthorized", message);
    r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"berth\""});
    return r;
  };
  std::string_view auth = req.Header("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size() || auth.substr(0, kBearer.size()) != kBearer) {
    return refuse("send the join token as 'Authorization: Bearer <token>'");
  }
  const model::Token* t = o.state->FindTokenBySecret(auth.substr(kBearer.size()));
  if (!t || t->access_key()) {
    return refuse(
        "the server does not know this token (revoked, or of another cluster): make a new one with "
        "'berth join-command'");
  }
  int64_t now = o.now_ms();
  if (t->expires_ms && t->expires_ms <= now) {
    return refuse("the token " + t->id + " expired at " + UtcIso8601(t->expires_ms) +
                  ": make a new one with 'berth join-command'");
  }
  json::Doc d = json::Doc::Object();
  d.Set("id", t->id).Set("role", t->role);
  if (t->expires_ms) d.Set("expiresAt", static_cast<double>(t->expires_ms) / 1000.0);
  if (t->uses_left >= 0) d.Set("usesLeft", t->uses_left);
  return http::JsonResponse(200, d.Print());
}

}  // namespace

Result<std::unique_ptr<SelfBinary>> SelfBinary::Open() {
  std::unique_ptr<SelfBinary> b(new SelfBinary());
  b->fd_ = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (b->fd_ < 0) return Error::Internal(std::string("/proc/self/exe: ") + strerror(errno));
  struct stat st {};
  if (fstat(b->fd_, &st) != 0) return Error::Internal(std::string("/proc/self/exe: ") + strerror(errno));
  b->size_ = st.st_size;
  crypto::Sha256Stream hash;
  std::vector<char> buf(kReadChunk);
  for (int64_t pos = 0; pos < b->size_;) {
    ssize_t n = pread(b->fd_, buf.data(), buf.size(), static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::Internal(std::string("reading /proc/self/exe: ") + strerror(n < 0 ? errno : EIO));
    hash.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    pos += n;
  }
  b->sha256_hex_ = crypto::Hex(hash.Finish());
  return b;
}

SelfBinary::~SelfBinary() {
  if (fd_ >= 0) close(fd_);
}

std::string ServedFromUrl(bool tls, std::string_view host) {
  if (host.empty() || host.size() > 260) return "";
  std::string_view name = host, port;
  if (host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return "";
    for (char c : host.substr(1, close - 1)) {
      if (!isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return "";
    }
    name = host.substr(0, close + 1);
    std::string_view after = host.substr(close + 1);
    if (!after.empty() && after.front() != ':') return "";
    port = after.empty() ? after : after.substr(1);
  } else {
    size_t colon = host.find(':');
    if (colon != std::string_view::npos) {
      name = host.substr(0, colon);
      port = host.substr(colon + 1);
      if (port.empty()) return "";
    }
    if (name.empty() || name.size() > 253) return "";
    for (char c : name) {
      if (!HostChar(c)) return "";
    }
  }
  if (port.size() > 5) return "";
  for (char c : port) {
    if (c < '0' || c > '9') return "";
  }
  return std::string(tls ? "https://" : "http://") + std::string(host);
}

void AddInstallRoutes(http::Router* router, const SelfBinary* binary, const InstallOptions* options) {
  http::RouteOptions open;
  open.access = http::Access::kOpen;
  open.max_body = 0;
  open.audit = false;
  router->Add(
      "GET", "/install.sh",
      [options](const http::ExchangePtr& ex) {
        std::string script(embedded::Find("install.sh").value_or(""));
        std::string url = ServedFromUrl(options->tls, ex->request().Header("host"));
        // The URL passed ServedFromUrl's check: host characters only, nothing the
        // shell would read inside single quotes.
        if (size_t at = script.find(kServedFromLine); at != std::string::npos && !url.empty()) {
          script.replace(at, kServedFromLine.size(), "served_from='" + url + "'\n");
        }
        ex->Respond(Text(std::move(script), "text/x-shellscript; charset=utf-8"));
      },
      open);
  router->Add(
      "GET", "/download/{file}",
      [binary](const http::ExchangePtr& ex) {
        std::string_view file = ex->request().Param("file");
        if (file == kBinaryName || file == std::string(kBinaryName) + ".sha256") {
          if (!binary) {
            return ex->Respond(http::ErrorResponse(404, "NotFound",
                                                   "this server does not serve its binary (/proc/self/exe was "
                                                   "unreadable at start; see its log)"));
          }
          if (file == kBinaryName) return ServeBinary(ex, *binary);
          return ex->Respond(Text(binary->sha256_hex() + "  " + kBinaryName + "\n"));
        }
        if (file == "berth-uninstall.sh" || file == "berth-agent.service" || file == "berth-server.service") {
          return ex->Respond(Text(std::string(embedded::Find(file).value_or(""))));
        }
        ex->Respond(http::ErrorResponse(404, "NotFound",
                                        "no such download; there are " + std::string(kBinaryName) + ", " + kBinaryName +
                                            ".sha256, berth-uninstall.sh, berth-agent.service and "
                                            "berth-server.service"));
      },
      open);
  router->Add(
      "GET", "/install/pin",
      [options](const http::ExchangePtr& ex) {
        if (!options->tls) {
          return ex->Respond(http::ErrorResponse(404, "NotFound", "this server runs without TLS (--no-tls)"));
        }
        Result<std::string> pin = net::pki::PublicKeyPin(options->server_key_pem());
        if (!pin) return ex->Respond(http::ErrorResponse(pin.error()));
        ex->Respond(http::JsonResponse(200, json::Doc::Object().Set("pin", pin.value()).Print()));
      },
      open);
  router->Add(
      "GET", "/install/token",
      [options](const http::ExchangePtr& ex) { ex->Respond(CheckToken(*options, ex->request())); }, open);
}

}  // namespace berth::server
