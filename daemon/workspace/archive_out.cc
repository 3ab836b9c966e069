#include "daemon/workspace/archive_out.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

namespace corral::daemon::workspace {
namespace {

using corral::agent::v1::FsEntry;

constexpr size_t kMaxOutputChunk = 1 << 20;

absl::Status BadEntry(std::string_view path, std::string_view reason) {
  return EntryError("exported entry", path, reason);
}

struct EntryFree {
  void operator()(struct archive_entry* entry) const {
    archive_entry_free(entry);
  }
};

}  // namespace

void TarWriter::ArchiveFree::operator()(struct archive* archive) const {
  archive_write_free(archive);
}

TarWriter::TarWriter(std::function<absl::Status(std::string_view)> sink)
    : sink_(std::move(sink)) {}

TarWriter::~TarWriter() {
  discard_output_ = true;
  // Freed here, while the members the write callback uses still exist.
  archive_.reset();
}

long TarWriter::WriteCallback(struct archive* archive, void* self,
                              const void* buffer, size_t length) {
  auto* writer = static_cast<TarWriter*>(self);
  if (writer->discard_output_) return static_cast<long>(length);
  std::string_view data(static_cast<const char*>(buffer), length);
  while (!data.empty()) {
    const size_t piece = std::min(data.size(), kMaxOutputChunk);
    absl::Status status = writer->sink_(data.substr(0, piece));
    if (!status.ok()) {
      writer->sink_status_ = std::move(status);
      archive_set_error(archive, EIO, "the export's receiver failed");
      return -1;
    }
    data.remove_prefix(piece);
  }
  return static_cast<long>(length);
}

absl::Status TarWriter::Fail(absl::Status status) {
  discard_output_ = true;
  if (status_.ok()) status_ = status;
  return status_;
}

absl::Status TarWriter::ArchiveError(std::string_view what) {
  if (!sink_status_.ok()) return Fail(sink_status_);
  const char* message = archive_error_string(archive_.get());
  return Fail(absl::InternalError(absl::StrCat(
      Sv(what), ": ", message != nullptr ? message : "libarchive error")));
}

absl::Status TarWriter::Open() {
  opened_ = true;
  archive_.reset(archive_write_new());
  if (!archive_) return Fail(absl::ResourceExhaustedError("archive_write_new"));
  // pax where ustar cannot say it (long names, large files, fractions of a
  // second), plain ustar headers otherwise; no padding past the end marker
  // beyond whole 512-byte blocks.
  if (archive_write_set_format_pax_restricted(archive_.get()) != ARCHIVE_OK ||
      archive_write_set_bytes_per_block(archive_.get(), 64 * 1024) !=
          ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(archive_.get(), 1) != ARCHIVE_OK) {
    return ArchiveError("setting up the tar writer");
  }
  if (archive_write_open(archive_.get(), this, nullptr, &WriteCallback,
                         nullptr) != ARCHIVE_OK) {
    return ArchiveError("opening the tar writer");
  }
  return absl::OkStatus();
}

absl::Status TarWriter::StartNext(std::string_view when) {
  if (!status_.ok()) return status_;
  if (finished_) return absl::FailedPreconditionError("archive finished");
  if (!opened_) RETURN_IF_ERROR(Open());
  if (remaining_ > 0) {
    return Fail(absl::DataLossError(absl::StrCat(
        "exported entry ", QuotePath(pending_path_), ": ", remaining_, " of ",
        pending_size_, " bytes of data missing ", Sv(when))));
  }
  return absl::OkStatus();
}

absl::Status TarWriter::OnEntry(const FsEntry& entry) {
  RETURN_IF_ERROR(StartNext("before the next entry"));
  const std::string& path = entry.path();
  if (auto problem = PathProblem(path)) return Fail(BadEntry(path, *problem));
  if (auto problem = tree_.PlacementProblem(path)) {
    return Fail(BadEntry(path, *problem));
  }
  std::unique_ptr<struct archive_entry, EntryFree> header(archive_entry_new());
  if (!header) return Fail(absl::ResourceExhaustedError("archive_entry_new"));
  archive_entry_copy_pathname(header.get(), path.c_str());
  switch (entry.type()) {
    case corral::agent::v1::ENTRY_TYPE_REGULAR:
      archive_entry_set_filetype(header.get(), AE_IFREG);
      archive_entry_set_size(header.get(),
                             static_cast<la_int64_t>(entry.size()));
      break;
    case corral::agent::v1::ENTRY_TYPE_DIRECTORY:
      archive_entry_set_filetype(header.get(), AE_IFDIR);
      break;
    case corral::agent::v1::ENTRY_TYPE_SYMLINK: {
      const std::string& target = entry.link_target();
      if (target.empty() || target.size() > kMaxPathBytes ||
          target.find('\0') != std::string::npos) {
        return Fail(BadEntry(path,
                             "symlink target is empty, longer than 4096 "
                             "bytes or holds a NUL byte"));
      }
      archive_entry_set_filetype(header.get(), AE_IFLNK);
      archive_entry_copy_symlink(header.get(), target.c_str());
      break;
    }
    default:
      return Fail(BadEntry(path, absl::StrCat(Sv(EntryTypeName(entry.type())),
                                              " entries cannot be exported")));
  }
  if (entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR &&
      entry.size() > static_cast<uint64_t>(INT64_MAX)) {
    return Fail(BadEntry(path, "impossible size"));
  }
  archive_entry_set_perm(header.get(), entry.mode() & 0777);
  archive_entry_set_uid(header.get(), 0);
  archive_entry_set_gid(header.get(), 0);
  // Floor division: a time before 1970 keeps a non-negative fraction.
  int64_t seconds = entry.mtime_ns() / 1'000'000'000;
  int64_t nanoseconds = entry.mtime_ns() % 1'000'000'000;
  if (nanoseconds < 0) {
    nanoseconds += 1'000'000'000;
    --seconds;
  }
  archive_entry_set_mtime(header.get(), static_cast<time_t>(seconds),
                          static_cast<long>(nanoseconds));
  // ARCHIVE_WARN: a name that is not UTF-8 went out as raw bytes (pax
  // hdrcharset=BINARY), which is what it is.
  if (archive_write_header(archive_.get(), header.get()) < ARCHIVE_WARN) {
    return ArchiveError(
        absl::StrCat("writing the header of ", QuotePath(path)));
  }
  tree_.Record(path, entry.type());
  ++entries_;
  if (entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR) {
    pending_path_ = path;
    pending_size_ = entry.size();
    remaining_ = entry.size();
  } else {
    pending_path_.clear();
    remaining_ = 0;
  }
  return absl::OkStatus();
}

absl::Status TarWriter::OnData(std::string_view data) {
  if (!status_.ok()) return status_;
  if (finished_) return absl::FailedPreconditionError("archive finished");
  if (data.empty()) return absl::OkStatus();
  if (data.size() > remaining_) {
    if (pending_path_.empty() || !opened_) {
      return Fail(absl::InvalidArgumentError(
          "exported data that belongs to no regular file"));
    }
    return Fail(BadEntry(
        pending_path_,
        absl::StrCat("more data than its size of ", pending_size_, " bytes")));
  }
  const la_ssize_t written =
      archive_write_data(archive_.get(), data.data(), data.size());
  if (written < 0 || static_cast<size_t>(written) != data.size()) {
    return ArchiveError(
        absl::StrCat("writing the data of ", QuotePath(pending_path_)));
  }
  remaining_ -= data.size();
  bytes_ += data.size();
  return absl::OkStatus();
}

absl::Status TarWriter::Finish() {
  RETURN_IF_ERROR(StartNext("at the end of the stream"));
  finished_ = true;
  if (archive_write_close(archive_.get()) != ARCHIVE_OK) {
    return ArchiveError("finishing the archive");
  }
  return absl::OkStatus();
}

}  // namespace corral::daemon::workspace
