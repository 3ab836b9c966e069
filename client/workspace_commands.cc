#include "client/workspace_commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/command_support.h"
#include "client/exec_session.h"
#include "client/exit_status.h"
#include "client/format.h"
#include "client/output.h"
#include "client/tar_extract.h"
#include "client/transfer.h"
#include "client/workspace_format.h"
#include "corral/status_macros.h"

namespace corral::cli {
namespace {

using Result = absl::StatusOr<int>;

// Workspace calls can take long (a snapshot of a large tree, a restore):
// no deadline; Ctrl-C ends them.
std::unique_ptr<grpc::ClientContext> LongContext() {
  return std::make_unique<grpc::ClientContext>();
}

absl::StatusOr<corral::v1::Sandbox> UploadSeeded(
    Connection& connection, const corral::v1::CreateSandboxRequest& request,
    UploadSource& source, const InterruptGuard* interrupts) {
  corral::v1::CreateSeededSandboxRequest first;
  *first.mutable_sandbox() = request;
  return Upload(connection, connection.sandboxes(),
                &corral::v1::Sandboxes::Stub::CreateSeededSandbox, first,
                source, true, interrupts);
}

// Pushes `source` into the sandbox with SyncWorkspace.
absl::StatusOr<corral::v1::SyncWorkspaceResponse> UploadSync(
    Connection& connection, const std::string& id,
    const std::string& destination, bool delete_missing, UploadSource& source) {
  corral::v1::SyncWorkspaceRequest first;
  first.mutable_header()->set_sandbox_id(id);
  first.mutable_header()->set_destination(destination);
  first.mutable_header()->set_delete_missing(delete_missing);
  return Upload(connection, connection.files(),
                &corral::v1::Files::Stub::SyncWorkspace, first, source, true);
}

// Streams `source` into one file of the sandbox with WriteFile.
absl::StatusOr<corral::v1::FileInfo> UploadFile(
    Connection& connection, const corral::v1::WriteFileHeader& header,
    UploadSource& source) {
  corral::v1::WriteFileRequest first;
  *first.mutable_header() = header;
  return Upload(connection, connection.files(),
                &corral::v1::Files::Stub::WriteFile, first, source, false);
}

std::string ExtractJson(const ExtractResult& result) {
  std::vector<std::string> names;
  for (const std::string& name : result.top_level) {
    names.push_back(JsonString(name));
  }
  return absl::StrCat("{\"entries\":", result.entries,
                      ",\"bytes\":", result.bytes, ",\"top_level\":[",
                      absl::StrJoin(names, ","), "]}\n");
}

// Downloads `path` as an archive and hands it to `extract`. Ctrl-C cancels
// the download; the extraction then fails and cleans up, and the exit code
// is 128+signal.
template <typename Extract>
Result Download(Connection& connection, const std::string& id,
                const std::string& path, Extract extract) {
  ASSIGN_OR_RETURN(std::unique_ptr<InterruptGuard> guard,
                   InterruptGuard::Install());
  corral::v1::ExportPathRequest request;
  request.set_sandbox_id(id);
  request.set_path(path);
  absl::StatusOr<ExtractResult> result;
  {
    DownloadStream<corral::v1::ArchiveChunk> stream(
        connection, std::make_unique<grpc::ClientContext>());
    guard->CancelOnSignal(stream.context());
    stream.Start(connection.files().ExportPath(stream.context(), request));
    result = extract(stream.Source());
    guard->CancelOnSignal(nullptr);
  }
  if (guard->signal() != 0) return 128 + guard->signal();
  RETURN_IF_ERROR(result.status());
  return 0;
}

}  // namespace

// --- seeding and fork
// ---------------------------------------------------------

Result CreateSeeded(Connection& connection, bool json,
                    const corral::v1::CreateSandboxRequest& request,
                    const std::string& seed) {
  ASSIGN_OR_RETURN(UploadSource source, UploadSource::Open(seed, true));
  ASSIGN_OR_RETURN(const corral::v1::Sandbox sandbox,
                   UploadSeeded(connection, request, source, nullptr));
  RETURN_IF_ERROR(PrintSandboxId(sandbox, json));
  return 0;
}

Result RunSeeded(Connection& connection, bool json,
                 const corral::v1::CreateSandboxRequest& request,
                 const std::string& seed, const ExecOptions& exec) {
  // Everything that can be checked is checked before a sandbox exists.
  ASSIGN_OR_RETURN(corral::v1::ExecStart start, BuildExecStart(exec, ""));
  if (seed == "-" && exec.interactive) {
    return absl::InvalidArgumentError(
        "--seed - and -i both want stdin; seed from a file or directory");
  }
  ASSIGN_OR_RETURN(UploadSource source, UploadSource::Open(seed, true));
  ASSIGN_OR_RETURN(std::unique_ptr<InterruptGuard> guard,
                   InterruptGuard::Install());
  absl::StatusOr<corral::v1::Sandbox> sandbox =
      UploadSeeded(connection, request, source, guard.get());
  if (!sandbox.ok()) {
    // An interrupted upload is cancelled: the daemon creates nothing.
    if (guard->signal() != 0) return 128 + guard->signal();
    return sandbox.status();
  }
  Result result = 128 + guard->signal();
  if (guard->signal() == 0) {
    start.set_sandbox_id(sandbox->id());
    result =
        ExecCommand(connection, start,
                    {.json = json, .timeout_seconds = exec.timeout_seconds});
  }
  // The guard is still installed: a Ctrl-C now cannot stop the cleanup.
  corral::v1::DeleteSandboxRequest remove;
  remove.set_id(sandbox->id());
  corral::v1::DeleteSandboxResponse removed;
  auto context = connection.UnaryContext();
  const grpc::Status status =
      connection.sandboxes().DeleteSandbox(context.get(), remove, &removed);
  if (!status.ok()) {
    Warn(absl::StrCat("could not delete sandbox ", sandbox->id(), ": ",
                      connection.CallError(status).message(),
                      "; remove it with 'corral rm ", sandbox->id(), "'"));
  }
  return result;
}

Result Fork(Connection& connection, bool json, const std::string& source,
            const CreateOptions& options) {
  if (!options.seed.empty()) {
    return absl::InvalidArgumentError(
        "--seed does not apply to fork: the workspace comes from the source");
  }
  RETURN_IF_ERROR(ValidateCreateOnly(options));
  ASSIGN_OR_RETURN(const auto ref, ParseSnapshotRef(source));
  corral::v1::ForkSnapshotRequest request;
  request.set_sandbox_id(ref.first);
  request.set_name(ref.second);
  ASSIGN_OR_RETURN(*request.mutable_sandbox(), BuildCreateRequest(options));
  auto& stub = connection.snapshots();
  ASSIGN_OR_RETURN(
      const corral::v1::Sandbox sandbox,
      UnaryCall(connection, LongContext(), stub,
                &corral::v1::Snapshots::Stub::ForkSnapshot, request));
  RETURN_IF_ERROR(PrintSandboxId(sandbox, json));
  return 0;
}

// --- the commands registered here
// ---------------------------------------------

struct WorkspaceCommands::Flags {
  CLI::App* sync = nullptr;
  CLI::App* cp = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* diff = nullptr;
  CLI::App* patch = nullptr;
  CLI::App* logs = nullptr;
  CLI::App* snapshot = nullptr;
  CLI::App* snapshot_create = nullptr;
  CLI::App* snapshot_ls = nullptr;
  CLI::App* snapshot_rm = nullptr;
  CLI::App* reset = nullptr;
  CLI::App* file = nullptr;
  CLI::App* file_cat = nullptr;
  CLI::App* file_write = nullptr;
  CLI::App* file_stat = nullptr;
  CLI::App* file_ls = nullptr;
  CLI::App* file_mkdir = nullptr;
  CLI::App* file_rm = nullptr;
  CLI::App* file_mv = nullptr;
  CLI::App* file_watch = nullptr;

  // Shared by the commands; each parse fills only what its command uses.
  std::string id;
  std::string source;
  std::string destination;
  std::string path;
  std::string path2;
  std::string name;
  std::string mode;
  bool flag_delete = false;
  bool force = false;
  bool stat = false;
  bool check = false;
  bool name_status = false;
  bool output = false;
  bool recursive = false;
  bool parents = false;
  bool memory = false;
  int64_t after = 0;
  ExtractLimits limits;
};

namespace {

void AddLimitFlags(CLI::App* command, ExtractLimits& limits) {
  command->add_option(
      "--max-entries", limits.max_entries,
      absl::StrCat("Refuse an archive with more entries "
                   "(default ",
                   ExtractLimits().max_entries, "; 0: no limit)"));
  command->add_option("--max-bytes", limits.max_bytes,
                      absl::StrCat("Refuse an archive with more bytes of file "
                                   "content (default ",
                                   ExtractLimits().max_bytes,
                                   " = 16 GiB; 0: "
                                   "no limit)"));
}

CLI::App* AddId(CLI::App* command, std::string& id) {
  command->add_option("ID", id, "Sandbox id")->required();
  return command;
}

}  // namespace

WorkspaceCommands::WorkspaceCommands(CLI::App& app)
    : flags_(std::make_unique<Flags>()) {
  Flags& f = *flags_;

  f.sync = AddId(
      app.add_subcommand("sync", "Push a directory or archive into a sandbox"),
      f.id);
  f.sync
      ->add_option("SRC", f.source,
                   "A directory (packed here), a tar archive (plain, gzip, "
                   "xz or zstd), or - for a tar on stdin")
      ->required();
  f.sync->add_option("DEST", f.destination,
                     "Directory in the sandbox (default: /workspace)");
  f.sync->add_flag("--delete", f.flag_delete,
                   "Delete files under DEST that SRC does not have");

  f.cp = app.add_subcommand(
      "cp", "Copy a file or directory into or out of a sandbox");
  f.cp->add_option("SRC", f.source, "ID:PATH or a local path")->required();
  f.cp->add_option("DST", f.destination, "ID:PATH or a local path")->required();
  f.cp->add_flag("-f,--force", f.force,
                 "Replace an existing local DST (a download)");
  AddLimitFlags(f.cp, f.limits);
  f.cp->footer(
      "Exactly one of SRC and DST is ID:PATH (write a local path holding ':' "
      "as ./a:b). A download never overwrites a local path without --force.");

  f.export_ = AddId(app.add_subcommand("export",
                                       "Extract a sandbox path into a local "
                                       "directory, or write it as a tar"),
                    f.id);
  f.export_
      ->add_option("PATH", f.path,
                   "File, directory or symlink in the "
                   "sandbox")
      ->required();
  f.export_
      ->add_option("DEST", f.destination,
                   "Local directory (created if missing), or - for the tar "
                   "on stdout")
      ->required();
  f.export_->add_flag("-f,--force", f.force,
                      "Replace entries of DEST that the archive also has");
  AddLimitFlags(f.export_, f.limits);

  f.diff =
      AddId(app.add_subcommand("diff",
                               "Show what changed in the workspace since its "
                               "baseline (or a snapshot)"),
            f.id);
  f.diff->add_option("--snapshot", f.name, "Compare with this snapshot");
  CLI::Option* stat =
      f.diff->add_flag("--stat", f.stat, "One line per change and the counts");
  f.diff
      ->add_flag("--name-status", f.name_status,
                 "One 'A|M|D|T<TAB>path' line per change")
      ->excludes(stat);

  f.patch = AddId(
      app.add_subcommand("patch",
                         "Apply a unified diff (git's or diff -u's) to the "
                         "workspace, all or nothing; paths are relative to "
                         "/workspace"),
      f.id);
  f.patch->add_option("FILE", f.source, "The diff (default: stdin)");
  f.patch->add_flag("--check", f.check,
                    "Only check that every hunk applies; change nothing");

  f.logs = AddId(
      app.add_subcommand("logs", "Show the commands run in a sandbox"), f.id);
  f.logs->add_flag("--output", f.output,
                   "Also print each command's kept stdout and stderr");
  f.logs->add_option("--after", f.after,
                     "Only commands with a sequence number above SEQ");

  f.snapshot =
      app.add_subcommand("snapshot", "Manage workspace (and memory) snapshots");
  f.snapshot->require_subcommand(1);
  f.snapshot_create = AddId(
      f.snapshot->add_subcommand("create", "Snapshot the workspace"), f.id);
  f.snapshot_create->add_option("NAME", f.name,
                                "Snapshot name (default: from the time)");
  f.snapshot_create->add_flag(
      "--memory", f.memory,
      "Also save the running sandbox's memory, processes and /tmp, so that "
      "`corral fork ID@NAME` starts where it was (VM runtimes)");
  f.snapshot_ls =
      AddId(f.snapshot->add_subcommand("ls", "List snapshots"), f.id);
  f.snapshot_rm =
      AddId(f.snapshot->add_subcommand("rm", "Delete a snapshot"), f.id);
  f.snapshot_rm->add_option("NAME", f.name, "Snapshot name")->required();

  f.reset =
      AddId(app.add_subcommand("reset",
                               "Put the workspace back to its baseline or a "
                               "snapshot"),
            f.id);
  f.reset->add_option("--to", f.name, "Snapshot (default: the baseline)");

  f.file = app.add_subcommand("file", "Read and change files in a sandbox");
  f.file->require_subcommand(1);
  f.file_cat = AddId(
      f.file->add_subcommand("cat", "Write a file's content to stdout"), f.id);
  f.file_cat->add_option("PATH", f.path, "File")->required();
  f.file_write = AddId(f.file->add_subcommand("write",
                                              "Write stdin to a file (replaced "
                                              "atomically)"),
                       f.id);
  f.file_write->add_option("PATH", f.path, "File")->required();
  f.file_write->add_option("--mode", f.mode,
                           "Permission bits, octal (default: 0644)");
  f.file_write->add_flag("--parents", f.parents,
                         "Create missing parent directories");
  f.file_stat =
      AddId(f.file->add_subcommand("stat", "Show a file's details"), f.id);
  f.file_stat->add_option("PATH", f.path, "Path")->required();
  f.file_ls = AddId(f.file->add_subcommand("ls", "List a directory"), f.id);
  f.file_ls->add_option("PATH", f.path, "Directory (default: /workspace)");
  f.file_ls->add_flag("-r,--recursive", f.recursive, "List subdirectories too");
  f.file_mkdir =
      AddId(f.file->add_subcommand("mkdir", "Create a directory"), f.id);
  f.file_mkdir->add_option("PATH", f.path, "Directory")->required();
  f.file_mkdir->add_flag("-p,--parents", f.parents,
                         "Create missing parents; no error if it exists");
  f.file_mkdir->add_option("--mode", f.mode,
                           "Permission bits, octal (default: 0755)");
  f.file_rm =
      AddId(f.file->add_subcommand("rm", "Remove a file or directory"), f.id);
  f.file_rm->add_option("PATH", f.path, "Path")->required();
  f.file_rm->add_flag("-r,--recursive", f.recursive,
                      "Remove a non-empty directory with its contents");
  f.file_mv = AddId(f.file->add_subcommand("mv", "Move or rename"), f.id);
  f.file_mv->add_option("FROM", f.path, "Path")->required();
  f.file_mv->add_option("TO", f.path2, "New path")->required();
  f.file_watch = AddId(
      f.file->add_subcommand("watch",
                             "Print a directory's changes as they happen, "
                             "until Ctrl-C or the directory goes"),
      f.id);
  f.file_watch->add_option("PATH", f.path, "Directory (default: /workspace)");
  f.file_watch->add_flag("-r,--recursive", f.recursive,
                         "Watch subdirectories too, present and future");
}

WorkspaceCommands::~WorkspaceCommands() = default;

namespace {

Result Sync(Connection& connection, bool json,
            const WorkspaceCommands::Flags& f) {
  ASSIGN_OR_RETURN(UploadSource source, UploadSource::Open(f.source, true));
  ASSIGN_OR_RETURN(
      const corral::v1::SyncWorkspaceResponse response,
      UploadSync(connection, f.id, f.destination, f.flag_delete, source));
  RETURN_IF_ERROR(json ? PrintMessage(response)
                       : Print(absl::StrCat(response.entries(), " entries, ",
                                            response.bytes(), " bytes\n")));
  return 0;
}

Result Copy(Connection& connection, bool json,
            const WorkspaceCommands::Flags& f) {
  ASSIGN_OR_RETURN(const CopyPlan plan, PlanCopy(f.source, f.destination));
  if (plan.upload) {
    ASSIGN_OR_RETURN(UploadSource source,
                     UploadSource::Open(plan.local, false));
    if (source.is_directory()) {
      // The directory's contents land in PATH (created when missing).
      ASSIGN_OR_RETURN(const corral::v1::SyncWorkspaceResponse response,
                       UploadSync(connection, plan.remote.sandbox_id,
                                  plan.remote.path, false, source));
      if (json) RETURN_IF_ERROR(PrintMessage(response));
      return 0;
    }
    corral::v1::WriteFileHeader header;
    header.set_sandbox_id(plan.remote.sandbox_id);
    header.set_path(plan.remote.path);
    header.set_mode(source.info().st_mode & 0777);
    // Like a directory upload (SyncWorkspace creates its destination), a
    // file's missing parent directories are created.
    header.set_create_parents(true);
    ASSIGN_OR_RETURN(const corral::v1::FileInfo info,
                     UploadFile(connection, header, source));
    if (json) RETURN_IF_ERROR(Print(FileInfoJson(info) + "\n"));
    return 0;
  }
  // Fail before downloading anything when the target is taken.
  RETURN_IF_ERROR(CheckCopyTarget(plan.local, f.force));
  std::string printed;
  ASSIGN_OR_RETURN(
      const int code,
      Download(connection, plan.remote.sandbox_id, plan.remote.path,
               [&](const ChunkSource& source) -> absl::StatusOr<ExtractResult> {
                 ASSIGN_OR_RETURN(
                     ExtractResult result,
                     ExtractAsPath(source, plan.local, f.force, f.limits));
                 printed = ExtractJson(result);
                 return result;
               }));
  if (code == 0 && json) RETURN_IF_ERROR(Print(printed));
  return code;
}

Result Export(Connection& connection, bool json,
              const WorkspaceCommands::Flags& f) {
  if (f.destination == "-") {
    if (::isatty(STDOUT_FILENO)) {
      return absl::InvalidArgumentError(
          "refusing to write a tar archive to a terminal; redirect stdout");
    }
    return Download(
        connection, f.id, f.path,
        [](const ChunkSource& source) -> absl::StatusOr<ExtractResult> {
          RETURN_IF_ERROR(CopyToFd(source, STDOUT_FILENO));
          return ExtractResult();
        });
  }
  std::string printed;
  ASSIGN_OR_RETURN(
      const int code,
      Download(connection, f.id, f.path,
               [&](const ChunkSource& source) -> absl::StatusOr<ExtractResult> {
                 ASSIGN_OR_RETURN(ExtractResult result,
                                  ExtractIntoDirectory(source, f.destination,
                                                       f.force, f.limits));
                 printed = json ? ExtractJson(result)
                                : absl::StrCat(result.entries, " entries, ",
                                               result.bytes, " bytes\n");
                 return result;
               }));
  if (code == 0) RETURN_IF_ERROR(Print(printed));
  return code;
}

Result Diff(Connection& connection, bool json,
            const WorkspaceCommands::Flags& f) {
  corral::v1::DiffWorkspaceRequest request;
  request.set_sandbox_id(f.id);
  request.set_snapshot(f.name);
  request.set_no_patch(f.stat || f.name_status);
  auto& stub = connection.files();
  ASSIGN_OR_RETURN(const corral::v1::DiffWorkspaceResponse response,
                   UnaryCall(connection, LongContext(), stub,
                             &corral::v1::Files::Stub::DiffWorkspace, request));
  if (json) {
    RETURN_IF_ERROR(Print(DiffJson(response)));
  } else if (f.name_status) {
    RETURN_IF_ERROR(Print(FormatNameStatus(response)));
  } else if (f.stat) {
    RETURN_IF_ERROR(Print(FormatDiffStat(response)));
  } else {
    RETURN_IF_ERROR(Print(response.patch()));
  }
  if (response.patch_truncated() && !request.no_patch()) {
    Warn(
        "the patch stopped at the daemon's limit; --name-status lists every "
        "change");
  }
  return 0;
}

Result Patch(Connection& connection, bool json,
             const WorkspaceCommands::Flags& f) {
  constexpr size_t kMaxPatch = 16 << 20;
  corral::v1::ApplyPatchRequest request;
  request.set_sandbox_id(f.id);
  request.set_check(f.check);
  const bool from_stdin = f.source.empty() || f.source == "-";
  UniqueFd file;
  if (!from_stdin) {
    file.Reset(::open(f.source.c_str(), O_RDONLY | O_CLOEXEC));
    if (!file) {
      return absl::NotFoundError(
          absl::StrCat("cannot open ", f.source, ": ", std::strerror(errno)));
    }
  }
  const int fd = from_stdin ? STDIN_FILENO : file.get();
  std::string patch;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("reading the patch: ", std::strerror(errno)));
    }
    if (n == 0) break;
    patch.append(buffer, static_cast<size_t>(n));
    if (patch.size() > kMaxPatch) {
      return absl::InvalidArgumentError("the patch is larger than 16 MiB");
    }
  }
  request.set_patch(std::move(patch));
  ASSIGN_OR_RETURN(const corral::v1::ApplyPatchResponse response,
                   UnaryCall(connection, LongContext(), connection.files(),
                             &corral::v1::Files::Stub::ApplyPatch, request));
  if (json) return PrintMessage(response).ok() ? 0 : 125;
  std::string out;
  for (const auto& file : response.files()) {
    absl::StrAppend(&out, std::string(1, LabelOf(file.kind()).letter), "\t",
                    file.path(), "\t", file.hunks(),
                    file.hunks() == 1 ? " hunk\n" : " hunks\n");
  }
  if (f.check) absl::StrAppend(&out, "applies cleanly (nothing changed)\n");
  RETURN_IF_ERROR(Print(out));
  return 0;
}

Result Logs(Connection& connection, bool json,
            const WorkspaceCommands::Flags& f) {
  corral::v1::GetCommandLogRequest request;
  request.set_sandbox_id(f.id);
  request.set_after_sequence(f.after);
  auto& stub = connection.files();
  ASSIGN_OR_RETURN(const corral::v1::GetCommandLogResponse response,
                   UnaryCall(connection, connection.UnaryContext(), stub,
                             &corral::v1::Files::Stub::GetCommandLog, request));
  if (json) {
    RETURN_IF_ERROR(Print(CommandLogJson(response, f.output)));
  } else if (f.output) {
    RETURN_IF_ERROR(Print(FormatCommandLogOutput(response, NowSeconds())));
  } else {
    RETURN_IF_ERROR(Print(FormatCommandLog(response, NowSeconds())));
  }
  return 0;
}

Result Snapshot(Connection& connection, bool json,
                const WorkspaceCommands::Flags& f) {
  auto& stub = connection.snapshots();
  if (f.snapshot_create->parsed()) {
    corral::v1::CreateSnapshotRequest request;
    request.set_sandbox_id(f.id);
    request.set_name(f.name);
    request.set_memory(f.memory);
    ASSIGN_OR_RETURN(
        const corral::v1::Snapshot snapshot,
        UnaryCall(connection, LongContext(), stub,
                  &corral::v1::Snapshots::Stub::CreateSnapshot, request));
    RETURN_IF_ERROR(json ? PrintMessage(snapshot)
                         : Print(absl::StrCat(snapshot.name(), "\n")));
    return 0;
  }
  if (f.snapshot_ls->parsed()) {
    corral::v1::ListSnapshotsRequest request;
    request.set_sandbox_id(f.id);
    ASSIGN_OR_RETURN(
        const corral::v1::ListSnapshotsResponse response,
        UnaryCall(connection, connection.UnaryContext(), stub,
                  &corral::v1::Snapshots::Stub::ListSnapshots, request));
    RETURN_IF_ERROR(json ? PrintMessage(response)
                         : Print(FormatSnapshots(response, NowSeconds())));
    return 0;
  }
  corral::v1::DeleteSnapshotRequest request;
  request.set_sandbox_id(f.id);
  request.set_name(f.name);
  ASSIGN_OR_RETURN(
      const corral::v1::DeleteSnapshotResponse response,
      UnaryCall(connection, connection.UnaryContext(), stub,
                &corral::v1::Snapshots::Stub::DeleteSnapshot, request));
  RETURN_IF_ERROR(
      json ? Print(absl::StrCat("{\"removed\":", JsonString(f.name), "}\n"))
           : Print(absl::StrCat(f.name, "\n")));
  return 0;
}

Result Reset(Connection& connection, bool json,
             const WorkspaceCommands::Flags& f) {
  corral::v1::RestoreSnapshotRequest request;
  request.set_sandbox_id(f.id);
  request.set_name(f.name);
  auto& stub = connection.snapshots();
  ASSIGN_OR_RETURN(
      const corral::v1::Sandbox sandbox,
      UnaryCall(connection, LongContext(), stub,
                &corral::v1::Snapshots::Stub::RestoreSnapshot, request));
  RETURN_IF_ERROR(
      json
          ? PrintMessage(sandbox)
          : Print(absl::StrCat(
                f.id, " reset to ",
                f.name.empty() ? "its baseline" : "snapshot " + f.name, "\n")));
  return 0;
}

Result FileCommand(Connection& connection, bool json,
                   const WorkspaceCommands::Flags& f) {
  auto& stub = connection.files();
  const auto print_info = [json](const corral::v1::FileInfo& info) {
    return json ? Print(FileInfoJson(info) + "\n") : absl::OkStatus();
  };
  if (f.file_cat->parsed()) {
    corral::v1::ReadFileRequest request;
    request.set_sandbox_id(f.id);
    request.set_path(f.path);
    DownloadStream<corral::v1::FileChunk> stream(connection, LongContext());
    stream.Start(stub.ReadFile(stream.context(), request));
    RETURN_IF_ERROR(CopyToFd(stream.Source(), STDOUT_FILENO));
    return 0;
  }
  if (f.file_write->parsed()) {
    corral::v1::WriteFileHeader header;
    header.set_sandbox_id(f.id);
    header.set_path(f.path);
    if (!f.mode.empty()) {
      ASSIGN_OR_RETURN(const uint32_t mode, ParseFileMode(f.mode));
      header.set_mode(mode);
    }
    header.set_create_parents(f.parents);
    ASSIGN_OR_RETURN(UploadSource source, UploadSource::Open("-", true));
    ASSIGN_OR_RETURN(const corral::v1::FileInfo info,
                     UploadFile(connection, header, source));
    RETURN_IF_ERROR(print_info(info));
    return 0;
  }
  if (f.file_watch->parsed()) {
    corral::v1::WatchDirectoryRequest request;
    request.set_sandbox_id(f.id);
    request.set_path(f.path.empty() ? "/workspace" : f.path);
    request.set_recursive(f.recursive);
    auto context = LongContext();
    auto reader = stub.WatchDirectory(context.get(), request);
    corral::v1::WatchDirectoryResponse response;
    while (reader->Read(&response)) {
      if (response.started()) {
        Warn(absl::StrCat("watching ", EscapeControl(request.path()),
                          " (Ctrl-C stops)"));
      }
      std::string out;
      for (const corral::v1::FileEvent& event : response.events()) {
        std::string kind = corral::v1::FileEventKind_Name(event.kind());
        kind = absl::AsciiStrToLower(kind.substr(kind.rfind('_') + 1));
        const std::string type = FileTypeName(event.type());
        absl::StrAppend(
            &out, json ? absl::StrCat("{\"kind\":\"", kind,
                                      "\",\"path\":", JsonString(event.path()),
                                      ",\"type\":\"", type, "\"}\n")
                       : absl::StrCat(kind, " ", EscapeControl(event.path()),
                                      type == "directory" ? "/" : "", "\n"));
      }
      if (!out.empty()) RETURN_IF_ERROR(Print(out));
    }
    const grpc::Status status = reader->Finish();
    if (!status.ok()) return connection.CallError(status);
    return 0;
  }
  if (f.file_stat->parsed()) {
    corral::v1::StatFileRequest request;
    request.set_sandbox_id(f.id);
    request.set_path(f.path);
    ASSIGN_OR_RETURN(const corral::v1::FileInfo info,
                     UnaryCall(connection, connection.UnaryContext(), stub,
                               &corral::v1::Files::Stub::StatFile, request));
    RETURN_IF_ERROR(json ? Print(FileInfoJson(info) + "\n")
                         : Print(FormatFileInfo(info)));
    return 0;
  }
  if (f.file_ls->parsed()) {
    corral::v1::ListDirectoryRequest request;
    request.set_sandbox_id(f.id);
    request.set_path(f.path);
    request.set_recursive(f.recursive);
    ASSIGN_OR_RETURN(
        const corral::v1::ListDirectoryResponse response,
        UnaryCall(connection, connection.UnaryContext(), stub,
                  &corral::v1::Files::Stub::ListDirectory, request));
    RETURN_IF_ERROR(json ? Print(ListingJson(response))
                         : Print(FormatListing(response, NowSeconds())));
    if (!json && response.truncated()) {
      Warn(absl::StrCat("listing stopped after ", response.entries_size(),
                        " entries"));
    }
    return 0;
  }
  if (f.file_mkdir->parsed()) {
    corral::v1::MakeDirectoryRequest request;
    request.set_sandbox_id(f.id);
    request.set_path(f.path);
    request.set_parents(f.parents);
    if (!f.mode.empty()) {
      ASSIGN_OR_RETURN(const uint32_t mode, ParseFileMode(f.mode));
      request.set_mode(mode);
    }
    ASSIGN_OR_RETURN(
        const corral::v1::FileInfo info,
        UnaryCall(connection, connection.UnaryContext(), stub,
                  &corral::v1::Files::Stub::MakeDirectory, request));
    RETURN_IF_ERROR(print_info(info));
    return 0;
  }
  if (f.file_rm->parsed()) {
    corral::v1::RemoveFileRequest request;
    request.set_sandbox_id(f.id);
    request.set_path(f.path);
    request.set_recursive(f.recursive);
    ASSIGN_OR_RETURN(const corral::v1::RemoveFileResponse response,
                     UnaryCall(connection, LongContext(), stub,
                               &corral::v1::Files::Stub::RemoveFile, request));
    if (json) {
      RETURN_IF_ERROR(
          Print(absl::StrCat("{\"removed\":", response.removed(), "}\n")));
    }
    return 0;
  }
  corral::v1::MoveFileRequest request;
  request.set_sandbox_id(f.id);
  request.set_from(f.path);
  request.set_to(f.path2);
  ASSIGN_OR_RETURN(const corral::v1::FileInfo info,
                   UnaryCall(connection, connection.UnaryContext(), stub,
                             &corral::v1::Files::Stub::MoveFile, request));
  RETURN_IF_ERROR(print_info(info));
  return 0;
}

}  // namespace

std::optional<Result> WorkspaceCommands::Dispatch(Connection& connection,
                                                  bool json) {
  const Flags& f = *flags_;
  if (f.sync->parsed()) return Sync(connection, json, f);
  if (f.cp->parsed()) return Copy(connection, json, f);
  if (f.export_->parsed()) return Export(connection, json, f);
  if (f.diff->parsed()) return Diff(connection, json, f);
  if (f.patch->parsed()) return Patch(connection, json, f);
  if (f.logs->parsed()) return Logs(connection, json, f);
  if (f.snapshot->parsed()) return Snapshot(connection, json, f);
  if (f.reset->parsed()) return Reset(connection, json, f);
  if (f.file->parsed()) return FileCommand(connection, json, f);
  return std::nullopt;
}

}  // namespace corral::cli
