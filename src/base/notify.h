// Telling systemd how the service is doing: the sd_notify protocol, written
// here (no libsystemd). A service of Type=notify finds in $NOTIFY_SOCKET the
// address of a Unix datagram socket ("/run/systemd/notify", or "@name" for an
// abstract one) and sends it datagrams of newline-separated KEY=VALUE lines:
// READY=1 once it serves, RELOADING=1 while it reloads, STOPPING=1 when it
// stops, STATUS=... for `systemctl status`, WATCHDOG=1 as a keep-alive when
// $WATCHDOG_USEC asks for one. Without $NOTIFY_SOCKET every call does nothing.
// Blocking sendto on a datagram socket: it never waits on a peer, so the loop
// thread may call it.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace berth::notify {

// A socket address from $NOTIFY_SOCKET's text: an absolute path, or '@' then the
// name of an abstract socket (the '@' becomes the leading NUL). Anything else
// (empty, relative, too long for sun_path) is refused with the reason.
struct SocketAddress {
  sockaddr_un addr{};
  socklen_t len = 0;
};
Result<SocketAddress> ParseSocketAddress(std::string_view text);

// The datagram for `fields`: "KEY=VALUE\n" each, in order. A newline in a value
// (a STATUS made from an error message) becomes a space: a value is one line.
std::string Message(const std::vector<std::pair<std::string, std::string>>& fields);

// Sends `message` to $NOTIFY_SOCKET. Does nothing (and succeeds) when it is
// unset; fails when it is set but unusable or the send fails.
Status Send(const std::string& message);

// The datagrams berth sends. Each adds MAINPID (this process) and STATUS when
// `status` is not empty; failures are logged once, never fatal.
void Ready(const std::string& status);
void Reloading(const std::string& status);  // with MONOTONIC_USEC, as systemd 253 asks
void Stopping(const std::string& status);
void SetStatus(const std::string& status);
void Watchdog();
// Names process `pid` the service's main process (a successor this one
// started, before it exits), with `status`.
void HandOver(int pid, const std::string& status);

// How often to send WATCHDOG=1: half of $WATCHDOG_USEC, in milliseconds, when
// $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or this process; 0 otherwise.
uint64_t WatchdogIntervalMs();

}  // namespace berth::notify
