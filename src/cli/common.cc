#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "base/clock.h"
#include "base/crypto.h"
#include "cli/config.h"
#include "net/http_client.h"
#include "net/tls.h"
#include "net/url.h"

namespace berth::cli {

namespace http = net::http;

int UsageError(const std::string& cmd, const std::string& message) {
  fprintf(stderr, "berth %s: %s\nRun 'berth %s --help' for usage.\n", cmd.c_str(), message.c_str(), cmd.c_str());
  return kUsage;
}

Result<std::shared_ptr<net::tls::ClientContext>> TrustFor(const Config& cfg) {
  std::string ca_pem;
  if (!cfg.ca_file.empty()) {
    if (!ReadFile(cfg.ca_file, &ca_pem) || ca_pem.empty()) {
      return Error::Invalid("CA file " + cfg.ca_file + ": cannot read it");
    }
  }
  std::string pin = cfg.Pin();
  if (pin.empty() && ca_pem.empty()) {
    return Error::Invalid("the server " + cfg.server +
                          " speaks TLS and nothing says which CA to trust: give a token that carries the CA "
                          "fingerprint (as the server and 'berth token create' print them: B10<sha256>::<secret>), "
                          "or a CA file (berth configure --ca-file PATH, or BERTH_CA_FILE)");
  }
  Result<std::shared_ptr<net::tls::ClientContext>> ctx = net::tls::ClientContextFor(pin, ca_pem);
  if (!ctx) return Error::Invalid("CA file " + cfg.ca_file + ": " + ctx.error().message);
  return ctx;
}

namespace {

// Sends one request to the configured server; with `on_body`, a 2xx answer's body
// streams there. Prints what went wrong and returns its exit code; on success the
// answer (its body, unless streamed) is in `response`.
int Fetch(const std::string& method, const std::string& target, const std::string& body, uint64_t timeout_ms,
          http::Client::BodyFn on_body, http::ClientResponse* response) {
  Result<Config> cfg = LoadConfig();
  if (!cfg) {
    fprintf(stderr, "berth: %s\n", cfg.error().message.c_str());
    return kUsage;
  }
  // The servers of a cluster, comma-separated: the first that answers is asked;
  // a follower's 307 leads to the leader, a cluster electing one is asked again.
  Result<std::vector<net::Endpoint>> listed = net::ParseServerList(cfg->server, 7070);
  if (!listed) {
    if (listed.error().message == "no server address") {
      fprintf(stderr, "berth: no server address; set one with 'berth configure --server URL' or BERTH_SERVER\n");
    } else {
      fprintf(stderr, "berth: %s\n", listed.error().message.c_str());
    }
    return kUsage;
  }
  std::vector<net::Endpoint> servers = std::move(listed.value());
  http::ClientRequest req;
  req.method = method;
  req.target = target;
  req.body = body;
  if (!body.empty()) req.headers.push_back({"Content-Type", "application/json"});
  std::string secret = crypto::SplitToken(cfg->token).secret;  // the pin stays here
  if (!secret.empty()) req.headers.push_back({"Authorization", "Bearer " + secret});
  http::ClientOptions opts;
  if (servers.front().tls) {
    Result<std::shared_ptr<net::tls::ClientContext>> trust = TrustFor(cfg.value());
    if (!trust) {
      fprintf(stderr, "berth: %s\n", trust.error().message.c_str());
      return kUsage;
    }
    opts.tls = trust.value();
  }
  opts.timeout_ms = timeout_ms;
  // Ctrl-C or a SIGTERM ends any call at once, a `logs -f` waiting for output too.
  opts.stop_on_signals = true;
  size_t next = 0;
  net::Endpoint ep = servers[next++];
  std::string failures;
  Result<http::ClientResponse> r = Error::Internal("not sent");
  for (int attempt = 0; attempt < 40; attempt++) {
    // (An error answer's body is buffered, not streamed: it is read below.)
    r = http::FetchSync(ep, req, opts, on_body);
    if (!r && r.error().code == "Interrupted") return r.error().message == "SIGINT" ? kInterrupted : kTerminated;
    if (!r) {
      failures += (failures.empty() ? "" : "; ") + ep.ToString() + ": " + r.error().message;
      // Another server is asked when this one could not be reached, or for a read
      // (a change that may have arrived is not sent twice).
      bool safe = method == "GET" || method == "HEAD" || r.error().code == "ConnectFailed";
      if (safe && next < servers.size()) {
        ep = servers[next++];
        continue;
      }
      break;
    }
    if (r->status == 307) {
      // A follower names the leader: the same request goes there (the same CA vouches for it).
      Result<net::Endpoint> leader = net::ParseOrigin(r->Header("location"), 7070);
      if (leader && leader->tls == ep.tls) {
        ep = leader.value();
        continue;
      }
    }
    if (r->status == 503 && r->body.find("\"NoLeader\"") != std::string::npos && attempt < 39) {
      usleep(250 * 1000);  // an election takes about a second
      continue;
    }
    break;
  }
  if (!r) {
    fprintf(stderr,
            "berth: cannot reach the server at %s: %s\n"
            "Is 'berth server' running there? Set the address with 'berth configure --server URL' or BERTH_SERVER.\n",
            cfg->server.c_str(), failures.c_str());
    return kUnreachable;
  }
  *response = std::move(r.value());
  if (response->status < 300) return kOk;
  Result<json::Doc> doc = json::Doc::Parse(response->body);
  std::string code = "HTTP" + std::to_string(response->status), message = response->body;
  if (doc && doc->view().Get("error").IsObject()) {
    code = std::string(doc->view().Get("error").Get("code").String());
    message = std::string(doc->view().Get("error").Get("message").String());
  }
  if (response->status == 401) {
    fprintf(stderr,
            "berth: the server refused the credentials (%s: %s)\n"
            "Set a valid token with 'berth configure --token TOKEN' or BERTH_TOKEN; the admin token is in the "
            "server's data directory (admin-token).\n",
            code.c_str(), message.c_str());
    return kAuth;
  }
  fprintf(stderr, "berth: %s: %s\n", code.c_str(), message.c_str());
  return kRefused;
}

}  // namespace

CallResult Call(const std::string& method, const std::string& target, const std::string& body) {
  CallResult out;
  http::ClientResponse r;
  out.exit = Fetch(method, target, body, 30000, nullptr, &r);
  if (out.exit) return out;
  Result<json::Doc> doc = json::Doc::Parse(r.body);
  if (!doc) {
    fprintf(stderr, "berth: the server sent an answer that is not JSON: %s\n", doc.error().message.c_str());
    out.exit = kRefused;
    return out;
  }
  out.body = std::move(doc.value());
  return out;
}

int CallRaw(const std::string& method, const std::string& target, std::string* body) {
  http::ClientResponse r;
  int exit = Fetch(method, target, "", 30000, nullptr, &r);
  if (exit == kOk) *body = std::move(r.body);
  return exit;
}

int CallStreamed(const std::string& target, const std::function<void(std::string_view)>& on_body) {
  http::ClientResponse r;
  return Fetch("GET", target, "", 24ull * 3600 * 1000, on_body, &r);
}

std::string Str(json::View v, const char* key) { return std::string(v.Get(key).String()); }
std::string Num(json::View v, const char* key) { return std::to_string(static_cast<int64_t>(v.Get(key).Number())); }

std::string Seconds(json::View v, const char* key) {
  double t = v.Get(key).Number();
  if (t <= 0) return "-";
  return UtcIso8601(static_cast<int64_t>(t) * 1000);
}

bool ReadFile(const std::string& path, std::string* out) {
  FILE* f = path == "-" ? stdin : fopen(path.c_str(), "rb");
  if (!f) return false;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    out->append(buf, n);
    if (out->size() > (8u << 20)) break;
  }
  if (f != stdin) fclose(f);
  return true;
}

std::string Age(json::View v, const char* key) {
  double t = v.Get(key).Number();
  if (t <= 0) return "-";
  int64_t secs = static_cast<int64_t>(time(nullptr) - static_cast<time_t>(t));
  if (secs < 0) secs = 0;
  if (secs < 120) return std::to_string(secs) + "s";
  if (secs < 7200) return std::to_string(secs / 60) + "m";
  if (secs < 172800) return std::to_string(secs / 3600) + "h";
  return std::to_string(secs / 86400) + "d";
}

}  // namespace berth::cli
