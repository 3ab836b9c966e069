#include "daemon/workspace/archive_in.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"
#include "daemon/workspace/path_rules.h"

namespace corral::daemon::workspace {
namespace {

using corral::agent::v1::FsEntry;

absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

absl::Status Violation(std::string_view entry, std::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrCat("archive entry ", QuotePath(entry), ": ", Sv(reason)));
}

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b
             ? std::numeric_limits<uint64_t>::max()
             : a + b;
}

uint64_t SaturatingMultiply(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::numeric_limits<uint64_t>::max();
  }
  return a * b;
}

// Pulls chunks from the caller for libarchive's read callback, counting them
// against the raw stream's cap.
struct Input {
  const ChunkReader* next_chunk = nullptr;
  uint64_t max_bytes = 0;
  std::string chunk;
  bool eof = false;
  bool over_limit = false;
  uint64_t bytes = 0;
  // The reader's own failure (a cancelled RPC), returned as is.
  absl::Status reader_status;

  // The next non-empty chunk, or nullptr at the end or on an error.
  const std::string* Next() {
    while (!eof && !over_limit && reader_status.ok()) {
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
      bytes = SaturatingAdd(bytes, chunk.size());
      if (bytes > max_bytes) {
        over_limit = true;
        return nullptr;
      }
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
                    input->over_limit ? "archive over its byte limit"
                                      : "reading the upload failed");
  return -1;
}

struct ReadFree {
  void operator()(struct archive* archive) const { archive_read_free(archive); }
};

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
      : limits_(limits), sink_(sink) {
    input_.next_chunk = &next_chunk;
    input_.max_bytes = SaturatingAdd(
        SaturatingAdd(limits.max_bytes,
                      SaturatingMultiply(limits.max_entries, 2048)),
        1 << 20);
  }

  absl::StatusOr<UploadStats> Run();

 private:
  absl::Status Open();
  absl::Status ReadError(std::string_view context);
  absl::Status HandleEntry(struct archive_entry* entry);
  // Sends exactly `size` bytes of the current entry's data, holes of a
  // sparse file as zeros.
  absl::Status CopyData(std::string_view name, uint64_t size);
  absl::Status SendZeros(uint64_t count);

  const UploadLimits limits_;
  EntrySink& sink_;
  Input input_;
  std::unique_ptr<struct archive, ReadFree> reader_;
  EntryTree tree_;
  uint64_t headers_ = 0;
  UploadStats stats_;
};

absl::Status UploadReader::ReadError(std::string_view context) {
  if (!input_.reader_status.ok()) return input_.reader_status;
  if (input_.over_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive exceeds the limit of ", input_.max_bytes,
                     " raw bytes (the content limit plus headers)"));
  }
  const char* message = archive_error_string(reader_.get());
  return absl::InvalidArgumentError(
      absl::StrCat(Sv(context), ": ",
                   message != nullptr ? message : "unknown libarchive error"));
}

absl::Status UploadReader::Open() {
  reader_.reset(archive_read_new());
  if (!reader_) return absl::ResourceExhaustedError("archive_read_new");
  // Only tar and three filters: most of libarchive's history of CVEs is in
  // formats nobody needs to upload a source tree.
  if (archive_read_support_format_tar(reader_.get()) != ARCHIVE_OK) {
    return absl::InternalError("libarchive lacks tar support");
  }
  using Support = int (*)(struct archive*);
  const std::pair<const char*, Support> filters[] = {
      {"gzip", archive_read_support_filter_gzip},
      {"xz", archive_read_support_filter_xz},
      {"zstd", archive_read_support_filter_zstd},
  };
  for (const auto& [name, support] : filters) {
    // ARCHIVE_WARN means "through an external program": the daemon must
    // not fork a decompressor for untrusted input.
    if (support(reader_.get()) != ARCHIVE_OK) {
      return absl::UnimplementedError(
          absl::StrCat("libarchive here has no built-in ", name, " support"));
    }
  }
  if (archive_read_open(reader_.get(), &input_, nullptr, ReadCallback,
                        nullptr) != ARCHIVE_OK) {
    return ReadError("not a tar archive");
  }
  return absl::OkStatus();
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
  while (true) {
    const void* buffer = nullptr;
    size_t length = 0;
    la_int64_t offset = 0;
    const int r =
        archive_read_data_block(reader_.get(), &buffer, &length, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return ReadError(
          absl::StrCat("archive is corrupt or truncated in ", QuotePath(name)));
    }
    if (offset < 0 || static_cast<uint64_t>(offset) < sent ||
        static_cast<uint64_t>(offset) > size || length > size - offset) {
      return Violation(name, "data blocks outside the file's declared size");
    }
    RETURN_IF_ERROR(SendZeros(static_cast<uint64_t>(offset) - sent));
    std::string_view data(static_cast<const char*>(buffer), length);
    while (!data.empty()) {
      const size_t piece = std::min(data.size(), kMaxChunkBytes);
      RETURN_IF_ERROR(sink_.OnData(data.substr(0, piece)));
      data.remove_prefix(piece);
    }
    sent = static_cast<uint64_t>(offset) + length;
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
  if (auto ancestor = tree_.NonDirectoryAncestor(path)) {
    return Violation(
        name, absl::StrCat("lies beneath the ",
                           Sv(EntryTypeName(tree_.TypeOf(*ancestor))), " ",
                           QuotePath(*ancestor), " of the archive"));
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
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(entry);
        if (target == nullptr || *target == '\0') {
          return Violation(name, "symlink with an empty target");
        }
        if (std::string_view(target).size() > limits_.max_path) {
          return Violation(name, absl::StrCat("symlink target is longer than ",
                                              limits_.max_path, " bytes"));
        }
        out.set_type(corral::agent::v1::ENTRY_TYPE_SYMLINK);
        out.set_link_target(target);
        break;
      }
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
  RETURN_IF_ERROR(Open());
  bool first = true;
  while (true) {
    struct archive_entry* entry = nullptr;
    const int r = archive_read_next_header(reader_.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return ReadError(first ? "not a tar archive"
                             : "archive is corrupt or truncated");
    }
    if (first) {
      // Filter 0 is the outermost; the last one reads the raw bytes.
      if (archive_filter_count(reader_.get()) > 2) {
        return absl::InvalidArgumentError(
            "archive is compressed more than once; give a tar with at most "
            "one gzip, xz or zstd layer");
      }
      first = false;
    }
    RETURN_IF_ERROR(HandleEntry(entry));
  }
  // The end-of-archive marker may come before the end of the stream
  // (padding): read the rest, within the same cap.
  while (input_.Next() != nullptr) {
  }
  if (!input_.eof) return ReadError("reading past the end of the archive");
  stats_.archive_bytes = input_.bytes;
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
