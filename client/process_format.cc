#include "client/process_format.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/exit_status.h"
#include "client/format.h"
#include "client/workspace_format.h"

namespace corral::cli {
namespace {

// What a shell runs when OpenShell got no argv.
constexpr char kDefaultShellCommand[] = "/bin/sh -i";

std::string CommandText(const corral::v1::Process& process) {
  if (process.argv().empty()) {
    return process.pty() ? kDefaultShellCommand : "-";
  }
  // Whoever started the process chose its argv: escaped, so that it cannot
  // drive the terminal of whoever lists it.
  return EscapeControl(absl::StrJoin(process.argv(), " "));
}

}  // namespace

bool ProcessLost(const corral::v1::Process& process) {
  return !process.running() && !process.error().empty() &&
         process.signal() == 0 && process.exit_code() == 0 &&
         !process.timed_out();
}

std::string ProcessState(const corral::v1::Process& process) {
  if (process.running()) return "running";
  if (ProcessLost(process)) return "lost: " + EscapeControl(process.error());
  if (process.timed_out()) return "timed out";
  if (process.signal() > 0) return "killed by " + SignalName(process.signal());
  if (!process.error().empty()) {
    return "failed: " + EscapeControl(process.error());
  }
  return absl::StrCat("exited ", process.exit_code());
}

int ProcessExitCode(const corral::v1::Process& process) {
  if (ProcessLost(process)) return kExitCorralError;
  // The same mapping as `corral exec`, from the same fields.
  corral::v1::ExecExit exit;
  exit.set_exit_code(process.exit_code());
  exit.set_signal(process.signal());
  exit.set_timed_out(process.timed_out());
  return ExitCodeFor(exit);
}

std::optional<std::string> ProcessEndNotice(const corral::v1::Process& process,
                                            absl::string_view name) {
  if (process.running()) return std::nullopt;
  const std::string who = absl::StrCat("process ", EscapeControl(name));
  if (ProcessLost(process)) {
    return absl::StrCat(
        who, " ended without an exit status: ", EscapeControl(process.error()));
  }
  if (process.timed_out()) return absl::StrCat(who, " timed out");
  if (!process.error().empty()) {
    return absl::StrCat(who, ": ", EscapeControl(process.error()));
  }
  return std::nullopt;
}

std::string FormatProcesses(const corral::v1::ListProcessesResponse& response,
                            int64_t now_seconds) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::Process& process : response.processes()) {
    const std::string created =
        process.has_created_at()
            ? FormatRelative(process.created_at().seconds() - now_seconds)
            : std::string("-");
    rows.push_back(
        {EscapeControl(process.process_id()),
         process.tag().empty() ? std::string("-")
                               : EscapeControl(process.tag()),
         process.pty() ? "shell" : "process",
         process.pid() > 0 ? absl::StrCat(process.pid()) : std::string("-"),
         ProcessState(process), FormatBytes(process.output_end()), created,
         CommandText(process)});
  }
  return FormatTable(
      {"ID", "TAG", "TYPE", "PID", "STATE", "OUTPUT", "CREATED", "COMMAND"},
      rows);
}

}  // namespace corral::cli
