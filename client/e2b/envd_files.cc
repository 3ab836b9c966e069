// envd's filesystem.Filesystem service and its /files endpoint, over
// Corral's Files service (every operation carried out by the sandbox's
// agent).
#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/e2b/gateway.h"
#include "corral/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace corral::e2b {
namespace {

namespace v1 = corral::v1;
using google::protobuf::util::TimeUtil;

constexpr size_t kWriteChunk = 4 << 20;
constexpr int kMaxSymlinkHops = 40;

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

const char* TypeName(v1::FileType type) {
  switch (type) {
    case v1::FILE_TYPE_REGULAR:
      return "FILE_TYPE_FILE";
    case v1::FILE_TYPE_DIRECTORY:
      return "FILE_TYPE_DIRECTORY";
    case v1::FILE_TYPE_SYMLINK:
      return "FILE_TYPE_SYMLINK";
    default:
      return "FILE_TYPE_UNSPECIFIED";
  }
}

absl::StatusOr<std::string> PathField(const Json& body, const char* key) {
  if (!body.contains(key) || !body[key].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": expected a path"));
  }
  return body[key].get<std::string>();
}

// Files' NOT_FOUND becomes envd's message for it.
absl::Status NotFoundAs(absl::Status status, const std::string& message) {
  if (absl::IsNotFound(status)) return absl::NotFoundError(message);
  return status;
}

bool NoSpace(const absl::Status& status) {
  return absl::IsResourceExhausted(status) ||
         absl::StrContains(status.message(), "No space left on device");
}

}  // namespace

std::string PermissionString(v1::FileType type, uint32_t mode) {
  std::string out;
  out += type == v1::FILE_TYPE_DIRECTORY ? 'd'
         : type == v1::FILE_TYPE_SYMLINK ? 'L'
                                         : '-';
  const char* letters = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    out += (mode & (0400u >> i)) ? letters[i] : '-';
  }
  return out;
}

Json EntryJson(const v1::FileInfo& info, const std::string& path) {
  Json entry = {
      {"name", BaseName(path)},
      {"type", TypeName(info.type())},
      {"path", path},
      {"size", std::to_string(info.size())},
      {"mode", info.mode() & 0777},
      {"permissions", PermissionString(info.type(), info.mode())},
      {"owner", ""},
      {"group", ""},
  };
  if (info.has_modified_at()) {
    entry["modifiedTime"] = TimeUtil::ToString(info.modified_at());
  }
  if (info.type() == v1::FILE_TYPE_SYMLINK) {
    entry["symlinkTarget"] = info.link_target();
  }
  return entry;
}

absl::StatusOr<v1::FileInfo> Gateway::StatPath(const EnvdCall& call,
                                               const std::string& path) {
  v1::StatFileRequest stat;
  stat.set_sandbox_id(call.sandbox_id);
  stat.set_path(path);
  v1::FileInfo info;
  auto context = Context(call.timeout);
  grpc::Status s = files_->StatFile(context.get(), stat, &info);
  if (!s.ok()) return SandboxError(call.sandbox_id, s);
  return info;
}

absl::StatusOr<v1::FileInfo> Gateway::StatFollowing(const EnvdCall& call,
                                                    std::string& path) {
  const std::string asked = path;
  absl::StatusOr<v1::FileInfo> info = StatPath(call, path);
  for (int hop = 0; info.ok() && info->type() == v1::FILE_TYPE_SYMLINK; ++hop) {
    if (hop == kMaxSymlinkHops) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cyclic symlink or chain >", kMaxSymlinkHops, " links at ", asked));
    }
    const std::string target = info->link_target();
    path = absl::StartsWith(target, "/") ? target : Parent(path) + "/" + target;
    info = StatPath(call, path);
  }
  return info;
}

absl::StatusOr<Json> Gateway::Stat(const EnvdCall& call, const Json& body) {
  ASSIGN_OR_RETURN(const std::string raw, PathField(body, "path"));
  ASSIGN_OR_RETURN(const std::string path, ResolvePath(call, raw));
  auto info = StatPath(call, path);
  if (!info.ok()) {
    return NotFoundAs(info.status(), absl::StrCat("file not found: ", path));
  }
  return Json{{"entry", EntryJson(*info, path)}};
}

absl::StatusOr<Json> Gateway::ListDir(const EnvdCall& call, const Json& body) {
  ASSIGN_OR_RETURN(const std::string raw, PathField(body, "path"));
  ASSIGN_OR_RETURN(const std::string path, ResolvePath(call, raw));
  uint32_t depth = 1;
  if (body.contains("depth")) {
    if (!body["depth"].is_number_unsigned()) {
      return absl::InvalidArgumentError("depth: expected a whole number");
    }
    depth = std::max<uint32_t>(1, body["depth"].get<uint32_t>());
  }
  // envd follows symlinks to the listed directory (not beneath it).
  std::string dir = path;
  absl::StatusOr<v1::FileInfo> info = StatFollowing(call, dir);
  if (!info.ok()) {
    return NotFoundAs(info.status(),
                      absl::StrCat("directory not found: ", path));
  }
  if (info->type() != v1::FILE_TYPE_DIRECTORY) {
    return absl::InvalidArgumentError(
        absl::StrCat("path is not a directory: ", path));
  }
  v1::ListDirectoryRequest list;
  list.set_sandbox_id(call.sandbox_id);
  list.set_path(dir);
  list.set_recursive(depth > 1);
  v1::ListDirectoryResponse listed;
  auto context = Context(call.timeout);
  grpc::Status s = files_->ListDirectory(context.get(), list, &listed);
  if (!s.ok()) {
    return NotFoundAs(SandboxError(call.sandbox_id, s),
                      absl::StrCat("directory not found: ", path));
  }
  if (listed.truncated()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("more than ", listed.entries_size(), " entries under ",
                     path, ": list a smaller depth"));
  }
  Json entries = Json::array();
  const std::string base = path == "/" ? "" : path;
  for (const v1::FileInfo& entry : listed.entries()) {
    const std::string& relative = entry.path();
    const size_t levels = 1 + static_cast<size_t>(std::count(
                                  relative.begin(), relative.end(), '/'));
    if (levels > depth) continue;
    entries.push_back(EntryJson(entry, base + "/" + relative));
  }
  return Json{{"entries", entries}};
}

absl::StatusOr<Json> Gateway::MakeDir(const EnvdCall& call, const Json& body) {
  ASSIGN_OR_RETURN(const std::string raw, PathField(body, "path"));
  ASSIGN_OR_RETURN(const std::string path, ResolvePath(call, raw));
  auto existing = StatPath(call, path);
  if (existing.ok()) {
    if (existing->type() == v1::FILE_TYPE_DIRECTORY) {
      return absl::AlreadyExistsError(
          absl::StrCat("directory already exists: ", path));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("path already exists but it is not a directory: ", path));
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();
  v1::MakeDirectoryRequest make;
  make.set_sandbox_id(call.sandbox_id);
  make.set_path(path);
  make.set_parents(true);
  v1::FileInfo info;
  auto context = Context(call.timeout);
  grpc::Status s = files_->MakeDirectory(context.get(), make, &info);
  if (!s.ok()) return SandboxError(call.sandbox_id, s);
  return Json{{"entry",
               {{"name", BaseName(path)},
                {"type", "FILE_TYPE_DIRECTORY"},
                {"path", path}}}};
}

absl::StatusOr<Json> Gateway::Move(const EnvdCall& call, const Json& body) {
  ASSIGN_OR_RETURN(const std::string raw_from, PathField(body, "source"));
  ASSIGN_OR_RETURN(const std::string raw_to, PathField(body, "destination"));
  ASSIGN_OR_RETURN(const std::string from, ResolvePath(call, raw_from));
  ASSIGN_OR_RETURN(const std::string to, ResolvePath(call, raw_to));
  RETURN_IF_ERROR(NotFoundAs(StatPath(call, from).status(),
                             absl::StrCat("source file not found: ", from)));
  // The destination's parents are made, as envd makes them.
  if (!StatPath(call, Parent(to)).ok()) {
    v1::MakeDirectoryRequest make;
    make.set_sandbox_id(call.sandbox_id);
    make.set_path(Parent(to));
    make.set_parents(true);
    v1::FileInfo made;
    auto context = Context(call.timeout);
    grpc::Status s = files_->MakeDirectory(context.get(), make, &made);
    if (!s.ok() && s.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
      return SandboxError(call.sandbox_id, s);
    }
  }
  v1::MoveFileRequest move;
  move.set_sandbox_id(call.sandbox_id);
  move.set_from(from);
  move.set_to(to);
  v1::FileInfo info;
  auto context = Context(call.timeout);
  grpc::Status s = files_->MoveFile(context.get(), move, &info);
  if (!s.ok()) {
    return NotFoundAs(SandboxError(call.sandbox_id, s),
                      absl::StrCat("source file not found: ", from));
  }
  return Json{{"entry", EntryJson(info, to)}};
}

absl::StatusOr<Json> Gateway::Remove(const EnvdCall& call, const Json& body) {
  ASSIGN_OR_RETURN(const std::string raw, PathField(body, "path"));
  ASSIGN_OR_RETURN(const std::string path, ResolvePath(call, raw));
  v1::RemoveFileRequest remove;
  remove.set_sandbox_id(call.sandbox_id);
  remove.set_path(path);
  remove.set_recursive(true);
  v1::RemoveFileResponse removed;
  auto context = Context(call.timeout);
  grpc::Status s = files_->RemoveFile(context.get(), remove, &removed);
  if (!s.ok()) {
    absl::Status why = SandboxError(call.sandbox_id, s);
    // envd removes as os.RemoveAll does: what is not there is removed.
    if (!absl::IsNotFound(why)) return why;
  }
  return Json::object();
}

absl::Status Gateway::WatchDir(const EnvdCall& call, const Json& body,
                               const std::function<bool(const Json&)>& send) {
  ASSIGN_OR_RETURN(const std::string raw, PathField(body, "path"));
  ASSIGN_OR_RETURN(const std::string path, ResolvePath(call, raw));
  const bool include_entry = body.value("includeEntry", false);
  v1::WatchDirectoryRequest request;
  request.set_sandbox_id(call.sandbox_id);
  request.set_path(path);
  request.set_recursive(body.value("recursive", false));
  grpc::ClientContext context;
  const absl::Time deadline =
      call.timeout ? absl::Now() + *call.timeout : absl::InfiniteFuture();
  if (call.timeout) context.set_deadline(absl::ToChronoTime(deadline));
  auto reader = files_->WatchDirectory(&context, request);
  const auto stop = [&](absl::Status status) {
    context.TryCancel();
    reader->Finish();
    return status;
  };
  static const std::map<v1::FileEventKind, const char*> kTypes = {
      {v1::FILE_EVENT_KIND_CREATE, "EVENT_TYPE_CREATE"},
      {v1::FILE_EVENT_KIND_WRITE, "EVENT_TYPE_WRITE"},
      {v1::FILE_EVENT_KIND_REMOVE, "EVENT_TYPE_REMOVE"},
      {v1::FILE_EVENT_KIND_RENAME, "EVENT_TYPE_RENAME"},
      {v1::FILE_EVENT_KIND_CHMOD, "EVENT_TYPE_CHMOD"},
  };
  v1::WatchDirectoryResponse response;
  absl::Time last_sent = absl::Now();
  while (reader->Read(&response)) {
    if (response.started()) {
      if (!send({{"start", Json::object()}})) return stop(absl::OkStatus());
      last_sent = absl::Now();
    }
    for (const v1::FileEvent& event : response.events()) {
      auto type = kTypes.find(event.kind());
      if (type == kTypes.end()) continue;
      Json fs = {{"name", event.path()}, {"type", type->second}};
      // envd describes what was made, written or changed, when asked.
      if (include_entry && event.kind() != v1::FILE_EVENT_KIND_REMOVE &&
          event.kind() != v1::FILE_EVENT_KIND_RENAME) {
        const std::string full =
            path == "/" ? "/" + event.path() : path + "/" + event.path();
        auto info = StatPath(call, full);
        if (info.ok()) fs["entry"] = EntryJson(*info, full);
      }
      if (!send({{"filesystem", fs}})) return stop(absl::OkStatus());
      last_sent = absl::Now();
    }
    if (absl::Now() >= deadline) {
      return stop(absl::DeadlineExceededError(
          "the request's Connect-Timeout-Ms passed"));
    }
    if (absl::Now() - last_sent >= absl::Seconds(call.keepalive_seconds)) {
      if (!send({{"keepalive", Json::object()}})) return stop(absl::OkStatus());
      last_sent = absl::Now();
    }
  }
  grpc::Status s = reader->Finish();
  if (s.ok()) return absl::OkStatus();  // the directory itself went
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::DeadlineExceededError(
        "the request's Connect-Timeout-Ms passed");
  }
  absl::Status why = SandboxError(call.sandbox_id, s);
  if (absl::IsNotFound(why)) {
    return absl::NotFoundError(absl::StrCat("path ", path, " not found"));
  }
  if (absl::IsFailedPrecondition(why) &&
      absl::StrContains(why.message(), "Not a directory")) {
    return absl::InvalidArgumentError(
        absl::StrCat("path ", path, " not a directory"));
  }
  return why;
}

// ---- /files ----------------------------------------------------------------

void Gateway::Download(const httplib::Request& request,
                       httplib::Response& response) {
  auto call =
      OpenEnvd(request, response, request.get_param_value("username"), false);
  if (!call) return;
  auto path = ResolvePath(*call, request.get_param_value("path"));
  if (!path.ok())
    return ReplyError(response, 400, std::string(path.status().message()));
  // Reads follow symlinks, as envd's open does.
  std::string target = *path;
  auto info = StatFollowing(*call, target);
  if (!info.ok()) {
    if (absl::IsNotFound(info.status())) {
      return ReplyError(response, 404,
                        absl::StrCat("path '", *path, "' does not exist"));
    }
    if (absl::IsUnavailable(info.status())) {
      return ReplyError(response, 502, std::string(info.status().message()));
    }
    return ReplyError(response, HttpStatusOfStatus(info.status()),
                      std::string(info.status().message()));
  }
  if (info->type() == v1::FILE_TYPE_DIRECTORY) {
    return ReplyError(response, 400,
                      absl::StrCat("path '", *path, "' is a directory"));
  }
  if (info->type() != v1::FILE_TYPE_REGULAR) {
    return ReplyError(response, 400,
                      absl::StrCat("path '", *path, "' is not a regular file"));
  }
  response.status = 200;
  response.set_header(
      "Content-Disposition",
      absl::StrCat("inline; filename=\"", BaseName(*path), "\""));
  if (info->size() == 0) {
    // httplib never ends a response whose provider has nothing to give.
    response.set_content("", "application/octet-stream");
    return;
  }
  const std::string sandbox_id = call->sandbox_id;
  const std::string read_path = target;
  response.set_content_provider(
      info->size(), "application/octet-stream",
      [this, sandbox_id, read_path](size_t offset, size_t length,
                                    httplib::DataSink& sink) {
        v1::ReadFileRequest read;
        read.set_sandbox_id(sandbox_id);
        read.set_path(read_path);
        read.set_offset(offset);
        read.set_length(length);
        auto context = Context(absl::Minutes(30));
        auto reader = files_->ReadFile(context.get(), read);
        v1::FileChunk chunk;
        size_t sent = 0;
        while (sent < length && reader->Read(&chunk)) {
          const size_t take = std::min(chunk.data().size(), length - sent);
          if (!sink.write(chunk.data().data(), take)) return false;
          sent += take;
        }
        reader->Finish();
        // A file that shrank meanwhile: the connection is cut short rather
        // than padded.
        return sent == length;
      });
}

absl::StatusOr<v1::FileInfo> Gateway::WriteFile(const EnvdCall& call,
                                                const std::string& path,
                                                const std::string& data) {
  // The agent refuses to write over a directory (FAILED_PRECONDITION, a
  // 400 here, as envd's).
  v1::FileInfo info;
  auto context = Context(absl::Minutes(30));
  auto writer = files_->WriteFile(context.get(), &info);
  v1::WriteFileRequest header;
  header.mutable_header()->set_sandbox_id(call.sandbox_id);
  header.mutable_header()->set_path(path);
  header.mutable_header()->set_create_parents(true);
  bool ok = writer->Write(header);
  for (size_t at = 0; ok && at < data.size(); at += kWriteChunk) {
    v1::WriteFileRequest chunk;
    chunk.set_data(data.substr(at, kWriteChunk));
    ok = writer->Write(chunk);
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return SandboxError(call.sandbox_id, s);
  return info;
}

void Gateway::Upload(const httplib::Request& request,
                     httplib::Response& response,
                     const httplib::ContentReader& content) {
  auto call =
      OpenEnvd(request, response, request.get_param_value("username"), false);
  if (!call) return;
  const std::string query_path = request.get_param_value("path");
  const std::string type = MediaType(request);
  const bool multipart = request.is_multipart_form_data();
  if (!multipart && type != "application/octet-stream") {
    return ReplyError(
        response, 400,
        absl::StrCat("unsupported content type: ", type.substr(0, 64)));
  }
  // The body as it arrives, inflated when it is gzip: read up to the limit
  // and no further, so that neither a large upload nor a small compressed
  // one that inflates without end (a bomb) can take the gateway's memory.
  struct Part {
    std::string name, filename, content;
  };
  std::vector<Part> parts;
  uint64_t total = 0;
  bool too_large = false;
  const auto receive = [&](const char* data, size_t size) {
    total += size;
    if (total > config_.max_upload_bytes) {
      too_large = true;
      return false;
    }
    parts.back().content.append(data, size);
    return true;
  };
  bool read = false;
  if (multipart) {
    read = content(
        [&](const httplib::MultipartFormData& header) {
          parts.push_back({header.name, header.filename, ""});
          return true;
        },
        receive);
  } else {
    parts.push_back({"file", "", ""});
    read = content(receive);
  }
  if (too_large) {
    response.set_header("Connection", "close");
    return ReplyError(response, 413,
                      absl::StrCat("the upload is larger than the gateway's "
                                   "limit of ",
                                   config_.max_upload_bytes >> 20, " MiB"));
  }
  if (!read) return ReplyError(response, 400, "the upload could not be read");
  std::vector<std::pair<std::string, const std::string*>> uploads;
  for (const Part& part : parts) {
    if (multipart && part.name != "file") continue;
    const std::string& raw = query_path.empty() ? part.filename : query_path;
    if (raw.empty()) {
      return ReplyError(
          response, 400,
          multipart ? "a file part has no filename and no path was given"
                    : "path query parameter is required for raw body "
                      "upload");
    }
    uploads.emplace_back(raw, &part.content);
  }
  if (uploads.empty()) {
    return ReplyError(response, 400, "no part named \"file\" in the form");
  }
  std::set<std::string> seen;
  std::vector<std::string> paths;
  for (const auto& [raw, data] : uploads) {
    auto path = ResolvePath(*call, raw);
    if (!path.ok())
      return ReplyError(response, 400, std::string(path.status().message()));
    if (!seen.insert(*path).second) {
      return ReplyError(response, 400,
                        absl::StrCat("two files of the upload go to ", *path));
    }
    if (data->size() > config_.max_upload_bytes) {
      return ReplyError(response, 413,
                        absl::StrCat(*path,
                                     ": larger than the gateway's "
                                     "upload limit of ",
                                     config_.max_upload_bytes >> 20, " MiB"));
    }
    paths.push_back(*path);
  }
  Json written = Json::array();
  for (size_t i = 0; i < uploads.size(); ++i) {
    auto info = WriteFile(*call, paths[i], *uploads[i].second);
    if (!info.ok()) {
      const absl::Status& why = info.status();
      if (NoSpace(why)) {
        return ReplyError(
            response, 507,
            absl::StrCat("not enough disk space available: ", why.message()));
      }
      if (absl::IsUnavailable(why)) {
        return ReplyError(response, 502, std::string(why.message()));
      }
      return ReplyError(response, HttpStatusOfStatus(why),
                        std::string(why.message()));
    }
    written.push_back(
        {{"name", BaseName(paths[i])}, {"type", "file"}, {"path", paths[i]}});
  }
  ReplyJson(response, 200, written);
}

}  // namespace corral::e2b
