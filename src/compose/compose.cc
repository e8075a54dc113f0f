#include "compose/compose.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "compose/yaml.h"
#include "model/taskdef.h"

namespace berth::compose {

namespace {

using yaml::Kind;
using yaml::Node;
using yaml::NodePtr;

// A container's memory when the file gives none: a soft reservation, so the
// scheduler counts something and nothing is killed for using more.
constexpr int64_t kDefaultReservationMiB = 128;

// ---------------------------------------------------------------------------
// Paths and small readers

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// `rel` against the absolute directory `dir`, with . and .. folded.
std::string Absolute(const std::string& dir, const std::string& rel) {
  std::string joined = !rel.empty() && rel[0] == '/' ? rel : dir + "/" + rel;
  std::vector<std::string> parts;
  std::stringstream ss(joined);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (const std::string& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

bool DiskRead(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return !f.bad();
}

bool NameChar(char c) { return isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; }

// A task volume's name from any text: the characters ECS refuses become '_'.
std::string VolumeName(std::string_view text) {
  std::string out;
  for (char c : text) out += NameChar(c) ? c : '_';
  return out.empty() ? "vol" : out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return s;
}

// ---------------------------------------------------------------------------
// The translation's context: where errors go and what is only warned about.

struct Context {
  const Options& options;
  std::vector<std::string>* warnings;

  static Error Bad(const std::string& where, const std::string& path, const std::string& why) {
    return Error::Invalid(where + ": " + path + ": " + why);
  }
  // A key berth cannot honour: an error, or with --ignore-unsupported a warning
  // (and the caller skips it).
  Status Unsupported(const std::string& where, const std::string& path, const std::string& why) const {
    if (!options.ignore_unsupported) return Bad(where, path, why);
    warnings->push_back(where + ": " + path + ": " + why + " (skipped: --ignore-unsupported)");
    return {};
  }
  void Warn(const std::string& where, const std::string& path, const std::string& why) const {
    warnings->push_back(where + ": " + path + ": " + why);
  }
};

// The line of a mapping's i-th key, in the file its value came from (after
// merging several files, a mapping holds keys of each).
std::string WhereKey(const Node& map, size_t i) {
  return map.pairs[i].second->file + ":" + std::to_string(map.key_lines[i]);
}

// A scalar's text; numbers and booleans are text too (Compose reads them as the key wants).
Result<std::string> Text(const Node& n, const std::string& path) {
  if (n.IsScalar()) return n.text;
  if (n.IsNull()) return std::string();
  return Context::Bad(n.Where(), path, std::string("must be a single value, not ") + n.KindName());
}

Result<bool> Bool(const Node& n, const std::string& path) {
  std::string t = Lower(n.text);
  if (n.IsScalar() && (t == "true" || t == "yes" || t == "on")) return true;
  if (n.IsScalar() && (t == "false" || t == "no" || t == "off")) return false;
  return Context::Bad(n.Where(), path, "must be true or false");
}

Result<int64_t> Int(const Node& n, const std::string& path) {
  if (n.IsScalar() && !n.text.empty() && n.text.size() < 12 &&
      std::all_of(n.text.begin(), n.text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return static_cast<int64_t>(std::stoll(n.text));
  }
  return Context::Bad(n.Where(), path, "must be a whole number, not '" + n.text + "'");
}

// A string or a list of strings → the list.
Result<std::vector<std::string>> StringList(const Node& n, const std::string& path) {
  std::vector<std::string> out;
  if (n.IsSeq()) {
    for (size_t i = 0; i < n.items.size(); i++) {
      Result<std::string> t = Text(*n.items[i], path + "[" + std::to_string(i) + "]");
      if (!t) return t.take_error();
      out.push_back(*t);
    }
    return out;
  }
  Result<std::string> t = Text(n, path);
  if (!t) return t.take_error();
  out.push_back(*t);
  return out;
}

// ---------------------------------------------------------------------------
// Interpolation over a tree: every scalar value (keys are left as written).

Status InterpolateTree(Node* n, const std::string& path, const std::map<std::string, std::string>& vars,
                       std::vector<std::string>* warnings) {
  if (n->IsScalar()) {
    std::vector<std::string> unset;
    Result<std::string> t = Interpolate(n->text, vars, &unset);
    if (!t) return Context::Bad(n->Where(), path, t.error().message);
    for (const std::string& name : unset) {
      warnings->push_back(n->Where() + ": " + path + ": variable " + name + " is not set: it becomes an empty string");
    }
    n->text = std::move(t.value());
    return {};
  }
  for (size_t i = 0; i < n->items.size(); i++) {
    if (Status s = InterpolateTree(n->items[i].get(), path + "[" + std::to_string(i) + "]", vars, warnings); !s) {
      return s;
    }
  }
  for (auto& p : n->pairs) {
    if (p.first.starts_with("x-")) continue;  // extensions are never read
    std::string sub = path.empty() ? p.first : path + "." + p.first;
    if (Status s = InterpolateTree(p.second.get(), sub, vars, warnings); !s) return s;
  }
  return {};
}

// ---------------------------------------------------------------------------
// Merging several files (the Compose specification's merge rules).

// A new node of `kind`, placed where `at` is (for errors' file and line).
NodePtr NodeAt(const Node& at, Kind kind, std::string text = {}) {
  auto n = std::make_shared<Node>();
  n->kind = kind;
  n->text = std::move(text);
  n->file = at.file;
  n->line = at.line;
  return n;
}

// environment, labels, extra_hosts as a list ("K=V", "K") → a mapping (K: V, K: null).
NodePtr ListToMap(const NodePtr& n) {
  if (!n->IsSeq()) return n;
  NodePtr m = NodeAt(*n, Kind::kMapping);
  for (const NodePtr& item : n->items) {
    std::string t = item->text;
    size_t eq = t.find('=');
    std::string key = t.substr(0, eq);
    NodePtr value =
        eq == std::string::npos ? NodeAt(*item, Kind::kNull) : NodeAt(*item, Kind::kScalar, t.substr(eq + 1));
    bool replaced = false;
    for (auto& p : m->pairs) {
      if (p.first == key) {
        p.second = value;
        replaced = true;
      }
    }
    if (!replaced) {
      m->pairs.emplace_back(key, value);
      m->key_lines.push_back(item->line);
    }
  }
  return m;
}

// depends_on as a list → {name: {condition: service_started}}.
NodePtr DependsToMap(const NodePtr& n) {
  if (!n->IsSeq()) return n;
  NodePtr m = NodeAt(*n, Kind::kMapping);
  for (const NodePtr& item : n->items) {
    NodePtr cond = NodeAt(*item, Kind::kMapping);
    cond->pairs.emplace_back("condition", NodeAt(*item, Kind::kScalar, "service_started"));
    cond->key_lines.push_back(item->line);
    m->pairs.emplace_back(item->text, cond);
    m->key_lines.push_back(item->line);
  }
  return m;
}

std::string MountTarget(const Node& v) {
  if (v.IsMap()) return v.Get("target") ? v.Get("target")->text : "";
  std::string t = v.text;
  size_t a = t.find(':');
  if (a == std::string::npos) return t;
  size_t b = t.find(':', a + 1);
  return t.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
}

NodePtr Merge(const NodePtr& base, const NodePtr& over, const std::string& key);

void MergeMaps(Node* base, const Node& over) {
  for (size_t i = 0; i < over.pairs.size(); i++) {
    const auto& [k, v] = over.pairs[i];
    bool found = false;
    for (size_t j = 0; j < base->pairs.size(); j++) {
      if (base->pairs[j].first == k) {
        base->pairs[j].second = Merge(base->pairs[j].second, v, k);
        base->key_lines[j] = over.key_lines[i];  // the key as the later file has it
        found = true;
      }
    }
    if (!found) {
      base->pairs.emplace_back(k, v);
      base->key_lines.push_back(over.key_lines[i]);
    }
  }
}

// `over` merged onto `base`; `key` is the key both are the value of.
NodePtr Merge(const NodePtr& base, const NodePtr& over, const std::string& key) {
  NodePtr a = base, b = over;
  if (key == "environment" || key == "labels" || key == "extra_hosts") {
    a = ListToMap(a);
    b = ListToMap(b);
  } else if (key == "depends_on") {
    a = DependsToMap(a);
    b = DependsToMap(b);
  }
  if (a->IsMap() && b->IsMap()) {
    NodePtr m = yaml::Clone(*a);
    MergeMaps(m.get(), *b);
    m->file = b->file;
    m->line = b->line;
    return m;
  }
  if (a->IsSeq() && b->IsSeq() && key != "command" && key != "entrypoint" && key != "test") {
    NodePtr m = yaml::Clone(*a);
    m->file = b->file;
    m->line = b->line;
    if (key == "volumes") {  // one mount per target: the later file's wins
      for (const NodePtr& v : b->items) {
        std::string target = MountTarget(*v);
        std::erase_if(m->items, [&](const NodePtr& x) { return MountTarget(*x) == target; });
        m->items.push_back(v);
      }
      return m;
    }
    for (const NodePtr& v : b->items) {
      bool same = v->IsScalar() && std::any_of(m->items.begin(), m->items.end(),
                                               [&](const NodePtr& x) { return x->IsScalar() && x->text == v->text; });
      if (!same) m->items.push_back(v);
    }
    return m;
  }
  return b;
}

// ---------------------------------------------------------------------------
// Translation of one service

struct VolumeDecl {
  std::string task_name;
  bool external = false;
};

struct Translation {
  json::Doc volumes = json::Doc::Array();
  std::map<std::string, std::string> bind_names;  // host path → task volume name
  std::set<std::string> volume_names;
  std::map<std::string, VolumeDecl> declared;  // top-level volumes
};

std::string UniqueVolumeName(Translation* t, std::string base) {
  std::string name = base;
  for (int i = 2; t->volume_names.count(name); i++) name = base + "-" + std::to_string(i);
  t->volume_names.insert(name);
  return name;
}

// One port number or a range "8000-8001" → [first, last].
Result<std::pair<int, int>> PortRange(std::string_view text) {
  auto num = [](std::string_view s) -> int {
    if (s.empty() || s.size() > 5) return -1;
    int v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return -1;
      v = v * 10 + (c - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
  };
  size_t dash = text.find('-');
  int a = num(text.substr(0, dash));
  int b = dash == std::string_view::npos ? a : num(text.substr(dash + 1));
  if (a < 0 || b < 0 || b < a) return Error::Invalid("'" + std::string(text) + "' is not a port (1-65535) or a range");
  return std::make_pair(a, b);
}

struct PortSpec {
  std::string host_ip;
  std::string published;  // "" (dynamic), "8080" or "8080-8081"
  std::string target;     // "80" or "80-81"
  std::string protocol = "tcp";
};

// "[[ip:][published]:]target[/protocol]"
Result<PortSpec> ParseShortPort(std::string text) {
  PortSpec p;
  if (size_t slash = text.rfind('/'); slash != std::string::npos) {
    p.protocol = text.substr(slash + 1);
    text.resize(slash);
  }
  if (!text.empty() && text[0] == '[') {  // [::1]:8080:80
    size_t close = text.find(']');
    if (close == std::string::npos) return Error::Invalid("unclosed [ in '" + text + "'");
    p.host_ip = text.substr(1, close - 1);
    text = text.substr(close + 1);
    if (!text.empty() && text[0] == ':') text = text.substr(1);
    size_t colon = text.find(':');
    if (colon == std::string::npos) return Error::Invalid("expected [IP]:PUBLISHED:TARGET");
    p.published = text.substr(0, colon);
    p.target = text.substr(colon + 1);
    return p;
  }
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ':')) parts.push_back(part);
  if (!text.empty() && text.back() == ':') parts.push_back("");
  if (parts.size() == 1) {
    p.target = parts[0];
  } else if (parts.size() == 2) {
    p.published = parts[0];
    p.target = parts[1];
  } else if (parts.size() == 3) {
    p.host_ip = parts[0];
    p.published = parts[1];
    p.target = parts[2];
  } else {
    return Error::Invalid("expected [[IP:]PUBLISHED:]TARGET[/PROTOCOL], not '" + text + "'");
  }
  return p;
}

class ServiceTranslator {
 public:
  ServiceTranslator(const Context& ctx, Translation* t, const std::string& name, const Node& svc,
                    const std::string& where)
      : ctx_(ctx), t_(t), name_(name), svc_(svc), where_(where), path_("services." + name) {}

  Result<json::Doc> Run();
  bool has_health = false;
  std::vector<std::pair<std::string, std::string>> depends;  // (service, ECS condition), with the line below
  std::vector<std::string> depends_where;
  bool essential = true;
  std::string network_mode = "bridge";  // as the service's network_mode says
  std::string network_mode_where;       // its file and line, when given

 private:
  std::string P(const std::string& key) const { return path_ + "." + key; }
  Status Ports(const Node& n, size_t i, json::Doc* out);
  Status Volumes(const Node& n, json::Doc* out);
  Status Environment(const Node* env, const Node* env_files, json::Doc* out);
  Status Health(const Node& n, const std::string& where, json::Doc* out);
  Status Resources(const Node& deploy, const std::string& where, int64_t* cpu, int64_t* mem, int64_t* res);

  const Context& ctx_;
  Translation* t_;
  std::string name_;
  const Node& svc_;
  std::string where_;
  std::string path_;
};

// Why each key Compose knows and berth does not take is refused.
std::string RefusalFor(const std::string& key) {
  if (key == "build") return "berth runs images; build and push yours to <server>:7070 first";
  if (key == "secrets")
    return "file secrets are not uploaded; create them with 'berth secret create' and reference them from a task "
           "definition";
  if (key == "configs") return "configs are not supported; bake the file into the image or bind-mount it";
  if (key == "scale") return "all services run together in one task; scale the project with 'berth compose scale N'";
  if (key == "network_mode")
    return "the services of a project share one network (bridge, host or none for all of them); another "
           "service's or container's network is not supported";
  if (key == "extends") return "not supported; merge files with several -f instead";
  if (key == "profiles") return "profiles are not supported: every service of the file runs";
  if (key == "privileged" || key == "cap_add" || key == "cap_drop" || key == "devices" || key == "security_opt" ||
      key == "sysctls" || key == "pid" || key == "ipc" || key == "userns_mode" || key == "cgroup_parent" ||
      key == "runtime")
    return "host-level container settings are not supported by berth's task definitions";
  if (key == "stop_signal") return "berth stops containers with SIGTERM, then SIGKILL after stop_grace_period";
  return "is not supported by berth (no task definition field takes it)";
}

Result<json::Doc> ServiceTranslator::Run() {
  if (!svc_.IsMap()) return Context::Bad(svc_.Where(), path_, "must be a mapping");
  json::Doc c = json::Doc::Object();
  c.Set("name", name_);
  const Node* image = svc_.Get("image");
  const Node* build = svc_.Get("build");
  if (!image && !build) return Context::Bad(where_, path_, "needs an image");
  if (build) {
    size_t i = 0;
    while (svc_.pairs[i].first != "build") i++;
    if (Status s = ctx_.Unsupported(WhereKey(svc_, i), P("build"), RefusalFor("build")); !s) return s.take_error();
    if (!image) return Context::Bad(where_, path_, "needs an image (its build: was skipped)");
  }
  Result<std::string> img = Text(*image, P("image"));
  if (!img) return img.take_error();
  c.Set("image", *img);

  int64_t cpu = 0, mem = 0, res = 0;
  json::Doc ports = json::Doc::Array();
  json::Doc mounts = json::Doc::Array();
  json::Doc env = json::Doc::Array();
  std::vector<std::pair<std::string, json::Doc>> later;  // fields after the above, in a fixed order
  json::Doc labels = json::Doc::Object();
  bool any_labels = false;

  for (size_t i = 0; i < svc_.pairs.size(); i++) {
    const std::string& key = svc_.pairs[i].first;
    const Node& v = *svc_.pairs[i].second;
    std::string where = WhereKey(svc_, i);
    if (key.starts_with("x-") || key == "image" || key == "build" || key == "environment" || key == "env_file")
      continue;
    if (key == "command" || key == "entrypoint") {
      if (v.IsNull()) continue;
      std::vector<std::string> words;
      if (v.IsSeq()) {
        Result<std::vector<std::string>> l = StringList(v, P(key));
        if (!l) return l.take_error();
        words = *l;
      } else {
        Result<std::vector<std::string>> l = ShellSplit(v.text);
        if (!l) return Context::Bad(v.Where(), P(key), l.error().message);
        words = *l;
      }
      json::Doc a = json::Doc::Array();
      for (const std::string& w : words) a.Push(w);
      c.Set(key == "command" ? "command" : "entryPoint", a);
    } else if (key == "ports") {
      if (!v.IsSeq()) return Context::Bad(v.Where(), P(key), "must be a list");
      for (size_t k = 0; k < v.items.size(); k++) {
        if (Status s = Ports(*v.items[k], k, &ports); !s) return s.take_error();
      }
    } else if (key == "expose") {
      // Accepted: every service already reaches every port of the others on the task network.
      if (!v.IsSeq()) return Context::Bad(v.Where(), P(key), "must be a list");
    } else if (key == "volumes") {
      if (Status s = Volumes(v, &mounts); !s) return s.take_error();
    } else if (key == "depends_on") {
      NodePtr m = DependsToMap(std::make_shared<Node>(v));
      if (!m->IsMap()) return Context::Bad(v.Where(), P(key), "must be a list or a mapping");
      for (size_t k = 0; k < m->pairs.size(); k++) {
        const Node& d = *m->pairs[k].second;
        std::string cond = "service_started";
        if (d.IsMap()) {
          for (size_t j = 0; j < d.pairs.size(); j++) {
            const std::string& dk = d.pairs[j].first;
            if (dk == "condition") {
              cond = d.pairs[j].second->text;
            } else if (dk != "required" && dk != "restart") {
              if (Status s =
                      ctx_.Unsupported(WhereKey(d, j), P(key + "." + m->pairs[k].first + "." + dk), RefusalFor(dk));
                  !s)
                return s.take_error();
            }
          }
        } else if (!d.IsNull()) {
          return Context::Bad(d.Where(), P(key + "." + m->pairs[k].first), "must be a mapping with condition");
        }
        std::string ecs = cond == "service_started"                  ? "START"
                          : cond == "service_healthy"                ? "HEALTHY"
                          : cond == "service_completed_successfully" ? "SUCCESS"
                                                                     : "";
        if (ecs.empty()) {
          return Context::Bad(
              WhereKey(*m, k), P(key + "." + m->pairs[k].first + ".condition"),
              "must be service_started, service_healthy or service_completed_successfully, not '" + cond + "'");
        }
        depends.emplace_back(m->pairs[k].first, ecs);
        depends_where.push_back(WhereKey(*m, k));
      }
    } else if (key == "healthcheck") {
      json::Doc h;
      if (Status s = Health(v, where, &h); !s) return s.take_error();
      if (h.valid()) later.emplace_back("healthCheck", std::move(h));
    } else if (key == "restart") {
      Result<std::string> r = Text(v, P(key));
      if (!r) return r.take_error();
      if (*r == "no" || *r == "false") {
        essential = false;
      } else if (*r != "always" && *r != "unless-stopped" && *r != "on-failure" && !r->starts_with("on-failure:")) {
        return Context::Bad(v.Where(), P(key), "must be no, always, on-failure[:N] or unless-stopped");
      }
    } else if (key == "deploy") {
      if (Status s = Resources(v, where, &cpu, &mem, &res); !s) return s.take_error();
    } else if (key == "mem_limit" || key == "mem_reservation") {
      Result<int64_t> b = ParseBytes(v.text);
      if (!b) return Context::Bad(v.Where(), P(key), b.error().message);
      (key == "mem_limit" ? mem : res) = (*b + (1 << 20) - 1) >> 20;
    } else if (key == "cpus") {
      double n = strtod(v.text.c_str(), nullptr);
      if (n <= 0) return Context::Bad(v.Where(), P(key), "must be a positive number of CPUs");
      cpu = static_cast<int64_t>(std::llround(n * 1024));
    } else if (key == "cpu_shares") {
      Result<int64_t> n = Int(v, P(key));
      if (!n) return n.take_error();
      cpu = *n;
    } else if (key == "labels") {
      NodePtr m = ListToMap(std::make_shared<Node>(v));
      if (!m->IsMap()) return Context::Bad(v.Where(), P(key), "must be a list or a mapping");
      for (const auto& [lk, lv] : m->pairs) {
        Result<std::string> t = Text(*lv, P(key + "." + lk));
        if (!t) return t.take_error();
        labels.Set(lk, *t);
        any_labels = true;
      }
    } else if (key == "working_dir" || key == "user" || key == "hostname") {
      Result<std::string> t = Text(v, P(key));
      if (!t) return t.take_error();
      c.Set(key == "working_dir" ? "workingDirectory" : key, *t);
    } else if (key == "stop_grace_period") {
      Result<int64_t> ms = ParseDuration(v.text);
      if (!ms) return Context::Bad(v.Where(), P(key), ms.error().message);
      int64_t s = (*ms + 999) / 1000;
      if (s > 120) {
        ctx_.Warn(v.Where(), P(key), "berth waits at most 120s (stopTimeout); using 120s");
        s = 120;
      }
      c.Set("stopTimeout", s);
    } else if (key == "logging") {
      if (!v.IsMap()) return Context::Bad(v.Where(), P(key), "must be a mapping");
      json::Doc log = json::Doc::Object();
      const Node* driver = v.Get("driver");
      log.Set("logDriver", driver ? driver->text : "json-file");
      json::Doc opts = json::Doc::Object();
      for (size_t k = 0; k < v.pairs.size(); k++) {
        const std::string& lk = v.pairs[k].first;
        if (lk == "driver") continue;
        if (lk != "options") {
          if (Status s = ctx_.Unsupported(WhereKey(v, k), P(key + "." + lk), RefusalFor(lk)); !s) return s.take_error();
          continue;
        }
        const Node& o = *v.pairs[k].second;
        if (!o.IsMap() && !o.IsNull()) return Context::Bad(o.Where(), P("logging.options"), "must be a mapping");
        for (const auto& [ok, ov] : o.pairs) {
          Result<std::string> t = Text(*ov, P("logging.options." + ok));
          if (!t) return t.take_error();
          opts.Set(ok, *t);
        }
      }
      if (opts.view().Size() > 0) log.Set("options", opts);
      later.emplace_back("logConfiguration", std::move(log));
    } else if (key == "container_name") {
      ctx_.Warn(where, P(key),
                "ignored: berth names containers after their task; the other services reach this one as " + name_);
    } else if (key == "networks") {
      ctx_.Warn(where, P(key), "ignored: all services share the task's network and reach each other by service name");
    } else if (key == "links") {
      ctx_.Warn(where, P(key), "ignored: every service already reaches the others by service name");
    } else if (key == "network_mode") {
      // The whole task has one network mode: checked across services in Translate.
      Result<std::string> mode = Text(*svc_.pairs[i].second, P(key));
      if (!mode) return mode.take_error();
      if (*mode == "host" || *mode == "none" || *mode == "bridge") {
        network_mode = *mode;
        network_mode_where = where;
      } else if (Status s = ctx_.Unsupported(where, P(key), RefusalFor(key)); !s) {
        return s.take_error();
      }
    } else {
      if (Status s = ctx_.Unsupported(where, P(key), RefusalFor(key)); !s) return s.take_error();
    }
  }
  if (Status s = Environment(svc_.Get("environment"), svc_.Get("env_file"), &env); !s) return s.take_error();

  c.Set("essential", essential);
  if (cpu > 0) c.Set("cpu", cpu);
  if (mem > 0) c.Set("memory", mem);
  if (res > 0) c.Set("memoryReservation", res);
  if (mem == 0 && res == 0) c.Set("memoryReservation", kDefaultReservationMiB);
  if (env.view().Size() > 0) c.Set("environment", env);
  if (ports.view().Size() > 0) c.Set("portMappings", ports);
  if (mounts.view().Size() > 0) c.Set("mountPoints", mounts);
  if (any_labels) c.Set("dockerLabels", labels);
  for (auto& [k, v] : later) c.Set(k, v);
  return c;
}

Status ServiceTranslator::Ports(const Node& n, size_t i, json::Doc* out) {
  std::string path = P("ports[" + std::to_string(i) + "]");
  PortSpec spec;
  if (n.IsMap()) {
    for (size_t k = 0; k < n.pairs.size(); k++) {
      const std::string& key = n.pairs[k].first;
      const Node& v = *n.pairs[k].second;
      if (key == "target") {
        spec.target = v.text;
      } else if (key == "published") {
        spec.published = v.text;
      } else if (key == "protocol") {
        spec.protocol = v.text;
      } else if (key == "host_ip") {
        spec.host_ip = v.text;
      } else if (key == "mode") {
        if (v.text != "host" && v.text != "ingress") {
          return Context::Bad(v.Where(), path + ".mode", "must be host or ingress");
        }
      } else if (key != "name" && key != "app_protocol") {
        if (Status s = ctx_.Unsupported(WhereKey(n, k), path + "." + key, RefusalFor(key)); !s) return s;
      }
    }
    if (spec.target.empty()) return Context::Bad(n.Where(), path + ".target", "is required");
  } else {
    Result<PortSpec> p = ParseShortPort(n.text);
    if (!p) return Context::Bad(n.Where(), path, p.error().message);
    spec = *p;
  }
  if (spec.protocol != "tcp" && spec.protocol != "udp") {
    return Context::Bad(n.Where(), path, "protocol must be tcp or udp, not '" + spec.protocol + "'");
  }
  if (!spec.host_ip.empty() && spec.host_ip != "0.0.0.0" && spec.host_ip != "::") {
    if (Status s = ctx_.Unsupported(n.Where(), path,
                                    "publishing on one address (" + spec.host_ip +
                                        ") is not supported: berth publishes ports on every address of the node");
        !s)
      return s;
  }
  Result<std::pair<int, int>> target = PortRange(spec.target);
  if (!target) return Context::Bad(n.Where(), path, target.error().message);
  std::pair<int, int> published = {0, 0};
  if (!spec.published.empty()) {
    Result<std::pair<int, int>> pr = PortRange(spec.published);
    if (!pr) return Context::Bad(n.Where(), path, pr.error().message);
    published = *pr;
    if (published.second - published.first != target->second - target->first) {
      return Context::Bad(n.Where(), path,
                          "the published range and the target range must be the same size (berth maps port to port)");
    }
  }
  for (int p = target->first; p <= target->second; p++) {
    json::Doc m = json::Doc::Object();
    m.Set("containerPort", p)
        .Set("hostPort", published.first ? published.first + (p - target->first) : 0)
        .Set("protocol", spec.protocol);
    out->Push(m);
  }
  return {};
}

Status ServiceTranslator::Volumes(const Node& n, json::Doc* out) {
  if (!n.IsSeq()) return Context::Bad(n.Where(), P("volumes"), "must be a list");
  for (size_t i = 0; i < n.items.size(); i++) {
    const Node& v = *n.items[i];
    std::string path = P("volumes[" + std::to_string(i) + "]");
    std::string type, source, target;
    bool read_only = false;
    if (v.IsMap()) {
      for (size_t k = 0; k < v.pairs.size(); k++) {
        const std::string& key = v.pairs[k].first;
        const Node& x = *v.pairs[k].second;
        if (key == "type") {
          type = x.text;
        } else if (key == "source") {
          source = x.text;
        } else if (key == "target") {
          target = x.text;
        } else if (key == "read_only") {
          Result<bool> b = Bool(x, path + ".read_only");
          if (!b) return b.take_error();
          read_only = *b;
        } else if (key != "bind" && key != "volume" && key != "consistency") {
          if (Status s = ctx_.Unsupported(WhereKey(v, k), path + "." + key, RefusalFor(key)); !s) return s;
        }
      }
      if (type != "bind" && type != "volume") {
        if (Status s = ctx_.Unsupported(v.Where(), path + ".type",
                                        "only bind and volume mounts are supported, not '" + type + "'");
            !s)
          return s;
        continue;
      }
    } else {
      std::string t = v.text;
      std::vector<std::string> parts;
      size_t start = 0;
      while (true) {
        size_t colon = t.find(':', start);
        parts.push_back(t.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
        if (colon == std::string::npos) break;
        start = colon + 1;
      }
      if (parts.size() == 1) {
        target = parts[0];
      } else if (parts.size() <= 3) {
        source = parts[0];
        target = parts[1];
        if (source.empty()) {
          // ":/data" is what "${MEDIA}:/data" becomes with MEDIA unset: not an anonymous volume.
          return Context::Bad(v.Where(), path, "the source before ':' is empty (is a variable it names unset?)");
        }
        if (parts.size() == 3) {
          {
            std::stringstream ms(parts[2]);
            std::string opt;
            while (std::getline(ms, opt, ',')) {
              if (opt == "ro") {
                read_only = true;
              } else if (opt != "rw") {
                if (Status s = ctx_.Unsupported(v.Where(), path,
                                                "mount option '" + opt + "' is not supported (only ro and rw)");
                    !s)
                  return s;
              }
            }
          }
        }
      } else {
        return Context::Bad(v.Where(), path, "expected [SOURCE:]TARGET[:MODE]");
      }
      bool is_path = !source.empty() && (source[0] == '.' || source[0] == '/' || source[0] == '~');
      type = source.empty() || !is_path ? "volume" : "bind";
    }
    if (target.empty() || target[0] != '/') {
      return Context::Bad(v.Where(), path, "the target must be an absolute path in the container");
    }
    std::string volume;
    if (type == "bind") {
      std::string host = source;
      if (host.starts_with("~")) host = ctx_.options.home + host.substr(1);
      host = Absolute(DirOf(Absolute(ctx_.options.cwd, v.file)), host);
      auto it = t_->bind_names.find(host);
      if (it == t_->bind_names.end()) {
        size_t slash = host.rfind('/');
        std::string base = host.size() > 1 ? host.substr(slash + 1) : "root";
        volume = UniqueVolumeName(t_, "bind-" + VolumeName(base));
        t_->bind_names[host] = volume;
        t_->volumes.Push(
            json::Doc::Object().Set("name", volume).Set("host", json::Doc::Object().Set("sourcePath", host)));
      } else {
        volume = it->second;
      }
    } else if (source.empty()) {
      volume = UniqueVolumeName(t_, VolumeName(name_ + "-anon"));
      t_->volumes.Push(json::Doc::Object().Set("name", volume));
    } else {
      auto it = t_->declared.find(source);
      if (it == t_->declared.end()) {
        return Context::Bad(v.Where(), path,
                            "named volume " + source + " is not declared under the top-level volumes:");
      }
      volume = it->second.task_name;
    }
    out->Push(json::Doc::Object().Set("sourceVolume", volume).Set("containerPath", target).Set("readOnly", read_only));
  }
  return {};
}

Status ServiceTranslator::Environment(const Node* env, const Node* env_files, json::Doc* out) {
  std::vector<std::pair<std::string, std::string>> vars;
  auto set = [&](const std::string& k, const std::string& v) {
    for (auto& e : vars) {
      if (e.first == k) {
        e.second = v;
        return;
      }
    }
    vars.emplace_back(k, v);
  };
  if (env_files && !env_files->IsNull()) {
    std::vector<const Node*> list;
    if (env_files->IsSeq()) {
      for (const NodePtr& f : env_files->items) list.push_back(f.get());
    } else {
      list.push_back(env_files);
    }
    for (const Node* f : list) {
      std::string file = f->text;
      bool required = true;
      if (f->IsMap()) {
        file = f->Get("path") ? f->Get("path")->text : "";
        if (const Node* r = f->Get("required")) {
          Result<bool> b = Bool(*r, P("env_file.required"));
          if (!b) return b.take_error();
          required = *b;
        }
      }
      std::string abs = Absolute(DirOf(Absolute(ctx_.options.cwd, f->file)), file);
      std::string text;
      if (!ctx_.options.read(abs, &text)) {
        if (!required) continue;
        return Context::Bad(f->Where(), P("env_file"), "cannot read " + abs);
      }
      for (const auto& [k, v] : ParseEnvFile(text)) set(k, v);
    }
  }
  if (env && !env->IsNull()) {
    NodePtr m = ListToMap(std::make_shared<Node>(*env));
    if (!m->IsMap()) return Context::Bad(env->Where(), P("environment"), "must be a list or a mapping");
    for (const auto& [k, v] : m->pairs) {
      if (v->IsNull()) {  // KEY alone: from the environment, left out when unset
        auto it = ctx_.options.environment.find(k);
        if (it != ctx_.options.environment.end()) set(k, it->second);
        continue;
      }
      Result<std::string> t = Text(*v, P("environment." + k));
      if (!t) return t.take_error();
      set(k, *t);
    }
  }
  for (const auto& [k, v] : vars) out->Push(json::Doc::Object().Set("name", k).Set("value", v));
  return {};
}

Status ServiceTranslator::Health(const Node& n, const std::string& where, json::Doc* out) {
  std::string path = P("healthcheck");
  if (!n.IsMap()) return Context::Bad(n.Where(), path, "must be a mapping");
  json::Doc h = json::Doc::Object();
  json::Doc cmd = json::Doc::Array();
  if (const Node* d = n.Get("disable")) {
    Result<bool> b = Bool(*d, path + ".disable");
    if (!b) return b.take_error();
    if (*b) {
      json::Doc none = json::Doc::Object();
      none.Set("command", json::Doc::Array().Push("NONE"));
      *out = std::move(none);
      return {};
    }
  }
  const Node* test = n.Get("test");
  if (!test) {
    return ctx_.Unsupported(where, path,
                            "a healthcheck without test (the image's own HEALTHCHECK with new timings) is not "
                            "supported; give the test");
  }
  if (test->IsSeq()) {
    Result<std::vector<std::string>> l = StringList(*test, path + ".test");
    if (!l) return l.take_error();
    if (l->empty() || ((*l)[0] != "CMD" && (*l)[0] != "CMD-SHELL" && (*l)[0] != "NONE")) {
      return Context::Bad(test->Where(), path + ".test", "a list must start with CMD, CMD-SHELL or NONE");
    }
    for (const std::string& s : *l) cmd.Push(s);
  } else {
    cmd.Push("CMD-SHELL").Push(test->text);
  }
  bool none = (*cmd.view().begin()).String() == "NONE";
  h.Set("command", cmd);
  if (none) {
    *out = std::move(h);
    return {};
  }
  has_health = true;
  // ECS's bounds, which berth keeps: a value outside is moved inside with a warning.
  struct Timing {
    const char* key;
    const char* field;
    int64_t fallback, lo, hi;
  };
  for (const Timing& tm : {Timing{"interval", "interval", 30, 5, 300}, Timing{"timeout", "timeout", 30, 2, 60},
                           Timing{"start_period", "startPeriod", 0, 0, 300}}) {
    int64_t s = tm.fallback;
    const Node* v = n.Get(tm.key);
    if (v && !v->IsNull()) {
      Result<int64_t> ms = ParseDuration(v->text);
      if (!ms) return Context::Bad(v->Where(), path + "." + tm.key, ms.error().message);
      s = (*ms + 999) / 1000;
      int64_t clamped = std::clamp(s, tm.lo, tm.hi);
      if (clamped != s) {
        ctx_.Warn(v->Where(), path + "." + tm.key,
                  "berth allows " + std::to_string(tm.lo) + "s-" + std::to_string(tm.hi) + "s; using " +
                      std::to_string(clamped) + "s");
      }
      s = clamped;
    }
    if (std::string(tm.field) != "startPeriod" || s > 0) h.Set(tm.field, s);
  }
  int64_t retries = 3;
  if (const Node* r = n.Get("retries")) {
    Result<int64_t> v = Int(*r, path + ".retries");
    if (!v) return v.take_error();
    retries = std::clamp<int64_t>(*v, 1, 10);
    if (retries != *v) ctx_.Warn(r->Where(), path + ".retries", "berth allows 1-10; using " + std::to_string(retries));
  }
  h.Set("retries", retries);
  for (size_t k = 0; k < n.pairs.size(); k++) {
    const std::string& key = n.pairs[k].first;
    if (key == "start_interval") {
      ctx_.Warn(WhereKey(n, k), path + "." + key, "ignored: berth checks at the interval from the start");
    } else if (key != "test" && key != "interval" && key != "timeout" && key != "start_period" && key != "retries" &&
               key != "disable") {
      if (Status s = ctx_.Unsupported(WhereKey(n, k), path + "." + key, RefusalFor(key)); !s) return s;
    }
  }
  *out = std::move(h);
  return {};
}

Status ServiceTranslator::Resources(const Node& deploy, const std::string& where, int64_t* cpu, int64_t* mem,
                                    int64_t* res) {
  std::string path = P("deploy");
  if (!deploy.IsMap()) return Context::Bad(deploy.Where(), path, "must be a mapping");
  for (size_t i = 0; i < deploy.pairs.size(); i++) {
    const std::string& key = deploy.pairs[i].first;
    const Node& v = *deploy.pairs[i].second;
    if (key == "replicas") {
      if (Status s = ctx_.Unsupported(WhereKey(deploy, i), path + ".replicas", RefusalFor("scale")); !s) return s;
      continue;
    }
    if (key != "resources") {
      if (Status s = ctx_.Unsupported(WhereKey(deploy, i), path + "." + key, RefusalFor(key)); !s) return s;
      continue;
    }
    if (!v.IsMap()) return Context::Bad(v.Where(), path + ".resources", "must be a mapping");
    for (size_t j = 0; j < v.pairs.size(); j++) {
      const std::string& kind = v.pairs[j].first;
      const Node& r = *v.pairs[j].second;
      std::string rp = path + ".resources." + kind;
      if (kind != "limits" && kind != "reservations") {
        if (Status s = ctx_.Unsupported(WhereKey(v, j), rp, RefusalFor(kind)); !s) return s;
        continue;
      }
      if (!r.IsMap()) return Context::Bad(r.Where(), rp, "must be a mapping");
      for (size_t k = 0; k < r.pairs.size(); k++) {
        const std::string& what = r.pairs[k].first;
        const Node& x = *r.pairs[k].second;
        if (what == "cpus") {
          char* end = nullptr;
          double n = strtod(x.text.c_str(), &end);
          if (x.text.empty() || *end || n <= 0) {
            return Context::Bad(x.Where(), rp + ".cpus", "must be a positive number of CPUs, such as 0.5");
          }
          // A limit wins over a reservation: both become ECS's cpu units.
          if (kind == "limits" || *cpu == 0) *cpu = std::max<int64_t>(1, std::llround(n * 1024));
        } else if (what == "memory") {
          Result<int64_t> b = ParseBytes(x.text);
          if (!b) return Context::Bad(x.Where(), rp + ".memory", b.error().message);
          (kind == "limits" ? *mem : *res) = (*b + (1 << 20) - 1) >> 20;
        } else {
          if (Status s = ctx_.Unsupported(WhereKey(r, k), rp + "." + what, RefusalFor(what)); !s) return s;
        }
      }
    }
  }
  (void)where;
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------
// Public helpers

std::string NormaliseProjectName(std::string_view name) {
  std::string out;
  for (char c : name) {
    char l = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    if ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '_' || l == '-') out += l;
  }
  while (!out.empty() && (out[0] == '_' || out[0] == '-')) out.erase(out.begin());
  return out;
}

Result<std::string> Interpolate(std::string_view text, const std::map<std::string, std::string>& vars,
                                std::vector<std::string>* unset) {
  std::string out;
  size_t i = 0;
  auto name_char = [](char c, bool first) {
    return c == '_' || isalpha(static_cast<unsigned char>(c)) || (!first && isdigit(static_cast<unsigned char>(c)));
  };
  while (i < text.size()) {
    char c = text[i];
    if (c != '$') {
      out += c;
      i++;
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (i + 1 < text.size() && name_char(text[i + 1], true)) {
      size_t j = i + 1;
      while (j < text.size() && name_char(text[j], false)) j++;
      std::string name(text.substr(i + 1, j - i - 1));
      auto it = vars.find(name);
      if (it != vars.end()) {
        out += it->second;
      } else if (unset) {
        unset->push_back(name);
      }
      i = j;
      continue;
    }
    if (i + 1 >= text.size() || text[i + 1] != '{') {
      return Error::Invalid("invalid interpolation: a lone $ (write $$ for a dollar sign)");
    }
    // ${...}: find the closing brace, counting nested ${ in the default.
    size_t j = i + 2;
    int depth = 1;
    while (j < text.size() && depth > 0) {
      if (text[j] == '{') depth++;
      if (text[j] == '}') depth--;
      if (depth > 0) j++;
    }
    if (j >= text.size()) return Error::Invalid("invalid interpolation: ${ without a closing }");
    std::string_view inner = text.substr(i + 2, j - i - 2);
    size_t n = 0;
    while (n < inner.size() && name_char(inner[n], n == 0)) n++;
    if (n == 0) return Error::Invalid("invalid interpolation: '${" + std::string(inner) + "}' names no variable");
    std::string name(inner.substr(0, n));
    std::string_view op = inner.substr(n);
    auto it = vars.find(name);
    bool set = it != vars.end();
    bool nonempty = set && !it->second.empty();
    std::string value = set ? it->second : "";
    auto rest = [&](size_t skip) { return Interpolate(op.substr(skip), vars, unset); };
    if (op.empty()) {
      if (!set && unset) unset->push_back(name);
      out += value;
    } else if (op.starts_with(":-") || op.starts_with("-")) {
      bool colon = op[0] == ':';
      if (colon ? nonempty : set) {
        out += value;
      } else {
        Result<std::string> d = rest(colon ? 2 : 1);
        if (!d) return d;
        out += *d;
      }
    } else if (op.starts_with(":?") || op.starts_with("?")) {
      bool colon = op[0] == ':';
      if (colon ? !nonempty : !set) {
        Result<std::string> m = rest(colon ? 2 : 1);
        if (!m) return m;
        return Error::Invalid("required variable " + name + " is " + (set ? "empty" : "unset") +
                              (m->empty() ? "" : ": " + *m));
      }
      out += value;
    } else if (op.starts_with(":+") || op.starts_with("+")) {
      bool colon = op[0] == ':';
      if (colon ? nonempty : set) {
        Result<std::string> r = rest(colon ? 2 : 1);
        if (!r) return r;
        out += *r;
      }
    } else {
      return Error::Invalid("invalid interpolation: '${" + std::string(inner) + "}'");
    }
    i = j + 1;
  }
  return out;
}

Result<int64_t> ParseDuration(std::string_view text) {
  if (text.empty()) return Error::Invalid("expected a duration such as 10s or 1m30s");
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) i++;
    if (start == i) return Error::Invalid("'" + std::string(text) + "' is not a duration such as 10s or 1m30s");
    double n = strtod(std::string(text.substr(start, i - start)).c_str(), nullptr);
    size_t u = i;
    while (i < text.size() && isalpha(static_cast<unsigned char>(text[i]))) i++;
    std::string_view unit = text.substr(u, i - u);
    double ms = unit == "h"    ? 3600000
                : unit == "m"  ? 60000
                : unit == "s"  ? 1000
                : unit == "ms" ? 1
                : unit == "us" ? 0.001
                : unit == "ns" ? 1e-6
                               : -1;
    if (unit.empty() && u == text.size() && start == 0) ms = 1000;  // a bare number: seconds
    if (ms < 0) return Error::Invalid("'" + std::string(text) + "' is not a duration such as 10s or 1m30s");
    total += n * ms;
    if (total > 1e12) return Error::Invalid("'" + std::string(text) + "' is too long");
  }
  return static_cast<int64_t>(std::ceil(total));
}

Result<int64_t> ParseBytes(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) i++;
  if (i == 0) return Error::Invalid("'" + std::string(text) + "' is not a size such as 512m or 1g");
  double n = strtod(std::string(text.substr(0, i)).c_str(), nullptr);
  std::string unit = Lower(std::string(text.substr(i)));
  if (unit.size() == 2 && unit[1] == 'b') unit.resize(1);  // kb, mb, gb
  double mult = unit.empty() || unit == "b" ? 1
                : unit == "k"               ? 1024.0
                : unit == "m"               ? 1024.0 * 1024
                : unit == "g"               ? 1024.0 * 1024 * 1024
                : unit == "t"               ? 1024.0 * 1024 * 1024 * 1024
                                            : -1;
  if (mult < 0) return Error::Invalid("'" + std::string(text) + "': the unit must be b, k, m, g or t");
  double bytes = n * mult;
  if (bytes > 1e15) return Error::Invalid("'" + std::string(text) + "' is too large");
  return static_cast<int64_t>(std::ceil(bytes));
}

Result<std::vector<std::string>> ShellSplit(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  bool in_word = false;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) out.push_back(word);
      word.clear();
      in_word = false;
      i++;
    } else if (c == '\'') {
      size_t end = text.find('\'', i + 1);
      if (end == std::string_view::npos) return Error::Invalid("unterminated single quote");
      word += text.substr(i + 1, end - i - 1);
      in_word = true;
      i = end + 1;
    } else if (c == '"') {
      in_word = true;
      i++;
      while (i < text.size() && text[i] != '"') {
        if (text[i] == '\\' && i + 1 < text.size() && strchr("\"\\$`\n", text[i + 1])) i++;
        word += text[i++];
      }
      if (i >= text.size()) return Error::Invalid("unterminated double quote");
      i++;
    } else if (c == '\\' && i + 1 < text.size()) {
      word += text[i + 1];
      in_word = true;
      i += 2;
    } else {
      word += c;
      in_word = true;
      i++;
    }
  }
  if (in_word) out.push_back(word);
  return out;
}

std::vector<std::pair<std::string, std::string>> ParseEnvFile(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::stringstream ss{std::string(text)};
  std::string line;
  while (std::getline(ss, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    if (line.starts_with("export ")) line = line.substr(7);
    size_t eq = line.find('=');
    std::string key = line.substr(0, eq);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (key.empty()) continue;
    std::string value = eq == std::string::npos ? "" : line.substr(eq + 1);
    size_t vs = value.find_first_not_of(" \t");
    value = vs == std::string::npos ? "" : value.substr(vs);
    if (value.size() >= 2 && (value[0] == '"' || value[0] == '\'') && value.find(value[0], 1) != std::string::npos) {
      char q = value[0];
      value = value.substr(1, value.find(q, 1) - 1);
      if (q == '"') {
        std::string unescaped;
        for (size_t i = 0; i < value.size(); i++) {
          if (value[i] == '\\' && i + 1 < value.size() && value[i + 1] == 'n') {
            unescaped += '\n';
            i++;
          } else {
            unescaped += value[i];
          }
        }
        value = unescaped;
      }
    } else if (size_t hash = value.find(" #"); hash != std::string::npos) {
      value.resize(hash);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    }
    out.emplace_back(key, value);
  }
  return out;
}

std::string PrettyJson(std::string_view compact) {
  std::string out;
  int depth = 0;
  bool in_string = false;
  auto newline = [&]() {
    out += '\n';
    out.append(static_cast<size_t>(depth) * 2, ' ');
  };
  for (size_t i = 0; i < compact.size(); i++) {
    char c = compact[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < compact.size()) {
        out += compact[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
    } else if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      if (i + 1 < compact.size() && compact[i + 1] == close) {
        out += c;
        out += close;
        i++;
        continue;
      }
      out += c;
      depth++;
      newline();
    } else if (c == '}' || c == ']') {
      depth--;
      newline();
      out += c;
    } else if (c == ',') {
      out += c;
      newline();
    } else if (c == ':') {
      out += ": ";
    } else {
      out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Load: read, interpolate, merge, translate, validate.

Result<Project> Load(const Options& in) {
  Options options = in;
  if (!options.read) options.read = DiskRead;
  if (options.files.empty()) return Error::Invalid("no compose file given");
  Project project;
  Context ctx{options, &project.warnings};

  std::string first_dir = DirOf(Absolute(options.cwd, options.files[0]));
  std::map<std::string, std::string> vars;
  std::string dotenv;
  if (options.read(first_dir + "/.env", &dotenv)) {
    for (const auto& [k, v] : ParseEnvFile(dotenv)) vars[k] = v;
  }
  for (const auto& [k, v] : options.environment) vars[k] = v;

  NodePtr merged;
  for (const std::string& f : options.files) {
    std::string text;
    if (!options.read(Absolute(options.cwd, f), &text)) return Error::Invalid(f + ": cannot read it");
    Result<NodePtr> doc = yaml::Parse(text, f);
    if (!doc) return doc.take_error();
    if (!(*doc)->IsMap()) return Error::Invalid(f + ":1: a compose file must be a mapping with services:");
    if (Status s = InterpolateTree(doc->get(), "", vars, &project.warnings); !s) return s.take_error();
    merged = merged ? Merge(merged, *doc, "") : *doc;
  }
  const Node& top = *merged;

  std::string name = options.project;
  if (name.empty() && top.Get("name")) name = top.Get("name")->text;
  if (name.empty()) {
    std::string dir = first_dir;
    name = dir.substr(dir.rfind('/') + 1);
  }
  project.name = NormaliseProjectName(name);
  if (project.name.empty()) {
    return Error::Invalid("project name '" + name + "' has no letter or digit; give one with -p NAME");
  }

  Translation t;
  const Node* services = nullptr;
  std::optional<Error> deferred;
  for (size_t i = 0; i < top.pairs.size(); i++) {
    const std::string& key = top.pairs[i].first;
    const Node& v = *top.pairs[i].second;
    std::string where = WhereKey(top, i);
    if (key.starts_with("x-") || key == "version" || key == "name") continue;
    if (key == "services") {
      if (!v.IsMap()) return Context::Bad(where, key, "must be a mapping of services");
      services = &v;
    } else if (key == "volumes") {
      if (!v.IsMap() && !v.IsNull()) return Context::Bad(where, key, "must be a mapping");
      for (size_t k = 0; k < v.pairs.size(); k++) {
        const std::string& vname = v.pairs[k].first;
        const Node& decl = *v.pairs[k].second;
        std::string vp = "volumes." + vname;
        VolumeDecl d;
        std::string docker_name = vname;
        for (size_t j = 0; j < decl.pairs.size(); j++) {
          const std::string& dk = decl.pairs[j].first;
          const Node& dv = *decl.pairs[j].second;
          if (dk == "external") {
            bool ext = dv.IsMap();  // external: {name: x}, the old form
            if (!ext) {
              Result<bool> b = Bool(dv, vp + ".external");
              if (!b) return b.take_error();
              ext = *b;
            } else if (dv.Get("name")) {
              docker_name = dv.Get("name")->text;
            }
            d.external = ext;
          } else if (dk == "name") {
            docker_name = dv.text;
          } else if (dk == "driver") {
            if (dv.text != "local") {
              if (Status s = ctx.Unsupported(WhereKey(decl, j), vp + ".driver",
                                             "only Docker's local volume driver is supported");
                  !s)
                return s.take_error();
            }
          } else if (dk == "labels") {
            ctx.Warn(WhereKey(decl, j), vp + ".labels", "ignored: berth labels the volumes it makes itself");
          } else {
            if (Status s =
                    ctx.Unsupported(WhereKey(decl, j), vp + "." + dk,
                                    dk == "driver_opts" ? "volume driver options are not supported" : RefusalFor(dk));
                !s)
              return s.take_error();
          }
        }
        if (d.external) {
          if (docker_name.empty() || !std::all_of(docker_name.begin(), docker_name.end(), NameChar)) {
            return Context::Bad(WhereKey(v, k), vp,
                                "an external volume's name must be letters, digits, - and _ (berth's volume names)");
          }
          d.task_name = UniqueVolumeName(&t, docker_name);
          t.volumes.Push(json::Doc::Object()
                             .Set("name", d.task_name)
                             .Set("dockerVolumeConfiguration",
                                  json::Doc::Object().Set("scope", "shared").Set("autoprovision", false)));
        } else {
          d.task_name = UniqueVolumeName(&t, VolumeName(docker_name));
          t.volumes.Push(json::Doc::Object()
                             .Set("name", d.task_name)
                             .Set("dockerVolumeConfiguration",
                                  json::Doc::Object().Set("scope", "shared").Set("autoprovision", true)));
        }
        t.declared[vname] = d;
      }
    } else if (key == "networks") {
      ctx.Warn(where, key, "ignored: all services share the task's network and reach each other by service name");
    } else if (Status s = ctx.Unsupported(where, key, RefusalFor(key)); !s && !deferred) {
      deferred = s.take_error();  // after the services' errors, which come first in a file
    }
  }
  if (!services || services->pairs.empty()) {
    return Error::Invalid(options.files[0] + ": no services: a compose file needs at least one");
  }

  json::Doc containers = json::Doc::Array();
  std::vector<std::unique_ptr<ServiceTranslator>> done;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < services->pairs.size(); i++) {
    const std::string& sname = services->pairs[i].first;
    if (sname.starts_with("x-")) continue;
    auto st = std::make_unique<ServiceTranslator>(ctx, &t, sname, *services->pairs[i].second, WhereKey(*services, i));
    Result<json::Doc> c = st->Run();
    if (!c) return c.take_error();
    index[sname] = done.size();
    done.push_back(std::move(st));
    project.services.push_back(sname);
    containers.Push(c.value());
  }
  if (deferred) return *deferred;
  // One network mode for the task: every service's, which must agree.
  std::string network_mode = done.empty() ? "bridge" : done[0]->network_mode;
  for (size_t i = 1; i < done.size(); i++) {
    if (done[i]->network_mode == network_mode) continue;
    size_t odd = done[i]->network_mode_where.empty() ? 0 : i;
    return Context::Bad(done[odd]->network_mode_where, "services." + project.services[odd] + ".network_mode",
                        "the services of a project share one network: " + project.services[0] + " has " + network_mode +
                            ", " + project.services[i] + " has " + done[i]->network_mode +
                            " (give every service the same network_mode)");
  }
  // dependsOn, checked here so errors name the line; a dependency that must
  // complete cannot be essential (its exit would stop the task).
  std::set<std::string> must_complete;
  for (size_t i = 0; i < done.size(); i++) {
    for (size_t k = 0; k < done[i]->depends.size(); k++) {
      const auto& dep = done[i]->depends[k];
      std::string dp = "services." + project.services[i] + ".depends_on." + dep.first;
      auto it = index.find(dep.first);
      if (it == index.end()) return Context::Bad(done[i]->depends_where[k], dp, "no service is named " + dep.first);
      if (dep.second == "HEALTHY" && !done[it->second]->has_health) {
        return Context::Bad(done[i]->depends_where[k], dp, "service_healthy needs a healthcheck on " + dep.first);
      }
      if (dep.second == "SUCCESS") must_complete.insert(dep.first);
    }
  }
  json::Doc defs = json::Doc::Array();
  size_t i = 0;
  for (json::View c : containers.view()) {
    json::Doc d = json::Doc::Copy(c);
    if (must_complete.count(project.services[i])) d.Set("essential", false);
    if (!done[i]->depends.empty()) {
      json::Doc deps = json::Doc::Array();
      for (const auto& [target, cond] : done[i]->depends) {
        deps.Push(json::Doc::Object().Set("containerName", target).Set("condition", cond));
      }
      d.Set("dependsOn", deps);
    }
    defs.Push(d);
    i++;
  }

  json::Doc td = json::Doc::Object();
  td.Set("family", project.name).Set("containerDefinitions", defs);
  if (t.volumes.view().Size() > 0) td.Set("volumes", t.volumes);
  if (network_mode != "bridge") td.Set("networkMode", network_mode);
  Result<json::Doc> valid = model::ValidateTaskDefinition(td.view());
  if (!valid) {
    // "containerDefinitions[2].image: ..." → the service's file and line.
    std::string msg = valid.error().message;
    std::string where = options.files[0];
    if (msg.starts_with("containerDefinitions[")) {
      size_t n = static_cast<size_t>(atoi(msg.c_str() + 21));
      if (n < project.services.size()) {
        for (size_t k = 0; k < services->pairs.size(); k++) {
          if (services->pairs[k].first == project.services[n]) where = WhereKey(*services, k);
        }
        msg = "services." + project.services[n] + " (" + msg + ")";
      }
    } else if (msg.starts_with("containerDefinitions: at least one container must be essential")) {
      msg += " (restart: \"no\" makes a service non-essential)";
    }
    return Error::Invalid(where + ": " + msg);
  }
  project.task_definition = std::move(valid.value());
  return project;
}

}  // namespace berth::compose
