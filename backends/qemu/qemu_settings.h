// The qemu runtime's settings ([runtimes.qemu] in corrald.toml, through
// PluginConfig.options) and what it remembers about one sandbox across
// daemon restarts (SandboxHandle.state).
#ifndef CORRAL_BACKENDS_QEMU_QEMU_SETTINGS_H_
#define CORRAL_BACKENDS_QEMU_QEMU_SETTINGS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::qemu_runtime {

// How guests run: with KVM, or QEMU's own CPU emulation (TCG).
enum class Accel { kKvm, kTcg };
[[nodiscard]] const char* AccelName(Accel accel);

// What `accel` asks for: kvm where a probe boot works, else tcg (auto), or
// one of them only.
enum class AccelPolicy { kAuto, kKvm, kTcg };

struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  // corral-qemu-launch, beside the plugin.
  std::string launcher_path;
  // Absolute paths; empty when not found (then *_problem says why).
  std::string qemu_path;
  std::string qemu_problem;
  std::string virtiofsd_path;
  std::string virtiofsd_problem;
  // Made by deploy/images/build-vm-kernel.sh: vmlinux and modules/.
  std::string kernel_dir;
  AccelPolicy accel = AccelPolicy::kAuto;
  // runtimes.qemu.cgroup_parent as configured; the plugin then puts this
  // daemon instance's sandboxes beneath it (cgroup_parent becomes
  // <base>/<instance id>).
  std::string cgroup_parent;
  std::string base_cgroup_parent;
  // Guest RAM beyond the sandbox's memory limit: the guest kernel, the
  // agent and the page cache of the root.
  uint64_t overhead_bytes = 0;
  // TCG's translation cache (QEMU's default is 1 GiB).
  uint64_t tb_cache_bytes = 0;
  // How long a create waits for the agent of a booting VM.
  uint32_t boot_timeout_seconds = 0;
  // Guests print their init's steps with times on the console.
  bool trace_boot = false;

  [[nodiscard]] std::string SandboxDir(absl::string_view id) const;
  // Cached initramfs and image disks, shared by every sandbox.
  [[nodiscard]] std::string CacheDir() const { return runtime_dir + "/cache"; }
};

inline constexpr char kDefaultCgroupParent[] = "corral/qemu";
inline constexpr char kDefaultKernelDir[] = "/var/lib/corral/vm-kernel";

// Reads PluginConfig fields and options (qemu, virtiofsd, kernel_dir,
// accel, cgroup_parent, overhead_mib, tb_cache_mib, boot_timeout_seconds;
// unknown keys are reported in `ignored`). `executable` says whether a path
// is an executable file (injected for tests). INVALID_ARGUMENT for bad
// values; a program that is not installed is not an error here.
[[nodiscard]] absl::StatusOr<Settings> ParseSettings(
    const std::string& runtime_dir, const std::string& agent_path,
    const std::string& plugin_dir,
    const std::map<std::string, std::string>& options,
    const std::function<bool(const std::string&)>& executable,
    std::vector<std::string>* ignored);

// SandboxHandle.state of the qemu runtime: "key=value" lines, versioned.
struct SandboxRecord {
  std::string id;
  std::string sandbox_dir;  // <runtime_dir>/<id>
  std::string cgroup_parent;
  // The supervisor (corral-qemu-launch) and QEMU: pid and start time
  // (/proc/<pid>/stat field 22), so that a reused pid is never mistaken for
  // them.
  pid_t launcher_pid = 0;
  uint64_t launcher_start_time = 0;
  pid_t qemu_pid = 0;
  uint64_t qemu_start_time = 0;
  Accel accel = Accel::kTcg;
  // The root is the host image over virtiofs (which QEMU cannot migrate:
  // no memory snapshots).
  bool host_image = false;

  [[nodiscard]] std::string Serialize() const;
  // INVALID_ARGUMENT for text this version did not write: unknown version,
  // missing fields, a relative path or "..", a sandbox dir not named after
  // the id.
  [[nodiscard]] static absl::StatusOr<SandboxRecord> Parse(
      absl::string_view text);
};

}  // namespace corral::qemu_runtime

#endif  // CORRAL_BACKENDS_QEMU_QEMU_SETTINGS_H_
