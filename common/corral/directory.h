// Listing a directory's names: read whole first, so that callers may remove
// or rename entries afterwards (changing a directory while readdir walks it
// may skip entries).
#ifndef CORRAL_COMMON_CORRAL_DIRECTORY_H_
#define CORRAL_COMMON_CORRAL_DIRECTORY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace corral {

// The names in the open directory `dir_fd`, "." and ".." left out, in the
// order the filesystem gives them. `dir_fd` stays open (its offset, shared
// with the listing, ends at the end). `display` names it in errors.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ListDirectoryAt(
    int dir_fd, const std::string& display);

// The same for the directory at `path`.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ListDirectory(
    const std::string& path);

}  // namespace corral

#endif  // CORRAL_COMMON_CORRAL_DIRECTORY_H_
