// corral.v1.Shells: unary calls go straight to the core's Processes;
// AttachShell streams output from a cursor while a second thread forwards the
// client's keystrokes and resizes.
#include <atomic>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/time/clock.h"
#include "corral/v1/shells.grpc.pb.h"
#include "daemon/core/processes.h"
#include "daemon/rpc/handler.h"
#include "daemon/rpc/services.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;

// How long an attached stream waits for output before it looks whether the
// client is still there.
constexpr absl::Duration kAttachSlice = absl::Milliseconds(500);

class ShellsService final : public v1::Shells::Service {
 public:
  explicit ShellsService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status OpenShell(grpc::ServerContext* context,
                         const v1::OpenShellRequest* request,
                         v1::Shell* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Shell>(
        [&] { return deps_.processes->OpenShell(caller, *request); }, response);
  }

  grpc::Status ReadShell(grpc::ServerContext* context,
                         const v1::ReadShellRequest* request,
                         v1::ReadShellResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::ReadShellResponse>(
        [&] {
          return deps_.processes->ReadShell(caller, *request,
                                            absl::InfinitePast());
        },
        response);
  }

  grpc::Status WriteShell(grpc::ServerContext* context,
                          const v1::WriteShellRequest* request,
                          v1::WriteShellResponse*) override {
    CALLER_OR_RETURN(caller);
    return ToGrpcStatus(deps_.processes->WriteShell(caller, *request));
  }

  grpc::Status ResizeShell(grpc::ServerContext* context,
                           const v1::ResizeShellRequest* request,
                           v1::Shell* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Shell>(
        [&] { return deps_.processes->ResizeShell(caller, *request); },
        response);
  }

  grpc::Status SignalShell(grpc::ServerContext* context,
                           const v1::SignalShellRequest* request,
                           v1::Shell* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Shell>(
        [&] { return deps_.processes->SignalShell(caller, *request); },
        response);
  }

  grpc::Status CloseShell(grpc::ServerContext* context,
                          const v1::CloseShellRequest* request,
                          v1::Shell* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Shell>(
        [&] { return deps_.processes->CloseShell(caller, *request); },
        response);
  }

  grpc::Status ListShells(grpc::ServerContext* context,
                          const v1::ListShellsRequest* request,
                          v1::ListShellsResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::ListShellsResponse>(
        [&] {
          return deps_.processes->ListShells(caller, request->sandbox_id());
        },
        response);
  }

  grpc::Status AttachShell(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::AttachShellResponse, v1::AttachShellRequest>*
          stream) override {
    CALLER_OR_RETURN(caller);
    v1::AttachShellRequest first;
    if (!stream->Read(&first) || !first.has_attach()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first message must name the shell (attach)");
    }
    v1::ReadShellRequest read = first.attach();
    // Checks the shell exists and the caller may see it before streaming.
    auto shell =
        deps_.processes->GetShell(caller, read.sandbox_id(), read.shell_id());
    if (!shell.ok()) return ToGrpcStatus(shell.status());

    // Keystrokes and resizes, until the client half-closes or goes away.
    std::atomic<bool> input_done{false};
    std::thread input([&] {
      v1::AttachShellRequest request;
      while (stream->Read(&request)) {
        if (request.has_input()) {
          v1::WriteShellRequest write;
          write.set_sandbox_id(read.sandbox_id());
          write.set_shell_id(read.shell_id());
          write.set_input(request.input());
          (void)deps_.processes->WriteShell(caller, write);
        } else if (request.has_resize()) {
          v1::ResizeShellRequest resize;
          resize.set_sandbox_id(read.sandbox_id());
          resize.set_shell_id(read.shell_id());
          *resize.mutable_size() = request.resize();
          (void)deps_.processes->ResizeShell(caller, resize);
        }
      }
      input_done = true;
    });
    absl::Cleanup join_input = [&] {
      // The input thread leaves Read once the call ends.
      context->TryCancel();
      input.join();
    };

    bool first_response = true;
    for (;;) {
      if (context->IsCancelled() || input_done) return grpc::Status::OK;
      auto chunk =
          deps_.processes->ReadShell(caller, read, absl::Now() + kAttachSlice);
      if (!chunk.ok()) return ToGrpcStatus(chunk.status());
      v1::AttachShellResponse response;
      if (!chunk->output().empty() || (first_response && chunk->missed())) {
        response.set_offset(chunk->offset());
        response.set_output(std::move(*chunk->mutable_output()));
        if (first_response) response.set_missed(chunk->missed());
      }
      read.set_cursor(chunk->next_cursor());
      if (chunk->exited()) {
        auto final_state = deps_.processes->GetShell(caller, read.sandbox_id(),
                                                     read.shell_id());
        response.set_offset(chunk->offset());
        response.set_exited(true);
        if (final_state.ok()) {
          response.set_exit_code(final_state->exit_code());
          response.set_signal(final_state->signal());
        }
        stream->Write(response);
        return grpc::Status::OK;
      }
      if (response.output().empty() && response.missed() == 0) continue;
      first_response = false;
      if (!stream->Write(response)) return grpc::Status::OK;
    }
  }

 private:
  const ServiceDeps deps_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeShellsService(const ServiceDeps& deps) {
  return std::make_unique<ShellsService>(deps);
}

}  // namespace corral::daemon
