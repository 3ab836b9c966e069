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

// State shared with libarchive's read callback: pulls chunks from the
// caller, hashes and counts them.
struct Input {
  const ChunkReader* next_chunk = nullptr;
  uint64_t max_bytes = 0;
  std::string chunk;
  bool eof = false;
  uint64_t bytes = 0;
  bool over_limit = false;
  // The reader's own failure (a cancelled RPC), reported as is.
  absl::Status reader_status;
  Sha256 sha256;

  // The next non-empty chunk, or nullptr at the end or on an error.
  const std::string* Next() {
    while (!eof) {
      absl::StatusOr<std::optional<std::string>> next = (*next_chunk)();
      if (!next.ok()) {
        reader_status = next.status();
        return nullptr;
      }
      if (!next->has_value()) {
        eof = true;
        break;
      }
      chunk = std::move(**next);
      if (chunk.empty()) continue;
      bytes += chunk.size();
      if (bytes > max_bytes) {
        over_limit = true;
        return nullptr;
      }
      sha256.Update(chunk);
      return &chunk;
    }
    return nullptr;
  }
};

la_ssize_t ReadCallback(struct archive* archive, void* data,
                        const void** buffer) {
  auto* input = static_cast<Input*>(data);
  const std::string* chunk = input->Next();
  if (chunk != nullptr) {
    *buffer = chunk->data();
    return static_cast<la_ssize_t>(chunk->size());
  }
  *buffer = nullptr;
  if (input->eof) return 0;
  archive_set_error(archive, input->over_limit ? EFBIG : EIO, "%s",
                    input->over_limit ? "archive stream over its byte limit"
                                      : "reading the archive stream failed");
  return -1;
}

struct ReadFree {
  void operator()(struct archive* archive) const { archive_read_free(archive); }
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
      : compression_(compression), limits_(limits) {
    input_.next_chunk = &next_chunk;
    // Headers cost up to 2 KiB per entry (tar header, pax header, padding);
    // anything beyond that and the data is not a rootfs.
    input_.max_bytes = limits.max_bytes + limits.max_entries * 2048;
  }

  absl::StatusOr<ExtractStats> Run();

 private:
  absl::Status Open();
  absl::Status HandleEntry(struct archive_entry* entry);
  absl::Status CopyData(std::string_view name, int64_t declared_size);
  // Error from the reading side: the reader's own status, the raw size
  // limit, or a corrupt/truncated archive.
  absl::Status ReadError(std::string_view context);
  absl::Status CheckCompression();

  const Compression compression_;
  const ImportLimits limits_;
  Input input_;
  std::unique_ptr<struct archive, ReadFree> reader_;
  std::unique_ptr<struct archive, WriteFree> writer_;
  // What each extracted path is (S_IFDIR, S_IFREG, S_IFLNK), to refuse
  // paths through symlinks, type changes and dangling hard links before
  // libarchive touches the disk.
  std::unordered_map<std::string, mode_t> types_;
  uint64_t seen_ = 0;
  std::string first_skipped_;
  ExtractStats stats_;
};

absl::Status Extractor::ReadError(std::string_view context) {
  if (!input_.reader_status.ok()) return input_.reader_status;
  if (input_.over_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive is larger than ", input_.max_bytes,
                     " bytes (the byte limit plus headers)"));
  }
  const char* message = archive_error_string(reader_.get());
  return absl::InvalidArgumentError(absl::StrCat(
      "archive is corrupt, truncated or not a tar archive (", Sv(context),
      "): ", message != nullptr ? message : "unknown error"));
}

absl::Status Extractor::Open() {
  reader_.reset(archive_read_new());
  writer_.reset(archive_write_disk_new());
  if (!reader_ || !writer_) return absl::ResourceExhaustedError("libarchive");
  // Only tar (ustar, pax, GNU tar, v7) and three filters: most libarchive
  // CVEs are in formats a rootfs never needs.
  if (archive_read_support_format_tar(reader_.get()) != ARCHIVE_OK) {
    return absl::InternalError("libarchive lacks tar support");
  }
  using Support = int (*)(struct archive*);
  std::vector<std::pair<const char*, Support>> filters;
  if (compression_ == Compression::kAuto ||
      compression_ == Compression::kGzip) {
    filters.emplace_back("gzip", archive_read_support_filter_gzip);
  }
  if (compression_ == Compression::kAuto || compression_ == Compression::kXz) {
    filters.emplace_back("xz", archive_read_support_filter_xz);
  }
  if (compression_ == Compression::kAuto ||
      compression_ == Compression::kZstd) {
    filters.emplace_back("zstd", archive_read_support_filter_zstd);
  }
  for (const auto& [name, support] : filters) {
    // ARCHIVE_WARN means "only through an external program": a root daemon
    // must not fork a decompressor on untrusted input.
    if (support(reader_.get()) != ARCHIVE_OK) {
      return absl::UnimplementedError(
          absl::StrCat("libarchive here has no built-in ", name, " support"));
    }
  }
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
  if (archive_read_open(reader_.get(), &input_, nullptr, ReadCallback,
                        nullptr) != ARCHIVE_OK) {
    return ReadError("opening");
  }
  return absl::OkStatus();
}

absl::Status Extractor::CheckCompression() {
  // Filter 0 is the outermost; the last one is the "none" reader of bytes.
  const int count = archive_filter_count(reader_.get());
  if (count > 2) {
    return absl::InvalidArgumentError(
        "archive is compressed more than once; give a tar with at most one "
        "gzip, xz or zstd layer");
  }
  const int code = archive_filter_code(reader_.get(), 0);
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
    const char* name = archive_filter_name(reader_.get(), 0);
    return absl::InvalidArgumentError(
        absl::StrCat("archive compression is ", name != nullptr ? name : "?",
                     ", not the one the request named"));
  }
  return absl::OkStatus();
}

absl::Status Extractor::CopyData(std::string_view name, int64_t declared_size) {
  while (true) {
    const void* buffer = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    const int r =
        archive_read_data_block(reader_.get(), &buffer, &size, &offset);
    if (r == ARCHIVE_EOF) return absl::OkStatus();
    if (r < ARCHIVE_WARN) return ReadError(name);
    // libarchive keeps blocks within the entry's size; checked anyway since
    // the byte limit relies on it.
    if (offset < 0 || static_cast<uint64_t>(offset) + size >
                          static_cast<uint64_t>(declared_size)) {
      return Violation(name, "data beyond the entry's declared size");
    }
    if (archive_write_data_block(writer_.get(), buffer, size, offset) <
        ARCHIVE_OK) {
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
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(entry);
        // Symlink targets are stored as they are (an absolute target is
        // normal in a rootfs); they are never followed while extracting.
        if (target == nullptr || *target == '\0') {
          return Violation(name, "symlink with an empty target");
        }
        if (std::string_view(target).size() > limits_.max_path_length) {
          return Violation(name,
                           absl::StrCat("symlink target is longer than ",
                                        limits_.max_path_length, " bytes"));
        }
        break;
      }
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
    struct archive_entry* entry = nullptr;
    const int r = archive_read_next_header(reader_.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return ReadError("reading an entry header");
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
  while (input_.Next() != nullptr) {
  }
  if (!input_.eof) return ReadError("reading past the end of the archive");
  if (stats_.skipped > 0) {
    Logger("images")->warn(
        "skipped {} device nodes, FIFOs and sockets (first: {})",
        stats_.skipped, first_skipped_);
  }
  stats_.archive_bytes = input_.bytes;
  ASSIGN_OR_RETURN(stats_.archive_sha256, input_.sha256.HexDigest());
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
