#include "client/transfer.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "client/output.h"
#include "corral/platform.h"
#include "corral/status_macros.h"

namespace corral::cli {
namespace {

// Streams a file descriptor's bytes to `sink` in upload-sized chunks.
absl::Status StreamFd(int fd, absl::string_view name, const ChunkSink& sink) {
  std::string buffer(kUploadChunkSize, '\0');
  size_t filled = 0;
  while (true) {
    const ssize_t got =
        ::read(fd, buffer.data() + filled, buffer.size() - filled);
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("read ", name));
    }
    filled += static_cast<size_t>(got);
    // Full chunks only, except at the end: fewer, larger messages.
    if (filled == buffer.size() || (got == 0 && filled > 0)) {
      RETURN_IF_ERROR(sink(absl::string_view(buffer.data(), filled)));
      filled = 0;
    }
    if (got == 0) return absl::OkStatus();
  }
}

}  // namespace

absl::StatusOr<UploadSource> UploadSource::Open(const std::string& path,
                                                bool allow_stdin) {
  UploadSource source;
  source.path_ = path;
  if (allow_stdin && path == "-") {
    source.kind_ = Kind::kStdin;
    return source;
  }
  if (::stat(path.c_str(), &source.info_) != 0) {
    return ErrnoStatus(absl::StrCat("cannot open ", path));
  }
  if (S_ISDIR(source.info_.st_mode)) {
    source.kind_ = Kind::kDirectory;
    return source;
  }
  source.file_.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!source.file_) return ErrnoStatus(absl::StrCat("cannot open ", path));
  source.kind_ = Kind::kFile;
  return source;
}

absl::Status UploadSource::Send(const ChunkSink& sink, bool workspace) {
  switch (kind_) {
    case Kind::kDirectory: {
      ASSIGN_OR_RETURN(
          const PackResult packed,
          PackDirectory(path_, sink, kUploadChunkSize, !workspace));
      for (const std::string& line : packed.skipped) Warn(line);
      return absl::OkStatus();
    }
    case Kind::kStdin:
      return StreamFd(STDIN_FILENO, "stdin", sink);
    case Kind::kFile:
      return StreamFd(file_.get(), path_, sink);
  }
  return absl::InternalError("unknown upload source");
}

absl::StatusOr<std::unique_ptr<InterruptGuard>> InterruptGuard::Install() {
  std::unique_ptr<InterruptGuard> guard(new InterruptGuard());
  int fds[2];
  if (platform::MakePipe(fds) != 0) return ErrnoStatus("pipe");
  guard->stop_read_.Reset(fds[0]);
  guard->stop_write_.Reset(fds[1]);
  ASSIGN_OR_RETURN(guard->signals_, SignalPipe::Create());
  guard->thread_ = std::thread([g = guard.get()] { g->Watch(); });
  return guard;
}

InterruptGuard::~InterruptGuard() {
  // The watcher polls the signal pipe: stop it before the pipe goes (and
  // with it the handlers).
  if (thread_.joinable()) {
    const char byte = 0;
    (void)!::write(stop_write_.get(), &byte, 1);
    thread_.join();
  }
}

void InterruptGuard::CancelOnSignal(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mutex_);
  context_ = context;
  if (context_ != nullptr && signal_.load() != 0) context_->TryCancel();
}

void InterruptGuard::Watch() {
  for (;;) {
    struct pollfd fds[2] = {{stop_read_.get(), POLLIN, 0},
                            {signals_->read_fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    unsigned char signal_number;
    while (::read(signals_->read_fd(), &signal_number, 1) == 1) {
      int expected = 0;
      signal_.compare_exchange_strong(expected, signal_number);
      std::lock_guard<std::mutex> lock(mutex_);
      if (context_ != nullptr) context_->TryCancel();
    }
  }
}

absl::Status CopyToFd(const ChunkSource& source, int fd) {
  std::string chunk;
  for (;;) {
    ASSIGN_OR_RETURN(const bool more, source(chunk));
    if (!more) return absl::OkStatus();
    RETURN_IF_ERROR(WriteAll(fd, chunk));
  }
}

}  // namespace corral::cli
