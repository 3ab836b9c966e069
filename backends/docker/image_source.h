// Where a sandbox's root filesystem comes from, for the engine: a directory
// to import as an image (and the key naming its content), plus read-only
// binds the container needs on top of it. Also the seccomp profile handed
// to the engine. The two pieces shared with the oci runtime
// (backends/common/host_root.h, seccomp_json.h) are used when built in.
#ifndef CORRAL_BACKENDS_DOCKER_IMAGE_SOURCE_H_
#define CORRAL_BACKENDS_DOCKER_IMAGE_SOURCE_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"

namespace corral::docker {

struct ImageSource {
  std::string directory;  // imported as the image's only layer
  std::string key;        // 16 hex; the image's tag
  // Import with mtime 0 on every entry (the key hashes such a tar).
  bool zero_mtime = false;
  // Read-only binds added to the container: host source, container target.
  std::vector<std::pair<std::string, std::string>> binds;
};

// rootfs.directory: that directory, keyed by DirectoryImageKey. rootfs.host:
// the host image's skeleton, written once under `runtime_dir`/.host-root,
// keyed by a hash of its content, with host_root's binds of /usr, /etc ...
[[nodiscard]] absl::StatusOr<ImageSource> ResolveImageSource(
    const ::corral::backend::v1::RootFs& rootfs,
    const std::string& runtime_dir);

// One mutex per image reference, alive while someone holds it: creates
// that need the same image import (or load) it once, one after the other.
[[nodiscard]] std::shared_ptr<std::mutex> ImportLock(const std::string& ref);

// The linux runtime's seccomp policy as a Docker/OCI profile (JSON).
// UNIMPLEMENTED when this build has no profile generator.
[[nodiscard]] absl::StatusOr<std::string> SeccompProfileJson();

}  // namespace corral::docker

#endif  // CORRAL_BACKENDS_DOCKER_IMAGE_SOURCE_H_
