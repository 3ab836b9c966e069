#include "client/output.h"

#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "corral/status_macros.h"

namespace corral::cli {

int WriteAllOrErrno(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return 0;
}

absl::Status WriteAll(int fd, absl::string_view data) {
  const int error = WriteAllOrErrno(fd, data);
  if (error != 0) return ErrnoStatus(absl::StrCat("write fd ", fd), error);
  return absl::OkStatus();
}

void Warn(absl::string_view message, int fd) {
  // Nothing sensible is left to do if stderr itself is gone.
  (void)WriteAll(fd, absl::StrCat("corral: warning: ", message, "\n"));
}

void OutputSink::Add(const corral::v1::OutputChunk& chunk) {
  if (chunk.sequence() != next_sequence_) {
    ++sequence_errors_;
    Warn(absl::StrCat("output chunk ", chunk.sequence(), " arrived, expected ",
                      next_sequence_, ": output was lost or repeated in ",
                      "transit"),
         fds_.warning_fd);
  }
  next_sequence_ = chunk.sequence() + 1;

  const bool is_stderr = chunk.stream() == corral::v1::OUTPUT_STREAM_STDERR;
  if (collect_) {
    (is_stderr ? stderr_data_ : stdout_data_).append(chunk.data());
    return;
  }
  if (is_stderr) {
    Write(fds_.stderr_fd, stderr_broken_, chunk.data());
  } else {
    Write(fds_.stdout_fd, stdout_broken_, chunk.data());
  }
}

void OutputSink::Write(int fd, bool& broken, absl::string_view data) {
  if (broken) return;
  const int error = WriteAllOrErrno(fd, data);
  if (error != 0) {
    // Keep reading the stream for the exit status; say once why output
    // stopped unless the reader simply closed the pipe.
    broken = true;
    if (error != EPIPE) {
      Warn(ErrnoStatus(absl::StrCat("write fd ", fd), error).message(),
           fds_.warning_fd);
    }
  }
}

}  // namespace corral::cli
