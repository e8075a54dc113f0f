#include "net/socket.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/log.h"
#include "net/uv.h"

namespace berth::net {

namespace {

// Reads are processed synchronously, so one buffer serves every socket of a thread.
constexpr size_t kReadBufferSize = 64 * 1024;
thread_local char g_read_buffer[kReadBufferSize];

class UvStream;

struct Sock {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  };
  UvStream* owner = nullptr;
};

struct WriteReq {
  uv_write_t req;
  std::string data;
  UvStream* owner;
};

}  // namespace

// What a stream hands the write thread, and what comes back.
enum class JobKind { kData, kShutdown, kRelease };
struct WriteJob {
  Sock* sock;
  int fd;
  JobKind kind;
  std::string data;
};
struct WriteDone {
  Sock* sock;
  JobKind kind;
  size_t len;
  int status;  // 0, or a libuv error code (a negative errno)
};

struct WriteThread::Impl {
  uv_loop_t* loop = nullptr;
  uv_prepare_t prepare{};               // hands over the iteration's jobs before the loop polls
  uv_async_t async{};                   // the thread's completions
  std::vector<WriteJob> outbox;         // loop thread only
  std::unordered_set<Sock*> releasing;  // closed streams whose socket the thread holds
  int epfd = -1;
  int evfd = -1;
  std::thread thread;

  std::mutex mu;  // guards the four below
  std::vector<WriteJob> inbox;
  std::vector<WriteDone> done;
  bool idle = false;  // the thread waits in epoll_wait
  bool stop = false;

  void Queue(WriteJob job) { outbox.push_back(std::move(job)); }
  void HandOver();   // loop thread
  void Completed();  // loop thread
  void Run();        // the thread
};

namespace {

class UvStream final : public Stream {
 public:
  explicit UvStream(Sock* sock, WriteThread::Impl* writer = nullptr) : sock_(sock), writer_(writer) {
    sock_->owner = this;
    if (writer_ && uv_fileno(&sock_->handle, &fd_) != 0) writer_ = nullptr;
  }
  ~UvStream() override { Close(); }

  void SetHandler(Handler* handler) override { handler_ = handler; }

  void ReadStart() override {
    if (!sock_ || reading_) return;
    reading_ = true;
    uv_read_start(
        &sock_->stream,
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          buf->base = g_read_buffer;
          buf->len = kReadBufferSize;
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
          auto* sock = reinterpret_cast<Sock*>(s);
          if (!sock->owner) return;
          sock->owner->OnRead(n);
        });
  }

  void ReadStop() override {
    if (!sock_ || !reading_) return;
    reading_ = false;
    uv_read_stop(&sock_->stream);
  }

  void Write(std::string data) override {
    if (!sock_ || failed_ || data.empty()) return;
    if (writer_) {
      pending_ += data.size();
      outstanding_++;
      writer_->Queue(WriteJob{sock_, fd_, JobKind::kData, std::move(data)});
      return;
    }
    size_t off = 0;
    if (pending_ == 0) {
      uv_buf_t b = uv_buf_init(data.data(), static_cast<unsigned>(data.size()));
      int n = uv_try_write(&sock_->stream, &b, 1);
      // On an error, fall through to uv_write, which reports it from its callback:
      // a handler is never called back from inside Write.
      if (n > 0) off = static_cast<size_t>(n);
      if (off == data.size()) return;
    }
    auto* w = new WriteReq();
    w->data = off ? data.substr(off) : std::move(data);
    w->owner = this;
    w->req.data = w;
    pending_ += w->data.size();
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, &sock_->stream, &b, 1, [](uv_write_t* req, int status) {
      auto* w = static_cast<WriteReq*>(req->data);
      UvStream* owner = w->owner;
      size_t len = w->data.size();
      delete w;
      if (owner) owner->OnWritten(len, status);
    });
    if (rc != 0) {
      // The handle is unusable; reading reports the end. Nothing is called back here.
      pending_ -= w->data.size();
      delete w;
      failed_ = true;
      return;
    }
    in_flight_.push_back(w);
  }

  void Write(std::string_view data) override { Write(std::string(data)); }

  size_t PendingWriteBytes() const override { return pending_; }

  void Shutdown() override {
    if (!sock_ || shut_) return;
    shut_ = true;
    if (writer_) {  // after the bytes the thread has: it shuts the socket down itself
      outstanding_++;
      writer_->Queue(WriteJob{sock_, fd_, JobKind::kShutdown, {}});
      return;
    }
    auto* req = new uv_shutdown_t();
    if (uv_shutdown(req, &sock_->stream, [](uv_shutdown_t* r, int) { delete r; }) != 0) delete req;
  }

  void Close() override {
    if (!sock_) return;
    for (WriteReq* w : in_flight_) w->owner = nullptr;
    in_flight_.clear();
    sock_->owner = nullptr;
    if (writer_ && outstanding_ > 0) {
      // The thread may be writing to the socket: it drops what is left and lets
      // go of it, and the socket is closed then (WriteThread::Impl::Completed).
      uv_read_stop(&sock_->stream);
      writer_->releasing.insert(sock_);
      writer_->Queue(WriteJob{sock_, fd_, JobKind::kRelease, {}});
      sock_ = nullptr;
      handler_ = nullptr;
      return;
    }
    uv_close(&sock_->handle, [](uv_handle_t* h) { delete reinterpret_cast<Sock*>(h); });
    sock_ = nullptr;
    handler_ = nullptr;
  }

  std::string PeerName() const override {
    if (!sock_) return "";
    if (sock_->handle.type == UV_NAMED_PIPE) return "unix";
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(&sock_->tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    char ip[64] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      uv_ip4_name(a, ip, sizeof ip);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      uv_ip6_name(a, ip, sizeof ip);
      port = ntohs(a->sin6_port);
    }
    return std::string(ip) + ":" + std::to_string(port);
  }

 private:
  void OnRead(ssize_t n) {
    if (n > 0) {
      if (handler_) handler_->OnData(std::string_view(g_read_buffer, static_cast<size_t>(n)));
    } else if (n < 0) {
      ReadStop();
      if (handler_) handler_->OnEnd(n == UV_EOF ? 0 : static_cast<int>(n));
    }
  }

  // A job of this stream's came back from the write thread.
  void OnSent(JobKind kind, size_t len, int status) {
    outstanding_--;
    if (kind == JobKind::kData) {
      pending_ -= len;
      if (status != 0) {
        Fail(status);
        return;
      }
      if (pending_ == 0 && handler_) handler_->OnDrained();
    }
  }

  void OnWritten(size_t len, int status) {
    pending_ -= len;
    // libuv completes writes in the order they were queued.
    if (!in_flight_.empty()) in_flight_.pop_front();
    if (status != 0) {
      Fail(status);
      return;
    }
    if (pending_ == 0 && handler_) handler_->OnDrained();
  }

  void Fail(int err) {
    if (failed_) return;
    failed_ = true;
    if (handler_) handler_->OnEnd(err);
  }

  friend struct WriteThread::Impl;  // OnSent

  Sock* sock_;
  WriteThread::Impl* writer_ = nullptr;
  int fd_ = -1;
  size_t outstanding_ = 0;  // jobs with the write thread
  Handler* handler_ = nullptr;
  size_t pending_ = 0;
  std::deque<WriteReq*> in_flight_;
  bool reading_ = false;
  bool shut_ = false;
  bool failed_ = false;
};

}  // namespace

// --- WriteThread ---

Result<std::unique_ptr<WriteThread>> WriteThread::Start(uv_loop_t* loop) {
  auto* impl = new Impl();
  impl->loop = loop;
  impl->epfd = epoll_create1(EPOLL_CLOEXEC);
  impl->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up
  if (impl->epfd < 0 || impl->evfd < 0 || epoll_ctl(impl->epfd, EPOLL_CTL_ADD, impl->evfd, &ev) != 0) {
    std::string why = strerror(errno);
    if (impl->epfd >= 0) close(impl->epfd);
    if (impl->evfd >= 0) close(impl->evfd);
    delete impl;
    return Error::Internal("write thread: " + why);
  }
  uv_prepare_init(loop, &impl->prepare);
  impl->prepare.data = impl;
  uv_prepare_start(&impl->prepare, [](uv_prepare_t* p) { static_cast<Impl*>(p->data)->HandOver(); });
  uv_unref(reinterpret_cast<uv_handle_t*>(&impl->prepare));
  uv_async_init(loop, &impl->async, [](uv_async_t* a) { static_cast<Impl*>(a->data)->Completed(); });
  impl->async.data = impl;
  uv_unref(reinterpret_cast<uv_handle_t*>(&impl->async));
  impl->thread = std::thread([impl] { impl->Run(); });
  std::unique_ptr<WriteThread> w(new WriteThread());
  w->impl_ = impl;
  return w;
}

WriteThread::~WriteThread() {
  Impl* impl = impl_;
  {
    std::lock_guard<std::mutex> lock(impl->mu);
    impl->stop = true;
  }
  uint64_t one = 1;
  (void)!write(impl->evfd, &one, sizeof one);
  impl->thread.join();
  close(impl->epfd);
  close(impl->evfd);
  // The thread is gone: sockets it held can close now.
  for (Sock* sock : impl->releasing) {
    uv_close(&sock->handle, [](uv_handle_t* h) { delete reinterpret_cast<Sock*>(h); });
  }
  // libuv finishes closes last-closed first, reading the next handle of its list
  // before each callback: the handle whose callback frees both closes first.
  uv_close(reinterpret_cast<uv_handle_t*>(&impl->async), [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
  uv_close(reinterpret_cast<uv_handle_t*>(&impl->prepare), nullptr);
}

void WriteThread::HandOver() { impl_->HandOver(); }

void WriteThread::Impl::HandOver() {
  if (outbox.empty()) return;
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (inbox.empty()) {
      inbox.swap(outbox);
    } else {
      for (WriteJob& j : outbox) inbox.push_back(std::move(j));
      outbox.clear();
    }
    wake = idle;
    idle = false;
  }
  if (wake) {
    uint64_t one = 1;
    (void)!write(evfd, &one, sizeof one);
  }
}

void WriteThread::Impl::Completed() {
  std::vector<WriteDone> batch;
  {
    std::lock_guard<std::mutex> lock(mu);
    batch.swap(done);
  }
  for (const WriteDone& d : batch) {
    if (d.kind == JobKind::kRelease) {
      releasing.erase(d.sock);
      uv_close(&d.sock->handle, [](uv_handle_t* h) { delete reinterpret_cast<Sock*>(h); });
      continue;
    }
    // A stream closed meanwhile has no owner; its release comes later in order.
    if (d.sock->owner) d.sock->owner->OnSent(d.kind, d.len, d.status);
  }
}

// The thread: takes jobs, writes each socket's bytes in order, waits in epoll for
// sockets whose buffer is full, and reports every job back.
void WriteThread::Impl::Run() {
  struct Queued {
    int fd = -1;
    std::deque<WriteJob> jobs;
    size_t off = 0;        // of the first job's data
    bool blocked = false;  // waiting for EPOLLOUT
  };
  std::unordered_map<Sock*, Queued> socks;  // only sockets with jobs
  size_t blocked = 0;                       // of them, waiting for room
  std::vector<WriteJob> jobs;
  std::vector<WriteDone> out;
  epoll_event events[256];

  auto drive = [&](Sock* sock, Queued& q) {
    while (!q.jobs.empty() && !q.blocked) {
      WriteJob& j = q.jobs.front();
      if (j.kind == JobKind::kShutdown) {
        ::shutdown(q.fd, SHUT_WR);
        out.push_back(WriteDone{sock, JobKind::kShutdown, 0, 0});
        q.jobs.pop_front();
        continue;
      }
      ssize_t n = ::send(q.fd, j.data.data() + q.off, j.data.size() - q.off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        q.off += static_cast<size_t>(n);
        if (q.off < j.data.size()) continue;
        out.push_back(WriteDone{sock, JobKind::kData, j.data.size(), 0});
        q.jobs.pop_front();
        q.off = 0;
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.ptr = sock;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, q.fd, &ev) == 0) {
          q.blocked = true;
          blocked++;
          return;
        }
        errno = EIO;  // cannot wait for room: fail the socket rather than spin
      }
      // The socket failed: every job left fails with it (the reader sees the end too).
      int err = -errno;
      for (const WriteJob& rest : q.jobs) out.push_back(WriteDone{sock, rest.kind, rest.data.size(), err});
      q.jobs.clear();
      q.off = 0;
    }
  };

  for (;;) {
    bool idle_now;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stop) return;
      jobs.swap(inbox);
      if (!out.empty()) {
        for (WriteDone& d : out) done.push_back(d);
        out.clear();
        uv_async_send(&async);
      }
      idle_now = idle = jobs.empty();
    }
    // Sleep when there is nothing to do; otherwise only look (without waiting)
    // whether a socket waiting for room has some, so none starves under load.
    int n = 0;
    if (idle_now || blocked > 0) n = epoll_wait(epfd, events, 256, idle_now ? -1 : 0);
    if (idle_now) {
      std::lock_guard<std::mutex> lock(mu);
      idle = false;
    }
    for (int i = 0; i < n; i++) {
      if (!events[i].data.ptr) {
        uint64_t v;
        (void)!read(evfd, &v, sizeof v);
        continue;
      }
      auto it = socks.find(static_cast<Sock*>(events[i].data.ptr));
      if (it == socks.end() || !it->second.blocked) continue;
      epoll_ctl(epfd, EPOLL_CTL_DEL, it->second.fd, nullptr);
      it->second.blocked = false;
      blocked--;
      drive(it->first, it->second);
      if (it->second.jobs.empty() && !it->second.blocked) socks.erase(it);
    }
    for (WriteJob& j : jobs) {
      Sock* sock = j.sock;
      if (j.kind == JobKind::kRelease) {
        auto it = socks.find(sock);
        if (it != socks.end()) {
          if (it->second.blocked) {
            epoll_ctl(epfd, EPOLL_CTL_DEL, it->second.fd, nullptr);
            blocked--;
          }
          socks.erase(it);
        }
        out.push_back(WriteDone{sock, JobKind::kRelease, 0, 0});
        continue;
      }
      Queued& q = socks[sock];
      q.fd = j.fd;
      q.jobs.push_back(std::move(j));
      drive(sock, q);
      if (q.jobs.empty() && !q.blocked) socks.erase(sock);
    }
    jobs.clear();
  }
}

// --- Endpoint ---

Result<Endpoint> Endpoint::Parse(std::string_view text, int default_port) {
  Endpoint e;
  std::string_view t = text;
  if (t.starts_with("unix://")) {
    e.kind = Kind::kUnix;
    e.path = std::string(t.substr(7));
    if (e.path.empty() || e.path[0] != '/') return Error::Invalid("unix socket address must be unix:///absolute/path");
    return e;
  }
  if (t.starts_with("/")) {
    e.kind = Kind::kUnix;
    e.path = std::string(t);
    return e;
  }
  if (t.starts_with("https://")) {
    e.tls = true;
    t.remove_prefix(8);
  } else if (t.starts_with("http://")) {
    t.remove_prefix(7);
  }
  while (!t.empty() && t.back() == '/') t.remove_suffix(1);
  if (t.find('/') != std::string_view::npos)
    return Error::Invalid("address must not have a path: " + std::string(text));
  std::string_view host = t, port;
  if (t.starts_with("[")) {
    size_t close = t.find(']');
    if (close == std::string_view::npos) return Error::Invalid("bad IPv6 address: " + std::string(text));
    host = t.substr(1, close - 1);
    std::string_view rest = t.substr(close + 1);
    if (rest.starts_with(":"))
      port = rest.substr(1);
    else if (!rest.empty())
      return Error::Invalid("bad address: " + std::string(text));
  } else if (size_t colon = t.rfind(':'); colon != std::string_view::npos) {
    host = t.substr(0, colon);
    port = t.substr(colon + 1);
  }
  if (host.empty()) return Error::Invalid("address has no host: " + std::string(text));
  e.host = std::string(host);
  if (port.empty()) {
    if (default_port <= 0) return Error::Invalid("address has no port: " + std::string(text));
    e.port = default_port;
  } else {
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) return Error::Invalid("bad port in address: " + std::string(text));
      p = p * 10 + (c - '0');
    }
    if (p > 65535) return Error::Invalid("bad port in address: " + std::string(text));
    e.port = p;
  }
  return e;
}

std::string Endpoint::ToString() const {
  if (kind == Kind::kUnix) return "unix://" + path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

// --- Listener ---

struct Listener::Impl {
  Sock sock;
  AcceptFn on_accept;
  uv_loop_t* loop;
  WriteThread::Impl* writer = nullptr;
};

namespace {

Status ResolveNumeric(const Endpoint& e, sockaddr_storage* out) {
  std::string host = e.host == "localhost" ? "127.0.0.1" : e.host;
  if (uv_ip4_addr(host.c_str(), e.port, reinterpret_cast<sockaddr_in*>(out)) == 0) return {};
  if (uv_ip6_addr(host.c_str(), e.port, reinterpret_cast<sockaddr_in6*>(out)) == 0) return {};
  return Error::Invalid("listen address must be an IP address: " + e.host);
}

}  // namespace

Result<std::unique_ptr<Listener>> Listener::Open(uv_loop_t* loop, const Endpoint& where, AcceptFn on_accept,
                                                 WriteThread* writer) {
  auto* impl = new Impl();
  impl->on_accept = std::move(on_accept);
  impl->loop = loop;
  impl->writer = writer ? writer->impl() : nullptr;
  impl->sock.handle.data = impl;
  auto fail = [impl](Error e) -> Result<std::unique_ptr<Listener>> {
    uv_close(&impl->sock.handle, [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
    return e;
  };
  int port = 0;
  if (where.kind == Endpoint::Kind::kTcp) {
    sockaddr_storage addr{};
    if (Status s = ResolveNumeric(where, &addr); !s) {
      delete impl;
      return s.take_error();
    }
    uv_tcp_init(loop, &impl->sock.tcp);
    impl->sock.handle.data = impl;
    if (int rc = uv_tcp_bind(&impl->sock.tcp, reinterpret_cast<sockaddr*>(&addr), 0); rc != 0) {
      return fail(Error{ErrorKind::kUnavailable, "ListenFailed", "bind " + where.ToString() + ": " + UvError(rc)});
    }
    uv_tcp_nodelay(&impl->sock.tcp, 1);
  } else {
    uv_pipe_init(loop, &impl->sock.pipe, 0);
    impl->sock.handle.data = impl;
    struct stat st {};
    if (lstat(where.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      // Replace a socket left by a dead process, never one a live server answers on.
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un sun{};
      sun.sun_family = AF_UNIX;
      bool live = false;
      if (probe >= 0 && where.path.size() < sizeof sun.sun_path) {
        memcpy(sun.sun_path, where.path.c_str(), where.path.size() + 1);
        live = connect(probe, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
      }
      if (probe >= 0) close(probe);
      if (live) {
        uv_close(&impl->sock.handle, [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
        return Error{ErrorKind::kUnavailable, "ListenFailed",
                     "unix socket " + where.path + " is in use by a running server"};
      }
      unlink(where.path.c_str());
    }
    if (int rc = uv_pipe_bind(&impl->sock.pipe, where.path.c_str()); rc != 0) {
      return fail(Error{ErrorKind::kUnavailable, "ListenFailed", "bind " + where.path + ": " + UvError(rc)});
    }
  }
  int rc = uv_listen(&impl->sock.stream, 1024, [](uv_stream_t* server, int status) {
    auto* impl = static_cast<Impl*>(server->data);
    if (status != 0) {
      log::Warn("net", "accept failed", {{"error", UvError(status)}});
      return;
    }
    auto* sock = new Sock();
    if (server->type == UV_TCP) {
      uv_tcp_init(impl->loop, &sock->tcp);
    } else {
      uv_pipe_init(impl->loop, &sock->pipe, 0);
    }
    if (int rc = uv_accept(server, &sock->stream); rc != 0) {
      uv_close(&sock->handle, [](uv_handle_t* h) { delete reinterpret_cast<Sock*>(h); });
      // EMFILE and friends: out of descriptors is logged, not fatal for the server.
      log::Warn("net", "accept failed", {{"error", UvError(rc)}});
      return;
    }
    if (server->type == UV_TCP) uv_tcp_nodelay(&sock->tcp, 1);
    impl->on_accept(std::make_unique<UvStream>(sock, impl->writer));
  });
  if (rc != 0) {
    return fail(Error{ErrorKind::kUnavailable, "ListenFailed", "listen " + where.ToString() + ": " + UvError(rc)});
  }
  if (where.kind == Endpoint::Kind::kTcp) {
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&impl->sock.tcp, reinterpret_cast<sockaddr*>(&bound), &len);
    port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  } else {
    chmod(where.path.c_str(), 0660);
  }
  auto listener = std::unique_ptr<Listener>(new Listener());
  listener->impl_ = impl;
  listener->port_ = port;
  listener->endpoint_ = where;
  if (where.kind == Endpoint::Kind::kTcp) listener->endpoint_.port = port;
  return listener;
}

Listener::~Listener() {
  if (!impl_) return;
  impl_->on_accept = nullptr;
  if (endpoint_.kind == Endpoint::Kind::kUnix) unlink(endpoint_.path.c_str());
  uv_close(&impl_->sock.handle, [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
}

// --- Connect ---

namespace {

struct ConnectOp {
  uv_connect_t req;
  uv_getaddrinfo_t gai;
  Sock* sock = nullptr;
  uv_loop_t* loop;
  std::function<void(Result<std::unique_ptr<Stream>>)> done;
  std::string what;
};

void FinishConnect(ConnectOp* op, int status) {
  if (status != 0) {
    uv_close(&op->sock->handle, [](uv_handle_t* h) { delete reinterpret_cast<Sock*>(h); });
    op->done(Error{ErrorKind::kUnavailable, "ConnectFailed", "cannot connect to " + op->what + ": " + UvError(status)});
  } else {
    if (op->sock->handle.type == UV_TCP) uv_tcp_nodelay(&op->sock->tcp, 1);
    op->done(std::unique_ptr<Stream>(new UvStream(op->sock)));
  }
  delete op;
}

void ConnectTcp(ConnectOp* op, const sockaddr* addr) {
  op->sock = new Sock();
  uv_tcp_init(op->loop, &op->sock->tcp);
  op->req.data = op;
  int rc = uv_tcp_connect(&op->req, &op->sock->tcp, addr, [](uv_connect_t* req, int status) {
    FinishConnect(static_cast<ConnectOp*>(req->data), status);
  });
  if (rc != 0) FinishConnect(op, rc);
}

}  // namespace

Result<SocketPair> MakeSocketPair(uv_loop_t* loop) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    return Error::Internal(std::string("socketpair: ") + strerror(errno));
  }
  auto* sock = new Sock();
  uv_pipe_init(loop, &sock->pipe, 0);
  if (int rc = uv_pipe_open(&sock->pipe, fds[0]); rc != 0) {
    close(fds[1]);
    uv_close(&sock->handle, [](uv_handle_t* h) { delete reinterpret_cast<Sock*>(h); });
    return Error::Internal("opening a socket pair: " + UvError(rc));
  }
  SocketPair pair;
  pair.ours = std::unique_ptr<Stream>(new UvStream(sock));
  pair.theirs = fds[1];
  return pair;
}

void Connect(uv_loop_t* loop, const Endpoint& where, std::function<void(Result<std::unique_ptr<Stream>>)> done) {
  auto* op = new ConnectOp();
  op->loop = loop;
  op->done = std::move(done);
  op->what = where.ToString();
  if (where.kind == Endpoint::Kind::kUnix) {
    op->sock = new Sock();
    uv_pipe_init(loop, &op->sock->pipe, 0);
    op->req.data = op;
    uv_pipe_connect(&op->req, &op->sock->pipe, where.path.c_str(),
                    [](uv_connect_t* req, int status) { FinishConnect(static_cast<ConnectOp*>(req->data), status); });
    return;
  }
  sockaddr_storage addr{};
  std::string host = where.host == "localhost" ? "127.0.0.1" : where.host;
  if (uv_ip4_addr(host.c_str(), where.port, reinterpret_cast<sockaddr_in*>(&addr)) == 0 ||
      uv_ip6_addr(host.c_str(), where.port, reinterpret_cast<sockaddr_in6*>(&addr)) == 0) {
    ConnectTcp(op, reinterpret_cast<sockaddr*>(&addr));
    return;
  }
  // A host name: resolve it on libuv's thread pool.
  op->gai.data = op;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(where.port);
  int rc = uv_getaddrinfo(
      loop, &op->gai,
      [](uv_getaddrinfo_t* gai, int status, addrinfo* res) {
        auto* op = static_cast<ConnectOp*>(gai->data);
        if (status != 0 || !res) {
          auto done = std::move(op->done);
          std::string what = op->what;
          delete op;
          done(Error{ErrorKind::kUnavailable, "ConnectFailed", "cannot resolve " + what + ": " + UvError(status)});
          if (res) uv_freeaddrinfo(res);
          return;
        }
        sockaddr_storage addr{};
        memcpy(&addr, res->ai_addr, res->ai_addrlen);
        uv_freeaddrinfo(res);
        ConnectTcp(op, reinterpret_cast<sockaddr*>(&addr));
      },
      where.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    auto d = std::move(op->done);
    delete op;
    d(Error{ErrorKind::kUnavailable, "ConnectFailed", "cannot resolve " + where.ToString() + ": " + UvError(rc)});
  }
}

}  // namespace berth::net
