// The AWS front end: the real `aws ecs` and `aws ecr` CLIs (and any AWS SDK) drive
// berth. `POST /` with `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>` or
// `AmazonEC2ContainerRegistry_V20150921.<Op>` and a JSON 1.1 body, signed with
// Signature Version 4 by an access key (`berth accesskey create`).
//
// A translation layer, not a second implementation: each operation reads its
// AWS input, calls the native routes (/v1, /v2) inside the server as the key's
// holder (the route's access rule and the key's limits apply as they do to a
// token), and reshapes the answers; native errors become the services' own
// exceptions through one table per service. ARNs carry the region the request
// was signed for and the configured account. docs/aws.md.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.h"
#include "base/json.h"
#include "net/http_server.h"
#include "net/router.h"

namespace berth::registry {
class Registry;
}

namespace berth::aws {

struct Options {
  std::string account = "000000000000";  // the account id in ARNs (--aws-account-id)
  // In a cluster of servers: whether this one acts (leads), and how a change
  // that reached it otherwise goes to the leader: the signed request as it came,
  // whose answer `done` gets once this server has applied what the leader had
  // when it answered. Unset: every call is served here.
  std::function<bool()> acting;
  std::function<void(const net::http::Request&, std::function<void(net::http::Response)> done)> to_leader;
};

class Call;
using CallPtr = std::shared_ptr<Call>;
using OpHandler = void (*)(const CallPtr&);

// How much of an operation berth does: every field (kFull), or some accepted and
// reported back as ignored (kPartial: `ignored` names them). docs/compat/ is
// generated from these tables (docs/compat/generate.py reads them).
enum class Support { kFull, kPartial };
struct Operation {
  const char* name;
  Support support;
  OpHandler handler;
  const char* ignored;  // comma-separated input fields accepted and not acted on
};

// A native error code and the AWS exception it becomes.
struct Exception {
  std::string_view native_code;
  const char* aws_type;
};

struct Service {
  std::string_view target_prefix;  // "AmazonEC2ContainerServiceV20141113"
  std::string_view signing_name;   // "ecs": the service in the credential scope
  std::string_view arn_service;    // "ecs"
  const Operation* operations;
  size_t count;
  // The exception each native error code becomes; a code not listed: by status
  // (ClientException or ServerException, InvalidParameterException for bad input).
  std::span<const Exception> exceptions;
};
const Service& Ecs();
const Service& Ecr();

// One AWS call in progress.
class Call : public std::enable_shared_from_this<Call> {
 public:
  Call(const net::http::ExchangePtr& ex, const Service& service, const Operation& op, json::Doc input,
       std::string region, std::string account, std::string principal, std::string role,
       const net::http::Router* router, api::Context* api, registry::Registry* registry);

  const Operation& op() const { return op_; }
  json::View input() const { return input_.view(); }
  const std::string& region() const { return region_; }
  const std::string& principal() const { return principal_; }
  api::Context* api() const { return api_; }
  registry::Registry* registry() const { return registry_; }
  // "https://host:port" as the client reached this server.
  std::string host_url() const;

  // Calls a native route as the caller: `target` is the path and query
  // ("/v1/services/web?cluster=prod", names already encoded with http::UrlEncode),
  // `body` the JSON text sent, `headers` any extra request headers. `then` gets
  // the native answer (its ARNs berth's own: Reply and Fail rewrite them).
  using Then = std::function<void(net::http::Response)>;
  void Native(std::string method, std::string target, std::string body, Then then, net::http::Headers headers = {});
  // The same for several calls at once; `then` gets the answers in order.
  void NativeAll(std::vector<std::pair<std::string, std::string>> gets,
                 std::function<void(std::vector<net::http::Response>)> then);

  // The answer: `out` (an object); ignored input fields are added as
  // "berthIgnoredFields" when the call sent any.
  void Reply(json::Doc&& out);
  void Reply(json::Doc& out) { Reply(std::move(out)); }  // takes the tree, as json::Doc::Set does
  // The same with the answer as JSON text (an object), for answers made of
  // native ones taken as text: a service with its events is tens of kilobytes,
  // not worth parsing and printing again.
  void ReplyText(std::string object_text);
  // One page of `all` (an array, which berth gives whole) as {out_field: [...],
  // "nextToken"}: nextToken is the index of the next entry, maxResults 1 to
  // `max_results` (its default).
  void ReplyPage(json::View all, std::string_view out_field, int64_t max_results);
  // An AWS error: {"__type": type, "message": message}.
  void Fail(std::string_view type, std::string_view message, int status = 400);
  // A native error answer, translated with the service's table.
  void FailNative(const net::http::Response& native);
  // Reads `field` of the input as a string (required); fails the call and
  // returns nullopt when absent or not a string.
  std::optional<std::string> RequireString(std::string_view field);
  std::string OptionalString(std::string_view field, std::string fallback = {});

  // The input with the operation's ignored fields taken out, noting which of
  // them were sent; `rename` maps AWS names to native ones where they differ.
  json::Doc Forwarded(const std::vector<std::string>& drop = {});

 private:
  net::http::ExchangePtr ex_;
  const Service& service_;
  const Operation& op_;
  json::Doc input_;
  std::string region_;
  std::string account_;
  std::string principal_;
  std::string role_;
  const net::http::Router* router_;
  api::Context* api_;
  registry::Registry* registry_;
  std::vector<std::string> ignored_sent_;
};

// The name or id at the end of an ARN ("arn:aws:ecs:r:a:service/c/web" → "web");
// anything that is not an ARN as it is.
std::string LastPart(std::string_view name_or_arn);
// An ARN of service `svc` in any region and account, in berth's own form
// ("arn:aws:<svc>:local:000000000000:<resource>"); "" when `arn` is not an ARN
// of that service with a resource.
std::string BerthArn(std::string_view arn, std::string_view svc);
// A cluster's name from its name or ARN; empty input → "default".
std::string ClusterName(std::string_view name_or_arn);
// Rewrites berth's own ARNs ("arn:aws:ecs:local:000000000000:") and registry ids
// in JSON text to `region` and `account`.
std::string RewriteArns(std::string text, std::string_view region, std::string_view account);
// AWS timestamps are seconds since the epoch: the native "...At" strings
// (ISO 8601) in `doc`'s objects become numbers, recursively.
json::Doc EpochTimes(json::View v);

// Adds `POST /` to `router`. `api`, `registry` and `router` outlive it.
void AddRoutes(net::http::Router* router, api::Context* api, registry::Registry* registry, Options options);

}  // namespace berth::aws
