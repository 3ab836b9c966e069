#include "daemon/images/tar_stream.h"

#include <archive_entry.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "corral/platform.h"
#include "corral/spawn_attributes.h"
#include "corral/status_macros.h"
#include "corral/trusted_file.h"
#include "corral/unique_fd.h"
#include "daemon/images/unpack_wire.h"

namespace corral::daemon {
namespace {

namespace wire = unpack;

// How long the decoder may go without taking input or giving output before
// the stream is given up (it has nothing to wait for but us).
constexpr absl::Duration kDecoderStall = absl::Seconds(120);

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

// The decoder's program, opened once (SetTarDecoder).
std::mutex decoder_mutex;
int decoder_fd = -1;  // guarded by decoder_mutex; never closed

absl::Status OpenDecoder(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return ErrnoStatus(absl::StrCat("archive decoder ", path));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("archive decoder ", path, " is not a regular file"));
  }
  RETURN_IF_ERROR(
      CheckTrustedFd(fd.get(), absl::StrCat("archive decoder ", path)));
  decoder_fd = fd.Release();
  return absl::OkStatus();
}

absl::StatusOr<int> DecoderFd() {
  std::lock_guard lock(decoder_mutex);
  if (decoder_fd < 0) {
    const char* path = std::getenv("CORRAL_UNPACK");
    if (path == nullptr || *path == '\0') {
      return absl::FailedPreconditionError(
          "no archive decoder (corral-unpack) is configured");
    }
    RETURN_IF_ERROR(OpenDecoder(path));
  }
  return decoder_fd;
}

// What the decoder said about a failure, as the daemon shows it: no
// control characters, bounded.
std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, wire::kMaxMessageBytes)) {
    out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  }
  return out;
}

}  // namespace

absl::Status SetTarDecoder(const std::string& path) {
  std::lock_guard lock(decoder_mutex);
  if (decoder_fd >= 0) {
    ::close(decoder_fd);
    decoder_fd = -1;
  }
  return OpenDecoder(path);
}

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

// One decoder process and the conversation with it: the raw stream goes in
// through one pipe, frames come back through the other. Everything runs on
// the caller's thread: while the decoder has no frame ready, the next chunk
// is fetched and written to it.
struct TarStream::Decoder {
  platform::VettedChild child;
  UniqueFd to_decoder;    // the decoder's stdin, non-blocking
  UniqueFd from_decoder;  // its stdout, non-blocking

  // Input.
  std::string pending;  // fetched, not yet written
  size_t pending_at = 0;
  bool eof = false;  // the ChunkReader has ended
  bool over_limit = false;
  absl::Status reader_status;  // the ChunkReader's own failure, as is
  uint64_t bytes = 0;

  // Output.
  std::string buffer;  // read, not yet taken as frames
  absl::Status protocol_error;
  bool failed = false;  // a failure frame came
  std::string failure_message;
  bool ended = false;  // the end-of-archive frame came
  bool data_ended = true;
  int filter_code = 0;
  std::string filter_name = "?";
  struct archive_entry* entry = nullptr;  // owned
  std::string data;                       // the current data block

  ~Decoder() {
    if (entry != nullptr) archive_entry_free(entry);
    to_decoder.Reset();
    from_decoder.Reset();
  }

  absl::Status Start(unsigned filters) {
    ASSIGN_OR_RETURN(const int program, DecoderFd());
    int in[2], out[2];
    if (platform::MakePipe(in) != 0) return ErrnoStatus("pipe");
    UniqueFd in_read(in[0]), in_write(in[1]);
    if (platform::MakePipe(out) != 0) return ErrnoStatus("pipe");
    UniqueFd out_read(out[0]), out_write(out[1]);
    // The program checked once, by its fd: nothing can be swapped in.
    const int rc = platform::SpawnVetted(
        program, {"corral-unpack", "--filters", absl::StrCat(filters)},
        in_read.get(), out_write.get(), &child);
    if (rc != 0) return ErrnoStatus("start corral-unpack", rc);
    in_read.Reset();
    out_write.Reset();
    to_decoder = std::move(in_write);
    from_decoder = std::move(out_read);
    for (int fd : {to_decoder.get(), from_decoder.get()}) {
      const int flags = ::fcntl(fd, F_GETFL);
      if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return ErrnoStatus("fcntl O_NONBLOCK");
      }
    }
    entry = archive_entry_new();
    if (entry == nullptr) return absl::ResourceExhaustedError("archive_entry");
    return absl::OkStatus();
  }

  // Fetches the next chunk when none is pending, and writes what it can.
  void Feed(const ChunkReader& next_chunk, const TarStreamOptions& options) {
    if (pending_at == pending.size()) {
      pending.clear();
      pending_at = 0;
      absl::StatusOr<std::optional<std::string>> next = next_chunk();
      if (!next.ok()) {
        reader_status = next.status();
        to_decoder.Reset();
        return;
      }
      if (!next->has_value()) {
        eof = true;
        to_decoder.Reset();  // the decoder sees the end
        return;
      }
      if ((*next)->empty()) return;
      bytes = SaturatingAdd(bytes, (*next)->size());
      if (bytes > options.max_raw_bytes) {
        over_limit = true;
        to_decoder.Reset();
        return;
      }
      if (options.on_chunk) options.on_chunk(**next);
      pending = std::move(**next);
    }
    const ssize_t n = ::write(to_decoder.get(), pending.data() + pending_at,
                              pending.size() - pending_at);
    if (n > 0) {
      pending_at += static_cast<size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      // The decoder went (it reports why, or ended early).
      to_decoder.Reset();
    }
  }

  // The next frame, or nullopt when the conversation is over for a reason
  // Failure() gives (the input failed or passed its cap, the decoder
  // reported a failure, broke its protocol or died).
  std::optional<std::pair<char, std::string>> Next(
      const ChunkReader& next_chunk, const TarStreamOptions& options) {
    absl::Time last_progress = absl::Now();
    for (;;) {
      if (!reader_status.ok() || over_limit || !protocol_error.ok() || failed) {
        return std::nullopt;
      }
      if (buffer.size() >= wire::kFrameHeaderBytes) {
        const uint32_t size = wire::FramePayloadSize(buffer);
        if (size > wire::kMaxPayload) {
          protocol_error = absl::InvalidArgumentError(
              "the archive decoder sent an oversized frame");
          return std::nullopt;
        }
        if (buffer.size() >= wire::kFrameHeaderBytes + size) {
          std::pair<char, std::string> frame(
              buffer[0], buffer.substr(wire::kFrameHeaderBytes, size));
          buffer.erase(0, wire::kFrameHeaderBytes + size);
          if (frame.first == wire::kFailure) {
            wire::PayloadReader reader(frame.second);
            (void)reader.String(&failure_message, wire::kMaxMessageBytes);
            failed = true;
            return std::nullopt;
          }
          return frame;
        }
      }
      if (!from_decoder) {
        protocol_error = absl::InvalidArgumentError(
            "the archive decoder ended without a last frame");
        return std::nullopt;
      }
      pollfd polls[2] = {{from_decoder.get(), POLLIN, 0},
                         {to_decoder.get(), POLLOUT, 0}};
      const int count = to_decoder ? 2 : 1;
      const int wait_ms = static_cast<int>(std::max<int64_t>(
          1, absl::ToInt64Milliseconds(kDecoderStall -
                                       (absl::Now() - last_progress))));
      const int ready = ::poll(polls, count, wait_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) {
        protocol_error = ErrnoStatus("poll the archive decoder");
        return std::nullopt;
      }
      if (ready == 0) {
        protocol_error = absl::DeadlineExceededError(
            absl::StrCat("the archive decoder made no progress for ",
                         absl::FormatDuration(kDecoderStall)));
        return std::nullopt;
      }
      last_progress = absl::Now();
      // Output first: the decoder may be waiting for us to take it.
      if (polls[0].revents != 0) {
        char chunk[64 << 10];
        const ssize_t n = ::read(from_decoder.get(), chunk, sizeof(chunk));
        if (n > 0) {
          buffer.append(chunk, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          from_decoder.Reset();
        }
        continue;
      }
      if (count == 2 && polls[1].revents != 0) Feed(next_chunk, options);
    }
  }
};

TarStream::TarStream(const ChunkReader& next_chunk, TarStreamOptions options)
    : options_(std::move(options)),
      next_chunk_(&next_chunk),
      decoder_(std::make_unique<Decoder>()) {}

TarStream::~TarStream() = default;

absl::Status TarStream::Open(std::string_view context) {
  RETURN_IF_ERROR(decoder_->Start(options_.filters & kTarAnyFilter));
  auto frame = decoder_->Next(*next_chunk_, options_);
  if (!frame) return Failure(context);
  wire::PayloadReader reader(frame->second);
  uint32_t code = 0;
  if (frame->first != wire::kOpened || !reader.U32(&code) ||
      !reader.String(&decoder_->filter_name, 64) || !reader.empty()) {
    decoder_->protocol_error =
        absl::InvalidArgumentError("the archive decoder broke its protocol");
    return Failure(context);
  }
  decoder_->filter_code = static_cast<int>(code);
  return absl::OkStatus();
}

absl::StatusOr<struct archive_entry*> TarStream::NextHeader(
    std::string_view first_context, std::string_view later_context) {
  const std::string_view context =
      headers_ == 0 ? first_context : later_context;
  Decoder& d = *decoder_;
  if (d.ended) return nullptr;
  for (;;) {
    auto frame = d.Next(*next_chunk_, options_);
    if (!frame) return Failure(context);
    switch (frame->first) {
      case wire::kData:
      case wire::kEndOfData:
        continue;  // the data of an entry the caller skipped
      case wire::kEndOfArchive:
        d.ended = true;
        return nullptr;
      case wire::kCompressedTwice:
        return absl::InvalidArgumentError(
            "archive is compressed more than once; give a tar with at most "
            "one gzip, xz or zstd layer");
      case wire::kHeader: {
        wire::EntryHeader header;
        if (!wire::DecodeHeader(frame->second, &header)) break;
        archive_entry_clear(d.entry);
        archive_entry_set_filetype(d.entry, header.file_type);
        archive_entry_set_perm(d.entry, header.permissions);
        if (header.size) archive_entry_set_size(d.entry, *header.size);
        if (header.mtime_seconds) {
          archive_entry_set_mtime(d.entry, *header.mtime_seconds,
                                  static_cast<long>(header.mtime_nanoseconds));
        }
        if (header.path)
          archive_entry_copy_pathname(d.entry, header.path->c_str());
        if (header.hardlink) {
          archive_entry_copy_hardlink(d.entry, header.hardlink->c_str());
        }
        if (header.symlink) {
          archive_entry_copy_symlink(d.entry, header.symlink->c_str());
        }
        d.data_ended = false;
        ++headers_;
        return d.entry;
      }
      default:
        break;
    }
    d.protocol_error =
        absl::InvalidArgumentError("the archive decoder broke its protocol");
    return Failure(context);
  }
}

absl::StatusOr<std::optional<TarDataBlock>> TarStream::NextDataBlock(
    std::string_view context) {
  Decoder& d = *decoder_;
  if (d.data_ended) return std::nullopt;
  auto frame = d.Next(*next_chunk_, options_);
  if (!frame) return Failure(context);
  switch (frame->first) {
    case wire::kEndOfData:
      d.data_ended = true;
      return std::nullopt;
    case wire::kData: {
      wire::PayloadReader reader(frame->second);
      int64_t offset = 0;
      if (!reader.I64(&offset) || offset < 0) break;
      d.data.assign(reader.rest());
      return TarDataBlock{d.data, offset};
    }
    default:
      break;
  }
  d.protocol_error =
      absl::InvalidArgumentError("the archive decoder broke its protocol");
  return Failure(context);
}

absl::Status TarStream::ReadToEnd() {
  Decoder& d = *decoder_;
  // The decoder reads the input to its end before it says the archive
  // ended; the caller may not have asked for the end yet.
  while (!d.ended) {
    auto frame = d.Next(*next_chunk_, options_);
    if (!frame) return Failure("reading past the end of the archive");
    if (frame->first == wire::kEndOfArchive) d.ended = true;
  }
  if (!d.eof) return Failure("reading past the end of the archive");
  return absl::OkStatus();
}

absl::Status TarStream::Failure(std::string_view context) const {
  const Decoder& d = *decoder_;
  if (!d.reader_status.ok()) return d.reader_status;
  if (d.over_limit) {
    return absl::InvalidArgumentError(
        absl::Substitute(options_.over_limit_message, options_.max_raw_bytes));
  }
  if (!d.protocol_error.ok()) return d.protocol_error;
  const std::string message =
      d.failed ? Printable(d.failure_message) : "unknown error";
  return absl::InvalidArgumentError(
      absl::Substitute(options_.corrupt_message, Sv(context), message));
}

bool TarStream::EndedInsideBlock() const {
  const Decoder& d = *decoder_;
  if (!d.eof || d.over_limit || !d.reader_status.ok() || !d.failed) {
    return false;
  }
  // libarchive's words for a short block: "Truncated tar archive" and
  // "Truncated input file (needed 512 bytes, only N available)".
  return absl::StartsWith(d.failure_message, "Truncated");
}

int TarStream::filter_code() const { return decoder_->filter_code; }

std::string_view TarStream::filter_name() const {
  return decoder_->filter_name;
}

uint64_t TarStream::raw_bytes() const { return decoder_->bytes; }

}  // namespace corral::daemon
