// The firecracker runtime's settings ([runtimes.firecracker] in corrald.toml,
// through PluginConfig.options) and what it remembers about one sandbox
// across daemon restarts (SandboxHandle.state).
#ifndef CORRAL_BACKENDS_FIRECRACKER_FIRECRACKER_SETTINGS_H_
#define CORRAL_BACKENDS_FIRECRACKER_FIRECRACKER_SETTINGS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::firecracker_runtime {

struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  // Absolute paths; empty when not found (then *_problem says why).
  std::string firecracker_path;
  std::string firecracker_problem;
  std::string jailer_path;
  std::string jailer_problem;
  // Made by deploy/images/build-vm-kernel.sh: vmlinux and modules/.
  std::string kernel_dir;
  // The jailer's --chroot-base-dir: every sandbox's jail is
  // <chroot_base_dir>/<firecracker's file name>/<id>/root.
  std::string chroot_base_dir;
  // runtimes.firecracker.cgroup_parent as configured, and beneath it this
  // daemon instance's (<base>/<instance id>), the jailer's --parent-cgroup.
  std::string cgroup_parent;
  std::string base_cgroup_parent;
  // Guest RAM beyond the sandbox's memory limit (the guest's kernel, the
  // agent, the page cache of the root).
  uint64_t overhead_bytes = 0;
  // How long a create waits for the agent of a booting VM.
  uint32_t boot_timeout_seconds = 0;
  // The guest's serial console into <sandbox dir>/console.log (for
  // debugging: unbounded, off by default as Firecracker's production
  // guidance says).
  bool console_log = false;

  [[nodiscard]] std::string SandboxDir(absl::string_view id) const;
  // <chroot_base_dir>/<exec file name>/<id>: what the jailer makes.
  [[nodiscard]] std::string JailDir(absl::string_view id) const;
  // Cached initramfs and image disks, shared by every sandbox.
  [[nodiscard]] std::string CacheDir() const { return runtime_dir + "/cache"; }
};

inline constexpr char kDefaultCgroupParent[] = "corral/firecracker";
inline constexpr char kDefaultKernelDir[] = "/var/lib/corral/vm-kernel";

// Reads PluginConfig fields and options (firecracker, jailer, kernel_dir,
// chroot_base_dir, cgroup_parent, overhead_mib, boot_timeout_seconds,
// console_log; unknown keys are reported in `ignored`). Programs not named
// by an option are looked for in `search_path` (the daemon's PATH, set by
// its service manager: absolute entries only), then /usr/local/bin and
// /usr/bin. `executable` says whether a path is an executable file
// (injected for tests). INVALID_ARGUMENT for bad values; a program that is
// not installed is not an error here.
[[nodiscard]] absl::StatusOr<Settings> ParseSettings(
    const std::string& runtime_dir, const std::string& agent_path,
    const std::map<std::string, std::string>& options,
    const std::string& search_path,
    const std::function<bool(const std::string&)>& executable,
    std::vector<std::string>* ignored);

// SandboxHandle.state of the firecracker runtime: "key=value" lines,
// versioned.
struct SandboxRecord {
  std::string id;
  std::string sandbox_dir;  // <runtime_dir>/<id>
  std::string jail_dir;     // <chroot base>/<exec name>/<id>
  std::string cgroup_parent;
  // Firecracker (the jailer exec'd it: same pid) and its start time
  // (/proc/<pid>/stat field 22), so that a reused pid is never taken for it.
  pid_t pid = 0;
  uint64_t start_time = 0;

  [[nodiscard]] std::string JailRoot() const { return jail_dir + "/root"; }
  [[nodiscard]] std::string Serialize() const;
  // INVALID_ARGUMENT for text this version did not write.
  [[nodiscard]] static absl::StatusOr<SandboxRecord> Parse(
      absl::string_view text);
};

}  // namespace corral::firecracker_runtime

#endif  // CORRAL_BACKENDS_FIRECRACKER_FIRECRACKER_SETTINGS_H_
