// Container logs through the server (docs/agent-protocol.md, "Logs").
//
// GET /v1/tasks/{id}/logs?container=NAME&follow=true&tail=N: the server writes a
// `logs` line with a fresh request id on the stream of the task's node, and holds
// the client. The agent opens POST /v1/agent/logs/{request} and streams the
// container's output in frames ("<hex length>\n<bytes>"; "0\n" is a keep-alive
// that keeps the POST from timing out while the container is quiet). Each frame's
// bytes go to the client as they come. A client that goes away ends the agent's
// POST at once (answered early), which stops the agent's Docker stream.
#include <cstdlib>

#include "api/agents.h"
#include "api/api.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"

namespace berth::api {

namespace http = net::http;

namespace {

constexpr int64_t kAgentAnswerMs = 10000;       // the agent must start answering within this
constexpr size_t kMaxClientBacklog = 16 << 20;  // unsent log bytes for one client: then it is cut off

bool Truthy(const std::optional<std::string>& v) { return v && (*v == "true" || *v == "1" || v->empty()); }

}  // namespace

Status TakeLogFrames(std::string* buf, const std::function<void(std::string_view)>& emit) {
  size_t at = 0;
  for (;;) {
    size_t nl = buf->find('\n', at);
    if (nl == std::string::npos) {
      if (buf->size() - at > 16) return Error::Invalid("log frame header too long");
      break;
    }
    // Bounded the same whether or not its newline came in the same piece.
    if (nl - at > 16) return Error::Invalid("log frame header too long");
    char* end = nullptr;
    std::string head = buf->substr(at, nl - at);
    size_t len = strtoull(head.c_str(), &end, 16);
    if (head.empty() || *end || len > kMaxLogFrame) return Error::Invalid("bad log frame header '" + head + "'");
    if (buf->size() - nl - 1 < len) break;
    if (len > 0) emit(std::string_view(buf->data() + nl + 1, len));
    at = nl + 1 + len;
  }
  buf->erase(0, at);
  return {};
}

void AgentHub::ExpireLogRequests(int64_t now_ms) {
  for (auto it = log_requests_.begin(); it != log_requests_.end();) {
    if (!it->second.agent && now_ms > it->second.deadline_ms) {
      it->second.client->Respond(
          http::ErrorResponse(504, "AgentTimeout", "the node's agent did not send the logs in time"));
      it = log_requests_.erase(it);
    } else {
      ++it;
    }
  }
}

void AgentHub::AddLogRoutes(http::Router* router) {
  router->Add("GET", "/v1/tasks/{id}/logs", [this](const http::ExchangePtr& ex) {
    const http::Request& req = ex->request();
    const model::Task* t = ResolveTaskOrAnswer(*state_, ex, req.Param("id"));
    if (!t || !ClusterInScope(*state_, ex, t->cluster)) return;
    std::string container = req.Query("container").value_or("");
    if (container.size() > 255)
      return ex->Respond(http::ErrorResponse(400, "InvalidParameter", "container: at most 255 characters"));
    int64_t tail = -1;
    if (std::optional<std::string> v = req.Query("tail")) {
      char* end = nullptr;
      tail = strtoll(v->c_str(), &end, 10);
      if (v->empty() || *end || tail < 0 || tail > 1000000) {
        return ex->Respond(
            http::ErrorResponse(400, "InvalidParameter", "tail: must be a whole number from 0 to 1000000"));
      }
    }
    bool follow = Truthy(req.Query("follow"));
    if (follow && t->last == "STOPPED") follow = false;  // nothing more will come
    auto it = streams_.find(t->node);
    if (it == streams_.end()) {
      return ex->Respond(
          http::ErrorResponse(503, "AgentNotConnected",
                              "the agent of node " + t->node + " (where task " + t->id + " ran) is not connected"));
    }
    uint8_t raw[12];
    if (!crypto::RandomBytes(raw, sizeof raw))
      return ex->Respond(http::ErrorResponse(500, "InternalError", "no randomness"));
    std::string request_id = crypto::Hex(raw, sizeof raw);
    LogRequest& lr = log_requests_[request_id];
    lr.node = t->node;
    lr.client = ex;
    lr.deadline_ms = clock_->NowUnixMs() + kAgentAnswerMs;
    ex->on_abort = [this, request_id] {
      auto it = log_requests_.find(request_id);
      if (it == log_requests_.end()) return;
      if (it->second.agent) it->second.agent->Respond(http::JsonResponse(200, "{\"closed\":true}"));
      log_requests_.erase(it);
    };
    json::Doc line = json::Doc::Object();
    line.Set("type", "logs")
        .Set("requestId", request_id)
        .Set("taskId", t->id)
        .Set("container", container)
        .Set("follow", follow)
        .Set("tail", tail);
    it->second.ex->Write(line.Print() + "\n");
    it->second.last_write_ms = clock_->NowUnixMs();
  });

  http::RouteOptions body_opts;
  body_opts.access = http::Access::kAgent;
  body_opts.stream_body = true;
  body_opts.max_body = 1ull << 40;
  body_opts.audit = false;  // a log relay, not a change
  router->Add(
      "POST", "/v1/agent/logs/{request}",
      [this](const http::ExchangePtr& ex) {
        std::string request_id(ex->request().Param("request"));
        auto it = log_requests_.find(request_id);
        if (it == log_requests_.end() || it->second.agent) {
          return ex->Respond(http::ErrorResponse(404, "LogRequestNotFound", "no client waits for logs " + request_id));
        }
        // Only the agent of the node asked may answer.
        const model::Node* n = state_->FindNode(it->second.node);
        if (!n) return ex->Respond(http::ErrorResponse(404, "NodeNotFound", "node " + it->second.node + " is gone"));
        if (!MayActFor(ex, *n)) return;
        it->second.agent = ex;
        bool not_found = !ex->request().Header("x-berth-log-error").empty();
        http::ExchangePtr client = it->second.client;
        if (!not_found) client->Begin(200, {{"Cache-Control", "no-store"}}, -1, "text/plain; charset=utf-8");
        auto message = std::make_shared<std::string>();
        ex->on_body = [this, request_id, not_found, message](std::string_view data) -> Status {
          auto it = log_requests_.find(request_id);
          if (it == log_requests_.end()) return Error::Invalid("the client went away");
          if (not_found) {
            if (message->size() < 4096) message->append(data.substr(0, 4096 - message->size()));
            return {};
          }
          // Frames: "<hex length>\n<bytes>".
          it->second.frame.append(data);
          http::Exchange* to = it->second.client.get();
          if (Status s = TakeLogFrames(&it->second.frame, [to](std::string_view bytes) { to->Write(bytes); }); !s) {
            return s;
          }
          if (it->second.client->PendingWriteBytes() > kMaxClientBacklog) {
            it->second.client->End();
            log_requests_.erase(it);
            return Error::Invalid("the client reads the logs too slowly");
          }
          return {};
        };
        ex->on_body_end = [this, request_id, not_found, message, ex] {
          auto it = log_requests_.find(request_id);
          if (it != log_requests_.end()) {
            if (not_found) {
              std::string text = *message;
              while (!text.empty() && text.back() == '\n') text.pop_back();
              it->second.client->Respond(http::ErrorResponse(404, "ContainerNotFound", text));
            } else {
              it->second.client->End();
            }
            it->second.client->on_abort = nullptr;
            log_requests_.erase(it);
          }
          ex->Respond(http::JsonResponse(200, "{}"));
        };
      },
      body_opts);
}

}  // namespace berth::api
