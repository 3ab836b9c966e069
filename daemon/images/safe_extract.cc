#include "daemon/images/safe_extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"
#include "daemon/images/tar_stream.h"

namespace corral::daemon {
namespace {

// Debian's Abseil keeps its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), which does not convert from std::string_view.
absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

// Entry names are bytes from an untrusted archive: escape them in messages.
absl::Status Violation(std::string_view entry, std::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(
      "archive entry \"", absl::CHexEscape(Sv(entry)), "\": ", Sv(rule)));
}

class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new()) {
    ok_ = context_ != nullptr &&
          EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) == 1;
  }
  void Update(std::string_view data) {
    ok_ =
        ok_ && EVP_DigestUpdate(context_.get(), data.data(), data.size()) == 1;
  }
  absl::StatusOr<std::string> HexDigest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (!ok_ || EVP_DigestFinal_ex(context_.get(), digest, &size) != 1) {
      return absl::InternalError("SHA-256 of the archive failed");
    }
    return absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(digest), size));
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> context_;
  bool ok_ = false;
};

struct WriteFree {
  void operator()(struct archive* archive) const {
    archive_write_free(archive);
  }
};

// The clean relative form of an entry path ("./a//b/" -> "a/b"), or the
// rule it breaks. Empty for the archive's root ("./").
absl::StatusOr<std::string> CleanPath(std::string_view entry,
                                      std::string_view path,
                                      std::string_view what,
                                      const ImportLimits& limits) {
  if (path.size() > limits.max_path_length) {
    return Violation(entry, absl::StrCat(Sv(what), " is longer than ",
                                         limits.max_path_length, " bytes"));
  }
  if (!path.empty() && path.front() == '/') {
    return Violation(entry, absl::StrCat(Sv(what), " is an absolute path"));
  }
  std::string clean;
  size_t depth = 0;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view component = path.substr(start, end - start);
    start = end + 1;
    if (component.empty() || component == ".") continue;
    if (component == "..") {
      return Violation(entry,
                       absl::StrCat(Sv(what), " has a \"..\" component"));
    }
    if (++depth > limits.max_depth) {
      return Violation(entry, absl::StrCat(Sv(what), " is deeper than ",
                                           limits.max_depth, " components"));
    }
    if (!clean.empty()) clean += '/';
    clean.append(component);
  }
  return clean;
}

std::string_view TypeName(mode_t type) {
  switch (type) {
    case AE_IFCHR:
      return "character device";
    case AE_IFBLK:
      return "block device";
    case AE_IFIFO:
      return "FIFO";
    case AE_IFSOCK:
      return "socket";
    default:
      return "special file";
  }
}

// Walks one archive. Runs on the extraction thread, whose working directory
// is the destination: every path given to libarchive is relative to it.
class Extractor {
 public:
  Extractor(Compression compression, const ChunkReader& next_chunk,
            const ImportLimits& limits)
      : compression_(compression),
        limits_(limits),
        stream_(next_chunk, StreamOptions(compression, limits, &sha256_)) {}

  absl::StatusOr<ExtractStats> Run();

 private:
  absl::Status Open();
  absl::Status HandleEntry(struct archive_entry* entry);
  absl::Status CopyData(std::string_view name, int64_t declared_size);
  absl::Status CheckCompression();

  // Anything beyond the headers' 2 KiB per entry and the data is not a
  // rootfs; only the filters the request allows.
  static TarStreamOptions StreamOptions(Compression compression,
                                        const ImportLimits& limits,
                                        Sha256* sha256);

  const Compression compression_;
  const ImportLimits limits_;
  // Declared before stream_, which feeds it.
  Sha256 sha256_;
  TarStream stream_;
  std::unique_ptr<struct archive, WriteFree> writer_;
  // What each extracted path is (S_IFDIR, S_IFREG, S_IFLNK), to refuse
  // paths through symlinks, type changes and dangling hard links before
  // libarchive touches the disk.
  std::unordered_map<std::string, mode_t> types_;
  uint64_t seen_ = 0;
  std::string first_skipped_;
  ExtractStats stats_;
};

TarStreamOptions Extractor::StreamOptions(Compression compression,
                                          const ImportLimits& limits,
                                          Sha256* sha256) {
  TarStreamOptions options;
  options.max_raw_bytes = TarRawByteCap(limits.max_bytes, limits.max_entries);
  switch (compression) {
    case Compression::kAuto:
      options.filters = kTarAnyFilter;
      break;
    case Compression::kNone:
      options.filters = 0;
      break;
    case Compression::kGzip:
      options.filters = kTarGzip;
      break;
    case Compression::kXz:
      options.filters = kTarXz;
      break;
    case Compression::kZstd:
      options.filters = kTarZstd;
      break;
  }
  options.over_limit_message =
      "archive is larger than $0 bytes (the byte limit plus headers)";
  options.corrupt_message =
      "archive is corrupt, truncated or not a tar archive ($0): $1";
  options.on_chunk = [sha256](std::string_view chunk) {
    sha256->Update(chunk);
  };
  return options;
}

absl::Status Extractor::Open() {
  writer_.reset(archive_write_disk_new());
  if (!writer_) return absl::ResourceExhaustedError("libarchive");
  // No ARCHIVE_EXTRACT_OWNER (root owns everything), XATTR, ACL or FFLAGS
  // (security.capability would grant file capabilities). PERM keeps modes
  // exactly, without the umask, after HandleEntry stripped the special bits.
  const int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                    ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS |
                    ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_PERM |
                    ARCHIVE_EXTRACT_TIME;
  if (archive_write_disk_set_options(writer_.get(), flags) != ARCHIVE_OK) {
    return absl::InternalError("archive_write_disk_set_options");
  }
  return stream_.Open("opening");
}

// TarStream refused a second layer already; this checks the one there is.
absl::Status Extractor::CheckCompression() {
  const int code = stream_.filter_code();
  int expected = code;
  switch (compression_) {
    case Compression::kAuto:
      return absl::OkStatus();
    case Compression::kNone:
      expected = ARCHIVE_FILTER_NONE;
      break;
    case Compression::kGzip:
      expected = ARCHIVE_FILTER_GZIP;
      break;
    case Compression::kXz:
      expected = ARCHIVE_FILTER_XZ;
      break;
    case Compression::kZstd:
      expected = ARCHIVE_FILTER_ZSTD;
      break;
  }
  if (code != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive compression is ", Sv(stream_.filter_name()),
                     ", not the one the request named"));
  }
  return absl::OkStatus();
}

absl::Status Extractor::CopyData(std::string_view name, int64_t declared_size) {
  while (true) {
    ASSIGN_OR_RETURN(std::optional<TarDataBlock> block,
                     stream_.NextDataBlock(name));
    if (!block.has_value()) return absl::OkStatus();
    // libarchive keeps blocks within the entry's size; checked anyway since
    // the byte limit relies on it.
    if (block->offset < 0 ||
        static_cast<uint64_t>(block->offset) + block->data.size() >
            static_cast<uint64_t>(declared_size)) {
      return Violation(name, "data beyond the entry's declared size");
    }
    if (archive_write_data_block(writer_.get(), block->data.data(),
                                 block->data.size(),
                                 block->offset) < ARCHIVE_OK) {
      const char* message = archive_error_string(writer_.get());
      return absl::InternalError(
          absl::StrCat("writing ", Sv(name), ": ",
                       message != nullptr ? message : "unknown error"));
    }
  }
}

absl::Status Extractor::HandleEntry(struct archive_entry* entry) {
  if (++seen_ > limits_.max_entries) {
    const char* raw = archive_entry_pathname(entry);
    return Violation(raw != nullptr ? raw : "",
                     absl::StrCat("archive has more than ", limits_.max_entries,
                                  " entries"));
  }
  const char* raw_name = archive_entry_pathname(entry);
  if (raw_name == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive entry ", seen_, " has no usable path"));
  }
  const std::string name = raw_name;
  ASSIGN_OR_RETURN(std::string path, CleanPath(name, name, "path", limits_));
  if (path.empty()) {
    // The archive's own root ("./"): the destination already exists.
    return absl::OkStatus();
  }
  // No component may be a symlink or a non-directory extracted earlier:
  // SECURE_SYMLINKS refuses that too, but this names the rule.
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    auto it = types_.find(path.substr(0, slash));
    if (it == types_.end()) continue;
    if (it->second == AE_IFLNK) {
      return Violation(
          name, absl::StrCat("path goes through the symlink \"",
                             absl::CHexEscape(path.substr(0, slash)), "\""));
    }
    if (it->second != AE_IFDIR) {
      return Violation(name,
                       "path goes through a file that is not a directory");
    }
  }

  mode_t type = archive_entry_filetype(entry);
  const char* hardlink = archive_entry_hardlink(entry);
  int64_t size =
      archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
  if (hardlink != nullptr) {
    ASSIGN_OR_RETURN(std::string target,
                     CleanPath(name, hardlink, "hard link target", limits_));
    auto it = types_.find(target);
    if (target.empty() || it == types_.end() ||
        (it->second != AE_IFREG && it->second != AE_IFLNK)) {
      return Violation(name,
                       "hard link target is not a file or symlink extracted "
                       "earlier from this archive");
    }
    if (target == path) {
      return Violation(name, "hard link to itself");
    }
    archive_entry_set_hardlink(entry, target.c_str());
    type = it->second;
  } else {
    switch (type) {
      case AE_IFREG:
      case AE_IFDIR:
        break;
      case AE_IFLNK:
        // Symlink targets are stored as they are (an absolute target is
        // normal in a rootfs); they are never followed while extracting.
        if (auto problem =
                SymlinkTargetProblem(entry, limits_.max_path_length)) {
          return Violation(name, *problem);
        }
        break;
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO:
      case AE_IFSOCK:
        // Rootfs tars commonly carry /dev nodes; a sandbox gets its own /dev.
        if (stats_.skipped++ == 0) {
          first_skipped_ = absl::StrCat(Sv(TypeName(type)), " ", path);
        }
        return absl::OkStatus();
      default:
        return Violation(
            name, absl::StrCat("unsupported entry type 0", absl::Hex(type)));
    }
  }
  if (type != AE_IFREG || hardlink != nullptr) {
    // Only regular files own data; a hard link's bytes belong to its target.
    size = hardlink != nullptr ? std::max<int64_t>(size, 0) : 0;
  }
  if (size < 0) return Violation(name, "negative size");
  if (static_cast<uint64_t>(size) > limits_.max_bytes ||
      stats_.logical_bytes + static_cast<uint64_t>(size) > limits_.max_bytes) {
    return Violation(name, absl::StrCat("files add up to more than the byte "
                                        "limit of ",
                                        limits_.max_bytes, " bytes"));
  }

  auto existing = types_.find(path);
  if (existing != types_.end() && existing->second != type) {
    return Violation(name, "replaces an earlier entry of another type");
  }

  const mode_t perm = archive_entry_perm(entry);
  if ((perm & 07000) != 0) {
    archive_entry_set_perm(entry, perm & 0777);
    ++stats_.stripped_modes;
  }
  archive_entry_set_pathname(entry, path.c_str());
  archive_entry_set_uid(entry, 0);
  archive_entry_set_gid(entry, 0);
  archive_entry_xattr_clear(entry);
  archive_entry_acl_clear(entry);
  archive_entry_set_fflags(entry, 0, 0);

  const int r = archive_write_header(writer_.get(), entry);
  if (r < ARCHIVE_WARN) {
    const char* message = archive_error_string(writer_.get());
    if (archive_errno(writer_.get()) == ENOSPC) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no space left for the image: ", message));
    }
    return Violation(name, message != nullptr ? message : "refused");
  }
  if (type == AE_IFREG && size > 0 && archive_entry_size(entry) > 0) {
    RETURN_IF_ERROR(CopyData(name, size));
  }
  if (archive_write_finish_entry(writer_.get()) < ARCHIVE_WARN) {
    const char* message = archive_error_string(writer_.get());
    return absl::InternalError(
        absl::StrCat("finishing ", Sv(path), ": ", message));
  }
  types_[path] = type;
  ++stats_.entries;
  stats_.logical_bytes += static_cast<uint64_t>(size);
  return absl::OkStatus();
}

absl::StatusOr<ExtractStats> Extractor::Run() {
  RETURN_IF_ERROR(Open());
  bool first = true;
  while (true) {
    ASSIGN_OR_RETURN(struct archive_entry * entry,
                     stream_.NextHeader("reading an entry header",
                                        "reading an entry header"));
    if (entry == nullptr) break;
    if (first) {
      RETURN_IF_ERROR(CheckCompression());
      first = false;
    }
    RETURN_IF_ERROR(HandleEntry(entry));
  }
  if (stats_.entries == 0 && stats_.skipped == 0) {
    return absl::InvalidArgumentError("archive has no entries");
  }
  // Applies the deferred directory modes and times.
  if (archive_write_close(writer_.get()) < ARCHIVE_WARN) {
    const char* message = archive_error_string(writer_.get());
    return absl::InternalError(absl::StrCat("finishing extraction: ",
                                            message != nullptr ? message : ""));
  }
  // The tar end marker may come before the end of the stream (padding):
  // read the rest so that the digest covers the whole file.
  RETURN_IF_ERROR(stream_.ReadToEnd());
  if (stats_.skipped > 0) {
    Logger("images")->warn(
        "skipped {} device nodes, FIFOs and sockets (first: {})",
        stats_.skipped, first_skipped_);
  }
  stats_.archive_bytes = stream_.raw_bytes();
  ASSIGN_OR_RETURN(stats_.archive_sha256, sha256_.HexDigest());
  return stats_;
}

absl::StatusOr<ExtractStats> ExtractOnThisThread(
    const std::filesystem::path& destination, Compression compression,
    const ChunkReader& next_chunk, const ImportLimits& limits) {
  // This thread gets its own working directory and umask, so that the
  // fchdir below and libarchive's umask() probe never touch other threads.
  if (::unshare(CLONE_FS) != 0) return ErrnoStatus("unshare CLONE_FS");
  UniqueFd dir(::open(destination.c_str(),
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return ErrnoStatus(absl::StrCat("open ", destination.string()));
  if (::fchdir(dir.get()) != 0) {
    return ErrnoStatus(absl::StrCat("fchdir ", destination.string()));
  }
  ::umask(022);
  Extractor extractor(compression, next_chunk, limits);
  return extractor.Run();
}

absl::Status RemoveTreeAt(int parent_fd, const std::string& name,
                          const std::string& display) {
  struct stat st {};
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("fstatat ", display));
  }
  if (S_ISDIR(st.st_mode)) {
    const int fd = ::openat(parent_fd, name.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(absl::StrCat("openat ", display));
    // An archive may have made the directory read-only; root ignores that,
    // but a test run as a user does not.
    (void)::fchmod(fd, 0700);
    DIR* raw = ::fdopendir(fd);
    if (raw == nullptr) {
      ::close(fd);
      return ErrnoStatus(absl::StrCat("fdopendir ", display));
    }
    std::unique_ptr<DIR, int (*)(DIR*)> listing(raw, ::closedir);
    // Names first, then removal: unlinking while reading may skip entries.
    std::vector<std::string> children;
    errno = 0;
    while (struct dirent* child = ::readdir(listing.get())) {
      const std::string_view child_name = child->d_name;
      if (child_name == "." || child_name == "..") continue;
      children.emplace_back(child_name);
    }
    if (errno != 0) return ErrnoStatus(absl::StrCat("readdir ", display));
    for (const std::string& child : children) {
      RETURN_IF_ERROR(RemoveTreeAt(::dirfd(listing.get()), child,
                                   absl::StrCat(display, "/", child)));
    }
    listing.reset();
    if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0) {
      return ErrnoStatus(absl::StrCat("rmdir ", display));
    }
    return absl::OkStatus();
  }
  if (::unlinkat(parent_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("unlink ", display));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExtractStats> ExtractTar(
    const std::filesystem::path& destination, Compression compression,
    const ChunkReader& next_chunk, const ImportLimits& limits) {
  absl::StatusOr<ExtractStats> result =
      absl::InternalError("extraction thread did not run");
  try {
    std::thread worker([&] {
      result =
          ExtractOnThisThread(destination, compression, next_chunk, limits);
    });
    worker.join();
  } catch (const std::system_error& error) {
    return absl::ResourceExhaustedError(
        absl::StrCat("starting the extraction thread: ", error.what()));
  }
  return result;
}

absl::Status RemoveTree(const std::filesystem::path& path) {
  const std::filesystem::path parent =
      path.has_parent_path() ? path.parent_path() : ".";
  UniqueFd parent_fd(
      ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("open ", parent.string()));
  }
  return RemoveTreeAt(parent_fd.get(), path.filename().string(), path.string());
}

}  // namespace corral::daemon
