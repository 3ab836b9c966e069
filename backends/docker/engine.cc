#include "backends/docker/engine.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "corral/status_macros.h"

namespace corral::docker {
namespace {

using nlohmann::json;

absl::StatusOr<json> ParseJson(absl::string_view body, absl::string_view what) {
  json value = json::parse(body.begin(), body.end(), nullptr,
                           /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InternalError(
        absl::StrCat("engine API: ", what, ": the answer is not JSON"));
  }
  return value;
}

// The string at `key` of an object, or "" when absent or not a string.
std::string StringAt(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

std::map<std::string, std::string> StringMap(const json& object) {
  std::map<std::string, std::string> out;
  if (!object.is_object()) return out;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (it.value().is_string()) out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

// A path segment for an id or name: only what engines accept in both.
absl::Status CheckRef(absl::string_view ref) {
  if (ref.empty() || ref.size() > 256) {
    return absl::InvalidArgumentError("engine API: empty or long reference");
  }
  for (char c : ref) {
    bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
              c == '_' || c == '.' || c == ':' || c == '/';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("engine API: bad reference '", ref, "'"));
    }
  }
  return absl::OkStatus();
}

// Objects with label `key` = `value`, or with label `key` at all when
// `value` is empty.
std::string LabelFilter(absl::string_view key, absl::string_view value) {
  json filters = {
      {"label", json::array({value.empty() ? std::string(key)
                                           : absl::StrCat(key, "=", value)})}};
  return UrlEncode(filters.dump());
}

bool LabelMatches(const std::map<std::string, std::string>& labels,
                  absl::string_view key, absl::string_view value) {
  auto label = labels.find(std::string(key));
  return label != labels.end() && (value.empty() || label->second == value);
}

}  // namespace

std::string EngineMessage(const HttpResponse& response) {
  json value = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  std::string message = StringAt(value, "message");
  if (message.empty()) {
    message = std::string(absl::StripAsciiWhitespace(
        absl::string_view(response.body).substr(0, 300)));
  }
  return message;
}

absl::Status HttpError(absl::string_view what, const HttpResponse& response) {
  std::string message =
      absl::StrCat(what, ": engine answered HTTP ", response.status, ": ",
                   EngineMessage(response));
  if (response.status == 404) return absl::NotFoundError(message);
  if (response.status == 409) return absl::AlreadyExistsError(message);
  if (response.status >= 400 && response.status < 500) {
    return absl::FailedPreconditionError(message);
  }
  return absl::UnavailableError(message);
}

absl::StatusOr<EngineInfo> ParseEngineInfo(absl::string_view version_body,
                                           absl::string_view info_body) {
  ASSIGN_OR_RETURN(json version, ParseJson(version_body, "/version"));
  ASSIGN_OR_RETURN(json info, ParseJson(info_body, "/info"));
  if (!version.is_object() || !info.is_object()) {
    return absl::InternalError("engine API: /version or /info is no object");
  }
  EngineInfo result;
  result.version = StringAt(version, "Version");
  result.api_version = StringAt(version, "ApiVersion");
  // Podman's compat /version names its own component "Podman Engine".
  auto components = version.find("Components");
  if (components != version.end() && components->is_array()) {
    for (const json& component : *components) {
      if (absl::StrContains(StringAt(component, "Name"), "Podman")) {
        result.podman = true;
      }
    }
  }
  result.cgroup_driver = StringAt(info, "CgroupDriver");
  result.cgroup_version = StringAt(info, "CgroupVersion");
  result.storage_driver = StringAt(info, "Driver");
  auto options = info.find("SecurityOptions");
  if (options != info.end() && options->is_array()) {
    for (const json& option : *options) {
      if (!option.is_string()) continue;
      std::string text = option.get<std::string>();
      for (absl::string_view part : absl::StrSplit(text, ',')) {
        if (part == "name=seccomp") result.seccomp = true;
        if (part == "name=userns") result.userns = true;
        if (part == "name=rootless") result.rootless = true;
      }
      result.security_options.push_back(std::move(text));
    }
  }
  if (result.version.empty()) {
    return absl::InternalError("engine API: /version has no Version");
  }
  return result;
}

absl::StatusOr<ContainerState> ParseContainerInspect(absl::string_view body) {
  ASSIGN_OR_RETURN(json value, ParseJson(body, "container inspect"));
  if (!value.is_object()) {
    return absl::InternalError("engine API: container inspect is no object");
  }
  ContainerState state;
  state.id = StringAt(value, "Id");
  auto found = value.find("State");
  if (found != value.end() && found->is_object()) {
    const json& s = *found;
    state.status = StringAt(s, "Status");
    state.error = StringAt(s, "Error");
    if (auto it = s.find("Running"); it != s.end() && it->is_boolean()) {
      state.running = it->get<bool>();
    }
    if (auto it = s.find("OOMKilled"); it != s.end() && it->is_boolean()) {
      state.oom_killed = it->get<bool>();
    }
    if (auto it = s.find("Pid"); it != s.end() && it->is_number_integer()) {
      state.pid = it->get<int64_t>();
    }
    if (auto it = s.find("ExitCode");
        it != s.end() && it->is_number_integer()) {
      state.exit_code = it->get<int64_t>();
    }
  }
  auto config = value.find("Config");
  if (config != value.end() && config->is_object()) {
    auto labels = config->find("Labels");
    if (labels != config->end()) state.labels = StringMap(*labels);
  }
  if (state.id.empty()) {
    return absl::InternalError("engine API: container inspect has no Id");
  }
  return state;
}

Engine::Engine(std::string socket_path, HttpLimits limits)
    : http_(std::move(socket_path), limits) {}

absl::Status Engine::Ping() const {
  HttpLimits limits = http_.limits();
  limits.max_body_bytes = 1024;
  ASSIGN_OR_RETURN(HttpResponse response,
                   http_.Request("GET", "/_ping", "", "", limits));
  if (response.status != 200) return HttpError("GET /_ping", response);
  if (absl::StripAsciiWhitespace(response.body) != "OK") {
    return absl::InternalError("engine API: /_ping did not answer OK");
  }
  return absl::OkStatus();
}

absl::StatusOr<EngineInfo> Engine::Info() const {
  ASSIGN_OR_RETURN(HttpResponse version,
                   http_.Request("GET", absl::StrCat(kApiPrefix, "/version")));
  if (version.status != 200) return HttpError("GET /version", version);
  ASSIGN_OR_RETURN(HttpResponse info,
                   http_.Request("GET", absl::StrCat(kApiPrefix, "/info")));
  if (info.status != 200) return HttpError("GET /info", info);
  return ParseEngineInfo(version.body, info.body);
}

absl::StatusOr<std::string> Engine::CreateContainer(
    absl::string_view name, const nlohmann::json& body) const {
  RETURN_IF_ERROR(CheckRef(name));
  ASSIGN_OR_RETURN(
      HttpResponse response,
      http_.Request(
          "POST",
          absl::StrCat(kApiPrefix, "/containers/create?name=", UrlEncode(name)),
          body.dump()));
  if (response.status != 201) {
    return HttpError("create container", response);
  }
  ASSIGN_OR_RETURN(json value, ParseJson(response.body, "container create"));
  std::string id = StringAt(value, "Id");
  if (id.empty() || !CheckRef(id).ok()) {
    return absl::InternalError("engine API: container create gave no Id");
  }
  return id;
}

absl::Status Engine::StartContainer(absl::string_view id) const {
  RETURN_IF_ERROR(CheckRef(id));
  ASSIGN_OR_RETURN(
      HttpResponse response,
      http_.Request("POST",
                    absl::StrCat(kApiPrefix, "/containers/", id, "/start")));
  // 304: already started.
  if (response.status != 204 && response.status != 304) {
    return HttpError("start container", response);
  }
  return absl::OkStatus();
}

absl::StatusOr<ContainerState> Engine::InspectContainer(
    absl::string_view id_or_name) const {
  RETURN_IF_ERROR(CheckRef(id_or_name));
  ASSIGN_OR_RETURN(HttpResponse response,
                   http_.Request("GET", absl::StrCat(kApiPrefix, "/containers/",
                                                     id_or_name, "/json")));
  if (response.status != 200) return HttpError("inspect container", response);
  return ParseContainerInspect(response.body);
}

absl::Status Engine::RemoveContainer(absl::string_view id_or_name) const {
  RETURN_IF_ERROR(CheckRef(id_or_name));
  HttpLimits limits = http_.limits();
  limits.timeout = absl::Seconds(60);
  ASSIGN_OR_RETURN(HttpResponse response,
                   http_.Request("DELETE",
                                 absl::StrCat(kApiPrefix, "/containers/",
                                              id_or_name, "?force=true&v=true"),
                                 "", "", limits));
  if (response.status == 204 || response.status == 200 ||
      response.status == 404) {
    return absl::OkStatus();
  }
  // "removal of container ... is already in progress": someone else
  // finishes it.
  if (response.status == 409 &&
      absl::StrContains(EngineMessage(response), "already in progress")) {
    return absl::OkStatus();
  }
  return HttpError("remove container", response);
}

absl::StatusOr<std::vector<ContainerSummary>> Engine::ListContainers(
    absl::string_view key, absl::string_view value) const {
  ASSIGN_OR_RETURN(
      HttpResponse response,
      http_.Request(
          "GET", absl::StrCat(kApiPrefix, "/containers/json?all=true&filters=",
                              LabelFilter(key, value))));
  if (response.status != 200) return HttpError("list containers", response);
  ASSIGN_OR_RETURN(json list, ParseJson(response.body, "container list"));
  if (!list.is_array()) {
    return absl::InternalError("engine API: container list is no array");
  }
  std::vector<ContainerSummary> result;
  for (const json& entry : list) {
    ContainerSummary summary;
    summary.id = StringAt(entry, "Id");
    if (entry.is_object()) {
      if (auto it = entry.find("Labels"); it != entry.end()) {
        summary.labels = StringMap(*it);
      }
    }
    // The filter is the engine's; check it ourselves too.
    if (summary.id.empty() || !CheckRef(summary.id).ok() ||
        !LabelMatches(summary.labels, key, value)) {
      continue;
    }
    result.push_back(std::move(summary));
  }
  return result;
}

absl::StatusOr<std::string> Engine::Logs(absl::string_view id,
                                         int lines) const {
  RETURN_IF_ERROR(CheckRef(id));
  HttpLimits limits = http_.limits();
  limits.max_body_bytes = 256 * 1024;
  limits.timeout = absl::Seconds(5);
  ASSIGN_OR_RETURN(
      HttpResponse response,
      http_.Request("GET",
                    absl::StrCat(kApiPrefix, "/containers/", id,
                                 "/logs?stdout=true&stderr=true&tail=", lines),
                    "", "", limits));
  if (response.status != 200) return HttpError("container logs", response);
  return DemultiplexLogs(response.body);
}

absl::StatusOr<bool> Engine::ImageExists(absl::string_view ref) const {
  RETURN_IF_ERROR(CheckRef(ref));
  ASSIGN_OR_RETURN(
      HttpResponse response,
      http_.Request("GET", absl::StrCat(kApiPrefix, "/images/", ref, "/json")));
  if (response.status == 200) return true;
  if (response.status == 404) return false;
  return HttpError("inspect image", response);
}

absl::Status Engine::ImportImage(absl::string_view repo, absl::string_view tag,
                                 const std::vector<std::string>& changes,
                                 const BodyProducer& producer) const {
  RETURN_IF_ERROR(CheckRef(repo));
  RETURN_IF_ERROR(CheckRef(tag));
  // The tag goes into repo: Podman's compat API ignores "tag" on import
  // (and tags "latest"); Docker takes either.
  std::string target =
      absl::StrCat(kApiPrefix, "/images/create?fromSrc=-&repo=",
                   UrlEncode(absl::StrCat(repo, ":", tag)));
  for (const std::string& change : changes) {
    absl::StrAppend(&target, "&changes=", UrlEncode(change));
  }
  HttpLimits limits = http_.limits();
  limits.timeout = absl::Minutes(10);
  limits.max_body_bytes = 4u << 20;
  ASSIGN_OR_RETURN(HttpResponse response,
                   http_.RequestStreaming("POST", target, "application/x-tar",
                                          producer, limits));
  if (response.status != 200) return HttpError("import image", response);
  // A stream of JSON progress objects; a failure arrives as one with
  // "error" even though the status was 200.
  for (absl::string_view line : absl::StrSplit(response.body, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    json message = json::parse(line.begin(), line.end(), nullptr, false);
    if (message.is_discarded()) continue;
    std::string error = StringAt(message, "error");
    if (!error.empty()) {
      return absl::UnavailableError(
          absl::StrCat("import image ", repo, ":", tag, ": ", error));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Engine::ListImageRefs(
    absl::string_view key, absl::string_view value) const {
  ASSIGN_OR_RETURN(
      HttpResponse response,
      http_.Request("GET", absl::StrCat(kApiPrefix, "/images/json?filters=",
                                        LabelFilter(key, value))));
  if (response.status != 200) return HttpError("list images", response);
  ASSIGN_OR_RETURN(json list, ParseJson(response.body, "image list"));
  if (!list.is_array()) {
    return absl::InternalError("engine API: image list is no array");
  }
  std::vector<std::string> refs;
  for (const json& entry : list) {
    if (!entry.is_object()) continue;
    auto labels = entry.find("Labels");
    if (labels == entry.end()) continue;
    if (!LabelMatches(StringMap(*labels), key, value)) continue;
    auto tags = entry.find("RepoTags");
    if (tags == entry.end() || !tags->is_array()) continue;
    for (const json& tag : *tags) {
      if (tag.is_string()) refs.push_back(tag.get<std::string>());
    }
  }
  return refs;
}

absl::Status Engine::RemoveImage(absl::string_view ref) const {
  RETURN_IF_ERROR(CheckRef(ref));
  ASSIGN_OR_RETURN(
      HttpResponse response,
      http_.Request("DELETE", absl::StrCat(kApiPrefix, "/images/", ref)));
  if (response.status == 200 || response.status == 404) {
    return absl::OkStatus();
  }
  return HttpError("remove image", response);
}

}  // namespace corral::docker
