#include "net/router.h"

namespace berth::net::http {

const char* AccessName(Access a) {
  switch (a) {
    case Access::kAuto: return "auto";
    case Access::kOpen: return "open";
    case Access::kRead: return "read";
    case Access::kDeploy: return "deploy";
    case Access::kAdmin: return "admin";
    case Access::kAgent: return "agent";
    case Access::kServer: return "server";
    case Access::kPeer: return "peer";
    case Access::kRegistry: return "registry";
    case Access::kAws: return "aws";
  }
  return "?";
}

const char* ScopeName(Scope s) {
  switch (s) {
    case Scope::kNone: return "none";
    case Scope::kCluster: return "cluster";
    case Scope::kRepository: return "repository";
    case Scope::kUnscoped: return "unscoped";
  }
  return "?";
}

Access Route::access() const {
  if (options.access != Access::kAuto) return options.access;
  return method == "GET" || method == "HEAD" ? Access::kRead : Access::kDeploy;
}

namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      i++;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool IsParam(const std::string& seg) { return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}'; }
bool IsRest(const std::string& seg) { return seg.size() > 5 && seg.ends_with("...}"); }

// Matches `path` against `route`'s segments without allocating unless it matches.
bool MatchRoute(const Route& route, std::string_view path, std::vector<std::pair<std::string, std::string>>* params) {
  size_t pos = 0;
  auto next_segment = [&](std::string_view* seg) -> bool {
    while (pos < path.size() && path[pos] == '/') pos++;
    if (pos >= path.size()) return false;
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    *seg = path.substr(pos, end - pos);
    pos = end;
    return true;
  };
  size_t nparams = params ? params->size() : 0;
  auto fail = [&] {
    if (params) params->resize(nparams);
    return false;
  };
  for (const std::string& want : route.segments) {
    if (IsRest(want)) {
      while (pos < path.size() && path[pos] == '/') pos++;
      if (pos >= path.size()) return fail();
      if (params) {
        std::string value;
        if (!UrlDecode(path.substr(pos), &value, false)) return fail();
        params->emplace_back(want.substr(1, want.size() - 5), std::move(value));
      }
      return true;
    }
    std::string_view seg;
    if (!next_segment(&seg)) return fail();
    if (IsParam(want)) {
      if (params) {
        std::string value;
        if (!UrlDecode(seg, &value, false)) return fail();
        params->emplace_back(want.substr(1, want.size() - 2), std::move(value));
      }
    } else if (seg != want) {
      return fail();
    }
  }
  std::string_view extra;
  if (next_segment(&extra)) return fail();
  return true;
}

}  // namespace

void Router::Add(std::string method, std::string pattern, Handler handler, RouteOptions options) {
  auto r = std::make_unique<Route>();
  r->method = std::move(method);
  r->segments = SplitPath(pattern);
  r->pattern = std::move(pattern);
  r->handler = std::move(handler);
  r->options = options;
  routes_.push_back(std::move(r));
}

Router::Match Router::Find(std::string_view method, std::string_view path,
                           std::vector<std::pair<std::string, std::string>>* params) const {
  Match m;
  const Route* get_for_head = nullptr;
  for (const auto& r : routes_) {
    if (r->method == method) {
      if (MatchRoute(*r, path, params)) {
        m.route = r.get();
        return m;
      }
    } else if (MatchRoute(*r, path, nullptr)) {
      if (method == "HEAD" && r->method == "GET" && !get_for_head) get_for_head = r.get();
      m.other_method = true;
      if (m.allow.find(r->method) == std::string::npos) {
        if (!m.allow.empty()) m.allow += ", ";
        m.allow += r->method;
      }
    }
  }
  // HEAD is served by the GET route when there is no HEAD route of its own.
  if (get_for_head && MatchRoute(*get_for_head, path, params)) {
    m.route = get_for_head;
    m.other_method = false;
    m.allow.clear();
  }
  return m;
}

}  // namespace berth::net::http
