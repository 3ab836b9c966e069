// Running a short-lived helper program from a plugin (mkfs, a probe) and
// collecting what it printed: own session, stdin /dev/null, a minimal
// environment, no fd of the daemon but 0-2, and a deadline.
#ifndef CORRAL_BACKENDS_COMMON_SUBPROCESS_H_
#define CORRAL_BACKENDS_COMMON_SUBPROCESS_H_

#include <spawn.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "corral/platform.h"

namespace corral::runtime_common {

struct ProgramResult {
  // The exit status, or 128 + the signal that ended it.
  int exit_code = 0;
  // stdout and stderr together, in the order written (stdout alone with
  // ProgramOptions::separate_stderr); at most max_output_bytes (the rest is
  // dropped and `truncated` set).
  std::string output;
  // stderr, with ProgramOptions::separate_stderr.
  std::string error_output;
  bool truncated = false;
};

struct ProgramOptions {
  bool separate_stderr = false;
  // Per stream.
  size_t max_output_bytes = 64u << 10;
  // The program's stdin (dup'ed; the caller keeps it), else /dev/null.
  int stdin_fd = -1;
  // KEY=VALUE entries added to the minimal environment.
  std::vector<std::string> environment;
};

// Runs argv[0] (an absolute path) with argv. DEADLINE_EXCEEDED (the program
// killed) after `timeout`; an error when it cannot start.
[[nodiscard]] absl::StatusOr<ProgramResult> RunProgram(
    const std::vector<std::string>& argv, absl::Duration timeout);
[[nodiscard]] absl::StatusOr<ProgramResult> RunProgram(
    const std::vector<std::string>& argv, absl::Duration timeout,
    const ProgramOptions& options);

// Where a runtime looks for a program it drives: the absolute entries of
// `search_path` (the daemon's PATH, as its service manager set it), then
// `fallback_dirs`, each directory once, in the first place it comes.
[[nodiscard]] std::vector<std::string> ProgramSearchDirs(
    absl::string_view search_path,
    const std::vector<std::string>& fallback_dirs);

// `name` in the first of `dirs` where `executable` says it is one; "" when
// none has it.
[[nodiscard]] std::string FindProgramIn(
    const std::string& name, const std::vector<std::string>& dirs,
    const std::function<bool(const std::string&)>& executable);

// Starts argv[0] (an absolute path) with argv, `actions` arranging its fds,
// in a session of its own (it never gets the daemon's terminal), with no
// signal blocked or ignored and the minimal PATH environment; its pid. For
// the plugins' long-lived or report-pipe helpers (runc's, QEMU's launcher),
// whose caller waits for them its own way.
[[nodiscard]] absl::StatusOr<pid_t> SpawnInSession(
    const std::vector<std::string>& argv,
    const posix_spawn_file_actions_t& actions,
    const std::vector<std::string>& environment = {});

// A sandbox's supervisor on the host (corral-qemu-launch,
// corral-tart-launch): started in a session of its own with stdin
// /dev/null, stdout and stderr appended to `log_path`, the listening
// socket at fd 3, the write end of a report pipe at fd 4, `extra_fds` at
// `first_extra_fd` and up, and nothing else. It reports one line on fd 4:
// "started <pid>" (the process it supervises) or "error <why>".
struct SupervisorLaunch {
  std::vector<std::string> argv;
  std::vector<std::string> environment;
  int listen_fd = -1;
  std::vector<int> extra_fds;
  int first_extra_fd = 10;
  std::string log_path;
  absl::Duration timeout = absl::Seconds(30);
};

struct SupervisorStarted {
  pid_t supervisor = 0;
  // The supervisor's pid and start time, read as soon as it was started.
  platform::ProcessId identity;
  pid_t reported = 0;  // the pid of "started <pid>"
};

// Starts the supervisor and waits for its report. An "error" report, no
// report (the log's tail then says why) or none within `timeout` (the
// supervisor killed) is an error naming argv[0].
[[nodiscard]] absl::StatusOr<SupervisorStarted> StartSupervisor(
    const SupervisorLaunch& launch);

}  // namespace corral::runtime_common

#endif  // CORRAL_BACKENDS_COMMON_SUBPROCESS_H_
