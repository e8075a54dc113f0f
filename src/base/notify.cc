#include "base/notify.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "base/log.h"

namespace berth::notify {

Result<SocketAddress> ParseSocketAddress(std::string_view text) {
  SocketAddress out;
  out.addr.sun_family = AF_UNIX;
  if (text.size() < 2 || (text[0] != '/' && text[0] != '@')) {
    return Error::Invalid("NOTIFY_SOCKET must be an absolute path or @ and an abstract name, not '" +
                          std::string(text) + "'");
  }
  // A path needs its terminating NUL inside sun_path; an abstract name does not.
  size_t room = sizeof out.addr.sun_path - (text[0] == '/' ? 1 : 0);
  if (text.size() > room) return Error::Invalid("NOTIFY_SOCKET is longer than a socket address may be");
  memcpy(out.addr.sun_path, text.data(), text.size());
  if (text[0] == '@') out.addr.sun_path[0] = '\0';
  out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() + (text[0] == '/' ? 1 : 0));
  return out;
}

std::string Message(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& field : fields) {
    out += field.first;
    out += '=';
    for (char c : field.second) out += c == '\n' || c == '\r' ? ' ' : c;
    out += '\n';
  }
  return out;
}

Status Send(const std::string& message) {
  const char* where = getenv("NOTIFY_SOCKET");
  if (!where || !*where) return {};
  Result<SocketAddress> addr = ParseSocketAddress(where);
  if (!addr) return addr.take_error();
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::Internal(std::string("notify socket: ") + strerror(errno));
  ssize_t n;
  do {
    n = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr->addr),
               addr->len);
  } while (n < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  if (n < 0) return Error::Internal("sending to NOTIFY_SOCKET " + std::string(where) + ": " + strerror(e));
  return {};
}

namespace {

// Sends `fields` plus MAINPID and STATUS; logs the first failure only (a
// missing listener would otherwise log at every status change).
void SendFields(std::vector<std::pair<std::string, std::string>> fields, const std::string& status) {
  fields.emplace_back("MAINPID", std::to_string(getpid()));
  if (!status.empty()) fields.emplace_back("STATUS", status);
  static bool warned = false;
  if (Status s = Send(Message(fields)); !s && !warned) {
    warned = true;
    log::Warn("notify", "cannot tell systemd how the service is", {{"error", s.error().message}});
  }
}

}  // namespace

void Ready(const std::string& status) { SendFields({{"READY", "1"}}, status); }

void Reloading(const std::string& status) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
  SendFields({{"RELOADING", "1"}, {"MONOTONIC_USEC", std::to_string(usec)}}, status);
}

void Stopping(const std::string& status) { SendFields({{"STOPPING", "1"}}, status); }

void SetStatus(const std::string& status) { SendFields({}, status); }

void Watchdog() { (void)Send("WATCHDOG=1\n"); }

void HandOver(int pid, const std::string& status) {
  if (Status s = Send(Message({{"MAINPID", std::to_string(pid)}, {"STATUS", status}})); !s) {
    log::Warn("notify", "cannot tell systemd of the new main process", {{"pid", pid}, {"error", s.error().message}});
  }
}

uint64_t WatchdogIntervalMs() {
  const char* usec = getenv("WATCHDOG_USEC");
  if (!usec || !*usec) return 0;
  if (const char* pid = getenv("WATCHDOG_PID"); pid && *pid && strtoll(pid, nullptr, 10) != getpid()) return 0;
  char* end = nullptr;
  unsigned long long v = strtoull(usec, &end, 10);
  if (*end != '\0' || v == 0) return 0;
  uint64_t ms = v / 2000;  // half the interval, as sd_watchdog_enabled(3) advises
  return ms == 0 ? 1 : ms;
}

}  // namespace berth::notify
