// UDP listeners and flows (udp.h). Like proxy.cc, this calls libuv directly:
// the listeners need SO_REUSEPORT, and datagrams are read into one buffer per
// worker and sent with uv_udp_try_send, never queued (a datagram the kernel
// will not take now is dropped, as the network would drop it).
#include "proxy/udp.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <uv.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/log.h"
#include "proxy/balance.h"
#include "proxy/proxy.h"

namespace berth::proxy {
namespace {

constexpr const char* kSub = "proxy";
// The read buffer: above the largest UDP payload over IPv4 (65,507 bytes).
constexpr size_t kBufferBytes = 64 * 1024;
// Drops are logged at most once per this long per worker, with how many were not.
constexpr uint64_t kDropLogEveryMs = 10000;

bool ToSockaddr(const std::string& address, int port, sockaddr_storage* out) {
  if (address.find(':') != std::string::npos) {
    return uv_ip6_addr(address.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
  }
  return uv_ip4_addr(address.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0;
}

// A client address as a map key: family, address bytes, port bytes.
std::string AddressKey(const sockaddr* a) {
  if (a->sa_family == AF_INET6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(a);
    return "6" + std::string(reinterpret_cast<const char*>(&s->sin6_addr), sizeof(s->sin6_addr)) +
           std::string(reinterpret_cast<const char*>(&s->sin6_port), sizeof(s->sin6_port));
  }
  const auto* s = reinterpret_cast<const sockaddr_in*>(a);
  return "4" + std::string(reinterpret_cast<const char*>(&s->sin_addr), sizeof(s->sin_addr)) +
         std::string(reinterpret_cast<const char*>(&s->sin_port), sizeof(s->sin_port));
}

// "address:port", for logs.
std::string AddressText(const sockaddr* a) {
  char text[64] = {0};
  int port = 0;
  if (a->sa_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(a), text, sizeof(text));
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(a)->sin6_port);
    return "[" + std::string(text) + "]:" + std::to_string(port);
  }
  uv_ip4_name(reinterpret_cast<const sockaddr_in*>(a), text, sizeof(text));
  port = ntohs(reinterpret_cast<const sockaddr_in*>(a)->sin_port);
  return std::string(text) + ":" + std::to_string(port);
}

std::string BackendKey(const Target& t) { return t.address + "|" + std::to_string(t.port); }

void CloseHandle(uv_udp_t* h) {
  h->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<uv_udp_t*>(x); });
}

// What a UDP handle's data points at: a listener or a flow, each knowing its worker.
struct Endpoint {
  UdpWorker::Impl* impl = nullptr;
};

struct Listening;

// One client address joined to one target.
struct Flow : Endpoint {
  Listening* listening = nullptr;
  sockaddr_storage client{};
  std::string key;                 // AddressKey(client)
  uv_udp_t* socket = nullptr;      // connected to the target; its data is this Flow
  std::string target_id, backend;  // backend: BackendKey of the target
  FlowCounter counter;
  UdpListenerCounters metrics;  // its listener's, as they were when it opened
  uint64_t last_ms = 0;         // the last datagram either way
};

// One UDP listener on this worker, with the flows of its clients.
struct Listening : Endpoint {
  std::string id;
  Listener listener;  // as the running document has it
  uv_udp_t* socket = nullptr;
  UdpListenerCounters metrics;
  std::unordered_map<std::string, std::unique_ptr<Flow>> flows;  // by Flow::key
};

// What this worker knows of one target address across documents.
struct Backend {
  size_t flows = 0;
  int64_t healthy_since_ms = 0;  // when a document last made it healthy (slow start counts from it)
};

std::string ListeningId(const Listener& l) { return l.address + "/" + l.Key(); }

}  // namespace

struct UdpWorker::Impl {
  uv_loop_t* loop = nullptr;
  int worker = 0;
  Limits limits;
  std::vector<char> buffer = std::vector<char>(kBufferBytes);
  uv_timer_t* sweep = nullptr;
  bool stopped = false;

  std::shared_ptr<const Config> config;
  std::unordered_map<std::string, std::vector<FlowCounter>> counters;  // by UDP group: one per target
  std::map<std::string, std::unique_ptr<Listening>> listeners;         // by ListeningId
  std::unordered_map<std::string, Backend> backends;                   // by BackendKey
  std::unordered_set<std::string> listed;  // the BackendKeys of the document's UDP targets (Sweep keeps those)
  std::unordered_map<std::string, uint64_t> cursors;  // by group
  std::mt19937 rng{std::random_device{}()};
  uint64_t dropped = 0, unlogged = 0;
  std::optional<uint64_t> logged_ms;

  // libuv's callbacks: the handle's data is an Endpoint* (null once closed),
  // stored as one so that it is read back as one.
  static void Alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* e = static_cast<Endpoint*>(h->data);
    if (!e) {
      *buf = uv_buf_init(nullptr, 0);
      return;
    }
    *buf = uv_buf_init(e->impl->buffer.data(), static_cast<unsigned>(e->impl->buffer.size()));
  }

  // A client's datagram: through its flow, opened now if it has none.
  static void ListenerRead(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* from, unsigned flags) {
    auto* l = static_cast<Listening*>(static_cast<Endpoint*>(h->data));
    if (!l) return;
    if (n < 0) {
      log::Debug(kSub, "udp listener read failed",
                 {{"port", l->listener.port}, {"error", uv_strerror(static_cast<int>(n))}});
      return;
    }
    // n == 0 without an address: nothing more to read. A datagram cut by the
    // buffer (larger than any UDP payload, so never) is not forwarded.
    if (from == nullptr || (flags & UV_UDP_PARTIAL)) return;
    Flow* f = l->impl->FlowOf(l, from);
    if (!f) return;
    f->last_ms = uv_now(l->impl->loop);
    uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(n));
    int sent = uv_udp_try_send(f->socket, &out, 1, nullptr);
    if (sent < 0 && sent != UV_EAGAIN) {
      log::Debug(kSub, "udp send to target failed", {{"target", f->backend}, {"error", uv_strerror(sent)}});
    }
  }

  // A target's datagram: to the flow's client, from the listener's socket. A
  // read error (ICMP port unreachable: ECONNREFUSED) closes the flow; the
  // client's next datagram opens another.
  static void FlowRead(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* from, unsigned flags) {
    auto* f = static_cast<Flow*>(static_cast<Endpoint*>(h->data));
    if (!f) return;
    if (n < 0) {
      log::Debug(kSub, "udp flow closed by an error",
                 {{"target", f->backend}, {"error", uv_strerror(static_cast<int>(n))}});
      f->impl->CloseFlow(f);
      return;
    }
    if (from == nullptr || (flags & UV_UDP_PARTIAL)) return;
    f->last_ms = uv_now(f->impl->loop);
    uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(n));
    uv_udp_try_send(f->listening->socket, &out, 1, reinterpret_cast<const sockaddr*>(&f->client));
  }

  // The client's flow, or a new one to a target its listener's group picks;
  // null when the datagram is dropped (counted and logged by Drop).
  Flow* FlowOf(Listening* l, const sockaddr* client) {
    std::string key = AddressKey(client);
    auto it = l->flows.find(key);
    if (it != l->flows.end()) return it->second.get();
    if (l->flows.size() >= limits.max_udp_flows) {
      Drop(l, client, "max_udp_flows (" + std::to_string(limits.max_udp_flows) + ") reached on the listener");
      return nullptr;
    }
    const TargetGroup* g = config ? config->FindGroup(l->listener.default_target_group) : nullptr;
    if (!g) {
      Drop(l, client, "no target group");
      return nullptr;
    }
    // Healthy targets only, as the group's algorithm picks among them by their flows here.
    int64_t now = static_cast<int64_t>(uv_now(loop));
    std::vector<size_t> usable;
    std::vector<Load> loads;
    for (size_t i = 0; i < g->targets.size(); i++) {
      const Target& t = g->targets[i];
      if (t.state != TargetState::kHealthy) continue;
      Backend& b = backends[BackendKey(t)];
      Load load;
      load.connections = static_cast<uint32_t>(b.flows);
      load.outstanding = static_cast<uint32_t>(b.flows);
      load.weight = SlowStartWeight(now - b.healthy_since_ms, g->slow_start_seconds * 1000);
      usable.push_back(i);
      loads.push_back(load);
    }
    if (usable.empty()) {
      Drop(l, client, "no healthy target in target group \"" + g->name + "\"");
      return nullptr;
    }
    const Target& t = g->targets[usable[Choose(g->algorithm, loads, rng, &cursors[g->name])]];
    sockaddr_storage addr{};
    if (!ToSockaddr(t.address, t.port, &addr)) {
      Drop(l, client, "bad target address " + t.address);
      return nullptr;
    }
    auto f = std::make_unique<Flow>();
    f->impl = this;
    f->listening = l;
    std::memcpy(&f->client, client, client->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
    f->key = key;
    f->target_id = t.id;
    f->backend = BackendKey(t);
    f->socket = new uv_udp_t;
    uv_udp_init(loop, f->socket);
    f->socket->data = static_cast<Endpoint*>(f.get());
    int err = uv_udp_connect(f->socket, reinterpret_cast<const sockaddr*>(&addr));
    if (err == 0) err = uv_udp_recv_start(f->socket, Alloc, FlowRead);
    if (err != 0) {
      CloseHandle(f->socket);
      Drop(l, client, "cannot open a socket to " + t.address + ":" + std::to_string(t.port) + ": " + uv_strerror(err));
      return nullptr;
    }
    const std::vector<FlowCounter>& per_target = counters[g->name];
    size_t index = static_cast<size_t>(&t - g->targets.data());
    f->counter = index < per_target.size() ? per_target[index] : std::make_shared<std::atomic<int64_t>>(0);
    (*f->counter)++;
    f->metrics = l->metrics;
    if (f->metrics.flows) f->metrics.flows->fetch_add(1, std::memory_order_relaxed);
    if (f->metrics.active) f->metrics.active->fetch_add(1, std::memory_order_relaxed);
    backends[f->backend].flows++;
    Flow* raw = f.get();
    l->flows.emplace(key, std::move(f));
    return raw;
  }

  void CloseFlow(Flow* f) {
    (*f->counter)--;
    if (f->metrics.active) f->metrics.active->fetch_sub(1, std::memory_order_relaxed);
    backends[f->backend].flows--;
    CloseHandle(f->socket);
    std::string key = f->key;
    f->listening->flows.erase(key);
  }

  void CloseListening(Listening* l) {
    while (!l->flows.empty()) CloseFlow(l->flows.begin()->second.get());
    if (l->socket) CloseHandle(l->socket);
    l->socket = nullptr;
  }

  // Binds with SO_REUSEPORT, so every worker listens on the same port and the
  // kernel keeps a client (by its 4-tuple) on one of them.
  Status Open(Listening* l) {
    sockaddr_storage addr{};
    const Listener& want = l->listener;
    if (!ToSockaddr(want.address, want.port, &addr)) return Error::Invalid("bad address " + want.address);
    l->socket = new uv_udp_t;
    uv_udp_init_ex(loop, l->socket, addr.ss_family);
    l->socket->data = static_cast<Endpoint*>(l);
    uv_os_fd_t fd;
    uv_fileno(reinterpret_cast<uv_handle_t*>(l->socket), &fd);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    int err = uv_udp_bind(l->socket, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (err == 0) err = uv_udp_recv_start(l->socket, Alloc, ListenerRead);
    if (err != 0) {
      CloseHandle(l->socket);
      l->socket = nullptr;
      return Error::Internal("listen on udp " + want.address + ":" + std::to_string(want.port) + ": " +
                             uv_strerror(err));
    }
    return {};
  }

  // Counted always; logged at most once per kDropLogEveryMs, with how many were not.
  void Drop(Listening* l, const sockaddr* client, const std::string& why) {
    dropped++;
    if (l->metrics.dropped) l->metrics.dropped->fetch_add(1, std::memory_order_relaxed);
    uint64_t now = uv_now(loop);
    if (logged_ms && now - *logged_ms < kDropLogEveryMs) {
      unlogged++;
      return;
    }
    log::Warn(kSub, "dropped a datagram of a new UDP flow",
              {{"worker", worker},
               {"port", l->listener.port},
               {"client", AddressText(client)},
               {"reason", why},
               {"dropped", dropped},
               {"not_logged", unlogged}});
    logged_ms = now;
    unlogged = 0;
  }

  // Closes flows without a datagram either way for udp_idle_timeout_ms, and
  // forgets targets no longer listed that have no flow left.
  void Sweep() {
    uint64_t now = uv_now(loop);
    for (auto& [id, l] : listeners) {
      std::vector<Flow*> idle;
      for (auto& [key, f] : l->flows) {
        if (now - f->last_ms >= limits.udp_idle_timeout_ms) idle.push_back(f.get());
      }
      for (Flow* f : idle) CloseFlow(f);
    }
    for (auto it = backends.begin(); it != backends.end();) {
      it = it->second.flows == 0 && !listed.count(it->first) ? backends.erase(it) : std::next(it);
    }
  }

  void Apply(std::shared_ptr<const Config> next, const std::function<FlowCounter(size_t, size_t)>& counter,
             const std::function<UdpListenerCounters(size_t)>& listener) {
    std::map<std::string, UdpListenerCounters> metrics;  // by ListeningId
    for (size_t i = 0; listener && i < next->listeners.size(); i++) {
      if (next->listeners[i].protocol == Protocol::kUdp) metrics[ListeningId(next->listeners[i])] = listener(i);
    }
    // Slow start: targets the new document makes healthy (every one, at the first).
    std::unordered_set<std::string> was;
    if (config) {
      for (const TargetGroup& g : config->target_groups) {
        if (g.protocol != Protocol::kUdp) continue;
        for (const Target& t : g.targets) {
          if (t.state == TargetState::kHealthy) was.insert(BackendKey(t));
        }
      }
    }
    int64_t now = static_cast<int64_t>(uv_now(loop));
    counters.clear();
    listed.clear();
    for (size_t gi = 0; gi < next->target_groups.size(); gi++) {
      const TargetGroup& g = next->target_groups[gi];
      if (g.protocol != Protocol::kUdp) continue;
      std::vector<FlowCounter>& per_target = counters[g.name];
      for (size_t ti = 0; ti < g.targets.size(); ti++) {
        const Target& t = g.targets[ti];
        listed.insert(BackendKey(t));
        per_target.push_back(counter(gi, ti));
        if (t.state == TargetState::kHealthy && !was.count(BackendKey(t))) {
          backends[BackendKey(t)].healthy_since_ms = now;
        }
      }
    }
    config = std::move(next);
    SetListeners(metrics);
    CheckFlows();
  }

  // Opens the UDP listeners of the document and closes the others, with their flows.
  void SetListeners(std::map<std::string, UdpListenerCounters>& metrics) {
    std::map<std::string, const Listener*> wanted;
    for (const Listener& l : config->listeners) {
      if (l.protocol == Protocol::kUdp) wanted[ListeningId(l)] = &l;
    }
    for (auto it = listeners.begin(); it != listeners.end();) {
      auto w = wanted.find(it->first);
      if (w == wanted.end()) {
        CloseListening(it->second.get());
        it = listeners.erase(it);
        continue;
      }
      it->second->listener = *w->second;
      it->second->metrics = metrics[it->first];
      ++it;
    }
    for (const auto& [id, l] : wanted) {
      if (listeners.count(id)) continue;
      auto listening = std::make_unique<Listening>();
      listening->impl = this;
      listening->id = id;
      listening->listener = *l;
      listening->metrics = metrics[id];
      if (Status s = Open(listening.get()); !s.ok()) {
        log::Error(kSub, "cannot open listener", {{"worker", worker}, {"error", s.error().message}});
        continue;
      }
      if (worker == 0) {
        log::Info(kSub, "listening", {{"address", l->address}, {"port", l->port}, {"protocol", "UDP"}});
      }
      listeners[id] = std::move(listening);
    }
  }

  // A flow keeps its target while the target is, in its listener's group,
  // healthy or draining; any other flow is closed.
  void CheckFlows() {
    for (auto& [id, l] : listeners) {
      const TargetGroup* g = config->FindGroup(l->listener.default_target_group);
      std::vector<Flow*> gone;
      for (auto& [key, f] : l->flows) {
        bool keep = false;
        for (const Target* t = g ? g->targets.data() : nullptr; g && t != g->targets.data() + g->targets.size(); t++) {
          if (t->id == f->target_id && BackendKey(*t) == f->backend) {
            keep = t->state == TargetState::kHealthy || t->state == TargetState::kDraining;
            break;
          }
        }
        if (!keep) gone.push_back(f.get());
      }
      for (Flow* f : gone) CloseFlow(f);
    }
  }
};

UdpWorker::UdpWorker(uv_loop_s* loop, int worker, const Limits& limits) : impl_(std::make_unique<Impl>()) {
  impl_->loop = loop;
  impl_->worker = worker;
  impl_->limits = limits;
  // The sweep runs a few times per idle timeout, at most once a second.
  uint64_t every = std::clamp<uint64_t>(limits.udp_idle_timeout_ms / 4, 5, 1000);
  impl_->sweep = new uv_timer_t;
  uv_timer_init(loop, impl_->sweep);
  impl_->sweep->data = impl_.get();
  uv_timer_start(
      impl_->sweep, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->Sweep(); }, every, every);
}

// Stop must have run, on the loop, before: the handles are the loop's to free.
UdpWorker::~UdpWorker() = default;

void UdpWorker::Apply(std::shared_ptr<const Config> config, const std::function<FlowCounter(size_t, size_t)>& counter,
                      const std::function<UdpListenerCounters(size_t)>& listener) {
  if (impl_->stopped || !config) return;
  impl_->Apply(std::move(config), counter, listener);
}

void UdpWorker::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  for (auto& [id, l] : impl_->listeners) impl_->CloseListening(l.get());
  impl_->listeners.clear();
  uv_timer_stop(impl_->sweep);
  impl_->sweep->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(impl_->sweep),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

size_t UdpWorker::tracked() const { return impl_->backends.size(); }

}  // namespace berth::proxy
