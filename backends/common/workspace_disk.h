// A sandbox's workspace as a filesystem of its own: an ext4 image of exactly
// the sandbox's disk size (SandboxSpec.disk_bytes), so that nothing the
// sandbox writes there can pass it (ENOSPC inside; the host's disk and the
// daemon live on). A VM (qemu) boots it as a disk; the container runtimes
// (linux, oci) attach it to a loop device that the sandbox's own mount
// namespace mounts on /workspace, so the host never sees the mount and the
// limit holds for as long as the sandbox lives, across daemon restarts.
#ifndef CORRAL_BACKENDS_COMMON_WORKSPACE_DISK_H_
#define CORRAL_BACKENDS_COMMON_WORKSPACE_DISK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/unique_fd.h"

namespace corral::runtime_common {

// Name of the image in the sandbox's workspace directory (the daemon's
// <state>/workspaces/<id>, root-only; removed with the sandbox).
inline constexpr char kWorkspaceDiskName[] = "disk.ext4";

// OK when this host can give sandboxes workspace disks: mkfs.ext4 is
// installed and loop devices can be made (/dev/loop-control); else why not.
[[nodiscard]] absl::Status WorkspaceDiskSupport();

// Runs mkfs.ext4 with `args`; FAILED_PRECONDITION when it is not installed
// (package e2fsprogs), INTERNAL with its output when it fails.
[[nodiscard]] absl::Status RunMkfs(std::vector<std::string> args);

// Creates `path` (which must not exist) as a sparse file of `bytes` holding
// an empty ext4 filesystem whose root directory belongs to uid:gid (the
// sandbox's root), mode 0600. No journal: the image lives no longer than its
// sandbox, which a host crash ends anyway, and no reserved blocks: the
// sandbox gets all of its disk size.
[[nodiscard]] absl::Status MakeWorkspaceDisk(const std::string& path,
                                             uint64_t bytes, uint32_t uid,
                                             uint32_t gid);

// A loop device backed by an image file, set to detach itself once nothing
// uses it any more (LO_FLAGS_AUTOCLEAR): keep `fd` open until the device is
// mounted (then the mount holds it, and the device goes with the last
// mount), or close it to give the device back.
struct LoopDevice {
  UniqueFd fd;
  std::string path;  // "/dev/loopN"
};

// Attaches `image` (read-write) to a free loop device.
[[nodiscard]] absl::StatusOr<LoopDevice> AttachLoopDevice(
    const std::string& image);

// Where a runtime keeps its images formatted ahead of time (the pool of
// TakeWorkspaceDisk): beside its sandboxes, on the same filesystem.
inline std::string DiskPoolDir(const std::string& runtime_dir) {
  return runtime_dir + "/disk-pool";
}

// Makes `path` (which must not exist) an empty image of `bytes` whose root
// belongs to root (0:0; whoever mounts it for a sandbox hands it to the
// sandbox's root): one formatted ahead of time in `pool_dir` (on the same
// filesystem) when one is ready, else a new one now. Either way another is
// then formatted in the background, so that creates do not wait for mkfs
// (a few ms that grow with the size). The pool keeps two images of each of
// the last four sizes asked for; they are sparse (a few MiB each on disk).
[[nodiscard]] absl::Status TakeWorkspaceDisk(const std::string& pool_dir,
                                             uint64_t bytes,
                                             const std::string& path);

// What a container runtime's create does: when `enabled`, `bytes` > 0 and
// the host can (WorkspaceDiskSupport), puts an image of `bytes` in
// `workspace_dir` (TakeWorkspaceDisk; its root is root's) and attaches it;
// else an empty LoopDevice (the workspace stays a plain directory, with no
// disk limit).
[[nodiscard]] absl::StatusOr<LoopDevice> PrepareWorkspaceDisk(
    const std::string& workspace_dir, uint64_t bytes, bool enabled,
    const std::string& pool_dir);

}  // namespace corral::runtime_common

#endif  // CORRAL_BACKENDS_COMMON_WORKSPACE_DISK_H_
