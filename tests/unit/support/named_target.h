// A target on 127.0.0.1 for the proxy's tests: answers with its name.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "support/loopback.h"

namespace berth::testing {

// A target on 127.0.0.1 that tells who it is: an HTTP one answers every
// request on a connection with its name as the body (and `status`); a TCP one writes its name
// and closes.
class NamedTarget {
 public:
  NamedTarget(std::string name, bool http, int status = 200) : name_(std::move(name)), http_(http), status_(status) {
    fd_ = ListenLoopback(&port_);
    thread_ = std::thread([this] { Run(); });
  }
  ~NamedTarget() {
    stop_ = true;
    thread_.join();
    for (std::thread& t : conns_) t.join();
    close(fd_);
  }
  int port() const { return port_; }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      if (!http_) {
        send(c, name_.data(), name_.size(), MSG_NOSIGNAL);
        close(c);
        continue;
      }
      conns_.emplace_back([this, c] { Serve(c); });
    }
  }
  void Serve(int c) {
    std::string in;
    char buf[4096];
    while (!stop_) {
      pollfd p{c, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      ssize_t n = recv(c, buf, sizeof(buf), 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      size_t end;
      while ((end = in.find("\r\n\r\n")) != std::string::npos) {
        in.erase(0, end + 4);
        std::string answer = "HTTP/1.1 " + std::to_string(status_) +
                             " X\r\nContent-Length: " + std::to_string(name_.size()) + "\r\n\r\n" + name_;
        send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      }
    }
    close(c);
  }

  std::string name_;
  bool http_;
  int status_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> conns_;  // only Run's thread adds, only the destructor joins after it
};

}  // namespace berth::testing
