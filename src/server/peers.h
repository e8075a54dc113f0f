// What a server asks of the other servers of its cluster, beside the raft log:
// HTTP over mutual TLS (the peer certificate each server issues itself) on
// their API port.
//
// PeerClients keeps one kept-alive connection per peer and purpose, so a blob
// being copied never holds up a forwarded command.
//
// Forwarder makes a change submitted on any server reach the log: the acting
// leader submits it to its store; another server sends the encoded command to
// the leader (POST /v1/raft/forward), which submits it like its own and answers
// with the command's reply and the index applied since. The follower hands the
// reply on once it has applied that index itself, so whoever made the change
// reads it back from the server it asked. Used by the registry, whose pushes
// stay with the server the client talks to (docs/decisions.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "net/http_client.h"
#include "net/http_server.h"
#include "store/store.h"

struct uv_loop_s;
typedef struct uv_loop_s uv_loop_t;

namespace berth::net::tls {
class ClientContext;
}
namespace berth::replica {
class Replica;
}

namespace berth::server {

class PeerClients {
 public:
  enum class Lane { kCommands, kBlobs };
  PeerClients(uv_loop_t* loop, std::function<std::shared_ptr<net::tls::ClientContext>()> tls)
      : loop_(loop), tls_(std::move(tls)) {}
  // The client for the server at `address` (host:port), or nullptr when there is
  // no TLS (peers need it) or the address does not parse.
  net::http::Client* For(const std::string& address, Lane lane);
  // Drops every connection (shutdown).
  void Close() { clients_.clear(); }

 private:
  uv_loop_t* loop_;
  std::function<std::shared_ptr<net::tls::ClientContext>()> tls_;
  std::map<std::pair<std::string, Lane>, std::unique_ptr<net::http::Client>> clients_;
};

class Forwarder {
 public:
  Forwarder(replica::Replica* replica, store::Store* store, store::StateMachine* sm, PeerClients* peers)
      : replica_(replica), store_(store), sm_(sm), peers_(peers) {}
  // Submits `cmd` where it can be applied: see the file comment. `reply` fires
  // once, on the loop thread; a leader that cannot be reached or none at all
  // gives kUnavailable (code NoLeader or LeaderUnreachable): the change may then
  // have been made or not.
  void Submit(store::CommandPtr cmd, store::Store::Reply reply);
  // POST /v1/raft/forward, on the leader: a batch of commands from a peer.
  void Handle(const net::http::ExchangePtr& ex);

  static constexpr size_t kMaxBody = 16 << 20;

 private:
  replica::Replica* replica_;
  store::Store* store_;
  store::StateMachine* sm_;
  PeerClients* peers_;
};

}  // namespace berth::server
