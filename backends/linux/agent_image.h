// The agent binary as the sandboxes run it: a copy in a sealed memfd, made
// once per plugin process, so that nothing inside a sandbox can rewrite the
// file its init was executed from (runc CVE-2019-5736 went through
// /proc/self/exe).
#ifndef CORRAL_BACKENDS_LINUX_AGENT_IMAGE_H_
#define CORRAL_BACKENDS_LINUX_AGENT_IMAGE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "corral/unique_fd.h"

namespace corral::linux_runtime {

// Copies the regular file `path` into a new memfd (close-on-exec,
// executable) and seals it against writes, shrinking, growing and further
// seal changes.
[[nodiscard]] absl::StatusOr<UniqueFd> MakeSealedCopy(const std::string& path);

// The sealed copy of `agent_path`, made on first use and again whenever the
// file on disk changes (size, mtime or inode). Thread-safe; the returned fd
// stays open while the caller holds it.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const UniqueFd>> AgentImage(
    const std::string& agent_path);

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_AGENT_IMAGE_H_
