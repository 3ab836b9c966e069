#include "backends/docker/rootfs_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::docker {
namespace {

// Deeper trees than this are refused (a loop cannot happen without
// following symlinks, but the recursion must stay bounded).
constexpr int kMaxDepth = 128;

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

// What the write callback needs; the first failure of `write` is kept so
// that it, not libarchive's generic message, is reported.
struct Sink {
  const BodyWriter* write;
  absl::Status status;
};

la_ssize_t WriteCallback(archive*, void* context, const void* buffer,
                         size_t length) {
  auto* sink = static_cast<Sink*>(context);
  absl::Status status = (*sink->write)(
      absl::string_view(static_cast<const char*>(buffer), length));
  if (!status.ok()) {
    if (sink->status.ok()) sink->status = status;
    return -1;
  }
  return static_cast<la_ssize_t>(length);
}

class TarWriter {
 public:
  TarWriter(archive* a, Sink* sink, dev_t device, bool zero_mtime)
      : archive_(a), sink_(sink), device_(device), zero_mtime_(zero_mtime) {}

  absl::Status Error(absl::string_view what) {
    if (!sink_->status.ok()) return sink_->status;
    return absl::InternalError(
        absl::StrCat("tar ", what, ": ", archive_error_string(archive_)));
  }

  absl::Status Header(const std::string& name, const struct stat& st,
                      const std::string* link_target) {
    std::unique_ptr<archive_entry, EntryDeleter> entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry_set_uid(entry.get(), 0);
    archive_entry_set_gid(entry.get(), 0);
    archive_entry_set_mtime(entry.get(), zero_mtime_ ? 0 : st.st_mtim.tv_sec,
                            0);
    // No setuid/setgid: nothing in a sandbox may gain privileges by exec.
    mode_t perm = st.st_mode & 01777;
    if (S_ISDIR(st.st_mode)) {
      archive_entry_set_filetype(entry.get(), AE_IFDIR);
    } else if (S_ISLNK(st.st_mode)) {
      archive_entry_set_filetype(entry.get(), AE_IFLNK);
      archive_entry_set_symlink(entry.get(), link_target->c_str());
      perm = 0777;
    } else {
      archive_entry_set_filetype(entry.get(), AE_IFREG);
      archive_entry_set_size(entry.get(), st.st_size);
    }
    archive_entry_set_perm(entry.get(), perm);
    if (archive_write_header(archive_, entry.get()) != ARCHIVE_OK) {
      return Error(absl::StrCat("header of ", name));
    }
    return absl::OkStatus();
  }

  absl::Status File(int dir_fd, const char* leaf, const std::string& name,
                    const struct stat& st) {
    UniqueFd fd(::openat(dir_fd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return ErrnoStatus(absl::StrCat("open ", name));
    RETURN_IF_ERROR(Header(name, st, nullptr));
    // Exactly st_size bytes: a file that changes under us still yields a
    // well-formed archive (padded or cut).
    off_t left = st.st_size;
    std::vector<char> buffer(256 * 1024);
    while (left > 0) {
      size_t want = static_cast<size_t>(
          std::min<off_t>(left, static_cast<off_t>(buffer.size())));
      ssize_t n = ::read(fd.get(), buffer.data(), want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(absl::StrCat("read ", name));
      if (n == 0) {
        std::fill(buffer.begin(), buffer.begin() + static_cast<long>(want), 0);
        n = static_cast<ssize_t>(want);
      }
      if (archive_write_data(archive_, buffer.data(), static_cast<size_t>(n)) <
          0) {
        return Error(absl::StrCat("data of ", name));
      }
      left -= n;
    }
    return absl::OkStatus();
  }

  // Writes the entries of the directory `fd` (named `prefix` in the tar).
  absl::Status Directory(int fd, const std::string& prefix, int depth) {
    if (depth > kMaxDepth) {
      return absl::FailedPreconditionError(
          absl::StrCat("image tree deeper than ", kMaxDepth, " at ", prefix));
    }
    int dup_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) return ErrnoStatus("fcntl F_DUPFD_CLOEXEC");
    DIR* dir = ::fdopendir(dup_fd);
    if (dir == nullptr) {
      ::close(dup_fd);
      return ErrnoStatus(absl::StrCat("fdopendir ", prefix));
    }
    std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, ::closedir);
    std::vector<std::string> names;
    errno = 0;
    while (dirent* entry = ::readdir(dir)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
      errno = 0;
    }
    if (errno != 0) return ErrnoStatus(absl::StrCat("readdir ", prefix));
    // A stable order: the same directory gives the same tar.
    std::sort(names.begin(), names.end());
    for (const std::string& leaf : names) {
      const std::string name =
          prefix.empty() ? leaf : absl::StrCat(prefix, "/", leaf);
      struct stat st {};
      if (::fstatat(fd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return ErrnoStatus(absl::StrCat("stat ", name));
      }
      if (S_ISDIR(st.st_mode)) {
        RETURN_IF_ERROR(Header(name, st, nullptr));
        if (st.st_dev != device_) continue;  // a mount point: keep it empty
        UniqueFd child(::openat(
            fd, leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!child) return ErrnoStatus(absl::StrCat("open ", name));
        RETURN_IF_ERROR(Directory(child.get(), name, depth + 1));
      } else if (S_ISLNK(st.st_mode)) {
        std::string target(4096, '\0');
        ssize_t n =
            ::readlinkat(fd, leaf.c_str(), target.data(), target.size() - 1);
        if (n < 0) return ErrnoStatus(absl::StrCat("readlink ", name));
        target.resize(static_cast<size_t>(n));
        RETURN_IF_ERROR(Header(name, st, &target));
      } else if (S_ISREG(st.st_mode)) {
        RETURN_IF_ERROR(File(fd, leaf.c_str(), name, st));
      }
      // Devices, FIFOs, sockets: never part of a sandbox's image.
    }
    return absl::OkStatus();
  }

 private:
  archive* archive_;
  Sink* sink_;
  dev_t device_;
  bool zero_mtime_;
};

}  // namespace

absl::Status WriteDirectoryTar(const std::string& directory,
                               const BodyWriter& write, bool zero_mtime) {
  UniqueFd root(::open(directory.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return ErrnoStatus(absl::StrCat("open ", directory));
  struct stat st {};
  if (::fstat(root.get(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("stat ", directory));
  }
  std::unique_ptr<archive, ArchiveDeleter> a(archive_write_new());
  if (!a) return absl::ResourceExhaustedError("archive_write_new");
  Sink sink{&write, absl::OkStatus()};
  if (archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK ||
      archive_write_set_bytes_per_block(a.get(), 64 * 1024) != ARCHIVE_OK ||
      archive_write_open(a.get(), &sink, nullptr, WriteCallback, nullptr) !=
          ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("tar: ", archive_error_string(a.get())));
  }
  TarWriter writer(a.get(), &sink, st.st_dev, zero_mtime);
  RETURN_IF_ERROR(writer.Directory(root.get(), "", 0));
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    return writer.Error("close");
  }
  return sink.status;
}

void Fnv1a::Update(absl::string_view data) {
  for (char c : data) {
    hash_ ^= static_cast<unsigned char>(c);
    hash_ *= 1099511628211ull;
  }
}

std::string Fnv1a::Hex() const { return absl::StrFormat("%016x", hash_); }

std::string HashHex(absl::string_view data) {
  Fnv1a hash;
  hash.Update(data);
  return hash.Hex();
}

absl::StatusOr<std::string> DirectoryImageKey(const std::string& directory) {
  struct stat st {};
  if (::lstat(directory.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("stat ", directory));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rootfs ", directory, " is not a directory"));
  }
  // "v1": the tar format above; a change of it must give new keys.
  return HashHex(absl::StrCat("v1|", directory, "|", st.st_dev, "|", st.st_ino,
                              "|", st.st_ctim.tv_sec, ".", st.st_ctim.tv_nsec));
}

}  // namespace corral::docker
