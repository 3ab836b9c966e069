#include "client/transfer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "client/output.h"
#include "corral/status_macros.h"

namespace corral::cli {
namespace {

constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};

// Write end of the active guard's pipe; the handler may only write(2).
std::atomic<int> guard_pipe_fd{-1};

extern "C" void RecordSignal(int signal_number) {
  const int saved_errno = errno;
  const int fd = guard_pipe_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signal_number);
    (void)!::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

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
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoStatus("pipe2");
  guard->read_.Reset(fds[0]);
  guard->write_.Reset(fds[1]);
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus("pipe2");
  guard->stop_read_.Reset(fds[0]);
  guard->stop_write_.Reset(fds[1]);
  guard_pipe_fd.store(guard->write_.get());
  struct sigaction action = {};
  action.sa_handler = &RecordSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (size_t i = 0; i < kSignals.size(); ++i) {
    if (::sigaction(kSignals[i], &action, &guard->previous_[i]) != 0) {
      return ErrnoStatus(absl::StrCat("sigaction ", kSignals[i]));
    }
    guard->installed_ = static_cast<int>(i) + 1;
  }
  guard->thread_ = std::thread([g = guard.get()] { g->Watch(); });
  return guard;
}

InterruptGuard::~InterruptGuard() {
  for (int i = 0; i < installed_; ++i) {
    ::sigaction(kSignals[i], &previous_[i], nullptr);
  }
  guard_pipe_fd.store(-1);
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
                            {read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    unsigned char signal_number;
    while (::read(read_.get(), &signal_number, 1) == 1) {
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
