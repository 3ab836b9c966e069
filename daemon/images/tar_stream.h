// The reading side of an untrusted tar stream that both image imports
// (daemon/images) and workspace uploads (daemon/workspace) share: tar alone
// with built-in gzip/xz/zstd filters, fed by a ChunkReader, with a cap on
// the raw bytes that stops compression bombs. What the entries may be is
// the caller's business.
//
// The decoding never happens in this process: each stream is decoded by a
// corral-unpack process (unpack_main.cc: libarchive, as nobody, no
// privileges, a seccomp filter that allows little but read and write),
// which this class feeds the raw bytes and whose frames (unpack_wire.h) it
// reads back with every length checked. A decoder bug cannot run code in
// the root daemon; a compromised decoder can only lie about the archive,
// which every caller checks as hostile anyway.
#ifndef CORRAL_DAEMON_IMAGES_TAR_STREAM_H_
#define CORRAL_DAEMON_IMAGES_TAR_STREAM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct archive;
struct archive_entry;

namespace corral::daemon {

// Returns the next chunk of a byte stream, std::nullopt at its end, or an
// error (which aborts the reader with that error).
using ChunkReader = std::function<absl::StatusOr<std::optional<std::string>>()>;

// The corral-unpack program every TarStream runs. Called once at start,
// before any stream (the daemon: beside corrald). The file is opened once
// and checked (a regular file; when the daemon runs as root, owned by root
// and not writable by group or others: it starts as root) and executed from
// that fd. Without a call, $CORRAL_UNPACK names it (tests).
[[nodiscard]] absl::Status SetTarDecoder(const std::string& path);

// The most raw bytes a tar of `entries` entries holding `content_bytes` of
// file data may take: 2 KiB of headers per entry (tar header, pax header,
// padding) plus `slack`; saturates instead of overflowing.
[[nodiscard]] uint64_t TarRawByteCap(uint64_t content_bytes, uint64_t entries,
                                     uint64_t slack = 0);

// Why a symlink entry's target is unusable (empty, or longer than
// `max_length` bytes), or nullopt. Targets are kept as they are otherwise:
// they are never followed while reading.
[[nodiscard]] std::optional<std::string> SymlinkTargetProblem(
    struct archive_entry* entry, size_t max_length);

// Decompression filters a TarStream may use, as bits.
enum TarFilter : unsigned {
  kTarGzip = 1u << 0,
  kTarXz = 1u << 1,
  kTarZstd = 1u << 2,
  kTarAnyFilter = kTarGzip | kTarXz | kTarZstd,
};

struct TarStreamOptions {
  // Raw (possibly compressed) bytes the stream may have, padding included.
  uint64_t max_raw_bytes = 0;
  // TarFilter bits: the filters libarchive may detect.
  unsigned filters = kTarAnyFilter;
  // The INVALID_ARGUMENT messages of a failed read, for absl::Substitute:
  // over the raw cap ($0 = max_raw_bytes), and libarchive's own failure
  // ($0 = what was being read, $1 = libarchive's message).
  absl::string_view over_limit_message =
      "archive exceeds the limit of $0 raw bytes";
  absl::string_view corrupt_message = "$0: $1";
  // Sees every chunk within the cap, in order (e.g. to hash the stream).
  std::function<void(std::string_view)> on_chunk;
};

// One block of an entry's data as libarchive returns it: `offset` is where
// it starts in the file (sparse files skip their holes).
struct TarDataBlock {
  std::string_view data;
  int64_t offset = 0;
};

// A libarchive reader of one tar stream. Not copyable; the ChunkReader must
// outlive it.
class TarStream {
 public:
  TarStream(const ChunkReader& next_chunk, TarStreamOptions options);
  ~TarStream();
  TarStream(const TarStream&) = delete;
  TarStream& operator=(const TarStream&) = delete;

  // Starts the decoder (tar formats only: most of libarchive's history of
  // CVEs is in formats nobody needs here; filters only built in, never an
  // external decompressor run on untrusted input) and waits until it has
  // opened the stream. A failure to start reads as Failure(context).
  [[nodiscard]] absl::Status Open(std::string_view context);

  // The next entry's header, nullptr at the end of the archive, or
  // Failure(first_context) for the first header (the stream may be no tar
  // at all) and Failure(later_context) after it. With the first header, an
  // archive compressed more than once is refused.
  [[nodiscard]] absl::StatusOr<struct archive_entry*> NextHeader(
      std::string_view first_context, std::string_view later_context);

  // The current entry's next data block, std::nullopt after its last one,
  // or Failure(context).
  [[nodiscard]] absl::StatusOr<std::optional<TarDataBlock>> NextDataBlock(
      std::string_view context);

  // Reads what follows the end-of-archive marker (padding), within the same
  // cap, so that raw_bytes() and on_chunk cover the whole stream.
  [[nodiscard]] absl::Status ReadToEnd();

  // Why the last libarchive call failed: the chunk reader's own error as is,
  // else over_limit_message when over the cap, else corrupt_message.
  [[nodiscard]] absl::Status Failure(std::string_view context) const;

  // True when the last read failed only because the stream ended inside a
  // 512-byte block, with the whole input read: a writer left out the last
  // entry's padding or the end-of-archive blocks (umoci's layers do; Go's
  // tar reader accepts that). Callers decide whether to accept it after a
  // complete entry.
  [[nodiscard]] bool EndedInsideBlock() const;

  // The outermost filter's ARCHIVE_FILTER_* code and name (after a header).
  [[nodiscard]] int filter_code() const;
  [[nodiscard]] std::string_view filter_name() const;

  // Raw bytes read so far.
  [[nodiscard]] uint64_t raw_bytes() const;

 private:
  // The decoder process and the state of the conversation with it (in the
  // .cc).
  struct Decoder;

  const TarStreamOptions options_;
  const ChunkReader* const next_chunk_;  // not owned
  std::unique_ptr<Decoder> decoder_;
  uint64_t headers_ = 0;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_IMAGES_TAR_STREAM_H_
