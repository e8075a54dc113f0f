// The proxy's workers and connections (proxy.h).
//
// This file calls libuv directly rather than through net::Stream: the proxy
// needs SO_REUSEPORT listeners on loops of its own, reads into one buffer per
// loop (an idle connection holds no buffer), and writes with uv_try_write first;
// net's streams copy every read and write, which costs the proxy its budget.
//
// Sections: sockets, per-worker state, HTTP client connections, target
// connections, TCP splices, workers, the Proxy.
#include "proxy/proxy.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <llhttp.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/log.h"
#include "proxy/proxy_protocol.h"
#include "proxy/tls.h"
#include "proxy/udp.h"

namespace berth::proxy {

class Worker;
class ListenSocket;

// Metrics (RenderMetrics): one slot per worker, written by that worker's
// thread only, so counting contends with nothing; summed when read.
struct alignas(64) TargetSlot {
  std::atomic<uint64_t> responses[4] = {};  // 2xx, 3xx, 4xx, 5xx from the target
  std::atomic<uint64_t> retries{0}, ejections{0}, connect_failures{0}, bytes_in{0}, bytes_out{0};
};
// Upper bounds of the latency buckets, in seconds (request sent to the response head).
constexpr double kLatencyBounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
constexpr size_t kLatencyBuckets = sizeof(kLatencyBounds) / sizeof(kLatencyBounds[0]);
struct alignas(64) GroupSlot {
  std::atomic<uint64_t> local[3] = {};  // the proxy's own 502, 503, 504
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> buckets[kLatencyBuckets + 1] = {};  // not cumulative; the last is +Inf
  std::atomic<uint64_t> latency_count{0}, latency_sum_us{0};
};
struct alignas(64) ListenerSlot {
  std::atomic<uint64_t> accepted{0}, requests{0};
  std::atomic<int64_t> active{0};
  std::atomic<uint64_t> dropped{0};  // UDP: datagrams of new flows dropped
};
template <class Slot>
struct Slots {
  explicit Slots(int workers) : slots(std::make_unique<Slot[]>(static_cast<size_t>(workers))) {}
  std::unique_ptr<Slot[]> slots;
  Slot& operator[](int worker) { return slots[static_cast<size_t>(worker)]; }
};
inline void Add(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

// Shared between workers: what draining waits on, and the target's metrics.
struct TargetStats : Slots<TargetSlot> {
  using Slots::Slots;
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> connections{0};
};
struct GroupStats : Slots<GroupSlot> {
  using Slots::Slots;
};
struct ListenerStats : Slots<ListenerSlot> {
  using Slots::Slots;
};

namespace {

constexpr const char* kSub = "proxy";
// A trusted peer (a listener's proxyProtocolFrom) must send its whole PROXY
// header within this long of being accepted, else it is closed.
constexpr uint64_t kProxyHeaderTimeoutMs = 10000;

// ============================================================================
// Sockets
// ============================================================================

class Pipe;

// Who hears what a Pipe reports; all on the loop thread.
class PipeOwner {
 public:
  virtual ~PipeOwner() = default;
  virtual void OnData(Pipe* p, const char* data, size_t len) = 0;
  // The peer finished (err == 0) or the socket failed (a libuv error).
  virtual void OnEnd(Pipe* p, int err) = 0;
  // A queued write finished; the queue may have room again.
  virtual void OnWritten(Pipe* /*p*/) {}
  virtual void OnConnected(Pipe* /*p*/, int /*status*/) {}
  // A TLS handshake finished; plaintext follows through OnData.
  virtual void OnSecured(Pipe* /*p*/) {}
  // The PROXY header a Pipe was told to expect was read (kDone: the bytes
  // after it follow through OnData, or the TLS handshake) or refused
  // (kInvalid: the Pipe has stopped reading). Once per Pipe.
  virtual void OnProxyHeader(Pipe* /*p*/, const ProxyHeader& /*h*/) {}
};

struct LoopBuffer {
  char bytes[64 * 1024];
};

// One TCP socket. The uv handle outlives the Pipe until libuv's close
// callback; write and connect callbacks that fire after Close() find no owner.
class Pipe {
 public:
  Pipe(uv_loop_t* loop, PipeOwner* owner) : owner_(owner) {
    tcp_ = new uv_tcp_t;
    uv_tcp_init(loop, tcp_);
    tcp_->data = this;
  }
  ~Pipe() { Close(); }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  uv_tcp_t* handle() { return tcp_; }
  // Makes this the server side of a TLS connection: what is read is decrypted
  // before OnData, what is written encrypted. Before the first read.
  void SetTls(std::unique_ptr<TlsSession> tls) { tls_ = std::move(tls); }
  bool secure() const { return tls_ != nullptr; }
  // Makes the first bytes read a PROXY header, parsed here and not passed on
  // (before any TLS): the owner hears OnProxyHeader. Before the first read.
  void ExpectProxyHeader() { header_ = std::make_unique<std::string>(); }
  bool expecting_header() const { return header_ != nullptr; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(tcp_); }
  void SetOwner(PipeOwner* owner) { owner_ = owner; }
  bool closed() const { return tcp_ == nullptr; }
  bool reading() const { return reading_; }

  void ReadStart() {
    if (tcp_ && !reading_) {
      reading_ = uv_read_start(stream(), Alloc, Read) == 0;
    }
  }
  void ReadStop() {
    if (tcp_ && reading_) uv_read_stop(stream());
    reading_ = false;
  }

  // Sends `data` in order: at once where the kernel takes it, the rest queued.
  // On a TLS pipe, plaintext once the handshake is done (dropped before).
  void Write(std::string_view data) {
    if (!tls_) {
      WriteRaw(data);
      return;
    }
    if (!tcp_ || data.empty() || !tls_->handshake_done()) return;
    if (!tls_->Write(data)) log::Debug(kSub, "tls write failed", {{"error", tls_->error()}});
    FlushTls();
  }

  void WriteRaw(std::string_view data) {
    if (!tcp_ || data.empty()) return;
    if (uv_stream_get_write_queue_size(stream()) == 0) {
      uv_buf_t b = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
      int n = uv_try_write(stream(), &b, 1);
      if (n > 0) data.remove_prefix(static_cast<size_t>(n));
      if (data.empty()) return;
    }
    auto* req = new WriteReq;
    req->bytes.assign(data);
    uv_buf_t b = uv_buf_init(req->bytes.data(), static_cast<unsigned>(req->bytes.size()));
    if (uv_write(&req->req, stream(), &b, 1, Written) != 0) delete req;
  }
  size_t Queued() const {
    return tcp_ ? uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(tcp_)) : 0;
  }

  void Connect(const sockaddr* addr) {
    auto* req = new uv_connect_t;
    if (int err = uv_tcp_connect(req, tcp_, addr, Connected); err != 0) {
      delete req;
      // Reported on the next iteration, as a real failure would be.
      pending_error_ = err;
      auto* idle = new uv_timer_t;
      uv_timer_init(tcp_->loop, idle);
      idle->data = tcp_;
      uv_timer_start(
          idle,
          [](uv_timer_t* t) {
            auto* h = static_cast<uv_tcp_t*>(t->data);
            if (h->data) {
              auto* self = static_cast<Pipe*>(h->data);
              self->owner_->OnConnected(self, self->pending_error_);
            }
            uv_close(reinterpret_cast<uv_handle_t*>(t),
                     [](uv_handle_t* x) { delete reinterpret_cast<uv_timer_t*>(x); });
          },
          0, 0);
    }
  }

  // Sends FIN once the queued writes are out (after a TLS close_notify).
  void Shutdown() {
    if (!tcp_) return;
    if (tls_) {
      tls_->CloseNotify();
      FlushTls();
    }
    auto* req = new uv_shutdown_t;
    if (uv_shutdown(req, stream(), [](uv_shutdown_t* r, int) { delete r; }) != 0) delete req;
  }

  void Close() {
    if (!tcp_) return;
    tcp_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    tcp_ = nullptr;
    reading_ = false;
  }

 private:
  struct WriteReq {
    uv_write_t req;
    std::string bytes;
  };
  static void Alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* lb = static_cast<LoopBuffer*>(h->loop->data);
    *buf = uv_buf_init(lb->bytes, sizeof(lb->bytes));
  }
  void FlushTls() {
    std::string& out = tls_->out();
    if (out.empty()) return;
    WriteRaw(out);
    out.clear();
  }

  // Ciphertext read: the handshake goes on, or records are decrypted into the
  // loop's buffer (free again: the ciphertext was copied into the session) and
  // handed to the owner, all of them, even if the owner stops reading meanwhile
  // (as a plain read hands over all it read).
  void ReadTls(const char* data, size_t len) {
    tls_->Feed(data, len);
    if (!tls_->handshake_done()) {
      TlsSession::Step step = tls_->Handshake();
      FlushTls();
      if (step == TlsSession::Step::kFailed) {
        log::Debug(kSub, "tls handshake failed", {{"error", tls_->error()}});
        ReadStop();
        owner_->OnEnd(this, UV_EPROTO);
        return;
      }
      if (step == TlsSession::Step::kMore) return;
      owner_->OnSecured(this);
    }
    auto* lb = static_cast<LoopBuffer*>(tcp_ ? tcp_->loop->data : nullptr);
    while (tcp_) {
      long n = tls_->Read(lb->bytes, sizeof(lb->bytes));
      FlushTls();
      if (n > 0) {
        owner_->OnData(this, lb->bytes, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return;
      ReadStop();
      owner_->OnEnd(this, n == -1 ? 0 : UV_EPROTO);
      return;
    }
  }

  // Bytes read, past any PROXY header: through TLS, or straight to the owner.
  void Deliver(const char* data, size_t len) {
    if (tls_) {
      ReadTls(data, len);
    } else {
      owner_->OnData(this, data, len);
    }
  }

  // Bytes of an expected PROXY header, kept until it is whole (the parser
  // refuses one longer than the protocol allows, so this stays small); the
  // bytes after it in the same read are delivered as any others.
  void ReadHeader(const char* data, size_t len) {
    header_->append(data, len);
    ProxyHeader h = ParseProxyHeader(*header_);
    if (h.status == ProxyHeader::Status::kNeedMore) return;
    std::unique_ptr<std::string> bytes = std::move(header_);
    if (h.status == ProxyHeader::Status::kInvalid) ReadStop();
    owner_->OnProxyHeader(this, h);
    if (h.status != ProxyHeader::Status::kDone || !tcp_ || bytes->size() == h.length) return;
    Deliver(bytes->data() + h.length, bytes->size() - h.length);
  }

  static void Read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* self = static_cast<Pipe*>(s->data);
    if (!self) return;
    if (n > 0 && self->header_) {
      self->ReadHeader(buf->base, static_cast<size_t>(n));
    } else if (n > 0) {
      self->Deliver(buf->base, static_cast<size_t>(n));
    } else if (n < 0) {
      self->ReadStop();
      self->owner_->OnEnd(self, n == UV_EOF ? 0 : static_cast<int>(n));
    }
  }
  static void Written(uv_write_t* req, int status) {
    auto* w = reinterpret_cast<WriteReq*>(req);
    auto* self = static_cast<Pipe*>(req->handle->data);
    delete w;
    if (!self) return;
    if (status < 0) {
      self->owner_->OnEnd(self, status);
      return;
    }
    self->owner_->OnWritten(self);
  }
  static void Connected(uv_connect_t* req, int status) {
    auto* self = static_cast<Pipe*>(req->handle->data);
    delete req;
    if (self) self->owner_->OnConnected(self, status);
  }

  uv_tcp_t* tcp_ = nullptr;
  PipeOwner* owner_;
  bool reading_ = false;
  int pending_error_ = 0;
  std::unique_ptr<TlsSession> tls_;
  std::unique_ptr<std::string> header_;  // a PROXY header's bytes so far, while one is expected
};

std::string PeerAddress(uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  char text[64] = {0};
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), text, sizeof(text));
  } else {
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), text, sizeof(text));
  }
  return text;
}

// The two ends of an accepted socket; nullopt when the kernel no longer knows
// them (the peer is gone already).
std::optional<SocketAddress> PeerOf(uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
}
std::optional<SocketAddress> LocalOf(uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return FromSockaddr(reinterpret_cast<sockaddr*>(&ss));
}

bool ToSockaddr(const std::string& address, int port, sockaddr_storage* out) {
  if (address.find(':') != std::string::npos) {
    return uv_ip6_addr(address.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
  }
  return uv_ip4_addr(address.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0;
}

// ============================================================================
// Per-worker state
// ============================================================================

// A configuration as the workers use it: the document plus the shared stats of
// each of its targets, so that requests started under it can still count down.
struct Runtime {
  Config config;
  std::vector<std::vector<std::shared_ptr<TargetStats>>> stats;  // [group][target]
  std::vector<std::vector<std::string>> tokens;                  // [group][target]: StickyToken, lb_cookie groups only
  std::vector<std::shared_ptr<GroupStats>> group_stats;          // [group]
  std::vector<std::shared_ptr<ListenerStats>> listener_stats;    // [listener]
  std::unordered_map<std::string, size_t> group_index;
  std::unordered_map<std::string, size_t> listener_index;  // by ListenerId
  // HTTPS and TLS listeners' certificates, by ListenerId.
  std::unordered_map<std::string, std::shared_ptr<const TlsContext>> tls;
};

std::string ListenerId(const Listener& l) { return l.address + "/" + l.Key(); }

class Upstream;
class ClientConn;

// One target address as this worker knows it, across configurations: its load,
// its ejection, and its idle kept-alive connections.
struct Backend {
  std::string address;
  int port = 0;
  sockaddr_storage addr{};
  Load load;
  Ejection ejection;
  std::vector<Upstream*> idle;
  int64_t healthy_since_ms = 0;  // when a configuration last made it healthy (slow start counts from it)
};

// A target chosen for one attempt; counts it in flight until Release.
struct Lease {
  Backend* backend = nullptr;
  std::shared_ptr<TargetStats> stats;
  size_t index = 0;      // in its group
  bool requests = true;  // counts a request (HTTP) or a connection (TCP)

  explicit operator bool() const { return backend != nullptr; }
  void Release() {
    if (!backend) return;
    if (requests) {
      backend->load.outstanding--;
      stats->requests--;
    } else {
      backend->load.connections--;
      stats->connections--;
    }
    backend = nullptr;
    stats.reset();
  }
};

}  // namespace

// ============================================================================
// Workers (declaration; connections below use it)
// ============================================================================

// A client connection (HTTP or TCP) as its worker sees it: counted while open,
// and cut when a stopping worker's grace runs out.
class Connection {
 public:
  virtual ~Connection() = default;
  // Closes the connection and everything it holds now; it frees itself once
  // libuv has closed its handles.
  virtual void Cut() = 0;
};

class Worker {
 public:
  Worker(int index, const Options& options);

  void Start();
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  // After Join: closes the loop; the handles left open (0 on a clean stop).
  size_t CloseLoop();
  void Post(std::shared_ptr<const Runtime> runtime);
  void PostStop(uint64_t grace_ms);
  int64_t applied() const { return applied_.load(); }
  // Target addresses this worker keeps state for (TCP and HTTP, and UDP), any thread.
  size_t tracked() const { return tracked_.load(std::memory_order_relaxed); }
  int index() const { return index_; }

  uv_loop_t* loop() { return &loop_; }
  const Limits& limits() const { return options_.limits; }
  const std::shared_ptr<const Runtime>& runtime() const { return runtime_; }

  // Picks a usable target of `group` not yet in `attempts`; an empty Lease when none.
  // `sticky`: in an lb_cookie group the request's cookie, whose target is taken
  // if usable; in a source_ip group the client's address, hashed to a target.
  Lease Pick(const Runtime& rt, const std::string& group, Attempts* attempts, bool for_requests,
             std::string_view sticky = {});
  // The outcome of an attempt on a target, for passive ejection.
  void Report(const Runtime& rt, const std::string& group, Backend* backend, bool failed);
  Upstream* TakeIdle(Backend* backend);
  void GiveIdle(Backend* backend, Upstream* up);
  void DropIdle(Upstream* up);

  // Every client connection, for a stop to wait on and then cut.
  void ConnectionOpened(Connection* c) { open_.insert(c); }
  void ConnectionClosed(Connection* c) { open_.erase(c); }
  // HTTP client connections, so that a stop can close those between requests.
  void Track(ClientConn* c) { clients_.insert(c); }
  void Untrack(ClientConn* c) { clients_.erase(c); }
  bool stopping() const { return stopping_; }
  // A trusted peer closed for sending no valid PROXY header: counted, and
  // logged at most once per 10 s per worker, with how many since the last line.
  void ProxyHeaderRefused(const std::string& peer, const std::string& why);

 private:
  friend class ListenSocket;
  void Run();
  void TakePosted();
  void Reconcile();
  void StartSlowStarts(const Runtime& next);
  static std::string BackendKey(const Target& t) { return t.address + "|" + std::to_string(t.port); }
  Backend& BackendOf(const Target& t);  // this worker's record of `t`, made at first sight
  void BeginStop(uint64_t grace_ms);
  void Sweep();

  int index_;
  Options options_;
  uv_loop_t loop_{};
  LoopBuffer buffer_;
  uv_async_t wake_{};
  uv_timer_t sweep_{};
  std::thread thread_;

  std::mutex mu_;
  std::shared_ptr<const Runtime> posted_;
  bool stop_posted_ = false;
  uint64_t stop_grace_ms_ = 0;

  std::shared_ptr<const Runtime> runtime_;
  std::atomic<int64_t> applied_{-1};
  std::map<std::string, std::unique_ptr<ListenSocket>> listeners_;
  std::unique_ptr<UdpWorker> udp_;                     // the UDP listeners and their flows
  std::unordered_map<std::string, Backend> backends_;  // by BackendKey
  std::unordered_set<std::string> listed_;             // the BackendKeys runtime_ lists (Sweep keeps those)
  std::atomic<size_t> tracked_{0};                     // backends_.size() plus UDP's, for the metrics
  std::unordered_map<std::string, uint64_t> cursors_;  // by group
  std::mt19937 rng_;
  std::unordered_set<Connection*> open_;
  std::unordered_set<ClientConn*> clients_;
  bool stopping_ = false;
  uint64_t stop_deadline_ = 0;
  uint64_t headers_refused_ = 0, refused_unlogged_ = 0;
  std::optional<uint64_t> refused_logged_ms_;
};

struct Proxy::Impl {
  Options options;
  std::shared_ptr<TicketKeys> tickets;  // null: no resumption (their setup failed)
  std::vector<std::unique_ptr<Worker>> workers;
  std::mutex stats_mu;
  std::map<std::string, std::shared_ptr<TargetStats>> stats;  // by group "\n" id
  // Metrics of the groups and listeners configured now (by name, by ListenerId).
  std::map<std::string, std::shared_ptr<GroupStats>> groups;
  std::map<std::string, std::shared_ptr<ListenerStats>> listeners;
  std::map<std::string, std::string> listener_labels;  // by ListenerId: "address:port/PROTOCOL"
  bool stopped = false;
};

namespace {

// ============================================================================
// HTTP: target connections
// ============================================================================

class ClientConn;

// A connection to a target, owned by a ClientConn while it carries a request and
// by its worker's pool while idle.
class Upstream : public PipeOwner {
 public:
  Upstream(Worker* w, Backend* b) : worker_(w), backend_(b), pipe_(w->loop(), this) {}
  Pipe& pipe() { return pipe_; }
  Backend* backend() const { return backend_; }
  ClientConn* client = nullptr;  // null while pooled
  bool connected = false;
  bool reused = false;  // came from the pool: a reset may be a stale connection
  uint64_t idle_since_ms = 0;

  void OnData(Pipe* p, const char* data, size_t len) override;
  void OnEnd(Pipe* p, int err) override;
  void OnWritten(Pipe* p) override;
  void OnConnected(Pipe* p, int status) override;

 private:
  Worker* worker_;
  Backend* backend_;
  Pipe pipe_;
};

// ============================================================================
// HTTP: client connections
// ============================================================================

struct Header {
  std::string name, value;
};

bool NameIs(const std::string& name, std::string_view want) {
  return name.size() == want.size() && strncasecmp(name.data(), want.data(), want.size()) == 0;
}

// Headers that describe one hop and are never forwarded (RFC 9110 7.6.1), plus
// Transfer-Encoding, which the proxy frames itself.
bool HopByHop(const std::string& name) {
  for (std::string_view h : {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                             "upgrade", "proxy-authorization", "proxy-authenticate"}) {
    if (NameIs(name, h)) return true;
  }
  return false;
}

// True if `name` is one of the comma-separated tokens of a Connection header.
bool NamedByConnection(const std::vector<std::string>& tokens, const std::string& name) {
  for (const std::string& t : tokens) {
    if (NameIs(name, t)) return true;
  }
  return false;
}

std::vector<std::string> ConnectionTokens(const std::vector<Header>& headers) {
  std::vector<std::string> out;
  for (const Header& h : headers) {
    if (!NameIs(h.name, "connection")) continue;
    size_t start = 0;
    while (start <= h.value.size()) {
      size_t comma = h.value.find(',', start);
      if (comma == std::string::npos) comma = h.value.size();
      std::string t = h.value.substr(start, comma - start);
      t.erase(0, t.find_first_not_of(" \t"));
      t.erase(t.find_last_not_of(" \t") + 1);
      if (!t.empty()) out.push_back(t);
      start = comma + 1;
    }
  }
  return out;
}

const char* Reason(int status) {
  switch (status) {
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

// The state of one request and its response, apart from the connection so that
// an idle client connection stays small.
struct Exchange {
  llhttp_t response{};
  std::string method, url, head, group;
  std::vector<Header> headers, rheaders;
  std::string status_text, lease_target, last_failure;
  std::string replay;  // the body so far, while it may be replayed on a retry
  // lb_cookie groups: the request's BERTHLB value, the token the response sets
  // (empty when the request's named the target it got), and the cookie's Max-Age.
  std::string sticky, set_cookie;
  int64_t cookie_seconds = 0;
  GroupStats* gstats = nullptr;  // the group's metrics (kept alive by rt), null without a group
  uint64_t sent_ns = 0;          // when the request head went to the target
  std::string unsent;            // body bytes waiting for the target connection
  std::shared_ptr<const Runtime> rt;
  Attempts attempts;
  Lease lease;
};

class ClientConn : public PipeOwner, public Connection {
 public:
  ClientConn(Worker* w, int listen_port, std::string listener_id, std::shared_ptr<size_t> listener_count)
      : worker_(w),
        listen_port_(listen_port),
        listener_id_(std::move(listener_id)),
        listener_count_(std::move(listener_count)),
        pipe_(w->loop(), this) {
    llhttp_init(&parser_, HTTP_REQUEST, &request_settings());
    parser_.data = this;
    uv_timer_init(w->loop(), &timer_);
    timer_.data = this;
    worker_->ConnectionOpened(this);
    worker_->Track(this);
    (*listener_count_)++;
  }

  ~ClientConn() override {
    if (lstats_) (*lstats_)[worker_->index()].active--;
    worker_->Untrack(this);
    DropUpstream(true);
    if (ex_) ex_->lease.Release();
    (*listener_count_)--;
    worker_->ConnectionClosed(this);
  }

  Pipe& pipe() { return pipe_; }
  // Counts this connection in its listener's metrics until it ends.
  void CountIn(std::shared_ptr<ListenerStats> stats) {
    lstats_ = std::move(stats);
    (*lstats_)[worker_->index()].active++;
  }

  void Begin() {
    client_ip_ = PeerAddress(pipe_.handle());
    // A trusted peer has the PROXY header bound first; a TLS client the
    // handshake bound, then the idle bound (OnSecured).
    if (pipe_.expecting_header()) {
      Arm(kProxyHeaderTimeoutMs, Phase::kProxyHeader);
    } else {
      Arm(pipe_.secure() ? worker_->limits().tls_handshake_timeout_ms : worker_->limits().idle_timeout_ms,
          Phase::kIdle);
    }
    pipe_.ReadStart();
  }

  // The address a trusted peer's header carries is the client's from now on.
  void OnProxyHeader(Pipe*, const ProxyHeader& h) override {
    if (h.status != ProxyHeader::Status::kDone) {
      worker_->ProxyHeaderRefused(client_ip_, h.error);
      Finish();
      return;
    }
    if (h.addresses) client_ip_ = h.addresses->source.ip.Unmapped().ToString();
    Arm(pipe_.secure() ? worker_->limits().tls_handshake_timeout_ms : worker_->limits().idle_timeout_ms, Phase::kIdle);
  }

  void OnSecured(Pipe*) override { Arm(worker_->limits().idle_timeout_ms, Phase::kIdle); }

  // Ends the connection when it is between requests (a stopping worker).
  bool CloseIfIdle() {
    if ((phase_ != Phase::kIdle && phase_ != Phase::kProxyHeader) || !in_.empty()) return false;
    Finish();
    return true;
  }

  // --- from the client socket -------------------------------------------------

  void OnData(Pipe*, const char* data, size_t len) override {
    if (upgraded_) {
      if (up_) {
        up_->pipe().Write({data, len});
        Backpressure();
      }
      return;
    }
    if (closing_) return;  // lingering: what the client still sends is dropped
    if (phase_ == Phase::kIdle) Arm(worker_->limits().header_timeout_ms, Phase::kHead);
    if (!in_.empty() || waiting_) {
      in_.append(data, len);
      // Pipelined requests wait for the answer before them; their bytes are bounded.
      if (waiting_ && in_.size() > worker_->limits().max_header_bytes) PauseClient();
    } else {
      Execute(data, len);
    }
    Parse();
  }

  void OnEnd(Pipe*, int err) override {
    client_gone_ = true;
    if (closing_ || upgraded_ || err != 0 || phase_ == Phase::kProxyHeader || phase_ == Phase::kIdle ||
        phase_ == Phase::kHead) {
      Finish();
      return;
    }
    // Half-closed while its answer is on the way: the answer still goes out.
  }

  void OnWritten(Pipe*) override {
    if (up_ && !up_->pipe().reading() && pipe_.Queued() < worker_->limits().max_queued_bytes / 2 && upstream_paused_) {
      upstream_paused_ = false;
      up_->pipe().ReadStart();
    }
    if (closing_ && !shut_ && pipe_.Queued() == 0) ShutdownNow();
  }

  // --- from the target connection --------------------------------------------

  void UpConnected(int status) {
    if (status != 0) {
      AttemptFailed(true, "connect: " + std::string(uv_strerror(status)));
      return;
    }
    up_->connected = true;
    SendToUpstream();
  }

  void UpData(const char* data, size_t len) {
    if (ex_ && ex_->lease.stats) Add((*ex_->lease.stats)[worker_->index()].bytes_in, len);
    if (upgraded_) {
      pipe_.Write({data, len});
      UpstreamBackpressure();
      return;
    }
    if (!response_started_) {
      // Whether the answer counts for or against the target is its status's
      // to say (OnResponseHead): a 5xx is a failure however fast it came.
      response_started_ = true;
      ex_->replay.clear();
      Arm(0, phase_);
    }
    llhttp_errno_t err = llhttp_execute(&ex_->response, data, len);
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&ex_->response) - data);
      llhttp_resume(&ex_->response);
      if (upgraded_) {
        if (used < len) pipe_.Write({data + used, len - used});
        StartTunnel();
        return;
      }
      ResponseComplete();
      return;
    }
    if (err != HPE_OK) {
      log::Warn(kSub, "target sent a malformed response",
                {{"target", ex_->lease_target}, {"error", llhttp_errno_name(err)}});
      worker_->Report(*ex_->rt, ex_->group, lease_backend_, true);
      // Nothing of it reached the client yet: the client is told why.
      if (!head_forwarded_) {
        response_started_ = false;
        LocalAnswer(502, std::string("target sent a malformed response (") + llhttp_errno_name(err) + ")", true);
        return;
      }
      closing_after_response_ = true;
      DropUpstream(true);
      CloseSoon();
      return;
    }
    UpstreamBackpressure();
  }

  void UpEnded(int err) {
    if (upgraded_) {
      DropUpstream(true);
      if (pipe_.Queued() == 0)
        Finish();
      else
        closing_ = true;
      return;
    }
    if (!response_started_) {
      AttemptFailed(true, err ? std::string("reset before any response byte: ") + uv_strerror(err)
                              : std::string("closed before any response byte"));
      return;
    }
    // A response delimited by the end of the connection ends here; any other is cut short.
    if (err == 0) {
      llhttp_finish(&ex_->response);
      if (response_done_) {
        ResponseComplete();
        return;
      }
    }
    log::Info(kSub, "target closed during a response", {{"target", ex_->lease_target}});
    DropUpstream(true);
    closing_after_response_ = true;
    CloseSoon();
  }

  void UpWritten() {
    if (client_paused_ && up_ && up_->pipe().Queued() < worker_->limits().max_queued_bytes / 2) {
      client_paused_ = false;
      pipe_.ReadStart();
    }
  }

 private:
  enum class Phase { kProxyHeader, kIdle, kHead, kBody, kWaiting, kConnect, kResponse, kLinger };
  static constexpr uint64_t kLingerMs = 2000;

  static ClientConn* Self(llhttp_t* p) { return static_cast<ClientConn*>(p->data); }
  uint64_t LoopNowMs() const { return uv_now(worker_->loop()); }

  // --- the request ------------------------------------------------------------

  void Execute(const char* data, size_t len) {
    in_execute_ = true;
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    in_execute_ = false;
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume(&parser_);
      if (used < len) in_.append(data + used, len - used);
      if (request_done_ && response_done_ && waiting_ && !closing_) AfterExchange();
      return;
    }
    if (answered_locally_) return;  // a callback answered and stopped the parser
    LocalAnswer(400, std::string("malformed request: ") + llhttp_get_error_reason(&parser_), true);
  }

  // Parses what is stashed while no request waits for its answer.
  void Parse() {
    if (in_parse_) return;  // the loop below carries on
    in_parse_ = true;
    while (!in_.empty() && !waiting_ && !closing_ && !pipe_.closed()) {
      std::string buf = std::move(in_);
      in_.clear();
      Execute(buf.data(), buf.size());
      if (!in_.empty() && in_.size() == buf.size()) break;  // nothing consumed
    }
    in_parse_ = false;
  }

  int OnMessageBegin() {
    // Made at the first request, kept for the next: a connection that never
    // sends one holds no request state.
    if (!ex_) ex_ = std::make_unique<Exchange>();
    ex_->method.clear();
    ex_->url.clear();
    ex_->headers.clear();
    header_bytes_ = 0;
    in_value_ = false;
    if (phase_ == Phase::kIdle) Arm(worker_->limits().header_timeout_ms, Phase::kHead);
    return 0;
  }

  bool HeadTooBig(size_t n) {
    header_bytes_ += n;
    return header_bytes_ > worker_->limits().max_header_bytes;
  }

  int OnUrl(const char* at, size_t n) {
    if (HeadTooBig(n))
      return TooLarge("request line and headers over " + std::to_string(worker_->limits().max_header_bytes) + " bytes");
    ex_->url.append(at, n);
    return 0;
  }

  int OnField(const char* at, size_t n) {
    if (HeadTooBig(n))
      return TooLarge("request line and headers over " + std::to_string(worker_->limits().max_header_bytes) + " bytes");
    if (in_value_ || ex_->headers.empty()) {
      if (ex_->headers.size() >= worker_->limits().max_headers) {
        return TooLarge("more than " + std::to_string(worker_->limits().max_headers) + " header fields");
      }
      ex_->headers.push_back({});
      in_value_ = false;
    }
    ex_->headers.back().name.append(at, n);
    return 0;
  }

  int OnValue(const char* at, size_t n) {
    if (HeadTooBig(n))
      return TooLarge("request line and headers over " + std::to_string(worker_->limits().max_header_bytes) + " bytes");
    in_value_ = true;
    ex_->headers.back().value.append(at, n);
    return 0;
  }

  int TooLarge(const std::string& why) {
    LocalAnswer(431, why, true);
    return HPE_USER;
  }

  std::string HostHeader() const {
    for (const Header& h : ex_->headers) {
      if (NameIs(h.name, "host")) return h.value;
    }
    return {};
  }

  int OnHeadersComplete() {
    ex_->method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    is_head_ = parser_.method == HTTP_HEAD;
    client_http11_ = parser_.http_major == 1 && parser_.http_minor == 1;
    request_chunked_ = (parser_.flags & F_CHUNKED) != 0;
    request_has_body_ = request_chunked_ || ((parser_.flags & F_CONTENT_LENGTH) && parser_.content_length > 0);
    upgrade_ = parser_.upgrade;
    client_keep_alive_ = llhttp_should_keep_alive(&parser_);
    ex_->rt = worker_->runtime();
    auto li =
        ex_->rt ? ex_->rt->listener_index.find(listener_id_) : decltype(ex_->rt->listener_index)::const_iterator();
    if (!ex_->rt || li == ex_->rt->listener_index.end()) {
      LocalAnswer(503, "the listener is being removed", true);
      return HPE_USER;
    }
    const Listener& listener = ex_->rt->config.listeners[li->second];
    Add((*ex_->rt->listener_stats[li->second])[worker_->index()].requests);
    std::string path = ex_->url.substr(0, ex_->url.find('?'));
    ex_->group = listener.redirect ? std::string() : MatchGroup(listener, HostHeader(), path);
    StickyCookie();
    BuildRequestHead();
    ex_->attempts = Attempts();
    ex_->replay.clear();
    replayable_ = true;
    request_done_ = false;
    response_started_ = false;
    head_forwarded_ = false;
    response_done_ = false;
    phase_ = Phase::kBody;
    Arm(0, Phase::kBody);
    if (listener.redirect) {
      Redirect(*listener.redirect);
      return closing_ ? HPE_PAUSED : 0;
    }
    if (!StartAttempt() && closing_) return HPE_PAUSED;  // answered, and the body is not read
    return 0;
  }

  // In an lb_cookie group: the request's BERTHLB cookie (the first, across
  // every Cookie header) and the Max-Age of the one a response sets.
  // Also finds the group's metrics.
  void StickyCookie() {
    ex_->sticky.clear();
    ex_->set_cookie.clear();
    ex_->cookie_seconds = 0;
    ex_->gstats = nullptr;
    auto gi = ex_->rt->group_index.find(ex_->group);
    if (gi == ex_->rt->group_index.end()) return;
    ex_->gstats = ex_->rt->group_stats[gi->second].get();
    const TargetGroup& g = ex_->rt->config.target_groups[gi->second];
    if (g.stickiness != Stickiness::kLbCookie) return;
    ex_->cookie_seconds = g.cookie_seconds;
    for (const Header& h : ex_->headers) {
      if (!NameIs(h.name, "cookie")) continue;
      std::string_view v = CookieValue(h.value, kStickyCookie);
      if (v.empty()) continue;
      ex_->sticky.assign(v);
      return;
    }
  }

  // The request head as the target gets it: hop-by-hop headers out, X-Forwarded-* in.
  void BuildRequestHead() {
    std::vector<std::string> tokens = ConnectionTokens(ex_->headers);
    std::string& h = ex_->head;
    h.clear();
    h.append(ex_->method).append(" ").append(ex_->url).append(" HTTP/1.1\r\n");
    std::string forwarded_for;
    for (const Header& x : ex_->headers) {
      if (HopByHop(x.name) || NamedByConnection(tokens, x.name)) continue;
      if (NameIs(x.name, "x-forwarded-for")) {
        forwarded_for = forwarded_for.empty() ? x.value : forwarded_for + ", " + x.value;
        continue;
      }
      if (NameIs(x.name, "x-forwarded-proto") || NameIs(x.name, "x-forwarded-port")) continue;
      h.append(x.name).append(": ").append(x.value).append("\r\n");
    }
    forwarded_for = forwarded_for.empty() ? client_ip_ : forwarded_for + ", " + client_ip_;
    h.append("X-Forwarded-For: ").append(forwarded_for).append("\r\n");
    h.append(pipe_.secure() ? "X-Forwarded-Proto: https\r\nX-Forwarded-Port: "
                            : "X-Forwarded-Proto: http\r\nX-Forwarded-Port: ")
        .append(std::to_string(listen_port_))
        .append("\r\n");
    if (request_chunked_) h.append("Transfer-Encoding: chunked\r\n");
    if (upgrade_) {
      for (const Header& x : ex_->headers) {
        if (NameIs(x.name, "upgrade")) h.append("Upgrade: ").append(x.value).append("\r\n");
      }
      h.append("Connection: upgrade\r\n");
    }
    h.append("\r\n");
  }

  void AppendBody(std::string_view bytes) {
    if (replayable_) {
      if (ex_->replay.size() + bytes.size() > worker_->limits().max_replay_bytes) {
        replayable_ = false;
        ex_->replay.clear();
      } else {
        ex_->replay.append(bytes);
      }
    }
    if (up_ && up_->connected) {
      up_->pipe().Write(bytes);
      if (ex_->lease.stats) Add((*ex_->lease.stats)[worker_->index()].bytes_out, bytes.size());
      sent_body_ = true;
      if (up_->pipe().Queued() > worker_->limits().max_queued_bytes) PauseClient();
    } else {
      ex_->unsent.append(bytes);
      if (ex_->unsent.size() > worker_->limits().max_queued_bytes) PauseClient();
    }
  }

  void PauseClient() {
    client_paused_ = true;
    pipe_.ReadStop();
  }

  int OnChunkHeader() {
    if (parser_.content_length == 0) return 0;  // the last chunk: written at the end of the message
    char line[32];
    int n = snprintf(line, sizeof(line), "%llx\r\n", static_cast<unsigned long long>(parser_.content_length));
    AppendBody({line, static_cast<size_t>(n)});
    req_chunk_open_ = true;
    return 0;
  }
  int OnChunkComplete() {
    if (req_chunk_open_) AppendBody("\r\n");
    req_chunk_open_ = false;
    return 0;
  }
  int OnBody(const char* at, size_t n) {
    AppendBody({at, n});
    return 0;
  }

  int OnMessageComplete() {
    if (request_chunked_) AppendBody("0\r\n\r\n");  // trailers are not forwarded
    request_done_ = true;
    waiting_ = true;
    if (phase_ == Phase::kBody) phase_ = Phase::kWaiting;
    if (response_done_) {
      // Answered already (503): Execute carries on once the parser has paused.
    } else if (up_ && up_->connected && !response_started_) {
      Arm(worker_->limits().response_timeout_ms, phase_);
    }
    return HPE_PAUSED;
  }

  // --- attempts -----------------------------------------------------------------

  // Picks a target and connects (or takes a pooled connection). Returns false
  // when it answered the client itself (503).
  bool StartAttempt() {
    ex_->lease = worker_->Pick(*ex_->rt, ex_->group, &ex_->attempts, true, ex_->sticky);
    if (!ex_->lease) {
      if (ex_->attempts.count() == 0) {
        LocalAnswer(503, "no healthy target in target group \"" + ex_->group + "\"", false);
      } else {
        LocalAnswer(
            502,
            "no target answered after " + std::to_string(ex_->attempts.count()) + " attempts: " + ex_->last_failure,
            false);
      }
      return false;
    }
    lease_backend_ = ex_->lease.backend;
    ex_->lease_target = lease_backend_->address + ":" + std::to_string(lease_backend_->port);
    ex_->attempts.Tried(ex_->lease.index);
    if (ex_->cookie_seconds > 0) {
      const std::string& token = ex_->rt->tokens[ex_->rt->group_index.at(ex_->group)][ex_->lease.index];
      ex_->set_cookie = token == ex_->sticky ? std::string() : token;
    }
    sent_body_ = false;
    ex_->unsent = ex_->replay;
    Upstream* up = worker_->TakeIdle(lease_backend_);
    if (up) {
      up->client = this;
      up->reused = true;
      up_ = up;
      SendToUpstream();
      return true;
    }
    up_ = new Upstream(worker_, lease_backend_);
    up_->client = this;
    lease_backend_->load.connections++;
    Arm(worker_->limits().connect_timeout_ms, Phase::kConnect);
    up_->pipe().Connect(reinterpret_cast<const sockaddr*>(&lease_backend_->addr));
    return true;
  }

  void SendToUpstream() {
    llhttp_init(&ex_->response, HTTP_RESPONSE, &response_settings());
    // Targets are ours to serve, not to judge: bare LF line ends and loose
    // header values (busybox httpd's CGI answers, as curl and nginx take them).
    llhttp_set_lenient_headers(&ex_->response, 1);
    ex_->response.data = this;
    up_->pipe().ReadStart();
    up_->pipe().Write(ex_->head);
    ex_->sent_ns = uv_hrtime();
    if (ex_->lease.stats) {
      Add((*ex_->lease.stats)[worker_->index()].bytes_out, ex_->head.size() + ex_->unsent.size());
    }
    if (!ex_->unsent.empty()) {
      up_->pipe().Write(ex_->unsent);
      sent_body_ = true;
      ex_->unsent.clear();
    }
    if (client_paused_ && up_->pipe().Queued() < worker_->limits().max_queued_bytes / 2) {
      client_paused_ = false;
      pipe_.ReadStart();
    }
    Arm(request_done_ ? worker_->limits().response_timeout_ms : 0, request_done_ ? Phase::kWaiting : Phase::kBody);
  }

  // A connect failed, or the target went away before any response byte.
  void AttemptFailed(bool connect_failure, const std::string& why) {
    ex_->last_failure = ex_->lease_target + ": " + why;
    bool stale = up_ && up_->reused;
    if (connect_failure && !stale) worker_->Report(*ex_->rt, ex_->group, lease_backend_, true);
    std::shared_ptr<TargetStats> failed = ex_->lease.stats;
    if (failed && connect_failure && !stale) Add((*failed)[worker_->index()].connect_failures);
    DropUpstream(true);
    if (ex_) ex_->lease.Release();
    bool replayable = replayable_ && !upgraded_;
    if (!ex_->attempts.MayRetry(replayable)) {
      LocalAnswer(502, "target " + ex_->last_failure, false);
      return;
    }
    if (failed) Add((*failed)[worker_->index()].retries);
    if (ex_->gstats) Add((*ex_->gstats)[worker_->index()].retries);
    log::Debug(kSub, "retrying on another target", {{"failed", ex_->last_failure}});
    StartAttempt();
  }

  // --- the response -------------------------------------------------------------

  static const llhttp_settings_t& request_settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t x;
      llhttp_settings_init(&x);
      x.on_message_begin = [](llhttp_t* p) { return Self(p)->OnMessageBegin(); };
      x.on_url = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnUrl(at, n); };
      x.on_header_field = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnField(at, n); };
      x.on_header_value = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnValue(at, n); };
      x.on_headers_complete = [](llhttp_t* p) { return Self(p)->OnHeadersComplete(); };
      x.on_body = [](llhttp_t* p, const char* at, size_t n) { return Self(p)->OnBody(at, n); };
      x.on_chunk_header = [](llhttp_t* p) { return Self(p)->OnChunkHeader(); };
      x.on_chunk_complete = [](llhttp_t* p) { return Self(p)->OnChunkComplete(); };
      x.on_message_complete = [](llhttp_t* p) { return Self(p)->OnMessageComplete(); };
      return x;
    }();
    return s;
  }

  static const llhttp_settings_t& response_settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t x;
      llhttp_settings_init(&x);
      x.on_status = [](llhttp_t* p, const char* at, size_t n) {
        Self(p)->ex_->status_text.append(at, n);
        return 0;
      };
      x.on_message_begin = [](llhttp_t* p) {
        auto* c = Self(p);
        c->ex_->status_text.clear();
        c->ex_->rheaders.clear();
        c->rin_value_ = false;
        return 0;
      };
      x.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
        auto* c = Self(p);
        if (c->rin_value_ || c->ex_->rheaders.empty()) {
          c->ex_->rheaders.push_back({});
          c->rin_value_ = false;
        }
        c->ex_->rheaders.back().name.append(at, n);
        return 0;
      };
      x.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
        auto* c = Self(p);
        c->rin_value_ = true;
        c->ex_->rheaders.back().value.append(at, n);
        return 0;
      };
      x.on_headers_complete = [](llhttp_t* p) { return Self(p)->OnResponseHead(); };
      x.on_body = [](llhttp_t* p, const char* at, size_t n) {
        Self(p)->pipe_.Write({at, n});
        return 0;
      };
      x.on_chunk_header = [](llhttp_t* p) {
        auto* c = Self(p);
        if (!c->rechunk_ || p->content_length == 0) return 0;
        char line[32];
        int n = snprintf(line, sizeof(line), "%llx\r\n", static_cast<unsigned long long>(p->content_length));
        c->pipe_.Write({line, static_cast<size_t>(n)});
        c->chunk_open_ = true;
        return 0;
      };
      x.on_chunk_complete = [](llhttp_t* p) {
        auto* c = Self(p);
        if (c->rechunk_ && c->chunk_open_) c->pipe_.Write("\r\n");
        c->chunk_open_ = false;
        return 0;
      };
      x.on_message_complete = [](llhttp_t* p) { return Self(p)->OnResponseComplete(); };
      return x;
    }();
    return s;
  }

  int OnResponseHead() {
    int status = ex_->response.status_code;
    bool interim = status >= 100 && status < 200 && status != 101;
    bool chunked = (ex_->response.flags & F_CHUNKED) != 0;
    bool has_length = (ex_->response.flags & F_CONTENT_LENGTH) != 0;
    bool bodiless = is_head_ || status == 204 || status == 304 || interim;
    if (status == 101 && upgrade_) upgraded_ = true;
    // The parser took the request as a protocol switch; without one it cannot go on.
    if (upgrade_ && !upgraded_ && !interim) closing_after_response_ = true;
    rechunk_ = chunked && client_http11_;
    // A body that ends with the connection cannot keep the client connection open.
    if (!bodiless && !chunked && !has_length && !upgraded_) closing_after_response_ = true;
    if (chunked && !client_http11_) closing_after_response_ = true;
    std::vector<std::string> tokens = ConnectionTokens(ex_->rheaders);
    std::string h;
    h.append(client_http11_ ? "HTTP/1.1 " : "HTTP/1.0 ")
        .append(std::to_string(status))
        .append(" ")
        .append(ex_->status_text)
        .append("\r\n");
    for (const Header& x : ex_->rheaders) {
      if (HopByHop(x.name) || NamedByConnection(tokens, x.name)) {
        if (!(upgraded_ && NameIs(x.name, "upgrade"))) continue;
      }
      h.append(x.name).append(": ").append(x.value).append("\r\n");
    }
    if (!interim && !ex_->set_cookie.empty()) {
      h.append("Set-Cookie: ")
          .append(kStickyCookie)
          .append("=")
          .append(ex_->set_cookie)
          .append("; Max-Age=")
          .append(std::to_string(ex_->cookie_seconds))
          .append("; Path=/\r\n");
    }
    if (upgraded_) {
      h.append("Connection: upgrade\r\n");
    } else if (!interim) {
      if (rechunk_) h.append("Transfer-Encoding: chunked\r\n");
      if (!client_keep_alive_ || closing_after_response_ || worker_->stopping()) {
        h.append("Connection: close\r\n");
      } else if (!client_http11_) {
        h.append("Connection: keep-alive\r\n");
      }
    }
    h.append("\r\n");
    pipe_.Write(h);
    head_forwarded_ = true;
    if (!interim) CountResponse(status);
    if (status >= 500 && !interim)
      worker_->Report(*ex_->rt, ex_->group, lease_backend_, true);
    else if (!interim)
      worker_->Report(*ex_->rt, ex_->group, lease_backend_, false);
    if (upgraded_) return HPE_PAUSED;
    return bodiless ? 1 : 0;
  }

  // A target's final response head: its class, and the group's latency.
  void CountResponse(int status) {
    int w = worker_->index();
    if (ex_->lease.stats && status >= 200 && status < 600) Add((*ex_->lease.stats)[w].responses[status / 100 - 2]);
    if (!ex_->gstats || ex_->sent_ns == 0) return;
    GroupSlot& g = (*ex_->gstats)[w];
    uint64_t us = (uv_hrtime() - ex_->sent_ns) / 1000;
    ex_->sent_ns = 0;
    size_t b = 0;
    while (b<kLatencyBuckets&& static_cast<double>(us)> kLatencyBounds[b] * 1e6) b++;
    Add(g.buckets[b]);
    Add(g.latency_count);
    Add(g.latency_sum_us, us);
  }

  int OnResponseComplete() {
    if (ex_->response.status_code >= 100 && ex_->response.status_code < 200) return 0;  // 1xx: the real answer follows
    if (rechunk_) pipe_.Write("0\r\n\r\n");
    response_done_ = true;
    return HPE_PAUSED;
  }

  void ResponseComplete() {
    if (!response_done_) return;
    bool reusable = llhttp_should_keep_alive(&ex_->response) && request_done_;
    DropUpstream(!reusable);
    if (ex_) ex_->lease.Release();
    if (request_done_) {
      AfterExchange();
    } else {
      // The target answered before the body ended; the rest is not worth reading.
      closing_after_response_ = true;
      CloseSoon();
    }
  }

  void AfterExchange() {
    waiting_ = false;
    if (!client_keep_alive_ || closing_after_response_ || worker_->stopping() || client_gone_) {
      CloseSoon();
      return;
    }
    phase_ = Phase::kIdle;
    Arm(worker_->limits().idle_timeout_ms, Phase::kIdle);
    client_paused_ = false;
    pipe_.ReadStart();
    if (!in_execute_) Parse();
  }

  void StartTunnel() {
    // Bytes the client sent after its request belong to the new protocol.
    Arm(0, Phase::kResponse);
    if (!in_.empty()) {
      up_->pipe().Write(in_);
      in_.clear();
    }
    pipe_.ReadStart();
    up_->pipe().ReadStart();
  }

  void Backpressure() {
    if (up_ && up_->pipe().Queued() > worker_->limits().max_queued_bytes) PauseClient();
  }

  void UpstreamBackpressure() {
    if (up_ && pipe_.Queued() > worker_->limits().max_queued_bytes) {
      upstream_paused_ = true;
      up_->pipe().ReadStop();
    }
  }

  // Lets go of the target connection: back to the pool, or closed.
  void DropUpstream(bool close) {
    if (!up_) return;
    Upstream* up = up_;
    up_ = nullptr;
    up->client = nullptr;
    if (close || worker_->stopping()) {
      up->pipe().Close();
      up->backend()->load.connections--;
      delete up;
    } else {
      worker_->GiveIdle(up->backend(), up);
    }
  }

  // --- answers and ends ---------------------------------------------------------

  // A redirecting listener's answer to every request (docs/load-balancing.md).
  void Redirect(const proxy::Redirect& r) {
    auto location = RedirectLocation(HostHeader(), ex_->url, r.port);
    if (!location.ok()) {
      LocalAnswer(400, location.error().message, false);
      return;
    }
    LocalAnswer(r.status, "redirecting to " + *location, false, "Location: " + *location + "\r\n", is_head_);
  }

  // Answers the request itself; `extra` are more header lines, each ending in CRLF.
  // `head_only`: an answer to HEAD, whose body is not sent.
  void LocalAnswer(int status, const std::string& why, bool close, const std::string& extra = {},
                   bool head_only = false) {
    answered_locally_ = true;
    if (response_started_) {
      CloseSoon();
      return;
    }
    if (ex_ && ex_->gstats && status >= 502 && status <= 504) Add((*ex_->gstats)[worker_->index()].local[status - 502]);
    std::string body = why + "\n";
    std::string h = "HTTP/1.1 " + std::to_string(status) + " " + Reason(status) + "\r\n" + extra +
                    "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    // A body still arriving is not read: the connection ends after the answer.
    bool closes = close || !client_keep_alive_ || worker_->stopping() || (request_has_body_ && !request_done_);
    if (closes) h += "Connection: close\r\n";
    pipe_.Write(h + "\r\n" + (head_only ? std::string() : body));
    response_started_ = true;
    response_done_ = true;
    if (ex_) ex_->lease.Release();
    DropUpstream(true);
    if (closes) {
      closing_after_response_ = true;
      CloseSoon();
    } else if (request_done_ && !in_execute_) {
      AfterExchange();
    }
  }

  // Ends the connection once the answer is out: FIN first, then what the client
  // still sends is read and dropped until it closes (or 2 s pass), so that the
  // kernel does not answer unread bytes with a reset that could lose the answer.
  void CloseSoon() {
    if (closing_) return;
    closing_ = true;
    DropUpstream(true);
    Arm(kLingerMs, Phase::kLinger);
    if (pipe_.Queued() == 0) ShutdownNow();
  }

  void ShutdownNow() {
    shut_ = true;
    pipe_.Shutdown();
    if (client_gone_) {
      Finish();
      return;
    }
    pipe_.ReadStart();
  }

  void Cut() override { Finish(); }

  void Finish() {
    if (finished_) return;
    finished_ = true;
    DropUpstream(true);
    if (ex_) ex_->lease.Release();
    uv_timer_stop(&timer_);
    pipe_.Close();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* t) { delete static_cast<ClientConn*>(t->data); });
  }

  // --- timers ---------------------------------------------------------------------

  void Arm(uint64_t ms, Phase phase) {
    phase_ = phase;
    if (finished_) return;
    if (ms == 0) {
      uv_timer_stop(&timer_);
      return;
    }
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<ClientConn*>(t->data)->Expired(); }, ms, 0);
  }

  void Expired() {
    switch (phase_) {
      case Phase::kProxyHeader:
        worker_->ProxyHeaderRefused(client_ip_,
                                    "no PROXY header within " + std::to_string(kProxyHeaderTimeoutMs) + " ms");
        Finish();
        return;
      case Phase::kIdle: Finish(); return;
      case Phase::kHead:
        LocalAnswer(
            408, "request headers not received within " + std::to_string(worker_->limits().header_timeout_ms) + " ms",
            true);
        return;
      case Phase::kConnect: AttemptFailed(true, "connect timed out"); return;
      case Phase::kWaiting:
        worker_->Report(*ex_->rt, ex_->group, lease_backend_, true);
        DropUpstream(true);
        LocalAnswer(504,
                    "target " + ex_->lease_target + " sent no response within " +
                        std::to_string(worker_->limits().response_timeout_ms) + " ms",
                    true);
        return;
      case Phase::kBody:
      case Phase::kResponse:
      case Phase::kLinger: Finish(); return;
    }
  }

  Worker* worker_;
  int listen_port_;
  std::string listener_id_;
  std::shared_ptr<size_t> listener_count_;
  std::shared_ptr<ListenerStats> lstats_;
  Pipe pipe_;
  uv_timer_t timer_{};
  llhttp_t parser_{};
  std::string client_ip_;
  std::string in_;  // client bytes not parsed yet (pipelined requests)

  // The request in progress.
  Phase phase_ = Phase::kIdle;
  size_t header_bytes_ = 0;
  bool in_value_ = false;
  bool is_head_ = false, client_http11_ = true, request_chunked_ = false, request_has_body_ = false;
  bool upgrade_ = false, client_keep_alive_ = true;
  Backend* lease_backend_ = nullptr;
  bool replayable_ = true, sent_body_ = false, request_done_ = false, waiting_ = false;
  Upstream* up_ = nullptr;
  std::unique_ptr<Exchange> ex_;  // from a request's first byte on

  // The response in progress.
  bool rin_value_ = false, rechunk_ = false, chunk_open_ = false, req_chunk_open_ = false;
  bool response_started_ = false, response_done_ = false, upgraded_ = false;
  bool head_forwarded_ = false;  // a response head (interim or final) went to the client

  bool client_paused_ = false, upstream_paused_ = false;
  bool closing_ = false, closing_after_response_ = false, client_gone_ = false;
  bool answered_locally_ = false, finished_ = false, in_execute_ = false, in_parse_ = false, shut_ = false;
};

void Upstream::OnData(Pipe*, const char* data, size_t len) {
  if (client) {
    client->UpData(data, len);
    return;
  }
  worker_->DropIdle(this);  // an idle target connection has nothing to say
}
void Upstream::OnEnd(Pipe*, int err) {
  if (client) {
    client->UpEnded(err);
    return;
  }
  worker_->DropIdle(this);
}
void Upstream::OnWritten(Pipe*) {
  if (client) client->UpWritten();
}
void Upstream::OnConnected(Pipe*, int status) {
  if (client) client->UpConnected(status);
}

// ============================================================================
// TCP splices
// ============================================================================

// One TCP client connection joined to a target: bytes both ways, each side
// paused while the other has max_queued_bytes unsent; a connect failure is
// retried on another target, twice at most, before any byte is forwarded.
class TcpConn : public PipeOwner, public Connection {
 public:
  TcpConn(Worker* w, std::string listener_id, std::shared_ptr<size_t> listener_count)
      : worker_(w),
        listener_id_(std::move(listener_id)),
        listener_count_(std::move(listener_count)),
        client_(w->loop(), this) {
    uv_timer_init(w->loop(), &timer_);
    timer_.data = this;
    worker_->ConnectionOpened(this);
    (*listener_count_)++;
  }
  ~TcpConn() override {
    if (lstats_) (*lstats_)[worker_->index()].active--;
    lease_.Release();
    (*listener_count_)--;
    worker_->ConnectionClosed(this);
  }
  Pipe& client() { return client_; }
  void Abort() { Finish(); }
  void Cut() override { Finish(); }
  // Counts this connection in its listener's metrics until it ends.
  void CountIn(std::shared_ptr<ListenerStats> stats) {
    lstats_ = std::move(stats);
    (*lstats_)[worker_->index()].active++;
  }

  // A trusted peer first has the PROXY header bound, a TLS client the
  // handshake bound; the target is picked once they are done.
  void Begin() {
    source_ = PeerOf(client_.handle());
    local_ = LocalOf(client_.handle());
    if (client_.expecting_header()) {
      uv_timer_start(
          &timer_, [](uv_timer_t* t) { static_cast<TcpConn*>(t->data)->HeaderTimedOut(); }, kProxyHeaderTimeoutMs, 0);
      client_.ReadStart();
      return;
    }
    if (client_.secure()) {
      uv_timer_start(
          &timer_, [](uv_timer_t* t) { static_cast<TcpConn*>(t->data)->Finish(); },
          worker_->limits().tls_handshake_timeout_ms, 0);
      client_.ReadStart();
      return;
    }
    Route();
  }

  void OnProxyHeader(Pipe*, const ProxyHeader& h) override {
    uv_timer_stop(&timer_);
    if (h.status != ProxyHeader::Status::kDone) {
      worker_->ProxyHeaderRefused(PeerText(), h.error);
      Finish();
      return;
    }
    if (h.addresses) source_ = h.addresses->source;
    if (client_.secure()) {
      uv_timer_start(
          &timer_, [](uv_timer_t* t) { static_cast<TcpConn*>(t->data)->Finish(); },
          worker_->limits().tls_handshake_timeout_ms, 0);
      return;
    }
    client_.ReadStop();  // until the target accepts; the bytes after the header wait in early_
    Route();
  }

  void OnSecured(Pipe*) override {
    secured_ = true;
    uv_timer_stop(&timer_);
    client_.ReadStop();  // until the target accepts; what came already waits in early_
    Route();
  }

  void Route() {
    rt_ = worker_->runtime();
    auto li = rt_ ? rt_->listener_index.find(listener_id_) : decltype(rt_->listener_index)::const_iterator();
    if (!rt_ || li == rt_->listener_index.end()) {
      Finish();
      return;
    }
    group_ = rt_->config.listeners[li->second].default_target_group;
    auto gi = rt_->group_index.find(group_);
    if (gi != rt_->group_index.end()) proxy_protocol_ = rt_->config.target_groups[gi->second].proxy_protocol;
    if (gi != rt_->group_index.end() && rt_->config.target_groups[gi->second].stickiness == Stickiness::kSourceIp &&
        source_) {
      client_key_ = source_->ip.Unmapped().ToString();
    }
    Attempt();
  }

  void OnData(Pipe* p, const char* data, size_t len) override {
    last_activity_ = uv_now(worker_->loop());
    if (!connected_) {
      // Decrypted with the end of a handshake, or read after a PROXY header,
      // before the target accepted.
      early_.append(data, len);
      return;
    }
    Pipe& other = p == &client_ ? *target_ : client_;
    if (lease_.stats) {
      TargetSlot& slot = (*lease_.stats)[worker_->index()];
      Add(p == &client_ ? slot.bytes_out : slot.bytes_in, len);
    }
    other.Write({data, len});
    if (other.Queued() > worker_->limits().max_queued_bytes) p->ReadStop();
  }
  void OnWritten(Pipe* p) override {
    Pipe* source = p == &client_ ? target_.get() : &client_;
    if (source && !source->reading() && p->Queued() < worker_->limits().max_queued_bytes / 2 &&
        !ended_[source == &client_ ? 0 : 1]) {
      source->ReadStart();
    }
    MaybeFinish();
  }
  void OnEnd(Pipe* p, int err) override {
    if (p == target_.get() && !connected_) return;  // reported through OnConnected
    if (!connected_) {
      // The TLS client ended before the target accepted: the end is passed on then.
      if (err != 0 || !secured_) {
        Finish();
        return;
      }
      ended_[0] = true;
      return;
    }
    if (err != 0) {
      Finish();
      return;
    }
    // A half-close passes through: the other side gets FIN after what is queued.
    int side = p == &client_ ? 0 : 1;
    ended_[side] = true;
    (side == 0 ? *target_ : client_).Shutdown();
    MaybeFinish();
  }
  void OnConnected(Pipe*, int status) override {
    if (status != 0) {
      Retry(uv_strerror(status));
      return;
    }
    worker_->Report(*rt_, group_, lease_.backend, false);
    if (proxy_protocol_ != ProxyProtocol::kNone) {
      // The header goes first, before any byte of the client's.
      if (!source_ || !local_) {
        Finish();
        return;
      }
      target_->Write(EncodeProxyHeader(proxy_protocol_, {*source_, *local_}));
    }
    connected_ = true;
    last_activity_ = uv_now(worker_->loop());
    uint64_t idle = worker_->limits().tcp_idle_timeout_ms;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<TcpConn*>(t->data)->CheckIdle(); }, idle, idle / 4 + 1);
    if (!early_.empty()) {
      target_->Write(early_);
      early_.clear();
    }
    if (ended_[0]) {
      target_->Shutdown();
    } else {
      client_.ReadStart();
    }
    target_->ReadStart();
  }

 private:
  void Attempt() {
    lease_ = worker_->Pick(*rt_, group_, &attempts_, false, client_key_);
    if (!lease_) {
      if (attempts_.count() == 0) log::Debug(kSub, "no healthy target", {{"group", group_}});
      Finish();
      return;
    }
    attempts_.Tried(lease_.index);
    target_ = std::make_unique<Pipe>(worker_->loop(), this);
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<TcpConn*>(t->data)->Retry("connect timed out"); },
        worker_->limits().connect_timeout_ms, 0);
    target_->Connect(reinterpret_cast<const sockaddr*>(&lease_.backend->addr));
  }

  void Retry(const std::string& why) {
    uv_timer_stop(&timer_);
    if (lease_.backend) worker_->Report(*rt_, group_, lease_.backend, true);
    log::Debug(kSub, "tcp connect failed", {{"group", group_}, {"error", why}});
    target_.reset();
    std::shared_ptr<TargetStats> failed = lease_.stats;
    if (failed) Add((*failed)[worker_->index()].connect_failures);
    lease_.Release();
    if (!attempts_.MayRetry(true)) {
      Finish();
      return;
    }
    if (failed) Add((*failed)[worker_->index()].retries);
    if (auto gi = rt_->group_index.find(group_); gi != rt_->group_index.end()) {
      Add((*rt_->group_stats[gi->second])[worker_->index()].retries);
    }
    Attempt();
  }

  void HeaderTimedOut() {
    worker_->ProxyHeaderRefused(PeerText(), "no PROXY header within " + std::to_string(kProxyHeaderTimeoutMs) + " ms");
    Finish();
  }

  // The peer's own address, for logs.
  std::string PeerText() {
    std::optional<SocketAddress> peer = PeerOf(client_.handle());
    return peer ? peer->ip.Unmapped().ToString() : "unknown";
  }

  void CheckIdle() {
    if (uv_now(worker_->loop()) - last_activity_ >= worker_->limits().tcp_idle_timeout_ms) Finish();
  }

  void MaybeFinish() {
    if (ended_[0] && ended_[1] && client_.Queued() == 0 && (!target_ || target_->Queued() == 0)) Finish();
  }

  void Finish() {
    if (finished_) return;
    finished_ = true;
    uv_timer_stop(&timer_);
    client_.Close();
    if (target_) target_->Close();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* t) { delete static_cast<TcpConn*>(t->data); });
  }

  Worker* worker_;
  std::string listener_id_;
  std::shared_ptr<size_t> listener_count_;
  std::shared_ptr<ListenerStats> lstats_;
  Pipe client_;
  std::unique_ptr<Pipe> target_;
  uv_timer_t timer_{};
  std::shared_ptr<const Runtime> rt_;
  std::string group_;
  Attempts attempts_;
  Lease lease_;
  bool connected_ = false, finished_ = false, secured_ = false;
  bool ended_[2] = {false, false};
  std::string early_;  // client bytes from before the target accepted (TLS, or after a PROXY header)
  uint64_t last_activity_ = 0;
  ProxyProtocol proxy_protocol_ = ProxyProtocol::kNone;  // the header the group's targets get
  std::string client_key_;                               // source_ip groups: what picks the target
  // The client as targets are told of it (the peer, or its PROXY header's
  // source) and the address it connected to.
  std::optional<SocketAddress> source_, local_;
};

}  // namespace

// ============================================================================
// Listening sockets
// ============================================================================

class ListenSocket {
 public:
  ListenSocket(Worker* w, const Listener& l) : worker_(w), id_(ListenerId(l)), protocol_(l.protocol), port_(l.port) {}
  Protocol protocol() const { return protocol_; }
  ~ListenSocket() {
    if (tcp_) {
      tcp_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(tcp_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    }
  }

  // Binds with SO_REUSEPORT, so every worker listens on the same port.
  Status Open(const std::string& address) {
    sockaddr_storage addr{};
    if (!ToSockaddr(address, port_, &addr)) return Error::Invalid("bad address " + address);
    tcp_ = new uv_tcp_t;
    uv_tcp_init_ex(worker_->loop(), tcp_, addr.ss_family);
    tcp_->data = this;
    uv_os_fd_t fd;
    uv_fileno(reinterpret_cast<uv_handle_t*>(tcp_), &fd);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    int err = uv_tcp_bind(tcp_, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (err == 0) err = uv_listen(reinterpret_cast<uv_stream_t*>(tcp_), 4096, Accept);
    if (err != 0)
      return Error::Internal("listen on " + address + ":" + std::to_string(port_) + ": " + uv_strerror(err));
    return {};
  }

 private:
  static void Accept(uv_stream_t* server, int status) {
    auto* self = static_cast<ListenSocket*>(server->data);
    if (!self || status < 0) return;
    self->AcceptOne(server);
  }

  // The certificates of this listener under the running document; null when it
  // has none (being removed, or its TLS configuration failed).
  std::shared_ptr<const TlsContext> Tls() const {
    const auto& rt = worker_->runtime();
    if (!rt) return nullptr;
    auto it = rt->tls.find(id_);
    return it == rt->tls.end() ? nullptr : it->second;
  }

  // True when the running document lists the peer of `tcp` in this listener's
  // proxyProtocolFrom: its connection must begin with a PROXY header.
  bool Trusted(uv_tcp_t* tcp) const {
    const auto& rt = worker_->runtime();
    if (!rt) return false;
    auto it = rt->listener_index.find(id_);
    if (it == rt->listener_index.end()) return false;
    const std::vector<Cidr>& from = rt->config.listeners[it->second].proxy_protocol_from;
    if (from.empty()) return false;
    std::optional<SocketAddress> peer = PeerOf(tcp);
    if (!peer) return false;
    return std::any_of(from.begin(), from.end(), [&](const Cidr& c) { return c.Contains(peer->ip); });
  }

  // Connections in their handshake count in max_connections like the others;
  // one over the cap is closed at once (an HTTPS client cannot read a 503 yet).
  // This listener's metrics under the running document; null when it has none.
  std::shared_ptr<ListenerStats> Stats() const {
    const auto& rt = worker_->runtime();
    if (!rt) return nullptr;
    auto it = rt->listener_index.find(id_);
    return it == rt->listener_index.end() ? nullptr : rt->listener_stats[it->second];
  }

  void AcceptOne(uv_stream_t* server) {
    const Limits& limits = worker_->limits();
    std::shared_ptr<ListenerStats> stats = Stats();
    std::shared_ptr<const TlsContext> tls;
    if (Terminates(protocol_)) tls = Tls();
    if (TargetProtocol(protocol_) == Protocol::kHttp) {
      auto* c = new ClientConn(worker_, port_, id_, count_);
      if (uv_accept(server, reinterpret_cast<uv_stream_t*>(c->pipe().handle())) != 0) {
        c->CloseIfIdle();
        return;
      }
      uv_tcp_nodelay(c->pipe().handle(), 1);
      if (stats) {
        Add((*stats)[worker_->index()].accepted);
        c->CountIn(std::move(stats));
      }
      if (protocol_ == Protocol::kHttps) {
        if (!tls || *count_ > limits.max_connections) {
          c->CloseIfIdle();
          return;
        }
        c->pipe().SetTls(std::make_unique<TlsSession>(std::move(tls)));
      } else if (*count_ > limits.max_connections) {
        static const char kBusy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 28\r\nConnection: "
            "close\r\n\r\ntoo many client connections\n";
        c->pipe().Write(kBusy);
        c->CloseIfIdle();
        return;
      }
      if (Trusted(c->pipe().handle())) c->pipe().ExpectProxyHeader();
      c->Begin();
      return;
    }
    auto* t = new TcpConn(worker_, id_, count_);
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(t->client().handle())) != 0 ||
        *count_ > limits.max_connections || (protocol_ == Protocol::kTls && !tls)) {
      t->Abort();
      return;
    }
    if (stats) {
      Add((*stats)[worker_->index()].accepted);
      t->CountIn(std::move(stats));
    }
    if (tls) t->client().SetTls(std::make_unique<TlsSession>(std::move(tls)));
    if (Trusted(t->client().handle())) t->client().ExpectProxyHeader();
    uv_tcp_nodelay(t->client().handle(), 1);
    t->Begin();
  }

  Worker* worker_;
  std::string id_;
  Protocol protocol_;
  int port_;
  uv_tcp_t* tcp_ = nullptr;
  // Connections accepted here and not yet closed: shared with them, since they
  // carry on after a new configuration closes this listener.
  std::shared_ptr<size_t> count_ = std::make_shared<size_t>(0);
};

// ============================================================================
// Workers
// ============================================================================

Worker::Worker(int index, const Options& options)
    : index_(index), options_(options), rng_(std::random_device{}() + static_cast<unsigned>(index)) {
  uv_loop_init(&loop_);
  loop_.data = &buffer_;
  uv_async_init(&loop_, &wake_, [](uv_async_t* a) { static_cast<Worker*>(a->data)->TakePosted(); });
  wake_.data = this;
  uv_timer_init(&loop_, &sweep_);
  sweep_.data = this;
  udp_ = std::make_unique<UdpWorker>(&loop_, index_, options_.limits);
}

size_t Worker::CloseLoop() {
  size_t left = 0;
  uv_walk(
      &loop_, [](uv_handle_t*, void* n) { (*static_cast<size_t*>(n))++; }, &left);
  if (left > 0) {
    // A handle nobody closed: the loop, and what the handle owns, are left to the process.
    log::Error(kSub, "a proxy worker stopped with handles still open", {{"worker", index_}, {"handles", left}});
    return left;
  }
  uv_loop_close(&loop_);
  return 0;
}

void Worker::Start() {
  uv_timer_start(
      &sweep_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->Sweep(); }, 1000, 1000);
  thread_ = std::thread([this] { Run(); });
}

void Worker::Run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Every handle is closing by now. A close callback may close another handle
  // (a connection's timer after its sockets), so the loop turns until none is
  // left; a bound keeps a handle that was never closed from holding the stop.
  for (int pass = 0; pass < 64 && uv_loop_alive(&loop_); pass++) uv_run(&loop_, UV_RUN_NOWAIT);
}

void Worker::Post(std::shared_ptr<const Runtime> runtime) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_ = std::move(runtime);
  }
  uv_async_send(&wake_);
}

void Worker::PostStop(uint64_t grace_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_posted_ = true;
    stop_grace_ms_ = grace_ms;
  }
  uv_async_send(&wake_);
}

void Worker::TakePosted() {
  std::shared_ptr<const Runtime> next;
  bool stop = false;
  uint64_t grace = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    next = std::move(posted_);
    posted_.reset();
    stop = stop_posted_;
    grace = stop_grace_ms_;
  }
  if (next && !stopping_) {
    StartSlowStarts(*next);
    runtime_ = std::move(next);
    listed_.clear();
    for (const TargetGroup& g : runtime_->config.target_groups) {
      for (const Target& t : g.targets) listed_.insert(BackendKey(t));
    }
    Reconcile();
    // Flows count as connections of their target, for draining to wait on.
    // A UDP listener's flows count as its connections.
    udp_->Apply(
        std::shared_ptr<const Config>(runtime_, &runtime_->config),
        [this](size_t g, size_t t) {
          const std::shared_ptr<TargetStats>& s = runtime_->stats[g][t];
          return FlowCounter(s, &s->connections);
        },
        [this](size_t l) {
          const std::shared_ptr<ListenerStats>& s = runtime_->listener_stats[l];
          ListenerSlot& slot = (*s)[index_];
          return UdpListenerCounters{s, &slot.accepted, &slot.active, &slot.dropped};
        });
    applied_ = runtime_->config.version;
  }
  if (stop && !stopping_) BeginStop(grace);
}

// Targets that `next` makes healthy and the running configuration did not
// have healthy start their slow start now (every target, at the first one).
void Worker::StartSlowStarts(const Runtime& next) {
  std::unordered_set<std::string> was;
  if (runtime_) {
    for (const TargetGroup& g : runtime_->config.target_groups) {
      for (const Target& t : g.targets) {
        if (t.state == TargetState::kHealthy) was.insert(BackendKey(t));
      }
    }
  }
  int64_t now = static_cast<int64_t>(uv_now(&loop_));
  for (const TargetGroup& g : next.config.target_groups) {
    for (const Target& t : g.targets) {
      if (t.state == TargetState::kHealthy && !was.count(BackendKey(t))) BackendOf(t).healthy_since_ms = now;
    }
  }
}

Backend& Worker::BackendOf(const Target& t) {
  auto [it, fresh] = backends_.try_emplace(BackendKey(t));
  Backend& b = it->second;
  if (fresh) {
    b.address = t.address;
    b.port = t.port;
    ToSockaddr(t.address, t.port, &b.addr);
    tracked_.store(backends_.size() + udp_->tracked(), std::memory_order_relaxed);
  }
  return b;
}

// Opens the listeners the new configuration adds and closes those it drops.
// Connections accepted on a closed listener carry on.
void Worker::Reconcile() {
  std::map<std::string, const Listener*> wanted;
  for (const Listener& l : runtime_->config.listeners) {
    if (l.protocol != Protocol::kUdp) wanted[ListenerId(l)] = &l;  // UDP's are udp_'s
  }
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    auto w = wanted.find(it->first);
    if (w == wanted.end() || w->second->protocol != it->second->protocol()) {
      it = listeners_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [id, l] : wanted) {
    if (listeners_.count(id)) continue;
    auto socket = std::make_unique<ListenSocket>(this, *l);
    if (Status s = socket->Open(l->address); !s.ok()) {
      log::Error(kSub, "cannot open listener", {{"worker", index_}, {"error", s.error().message}});
      continue;
    }
    if (index_ == 0) {
      log::Info(kSub, "listening",
                {{"address", l->address}, {"port", l->port}, {"protocol", ProtocolName(l->protocol)}});
    }
    listeners_[id] = std::move(socket);
  }
}

Lease Worker::Pick(const Runtime& rt, const std::string& group, Attempts* attempts, bool for_requests,
                   std::string_view sticky) {
  Lease lease;
  auto gi = rt.group_index.find(group);
  if (gi == rt.group_index.end()) return lease;
  const TargetGroup& g = rt.config.target_groups[gi->second];
  int64_t now = static_cast<int64_t>(uv_now(&loop_));
  std::vector<size_t> usable, fallback;
  std::vector<Load> loads;
  std::vector<Backend*> backends, fallback_backends;
  for (size_t i = 0; i < g.targets.size(); i++) {
    const Target& t = g.targets[i];
    if (t.state != TargetState::kHealthy || attempts->WasTried(i)) continue;
    Backend& b = BackendOf(t);
    b.load.weight = SlowStartWeight(now - b.healthy_since_ms, g.slow_start_seconds * 1000);
    fallback.push_back(i);
    fallback_backends.push_back(&b);
    if (b.ejection.Ejected(now)) continue;
    usable.push_back(i);
    backends.push_back(&b);
  }
  // Everyone ejected (the cap makes it rare): better to try than to refuse.
  if (usable.empty()) {
    usable = fallback;
    backends = fallback_backends;
  }
  if (usable.empty()) return lease;
  size_t k = usable.size();
  if (!sticky.empty() && g.stickiness == Stickiness::kLbCookie) {
    const std::vector<std::string>& tokens = rt.tokens[gi->second];
    for (size_t j = 0; j < usable.size() && k == usable.size(); j++) {
      if (tokens[usable[j]] == sticky) k = j;
    }
  } else if (!sticky.empty() && g.stickiness == Stickiness::kSourceIp) {
    std::vector<std::string_view> ids;
    for (size_t i : usable) ids.push_back(g.targets[i].id);
    k = ChooseByHash(sticky, ids);
  }
  if (k == usable.size()) {
    for (Backend* b : backends) loads.push_back(b->load);
    k = Choose(g.algorithm, loads, rng_, &cursors_[group]);
  }
  lease.backend = backends[k];
  lease.index = usable[k];
  lease.stats = rt.stats[gi->second][usable[k]];
  lease.requests = for_requests;
  if (for_requests) {
    lease.backend->load.outstanding++;
    lease.stats->requests++;
  } else {
    lease.backend->load.connections++;
    lease.stats->connections++;
  }
  return lease;
}

void Worker::Report(const Runtime& rt, const std::string& group, Backend* backend, bool failed) {
  if (!backend) return;
  if (!failed) {
    backend->ejection.Succeed();
    return;
  }
  auto gi = rt.group_index.find(group);
  if (gi == rt.group_index.end()) return;
  const TargetGroup& g = rt.config.target_groups[gi->second];
  int64_t now = static_cast<int64_t>(uv_now(&loop_));
  size_t ejected = 0;
  for (const Target& t : g.targets) {
    auto it = backends_.find(BackendKey(t));
    if (it != backends_.end() && it->second.ejection.Ejected(now)) ejected++;
  }
  if (backend->ejection.Fail(now, ejected, g.targets.size(), options_.ejection)) {
    for (size_t i = 0; i < g.targets.size(); i++) {
      if (g.targets[i].address == backend->address && g.targets[i].port == backend->port) {
        Add((*rt.stats[gi->second][i])[index_].ejections);
      }
    }
    log::Warn(kSub, "target ejected",
              {{"worker", index_},
               {"target", backend->address + ":" + std::to_string(backend->port)},
               {"group", group},
               {"for_ms", backend->ejection.until_ms() - now}});
  }
}

Upstream* Worker::TakeIdle(Backend* backend) {
  while (!backend->idle.empty()) {
    Upstream* up = backend->idle.back();
    backend->idle.pop_back();
    if (!up->pipe().closed()) return up;
    delete up;
  }
  return nullptr;
}

void Worker::GiveIdle(Backend* backend, Upstream* up) {
  if (backend->idle.size() >= options_.limits.max_idle_per_target) {
    up->pipe().Close();
    backend->load.connections--;
    delete up;
    return;
  }
  up->idle_since_ms = uv_now(&loop_);
  up->pipe().ReadStart();  // to hear the target close it
  backend->idle.push_back(up);
}

void Worker::DropIdle(Upstream* up) {
  Backend* b = up->backend();
  auto it = std::find(b->idle.begin(), b->idle.end(), up);
  if (it != b->idle.end()) b->idle.erase(it);
  up->pipe().Close();
  b->load.connections--;
  delete up;
}

// Once a second: closes pooled target connections idle too long; on a stopping
// worker, ends the loop when nothing is left or the grace ran out.
void Worker::Sweep() {
  uint64_t now = uv_now(&loop_);
  // Targets the configuration no longer lists are forgotten once nothing of
  // theirs is left (no connection, request or pooled connection): rolling
  // deploys bring new host ports all the time.
  for (auto it = backends_.begin(); it != backends_.end();) {
    Backend& b = it->second;
    for (size_t i = 0; i < b.idle.size();) {
      Upstream* up = b.idle[i];
      if (stopping_ || now - up->idle_since_ms >= options_.limits.target_idle_timeout_ms || !listed_.count(it->first)) {
        DropIdle(up);
      } else {
        i++;
      }
    }
    if (!listed_.count(it->first) && b.idle.empty() && b.load.connections == 0 && b.load.outstanding == 0) {
      it = backends_.erase(it);
    } else {
      ++it;
    }
  }
  tracked_.store(backends_.size() + udp_->tracked(), std::memory_order_relaxed);
  if (stopping_ && (open_.empty() || now >= stop_deadline_)) {
    uv_timer_stop(&sweep_);
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    // What the grace did not see end is cut, each connection with all it
    // holds (a target still connecting, a request half sent); Run then turns
    // the loop until their handles are closed and they are freed.
    std::vector<Connection*> open(open_.begin(), open_.end());
    for (Connection* c : open) c->Cut();
    uv_stop(&loop_);
  }
}

void Worker::BeginStop(uint64_t grace_ms) {
  stopping_ = true;
  listeners_.clear();
  udp_->Stop();
  // Kept-alive clients between requests are closed now; the others after their answer.
  std::vector<ClientConn*> clients(clients_.begin(), clients_.end());
  for (ClientConn* c : clients) c->CloseIfIdle();
  stop_deadline_ = uv_now(&loop_) + grace_ms;
  uv_timer_start(
      &sweep_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->Sweep(); }, 0, 100);
}

void Worker::ProxyHeaderRefused(const std::string& peer, const std::string& why) {
  headers_refused_++;
  uint64_t now = uv_now(&loop_);
  if (refused_logged_ms_ && now - *refused_logged_ms_ < 10000) {
    refused_unlogged_++;
    return;
  }
  log::Warn(kSub, "closed a trusted peer that sent no valid PROXY header",
            {{"worker", index_},
             {"peer", peer},
             {"reason", why},
             {"refused", headers_refused_},
             {"not_logged", refused_unlogged_}});
  refused_logged_ms_ = now;
  refused_unlogged_ = 0;
}

// ============================================================================
// The Proxy
// ============================================================================

Result<std::unique_ptr<Proxy>> Proxy::Start(const Options& options) {
  if (options.threads < 1 || options.threads > 256) {
    return Error::Invalid("--proxy-threads: must be between 1 and 256, not " + std::to_string(options.threads));
  }
  std::unique_ptr<Proxy> p(new Proxy());
  p->impl_ = std::make_unique<Impl>();
  p->impl_->options = options;
  auto tickets = TicketKeys::Create();
  if (tickets.ok()) {
    p->impl_->tickets = std::move(*tickets);
  } else {
    log::Warn(kSub, "TLS session tickets off", {{"error", tickets.error().message}});
  }
  for (int i = 0; i < options.threads; i++) {
    p->impl_->workers.push_back(std::make_unique<Worker>(i, options));
  }
  for (auto& w : p->impl_->workers) w->Start();
  return p;
}

Proxy::~Proxy() {
  if (impl_ && !impl_->stopped) Stop(0);
}

void Proxy::Apply(Config config) {
  auto rt = std::make_shared<Runtime>();
  {
    std::lock_guard<std::mutex> lock(impl_->stats_mu);
    std::map<std::string, std::shared_ptr<TargetStats>> kept;
    for (const TargetGroup& g : config.target_groups) {
      std::vector<std::shared_ptr<TargetStats>> per_target;
      std::vector<std::string>& tokens = rt->tokens.emplace_back();
      for (const Target& t : g.targets) {
        if (g.stickiness == Stickiness::kLbCookie) tokens.push_back(StickyToken(g.name, t.id));
        std::string key = g.name + "\n" + t.id;
        auto& s = impl_->stats[key];
        if (!s) s = std::make_shared<TargetStats>(impl_->options.threads);
        per_target.push_back(s);
        kept[key] = s;
      }
      rt->stats.push_back(std::move(per_target));
    }
    // Targets no longer listed stay visible while they have something in flight.
    for (auto& [key, s] : impl_->stats) {
      if (!kept.count(key) && (s->requests > 0 || s->connections > 0)) kept[key] = s;
    }
    impl_->stats = std::move(kept);
    // Groups and listeners keep their series while configured; the others' go.
    std::map<std::string, std::shared_ptr<GroupStats>> groups;
    for (const TargetGroup& g : config.target_groups) {
      auto& s = impl_->groups[g.name];
      if (!s) s = std::make_shared<GroupStats>(impl_->options.threads);
      groups[g.name] = s;
      rt->group_stats.push_back(s);
    }
    impl_->groups = std::move(groups);
    std::map<std::string, std::shared_ptr<ListenerStats>> listeners;
    impl_->listener_labels.clear();
    for (const Listener& l : config.listeners) {
      std::string id = ListenerId(l);
      auto& s = impl_->listeners[id];
      if (!s) s = std::make_shared<ListenerStats>(impl_->options.threads);
      listeners[id] = s;
      rt->listener_stats.push_back(s);
      impl_->listener_labels[id] = (l.address.find(':') != std::string::npos ? "[" + l.address + "]" : l.address) +
                                   ":" + std::to_string(l.port) + "/" + ProtocolName(l.protocol);
    }
    impl_->listeners = std::move(listeners);
  }
  for (size_t i = 0; i < config.target_groups.size(); i++) rt->group_index[config.target_groups[i].name] = i;
  for (size_t i = 0; i < config.listeners.size(); i++) rt->listener_index[ListenerId(config.listeners[i])] = i;
  // One TLS configuration per terminating listener and document: a changed
  // certificate serves new handshakes; connections keep the one they started with.
  for (const Listener& l : config.listeners) {
    if (!Terminates(l.protocol)) continue;
    std::vector<std::shared_ptr<const Identity>> ids;
    for (const std::string& name : l.certificates) {
      if (const Certificate* c = config.FindCertificate(name); c && c->identity) ids.push_back(c->identity);
    }
    auto ctx = TlsContext::Create(std::move(ids), impl_->tickets);
    if (!ctx.ok()) {
      log::Error(kSub, "TLS listener left without certificates", {{"port", l.port}, {"error", ctx.error().message}});
      continue;
    }
    rt->tls[ListenerId(l)] = std::move(*ctx);
  }
  rt->config = std::move(config);
  std::shared_ptr<const Runtime> shared = std::move(rt);
  for (auto& w : impl_->workers) w->Post(shared);
}

int64_t Proxy::AppliedVersion() const {
  int64_t lowest = INT64_MAX;
  for (const auto& w : impl_->workers) lowest = std::min(lowest, w->applied());
  return impl_->workers.empty() ? -1 : lowest;
}

Proxy::InFlight Proxy::TargetInFlight(std::string_view group, std::string_view target_id) const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  auto it = impl_->stats.find(std::string(group) + "\n" + std::string(target_id));
  if (it == impl_->stats.end()) return {};
  return {it->second->requests.load(), it->second->connections.load()};
}

namespace {

// A label value as the text format has it: backslash, quote and newline escaped.
std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  return out;
}

void Family(std::string* out, const char* name, const char* type, const char* help) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void Sample(std::string* out, const char* name, const std::string& labels, double value) {
  char text[32];
  snprintf(text, sizeof(text), "%.17g", value);
  out->append(name).append("{").append(labels).append("} ").append(text).append("\n");
}

// The sum over `workers` slots of one field.
template <class S, class F>
double Sum(S& stats, int workers, F field) {
  double total = 0;
  for (int w = 0; w < workers; w++) total += static_cast<double>(field(stats[w]).load(std::memory_order_relaxed));
  return total;
}

}  // namespace

void Proxy::RenderMetrics(std::string* out) const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  int n = impl_->options.threads;
  std::vector<std::pair<std::string, ListenerStats*>> listeners;
  for (auto& [id, s] : impl_->listeners) {
    listeners.emplace_back("listener=\"" + LabelValue(impl_->listener_labels[id]) + "\"", s.get());
  }
  std::vector<std::pair<std::string, GroupStats*>> groups;
  for (auto& [name, s] : impl_->groups) groups.emplace_back("target_group=\"" + LabelValue(name) + "\"", s.get());
  std::vector<std::pair<std::string, TargetStats*>> targets;
  for (auto& [key, s] : impl_->stats) {
    size_t nl = key.find('\n');
    targets.emplace_back(
        "target_group=\"" + LabelValue(key.substr(0, nl)) + "\",target=\"" + LabelValue(key.substr(nl + 1)) + "\"",
        s.get());
  }

  Family(out, "berth_proxy_connections_accepted_total", "counter", "Client connections accepted.");
  for (auto& [l, s] : listeners)
    Sample(out, "berth_proxy_connections_accepted_total", l,
           Sum(
               *s, n, [](ListenerSlot & x) -> auto& { return x.accepted; }));
  Family(out, "berth_proxy_connections_active", "gauge", "Client connections open.");
  for (auto& [l, s] : listeners)
    Sample(out, "berth_proxy_connections_active", l,
           Sum(
               *s, n, [](ListenerSlot & x) -> auto& { return x.active; }));
  Family(out, "berth_proxy_requests_total", "counter", "HTTP requests received (request heads parsed).");
  for (auto& [l, s] : listeners)
    Sample(out, "berth_proxy_requests_total", l,
           Sum(
               *s, n, [](ListenerSlot & x) -> auto& { return x.requests; }));
  Family(out, "berth_proxy_targets_tracked", "gauge",
         "Target addresses the workers keep state for (load, ejection, pooled connections, UDP flows), summed over "
         "workers; one no longer configured is dropped once nothing of it is left.");
  double tracked = 0;
  for (const auto& w : impl_->workers) tracked += static_cast<double>(w->tracked());
  out->append("berth_proxy_targets_tracked ").append(std::to_string(static_cast<uint64_t>(tracked))).append("\n");
  Family(out, "berth_proxy_udp_datagrams_dropped_total", "counter",
         "Datagrams of new UDP flows dropped: max_udp_flows reached, or no healthy target.");
  for (auto& [l, s] : listeners) {
    if (!l.ends_with("/UDP\"")) continue;
    Sample(out, "berth_proxy_udp_datagrams_dropped_total", l,
           Sum(
               *s, n, [](ListenerSlot & x) -> auto& { return x.dropped; }));
  }

  Family(out, "berth_proxy_target_responses_total", "counter", "Final responses from targets, by class.");
  static const char* kClasses[] = {"2xx", "3xx", "4xx", "5xx"};
  for (auto& [l, s] : targets) {
    for (int c = 0; c < 4; c++) {
      Sample(out, "berth_proxy_target_responses_total", l + ",class=\"" + kClasses[c] + "\"",
             Sum(
                 *s, n, [c](TargetSlot & x) -> auto& { return x.responses[c]; }));
    }
  }
  Family(out, "berth_proxy_local_responses_total", "counter",
         "Answers the proxy gave itself for a target group: 502 (no target answered), 503 (no healthy target), 504 "
         "(a target's answer timed out).");
  for (auto& [l, s] : groups) {
    for (int c = 0; c < 3; c++) {
      Sample(out, "berth_proxy_local_responses_total", l + ",code=\"" + std::to_string(502 + c) + "\"",
             Sum(
                 *s, n, [c](GroupSlot & x) -> auto& { return x.local[c]; }));
    }
  }
  Family(out, "berth_proxy_group_retries_total", "counter", "Attempts retried on another target.");
  for (auto& [l, s] : groups)
    Sample(out, "berth_proxy_group_retries_total", l,
           Sum(
               *s, n, [](GroupSlot & x) -> auto& { return x.retries; }));
  struct TargetCounter {
    const char* name;
    const char* help;
    std::atomic<uint64_t> TargetSlot::*field;
  };
  static const TargetCounter kTargetCounters[] = {
      {"berth_proxy_target_retries_total", "Attempts that failed on this target and were retried on another.",
       &TargetSlot::retries},
      {"berth_proxy_target_ejections_total", "Passive ejections of this target (per worker).", &TargetSlot::ejections},
      {"berth_proxy_target_connect_failures_total", "Connects refused, reset or timed out.",
       &TargetSlot::connect_failures},
      {"berth_proxy_target_bytes_in_total", "Bytes received from the target.", &TargetSlot::bytes_in},
      {"berth_proxy_target_bytes_out_total", "Bytes sent to the target.", &TargetSlot::bytes_out},
  };
  for (const TargetCounter& c : kTargetCounters) {
    Family(out, c.name, "counter", c.help);
    for (auto& [l, s] : targets)
      Sample(out, c.name, l,
             Sum(
                 *s, n, [&](TargetSlot & x) -> auto& { return x.*c.field; }));
  }

  const char* kLatency = "berth_proxy_target_response_seconds";
  Family(out, kLatency, "histogram", "From the request sent to a target to its response head, per target group.");
  for (auto& [l, s] : groups) {
    double cumulative = 0;
    for (size_t b = 0; b <= kLatencyBuckets; b++) {
      cumulative += Sum(
          *s, n, [b](GroupSlot & x) -> auto& { return x.buckets[b]; });
      char le[32];
      if (b < kLatencyBuckets) {
        snprintf(le, sizeof(le), "%g", kLatencyBounds[b]);
      } else {
        snprintf(le, sizeof(le), "+Inf");
      }
      Sample(out, "berth_proxy_target_response_seconds_bucket", l + ",le=\"" + le + "\"", cumulative);
    }
    Sample(out, "berth_proxy_target_response_seconds_sum", l,
           Sum(
               *s, n, [](GroupSlot & x) -> auto& { return x.latency_sum_us; }) /
               1e6);
    Sample(out, "berth_proxy_target_response_seconds_count", l,
           Sum(
               *s, n, [](GroupSlot & x) -> auto& { return x.latency_count; }));
  }
}

size_t Proxy::Stop(uint64_t grace_ms) {
  if (impl_->stopped) return 0;
  impl_->stopped = true;
  for (auto& w : impl_->workers) w->PostStop(grace_ms);
  size_t left = 0;
  for (auto& w : impl_->workers) {
    w->Join();
    left += w->CloseLoop();
  }
  std::lock_guard<std::mutex> lock(impl_->stats_mu);  // RenderMetrics reads the workers
  impl_->workers.clear();
  return left;
}

}  // namespace berth::proxy
