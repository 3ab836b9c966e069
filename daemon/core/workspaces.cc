#include "daemon/core/workspaces.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "daemon/agent/fs_call.h"
#include "daemon/store/store.h"
#include "daemon/workspace/archive_out.h"
#include "daemon/workspace/diff.h"
#include "daemon/workspace/entry_sink.h"
#include "daemon/workspace/manifest.h"
#include "daemon/workspace/patch.h"
#include "google/protobuf/util/time_util.h"

namespace corral::daemon {
namespace {

namespace av1 = corral::agent::v1;
namespace wv1 = corral::workspace::v1;
using google::protobuf::util::TimeUtil;

std::shared_ptr<spdlog::logger> Log() { return corral::Logger("workspace"); }

// Largest ListDirectory answer.
constexpr uint32_t kMaxListEntries = 100000;

// A path inside the sandbox: absolute, or relative to /workspace; "." and
// ".." resolved lexically (never above "/").
absl::StatusOr<std::string> SandboxPath(std::string_view path,
                                        const char* field = "path") {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be set"));
  }
  if (path.size() > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": longer than 4096 bytes"));
  }
  if (path.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": contains a NUL byte"));
  }
  std::string joined = path.front() == '/' ? std::string(path)
                                           : absl::StrCat(kWorkspacePath, "/",
                                                          std::string(path));
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= joined.size()) {
    size_t end = joined.find('/', start);
    if (end == std::string::npos) end = joined.size();
    std::string part = joined.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(std::move(part));
    }
    start = end + 1;
  }
  return absl::StrCat("/", absl::StrJoin(parts, "/"));
}

v1::FileType ToFileType(av1::EntryType type) {
  switch (type) {
    case av1::ENTRY_TYPE_REGULAR:
      return v1::FILE_TYPE_REGULAR;
    case av1::ENTRY_TYPE_DIRECTORY:
      return v1::FILE_TYPE_DIRECTORY;
    case av1::ENTRY_TYPE_SYMLINK:
      return v1::FILE_TYPE_SYMLINK;
    default:
      return v1::FILE_TYPE_OTHER;
  }
}

v1::FileInfo ToFileInfo(const av1::FsEntry& entry) {
  v1::FileInfo info;
  info.set_path(entry.path());
  info.set_type(ToFileType(entry.type()));
  info.set_size(entry.size());
  info.set_mode(entry.mode() & 07777);
  *info.mutable_modified_at() =
      TimeUtil::NanosecondsToTimestamp(entry.mtime_ns());
  info.set_link_target(entry.link_target());
  return info;
}

// Snapshot names: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'.
absl::Status ValidateSnapshotName(const std::string& name) {
  bool ok =
      !name.empty() && name.size() <= 64 && name[0] != '.' && name[0] != '-';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot name '", name.substr(0, 80),
        "': use 1-64 characters of A-Z a-z 0-9 . _ -, not starting with . "
        "or -"));
  }
  return absl::OkStatus();
}

// Forwards an entry stream into an agent's Unpack.
class AgentSink final : public workspace::EntrySink {
 public:
  explicit AgentSink(FsCall& call) : call_(call) {}
  absl::Status OnEntry(const av1::FsEntry& entry) override {
    return call_.SendEntry(entry);
  }
  absl::Status OnData(std::string_view data) override {
    return call_.SendData(data);
  }

 private:
  FsCall& call_;
};

// Feeds an operation's entry/data output into a sink until its summary.
absl::Status Drain(FsCall& call, workspace::EntrySink& sink) {
  for (;;) {
    ASSIGN_OR_RETURN(auto record, call.Next());
    if (!record.has_value()) return absl::OkStatus();
    if (record->has_entry()) {
      RETURN_IF_ERROR(sink.OnEntry(record->entry()));
    } else if (record->has_data()) {
      RETURN_IF_ERROR(sink.OnData(record->data()));
    } else {
      return absl::InternalError("agent: unexpected record in an entry stream");
    }
  }
}

uint64_t ContentBytes(const wv1::Manifest& manifest) {
  uint64_t total = 0;
  for (const auto& entry : manifest.entries()) total += entry.size();
  return total;
}

// A sandbox started from a saved machine is that machine: the same runtime,
// image, size and hostname. `create` gets the source's where it names none,
// and is refused where it names others.
absl::Status SameMachine(const v1::Sandbox& source,
                         v1::CreateSandboxRequest* create) {
  auto differs = [&](const char* what, const std::string& asked,
                     const std::string& had) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox.", what,
                     ": a sandbox forked from a memory snapshot is the "
                     "saved machine: ",
                     what, " ", asked, " is not the snapshot's ", had));
  };
  if (create->runtime() != source.runtime()) {
    return differs("runtime", create->runtime(), source.runtime());
  }
  if (create->image() != source.image()) {
    return differs("image", create->image(), source.image());
  }
  // Its kernel keeps the name it had.
  if (!create->hostname().empty() && create->hostname() != source.hostname()) {
    return differs("hostname", create->hostname(), source.hostname());
  }
  create->set_hostname(source.hostname());
  const v1::Limits& asked = create->limits();
  const v1::Limits& had = source.limits();
  for (auto [what, want, have] :
       {std::tuple<const char*, uint64_t, uint64_t>{
            "limits.cpu_millis", asked.cpu_millis(), had.cpu_millis()},
        {"limits.memory_mib", asked.memory_mib(), had.memory_mib()},
        {"limits.pids", asked.pids(), had.pids()},
        {"limits.disk_mib", asked.disk_mib(), had.disk_mib()}}) {
    if (want != 0 && want != have) {
      return differs(what, absl::StrCat(want), absl::StrCat(have));
    }
  }
  *create->mutable_limits() = had;
  return absl::OkStatus();
}

v1::Snapshot ToSnapshot(const SnapshotRecord& record) {
  v1::Snapshot snapshot;
  snapshot.set_sandbox_id(record.sandbox_id);
  snapshot.set_name(record.name);
  *snapshot.mutable_created_at() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(record.created_at));
  snapshot.set_size_bytes(record.size_bytes);
  snapshot.set_entries(record.entries);
  snapshot.set_new_bytes(record.new_bytes);
  snapshot.set_memory(!record.memory.empty());
  snapshot.set_memory_bytes(record.memory_bytes);
  return snapshot;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Workspaces>> Workspaces::Create(
    const std::string& state_dir, Store* store, SandboxManager* sandboxes,
    WorkspaceLimits limits) {
  ASSIGN_OR_RETURN(auto content, workspace::ContentStore::Open(
                                     absl::StrCat(state_dir, "/content")));
  auto workspaces = std::unique_ptr<Workspaces>(
      new Workspaces(store, sandboxes, std::move(content), limits));
  workspaces->collector_ =
      std::thread([w = workspaces.get()] { w->CollectorLoop(); });
  // Content left by a crash or by operations that failed before a restart.
  workspaces->RequestGarbageCollection();
  return workspaces;
}

Workspaces::~Workspaces() {
  {
    std::lock_guard lock(collector_mutex_);
    stopping_ = true;
  }
  collector_wake_.notify_all();
  if (collector_.joinable()) collector_.join();
}

void Workspaces::RequestGarbageCollection() {
  {
    std::lock_guard lock(collector_mutex_);
    collect_requested_ = true;
  }
  collector_wake_.notify_all();
}

void Workspaces::CollectorLoop() {
  std::unique_lock lock(collector_mutex_);
  for (;;) {
    collector_wake_.wait(lock, [&] { return stopping_ || collect_requested_; });
    if (stopping_) return;
    collect_requested_ = false;
    lock.unlock();
    auto freed = CollectGarbage();
    if (!freed.ok()) {
      Log()->error("garbage collection: {}", freed.status().ToString());
    } else if (*freed > 0) {
      Log()->info("garbage collection freed {} bytes", *freed);
    }
    lock.lock();
  }
}

std::shared_ptr<std::mutex> Workspaces::SandboxLock(
    const std::string& sandbox_id) {
  std::lock_guard lock(locks_mutex_);
  for (auto it = locks_.begin(); it != locks_.end();) {
    it = it->second.expired() ? locks_.erase(it) : std::next(it);
  }
  auto& weak = locks_[sandbox_id];
  auto mutex = weak.lock();
  if (!mutex) {
    mutex = std::make_shared<std::mutex>();
    weak = mutex;
  }
  return mutex;
}

absl::StatusOr<Workspaces::Captured> Workspaces::Capture(
    AgentConnection& agent, const wv1::Manifest& reference) {
  const absl::Time deadline = absl::Now() + limits_.operation_timeout;
  av1::FsRequest list;
  list.mutable_list()->set_path(kWorkspacePath);
  list.mutable_list()->set_recursive(true);
  list.mutable_list()->set_max_entries(limits_.max_entries);
  ASSIGN_OR_RETURN(auto call, FsCall::Start(agent, list, false, deadline));
  std::vector<av1::FsEntry> listing;
  for (;;) {
    ASSIGN_OR_RETURN(auto record, call->Next());
    if (!record.has_value()) break;
    if (!record->has_entry()) {
      return absl::InternalError("agent: unexpected record in a listing");
    }
    listing.push_back(std::move(*record->mutable_entry()));
  }
  if (call->summary().truncated()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the workspace has more than ", limits_.max_entries, " entries"));
  }
  const int64_t now_ns = call->summary().now_ns();
  Captured captured;
  wv1::Manifest hashed;
  std::vector<std::string> paths = workspace::PathsToHash(reference, listing);
  if (!paths.empty()) {
    av1::FsRequest pack;
    pack.mutable_pack()->set_root(kWorkspacePath);
    for (auto& path : paths) pack.mutable_pack()->add_paths(std::move(path));
    pack.mutable_pack()->set_ignore_missing(true);
    ASSIGN_OR_RETURN(auto packing, FsCall::Start(agent, pack, false, deadline));
    workspace::ManifestBuilder builder(content_.get());
    RETURN_IF_ERROR(Drain(*packing, builder));
    ASSIGN_OR_RETURN(hashed, builder.Finish());
    captured.new_bytes = builder.new_bytes();
  }
  auto merged = workspace::MergeListing(reference, listing, hashed, now_ns);
  if (absl::IsInternal(merged.status())) {
    return absl::AbortedError(
        absl::StrCat("the workspace changed while it was read (",
                     merged.status().message(), "); try again"));
  }
  RETURN_IF_ERROR(merged.status());
  captured.manifest = std::move(*merged);
  return captured;
}

absl::StatusOr<wv1::Manifest> Workspaces::LoadManifest(
    const std::string& sandbox_id, const std::string& name) {
  auto record = store_->GetSnapshot(sandbox_id, name);
  if (name.empty() && absl::IsNotFound(record.status())) {
    return wv1::Manifest();  // never seeded: the baseline is empty
  }
  RETURN_IF_ERROR(record.status());
  return content_->ReadManifest(record->manifest);
}

absl::StatusOr<wv1::Manifest> Workspaces::LatestManifest(
    const std::string& sandbox_id) {
  ASSIGN_OR_RETURN(auto records, store_->ListSnapshots(sandbox_id));
  if (records.empty()) return wv1::Manifest();
  const auto latest = std::max_element(
      records.begin(), records.end(),
      [](const auto& a, const auto& b) { return a.created_at < b.created_at; });
  return content_->ReadManifest(latest->manifest);
}

absl::Status Workspaces::Unpack(AgentConnection& agent,
                                const wv1::Manifest& manifest) {
  av1::FsRequest request;
  request.mutable_unpack()->set_root(kWorkspacePath);
  request.mutable_unpack()->set_clear(true);
  ASSIGN_OR_RETURN(auto call,
                   FsCall::Start(agent, request, true,
                                 absl::Now() + limits_.operation_timeout));
  AgentSink sink(*call);
  RETURN_IF_ERROR(workspace::EmitManifest(manifest, *content_, sink));
  return call->Finish().status();
}

absl::Status Workspaces::RecordBaseline(AgentConnection& agent,
                                        const std::string& sandbox_id,
                                        const wv1::Manifest& manifest) {
  // What the agent lists now, checked against `manifest`: the baseline
  // then carries the stat data that lets later diffs skip unchanged files.
  ASSIGN_OR_RETURN(Captured captured, Capture(agent, manifest));
  ASSIGN_OR_RETURN(auto committed, content_->PutManifest(captured.manifest));
  SnapshotRecord record;
  record.sandbox_id = sandbox_id;
  record.manifest = committed.sha256;
  record.created_at = absl::Now();
  record.entries = captured.manifest.entries_size();
  record.size_bytes = ContentBytes(captured.manifest);
  record.new_bytes = captured.new_bytes;
  return store_->PutSnapshot(record, /*replace=*/true);
}

absl::StatusOr<v1::Sandbox> Workspaces::CreateSeeded(
    const Caller& caller, const v1::CreateSandboxRequest& request,
    const ChunkReader& archive) {
  std::shared_lock content_lock(content_mutex_);
  auto seed = [&](AgentConnection& agent,
                  const std::string& sandbox_id) -> absl::Status {
    av1::FsRequest unpack;
    unpack.mutable_unpack()->set_root(kWorkspacePath);
    unpack.mutable_unpack()->set_max_entries(limits_.max_entries);
    unpack.mutable_unpack()->set_max_bytes(limits_.max_upload_bytes);
    ASSIGN_OR_RETURN(auto call,
                     FsCall::Start(agent, unpack, true,
                                   absl::Now() + limits_.operation_timeout));
    AgentSink agent_sink(*call);
    workspace::ManifestBuilder builder(content_.get());
    workspace::TeeSink tee(&builder, &agent_sink);
    workspace::UploadLimits upload;
    upload.max_bytes = limits_.max_upload_bytes;
    upload.max_entries = limits_.max_entries;
    auto stats = workspace::ReadUploadArchive(archive, upload, tee);
    if (!stats.ok()) {
      return Annotate(stats.status(), "seed refused");
    }
    RETURN_IF_ERROR(call->Finish().status());
    ASSIGN_OR_RETURN(wv1::Manifest manifest, builder.Finish());
    Log()->info("seeded sandbox {}: {} entries, {} bytes", sandbox_id,
                stats->entries, stats->bytes);
    return RecordBaseline(agent, sandbox_id, manifest);
  };
  auto sandbox = sandboxes_->CreateSandbox(caller, request, seed);
  if (!sandbox.ok()) RequestGarbageCollection();
  return sandbox;
}

absl::StatusOr<std::unique_ptr<FsCall>> Workspaces::StartFs(
    const Caller& caller, const std::string& sandbox_id,
    const av1::FsRequest& request, bool with_input) {
  ASSIGN_OR_RETURN(auto access,
                   sandboxes_->Access(caller, sandbox_id, Action::kExec));
  return FsCall::Start(*access.agent, request, with_input,
                       absl::Now() + limits_.operation_timeout);
}

absl::Status Workspaces::ReadFile(
    const Caller& caller, const v1::ReadFileRequest& request,
    const std::function<absl::Status(const v1::FileChunk&)>& write) {
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(*fs.mutable_read()->mutable_path(),
                   SandboxPath(request.path()));
  fs.mutable_read()->set_offset(request.offset());
  fs.mutable_read()->set_length(request.length());
  ASSIGN_OR_RETURN(auto call, StartFs(caller, request.sandbox_id(), fs, false));
  uint64_t offset = request.offset();
  v1::FileChunk chunk;
  for (;;) {
    ASSIGN_OR_RETURN(auto record, call->Next());
    if (!record.has_value()) return absl::OkStatus();
    if (!record->has_data()) {
      return absl::InternalError("agent: unexpected record in a file read");
    }
    chunk.set_offset(offset);
    offset += record->data().size();
    *chunk.mutable_data() = std::move(*record->mutable_data());
    RETURN_IF_ERROR(write(chunk));
  }
}

absl::StatusOr<v1::FileInfo> Workspaces::WriteFile(
    const Caller& caller, const v1::WriteFileHeader& header,
    const ChunkReader& data) {
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(*fs.mutable_write()->mutable_path(),
                   SandboxPath(header.path()));
  if (header.mode() > 07777) {
    return absl::InvalidArgumentError("mode: only permission bits (07777)");
  }
  fs.mutable_write()->set_mode(header.mode());
  fs.mutable_write()->set_create_parents(header.create_parents());
  ASSIGN_OR_RETURN(auto call, StartFs(caller, header.sandbox_id(), fs, true));
  for (;;) {
    ASSIGN_OR_RETURN(auto chunk, data());
    if (!chunk.has_value()) break;
    RETURN_IF_ERROR(call->SendData(*chunk));
  }
  ASSIGN_OR_RETURN(auto summary, call->Finish());
  return ToFileInfo(summary.entry());
}

namespace {

// An event path from the agent: relative, components neither empty nor
// "." or "..", at most 4096 bytes.
bool ValidEventPath(const std::string& path) {
  if (path.empty() || path.size() > 4096 || path.front() == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == ".." ||
        part.find('\0') != absl::string_view::npos) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<v1::FileEventKind> ToEventKind(av1::FsEventKind kind) {
  switch (kind) {
    case av1::FS_EVENT_CREATE:
      return v1::FILE_EVENT_KIND_CREATE;
    case av1::FS_EVENT_WRITE:
      return v1::FILE_EVENT_KIND_WRITE;
    case av1::FS_EVENT_REMOVE:
      return v1::FILE_EVENT_KIND_REMOVE;
    case av1::FS_EVENT_RENAME:
      return v1::FILE_EVENT_KIND_RENAME;
    case av1::FS_EVENT_CHMOD:
      return v1::FILE_EVENT_KIND_CHMOD;
    default:
      return absl::InternalError("agent: an unknown file event");
  }
}

}  // namespace

absl::Status Workspaces::WatchDirectory(
    const Caller& caller, const v1::WatchDirectoryRequest& request,
    const std::function<bool(const v1::WatchDirectoryResponse&)>& write) {
  constexpr absl::Duration kQuiet = absl::Seconds(1);
  constexpr int kMaxBatch = 256;
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(*fs.mutable_watch()->mutable_path(),
                   SandboxPath(request.path()));
  fs.mutable_watch()->set_recursive(request.recursive());
  ASSIGN_OR_RETURN(auto access, sandboxes_->Access(caller, request.sandbox_id(),
                                                   Action::kExec));
  // No deadline: the watch lasts while its client stays (and the sandbox).
  ASSIGN_OR_RETURN(auto call, FsCall::Start(*access.agent, fs, false));
  bool started = false;
  v1::WatchDirectoryResponse response;
  absl::Time last_sent = absl::Now();
  for (;;) {
    // Waits at most until an empty response is due, then sends what came.
    call->set_wait_until(response.events_size() > 0 ? absl::Now()
                                                    : last_sent + kQuiet);
    auto record = call->Next();
    const bool quiet =
        !record.ok() && absl::IsDeadlineExceeded(record.status());
    if (!record.ok() && !quiet) return record.status();
    if (!quiet && !record->has_value()) {
      // The directory itself went: what came before it, then the end.
      if (response.events_size() > 0 && !write(response)) {
        return absl::CancelledError("the client went away");
      }
      return absl::OkStatus();
    }
    if (!quiet) {
      if (!(*record)->has_event()) {
        return absl::InternalError("agent: unexpected record in a watch");
      }
      const av1::FsEvent& event = (*record)->event();
      if (!started) {
        if (event.kind() != av1::FS_EVENT_STARTED) {
          return absl::InternalError("agent: a watch event before its start");
        }
        started = true;
        v1::WatchDirectoryResponse first;
        first.set_started(true);
        if (!write(first)) return absl::CancelledError("the client went away");
        last_sent = absl::Now();
        continue;
      }
      if (!ValidEventPath(event.path())) {
        return absl::InternalError("agent: a bad path in a watch event");
      }
      ASSIGN_OR_RETURN(const v1::FileEventKind kind, ToEventKind(event.kind()));
      v1::FileEvent& out = *response.add_events();
      out.set_kind(kind);
      out.set_path(event.path());
      out.set_type(event.type() == av1::ENTRY_TYPE_DIRECTORY
                       ? v1::FILE_TYPE_DIRECTORY
                       : v1::FILE_TYPE_REGULAR);
      if (response.events_size() < kMaxBatch) continue;
    }
    if (!started) continue;
    if (response.events_size() == 0 && absl::Now() - last_sent < kQuiet) {
      continue;
    }
    if (!write(response)) return absl::CancelledError("the client went away");
    response.Clear();
    last_sent = absl::Now();
  }
}

absl::StatusOr<v1::FileInfo> Workspaces::StatFile(
    const Caller& caller, const v1::StatFileRequest& request) {
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(*fs.mutable_stat()->mutable_path(),
                   SandboxPath(request.path()));
  ASSIGN_OR_RETURN(auto call, StartFs(caller, request.sandbox_id(), fs, false));
  ASSIGN_OR_RETURN(auto summary, call->Finish());
  return ToFileInfo(summary.entry());
}

absl::StatusOr<v1::ListDirectoryResponse> Workspaces::ListDirectory(
    const Caller& caller, const v1::ListDirectoryRequest& request) {
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(*fs.mutable_list()->mutable_path(),
                   SandboxPath(request.path()));
  fs.mutable_list()->set_recursive(request.recursive());
  const uint32_t max = request.max_entries() == 0
                           ? kMaxListEntries
                           : std::min(request.max_entries(), kMaxListEntries);
  fs.mutable_list()->set_max_entries(max);
  ASSIGN_OR_RETURN(auto call, StartFs(caller, request.sandbox_id(), fs, false));
  v1::ListDirectoryResponse response;
  for (;;) {
    ASSIGN_OR_RETURN(auto record, call->Next());
    if (!record.has_value()) break;
    if (!record->has_entry() ||
        response.entries_size() >= static_cast<int>(max)) {
      return absl::InternalError("agent: unexpected record in a listing");
    }
    *response.add_entries() = ToFileInfo(record->entry());
  }
  response.set_truncated(call->summary().truncated());
  return response;
}

absl::StatusOr<v1::FileInfo> Workspaces::MakeDirectory(
    const Caller& caller, const v1::MakeDirectoryRequest& request) {
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(*fs.mutable_mkdir()->mutable_path(),
                   SandboxPath(request.path()));
  if (request.mode() > 07777) {
    return absl::InvalidArgumentError("mode: only permission bits (07777)");
  }
  fs.mutable_mkdir()->set_parents(request.parents());
  fs.mutable_mkdir()->set_mode(request.mode());
  ASSIGN_OR_RETURN(auto call, StartFs(caller, request.sandbox_id(), fs, false));
  ASSIGN_OR_RETURN(auto summary, call->Finish());
  return ToFileInfo(summary.entry());
}

absl::StatusOr<v1::RemoveFileResponse> Workspaces::RemoveFile(
    const Caller& caller, const v1::RemoveFileRequest& request) {
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(std::string path, SandboxPath(request.path()));
  if (path == "/" || path == kWorkspacePath) {
    return absl::InvalidArgumentError(
        absl::StrCat("path: refusing to remove ", path));
  }
  fs.mutable_remove()->set_path(path);
  fs.mutable_remove()->set_recursive(request.recursive());
  ASSIGN_OR_RETURN(auto call, StartFs(caller, request.sandbox_id(), fs, false));
  ASSIGN_OR_RETURN(auto summary, call->Finish());
  v1::RemoveFileResponse response;
  response.set_removed(summary.entries());
  return response;
}

absl::StatusOr<v1::FileInfo> Workspaces::MoveFile(
    const Caller& caller, const v1::MoveFileRequest& request) {
  av1::FsRequest fs;
  ASSIGN_OR_RETURN(*fs.mutable_move()->mutable_from(),
                   SandboxPath(request.from(), "from"));
  ASSIGN_OR_RETURN(*fs.mutable_move()->mutable_to(),
                   SandboxPath(request.to(), "to"));
  ASSIGN_OR_RETURN(auto call, StartFs(caller, request.sandbox_id(), fs, false));
  ASSIGN_OR_RETURN(auto summary, call->Finish());
  return ToFileInfo(summary.entry());
}

absl::StatusOr<v1::SyncWorkspaceResponse> Workspaces::Sync(
    const Caller& caller, const v1::SyncWorkspaceHeader& header,
    const ChunkReader& archive) {
  ASSIGN_OR_RETURN(auto access, sandboxes_->Access(caller, header.sandbox_id(),
                                                   Action::kExec));
  ASSIGN_OR_RETURN(
      std::string destination,
      SandboxPath(header.destination().empty() ? std::string(kWorkspacePath)
                                               : header.destination(),
                  "destination"));
  auto lock = SandboxLock(header.sandbox_id());
  std::lock_guard guard(*lock);
  av1::FsRequest unpack;
  unpack.mutable_unpack()->set_root(destination);
  unpack.mutable_unpack()->set_delete_missing(header.delete_missing());
  unpack.mutable_unpack()->set_max_entries(limits_.max_entries);
  unpack.mutable_unpack()->set_max_bytes(limits_.max_upload_bytes);
  ASSIGN_OR_RETURN(auto call,
                   FsCall::Start(*access.agent, unpack, true,
                                 absl::Now() + limits_.operation_timeout));
  AgentSink sink(*call);
  workspace::UploadLimits upload;
  upload.max_bytes = limits_.max_upload_bytes;
  upload.max_entries = limits_.max_entries;
  RETURN_IF_ERROR(workspace::ReadUploadArchive(archive, upload, sink).status());
  ASSIGN_OR_RETURN(auto summary, call->Finish());
  v1::SyncWorkspaceResponse response;
  response.set_entries(summary.entries());
  response.set_bytes(summary.bytes());
  return response;
}

absl::Status Workspaces::Export(const Caller& caller,
                                const v1::ExportPathRequest& request,
                                const ChunkWriter& write) {
  ASSIGN_OR_RETURN(std::string path, SandboxPath(request.path()));
  if (path == "/") {
    return absl::InvalidArgumentError("path: cannot export / as a whole");
  }
  const size_t slash = path.rfind('/');
  av1::FsRequest pack;
  pack.mutable_pack()->set_root(slash == 0 ? "/" : path.substr(0, slash));
  pack.mutable_pack()->add_paths(path.substr(slash + 1));
  pack.mutable_pack()->set_recursive(true);
  ASSIGN_OR_RETURN(auto call,
                   StartFs(caller, request.sandbox_id(), pack, false));
  workspace::TarWriter tar(
      [&](std::string_view chunk) { return write(std::string(chunk)); });
  RETURN_IF_ERROR(Drain(*call, tar));
  return tar.Finish();
}

absl::StatusOr<v1::DiffWorkspaceResponse> Workspaces::Diff(
    const Caller& caller, const v1::DiffWorkspaceRequest& request) {
  ASSIGN_OR_RETURN(auto access, sandboxes_->Access(caller, request.sandbox_id(),
                                                   Action::kExec));
  uint64_t new_bytes = 0;
  absl::StatusOr<v1::DiffWorkspaceResponse> response;
  {
    auto lock = SandboxLock(request.sandbox_id());
    std::lock_guard guard(*lock);
    std::shared_lock content_lock(content_mutex_);
    ASSIGN_OR_RETURN(wv1::Manifest reference,
                     LoadManifest(request.sandbox_id(), request.snapshot()));
    ASSIGN_OR_RETURN(Captured current, Capture(*access.agent, reference));
    new_bytes = current.new_bytes;
    workspace::DiffOptions options;
    options.patch = !request.no_patch();
    response = workspace::DiffManifests(reference, current.manifest, *content_,
                                        options);
  }
  // Content read only for this diff is referenced by no manifest.
  if (new_bytes > 0) RequestGarbageCollection();
  return response;
}

absl::StatusOr<v1::ApplyPatchResponse> Workspaces::ApplyPatch(
    const Caller& caller, const v1::ApplyPatchRequest& request) {
  constexpr size_t kMaxPatchBytes = 16 << 20;
  constexpr uint64_t kMaxFileBytes = 16 << 20;
  if (request.patch().size() > kMaxPatchBytes) {
    return absl::InvalidArgumentError("patch: larger than 16 MiB");
  }
  ASSIGN_OR_RETURN(std::vector<corral::workspace::FilePatch> files,
                   corral::workspace::ParsePatch(request.patch()));
  // Everything is read and patched in memory first: a hunk that does not
  // apply leaves every file as it was.
  struct Planned {
    std::string path;  // absolute
    std::optional<std::string> content;
    uint32_t mode = 0;
  };
  std::vector<Planned> planned;
  std::set<std::string> seen;
  v1::ApplyPatchResponse response;
  for (const corral::workspace::FilePatch& file : files) {
    Planned plan;
    ASSIGN_OR_RETURN(plan.path, SandboxPath(file.path()));
    if (!seen.insert(plan.path).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("patch: ", file.path(), " is patched twice"));
    }
    av1::FsRequest stat;
    stat.mutable_stat()->set_path(plan.path);
    ASSIGN_OR_RETURN(auto stat_call,
                     StartFs(caller, request.sandbox_id(), stat, false));
    auto info = stat_call->Finish();
    std::optional<std::string> current;
    if (info.ok()) {
      const av1::FsEntry& entry = info->entry();
      if (entry.type() != av1::ENTRY_TYPE_REGULAR) {
        return absl::FailedPreconditionError(absl::StrCat(
            file.path(), ": not a regular file (a patch changes files)"));
      }
      if (entry.size() > kMaxFileBytes) {
        return absl::FailedPreconditionError(
            absl::StrCat(file.path(), ": larger than 16 MiB"));
      }
      plan.mode = entry.mode() & 07777;
      av1::FsRequest read;
      read.mutable_read()->set_path(plan.path);
      read.mutable_read()->set_length(kMaxFileBytes);
      ASSIGN_OR_RETURN(auto read_call,
                       StartFs(caller, request.sandbox_id(), read, false));
      std::string data;
      for (;;) {
        ASSIGN_OR_RETURN(auto record, read_call->Next());
        if (!record.has_value()) break;
        if (!record->has_data() ||
            data.size() + record->data().size() > kMaxFileBytes) {
          return absl::InternalError("agent: unexpected record in a read");
        }
        data += record->data();
      }
      current = std::move(data);
    } else if (!absl::IsNotFound(info.status())) {
      return info.status();
    }
    ASSIGN_OR_RETURN(plan.content,
                     corral::workspace::ApplyFilePatch(file, current));
    if (file.new_mode != 0) plan.mode = file.new_mode;
    if (plan.mode == 0) plan.mode = 0644;
    v1::PatchedFile* patched = response.add_files();
    patched->set_path(file.path());
    patched->set_kind(!current        ? v1::CHANGE_KIND_ADDED
                      : !plan.content ? v1::CHANGE_KIND_DELETED
                                      : v1::CHANGE_KIND_MODIFIED);
    patched->set_hunks(static_cast<uint32_t>(file.hunks.size()));
    planned.push_back(std::move(plan));
  }
  if (request.check()) return response;
  for (const Planned& plan : planned) {
    av1::FsRequest fs;
    if (!plan.content) {
      fs.mutable_remove()->set_path(plan.path);
      ASSIGN_OR_RETURN(auto call,
                       StartFs(caller, request.sandbox_id(), fs, false));
      RETURN_IF_ERROR(call->Finish().status());
      continue;
    }
    fs.mutable_write()->set_path(plan.path);
    fs.mutable_write()->set_mode(plan.mode);
    fs.mutable_write()->set_create_parents(true);
    ASSIGN_OR_RETURN(auto call,
                     StartFs(caller, request.sandbox_id(), fs, true));
    RETURN_IF_ERROR(call->SendData(*plan.content));
    RETURN_IF_ERROR(call->Finish().status());
  }
  Log()->info("patched {} files of sandbox {}", planned.size(),
              request.sandbox_id());
  return response;
}

absl::StatusOr<v1::GetCommandLogResponse> Workspaces::CommandLog(
    const Caller& caller, const v1::GetCommandLogRequest& request) {
  // Any state will do: the log of a failed sandbox is the most useful one.
  RETURN_IF_ERROR(
      sandboxes_->GetSandbox(caller, request.sandbox_id()).status());
  ASSIGN_OR_RETURN(auto records, store_->ListCommands(request.sandbox_id()));
  v1::GetCommandLogResponse response;
  for (const auto& record : records) {
    if (record.sequence <= request.after_sequence()) continue;
    v1::CommandRecord* out = response.add_commands();
    if (record.details.empty() || !out->ParseFromString(record.details)) {
      out->Clear();
      (void)out->ParseFromString(record.argv);
    }
    out->set_sequence(record.sequence);
    out->set_exit_code(record.exit_code);
    out->set_signal(record.signal);
    *out->mutable_started_at() = TimeUtil::MicrosecondsToTimestamp(
        absl::ToUnixMicros(record.started_at));
    out->set_duration_us(absl::ToInt64Microseconds(record.duration));
  }
  return response;
}

absl::StatusOr<v1::Snapshot> Workspaces::CreateSnapshot(
    const Caller& caller, const v1::CreateSnapshotRequest& request) {
  std::string name = request.name();
  if (name.empty()) {
    name = absl::FormatTime("snap-%Y%m%d-%H%M%S", absl::Now(),
                            absl::UTCTimeZone());
  }
  RETURN_IF_ERROR(ValidateSnapshotName(name));
  ASSIGN_OR_RETURN(auto access, sandboxes_->Access(caller, request.sandbox_id(),
                                                   Action::kExec));
  const auto& guarantees = access.view.guarantees();
  if (request.memory() &&
      std::find(guarantees.begin(), guarantees.end(),
                v1::GUARANTEE_MEMORY_SNAPSHOT) == guarantees.end()) {
    // Refused before anything is captured.
    return absl::FailedPreconditionError(absl::StrCat(
        "sandbox ", request.sandbox_id(), " (runtime ", access.view.runtime(),
        ") cannot snapshot its memory: it does not have "
        "GUARANTEE_MEMORY_SNAPSHOT"));
  }
  auto lock = SandboxLock(request.sandbox_id());
  std::lock_guard guard(*lock);
  std::shared_lock content_lock(content_mutex_);
  ASSIGN_OR_RETURN(auto existing, store_->ListSnapshots(request.sandbox_id()));
  uint32_t named = 0;
  for (const auto& record : existing) {
    if (record.name == name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", request.sandbox_id(), " already has a snapshot ", name));
    }
    if (!record.name.empty()) ++named;
  }
  if (named >= limits_.max_snapshots) {
    return absl::ResourceExhaustedError(
        absl::StrCat("sandbox ", request.sandbox_id(), " already has ", named,
                     " snapshots, the maximum; remove one first"));
  }
  ASSIGN_OR_RETURN(wv1::Manifest reference,
                   LatestManifest(request.sandbox_id()));
  ASSIGN_OR_RETURN(Captured captured, Capture(*access.agent, reference));
  ASSIGN_OR_RETURN(auto committed, content_->PutManifest(captured.manifest));
  SnapshotRecord record;
  record.sandbox_id = request.sandbox_id();
  record.name = name;
  record.manifest = committed.sha256;
  record.created_at = absl::Now();
  record.entries = captured.manifest.entries_size();
  record.size_bytes = ContentBytes(captured.manifest);
  record.new_bytes = captured.new_bytes;
  if (request.memory()) {
    // The workspace was captured first: the manifest is what the saved
    // machine's disk held a moment before it was frozen.
    ASSIGN_OR_RETURN(
        auto saved, sandboxes_->SaveMemory(caller, request.sandbox_id(), name));
    record.memory = saved.state();
    record.memory_bytes = saved.size_bytes();
  }
  // What it takes counts towards the caller's storage quota; its content
  // objects, unreferenced then, go with the next garbage collection.
  if (auto quota = sandboxes_->CheckStorageQuota(
          caller, record.size_bytes + record.memory_bytes,
          absl::StrCat(
              "snapshot ", name, " (",
              (record.size_bytes + record.memory_bytes + (1 << 20) - 1) >> 20,
              " MiB)"));
      !quota.ok()) {
    if (!record.memory.empty()) {
      (void)sandboxes_->DeleteMemory(caller, request.sandbox_id(),
                                     record.memory);
    }
    RequestGarbageCollection();
    return quota;
  }
  if (auto put = store_->PutSnapshot(record, /*replace=*/false); !put.ok()) {
    if (!record.memory.empty()) {
      (void)sandboxes_->DeleteMemory(caller, request.sandbox_id(),
                                     record.memory);
    }
    return put;
  }
  (void)store_->AppendEvent(record.sandbox_id, "snapshot",
                            absl::StrCat("created ", name));
  return ToSnapshot(record);
}

absl::StatusOr<v1::ListSnapshotsResponse> Workspaces::ListSnapshots(
    const Caller& caller, const v1::ListSnapshotsRequest& request) {
  RETURN_IF_ERROR(
      sandboxes_->GetSandbox(caller, request.sandbox_id()).status());
  ASSIGN_OR_RETURN(auto records, store_->ListSnapshots(request.sandbox_id()));
  v1::ListSnapshotsResponse response;
  for (const auto& record : records) {
    if (record.name.empty()) continue;  // the baseline
    *response.add_snapshots() = ToSnapshot(record);
  }
  return response;
}

absl::Status Workspaces::DeleteSnapshot(
    const Caller& caller, const v1::DeleteSnapshotRequest& request) {
  RETURN_IF_ERROR(ValidateSnapshotName(request.name()));
  RETURN_IF_ERROR(
      sandboxes_->GetSandbox(caller, request.sandbox_id()).status());
  ASSIGN_OR_RETURN(SnapshotRecord record,
                   store_->GetSnapshot(request.sandbox_id(), request.name()));
  if (!record.memory.empty()) {
    RETURN_IF_ERROR(
        sandboxes_->DeleteMemory(caller, request.sandbox_id(), record.memory));
  }
  RETURN_IF_ERROR(store_->DeleteSnapshot(request.sandbox_id(), request.name()));
  (void)store_->AppendEvent(request.sandbox_id(), "snapshot",
                            absl::StrCat("removed ", request.name()));
  RequestGarbageCollection();
  return absl::OkStatus();
}

absl::StatusOr<v1::Sandbox> Workspaces::RestoreSnapshot(
    const Caller& caller, const v1::RestoreSnapshotRequest& request) {
  if (!request.name().empty()) {
    RETURN_IF_ERROR(ValidateSnapshotName(request.name()));
  }
  ASSIGN_OR_RETURN(auto access, sandboxes_->Access(caller, request.sandbox_id(),
                                                   Action::kExec));
  {
    auto lock = SandboxLock(request.sandbox_id());
    std::lock_guard guard(*lock);
    std::shared_lock content_lock(content_mutex_);
    ASSIGN_OR_RETURN(wv1::Manifest target,
                     LoadManifest(request.sandbox_id(), request.name()));
    RETURN_IF_ERROR(Unpack(*access.agent, target));
  }
  (void)store_->AppendEvent(request.sandbox_id(), "reset",
                            request.name().empty()
                                ? "to the baseline"
                                : absl::StrCat("to snapshot ", request.name()));
  return sandboxes_->GetSandbox(caller, request.sandbox_id());
}

absl::StatusOr<v1::Sandbox> Workspaces::ForkSnapshot(
    const Caller& caller, const v1::ForkSnapshotRequest& request) {
  if (!request.name().empty()) {
    RETURN_IF_ERROR(ValidateSnapshotName(request.name()));
  }
  ASSIGN_OR_RETURN(auto access, sandboxes_->Access(caller, request.sandbox_id(),
                                                   Action::kExec));
  // Held until the new sandbox's baseline references the content.
  std::shared_lock content_lock(content_mutex_);
  wv1::Manifest source;
  // A memory snapshot's saved machine, which the new sandbox starts from.
  std::string memory;
  {
    auto lock = SandboxLock(request.sandbox_id());
    std::lock_guard guard(*lock);
    if (!request.name().empty()) {
      ASSIGN_OR_RETURN(source,
                       LoadManifest(request.sandbox_id(), request.name()));
      ASSIGN_OR_RETURN(
          SnapshotRecord record,
          store_->GetSnapshot(request.sandbox_id(), request.name()));
      memory = record.memory;
    } else {
      ASSIGN_OR_RETURN(wv1::Manifest reference,
                       LatestManifest(request.sandbox_id()));
      ASSIGN_OR_RETURN(Captured captured, Capture(*access.agent, reference));
      source = std::move(captured.manifest);
    }
  }
  v1::CreateSandboxRequest create = request.sandbox();
  if (create.runtime().empty()) create.set_runtime(access.view.runtime());
  if (create.image().empty()) create.set_image(access.view.image());
  if (!memory.empty()) RETURN_IF_ERROR(SameMachine(access.view, &create));
  auto prepare = [&](AgentConnection& agent,
                     const std::string& sandbox_id) -> absl::Status {
    if (!memory.empty()) {
      // A saved machine brings its disk: its workspace is there already.
      // Its background processes (exec -d, shells) belong to the source's
      // records, which this sandbox does not have: they end, as at a
      // recovery, rather than run where no one can see them.
      for (const std::string& key : agent.hello().detached()) {
        corral::agent::v1::Resume resume;
        resume.set_key(key);
        (void)agent.ResumeExec(resume, false);  // dropped: killed
      }
    } else {
      RETURN_IF_ERROR(Unpack(agent, source));
    }
    return RecordBaseline(agent, sandbox_id, source);
  };
  auto created = sandboxes_->CreateSandbox(caller, create, prepare, memory);
  if (!created.ok()) {
    RequestGarbageCollection();
    return created.status();
  }
  v1::Sandbox sandbox = std::move(*created);
  (void)store_->AppendEvent(
      sandbox.id(), "forked",
      absl::StrCat("from ", request.sandbox_id(),
                   request.name().empty() ? "" : "@", request.name()));
  return sandbox;
}

absl::StatusOr<uint64_t> Workspaces::CollectGarbage() {
  // Waits for operations that hold content not yet referenced.
  std::unique_lock content_lock(content_mutex_);
  ASSIGN_OR_RETURN(auto manifests, store_->ListSnapshotManifests());
  absl::flat_hash_set<std::string> live;
  for (const auto& hash : manifests) {
    live.insert(hash);
    // An unreadable manifest stops the collection: keeping garbage is
    // better than losing content.
    ASSIGN_OR_RETURN(wv1::Manifest manifest, content_->ReadManifest(hash));
    workspace::CollectReferences(manifest, &live);
  }
  return content_->CollectGarbage(live);
}

}  // namespace corral::daemon
