// The body of POST /containers/create for one sandbox: what the linux
// runtime gives a sandbox (backends/linux/README.md), expressed in Docker's
// container config. Pure: no engine, no filesystem; unit-tested.
#ifndef CORRAL_BACKENDS_DOCKER_CONTAINER_SPEC_H_
#define CORRAL_BACKENDS_DOCKER_CONTAINER_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace corral::docker {

// Where the agent and its socket directory appear inside the container.
inline constexpr char kAgentMountPath[] = "/.corral/agent";
inline constexpr char kRunMountPath[] = "/.corral/run";
inline constexpr char kAgentSocketName[] = "agent.sock";

// Labels on everything the runtime creates.
inline constexpr char kSandboxLabel[] = "corral.sandbox";
inline constexpr char kDaemonLabel[] = "corral.daemon";
// On images this daemon imported (containers inherit image labels, so this
// one differs from kDaemonLabel).
inline constexpr char kImageDaemonLabel[] = "corral.image-daemon";

struct ContainerPlan {
  std::string id;      // sandbox id
  std::string daemon;  // the daemon's label value
  std::string image;   // engine image reference
  std::string hostname;
  std::string workspace_dir;  // host directory -> /workspace (rw)
  std::string agent_path;     // host file -> /.corral/agent (ro)
  std::string run_dir;        // host directory -> /.corral/run (rw)
  // More read-only, non-recursive binds: host source, container target (the
  // host image's /usr ...).
  std::vector<std::pair<std::string, std::string>> extra_binds;
  uint32_t cpu_millis = 0;
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  uint64_t tmp_bytes = 0;  // /tmp and /dev/shm
  // "seccomp=<profile JSON>" or "seccomp=<path>" (Podman reads a path);
  // empty: the engine's default profile.
  std::string seccomp_option;
  // Podman's compat API rejects or ignores a few Docker-only fields.
  bool podman = false;
  // oom_score_adj of the agent: -1000 shields it from the OOM killer, but
  // lowering it needs CAP_SYS_RESOURCE in the engine (runc fails to start
  // the container without it); 0 leaves the engine's default.
  int oom_score_adj = 0;
  // cgroup v1 host: also set memory.swappiness 0 (without swap accounting
  // the engine drops MemorySwap, and only swappiness keeps swap unused).
  bool cgroup_v1 = false;
};

// Paths hidden (MaskedPaths) and made read-only (ReadonlyPaths) in the
// container, as the linux runtime does; explicit so that they do not depend
// on an engine's defaults.
[[nodiscard]] std::vector<std::string> MaskedPaths();
[[nodiscard]] std::vector<std::string> ReadonlyPaths();

[[nodiscard]] nlohmann::json BuildCreateBody(const ContainerPlan& plan);

}  // namespace corral::docker

#endif  // CORRAL_BACKENDS_DOCKER_CONTAINER_SPEC_H_
