// Removal of a directory tree that anything less trusted than the daemon may
// have written (a sandbox's workspace, an image being extracted): every
// entry is reached relative to its parent's fd, a symlink is removed and
// never followed, and nothing on another filesystem is touched.
#ifndef CORRAL_COMMON_CORRAL_REMOVE_TREE_H_
#define CORRAL_COMMON_CORRAL_REMOVE_TREE_H_

#include <string>

#include "absl/status/status.h"

namespace corral {

// Removes `name` beneath the directory `parent_fd` with all it contains.
// Never follows a symlink (a link is removed, not its target) and never
// descends into another mount: a mount point inside makes the removal fail
// (EBUSY) rather than empty someone else's filesystem; everything else
// that can be removed still is, and the first failure is returned. A
// missing entry is not an error. `display` names it in messages.
[[nodiscard]] absl::Status RemoveTreeAt(int parent_fd, const std::string& name,
                                        const std::string& display);

// Removes everything in the directory `dir_fd` (which stays), by the same
// rules.
[[nodiscard]] absl::Status RemoveContentsAt(int dir_fd,
                                            const std::string& display);

// The same for `path`; its parent directories are trusted (the daemon's
// own), only the tree itself is not. `path` itself may be a symlink (then
// the link is removed).
[[nodiscard]] absl::Status RemoveTree(const std::string& path);

}  // namespace corral

#endif  // CORRAL_COMMON_CORRAL_REMOVE_TREE_H_
