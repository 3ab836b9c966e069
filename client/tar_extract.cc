#include "client/tar_extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "corral/platform.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::cli {
namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
// Longest symlink target accepted (PATH_MAX).
constexpr size_t kMaxLinkTargetBytes = 4096;

struct ReadArchiveDeleter {
  void operator()(struct archive* archive) const { archive_read_free(archive); }
};
using ReadArchivePtr = std::unique_ptr<struct archive, ReadArchiveDeleter>;

absl::Status EntryError(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("archive entry '", ShownName(name), "': ", why));
}

// An entry's path as components, with "." and empty components dropped.
// Absolute paths, ".." and over-long names are refused.
absl::StatusOr<std::vector<std::string>> SplitEntryPath(
    absl::string_view path) {
  if (path.size() > kMaxEntryPathBytes) {
    return EntryError(
        path, absl::StrCat("path longer than ", kMaxEntryPathBytes, " bytes"));
  }
  if (!path.empty() && path.front() == '/') {
    return EntryError(path, "absolute path");
  }
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return EntryError(path, "path contains '..'");
    if (part.size() > kMaxNameBytes) {
      return EntryError(
          path, absl::StrCat("a name longer than ", kMaxNameBytes, " bytes"));
    }
    parts.emplace_back(part);
  }
  return parts;
}

std::string JoinPath(const std::vector<std::string>& parts, size_t count) {
  return absl::StrJoin(parts.begin(), parts.begin() + count, "/");
}

// Reads the archive with libarchive and writes each entry through the safe
// path walk below.
class Extractor {
 public:
  Extractor(const ChunkSource& source, int dest_fd, const ExtractLimits& limits)
      : source_(source), dest_fd_(dest_fd), limits_(limits) {}

  absl::StatusOr<ExtractResult> Run() {
    archive_.reset(archive_read_new());
    if (!archive_) return absl::ResourceExhaustedError("archive_read_new");
    // Tar formats only, no decompression: exports are plain pax.
    archive_read_support_format_tar(archive_.get());
    if (archive_read_open(archive_.get(), this, nullptr, &ReadCallback,
                          nullptr) != ARCHIVE_OK) {
      return ArchiveError("open the archive");
    }
    std::set<std::string> top_level;
    for (;;) {
      struct archive_entry* entry = nullptr;
      const int status = archive_read_next_header(archive_.get(), &entry);
      if (status == ARCHIVE_EOF) break;
      if (status < ARCHIVE_WARN) return ArchiveError("read the archive");
      ++result_.entries;
      if (limits_.max_entries != 0 && result_.entries > limits_.max_entries) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the archive has more than ", limits_.max_entries,
                         " entries (raise --max-entries)"));
      }
      const char* raw_name = archive_entry_pathname(entry);
      if (raw_name == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "archive entry ", result_.entries, " has no readable name"));
      }
      const std::string name = raw_name;
      ASSIGN_OR_RETURN(const std::vector<std::string> parts,
                       SplitEntryPath(name));
      if (parts.empty()) continue;  // "." or "./": the root itself
      top_level.insert(parts.front());
      RETURN_IF_ERROR(ExtractEntry(entry, name, parts));
    }
    RETURN_IF_ERROR(FinishDirectories());
    result_.top_level.assign(top_level.begin(), top_level.end());
    return std::move(result_);
  }

 private:
  struct CreatedDir {
    mode_t mode = 0755;
    std::optional<struct timespec> mtime;
  };

  static la_ssize_t ReadCallback(struct archive*, void* client_data,
                                 const void** buffer) {
    auto* self = static_cast<Extractor*>(client_data);
    for (;;) {
      absl::StatusOr<bool> more = self->source_(self->chunk_);
      if (!more.ok()) {
        self->source_status_ = more.status();
        return -1;
      }
      if (!*more) return 0;
      if (self->chunk_.empty()) continue;  // 0 would read as the end
      *buffer = self->chunk_.data();
      return static_cast<la_ssize_t>(self->chunk_.size());
    }
  }

  // A libarchive failure, unless the real cause was the source's.
  absl::Status ArchiveError(absl::string_view what) {
    if (!source_status_.ok()) return source_status_;
    const char* message = archive_error_string(archive_.get());
    return absl::InvalidArgumentError(
        absl::StrCat("cannot ", what, ": ",
                     message != nullptr ? message : "libarchive failed"));
  }

  absl::Status ExtractEntry(struct archive_entry* entry,
                            const std::string& name,
                            const std::vector<std::string>& parts) {
    const char* hardlink = archive_entry_hardlink(entry);
    const mode_t type = archive_entry_filetype(entry);
    if (hardlink == nullptr && type != AE_IFREG && type != AE_IFDIR &&
        type != AE_IFLNK) {
      const char* what = type == AE_IFCHR || type == AE_IFBLK ? "device node"
                         : type == AE_IFIFO                   ? "FIFO"
                         : type == AE_IFSOCK                  ? "socket"
                                                              : "unknown type";
      return EntryError(name, absl::StrCat(what, " refused"));
    }
    ASSIGN_OR_RETURN(const int parent, OpenParent(name, parts));
    const std::string& leaf = parts.back();
    const std::string path = JoinPath(parts, parts.size());
    // Setuid, setgid and sticky bits never survive.
    const mode_t mode = archive_entry_perm(entry) & 0777;

    if (hardlink != nullptr) return MakeHardLink(name, hardlink, parent, leaf);
    switch (type) {
      case AE_IFDIR:
        return MakeDirectory(entry, name, path, parent, leaf, mode);
      case AE_IFLNK:
        return MakeSymlink(entry, name, parent, leaf);
      default:
        RETURN_IF_ERROR(WriteFile(entry, name, parent, leaf, mode));
        regular_files_.insert(path);
        return absl::OkStatus();
    }
  }

  // Opens (creating when missing) every directory above the entry, never
  // following a symlink. The last parent's fd is cached: archives list a
  // directory's files together.
  absl::StatusOr<int> OpenParent(const std::string& name,
                                 const std::vector<std::string>& parts) {
    const std::string parent_path = JoinPath(parts, parts.size() - 1);
    if (parent_fd_ && parent_path == parent_path_) return parent_fd_.get();
    parent_fd_.Reset();
    UniqueFd current;
    int at = dest_fd_;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      UniqueFd next(::openat(at, parts[i].c_str(), kDirFlags));
      if (!next && errno == ENOENT) {
        if (::mkdirat(at, parts[i].c_str(), 0700) != 0 && errno != EEXIST) {
          return EntryError(
              name, ErrnoStatus(absl::StrCat("create directory ",
                                             ShownName(JoinPath(parts, i + 1))))
                        .message());
        }
        created_dirs_.emplace(JoinPath(parts, i + 1), CreatedDir{});
        next.Reset(::openat(at, parts[i].c_str(), kDirFlags));
      }
      if (!next) {
        if (errno == ELOOP || errno == ENOTDIR) {
          return EntryError(
              name, absl::StrCat("path passes through '",
                                 ShownName(JoinPath(parts, i + 1)),
                                 "', which is a symlink or not a directory"));
        }
        return EntryError(
            name, ErrnoStatus(
                      absl::StrCat("open ", ShownName(JoinPath(parts, i + 1))))
                      .message());
      }
      current = std::move(next);
      at = current.get();
    }
    if (!current) {
      // The entry sits at the top: its parent is the destination itself.
      current.Reset(::fcntl(dest_fd_, F_DUPFD_CLOEXEC, 0));
      if (!current) return ErrnoStatus("dup");
    }
    parent_fd_ = std::move(current);
    parent_path_ = parent_path;
    return parent_fd_.get();
  }

  absl::Status MakeDirectory(struct archive_entry* entry,
                             const std::string& name, const std::string& path,
                             int parent, const std::string& leaf, mode_t mode) {
    if (::mkdirat(parent, leaf.c_str(), 0700) == 0) {
      created_dirs_[path] = CreatedDir{};
    } else if (errno == EEXIST) {
      struct stat st;
      if (::fstatat(parent, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISDIR(st.st_mode)) {
        return EntryError(name, "exists and is not a directory");
      }
    } else {
      return EntryError(name, ErrnoStatus("mkdir").message());
    }
    // Directories that were there before keep their mode.
    auto it = created_dirs_.find(path);
    if (it != created_dirs_.end()) {
      it->second.mode = mode;
      if (archive_entry_mtime_is_set(entry)) {
        it->second.mtime = {archive_entry_mtime(entry),
                            archive_entry_mtime_nsec(entry)};
      }
    }
    return absl::OkStatus();
  }

  absl::Status MakeSymlink(struct archive_entry* entry, const std::string& name,
                           int parent, const std::string& leaf) {
    const char* target = archive_entry_symlink(entry);
    if (target == nullptr || *target == '\0') {
      return EntryError(name, "symlink without a target");
    }
    if (strlen(target) > kMaxLinkTargetBytes) {
      return EntryError(name, "symlink target too long");
    }
    // The target is only stored, never followed here: it may point anywhere.
    if (::symlinkat(target, parent, leaf.c_str()) != 0) {
      if (errno == EEXIST) return EntryError(name, "already exists");
      return EntryError(name, ErrnoStatus("symlink").message());
    }
    return absl::OkStatus();
  }

  absl::Status MakeHardLink(const std::string& name, const char* target,
                            int parent, const std::string& leaf) {
    absl::StatusOr<std::vector<std::string>> target_parts =
        SplitEntryPath(target);
    if (!target_parts.ok() || target_parts->empty() ||
        regular_files_.count(JoinPath(*target_parts, target_parts->size())) ==
            0) {
      return EntryError(name,
                        absl::StrCat("hard link to '", ShownName(target),
                                     "', which is not an earlier file of the "
                                     "archive, refused"));
    }
    // The target's directory is walked as safely as any entry's; the parent
    // cache is for the link's own directory, so keep it aside.
    UniqueFd link_parent(::fcntl(parent, F_DUPFD_CLOEXEC, 0));
    if (!link_parent) return ErrnoStatus("dup");
    ASSIGN_OR_RETURN(const int target_parent, OpenParent(name, *target_parts));
    // Without AT_SYMLINK_FOLLOW linkat links the name itself, never a
    // symlink's target.
    if (::linkat(target_parent, target_parts->back().c_str(), link_parent.get(),
                 leaf.c_str(), 0) != 0) {
      if (errno == EEXIST) return EntryError(name, "already exists");
      return EntryError(name, ErrnoStatus("link").message());
    }
    return absl::OkStatus();
  }

  absl::Status WriteFile(struct archive_entry* entry, const std::string& name,
                         int parent, const std::string& leaf, mode_t mode) {
    const int64_t size = archive_entry_size(entry);
    if (limits_.max_bytes != 0 && size > 0 &&
        result_.bytes + static_cast<uint64_t>(size) > limits_.max_bytes) {
      return TooManyBytes();
    }
    // O_EXCL: nothing that exists is ever replaced or written through.
    UniqueFd file(::openat(
        parent, leaf.c_str(),
        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600));
    if (!file) {
      if (errno == EEXIST) return EntryError(name, "already exists");
      return EntryError(name, ErrnoStatus("create").message());
    }
    for (;;) {
      const void* block = nullptr;
      size_t length = 0;
      la_int64_t offset = 0;
      const int status =
          archive_read_data_block(archive_.get(), &block, &length, &offset);
      if (status == ARCHIVE_EOF) break;
      if (status < ARCHIVE_WARN) {
        return ArchiveError(absl::StrCat("read '", ShownName(name), "'"));
      }
      result_.bytes += length;
      if (limits_.max_bytes != 0 && result_.bytes > limits_.max_bytes) {
        return TooManyBytes();
      }
      // Sparse archives give offsets with holes between blocks.
      const char* data = static_cast<const char*>(block);
      while (length > 0) {
        const ssize_t written = ::pwrite(file.get(), data, length, offset);
        if (written < 0) {
          if (errno == EINTR) continue;
          return EntryError(name, ErrnoStatus("write").message());
        }
        data += written;
        offset += written;
        length -= static_cast<size_t>(written);
      }
    }
    // A sparse file may end in a hole.
    if (size > 0 && ::ftruncate(file.get(), size) != 0) {
      return EntryError(name, ErrnoStatus("truncate").message());
    }
    if (::fchmod(file.get(), mode) != 0) {
      return EntryError(name, ErrnoStatus("chmod").message());
    }
    if (archive_entry_mtime_is_set(entry)) {
      const struct timespec times[2] = {
          {0, UTIME_OMIT},
          {archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)}};
      (void)::futimens(file.get(),
                       times);  // a wrong mtime is no reason to fail
    }
    return absl::OkStatus();
  }

  absl::Status TooManyBytes() const {
    return absl::ResourceExhaustedError(
        absl::StrCat("the archive holds more than ", limits_.max_bytes,
                     " bytes of file content (raise --max-bytes)"));
  }

  // Sets the modes of the directories this run created, deepest first so a
  // read-only parent does not stop its children being fixed; again without
  // following symlinks.
  absl::Status FinishDirectories() {
    parent_fd_.Reset();
    for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it) {
      const std::vector<std::string> parts = absl::StrSplit(it->first, '/');
      ASSIGN_OR_RETURN(const int parent, OpenParent(it->first, parts));
      UniqueFd dir(::openat(parent, parts.back().c_str(), kDirFlags));
      if (!dir) {
        return EntryError(it->first, ErrnoStatus("open directory").message());
      }
      if (it->second.mtime) {
        const struct timespec times[2] = {{0, UTIME_OMIT}, *it->second.mtime};
        (void)::futimens(dir.get(), times);
      }
      if (::fchmod(dir.get(), it->second.mode) != 0) {
        return EntryError(it->first, ErrnoStatus("chmod").message());
      }
      // The cached parent may have just become unwritable: fine, nothing is
      // created any more, only opened.
    }
    parent_fd_.Reset();
    return absl::OkStatus();
  }

  const ChunkSource& source_;
  const int dest_fd_;
  const ExtractLimits limits_;
  ReadArchivePtr archive_;
  std::string chunk_;
  absl::Status source_status_;
  ExtractResult result_;
  UniqueFd parent_fd_;
  std::string parent_path_;
  // Relative paths, ordered so that a parent sorts before its children.
  std::map<std::string, CreatedDir> created_dirs_;
  std::unordered_set<std::string> regular_files_;
};

// A fresh directory in `parent_fd` to extract into, so that nothing lands in
// its destination before the whole archive has been read. It is removed with
// whatever is left in it when it goes.
class StagingDir {
 public:
  // A random name; the leading dot keeps it out of casual listings while it
  // exists.
  static absl::StatusOr<std::unique_ptr<StagingDir>> Create(int parent_fd) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      uint64_t random = 0;
      if (!platform::FillRandom(&random, sizeof(random))) {
        return ErrnoStatus("random bytes");
      }
      std::string name = absl::StrFormat(".corral-extract-%016x", random);
      if (::mkdirat(parent_fd, name.c_str(), 0700) != 0) {
        if (errno == EEXIST) continue;
        return ErrnoStatus("create a staging directory");
      }
      UniqueFd fd(::openat(parent_fd, name.c_str(), kDirFlags));
      if (!fd) {
        const int error = errno;
        ::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR);
        return ErrnoStatus("open the staging directory", error);
      }
      return std::unique_ptr<StagingDir>(
          new StagingDir(parent_fd, std::move(name), std::move(fd)));
    }
    return absl::AlreadyExistsError("no free staging directory name");
  }
  ~StagingDir() {
    fd_.Reset();
    (void)RemoveTreeAt(parent_fd_, name_);
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;

  int fd() const { return fd_.get(); }

 private:
  StagingDir(int parent_fd, std::string name, UniqueFd fd)
      : parent_fd_(parent_fd), name_(std::move(name)), fd_(std::move(fd)) {}

  int parent_fd_;
  std::string name_;
  UniqueFd fd_;
};

bool Exists(int dir_fd, const std::string& name) {
  struct stat st;
  return ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// Moves `name` from the staging directory to `to_name` in `to_fd`. Without
// `overwrite` an existing entry is refused (RENAME_NOREPLACE, so there is no
// race); with it the two are swapped (RENAME_EXCHANGE) and the old one, now
// in the staging directory, goes with it.
absl::Status MoveIntoPlace(int staging_fd, const std::string& name, int to_fd,
                           const std::string& to_name, const std::string& shown,
                           bool overwrite) {
  if (platform::RenameNoReplace(staging_fd, name.c_str(), to_fd,
                                to_name.c_str()) == 0) {
    return absl::OkStatus();
  }
  if (errno == EEXIST) {
    if (!overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat(shown, " exists; use --force to replace it"));
    }
    if (platform::RenameExchange(staging_fd, name.c_str(), to_fd,
                                 to_name.c_str()) == 0) {
      return RemoveTreeAt(staging_fd, name);
    }
    if (errno != EINVAL) return ErrnoStatus(absl::StrCat("replace ", shown));
    // No RENAME_EXCHANGE on this file system: move the old one aside first.
    const std::string aside = name + ".old";
    if (::renameat(to_fd, to_name.c_str(), staging_fd, aside.c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("move ", shown, " aside"));
    }
    if (::renameat(staging_fd, name.c_str(), to_fd, to_name.c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("rename into ", shown));
    }
    return RemoveTreeAt(staging_fd, aside);
  }
  if (errno != EINVAL) return ErrnoStatus(absl::StrCat("rename into ", shown));
  // No RENAME_NOREPLACE on this file system: check, then rename.
  if (Exists(to_fd, to_name)) {
    if (!overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat(shown, " exists; use --force to replace it"));
    }
    RETURN_IF_ERROR(RemoveTreeAt(to_fd, to_name));
  }
  if (::renameat(staging_fd, name.c_str(), to_fd, to_name.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("rename into ", shown));
  }
  return absl::OkStatus();
}

// MoveIntoPlace for a top-level entry. Moving a directory to another parent
// needs write permission on it (its ".." changes), which an archive's
// read-only directory lacks: lend it for the move.
absl::Status MoveTopEntry(int staging_fd, const std::string& name, int to_fd,
                          const std::string& to_name, const std::string& shown,
                          bool overwrite) {
  struct stat st;
  const bool lend_write =
      ::fstatat(staging_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISDIR(st.st_mode) && (st.st_mode & S_IWUSR) == 0;
  if (lend_write && ::fchmodat(staging_fd, name.c_str(),
                               (st.st_mode & 0777) | S_IWUSR, 0) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", shown));
  }
  RETURN_IF_ERROR(
      MoveIntoPlace(staging_fd, name, to_fd, to_name, shown, overwrite));
  if (lend_write) {
    UniqueFd dir(::openat(to_fd, to_name.c_str(), kDirFlags));
    if (!dir || ::fchmod(dir.get(), st.st_mode & 0777) != 0) {
      return ErrnoStatus(absl::StrCat("chmod ", shown));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenOrCreateDirectory(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd) return fd;
  if (errno != ENOENT) return ErrnoStatus(absl::StrCat("open ", path));
  // Create it and its missing parents (the user named this path).
  std::string prefix;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    prefix += std::string(part);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0755) != 0 &&
        errno != EEXIST) {
      return ErrnoStatus(absl::StrCat("create ", prefix));
    }
    prefix += '/';
  }
  fd.Reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
  return fd;
}

// "dir/name" -> ("dir", "name"); "name" -> (".", "name"). Trailing slashes
// are dropped.
absl::StatusOr<std::pair<std::string, std::string>> SplitTarget(
    std::string target) {
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  const size_t slash = target.rfind('/');
  std::string parent = slash == std::string::npos ? "."
                       : slash == 0               ? "/"
                                                  : target.substr(0, slash);
  std::string base =
      slash == std::string::npos ? target : target.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("'", target, "' does not name a file to create"));
  }
  return std::make_pair(std::move(parent), std::move(base));
}

// Where `cp` puts a download: the open parent directory and the new name.
struct CopyTarget {
  UniqueFd parent;
  std::string name;
};

// Opens the parent of `target`; without `overwrite`, fails when the target
// exists.
absl::StatusOr<CopyTarget> OpenCopyTarget(const std::string& target,
                                          bool overwrite) {
  ASSIGN_OR_RETURN(auto split, SplitTarget(target));
  UniqueFd parent(
      ::open(split.first.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent) return ErrnoStatus(absl::StrCat("open ", split.first));
  if (!overwrite && Exists(parent.get(), split.second)) {
    return absl::AlreadyExistsError(
        absl::StrCat(target, " exists; use --force to replace it"));
  }
  return CopyTarget{std::move(parent), std::move(split.second)};
}

}  // namespace

std::string ShownName(absl::string_view name) {
  constexpr size_t kShown = 200;
  std::string out;
  for (size_t i = 0; i < name.size() && i < kShown; ++i) {
    const unsigned char byte = static_cast<unsigned char>(name[i]);
    if (byte < 0x20 || byte == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", byte);
    } else {
      out += static_cast<char>(byte);
    }
  }
  if (name.size() > kShown) {
    absl::StrAppend(&out, "... (", name.size(), " bytes)");
  }
  return out;
}

absl::Status RemoveTreeAt(int dir_fd, const std::string& name) {
  if (::unlinkat(dir_fd, name.c_str(), 0) == 0 || errno == ENOENT) {
    return absl::OkStatus();
  }
  if (errno != EISDIR && errno != EPERM) {
    return ErrnoStatus(absl::StrCat("remove ", ShownName(name)));
  }
  UniqueFd dir(::openat(dir_fd, name.c_str(), kDirFlags));
  if (!dir) return ErrnoStatus(absl::StrCat("open ", ShownName(name)));
  // A read-only directory (from an archive's modes) must still be emptied.
  (void)::fchmod(dir.get(), 0700);
  const int dup_fd = ::fcntl(dir.get(), F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return ErrnoStatus("dup");
  DIR* listing = ::fdopendir(dup_fd);
  if (listing == nullptr) {
    ::close(dup_fd);
    return ErrnoStatus(absl::StrCat("list ", ShownName(name)));
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(listing, &::closedir);
  std::vector<std::string> children;
  while (const struct dirent* child = ::readdir(listing)) {
    const absl::string_view child_name = child->d_name;
    if (child_name == "." || child_name == "..") continue;
    children.emplace_back(child_name);
  }
  for (const std::string& child : children) {
    RETURN_IF_ERROR(RemoveTreeAt(dir.get(), child));
  }
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("remove ", ShownName(name)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExtractResult> ExtractTarAt(const ChunkSource& source,
                                           int dest_fd,
                                           const ExtractLimits& limits) {
  Extractor extractor(source, dest_fd, limits);
  return extractor.Run();
}

absl::StatusOr<ExtractResult> ExtractIntoDirectory(
    const ChunkSource& source, const std::string& dest, bool overwrite,
    const ExtractLimits& limits) {
  ASSIGN_OR_RETURN(const UniqueFd dest_fd, OpenOrCreateDirectory(dest));
  ASSIGN_OR_RETURN(const std::unique_ptr<StagingDir> staging,
                   StagingDir::Create(dest_fd.get()));
  ASSIGN_OR_RETURN(ExtractResult result,
                   ExtractTarAt(source, staging->fd(), limits));
  // Check every name before moving any, so a refusal leaves DEST untouched.
  if (!overwrite) {
    for (const std::string& name : result.top_level) {
      if (Exists(dest_fd.get(), name)) {
        return absl::AlreadyExistsError(absl::StrCat(
            dest, "/", ShownName(name), " exists; use --force to replace it"));
      }
    }
  }
  for (const std::string& name : result.top_level) {
    RETURN_IF_ERROR(MoveTopEntry(staging->fd(), name, dest_fd.get(), name,
                                 absl::StrCat(dest, "/", ShownName(name)),
                                 overwrite));
  }
  return result;
}

absl::Status CheckCopyTarget(const std::string& target, bool overwrite) {
  return OpenCopyTarget(target, overwrite).status();
}

absl::StatusOr<ExtractResult> ExtractAsPath(const ChunkSource& source,
                                            const std::string& target,
                                            bool overwrite,
                                            const ExtractLimits& limits) {
  ASSIGN_OR_RETURN(const CopyTarget copy_target,
                   OpenCopyTarget(target, overwrite));
  ASSIGN_OR_RETURN(const std::unique_ptr<StagingDir> staging,
                   StagingDir::Create(copy_target.parent.get()));
  ASSIGN_OR_RETURN(ExtractResult result,
                   ExtractTarAt(source, staging->fd(), limits));
  if (result.top_level.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected one top-level entry in the archive, got ",
                     result.top_level.size()));
  }
  RETURN_IF_ERROR(MoveTopEntry(staging->fd(), result.top_level.front(),
                               copy_target.parent.get(), copy_target.name,
                               target, overwrite));
  return result;
}

}  // namespace corral::cli
