// Cgroup layout detection (pure v2, or v1 controllers with an optional
// cgroup2 mount: hybrid) and the per-sandbox cgroups of the linux runtime:
// create with limits, read stats, kill everything inside, remove.
#ifndef CORRAL_BACKENDS_LINUX_CGROUPS_H_
#define CORRAL_BACKENDS_LINUX_CGROUPS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace corral::linux_runtime {

enum class CgroupMode { kV1, kV2 };

// Where the cgroup hierarchies of this host are mounted, as read from
// /proc/self/mountinfo.
struct CgroupLayout {
  CgroupMode mode = CgroupMode::kV1;
  // v2: the cgroup2 mount that carries the controllers. v1: a cgroup2 mount
  // without controllers (hybrid layout), used only for cgroup.kill; may be
  // empty.
  std::string unified_mount;
  // v1 only: controller name ("memory", "pids", "cpu", "cpuacct",
  // "freezer") -> its mount point.
  std::map<std::string, std::string> v1_mounts;

  // "v2", "v1-hybrid" or "v1".
  [[nodiscard]] std::string Describe() const;

  // Parses mountinfo text. `read_controllers` returns the content of
  // <cgroup2 mount>/cgroup.controllers (injected for tests). Fails with
  // UNAVAILABLE naming what is missing when memory, pids and cpu cannot all
  // be found.
  [[nodiscard]] static absl::StatusOr<CgroupLayout> Parse(
      absl::string_view mountinfo,
      const std::function<std::string(const std::string&)>& read_controllers);

  // Reads this host's layout (cached after the first success).
  [[nodiscard]] static absl::StatusOr<CgroupLayout> Detect();
};

// Limits applied to a sandbox; all must be > 0.
struct CgroupLimits {
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  uint32_t cpu_millis = 0;
};

// The cgroup directories of one sandbox, by role. On v2 every role names the
// same directory.
struct SandboxCgroups {
  CgroupMode mode = CgroupMode::kV1;
  std::string memory;
  std::string pids;
  std::string cpu;
  std::string cpuacct;  // v1 only, may be empty (then cpu usage is 0)
  std::string freezer;  // v1 only, may be empty
  std::string unified;  // v2: same as memory; hybrid: cgroup2 dir; or empty

  // Every distinct directory, in creation order.
  [[nodiscard]] std::vector<std::string> Directories() const;
  // Every distinct <dir>/cgroup.procs to write the sandbox's init into.
  [[nodiscard]] std::vector<std::string> ProcsFiles() const;

  // Paths of sandbox `id` under `parent` (relative to each hierarchy's
  // root) in `layout`. Does not touch the filesystem.
  [[nodiscard]] static SandboxCgroups For(const CgroupLayout& layout,
                                          absl::string_view parent,
                                          absl::string_view id);
};

// Makes the directories and writes the limits. On failure removes what it
// made. ALREADY_EXISTS when a directory of that id is already there (it
// belongs to someone else: left alone).
[[nodiscard]] absl::Status CreateCgroups(const CgroupLayout& layout,
                                         const SandboxCgroups& cgroups,
                                         const CgroupLimits& limits);

// Kills every process in the cgroups (v2: cgroup.kill; v1: freeze, SIGKILL
// each listed pid, thaw; plus cgroup.kill on a hybrid cgroup2 dir), waits
// until they are empty (bounded by `timeout`), and removes the directories.
// Missing directories are fine: idempotent.
[[nodiscard]] absl::Status KillAndRemoveCgroups(const SandboxCgroups& cgroups,
                                                absl::Duration timeout);

struct CgroupStats {
  uint64_t oom_kills = 0;
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  uint64_t cpu_usage_us = 0;
};

[[nodiscard]] absl::StatusOr<CgroupStats> ReadCgroupStats(
    const SandboxCgroups& cgroups);

// Value of the line "<key> <number>" in a flat-keyed cgroup file
// (memory.events, memory.oom_control, cpu.stat); 0 when the key is absent.
[[nodiscard]] uint64_t FlatKeyedValue(absl::string_view text,
                                      absl::string_view key);

// Names of the subdirectories of <hierarchy root>/<parent> in every
// hierarchy of `layout` (the ids of sandboxes that have cgroups).
[[nodiscard]] std::vector<std::string> ListSandboxCgroupIds(
    const CgroupLayout& layout, absl::string_view parent);

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_CGROUPS_H_
