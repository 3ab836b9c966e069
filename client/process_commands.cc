#include "client/process_commands.h"

#include <cstdint>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/command_support.h"
#include "client/detach_keys.h"
#include "client/process_format.h"
#include "client/process_session.h"
#include "client/shell_format.h"
#include "client/shell_session.h"
#include "corral/status_macros.h"
#include "corral/v1/exec.grpc.pb.h"

namespace corral::cli {
namespace {

using corral::v1::Exec;
using corral::v1::Process;

absl::StatusOr<Process> GetProcess(Connection& connection,
                                   const std::string& sandbox_id,
                                   const std::string& process) {
  corral::v1::GetProcessRequest request;
  request.set_sandbox_id(sandbox_id);
  request.set_process_id(process);
  return UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                   &Exec::Stub::GetProcess, request);
}

}  // namespace

absl::StatusOr<corral::v1::StartProcessRequest> BuildStartProcessRequest(
    const ExecOptions& exec, absl::string_view sandbox_id,
    absl::string_view tag, const EnvLookup& lookup) {
  if (exec.interactive) {
    return absl::InvalidArgumentError(
        "-d and -i do not go together: a background process reads an empty "
        "stdin (/dev/null)");
  }
  if (exec.output_limit_bytes != 0) {
    return absl::InvalidArgumentError(
        "-d and --output-limit do not go together: the daemon keeps the "
        "newest 1 MiB of a background process's output");
  }
  corral::v1::StartProcessRequest request;
  ASSIGN_OR_RETURN(*request.mutable_start(),
                   BuildExecStart(exec, sandbox_id, lookup));
  request.mutable_start()->set_stdin_open(false);
  request.set_tag(std::string(tag));
  return request;
}

absl::StatusOr<int> StartProcess(Connection& connection,
                                 const corral::v1::StartProcessRequest& request,
                                 bool json) {
  ASSIGN_OR_RETURN(
      const Process process,
      UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                &Exec::Stub::StartProcess, request));
  RETURN_IF_ERROR(json ? PrintMessage(process)
                       : Print(absl::StrCat(process.process_id(), "\n")));
  if (process.readiness() == corral::v1::READINESS_FAILED) {
    // Still there (its output says why, corral logs/attach shows it), but
    // not ready: an error of corral's.
    return absl::FailedPreconditionError(
        absl::StrCat("process ", process.process_id(),
                     " is not ready: ", process.readiness_error()));
  }
  return 0;
}

absl::StatusOr<int> ListProcesses(Connection& connection,
                                  const std::string& sandbox_id, bool json) {
  corral::v1::ListProcessesRequest request;
  request.set_sandbox_id(sandbox_id);
  ASSIGN_OR_RETURN(
      const corral::v1::ListProcessesResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                &Exec::Stub::ListProcesses, request));
  RETURN_IF_ERROR(json ? PrintMessage(response)
                       : Print(FormatProcesses(response, NowSeconds())));
  return 0;
}

absl::StatusOr<int> AttachProcess(Connection& connection,
                                  const AttachOptions& options) {
  // Flags first, so that a typo costs no call.
  ASSIGN_OR_RETURN(const std::string detach_sequence,
                   ParseDetachKeys(options.detach_keys));
  const bool from_end = options.from == "end";
  uint64_t cursor = 0;
  if (!from_end && !absl::SimpleAtoi(options.from, &cursor)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--from expects an output offset or 'end', got '", options.from, "'"));
  }
  ASSIGN_OR_RETURN(const Process process,
                   GetProcess(connection, options.sandbox_id, options.process));
  // Only what comes from now on: start at the output's current end.
  if (from_end) cursor = process.output_end();

  ProcessReadTarget target;
  target.sandbox_id = options.sandbox_id;
  // The id rather than the tag: it cannot come to name another process.
  target.process_id = process.process_id();
  target.name = options.process;
  target.cursor = cursor;
  if (options.no_follow) return ReadProcessToEnd(connection, target);
  if (!process.pty()) return FollowProcess(connection, target);
  AttachTarget shell;
  shell.sandbox_id = options.sandbox_id;
  shell.shell_id = process.process_id();
  shell.cursor = cursor;
  return AttachToShell(connection, shell, detach_sequence);
}

absl::StatusOr<int> KillProcess(Connection& connection,
                                const KillOptions& options, bool json) {
  const bool send_signal = !options.remove || !options.signal.empty();
  ASSIGN_OR_RETURN(
      const int signal_number,
      ParseSignal(options.signal.empty() ? "TERM" : options.signal));
  Process process;
  if (send_signal) {
    corral::v1::SignalProcessRequest request;
    request.set_sandbox_id(options.sandbox_id);
    request.set_process_id(options.process);
    request.set_signal(signal_number);
    grpc::Status status;
    {
      auto context = connection.UnaryContext();
      status =
          connection.exec().SignalProcess(context.get(), request, &process);
    }
    // With --rm an exited process is what one wants to clean up: that it
    // can no longer be signalled does not matter, the removal forgets it.
    const bool already_exited =
        options.remove &&
        status.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
    if (!status.ok() && !already_exited) return connection.CallError(status);
  }
  if (options.remove) {
    corral::v1::RemoveProcessRequest request;
    request.set_sandbox_id(options.sandbox_id);
    request.set_process_id(options.process);
    ASSIGN_OR_RETURN(process, UnaryCall(connection, connection.UnaryContext(),
                                        connection.exec(),
                                        &Exec::Stub::RemoveProcess, request));
  }
  if (json) RETURN_IF_ERROR(PrintMessage(process));
  return 0;
}

}  // namespace corral::cli
