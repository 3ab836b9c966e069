// Exit codes of the corral CLI and the mapping from a command's end (ExecExit)
// to the CLI's exit code, so scripts can tell corral's failures from the
// command's.
#ifndef CORRAL_CLIENT_EXIT_STATUS_H_
#define CORRAL_CLIENT_EXIT_STATUS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "corral/v1/exec.pb.h"

namespace corral::cli {

// An error of corral itself: bad flags, daemon unreachable, any RPC error.
inline constexpr int kExitCorralError = 125;
// The command's timeout killed it (as coreutils' timeout(1) does).
inline constexpr int kExitTimedOut = 124;
// The memory limit killed the command: 128 + SIGKILL.
inline constexpr int kExitOutOfMemory = 137;
// The user interrupted corral a second time: 128 + SIGINT.
inline constexpr int kExitInterrupted = 130;

// The CLI's exit code for a finished command: timeout -> 124, OOM -> 137,
// signal N -> 128+N, else the command's own exit code (126/127 when it could
// not be started).
int ExitCodeFor(const corral::v1::ExecExit& exit);

// The line to print on stderr (without "corral: " and newline) for an ending
// the user should hear about from corral rather than from the command's own
// output: timeout, OOM, or a start failure. nullopt for ordinary endings.
// `timeout_seconds` is the timeout the request asked for; 0 (the daemon's
// default, unknown here) reports the measured duration instead.
std::optional<std::string> ExitNotice(const corral::v1::ExecExit& exit,
                                      uint32_t timeout_seconds);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_EXIT_STATUS_H_
