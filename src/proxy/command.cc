// `berth proxy`: the data plane alone, configured from a file in the contract's
// format (docs/load-balancing.md). SIGHUP reloads the file; a refused file is
// logged with the path of its error and the running configuration keeps serving.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/flags.h"
#include "base/log.h"
#include "net/uv.h"
#include "proxy/metrics_endpoint.h"
#include "proxy/proxy.h"

namespace berth::proxy {
namespace {

constexpr const char* kSub = "proxy";

const std::vector<flags::FlagSpec> kFlags = {
    {"config", true, "FILE", "the proxy's configuration, a JSON document (docs/load-balancing.md); reloaded on SIGHUP"},
    {"proxy-threads", true, "N", "worker threads, each with its own loop, sharing the listeners (default 1)"},
    {"stop-grace", true, "DURATION", "on SIGTERM, how long requests in flight may take to finish (default 10s)"},
    {"log-level", true, "LEVEL", "debug, info, warn or error (default info)"},
    {"metrics-listen", true, "ADDR:PORT", "serve GET /metrics (Prometheus text) there (default: off)"},
};

const char kUsage[] =
    "Usage: berth proxy --config FILE [--proxy-threads N] [--metrics-listen ADDR:PORT]\n"
    "\n"
    "Runs the load-balancing proxy alone, from a configuration file: HTTP, TCP and\n"
    "UDP listeners, rules, target groups. SIGHUP reloads the file; SIGTERM stops after\n"
    "letting requests in flight finish.\n"
    "\n"
    "Flags:\n";

Result<Config> LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::Invalid(path + ": " + strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseConfig(text.str());
  if (!config.ok()) return Error::Invalid(path + ": " + config.error().message);
  return config;
}

}  // namespace

int Main(const std::vector<std::string>& args) {
  Result<flags::Parsed> p = flags::ParseFlags(args, kFlags);
  if (!p) {
    fprintf(stderr, "berth proxy: %s\nRun 'berth proxy --help' for the flags.\n", p.error().message.c_str());
    return 2;
  }
  if (p->help) {
    printf("%s%s", kUsage, flags::FlagsHelp(kFlags).c_str());
    return 0;
  }
  if (!p->positional.empty()) {
    fprintf(stderr, "berth proxy: unexpected argument '%s'\n", p->positional[0].c_str());
    return 2;
  }
  if (!p->Has("config")) {
    fprintf(stderr, "berth proxy: give --config FILE\n");
    return 2;
  }
  if (p->Has("log-level")) {
    log::Level level;
    if (!log::ParseLevel(p->Get("log-level"), &level)) {
      fprintf(stderr, "berth proxy: --log-level: expected debug, info, warn or error\n");
      return 2;
    }
    log::SetLevel(level);
  }
  Options options;
  if (p->Has("proxy-threads")) {
    Result<uint64_t> n = flags::ParseCount(p->Get("proxy-threads"), "proxy-threads");
    if (!n || *n < 1 || *n > 256) {
      fprintf(stderr, "berth proxy: --proxy-threads: expected a whole number from 1 to 256\n");
      return 2;
    }
    options.threads = static_cast<int>(*n);
  }
  uint64_t grace_ms = 10000;
  if (p->Has("stop-grace")) {
    Result<uint64_t> g = flags::ParseDuration(p->Get("stop-grace"), "stop-grace");
    if (!g) {
      fprintf(stderr, "berth proxy: %s\n", g.error().message.c_str());
      return 2;
    }
    grace_ms = *g;
  }
  std::string path = p->Get("config");
  Result<Config> config = LoadFile(path);
  if (!config) {
    fprintf(stderr, "berth proxy: %s\n", config.error().message.c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  auto proxy = Proxy::Start(options);
  if (!proxy) {
    fprintf(stderr, "berth proxy: %s\n", proxy.error().message.c_str());
    return 2;
  }
  int64_t version = config->version;
  (*proxy)->Apply(std::move(*config));
  log::Info(kSub, "started", {{"config", path}, {"version", version}, {"threads", options.threads}});

  uv_loop_t* loop = net::DefaultLoop();
  std::unique_ptr<MetricsEndpoint> metrics;
  if (p->Has("metrics-listen")) {
    const Proxy* running = proxy->get();
    auto m = MetricsEndpoint::Start(
        loop, [running](std::string* out) { running->RenderMetrics(out); }, p->Get("metrics-listen"));
    if (!m) {
      fprintf(stderr, "berth proxy: --metrics-listen: %s\n", m.error().message.c_str());
      (*proxy)->Stop(0);
      return 2;
    }
    metrics = std::move(*m);
    log::Info(kSub, "serving metrics", {{"address", p->Get("metrics-listen")}, {"port", metrics->port()}});
  }
  net::SignalWatch hup(loop, SIGHUP, [&](int) {
    Result<Config> next = LoadFile(path);
    if (!next) {
      log::Error(kSub, "reload refused; the running configuration stays", {{"error", next.error().message}});
      return;
    }
    int64_t v = next->version;
    (*proxy)->Apply(std::move(*next));
    log::Info(kSub, "reloaded", {{"config", path}, {"version", v}});
  });
  int stop_signal = 0;
  auto stop = [&](int signum) {
    stop_signal = signum;
    net::StopLoop(loop);
  };
  net::SignalWatch term(loop, SIGTERM, stop);
  net::SignalWatch intr(loop, SIGINT, stop);
  // Signal watchers do not keep a loop running; this timer does, until a stop signal.
  net::Timer hold(loop);
  hold.Start(3600000, 3600000, [] {});
  net::RunLoop(loop);
  log::Info(kSub, "stopping", {{"signal", stop_signal}, {"grace_ms", grace_ms}});
  (*proxy)->Stop(grace_ms);
  log::Info(kSub, "stopped");
  return 0;
}

}  // namespace berth::proxy
