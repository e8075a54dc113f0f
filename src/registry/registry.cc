#include "registry/registry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>

#include "base/clock.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "model/state.h"
#include "net/file_body.h"
#include "net/http_client.h"
#include "net/uv.h"
#include "net/work.h"
#include "registry/names.h"
#include "store/store.h"

namespace berth::registry {

namespace http = net::http;

// The runtime side of an upload session: its open file, and whether a request
// is writing to it now.
struct Registry::Session {
  std::unique_ptr<UploadFile> file;
  uint64_t writer = 0;  // generation of the request that may write
  bool busy = false;    // that request is still running
  std::weak_ptr<net::http::Exchange> writer_ex;
  bool done = false;  // completed or cancelled; the EndUpload command is on its way
};

namespace {

constexpr size_t kReadChunk = 256 * 1024;
constexpr int64_t kStrayUploadMs = 3600 * 1000;

const http::Header kApiVersion{"Docker-Distribution-API-Version", "registry/2.0"};

// An answer in the OCI error shape: {"errors":[{"code","message","detail"}]}.
http::Response OciError(int status, std::string_view code, std::string_view message, std::string_view detail = {}) {
  http::Response r;
  r.status = status;
  json::Doc err = json::Doc::Object();
  err.Set("code", code).Set("message", message);
  if (!detail.empty())
    err.Set("detail", detail);
  else
    err.Set("detail", json::Doc::Object());
  r.body = json::Doc::Object().Set("errors", json::Doc::Array().Push(err)).Print();
  r.headers.push_back(kApiVersion);
  return r;
}

// A state or storage error in OCI terms.
http::Response OciError(const Error& e) {
  const std::string& c = e.code;
  if (c == "RepositoryNotFoundException") return OciError(404, "NAME_UNKNOWN", e.message);
  if (c == "ImageTagAlreadyExistsException") return OciError(403, "DENIED", e.message);
  if (c == "ImageNotFoundException") return OciError(404, "MANIFEST_UNKNOWN", e.message);
  if (c == "InvalidParameterException") return OciError(400, "NAME_INVALID", e.message);
  if (c == "STORAGE_FULL") return OciError(507, "UNKNOWN", e.message);
  if (c == "MANIFEST_BLOB_UNKNOWN" || c == "MANIFEST_INVALID" || c == "BLOB_UPLOAD_INVALID" || c == "DIGEST_INVALID") {
    return OciError(400, c, e.message);
  }
  if (c == "BLOB_UPLOAD_UNKNOWN") return OciError(404, c, e.message);
  if (e.kind == ErrorKind::kUnavailable) return OciError(503, "UNKNOWN", e.message);
  return OciError(http::StatusFor(e.kind) >= 500 ? http::StatusFor(e.kind) : 400, "UNKNOWN", e.message);
}

http::Response Empty(int status) {
  http::Response r;
  r.status = status;
  r.content_type.clear();
  r.headers.push_back(kApiVersion);
  return r;
}

// 201 for a blob stored under `digest` in repository `name`.
http::Response BlobCreated(const std::string& name, const std::string& digest) {
  http::Response ok = Empty(201);
  ok.headers.push_back({"Location", "/v2/" + name + "/blobs/" + digest});
  ok.headers.push_back({"Docker-Content-Digest", digest});
  return ok;
}

// The answer to a VerifyAndStore failure (DIGEST_INVALID names the digest claimed).
http::Response StoreFailure(const Error& e, const std::string& digest) {
  if (e.code == "DIGEST_INVALID") return OciError(400, "DIGEST_INVALID", e.message, digest);
  return OciError(e);
}

bool HasBody(const http::Request& req) {
  std::string_view te = req.Header("transfer-encoding");
  if (!te.empty()) return true;
  std::string_view cl = req.Header("content-length");
  return !cl.empty() && cl != "0";
}

// A reply for a request whose body (if any) the handler does not read: it goes
// out at the end of the message, so the connection stays open for the next
// request, or at once when a body is still arriving (which is then not read and
// the connection closes). Made at header time; may be called later, once.
std::function<void(http::Response)> AtEnd(const http::ExchangePtr& ex) {
  struct Later {
    bool complete = false;
    std::optional<http::Response> answer;
  };
  auto later = std::make_shared<Later>();
  if (!ex->route().options.stream_body) {
    later->complete = true;
  } else {
    ex->on_body = nullptr;
    ex->on_body_end = [ex, later] {
      later->complete = true;
      if (later->answer) ex->Respond(std::move(*later->answer));
    };
  }
  return [ex, later](http::Response r) {
    if (later->complete || HasBody(ex->request())) {
      ex->Respond(std::move(r));
    } else {
      later->answer = std::move(r);
    }
  };
}

void Answer(const http::ExchangePtr& ex, http::Response r) { AtEnd(ex)(std::move(r)); }

std::string RangeValue(uint64_t size) { return "0-" + std::to_string(size == 0 ? 0 : size - 1); }

std::string NewId() {
  uint8_t raw[16];
  if (!crypto::RandomBytes(raw, sizeof raw)) abort();  // the kernel refusing randomness is fatal
  return crypto::Hex(raw, sizeof raw);
}

std::string ScopeAction(std::string_view method) {
  if (method == "GET" || method == "HEAD") return "pull";
  if (method == "DELETE") return "delete";
  return "push";
}

// The request's Host if it is a plausible host[:port], for URLs we hand out.
std::string HostOf(const http::Request& req) {
  std::string_view h = req.Header("host");
  if (h.empty() || h.size() > 255) return "127.0.0.1";
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == ':' || c == '[' || c == ']';
    if (!ok) return "127.0.0.1";
  }
  return std::string(h);
}

// The whole query, with repeated keys kept (Docker sends several scope=).
std::vector<std::pair<std::string, std::string>> QueryPairs(std::string_view q) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string k, v;
    if (!http::UrlDecode(pair.substr(0, eq), &k, true)) continue;
    if (eq != std::string_view::npos && !http::UrlDecode(pair.substr(eq + 1), &v, true)) continue;
    out.emplace_back(std::move(k), std::move(v));
  }
  return out;
}

}  // namespace

Registry::Registry(uv_loop_t* loop, RegistryState* state, const model::State* model, store::Store* store,
                   const Clock* clock, Options options)
    : loop_(loop),
      state_(state),
      model_(model),
      store_(store),
      clock_(clock),
      options_(std::move(options)),
      blobs_(options_.dir),
      auth_(model, options_.token_ttl_ms) {}

Registry::~Registry() = default;

Status Registry::Start() {
  if (Status s = blobs_.Init(); !s) return s;
  state_->OnBlobsRemoved(
      [this](const std::vector<std::string>& digests, int64_t mark_ms) { RemoveCollected(digests, mark_ms); });
  if (options_.gc_interval_ms > 0) {
    gc_timer_ = std::make_unique<net::Timer>(loop_);
    uint64_t every = static_cast<uint64_t>(options_.gc_interval_ms);
    gc_timer_->Start(every, every, [this] {
      if (Acting()) (void)CollectGarbage(false);
    });
    gc_timer_->Unref();
  }
  upload_timer_ = std::make_unique<net::Timer>(loop_);
  uint64_t sweep = static_cast<uint64_t>(std::clamp<int64_t>(options_.upload_expiry_ms / 4, 1000, 60000));
  upload_timer_->Start(sweep, sweep, [this] { ExpireUploads(); });
  upload_timer_->Unref();
  if (options_.lifecycle_interval_ms > 0) {
    lifecycle_timer_ = std::make_unique<net::Timer>(loop_);
    uint64_t every = static_cast<uint64_t>(options_.lifecycle_interval_ms);
    lifecycle_timer_->Start(every, every, [this] {
      if (Acting()) ApplyLifecyclePolicies();
    });
    lifecycle_timer_->Unref();
  }
  return {};
}

void Registry::Stop() {
  gc_timer_.reset();
  upload_timer_.reset();
  lifecycle_timer_.reset();
}

void Registry::AddRoutes(http::Router* router) {
  http::RouteOptions plain;
  plain.access = http::Access::kRegistry;  // authenticated here, with OCI errors and Docker's challenge
  http::RouteOptions streamed = plain;
  streamed.stream_body = true;
  streamed.max_body = options_.max_blob_bytes;
  auto handle = [this](const ExchangePtr& ex) { HandleV2(ex); };
  router->Add("GET", "/v2", handle, plain);
  for (const char* m : {"GET", "DELETE"}) router->Add(m, "/v2/{rest...}", handle, plain);
  for (const char* m : {"POST", "PUT", "PATCH"}) router->Add(m, "/v2/{rest...}", handle, streamed);
  AddRepositoryRoutes(router);
  http::RouteOptions peer;
  peer.access = http::Access::kPeer;
  peer.audit = false;
  router->Add(
      "GET", "/v1/registry/peer/blobs/{digest}", [this](const ExchangePtr& ex) { PeerGetBlob(ex); }, peer);
  peer.stream_body = true;
  peer.max_body = options_.max_blob_bytes;
  router->Add(
      "PUT", "/v1/registry/peer/blobs/{digest}", [this](const ExchangePtr& ex) { PeerPutBlob(ex); }, peer);
}

// --- /v2/: authentication and dispatch ---

void Registry::HandleV2(const ExchangePtr& ex) {
  http::Request& req = ex->request();
  std::string rest(req.Param("rest"));
  if (req.method == "GET" && rest == "token") return HandleToken(ex);
  V2Path p;
  std::string action = ScopeAction(req.method);
  if (!rest.empty() && rest != "_catalog") {
    p = ParseV2Path(rest);
    if (p.kind == V2Path::Kind::kInvalid) {
      return Answer(ex, OciError(404, "NAME_UNKNOWN", "no OCI distribution endpoint at /v2/" + rest.substr(0, 300)));
    }
    if (!IsValidName(p.name)) {
      return Answer(ex, OciError(400, "NAME_INVALID",
                                 "repository name '" + p.name.substr(0, 300) +
                                     "' is not valid: lower-case letters and digits, separated by '.', '_', '__', "
                                     "'-' or '/', at most 255 characters"));
    }
  }
  Caller caller;
  std::string why;
  Auth::Outcome who = auth_.Identify(req, clock_->NowUnixMs(), &caller, &why);
  std::string scope = rest.empty()         ? ""
                      : rest == "_catalog" ? "registry:catalog:*"
                                           : "repository:" + p.name + ":" + (action == "push" ? "pull,push" : action);
  auto challenge = [&](std::string_view error, std::string message) {
    http::Response r = OciError(401, "UNAUTHORIZED", message);
    std::string v = "Bearer realm=\"" + std::string(req.tls ? "https://" : "http://") + HostOf(req) +
                    "/v2/token\",service=\"berth\"";
    if (!scope.empty()) v += ",scope=\"" + scope + "\"";
    if (!error.empty()) v += ",error=\"" + std::string(error) + "\"";
    r.headers.push_back({"WWW-Authenticate", v});
    Answer(ex, std::move(r));
  };
  if (who == Auth::Outcome::kNone) {
    const Repository* repo = p.name.empty() ? nullptr : state_->FindRepository(p.name);
    if (!repo || !repo->anonymous_pull || action != "pull") {
      return challenge("", "authentication required: docker login with a berth token as the password");
    }
    caller.subject = caller.role = "anonymous";
  }
  if (who == Auth::Outcome::kInvalid) {
    return challenge("invalid_token", why.empty() ? "the credentials are not valid" : why);
  }
  if (who != Auth::Outcome::kNone) ex->principal = caller.subject;  // the HTTP server's pre-auth bounds end here
  if (rest.empty()) {
    http::Response r;
    r.body = "{}";
    r.headers.push_back(kApiVersion);
    return Answer(ex, std::move(r));
  }
  if (rest == "_catalog") {
    if (!auth_.Allows(caller, "", "catalog"))
      return challenge("insufficient_scope", "the token does not cover the catalog");
    return HandleCatalog(ex, caller);
  }
  if (!Auth::RoleAllows(caller.role, action)) {
    return Answer(ex,
                  OciError(403, "DENIED", "a token with role " + caller.role + " may not " + action + " " + p.name));
  }
  if (!auth_.Allows(caller, p.name, action)) {
    return challenge("insufficient_scope", "the token does not allow " + action + " on " + p.name);
  }
  const std::string& m = req.method;
  switch (p.kind) {
    case V2Path::Kind::kBlob:
      if (m == "GET" || m == "HEAD") return GetBlob(ex, p.name, p.reference);
      if (m == "DELETE") {
        return Answer(ex, OciError(405, "UNSUPPORTED",
                                   "blobs are removed by garbage collection once no manifest references them"));
      }
      break;
    case V2Path::Kind::kManifest:
      if (m == "GET" || m == "HEAD") return GetManifest(ex, p.name, p.reference);
      if (m == "PUT") return PutManifestRequest(ex, p.name, p.reference);
      if (m == "DELETE") return DeleteManifestRequest(ex, p.name, p.reference);
      break;
    case V2Path::Kind::kTags:
      if (m == "GET" || m == "HEAD") return ListTags(ex, p.name);
      break;
    case V2Path::Kind::kReferrers:
      if (m == "GET" || m == "HEAD") return Referrers(ex, p.name, p.reference);
      break;
    case V2Path::Kind::kUploadStart:
      if (m == "POST") return StartUploadRequest(ex, p.name, caller);
      break;
    case V2Path::Kind::kUpload: return UploadRequest(ex, p.name, p.reference);
    case V2Path::Kind::kInvalid: break;
  }
  Answer(ex, OciError(405, "UNSUPPORTED", m + " is not supported on /v2/" + rest.substr(0, 300)));
}

void Registry::HandleToken(const ExchangePtr& ex) {
  Caller caller;
  std::string why;
  Auth::Outcome who = auth_.Identify(ex->request(), clock_->NowUnixMs(), &caller, &why);
  if (who == Auth::Outcome::kNone) caller.subject = caller.role = "anonymous";  // pulls where allowed
  if (who == Auth::Outcome::kInvalid || caller.scoped) {
    http::Response r = OciError(
        401, "UNAUTHORIZED",
        why.empty() ? "the token endpoint needs HTTP Basic credentials: any user name and a berth token (or an ECR "
                      "password) as the password"
                    : why);
    r.headers.push_back({"WWW-Authenticate", "Basic realm=\"berth\""});
    return ex->Respond(std::move(r));
  }
  if (who != Auth::Outcome::kNone) ex->principal = caller.subject;
  std::vector<std::string> requested;
  for (auto& [k, v] : QueryPairs(ex->request().query)) {
    if (k != "scope") continue;
    // Several scopes may share one parameter, separated by spaces.
    size_t start = 0;
    while (start < v.size() && requested.size() < 32) {
      size_t sp = v.find(' ', start);
      if (sp == std::string::npos) sp = v.size();
      if (sp > start) requested.push_back(v.substr(start, sp - start));
      start = sp + 1;
    }
  }
  std::vector<std::string> granted;
  int64_t now = clock_->NowUnixMs();
  auto anonymous_pull = [this](std::string_view name) {
    const Repository* r = state_->FindRepository(name);
    return r && r->anonymous_pull;
  };
  std::string token = auth_.Issue(caller, requested, now, anonymous_pull, &granted);
  http::Response r;
  r.body = json::Doc::Object()
               .Set("token", token)
               .Set("access_token", token)
               .Set("expires_in", auth_.token_ttl_ms() / 1000)
               .Set("issued_at", UtcIso8601(now))
               .Print();
  r.headers.push_back(kApiVersion);
  ex->Respond(std::move(r));
}

namespace {

// Pushes to `list` up to `n` keys of the ordered map `m` that come after `last`
// and that `shown` keeps (n < 0: all of them), setting `last_sent` to the last
// one pushed; returns whether shown keys remain after the page (the `Link`
// header's "next"). Keys not shown neither fill a page nor end one.
template <class Map>
bool PageOfKeys(const Map& m, const std::string& last, int64_t n, json::Doc* list, std::string* last_sent,
                const std::function<bool(const std::string&)>& shown = nullptr) {
  int64_t count = 0;
  for (auto it = last.empty() ? m.begin() : m.upper_bound(last); it != m.end(); ++it) {
    if (shown && !shown(it->first)) continue;
    if (n >= 0 && count == n) return true;
    list->Push(it->first);
    *last_sent = it->first;
    count++;
  }
  return false;
}

}  // namespace

void Registry::HandleCatalog(const ExchangePtr& ex, const Caller& caller) {
  const http::Request& req = ex->request();
  int64_t n = 1000;
  if (auto q = req.Query("n")) {
    char* end = nullptr;
    n = strtoll(q->c_str(), &end, 10);
    if (q->empty() || *end || n < 0 || n > 10000)
      return Answer(ex, OciError(400, "PAGINATION_NUMBER_INVALID", "n: must be 0-10000"));
  }
  std::string last = req.Query("last").value_or("");
  json::Doc list = json::Doc::Array();
  std::string last_sent;
  // A token limited to some repositories sees only those, in full pages.
  bool more = PageOfKeys(state_->repositories(), last, n, &list, &last_sent,
                         [&](const std::string& name) { return auth_.Allows(caller, name, "pull"); });
  http::Response r;
  r.body = json::Doc::Object().Set("repositories", list).Print();
  r.headers.push_back(kApiVersion);
  if (more)
    r.headers.push_back(
        {"Link", "</v2/_catalog?last=" + http::UrlEncode(last_sent) + "&n=" + std::to_string(n) + ">; rel=\"next\""});
  Answer(ex, std::move(r));
}

// --- blobs ---

void Registry::GetBlob(const ExchangePtr& ex, const std::string& name, const std::string& digest, bool fetched) {
  if (!IsSha256Digest(digest)) {
    return Answer(ex, OciError(400, "DIGEST_INVALID", "'" + digest.substr(0, 100) + "' is not a sha256 digest"));
  }
  if (!state_->FindRepository(name))
    return Answer(ex, OciError(404, "NAME_UNKNOWN", "repository " + name + " does not exist"));
  // Read only through a repository that holds it: knowing a digest is no right to it.
  if (!state_->Readable(name, digest)) {
    return Answer(ex, OciError(404, "BLOB_UNKNOWN", "blob " + digest + " is not in repository " + name, digest));
  }
  int fd = open(blobs_.BlobPath(digest).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && !fetched && HasPeers()) {
    // Pushed to another server, and not copied here (yet): from a peer first.
    auto reply = AtEnd(ex);
    return FetchBlob(digest, [this, ex, name, digest, reply](Status s) {
      if (!ex->connected()) return;
      if (!s)
        return reply(
            OciError(404, "BLOB_UNKNOWN", "blob " + digest + " is on no server reached: " + s.error().message, digest));
      GetBlob(ex, name, digest, true);
    });
  }
  if (fd < 0) return Answer(ex, OciError(404, "BLOB_UNKNOWN", "blob " + digest + " is not in the registry", digest));
  ServeBlobFile(ex, digest, fd);
}

void Registry::ServeBlobFile(const ExchangePtr& ex, const std::string& digest, int fd) {
  off_t size = lseek(fd, 0, SEEK_END);
  blobs_.Touch(digest);
  uint64_t first = 0, last = size > 0 ? static_cast<uint64_t>(size) - 1 : 0;
  int status = 200;
  http::Headers headers{
      kApiVersion, {"Docker-Content-Digest", digest}, {"ETag", "\"" + digest + "\""}, {"Accept-Ranges", "bytes"}};
  if (std::string_view range = ex->request().Header("range"); !range.empty()) {
    Result<std::optional<ByteRange>> r = ParseRange(range, static_cast<uint64_t>(size));
    if (!r || !r->has_value()) {
      close(fd);
      http::Response bad = OciError(416, "BLOB_UNKNOWN", r ? "the range is outside the blob" : r.error().message);
      bad.headers.push_back({"Content-Range", "bytes */" + std::to_string(size)});
      return Answer(ex, std::move(bad));
    }
    first = (*r)->first;
    last = (*r)->last;
    status = 206;
    headers.push_back(
        {"Content-Range", "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" + std::to_string(size)});
  }
  int64_t length = size == 0 ? 0 : static_cast<int64_t>(last - first + 1);
  ex->Begin(status, headers, length, "application/octet-stream");
  if (ex->request().method == "HEAD" || length == 0) {
    close(fd);
    ex->End();
    return;
  }
  http::SendFileRange(ex, fd, static_cast<int64_t>(first), static_cast<int64_t>(last) + 1, true, "blob " + digest);
}

// --- manifests ---

void Registry::GetManifest(const ExchangePtr& ex, const std::string& name, const std::string& ref) {
  bool by_digest = LooksLikeDigest(ref);
  if (by_digest ? !IsSha256Digest(ref) : !IsValidTag(ref)) {
    return Answer(
        ex, by_digest
                ? OciError(400, "DIGEST_INVALID", "only sha256 digests are stored: " + ref.substr(0, 100))
                : OciError(400, "MANIFEST_INVALID", "'" + ref.substr(0, 300) + "' is neither a tag nor a digest"));
  }
  const Repository* repo = state_->FindRepository(name);
  if (!repo) return Answer(ex, OciError(404, "NAME_UNKNOWN", "repository " + name + " does not exist"));
  std::string digest = ref;
  if (!by_digest) {
    auto t = repo->tags.find(ref);
    if (t == repo->tags.end())
      return Answer(ex, OciError(404, "MANIFEST_UNKNOWN", "tag " + ref + " is not in " + name, ref));
    digest = t->second;
  }
  auto m = repo->manifests.find(digest);
  if (m == repo->manifests.end()) {
    return Answer(ex, OciError(404, "MANIFEST_UNKNOWN", "manifest " + digest + " is not in " + name, digest));
  }
  http::Response r;
  r.content_type = m->second.media_type;
  r.body = m->second.body;
  r.headers = {kApiVersion, {"Docker-Content-Digest", digest}, {"ETag", "\"" + digest + "\""}};
  Answer(ex, std::move(r));
}

void Registry::PutManifestRequest(const ExchangePtr& ex, const std::string& name, const std::string& ref) {
  bool by_digest = LooksLikeDigest(ref);
  if (by_digest ? !IsSha256Digest(ref) : !IsValidTag(ref)) {
    return Answer(
        ex, by_digest ? OciError(400, "DIGEST_INVALID", "only sha256 digests are supported: " + ref.substr(0, 100))
                      : OciError(400, "MANIFEST_INVALID",
                                 "tag '" + ref.substr(0, 300) + "' is not valid: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"));
  }
  if (!state_->FindRepository(name) && !options_.auto_create) {
    return Answer(ex, OciError(404, "NAME_UNKNOWN",
                               "repository " + name + " does not exist; create it first (berth repo create)"));
  }
  std::string_view cl = ex->request().Header("content-length");
  if (!cl.empty() && strtoull(std::string(cl).c_str(), nullptr, 10) > kMaxManifestBytes) {
    return ex->Respond(
        OciError(413, "SIZE_INVALID", "a manifest may be at most " + std::to_string(kMaxManifestBytes) + " bytes"));
  }
  auto body = std::make_shared<std::string>();
  ex->on_body = [ex, body](std::string_view piece) -> Status {
    if (body->size() + piece.size() > kMaxManifestBytes) {
      ex->Respond(
          OciError(413, "SIZE_INVALID", "a manifest may be at most " + std::to_string(kMaxManifestBytes) + " bytes"));
      return Error{ErrorKind::kTooLarge, "SIZE_INVALID", "manifest too large"};
    }
    body->append(piece);
    return {};
  };
  ex->on_body_end = [this, ex, body, name, ref, by_digest] {
    Result<ManifestInfo> info = ParseManifest(ex->request().Header("content-type"), *body);
    if (!info) return ex->Respond(OciError(info.error()));
    std::string digest = "sha256:" + crypto::Hex(crypto::Sha256(*body));
    if (by_digest && digest != ref) {
      return ex->Respond(OciError(400, "DIGEST_INVALID", "the manifest's digest is " + digest + ", not " + ref, ref));
    }
    // Blobs pushed through another server: copied here first, so that every
    // server that takes a manifest holds what it references.
    std::vector<std::string> missing;
    for (const std::string& b : info->blobs) {
      if (blobs_.Size(b) < 0 && state_->Readable(name, b)) missing.push_back(b);
    }
    auto held = std::make_shared<ManifestInfo>(std::move(info.value()));
    if (missing.empty() || !HasPeers()) return StoreManifest(ex, name, ref, body, held, digest);
    auto left = std::make_shared<size_t>(missing.size());
    for (const std::string& b : missing) {
      FetchBlob(b, [this, ex, name, ref, body, held, digest, left](Status) {
        if (--*left == 0 && ex->connected()) StoreManifest(ex, name, ref, body, held, digest);
      });
    }
  };
}

void Registry::StoreManifest(const ExchangePtr& ex, const std::string& name, const std::string& ref,
                             const std::shared_ptr<std::string>& body, const std::shared_ptr<ManifestInfo>& info,
                             const std::string& digest) {
  bool by_digest = LooksLikeDigest(ref);
  for (const std::string& b : info->blobs) {
    if (blobs_.Size(b) < 0) {
      return ex->Respond(OciError(400, "MANIFEST_BLOB_UNKNOWN",
                                  "the manifest references blob " + b + ", which is not in the registry", b));
    }
    if (!state_->Readable(name, b)) {
      return ex->Respond(OciError(400, "MANIFEST_BLOB_UNKNOWN",
                                  "the manifest references blob " + b + ", which was not pushed to repository " + name +
                                      " (push it, or mount it from a repository you may pull)",
                                  b));
    }
  }
  const Repository* repo = state_->FindRepository(name);
  if (repo && !by_digest && repo->immutable) {
    auto t = repo->tags.find(ref);
    if (t != repo->tags.end() && t->second != digest) {
      return ex->Respond(OciError(403, "DENIED",
                                  "the tag '" + ref + "' already exists in repository " + name +
                                      ", whose tags are immutable (ImageTagAlreadyExistsException)"));
    }
  }
  // Claimed until the command commits: a collection meanwhile keeps them.
  std::vector<std::string> claimed = info->blobs;
  for (const std::string& b : claimed) pending_blobs_[b]++;
  auto cmd = std::make_unique<PutManifest>();
  cmd->repo = name;
  cmd->digest = digest;
  cmd->media_type = info->media_type;
  cmd->body = std::move(*body);
  cmd->tag = by_digest ? "" : ref;
  cmd->auto_create = options_.auto_create;
  cmd->time_ms = clock_->NowUnixMs();
  std::string subject = info->subject;
  Submit(std::move(cmd), [this, ex, claimed, name, digest, subject](Result<std::string> r) {
    for (const std::string& b : claimed) {
      if (--pending_blobs_[b] <= 0) pending_blobs_.erase(b);
    }
    if (!r) return ex->Respond(OciError(r.error()));
    http::Response ok = Empty(201);
    ok.headers.push_back({"Location", "/v2/" + name + "/manifests/" + digest});
    ok.headers.push_back({"Docker-Content-Digest", digest});
    if (!subject.empty()) ok.headers.push_back({"OCI-Subject", subject});
    ex->Respond(std::move(ok));
  });
}

void Registry::DeleteManifestRequest(const ExchangePtr& ex, const std::string& name, const std::string& ref) {
  bool by_digest = LooksLikeDigest(ref);
  if (by_digest ? !IsSha256Digest(ref) : !IsValidTag(ref)) {
    return Answer(ex, OciError(400, by_digest ? "DIGEST_INVALID" : "MANIFEST_INVALID",
                               "'" + ref.substr(0, 300) + "' is not valid"));
  }
  if (!state_->FindRepository(name))
    return Answer(ex, OciError(404, "NAME_UNKNOWN", "repository " + name + " does not exist"));
  store::CommandPtr cmd;
  if (by_digest) {
    auto c = std::make_unique<DeleteManifest>();
    c->repo = name;
    c->digest = ref;
    c->reason = "user";
    cmd = std::move(c);
  } else {
    auto c = std::make_unique<DeleteTag>();
    c->repo = name;
    c->tag = ref;
    cmd = std::move(c);
  }
  cmd->time_ms = clock_->NowUnixMs();
  Submit(std::move(cmd), [ex](Result<std::string> r) {
    if (!r) return Answer(ex, OciError(r.error()));
    Answer(ex, Empty(202));
  });
}

void Registry::ListTags(const ExchangePtr& ex, const std::string& name) {
  const Repository* repo = state_->FindRepository(name);
  if (!repo) return Answer(ex, OciError(404, "NAME_UNKNOWN", "repository " + name + " does not exist"));
  const http::Request& req = ex->request();
  int64_t n = -1;
  if (auto q = req.Query("n")) {
    char* end = nullptr;
    n = strtoll(q->c_str(), &end, 10);
    if (q->empty() || *end || n < 0 || n > 100000) {
      return Answer(ex, OciError(400, "PAGINATION_NUMBER_INVALID", "n: must be a whole number from 0 to 100000"));
    }
  }
  std::string last = req.Query("last").value_or("");
  json::Doc list = json::Doc::Array();
  std::string last_sent;
  bool more = PageOfKeys(repo->tags, last, n, &list, &last_sent);
  http::Response r;
  r.body = json::Doc::Object().Set("name", name).Set("tags", list).Print();
  r.headers.push_back(kApiVersion);
  if (more && !last_sent.empty()) {
    r.headers.push_back({"Link", "</v2/" + name + "/tags/list?last=" + http::UrlEncode(last_sent) +
                                     "&n=" + std::to_string(n) + ">; rel=\"next\""});
  }
  Answer(ex, std::move(r));
}

void Registry::Referrers(const ExchangePtr& ex, const std::string& name, const std::string& digest) {
  if (!IsSha256Digest(digest))
    return Answer(ex, OciError(400, "DIGEST_INVALID", "'" + digest.substr(0, 100) + "' is not a sha256 digest"));
  const Repository* repo = state_->FindRepository(name);
  if (!repo) return Answer(ex, OciError(404, "NAME_UNKNOWN", "repository " + name + " does not exist"));
  std::optional<std::string> filter = ex->request().Query("artifactType");
  json::Doc list = json::Doc::Array();
  for (const auto& [d, m] : repo->manifests) {
    if (m.info.subject != digest) continue;
    if (filter && m.info.artifact_type != *filter) continue;
    json::Doc desc = json::Doc::Object();
    desc.Set("mediaType", m.media_type).Set("digest", d).Set("size", static_cast<int64_t>(m.body.size()));
    if (!m.info.artifact_type.empty()) desc.Set("artifactType", m.info.artifact_type);
    if (!m.info.annotations.empty()) desc.SetRaw("annotations", m.info.annotations);
    list.Push(desc);
  }
  http::Response r;
  r.content_type = std::string(kOciIndex);
  r.body = json::Doc::Object().Set("schemaVersion", 2).Set("mediaType", kOciIndex).Set("manifests", list).Print();
  r.headers.push_back(kApiVersion);
  if (filter) r.headers.push_back({"OCI-Filters-Applied", "artifactType"});
  Answer(ex, std::move(r));
}

// --- uploads ---

Result<Registry::Session*> Registry::OpenSession(const std::string& id) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) return it->second.get();
  Result<std::unique_ptr<UploadFile>> f = UploadFile::Open(blobs_.UploadPath(id), true);
  if (!f) return f.take_error();
  auto s = std::make_unique<Session>();
  s->file = std::move(f.value());
  Session* out = s.get();
  sessions_.emplace(id, std::move(s));
  return out;
}

void Registry::EndSession(const std::string& id, const std::string& reason) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) it->second->done = true;
  auto cmd = std::make_unique<EndUpload>();
  cmd->id = id;
  cmd->reason = reason;
  cmd->time_ms = clock_->NowUnixMs();
  Submit(std::move(cmd), [this, id](Result<std::string>) {
    sessions_.erase(id);
    blobs_.RemoveUpload(id);
  });
}

void Registry::StartUploadRequest(const ExchangePtr& ex, const std::string& name, const Caller& caller) {
  const http::Request& req = ex->request();
  bool exists = state_->FindRepository(name) != nullptr;
  if (!exists && !options_.auto_create) {
    return Answer(ex, OciError(404, "NAME_UNKNOWN",
                               "repository " + name + " does not exist; create it first (berth repo create)"));
  }
  auto reply = AtEnd(ex);
  auto created = [this, name, exists](std::function<void(Result<std::string>)> then) {
    if (exists || state_->FindRepository(name)) return then(std::string());
    auto c = std::make_unique<CreateRepository>();
    c->name = name;
    c->if_missing = true;
    c->time_ms = clock_->NowUnixMs();
    Submit(std::move(c), std::move(then));
  };
  if (auto mount = req.Query("mount")) {
    std::string from = req.Query("from").value_or("");
    if (!IsSha256Digest(*mount))
      return reply(OciError(400, "DIGEST_INVALID", "mount: '" + mount->substr(0, 100) + "' is not a sha256 digest"));
    // Only from a repository the caller may pull that holds the blob.
    if (!from.empty() && IsValidName(from) && state_->Readable(from, *mount) && auth_.Allows(caller, from, "pull") &&
        blobs_.Size(*mount) >= 0) {
      blobs_.Touch(*mount);
      std::string digest = *mount;
      return created([this, reply, name, digest](Result<std::string> r) {
        if (!r) return reply(OciError(r.error()));
        AddBlobTo(name, digest, [reply, name, digest](Result<std::string> added) {
          if (!added) return reply(OciError(added.error()));
          http::Response ok = Empty(201);
          ok.headers.push_back({"Location", "/v2/" + name + "/blobs/" + digest});
          ok.headers.push_back({"Docker-Content-Digest", digest});
          reply(std::move(ok));
        });
      });
    }
    // Cannot mount: a new session instead (202), as the spec allows.
  }
  if (auto digest = req.Query("digest")) {
    if (!IsSha256Digest(*digest))
      return reply(OciError(400, "DIGEST_INVALID", "digest: '" + digest->substr(0, 100) + "' is not a sha256 digest"));
    return MonolithicUpload(ex, name, *digest);
  }
  if (state_->uploads().size() >= options_.max_uploads) {
    return reply(OciError(
        429, "TOOMANYREQUESTS",
        "too many upload sessions are open (" + std::to_string(options_.max_uploads) + "); finish or cancel some"));
  }
  auto cmd = std::make_unique<StartUpload>();
  cmd->id = NewId();
  cmd->repo = name;
  cmd->auto_create = options_.auto_create;
  cmd->time_ms = clock_->NowUnixMs();
  std::string id = cmd->id;
  Submit(std::move(cmd), [reply, name, id](Result<std::string> r) {
    if (!r) return reply(OciError(r.error()));
    http::Response ok = Empty(202);
    ok.headers.push_back({"Location", "/v2/" + name + "/blobs/uploads/" + id});
    ok.headers.push_back({"Range", "0-0"});
    ok.headers.push_back({"Docker-Upload-UUID", id});
    reply(std::move(ok));
  });
}

// POST ?digest=: the whole blob in one request, into a file of its own.
void Registry::MonolithicUpload(const ExchangePtr& ex, const std::string& name, const std::string& digest) {
  ReceiveBlob(ex, digest, [this, ex, name, digest](Status stored) {
    if (!ex->connected()) return;
    if (!stored) return ex->Respond(StoreFailure(stored.error(), digest));
    ReplicateBlob(digest, [this, ex, name, digest](Status copied) {
      if (!ex->connected()) return;
      if (!copied) return ex->Respond(OciError(copied.error()));
      auto reply = [ex, name, digest](Result<std::string> r) {
        ex->Respond(r ? BlobCreated(name, digest) : OciError(r.error()));
      };
      if (!state_->FindRepository(name)) {
        auto c = std::make_unique<CreateRepository>();
        c->name = name;
        c->if_missing = true;
        c->time_ms = clock_->NowUnixMs();
        Submit(std::move(c), [](Result<std::string>) {});  // the next command says how it went
      }
      AddBlobTo(name, digest, reply);
    });
  });
}

void Registry::ReceiveBlob(const ExchangePtr& ex, const std::string& digest, std::function<void(Status)> done) {
  std::string id = NewId();
  Result<std::unique_ptr<UploadFile>> opened = UploadFile::Open(blobs_.UploadPath(id), true);
  if (!opened) return ex->Respond(OciError(opened.error()));
  auto file = std::make_shared<std::unique_ptr<UploadFile>>(std::move(opened.value()));
  temp_in_use_.insert(id);
  ex->on_abort = [this, id] {
    temp_in_use_.erase(id);
    blobs_.RemoveUpload(id);
  };
  ex->on_body = [this, ex, file, id](std::string_view piece) -> Status {
    if (Status s = (*file)->Append(piece); !s) {
      ex->on_abort = nullptr;
      file->reset();
      temp_in_use_.erase(id);
      blobs_.RemoveUpload(id);
      ex->Respond(OciError(s.error()));
      return s;
    }
    return {};
  };
  ex->on_body_end = [this, ex, file, id, digest, done = std::move(done)] {
    if (!*file) return;  // refused mid-body; already answered
    ex->on_abort = nullptr;
    VerifyAndStore(std::move(*file), digest, [this, id, done](Status stored) {
      temp_in_use_.erase(id);
      if (!stored) blobs_.RemoveUpload(id);
      done(std::move(stored));
    });
  };
}

void Registry::UploadRequest(const ExchangePtr& ex, const std::string& name, const std::string& id) {
  const http::Request& req = ex->request();
  const std::string& m = req.method;
  if (!IsValidUploadId(id))
    return Answer(ex, OciError(404, "BLOB_UPLOAD_UNKNOWN", "'" + id.substr(0, 100) + "' is not an upload id"));
  const Upload* up = state_->FindUpload(id);
  auto rt = sessions_.find(id);
  if (!up || up->repo != name || (rt != sessions_.end() && rt->second->done)) {
    return Answer(ex, OciError(404, "BLOB_UPLOAD_UNKNOWN", "upload " + id + " is not open in repository " + name));
  }
  Result<Session*> opened = OpenSession(id);
  if (!opened) return Answer(ex, OciError(opened.error()));
  Session* s = *opened;
  auto status_headers = [name, id](uint64_t size) {
    return http::Headers{kApiVersion,
                         {"Location", "/v2/" + name + "/blobs/uploads/" + id},
                         {"Range", RangeValue(size)},
                         {"Docker-Upload-UUID", id}};
  };
  if (m == "GET" || m == "HEAD") {
    http::Response r = Empty(204);
    r.headers = status_headers(s->file->size());
    return Answer(ex, std::move(r));
  }
  if (m == "DELETE") {
    s->done = true;
    auto cmd = std::make_unique<EndUpload>();
    cmd->id = id;
    cmd->reason = "cancelled";
    cmd->time_ms = clock_->NowUnixMs();
    return Submit(std::move(cmd), [this, ex, id](Result<std::string> r) {
      sessions_.erase(id);
      blobs_.RemoveUpload(id);
      if (!r) return Answer(ex, OciError(r.error()));
      Answer(ex, Empty(204));
    });
  }
  std::optional<std::string> digest;
  if (m == "PUT") {
    digest = req.Query("digest");
    if (!digest || !IsSha256Digest(*digest)) {
      return Answer(ex, OciError(400, "DIGEST_INVALID", "PUT to finish an upload needs ?digest=sha256:<64 hex>"));
    }
  }
  uint64_t size = s->file->size();
  if (std::string_view cr = req.Header("content-range"); !cr.empty()) {
    Result<ByteRange> range = ParseContentRange(cr);
    if (!range) return Answer(ex, OciError(400, "BLOB_UPLOAD_INVALID", range.error().message));
    if (range->first != size) {
      http::Response r = OciError(416, "BLOB_UPLOAD_INVALID",
                                  "the chunk starts at byte " + std::to_string(range->first) + " but the upload has " +
                                      std::to_string(size) + " bytes; resume from the Range header");
      for (http::Header& h : status_headers(size)) {
        if (h.name != kApiVersion.name) r.headers.push_back(std::move(h));
      }
      return Answer(ex, std::move(r));
    }
    std::string_view cl = req.Header("content-length");
    if (!cl.empty() && strtoull(std::string(cl).c_str(), nullptr, 10) != range->last - range->first + 1) {
      return Answer(ex, OciError(400, "BLOB_UPLOAD_INVALID",
                                 "Content-Range covers " + std::to_string(range->last - range->first + 1) +
                                     " bytes but Content-Length is " + std::string(cl)));
    }
  }
  if (std::string_view cl = req.Header("content-length"); !cl.empty()) {
    if (size + strtoull(std::string(cl).c_str(), nullptr, 10) > options_.max_blob_bytes) {
      return ex->Respond(
          OciError(413, "SIZE_INVALID", "a blob may be at most " + std::to_string(options_.max_blob_bytes) + " bytes"));
    }
  }
  // The newest request is the session's writer. One still holding it is a client
  // that went away without the server noticing yet (a half-closed socket): it is
  // superseded, and its further bytes are refused, so a resume never waits for it.
  if (ExchangePtr old = s->writer_ex.lock(); old && !old->responded()) {
    old->Respond(OciError(409, "BLOB_UPLOAD_INVALID", "upload " + id + " was taken over by a newer request"));
  }
  uint64_t gen = ++s->writer;
  s->busy = true;
  s->writer_ex = ex;
  // The session by id, if `gen` still writes to it.
  auto mine = [this, id, gen]() -> Session* {
    auto it = sessions_.find(id);
    return it != sessions_.end() && !it->second->done && it->second->writer == gen ? it->second.get() : nullptr;
  };
  ex->on_abort = [mine] {
    if (Session* cur = mine()) cur->busy = false;
  };
  ex->on_body = [this, ex, mine, id](std::string_view piece) -> Status {
    Session* cur = mine();
    if (!cur) {
      Error e{ErrorKind::kConflict, "BLOB_UPLOAD_INVALID",
              "upload " + id + " was taken over by a newer request or ended"};
      ex->Respond(OciError(409, e.code, e.message));
      return e;
    }
    if (cur->file->size() + piece.size() > options_.max_blob_bytes) {
      Error e{ErrorKind::kTooLarge, "SIZE_INVALID",
              "a blob may be at most " + std::to_string(options_.max_blob_bytes) + " bytes"};
      ex->Respond(OciError(413, e.code, e.message));
      return e;
    }
    if (Status st = cur->file->Append(piece); !st) {
      ex->Respond(OciError(st.error()));
      // A full disk ends the session: its bytes go, so the space comes back for
      // the next push (the client starts the blob afresh).
      if (st.error().code == "STORAGE_FULL") {
        cur->busy = false;
        EndSession(id, "the disk is full");
      }
      return st;
    }
    return {};
  };
  ex->on_body_end = [this, ex, mine, id, name, digest, status_headers] {
    ex->on_abort = nullptr;
    Session* cur = mine();
    if (!cur) {
      return ex->Respond(
          OciError(409, "BLOB_UPLOAD_INVALID", "upload " + id + " was taken over by a newer request or ended"));
    }
    cur->busy = false;
    if (!digest) {
      http::Response r = Empty(202);
      r.headers = status_headers(cur->file->size());
      return ex->Respond(std::move(r));
    }
    FinishUpload(ex, name, id, *digest);
  };
}

// Off the loop: the digest of `file` (hashed again only if a resume lost the
// running hash), then the fsyncs and the rename into place. `done` fires on the
// loop thread: ok, DIGEST_INVALID when the bytes hash to something else, or the
// storage error.
void Registry::VerifyAndStore(std::unique_ptr<UploadFile> file, const std::string& digest,
                              std::function<void(Status)> done) {
  struct Job {
    std::unique_ptr<UploadFile> file;
    Result<std::string> got = std::string();
    Status committed;
  };
  auto job = std::make_shared<Job>();
  job->file = std::move(file);
  BlobStore* blobs = &blobs_;
  net::RunOffLoop(
      loop_,
      [job, blobs, digest] {
        job->got = job->file->Digest();
        if (job->got && *job->got == digest) job->committed = blobs->Commit(std::move(job->file), digest);
      },
      [job, digest, done = std::move(done)] {
        job->file.reset();
        if (!job->got) return done(job->got.take_error());
        if (*job->got != digest) {
          return done(Error{ErrorKind::kInvalid, "DIGEST_INVALID",
                            "the uploaded bytes hash to " + *job->got + ", not " + digest});
        }
        done(std::move(job->committed));
      });
}

// The end of a session's upload (see VerifyAndStore). The
// session is closed to other requests meanwhile. If the client went away before
// the end (or the server is stopping), no command is submitted: the blob is
// durable anyway and the session expires.
void Registry::FinishUpload(const ExchangePtr& ex, const std::string& name, const std::string& id,
                            const std::string& digest) {
  Session* s = sessions_.at(id).get();
  s->done = true;
  VerifyAndStore(std::move(s->file), digest, [this, ex, name, id, digest](Status stored) {
    if (!ex->connected()) {
      sessions_.erase(id);
      return;
    }
    if (!stored) {
      // Not what the client meant, or not storable: nothing is kept, the session ends.
      EndSession(id, stored.error().code == "DIGEST_INVALID" ? "digest mismatch" : "storage error");
      return ex->Respond(StoreFailure(stored.error(), digest));
    }
    // Acknowledged only once a majority of the servers hold it.
    ReplicateBlob(digest, [this, ex, name, id, digest](Status copied) {
      if (!copied) {
        EndSession(id, "not stored on a majority of the servers");
        if (ex->connected()) ex->Respond(OciError(copied.error()));
        return;
      }
      // Readable through this repository from now on; the session row goes in
      // the same transaction (both are submitted in this loop iteration).
      AddBlobTo(name, digest, [ex, name, digest](Result<std::string> r) {
        if (ex->connected()) ex->Respond(r ? BlobCreated(name, digest) : OciError(r.error()));
      });
      auto cmd = std::make_unique<EndUpload>();
      cmd->id = id;
      cmd->reason = "completed";
      cmd->time_ms = clock_->NowUnixMs();
      // The blob is durable whatever became of the session row (expiry removes it).
      Submit(std::move(cmd), [this, id](Result<std::string>) { sessions_.erase(id); });
    });
  });
}

void Registry::AddBlobTo(const std::string& repo, const std::string& digest,
                         std::function<void(Result<std::string>)> then) {
  auto cmd = std::make_unique<AddBlob>();
  cmd->repo = repo;
  cmd->digest = digest;
  cmd->time_ms = clock_->NowUnixMs();
  Submit(std::move(cmd), std::move(then));
}

// --- periodic jobs ---

GcResult Registry::CollectGarbage(bool dry_run) {
  int64_t start = clock_->NowUnixMs();
  int64_t mark = start - options_.gc_grace_ms;
  GcResult r = registry::CollectGarbage(
      blobs_, *state_, [this](const std::string& d) { return pending_blobs_.count(d) > 0; }, mark, dry_run);
  log::Info("registry", dry_run ? "gc dry run" : "gc",
            {{"removed", static_cast<int64_t>(r.removed.size())}, {"bytes", r.removed_bytes}, {"kept", r.kept}});
  // The other servers remove the same blobs when they apply this.
  if (!dry_run && !r.removed.empty() && HasPeers()) {
    auto cmd = std::make_unique<RemoveBlobs>();
    cmd->digests = r.removed;
    cmd->mark_ms = mark;
    cmd->time_ms = start;
    Submit(std::move(cmd), [](Result<std::string> done) {
      if (!done) log::Warn("registry", "collected blobs not sent to the log", {{"error", done.error().message}});
    });
  }
  return r;
}

void Registry::RemoveCollected(const std::vector<std::string>& digests, int64_t mark_ms) {
  for (const std::string& d : digests) {
    if (state_->BlobRefs(d) > 0 || pending_blobs_.count(d)) continue;
    Result<bool> gone = blobs_.RemoveIfOlder(d, mark_ms, false);
    if (!gone)
      log::Warn("registry", "cannot remove a collected blob", {{"digest", d}, {"error", gone.error().message}});
  }
}

void Registry::ExpireUploads() {
  int64_t now = clock_->NowUnixMs();
  std::vector<std::string> expired;
  for (const auto& [id, up] : state_->uploads()) {
    auto rt = sessions_.find(id);
    if (rt != sessions_.end() && (rt->second->busy || rt->second->done)) continue;
    int64_t last = up.created_ms;
    struct stat st {};
    if (stat(blobs_.UploadPath(id).c_str(), &st) == 0) {
      last = std::max<int64_t>(last, static_cast<int64_t>(st.st_mtim.tv_sec) * 1000);
    }
    if (now - last > options_.upload_expiry_ms) expired.push_back(id);
  }
  // The leader ends idle sessions, for every server. (It sees the files of those
  // that are its own; a session on another server counts from its start.)
  for (const std::string& id : expired) {
    if (!Acting()) break;
    log::Info("registry", "upload expired", {{"id", id}});
    EndSession(id, "expired");
  }
  // Files no session owns: single-request uploads cut off by a crash.
  blobs_.ForEachUpload([&](const std::string& id, int64_t mtime_ms) {
    if (state_->FindUpload(id) || temp_in_use_.count(id) || sessions_.count(id)) return;
    if (now - mtime_ms > std::min(kStrayUploadMs, options_.upload_expiry_ms)) blobs_.RemoveUpload(id);
  });
}

std::vector<ImageFacts> Registry::Images(const Repository& repo) const {
  std::unordered_set<std::string> children;
  for (const auto& [d, m] : repo.manifests) {
    for (const std::string& c : m.info.children) children.insert(c);
  }
  std::unordered_map<std::string, std::vector<std::string>> tags;
  for (const auto& [t, d] : repo.tags) tags[d].push_back(t);
  std::vector<ImageFacts> out;
  for (const auto& [d, m] : repo.manifests) {
    if (children.count(d) || !m.info.subject.empty()) continue;  // they go with their index or subject
    out.push_back(ImageFacts{d, tags[d], m.pushed_ms});
  }
  return out;
}

void Registry::ApplyLifecyclePolicies() {
  int64_t now = clock_->NowUnixMs();
  for (const auto& [name, repo] : state_->repositories()) {
    if (repo.policy.empty()) continue;
    Result<LifecyclePolicy> policy = ParseLifecyclePolicy(repo.policy);
    if (!policy) continue;  // validated when set; a stored one always parses
    for (const Expiry& e : EvaluatePolicy(*policy, Images(repo), now)) {
      auto cmd = std::make_unique<DeleteManifest>();
      cmd->repo = name;
      cmd->digest = e.digest;
      cmd->reason = "lifecycle";
      cmd->time_ms = now;
      std::string repo_name = name, digest = e.digest;
      Submit(std::move(cmd), [repo_name, digest](Result<std::string> r) {
        if (r)
          log::Info("registry", "image expired by lifecycle policy", {{"repository", repo_name}, {"digest", digest}});
      });
    }
  }
}

// --- a cluster of servers ---

void Registry::Submit(store::CommandPtr cmd, std::function<void(Result<std::string>)> reply) {
  if (cluster_.submit) return cluster_.submit(std::move(cmd), std::move(reply));
  store_->Submit(std::move(cmd), std::move(reply));
}

bool Registry::FromMember(const ExchangePtr& ex) {
  if (cluster_.member && cluster_.member(ex->principal)) return true;
  Answer(ex, OciError(403, "DENIED", ex->principal + " is not a member of this cluster"));
  return false;
}

void Registry::PeerGetBlob(const ExchangePtr& ex) {
  if (!FromMember(ex)) return;
  std::string digest(ex->request().Param("digest"));
  if (!IsSha256Digest(digest)) return Answer(ex, OciError(400, "DIGEST_INVALID", "not a sha256 digest"));
  int fd = open(blobs_.BlobPath(digest).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Answer(ex, OciError(404, "BLOB_UNKNOWN", "blob " + digest + " is not on this server", digest));
  ServeBlobFile(ex, digest, fd);
}

// A copy of a blob a peer took a push of: stored like an upload of our own, its
// digest verified before it is kept.
void Registry::PeerPutBlob(const ExchangePtr& ex) {
  if (!FromMember(ex)) return;
  std::string digest(ex->request().Param("digest"));
  if (!IsSha256Digest(digest)) return Answer(ex, OciError(400, "DIGEST_INVALID", "not a sha256 digest"));
  if (blobs_.Size(digest) >= 0) {
    blobs_.Touch(digest);
    return Answer(ex, BlobCreated("", digest));
  }
  ReceiveBlob(ex, digest, [ex, digest](Status stored) {
    if (ex->connected()) ex->Respond(stored ? BlobCreated("", digest) : StoreFailure(stored.error(), digest));
  });
}

void Registry::ReplicateBlob(const std::string& digest, std::function<void(Status)> done) {
  std::vector<std::string> peers = cluster_.peers ? cluster_.peers() : std::vector<std::string>();
  size_t needed = cluster_.copies_needed ? cluster_.copies_needed() : 1;
  if (needed <= 1) return done({});
  struct Round {
    size_t have = 1;  // this server
    size_t needed = 0;
    size_t left = 0;
    std::string why;
    std::function<void(Status)> done;
  };
  auto round = std::make_shared<Round>();
  round->needed = needed;
  round->left = peers.size();
  round->done = std::move(done);
  auto finish_one = [round, digest](bool stored, const std::string& peer, const std::string& why) {
    round->left--;
    if (stored) round->have++;
    if (!stored && round->why.empty()) round->why = peer + ": " + why;
    if (!round->done) return;
    if (round->have >= round->needed) {
      std::exchange(round->done, nullptr)(Status{});
    } else if (round->left == 0) {
      std::exchange(round->done, nullptr)(Error{
          ErrorKind::kUnavailable, "NotReplicated",
          "blob " + digest + " is on " + std::to_string(round->have) + " of the " + std::to_string(round->needed) +
              " servers a push needs (" + (round->why.empty() ? "too few servers" : round->why) + "); push again"});
    }
  };
  if (peers.empty()) {
    round->left = 1;
    return finish_one(false, "the cluster", "no other server is known");
  }
  std::string path = blobs_.BlobPath(digest);
  for (const std::string& peer : peers) {
    http::Client* client = cluster_.client ? cluster_.client(peer) : nullptr;
    if (!client) {
      finish_one(false, peer, "no connection to it");
      continue;
    }
    http::ClientRequest head;
    head.method = "HEAD";
    head.target = "/v1/registry/peer/blobs/" + digest;
    client->Send(std::move(head), [client, path, peer, digest, finish_one](Result<http::ClientResponse> r) {
      if (r && r->status == 200) return finish_one(true, peer, "");
      if (!r) return finish_one(false, peer, r.error().message);
      // The file goes as it is, in pieces read as the connection takes them.
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return finish_one(false, peer, std::string("cannot read the blob: ") + strerror(errno));
      auto file = std::shared_ptr<int>(new int(fd), [](int* f) {
        close(*f);
        delete f;
      });
      off_t size = lseek(fd, 0, SEEK_END);
      auto pos = std::make_shared<off_t>(0);
      http::ClientRequest put;
      put.method = "PUT";
      put.target = "/v1/registry/peer/blobs/" + digest;
      put.headers.push_back({"Content-Type", "application/octet-stream"});
      put.content_length = size;
      put.body_source = [file, pos, size](std::string* piece) {
        size_t want = static_cast<size_t>(std::min<off_t>(kReadChunk, size - *pos));
        piece->resize(want);
        ssize_t n = want ? pread(*file, piece->data(), want, *pos) : 0;
        if (n < 0) n = 0;  // a short body: the peer refuses it
        piece->resize(static_cast<size_t>(n));
        *pos += n;
        return n > 0 && *pos < size;
      };
      client->Send(std::move(put), [peer, finish_one, file](Result<http::ClientResponse> done) {
        if (done && done->status == 201) return finish_one(true, peer, "");
        finish_one(false, peer, done ? "answered " + std::to_string(done->status) : done.error().message);
      });
    });
  }
}

void Registry::FetchBlob(const std::string& digest, std::function<void(Status)> done) {
  auto [it, first] = fetching_.try_emplace(digest);
  it->second.push_back(std::move(done));
  if (!first) return;  // one fetch per digest; everyone waiting hears how it went
  auto finish = [this, digest](Status s) {
    auto node = fetching_.extract(digest);
    if (node.empty()) return;
    for (auto& fn : node.mapped()) fn(s);
  };
  struct Attempt {
    std::vector<std::string> peers;
    size_t next = 0;
    std::string why;
  };
  auto attempt = std::make_shared<Attempt>();
  attempt->peers = cluster_.peers ? cluster_.peers() : std::vector<std::string>();
  // Each step holds the next (a peer's answer calls it); nothing holds it once
  // the fetch has finished.
  auto try_next = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak = try_next;
  *try_next = [this, digest, attempt, finish, weak] {
    std::shared_ptr<std::function<void()>> self = weak.lock();
    if (attempt->next >= attempt->peers.size()) {
      return finish(Error{ErrorKind::kNotFound, "BLOB_UNKNOWN",
                          attempt->why.empty() ? "no other server is known" : attempt->why});
    }
    std::string peer = attempt->peers[attempt->next++];
    http::Client* client = cluster_.client ? cluster_.client(peer) : nullptr;
    if (!client) return (*self)();
    std::string id = NewId();
    Result<std::unique_ptr<UploadFile>> opened = UploadFile::Open(blobs_.UploadPath(id), true);
    if (!opened) return finish(opened.take_error());
    auto file = std::make_shared<std::unique_ptr<UploadFile>>(std::move(opened.value()));
    auto failed = std::make_shared<Status>();
    temp_in_use_.insert(id);
    http::ClientRequest get;
    get.target = "/v1/registry/peer/blobs/" + digest;
    client->Send(
        std::move(get),
        [this, id, peer, digest, file, failed, attempt, finish, self](Result<http::ClientResponse> r) {
          auto give_up_on_peer = [&](const std::string& why) {
            file->reset();
            temp_in_use_.erase(id);
            blobs_.RemoveUpload(id);
            attempt->why += (attempt->why.empty() ? "" : "; ") + peer + ": " + why;
            (*self)();
          };
          if (!r) return give_up_on_peer(r.error().message);
          if (r->status != 200) return give_up_on_peer("answered " + std::to_string(r->status));
          if (!*failed) return give_up_on_peer(failed->error().message);
          VerifyAndStore(std::move(*file), digest, [this, id, peer, attempt, finish, self](Status stored) {
            temp_in_use_.erase(id);
            if (stored) return finish({});
            blobs_.RemoveUpload(id);
            attempt->why += (attempt->why.empty() ? "" : "; ") + peer + ": " + stored.error().message;
            (*self)();
          });
        },
        [file, failed](std::string_view piece) {
          if (*failed && *file) *failed = (*file)->Append(piece);
        });
  };
  (*try_next)();
}

}  // namespace berth::registry
