#include "client/exec_session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/exit_status.h"
#include "client/format.h"
#include "client/output.h"
#include "client/signal_pipe.h"
#include "client/stoppable_thread.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::cli {
namespace {

// Size of one stdin read forwarded to the command; small enough to keep
// interactive input snappy, well under the 1 MiB message cap.
constexpr size_t kStdinChunkSize = 64 << 10;

// What differs between Run and ExecStream, for the shared driver below: only
// the message types. Both carry stdin chunks and signals the same way.
template <typename RequestType, typename ResponseType>
struct StreamTraits {
  using Request = RequestType;
  using Response = ResponseType;

  static Request Stdin(std::string data, bool eof) {
    Request request;
    request.mutable_stdin()->set_data(std::move(data));
    request.mutable_stdin()->set_eof(eof);
    return request;
  }
  static Request Signal(int signal_number) {
    Request request;
    request.set_signal(signal_number);
    return request;
  }
};
using RunTraits = StreamTraits<corral::v1::RunRequest, corral::v1::RunResponse>;
using ExecTraits =
    StreamTraits<corral::v1::ExecStreamRequest, corral::v1::ExecStreamResponse>;

// Owns everything written to the stream after the first message: stdin
// chunks and signals. gRPC allows one writer thread next to one reader, so
// all writes happen here while the calling thread reads.
template <typename Traits>
class StreamWriter {
 public:
  using Stream = grpc::ClientReaderWriter<typename Traits::Request,
                                          typename Traits::Response>;

  StreamWriter(grpc::ClientContext& context, Stream& stream,
               const SignalPipe& signals, bool forward_stdin)
      : context_(context),
        stream_(stream),
        signals_(signals),
        forward_stdin_(forward_stdin) {}

  absl::Status Start() {
    return worker_.Start([this] { Loop(); });
  }

  // Ends the thread; safe to call more than once.
  void Stop() { worker_.Stop(); }

  ~StreamWriter() { Stop(); }

  // Set when the call was abandoned; the value is the CLI's exit code.
  std::optional<int> abandoned_exit() const {
    const int code = abandoned_exit_.load();
    if (code == 0) return std::nullopt;
    return code;
  }

 private:
  void Loop() {
    bool stdin_open = forward_stdin_;
    int interrupts = 0;
    std::string buffer(kStdinChunkSize, '\0');
    while (true) {
      std::array<struct pollfd, 3> fds = {};
      fds[0] = {worker_.stop_fd(), POLLIN, 0};
      fds[1] = {signals_.read_fd(), POLLIN, 0};
      fds[2] = {stdin_open ? STDIN_FILENO : -1, POLLIN, 0};
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        Warn(ErrnoStatus("poll").message());
        return;
      }
      if (fds[0].revents != 0) return;
      if (fds[1].revents & POLLIN) {
        unsigned char signal_number;
        while (::read(signals_.read_fd(), &signal_number, 1) == 1) {
          if (signal_number == SIGINT && ++interrupts == 1 && writable_) {
            if (::isatty(STDERR_FILENO)) {
              Warn("sent SIGINT to the command; Ctrl-C again abandons it");
            }
            writable_ = stream_.Write(Traits::Signal(SIGINT));
            continue;
          }
          // A second Ctrl-C, or SIGTERM/SIGHUP: stop waiting. Cancelling
          // tells the daemon, which kills the command (and for `run`
          // destroys the sandbox).
          abandoned_exit_.store(128 + signal_number);
          context_.TryCancel();
        }
      }
      if (stdin_open && fds[2].revents != 0) {
        const ssize_t got = ::read(STDIN_FILENO, buffer.data(), buffer.size());
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got < 0) Warn(ErrnoStatus("read stdin").message());
        if (got > 0) {
          if (writable_) {
            writable_ = stream_.Write(Traits::Stdin(
                buffer.substr(0, static_cast<size_t>(got)), false));
          }
        } else {
          // End of input (or an unreadable stdin): the command sees EOF.
          stdin_open = false;
          if (writable_) writable_ = stream_.Write(Traits::Stdin("", true));
        }
      }
    }
  }

  grpc::ClientContext& context_;
  Stream& stream_;
  const SignalPipe& signals_;
  const bool forward_stdin_;
  // False once a Write failed: the call is over and the reader will see why.
  bool writable_ = true;
  std::atomic<int> abandoned_exit_{0};
  StoppableThread worker_;
};

// The part of both RPCs after the first request: read until the stream ends,
// then turn the exit into the CLI's exit code and notices.
template <typename Traits, typename OnResponse>
absl::StatusOr<int> Drive(
    Connection& connection, grpc::ClientContext& context,
    grpc::ClientReaderWriter<typename Traits::Request,
                             typename Traits::Response>& stream,
    const typename Traits::Request& first, bool forward_stdin,
    const SessionOptions& options, std::string& sandbox_id,
    OnResponse on_response) {
  ASSIGN_OR_RETURN(std::unique_ptr<SignalPipe> signals, SignalPipe::Create());
  OutputSink sink(options.json);
  std::optional<corral::v1::ExecExit> exit;

  StreamWriter<Traits> writer(context, stream, *signals, forward_stdin);
  // Only the first message is written from this thread, before the writer
  // exists, so the two never write at once.
  const bool sent = stream.Write(first);
  if (sent) {
    if (absl::Status started = writer.Start(); !started.ok()) {
      context.TryCancel();
      (void)stream.Finish();
      return started;
    }
  }

  typename Traits::Response response;
  bool writes_done = false;
  while (sent && stream.Read(&response)) {
    on_response(response, sink, exit);
    if (exit && !writes_done) {
      // The command is over: nothing more to send. Half-closing lets the
      // daemon finish the call at once instead of waiting for us.
      writer.Stop();
      (void)stream.WritesDone();
      writes_done = true;
    }
  }
  writer.Stop();
  const grpc::Status status = stream.Finish();
  if (std::optional<int> abandoned = writer.abandoned_exit()) {
    return *abandoned;
  }
  // With the exit in hand the command's result is known, whatever status the
  // call ended with.
  if (!status.ok() && !exit) return connection.CallError(status);
  if (!exit) {
    return absl::InternalError(
        "the daemon ended the stream without the command's exit status");
  }
  if (std::optional<std::string> notice =
          ExitNotice(*exit, options.timeout_seconds)) {
    (void)WriteAll(STDERR_FILENO, absl::StrCat("corral: ", *notice, "\n"));
  }
  if (options.json) {
    RETURN_IF_ERROR(
        WriteAll(STDOUT_FILENO,
                 FormatExecResultJson(sandbox_id, *exit, sink.stdout_data(),
                                      sink.stderr_data())));
  }
  return ExitCodeFor(*exit);
}

}  // namespace

absl::StatusOr<int> RunCommand(Connection& connection,
                               const corral::v1::RunStart& start,
                               const SessionOptions& options) {
  grpc::ClientContext context;
  auto stream = connection.sandboxes().Run(&context);
  corral::v1::RunRequest first;
  *first.mutable_start() = start;
  std::string sandbox_id;
  return Drive<RunTraits>(
      connection, context, *stream, first, start.command().stdin_open(),
      options, sandbox_id,
      [&sandbox_id](const corral::v1::RunResponse& response, OutputSink& sink,
                    std::optional<corral::v1::ExecExit>& exit) {
        switch (response.payload_case()) {
          case corral::v1::RunResponse::kCreated:
            sandbox_id = response.created().id();
            break;
          case corral::v1::RunResponse::kOutput:
            sink.Add(response.output());
            break;
          case corral::v1::RunResponse::kExit:
            exit = response.exit();
            break;
          default:
            break;
        }
      });
}

absl::StatusOr<int> ExecCommand(Connection& connection,
                                const corral::v1::ExecStart& start,
                                const SessionOptions& options) {
  grpc::ClientContext context;
  auto stream = connection.exec().ExecStream(&context);
  corral::v1::ExecStreamRequest first;
  *first.mutable_start() = start;
  std::string sandbox_id = start.sandbox_id();
  return Drive<ExecTraits>(
      connection, context, *stream, first, start.stdin_open(), options,
      sandbox_id,
      [](const corral::v1::ExecStreamResponse& response, OutputSink& sink,
         std::optional<corral::v1::ExecExit>& exit) {
        switch (response.payload_case()) {
          case corral::v1::ExecStreamResponse::kOutput:
            sink.Add(response.output());
            break;
          case corral::v1::ExecStreamResponse::kExit:
            exit = response.exit();
            break;
          default:
            // `started` carries the pid, which the CLI does not show.
            break;
        }
      });
}

}  // namespace corral::cli
