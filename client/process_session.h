// Reading a background process's output for `corral attach`: following it
// live (Exec.AttachProcess) until it exits or the user leaves, or printing
// what the ring holds (Exec.ReadProcess, --no-follow). Shells are attached
// interactively by shell_session.h instead; --no-follow reads them here too.
#ifndef CORRAL_CLIENT_PROCESS_SESSION_H_
#define CORRAL_CLIENT_PROCESS_SESSION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "client/connection.h"

namespace corral::cli {

struct ProcessReadTarget {
  std::string sandbox_id;
  // The process as the daemon names it (its id, or a tag).
  std::string process_id;
  // How the user named it, for the "continue with" hint.
  std::string name;
  // Output offset to read from (0: all the ring still holds).
  uint64_t cursor = 0;
};

// Writes the output from `target.cursor` on, stdout's bytes to fd 1 and
// stderr's to fd 2 in the order the process wrote them, and then what
// follows as it comes, until:
// - the process exits: returns its exit code (ProcessExitCode), after a
//   notice on stderr when it was lost, timed out or could not start;
// - SIGINT, SIGTERM or SIGHUP (Ctrl-C): the process keeps running; prints
//   on stderr where to continue (`corral attach ID NAME --from N`, N just
//   past the last byte written) and returns 0;
// - the reader of stdout goes away (EPIPE): returns 0 without a word.
// When the ring no longer holds the start of what was asked for, says on
// stderr how many bytes were missed. A non-OK status is an error of corral
// itself (the daemon's refusal, or the stream ending without the exit).
absl::StatusOr<int> FollowProcess(Connection& connection,
                                  const ProcessReadTarget& target);

// Writes what the ring holds from `target.cursor` up to the output's end as
// of the first read, then returns without waiting: the process's exit code
// when it has exited and all of its output was read, else 0 after a hint on
// stderr where to continue. Missed bytes and a closed stdout are handled as
// FollowProcess does.
absl::StatusOr<int> ReadProcessToEnd(Connection& connection,
                                     const ProcessReadTarget& target);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_PROCESS_SESSION_H_
