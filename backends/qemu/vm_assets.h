// What a VM sandbox boots, made from the kernel directory that
// deploy/images/build-vm-kernel.sh writes and from the daemon's images,
// cached in the runtime's cache directory and shared by every sandbox:
//   - the initramfs: the agent as /init, the kernel's virtio modules in load
//     order, and the few nodes and directories the agent's VM init needs
//     (guest-agent/vm_init.h);
//   - an image's root filesystem as a read-only ext4 disk (built with
//     mkfs.ext4 -d, without mounting anything);
// and per sandbox, the empty ext4 disk of its workspace.
#ifndef CORRAL_BACKENDS_QEMU_VM_ASSETS_H_
#define CORRAL_BACKENDS_QEMU_VM_ASSETS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::qemu_runtime {

struct Kernel {
  std::string vmlinux;  // an uncompressed kernel (QEMU boots it via PVH)
  std::string release;  // "6.1.0-57-cloud-amd64"
  // Module files in load order (their names start with the order: 00-...).
  std::vector<std::string> modules;
};

// Reads <dir>/vmlinux, <dir>/release and <dir>/modules/*.ko.
// FAILED_PRECONDITION naming the builder when something is missing.
[[nodiscard]] absl::StatusOr<Kernel> FindKernel(const std::string& dir);

// Appends entries to a cpio archive in the "newc" format, which the kernel
// unpacks as the initramfs.
class CpioWriter {
 public:
  void Directory(const std::string& name, uint32_t mode);
  void File(const std::string& name, uint32_t mode, const std::string& data);
  void CharacterDevice(const std::string& name, uint32_t mode, uint32_t major,
                       uint32_t minor);
  // The trailer; returns the archive.
  [[nodiscard]] std::string Finish();

 private:
  void Entry(const std::string& name, uint32_t mode, uint32_t major,
             uint32_t minor, const std::string& data);

  std::string out_;
  uint32_t inode_ = 1;
};

// The initramfs for `kernel` with the agent at `agent_path`, built once per
// agent binary and module set into `cache_dir`; its path. Only a root over
// `virtiofs` needs the fuse and virtiofs modules, only a guest of
// Firecracker (`vsock`) the vsock ones.
[[nodiscard]] absl::StatusOr<std::string> InitramfsFor(
    const std::string& cache_dir, const Kernel& kernel,
    const std::string& agent_path, bool virtiofs, bool vsock = false);
// Its path, built or not.
[[nodiscard]] absl::StatusOr<std::string> InitramfsPath(
    const std::string& cache_dir, const Kernel& kernel,
    const std::string& agent_path, bool virtiofs, bool vsock = false);

// The read-only ext4 disk of the image directory `image_dir`, built once
// per directory (by device, inode and change time: a re-imported image is a
// new directory) into `cache_dir`; its path.
[[nodiscard]] absl::StatusOr<std::string> ImageDiskFor(
    const std::string& cache_dir, const std::string& image_dir);

// A saved machine's name: the daemon's snapshot names (1-64 of
// [A-Za-z0-9._-], not starting with '.' or '-').
[[nodiscard]] bool ValidSavedName(absl::string_view name);

// Saved machines live in <runtime dir>/<sandbox id>/memory/<name>/, and a
// runtime hands the daemon "<prefix><that directory>" as their state.
inline constexpr char kSavedMachinesDir[] = "memory";

// The directory that a saved machine's `state` names, checked: it must be
// "<prefix><runtime_dir>/<id>/memory/<name>" (INVALID_ARGUMENT naming
// `runtime` otherwise); NOT_FOUND when it is gone.
[[nodiscard]] absl::StatusOr<std::string> SavedMachineDir(
    const std::string& runtime_dir, absl::string_view prefix,
    absl::string_view runtime, const std::string& state);

// DeleteMemory's work: removes the saved machine `state` names when it is
// one of sandbox `id`'s (INVALID_ARGUMENT for another's). Idempotent.
[[nodiscard]] absl::Status DeleteSavedMachine(const std::string& runtime_dir,
                                              absl::string_view prefix,
                                              absl::string_view runtime,
                                              const std::string& id,
                                              const std::string& state);

// Writes `data` to a temporary file beside `path` and renames it there: a
// reader sees the old file, or the whole new one (mode 0644).
[[nodiscard]] absl::Status ReplaceFile(const std::string& path,
                                       const std::string& data);

// Copies the file `from` to `to` (which must not exist), holes and all:
// only the data extents are read and written. Mode 0600.
[[nodiscard]] absl::Status CopySparse(const std::string& from,
                                      const std::string& to);

// A hard link `to` of `from` (same filesystem), else a copy.
[[nodiscard]] absl::Status LinkOrCopy(const std::string& from,
                                      const std::string& to);

// Bytes the files directly in `dir` take on disk (allocated blocks).
[[nodiscard]] uint64_t DiskUsage(const std::string& dir);

// Removes what `cache_dir` no longer needs: initramfs not among
// `current_initramfs` (older agents or modules), disks of image directories
// that are gone or were replaced, and temporary files of interrupted
// builds. A running VM keeps its open disk. Returns how many files went.
int PruneCache(const std::string& cache_dir,
               const std::vector<std::string>& current_initramfs);

}  // namespace corral::qemu_runtime

#endif  // CORRAL_BACKENDS_QEMU_VM_ASSETS_H_
