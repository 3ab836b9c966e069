#include "corral/remove_tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "corral/directory.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral {
namespace {

absl::Status RemoveBeneath(int parent_fd, const std::string& name,
                           const std::string& display, dev_t device);

// Removes every entry of the directory `dir_fd` (on `device`). Everything
// that can go goes; the first failure is the answer.
absl::Status RemoveEntriesOf(int dir_fd, const std::string& display,
                             dev_t device) {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   ListDirectoryAt(dir_fd, display));
  absl::Status first;
  for (const std::string& name : names) {
    absl::Status status = RemoveBeneath(
        dir_fd, name, display.empty() ? name : absl::StrCat(display, "/", name),
        device);
    if (first.ok()) first = std::move(status);
  }
  return first;
}

absl::Status RemoveBeneath(int parent_fd, const std::string& name,
                           const std::string& display, dev_t device) {
  struct stat st {};
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("fstatat ", display));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
      return ErrnoStatus(absl::StrCat("unlink ", display));
    }
    return absl::OkStatus();
  }
  // A directory on another filesystem is a mount point: rmdir fails on it
  // (EBUSY), which is the answer; its contents are not ours to empty.
  if (st.st_dev == device) {
    const int fd = ::openat(parent_fd, name.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(absl::StrCat("openat ", display));
    // A directory may have been made read-only (an archive's mode, a
    // sandbox's chmod); root ignores that, but a test run as a user does
    // not.
    (void)::fchmod(fd, 0700);
    UniqueFd directory(fd);
    RETURN_IF_ERROR(RemoveEntriesOf(directory.get(), display, device));
  }
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0 &&
      errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("rmdir ", display));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RemoveTreeAt(int parent_fd, const std::string& name,
                          const std::string& display) {
  struct stat parent {};
  if (::fstat(parent_fd, &parent) != 0) {
    return ErrnoStatus(absl::StrCat("fstat the parent of ", display));
  }
  struct stat st {};
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("fstatat ", display));
  }
  // The tree's own filesystem bounds the walk (it may be a mount itself,
  // the parent's filesystem is then left alone).
  return RemoveBeneath(parent_fd, name, display, st.st_dev);
}

absl::Status RemoveContentsAt(int dir_fd, const std::string& display) {
  struct stat st {};
  if (::fstat(dir_fd, &st) != 0) {
    return ErrnoStatus(absl::StrCat("fstat ", display));
  }
  return RemoveEntriesOf(dir_fd, display, st.st_dev);
}

absl::Status RemoveTree(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const size_t slash = trimmed.rfind('/');
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                          : trimmed.substr(0, slash);
  const std::string name =
      slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("RemoveTree: refusing to remove '", path, "'"));
  }
  UniqueFd parent_fd(
      ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("open ", parent));
  }
  return RemoveTreeAt(parent_fd.get(), name, trimmed);
}

}  // namespace corral
