// The apple runtime's side of Apple's `container` CLI (apple/container 1.x):
// the arguments of `container run` for a sandbox, and the readers of what the
// CLI prints (its errors, `list --format json`). Proto-free, so that the unit
// tests pin them without a plugin.
#ifndef CORRAL_BACKENDS_APPLE_CONTAINER_CLI_H_
#define CORRAL_BACKENDS_APPLE_CONTAINER_CLI_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::apple_runtime {

// Labels every container of this runtime carries.
inline constexpr char kSandboxLabel[] = "corral.sandbox";
inline constexpr char kDaemonLabel[] = "corral.daemon";

// Apple's runtime refuses a container with less memory than this.
inline constexpr uint64_t kMinMemoryBytes = 200ull << 20;

// Inside the container: the agent's directory (a read-only share of the
// daemon's copy) and the tmpfs where it listens, on a socket named
// backend_plugin::kAgentSocketName as on the host.
inline constexpr char kAgentDirInside[] = "/.corral/bin";
inline constexpr char kRunDirInside[] = "/.corral/run";

// The container's name, which Apple's runtime also makes its id: the
// sandbox's hostname, a dot, the sandbox id. With `--network none` the
// runtime sets the hostname to the id up to its first dot, so the sandbox
// keeps its own. INVALID_ARGUMENT for a hostname that cannot be carried so
// (a dot, or a name past Apple's 63 characters).
[[nodiscard]] absl::StatusOr<std::string> ContainerName(
    absl::string_view hostname, absl::string_view sandbox_id);

// What a sandbox's container is made with.
struct RunPlan {
  std::string name;
  std::string image;
  std::string workspace_dir;  // host directory shared at /workspace
  std::string agent_dir;      // host directory holding corral-agent
  std::string host_socket;    // where the runtime publishes the agent
  std::string sandbox_id;
  std::string daemon_label;
  uint64_t memory_bytes = 0;  // already at least kMinMemoryBytes
  uint32_t cpus = 0;          // 0: Apple's default
};

// `container run -d ...` without the program (argv[0] is the caller's).
[[nodiscard]] std::vector<std::string> RunArguments(const RunPlan& plan);

// The VM's memory for a sandbox limit: whole MiB, at least Apple's minimum.
[[nodiscard]] uint64_t VmMemoryBytes(uint64_t limit_bytes);
// Whole CPUs for a limit in thousandths (rounded up); 0 for none.
[[nodiscard]] uint32_t VmCpus(uint32_t cpu_millis);

// A failed `container` call as a status. `error_output` is what it wrote to
// stderr: "Error: <message>" (1.x), "Error: <code>: \"<message>\"" with a
// code (aggregated errors, and before 1.0), causes nested as
// `(cause: "...")`. The innermost code decides the status (notFound:
// NOT_FOUND, exists: ALREADY_EXISTS, ...); without one, the message does
// ("not found", "already exists", the service being down). Exit code 64 is
// a usage error: Corral's arguments did not suit this `container`.
[[nodiscard]] absl::Status CliError(absl::string_view command, int exit_code,
                                    absl::string_view error_output);

// One container of `container list --all --format json`.
struct ListedContainer {
  std::string id;
  std::string state;  // running, stopped, stopping, unknown
  std::map<std::string, std::string> labels;
};

// INVALID_ARGUMENT for output that is not the list's JSON shape.
[[nodiscard]] absl::StatusOr<std::vector<ListedContainer>> ParseContainerList(
    absl::string_view json);

// The first line of `container --version` when it is the CLI (not, say, a
// different program called `container`); empty otherwise.
[[nodiscard]] std::string CliVersion(absl::string_view version_output);

}  // namespace corral::apple_runtime

#endif  // CORRAL_BACKENDS_APPLE_CONTAINER_CLI_H_
