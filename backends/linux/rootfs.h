// Builds a sandbox's root filesystem inside its new mount namespace and
// pivots into it. Runs in the launcher's child (the future init), as host
// root, before the user namespace and before capabilities are dropped.
#ifndef CORRAL_BACKENDS_LINUX_ROOTFS_H_
#define CORRAL_BACKENDS_LINUX_ROOTFS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "backends/linux/launch_config.h"

namespace corral::linux_runtime {

// Entries of the host's /etc that the "host" image shows (those that exist):
// name service, dynamic linker, time zone, TLS roots, shell profiles. Never
// shadow, sudoers, ssh keys or anything else secret.
[[nodiscard]] const std::vector<std::string>& HostEtcEntries();

// Precondition: the caller is in a new mount, pid and net namespace and is
// still host root with every capability. Makes "/" private, assembles the
// root at config.staging_dir (host image or image directory), mounts /proc,
// /sys, /dev, /tmp and /workspace, masks what OCI masks, makes the root
// read-only, and pivot_roots into it (the old root is detached; the cwd is
// the new "/"). Errors name the step, the call and its argument.
[[nodiscard]] absl::Status BuildRootAndPivot(const LaunchConfig& config);

// Sets the hostname of the (new) UTS namespace and brings up loopback in
// the (new) network namespace.
[[nodiscard]] absl::Status SetUpHostnameAndLoopback(
    const std::string& hostname);

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_ROOTFS_H_
