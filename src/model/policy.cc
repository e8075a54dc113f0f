#include "model/policy.h"

#include <algorithm>
#include <set>

namespace berth::model {

namespace {

constexpr size_t kMaxHostPaths = 64;
constexpr size_t kMaxLogDrivers = 16;
constexpr size_t kMaxPath = 4096;

// `path` is `prefix` or inside it.
bool Under(std::string_view path, std::string_view prefix) {
  if (prefix == "/") return true;
  return path == prefix || (path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/');
}

bool Overlaps(std::string_view a, std::string_view b) { return Under(a, b) || Under(b, a); }

bool BuiltInLogDriver(std::string_view d) { return d == "json-file" || d == "local" || d == "none"; }

bool LogDriverName(std::string_view d) {
  if (d.empty() || d.size() > 128) return false;
  for (char c : d) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == '/' || c == ':';
    if (!ok) return false;
  }
  return true;
}

Error Refused(std::string message) { return Error{ErrorKind::kForbidden, "TaskPolicyRefused", std::move(message)}; }

std::string Index(std::string_view field, size_t i) { return std::string(field) + "[" + std::to_string(i) + "]"; }

}  // namespace

std::string NormalisePath(std::string_view path) {
  if (path.empty() || path[0] != '/') return "";
  std::string out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') i++;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view part = path.substr(i, j - i);
    if (!part.empty() && part != ".") out.append("/").append(part);
    i = j;
  }
  return out.empty() ? "/" : out;
}

const std::vector<std::string>& DefaultSocketPaths() {
  static const std::vector<std::string> paths = {"/run/docker.sock", "/var/run/docker.sock",
                                                 "/run/containerd/containerd.sock",
                                                 "/var/run/containerd/containerd.sock"};
  return paths;
}

json::Doc TaskPolicy::ToJson() const {
  json::Doc paths = json::Doc::Array();
  for (const HostPathRule& r : host_paths) {
    paths.Push(json::Doc::Object().Set("path", r.prefix).Set("readWrite", r.read_write));
  }
  json::Doc drivers = json::Doc::Array();
  for (const std::string& d : log_drivers) drivers.Push(d);
  json::Doc d = json::Doc::Object();
  d.Set("hostPaths", paths)
      .Set("hostNetwork", host_network)
      .Set("hostPid", host_pid)
      .Set("dockerSocket", docker_socket)
      .Set("externalVolumes", external_volumes)
      .Set("logDrivers", drivers);
  return d;
}

Result<HostPathRule> ParseHostPathRule(std::string_view text, std::string_view flag) {
  HostPathRule r;
  std::string_view path = text;
  if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    std::string_view mode = text.substr(colon + 1);
    if (mode != "rw" && mode != "ro") {
      return Error::Invalid(std::string(flag) + ": '" + std::string(text) +
                            "' must be PATH, PATH:ro or PATH:rw (an absolute path)");
    }
    r.read_write = mode == "rw";
    path = text.substr(0, colon);
  }
  if (path.empty() || path[0] != '/' || path.size() > kMaxPath) {
    return Error::Invalid(std::string(flag) + ": '" + std::string(path) + "' must be an absolute path");
  }
  std::string p(path);
  if (p.find("/../") != std::string::npos || p.ends_with("/..")) {
    return Error::Invalid(std::string(flag) + ": '" + p + "' must not contain ..");
  }
  r.prefix = NormalisePath(p);
  return r;
}

Result<TaskPolicy> ParseTaskPolicy(json::View v, std::string_view field) {
  std::string f(field);
  auto bad = [&](const std::string& where, const std::string& why) {
    return Error::Invalid((where.empty() ? f : f + "." + where) + ": " + why);
  };
  if (!v.IsObject()) return bad("", std::string("must be an object, not ") + v.TypeName());
  TaskPolicy p;
  for (json::View m : v) {
    std::string key(m.Key());
    if (key == "hostNetwork" || key == "hostPid" || key == "dockerSocket" || key == "externalVolumes") {
      if (!m.IsBool()) return bad(key, std::string("must be true or false, not ") + m.TypeName());
      bool on = m.Bool();
      (key == "hostNetwork"    ? p.host_network
       : key == "hostPid"      ? p.host_pid
       : key == "dockerSocket" ? p.docker_socket
                               : p.external_volumes) = on;
    } else if (key == "hostPaths") {
      if (!m.IsArray()) return bad(key, "must be an array");
      if (m.Size() > kMaxHostPaths) return bad(key, "must have at most " + std::to_string(kMaxHostPaths) + " paths");
      size_t i = 0;
      for (json::View r : m) {
        std::string at = Index(key, i++);
        if (!r.IsObject()) return bad(at, "must be an object {\"path\": ..., \"readWrite\": ...}");
        for (json::View rf : r) {
          if (rf.Key() != "path" && rf.Key() != "readWrite")
            return bad(at + "." + std::string(rf.Key()), "is not known");
        }
        if (!r.Get("path").IsString()) return bad(at + ".path", "is required, an absolute path");
        Result<HostPathRule> rule = ParseHostPathRule(r.Get("path").String(), f + "." + at + ".path");
        if (!rule) return rule.take_error();
        json::View rw = r.Get("readWrite");
        if (rw.valid() && !rw.IsBool()) return bad(at + ".readWrite", "must be true or false");
        rule->read_write = rw.valid() && rw.Bool();
        auto same = std::find_if(p.host_paths.begin(), p.host_paths.end(),
                                 [&](const HostPathRule& h) { return h.prefix == rule->prefix; });
        if (same != p.host_paths.end()) {
          same->read_write = same->read_write || rule->read_write;
        } else {
          p.host_paths.push_back(std::move(rule.value()));
        }
      }
    } else if (key == "logDrivers") {
      if (!m.IsArray()) return bad(key, "must be an array of driver names");
      if (m.Size() > kMaxLogDrivers)
        return bad(key, "must have at most " + std::to_string(kMaxLogDrivers) + " drivers");
      size_t i = 0;
      for (json::View d : m) {
        std::string at = Index(key, i++);
        if (!d.IsString() || !LogDriverName(d.String())) {
          return bad(at, "must be a log driver name (letters, digits, - _ . / :)");
        }
        std::string name(d.String());
        if (!BuiltInLogDriver(name) &&
            std::find(p.log_drivers.begin(), p.log_drivers.end(), name) == p.log_drivers.end())
          p.log_drivers.push_back(name);
      }
    } else {
      return bad(key,
                 "is not a policy setting (hostPaths, hostNetwork, hostPid, dockerSocket, externalVolumes, "
                 "logDrivers)");
    }
  }
  std::sort(p.host_paths.begin(), p.host_paths.end(),
            [](const HostPathRule& a, const HostPathRule& b) { return a.prefix < b.prefix; });
  std::sort(p.log_drivers.begin(), p.log_drivers.end());
  return p;
}

Status CheckTaskPolicy(json::View td, const TaskPolicy& policy, std::string_view cluster, const HostView& host,
                       bool host_setting) {
  auto allow = [&](const std::string& setting) {
    if (host_setting) return "this node's agent allows it only when started with " + setting;
    return "allow it with `berth cluster update " + std::string(cluster) + " " + setting + "`";
  };
  std::string where = host_setting ? "on this node" : "in cluster " + std::string(cluster);

  if (td.Get("networkMode").String() == "host" && !policy.host_network) {
    return Refused("networkMode: the host's network is not allowed " + where + "; " + allow("--allow-host-network"));
  }
  if (td.Get("pidMode").String() == "host" && !policy.host_pid) {
    return Refused("pidMode: the host's process namespace is not allowed " + where + "; " + allow("--allow-host-pid"));
  }

  size_t vi = 0;
  for (json::View v : td.Get("volumes")) {
    std::string vp = Index("volumes", vi++);
    std::string name(v.Get("name").String());
    json::View dvc = v.Get("dockerVolumeConfiguration");
    if (dvc.IsObject() && dvc.Get("autoprovision").IsBool() && !dvc.Get("autoprovision").Bool() &&
        !policy.external_volumes) {
      return Refused(vp + ".dockerVolumeConfiguration.autoprovision: false mounts Docker volume " + name +
                     ", which berth did not create; that is not allowed " + where + "; " +
                     allow("--allow-external-volumes"));
    }
    std::string_view src = v.Get("host").Get("sourcePath").String();
    if (src.empty()) continue;
    std::string field = vp + ".host.sourcePath";
    std::string written = NormalisePath(src);
    std::string real = host.resolve ? NormalisePath(host.resolve(written)) : written;
    if (real.empty()) real = written;
    std::string shown =
        real == written ? "host path " + written : "host path " + written + " (" + real + " on this host)";
    for (const std::string& f : host.forbidden) {
      if (Overlaps(real, f)) {
        return Refused(field + ": " + shown + " overlaps " + f + ", which berth keeps from every task");
      }
    }
    if (!policy.docker_socket) {
      for (const std::string& s : host.socket_paths) {
        if (Under(s, real)) {
          return Refused(field + ": " + shown + " gives the task the container engine's socket " + s +
                         " (root on the host); that is not allowed " + where + "; " + allow("--allow-docker-socket"));
        }
      }
    }
    // Written to by any container that mounts it without readOnly.
    std::string writer;
    size_t ci = 0;
    for (json::View c : td.Get("containerDefinitions")) {
      size_t mi = 0;
      for (json::View m : c.Get("mountPoints")) {
        if (m.Get("sourceVolume").String() == name && !(m.Get("readOnly").IsBool() && m.Get("readOnly").Bool()) &&
            writer.empty()) {
          writer = Index("containerDefinitions", ci) + "." + Index("mountPoints", mi) + ".readOnly";
        }
        mi++;
      }
      ci++;
    }
    const HostPathRule* match = nullptr;
    for (const HostPathRule& r : policy.host_paths) {
      if (!Under(real, r.prefix)) continue;
      if (!match || (r.read_write && !match->read_write)) match = &r;
    }
    if (!match) {
      return Refused(field + ": " + shown + " is not allowed " + where + "; " +
                     allow("--allow-host-path " + real + (writer.empty() ? "" : ":rw")));
    }
    if (!writer.empty() && !match->read_write) {
      return Refused(writer + ": " + shown + " may only be mounted read-only " + where + " (allowed under " +
                     match->prefix + "); set readOnly to true, or " +
                     allow("--allow-host-path " + match->prefix + ":rw"));
    }
  }

  size_t ci = 0;
  for (json::View c : td.Get("containerDefinitions")) {
    std::string_view driver = c.Get("logConfiguration").Get("logDriver").String();
    if (!driver.empty() && !BuiltInLogDriver(driver) &&
        std::find(policy.log_drivers.begin(), policy.log_drivers.end(), driver) == policy.log_drivers.end()) {
      return Refused(Index("containerDefinitions", ci) + ".logConfiguration.logDriver: log driver " +
                     std::string(driver) + " can send the task's output off the host; it is not allowed " + where +
                     " (json-file, local and none are); " + allow("--allow-log-driver " + std::string(driver)));
    }
    ci++;
  }
  return {};
}

}  // namespace berth::model
