#include "model/taskdef.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "model/cluster.h"
#include "model/secret.h"

namespace berth::model {

namespace {

constexpr size_t kMaxContainers = 10;  // as ECS

bool NameChars(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool FileNameChars(std::string_view s) {
  for (char c : s) {
    if (!NameChars(std::string_view(&c, 1)) && c != '.') return false;
  }
  return true;
}

std::string At(std::string_view base, size_t i) { return std::string(base) + "[" + std::to_string(i) + "]"; }
std::string Dot(std::string_view base, std::string_view field) {
  return base.empty() ? std::string(field) : std::string(base) + "." + std::string(field);
}

Error Bad(const std::string& path, const std::string& what) { return Error::Invalid(path + ": " + what); }

// An integer field within [lo, hi]; `fallback` when absent.
Result<int64_t> IntIn(json::View obj, std::string_view key, const std::string& path, int64_t lo, int64_t hi,
                      int64_t fallback) {
  Result<int64_t> v = json::OptionalInt(obj, key, path, fallback);
  if (!v) return v;
  if (obj.Get(key).valid() && !obj.Get(key).IsNull() && (v.value() < lo || v.value() > hi)) {
    return Bad(path, "must be " + std::to_string(lo) + "-" + std::to_string(hi) + ", not " + std::to_string(v.value()));
  }
  return v;
}

Status StringArray(json::View v, const std::string& path, size_t max_items = 1000) {
  if (!v.valid() || v.IsNull()) return {};
  if (!v.IsArray()) return Bad(path, std::string("must be an array of strings, not ") + v.TypeName());
  if (v.Size() > max_items) return Bad(path, "has more than " + std::to_string(max_items) + " items");
  size_t i = 0;
  for (json::View item : v) {
    if (!item.IsString()) return Bad(At(path, i), std::string("must be a string, not ") + item.TypeName());
    i++;
  }
  return {};
}

// Task cpu: units ("256", 256) or vCPUs ("1 vCPU", "0.5 vcpu"). Memory: MiB ("512",
// 512) or GB ("2 GB"). Returns 0 when absent.
Result<int64_t> TaskSize(json::View obj, std::string_view key, const std::string& path, bool cpu) {
  json::View v = obj.Get(key);
  if (!v.valid() || v.IsNull()) return int64_t{0};
  double n = 0;
  if (v.IsNumber()) {
    n = v.Number();
  } else if (v.IsString()) {
    std::string s(v.String());
    char* end = nullptr;
    n = strtod(s.c_str(), &end);
    std::string unit = end ? std::string(end) : "";
    while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
    for (char& c : unit) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    if (end == s.c_str())
      return Bad(path,
                 "must be a number" + std::string(cpu ? " of CPU units or \"<n> vCPU\"" : " of MiB or \"<n> GB\""));
    if (cpu && unit == "vcpu")
      n *= 1024;
    else if (!cpu && unit == "gb")
      n *= 1024;
    else if (!unit.empty())
      return Bad(path, "unknown unit '" + unit + "'");
  } else {
    return Bad(path, std::string("must be a number or a string, not ") + v.TypeName());
  }
  if (n <= 0 || n != std::floor(n) || n > (cpu ? 1024.0 * 1024 : 1024.0 * 1024 * 1024)) {
    return Bad(path, "must be a positive whole number of " + std::string(cpu ? "CPU units" : "MiB"));
  }
  return static_cast<int64_t>(n);
}

// Berth refuses what it would ignore: a field of an ECS task definition that the
// agent does not act on is an error naming it, not a container started without
// it (a `secretOptions` list silently dropped would start a log driver without
// its credentials). `supported` lists what may appear in the object at `path`.
Status OnlyFields(json::View obj, const std::string& path, std::initializer_list<std::string_view> supported) {
  if (!obj.IsObject()) return {};
  for (json::View f : obj) {
    std::string_view key = f.Key();
    if (std::find(supported.begin(), supported.end(), key) != supported.end()) continue;
    std::string why = "is not supported by berth yet (it would be ignored)";
    if (key == "secretOptions") {
      why = "is not supported by berth yet: secrets go to containers (secrets), not to log drivers";
    } else if (key == "taskRoleArn" || key == "executionRoleArn") {
      why = "is not supported: berth has no IAM roles";
    } else if (key == "links") {
      why = "is not supported by berth yet: the containers of a task reach each other by container name";
    }
    return Bad(Dot(path, key), why);
  }
  return {};
}

struct ContainerCheck {
  std::string name;
  bool has_health = false;
  std::vector<std::pair<std::string, std::string>> depends;  // (container, condition)
  std::vector<std::string> volumes;
  std::vector<std::string> volume_paths;
};

Result<json::Doc> CheckContainer(json::View c, const std::string& path, ContainerCheck* out,
                                 std::set<std::pair<int, bool>>* host_ports) {
  if (!c.IsObject()) return Bad(path, std::string("must be an object, not ") + c.TypeName());
  if (Status s = OnlyFields(c, path,
                            {"name",
                             "image",
                             "cpu",
                             "memory",
                             "memoryReservation",
                             "portMappings",
                             "essential",
                             "entryPoint",
                             "command",
                             "environment",
                             "mountPoints",
                             "dependsOn",
                             "stopTimeout",
                             "hostname",
                             "user",
                             "workingDirectory",
                             "dockerLabels",
                             "healthCheck",
                             "logConfiguration",
                             "secrets"});
      !s) {
    return s.take_error();
  }
  json::Doc d = json::Doc::Copy(c);
  Result<std::string> name = json::RequireString(c, "name", Dot(path, "name"));
  if (!name) return name.take_error();
  if (name->empty() || name->size() > 255 || !NameChars(*name)) {
    return Bad(Dot(path, "name"), "must be 1-255 letters, digits, hyphens and underscores");
  }
  out->name = *name;
  Result<std::string> image = json::RequireString(c, "image", Dot(path, "image"));
  if (!image) return image.take_error();
  if (image->empty() || image->size() > 512) return Bad(Dot(path, "image"), "must be 1-512 characters");
  for (char ch : *image) {
    if (static_cast<unsigned char>(ch) <= ' ')
      return Bad(Dot(path, "image"), "must not contain spaces or control characters");
    if (!isalnum(static_cast<unsigned char>(ch)) && !strchr("._-/:@", ch)) {
      return Bad(Dot(path, "image"),
                 std::string("must be an image reference (letters, digits and . _ - / : @), not '") + ch + "'");
    }
  }
  if (image->front() == '-' || image->front() == '/' || image->back() == '/' ||
      image->find("//") != std::string::npos || image->find("/../") != std::string::npos ||
      image->find("/./") != std::string::npos || image->starts_with("../") || image->starts_with("./") ||
      image->ends_with("/..") || image->ends_with("/.") || *image == "." || *image == "..") {
    return Bad(Dot(path, "image"), "must be an image reference (name[:tag][@digest]), not a path");
  }
  Result<int64_t> cpu = IntIn(c, "cpu", Dot(path, "cpu"), 0, 10240 * 1024, 0);
  if (!cpu) return cpu.take_error();
  Result<int64_t> mem = IntIn(c, "memory", Dot(path, "memory"), 6, 1 << 30, 0);
  if (!mem) return mem.take_error();
  Result<int64_t> res = IntIn(c, "memoryReservation", Dot(path, "memoryReservation"), 4, 1 << 30, 0);
  if (!res) return res.take_error();
  if (*mem > 0 && *res > *mem) {
    return Bad(Dot(path, "memoryReservation"), "must not exceed memory (" + std::to_string(*mem) + ")");
  }
  Result<bool> essential = json::OptionalBool(c, "essential", Dot(path, "essential"), true);
  if (!essential) return essential.take_error();
  d.Set("essential", *essential);

  // Port mappings: defaults filled, host ports unique per protocol within the task.
  json::View pm = c.Get("portMappings");
  if (pm.valid() && !pm.IsNull()) {
    if (!pm.IsArray()) return Bad(Dot(path, "portMappings"), std::string("must be an array, not ") + pm.TypeName());
    json::Doc mappings = json::Doc::Array();
    size_t i = 0;
    for (json::View m : pm) {
      std::string mp = At(Dot(path, "portMappings"), i++);
      if (!m.IsObject()) return Bad(mp, std::string("must be an object, not ") + m.TypeName());
      if (Status s = OnlyFields(m, mp, {"containerPort", "hostPort", "protocol"}); !s) return s.take_error();
      Result<int64_t> cport = IntIn(m, "containerPort", Dot(mp, "containerPort"), 1, 65535, 0);
      if (!cport) return cport.take_error();
      if (*cport == 0) return Bad(Dot(mp, "containerPort"), "is required");
      Result<int64_t> hport = IntIn(m, "hostPort", Dot(mp, "hostPort"), 0, 65535, 0);
      if (!hport) return hport.take_error();
      Result<std::string> proto = json::OptionalString(m, "protocol", Dot(mp, "protocol"), "tcp");
      if (!proto) return proto.take_error();
      if (*proto != "tcp" && *proto != "udp") return Bad(Dot(mp, "protocol"), "must be tcp or udp");
      if (*hport > 0 && !host_ports->insert({static_cast<int>(*hport), *proto == "udp"}).second) {
        return Bad(Dot(mp, "hostPort"),
                   "host port " + std::to_string(*hport) + "/" + *proto + " is used twice in the task");
      }
      json::Doc md = json::Doc::Copy(m);
      md.Set("containerPort", *cport).Set("hostPort", *hport).Set("protocol", *proto);
      mappings.Push(md);
    }
    d.Set("portMappings", mappings);
  }

  std::set<std::string> env_names;
  json::View env = c.Get("environment");
  if (env.valid() && !env.IsNull()) {
    if (!env.IsArray()) return Bad(Dot(path, "environment"), std::string("must be an array, not ") + env.TypeName());
    size_t i = 0;
    for (json::View e : env) {
      std::string ep = At(Dot(path, "environment"), i++);
      if (!e.IsObject()) return Bad(ep, "must be an object with name and value");
      if (Status s = OnlyFields(e, ep, {"name", "value"}); !s) return s.take_error();
      Result<std::string> n = json::RequireString(e, "name", Dot(ep, "name"));
      if (!n) return n.take_error();
      if (n->empty() || n->find('=') != std::string::npos)
        return Bad(Dot(ep, "name"), "must be non-empty and without '='");
      Result<std::string> v = json::OptionalString(e, "value", Dot(ep, "value"));
      if (!v) return v.take_error();
      env_names.insert(*n);
    }
  }
  // Secrets (model/secret.h): each becomes an environment variable, or with
  // berthTarget "file" a file /run/secrets/<name> on a tmpfs.
  json::View secrets = c.Get("secrets");
  if (secrets.valid() && !secrets.IsNull()) {
    if (!secrets.IsArray())
      return Bad(Dot(path, "secrets"), std::string("must be an array, not ") + secrets.TypeName());
    std::set<std::string> files;
    size_t i = 0;
    for (json::View e : secrets) {
      std::string sp = At(Dot(path, "secrets"), i++);
      if (!e.IsObject()) return Bad(sp, "must be an object with name and valueFrom");
      if (Status s = OnlyFields(e, sp, {"name", "valueFrom", "berthTarget"}); !s) return s.take_error();
      Result<std::string> n = json::RequireString(e, "name", Dot(sp, "name"));
      if (!n) return n.take_error();
      Result<std::string> from = json::RequireString(e, "valueFrom", Dot(sp, "valueFrom"));
      if (!from) return from.take_error();
      if (Result<std::string> ref = SecretNameFromRef(*from, Dot(sp, "valueFrom")); !ref) return ref.take_error();
      Result<std::string> target = json::OptionalString(e, "berthTarget", Dot(sp, "berthTarget"), "env");
      if (!target) return target.take_error();
      if (*target == "env") {
        if (n->empty() || n->size() > 255 || n->find('=') != std::string::npos || n->find('\0') != std::string::npos)
          return Bad(Dot(sp, "name"), "must be 1-255 characters without '='");
        if (!env_names.insert(*n).second)
          return Bad(Dot(sp, "name"), "the variable " + *n + " is set twice (in environment or secrets)");
      } else if (*target == "file") {
        if (n->empty() || n->size() > 255 || *n == "." || *n == ".." || !FileNameChars(*n))
          return Bad(Dot(sp, "name"), "a secret file's name must be 1-255 letters, digits, '.', '-' and '_'");
        if (!files.insert(*n).second) return Bad(Dot(sp, "name"), "the file " + *n + " is given twice");
      } else {
        return Bad(Dot(sp, "berthTarget"), "must be env or file");
      }
    }
  }
  for (const char* key : {"command", "entryPoint"}) {
    if (Status s = StringArray(c.Get(key), Dot(path, key)); !s) return s.take_error();
  }
  for (const char* key : {"workingDirectory", "user", "hostname"}) {
    Result<std::string> s = json::OptionalString(c, key, Dot(path, key));
    if (!s) return s.take_error();
  }
  Result<int64_t> stop = IntIn(c, "stopTimeout", Dot(path, "stopTimeout"), 0, 120, 0);
  if (!stop) return stop.take_error();

  json::View labels = c.Get("dockerLabels");
  if (labels.valid() && !labels.IsNull()) {
    if (!labels.IsObject()) return Bad(Dot(path, "dockerLabels"), "must be an object of strings");
    for (json::View l : labels) {
      if (!l.IsString()) return Bad(Dot(Dot(path, "dockerLabels"), l.Key()), "must be a string");
      if (l.Key().starts_with("berth."))
        return Bad(Dot(Dot(path, "dockerLabels"), l.Key()), "labels starting with berth. are reserved");
    }
  }

  json::View hc = c.Get("healthCheck");
  if (hc.valid() && !hc.IsNull()) {
    std::string hp = Dot(path, "healthCheck");
    if (!hc.IsObject()) return Bad(hp, "must be an object");
    if (Status s = OnlyFields(hc, hp, {"command", "interval", "timeout", "retries", "startPeriod"}); !s) {
      return s.take_error();
    }
    json::View cmd = hc.Get("command");
    if (!cmd.IsArray() || cmd.Size() == 0)
      return Bad(Dot(hp, "command"), "is required: [\"CMD-SHELL\", \"...\"] or [\"CMD\", ...]");
    if (Status s = StringArray(cmd, Dot(hp, "command")); !s) return s.take_error();
    std::string_view first = (*cmd.begin()).String();
    if (first != "CMD" && first != "CMD-SHELL" && first != "NONE") {
      return Bad(Dot(hp, "command") + "[0]", "must be CMD, CMD-SHELL or NONE");
    }
    Result<int64_t> interval = IntIn(hc, "interval", Dot(hp, "interval"), 5, 300, 30);
    if (!interval) return interval.take_error();
    Result<int64_t> timeout = IntIn(hc, "timeout", Dot(hp, "timeout"), 2, 60, 5);
    if (!timeout) return timeout.take_error();
    Result<int64_t> retries = IntIn(hc, "retries", Dot(hp, "retries"), 1, 10, 3);
    if (!retries) return retries.take_error();
    Result<int64_t> start = IntIn(hc, "startPeriod", Dot(hp, "startPeriod"), 0, 300, 0);
    if (!start) return start.take_error();
    json::Doc hd = json::Doc::Copy(hc);
    hd.Set("interval", *interval).Set("timeout", *timeout).Set("retries", *retries);
    if (hc.Get("startPeriod").valid()) hd.Set("startPeriod", *start);
    d.Set("healthCheck", hd);
    out->has_health = first != "NONE";
  }

  json::View deps = c.Get("dependsOn");
  if (deps.valid() && !deps.IsNull()) {
    if (!deps.IsArray()) return Bad(Dot(path, "dependsOn"), "must be an array");
    size_t i = 0;
    for (json::View dep : deps) {
      std::string dp = At(Dot(path, "dependsOn"), i++);
      if (!dep.IsObject()) return Bad(dp, "must be an object with containerName and condition");
      if (Status s = OnlyFields(dep, dp, {"containerName", "condition"}); !s) return s.take_error();
      Result<std::string> target = json::RequireString(dep, "containerName", Dot(dp, "containerName"));
      if (!target) return target.take_error();
      Result<std::string> cond = json::RequireString(dep, "condition", Dot(dp, "condition"));
      if (!cond) return cond.take_error();
      if (*cond != "START" && *cond != "COMPLETE" && *cond != "SUCCESS" && *cond != "HEALTHY") {
        return Bad(Dot(dp, "condition"), "must be START, COMPLETE, SUCCESS or HEALTHY");
      }
      out->depends.emplace_back(*target, *cond);
    }
  }

  json::View mounts = c.Get("mountPoints");
  if (mounts.valid() && !mounts.IsNull()) {
    if (!mounts.IsArray()) return Bad(Dot(path, "mountPoints"), "must be an array");
    size_t i = 0;
    for (json::View m : mounts) {
      std::string mp = At(Dot(path, "mountPoints"), i++);
      if (!m.IsObject()) return Bad(mp, "must be an object");
      if (Status s = OnlyFields(m, mp, {"sourceVolume", "containerPath", "readOnly"}); !s) return s.take_error();
      Result<std::string> src = json::RequireString(m, "sourceVolume", Dot(mp, "sourceVolume"));
      if (!src) return src.take_error();
      Result<std::string> dst = json::RequireString(m, "containerPath", Dot(mp, "containerPath"));
      if (!dst) return dst.take_error();
      if (dst->empty() || (*dst)[0] != '/') return Bad(Dot(mp, "containerPath"), "must be an absolute path");
      Result<bool> ro = json::OptionalBool(m, "readOnly", Dot(mp, "readOnly"), false);
      if (!ro) return ro.take_error();
      out->volumes.push_back(*src);
      out->volume_paths.push_back(Dot(mp, "sourceVolume"));
    }
  }
  json::View log = c.Get("logConfiguration");
  if (log.valid() && !log.IsNull()) {
    std::string lp = Dot(path, "logConfiguration");
    if (!log.IsObject()) return Bad(lp, "must be an object");
    if (Status s = OnlyFields(log, lp, {"logDriver", "options"}); !s) return s.take_error();
    Result<std::string> driver = json::RequireString(log, "logDriver", Dot(lp, "logDriver"));
    if (!driver) return driver.take_error();
    json::View opts = log.Get("options");
    if (opts.valid() && !opts.IsNull()) {
      if (!opts.IsObject()) return Bad(Dot(lp, "options"), "must be an object of strings");
      for (json::View o : opts) {
        if (!o.IsString()) return Bad(Dot(Dot(lp, "options"), o.Key()), "must be a string");
      }
    }
  }
  return d;
}

}  // namespace

std::string TaskDefinitionArn(std::string_view family, int64_t revision) {
  std::string arn = "arn:aws:ecs:";
  arn.append(kRegion).append(":").append(kAccount).append(":task-definition/").append(family);
  arn.append(":").append(std::to_string(revision));
  return arn;
}

Result<json::Doc> ValidateTaskDefinition(json::View body) {
  if (!body.IsObject())
    return Error::Invalid(std::string("the task definition must be a JSON object, not ") + body.TypeName());
  Result<std::string> family = json::RequireString(body, "family", "family");
  if (!family) return family.take_error();
  if (family->empty() || family->size() > 255 || !NameChars(*family)) {
    return Bad("family", "must be 1-255 letters, digits, hyphens and underscores");
  }
  json::Doc d = json::Doc::Copy(body);
  // Server-owned fields are never taken from the caller.
  for (const char* key :
       {"taskDefinitionArn", "revision", "status", "registeredAt", "deregisteredAt", "registeredBy"}) {
    if (body.Get(key).valid()) return Bad(key, "is set by the server and cannot be given");
  }
  if (Status s = OnlyFields(body, "",
                            {"family", "containerDefinitions", "volumes", "networkMode", "pidMode", "cpu", "memory",
                             "placementConstraints", "requiresCompatibilities", "tags"});
      !s) {
    return s.take_error();
  }
  json::View compat = body.Get("requiresCompatibilities");
  if (compat.valid() && !compat.IsNull()) {
    if (!compat.IsArray()) return Bad("requiresCompatibilities", "must be an array");
    for (json::View c : compat) {
      if (c.String() != "EC2" && c.String() != "EXTERNAL") {
        return Bad("requiresCompatibilities",
                   "berth runs tasks on its nodes: EC2 or EXTERNAL, not '" + std::string(c.String()) + "'");
      }
    }
  }
  Result<std::string> mode = json::OptionalString(body, "networkMode", "networkMode", "bridge");
  if (!mode) return mode.take_error();
  if (*mode != "bridge" && *mode != "host" && *mode != "none") {
    return Bad("networkMode", "must be bridge, host or none (awsvpc needs AWS networking)");
  }
  d.Set("networkMode", *mode);
  Result<std::string> pid = json::OptionalString(body, "pidMode", "pidMode", "task");
  if (!pid) return pid.take_error();
  if (*pid != "task" && *pid != "host") return Bad("pidMode", "must be task or host");

  // Task volumes: names unique; host paths absolute.
  std::set<std::string> volume_names;
  json::View vols = body.Get("volumes");
  if (vols.valid() && !vols.IsNull()) {
    if (!vols.IsArray()) return Bad("volumes", "must be an array");
    size_t i = 0;
    for (json::View v : vols) {
      std::string vp = At("volumes", i++);
      if (!v.IsObject()) return Bad(vp, "must be an object");
      if (Status s = OnlyFields(v, vp, {"name", "host", "dockerVolumeConfiguration"}); !s) return s.take_error();
      if (Status s = OnlyFields(v.Get("host"), Dot(vp, "host"), {"sourcePath"}); !s) return s.take_error();
      if (Status s = OnlyFields(v.Get("dockerVolumeConfiguration"), Dot(vp, "dockerVolumeConfiguration"),
                                {"scope", "autoprovision"});
          !s) {
        return s.take_error();
      }
      Result<std::string> name = json::RequireString(v, "name", Dot(vp, "name"));
      if (!name) return name.take_error();
      if (name->empty() || name->size() > 255 || !NameChars(*name)) {
        return Bad(Dot(vp, "name"), "must be 1-255 letters, digits, hyphens and underscores");
      }
      if (!volume_names.insert(*name).second) return Bad(Dot(vp, "name"), "volume " + *name + " is declared twice");
      json::View host = v.Get("host");
      if (host.valid() && !host.IsNull()) {
        if (!host.IsObject()) return Bad(Dot(vp, "host"), "must be an object");
        Result<std::string> src = json::OptionalString(host, "sourcePath", Dot(vp, "host.sourcePath"));
        if (!src) return src.take_error();
        if (!src->empty() && ((*src)[0] != '/' || src->find("/../") != std::string::npos || src->ends_with("/.."))) {
          return Bad(Dot(vp, "host.sourcePath"), "must be an absolute path without ..");
        }
      }
      json::View dvc = v.Get("dockerVolumeConfiguration");
      if (dvc.valid() && !dvc.IsNull()) {
        if (!dvc.IsObject()) return Bad(Dot(vp, "dockerVolumeConfiguration"), "must be an object");
        Result<std::string> scope =
            json::OptionalString(dvc, "scope", Dot(vp, "dockerVolumeConfiguration.scope"), "task");
        if (!scope) return scope.take_error();
        if (*scope != "task" && *scope != "shared")
          return Bad(Dot(vp, "dockerVolumeConfiguration.scope"), "must be task or shared");
        json::View auto_p = dvc.Get("autoprovision");
        if (auto_p.valid() && !auto_p.IsNull()) {
          if (!auto_p.IsBool()) return Bad(Dot(vp, "dockerVolumeConfiguration.autoprovision"), "must be true or false");
          if (*scope != "shared") {
            return Bad(Dot(vp, "dockerVolumeConfiguration.autoprovision"), "applies only to a shared volume");
          }
        }
      }
    }
  }

  json::View defs = body.Get("containerDefinitions");
  if (!defs.valid() || defs.IsNull()) return Bad("containerDefinitions", "is required");
  if (!defs.IsArray()) return Bad("containerDefinitions", std::string("must be an array, not ") + defs.TypeName());
  if (defs.Size() == 0) return Bad("containerDefinitions", "must have at least one container");
  if (defs.Size() > kMaxContainers) return Bad("containerDefinitions", "must have at most 10 containers");

  Result<int64_t> task_cpu = TaskSize(body, "cpu", "cpu", true);
  if (!task_cpu) return task_cpu.take_error();
  Result<int64_t> task_mem = TaskSize(body, "memory", "memory", false);
  if (!task_mem) return task_mem.take_error();

  json::Doc containers = json::Doc::Array();
  std::vector<ContainerCheck> checks;
  std::set<std::pair<int, bool>> host_ports;
  std::map<std::string, size_t> index;
  bool any_essential = false;
  int64_t sum_cpu = 0;
  size_t i = 0;
  for (json::View c : defs) {
    std::string cp = At("containerDefinitions", i);
    ContainerCheck check;
    Result<json::Doc> cd = CheckContainer(c, cp, &check, &host_ports);
    if (!cd) return cd.take_error();
    if (!index.emplace(check.name, i).second)
      return Bad(Dot(cp, "name"), "container " + check.name + " is defined twice");
    if (*task_mem == 0 && !c.Get("memory").IsNumber() && !c.Get("memoryReservation").IsNumber()) {
      return Bad(cp, "needs memory or memoryReservation when the task has no memory");
    }
    any_essential = any_essential || cd->view().Get("essential").Bool();
    sum_cpu += static_cast<int64_t>(c.Get("cpu").Number());
    for (size_t k = 0; k < check.volumes.size(); k++) {
      if (!volume_names.count(check.volumes[k])) {
        return Bad(check.volume_paths[k], "no task volume is named " + check.volumes[k]);
      }
    }
    checks.push_back(std::move(check));
    containers.Push(cd.value());
    i++;
  }
  if (!any_essential) return Bad("containerDefinitions", "at least one container must be essential");
  if (*task_cpu > 0 && sum_cpu > *task_cpu) {
    return Bad("cpu", "the containers' cpu (" + std::to_string(sum_cpu) + ") exceeds the task's (" +
                          std::to_string(*task_cpu) + ")");
  }
  // dependsOn points at other containers of the task, with no cycle.
  for (size_t c = 0; c < checks.size(); c++) {
    std::string cp = At("containerDefinitions", c);
    for (size_t k = 0; k < checks[c].depends.size(); k++) {
      const auto& [target, cond] = checks[c].depends[k];
      std::string dp = Dot(At(Dot(cp, "dependsOn"), k), "containerName");
      auto it = index.find(target);
      if (it == index.end()) return Bad(dp, "no container is named " + target);
      if (it->second == c) return Bad(dp, "a container cannot depend on itself");
      if (cond == "HEALTHY" && !checks[it->second].has_health) {
        return Bad(dp, "condition HEALTHY needs a healthCheck on " + target);
      }
    }
  }
  std::vector<int> state(checks.size(), 0);  // 0 unvisited, 1 on the path, 2 done
  std::function<bool(size_t)> cyclic = [&](size_t c) {
    if (state[c] == 1) return true;
    if (state[c] == 2) return false;
    state[c] = 1;
    for (const auto& dep : checks[c].depends) {
      if (cyclic(index[dep.first])) return true;
    }
    state[c] = 2;
    return false;
  };
  for (size_t c = 0; c < checks.size(); c++) {
    if (cyclic(c)) return Bad(Dot(At("containerDefinitions", c), "dependsOn"), "the dependencies form a cycle");
  }
  d.Set("containerDefinitions", containers);
  if (*task_cpu > 0) d.Set("cpu", std::to_string(*task_cpu));
  if (*task_mem > 0) d.Set("memory", std::to_string(*task_mem));

  json::View pcs = body.Get("placementConstraints");
  if (pcs.valid() && !pcs.IsNull() && !pcs.IsArray()) return Bad("placementConstraints", "must be an array");
  return d;
}

Status SummariseTaskDefinition(TaskDefinition* td) {
  Result<json::Doc> doc = json::Doc::Parse(td->doc);
  if (!doc) return doc.take_error();
  json::View v = doc->view();
  td->containers.clear();
  td->network_mode = std::string(v.Get("networkMode").String());
  if (td->network_mode.empty()) td->network_mode = "bridge";
  int64_t cpu = 0, mem = 0;
  td->has_health_check = false;
  for (json::View c : v.Get("containerDefinitions")) {
    json::View hc = c.Get("healthCheck").Get("command");
    if (hc.IsArray() && hc.Size() > 0 && (*hc.begin()).String() != "NONE") td->has_health_check = true;
    ContainerSummary s;
    s.name = std::string(c.Get("name").String());
    s.image = std::string(c.Get("image").String());
    s.cpu = static_cast<int64_t>(c.Get("cpu").Number());
    s.memory = static_cast<int64_t>(c.Get("memory").Number());
    s.memory_reservation = static_cast<int64_t>(c.Get("memoryReservation").Number());
    s.essential = !c.Get("essential").IsBool() || c.Get("essential").Bool();
    for (json::View m : c.Get("portMappings")) {
      s.ports.push_back(PortMapping{static_cast<int>(m.Get("containerPort").Number()),
                                    static_cast<int>(m.Get("hostPort").Number()), m.Get("protocol").String() == "udp"});
    }
    cpu += s.cpu;
    mem += s.memory > 0 ? s.memory : s.memory_reservation;
    td->containers.push_back(std::move(s));
  }
  std::string task_cpu(v.Get("cpu").String()), task_mem(v.Get("memory").String());
  td->cpu = task_cpu.empty() ? cpu : std::stoll(task_cpu);
  td->memory = task_mem.empty() ? mem : std::stoll(task_mem);
  td->secrets = SecretRefs(v);
  return {};
}

const std::string& TaskDefinition::JsonText() const {
  if (json_text_.empty() || json_text_status_ != status) {
    json_text_ = TaskDefinitionJson(*this).Print();
    json_text_status_ = status;
  }
  return json_text_;
}

std::vector<std::pair<int, bool>> TaskDefinition::FixedPorts() const {
  std::vector<std::pair<int, bool>> out;
  for (const ContainerSummary& c : containers) {
    for (const PortMapping& p : c.ports) {
      if (p.host_port > 0) out.emplace_back(p.host_port, p.udp);
    }
  }
  return out;
}

json::Doc TaskDefinitionJson(const TaskDefinition& td) {
  Result<json::Doc> doc = json::Doc::Parse(td.doc);
  json::Doc d = doc ? std::move(doc.value()) : json::Doc::Object();
  d.Set("taskDefinitionArn", td.arn)
      .Set("family", td.family)
      .Set("revision", td.revision)
      .Set("status", td.status)
      .Set("registeredAt", static_cast<double>(td.registered_ms) / 1000.0)
      .Set("compatibilities", json::Doc::Array().Push("EC2"));
  return d;
}

Result<std::pair<std::string, int64_t>> ParseTaskDefinitionRef(std::string_view ref) {
  std::string_view r = ref;
  if (size_t slash = r.rfind('/'); r.starts_with("arn:") && slash != std::string_view::npos) r = r.substr(slash + 1);
  int64_t revision = 0;
  if (size_t colon = r.rfind(':'); colon != std::string_view::npos) {
    std::string_view rev = r.substr(colon + 1);
    if (rev.empty() || rev.size() > 9)
      return Error::Invalid("taskDefinition: bad revision in '" + std::string(ref) + "'");
    for (char c : rev) {
      if (c < '0' || c > '9') return Error::Invalid("taskDefinition: bad revision in '" + std::string(ref) + "'");
      revision = revision * 10 + (c - '0');
    }
    if (revision == 0) return Error::Invalid("taskDefinition: revisions start at 1");
    r = r.substr(0, colon);
  }
  if (r.empty() || r.size() > 255 || !NameChars(r)) {
    return Error::Invalid("taskDefinition: '" + std::string(ref) + "' is not FAMILY, FAMILY:REVISION or an ARN");
  }
  return std::make_pair(std::string(r), revision);
}

}  // namespace berth::model
