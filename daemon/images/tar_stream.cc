#include "daemon/images/tar_stream.h"

#include <archive.h>
#include <archive_entry.h>

#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"

namespace corral::daemon {
namespace {

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

absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

}  // namespace

uint64_t TarRawByteCap(uint64_t content_bytes, uint64_t entries,
                       uint64_t slack) {
  return SaturatingAdd(
      SaturatingAdd(content_bytes, SaturatingMultiply(entries, 2048)), slack);
}

std::optional<std::string> SymlinkTargetProblem(struct archive_entry* entry,
                                                size_t max_length) {
  const char* target = archive_entry_symlink(entry);
  if (target == nullptr || *target == '\0') {
    return "symlink with an empty target";
  }
  if (std::string_view(target).size() > max_length) {
    return absl::StrCat("symlink target is longer than ", max_length, " bytes");
  }
  return std::nullopt;
}

// Pulls chunks from the caller for libarchive's read callback, counting them
// against the raw cap.
struct TarStream::Input {
  const ChunkReader* next_chunk = nullptr;
  const TarStreamOptions* options = nullptr;
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
      if (bytes > options->max_raw_bytes) {
        over_limit = true;
        return nullptr;
      }
      if (options->on_chunk) options->on_chunk(chunk);
      return &chunk;
    }
    return nullptr;
  }

  static la_ssize_t Read(struct archive* archive, void* data,
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
};

void TarStream::ReadFree::operator()(struct archive* archive) const {
  archive_read_free(archive);
}

TarStream::TarStream(const ChunkReader& next_chunk, TarStreamOptions options)
    : options_(std::move(options)), input_(std::make_unique<Input>()) {
  input_->next_chunk = &next_chunk;
  input_->options = &options_;
}

TarStream::~TarStream() = default;

absl::Status TarStream::Open(std::string_view context) {
  reader_.reset(archive_read_new());
  if (!reader_) return absl::ResourceExhaustedError("archive_read_new");
  if (archive_read_support_format_tar(reader_.get()) != ARCHIVE_OK) {
    return absl::InternalError("libarchive lacks tar support");
  }
  using Support = int (*)(struct archive*);
  const struct {
    TarFilter bit;
    const char* name;
    Support support;
  } filters[] = {
      {kTarGzip, "gzip", archive_read_support_filter_gzip},
      {kTarXz, "xz", archive_read_support_filter_xz},
      {kTarZstd, "zstd", archive_read_support_filter_zstd},
  };
  for (const auto& filter : filters) {
    if ((options_.filters & filter.bit) == 0) continue;
    // ARCHIVE_WARN means "only through an external program".
    if (filter.support(reader_.get()) != ARCHIVE_OK) {
      return absl::UnimplementedError(absl::StrCat(
          "libarchive here has no built-in ", filter.name, " support"));
    }
  }
  if (archive_read_open(reader_.get(), input_.get(), nullptr, &Input::Read,
                        nullptr) != ARCHIVE_OK) {
    return Failure(context);
  }
  return absl::OkStatus();
}

absl::StatusOr<struct archive_entry*> TarStream::NextHeader(
    std::string_view first_context, std::string_view later_context) {
  struct archive_entry* entry = nullptr;
  const int r = archive_read_next_header(reader_.get(), &entry);
  if (r == ARCHIVE_EOF) return nullptr;
  if (r < ARCHIVE_WARN) {
    return Failure(headers_ == 0 ? first_context : later_context);
  }
  // Filter 0 is the outermost; the last one is the "none" reader of bytes.
  if (++headers_ == 1 && archive_filter_count(reader_.get()) > 2) {
    return absl::InvalidArgumentError(
        "archive is compressed more than once; give a tar with at most one "
        "gzip, xz or zstd layer");
  }
  return entry;
}

absl::StatusOr<std::optional<TarDataBlock>> TarStream::NextDataBlock(
    std::string_view context) {
  const void* buffer = nullptr;
  size_t size = 0;
  la_int64_t offset = 0;
  const int r = archive_read_data_block(reader_.get(), &buffer, &size, &offset);
  if (r == ARCHIVE_EOF) return std::nullopt;
  if (r < ARCHIVE_WARN) return Failure(context);
  return TarDataBlock{std::string_view(static_cast<const char*>(buffer), size),
                      static_cast<int64_t>(offset)};
}

absl::Status TarStream::ReadToEnd() {
  while (input_->Next() != nullptr) {
  }
  if (!input_->eof) return Failure("reading past the end of the archive");
  return absl::OkStatus();
}

absl::Status TarStream::Failure(std::string_view context) const {
  if (!input_->reader_status.ok()) return input_->reader_status;
  if (input_->over_limit) {
    return absl::InvalidArgumentError(
        absl::Substitute(options_.over_limit_message, options_.max_raw_bytes));
  }
  const char* message =
      reader_ != nullptr ? archive_error_string(reader_.get()) : nullptr;
  return absl::InvalidArgumentError(
      absl::Substitute(options_.corrupt_message, Sv(context),
                       message != nullptr ? message : "unknown error"));
}

bool TarStream::EndedInsideBlock() const {
  if (!input_->eof || input_->over_limit || !input_->reader_status.ok() ||
      reader_ == nullptr) {
    return false;
  }
  const char* message = archive_error_string(reader_.get());
  // libarchive's words for a short block: "Truncated tar archive" and
  // "Truncated input file (needed 512 bytes, only N available)".
  return message != nullptr &&
         absl::StartsWith(absl::string_view(message), "Truncated");
}

int TarStream::filter_code() const {
  return archive_filter_code(reader_.get(), 0);
}

std::string_view TarStream::filter_name() const {
  const char* name = archive_filter_name(reader_.get(), 0);
  return name != nullptr ? name : "?";
}

uint64_t TarStream::raw_bytes() const { return input_->bytes; }

}  // namespace corral::daemon
