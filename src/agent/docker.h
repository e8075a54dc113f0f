// The Docker Engine API client: JSON calls, streamed answers (image pulls,
// /events, logs) and the version negotiation, over the engine's Unix socket with
// our own HTTP client (net/http_client.h). Nothing here shells out to `docker`.
//
// Calls run on a small pool of kept-alive connections, so a slow call (a pull, a
// stop that waits for its timeout) never holds up the others. Every callback
// fires once, on the loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "net/socket.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net {
class Timer;
}
namespace berth::net::http {
class Client;
}

namespace berth::agent::docker {

// The API versions we speak: Debian's docker.io 20.10 is 1.41; current engines
// are 1.4x-1.5x. We use the engine's version, capped at the newest we know.
inline constexpr const char* kMinApiVersion = "1.41";
inline constexpr const char* kMaxApiVersion = "1.51";

// Compares "1.41" and "1.50" as numbers: <0, 0, >0.
int CompareApiVersions(std::string_view a, std::string_view b);

// Splits Docker's multiplexed log stream (8-byte frame headers: stream, 0, 0, 0,
// big-endian length) into payloads. Bytes may arrive in any pieces.
class LogDemuxer {
 public:
  // `on_frame(stream, payload)`: stream 1 stdout, 2 stderr.
  explicit LogDemuxer(std::function<void(int, std::string_view)> on_frame) : on_frame_(std::move(on_frame)) {}
  void Feed(std::string_view data);

 private:
  std::function<void(int, std::string_view)> on_frame_;
  std::string buf_;
};

// Splits a byte stream into lines (JSON lines of /events, pull progress and the
// server's desired-state stream). A line longer than `max_line` bytes is never
// held: it is dropped up to its newline, and Feed says so by returning false
// (what follows is split as before).
class LineSplitter {
 public:
  static constexpr size_t kDefaultMaxLine = 1 << 20;
  explicit LineSplitter(std::function<void(std::string_view)> on_line, size_t max_line = kDefaultMaxLine)
      : on_line_(std::move(on_line)), max_line_(max_line) {}
  bool Feed(std::string_view data);
  size_t buffered() const { return buf_.size(); }

 private:
  std::function<void(std::string_view)> on_line_;
  size_t max_line_;
  std::string buf_;
  bool skipping_ = false;  // inside a line too long to keep
};

// What GET /version said.
struct EngineVersion {
  std::string version;      // "20.10.24+dfsg1"
  std::string api_version;  // the engine's own, e.g. "1.41"
  std::string os, arch;
};

// A streamed call in progress (events, logs, pull). Destroying it cancels.
class Stream {
 public:
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

 private:
  friend class Engine;
  Stream() = default;
  std::unique_ptr<net::http::Client> client_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // a refusal is told only to a live stream
};

class Engine {
 public:
  using JsonDone = std::function<void(Result<json::Doc>)>;
  using Done = std::function<void(Status)>;

  Engine(uv_loop_t* loop, net::Endpoint endpoint, int connections = 8);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // GET /version, then uses min(engine's API version, kMaxApiVersion) for every
  // call. Fails if the engine is older than kMinApiVersion.
  void Negotiate(std::function<void(Result<EngineVersion>)> done);
  const std::string& api_version() const { return api_version_; }

  // A call whose answer is JSON (or empty: then an empty object). `path` is
  // without the version prefix ("/containers/json?all=1"). A 4xx/5xx answer is an
  // Error whose message is Docker's; 404 maps to kNotFound, 409 to kConflict,
  // 304 ("already started/stopped") to success. A path CheckTarget refuses is
  // never sent: `done` gets kInvalid on the next loop turn.
  void Call(std::string method, std::string path, std::string body, JsonDone done,
            std::vector<std::pair<std::string, std::string>> headers = {});

  // A streamed call: `on_data` gets the body as it arrives; `done` fires when the
  // answer ends or fails (after the stream was destroyed, never). A refused path
  // fails on the next loop turn, as Call does.
  std::unique_ptr<Stream> Open(std::string method, std::string path, std::string body,
                               std::function<void(std::string_view)> on_data, Done done,
                               std::vector<std::pair<std::string, std::string>> headers = {},
                               uint64_t idle_timeout_ms = 0);

  // POST /images/create: pulls `image`, reading the progress lines; an `error`
  // line fails it. `auth` is the X-Registry-Auth JSON ({"username","password",
  // "serveraddress"}) or empty.
  void Pull(const std::string& image, const std::string& auth_json, Done done);

  const net::Endpoint& endpoint() const { return endpoint_; }

  // Tells `done` the error on the next loop turn (never from inside the call that
  // refused), unless this engine is gone by then.
  void Refuse(JsonDone done, Error error);

 private:
  size_t Pick() const;  // the pool's least busy connection
  std::string Versioned(const std::string& path) const;
  void Later(std::function<void()> fn);

  uv_loop_t* loop_;
  net::Endpoint endpoint_;
  std::vector<std::unique_ptr<net::http::Client>> pool_;
  std::vector<int> in_flight_;
  std::string api_version_ = kMinApiVersion;
  std::map<uint64_t, std::unique_ptr<Stream>> pulls_;
  uint64_t next_pull_ = 0;
  std::vector<std::unique_ptr<Stream>> graveyard_;  // finished streams, freed on the next loop turn
  std::unique_ptr<net::Timer> reaper_;
  std::unique_ptr<net::Timer> later_timer_;
  std::vector<std::function<void()>> later_;  // refusals, told on the next loop turn
  std::shared_ptr<bool> alive_;
};

// "busybox" → ("docker.io", "library/busybox", "latest"); "127.0.0.1:7070/app:1"
// → ("127.0.0.1:7070", "app", "1"); a digest reference keeps "@sha256:..." as tag.
struct ImageRef {
  std::string registry;  // host[:port]; "docker.io" when absent
  std::string repository;
  std::string tag;     // or empty when `digest` is set
  std::string digest;  // "sha256:..." or empty
  bool explicit_tag = false;
};
ImageRef ParseImageRef(std::string_view image);

// Percent-encodes everything but unreserved characters, for query values.
std::string QueryEscape(std::string_view s);

// What may go into a Docker API path, checked before any request leaves (names
// come from task definitions, the server's stream and the engine's answers; a
// forged server or a bad row must not reach another route with "../images/x",
// add a parameter with "x?force=1", or end the request line). Refused, never
// rewritten: a name Docker would not have made is an error, with what and why.
// A container or network name or id, as Docker allows them:
// [A-Za-z0-9][A-Za-z0-9_.-]*, at most 255 characters.
Status CheckObjectName(std::string_view what, std::string_view name);
// An image reference (name[:tag][@digest]) as a path: [A-Za-z0-9._/:@-], no
// empty, "." or ".." segment, not starting with '-', at most 512 characters.
Status CheckImageName(std::string_view image);
// A whole request target: a path of segments from [A-Za-z0-9._:@-] (none empty,
// "." or "..") and an optional query of printable characters but ' ' and '#'.
Status CheckTarget(std::string_view target);

}  // namespace berth::agent::docker
