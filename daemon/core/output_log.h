// The output of one process: the newest bytes of its stdout and stderr (or
// its terminal), in the order they were written, addressed by offsets that
// only grow, and mirrored to a file so that a restarted daemon still has
// them.
#ifndef CORRAL_DAEMON_CORE_OUTPUT_LOG_H_
#define CORRAL_DAEMON_CORE_OUTPUT_LOG_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/unique_fd.h"

namespace corral::daemon {

struct OutputLimits {
  // Bytes of output kept.
  size_t capacity = 1 << 20;
  // Pieces kept: a piece is a run of one stream's output, so this bounds
  // the bookkeeping of a process that alternates stdout and stderr a few
  // bytes at a time. The oldest pieces go first.
  size_t max_pieces = 8192;
};

// Not thread-safe.
class OutputLog {
 public:
  // Streams: 1 stdout (and a terminal), 2 stderr.
  struct Piece {
    uint64_t offset = 0;         // of data's first byte, both streams counted
    uint64_t stream_offset = 0;  // of data's first byte within its stream
    int stream = 1;
    std::string data;
    uint64_t end() const { return offset + data.size(); }
  };

  // Kept in memory only.
  explicit OutputLog(OutputLimits limits) : limits_(limits) {}
  // Kept in memory and in the file at `path`: what the file already holds
  // is loaded (a torn last record, from a daemon killed while writing it,
  // is cut off), and everything appended is written to it before Append
  // returns.
  static absl::StatusOr<std::unique_ptr<OutputLog>> Open(
      const std::string& path, OutputLimits limits);

  // Appends output of `stream` that starts at `stream_offset` within that
  // stream. Bytes below what the stream already has are dropped (a replay
  // after a restart); bytes past it mean output was lost in between: the
  // offsets jump by that much, and readers are told they missed it. The
  // memory copy always succeeds; the status says whether the file write
  // did (after a failure the file is no longer written).
  absl::Status Append(int stream, uint64_t stream_offset,
                      std::string_view data);

  // Offsets of the oldest byte kept and just past the newest.
  uint64_t start() const {
    return pieces_.empty() ? end_ : pieces_.front().offset;
  }
  uint64_t end() const { return end_; }
  // Bytes of `stream` received so far (kept or not).
  uint64_t stream_end(int stream) const {
    return stream == 2 ? stream_end_[1] : stream_end_[0];
  }

  struct Slice {
    std::vector<Piece> pieces;  // consecutive, from `offset`
    uint64_t offset = 0;        // where the returned output starts
    uint64_t missed = 0;        // bytes between the cursor and offset lost
    uint64_t next = 0;          // cursor for the next read
  };
  // At most max_bytes from `cursor`. OUT_OF_RANGE for a cursor past end().
  absl::StatusOr<Slice> Read(uint64_t cursor, size_t max_bytes) const;

 private:
  absl::Status Load();
  absl::Status WriteRecord(const Piece& piece, std::string_view data);
  absl::Status Compact();
  void AppendPiece(int stream, uint64_t offset, uint64_t stream_offset,
                   std::string_view data);
  void Trim();

  const OutputLimits limits_;
  std::deque<Piece> pieces_;
  size_t bytes_ = 0;  // of data in pieces_
  uint64_t end_ = 0;
  uint64_t stream_end_[2] = {0, 0};

  std::string path_;  // empty: memory only
  corral::UniqueFd fd_;
  uint64_t file_bytes_ = 0;
  bool file_failed_ = false;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_OUTPUT_LOG_H_
