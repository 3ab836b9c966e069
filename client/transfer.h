// Streamed transfers between the CLI and corrald: a local source of upload
// bytes (a directory packed here, a file, stdin), the driver of a
// client-streaming upload, a ChunkSource over a server stream, and a guard
// that turns Ctrl-C into a clean stop. Memory stays bounded by one chunk:
// nothing is ever read whole.
#ifndef CORRAL_CLIENT_TRANSFER_H_
#define CORRAL_CLIENT_TRANSFER_H_

#include <sys/stat.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/connection.h"
#include "client/signal_pipe.h"
#include "client/tar_extract.h"
#include "client/tar_packer.h"
#include "corral/unique_fd.h"
#include "grpcpp/grpcpp.h"

namespace corral::cli {

// Where upload bytes come from.
class UploadSource {
 public:
  enum class Kind { kDirectory, kFile, kStdin };

  // Looks at `path` before anything is sent, so that a typo fails before an
  // upload starts: a directory, or a file opened now. "-" is stdin when
  // `allow_stdin`. Errors read "cannot open PATH: reason".
  static absl::StatusOr<UploadSource> Open(const std::string& path,
                                           bool allow_stdin);

  Kind kind() const { return kind_; }
  bool is_directory() const { return kind_ == Kind::kDirectory; }
  // The file's or directory's stat (zeroes for stdin).
  const struct stat& info() const { return info_; }

  // Sends every byte to `sink` in chunks of at most kUploadChunkSize. A
  // directory is packed as a pax tar; with `workspace`, FIFOs are skipped
  // (workspace archives cannot hold them). Skipped entries are warned about.
  absl::Status Send(const ChunkSink& sink, bool workspace);

 private:
  std::string path_;
  Kind kind_ = Kind::kFile;
  struct stat info_ = {};
  UniqueFd file_;
};

// While alive, SIGINT, SIGTERM and SIGHUP do not kill corral: they are
// recorded, and cancel the call registered with CancelOnSignal, so the
// command can clean up (remove a staging directory, delete a sandbox) and
// exit 128+signal. The previous handlers come back on destruction. One guard
// at a time.
class InterruptGuard {
 public:
  static absl::StatusOr<std::unique_ptr<InterruptGuard>> Install();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // 0, or the first signal caught.
  int signal() const { return signal_.load(); }
  // A signal from now on also cancels `context` (nullptr: none). If one was
  // already caught, cancels it at once.
  void CancelOnSignal(grpc::ClientContext* context);

 private:
  InterruptGuard() = default;
  void Watch();

  std::unique_ptr<SignalPipe> signals_;
  UniqueFd stop_read_;
  UniqueFd stop_write_;
  std::thread thread_;
  std::atomic<int> signal_{0};
  std::mutex mutex_;
  grpc::ClientContext* context_ = nullptr;
};

// Copies everything `source` yields to `fd`.
absl::Status CopyToFd(const ChunkSource& source, int fd);

// Drives a client-streaming upload: `first`, then the source's bytes, each
// chunk in the `data` field of a request, then WritesDone and Finish. A local
// failure (or an interrupt seen through `interrupts`) cancels the call, so
// that the daemon never takes a truncated archive for a complete one. The
// daemon's reason for ending the call beats a local "upload interrupted".
template <typename Request>
absl::Status StreamUpload(
    Connection& connection, grpc::ClientContext& context,
    grpc::ClientWriterInterface<Request>& writer, const Request& first,
    const std::function<absl::Status(const ChunkSink&)>& produce,
    const InterruptGuard* interrupts = nullptr) {
  bool writable = writer.Write(first);
  Request request;
  const ChunkSink send = [&](absl::string_view chunk) -> absl::Status {
    if (interrupts != nullptr && interrupts->signal() != 0) {
      return absl::CancelledError("interrupted");
    }
    request.set_data(chunk.data(), chunk.size());
    if (writable && writer.Write(request)) return absl::OkStatus();
    writable = false;
    return absl::AbortedError("upload interrupted");
  };
  const absl::Status local =
      writable ? produce(send) : absl::AbortedError("upload interrupted");
  if (!local.ok() && writable) {
    context.TryCancel();
    (void)writer.Finish();
    return local;
  }
  if (writable) writer.WritesDone();
  const grpc::Status status = writer.Finish();
  if (!status.ok()) return connection.CallError(status);
  return local;
}

// Uploads `source` (UploadSource::Send with `workspace`) with the
// client-streaming `method` of `stub`, `first` ahead of its bytes, and
// returns the daemon's answer. No deadline: an upload can take long; Ctrl-C
// ends it (through `interrupts` when given, else by killing corral).
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> Upload(Connection& connection, Stub& stub,
                                std::unique_ptr<grpc::ClientWriter<Request>> (
                                    Stub::*method)(grpc::ClientContext*,
                                                   Response*),
                                const Request& first, UploadSource& source,
                                bool workspace,
                                const InterruptGuard* interrupts = nullptr) {
  grpc::ClientContext context;
  Response response;
  std::unique_ptr<grpc::ClientWriter<Request>> writer =
      (stub.*method)(&context, &response);
  absl::Status status = StreamUpload<Request>(
      connection, context, *writer, first,
      [&source, workspace](const ChunkSink& sink) {
        return source.Send(sink, workspace);
      },
      interrupts);
  if (!status.ok()) return status;
  return response;
}

// The archive or file a server stream (ExportPath, ReadFile) carries, as a
// ChunkSource. At the end of the stream the call is finished and a failure
// becomes the CLI's error (connection.CallError). Destroying it before the
// end cancels the call: the extraction or copy stopped early.
template <typename Message>
class DownloadStream {
 public:
  DownloadStream(Connection& connection,
                 std::unique_ptr<grpc::ClientContext> context)
      : connection_(connection), context_(std::move(context)) {}
  ~DownloadStream() {
    if (reader_ != nullptr && !finished_) {
      context_->TryCancel();
      (void)reader_->Finish();
    }
  }
  DownloadStream(const DownloadStream&) = delete;
  DownloadStream& operator=(const DownloadStream&) = delete;

  grpc::ClientContext* context() { return context_.get(); }
  void Start(std::unique_ptr<grpc::ClientReader<Message>> reader) {
    reader_ = std::move(reader);
  }

  ChunkSource Source() {
    return [this](std::string& chunk) -> absl::StatusOr<bool> {
      if (finished_) return false;
      if (reader_->Read(&message_)) {
        chunk.swap(*message_.mutable_data());
        return true;
      }
      finished_ = true;
      const grpc::Status status = reader_->Finish();
      if (!status.ok()) return connection_.CallError(status);
      return false;
    };
  }

 private:
  Connection& connection_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<Message>> reader_;
  Message message_;
  bool finished_ = false;
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_TRANSFER_H_
