// SIGINT, SIGTERM and SIGHUP turned into bytes on a pipe, for the parts of
// the CLI that must outlive a Ctrl-C long enough to clean up: the exec
// session (which forwards the signal to the command) and InterruptGuard
// (which cancels a transfer).
#ifndef CORRAL_CLIENT_SIGNAL_PIPE_H_
#define CORRAL_CLIENT_SIGNAL_PIPE_H_

#include <signal.h>

#include <array>
#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "corral/unique_fd.h"

namespace corral::cli {

// While alive, each SIGINT, SIGTERM and SIGHUP becomes one byte (the signal
// number) on a non-blocking pipe the owner polls, instead of killing corral.
// The previous handlers come back on destruction. Pipes nest: a newer one
// takes the signals, and the one it replaced gets them again once it goes.
class SignalPipe {
 public:
  // `on_signal`, when given, runs inside the signal handler before the byte
  // is written, so it must be async-signal-safe (the shell session restores
  // the terminal there, before anything else can go wrong).
  static absl::StatusOr<std::unique_ptr<SignalPipe>> Create(
      void (*on_signal)() = nullptr);
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  int read_fd() const { return read_.get(); }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};

  SignalPipe(int read_fd, int write_fd) : read_(read_fd), write_(write_fd) {}

  UniqueFd read_;
  UniqueFd write_;
  // The write end that was active before this pipe (-1: none).
  int previous_fd_ = -1;
  // The hook that was active before this pipe.
  void (*previous_hook_)() = nullptr;
  std::array<struct sigaction, kSignals.size()> previous_ = {};
  size_t installed_ = 0;
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_SIGNAL_PIPE_H_
