#include "agent/docker.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "base/crypto.h"
#include "net/http_client.h"
#include "net/uv.h"

namespace berth::agent::docker {

namespace http = net::http;

namespace {

Error Unreachable(std::string message) {
  return Error{ErrorKind::kUnavailable, "DockerUnreachable", std::move(message)};
}

}  // namespace

int CompareApiVersions(std::string_view a, std::string_view b) {
  auto part = [](std::string_view v, int i) {
    size_t dot = v.find('.');
    std::string_view s = i == 0 ? v.substr(0, dot) : (dot == std::string_view::npos ? "" : v.substr(dot + 1));
    long n = strtol(std::string(s.substr(0, 9)).c_str(), nullptr, 10);  // 9 digits: no overflow
    return static_cast<int>(n);
  };
  for (int i = 0; i < 2; i++) {
    int x = part(a, i), y = part(b, i);
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

void LogDemuxer::Feed(std::string_view data) {
  buf_.append(data);
  size_t at = 0;
  while (buf_.size() - at >= 8) {
    const auto* h = reinterpret_cast<const unsigned char*>(buf_.data() + at);
    size_t len = (size_t(h[4]) << 24) | (size_t(h[5]) << 16) | (size_t(h[6]) << 8) | size_t(h[7]);
    if (buf_.size() - at - 8 < len) break;
    on_frame_(h[0], std::string_view(buf_.data() + at + 8, len));
    at += 8 + len;
  }
  buf_.erase(0, at);
}

bool LineSplitter::Feed(std::string_view data) {
  bool fine = true;
  if (skipping_) {
    size_t nl = data.find('\n');
    if (nl == std::string_view::npos) return false;
    skipping_ = false;
    fine = false;
    data.remove_prefix(nl + 1);
  }
  buf_.append(data);
  size_t at = 0;
  for (;;) {
    size_t nl = buf_.find('\n', at);
    if (nl == std::string::npos) break;
    std::string_view line(buf_.data() + at, nl - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line_) {
      fine = false;
    } else if (!line.empty()) {
      on_line_(line);
    }
    at = nl + 1;
  }
  buf_.erase(0, at);
  if (buf_.size() > max_line_) {
    buf_.clear();
    buf_.shrink_to_fit();
    skipping_ = true;
    fine = false;
  }
  return fine;
}

// Destroying the client drops its request without calling back.
Stream::~Stream() { *alive_ = false; }

Engine::Engine(uv_loop_t* loop, net::Endpoint endpoint, int connections)
    : loop_(loop),
      endpoint_(std::move(endpoint)),
      reaper_(std::make_unique<net::Timer>(loop)),
      later_timer_(std::make_unique<net::Timer>(loop)),
      alive_(std::make_shared<bool>(true)) {
  http::ClientOptions o;
  o.timeout_ms = 10 * 60 * 1000;  // a stop waits for its timeout; a create may wait on the engine's locks
  o.max_response_bytes = 64ull << 20;
  for (int i = 0; i < connections; i++) {
    pool_.push_back(std::make_unique<http::Client>(loop_, endpoint_, o));
    in_flight_.push_back(0);
  }
}

Engine::~Engine() { *alive_ = false; }

size_t Engine::Pick() const {
  size_t best = 0;
  for (size_t i = 1; i < pool_.size(); i++) {
    if (in_flight_[i] < in_flight_[best]) best = i;
  }
  return best;
}

std::string Engine::Versioned(const std::string& path) const { return "/v" + api_version_ + path; }

void Engine::Later(std::function<void()> fn) {
  later_.push_back(std::move(fn));
  later_timer_->Start(0, 0, [this] {
    std::vector<std::function<void()>> due;
    due.swap(later_);
    for (auto& f : due) f();
  });
}

void Engine::Refuse(JsonDone done, Error error) {
  Later([done = std::move(done), error = std::move(error)]() mutable { done(std::move(error)); });
}

namespace {

Error DockerError(int status, const std::string& body, const std::string& what) {
  std::string message;
  if (Result<json::Doc> d = json::Doc::Parse(body); d && d->view().Get("message").IsString()) {
    message = std::string(d->view().Get("message").String());
  } else {
    message = body.substr(0, 300);
  }
  std::string text = what + ": " + message;
  if (status == 404) return Error::NotFound("DockerNotFound", text);
  if (status == 409) return Error::Conflict("DockerConflict", text);
  if (status == 400) return Error::Invalid(text);
  return Error::Internal(text + " (HTTP " + std::to_string(status) + ")");
}

http::ClientRequest MakeRequest(std::string method, std::string target, std::string body,
                                std::vector<std::pair<std::string, std::string>> headers) {
  http::ClientRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.headers.push_back({"Host", "docker"});
  if (!r.body.empty()) r.headers.push_back({"Content-Type", "application/json"});
  for (auto& h : headers) r.headers.push_back({std::move(h.first), std::move(h.second)});
  return r;
}

}  // namespace

void Engine::Negotiate(std::function<void(Result<EngineVersion>)> done) {
  pool_[Pick()]->Send(
      MakeRequest("GET", "/version", "", {}), [this, done, alive = alive_](Result<http::ClientResponse> r) {
        if (!*alive) return;
        if (!r) return done(Unreachable("docker engine at " + endpoint_.ToString() + ": " + r.error().message));
        if (r->status != 200) return done(DockerError(r->status, r->body, "GET /version"));
        Result<json::Doc> d = json::Doc::Parse(r->body);
        if (!d) return done(Error::Internal("docker /version: " + d.error().message));
        EngineVersion v;
        json::View doc = d->view();
        v.version = std::string(doc.Get("Version").String());
        v.api_version = std::string(doc.Get("ApiVersion").String());
        v.os = std::string(doc.Get("Os").String());
        v.arch = std::string(doc.Get("Arch").String());
        if (v.api_version.empty() || CompareApiVersions(v.api_version, kMinApiVersion) < 0) {
          return done(Error::Internal("docker engine " + v.version + " speaks API " + v.api_version + "; berth needs " +
                                      kMinApiVersion + " or newer"));
        }
        api_version_ = CompareApiVersions(v.api_version, kMaxApiVersion) > 0 ? kMaxApiVersion : v.api_version;
        done(std::move(v));
      });
}

void Engine::Call(std::string method, std::string path, std::string body, JsonDone done,
                  std::vector<std::pair<std::string, std::string>> headers) {
  if (Status s = CheckTarget(path); !s) return Refuse(std::move(done), s.take_error());
  size_t index = Pick();
  in_flight_[index]++;
  std::string what = method + " " + path.substr(0, path.find('?'));
  pool_[index]->Send(MakeRequest(std::move(method), Versioned(path), std::move(body), std::move(headers)),
                     [this, index, done, what, alive = alive_](Result<http::ClientResponse> r) {
                       if (!*alive) return;
                       in_flight_[index]--;
                       if (!r) return done(Unreachable("docker: " + what + ": " + r.error().message));
                       if (r->status == 304) return done(json::Doc::Object());
                       if (r->status >= 300) return done(DockerError(r->status, r->body, what));
                       if (r->body.empty()) return done(json::Doc::Object());
                       Result<json::Doc> d = json::Doc::Parse(r->body);
                       if (!d) return done(Error::Internal("docker: " + what + ": bad JSON: " + d.error().message));
                       done(std::move(d));
                     });
}

std::unique_ptr<Stream> Engine::Open(std::string method, std::string path, std::string body,
                                     std::function<void(std::string_view)> on_data, Done done,
                                     std::vector<std::pair<std::string, std::string>> headers,
                                     uint64_t idle_timeout_ms) {
  http::ClientOptions o;
  o.timeout_ms = idle_timeout_ms ? idle_timeout_ms : 24ull * 3600 * 1000;
  auto s = std::unique_ptr<Stream>(new Stream());
  if (Status st = CheckTarget(path); !st) {
    Later([done, live = s->alive_, error = st.take_error()]() mutable {
      if (*live) done(std::move(error));
    });
    return s;
  }
  s->client_ = std::make_unique<http::Client>(loop_, endpoint_, o);
  std::string what = method + " " + path.substr(0, path.find('?'));
  s->client_->Send(
      MakeRequest(std::move(method), Versioned(path), std::move(body), std::move(headers)),
      [done, what](Result<http::ClientResponse> r) {
        if (!r) return done(Unreachable("docker: " + what + ": " + r.error().message));
        if (r->status >= 300) return done(DockerError(r->status, r->body, what));
        done(Status{});
      },
      std::move(on_data));
  return s;
}

void Engine::Pull(const std::string& image, const std::string& auth_json, Done done) {
  // fromImage takes the name without the tag; tag takes the tag or the digest.
  std::string name = image;
  std::string tag = "latest";
  if (size_t at = image.find('@'); at != std::string::npos) {
    name = image.substr(0, at);
    tag = image.substr(at + 1);
  } else {
    size_t slash = image.rfind('/');
    size_t colon = image.rfind(':');
    if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
      name = image.substr(0, colon);
      tag = image.substr(colon + 1);
    }
  }
  std::vector<std::pair<std::string, std::string>> headers;
  if (!auth_json.empty()) headers.push_back({"X-Registry-Auth", crypto::Base64Encode(auth_json, true)});
  auto failure = std::make_shared<std::string>();
  auto lines = std::make_shared<LineSplitter>([failure](std::string_view line) {
    Result<json::Doc> d = json::Doc::Parse(line);
    if (d && d->view().Get("error").IsString() && failure->empty())
      *failure = std::string(d->view().Get("error").String());
  });
  uint64_t id = next_pull_++;
  pulls_[id] = Open(
      "POST", "/images/create?fromImage=" + QueryEscape(name) + "&tag=" + QueryEscape(tag), "",
      [lines](std::string_view data) { lines->Feed(data); },
      [this, id, done, failure, image, alive = alive_](Status st) {
        if (!*alive) return;
        // The stream's client is on the stack: free it on the next loop turn.
        auto it = pulls_.find(id);
        if (it != pulls_.end()) {
          graveyard_.push_back(std::move(it->second));
          pulls_.erase(it);
          reaper_->Start(0, 0, [this] { graveyard_.clear(); });
        }
        if (!st) return done(st.take_error());
        if (!failure->empty()) return done(Error::Internal("pulling " + image + ": " + *failure));
        done(Status{});
      },
      std::move(headers), 5 * 60 * 1000);
}

std::string QueryEscape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char b[4];
      snprintf(b, sizeof b, "%%%02X", c);
      out += b;
    }
  }
  return out;
}

namespace {

bool NameChar(unsigned char c) { return isalnum(c) || c == '_' || c == '.' || c == '-'; }

std::string Shown(std::string_view s) {
  std::string_view head = s.substr(0, 80);
  std::string out;
  out.reserve(head.size() + 8);
  for (size_t i = 0; i < head.size();) {
    size_t j = i;
    while (j < head.size() && head[j] >= 0x20 && head[j] < 0x7f) j++;
    out.append(head.substr(i, j - i));
    if (j < head.size()) {
      char b[5];
      snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned char>(head[j]));
      out += b;
      j++;
    }
    i = j;
  }
  if (s.size() > 80) out += "...";
  return out;
}

// The segments of `path` (after its leading '/') from `allowed` characters, none
// empty, "." or "..".
std::string PathProblem(std::string_view path, bool (*allowed)(unsigned char)) {
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(start, end - start);
    if (seg.empty()) return "an empty path segment";
    if (seg == "." || seg == "..") return "a '" + std::string(seg) + "' path segment";
    for (unsigned char c : seg) {
      if (!allowed(c)) return "the character '" + Shown(std::string_view(reinterpret_cast<const char*>(&c), 1)) + "'";
    }
    start = end + 1;
  }
  return "";
}

bool ImageChar(unsigned char c) { return NameChar(c) || c == ':' || c == '@'; }

}  // namespace

Status CheckObjectName(std::string_view what, std::string_view name) {
  std::string problem;
  if (name.empty()) {
    problem = "it is empty";
  } else if (name.size() > 255) {
    problem = "it is longer than 255 characters";
  } else if (!isalnum(static_cast<unsigned char>(name[0]))) {
    problem = "it must start with a letter or digit";
  } else {
    for (unsigned char c : name) {
      if (!NameChar(c)) {
        problem = "it holds '" + Shown(std::string_view(reinterpret_cast<const char*>(&c), 1)) +
                  "' (allowed: letters, digits, '_', '.', '-')";
        break;
      }
    }
  }
  if (problem.empty()) return {};
  return Error::Invalid("docker: refusing the " + std::string(what) + " name '" + Shown(name) + "': " + problem);
}

Status CheckImageName(std::string_view image) {
  std::string problem;
  if (image.empty()) {
    problem = "it is empty";
  } else if (image.size() > 512) {
    problem = "it is longer than 512 characters";
  } else if (image[0] == '-') {
    problem = "it starts with '-'";
  } else {
    problem = PathProblem(image, ImageChar);
  }
  if (problem.empty()) return {};
  return Error::Invalid("docker: refusing the image '" + Shown(image) + "': it has " + problem);
}

Status CheckTarget(std::string_view target) {
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string problem;
  if (path.empty() || path[0] != '/') {
    problem = "the path does not start with '/'";
  } else if (std::string p = PathProblem(path.substr(1), ImageChar); !p.empty()) {
    problem = "the path has " + p;
  } else if (q != std::string_view::npos) {
    for (unsigned char c : target.substr(q + 1)) {
      if (c <= 0x20 || c >= 0x7f || c == '#') {
        problem = "the query has the character '" + Shown(std::string_view(reinterpret_cast<const char*>(&c), 1)) + "'";
        break;
      }
    }
  }
  if (problem.empty()) return {};
  return Error::Invalid("docker: refusing to call " + Shown(target.substr(0, q)) + ": " + problem);
}

ImageRef ParseImageRef(std::string_view image) {
  ImageRef r;
  std::string_view rest = image;
  size_t at = rest.find('@');
  if (at != std::string_view::npos) {
    r.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
  }
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, slash);
    if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
        first == "localhost") {
      r.registry = std::string(first);
      rest = rest.substr(slash + 1);
    }
  }
  if (r.registry.empty()) r.registry = "docker.io";
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos) {
    r.tag = std::string(rest.substr(colon + 1));
    r.explicit_tag = true;
    rest = rest.substr(0, colon);
  } else if (r.digest.empty()) {
    r.tag = "latest";
  }
  r.repository = std::string(rest);
  if (r.registry == "docker.io" && r.repository.find('/') == std::string::npos) {
    r.repository = "library/" + r.repository;
  }
  return r;
}

}  // namespace berth::agent::docker
