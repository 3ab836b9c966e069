// The config.json of one sandbox's OCI bundle: what a linux-runtime sandbox
// gets (backends/linux/README.md), written for runc and crun. Pure: reads
// nothing from the host, so it is unit-tested field by field.
#ifndef CORRAL_BACKENDS_OCI_BUNDLE_CONFIG_H_
#define CORRAL_BACKENDS_OCI_BUNDLE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "backends/common/host_root.h"
#include "nlohmann/json.hpp"

namespace corral::oci_runtime {

// The fds the container's process starts with besides 0-2 (/dev/null),
// passed with `--preserve-fds 2`.
inline constexpr int kListenFd = 3;      // the agent's listening socket
inline constexpr int kAgentImageFd = 4;  // sealed memfd holding corral-agent
inline constexpr int kPreservedFds = 2;

struct BundleSpec {
  std::string id;
  std::string hostname;
  // root.path as the runtime sees it, mounted read-only.
  std::string root_path;
  // Read-only binds completing a "host" image skeleton (empty for an image
  // directory).
  std::vector<runtime_common::HostBind> host_binds;
  std::string workspace_dir;
  // Size of /tmp and /dev/shm.
  uint64_t tmp_bytes = 0;
  // User namespace mapping 0 -> host_uid/host_gid (size 1).
  bool user_namespace = false;
  uint32_t host_uid = 0;
  uint32_t host_gid = 0;
  // Limits.
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  uint32_t cpu_millis = 0;
  // Non-empty: the network namespace to join (the daemon's, linked to its
  // egress path) instead of a new loopback-only one.
  std::string netns_path;
  // linux.cgroupsPath, absolute ("/corral/oci/<id>").
  std::string cgroups_path;
  // memory.swap = memory limit (no swap at all) is written only where swap
  // accounting exists; elsewhere (v1 only) swappiness 0.
  bool swap_accounting = false;
  bool cgroup_v2 = false;
};

// The period of the CFS bandwidth controller; the quota is a share of it.
inline constexpr uint64_t kCpuPeriodUs = 100'000;
// The kernel refuses quotas below 1 ms.
inline constexpr uint64_t kMinCpuQuotaUs = 1'000;

[[nodiscard]] nlohmann::json BundleConfig(const BundleSpec& spec);

}  // namespace corral::oci_runtime

#endif  // CORRAL_BACKENDS_OCI_BUNDLE_CONFIG_H_
