// Where a command's streamed output goes: straight to the CLI's stdout and
// stderr as each chunk arrives, or into memory for `--json`.
#ifndef CORRAL_CLIENT_OUTPUT_H_
#define CORRAL_CLIENT_OUTPUT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "corral/v1/exec.pb.h"

namespace corral::cli {

// Writes all of `data` to `fd` with write(2), retrying short writes and
// EINTR; no stdio buffering, so output interleaves as the command wrote it.
absl::Status WriteAll(int fd, absl::string_view data);
// The same, returning 0 or the errno of the failed write(2) (EPIPE when the
// reader went away).
int WriteAllOrErrno(int fd, absl::string_view data);

// Prints "corral: warning: <message>" on `fd`.
void Warn(absl::string_view message, int fd = 2);

class OutputSink {
 public:
  struct Fds {
    int stdout_fd = 1;
    int stderr_fd = 2;
    // Where sequence warnings go.
    int warning_fd = 2;
  };

  // collect: keep the output for the caller (--json) instead of writing it.
  explicit OutputSink(bool collect) : OutputSink(collect, Fds{}) {}
  OutputSink(bool collect, Fds fds) : collect_(collect), fds_(fds) {}

  // Writes or keeps one chunk. Chunk sequence numbers must run 0, 1, 2, ...
  // across both streams; a gap or repeat is reported as a warning (output was
  // lost or duplicated in transit) and counted, never fatal.
  void Add(const corral::v1::OutputChunk& chunk);

  const std::string& stdout_data() const { return stdout_data_; }
  const std::string& stderr_data() const { return stderr_data_; }
  uint64_t sequence_errors() const { return sequence_errors_; }

 private:
  // Writes to an fd unless the reader went away (EPIPE): a closed pipe, as in
  // `corral run ... | head`, must not lose the command's exit status.
  void Write(int fd, bool& broken, absl::string_view data);

  const bool collect_;
  const Fds fds_;
  uint64_t next_sequence_ = 0;
  uint64_t sequence_errors_ = 0;
  bool stdout_broken_ = false;
  bool stderr_broken_ = false;
  std::string stdout_data_;
  std::string stderr_data_;
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_OUTPUT_H_
