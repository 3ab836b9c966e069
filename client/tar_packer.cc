#include "client/tar_packer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "corral/platform.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::cli {
namespace {

struct ArchiveDeleter {
  void operator()(struct archive* archive) const {
    archive_write_free(archive);
  }
};
struct EntryDeleter {
  void operator()(struct archive_entry* entry) const {
    archive_entry_free(entry);
  }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveDeleter>;
using EntryPtr = std::unique_ptr<struct archive_entry, EntryDeleter>;

// Walks the tree and feeds libarchive; libarchive's output goes through
// WriteCallback into fixed-size chunks for the sink.
class Packer {
 public:
  Packer(const ChunkSink& sink, size_t chunk_size, bool keep_fifos)
      : sink_(sink), chunk_size_(chunk_size), keep_fifos_(keep_fifos) {
    pending_.reserve(chunk_size_);
  }
  // Freeing an unclosed archive flushes through WriteCallback, which uses the
  // members: free it first, with output discarded.
  ~Packer() {
    discard_output_ = true;
    archive_.reset();
  }
  Packer(const Packer&) = delete;
  Packer& operator=(const Packer&) = delete;

  absl::StatusOr<PackResult> Pack(const std::string& directory) {
    // The root may itself be a symlink: the user named it, so following it
    // is what they mean. Everything below it is opened with O_NOFOLLOW.
    UniqueFd root(
        ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) return ErrnoStatus(absl::StrCat("open ", directory));

    archive_.reset(archive_write_new());
    if (!archive_) return absl::ResourceExhaustedError("archive_write_new");
    // pax keeps long names, large files and sub-second mtimes.
    if (archive_write_set_format_pax_restricted(archive_.get()) != ARCHIVE_OK) {
      return ArchiveError("set tar format");
    }
    if (archive_write_open(archive_.get(), this, nullptr, &WriteCallback,
                           nullptr) != ARCHIVE_OK) {
      return ArchiveError("open tar stream");
    }
    absl::Status status = PackChildren(root.get(), "");
    if (status.ok() && archive_write_close(archive_.get()) != ARCHIVE_OK) {
      status = ArchiveError("finish tar stream");
    }
    if (status.ok() && !pending_.empty()) status = Emit(pending_);
    // After a failure, freeing the archive still flushes a padded tail; the
    // sink must not see a tar that looks complete.
    if (!status.ok()) discard_output_ = true;
    RETURN_IF_ERROR(status);
    return std::move(result_);
  }

 private:
  static la_ssize_t WriteCallback(struct archive*, void* client_data,
                                  const void* buffer, size_t length) {
    auto* self = static_cast<Packer*>(client_data);
    if (self->discard_output_) return static_cast<la_ssize_t>(length);
    absl::Status status = self->Buffer(
        absl::string_view(static_cast<const char*>(buffer), length));
    if (!status.ok()) {
      self->sink_status_ = std::move(status);
      return -1;
    }
    return static_cast<la_ssize_t>(length);
  }

  absl::Status Buffer(absl::string_view data) {
    while (!data.empty()) {
      const size_t take = std::min(chunk_size_ - pending_.size(), data.size());
      pending_.append(data.data(), take);
      data.remove_prefix(take);
      if (pending_.size() == chunk_size_) RETURN_IF_ERROR(Emit(pending_));
    }
    return absl::OkStatus();
  }

  absl::Status Emit(std::string& chunk) {
    result_.archive_bytes += chunk.size();
    absl::Status status = sink_(chunk);
    chunk.clear();
    return status;
  }

  // A libarchive failure, unless the real cause was the sink refusing data.
  absl::Status ArchiveError(absl::string_view what) {
    if (!sink_status_.ok()) return sink_status_;
    const char* message = archive_error_string(archive_.get());
    return absl::InternalError(
        absl::StrCat(what, ": ", message ? message : "libarchive failed"));
  }

  absl::Status PackChildren(int dir_fd, const std::string& prefix) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, ReadNames(dir_fd, prefix));
    for (const std::string& name : names) {
      RETURN_IF_ERROR(PackOne(dir_fd, name, prefix + name));
    }
    return absl::OkStatus();
  }

  // Sorted names in a directory, so archives of the same tree are identical.
  static absl::StatusOr<std::vector<std::string>> ReadNames(
      int dir_fd, const std::string& path) {
    // fdopendir takes the fd over; give it a duplicate so dir_fd stays ours.
    const int dup_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) return ErrnoStatus(absl::StrCat("dup ", Shown(path)));
    DIR* dir = ::fdopendir(dup_fd);
    if (dir == nullptr) {
      const int error = errno;
      ::close(dup_fd);
      return ErrnoStatus(absl::StrCat("opendir ", Shown(path)), error);
    }
    std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, &::closedir);
    std::vector<std::string> names;
    for (;;) {
      errno = 0;
      const struct dirent* entry = ::readdir(dir);
      if (entry == nullptr) {
        if (errno != 0) {
          return ErrnoStatus(absl::StrCat("readdir ", Shown(path)));
        }
        break;
      }
      const absl::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  static std::string Shown(const std::string& path) {
    return path.empty() ? "." : path;
  }

  static absl::Status Vanished(const std::string& path) {
    return absl::NotFoundError(
        absl::StrCat(path, ": vanished while it was being packed"));
  }

  absl::Status PackOne(int dir_fd, const std::string& name,
                       const std::string& path) {
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return Vanished(path);
      return ErrnoStatus(absl::StrCat("stat ", path));
    }
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR:
        return PackDirectoryEntry(dir_fd, name, path, st);
      case S_IFREG:
        return PackFile(dir_fd, name, path, st);
      case S_IFLNK:
        return PackSymlink(dir_fd, name, path, st);
      case S_IFIFO:
        if (!keep_fifos_) {
          result_.skipped.push_back(absl::StrCat(path, ": FIFO, skipped"));
          return absl::OkStatus();
        }
        return WriteHeader(path, st, AE_IFIFO, 0, nullptr);
      case S_IFCHR:
      case S_IFBLK:
        result_.skipped.push_back(absl::StrCat(path, ": device node, skipped"));
        return absl::OkStatus();
      default:
        result_.skipped.push_back(absl::StrCat(path, ": socket, skipped"));
        return absl::OkStatus();
    }
  }

  absl::Status WriteHeader(const std::string& path, const struct stat& st,
                           unsigned int type, int64_t size,
                           const char* link_target) {
    EntryPtr entry(archive_entry_new());
    if (!entry) return absl::ResourceExhaustedError("archive_entry_new");
    archive_entry_set_pathname(entry.get(), path.c_str());
    archive_entry_set_filetype(entry.get(), type);
    archive_entry_set_perm(entry.get(), st.st_mode & 07777);
    archive_entry_set_size(entry.get(), size);
    const timespec mtime = platform::ModificationTime(st);
    archive_entry_set_mtime(entry.get(), mtime.tv_sec, mtime.tv_nsec);
    // The image's owners are the sandbox's, not the packing user's.
    archive_entry_set_uid(entry.get(), 0);
    archive_entry_set_gid(entry.get(), 0);
    if (link_target != nullptr)
      archive_entry_set_symlink(entry.get(), link_target);
    if (archive_write_header(archive_.get(), entry.get()) < ARCHIVE_WARN) {
      return ArchiveError(absl::StrCat("write header of ", path));
    }
    ++result_.entries;
    return absl::OkStatus();
  }

  absl::Status PackDirectoryEntry(int dir_fd, const std::string& name,
                                  const std::string& path,
                                  const struct stat& st) {
    UniqueFd child(::openat(dir_fd, name.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child) {
      if (errno == ENOENT) return Vanished(path);
      if (errno == ELOOP || errno == ENOTDIR) return Changed(path);
      return ErrnoStatus(absl::StrCat("open ", path));
    }
    RETURN_IF_ERROR(WriteHeader(path, st, AE_IFDIR, 0, nullptr));
    return PackChildren(child.get(), path + "/");
  }

  static absl::Status Changed(const std::string& path) {
    return absl::AbortedError(
        absl::StrCat(path, ": changed type while it was being packed"));
  }

  absl::Status PackFile(int dir_fd, const std::string& name,
                        const std::string& path, const struct stat& listed) {
    // O_NONBLOCK: if the file was swapped for a FIFO since fstatat, opening
    // must not hang; the fstat below then notices the change.
    UniqueFd file(
        ::openat(dir_fd, name.c_str(),
                 O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
    if (!file) {
      if (errno == ENOENT) return Vanished(path);
      if (errno == ELOOP) return Changed(path);
      return ErrnoStatus(absl::StrCat("cannot read ", path));
    }
    struct stat st;
    if (::fstat(file.get(), &st) != 0) {
      return ErrnoStatus(absl::StrCat("stat ", path));
    }
    if (!S_ISREG(st.st_mode) || st.st_ino != listed.st_ino) {
      return Changed(path);
    }
    RETURN_IF_ERROR(WriteHeader(path, st, AE_IFREG, st.st_size, nullptr));
    // The header promised st_size bytes: write exactly that many. Growth past
    // it is left out (the file was caught at one size); shrinking is fatal
    // because the tar would be corrupt.
    if (read_buffer_.empty()) read_buffer_.resize(1 << 20);
    off_t remaining = st.st_size;
    while (remaining > 0) {
      const size_t want = static_cast<size_t>(
          std::min<off_t>(remaining, static_cast<off_t>(read_buffer_.size())));
      const ssize_t got = ::read(file.get(), read_buffer_.data(), want);
      if (got < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(absl::StrCat("read ", path));
      }
      if (got == 0) {
        return absl::AbortedError(
            absl::StrCat(path, ": shrank while it was being packed"));
      }
      if (archive_write_data(archive_.get(), read_buffer_.data(),
                             static_cast<size_t>(got)) < 0) {
        return ArchiveError(absl::StrCat("write data of ", path));
      }
      remaining -= got;
    }
    return absl::OkStatus();
  }

  absl::Status PackSymlink(int dir_fd, const std::string& name,
                           const std::string& path, const struct stat& st) {
    // st_size is the target's length, but it can change under us: grow the
    // buffer until the target fits with room to spare.
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    for (;;) {
      const ssize_t length =
          ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
      if (length < 0) {
        if (errno == ENOENT) return Vanished(path);
        if (errno == EINVAL) return Changed(path);
        return ErrnoStatus(absl::StrCat("readlink ", path));
      }
      if (static_cast<size_t>(length) < target.size()) {
        target.resize(static_cast<size_t>(length));
        break;
      }
      target.resize(target.size() * 2);
    }
    return WriteHeader(path, st, AE_IFLNK, 0, target.c_str());
  }

  const ChunkSink& sink_;
  const size_t chunk_size_;
  const bool keep_fifos_;
  ArchivePtr archive_;
  std::string pending_;
  std::vector<char> read_buffer_;
  absl::Status sink_status_;
  bool discard_output_ = false;
  PackResult result_;
};

}  // namespace

absl::StatusOr<PackResult> PackDirectory(const std::string& directory,
                                         const ChunkSink& sink,
                                         size_t chunk_size, bool keep_fifos) {
  if (chunk_size == 0) return absl::InvalidArgumentError("chunk size 0");
  Packer packer(sink, chunk_size, keep_fifos);
  return packer.Pack(directory);
}

}  // namespace corral::cli
