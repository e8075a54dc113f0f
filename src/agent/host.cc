#include "agent/host.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace berth::agent {

namespace {

std::string ReadFirstLine(const char* path) {
  std::ifstream f(path);
  std::string line;
  if (f) std::getline(f, line);
  return line;
}

// This process's cgroup (v2) directory, or "" on cgroup v1 / no cgroup fs.
std::string CgroupDir() {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("0::", 0) == 0) return "/sys/fs/cgroup" + (line.size() > 3 ? line.substr(3) : "");
  }
  return "";
}

}  // namespace

HostResources ReadHost() {
  HostResources h;
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  if (cpus <= 0) cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  h.cpus_milli = static_cast<int64_t>(cpus) * 1000;

  int64_t mem_kib = 0;
  {
    std::ifstream f("/proc/meminfo");
    std::string key;
    int64_t value = 0;
    std::string unit;
    while (f >> key >> value >> unit) {
      if (key == "MemTotal:") {
        mem_kib = value;
        break;
      }
    }
  }
  h.memory_mib = mem_kib / 1024;

  // Walk up the cgroup tree: the tightest limit on any ancestor applies.
  std::string dir = CgroupDir();
  while (!dir.empty() && dir.size() >= std::string("/sys/fs/cgroup").size()) {
    std::string max = ReadFirstLine((dir + "/memory.max").c_str());
    if (!max.empty() && max != "max") h.memory_mib = std::min<int64_t>(h.memory_mib, atoll(max.c_str()) >> 20);
    std::istringstream cpu(ReadFirstLine((dir + "/cpu.max").c_str()));
    std::string quota;
    int64_t period = 0;
    if (cpu >> quota >> period && quota != "max" && period > 0) {
      h.cpus_milli = std::min<int64_t>(h.cpus_milli, atoll(quota.c_str()) * 1000 / period);
    }
    if (dir == "/sys/fs/cgroup") break;
    dir = dir.substr(0, dir.rfind('/'));
  }

  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) == 0) h.hostname = name;
  struct utsname u;
  if (uname(&u) == 0) h.arch = u.machine;
  return h;
}

int64_t CpuUnits(const HostResources& h) { return std::max<int64_t>(h.cpus_milli * 1024 / 1000, 128); }

int64_t OfferedMemory(const HostResources& h, int64_t reserved_memory_mib) {
  return std::max<int64_t>(h.memory_mib - reserved_memory_mib, 64);
}

}  // namespace berth::agent
