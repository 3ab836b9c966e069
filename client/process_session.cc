#include "client/process_session.h"

#include <poll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/command_support.h"
#include "client/output.h"
#include "client/process_format.h"
#include "client/signal_pipe.h"
#include "client/stoppable_thread.h"
#include "client/workspace_format.h"
#include "corral/status_macros.h"
#include "corral/v1/exec.grpc.pb.h"

namespace corral::cli {
namespace {

using corral::v1::Exec;
using corral::v1::Process;
using corral::v1::ReadProcessRequest;
using corral::v1::ReadProcessResponse;

// Writes a response's output in order, each piece to the fd of its stream.
// False when stdout's reader went away (`corral attach ... | head`): the
// caller stops quietly. Failures on stderr are ignored (there is nowhere
// left to report them); other failures on stdout are errors.
absl::StatusOr<bool> WriteOutput(const ReadProcessResponse& response) {
  for (const corral::v1::ProcessOutput& piece : response.output()) {
    if (piece.stream() == corral::v1::OUTPUT_STREAM_STDERR) {
      (void)WriteAllOrErrno(STDERR_FILENO, piece.data());
      continue;
    }
    const int error = WriteAllOrErrno(STDOUT_FILENO, piece.data());
    if (error == EPIPE) return false;
    if (error != 0) return ErrnoStatus("write stdout", error);
  }
  return true;
}

void Notice(absl::string_view text) {
  (void)WriteAll(STDERR_FILENO, absl::StrCat("corral: ", text, "\n"));
}

void NoticeMissed(uint64_t missed, uint64_t cursor) {
  Notice(absl::StrCat(missed,
                      " bytes of output are no longer kept; reading from "
                      "offset ",
                      cursor + missed));
}

std::string ContinueCommand(const ProcessReadTarget& target, uint64_t cursor) {
  return absl::StrCat("corral attach ", target.sandbox_id, " ", target.name,
                      " --from ", cursor);
}

// The exit code for a process that ended, after its notice.
int Ended(const Process& process, const ProcessReadTarget& target) {
  if (std::optional<std::string> notice =
          ProcessEndNotice(process, target.name)) {
    Notice(*notice);
  }
  return ProcessExitCode(process);
}

// Turns SIGINT, SIGTERM and SIGHUP into a cancel of the call while the main
// thread reads the stream: the process is not affected by a client leaving.
class SignalWatcher {
 public:
  SignalWatcher(grpc::ClientContext& context, const SignalPipe& signals)
      : context_(context), signals_(signals) {}
  ~SignalWatcher() { Stop(); }

  absl::Status Start() {
    return worker_.Start([this] { Loop(); });
  }
  void Stop() { worker_.Stop(); }

  // The first signal received, or 0.
  int signal() const { return signal_.load(); }

 private:
  void Loop() {
    while (true) {
      std::array<struct pollfd, 2> fds = {};
      fds[0] = {worker_.stop_fd(), POLLIN, 0};
      fds[1] = {signals_.read_fd(), POLLIN, 0};
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        Warn(ErrnoStatus("poll").message());
        context_.TryCancel();
        return;
      }
      if (fds[0].revents != 0) return;
      if ((fds[1].revents & POLLIN) == 0) continue;
      // Drain the pipe (it is non-blocking); the first signal decides.
      unsigned char signal_number = 0;
      while (::read(signals_.read_fd(), &signal_number, 1) == 1) {
        int none = 0;
        if (signal_.compare_exchange_strong(none, signal_number)) {
          context_.TryCancel();
        }
      }
    }
  }

  grpc::ClientContext& context_;
  const SignalPipe& signals_;
  std::atomic<int> signal_{0};
  StoppableThread worker_;
};

// How the reading loop of FollowProcess ended.
struct FollowEnd {
  // The last response said the process exited, and how (when it carried
  // the process, as it should).
  bool exited = false;
  std::optional<Process> process;
  bool stdout_gone = false;
  absl::Status write_error;
  // True when the loop left a stream that was still open.
  bool left_early = false;
};

FollowEnd ReadStream(grpc::ClientReader<ReadProcessResponse>& stream,
                     const SignalWatcher& watcher, uint64_t& cursor) {
  FollowEnd end;
  ReadProcessResponse response;
  bool first = true;
  while (stream.Read(&response)) {
    // After a signal nothing more is written, so that the cursor in the
    // hint is exactly where the output on the screen stops.
    if (watcher.signal() != 0) {
      end.left_early = true;
      break;
    }
    if (first && response.missed() > 0) NoticeMissed(response.missed(), cursor);
    first = false;
    absl::StatusOr<bool> written = WriteOutput(response);
    if (!written.ok() || !*written) {
      end.write_error = written.status();
      end.stdout_gone = written.ok();
      end.left_early = true;
      break;
    }
    cursor = response.next_cursor();
    if (response.exited()) {
      end.exited = true;
      if (response.has_process()) end.process = response.process();
      // Normally the daemon ends the stream now; do not wait to see it.
      end.left_early = true;
      break;
    }
  }
  return end;
}

absl::StatusOr<Process> GetProcess(Connection& connection,
                                   const ProcessReadTarget& target) {
  corral::v1::GetProcessRequest request;
  request.set_sandbox_id(target.sandbox_id);
  request.set_process_id(target.process_id);
  return UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                   &Exec::Stub::GetProcess, request);
}

}  // namespace

absl::StatusOr<int> FollowProcess(Connection& connection,
                                  const ProcessReadTarget& target) {
  // The signals are caught before the stream exists: a Ctrl-C at any moment
  // leaves the process alone and prints the hint.
  ASSIGN_OR_RETURN(std::unique_ptr<SignalPipe> signals, SignalPipe::Create());
  grpc::ClientContext context;
  SignalWatcher watcher(context, *signals);
  RETURN_IF_ERROR(watcher.Start());

  ReadProcessRequest request;
  request.set_sandbox_id(target.sandbox_id);
  request.set_process_id(target.process_id);
  request.set_cursor(target.cursor);
  std::unique_ptr<grpc::ClientReader<ReadProcessResponse>> stream =
      connection.exec().AttachProcess(&context, request);
  uint64_t cursor = target.cursor;
  const FollowEnd end = ReadStream(*stream, watcher, cursor);
  // Finish waits for the call's end; one the client leaves must be
  // cancelled first.
  if (end.left_early) context.TryCancel();
  watcher.Stop();
  const grpc::Status status = stream->Finish();

  RETURN_IF_ERROR(end.write_error);
  if (end.stdout_gone) return 0;
  if (end.exited) {
    if (end.process && !end.process->running()) {
      return Ended(*end.process, target);
    }
    // The last response should carry the process as it ended; ask when it
    // does not.
    ASSIGN_OR_RETURN(const Process process, GetProcess(connection, target));
    return Ended(process, target);
  }
  if (const int signal_number = watcher.signal(); signal_number != 0) {
    Notice(absl::StrCat(
        SignalName(signal_number), ": detached from process ", target.name,
        ", which keeps running; continue: ", ContinueCommand(target, cursor)));
    return 0;
  }
  if (!status.ok()) return connection.CallError(status);
  return absl::UnavailableError(
      absl::StrCat("the daemon ended the stream before process ", target.name,
                   " exited; continue: ", ContinueCommand(target, cursor)));
}

absl::StatusOr<int> ReadProcessToEnd(Connection& connection,
                                     const ProcessReadTarget& target) {
  uint64_t cursor = target.cursor;
  // Where the output ended at the first read: a process that keeps writing
  // must not keep this loop going.
  std::optional<uint64_t> end;
  Process process;
  while (true) {
    ReadProcessRequest request;
    request.set_sandbox_id(target.sandbox_id);
    request.set_process_id(target.process_id);
    request.set_cursor(cursor);
    ASSIGN_OR_RETURN(
        const ReadProcessResponse response,
        UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                  &Exec::Stub::ReadProcess, request));
    if (response.missed() > 0) NoticeMissed(response.missed(), cursor);
    ASSIGN_OR_RETURN(const bool written, WriteOutput(response));
    if (!written) return 0;
    if (response.exited()) {
      if (response.has_process()) return Ended(response.process(), target);
      ASSIGN_OR_RETURN(process, GetProcess(connection, target));
      return Ended(process, target);
    }
    if (response.has_process()) process = response.process();
    if (!end) {
      end = response.has_process() ? process.output_end()
                                   : response.next_cursor();
    }
    // A daemon that returns nothing new would otherwise keep us here.
    const bool moved = response.next_cursor() > cursor;
    cursor = response.next_cursor();
    if (cursor >= *end || !moved) break;
  }
  if (process.running()) {
    Notice(absl::StrCat("process ", target.name, " is running; continue: ",
                        ContinueCommand(target, cursor)));
  }
  return 0;
}

}  // namespace corral::cli
