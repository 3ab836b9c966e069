#include "client/shell_session.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/detach_keys.h"
#include "client/output.h"
#include "client/shell_format.h"
#include "client/signal_pipe.h"
#include "client/stoppable_thread.h"
#include "client/terminal.h"
#include "client/workspace_format.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"
#include "corral/v1/shells.grpc.pb.h"

namespace corral::cli {
namespace {

using corral::v1::AttachShellRequest;
using corral::v1::AttachShellResponse;
using AttachStream =
    grpc::ClientReaderWriter<AttachShellRequest, AttachShellResponse>;

// One read of keystrokes; half the protocol's 64 KiB per message, so that a
// held-back prefix of the detach keys added in front still fits.
constexpr size_t kInputChunkSize = 32 << 10;
// After a detach the stream is half-closed and the daemon should end the
// call at once; if it does not, it is cancelled after this long.
constexpr int kDetachGraceMillis = 1000;
// The terminal's end-of-file character (VEOF, Ctrl-D by default).
constexpr char kEndOfFile = '\x04';

AttachShellRequest InputRequest(std::string bytes) {
  AttachShellRequest request;
  request.set_input(std::move(bytes));
  return request;
}

// Owns every write to the stream after the first message (gRPC allows one
// writer next to the reader): keystrokes, resizes, the half-close of a
// detach, and the cancel when a signal ends corral.
class InputPump {
 public:
  InputPump(grpc::ClientContext& context, AttachStream& stream,
            const SignalPipe& signals, const WindowChangePipe* window_changes,
            bool terminal, std::string detach_sequence)
      : context_(context),
        stream_(stream),
        signals_(signals),
        window_changes_(window_changes),
        terminal_(terminal),
        matcher_(std::move(detach_sequence)) {}

  ~InputPump() { Stop(); }

  absl::Status Start() {
    return worker_.Start([this] { Loop(); });
  }

  // Ends the thread; safe to call more than once.
  void Stop() { worker_.Stop(); }

  bool detached() const { return detached_.load(); }
  // The signal that ended corral, or 0.
  int signal() const { return signal_.load(); }

 private:
  void Loop() {
    bool stdin_open = true;
    int timeout = -1;
    while (true) {
      std::array<struct pollfd, 4> fds = {};
      fds[0] = {worker_.stop_fd(), POLLIN, 0};
      fds[1] = {signals_.read_fd(), POLLIN, 0};
      fds[2] = {window_changes_ != nullptr ? window_changes_->read_fd() : -1,
                POLLIN, 0};
      fds[3] = {stdin_open ? STDIN_FILENO : -1, POLLIN, 0};
      const int ready = ::poll(fds.data(), fds.size(), timeout);
      if (ready < 0) {
        if (errno == EINTR) continue;
        Warn(ErrnoStatus("poll").message());
        context_.TryCancel();
        return;
      }
      if (fds[0].revents != 0) return;
      if (ready == 0) {
        // The daemon did not end the call after the half-close.
        context_.TryCancel();
        timeout = -1;
        continue;
      }
      if ((fds[1].revents & POLLIN) && signal_.load() == 0) {
        unsigned char signal_number = 0;
        if (::read(signals_.read_fd(), &signal_number, 1) == 1) {
          // corral was told to go (kill, a closed terminal): leave the
          // shell running, as a detach does.
          signal_.store(signal_number);
          stdin_open = false;
          context_.TryCancel();
        }
      }
      if (fds[2].revents & POLLIN) {
        char drained[64];
        while (::read(window_changes_->read_fd(), drained, sizeof(drained)) >
               0) {
        }
        AttachShellRequest request;
        *request.mutable_resize() = LocalTerminalSize();
        Send(request);
      }
      if (stdin_open && fds[3].revents != 0 && !ForwardInput()) {
        stdin_open = false;
        if (detached_.load()) timeout = kDetachGraceMillis;
      }
    }
  }

  // Reads stdin once and forwards it; false when input is over (end of
  // file, an error, or the detach keys).
  bool ForwardInput() {
    std::string buffer(kInputChunkSize, '\0');
    const ssize_t got = ::read(STDIN_FILENO, buffer.data(), buffer.size());
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (got <= 0) {
      if (got < 0) Warn(ErrnoStatus("read stdin").message());
      std::string rest = matcher_.Flush();
      if (!terminal_) {
        // Piped input: the shell on its terminal learns that it ended the
        // way a typist tells it, with Ctrl-D at the start of a line (twice
        // after an unfinished line: the first only hands the line over).
        if (last_input_ != '\n' && last_input_ != '\0') rest += kEndOfFile;
        rest += kEndOfFile;
      }
      if (!rest.empty()) Send(InputRequest(std::move(rest)));
      return false;
    }
    buffer.resize(static_cast<size_t>(got));
    DetachMatcher::Result keys = matcher_.Feed(buffer);
    if (!keys.forward.empty()) {
      last_input_ = keys.forward.back();
      Send(InputRequest(std::move(keys.forward)));
    }
    if (!keys.detach) return true;
    detached_.store(true);
    // Half-close: the daemon ends the call and the shell keeps running.
    if (writable_) writable_ = stream_.WritesDone();
    return false;
  }

  void Send(const AttachShellRequest& request) {
    // After a failed write the call is over; the reader learns why.
    if (writable_ && !detached_.load()) writable_ = stream_.Write(request);
  }

  grpc::ClientContext& context_;
  AttachStream& stream_;
  const SignalPipe& signals_;
  // Null when stdin is not a terminal: no resizes to follow.
  const WindowChangePipe* window_changes_;
  const bool terminal_;
  DetachMatcher matcher_;
  bool writable_ = true;
  // The last byte forwarded ('\0': none yet).
  char last_input_ = '\0';
  std::atomic<bool> detached_{false};
  std::atomic<int> signal_{0};
  StoppableThread worker_;
};

// How a session ended, once the terminal is back to normal.
struct Ending {
  std::optional<int> shell_exit;
  bool detached = false;
  int signal = 0;
  grpc::Status status;
};

// The session proper, with the terminal raw while it runs (when stdin is
// one). Notices meant for after it are left to the caller, who prints them
// on a restored terminal.
absl::StatusOr<Ending> RunSession(Connection& connection,
                                  const AttachTarget& target,
                                  const std::string& detach_sequence) {
  const bool terminal = ::isatty(STDIN_FILENO) == 1;
  ASSIGN_OR_RETURN(std::unique_ptr<SignalPipe> signals,
                   SignalPipe::Create(&RestoreRawTerminal));
  std::unique_ptr<WindowChangePipe> window_changes;
  std::unique_ptr<RawTerminal> raw;
  if (terminal) {
    ASSIGN_OR_RETURN(window_changes, WindowChangePipe::Create());
    ASSIGN_OR_RETURN(raw, RawTerminal::Enter(STDIN_FILENO));
  }
  // Raw mode turns off "\n" -> "\r\n" on output, so our own lines need both.
  const absl::string_view newline = terminal ? "\r\n" : "\n";

  grpc::ClientContext context;
  std::unique_ptr<AttachStream> stream =
      connection.shells().AttachShell(&context);
  AttachShellRequest first;
  first.mutable_attach()->set_sandbox_id(target.sandbox_id);
  first.mutable_attach()->set_shell_id(target.shell_id);
  first.mutable_attach()->set_cursor(target.cursor);

  Ending ending;
  // Detach keys only mean something to a person at a terminal; piped input
  // is forwarded byte for byte.
  InputPump pump(context, *stream, *signals, window_changes.get(), terminal,
                 terminal ? detach_sequence : std::string());
  if (stream->Write(first)) {
    RETURN_IF_ERROR(pump.Start());
    AttachShellResponse response;
    bool first_response = true;
    bool stdout_broken = false;
    while (stream->Read(&response)) {
      if (first_response && response.missed() > 0) {
        (void)WriteAll(
            STDERR_FILENO,
            absl::StrCat("corral: ", response.missed(),
                         " bytes of output are no longer kept; replaying "
                         "from offset ",
                         response.offset(), newline));
      }
      first_response = false;
      if (pump.detached() || pump.signal() != 0) continue;
      if (!response.output().empty() && !stdout_broken) {
        // A reader that went away (`| head`) must not cost the exit code.
        stdout_broken = !WriteAll(STDOUT_FILENO, response.output()).ok();
      }
      if (response.exited()) {
        ending.shell_exit =
            ShellExitCode(response.exit_code(), response.signal());
        pump.Stop();
        (void)stream->WritesDone();
      }
    }
  }
  pump.Stop();
  ending.status = stream->Finish();
  ending.detached = pump.detached();
  ending.signal = pump.signal();
  return ending;
}

}  // namespace

absl::StatusOr<int> AttachToShell(Connection& connection,
                                  const AttachTarget& target,
                                  const std::string& detach_sequence) {
  ASSIGN_OR_RETURN(const Ending ending,
                   RunSession(connection, target, detach_sequence));
  // The terminal is restored by now.
  const std::string reattach = absl::StrCat(
      "reattach: corral attach ", target.sandbox_id, " ", target.shell_id);
  if (ending.shell_exit) return *ending.shell_exit;
  if (ending.detached) {
    (void)WriteAll(STDERR_FILENO,
                   absl::StrCat("detached from shell ", target.shell_id, "; ",
                                reattach, "\n"));
    return 0;
  }
  if (ending.signal != 0) {
    (void)WriteAll(
        STDERR_FILENO,
        absl::StrCat("corral: ", SignalName(ending.signal), ": shell ",
                     target.shell_id, " keeps running; ", reattach, "\n"));
    return 128 + ending.signal;
  }
  if (!ending.status.ok()) return connection.CallError(ending.status);
  return absl::UnavailableError(
      absl::StrCat("the daemon ended the session before shell ",
                   target.shell_id, " exited; ", reattach));
}

}  // namespace corral::cli
