// The background-process commands of the corral CLI (issue 4): `exec -d`
// (StartProcess), `ps` (ListProcesses), `attach` (a shell interactively, any
// other process by following its output) and `kill`. They work on shells
// too, which the daemon lists as processes on a terminal (pty). A process is
// named by its id or its tag. commands.cc and shell_commands.cc define the
// flags and call these.
#ifndef CORRAL_CLIENT_PROCESS_COMMANDS_H_
#define CORRAL_CLIENT_PROCESS_COMMANDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/connection.h"
#include "client/options.h"
#include "corral/v1/exec.pb.h"

namespace corral::cli {

// The request of `corral exec -d [--tag TAG] ID -- COMMAND`: the command as
// `exec` builds it (--sh, -e, --workdir, --timeout), with an empty stdin.
// Fails for what a background process cannot have: -i (it reads /dev/null)
// and --output-limit (the daemon's ring bounds what is kept).
absl::StatusOr<corral::v1::StartProcessRequest> BuildStartProcessRequest(
    const ExecOptions& exec, absl::string_view sandbox_id,
    absl::string_view tag, const EnvLookup& lookup = ProcessEnv());

// Starts the process and prints its id on a line (`json`: the Process).
absl::StatusOr<int> StartProcess(Connection& connection,
                                 const corral::v1::StartProcessRequest& request,
                                 bool json);

// `corral ps ID`: the table of FormatProcesses (`json`: the
// ListProcessesResponse).
absl::StatusOr<int> ListProcesses(Connection& connection,
                                  const std::string& sandbox_id, bool json);

struct AttachOptions {
  std::string sandbox_id;
  // Process id or tag.
  std::string process;
  // An output offset, or "end" for the output's end when attaching.
  std::string from = "0";
  // Print what the ring holds and return, without waiting for more.
  bool no_follow = false;
  // For shells: keys that detach (see ParseDetachKeys).
  std::string detach_keys;
};

// `corral attach`: asks the daemon what the process is (GetProcess), then
// attaches to a shell interactively (AttachToShell) or follows another
// process's output (FollowProcess); with no_follow, reads either to its
// current end (ReadProcessToEnd). Returns the CLI's exit code.
absl::StatusOr<int> AttachProcess(Connection& connection,
                                  const AttachOptions& options);

struct KillOptions {
  std::string sandbox_id;
  // Process id or tag.
  std::string process;
  // Empty: TERM, or none with `remove`. See ParseSignal.
  std::string signal;
  // Remove the process (RemoveProcess): kill what is left of it and forget
  // it and its output.
  bool remove = false;
};

// `corral kill`: SignalProcess, or with `remove` RemoveProcess (after the
// signal when one was given; that the process already exited does not stop
// the removal). Prints nothing (`json`: the Process).
absl::StatusOr<int> KillProcess(Connection& connection,
                                const KillOptions& options, bool json);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_PROCESS_COMMANDS_H_
