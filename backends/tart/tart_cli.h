// The tart runtime's side of Tart's CLI (cirruslabs/tart 2.x): the names of
// its VMs, the arguments of `tart run`, the script `tart exec` runs in the
// guest, and the readers of what the CLI prints (its errors, `list` and
// `get` as JSON, `--version`). Proto-free, so that the unit tests pin them
// without a plugin.
#ifndef CORRAL_BACKENDS_TART_TART_CLI_H_
#define CORRAL_BACKENDS_TART_TART_CLI_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::tart_runtime {

// Virtualization.framework's smallest Linux VM (Tart's `set` refuses less).
inline constexpr uint64_t kMinVmMemoryMib = 128;

// The names of the three directories a sandbox's VM shares (Tart's default
// tag, com.apple.virtio-fs.automount, named shares) and where a Linux guest
// sees them once that tag is mounted at /mnt/shared, as Tart's docs mount it.
inline constexpr char kSharesMount[] = "/mnt/shared";
inline constexpr char kRootShare[] = "corral-root";
inline constexpr char kWorkspaceShare[] = "corral-workspace";
inline constexpr char kAgentShare[] = "corral-agent";
// Tart's virtio console, as a Linux guest names it.
inline constexpr char kGuestConsole[] = "/dev/hvc0";

// A sandbox's VM: "corral-<daemon label>-<sandbox id>", which carries both
// (Tart has no labels) so that reconciliation finds the daemon's VMs.
[[nodiscard]] std::string VmName(absl::string_view daemon_label,
                                 absl::string_view sandbox_id);
// The daemon label and sandbox id of one of those names; false for any
// other name.
[[nodiscard]] bool ParseVmName(absl::string_view name, std::string* label,
                               std::string* sandbox_id);

// What a sandbox's VM runs with.
struct RunPlan {
  std::string name;
  std::string image_dir;      // the image's root, shared read-only
  std::string workspace_dir;  // shared read-write
  std::string agent_dir;      // holds corral-agent, shared read-only
};

// `tart run ...` without the program (argv[0] is the caller's); the serial
// path is left as `serial_path` (corral-tart-launch's @SERIAL@).
[[nodiscard]] std::vector<std::string> RunArguments(
    const RunPlan& plan, absl::string_view serial_path);

// What the guest's agent is started with.
struct GuestPlan {
  std::string hostname;
  uint64_t tmp_bytes = 0;  // 0: the agent's default
};

// The `sh -c` script `tart exec` runs as root in the guest: mounts the
// shares at /mnt/shared unless the guest already has them there, then
// starts the agent as a guest sandbox (corral-agent --guest-sandbox), which
// exits 0 once the agent can be reached.
[[nodiscard]] std::string GuestStartScript(const GuestPlan& plan);

// The VM's memory for a sandbox limit: whole MiB, at least `floor_mib`
// (itself at least kMinVmMemoryMib).
[[nodiscard]] uint64_t VmMemoryMib(uint64_t limit_bytes, uint64_t floor_mib);
// Whole CPUs for a limit in thousandths (rounded up), at least 1.
[[nodiscard]] uint32_t VmCpus(uint32_t cpu_millis);

// A failed `tart` call as a status. Tart prints its own errors bare (`the
// specified VM "x" does not exist`, exit 2) and others as `Error: ...`
// (exit 1); exit 64 is a usage error: Corral's arguments did not suit this
// Tart. A missing VM is NOT_FOUND; a VM in the wrong state (`is not
// running`, `is already running!`, `is running`) FAILED_PRECONDITION.
[[nodiscard]] absl::Status CliError(absl::string_view command, int exit_code,
                                    absl::string_view error_output);

// One VM of `tart list --format json`.
struct ListedVm {
  std::string name;
  std::string source;  // local, OCI
  std::string state;   // running, suspended, stopped
  bool running = false;
};

// INVALID_ARGUMENT for output that is not the list's JSON shape.
[[nodiscard]] absl::StatusOr<std::vector<ListedVm>> ParseVmList(
    absl::string_view json);

// `tart get NAME --format json`.
struct VmInfo {
  std::string os;  // linux, darwin
  uint32_t cpus = 0;
  uint64_t memory_mib = 0;
  std::string state;
};

[[nodiscard]] absl::StatusOr<VmInfo> ParseVmInfo(absl::string_view json);

// Tart's version from `tart --version` (its first line, such as 2.32.0), or
// "" when the output is not a version.
[[nodiscard]] std::string CliVersion(absl::string_view version_output);

}  // namespace corral::tart_runtime

#endif  // CORRAL_BACKENDS_TART_TART_CLI_H_
