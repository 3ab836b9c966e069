#include "tests/fakes/common/tar_root.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <sstream>

#include "tests/fakes/common/fake_util.h"

namespace corral::fakes {
namespace {

void SetTimes(int dir_fd, const std::string& name,
              struct archive_entry* entry) {
  timespec times[2];
  times[0].tv_sec = times[1].tv_sec = archive_entry_mtime(entry);
  times[0].tv_nsec = times[1].tv_nsec = archive_entry_mtime_nsec(entry);
  ::utimensat(dir_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
}

}  // namespace

std::vector<std::string> Components(const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream in(path);
  for (std::string part; std::getline(in, part, '/');) {
    if (!part.empty() && part != ".") parts.push_back(part);
  }
  return parts;
}

std::string JoinComponents(const std::vector<std::string>& parts, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? "/" : "") + parts[i];
  return out;
}

int DirectoryInRoot(int root_fd, const std::vector<std::string>& parts,
                    size_t n,
                    const std::function<void(const std::string&)>& made) {
  int fd =
      OpenInRoot(root_fd, JoinComponents(parts, n), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) return fd;
  int current = OpenInRoot(root_fd, ".", O_RDONLY | O_DIRECTORY);
  for (size_t i = 0; i < n && current >= 0; ++i) {
    const std::string prefix = JoinComponents(parts, i + 1);
    int next = OpenInRoot(root_fd, prefix, O_RDONLY | O_DIRECTORY);
    if (next < 0) {
      struct stat st {};
      if (::fstatat(current, parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          !S_ISDIR(st.st_mode)) {
        RemoveAt(current, parts[i]);
      }
      ::mkdirat(current, parts[i].c_str(), 0755);
      if (made) made(prefix);
      next = OpenInRoot(root_fd, prefix, O_RDONLY | O_DIRECTORY);
    }
    ::close(current);
    current = next;
  }
  return current;
}

CopyResult CopyEntryData(struct archive* reader, int fd) {
  const void* block = nullptr;
  size_t size = 0;
  la_int64_t offset = 0;
  for (;;) {
    int r = archive_read_data_block(reader, &block, &size, &offset);
    if (r == ARCHIVE_EOF) return CopyResult::kOk;
    if (r < ARCHIVE_WARN) return CopyResult::kReadFailed;
    if (::lseek(fd, offset, SEEK_SET) < 0) return CopyResult::kWriteFailed;
    const char* data = static_cast<const char*>(block);
    while (size > 0) {
      ssize_t n = ::write(fd, data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return CopyResult::kWriteFailed;
      data += n;
      size -= static_cast<size_t>(n);
    }
  }
}

Placed PlaceEntry(struct archive* reader, struct archive_entry* entry,
                  int root_fd, int parent_fd, const std::string& name) {
  const mode_t type = archive_entry_filetype(entry);
  const mode_t mode = archive_entry_perm(entry) & 07777;
  const uid_t uid = static_cast<uid_t>(archive_entry_uid(entry));
  const gid_t gid = static_cast<gid_t>(archive_entry_gid(entry));
  struct stat existing {};
  const bool exists =
      ::fstatat(parent_fd, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
  const char* hardlink = archive_entry_hardlink(entry);
  if (type == AE_IFDIR && hardlink == nullptr) {
    if (exists && !S_ISDIR(existing.st_mode)) RemoveAt(parent_fd, name);
    if (!exists || !S_ISDIR(existing.st_mode)) {
      ::mkdirat(parent_fd, name.c_str(), 0755);
    }
    Fd dir(::openat(parent_fd, name.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir.fd >= 0) {
      ::fchown(dir.fd, uid, gid);
      ::fchmod(dir.fd, mode);
    }
    SetTimes(parent_fd, name, entry);
    return Placed::kDone;
  }
  if (exists) RemoveAt(parent_fd, name);
  if (hardlink != nullptr) {
    std::vector<std::string> target = Components(hardlink);
    for (const auto& part : target) {
      if (part == "..") return Placed::kLinkOutside;
    }
    if (target.empty()) return Placed::kSkipped;
    Fd target_dir(OpenInRoot(root_fd, JoinComponents(target, target.size() - 1),
                             O_RDONLY | O_DIRECTORY));
    if (target_dir.fd >= 0) {
      ::linkat(target_dir.fd, target.back().c_str(), parent_fd, name.c_str(),
               0);
    }
    return Placed::kDone;
  }
  if (type == AE_IFLNK) {
    const char* target = archive_entry_symlink(entry);
    if (target == nullptr) return Placed::kSkipped;
    ::symlinkat(target, parent_fd, name.c_str());
    ::fchownat(parent_fd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
    SetTimes(parent_fd, name, entry);
    return Placed::kDone;
  }
  if (type == AE_IFIFO) {
    ::mknodat(parent_fd, name.c_str(), S_IFIFO | (mode & 0777), 0);
    ::fchownat(parent_fd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
    ::fchmodat(parent_fd, name.c_str(), mode, 0);
    SetTimes(parent_fd, name, entry);
    return Placed::kDone;
  }
  if (type != AE_IFREG) return Placed::kSkipped;
  Fd file(::openat(parent_fd, name.c_str(),
                   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (file.fd < 0) return Placed::kNoFile;
  const CopyResult copied = CopyEntryData(reader, file.fd);
  if (copied == CopyResult::kReadFailed) return Placed::kReadFailed;
  if (copied == CopyResult::kWriteFailed) return Placed::kWriteFailed;
  ::ftruncate(file.fd, archive_entry_size(entry));
  ::fchown(file.fd, uid, gid);
  ::fchmod(file.fd, mode);  // after chown, which clears set-id bits
  SetTimes(parent_fd, name, entry);
  return Placed::kDone;
}

}  // namespace corral::fakes
