// The oci runtime's settings (PluginConfig.options) and what it remembers
// about one sandbox across daemon restarts (SandboxHandle.state).
#ifndef CORRAL_BACKENDS_OCI_OCI_STATE_H_
#define CORRAL_BACKENDS_OCI_OCI_STATE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::oci_runtime {

// Which command-line dialect and quirks the runtime binary has.
enum class RuntimeKind { kRunc, kCrun };

[[nodiscard]] const char* RuntimeKindName(RuntimeKind kind);

// Where a runtime named without a path is looked for, in order. Never a
// PATH lookup: the daemon's environment must not choose the binary.
[[nodiscard]] const std::vector<std::string>& RuntimeSearchDirs();

struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  // corral-oci-exec, beside the plugin.
  std::string helper_path;
  // Absolute path of the runtime binary; empty when none was found (then
  // `runtime_problem` says why).
  std::string runtime_path;
  RuntimeKind runtime_kind = RuntimeKind::kRunc;
  std::string runtime_problem;
  // runtimes.oci.cgroup_parent as configured; the plugin then puts this
  // daemon instance's sandboxes beneath it (cgroup_parent becomes
  // <base>/<instance id>).
  std::string cgroup_parent;
  std::string base_cgroup_parent;
  // runtimes.oci.workspace_disk: each workspace a filesystem of the
  // sandbox's disk size (the disk limit); false: a plain directory.
  bool workspace_disk = true;

  [[nodiscard]] std::string StateRoot() const { return runtime_dir + "/state"; }
  [[nodiscard]] std::string SandboxDir(absl::string_view id) const;
};

// Default cgroup parent: beneath the linux runtime's default "corral" but
// in a level of its own, because each runtime's reconcile removes the
// sandbox-named cgroups under its parent that it does not know, and the
// linux runtime's would otherwise remove this runtime's.
inline constexpr char kDefaultCgroupParent[] = "corral/oci";

// Reads PluginConfig fields and options (runtime, cgroup_parent; unknown
// keys are reported in `ignored`). `executable` says whether a path is an
// executable file (injected for tests). INVALID_ARGUMENT for bad values; a
// runtime that is not installed is not an error here (runtime_problem).
[[nodiscard]] absl::StatusOr<Settings> ParseSettings(
    const std::string& runtime_dir, const std::string& agent_path,
    const std::string& plugin_dir,
    const std::map<std::string, std::string>& options,
    const std::function<bool(const std::string&)>& executable,
    std::vector<std::string>* ignored);

// SandboxHandle.state of the oci runtime: "key=value" lines, versioned.
struct SandboxRecord {
  std::string id;
  std::string runtime_path;
  RuntimeKind runtime_kind = RuntimeKind::kRunc;
  std::string sandbox_dir;  // <runtime_dir>/<id>: bundle, agent.sock
  std::string state_root;   // the runtime's --root
  std::string cgroup_parent;
  pid_t init_pid = 0;
  uint64_t init_start_time = 0;  // /proc/<pid>/stat field 22
  bool user_namespace = false;

  [[nodiscard]] std::string Serialize() const;
  // INVALID_ARGUMENT for text this version did not write: unknown version,
  // missing fields, relative paths, "..", a sandbox dir not named after the
  // id (so a damaged state cannot make destroy remove anything else).
  [[nodiscard]] static absl::StatusOr<SandboxRecord> Parse(
      absl::string_view text);
};

}  // namespace corral::oci_runtime

#endif  // CORRAL_BACKENDS_OCI_OCI_STATE_H_
