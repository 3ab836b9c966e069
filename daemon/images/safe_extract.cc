#include "daemon/images/safe_extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "corral/logging.h"
#include "corral/platform.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"
#include "daemon/images/digest.h"
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

// Opens the directory `path` (clean and relative to the working directory,
// "" for the working directory itself) without following any symlink on
// the way. An invalid fd when it is missing or not a directory.
absl::StatusOr<UniqueFd> OpenDirectoryNoFollow(const std::string& path) {
  UniqueFd dir(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoStatus("open .");
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string component = path.substr(start, end - start);
    start = end + 1;
    UniqueFd next(::openat(dir.get(), component.c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
        return UniqueFd();
      }
      return ErrnoStatus(absl::StrCat("openat ", path));
    }
    dir = std::move(next);
  }
  return dir;
}

std::pair<std::string, std::string> SplitParent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

// The decompression filters a Compression allows.
unsigned FiltersFor(Compression compression) {
  switch (compression) {
    case Compression::kAuto:
      return kTarAnyFilter;
    case Compression::kNone:
      return 0;
    case Compression::kGzip:
      return kTarGzip;
    case Compression::kXz:
      return kTarXz;
    case Compression::kZstd:
      return kTarZstd;
  }
  return 0;
}

// TarStream refused a second compression layer already; this checks the
// one there is against what the request (or the layer's media type) named.
absl::Status CheckCompression(const TarStream& stream,
                              Compression compression) {
  const int code = stream.filter_code();
  int expected = code;
  switch (compression) {
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
        absl::StrCat("archive compression is ", Sv(stream.filter_name()),
                     ", not the one the request named"));
  }
  return absl::OkStatus();
}

// Anything beyond the headers' 2 KiB per entry and the data is not a rootfs;
// only the filters `compression` allows.
TarStreamOptions StreamOptions(Compression compression,
                               const ImportLimits& limits, Sha256* sha256) {
  TarStreamOptions options;
  options.max_raw_bytes = TarRawByteCap(limits.max_bytes, limits.max_entries);
  options.filters = FiltersFor(compression);
  options.over_limit_message =
      "archive is larger than $0 bytes (the byte limit plus headers)";
  options.corrupt_message =
      "archive is corrupt, truncated or not a tar archive ($0): $1";
  if (sha256 != nullptr) {
    options.on_chunk = [sha256](std::string_view chunk) {
      sha256->Update(chunk);
    };
  }
  return options;
}

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// What the tree being built holds at one path.
struct PathInfo {
  // AE_IFDIR, AE_IFREG or AE_IFLNK.
  mode_t type = 0;
  // The layer that wrote it (0 for a single archive).
  uint32_t layer = 0;
  // A directory libarchive made as the parent of an entry, not an entry.
  bool implicit = false;
  // Logical bytes it counted for (regular files).
  uint64_t size = 0;
};

// Writes archives into the working directory of the extraction thread (the
// destination): every path given to libarchive or to the *at calls is
// relative to it. One archive for a rootfs tar, or image layers one after
// the other (`layered`).
class Extractor {
 public:
  Extractor(const ImportLimits& limits, bool layered)
      : limits_(limits), layered_(layered) {}

  absl::StatusOr<ExtractStats> ExtractRootfs(Compression compression,
                                             const ChunkReader& next_chunk);
  absl::Status ApplyLayer(const LayerSource& layer);
  ExtractStats LayeredStats() const;
  void LogSkipped() const;

 private:
  absl::Status ExtractArchive(TarStream& stream, Compression compression);
  // The next header; in layers, a stream that ends inside a block after a
  // complete entry ends the layer.
  absl::StatusOr<struct archive_entry*> NextLayerHeader(TarStream& stream);
  absl::Status HandleEntry(struct archive_entry* entry);
  absl::Status CopyData(std::string_view name, int64_t declared_size);

  // The whiteout pass of a layer.
  absl::Status ApplyWhiteouts(TarStream& stream, Compression compression);
  absl::Status Whiteout(const std::string& path);
  absl::Status MakeOpaque(const std::string& dir);
  // True when a proper prefix of `path` is not a directory in the tree: then
  // nothing can be at `path`, and nothing may be removed through it.
  bool UnderNonDirectory(const std::string& path) const;
  // Removes `path` from the disk (fd-relative, never following a symlink)
  // and from the tree, with all it contains.
  absl::Status Remove(const std::string& path);
  // Removes what directory `dir` ("" = the root) contains.
  absl::Status RemoveChildren(const std::string& dir);
  void ForgetChildren(const std::string& dir);
  void RecordParents(const std::string& path);

  const ImportLimits limits_;
  const bool layered_;
  // The archive being read and the disk writer for it.
  TarStream* stream_ = nullptr;
  std::unique_ptr<struct archive, WriteFree> writer_;
  // The layer's stream ended right after an entry's data.
  bool layer_ended_ = false;
  // The current layer, from 1 (0 for a single archive).
  uint32_t layer_ = 0;
  // What each path in the tree is, to refuse paths through symlinks, type
  // changes and dangling hard links before libarchive touches the disk. A
  // std::map: a removed directory's subtree is one range of keys.
  std::map<std::string, PathInfo> tree_;
  uint64_t seen_ = 0;
  std::string first_skipped_;
  ExtractStats stats_;
};

absl::Status Extractor::ExtractArchive(TarStream& stream,
                                       Compression compression) {
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
  RETURN_IF_ERROR(stream.Open("opening"));
  stream_ = &stream;
  layer_ended_ = false;
  bool first = true;
  while (true) {
    ASSIGN_OR_RETURN(struct archive_entry * entry, NextLayerHeader(stream));
    if (entry == nullptr) break;
    if (first) {
      RETURN_IF_ERROR(CheckCompression(stream, compression));
      first = false;
    }
    RETURN_IF_ERROR(HandleEntry(entry));
  }
  stream_ = nullptr;
  // Applies the deferred directory modes and times.
  const int closed = archive_write_close(writer_.get());
  if (closed < ARCHIVE_WARN) {
    const char* message = archive_error_string(writer_.get());
    return absl::InternalError(absl::StrCat("finishing extraction: ",
                                            message != nullptr ? message : ""));
  }
  writer_.reset();
  return absl::OkStatus();
}

absl::StatusOr<struct archive_entry*> Extractor::NextLayerHeader(
    TarStream& stream) {
  if (layer_ended_) return nullptr;
  absl::StatusOr<struct archive_entry*> entry =
      stream.NextHeader("reading an entry header", "reading an entry header");
  // A layer may end right after its last entry's data, without padding or
  // end-of-archive blocks (umoci writes such layers; its digest was
  // checked, and containerd and Docker read them). The entry before is
  // complete: a short entry fails while its data is read instead.
  if (!entry.ok() && layered_ && stream.EndedInsideBlock() &&
      stream.raw_bytes() > 0) {
    return nullptr;
  }
  return entry;
}

absl::Status Extractor::CopyData(std::string_view name, int64_t declared_size) {
  uint64_t received = 0;
  while (true) {
    absl::StatusOr<std::optional<TarDataBlock>> next =
        stream_->NextDataBlock(name);
    if (!next.ok() && layered_ && stream_->EndedInsideBlock() &&
        received == static_cast<uint64_t>(declared_size)) {
      // All data came, only the padding after it is missing: the layer
      // ends here (see NextLayerHeader).
      layer_ended_ = true;
      return absl::OkStatus();
    }
    if (!next.ok()) return next.status();
    const std::optional<TarDataBlock>& block = *next;
    if (!block.has_value()) return absl::OkStatus();
    // libarchive keeps blocks within the entry's size; checked anyway since
    // the byte limit relies on it.
    if (block->offset < 0 ||
        static_cast<uint64_t>(block->offset) + block->data.size() >
            static_cast<uint64_t>(declared_size)) {
      return Violation(name, "data beyond the entry's declared size");
    }
    received = std::max<uint64_t>(
        received, static_cast<uint64_t>(block->offset) + block->data.size());
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
  if (layered_ &&
      absl::StartsWith(SplitParent(path).second, Sv(kWhiteoutPrefix))) {
    // Applied by the whiteout pass; never part of the result.
    return absl::OkStatus();
  }
  // No component may be a symlink or a non-directory extracted earlier (by
  // any layer): SECURE_SYMLINKS refuses that too, but this names the rule.
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    auto it = tree_.find(path.substr(0, slash));
    if (it == tree_.end()) continue;
    if (it->second.type == AE_IFLNK) {
      return Violation(
          name, absl::StrCat("path goes through the symlink \"",
                             absl::CHexEscape(path.substr(0, slash)), "\""));
    }
    if (it->second.type != AE_IFDIR) {
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
    auto it = tree_.find(target);
    if (target.empty() || it == tree_.end() || it->second.implicit ||
        (it->second.type != AE_IFREG && it->second.type != AE_IFLNK)) {
      return Violation(name,
                       "hard link target is not a file or symlink extracted "
                       "earlier from this archive");
    }
    if (target == path) {
      return Violation(name, "hard link to itself");
    }
    archive_entry_set_hardlink(entry, target.c_str());
    type = it->second.type;
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

  auto existing = tree_.find(path);
  if (existing != tree_.end()) {
    const bool from_lower_layer = layered_ && existing->second.layer != layer_;
    if (existing->second.type != type && !from_lower_layer) {
      return Violation(name, "replaces an earlier entry of another type");
    }
    // A lower layer's entry goes unless a directory merges into another:
    // a file, link or subtree is replaced whole (and a file's hard links
    // keep the old content, as in a union mount).
    if (from_lower_layer &&
        (existing->second.type != AE_IFDIR || type != AE_IFDIR)) {
      RETURN_IF_ERROR(Remove(path));
    }
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
  tree_[path] = PathInfo{type, layer_, false, static_cast<uint64_t>(size)};
  RecordParents(path);
  ++stats_.entries;
  stats_.logical_bytes += static_cast<uint64_t>(size);
  return absl::OkStatus();
}

void Extractor::RecordParents(const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    tree_.try_emplace(path.substr(0, slash),
                      PathInfo{AE_IFDIR, layer_, true, 0});
  }
}

bool Extractor::UnderNonDirectory(const std::string& path) const {
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    auto it = tree_.find(path.substr(0, slash));
    if (it != tree_.end() && it->second.type != AE_IFDIR) return true;
  }
  return false;
}

void Extractor::ForgetChildren(const std::string& dir) {
  if (dir.empty()) {
    tree_.clear();
    return;
  }
  const std::string prefix = dir + "/";
  auto it = tree_.lower_bound(prefix);
  while (it != tree_.end() && absl::StartsWith(it->first, prefix)) {
    it = tree_.erase(it);
  }
}

absl::Status Extractor::Remove(const std::string& path) {
  const auto [parent, base] = SplitParent(path);
  ASSIGN_OR_RETURN(UniqueFd parent_fd, OpenDirectoryNoFollow(parent));
  if (parent_fd)
    RETURN_IF_ERROR(corral::RemoveTreeAt(parent_fd.get(), base, path));
  tree_.erase(path);
  ForgetChildren(path);
  return absl::OkStatus();
}

absl::Status Extractor::RemoveChildren(const std::string& dir) {
  ASSIGN_OR_RETURN(UniqueFd dir_fd, OpenDirectoryNoFollow(dir));
  if (dir_fd) RETURN_IF_ERROR(corral::RemoveContentsAt(dir_fd.get(), dir));
  ForgetChildren(dir);
  return absl::OkStatus();
}

absl::Status Extractor::Whiteout(const std::string& path) {
  // Below a symlink or file of a lower layer there is nothing to hide, and
  // nothing may be removed through it.
  if (UnderNonDirectory(path)) return absl::OkStatus();
  return Remove(path);
}

absl::Status Extractor::MakeOpaque(const std::string& dir) {
  if (!dir.empty()) {
    if (UnderNonDirectory(dir)) return absl::OkStatus();
    auto it = tree_.find(dir);
    if (it != tree_.end() && it->second.type != AE_IFDIR) {
      // The layer has DIR as an (empty, opaque) directory: it replaces the
      // lower file or symlink, and a symlink is never followed to empty it.
      RETURN_IF_ERROR(Remove(dir));
      const auto [parent, base] = SplitParent(dir);
      ASSIGN_OR_RETURN(UniqueFd parent_fd, OpenDirectoryNoFollow(parent));
      if (!parent_fd || ::mkdirat(parent_fd.get(), base.c_str(), 0755) != 0) {
        return ErrnoStatus(absl::StrCat("mkdir ", dir));
      }
      tree_[dir] = PathInfo{AE_IFDIR, layer_, true, 0};
      return absl::OkStatus();
    }
  }
  return RemoveChildren(dir);
}

absl::Status Extractor::ApplyWhiteouts(TarStream& stream,
                                       Compression compression) {
  RETURN_IF_ERROR(stream.Open("opening"));
  layer_ended_ = false;
  uint64_t headers = 0;
  while (true) {
    ASSIGN_OR_RETURN(struct archive_entry * entry, NextLayerHeader(stream));
    if (entry == nullptr) return absl::OkStatus();
    if (headers == 0) RETURN_IF_ERROR(CheckCompression(stream, compression));
    const char* raw_name = archive_entry_pathname(entry);
    if (++headers > limits_.max_entries) {
      return Violation(raw_name != nullptr ? raw_name : "",
                       absl::StrCat("archive has more than ",
                                    limits_.max_entries, " entries"));
    }
    if (raw_name == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("archive entry ", headers, " has no usable path"));
    }
    const std::string name = raw_name;
    ASSIGN_OR_RETURN(std::string path, CleanPath(name, name, "path", limits_));
    const auto [dir, base] = SplitParent(path);
    if (!absl::StartsWith(base, Sv(kWhiteoutPrefix))) continue;
    if (base == kOpaqueMarker) {
      RETURN_IF_ERROR(MakeOpaque(dir));
      continue;
    }
    // Other ".wh..wh." names are aufs bookkeeping, not whiteouts.
    if (absl::StartsWith(base, Sv(kWhiteoutMetaPrefix))) continue;
    const std::string hidden = base.substr(kWhiteoutPrefix.size());
    if (hidden.empty() || hidden == "." || hidden == "..") {
      return Violation(name, "whiteout names no file");
    }
    RETURN_IF_ERROR(Whiteout(dir.empty() ? hidden : dir + "/" + hidden));
  }
}

absl::Status Extractor::ApplyLayer(const LayerSource& layer) {
  ++layer_;
  if (!layer.open) return absl::InternalError("layer without a source");
  {
    ASSIGN_OR_RETURN(ChunkReader reader, layer.open());
    TarStream stream(reader,
                     StreamOptions(layer.compression, limits_, nullptr));
    RETURN_IF_ERROR(ApplyWhiteouts(stream, layer.compression));
  }
  ASSIGN_OR_RETURN(ChunkReader reader, layer.open());
  TarStream stream(reader, StreamOptions(layer.compression, limits_, nullptr));
  return ExtractArchive(stream, layer.compression);
}

ExtractStats Extractor::LayeredStats() const {
  ExtractStats stats = stats_;
  stats.entries = 0;
  stats.logical_bytes = 0;
  for (const auto& [path, info] : tree_) {
    if (info.implicit) continue;
    ++stats.entries;
    stats.logical_bytes += info.size;
  }
  return stats;
}

void Extractor::LogSkipped() const {
  if (stats_.skipped > 0) {
    Logger("images")->warn(
        "skipped {} device nodes, FIFOs and sockets (first: {})",
        stats_.skipped, first_skipped_);
  }
}

absl::StatusOr<ExtractStats> Extractor::ExtractRootfs(
    Compression compression, const ChunkReader& next_chunk) {
  Sha256 sha256;
  TarStream stream(next_chunk, StreamOptions(compression, limits_, &sha256));
  RETURN_IF_ERROR(ExtractArchive(stream, compression));
  if (stats_.entries == 0 && stats_.skipped == 0) {
    return absl::InvalidArgumentError("archive has no entries");
  }
  // The tar end marker may come before the end of the stream (padding):
  // read the rest so that the digest covers the whole file.
  RETURN_IF_ERROR(stream.ReadToEnd());
  LogSkipped();
  stats_.archive_bytes = stream.raw_bytes();
  ASSIGN_OR_RETURN(stats_.archive_sha256, sha256.HexDigest());
  return stats_;
}

// Runs `body` on a helper thread that has its own working directory (the
// destination) and umask (platform::EnterThreadDirectory), so that the relative
// paths and libarchive's umask() probe never touch other threads.
absl::StatusOr<ExtractStats> RunInDirectory(
    const std::filesystem::path& destination,
    const std::function<absl::StatusOr<ExtractStats>()>& body) {
  absl::StatusOr<ExtractStats> result =
      absl::InternalError("extraction thread did not run");
  try {
    std::thread worker([&] {
      UniqueFd dir(::open(destination.c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dir) {
        result = ErrnoStatus(absl::StrCat("open ", destination.string()));
        return;
      }
      if (platform::EnterThreadDirectory(dir.get(), 022) != 0) {
        result = ErrnoStatus(
            absl::StrCat("enter ", destination.string(), " (own directory)"));
        return;
      }
      result = body();
    });
    worker.join();
  } catch (const std::system_error& error) {
    return absl::ResourceExhaustedError(
        absl::StrCat("starting the extraction thread: ", error.what()));
  }
  return result;
}

}  // namespace

absl::StatusOr<ExtractStats> ExtractTar(
    const std::filesystem::path& destination, Compression compression,
    const ChunkReader& next_chunk, const ImportLimits& limits) {
  return RunInDirectory(destination, [&]() -> absl::StatusOr<ExtractStats> {
    Extractor extractor(limits, /*layered=*/false);
    return extractor.ExtractRootfs(compression, next_chunk);
  });
}

absl::StatusOr<ExtractStats> ApplyLayers(
    const std::filesystem::path& destination,
    const std::vector<LayerSource>& layers, const ImportLimits& limits) {
  if (layers.empty()) return absl::InvalidArgumentError("image has no layers");
  return RunInDirectory(destination, [&]() -> absl::StatusOr<ExtractStats> {
    Extractor extractor(limits, /*layered=*/true);
    for (const LayerSource& layer : layers) {
      absl::Status applied = extractor.ApplyLayer(layer);
      if (!applied.ok()) {
        return absl::Status(applied.code(),
                            absl::StrCat(layer.name, ": ", applied.message()));
      }
    }
    extractor.LogSkipped();
    return extractor.LayeredStats();
  });
}

}  // namespace corral::daemon
