// Pure helpers of the shell commands (issue 4): signal names, a shell's
// exit code, and the `corral shell-read --json` rendering (`corral ps` is
// process_format.h's). No I/O, so tests can drive them.
#ifndef CORRAL_CLIENT_SHELL_FORMAT_H_
#define CORRAL_CLIENT_SHELL_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "corral/v1/shells.pb.h"

namespace corral::cli {

// "TERM", "SIGTERM", "term" or "15" -> 15. Numbers from 1 to 64; names are
// Linux's standard signals. (SignalName, the other way, is in
// workspace_format.h.)
absl::StatusOr<int> ParseSignal(absl::string_view text);

// The CLI's exit code for a shell that ended: 128+N when signal N killed
// it, else its exit status (8 bits, as shells report it).
int ShellExitCode(int exit_code, int signal_number);

// `corral shell-read --json`: {"output": text (invalid UTF-8 replaced),
// "output_base64": the exact bytes, "offset", "next_cursor", "missed",
// "exited"} on one line.
std::string FormatShellReadJson(const corral::v1::ReadShellResponse& response);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_SHELL_FORMAT_H_
