// Drives the streaming RPCs behind `corral run` (Sandboxes.Run) and
// `corral exec` (Exec.ExecStream): output to the terminal as it arrives,
// stdin forwarding for -i, Ctrl-C forwarding, and the exit code.
#ifndef CORRAL_CLIENT_EXEC_SESSION_H_
#define CORRAL_CLIENT_EXEC_SESSION_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "client/connection.h"
#include "corral/v1/exec.pb.h"
#include "corral/v1/sandboxes.pb.h"

namespace corral::cli {

struct SessionOptions {
  // Print one JSON object at the end instead of streaming output.
  bool json = false;
  // The timeout the request asked for, for the "timed out after N s" line.
  uint32_t timeout_seconds = 0;
};

// Runs `start.command` in a fresh sandbox that the daemon destroys afterwards.
// Returns the CLI's exit code (see exit_status.h); a non-OK status is an error
// of corral itself. The Run RPC has no way to signal the command, so Ctrl-C
// abandons the call at once (the daemon then destroys the sandbox): exit 130.
absl::StatusOr<int> RunCommand(Connection& connection,
                               const corral::v1::RunStart& start,
                               const SessionOptions& options);

// Runs `start` in an existing sandbox. The first Ctrl-C sends SIGINT to the
// command; a second one abandons the call: exit 130.
absl::StatusOr<int> ExecCommand(Connection& connection,
                                const corral::v1::ExecStart& start,
                                const SessionOptions& options);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_EXEC_SESSION_H_
