// The few Docker Engine API calls (v1.41, served by Docker 20.10+ and by
// Podman 4's compat API) that the docker runtime makes, over HttpClient.
// Answers are parsed with nlohmann-json; a body that is not the JSON
// expected is an error, never a crash.
#ifndef CORRAL_BACKENDS_DOCKER_ENGINE_H_
#define CORRAL_BACKENDS_DOCKER_ENGINE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "backends/docker/http_client.h"
#include "nlohmann/json.hpp"

namespace corral::docker {

// The API version every path is prefixed with.
inline constexpr char kApiPrefix[] = "/v1.41";

// What /version and /info say about the engine.
struct EngineInfo {
  bool podman = false;      // Podman's compat service
  std::string version;      // engine version ("20.10.24+dfsg1", "4.3.1")
  std::string api_version;  // the engine's newest API version
  std::string cgroup_driver;
  std::string cgroup_version;
  std::string storage_driver;
  std::vector<std::string> security_options;  // "name=seccomp,profile=..."
  bool seccomp = false;
  bool userns = false;
  bool rootless = false;
};

// Interprets the bodies of GET /version and GET /info.
[[nodiscard]] absl::StatusOr<EngineInfo> ParseEngineInfo(
    absl::string_view version_body, absl::string_view info_body);

// A container as GET /containers/<id>/json describes it (the parts used).
struct ContainerState {
  std::string id;
  bool running = false;
  std::string status;  // "running", "exited", "created", ...
  int64_t pid = 0;
  int64_t exit_code = 0;
  bool oom_killed = false;
  std::string error;
  std::map<std::string, std::string> labels;
};

[[nodiscard]] absl::StatusOr<ContainerState> ParseContainerInspect(
    absl::string_view body);

// One entry of GET /containers/json.
struct ContainerSummary {
  std::string id;
  std::map<std::string, std::string> labels;
};

class Engine {
 public:
  explicit Engine(std::string socket_path, HttpLimits limits = {});

  const HttpClient& http() const { return http_; }

  // GET /_ping answered "OK".
  [[nodiscard]] absl::Status Ping() const;
  [[nodiscard]] absl::StatusOr<EngineInfo> Info() const;

  // POST /containers/create?name=...: the new container's id.
  [[nodiscard]] absl::StatusOr<std::string> CreateContainer(
      absl::string_view name, const nlohmann::json& body) const;
  [[nodiscard]] absl::Status StartContainer(absl::string_view id) const;
  // NOT_FOUND when there is no such container.
  [[nodiscard]] absl::StatusOr<ContainerState> InspectContainer(
      absl::string_view id_or_name) const;
  // Force-removes the container and its anonymous volumes; a missing
  // container is success.
  [[nodiscard]] absl::Status RemoveContainer(
      absl::string_view id_or_name) const;
  // Containers (running or not) carrying label `key`=`value` (with any
  // value when `value` is empty).
  [[nodiscard]] absl::StatusOr<std::vector<ContainerSummary>> ListContainers(
      absl::string_view key, absl::string_view value) const;
  // The last `lines` lines of the container's stdout and stderr.
  [[nodiscard]] absl::StatusOr<std::string> Logs(absl::string_view id,
                                                 int lines) const;

  // GET /images/<ref>/json succeeded (false on 404).
  [[nodiscard]] absl::StatusOr<bool> ImageExists(absl::string_view ref) const;
  // POST /images/create?fromSrc=-&repo=&tag=&changes=... with a tar body
  // from `producer`. Fails when the engine reports an error in its progress
  // stream.
  [[nodiscard]] absl::Status ImportImage(
      absl::string_view repo, absl::string_view tag,
      const std::vector<std::string>& changes,
      const BodyProducer& producer) const;
  // The repo:tags of images labelled `key`=`value` (any value when `value`
  // is empty).
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> ListImageRefs(
      absl::string_view key, absl::string_view value) const;
  // DELETE /images/<ref> (not forced): CONFLICT ("in use") is an error the
  // caller may ignore; NOT_FOUND is success.
  [[nodiscard]] absl::Status RemoveImage(absl::string_view ref) const;

 private:
  HttpClient http_;
};

// The message of an engine error body ({"message": "..."}) or the start of
// the body, for error reports.
[[nodiscard]] std::string EngineMessage(const HttpResponse& response);

// A status for an unexpected HTTP answer: NOT_FOUND for 404, ALREADY_EXISTS
// for 409 on create, FAILED_PRECONDITION for other 4xx, UNAVAILABLE for 5xx.
[[nodiscard]] absl::Status HttpError(absl::string_view what,
                                     const HttpResponse& response);

}  // namespace corral::docker

#endif  // CORRAL_BACKENDS_DOCKER_ENGINE_H_
