// What this host offers to tasks: CPUs and memory as the kernel and its cgroup
// limits allow, the host name and architecture.
#pragma once

#include <cstdint>
#include <string>

namespace berth::agent {

struct HostResources {
  int64_t cpus_milli = 0;  // CPUs available, in thousandths (cgroup cpu.max honoured)
  int64_t memory_mib = 0;  // memory available (cgroup memory.max honoured)
  std::string hostname;
  std::string arch;  // uname -m: x86_64, aarch64, ...
};

// Reads /proc, /sys/fs/cgroup and uname. Never fails: unknown values are 0 or "".
HostResources ReadHost();

// CPU units (1024 per CPU) and MiB to register, after `reserved_memory_mib`.
int64_t CpuUnits(const HostResources& h);
int64_t OfferedMemory(const HostResources& h, int64_t reserved_memory_mib);

}  // namespace berth::agent
