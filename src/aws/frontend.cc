#include "aws/frontend.h"

#include <algorithm>
#include <cstring>

#include "aws/sigv4.h"
#include "base/log.h"
#include "model/cluster.h"
#include "model/state.h"

namespace berth::aws {

namespace http = net::http;

namespace {

constexpr size_t kMaxBody = 1 << 20;

// The AWS JSON 1.1 error shape.
http::Response AwsError(int status, std::string_view type, std::string_view message) {
  http::Response r;
  r.status = status;
  r.content_type = "application/x-amz-json-1.1";
  r.body = json::Doc::Object().Set("__type", type).Set("message", message).Print();
  r.headers.push_back({"x-amzn-ErrorType", std::string(type)});
  return r;
}

http::Response AwsError(int status, const Error& e) { return AwsError(status, e.code, e.message); }

bool ValidRegion(std::string_view r) {
  if (r.empty() || r.size() > 64) return false;
  return std::all_of(r.begin(), r.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

const Service* ServiceOf(std::string_view prefix) {
  for (const Service* s : {&Ecs(), &Ecr()}) {
    if (s->target_prefix == prefix) return s;
  }
  return nullptr;
}

const Operation* Find(const Service& s, std::string_view name) {
  for (size_t i = 0; i < s.count; i++) {
    if (s.operations[i].name == name) return &s.operations[i];
  }
  return nullptr;
}

// The exception a native error becomes when the service's table has no entry.
std::string_view ByStatus(int status, std::string_view code) {
  if (code == "InvalidParameter" || code == "MalformedJSON") return "InvalidParameterException";
  if (status == 401 || status == 403) return "AccessDeniedException";
  if (status == 429) return "ThrottlingException";
  return status >= 500 ? "ServerException" : "ClientException";
}

// Serves one signed request once its body is in.
void Serve(const http::ExchangePtr& ex, const Service& service, std::string op_name, const Authorization& auth,
           const http::Router* router, api::Context* api, registry::Registry* registry, const Options& options) {
  const http::Request& req = ex->request();
  int64_t now_ms = api->clock->NowUnixMs();
  if (Status s = CheckRequest(req, auth, now_ms); !s) {
    int status = s.error().code == "InvalidSignatureException" ? 401 : 400;
    return ex->Respond(AwsError(status, s.error()));
  }
  const model::Token* key = api->state->FindToken(auth.access_key_id);
  Result<std::string> secret =
      key ? api::AccessKeySecret(*api, *key) : Result<std::string>(Error::Invalid("no such key"));
  if (!key || !secret) {
    return ex->Respond(AwsError(401, "UnrecognizedClientException",
                                "The security token included in the request is invalid: no access key " +
                                    auth.access_key_id.substr(0, 40) + " is known to this cluster"));
  }
  bool matches = SignatureMatches(req, auth, *secret);
  std::fill(secret->begin(), secret->end(), '\0');  // not left in freed memory
  if (!matches) {
    return ex->Respond(
        AwsError(401, "SignatureDoesNotMatch",
                 "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
                 "Access Key and signing method."));
  }
  api->state->NoteTokenUsed(key->id, now_ms);
  const Operation* op = Find(service, op_name);
  if (!op) {
    return ex->Respond(AwsError(
        400, "UnsupportedOperationException",
        "berth does not support the " + std::string(service.arn_service == "ecs" ? "ECS" : "ECR") + " operation " +
            op_name + " (docs/compat/" + std::string(service.arn_service) + ".md lists what it supports)"));
  }
  std::string_view name = op->name;
  bool read = name.starts_with("Describe") || name.starts_with("List") || name.starts_with("Get") ||
              name.starts_with("BatchGet") || name.starts_with("BatchCheck");
  if (!read && options.acting && options.to_leader && !options.acting()) {
    // The client's signature holds at the leader: the request goes as it came.
    return options.to_leader(req, [ex](http::Response r) { ex->Respond(std::move(r)); });
  }
  json::Doc input = json::Doc::Object();
  if (!req.body.empty()) {
    Result<json::Doc> parsed = json::Doc::Parse(req.body);
    if (!parsed) return ex->Respond(AwsError(400, "SerializationException", parsed.error().message));
    if (!parsed->view().IsObject()) {
      return ex->Respond(
          AwsError(400, "SerializationException",
                   std::string("the request body must be a JSON object, not ") + parsed->view().TypeName()));
    }
    input = std::move(parsed.value());
  }
  auto call = std::make_shared<Call>(ex, service, *op, std::move(input), auth.region, options.account, key->id,
                                     key->role, router, api, registry);
  op->handler(call);
}

}  // namespace

// --- Call ---

Call::Call(const http::ExchangePtr& ex, const Service& service, const Operation& op, json::Doc input,
           std::string region, std::string account, std::string principal, std::string role, const http::Router* router,
           api::Context* api, registry::Registry* registry)
    : ex_(ex),
      service_(service),
      op_(op),
      input_(std::move(input)),
      region_(std::move(region)),
      account_(std::move(account)),
      principal_(std::move(principal)),
      role_(std::move(role)),
      router_(router),
      api_(api),
      registry_(registry) {}

void Call::Native(std::string method, std::string target, std::string body, Then then, http::Headers headers) {
  http::Request req;
  req.method = std::move(method);
  req.target = target;
  size_t q = target.find('?');
  req.path = target.substr(0, q);
  req.query = q == std::string::npos ? "" : target.substr(q + 1);
  req.headers = std::move(headers);
  req.headers.push_back({"content-type", "application/json"});
  req.headers.push_back({"content-length", std::to_string(body.size())});
  req.tls = ex_->request().tls;
  req.peer_ip = ex_->request().peer_ip;
  req.headers.push_back({"host", std::string(ex_->request().Header("host"))});
  std::vector<std::pair<std::string, std::string>> params;
  http::Router::Match m = router_->Find(req.method, req.path, &params);
  auto self = shared_from_this();
  // ARNs are rewritten once, in what leaves (Reply, Fail).
  auto answer = [self, then = std::move(then)](http::Response r) { then(std::move(r)); };
  if (!m.route) {
    log::Error("aws", "an operation called a route that does not exist",
               {{"operation", op_.name}, {"method", req.method}, {"path", req.path}});
    return answer(http::ErrorResponse(500, "InternalError", "no native route for " + req.method + " " + req.path));
  }
  http::Access access = m.route->access();
  if (access != http::Access::kRegistry && !api::RoleMay(role_, access)) {
    return answer(http::ErrorResponse(403, "Forbidden",
                                      "User: " + principal_ + " (role " + role_ +
                                          ") is not authorized to perform: " + std::string(service_.arn_service) + ":" +
                                          op_.name + ": " + api::WhoMay(access)));
  }
  if (m.route->options.scope == http::Scope::kUnscoped) {
    const model::Token* t = api_->state->FindToken(principal_);
    if (t && t->scope.limited()) {
      return answer(http::ErrorResponse(403, "Forbidden",
                                        "access key " + principal_ + " is limited to " + t->scope.Describe() + ": " +
                                            op_.name + " changes what every cluster shares"));
    }
  }
  req.params = std::move(params);
  bool stream = m.route->options.stream_body;
  if (!stream) req.body = body;
  http::ExchangePtr inner = http::Exchange::Internal(std::move(req), m.route, principal_, std::move(answer));
  m.route->handler(inner);
  if (stream) {
    // Taken out of the exchange before they run: handlers' body callbacks hold
    // their exchange, which no connection will clear here.
    auto on_body = std::move(inner->on_body);
    auto on_body_end = std::move(inner->on_body_end);
    inner->on_body = nullptr;
    inner->on_body_end = nullptr;
    if (!inner->responded() && on_body && !body.empty()) {
      if (Status s = on_body(body); !s) return inner->Respond(http::ErrorResponse(s.error()));
    }
    if (!inner->responded() && on_body_end) on_body_end();
  }
}

void Call::NativeAll(std::vector<std::pair<std::string, std::string>> calls,
                     std::function<void(std::vector<http::Response>)> then) {
  struct Gather {
    std::vector<http::Response> answers;
    size_t left = 0;
    std::function<void(std::vector<http::Response>)> then;
  };
  auto g = std::make_shared<Gather>();
  g->answers.resize(calls.size());
  g->left = calls.size();
  g->then = std::move(then);
  if (calls.empty()) return g->then({});
  for (size_t i = 0; i < calls.size(); i++) {
    Native(calls[i].first, calls[i].second, "", [g, i](http::Response r) {
      g->answers[i] = std::move(r);
      if (--g->left == 0) g->then(std::move(g->answers));
    });
  }
}

void Call::Reply(json::Doc&& out) { ReplyText(out.Print()); }

void Call::ReplyText(std::string text) {
  if (!ignored_sent_.empty() && text.size() >= 2 && text.back() == '}') {
    json::Doc list = json::Doc::Array();
    for (const std::string& f : ignored_sent_) list.Push(f);
    text.pop_back();
    text += std::string(text.size() > 1 ? "," : "") + "\"berthIgnoredFields\":" + list.Print() + "}";
  }
  http::Response r;
  r.content_type = "application/x-amz-json-1.1";
  r.body = RewriteArns(std::move(text), region_, account_);
  if (!ignored_sent_.empty()) {
    // The AWS CLI shows only the fields of the service's model: the header (and
    // --debug) carries the list too.
    std::string list;
    for (const std::string& f : ignored_sent_) list += (list.empty() ? "" : ", ") + f;
    r.headers.push_back({"Berth-Ignored-Fields", list});
  }
  ex_->Respond(std::move(r));
}

void Call::ReplyPage(json::View all, std::string_view out_field, int64_t max_results) {
  int64_t max = max_results;
  json::View mr = input().Get("maxResults");
  if (mr.valid() && !mr.IsNull()) {
    if (!mr.IsNumber() || mr.Number() < 1 || mr.Number() > static_cast<double>(max_results)) {
      return Fail("InvalidParameterException", "maxResults: must be 1-" + std::to_string(max_results));
    }
    max = static_cast<int64_t>(mr.Number());
  }
  int64_t start = 0;
  std::string token = OptionalString("nextToken");
  if (!token.empty()) {
    char* end = nullptr;
    start = strtoll(token.c_str(), &end, 10);
    if (*end != '\0' || start < 0) return Fail("InvalidParameterException", "nextToken: not a token this server gave");
  }
  json::Doc out = json::Doc::Object();
  json::Doc page = json::Doc::Array();
  int64_t i = 0, n = 0;
  for (json::View e : all) {
    if (i++ < start) continue;
    if (n == max) {
      out.Set("nextToken", std::to_string(start + n));
      break;
    }
    page.Push(json::Doc::Copy(e));
    n++;
  }
  out.Set(out_field, page);
  Reply(std::move(out));
}

void Call::Fail(std::string_view type, std::string_view message, int status) {
  ex_->Respond(AwsError(status, type, RewriteArns(std::string(message), region_, account_)));
}

void Call::FailNative(const http::Response& native) {
  std::string code, message;
  Result<json::Doc> doc = json::Doc::Parse(native.body);
  if (doc) {
    json::View err = doc->view().Get("error");
    for (json::View first : doc->view().Get("errors")) {  // the registry's OCI shape
      err = first;
      break;
    }
    code = std::string(err.Get("code").String());
    message = std::string(err.Get("message").String());
  }
  if (message.empty()) message = "status " + std::to_string(native.status);
  const char* mapped = nullptr;
  for (const Exception& e : service_.exceptions) {
    if (e.native_code == code) {
      mapped = e.aws_type;
      break;
    }
  }
  std::string_view type = mapped ? std::string_view(mapped) : ByStatus(native.status, code);
  int status = native.status >= 500 ? 500 : 400;
  if (type == "AccessDeniedException") status = 403;
  if (type == "ThrottlingException") status = 429;
  Fail(type, message, status);
}

std::optional<std::string> Call::RequireString(std::string_view field) {
  json::View v = input().Get(field);
  if (!v.valid() || v.IsNull()) {
    Fail("InvalidParameterException", std::string(field) + ": is required");
    return std::nullopt;
  }
  if (!v.IsString()) {
    Fail("InvalidParameterException", std::string(field) + ": must be a string, not " + v.TypeName());
    return std::nullopt;
  }
  return std::string(v.String());
}

std::string Call::OptionalString(std::string_view field, std::string fallback) {
  json::View v = input().Get(field);
  return v.IsString() ? std::string(v.String()) : fallback;
}

json::Doc Call::Forwarded(const std::vector<std::string>& drop) {
  std::vector<std::string> ignored;
  std::string_view list = op_.ignored;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view f = list.substr(0, comma);
    while (!f.empty() && f.front() == ' ') f.remove_prefix(1);
    if (!f.empty()) ignored.emplace_back(f);
    if (comma == std::string_view::npos) break;
    list = list.substr(comma + 1);
  }
  json::Doc out = json::Doc::Object();
  for (json::View member : input()) {
    std::string key(member.Key());
    if (std::find(ignored.begin(), ignored.end(), key) != ignored.end()) {
      if (std::find(ignored_sent_.begin(), ignored_sent_.end(), key) == ignored_sent_.end()) {
        ignored_sent_.push_back(key);
      }
      continue;
    }
    if (std::find(drop.begin(), drop.end(), key) != drop.end()) continue;
    out.SetRaw(key, member.Print());
  }
  return out;
}

// --- helpers ---

std::string LastPart(std::string_view s) {
  if (!s.starts_with("arn:")) return std::string(s);
  size_t slash = s.rfind('/');
  return std::string(slash == std::string_view::npos ? s : s.substr(slash + 1));
}

std::string BerthArn(std::string_view arn, std::string_view svc) {
  std::string prefix = "arn:aws:";
  prefix.append(svc).append(":");
  if (!arn.starts_with(prefix)) return {};
  std::string_view rest = arn.substr(prefix.size());  // region:account:resource
  size_t region_end = rest.find(':');
  if (region_end == std::string_view::npos) return {};
  size_t account_end = rest.find(':', region_end + 1);
  if (account_end == std::string_view::npos || account_end + 1 >= rest.size()) return {};
  return prefix + "local:000000000000:" + std::string(rest.substr(account_end + 1));
}

std::string ClusterName(std::string_view s) {
  if (s.empty()) return "default";
  if (!s.starts_with("arn:")) return std::string(s);
  size_t at = s.find(":cluster/");
  return std::string(at == std::string_view::npos ? s : s.substr(at + 9));
}

std::string RewriteArns(std::string text, std::string_view region, std::string_view account) {
  // One pass: berth's own ARNs ("arn:aws:<service>:local:000000000000:") and
  // registry ids ("registryId":"000000000000") take the region and account.
  const std::string own = ":" + std::string(model::kRegion) + ":" + std::string(model::kAccount) + ":";
  const std::string mine = ":" + std::string(region) + ":" + std::string(account) + ":";
  const std::string own_registry = "\"registryId\":\"" + std::string(model::kAccount) + "\"";
  const std::string my_registry = "\"registryId\":\"" + std::string(account) + "\"";
  if (own == mine && own_registry == my_registry) return text;
  // The next place either pattern starts (memmem: the text is mostly quotes and
  // letters, which a character-by-character scan would stop at).
  auto next = [&](size_t at) {
    const void* a = memmem(text.data() + at, text.size() - at, "arn:aws:", 8);
    const void* r = own_registry == my_registry
                        ? nullptr
                        : memmem(text.data() + at, text.size() - at, own_registry.data(), own_registry.size());
    size_t ia = a ? static_cast<const char*>(a) - text.data() : std::string::npos;
    size_t ir = r ? static_cast<const char*>(r) - text.data() : std::string::npos;
    return std::min(ia, ir);
  };
  std::string out;
  size_t from = 0;
  for (size_t at = next(0); at != std::string::npos; at = next(at)) {
    std::string_view rest(text.data() + at, text.size() - at);
    if (rest.starts_with("arn:aws:")) {
      size_t colon = rest.find(':', 8);
      // Service names up to "elasticloadbalancing" (target groups' ARNs in services).
      if (colon != std::string_view::npos && colon <= 8 + 20 && rest.substr(colon).starts_with(own)) {
        if (out.empty()) out.reserve(text.size() + 1024);
        out.append(text, from, at + colon - from).append(mine);
        from = at = at + colon + own.size();
        continue;
      }
      at += 8;
      continue;
    }
    if (out.empty()) out.reserve(text.size() + 1024);
    out.append(text, from, at - from).append(my_registry);
    from = at = at + own_registry.size();
  }
  if (from == 0) return text;
  out.append(text, from, std::string::npos);
  return out;
}

std::string Call::host_url() const {
  const http::Request& req = ex_->request();
  std::string host(req.Header("host"));
  bool plain = std::all_of(host.begin(), host.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
           ch == ':' || ch == '[' || ch == ']';
  });
  if (host.empty() || host.size() > 255 || !plain) host = "127.0.0.1";
  return std::string(req.tls ? "https://" : "http://") + host;
}

void AddRoutes(http::Router* router, api::Context* api, registry::Registry* registry, Options options) {
  http::RouteOptions o;
  o.access = http::Access::kAws;
  o.stream_body = true;  // the signature is checked once the body is in
  o.max_body = kMaxBody;
  router->Add(
      "POST", "/",
      [router, api, registry, options](const http::ExchangePtr& ex) {
        const http::Request& req = ex->request();
        std::string_view target = req.Header("x-amz-target");
        size_t dot = target.rfind('.');
        const Service* service = dot == std::string_view::npos ? nullptr : ServiceOf(target.substr(0, dot));
        if (!service) {
          return ex->Respond(AwsError(
              400, "UnknownOperationException",
              target.empty() ? std::string("POST / is the AWS front end: the request needs an X-Amz-Target header "
                                           "(AmazonEC2ContainerServiceV20141113.<Operation> or "
                                           "AmazonEC2ContainerRegistry_V20150921.<Operation>)")
                             : "unknown X-Amz-Target '" + std::string(target.substr(0, 120)) +
                                   "': berth speaks AmazonEC2ContainerServiceV20141113 (ECS) and "
                                   "AmazonEC2ContainerRegistry_V20150921 (ECR)"));
        }
        std::string_view ct = req.Header("content-type");
        if (!ct.starts_with("application/x-amz-json-1.1") && !ct.starts_with("application/x-amz-json-1.0")) {
          return ex->Respond(
              AwsError(400, "SerializationException",
                       "Content-Type must be application/x-amz-json-1.1, not '" + std::string(ct.substr(0, 80)) + "'"));
        }
        Result<Authorization> auth = ParseAuthorization(req.Header("authorization"));
        if (!auth)
          return ex->Respond(AwsError(auth.error().kind == ErrorKind::kUnauthorized ? 401 : 400, auth.error()));
        if (!ValidRegion(auth->region)) {
          return ex->Respond(AwsError(400, "IncompleteSignatureException",
                                      "Credential: the region must be 1-64 letters, digits, '-' or '_'"));
        }
        if (auth->service != service->signing_name) {
          return ex->Respond(AwsError(401, "InvalidSignatureException",
                                      "Credential should be scoped to correct service: '" +
                                          std::string(service->signing_name) + "', not '" + auth->service + "'"));
        }
        // A known, unexpired access key lifts the bounds of unauthenticated
        // traffic (a body up to 1 MiB) before its signature can be checked, which
        // needs the whole body; the signature decides everything else.
        const model::Token* key = api->state->FindToken(auth->access_key_id);
        int64_t now_ms = api->clock->NowUnixMs();
        if (!key || !key->access_key() || (key->expires_ms && key->expires_ms <= now_ms)) {
          return ex->Respond(
              AwsError(401, "UnrecognizedClientException",
                       "The security token included in the request is invalid: " +
                           std::string(key && key->access_key() ? "access key " + key->id + " expired"
                                                                : "no access key " + auth->access_key_id.substr(0, 40) +
                                                                      " is known to this cluster")));
        }
        ex->principal = key->id;
        auto body = std::make_shared<std::string>();
        ex->on_body = [body](std::string_view piece) -> Status {
          body->append(piece);
          return {};
        };
        std::string op(target.substr(dot + 1));
        ex->on_body_end = [ex, body, service, op, a = std::move(auth.value()), router, api, registry, options] {
          ex->request().body = std::move(*body);
          Serve(ex, *service, op, a, router, api, registry, options);
        };
      },
      o);
}

}  // namespace berth::aws
