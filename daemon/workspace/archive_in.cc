#include "daemon/workspace/archive_in.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"
#include "daemon/images/tar_stream.h"
#include "daemon/workspace/path_rules.h"

namespace corral::daemon::workspace {
namespace {

using corral::agent::v1::FsEntry;

absl::Status Violation(std::string_view entry, std::string_view reason) {
  return EntryError("archive entry", entry, reason);
}

// Removes the "./" prefixes tar gives entries of an archive made with
// `tar -C dir .`.
std::string_view StripDotSlash(std::string_view path) {
  while (path.size() >= 2 && path.substr(0, 2) == "./") path.remove_prefix(2);
  // "./" itself, and ".//a" which keeps its absolute-looking remainder.
  return path;
}

constexpr char kZeros[kMaxChunkBytes] = {};

class UploadReader {
 public:
  UploadReader(const ChunkReader& next_chunk, const UploadLimits& limits,
               EntrySink& sink)
      : limits_(limits),
        sink_(sink),
        stream_(next_chunk, StreamOptions(limits)) {}

  absl::StatusOr<UploadStats> Run();

 private:
  // The raw stream may hold the content, 2 KiB of headers per entry and
  // 1 MiB more.
  static TarStreamOptions StreamOptions(const UploadLimits& limits);
  absl::Status HandleEntry(struct archive_entry* entry);
  // Sends exactly `size` bytes of the current entry's data, holes of a
  // sparse file as zeros.
  absl::Status CopyData(std::string_view name, uint64_t size);
  absl::Status SendZeros(uint64_t count);

  const UploadLimits limits_;
  EntrySink& sink_;
  TarStream stream_;
  EntryTree tree_;
  uint64_t headers_ = 0;
  UploadStats stats_;
};

TarStreamOptions UploadReader::StreamOptions(const UploadLimits& limits) {
  TarStreamOptions options;
  options.max_raw_bytes =
      TarRawByteCap(limits.max_bytes, limits.max_entries, 1 << 20);
  options.over_limit_message =
      "archive exceeds the limit of $0 raw bytes (the content limit plus "
      "headers)";
  return options;
}

absl::Status UploadReader::SendZeros(uint64_t count) {
  while (count > 0) {
    const size_t piece =
        static_cast<size_t>(std::min<uint64_t>(count, sizeof(kZeros)));
    RETURN_IF_ERROR(sink_.OnData(std::string_view(kZeros, piece)));
    count -= piece;
  }
  return absl::OkStatus();
}

absl::Status UploadReader::CopyData(std::string_view name, uint64_t size) {
  uint64_t sent = 0;
  const std::string context =
      absl::StrCat("archive is corrupt or truncated in ", QuotePath(name));
  while (true) {
    ASSIGN_OR_RETURN(std::optional<TarDataBlock> block,
                     stream_.NextDataBlock(context));
    if (!block.has_value()) break;
    const int64_t offset = block->offset;
    std::string_view data = block->data;
    if (offset < 0 || static_cast<uint64_t>(offset) < sent ||
        static_cast<uint64_t>(offset) > size ||
        data.size() > size - static_cast<uint64_t>(offset)) {
      return Violation(name, "data blocks outside the file's declared size");
    }
    RETURN_IF_ERROR(SendZeros(static_cast<uint64_t>(offset) - sent));
    sent = static_cast<uint64_t>(offset) + data.size();
    while (!data.empty()) {
      const size_t piece = std::min(data.size(), kMaxChunkBytes);
      RETURN_IF_ERROR(sink_.OnData(data.substr(0, piece)));
      data.remove_prefix(piece);
    }
  }
  // A sparse file may end in a hole.
  return SendZeros(size - sent);
}

absl::Status UploadReader::HandleEntry(struct archive_entry* entry) {
  const char* raw_name = archive_entry_pathname(entry);
  if (raw_name == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive entry ", headers_, " has no usable path"));
  }
  const std::string_view name = raw_name;
  if (++headers_ > limits_.max_entries) {
    return Violation(name, absl::StrCat("archive exceeds the limit of ",
                                        limits_.max_entries, " entries"));
  }
  const mode_t file_type = archive_entry_filetype(entry);
  const char* hardlink = archive_entry_hardlink(entry);
  std::string_view path = StripDotSlash(name);
  if (file_type == AE_IFDIR && hardlink == nullptr && path.size() > 1 &&
      path.back() == '/') {
    path.remove_suffix(1);
  }
  // The archive's root: the destination exists already.
  if (path.empty() || path == ".") return absl::OkStatus();
  if (auto problem =
          PathProblem(path, limits_.max_path, limits_.max_component)) {
    return Violation(name, *problem);
  }
  if (auto problem = tree_.PlacementProblem(path)) {
    return Violation(name, absl::StrCat(*problem, " of the archive"));
  }

  FsEntry out;
  out.set_path(std::string(path));
  uint64_t size = 0;
  if (hardlink != nullptr) {
    const std::string_view target = StripDotSlash(hardlink);
    if (auto problem =
            PathProblem(target, limits_.max_path, limits_.max_component)) {
      return Violation(name, absl::StrCat("hard link target: ", *problem));
    }
    if (target == path) return Violation(name, "hard link to itself");
    if (tree_.TypeOf(target) != corral::agent::v1::ENTRY_TYPE_REGULAR) {
      return Violation(name,
                       absl::StrCat("hard link target ", QuotePath(target),
                                    " is not an earlier regular file of the "
                                    "archive"));
    }
    out.set_type(corral::agent::v1::ENTRY_TYPE_HARDLINK);
    out.set_link_target(std::string(target));
  } else {
    switch (file_type) {
      case AE_IFREG: {
        const int64_t declared =
            archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
        if (declared < 0) return Violation(name, "negative size");
        size = static_cast<uint64_t>(declared);
        if (size > limits_.max_bytes ||
            stats_.bytes + size > limits_.max_bytes) {
          return Violation(name, absl::StrCat("archive exceeds the limit of ",
                                              limits_.max_bytes, " bytes"));
        }
        out.set_type(corral::agent::v1::ENTRY_TYPE_REGULAR);
        out.set_size(size);
        break;
      }
      case AE_IFDIR:
        out.set_type(corral::agent::v1::ENTRY_TYPE_DIRECTORY);
        break;
      case AE_IFLNK:
        if (auto problem = SymlinkTargetProblem(entry, limits_.max_path)) {
          return Violation(name, *problem);
        }
        out.set_type(corral::agent::v1::ENTRY_TYPE_SYMLINK);
        out.set_link_target(archive_entry_symlink(entry));
        break;
      case AE_IFCHR:
      case AE_IFBLK:
        return Violation(name, "device nodes are not allowed");
      case AE_IFIFO:
        return Violation(name, "fifos are not allowed");
      case AE_IFSOCK:
        return Violation(name, "sockets are not allowed");
      default:
        return Violation(name, absl::StrCat("unsupported entry type 0",
                                            absl::Hex(file_type)));
    }
  }

  const mode_t permissions = archive_entry_perm(entry);
  if ((permissions & 07000) != 0) ++stats_.stripped_modes;
  out.set_mode(permissions & 0777);
  if (archive_entry_mtime_is_set(entry)) {
    out.set_mtime_ns(static_cast<int64_t>(archive_entry_mtime(entry)) *
                         1'000'000'000 +
                     archive_entry_mtime_nsec(entry));
  }

  RETURN_IF_ERROR(sink_.OnEntry(out));
  tree_.Record(path, out.type());
  ++stats_.entries;
  if (out.type() == corral::agent::v1::ENTRY_TYPE_REGULAR) {
    RETURN_IF_ERROR(CopyData(name, size));
    stats_.bytes += size;
  }
  return absl::OkStatus();
}

absl::StatusOr<UploadStats> UploadReader::Run() {
  RETURN_IF_ERROR(stream_.Open("not a tar archive"));
  while (true) {
    ASSIGN_OR_RETURN(struct archive_entry * entry,
                     stream_.NextHeader("not a tar archive",
                                        "archive is corrupt or truncated"));
    if (entry == nullptr) break;
    RETURN_IF_ERROR(HandleEntry(entry));
  }
  // The end-of-archive marker may come before the end of the stream
  // (padding): read the rest, within the same cap.
  RETURN_IF_ERROR(stream_.ReadToEnd());
  stats_.archive_bytes = stream_.raw_bytes();
  return stats_;
}

}  // namespace

absl::StatusOr<UploadStats> ReadUploadArchive(const ChunkReader& next_chunk,
                                              const UploadLimits& limits,
                                              EntrySink& sink) {
  UploadReader reader(next_chunk, limits, sink);
  return reader.Run();
}

}  // namespace corral::daemon::workspace
