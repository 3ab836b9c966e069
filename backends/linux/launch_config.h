// The contract between the linux runtime plugin and its helper program
// corral-linux-launch: the command line that describes one sandbox, the fds
// the launcher inherits, and the one-line report it writes back.
#ifndef CORRAL_BACKENDS_LINUX_LAUNCH_CONFIG_H_
#define CORRAL_BACKENDS_LINUX_LAUNCH_CONFIG_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::linux_runtime {

inline constexpr char kLauncherName[] = "corral-linux-launch";

// File descriptors the launcher starts with (0-2 are /dev/null; nothing
// else is open). The listening socket already sits where the agent expects
// it, so the sandbox's init keeps it in place.
inline constexpr int kListenFd = 3;      // agent's listening Unix socket
inline constexpr int kAgentImageFd = 4;  // sealed memfd holding corral-agent
inline constexpr int kReportFd = 5;      // pipe to the plugin, write end

// The launcher gives up (and so does the plugin, a little later) after this.
inline constexpr int kLauncherTimeoutSeconds = 10;

// Everything the launcher needs to know about one sandbox.
struct LaunchConfig {
  std::string id;
  std::string hostname;
  // Exactly one of: the host image (rootfs_host) or an image directory.
  bool rootfs_host = false;
  std::string rootfs_dir;
  // Empty directory, root-only, where the new root is assembled (inside the
  // sandbox's private mount namespace; nothing is mounted there on the host).
  std::string staging_dir;
  std::string workspace_dir;
  // When not empty: a block device (a loop device over the workspace's
  // ext4 image, workspace_disk.h) that the sandbox's mount namespace mounts
  // on /workspace instead of binding workspace_dir, so that its disk limit
  // holds and the host never sees the mount.
  std::string workspace_device;
  // Size of the /tmp tmpfs.
  uint64_t tmp_bytes = 0;
  // Host uid/gid of the sandbox's root; with user_namespace false root stays
  // host root (without capabilities).
  bool user_namespace = false;
  uint32_t host_uid = 0;
  uint32_t host_gid = 0;
  // When not empty: a network namespace (a file the daemon made, linked to
  // its egress path) that the init joins instead of making a loopback-only
  // one. It belongs to the host's user namespace: root inside the sandbox
  // cannot change its links, routes or rules.
  std::string netns_path;
  // cgroup.procs files the launcher moves itself into before it creates the
  // sandbox's init, which is thereby born inside them.
  std::vector<std::string> cgroup_procs;

  // argv[1..] for the launcher.
  [[nodiscard]] std::vector<std::string> ToArgs() const;
  // Parses argv[1..]; INVALID_ARGUMENT naming the bad flag.
  [[nodiscard]] static absl::StatusOr<LaunchConfig> FromArgs(
      const std::vector<absl::string_view>& args);
};

// The launcher's answer, one line on kReportFd:
//   "ok <pid> <start time>\n"  the init runs the agent
//   "error <code> <message>\n"  nothing runs; code is an absl::StatusCode
//                               number, message names step, call, errno
struct LaunchReport {
  bool ok = false;
  pid_t pid = 0;
  uint64_t start_time = 0;
  absl::Status error;

  [[nodiscard]] std::string Serialize() const;
  // INTERNAL when the text is not a complete report.
  [[nodiscard]] static absl::StatusOr<LaunchReport> Parse(
      absl::string_view text);
};

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_LAUNCH_CONFIG_H_
