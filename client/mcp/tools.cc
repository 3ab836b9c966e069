#include "client/mcp/tools.h"

#include <algorithm>
#include <csignal>
#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/command_support.h"
#include "client/format.h"
#include "client/mcp/plain_text.h"
#include "client/options.h"
#include "client/tar_extract.h"
#include "client/transfer.h"
#include "client/workspace_format.h"
#include "corral/status_macros.h"

namespace corral::cli::mcp {
namespace {

using Json = nlohmann::json;
namespace v1 = corral::v1;

// Bounds of what one tool call moves through the model's context.
constexpr uint64_t kDefaultOutputBytes = 256 * 1024;
constexpr uint64_t kMaxOutputBytes = 4 << 20;
constexpr uint64_t kDefaultReadBytes = 256 * 1024;
constexpr uint64_t kMaxReadBytes = 4 << 20;
constexpr uint64_t kMaxWriteBytes = 16 << 20;
constexpr uint32_t kDefaultListEntries = 1000;
constexpr size_t kMaxPatchText = 1 << 20;

// --- Schemas --------------------------------------------------------------

Json Object(Json properties, std::vector<std::string> required = {}) {
  Json schema = {{"type", "object"},
                 {"properties", std::move(properties)},
                 {"additionalProperties", false}};
  if (!required.empty()) schema["required"] = std::move(required);
  return schema;
}

Json String(const std::string& description) {
  return {{"type", "string"}, {"description", description}};
}

Json Integer(const std::string& description, int64_t minimum, int64_t maximum) {
  return {{"type", "integer"},
          {"description", description},
          {"minimum", minimum},
          {"maximum", maximum}};
}

Json Boolean(const std::string& description) {
  return {{"type", "boolean"}, {"description", description}};
}

Json StringMap(const std::string& description) {
  return {{"type", "object"},
          {"description", description},
          {"additionalProperties", {{"type", "string"}}}};
}

Json SandboxId() {
  return String("The sandbox's id (from workspace_create or workspace_list)");
}

// The command properties shared by sandbox_run and workspace_exec.
Json CommandProperties() {
  return {{"command", String("A shell command line, run with /bin/sh -c")},
          {"argv",
           {{"type", "array"},
            {"items", {{"type", "string"}}},
            {"description",
             "The program and its arguments, instead of command (argv[0] is "
             "looked up in PATH)"}}},
          {"cwd", String("Working directory (default: the sandbox's, "
                         "/workspace)")},
          {"env", StringMap("Extra environment variables")},
          {"stdin", String("Text given to the command on its standard input")},
          {"timeout_seconds",
           Integer("Kill the command (its whole process group) after this many "
                   "seconds (default: the daemon's)",
                   1, 86400)},
          {"max_output_bytes",
           Integer("Keep at most this many bytes of stdout and of stderr each",
                   1, kMaxOutputBytes)}};
}

// --- Helpers --------------------------------------------------------------

std::string Text(const Json& arguments, const char* key,
                 const std::string& fallback = "") {
  auto it = arguments.find(key);
  return it == arguments.end() ? fallback : it->get<std::string>();
}

int64_t Number(const Json& arguments, const char* key, int64_t fallback) {
  auto it = arguments.find(key);
  return it == arguments.end() ? fallback : it->get<int64_t>();
}

bool Flag(const Json& arguments, const char* key, bool fallback = false) {
  auto it = arguments.find(key);
  return it == arguments.end() ? fallback : it->get<bool>();
}

template <typename Map>
void FillMap(const Json& arguments, const char* key, Map* map) {
  auto it = arguments.find(key);
  if (it == arguments.end()) return;
  for (const auto& [name, value] : it->items()) {
    (*map)[name] = value.template get<std::string>();
  }
}

Json SandboxJson(const v1::Sandbox& sandbox) {
  Json labels = Json::object();
  for (const auto& [k, v] : sandbox.labels()) labels[k] = v;
  Json json = {{"id", sandbox.id()},
               {"state", StateName(sandbox.state())},
               {"runtime", sandbox.runtime()},
               {"image", sandbox.image()},
               {"workdir", sandbox.workdir()},
               {"created_at", FormatTimestamp(sandbox.created_at())},
               {"expires_at", FormatTimestamp(sandbox.expires_at())},
               {"labels", std::move(labels)},
               {"cpu_millis", sandbox.limits().cpu_millis()},
               {"memory_mib", sandbox.limits().memory_mib()},
               {"disk_mib", sandbox.limits().disk_mib()}};
  if (!sandbox.failure().empty()) json["failure"] = sandbox.failure();
  if (!sandbox.network_address().empty()) {
    json["network_address"] = sandbox.network_address();
  }
  return json;
}

std::string SandboxLine(const v1::Sandbox& sandbox) {
  return absl::StrCat(sandbox.id(), "  ", StateName(sandbox.state()), "  ",
                      sandbox.runtime(), "  ", sandbox.image(), "  expires ",
                      FormatTimestamp(sandbox.expires_at()));
}

// A file tool's path: absolute, or relative to /workspace, and inside it
// once "." and ".." are taken out. (The sandbox's other files are its
// own and harmless to read, but these tools are about the workspace, and a
// path that leaves it is more often a mistake than intent.)
absl::StatusOr<std::string> WorkspacePath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("path is empty");
  const std::string full = path.front() == '/' ? path : "/workspace/" + path;
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(full, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (parts.empty()) break;
      parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  if (parts.empty() || parts.front() != "workspace") {
    return absl::InvalidArgumentError(absl::StrCat(
        "path '", path.substr(0, 256),
        "' is outside /workspace: the file tools work on the workspace "
        "(workspace_exec reaches the rest of the sandbox)"));
  }
  return "/" + absl::StrJoin(parts, "/");
}

// An ExecStart from the command properties.
absl::Status FillCommand(const Json& arguments, v1::ExecStart* start) {
  const bool has_command = arguments.contains("command");
  const bool has_argv = arguments.contains("argv");
  if (has_command == has_argv) {
    return absl::InvalidArgumentError(
        "give exactly one of command (a shell line) and argv");
  }
  if (has_command) {
    start->set_shell(Text(arguments, "command"));
    if (start->shell().empty()) {
      return absl::InvalidArgumentError("command is empty");
    }
  } else {
    for (const auto& word : arguments["argv"]) {
      start->add_argv(word.get<std::string>());
    }
    if (start->argv().empty()) {
      return absl::InvalidArgumentError("argv is empty");
    }
  }
  start->set_cwd(Text(arguments, "cwd"));
  FillMap(arguments, "env", start->mutable_env());
  start->set_timeout_seconds(
      static_cast<uint32_t>(Number(arguments, "timeout_seconds", 0)));
  start->set_output_limit_bytes(static_cast<uint64_t>(
      Number(arguments, "max_output_bytes", kDefaultOutputBytes)));
  return absl::OkStatus();
}

ToolResult ExecResult(const v1::ExecResponse& response) {
  const v1::ExecExit& exit = response.exit();
  ToolResult result;
  result.structured = {{"exit_code", exit.exit_code()},
                       {"signal", exit.signal()},
                       {"timed_out", exit.timed_out()},
                       {"oom_killed", exit.oom_killed()},
                       {"duration_ms", exit.duration_us() / 1000},
                       {"stdout", response.stdout()},
                       {"stderr", response.stderr()},
                       {"stdout_truncated", exit.stdout_truncated()},
                       {"stderr_truncated", exit.stderr_truncated()}};
  std::string status;
  if (!exit.error().empty()) {
    status = absl::StrCat("could not start (exit code ", exit.exit_code(),
                          "): ", exit.error());
    result.structured["error"] = exit.error();
  } else if (exit.timed_out()) {
    status = "timed out and was killed";
  } else if (exit.signal() > 0) {
    status = absl::StrCat("killed by signal ", exit.signal());
  } else {
    status = absl::StrCat("exit code ", exit.exit_code());
  }
  if (exit.oom_killed()) absl::StrAppend(&status, " (out of memory)");
  result.text = status;
  auto stream = [&](const char* name, const std::string& data, bool truncated) {
    if (data.empty()) return;
    absl::StrAppend(&result.text, "\n--- ", name, " ---\n", data);
    if (!data.empty() && data.back() != '\n') result.text += '\n';
    if (truncated) absl::StrAppend(&result.text, "[", name, " truncated]\n");
  };
  stream("stdout", response.stdout(), exit.stdout_truncated());
  stream("stderr", response.stderr(), exit.stderr_truncated());
  return result;
}

// No deadline: a command may run long, bounded by its own timeout.
absl::StatusOr<v1::ExecResponse> Exec(Connection& connection,
                                      const v1::ExecRequest& request) {
  return UnaryCall(connection, std::make_unique<grpc::ClientContext>(),
                   connection.exec(), &v1::Exec::Stub::Exec, request);
}

// The sandbox request of workspace_create and sandbox_run.
v1::CreateSandboxRequest CreateRequest(const Json& arguments) {
  v1::CreateSandboxRequest request;
  request.set_runtime(Text(arguments, "runtime"));
  request.set_image(Text(arguments, "image"));
  request.mutable_limits()->set_cpu_millis(
      static_cast<uint32_t>(Number(arguments, "cpu_millis", 0)));
  request.mutable_limits()->set_memory_mib(
      static_cast<uint64_t>(Number(arguments, "memory_mib", 0)));
  request.mutable_limits()->set_disk_mib(
      static_cast<uint64_t>(Number(arguments, "disk_mib", 0)));
  request.set_ttl_seconds(
      static_cast<uint64_t>(Number(arguments, "ttl_seconds", 0)));
  FillMap(arguments, "labels", request.mutable_labels());
  FillMap(arguments, "env", request.mutable_env());
  return request;
}

Json CreateProperties(bool workspace) {
  Json properties = {
      {"runtime", String("Runtime to use (corral runtimes lists them; "
                         "default: the daemon's)")},
      {"image", String("Image of the root filesystem (default: the "
                       "daemon's)")},
      {"cpu_millis", Integer("CPU limit in thousandths of a CPU", 1, 1 << 20)},
      {"memory_mib", Integer("Memory limit in MiB", 1, 1 << 24)},
      {"disk_mib", Integer("Workspace size limit in MiB", 1, 1 << 30)},
  };
  if (workspace) {
    properties["ttl_seconds"] = Integer(
        "Lifetime in seconds, after which it is deleted", 1, 365 * 86400);
    properties["labels"] = StringMap("Labels to find it by later");
    properties["env"] = StringMap("Environment of every command");
    properties["seed"] = String(
        "A directory or a tar archive on this machine (an absolute path) "
        "whose content becomes the workspace's starting files");
  }
  return properties;
}

absl::Status Delete(Connection& connection, const std::string& id) {
  v1::DeleteSandboxRequest request;
  request.set_id(id);
  return UnaryCall(connection, connection.UnaryContext(),
                   connection.sandboxes(), &v1::Sandboxes::Stub::DeleteSandbox,
                   request)
      .status();
}

absl::StatusOr<v1::Sandbox> GetSandbox(Connection& connection,
                                       const std::string& id) {
  v1::GetSandboxRequest request;
  request.set_id(id);
  ASSIGN_OR_RETURN(
      v1::Sandbox sandbox,
      UnaryCall(connection, connection.UnaryContext(), connection.sandboxes(),
                &v1::Sandboxes::Stub::GetSandbox, request));
  return sandbox;
}

ToolResult SandboxResult(const std::string& headline,
                         const v1::Sandbox& sandbox) {
  ToolResult result;
  result.structured = SandboxJson(sandbox);
  result.text = absl::StrCat(headline, "\n", result.structured.dump(2));
  return result;
}

// Text of `data` for the model: as it is when valid UTF-8, else base64.
void PutContent(const std::string& data, ToolResult* result) {
  bool valid = true;
  try {
    (void)Json(data).dump();  // throws on invalid UTF-8
  } catch (const Json::exception&) {
    valid = false;
  }
  if (valid) {
    result->structured["encoding"] = "utf-8";
    result->structured["content"] = data;
    result->text = data;
  } else {
    result->structured["encoding"] = "base64";
    result->structured["content"] = absl::Base64Escape(data);
    result->text =
        absl::StrCat("(binary content, base64)\n", absl::Base64Escape(data));
  }
}

// --- The tools ------------------------------------------------------------

absl::StatusOr<ToolResult> SandboxRun(Connection& connection,
                                      const Json& arguments) {
  v1::ExecRequest exec;
  RETURN_IF_ERROR(FillCommand(arguments, exec.mutable_start()));
  exec.set_stdin(Text(arguments, "stdin"));
  ASSIGN_OR_RETURN(
      v1::Sandbox sandbox,
      UnaryCall(connection, connection.UnaryContext(), connection.sandboxes(),
                &v1::Sandboxes::Stub::CreateSandbox, CreateRequest(arguments)));
  exec.mutable_start()->set_sandbox_id(sandbox.id());
  auto response = Exec(connection, exec);
  // Destroyed whatever happened.
  const absl::Status deleted = Delete(connection, sandbox.id());
  RETURN_IF_ERROR(response.status());
  ToolResult result = ExecResult(*response);
  if (!deleted.ok()) {
    absl::StrAppend(&result.text, "\n(the sandbox ", sandbox.id(),
                    " could not be deleted: ", deleted.message(), ")");
  }
  return result;
}

absl::StatusOr<ToolResult> WorkspaceCreate(Connection& connection,
                                           const Json& arguments) {
  v1::CreateSandboxRequest request = CreateRequest(arguments);
  const std::string seed = Text(arguments, "seed");
  v1::Sandbox sandbox;
  if (!seed.empty()) {
    if (seed.front() != '/') {
      return absl::InvalidArgumentError(
          "seed must be an absolute path on this machine");
    }
    ASSIGN_OR_RETURN(UploadSource source,
                     UploadSource::Open(seed, /*allow_stdin=*/false));
    v1::CreateSeededSandboxRequest first;
    *first.mutable_sandbox() = request;
    ASSIGN_OR_RETURN(sandbox, Upload(connection, connection.sandboxes(),
                                     &v1::Sandboxes::Stub::CreateSeededSandbox,
                                     first, source,
                                     /*workspace=*/true));
  } else {
    ASSIGN_OR_RETURN(
        sandbox,
        UnaryCall(connection, connection.UnaryContext(), connection.sandboxes(),
                  &v1::Sandboxes::Stub::CreateSandbox, request));
  }
  return SandboxResult(
      absl::StrCat("created workspace ", sandbox.id(),
                   seed.empty() ? "" : absl::StrCat(" seeded from ", seed)),
      sandbox);
}

absl::StatusOr<ToolResult> WorkspaceList(Connection& connection,
                                         const Json& arguments) {
  v1::ListSandboxesRequest request;
  FillMap(arguments, "labels", request.mutable_label_selector());
  ASSIGN_OR_RETURN(
      v1::ListSandboxesResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.sandboxes(),
                &v1::Sandboxes::Stub::ListSandboxes, request));
  ToolResult result;
  Json list = Json::array();
  std::vector<std::string> lines;
  for (const auto& sandbox : response.sandboxes()) {
    list.push_back(SandboxJson(sandbox));
    lines.push_back(SandboxLine(sandbox));
  }
  result.structured = {{"sandboxes", std::move(list)}};
  result.text = lines.empty() ? "no sandboxes" : absl::StrJoin(lines, "\n");
  return result;
}

absl::StatusOr<ToolResult> WorkspaceStatus(Connection& connection,
                                           const Json& arguments) {
  ASSIGN_OR_RETURN(v1::Sandbox sandbox,
                   GetSandbox(connection, Text(arguments, "sandbox_id")));
  return SandboxResult(SandboxLine(sandbox), sandbox);
}

absl::StatusOr<ToolResult> WorkspaceExec(Connection& connection,
                                         const Json& arguments) {
  v1::ExecRequest exec;
  RETURN_IF_ERROR(FillCommand(arguments, exec.mutable_start()));
  exec.mutable_start()->set_sandbox_id(Text(arguments, "sandbox_id"));
  exec.set_stdin(Text(arguments, "stdin"));
  ASSIGN_OR_RETURN(v1::ExecResponse response, Exec(connection, exec));
  return ExecResult(response);
}

absl::StatusOr<ToolResult> WorkspaceDelete(Connection& connection,
                                           const Json& arguments) {
  const std::string id = Text(arguments, "sandbox_id");
  RETURN_IF_ERROR(Delete(connection, id));
  ToolResult result;
  result.text = absl::StrCat("deleted ", id);
  result.structured = {{"deleted", id}};
  return result;
}

absl::StatusOr<ToolResult> WorkspaceSync(Connection& connection,
                                         const Json& arguments) {
  const std::string source = Text(arguments, "source");
  if (source.empty() || source.front() != '/') {
    return absl::InvalidArgumentError(
        "source must be an absolute path on this machine");
  }
  ASSIGN_OR_RETURN(UploadSource upload,
                   UploadSource::Open(source, /*allow_stdin=*/false));
  v1::SyncWorkspaceRequest first;
  v1::SyncWorkspaceHeader* header = first.mutable_header();
  header->set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(*header->mutable_destination(),
                   WorkspacePath(Text(arguments, "destination", "/workspace")));
  header->set_delete_missing(Flag(arguments, "delete_missing"));
  ASSIGN_OR_RETURN(v1::SyncWorkspaceResponse response,
                   Upload(connection, connection.files(),
                          &v1::Files::Stub::SyncWorkspace, first, upload,
                          /*workspace=*/true));
  ToolResult result;
  result.structured = {{"entries", response.entries()},
                       {"bytes", response.bytes()},
                       {"destination", header->destination()}};
  result.text = absl::StrCat("synced ", response.entries(), " entries (",
                             FormatBytes(response.bytes()), ") from ", source,
                             " into ", header->destination());
  return result;
}

absl::StatusOr<ToolResult> WorkspaceExport(Connection& connection,
                                           const Json& arguments) {
  const std::string destination = Text(arguments, "destination");
  if (destination.empty() || destination.front() != '/') {
    return absl::InvalidArgumentError(
        "destination must be an absolute path on this machine");
  }
  v1::ExportPathRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(*request.mutable_path(),
                   WorkspacePath(Text(arguments, "path", "/workspace")));
  DownloadStream<v1::ArchiveChunk> stream(
      connection, std::make_unique<grpc::ClientContext>());
  stream.Start(connection.files().ExportPath(stream.context(), request));
  ASSIGN_OR_RETURN(
      ExtractResult extracted,
      ExtractIntoDirectory(stream.Source(), destination,
                           Flag(arguments, "overwrite"), ExtractLimits()));
  ToolResult result;
  result.structured = {{"entries", extracted.entries},
                       {"bytes", extracted.bytes},
                       {"top_level", extracted.top_level},
                       {"destination", destination}};
  result.text = absl::StrCat("exported ", request.path(), " to ", destination,
                             ": ", extracted.entries, " entries (",
                             FormatBytes(extracted.bytes), ")");
  return result;
}

absl::StatusOr<ToolResult> FileRead(Connection& connection,
                                    const Json& arguments) {
  v1::ReadFileRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(*request.mutable_path(),
                   WorkspacePath(Text(arguments, "path")));
  request.set_offset(static_cast<uint64_t>(Number(arguments, "offset", 0)));
  const uint64_t max =
      static_cast<uint64_t>(Number(arguments, "max_bytes", kDefaultReadBytes));
  // One byte more tells whether there was more.
  request.set_length(max + 1);
  auto context = connection.UnaryContext();
  auto reader = connection.files().ReadFile(context.get(), request);
  std::string data;
  v1::FileChunk chunk;
  while (reader->Read(&chunk)) data += chunk.data();
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return connection.CallError(status);
  const bool truncated = data.size() > max;
  if (truncated) data.resize(max);
  ToolResult result;
  PutContent(data, &result);
  result.structured["path"] = request.path();
  result.structured["offset"] = request.offset();
  result.structured["bytes"] = data.size();
  result.structured["truncated"] = truncated;
  if (truncated) {
    absl::StrAppend(&result.text, "\n[truncated at ", max,
                    " bytes: read on with offset ", request.offset() + max,
                    "]");
  }
  return result;
}

absl::StatusOr<ToolResult> FileWrite(Connection& connection,
                                     const Json& arguments) {
  std::string content = Text(arguments, "content");
  if (Text(arguments, "encoding", "utf-8") == "base64") {
    std::string decoded;
    if (!absl::Base64Unescape(content, &decoded)) {
      return absl::InvalidArgumentError("content is not valid base64");
    }
    content = std::move(decoded);
  }
  if (content.size() > kMaxWriteBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("content of ", content.size(), " bytes is more than the ",
                     kMaxWriteBytes >> 20,
                     " MiB one call writes; copy large files with "
                     "workspace_create's seed"));
  }
  v1::WriteFileRequest first;
  v1::WriteFileHeader* header = first.mutable_header();
  header->set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(*header->mutable_path(),
                   WorkspacePath(Text(arguments, "path")));
  header->set_mode(static_cast<uint32_t>(Number(arguments, "mode", 0)));
  header->set_create_parents(Flag(arguments, "create_parents", true));
  v1::FileInfo info;
  auto context = connection.UnaryContext();
  auto writer = connection.files().WriteFile(context.get(), &info);
  bool ok = writer->Write(first);
  constexpr size_t kChunk = 1 << 20;
  for (size_t at = 0; ok && at < content.size(); at += kChunk) {
    v1::WriteFileRequest chunk;
    chunk.set_data(content.substr(at, kChunk));
    ok = writer->Write(chunk);
  }
  if (ok) writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (!status.ok()) return connection.CallError(status);
  ToolResult result;
  result.text =
      absl::StrCat("wrote ", content.size(), " bytes to ", info.path());
  result.structured = {{"path", info.path()}, {"bytes", info.size()}};
  return result;
}

absl::StatusOr<ToolResult> FileList(Connection& connection,
                                    const Json& arguments) {
  v1::ListDirectoryRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(*request.mutable_path(),
                   WorkspacePath(Text(arguments, "path", "/workspace")));
  request.set_recursive(Flag(arguments, "recursive"));
  request.set_max_entries(static_cast<uint32_t>(
      Number(arguments, "max_entries", kDefaultListEntries)));
  ASSIGN_OR_RETURN(
      v1::ListDirectoryResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.files(),
                &v1::Files::Stub::ListDirectory, request));
  ToolResult result;
  Json entries = Json::array();
  std::vector<std::string> lines;
  for (const auto& entry : response.entries()) {
    entries.push_back({{"path", entry.path()},
                       {"type", FileTypeName(entry.type())},
                       {"size", entry.size()},
                       {"mode", entry.mode()}});
    lines.push_back(absl::StrCat(
        entry.path(), entry.type() == v1::FILE_TYPE_DIRECTORY ? "/" : "",
        entry.type() == v1::FILE_TYPE_REGULAR
            ? absl::StrCat("  ", entry.size(), " bytes")
            : ""));
  }
  result.structured = {{"path", request.path()},
                       {"entries", std::move(entries)},
                       {"truncated", response.truncated()}};
  result.text = lines.empty() ? "(empty)" : absl::StrJoin(lines, "\n");
  if (response.truncated()) result.text += "\n[more entries not listed]";
  return result;
}

absl::StatusOr<ToolResult> WorkspaceDiff(Connection& connection,
                                         const Json& arguments) {
  v1::DiffWorkspaceRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_snapshot(Text(arguments, "snapshot"));
  ASSIGN_OR_RETURN(
      v1::DiffWorkspaceResponse response,
      UnaryCall(connection, std::make_unique<grpc::ClientContext>(),
                connection.files(), &v1::Files::Stub::DiffWorkspace, request));
  const v1::DiffCounts& counts = response.counts();
  ToolResult result;
  Json changes = Json::array();
  for (const auto& change : response.changes()) {
    changes.push_back({{"path", change.path()},
                       {"kind", LabelOf(change.kind()).name},
                       {"binary", change.binary()}});
  }
  std::string patch = response.patch();
  const bool cut = patch.size() > kMaxPatchText || response.patch_truncated();
  if (patch.size() > kMaxPatchText) patch.resize(kMaxPatchText);
  result.structured = {
      {"added", counts.added()},       {"modified", counts.modified()},
      {"deleted", counts.deleted()},   {"type_changed", counts.type_changed()},
      {"changes", std::move(changes)}, {"patch", patch},
      {"patch_truncated", cut}};
  result.text = absl::StrCat(
      counts.added(), " added, ", counts.modified(), " modified, ",
      counts.deleted(), " deleted, ", counts.type_changed(),
      " changed type, since ",
      request.snapshot().empty() ? std::string("the baseline")
                                 : "snapshot " + request.snapshot(),
      patch.empty() ? "" : "\n", patch, cut ? "\n[patch truncated]" : "");
  return result;
}

absl::StatusOr<ToolResult> ApplyPatch(Connection& connection,
                                      const Json& arguments) {
  v1::ApplyPatchRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_patch(Text(arguments, "patch"));
  request.set_check(Flag(arguments, "check"));
  ASSIGN_OR_RETURN(
      v1::ApplyPatchResponse response,
      UnaryCall(connection, std::make_unique<grpc::ClientContext>(),
                connection.files(), &v1::Files::Stub::ApplyPatch, request));
  ToolResult result;
  Json files = Json::array();
  std::vector<std::string> lines;
  for (const auto& file : response.files()) {
    const std::string kind = LabelOf(file.kind()).name;
    files.push_back(
        {{"path", file.path()}, {"kind", kind}, {"hunks", file.hunks()}});
    lines.push_back(absl::StrCat(kind, " ", file.path(), " (", file.hunks(),
                                 file.hunks() == 1 ? " hunk)" : " hunks)"));
  }
  result.structured = {{"files", std::move(files)},
                       {"applied", !request.check()}};
  result.text = absl::StrCat(request.check() ? "the patch applies cleanly "
                                               "(nothing changed):\n"
                                             : "applied:\n",
                             absl::StrJoin(lines, "\n"));
  return result;
}

absl::StatusOr<ToolResult> SnapshotCreate(Connection& connection,
                                          const Json& arguments) {
  v1::CreateSnapshotRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_name(Text(arguments, "name"));
  ASSIGN_OR_RETURN(
      v1::Snapshot snapshot,
      UnaryCall(connection, std::make_unique<grpc::ClientContext>(),
                connection.snapshots(), &v1::Snapshots::Stub::CreateSnapshot,
                request));
  ToolResult result;
  result.structured = {{"sandbox_id", snapshot.sandbox_id()},
                       {"name", snapshot.name()},
                       {"entries", snapshot.entries()},
                       {"size_bytes", snapshot.size_bytes()}};
  result.text = absl::StrCat("snapshot ", snapshot.name(), " of ",
                             snapshot.sandbox_id(), ": ", snapshot.entries(),
                             " entries, ", FormatBytes(snapshot.size_bytes()));
  return result;
}

absl::StatusOr<ToolResult> SnapshotList(Connection& connection,
                                        const Json& arguments) {
  v1::ListSnapshotsRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(
      v1::ListSnapshotsResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.snapshots(),
                &v1::Snapshots::Stub::ListSnapshots, request));
  ToolResult result;
  Json list = Json::array();
  std::vector<std::string> lines;
  for (const auto& snapshot : response.snapshots()) {
    list.push_back({{"name", snapshot.name()},
                    {"created_at", FormatTimestamp(snapshot.created_at())},
                    {"entries", snapshot.entries()},
                    {"size_bytes", snapshot.size_bytes()}});
    lines.push_back(absl::StrCat(snapshot.name(), "  ",
                                 FormatTimestamp(snapshot.created_at()), "  ",
                                 snapshot.entries(), " entries"));
  }
  result.structured = {{"snapshots", std::move(list)}};
  result.text = lines.empty() ? "no snapshots" : absl::StrJoin(lines, "\n");
  return result;
}

absl::StatusOr<ToolResult> SnapshotDelete(Connection& connection,
                                          const Json& arguments) {
  v1::DeleteSnapshotRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_name(Text(arguments, "name"));
  ASSIGN_OR_RETURN(
      v1::DeleteSnapshotResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.snapshots(),
                &v1::Snapshots::Stub::DeleteSnapshot, request));
  ToolResult result;
  result.text = absl::StrCat("deleted snapshot ", request.name());
  result.structured = {{"deleted", request.name()}};
  return result;
}

absl::StatusOr<ToolResult> WorkspaceReset(Connection& connection,
                                          const Json& arguments) {
  v1::RestoreSnapshotRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_name(Text(arguments, "snapshot"));
  ASSIGN_OR_RETURN(
      v1::Sandbox sandbox,
      UnaryCall(connection, std::make_unique<grpc::ClientContext>(),
                connection.snapshots(), &v1::Snapshots::Stub::RestoreSnapshot,
                request));
  return SandboxResult(
      absl::StrCat("reset ", sandbox.id(), " to ",
                   request.name().empty() ? std::string("its baseline")
                                          : "snapshot " + request.name()),
      sandbox);
}

absl::StatusOr<ToolResult> WorkspaceFork(Connection& connection,
                                         const Json& arguments) {
  v1::ForkSnapshotRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_name(Text(arguments, "snapshot"));
  ASSIGN_OR_RETURN(
      v1::Sandbox sandbox,
      UnaryCall(connection, std::make_unique<grpc::ClientContext>(),
                connection.snapshots(), &v1::Snapshots::Stub::ForkSnapshot,
                request));
  return SandboxResult(absl::StrCat("forked ", request.sandbox_id(),
                                    " into a new workspace ", sandbox.id()),
                       sandbox);
}

absl::StatusOr<ToolResult> CommandLog(Connection& connection,
                                      const Json& arguments) {
  v1::GetCommandLogRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_after_sequence(Number(arguments, "after_sequence", 0));
  ASSIGN_OR_RETURN(
      v1::GetCommandLogResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.files(),
                &v1::Files::Stub::GetCommandLog, request));
  ToolResult result;
  Json list = Json::array();
  std::vector<std::string> lines;
  for (const auto& command : response.commands()) {
    list.push_back({{"sequence", command.sequence()},
                    {"argv", command.argv()},
                    {"cwd", command.cwd()},
                    {"exit_code", command.exit_code()},
                    {"signal", command.signal()},
                    {"timed_out", command.timed_out()},
                    {"started_at", FormatTimestamp(command.started_at())},
                    {"duration_ms", command.duration_us() / 1000}});
    lines.push_back(absl::StrCat("#", command.sequence(), "  exit ",
                                 command.exit_code(), "  ",
                                 absl::StrJoin(command.argv(), " ")));
  }
  result.structured = {{"commands", std::move(list)}};
  result.text = lines.empty() ? "no commands" : absl::StrJoin(lines, "\n");
  return result;
}

// --- Shells ---------------------------------------------------------------

Json ShellJson(const v1::Shell& shell) {
  Json json = {{"shell_id", shell.shell_id()},
               {"argv", shell.argv()},
               {"running", shell.running()},
               {"output_end", shell.output_end()}};
  if (!shell.running()) {
    json["exit_code"] = shell.exit_code();
    json["signal"] = shell.signal();
  }
  return json;
}

absl::StatusOr<ToolResult> ShellOpen(Connection& connection,
                                     const Json& arguments) {
  v1::OpenShellRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  if (arguments.contains("argv")) {
    for (const auto& word : arguments["argv"]) {
      request.add_argv(word.get<std::string>());
    }
  }
  request.set_cwd(Text(arguments, "cwd"));
  FillMap(arguments, "env", request.mutable_env());
  request.mutable_size()->set_rows(
      static_cast<uint32_t>(Number(arguments, "rows", 40)));
  request.mutable_size()->set_columns(
      static_cast<uint32_t>(Number(arguments, "columns", 120)));
  ASSIGN_OR_RETURN(
      v1::Shell shell,
      UnaryCall(connection, connection.UnaryContext(), connection.shells(),
                &v1::Shells::Stub::OpenShell, request));
  ToolResult result;
  result.structured = ShellJson(shell);
  result.text = absl::StrCat("opened shell ", shell.shell_id(), " (",
                             absl::StrJoin(shell.argv(), " "),
                             "): write to it with shell_write, read with "
                             "shell_read");
  return result;
}

absl::StatusOr<ToolResult> ShellWrite(Connection& connection,
                                      const Json& arguments) {
  v1::WriteShellRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_shell_id(Text(arguments, "shell_id"));
  request.set_input(Text(arguments, "input"));
  request.set_newline(Flag(arguments, "newline", true));
  RETURN_IF_ERROR(UnaryCall(connection, connection.UnaryContext(),
                            connection.shells(), &v1::Shells::Stub::WriteShell,
                            request)
                      .status());
  ToolResult result;
  result.text = absl::StrCat(
      "wrote ", request.input().size() + (request.newline() ? 1 : 0), " bytes");
  result.structured = {{"bytes", request.input().size()}};
  return result;
}

absl::StatusOr<ToolResult> ShellRead(Connection& connection,
                                     const Json& arguments) {
  v1::ReadShellRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_shell_id(Text(arguments, "shell_id"));
  request.set_cursor(static_cast<uint64_t>(Number(arguments, "cursor", 0)));
  const uint64_t max =
      static_cast<uint64_t>(Number(arguments, "max_bytes", kDefaultReadBytes));
  const absl::Duration quiet =
      absl::Milliseconds(Number(arguments, "wait_until_quiet_ms", 0));
  const absl::Time deadline =
      absl::Now() + absl::Seconds(Number(arguments, "timeout_seconds", 30));
  std::string raw;
  uint64_t missed = 0;
  bool exited = false;
  absl::Time last_output = absl::Now();
  // Reads what is there; with wait_until_quiet_ms, goes on reading until
  // the shell has said nothing for that long (or exited, or the timeout).
  for (;;) {
    request.set_max_bytes(static_cast<uint32_t>(std::min<uint64_t>(
        max - std::min<uint64_t>(max, raw.size()), kMaxReadBytes)));
    if (request.max_bytes() == 0) break;
    ASSIGN_OR_RETURN(
        v1::ReadShellResponse response,
        UnaryCall(connection, connection.UnaryContext(), connection.shells(),
                  &v1::Shells::Stub::ReadShell, request));
    raw += response.output();
    missed += response.missed();
    exited = response.exited();
    if (!response.output().empty()) last_output = absl::Now();
    request.set_cursor(response.next_cursor());
    if (quiet == absl::ZeroDuration() || exited || absl::Now() >= deadline ||
        absl::Now() - last_output >= quiet) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  const bool plain = Flag(arguments, "plain", true);
  ToolResult result;
  result.structured = {{"output", plain ? PlainText(raw) : raw},
                       {"next_cursor", request.cursor()},
                       {"exited", exited},
                       {"missed_bytes", missed}};
  result.text = plain ? PlainText(raw) : raw;
  absl::StrAppend(&result.text, "\n[next cursor ", request.cursor(),
                  exited ? "; the shell has exited" : "",
                  missed > 0
                      ? absl::StrCat("; ", missed, " bytes were lost before it")
                      : "",
                  "]");
  return result;
}

absl::StatusOr<ToolResult> ShellSignal(Connection& connection,
                                       const Json& arguments) {
  static const std::map<std::string, int> kSignals = {
      {"INT", 2},   {"QUIT", 3},  {"KILL", 9},  {"TERM", 15}, {"HUP", 1},
      {"TSTP", 20}, {"CONT", 18}, {"USR1", 10}, {"USR2", 12}};
  v1::SignalShellRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_shell_id(Text(arguments, "shell_id"));
  request.set_signal(kSignals.at(Text(arguments, "signal", "INT")));
  ASSIGN_OR_RETURN(
      v1::Shell shell,
      UnaryCall(connection, connection.UnaryContext(), connection.shells(),
                &v1::Shells::Stub::SignalShell, request));
  ToolResult result;
  result.structured = ShellJson(shell);
  result.text = absl::StrCat("sent SIG", Text(arguments, "signal", "INT"),
                             " to shell ", shell.shell_id());
  return result;
}

absl::StatusOr<ToolResult> ShellClose(Connection& connection,
                                      const Json& arguments) {
  v1::CloseShellRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_shell_id(Text(arguments, "shell_id"));
  ASSIGN_OR_RETURN(
      v1::Shell shell,
      UnaryCall(connection, connection.UnaryContext(), connection.shells(),
                &v1::Shells::Stub::CloseShell, request));
  ToolResult result;
  result.structured = ShellJson(shell);
  result.text = absl::StrCat("closed shell ", shell.shell_id());
  return result;
}

absl::StatusOr<ToolResult> ShellList(Connection& connection,
                                     const Json& arguments) {
  v1::ListShellsRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(
      v1::ListShellsResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.shells(),
                &v1::Shells::Stub::ListShells, request));
  ToolResult result;
  Json list = Json::array();
  std::vector<std::string> lines;
  for (const auto& shell : response.shells()) {
    list.push_back(ShellJson(shell));
    lines.push_back(absl::StrCat(shell.shell_id(), "  ",
                                 shell.running() ? "running" : "exited", "  ",
                                 absl::StrJoin(shell.argv(), " ")));
  }
  result.structured = {{"shells", std::move(list)}};
  result.text = lines.empty() ? "no shells" : absl::StrJoin(lines, "\n");
  return result;
}

// --- Services -------------------------------------------------------------

const char* ReadinessName(v1::Readiness readiness) {
  switch (readiness) {
    case v1::READINESS_WAITING:
      return "waiting";
    case v1::READINESS_READY:
      return "ready";
    case v1::READINESS_FAILED:
      return "not ready";
    default:
      return "no check";
  }
}

Json ServiceJson(const v1::Process& process) {
  Json json = {{"name", process.tag()},
               {"process_id", process.process_id()},
               {"argv", process.argv()},
               {"running", process.running()},
               {"readiness", ReadinessName(process.readiness())}};
  if (!process.readiness_error().empty()) {
    json["readiness_error"] = process.readiness_error();
  }
  if (!process.running()) {
    json["exit_code"] = process.exit_code();
    json["signal"] = process.signal();
  }
  return json;
}

std::string ServiceLine(const v1::Process& process) {
  return absl::StrCat(
      process.tag().empty() ? process.process_id() : process.tag(), "  ",
      process.running()
          ? std::string("running")
          : absl::StrCat("exited ",
                         process.signal() > 0
                             ? absl::StrCat("by signal ", process.signal())
                             : absl::StrCat(process.exit_code())),
      "  ", ReadinessName(process.readiness()), "  ",
      absl::StrJoin(process.argv(), " "));
}

// Output of a process from `cursor`, both streams in order; the next
// cursor in *next.
absl::StatusOr<std::string> ProcessOutput(Connection& connection,
                                          const std::string& sandbox_id,
                                          const std::string& name,
                                          uint64_t cursor, uint64_t max,
                                          uint64_t* next, bool* exited) {
  v1::ReadProcessRequest request;
  request.set_sandbox_id(sandbox_id);
  request.set_process_id(name);
  request.set_cursor(cursor);
  request.set_max_bytes(static_cast<uint32_t>(max));
  ASSIGN_OR_RETURN(
      v1::ReadProcessResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                &v1::Exec::Stub::ReadProcess, request));
  std::string text;
  for (const auto& piece : response.output()) text += piece.data();
  *next = response.next_cursor();
  *exited = response.exited();
  return text;
}

absl::StatusOr<ToolResult> ServiceStart(Connection& connection,
                                        const Json& arguments) {
  v1::StartProcessRequest request;
  RETURN_IF_ERROR(FillCommand(arguments, request.mutable_start()));
  request.mutable_start()->set_sandbox_id(Text(arguments, "sandbox_id"));
  request.mutable_start()->set_output_limit_bytes(0);
  request.mutable_start()->set_timeout_seconds(0);
  request.set_tag(Text(arguments, "name"));
  int checks = 0;
  v1::ReadinessCheck ready;
  if (arguments.contains("ready_port")) {
    ready.set_tcp_port(
        static_cast<uint32_t>(Number(arguments, "ready_port", 0)));
    ++checks;
  }
  if (arguments.contains("ready_path")) {
    ready.set_path(Text(arguments, "ready_path"));
    ++checks;
  }
  if (arguments.contains("ready_url")) {
    ready.set_http_url(Text(arguments, "ready_url"));
    ++checks;
  }
  if (arguments.contains("ready_command")) {
    ready.set_command(Text(arguments, "ready_command"));
    ++checks;
  }
  if (checks > 1) {
    return absl::InvalidArgumentError(
        "give at most one of ready_port, ready_path, ready_url and "
        "ready_command");
  }
  if (checks == 1) {
    ready.set_timeout_seconds(
        static_cast<uint32_t>(Number(arguments, "ready_timeout_seconds", 0)));
    *request.mutable_ready() = ready;
  }
  ASSIGN_OR_RETURN(
      v1::Process process,
      UnaryCall(connection, std::make_unique<grpc::ClientContext>(),
                connection.exec(), &v1::Exec::Stub::StartProcess, request));
  ToolResult result;
  result.structured = ServiceJson(process);
  if (process.readiness() == v1::READINESS_FAILED) {
    // What it said is the likeliest reason.
    uint64_t next = 0;
    bool exited = false;
    auto output = ProcessOutput(connection, request.start().sandbox_id(),
                                process.process_id(), 0, 4096, &next, &exited);
    result.error = true;
    result.text = absl::StrCat(
        "service ", process.tag(), " (", process.process_id(),
        ") is not ready: ", process.readiness_error(),
        output.ok() && !output->empty()
            ? absl::StrCat("\n--- its output ---\n", PlainText(*output))
            : "");
    return result;
  }
  result.text = absl::StrCat(
      "started service ", process.tag(), " (", process.process_id(), ")",
      process.readiness() == v1::READINESS_READY ? ", ready" : "");
  return result;
}

absl::StatusOr<ToolResult> ServiceList(Connection& connection,
                                       const Json& arguments) {
  v1::ListProcessesRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  ASSIGN_OR_RETURN(
      v1::ListProcessesResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                &v1::Exec::Stub::ListProcesses, request));
  ToolResult result;
  Json list = Json::array();
  std::vector<std::string> lines;
  for (const auto& process : response.processes()) {
    if (process.pty()) continue;  // shells
    list.push_back(ServiceJson(process));
    lines.push_back(ServiceLine(process));
  }
  result.structured = {{"services", std::move(list)}};
  result.text = lines.empty() ? "no services" : absl::StrJoin(lines, "\n");
  return result;
}

absl::StatusOr<ToolResult> ServiceStatus(Connection& connection,
                                         const Json& arguments) {
  v1::GetProcessRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_process_id(Text(arguments, "name"));
  ASSIGN_OR_RETURN(
      v1::Process process,
      UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                &v1::Exec::Stub::GetProcess, request));
  ToolResult result;
  result.structured = ServiceJson(process);
  result.text = ServiceLine(process);
  if (!process.readiness_error().empty()) {
    absl::StrAppend(&result.text, "\n", process.readiness_error());
  }
  return result;
}

absl::StatusOr<ToolResult> ServiceLogs(Connection& connection,
                                       const Json& arguments) {
  uint64_t next = 0;
  bool exited = false;
  ASSIGN_OR_RETURN(
      std::string output,
      ProcessOutput(connection, Text(arguments, "sandbox_id"),
                    Text(arguments, "name"),
                    static_cast<uint64_t>(Number(arguments, "cursor", 0)),
                    static_cast<uint64_t>(
                        Number(arguments, "max_bytes", kDefaultReadBytes)),
                    &next, &exited));
  ToolResult result;
  output = PlainText(output);
  result.structured = {
      {"output", output}, {"next_cursor", next}, {"exited", exited}};
  result.text = absl::StrCat(output, "\n[next cursor ", next,
                             exited ? "; the service has exited" : "", "]");
  return result;
}

absl::StatusOr<ToolResult> ServiceStop(Connection& connection,
                                       const Json& arguments) {
  v1::SignalProcessRequest request;
  request.set_sandbox_id(Text(arguments, "sandbox_id"));
  request.set_process_id(Text(arguments, "name"));
  request.set_signal(SIGTERM);
  ASSIGN_OR_RETURN(
      v1::Process process,
      UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                &v1::Exec::Stub::SignalProcess, request));
  // TERM, up to 5 s to end, then KILL.
  v1::GetProcessRequest get;
  get.set_sandbox_id(request.sandbox_id());
  get.set_process_id(request.process_id());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (process.running() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    ASSIGN_OR_RETURN(process, UnaryCall(connection, connection.UnaryContext(),
                                        connection.exec(),
                                        &v1::Exec::Stub::GetProcess, get));
  }
  bool killed = false;
  if (process.running()) {
    request.set_signal(SIGKILL);
    ASSIGN_OR_RETURN(
        process,
        UnaryCall(connection, connection.UnaryContext(), connection.exec(),
                  &v1::Exec::Stub::SignalProcess, request));
    killed = true;
  }
  ToolResult result;
  result.structured = ServiceJson(process);
  result.text = absl::StrCat("stopped ", request.process_id(),
                             killed ? " (killed: it ignored SIGTERM)" : "");
  return result;
}

}  // namespace

std::optional<Profile> ProfileByName(const std::string& name) {
  if (name == "run") return Profile::kRun;
  if (name == "workspace") return Profile::kWorkspace;
  if (name == "full") return Profile::kFull;
  return std::nullopt;
}

std::vector<Tool> AllTools() {
  std::vector<Tool> tools;
  auto add = [&](Tool tool) { tools.push_back(std::move(tool)); };
  const Json id = SandboxId();

  Json run = CommandProperties();
  const Json create = CreateProperties(false);
  for (const auto& [key, value] : create.items()) run[key] = value;
  add({"sandbox_run", "Run a command in a fresh sandbox",
       "Runs one command in a new, isolated sandbox (no network) and returns "
       "its exit code, stdout and stderr; the sandbox is deleted afterwards, "
       "so nothing persists. Use a workspace for work that spans several "
       "commands.",
       Object(run), Profile::kRun, false, false, false, SandboxRun});

  add({"workspace_create", "Create a workspace",
       "Creates a persistent, isolated sandbox whose /workspace keeps its "
       "files between commands, optionally seeded from a directory or tar "
       "archive on this machine. Returns its id, which the other workspace "
       "tools take. Its starting content is the baseline that "
       "workspace_diff and workspace_reset refer to.",
       Object(CreateProperties(true)), Profile::kWorkspace, false, false, false,
       WorkspaceCreate});
  add({"workspace_list", "List workspaces",
       "Lists your sandboxes with their state, runtime, image and expiry.",
       Object({{"labels", StringMap("Only those with all of these labels")}}),
       Profile::kWorkspace, true, false, true, WorkspaceList});
  add({"workspace_status", "Show a workspace",
       "Shows one sandbox: state, runtime, image, limits, labels, expiry.",
       Object({{"sandbox_id", id}}, {"sandbox_id"}), Profile::kWorkspace, true,
       false, true, WorkspaceStatus});
  Json exec = CommandProperties();
  exec["sandbox_id"] = id;
  add({"workspace_exec", "Run a command in a workspace",
       "Runs a command in the workspace (in /workspace unless cwd says "
       "otherwise) and returns its exit code, stdout and stderr. A non-zero "
       "exit code is the command's result, not a tool error.",
       Object(exec, {"sandbox_id"}), Profile::kWorkspace, false, false, false,
       WorkspaceExec});
  add({"workspace_delete", "Delete a workspace",
       "Deletes the sandbox and everything in it, snapshots included.",
       Object({{"sandbox_id", id}}, {"sandbox_id"}), Profile::kWorkspace, false,
       true, true, WorkspaceDelete});
  add({"workspace_sync", "Push files into a workspace",
       "Copies a directory or tar archive of this machine (an absolute path) "
       "into the workspace, at destination (default /workspace); with "
       "delete_missing, what the source does not have is removed there.",
       Object({{"sandbox_id", id},
               {"source", String("A directory or tar archive on this "
                                 "machine (absolute path)")},
               {"destination", String("Where in the workspace (default "
                                      "/workspace)")},
               {"delete_missing",
                Boolean("Remove what the source does not have")}},
              {"sandbox_id", "source"}),
       Profile::kWorkspace, false, true, true, WorkspaceSync});
  add({"workspace_export", "Export files from a workspace",
       "Copies a file or directory of the workspace into a directory of "
       "this machine (an absolute path, created if missing). An entry that "
       "exists there is refused unless overwrite.",
       Object({{"sandbox_id", id},
               {"path", String("What to export (default /workspace)")},
               {"destination", String("A directory on this machine "
                                      "(absolute path)")},
               {"overwrite", Boolean("Replace entries that exist there")}},
              {"sandbox_id", "destination"}),
       Profile::kWorkspace, false, false, false, WorkspaceExport});
  add({"file_read", "Read a file",
       "Reads a file of the workspace (at most max_bytes from offset). Text "
       "comes back as it is, binary content as base64.",
       Object({{"sandbox_id", id},
               {"path", String("Absolute, or relative to /workspace")},
               {"offset",
                Integer("Where to start, in bytes", 0, int64_t{1} << 50)},
               {"max_bytes",
                Integer("At most this many bytes", 1, kMaxReadBytes)}},
              {"sandbox_id", "path"}),
       Profile::kWorkspace, true, false, true, FileRead});
  add({"file_write", "Write a file",
       "Writes (creates or replaces) a file of the workspace with the "
       "content given, creating missing parent directories.",
       Object(
           {{"sandbox_id", id},
            {"path", String("Absolute, or relative to /workspace")},
            {"content", String("The file's whole new content")},
            {"encoding",
             {{"type", "string"},
              {"enum", {"utf-8", "base64"}},
              {"description", "How content is given (default utf-8)"}}},
            {"mode", Integer("Permission bits, e.g. 493 for 0755", 0, 07777)},
            {"create_parents",
             Boolean("Create missing parent directories (default true)")}},
           {"sandbox_id", "path", "content"}),
       Profile::kWorkspace, false, true, true, FileWrite});
  add({"file_list", "List files",
       "Lists a directory of the workspace (default /workspace), optionally "
       "recursively.",
       Object(
           {{"sandbox_id", id},
            {"path", String("Directory (default /workspace)")},
            {"recursive", Boolean("List subdirectories too")},
            {"max_entries", Integer("At most this many entries", 1, 100000)}},
           {"sandbox_id"}),
       Profile::kWorkspace, true, false, true, FileList});
  add({"workspace_diff", "Diff a workspace",
       "What changed in /workspace since its baseline (or a snapshot): a "
       "summary and a unified patch.",
       Object({{"sandbox_id", id},
               {"snapshot", String("Compare with this snapshot instead of "
                                   "the baseline")}},
              {"sandbox_id"}),
       Profile::kWorkspace, true, false, true, WorkspaceDiff});
  add({"workspace_apply_patch", "Apply a patch",
       "Applies a unified diff (git's format or diff -u's; paths relative to "
       "/workspace) all or nothing: if any hunk does not apply, no file "
       "changes and the error names the hunk and the line that differs.",
       Object({{"sandbox_id", id},
               {"patch", String("The unified diff")},
               {"check", Boolean("Only check that it applies; change "
                                 "nothing")}},
              {"sandbox_id", "patch"}),
       Profile::kWorkspace, false, true, false, ApplyPatch});
  add({"snapshot_create", "Snapshot a workspace",
       "Saves /workspace as a named snapshot, to diff against or reset to "
       "later.",
       Object({{"sandbox_id", id}, {"name", String("The snapshot's name")}},
              {"sandbox_id", "name"}),
       Profile::kWorkspace, false, false, false, SnapshotCreate});
  add({"snapshot_list", "List snapshots", "Lists the workspace's snapshots.",
       Object({{"sandbox_id", id}}, {"sandbox_id"}), Profile::kWorkspace, true,
       false, true, SnapshotList});
  add({"snapshot_delete", "Delete a snapshot", "Deletes one snapshot.",
       Object({{"sandbox_id", id}, {"name", String("The snapshot's name")}},
              {"sandbox_id", "name"}),
       Profile::kWorkspace, false, true, true, SnapshotDelete});
  add({"workspace_reset", "Reset a workspace",
       "Puts /workspace back to its baseline, or to a snapshot: every change "
       "since is lost.",
       Object({{"sandbox_id", id},
               {"snapshot", String("Reset to this snapshot instead of the "
                                   "baseline")}},
              {"sandbox_id"}),
       Profile::kWorkspace, false, true, true, WorkspaceReset});
  add({"workspace_fork", "Fork a workspace",
       "Creates a new workspace whose files are a copy of this one's (or of "
       "one of its snapshots).",
       Object({{"sandbox_id", id},
               {"snapshot", String("Copy this snapshot instead of the "
                                   "current files")}},
              {"sandbox_id"}),
       Profile::kWorkspace, false, false, false, WorkspaceFork});
  add({"command_log", "Show the command log",
       "The commands run in the workspace, in order, with exit codes.",
       Object({{"sandbox_id", id},
               {"after_sequence",
                Integer("Only commands after this sequence number", 0,
                        int64_t{1} << 62)}},
              {"sandbox_id"}),
       Profile::kWorkspace, true, false, true, CommandLog});

  const Json shell_id = String("The shell's id (from shell_open)");
  add({"shell_open", "Open a shell",
       "Starts an interactive shell (or another program) on a terminal in "
       "the workspace; it keeps running between calls. Write to it with "
       "shell_write and read its output with shell_read.",
       Object({{"sandbox_id", id},
               {"argv",
                {{"type", "array"},
                 {"items", {{"type", "string"}}},
                 {"description",
                  "Program and arguments (default: a login "
                  "shell)"}}},
               {"cwd", String("Working directory (default /workspace)")},
               {"env", StringMap("Extra environment variables")},
               {"rows", Integer("Terminal rows (default 40)", 1, 1000)},
               {"columns", Integer("Terminal columns (default 120)", 1, 1000)}},
              {"sandbox_id"}),
       Profile::kFull, false, false, false, ShellOpen});
  add({"shell_write", "Type into a shell",
       "Sends input to the shell, followed by Enter unless newline is "
       "false.",
       Object({{"sandbox_id", id},
               {"shell_id", shell_id},
               {"input", String("What to type")},
               {"newline", Boolean("Press Enter after it (default true)")}},
              {"sandbox_id", "shell_id", "input"}),
       Profile::kFull, false, false, false, ShellWrite});
  add({"shell_read", "Read a shell's output",
       "Reads the shell's output from cursor (0: from the start; pass the "
       "next_cursor of the previous read to get only what is new). By "
       "default the text is plain: escape sequences removed, backspaces "
       "and carriage returns applied. With wait_until_quiet_ms it waits "
       "until the shell has been quiet that long (for a command to finish).",
       Object(
           {{"sandbox_id", id},
            {"shell_id", shell_id},
            {"cursor", Integer("Where to read from (next_cursor of the "
                               "last read)",
                               0, int64_t{1} << 62)},
            {"max_bytes", Integer("At most this many bytes", 1, kMaxReadBytes)},
            {"plain", Boolean("Plain text (default true) or the raw "
                              "terminal bytes")},
            {"wait_until_quiet_ms",
             Integer("Wait until no output came for this long", 0, 60000)},
            {"timeout_seconds",
             Integer("Give up waiting after this long (default 30)", 1, 300)}},
           {"sandbox_id", "shell_id"}),
       Profile::kFull, true, false, true, ShellRead});
  add({"shell_signal", "Signal a shell",
       "Sends a signal to the shell's foreground process group (INT is "
       "Ctrl-C).",
       Object({{"sandbox_id", id},
               {"shell_id", shell_id},
               {"signal",
                {{"type", "string"},
                 {"enum",
                  {"INT", "QUIT", "KILL", "TERM", "HUP", "TSTP", "CONT", "USR1",
                   "USR2"}},
                 {"description", "The signal (default INT)"}}}},
              {"sandbox_id", "shell_id"}),
       Profile::kFull, false, false, false, ShellSignal});
  add({"shell_close", "Close a shell",
       "Ends the shell and everything it started.",
       Object({{"sandbox_id", id}, {"shell_id", shell_id}},
              {"sandbox_id", "shell_id"}),
       Profile::kFull, false, true, true, ShellClose});
  Json service = CommandProperties();
  service.erase("stdin");
  service.erase("timeout_seconds");
  service.erase("max_output_bytes");
  service["sandbox_id"] = id;
  service["name"] =
      String("The service's name: 1 to 64 characters of [A-Za-z0-9._-]");
  service["ready_port"] = Integer(
      "Ready once something listens on this TCP port inside the sandbox", 1,
      65535);
  service["ready_path"] = String("Ready once this path exists");
  service["ready_url"] = String(
      "Ready once an HTTP GET of this http:// URL inside the sandbox "
      "succeeds (needs curl or wget in the image)");
  service["ready_command"] = String("Ready once this shell command exits 0");
  service["ready_timeout_seconds"] =
      Integer("How long to wait for it to be ready (default 60)", 1, 3600);
  const Json name = String("The service's name (or process id)");
  add({"service_start", "Start a service",
       "Starts a named background process (a server, a watcher) that keeps "
       "running between calls and, with one ready_* check, answers only "
       "once it is ready; if it does not become ready, the result is an "
       "error with the reason and its first output.",
       Object(service, {"sandbox_id", "name"}), Profile::kFull, false, false,
       false, ServiceStart});
  add({"service_list", "List services",
       "Lists the workspace's background processes with their state and "
       "readiness.",
       Object({{"sandbox_id", id}}, {"sandbox_id"}), Profile::kFull, true,
       false, true, ServiceList});
  add({"service_status", "Show a service", "One service's state and readiness.",
       Object({{"sandbox_id", id}, {"name", name}}, {"sandbox_id", "name"}),
       Profile::kFull, true, false, true, ServiceStatus});
  add({"service_logs", "Read a service's output",
       "A service's output (stdout and stderr in order) from cursor (0: the "
       "oldest kept; next_cursor of the last read: only what is new), as "
       "plain text.",
       Object({{"sandbox_id", id},
               {"name", name},
               {"cursor", Integer("Where to read from", 0, int64_t{1} << 62)},
               {"max_bytes",
                Integer("At most this many bytes", 1, kMaxReadBytes)}},
              {"sandbox_id", "name"}),
       Profile::kFull, true, false, true, ServiceLogs});
  add({"service_stop", "Stop a service",
       "Stops a service: SIGTERM, then SIGKILL after 5 s. Its output stays "
       "readable.",
       Object({{"sandbox_id", id}, {"name", name}}, {"sandbox_id", "name"}),
       Profile::kFull, false, true, true, ServiceStop});
  add({"shell_list", "List shells", "Lists the workspace's shells.",
       Object({{"sandbox_id", id}}, {"sandbox_id"}), Profile::kFull, true,
       false, true, ShellList});
  return tools;
}

absl::Status CheckArguments(const Json& schema, const Json& arguments) {
  if (!arguments.is_object()) {
    return absl::InvalidArgumentError("arguments must be an object");
  }
  const Json& properties = schema["properties"];
  for (const auto& name : schema.value("required", Json::array())) {
    if (!arguments.contains(name.get<std::string>())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "missing required argument '", name.get<std::string>(), "'"));
    }
  }
  for (const auto& [name, value] : arguments.items()) {
    auto property = properties.find(name);
    if (property == properties.end()) {
      std::vector<std::string> known;
      for (const auto& [k, v] : properties.items()) known.push_back(k);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown argument '", name.substr(0, 64),
                       "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
    const std::string type = (*property)["type"].get<std::string>();
    auto wrong = [&](const std::string& expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("argument '", name, "' must be ", expected, ", not ",
                       value.type_name()));
    };
    if (type == "string") {
      if (!value.is_string()) return wrong("a string");
      if (property->contains("enum")) {
        const Json& choices = (*property)["enum"];
        if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "argument '", name, "' must be one of ", choices.dump()));
        }
      }
    } else if (type == "integer") {
      if (!value.is_number_integer()) return wrong("an integer");
      const int64_t n = value.get<int64_t>();
      if ((value.is_number_unsigned() &&
           value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) ||
          n < (*property)["minimum"].get<int64_t>() ||
          n > (*property)["maximum"].get<int64_t>()) {
        return absl::InvalidArgumentError(
            absl::StrCat("argument '", name, "' must be from ",
                         (*property)["minimum"].dump(), " to ",
                         (*property)["maximum"].dump()));
      }
    } else if (type == "boolean") {
      if (!value.is_boolean()) return wrong("true or false");
    } else if (type == "array") {
      if (!value.is_array()) return wrong("an array of strings");
      for (const auto& item : value) {
        if (!item.is_string()) return wrong("an array of strings");
      }
    } else if (type == "object") {
      if (!value.is_object()) return wrong("an object of strings");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) return wrong("an object of strings");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace corral::cli::mcp
