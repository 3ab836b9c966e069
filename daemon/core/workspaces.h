// Workspaces: seeding, sync, files, export, diff, snapshots, reset and fork
// of sandboxes' /workspace. Every operation goes through the sandbox's agent
// (FsCall), so it behaves the same on every runtime and the daemon never
// opens a sandbox path on the host. Content the daemon keeps (baselines,
// snapshots) lives in a content-addressed store in the state directory, named
// by manifests that the store's `snapshots` table records.
#ifndef CORRAL_DAEMON_CORE_WORKSPACES_H_
#define CORRAL_DAEMON_CORE_WORKSPACES_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "corral/v1/files.pb.h"
#include "corral/v1/sandboxes.pb.h"
#include "corral/v1/snapshots.pb.h"
#include "corral/workspace/v1/manifest.pb.h"
#include "daemon/agent/fs_call.h"
#include "daemon/core/sandbox_manager.h"
#include "daemon/workspace/archive_in.h"
#include "daemon/workspace/content_store.h"

namespace corral::daemon {

class Store;

struct WorkspaceLimits {
  // Per upload (seed, sync): content bytes and entries.
  uint64_t max_upload_bytes = 8ull << 30;
  uint64_t max_entries = 1'000'000;
  // Snapshots a sandbox may keep (the baseline not counted).
  uint32_t max_snapshots = 64;
  // How long one workspace operation may take through the agent.
  absl::Duration operation_timeout = absl::Minutes(30);
};

// The path of the workspace inside every sandbox.
inline constexpr char kWorkspacePath[] = "/workspace";

class Workspaces {
 public:
  using ChunkReader = workspace::ChunkReader;
  // Receives output chunks in order; an error stops the operation.
  using ChunkWriter = std::function<absl::Status(std::string data)>;

  // The content store lives in <state_dir>/content.
  static absl::StatusOr<std::unique_ptr<Workspaces>> Create(
      const std::string& state_dir, Store* store, SandboxManager* sandboxes,
      WorkspaceLimits limits);

  // Sandboxes.CreateSeededSandbox: creates the sandbox, extracts the archive
  // into /workspace and keeps its content as the baseline.
  absl::StatusOr<corral::v1::Sandbox> CreateSeeded(
      const Caller& caller, const corral::v1::CreateSandboxRequest& request,
      const ChunkReader& archive);

  // Files service.
  absl::Status ReadFile(
      const Caller& caller, const corral::v1::ReadFileRequest& request,
      const std::function<absl::Status(const corral::v1::FileChunk&)>& write);
  absl::StatusOr<corral::v1::FileInfo> WriteFile(
      const Caller& caller, const corral::v1::WriteFileHeader& header,
      const ChunkReader& data);
  absl::StatusOr<corral::v1::FileInfo> StatFile(
      const Caller& caller, const corral::v1::StatFileRequest& request);
  absl::StatusOr<corral::v1::ListDirectoryResponse> ListDirectory(
      const Caller& caller, const corral::v1::ListDirectoryRequest& request);
  absl::StatusOr<corral::v1::FileInfo> MakeDirectory(
      const Caller& caller, const corral::v1::MakeDirectoryRequest& request);
  absl::StatusOr<corral::v1::RemoveFileResponse> RemoveFile(
      const Caller& caller, const corral::v1::RemoveFileRequest& request);
  absl::StatusOr<corral::v1::FileInfo> MoveFile(
      const Caller& caller, const corral::v1::MoveFileRequest& request);
  absl::StatusOr<corral::v1::SyncWorkspaceResponse> Sync(
      const Caller& caller, const corral::v1::SyncWorkspaceHeader& header,
      const ChunkReader& archive);
  absl::Status Export(const Caller& caller,
                      const corral::v1::ExportPathRequest& request,
                      const ChunkWriter& write);
  absl::StatusOr<corral::v1::DiffWorkspaceResponse> Diff(
      const Caller& caller, const corral::v1::DiffWorkspaceRequest& request);
  // Files.ApplyPatch.
  absl::StatusOr<corral::v1::ApplyPatchResponse> ApplyPatch(
      const Caller& caller, const corral::v1::ApplyPatchRequest& request);
  // Files.WatchDirectory: `write` gets each response (false: the client
  // left); runs until then, or the directory goes (OK), or an error.
  absl::Status WatchDirectory(
      const Caller& caller, const corral::v1::WatchDirectoryRequest& request,
      const std::function<bool(const corral::v1::WatchDirectoryResponse&)>&
          write);
  absl::StatusOr<corral::v1::GetCommandLogResponse> CommandLog(
      const Caller& caller, const corral::v1::GetCommandLogRequest& request);

  // Snapshots service.
  absl::StatusOr<corral::v1::Snapshot> CreateSnapshot(
      const Caller& caller, const corral::v1::CreateSnapshotRequest& request);
  absl::StatusOr<corral::v1::ListSnapshotsResponse> ListSnapshots(
      const Caller& caller, const corral::v1::ListSnapshotsRequest& request);
  absl::Status DeleteSnapshot(const Caller& caller,
                              const corral::v1::DeleteSnapshotRequest& request);
  absl::StatusOr<corral::v1::Sandbox> RestoreSnapshot(
      const Caller& caller, const corral::v1::RestoreSnapshotRequest& request);
  absl::StatusOr<corral::v1::Sandbox> ForkSnapshot(
      const Caller& caller, const corral::v1::ForkSnapshotRequest& request);

  // Asks the collector thread to remove content no snapshot or baseline
  // references (after a sandbox or snapshot went away). Returns at once.
  void RequestGarbageCollection();
  // Collects now, waiting for operations that still write content; returns
  // the bytes freed.
  absl::StatusOr<uint64_t> CollectGarbage();

  ~Workspaces();

 private:
  Workspaces(Store* store, SandboxManager* sandboxes,
             std::unique_ptr<workspace::ContentStore> content,
             WorkspaceLimits limits)
      : store_(store),
        sandboxes_(sandboxes),
        content_(std::move(content)),
        limits_(limits) {}

  // Starts a file operation on the agent of a running sandbox the caller
  // may use.
  absl::StatusOr<std::unique_ptr<FsCall>> StartFs(
      const Caller& caller, const std::string& sandbox_id,
      const corral::agent::v1::FsRequest& request, bool with_input);

  struct Captured {
    corral::workspace::v1::Manifest manifest;
    uint64_t new_bytes = 0;
  };
  // The workspace as it is now, hashed, using `reference` to skip reading
  // files whose size and mtime did not change.
  absl::StatusOr<Captured> Capture(
      AgentConnection& agent, const corral::workspace::v1::Manifest& reference);
  // The manifest of a snapshot, or of the baseline for the empty name (an
  // empty manifest when the sandbox was not seeded).
  absl::StatusOr<corral::workspace::v1::Manifest> LoadManifest(
      const std::string& sandbox_id, const std::string& name);
  // The most recent manifest of the sandbox (a snapshot or the baseline):
  // the best reference for Capture.
  absl::StatusOr<corral::workspace::v1::Manifest> LatestManifest(
      const std::string& sandbox_id);
  // Replaces /workspace's content with a manifest's.
  absl::Status Unpack(AgentConnection& agent,
                      const corral::workspace::v1::Manifest& manifest);
  // Stores `manifest` as the baseline of `sandbox_id`, with the stat data of
  // what the agent now lists.
  absl::Status RecordBaseline(AgentConnection& agent,
                              const std::string& sandbox_id,
                              const corral::workspace::v1::Manifest& manifest);
  // Serializes the workspace operations of one sandbox.
  std::shared_ptr<std::mutex> SandboxLock(const std::string& sandbox_id);

  Store* const store_;               // not owned
  SandboxManager* const sandboxes_;  // not owned
  const std::unique_ptr<workspace::ContentStore> content_;
  const WorkspaceLimits limits_;

  // Held shared by operations that write content until a snapshot row
  // references it; exclusively by garbage collection.
  std::shared_mutex content_mutex_;
  std::mutex locks_mutex_;
  std::map<std::string, std::weak_ptr<std::mutex>> locks_;

  void CollectorLoop();
  std::mutex collector_mutex_;
  std::condition_variable collector_wake_;
  bool collect_requested_ = false;  // guarded by collector_mutex_
  bool stopping_ = false;           // guarded by collector_mutex_
  std::thread collector_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_WORKSPACES_H_
