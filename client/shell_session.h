// Drives Shells.AttachShell for `corral shell` and `corral attach`: the
// shell's output to stdout, keystrokes and window-size changes to the shell,
// the local terminal in raw mode meanwhile, the detach keys, and the exit
// code.
#ifndef CORRAL_CLIENT_SHELL_SESSION_H_
#define CORRAL_CLIENT_SHELL_SESSION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "client/connection.h"

namespace corral::cli {

struct AttachTarget {
  std::string sandbox_id;
  std::string shell_id;
  // Output offset to replay from (0: all the ring still holds).
  uint64_t cursor = 0;
};

// Attaches to a shell until it exits, the user detaches, or a signal
// (SIGINT, SIGTERM, SIGHUP) ends corral; the shell keeps running in the last
// two cases.
//
// When stdin is a terminal it is in raw mode for the session and restored
// on every way out, keystrokes go to the shell as they are typed, and
// `detach_sequence` (from ParseDetachKeys; empty: none) detaches. Otherwise
// stdin is forwarded as is and its end sends the terminal's end-of-file
// (Ctrl-D) once, without ending the session: output is printed until the
// shell exits.
//
// Returns the CLI's exit code: the shell's (128+N when signal N killed it),
// 0 after a detach, 128+N when signal N ended corral. A non-OK status is an
// error of corral itself.
absl::StatusOr<int> AttachToShell(Connection& connection,
                                  const AttachTarget& target,
                                  const std::string& detach_sequence);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_SHELL_SESSION_H_
