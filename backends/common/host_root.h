// The built-in "host" image for runtimes that take a root directory plus a
// list of mounts (OCI runtimes, container engines) instead of assembling the
// root themselves like the linux runtime does: a small skeleton directory
// (top-level symlinks as the host has them, mount points, an /etc of copied
// safe files, generated hostname and hosts, /root, /var/tmp -> /tmp) and
// the read-only bind mounts of host directories that complete it (/usr, real
// /lib* directories, the safe /etc directories). What it shows is the linux
// runtime's host image (backends/linux/README.md): the same host entries,
// decided by backends/linux/rootfs.h HostEtcEntries().
#ifndef CORRAL_BACKENDS_COMMON_HOST_ROOT_H_
#define CORRAL_BACKENDS_COMMON_HOST_ROOT_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace corral::runtime_common {

// A read-only bind mount: host `source` at `destination` inside the sandbox
// (both absolute). Mount it read-only, nosuid, nodev, not recursive.
struct HostBind {
  std::string source;
  std::string destination;

  bool operator==(const HostBind& other) const {
    return source == other.source && destination == other.destination;
  }
};

struct HostRootOptions {
  // Written to /etc/hostname and /etc/hosts.
  std::string hostname;
  // Owner of /root: the host uid/gid of the sandbox's root (its user
  // namespace maps 0 to them), or 0 without a user namespace.
  uid_t root_uid = 0;
  gid_t root_gid = 0;
};

// The mount points every sandbox root has; the skeleton makes them, and an
// image directory must carry them as real directories.
[[nodiscard]] const std::vector<std::string>& SandboxMountPoints();

// The read-only binds that complete the skeleton, in mount order (a parent
// before anything beneath it), as this host has them now: a host entry that
// is a symlink is recreated in the skeleton instead, a missing one is
// skipped. Every destination exists in a skeleton written by
// WriteHostRootSkeleton.
[[nodiscard]] std::vector<HostBind> HostRootBinds();

// Writes the skeleton into `dir`, an existing empty directory (mode 0755:
// the sandbox's root must be able to traverse it). Host files are copied,
// never linked. Never follows a symlink it did not make. Errors name the
// step and path.
[[nodiscard]] absl::Status WriteHostRootSkeleton(
    const std::string& dir, const HostRootOptions& options);

}  // namespace corral::runtime_common

#endif  // CORRAL_BACKENDS_COMMON_HOST_ROOT_H_
