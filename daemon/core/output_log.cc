#include "daemon/core/output_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

namespace corral::daemon {
namespace {

// File layout: the magic, then records. A record is a header (data length
// u32, stream u8, offset u64, stream offset u64; little-endian) and the
// data. Only whole records count: a daemon killed mid-write leaves a torn
// last record, which loading cuts off.
constexpr char kMagic[8] = {'C', 'O', 'R', 'R', 'A', 'L', 'O', '1'};
constexpr size_t kRecordHeader = 4 + 1 + 8 + 8;
constexpr size_t kMaxRecordData = 4u << 20;
// Pieces grow by appends of the same stream up to this size.
constexpr size_t kMaxPieceBytes = 64u << 10;

void PutLe(uint64_t value, int bytes, char* out) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>(value >> (8 * i));
}

uint64_t GetLe(const char* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  }
  return value;
}

absl::Status Errno(const char* what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const struct iovec* parts, int count) {
  std::vector<struct iovec> left(parts, parts + count);
  size_t first = 0;
  while (first < left.size()) {
    ssize_t n = ::writev(fd, left.data() + first,
                         static_cast<int>(left.size() - first));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(std::strerror(errno));
    }
    size_t done = static_cast<size_t>(n);
    while (first < left.size() && done >= left[first].iov_len) {
      done -= left[first].iov_len;
      ++first;
    }
    if (first < left.size()) {
      left[first].iov_base = static_cast<char*>(left[first].iov_base) + done;
      left[first].iov_len -= done;
    }
  }
  return absl::OkStatus();
}

absl::Status WritePiece(int fd, const OutputLog::Piece& piece,
                        std::string_view data) {
  char header[kRecordHeader];
  PutLe(data.size(), 4, header);
  PutLe(static_cast<uint64_t>(piece.stream), 1, header + 4);
  PutLe(piece.offset, 8, header + 5);
  PutLe(piece.stream_offset, 8, header + 13);
  struct iovec parts[2] = {
      {header, sizeof(header)},
      {const_cast<char*>(data.data()), data.size()},
  };
  return WriteAll(fd, parts, 2);
}

}  // namespace

absl::StatusOr<std::unique_ptr<OutputLog>> OutputLog::Open(
    const std::string& path, OutputLimits limits) {
  auto log = std::make_unique<OutputLog>(limits);
  log->path_ = path;
  log->fd_.Reset(::open(path.c_str(),
                        O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                        0600));
  if (!log->fd_) return Errno("cannot open", path);
  RETURN_IF_ERROR(log->Load());
  return log;
}

absl::Status OutputLog::Load() {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return Errno("cannot stat", path_);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, " is not a regular file"));
  }
  std::string content(static_cast<size_t>(st.st_size), '\0');
  size_t have = 0;
  while (have < content.size()) {
    ssize_t n = ::pread(fd_.get(), content.data() + have, content.size() - have,
                        static_cast<off_t>(have));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("cannot read", path_);
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  content.resize(have);
  size_t valid = 0;
  if (content.size() >= sizeof(kMagic) &&
      std::memcmp(content.data(), kMagic, sizeof(kMagic)) == 0) {
    valid = sizeof(kMagic);
    while (content.size() - valid >= kRecordHeader) {
      const char* header = content.data() + valid;
      const uint64_t size = GetLe(header, 4);
      const int stream = static_cast<int>(GetLe(header + 4, 1));
      const uint64_t offset = GetLe(header + 5, 8);
      const uint64_t stream_offset = GetLe(header + 13, 8);
      if (size == 0 || size > kMaxRecordData || (stream != 1 && stream != 2) ||
          content.size() - valid - kRecordHeader < size || offset < end_ ||
          stream_offset < stream_end(stream)) {
        break;  // torn or damaged: everything from here on is dropped
      }
      std::string_view data(header + kRecordHeader, size);
      // Records are written only as they are appended, so the offsets of a
      // valid file continue exactly where the previous record ended (or
      // jump where output was lost, which Append would also record).
      AppendPiece(stream, offset, stream_offset, data);
      end_ = offset + size;
      stream_end_[stream - 1] = stream_offset + size;
      valid += kRecordHeader + size;
    }
  }
  if (valid < sizeof(kMagic)) {
    // New, or not ours: start over.
    if (::ftruncate(fd_.get(), 0) != 0) return Errno("cannot truncate", path_);
    struct iovec magic = {const_cast<char*>(kMagic), sizeof(kMagic)};
    if (auto s = WriteAll(fd_.get(), &magic, 1); !s.ok()) {
      return absl::InternalError(
          absl::StrCat("cannot write ", path_, ": ", s.message()));
    }
    valid = sizeof(kMagic);
  } else if (valid < content.size() &&
             ::ftruncate(fd_.get(), static_cast<off_t>(valid)) != 0) {
    return Errno("cannot truncate", path_);
  }
  file_bytes_ = valid;
  return absl::OkStatus();
}

absl::Status OutputLog::Append(int stream, uint64_t stream_offset,
                               std::string_view data) {
  if (stream != 2) stream = 1;
  const uint64_t have = stream_end(stream);
  if (stream_offset + data.size() <= have) return absl::OkStatus();
  if (stream_offset < have) {
    data.remove_prefix(static_cast<size_t>(have - stream_offset));
    stream_offset = have;
  }
  end_ += stream_offset - have;  // lost in between: readers see it missed
  const uint64_t offset = end_;
  AppendPiece(stream, offset, stream_offset, data);
  end_ += data.size();
  stream_end_[stream - 1] = stream_offset + data.size();
  if (path_.empty() || file_failed_) return absl::OkStatus();

  Piece record;
  record.offset = offset;
  record.stream_offset = stream_offset;
  record.stream = stream;
  absl::Status status = absl::OkStatus();
  for (size_t done = 0; done < data.size() && status.ok();) {
    const size_t n = std::min(data.size() - done, kMaxRecordData);
    status = WritePiece(fd_.get(), record, data.substr(done, n));
    record.offset += n;
    record.stream_offset += n;
    file_bytes_ += kRecordHeader + n;
    done += n;
  }
  if (status.ok() && file_bytes_ > 2 * limits_.capacity + kMaxPieceBytes) {
    status = Compact();
  }
  if (!status.ok()) {
    file_failed_ = true;
    return absl::InternalError(
        absl::StrCat("cannot write ", path_, ": ", status.message()));
  }
  return absl::OkStatus();
}

void OutputLog::AppendPiece(int stream, uint64_t offset, uint64_t stream_offset,
                            std::string_view data) {
  if (data.empty()) return;
  if (!pieces_.empty()) {
    Piece& last = pieces_.back();
    if (last.stream == stream && last.end() == offset &&
        last.stream_offset + last.data.size() == stream_offset &&
        last.data.size() < kMaxPieceBytes) {
      last.data.append(data);
      bytes_ += data.size();
      Trim();
      return;
    }
  }
  Piece piece;
  piece.offset = offset;
  piece.stream_offset = stream_offset;
  piece.stream = stream;
  piece.data.assign(data);
  bytes_ += data.size();
  pieces_.push_back(std::move(piece));
  Trim();
}

void OutputLog::Trim() {
  while (bytes_ > limits_.capacity && !pieces_.empty()) {
    Piece& first = pieces_.front();
    const size_t excess = bytes_ - limits_.capacity;
    if (first.data.size() <= excess) {
      bytes_ -= first.data.size();
      pieces_.pop_front();
      continue;
    }
    first.data.erase(0, excess);
    first.offset += excess;
    first.stream_offset += excess;
    bytes_ -= excess;
  }
  while (pieces_.size() > limits_.max_pieces) {
    bytes_ -= pieces_.front().data.size();
    pieces_.pop_front();
  }
}

absl::Status OutputLog::Compact() {
  const std::string temp = path_ + ".tmp";
  corral::UniqueFd fd(::open(
      temp.c_str(),
      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_APPEND, 0600));
  if (!fd) return Errno("cannot create", temp);
  struct iovec magic = {const_cast<char*>(kMagic), sizeof(kMagic)};
  absl::Status status = WriteAll(fd.get(), &magic, 1);
  uint64_t size = sizeof(kMagic);
  for (const Piece& piece : pieces_) {
    if (!status.ok()) break;
    status = WritePiece(fd.get(), piece, piece.data);
    size += kRecordHeader + piece.data.size();
  }
  if (status.ok() && ::rename(temp.c_str(), path_.c_str()) != 0) {
    status = Errno("cannot rename over", path_);
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  fd_ = std::move(fd);
  file_bytes_ = size;
  return absl::OkStatus();
}

absl::StatusOr<OutputLog::Slice> OutputLog::Read(uint64_t cursor,
                                                 size_t max_bytes) const {
  if (cursor > end_) {
    return absl::OutOfRangeError(absl::StrCat(
        "cursor ", cursor, " is past the end of the output (", end_, ")"));
  }
  Slice slice;
  slice.offset = cursor;
  slice.next = cursor;
  auto it = std::upper_bound(
      pieces_.begin(), pieces_.end(), cursor,
      [](uint64_t at, const Piece& piece) { return at < piece.end(); });
  if (it == pieces_.end()) {
    // Nothing kept at or after the cursor: it sits at the end, or in bytes
    // lost just before it.
    slice.missed = end_ - cursor;
    slice.offset = slice.next = end_;
    return slice;
  }
  if (it->offset > cursor) {
    slice.missed = it->offset - cursor;
    cursor = it->offset;
  }
  slice.offset = cursor;
  size_t left = max_bytes;
  for (; it != pieces_.end() && left > 0; ++it) {
    // Stop at a hole: the next read reports it.
    if (it->offset > cursor) break;
    const size_t skip = static_cast<size_t>(cursor - it->offset);
    const size_t n = std::min(left, it->data.size() - skip);
    Piece part;
    part.offset = cursor;
    part.stream_offset = it->stream_offset + skip;
    part.stream = it->stream;
    part.data.assign(it->data, skip, n);
    slice.pieces.push_back(std::move(part));
    cursor += n;
    left -= n;
  }
  slice.next = cursor;
  return slice;
}

}  // namespace corral::daemon
