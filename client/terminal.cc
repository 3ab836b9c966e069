#include "client/terminal.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <exception>

#include "corral/platform.h"
#include "corral/status_macros.h"

namespace corral::cli {
namespace {

// The terminal in raw mode (-1: none) and its settings from before. The fd
// is published only after the settings are written, and cleared before they
// are reused, so a signal handler never sees half of them.
std::atomic<int> raw_fd{-1};
struct termios saved_settings;
std::terminate_handler previous_terminate = nullptr;

// Write end of the active WindowChangePipe (-1: none).
std::atomic<int> window_change_fd{-1};

extern "C" void WriteWindowChange(int) {
  const int saved_errno = errno;
  const int fd = window_change_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const char byte = 1;
    (void)!::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

// An exception nobody caught ends the process without unwinding to
// ~RawTerminal: leave the terminal usable before the default handling.
[[noreturn]] void RestoreThenTerminate() {
  RestoreRawTerminal();
  if (previous_terminate != nullptr) previous_terminate();
  std::abort();
}

bool SizeOf(int fd, corral::v1::TerminalSize& size) {
  struct winsize window = {};
  if (::ioctl(fd, TIOCGWINSZ, &window) != 0) return false;
  if (window.ws_row == 0 || window.ws_col == 0) return false;
  size.set_rows(window.ws_row);
  size.set_columns(window.ws_col);
  return true;
}

}  // namespace

corral::v1::TerminalSize LocalTerminalSize() {
  corral::v1::TerminalSize size;
  if (SizeOf(STDIN_FILENO, size) || SizeOf(STDOUT_FILENO, size)) return size;
  size.set_rows(24);
  size.set_columns(80);
  return size;
}

absl::StatusOr<std::unique_ptr<RawTerminal>> RawTerminal::Enter(int fd) {
  if (raw_fd.load() >= 0) {
    return absl::FailedPreconditionError("the terminal is already in raw mode");
  }
  struct termios settings;
  if (::tcgetattr(fd, &settings) != 0) return ErrnoStatus("tcgetattr");
  saved_settings = settings;
  struct termios raw = settings;
  ::cfmakeraw(&raw);
  std::unique_ptr<RawTerminal> terminal(new RawTerminal());
  raw_fd.store(fd);
  previous_terminate = std::set_terminate(&RestoreThenTerminate);
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) {
    const absl::Status error = ErrnoStatus("tcsetattr raw");
    return error;  // ~RawTerminal puts back the saved settings
  }
  return terminal;
}

RawTerminal::~RawTerminal() {
  RestoreRawTerminal();
  std::set_terminate(previous_terminate);
  raw_fd.store(-1);
}

void RestoreRawTerminal() {
  const int fd = raw_fd.load();
  if (fd < 0) return;
  // TCSADRAIN: output already written (the shell's last screen) is shown
  // before the line discipline starts translating again.
  while (::tcsetattr(fd, TCSADRAIN, &saved_settings) != 0 && errno == EINTR) {
  }
}

absl::StatusOr<std::unique_ptr<WindowChangePipe>> WindowChangePipe::Create() {
  int fds[2];
  if (platform::MakePipe(fds, /*nonblocking=*/true) != 0) {
    return ErrnoStatus("pipe");
  }
  std::unique_ptr<WindowChangePipe> pipe(new WindowChangePipe(fds[0], fds[1]));
  pipe->previous_fd_ = window_change_fd.exchange(fds[1]);
  struct sigaction action = {};
  action.sa_handler = &WriteWindowChange;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (::sigaction(SIGWINCH, &action, &pipe->previous_) != 0) {
    window_change_fd.store(pipe->previous_fd_);
    pipe->previous_fd_ = -2;  // nothing to restore
    return ErrnoStatus("sigaction SIGWINCH");
  }
  return pipe;
}

WindowChangePipe::~WindowChangePipe() {
  if (previous_fd_ == -2) return;
  ::sigaction(SIGWINCH, &previous_, nullptr);
  window_change_fd.store(previous_fd_);
}

}  // namespace corral::cli
