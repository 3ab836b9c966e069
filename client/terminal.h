// The local terminal for `corral shell` and `corral attach`: its size, raw
// mode that is undone on every way out, and window-size changes as bytes on
// a pipe.
#ifndef CORRAL_CLIENT_TERMINAL_H_
#define CORRAL_CLIENT_TERMINAL_H_

#include <signal.h>
#include <termios.h>

#include <memory>

#include "absl/status/statusor.h"
#include "corral/unique_fd.h"
#include "corral/v1/shells.pb.h"

namespace corral::cli {

// The size of the terminal on stdin, else on stdout; 24x80 when neither is a
// terminal (or it reports 0).
corral::v1::TerminalSize LocalTerminalSize();

// Puts a terminal into raw mode (cfmakeraw) for as long as it lives and puts
// the saved settings back when it goes: at the end of the session, on an
// error return, or while an exception unwinds. For the ways out that do not
// unwind, the saved settings are also kept where an async-signal-safe
// function (RestoreRawTerminal) and the std::terminate handler find them.
// At most one exists at a time.
class RawTerminal {
 public:
  // Precondition: `fd` is a terminal. Fails when its settings cannot be read
  // or changed, or when another RawTerminal is alive.
  static absl::StatusOr<std::unique_ptr<RawTerminal>> Enter(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  RawTerminal() = default;
};

// Puts back the settings saved by the live RawTerminal, if any. Only calls
// tcsetattr(3), so signal handlers may call it; the RawTerminal still
// restores (again, harmlessly) when it goes.
void RestoreRawTerminal();

// While alive, each SIGWINCH (the terminal was resized) becomes one byte on
// a non-blocking pipe; the previous handler comes back on destruction.
class WindowChangePipe {
 public:
  static absl::StatusOr<std::unique_ptr<WindowChangePipe>> Create();
  ~WindowChangePipe();
  WindowChangePipe(const WindowChangePipe&) = delete;
  WindowChangePipe& operator=(const WindowChangePipe&) = delete;

  int read_fd() const { return read_.get(); }

 private:
  WindowChangePipe(int read_fd, int write_fd)
      : read_(read_fd), write_(write_fd) {}

  UniqueFd read_;
  UniqueFd write_;
  int previous_fd_ = -1;
  struct sigaction previous_ = {};
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_TERMINAL_H_
