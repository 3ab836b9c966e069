// Files and Snapshots services, and Sandboxes.CreateSeededSandbox's stream
// handling: each handler finds its caller, turns gRPC streams into chunk
// readers/writers, and leaves the work to Workspaces.
#include <optional>
#include <string>

#include "corral/v1/files.grpc.pb.h"
#include "corral/v1/snapshots.grpc.pb.h"
#include "daemon/core/workspaces.h"
#include "daemon/rpc/handler.h"
#include "daemon/rpc/listener.h"
#include "daemon/rpc/services.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;

// The data messages after a stream's header, as a ChunkReader. A second
// header is an error.
template <typename Request>
Workspaces::ChunkReader DataReader(grpc::ServerReader<Request>* reader) {
  return [reader]() -> absl::StatusOr<std::optional<std::string>> {
    Request request;
    while (reader->Read(&request)) {
      if (!request.has_data()) {
        return absl::InvalidArgumentError(
            "only data may follow the first message of the stream");
      }
      if (request.data().empty()) continue;
      return std::optional<std::string>(std::move(*request.mutable_data()));
    }
    return std::optional<std::string>();
  };
}

class FilesService final : public v1::Files::Service {
 public:
  explicit FilesService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status ReadFile(grpc::ServerContext* context,
                        const v1::ReadFileRequest* request,
                        grpc::ServerWriter<v1::FileChunk>* writer) override {
    CALLER_OR_RETURN(caller);
    return ToGrpcStatus(deps_.workspaces->ReadFile(
        caller, *request, [&](const v1::FileChunk& chunk) {
          if (!writer->Write(chunk)) {
            return absl::CancelledError("the client went away");
          }
          return absl::OkStatus();
        }));
  }

  grpc::Status WriteFile(grpc::ServerContext* context,
                         grpc::ServerReader<v1::WriteFileRequest>* reader,
                         v1::FileInfo* response) override {
    CALLER_OR_RETURN(caller);
    v1::WriteFileRequest first;
    if (!reader->Read(&first) || !first.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first message must carry the header");
    }
    return Answer<v1::FileInfo>(
        [&] {
          return deps_.workspaces->WriteFile(caller, first.header(),
                                             DataReader(reader));
        },
        response);
  }

  grpc::Status StatFile(grpc::ServerContext* context,
                        const v1::StatFileRequest* request,
                        v1::FileInfo* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::FileInfo>(
        [&] { return deps_.workspaces->StatFile(caller, *request); }, response);
  }

  grpc::Status ListDirectory(grpc::ServerContext* context,
                             const v1::ListDirectoryRequest* request,
                             v1::ListDirectoryResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::ListDirectoryResponse>(
        [&] { return deps_.workspaces->ListDirectory(caller, *request); },
        response);
  }

  grpc::Status MakeDirectory(grpc::ServerContext* context,
                             const v1::MakeDirectoryRequest* request,
                             v1::FileInfo* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::FileInfo>(
        [&] { return deps_.workspaces->MakeDirectory(caller, *request); },
        response);
  }

  grpc::Status RemoveFile(grpc::ServerContext* context,
                          const v1::RemoveFileRequest* request,
                          v1::RemoveFileResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::RemoveFileResponse>(
        [&] { return deps_.workspaces->RemoveFile(caller, *request); },
        response);
  }

  grpc::Status MoveFile(grpc::ServerContext* context,
                        const v1::MoveFileRequest* request,
                        v1::FileInfo* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::FileInfo>(
        [&] { return deps_.workspaces->MoveFile(caller, *request); }, response);
  }

  grpc::Status SyncWorkspace(
      grpc::ServerContext* context,
      grpc::ServerReader<v1::SyncWorkspaceRequest>* reader,
      v1::SyncWorkspaceResponse* response) override {
    CALLER_OR_RETURN(caller);
    v1::SyncWorkspaceRequest first;
    if (!reader->Read(&first) || !first.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first message must carry the header");
    }
    return Answer<v1::SyncWorkspaceResponse>(
        [&] {
          return deps_.workspaces->Sync(caller, first.header(),
                                        DataReader(reader));
        },
        response);
  }

  grpc::Status ExportPath(
      grpc::ServerContext* context, const v1::ExportPathRequest* request,
      grpc::ServerWriter<v1::ArchiveChunk>* writer) override {
    CALLER_OR_RETURN(caller);
    v1::ArchiveChunk chunk;
    return ToGrpcStatus(
        deps_.workspaces->Export(caller, *request, [&](std::string data) {
          *chunk.mutable_data() = std::move(data);
          if (!writer->Write(chunk)) {
            return absl::CancelledError("the client went away");
          }
          return absl::OkStatus();
        }));
  }

  grpc::Status DiffWorkspace(grpc::ServerContext* context,
                             const v1::DiffWorkspaceRequest* request,
                             v1::DiffWorkspaceResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::DiffWorkspaceResponse>(
        [&] { return deps_.workspaces->Diff(caller, *request); }, response);
  }

  grpc::Status ApplyPatch(grpc::ServerContext* context,
                          const v1::ApplyPatchRequest* request,
                          v1::ApplyPatchResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::ApplyPatchResponse>(
        [&] { return deps_.workspaces->ApplyPatch(caller, *request); },
        response);
  }

  grpc::Status WatchDirectory(
      grpc::ServerContext* context, const v1::WatchDirectoryRequest* request,
      grpc::ServerWriter<v1::WatchDirectoryResponse>* writer) override {
    CALLER_OR_RETURN(caller);
    absl::Status s = deps_.workspaces->WatchDirectory(
        caller, *request, [&](const v1::WatchDirectoryResponse& response) {
          return !context->IsCancelled() && writer->Write(response);
        });
    if (absl::IsCancelled(s)) return grpc::Status::OK;
    return ToGrpcStatus(s);
  }

  grpc::Status GetCommandLog(grpc::ServerContext* context,
                             const v1::GetCommandLogRequest* request,
                             v1::GetCommandLogResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::GetCommandLogResponse>(
        [&] { return deps_.workspaces->CommandLog(caller, *request); },
        response);
  }

 private:
  const ServiceDeps deps_;
};

class SnapshotsService final : public v1::Snapshots::Service {
 public:
  explicit SnapshotsService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status CreateSnapshot(grpc::ServerContext* context,
                              const v1::CreateSnapshotRequest* request,
                              v1::Snapshot* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Snapshot>(
        [&] { return deps_.workspaces->CreateSnapshot(caller, *request); },
        response);
  }

  grpc::Status ListSnapshots(grpc::ServerContext* context,
                             const v1::ListSnapshotsRequest* request,
                             v1::ListSnapshotsResponse* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::ListSnapshotsResponse>(
        [&] { return deps_.workspaces->ListSnapshots(caller, *request); },
        response);
  }

  grpc::Status RestoreSnapshot(grpc::ServerContext* context,
                               const v1::RestoreSnapshotRequest* request,
                               v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Sandbox>(
        [&] { return deps_.workspaces->RestoreSnapshot(caller, *request); },
        response);
  }

  grpc::Status ForkSnapshot(grpc::ServerContext* context,
                            const v1::ForkSnapshotRequest* request,
                            v1::Sandbox* response) override {
    CALLER_OR_RETURN(caller);
    return Answer<v1::Sandbox>(
        [&] { return deps_.workspaces->ForkSnapshot(caller, *request); },
        response);
  }

  grpc::Status DeleteSnapshot(grpc::ServerContext* context,
                              const v1::DeleteSnapshotRequest* request,
                              v1::DeleteSnapshotResponse*) override {
    CALLER_OR_RETURN(caller);
    return ToGrpcStatus(deps_.workspaces->DeleteSnapshot(caller, *request));
  }

 private:
  const ServiceDeps deps_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeFilesService(const ServiceDeps& deps) {
  return std::make_unique<FilesService>(deps);
}

std::unique_ptr<grpc::Service> MakeSnapshotsService(const ServiceDeps& deps) {
  return std::make_unique<SnapshotsService>(deps);
}

grpc::Status CreateSeededSandbox(
    const ServiceDeps& deps, const Caller& caller,
    grpc::ServerReader<v1::CreateSeededSandboxRequest>* reader,
    v1::Sandbox* response) {
  v1::CreateSeededSandboxRequest first;
  if (!reader->Read(&first) || !first.has_sandbox()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first message must carry the sandbox settings");
  }
  return Answer<v1::Sandbox>(
      [&] {
        return deps.workspaces->CreateSeeded(caller, first.sandbox(),
                                             DataReader(reader));
      },
      response);
}

}  // namespace corral::daemon
