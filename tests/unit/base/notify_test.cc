// base/notify: the sd_notify datagram, its address and its delivery to a real
// Unix datagram socket.
#include "base/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace berth;

TEST_CASE("notify: a path and an abstract name as socket addresses", "[base][notify]") {
  auto path = notify::ParseSocketAddress("/run/systemd/notify");
  REQUIRE(path);
  CHECK(path->addr.sun_family == AF_UNIX);
  CHECK(std::string(path->addr.sun_path) == "/run/systemd/notify");
  // The path and its terminating NUL.
  CHECK(path->len == offsetof(sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);

  auto abstract = notify::ParseSocketAddress("@berth/test");
  REQUIRE(abstract);
  CHECK(abstract->addr.sun_path[0] == '\0');
  CHECK(std::string(abstract->addr.sun_path + 1, 10) == "berth/test");
  // No terminating NUL: an abstract name is exactly its bytes.
  CHECK(abstract->len == offsetof(sockaddr_un, sun_path) + strlen("@berth/test"));
}

TEST_CASE("notify: unusable addresses are refused", "[base][notify]") {
  CHECK_FALSE(notify::ParseSocketAddress(""));
  CHECK_FALSE(notify::ParseSocketAddress("@"));
  CHECK_FALSE(notify::ParseSocketAddress("relative/notify"));
  std::string longest_path = "/" + std::string(sizeof(sockaddr_un::sun_path) - 2, 'a');
  CHECK(notify::ParseSocketAddress(longest_path));
  CHECK_FALSE(notify::ParseSocketAddress(longest_path + "a"));
  std::string longest_abstract = "@" + std::string(sizeof(sockaddr_un::sun_path) - 1, 'a');
  CHECK(notify::ParseSocketAddress(longest_abstract));
  CHECK_FALSE(notify::ParseSocketAddress(longest_abstract + "a"));
}

TEST_CASE("notify: messages are KEY=VALUE lines, a value one line", "[base][notify]") {
  CHECK(notify::Message({{"READY", "1"}, {"STATUS", "leader, term 3"}}) == "READY=1\nSTATUS=leader, term 3\n");
  CHECK(notify::Message({{"STATUS", "failed:\nsecond line\r"}}) == "STATUS=failed: second line \n");
  CHECK(notify::Message({}) == "");
}

TEST_CASE("notify: datagrams reach an abstract socket; nothing is sent without NOTIFY_SOCKET", "[base][notify]") {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  std::string name = "@berth-notify-test-" + std::to_string(getpid());
  auto addr = notify::ParseSocketAddress(name);
  REQUIRE(addr);
  REQUIRE(bind(fd, reinterpret_cast<const sockaddr*>(&addr->addr), addr->len) == 0);

  unsetenv("NOTIFY_SOCKET");
  CHECK(notify::Send("READY=1\n"));  // no socket: nothing to do
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  CHECK(notify::Send("READY=1\n"));
  notify::Stopping("bye");
  char buf[512];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  REQUIRE(n > 0);
  CHECK(std::string(buf, static_cast<size_t>(n)) == "READY=1\n");
  n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  REQUIRE(n > 0);
  CHECK(std::string(buf, static_cast<size_t>(n)) ==
        "STOPPING=1\nMAINPID=" + std::to_string(getpid()) + "\nSTATUS=bye\n");
  CHECK(recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0);  // nothing else was sent

  setenv("NOTIFY_SOCKET", "@berth-notify-test-nobody-listens", 1);
  CHECK_FALSE(notify::Send("READY=1\n"));
  unsetenv("NOTIFY_SOCKET");
  close(fd);
}

TEST_CASE("notify: the watchdog interval is half of WATCHDOG_USEC, for this process only", "[base][notify]") {
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  CHECK(notify::WatchdogIntervalMs() == 0);
  setenv("WATCHDOG_USEC", "30000000", 1);
  CHECK(notify::WatchdogIntervalMs() == 15000);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  CHECK(notify::WatchdogIntervalMs() == 15000);
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  CHECK(notify::WatchdogIntervalMs() == 0);  // meant for another process
  unsetenv("WATCHDOG_PID");
  setenv("WATCHDOG_USEC", "junk", 1);
  CHECK(notify::WatchdogIntervalMs() == 0);
  unsetenv("WATCHDOG_USEC");
}
