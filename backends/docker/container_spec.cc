#include "backends/docker/container_spec.h"

#include "absl/strings/str_cat.h"

namespace corral::docker {

using nlohmann::json;

std::vector<std::string> MaskedPaths() {
  // Docker's defaults plus what the linux runtime also hides.
  return {"/proc/asound",        "/proc/acpi",          "/proc/kcore",
          "/proc/keys",          "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats",   "/proc/sched_debug",   "/proc/scsi",
          "/proc/sysrq-trigger", "/sys/firmware"};
}

std::vector<std::string> ReadonlyPaths() {
  // Host root without capabilities could still write /proc/sys (checked by
  // uid), so it is read-only, as in the linux runtime.
  return {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"};
}

namespace {

json BindMount(const std::string& source, const std::string& target,
               bool read_only, bool non_recursive = false) {
  // "Mounts" rather than "Binds": a host path holding ':' or ',' cannot be
  // misread, and a missing source is an error instead of a new directory.
  json options = {{"Propagation", "rprivate"}};
  if (non_recursive) options["NonRecursive"] = true;
  return {{"Type", "bind"},
          {"Source", source},
          {"Target", target},
          {"ReadOnly", read_only},
          {"BindOptions", options}};
}

}  // namespace

json BuildCreateBody(const ContainerPlan& plan) {
  json labels = {{kSandboxLabel, plan.id}, {kDaemonLabel, plan.daemon}};

  json mounts = json::array();
  mounts.push_back(BindMount(plan.workspace_dir, "/workspace", false));
  mounts.push_back(BindMount(plan.agent_path, kAgentMountPath, true));
  mounts.push_back(BindMount(plan.run_dir, kRunMountPath, false));
  for (const auto& [source, target] : plan.extra_binds) {
    // Not recursive: what is mounted below a host directory stays hidden.
    mounts.push_back(BindMount(source, target, true, /*non_recursive=*/true));
  }

  const std::string tmp_options =
      absl::StrCat("rw,exec,nosuid,nodev,mode=1777,size=", plan.tmp_bytes);

  json security = json::array({"no-new-privileges"});
  if (!plan.seccomp_option.empty()) security.push_back(plan.seccomp_option);

  json host_config = {
      {"NetworkMode", "none"},
      {"ReadonlyRootfs", true},
      {"Mounts", mounts},
      {"Tmpfs", {{"/tmp", tmp_options}}},
      {"ShmSize", plan.tmp_bytes},
      {"Memory", plan.memory_bytes},
      // Memory and swap together equal to memory: no swap.
      {"MemorySwap", plan.memory_bytes},
      {"PidsLimit", plan.pids},
      {"NanoCpus", static_cast<int64_t>(plan.cpu_millis) * 1'000'000},
      {"CapDrop", json::array({"ALL"})},
      {"CapAdd", json::array()},
      {"SecurityOpt", security},
      {"MaskedPaths", MaskedPaths()},
      {"ReadonlyPaths", ReadonlyPaths()},
      {"Init", false},
      {"AutoRemove", false},
      {"Privileged", false},
      {"RestartPolicy", {{"Name", "no"}}},
      {"IpcMode", "private"},
      {"PidMode", ""},
      {"UTSMode", ""},
      {"UsernsMode", ""},
      {"CgroupnsMode", "private"},
      {"Devices", json::array()},
  };
  if (plan.cgroup_v1) host_config["MemorySwappiness"] = 0;
  // The agent is PID 1 and should survive the OOM killer; it resets its
  // commands to 0.
  if (plan.oom_score_adj != 0) host_config["OomScoreAdj"] = plan.oom_score_adj;
  if (plan.podman) {
    // Podman's compat API takes no CgroupnsMode on cgroup v1; its default
    // there is the host's cgroup namespace, as Docker's is.
    host_config.erase("CgroupnsMode");
  }

  json body = {
      {"Image", plan.image},
      {"Hostname", plan.hostname},
      {"User", "0:0"},
      {"Env", json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                           "/usr/bin:/sbin:/bin",
                           "HOME=/"})},
      {"Entrypoint",
       json::array({kAgentMountPath, "--listen",
                    absl::StrCat(kRunMountPath, "/", kAgentSocketName)})},
      {"Cmd", json::array()},
      {"WorkingDir", "/"},
      {"Labels", labels},
      {"NetworkDisabled", true},
      {"AttachStdin", false},
      {"AttachStdout", false},
      {"AttachStderr", false},
      {"OpenStdin", false},
      {"Tty", false},
      {"StopSignal", "SIGKILL"},
      {"HostConfig", host_config},
  };
  return body;
}

}  // namespace corral::docker
