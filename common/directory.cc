#include "corral/directory.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

namespace corral {
namespace {

// Reads every name of `listing` and closes it.
absl::StatusOr<std::vector<std::string>> ReadNames(DIR* raw,
                                                   const std::string& display) {
  std::unique_ptr<DIR, int (*)(DIR*)> listing(raw, ::closedir);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* entry = ::readdir(listing.get())) {
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  if (errno != 0) return ErrnoStatus(absl::StrCat("readdir ", display));
  return names;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListDirectoryAt(
    int dir_fd, const std::string& display) {
  // A duplicate, so that closing the listing leaves the caller's fd open;
  // it shares the caller's offset, so the listing starts from the top.
  const int listing_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (listing_fd < 0) return ErrnoStatus(absl::StrCat("dup ", display));
  DIR* listing = ::fdopendir(listing_fd);
  if (listing == nullptr) {
    const int error = errno;
    ::close(listing_fd);
    return ErrnoStatus(absl::StrCat("fdopendir ", display), error);
  }
  ::rewinddir(listing);
  return ReadNames(listing, display);
}

absl::StatusOr<std::vector<std::string>> ListDirectory(
    const std::string& path) {
  DIR* listing = ::opendir(path.c_str());
  if (listing == nullptr) return ErrnoStatus(absl::StrCat("opendir ", path));
  return ReadNames(listing, path);
}

}  // namespace corral
