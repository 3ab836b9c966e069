#include "client/signal_pipe.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "corral/platform.h"
#include "corral/status_macros.h"

namespace corral::cli {
namespace {

// Write end of the active pipe; the handler may only do a write(2).
std::atomic<int> active_write_fd{-1};
// The active pipe's hook, called by the handler first.
std::atomic<void (*)()> active_hook{nullptr};

extern "C" void WriteSignalToPipe(int signal_number) {
  const int saved_errno = errno;
  if (void (*hook)() = active_hook.load(std::memory_order_relaxed)) hook();
  const int fd = active_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signal_number);
    (void)!::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SignalPipe>> SignalPipe::Create(
    void (*on_signal)()) {
  int fds[2];
  if (platform::MakePipe(fds, /*nonblocking=*/true) != 0) {
    return ErrnoStatus("pipe");
  }
  std::unique_ptr<SignalPipe> pipe(new SignalPipe(fds[0], fds[1]));
  pipe->previous_fd_ = active_write_fd.exchange(fds[1]);
  pipe->previous_hook_ = active_hook.exchange(on_signal);
  struct sigaction action = {};
  action.sa_handler = &WriteSignalToPipe;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (size_t i = 0; i < kSignals.size(); ++i) {
    if (::sigaction(kSignals[i], &action, &pipe->previous_[i]) != 0) {
      return ErrnoStatus(absl::StrCat("sigaction ", kSignals[i]));
    }
    pipe->installed_ = i + 1;
  }
  return pipe;
}

SignalPipe::~SignalPipe() {
  for (size_t i = 0; i < installed_; ++i) {
    ::sigaction(kSignals[i], &previous_[i], nullptr);
  }
  active_write_fd.store(previous_fd_);
  active_hook.store(previous_hook_);
}

}  // namespace corral::cli
