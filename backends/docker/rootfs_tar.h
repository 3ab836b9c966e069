// Turns a root filesystem directory of Corral's image store into the tar
// stream an engine imports (POST /images/create?fromSrc=-), and names it by
// a key that changes when the directory is replaced.
#ifndef CORRAL_BACKENDS_DOCKER_ROOTFS_TAR_H_
#define CORRAL_BACKENDS_DOCKER_ROOTFS_TAR_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/docker/http_client.h"

namespace corral::docker {

// Writes a tar (POSIX pax) of everything under `directory` to `write`, in
// pieces: directories, regular files (hard links as copies) and symlinks,
// all owned 0:0, modes without setuid/setgid; devices, FIFOs and sockets are
// skipped. Never follows a symlink and never leaves the directory's mount.
// With `zero_mtime` every entry gets mtime 0, so that the same content always
// gives the same bytes (for content keys).
[[nodiscard]] absl::Status WriteDirectoryTar(const std::string& directory,
                                             const BodyWriter& write,
                                             bool zero_mtime = false);

// 16 hex characters naming the directory's current content for the engine:
// a hash of its path, device, inode and change time. The store replaces an
// image by extracting a new directory (a new inode), so a replaced image gets
// a new key.
[[nodiscard]] absl::StatusOr<std::string> DirectoryImageKey(
    const std::string& directory);

// FNV-1a, 64 bits (a content key, not a defence against collisions made on
// purpose: only root writes what is hashed).
class Fnv1a {
 public:
  void Update(absl::string_view data);
  // 16 lowercase hex characters.
  [[nodiscard]] std::string Hex() const;

 private:
  uint64_t hash_ = 1469598103934665603ull;
};

// FNV-1a, 64 bits, as 16 lowercase hex characters.
[[nodiscard]] std::string HashHex(absl::string_view data);

}  // namespace corral::docker

#endif  // CORRAL_BACKENDS_DOCKER_ROOTFS_TAR_H_
