#include "daemon/rpc/services.h"

#include <sys/utsname.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/files.grpc.pb.h"
#include "corral/v1/images.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/shells.grpc.pb.h"
#include "corral/v1/snapshots.grpc.pb.h"
#include "corral/v1/system.grpc.pb.h"
#include "daemon/core/processes.h"
#include "daemon/core/sandbox_manager.h"
#include "daemon/images/image_store.h"
#include "daemon/rpc/handler.h"
#include "daemon/rpc/listener.h"
#include "daemon/rpc/output_budget.h"
#include "daemon/store/store.h"
#include "google/protobuf/util/time_util.h"

namespace corral::daemon {

constexpr const char* kDaemonVersion = "0.1.0";
constexpr uint32_t kAgentProtocolVersion = 1;

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::StatusOr<AdmittedCall> AdmitCall(const ServiceDeps& deps,
                                       const grpc::ServerContext& context) {
  std::optional<Caller> caller = deps.listener->CallerOf(context);
  if (!caller) {
    return absl::UnauthenticatedError("the caller's credentials are unknown");
  }
  if (!caller->groups_known) {
    return absl::UnauthenticatedError(
        absl::StrCat("the daemon could not read the groups of uid ",
                     caller->uid, " (SO_PEERGROUPS); its calls are refused"));
  }
  AdmittedCall admitted;
  if (caller->policy && !caller->admin) {
    const CallerPolicy& policy = *caller->policy;
    if (policy.deny) {
      return absl::PermissionDeniedError(
          absl::StrCat("the daemon's policy (", policy.name,
                       ") denies every call of uid ", caller->uid));
    }
    if (deps.calls != nullptr) {
      ASSIGN_OR_RETURN(
          admitted.slot,
          deps.calls->Acquire(caller->uid, policy.quotas.calls,
                              absl::StrCat("quotas of ", policy.name)));
    }
  }
  admitted.caller = *std::move(caller);
  return admitted;
}

grpc::Status CreateSeededSandbox(
    const ServiceDeps& deps, const Caller& caller,
    grpc::ServerReader<corral::v1::CreateSeededSandboxRequest>* reader,
    corral::v1::Sandbox* response);

namespace {

namespace v1 = corral::v1;
using google::protobuf::util::TimeUtil;

grpc::Status NotBuilt(const char* what) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      absl::StrCat(what, " is not built yet in corrald ",
                                   kDaemonVersion, "; see docs/api.md"));
}

// The command's next event, waiting in short slices so that a client that
// cancels is noticed while the command is quiet.
absl::StatusOr<v1::ExecStreamResponse> NextEvent(RunningCommand& command,
                                                 grpc::ServerContext& context) {
  for (;;) {
    auto event = command.Next(absl::Now() + absl::Milliseconds(500));
    if (event.ok() || !absl::IsDeadlineExceeded(event.status())) return event;
    if (context.IsCancelled()) {
      return absl::CancelledError("the client cancelled the call");
    }
  }
}

// Runs one command to its end over a bidirectional stream: requests bring
// stdin and signals (read on a second thread), responses carry the command's
// events. `wrap` turns an ExecStreamResponse into the stream's response type;
// `unwrap` finds stdin or a signal in a request.
template <typename Response, typename Request, typename Wrap, typename Unwrap>
grpc::Status Pump(grpc::ServerContext* context,
                  grpc::ServerReaderWriter<Response, Request>* stream,
                  RunningCommand& command, Wrap wrap, Unwrap unwrap) {
  std::mutex mutex;
  std::condition_variable reader_done_cv;
  bool reader_done = false;
  std::thread reader([&] {
    Request request;
    bool eof_sent = false;
    while (stream->Read(&request)) {
      const v1::StdinChunk* stdin_chunk = nullptr;
      int signal = 0;
      unwrap(request, &stdin_chunk, &signal);
      if (stdin_chunk != nullptr && !eof_sent) {
        eof_sent = stdin_chunk->eof();
        if (!command.WriteStdin(stdin_chunk->data(), stdin_chunk->eof()).ok()) {
          eof_sent = true;  // the command closed its stdin or ended
        }
      } else if (signal != 0) {
        (void)command.Signal(signal);
      }
    }
    // The client half-closed: the command sees the end of its stdin.
    if (!eof_sent) (void)command.WriteStdin("", true);
    std::lock_guard lock(mutex);
    reader_done = true;
    reader_done_cv.notify_all();
  });
  absl::Cleanup join_reader = [&] {
    std::unique_lock lock(mutex);
    // A client that got the exit but never half-closes would keep the reader
    // in Read forever; cancelling the call releases it.
    if (!reader_done_cv.wait_for(lock, std::chrono::seconds(2),
                                 [&] { return reader_done; })) {
      context->TryCancel();
    }
    lock.unlock();
    reader.join();
  };

  for (;;) {
    auto event = NextEvent(command, *context);
    if (!event.ok()) return ToGrpcStatus(event.status());
    const bool last = event->has_exit();
    if (!stream->Write(wrap(std::move(*event)))) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
    if (last) return grpc::Status::OK;
  }
}

class SystemService final : public v1::System::Service {
 public:
  explicit SystemService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status GetVersion(grpc::ServerContext* context,
                          const v1::GetVersionRequest*,
                          v1::GetVersionResponse* response) override {
    CALLER_OR_RETURN(caller);
    response->set_version(kDaemonVersion);
    response->set_api_version("v1");
    response->set_agent_protocol_version(kAgentProtocolVersion);
    utsname name{};
    if (::uname(&name) == 0) response->set_host_kernel(name.release);
    return grpc::Status::OK;
  }

  grpc::Status ListRuntimes(grpc::ServerContext* context,
                            const v1::ListRuntimesRequest*,
                            v1::ListRuntimesResponse* response) override {
    CALLER_OR_RETURN(caller);
    for (const auto& name : deps_.plugins->KnownRuntimes()) {
      RuntimeInfo info = deps_.plugins->Probe(name);
      auto* runtime = response->add_runtimes();
      runtime->set_name(name);
      runtime->set_available(info.available);
      runtime->set_reason(info.reason);
      for (int g : info.guarantees) {
        runtime->add_guarantees(static_cast<v1::Guarantee>(g));
      }
      // The caller's own default: its policy's, else the daemon's.
      std::string wanted = deps_.default_runtime;
      std::string why = "defaults.runtime";
      bool allowed = true;
      if (caller.policy.has_value()) {
        const CallerPolicy& policy = *caller.policy;
        if (!policy.default_runtime.empty() &&
            policy.default_runtime != deps_.default_runtime) {
          wanted = policy.default_runtime;
          why = absl::StrCat(policy.name, " default_runtime");
        }
        allowed = policy.runtimes.empty() ||
                  std::find(policy.runtimes.begin(), policy.runtimes.end(),
                            name) != policy.runtimes.end();
      }
      runtime->set_is_default(name == wanted);
      if (name == wanted) runtime->set_default_reason(why);
      runtime->set_allowed(allowed);
      runtime->mutable_details()->insert(info.details.begin(),
                                         info.details.end());
    }
    return grpc::Status::OK;
  }

  grpc::Status GetHealth(grpc::ServerContext* context,
                         const v1::GetHealthRequest*,
                         v1::GetHealthResponse* response) override {
    CALLER_OR_RETURN(caller);
    auto count = deps_.store->CountSandboxes();
    response->set_serving(count.ok());
    for (const auto& [state, n] : deps_.manager->CountByState()) {
      (*response->mutable_sandboxes_by_state())[state] = n;
    }
    *response->mutable_started_at() =
        TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(deps_.started_at));
    return grpc::Status::OK;
  }

  grpc::Status WatchEvents(grpc::ServerContext*, const v1::WatchEventsRequest*,
                           grpc::ServerWriter<v1::Event>*) override {
    return NotBuilt("WatchEvents");
  }

 private:
  const ServiceDeps deps_;
};

class SandboxesService final : public v1::Sandboxes::Service {
 public:
  explicit SandboxesService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status CreateSandbox(grpc::ServerContext* context,
                             const v1::CreateSandboxRequest* request,
                             v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    auto sandbox = deps_.manager->CreateSandbox(caller, *request);
    if (!sandbox.ok()) return ToGrpcStatus(sandbox.status());
    *response = std::move(*sandbox);
    return grpc::Status::OK;
  }

  grpc::Status CreateSeededSandbox(
      grpc::ServerContext* context,
      grpc::ServerReader<v1::CreateSeededSandboxRequest>* reader,
      v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    return daemon::CreateSeededSandbox(deps_, caller, reader, response);
  }

  grpc::Status GetSandbox(grpc::ServerContext* context,
                          const v1::GetSandboxRequest* request,
                          v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    auto sandbox = deps_.manager->GetSandbox(caller, request->id());
    if (!sandbox.ok()) return ToGrpcStatus(sandbox.status());
    *response = std::move(*sandbox);
    return grpc::Status::OK;
  }

  grpc::Status ListSandboxes(grpc::ServerContext* context,
                             const v1::ListSandboxesRequest* request,
                             v1::ListSandboxesResponse* response) override {
    CALLER_OR_RETURN(caller);
    auto sandboxes = deps_.manager->ListSandboxes(caller, *request);
    if (!sandboxes.ok()) return ToGrpcStatus(sandboxes.status());
    for (auto& sandbox : *sandboxes) {
      *response->add_sandboxes() = std::move(sandbox);
    }
    return grpc::Status::OK;
  }

  grpc::Status DeleteSandbox(grpc::ServerContext* context,
                             const v1::DeleteSandboxRequest* request,
                             v1::DeleteSandboxResponse*) override {
    CALLER_OR_RETURN(caller);
    return ToGrpcStatus(deps_.manager->DeleteSandbox(caller, request->id()));
  }

  grpc::Status ExtendSandbox(grpc::ServerContext* context,
                             const v1::ExtendSandboxRequest* request,
                             v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    auto sandbox = deps_.manager->ExtendSandbox(caller, request->id(),
                                                request->ttl_seconds());
    if (!sandbox.ok()) return ToGrpcStatus(sandbox.status());
    *response = std::move(*sandbox);
    return grpc::Status::OK;
  }

  grpc::Status StopSandbox(grpc::ServerContext*, const v1::StopSandboxRequest*,
                           v1::Sandbox*) override {
    return NotBuilt("StopSandbox");
  }
  grpc::Status StartSandbox(grpc::ServerContext*,
                            const v1::StartSandboxRequest*,
                            v1::Sandbox*) override {
    return NotBuilt("StartSandbox");
  }
  grpc::Status PauseSandbox(grpc::ServerContext* context,
                            const v1::PauseSandboxRequest* request,
                            v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    auto sandbox = deps_.manager->PauseSandbox(caller, request->id());
    if (!sandbox.ok()) return ToGrpcStatus(sandbox.status());
    *response = std::move(*sandbox);
    return grpc::Status::OK;
  }
  grpc::Status ResumeSandbox(grpc::ServerContext* context,
                             const v1::ResumeSandboxRequest* request,
                             v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    auto sandbox = deps_.manager->ResumeSandbox(caller, request->id());
    if (!sandbox.ok()) return ToGrpcStatus(sandbox.status());
    *response = std::move(*sandbox);
    return grpc::Status::OK;
  }

  grpc::Status Run(grpc::ServerContext* context,
                   grpc::ServerReaderWriter<v1::RunResponse, v1::RunRequest>*
                       stream) override {
    CALLER_OR_RETURN(caller);
    v1::RunRequest first;
    if (!stream->Read(&first) || !first.has_start()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first RunRequest must carry start");
    }
    auto sandbox =
        deps_.manager->CreateSandbox(caller, first.start().sandbox());
    if (!sandbox.ok()) return ToGrpcStatus(sandbox.status());
    const std::string id = sandbox->id();
    // Whatever happens from here on, the sandbox goes.
    absl::Cleanup destroy = [&] {
      if (auto s = deps_.manager->DeleteSandbox(caller, id); !s.ok()) {
        corral::Logger("rpc")->error("run: deleting {}: {}", id, s.ToString());
      }
    };
    v1::RunResponse created;
    *created.mutable_created() = *sandbox;
    if (!stream->Write(created)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
    v1::ExecStart start = first.start().command();
    start.set_sandbox_id(id);
    auto command = deps_.manager->StartExec(caller, start);
    if (!command.ok()) return ToGrpcStatus(command.status());
    return Pump(
        context, stream, **command,
        [](v1::ExecStreamResponse event) {
          v1::RunResponse response;
          if (event.has_output()) {
            *response.mutable_output() = std::move(*event.mutable_output());
          } else if (event.has_exit()) {
            *response.mutable_exit() = std::move(*event.mutable_exit());
          }
          return response;
        },
        [](const v1::RunRequest& request, const v1::StdinChunk** stdin_chunk,
           int* signal) {
          if (request.has_stdin()) *stdin_chunk = &request.stdin();
          if (request.payload_case() == v1::RunRequest::kSignal) {
            *signal = request.signal();
          }
        });
  }

 private:
  const ServiceDeps deps_;
};

class ExecService final : public v1::Exec::Service {
 public:
  explicit ExecService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status Exec(grpc::ServerContext* context,
                    const v1::ExecRequest* request,
                    v1::ExecResponse* response) override {
    CALLER_OR_RETURN(caller);
    constexpr size_t kMaxStdin = 16 << 20;
    if (request->stdin().size() > kMaxStdin) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "stdin: at most 16 MiB in a unary Exec; use ExecStream");
    }
    v1::ExecStart start = request->start();
    if (!request->stdin().empty()) start.set_stdin_open(true);
    auto command = deps_.manager->StartExec(caller, start);
    if (!command.ok()) return ToGrpcStatus(command.status());
    RunningCommand& running = **command;
    // Stdin is fed from another thread so that a command which writes before
    // it reads cannot deadlock against the flow-control windows.
    std::thread feeder;
    if (start.stdin_open()) {
      feeder = std::thread([&running, &request] {
        constexpr size_t kChunk = 64 << 10;
        const std::string& data = request->stdin();
        for (size_t at = 0; at < data.size(); at += kChunk) {
          if (!running
                   .WriteStdin(std::string_view(data).substr(at, kChunk), false)
                   .ok()) {
            return;
          }
        }
        (void)running.WriteStdin("", true);
      });
    }
    absl::Cleanup join = [&] {
      if (feeder.joinable()) feeder.join();
    };
    // The output is held until the command exits: within the daemon's
    // budget for all unary calls together. What does not fit is cut and
    // flagged, as output past the call's own limit is (ExecStream passes
    // output on as the client reads it, and has no such cut).
    uint64_t held = 0;
    absl::Cleanup give_back = [&] {
      if (deps_.output_budget != nullptr) deps_.output_budget->Give(held);
    };
    bool cut[3] = {false, false, false};
    for (;;) {
      auto event = NextEvent(running, *context);
      if (!event.ok()) return ToGrpcStatus(event.status());
      if (event->has_output()) {
        const bool is_stderr =
            event->output().stream() == v1::OUTPUT_STREAM_STDERR;
        auto* out =
            is_stderr ? response->mutable_stderr() : response->mutable_stdout();
        const std::string& data = event->output().data();
        uint64_t fits = data.size();
        if (deps_.output_budget != nullptr) {
          fits = deps_.output_budget->Take(data.size());
          held += fits;
        }
        out->append(data, 0, fits);
        if (fits < data.size()) cut[is_stderr ? 2 : 1] = true;
      } else if (event->has_exit()) {
        *response->mutable_exit() = event->exit();
        if (cut[1]) response->mutable_exit()->set_stdout_truncated(true);
        if (cut[2]) response->mutable_exit()->set_stderr_truncated(true);
        if (cut[1] || cut[2]) {
          corral::Logger("rpc")->warn(
              "exec in sandbox {}: output cut, the daemon holds "
              "daemon.output_buffer_bytes for unary calls already",
              start.sandbox_id());
        }
        return grpc::Status::OK;
      }
    }
  }

  grpc::Status ExecStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ExecStreamResponse, v1::ExecStreamRequest>*
          stream) override {
    CALLER_OR_RETURN(caller);
    v1::ExecStreamRequest first;
    if (!stream->Read(&first) || !first.has_start()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first ExecStreamRequest must carry start");
    }
    auto command = deps_.manager->StartExec(caller, first.start());
    if (!command.ok()) return ToGrpcStatus(command.status());
    return Pump(
        context, stream, **command,
        [](v1::ExecStreamResponse event) { return event; },
        [](const v1::ExecStreamRequest& request,
           const v1::StdinChunk** stdin_chunk, int* signal) {
          if (request.has_stdin()) *stdin_chunk = &request.stdin();
          if (request.payload_case() == v1::ExecStreamRequest::kSignal) {
            *signal = request.signal();
          }
        });
  }

  grpc::Status StartProcess(grpc::ServerContext* context,
                            const v1::StartProcessRequest* request,
                            v1::Process* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Process>(
        [&] { return deps_.processes->Start(caller, *request); }, response);
  }

  grpc::Status GetProcess(grpc::ServerContext* context,
                          const v1::GetProcessRequest* request,
                          v1::Process* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Process>(
        [&] {
          return deps_.processes->GetProcess(caller, request->sandbox_id(),
                                             request->process_id());
        },
        response);
  }

  grpc::Status ListProcesses(grpc::ServerContext* context,
                             const v1::ListProcessesRequest* request,
                             v1::ListProcessesResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::ListProcessesResponse>(
        [&] {
          return deps_.processes->ListProcesses(caller, request->sandbox_id());
        },
        response);
  }

  grpc::Status ReadProcess(grpc::ServerContext* context,
                           const v1::ReadProcessRequest* request,
                           v1::ReadProcessResponse* response) override {
    CALLER_OR_RETURN(caller);
    if (request->wait_ms() > 60000) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "wait_ms: at most 60000");
    }
    const absl::Time deadline =
        request->wait_ms() == 0
            ? absl::InfinitePast()
            : absl::Now() + absl::Milliseconds(request->wait_ms());
    return Answer<v1::ReadProcessResponse>(
        [&] {
          return deps_.processes->ReadProcess(caller, *request, deadline);
        },
        response);
  }

  grpc::Status AttachProcess(
      grpc::ServerContext* context, const v1::ReadProcessRequest* request,
      grpc::ServerWriter<v1::ReadProcessResponse>* writer) override {
    CALLER_OR_RETURN(caller);
    v1::ReadProcessRequest read = *request;
    bool first = true;
    for (;;) {
      if (context->IsCancelled()) return grpc::Status::OK;
      // Short waits, so that a client that left is noticed while the
      // process is quiet.
      auto chunk = deps_.processes->ReadProcess(
          caller, read, absl::Now() + absl::Milliseconds(500));
      if (!chunk.ok()) return ToGrpcStatus(chunk.status());
      const bool news = chunk->output_size() > 0 || chunk->missed() > 0 ||
                        chunk->exited() || first;
      read.set_cursor(chunk->next_cursor());
      if (!news) continue;
      // The process's state goes with the first and the last response.
      if (!first && !chunk->exited()) chunk->clear_process();
      first = false;
      if (!writer->Write(*chunk)) return grpc::Status::OK;
      if (chunk->exited()) return grpc::Status::OK;
    }
  }

  grpc::Status SignalProcess(grpc::ServerContext* context,
                             const v1::SignalProcessRequest* request,
                             v1::Process* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Process>(
        [&] { return deps_.processes->SignalProcess(caller, *request); },
        response);
  }

  grpc::Status WriteProcess(grpc::ServerContext* context,
                            const v1::WriteProcessRequest* request,
                            v1::WriteProcessResponse*) override {
    CALLER_OR_RETURN(caller);
    return ToGrpcStatus(deps_.processes->WriteProcess(caller, *request));
  }

  grpc::Status RemoveProcess(grpc::ServerContext* context,
                             const v1::RemoveProcessRequest* request,
                             v1::Process* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Process>(
        [&] {
          return deps_.processes->RemoveProcess(caller, request->sandbox_id(),
                                                request->process_id());
        },
        response);
  }

 private:
  const ServiceDeps deps_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeImagesService(const ServiceDeps& deps);
std::unique_ptr<grpc::Service> MakeFilesService(const ServiceDeps& deps);
std::unique_ptr<grpc::Service> MakeShellsService(const ServiceDeps& deps);
std::unique_ptr<grpc::Service> MakeSnapshotsService(const ServiceDeps& deps);
std::unique_ptr<grpc::Service> MakeNetworkService(const ServiceDeps& deps);

std::vector<std::unique_ptr<grpc::Service>> MakeServices(
    const ServiceDeps& deps) {
  std::vector<std::unique_ptr<grpc::Service>> services;
  services.push_back(std::make_unique<SystemService>(deps));
  services.push_back(MakeImagesService(deps));
  services.push_back(std::make_unique<SandboxesService>(deps));
  services.push_back(std::make_unique<ExecService>(deps));
  services.push_back(MakeShellsService(deps));
  services.push_back(MakeFilesService(deps));
  services.push_back(MakeSnapshotsService(deps));
  services.push_back(MakeNetworkService(deps));
  return services;
}

}  // namespace corral::daemon
