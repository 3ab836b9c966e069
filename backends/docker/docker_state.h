// What the docker runtime remembers about one sandbox (SandboxHandle.state):
// the engine's container id and name, the sandbox's runtime directory and
// the container's cgroup directories (for stats). "key=value" lines,
// versioned; parsing refuses anything this version did not write.
#ifndef CORRAL_BACKENDS_DOCKER_DOCKER_STATE_H_
#define CORRAL_BACKENDS_DOCKER_DOCKER_STATE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "backends/linux/cgroups.h"

namespace corral::docker {

struct DockerState {
  std::string id;            // sandbox id
  std::string container_id;  // the engine's 64-hex id
  std::string container_name;
  std::string sandbox_dir;  // <runtime_dir>/<id>
  linux_runtime::SandboxCgroups cgroups;

  [[nodiscard]] std::string Serialize() const;
  [[nodiscard]] static absl::StatusOr<DockerState> Parse(
      absl::string_view text);
};

// The container name of sandbox `id` of daemon `daemon_label`.
[[nodiscard]] std::string ContainerName(absl::string_view daemon_label,
                                        absl::string_view id);

// The cgroup directories of a process, from the text of /proc/<pid>/cgroup
// and this host's layout.
[[nodiscard]] absl::StatusOr<linux_runtime::SandboxCgroups> CgroupsFromProc(
    absl::string_view proc_cgroup, const linux_runtime::CgroupLayout& layout);

}  // namespace corral::docker

#endif  // CORRAL_BACKENDS_DOCKER_DOCKER_STATE_H_
