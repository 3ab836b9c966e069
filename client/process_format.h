// Pure helpers of the background-process commands (issue 4): how a process
// (a background command or a shell) stands, the CLI's exit code for one that
// ended, and the `corral ps` table. No I/O, so tests can drive them.
#ifndef CORRAL_CLIENT_PROCESS_FORMAT_H_
#define CORRAL_CLIENT_PROCESS_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "corral/v1/exec.pb.h"

namespace corral::cli {

// True when the process ended without an exit status: the daemon lost it
// (its sandbox's agent went away) and says why in `error`.
bool ProcessLost(const corral::v1::Process& process);

// "running", "exited 3", "killed by SIGKILL", "timed out", "failed: <why it
// could not start>" or "lost: <why>". Text from the daemon is escaped.
std::string ProcessState(const corral::v1::Process& process);

// The CLI's exit code for a process that ended, as `corral exec` gives a
// command's: 124 when its timeout killed it, 128+N when signal N did, else
// its exit status (8 bits; 126/127 when it could not start). A lost process
// has no status: 125, as for an error.
int ProcessExitCode(const corral::v1::Process& process);

// What to say on stderr (without "corral: " and the newline) when a process
// ended in a way its exit code alone does not explain: lost, timed out, or
// could not start. `name` is how the user named it. nullopt otherwise.
std::optional<std::string> ProcessEndNotice(const corral::v1::Process& process,
                                            absl::string_view name);

// `corral ps`: ID TAG TYPE PID STATE OUTPUT CREATED COMMAND, one row per
// process in the order given. OUTPUT is output_end (all the process wrote,
// not what the ring still holds).
std::string FormatProcesses(const corral::v1::ListProcessesResponse& response,
                            int64_t now_seconds);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_PROCESS_FORMAT_H_
