#include "agent/container_spec.h"

#include <cstdlib>
#include <set>

namespace berth::agent {

namespace {

constexpr int64_t kSecondNs = 1000000000;

int64_t Int(json::View v, std::string_view key, int64_t fallback = 0) {
  json::View x = v.Get(key);
  if (x.IsNumber()) return x.IntIn(INT64_MIN, INT64_MAX, fallback);
  if (x.IsString()) return strtoll(std::string(x.String()).c_str(), nullptr, 10);  // task cpu/memory are strings in ECS
  return fallback;
}

json::Doc StringArray(json::View v) {
  json::Doc a = json::Doc::Array();
  for (json::View s : v) a.Push(s.String());
  return a;
}

// Volume name for a task volume without a host path: task-scoped volumes are
// named per task (removed with it); shared ones berth makes are named per
// cluster, so no volume made outside berth is ever taken for one; a shared volume
// with autoprovision false is the Docker volume of that very name (which a
// cluster's policy must allow: model/policy.h).
std::string DockerVolumeName(const TaskIdentity& task, json::View vol) {
  std::string name(vol.Get("name").String());
  json::View dvc = vol.Get("dockerVolumeConfiguration");
  if (dvc.IsObject() && dvc.Get("scope").String() == "shared") {
    if (dvc.Get("autoprovision").IsBool() && !dvc.Get("autoprovision").Bool()) return name;
    return "berth-shared-" + task.cluster + "-" + name;
  }
  return "berth-" + task.id + "-" + name;
}

}  // namespace

std::string DockerName(std::string_view task_id, std::string_view container) {
  std::string n = "berth-";
  n.append(task_id).append("-").append(container);
  return n;
}

Result<TaskPlan> PlanTask(const TaskIdentity& task, json::View td, const PlanOptions& options) {
  if (!td.IsObject()) return Error::Invalid("task definition " + task.task_definition + " was not sent with the task");
  json::View defs = td.Get("containerDefinitions");
  if (!defs.IsArray() || defs.Size() == 0) {
    return Error::Invalid(task.task_definition + ": containerDefinitions: must be a non-empty array");
  }
  TaskPlan plan;
  plan.network_mode = td.Get("networkMode").IsString() ? std::string(td.Get("networkMode").String()) : "bridge";
  if (plan.network_mode == "awsvpc") plan.network_mode = "bridge";
  plan.own_network = plan.network_mode == "bridge" && defs.Size() > 1;
  if (plan.own_network) plan.network_name = "berth-" + task.id;

  std::map<std::string, json::View> volumes;
  for (json::View v : td.Get("volumes")) volumes[std::string(v.Get("name").String())] = v;

  int64_t task_cpu = Int(td, "cpu");
  int64_t task_memory = Int(td, "memory");
  int64_t sum_cpu = 0;
  for (json::View c : defs) sum_cpu += Int(c, "cpu");

  std::set<std::string> names;
  for (json::View c : defs) names.insert(std::string(c.Get("name").String()));

  size_t index = 0;
  for (json::View c : defs) {
    std::string path = "containerDefinitions[" + std::to_string(index++) + "]";
    ContainerPlan p;
    p.name = std::string(c.Get("name").String());
    p.image = std::string(c.Get("image").String());
    if (p.name.empty() || p.image.empty()) return Error::Invalid(path + ": name and image are required");
    p.docker_name = DockerName(task.id, p.name);
    p.essential = !c.Get("essential").IsBool() || c.Get("essential").Bool();
    p.stop_timeout_s = Int(c, "stopTimeout", options.default_stop_timeout_s);
    for (json::View d : c.Get("dependsOn")) {
      std::string target(d.Get("containerName").String());
      if (!names.count(target)) return Error::Invalid(path + ".dependsOn: no container is named " + target);
      p.depends_on.emplace_back(target, std::string(d.Get("condition").String()));
    }

    json::Doc labels = json::Doc::Object();
    for (json::View l : c.Get("dockerLabels")) labels.Set(l.Key(), l.String());
    labels.Set(kLabelCluster, task.cluster)
        .Set(kLabelNode, task.node)
        .Set(kLabelTask, task.id)
        .Set(kLabelService, task.service)
        .Set(kLabelContainer, p.name)
        .Set(kLabelTaskDefinition, task.task_definition)
        .Set(kLabelEssential, p.essential ? "true" : "false");

    json::Doc body = json::Doc::Object();
    body.Set("Image", p.image).Set("Labels", labels);
    if (c.Get("command").IsArray()) body.Set("Cmd", StringArray(c.Get("command")));
    if (c.Get("entryPoint").IsArray()) body.Set("Entrypoint", StringArray(c.Get("entryPoint")));
    if (c.Get("workingDirectory").IsString()) body.Set("WorkingDir", c.Get("workingDirectory").String());
    if (c.Get("user").IsString()) body.Set("User", c.Get("user").String());
    if (c.Get("hostname").IsString() && plan.network_mode != "host") body.Set("Hostname", c.Get("hostname").String());
    body.Set("StopTimeout", p.stop_timeout_s);
    json::Doc env = json::Doc::Array();
    for (json::View e : c.Get("environment")) {
      env.Push(std::string(e.Get("name").String()) + "=" + std::string(e.Get("value").String()));
    }
    for (const SecretValue& sv : options.secrets) {
      if (sv.container == p.name && !sv.file) env.Push(sv.name + "=" + sv.value);
    }
    body.Set("Env", env);

    json::View hc = c.Get("healthCheck");
    if (hc.IsObject() && hc.Get("command").IsArray()) {
      json::Doc h = json::Doc::Object();
      h.Set("Test", StringArray(hc.Get("command")));
      p.has_health_check = (*hc.Get("command").begin()).String() != "NONE";
      if (p.has_health_check) {
        h.Set("Interval", Int(hc, "interval", 30) * kSecondNs)
            .Set("Timeout", Int(hc, "timeout", 5) * kSecondNs)
            .Set("Retries", Int(hc, "retries", 3))
            .Set("StartPeriod", Int(hc, "startPeriod", 0) * kSecondNs);
      }
      body.Set("Healthcheck", h);
    }

    json::Doc host = json::Doc::Object();
    // CPU units are relative weights (CpuShares, at least 2); a task-level cpu is
    // a hard limit, shared among the containers by their units.
    int64_t cpu = Int(c, "cpu");
    host.Set("CpuShares", std::max<int64_t>(cpu > 0 ? cpu : 2, 2));
    if (task_cpu > 0) {
      int64_t share = sum_cpu > 0 ? task_cpu * cpu / sum_cpu : task_cpu / static_cast<int64_t>(defs.Size());
      if (share > 0) host.Set("NanoCpus", share * kSecondNs / 1024);
    }
    int64_t memory = Int(c, "memory");
    int64_t reservation = Int(c, "memoryReservation");
    if (memory == 0 && reservation == 0 && task_memory > 0 && defs.Size() == 1) memory = task_memory;
    if (memory > 0) host.Set("Memory", memory << 20);
    if (reservation > 0) host.Set("MemoryReservation", reservation << 20);

    json::Doc exposed = json::Doc::Object();
    json::Doc bindings = json::Doc::Object();
    for (json::View pm : c.Get("portMappings")) {
      std::string key =
          std::to_string(Int(pm, "containerPort")) + "/" + (pm.Get("protocol").String() == "udp" ? "udp" : "tcp");
      exposed.Set(key, json::Doc::Object());
      int64_t host_port = Int(pm, "hostPort");
      json::Doc b = json::Doc::Object();
      b.Set("HostIp", "").Set("HostPort", host_port > 0 ? std::to_string(host_port) : "");
      bindings.Set(key, json::Doc::Array().Push(b));
    }
    if (exposed.view().Size() > 0 && plan.network_mode != "host") {
      body.Set("ExposedPorts", exposed);
      host.Set("PortBindings", bindings);
    }

    json::Doc mounts = json::Doc::Array();
    for (json::View m : c.Get("mountPoints")) {
      std::string source(m.Get("sourceVolume").String());
      auto it = volumes.find(source);
      if (it == volumes.end()) return Error::Invalid(path + ".mountPoints: no task volume is named " + source);
      json::Doc mount = json::Doc::Object();
      std::string host_path(it->second.Get("host").Get("sourcePath").String());
      if (!host_path.empty()) {
        mount.Set("Type", "bind").Set("Source", host_path);
      } else {
        mount.Set("Type", "volume").Set("Source", DockerVolumeName(task, it->second));
        // Labels for the volume Docker makes on first use (an existing one keeps its own).
        mount.Set("VolumeOptions",
                  json::Doc::Object().Set("Labels", json::Doc::Object().Set(kLabelCluster, task.cluster)));
      }
      mount.Set("Target", m.Get("containerPath").String())
          .Set("ReadOnly", m.Get("readOnly").IsBool() && m.Get("readOnly").Bool());
      mounts.Push(mount);
    }
    if (auto dir = options.secret_dirs.find(p.name); dir != options.secret_dirs.end()) {
      json::Doc mount = json::Doc::Object();
      mount.Set("Type", "bind").Set("Source", dir->second).Set("Target", kSecretsMountPath).Set("ReadOnly", true);
      mounts.Push(mount);
    }
    if (mounts.view().Size() > 0) host.Set("Mounts", mounts);

    json::View lc = c.Get("logConfiguration");
    json::Doc log = json::Doc::Object();
    if (lc.IsObject() && lc.Get("logDriver").IsString()) {
      log.Set("Type", lc.Get("logDriver").String());
      json::Doc opts = json::Doc::Object();
      for (json::View o : lc.Get("options")) opts.Set(o.Key(), o.String());
      log.Set("Config", opts);
    } else {
      log.Set("Type", "json-file")
          .Set("Config",
               json::Doc::Object().Set("max-size", options.log_max_size).Set("max-file", options.log_max_files));
    }
    host.Set("LogConfig", log);
    host.Set("NetworkMode",
             plan.network_mode == "bridge" ? (plan.own_network ? plan.network_name : "bridge") : plan.network_mode);
    if (td.Get("pidMode").String() == "host") host.Set("PidMode", "host");
    host.Set("RestartPolicy", json::Doc::Object().Set("Name", "no"));
    host.Set("Init", false);
    body.Set("HostConfig", host);

    if (plan.own_network) {
      // The other containers of the task reach this one by its definition's name
      // (and by the names `links` gives it).
      json::Doc aliases = json::Doc::Array();
      aliases.Push(p.name);
      json::Doc endpoint = json::Doc::Object();
      endpoint.Set("Aliases", aliases);
      body.Set("NetworkingConfig",
               json::Doc::Object().Set("EndpointsConfig", json::Doc::Object().Set(plan.network_name, endpoint)));
    }
    p.create_body = body.Print();
    plan.containers.push_back(std::move(p));
  }
  return plan;
}

}  // namespace berth::agent
