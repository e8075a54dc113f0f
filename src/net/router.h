// Routes: method + path pattern → handler, with per-route body limits.
// Patterns are literal segments and parameters: "/v1/clusters/{name}"; a final
// "{rest...}" parameter takes the remaining path, slashes included.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/http.h"

namespace berth::net::http {

class Exchange;
using ExchangePtr = std::shared_ptr<Exchange>;
using Handler = std::function<void(const ExchangePtr&)>;

// Who may call a route. The gate enforces it, and docs/permissions.md is made
// from it (GET /v1/permissions), so the documented matrix is the enforced one.
enum class Access {
  kAuto,      // kRead for GET and HEAD, kDeploy otherwise
  kOpen,      // anyone, no credential
  kRead,      // read-only, deploy and admin tokens
  kDeploy,    // deploy and admin tokens
  kAdmin,     // admin tokens
  kAgent,     // agent tokens and node certificates (the agent protocol)
  kServer,    // server tokens and admin tokens (a server joining the cluster)
  kPeer,      // another server's peer certificate (the replicated log)
  kRegistry,  // the registry decides, by its own tokens' scopes (docs/registry.md)
  kAws,       // AWS Signature Version 4 by an access key; each operation's own access decides (docs/aws.md)
};
const char* AccessName(Access a);

// What a token limited to some clusters or repositories (model/scope.h) may do
// here. kCluster and kRepository routes check the cluster or repository they act
// on (their handlers know it); the gate refuses limited tokens on kUnscoped ones.
enum class Scope {
  kNone,        // not about a cluster or repository: limits do not matter
  kCluster,     // acts on one cluster's things; lists show only the token's clusters
  kRepository,  // acts on one repository; lists show only the token's repositories
  kUnscoped,    // touches every cluster (shared things): tokens without limits only
};
const char* ScopeName(Scope s);

struct RouteOptions {
  size_t max_body = 1 << 20;  // bytes; larger bodies get 413
  // The handler runs when the headers are in, and reads the body as it arrives
  // through Exchange::on_body; nothing is buffered.
  bool stream_body = false;
  Access access = Access::kAuto;
  Scope scope = Scope::kNone;
  // A change through this route is written to the audit log (refusals always
  // are); off for an agent's routine traffic (reports, log frames).
  bool audit = true;
  // The body carries a credential (POST /v1/session takes a token): a 401 counts
  // as a failed authentication of the client's address, and a client over the
  // bound gets 429, as with an Authorization header.
  bool takes_credential = false;
};

struct Route {
  std::string method;
  std::string pattern;  // also the route's name in metrics
  Handler handler;
  RouteOptions options;
  std::vector<std::string> segments;  // split pattern
  // kAuto resolved by the method.
  Access access() const;
  // The gate does not run: anyone may call it (kOpen), or the handler
  // authenticates for itself (kRegistry, kAws).
  bool open() const {
    return options.access == Access::kOpen || options.access == Access::kRegistry || options.access == Access::kAws;
  }
};

class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler, RouteOptions options = {});

  struct Match {
    const Route* route = nullptr;  // null: no route
    bool other_method = false;     // the path exists under another method (405)
    std::string allow;             // those methods, for the Allow header
  };
  // Finds the route for `method` and raw `path`; fills `params` (decoded) on a match.
  Match Find(std::string_view method, std::string_view path,
             std::vector<std::pair<std::string, std::string>>* params) const;
  // Every route, in the order added.
  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

 private:
  std::vector<std::unique_ptr<Route>> routes_;
};

}  // namespace berth::net::http
