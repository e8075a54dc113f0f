#include "server/peers.h"

#include <utility>
#include <vector>

#include "base/json.h"
#include "base/log.h"
#include "net/socket.h"
#include "replica/replica.h"

namespace berth::server {

namespace http = net::http;

http::Client* PeerClients::For(const std::string& address, Lane lane) {
  auto key = std::make_pair(address, lane);
  if (auto it = clients_.find(key); it != clients_.end()) return it->second.get();
  std::shared_ptr<net::tls::ClientContext> tls = tls_ ? tls_() : nullptr;
  Result<net::Endpoint> where = net::Endpoint::Parse(address);
  if (!tls || !where || where->kind != net::Endpoint::Kind::kTcp) return nullptr;
  where->tls = true;
  http::ClientOptions co;
  co.tls = std::move(tls);
  co.timeout_ms = lane == Lane::kCommands ? 10000 : 30000;
  auto client = std::make_unique<http::Client>(loop_, *where, std::move(co));
  http::Client* out = client.get();
  clients_.emplace(key, std::move(client));
  return out;
}

namespace {

Error NoLeader(std::string message) { return Error{ErrorKind::kUnavailable, "NoLeader", std::move(message)}; }

// A reply as JSON: {"reply": "..."} or {"error": {"kind", "code", "message"}}.
json::Doc EncodeResult(const Result<std::string>& r) {
  json::Doc d = json::Doc::Object();
  if (r) {
    d.Set("reply", r.value());
    return d;
  }
  json::Doc e = json::Doc::Object();
  e.Set("kind", static_cast<int64_t>(r.error().kind)).Set("code", r.error().code).Set("message", r.error().message);
  d.Set("error", e);
  return d;
}

Result<std::string> DecodeResult(json::View v) {
  if (json::View reply = v.Get("reply"); reply.IsString()) return std::string(reply.String());
  json::View e = v.Get("error");
  auto kind = static_cast<ErrorKind>(
      e.Get("kind").IntIn(0, static_cast<int64_t>(ErrorKind::kInternal), static_cast<int64_t>(ErrorKind::kInternal)));
  return Error{kind, std::string(e.Get("code").String()), std::string(e.Get("message").String())};
}

}  // namespace

void Forwarder::Submit(store::CommandPtr cmd, store::Store::Reply reply) {
  if (replica_->acting()) return store_->Submit(std::move(cmd), std::move(reply));
  if (replica_->leader()) {
    return reply(NoLeader(
        "this server leads but has not heard from a majority of the cluster within the lease; try another server"));
  }
  std::string leader = replica_->LeaderAddress();
  if (leader.empty()) return reply(NoLeader("the cluster has no leader at the moment (an election is under way)"));
  http::Client* client = peers_->For(leader, PeerClients::Lane::kCommands);
  if (!client) return reply(NoLeader("the leader at " + leader + " cannot be reached without TLS between servers"));
  http::ClientRequest req;
  req.method = "POST";
  req.target = "/v1/raft/forward";
  req.headers.push_back({"Content-Type", "application/octet-stream"});
  req.body = store::EncodeBatch({cmd.get()});
  store::Store* store = store_;
  client->Send(std::move(req), [store, leader, reply = std::move(reply)](Result<http::ClientResponse> r) {
    if (!r) {
      return reply(Error{ErrorKind::kUnavailable, "LeaderUnreachable",
                         "the leader at " + leader + " did not answer (" + r.error().message +
                             "); the change may or may not have been made"});
    }
    Result<json::Doc> body = json::Doc::Parse(r->body);
    if (r->status != 200) {
      json::View e = body ? body->view().Get("error") : json::View();
      std::string code = e.valid() ? std::string(e.Get("code").String()) : "LeaderRefused";
      std::string message = e.valid() ? std::string(e.Get("message").String()) : r->body.substr(0, 200);
      return reply(Error{r->status == 503 ? ErrorKind::kUnavailable : ErrorKind::kInternal, code,
                         "the leader at " + leader + " refused the change: " + message});
    }
    json::View results = body ? body->view().Get("results") : json::View();
    if (!results.IsArray() || results.Size() != 1) {
      return reply(Error::Internal("the leader at " + leader + " answered a forwarded change in a shape not known"));
    }
    Result<std::string> result = DecodeResult(*results.begin());
    auto index = static_cast<uint64_t>(body->view().Get("index").IntIn(0, INT64_MAX, 0));
    store->WhenApplied(index, [reply, result = std::move(result)] { reply(result); });
  });
}

void Forwarder::Handle(const http::ExchangePtr& ex) {
  if (!replica_->acting()) {
    http::Response r = http::ErrorResponse(503, "NoLeader", "this server does not lead the cluster (any more)");
    r.headers.push_back({"Retry-After", "1"});
    return ex->Respond(std::move(r));
  }
  Result<std::vector<store::CommandPtr>> decoded = store::DecodeBatch(ex->request().body, sm_);
  if (!decoded) {
    return ex->Respond(
        http::ErrorResponse(400, "InvalidParameter", "a forwarded batch does not decode: " + decoded.error().message));
  }
  struct Pending {
    std::vector<Result<std::string>> results;
    size_t left = 0;
  };
  auto pending = std::make_shared<Pending>();
  pending->results.resize(decoded->size(), Error::Internal("not applied"));
  pending->left = decoded->size();
  store::Store* store = store_;
  auto answer = [ex, pending, store] {
    json::Doc list = json::Doc::Array();
    for (const Result<std::string>& r : pending->results) list.Push(EncodeResult(r));
    json::Doc d = json::Doc::Object();
    d.Set("index", static_cast<int64_t>(store->applied_index())).Set("results", list);
    ex->Respond(http::JsonResponse(200, d.Print()));
  };
  if (pending->left == 0) return answer();
  for (size_t i = 0; i < decoded->size(); i++) {
    store_->Submit(std::move(decoded.value()[i]), [pending, i, answer](Result<std::string> r) {
      pending->results[i] = std::move(r);
      if (--pending->left == 0) answer();
    });
  }
}

}  // namespace berth::server
