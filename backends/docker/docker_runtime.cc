#include "backends/docker/docker_runtime.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "backends/common/agent_socket.h"
#include "backends/common/attach.h"
#include "backends/common/guarantees.h"
#include "backends/common/leftovers.h"
#include "backends/common/plugin_support.h"
#include "backends/common/spec_checks.h"
#include "backends/docker/container_spec.h"
#include "backends/docker/docker_state.h"
#include "backends/docker/engine.h"
#include "backends/docker/image_source.h"
#include "backends/docker/rootfs_tar.h"
#include "backends/linux/cgroups.h"
#include "backends/linux/fs_util.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::docker {
namespace {

using backend_plugin::kGuaranteeCgroupLimits;
using backend_plugin::kGuaranteeEgressPolicy;
using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteeSeccomp;
using backend_plugin::kGuaranteeUserNamespace;

using linux_runtime::ValidSandboxId;

constexpr char kDefaultSocket[] = "/var/run/docker.sock";
constexpr char kRunDirName[] = "run";
constexpr uint64_t kDefaultTmpBytes = 64u << 20;
// How long the agent may take to listen after the container started.
constexpr absl::Duration kAgentTimeout = absl::Seconds(10);
// Engine facts (seccomp, userns, Podman or Docker) are re-read this often.
constexpr absl::Duration kInfoMaxAge = absl::Seconds(30);

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("docker");
  return *logger;
}

struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  std::string socket;
  std::string daemon_label;
};

absl::StatusOr<Settings> ReadSettings(const bv1::PluginConfig& config) {
  Settings settings;
  settings.runtime_dir = config.runtime_dir();
  settings.agent_path = config.agent_path();
  settings.socket = kDefaultSocket;
  std::vector<std::string> unknown;
  for (const auto& [key, value] : config.options()) {
    if (key == "socket") {
      settings.socket = value;
    } else {
      unknown.push_back(key);
    }
  }
  RETURN_IF_ERROR(
      backend_plugin::RefuseUnknownOptions("docker", unknown, {"socket"}));
  if (!absl::StartsWith(settings.socket, "/") ||
      settings.socket.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtimes.docker.socket '", settings.socket,
                     "' must be an absolute path shorter than ",
                     sizeof(sockaddr_un::sun_path), " bytes"));
  }
  if (!absl::StartsWith(settings.runtime_dir, "/")) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  // Containers and images carry the daemon instance's id, so that no other
  // daemon's reconcile touches them (a plugin driven alone, without one,
  // derives a label from its runtime directory).
  if (config.instance_id().empty()) {
    settings.daemon_label = DaemonLabel(settings.runtime_dir);
  } else if (backend_plugin::ValidInstanceId(config.instance_id())) {
    settings.daemon_label = config.instance_id();
  } else {
    return absl::InvalidArgumentError(
        "PluginConfig.instance_id is not 16 lowercase hex characters");
  }
  return settings;
}

std::string SandboxDir(const Settings& settings, absl::string_view id) {
  return absl::StrCat(settings.runtime_dir, "/", id);
}

// Engine facts per socket, cached: /info costs Docker tens of ms.
absl::StatusOr<EngineInfo> CachedInfo(const Engine& engine, bool refresh) {
  struct Entry {
    EngineInfo info;
    absl::Time read;
  };
  static std::mutex mutex;
  static std::map<std::string, Entry>* cache = new std::map<std::string, Entry>;
  const std::string& key = engine.http().socket_path();
  {
    std::lock_guard lock(mutex);
    auto it = cache->find(key);
    if (!refresh && it != cache->end() &&
        absl::Now() - it->second.read < kInfoMaxAge) {
      return it->second.info;
    }
  }
  ASSIGN_OR_RETURN(EngineInfo info, engine.Info());
  std::lock_guard lock(mutex);
  (*cache)[key] = Entry{info, absl::Now()};
  return info;
}

// The only runtime option is userns=true|false; true needs an engine that
// remaps users.
absl::Status CheckRuntimeOptions(const bv1::SandboxSpec& spec,
                                 const EngineInfo& info) {
  for (const auto& [key, value] : spec.runtime_options()) {
    if (key != "userns") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown runtime option '", key,
                       "' for the docker runtime (known: userns)"));
    }
    if (value == "true" && !info.userns) {
      return absl::FailedPreconditionError(
          "runtime option userns=true: the engine does not remap users "
          "(start dockerd with --userns-remap)");
    }
    if (value != "true" && value != "false") {
      return absl::InvalidArgumentError(absl::StrCat(
          "runtime option userns must be true or false, not '", value, "'"));
    }
  }
  return absl::OkStatus();
}

// Connects to <run_dir>/agent.sock. The sandbox can write into run_dir (it
// is bind-mounted in), so the name is opened with O_PATH|O_NOFOLLOW, checked
// to be a socket, and connected to through /proc/self/fd/<that fd>: a
// symlink or a swapped file planted by the sandbox cannot redirect the
// daemon to another socket (another sandbox's agent). The short /proc path
// also spares sun_path a long runtime_dir.
absl::StatusOr<UniqueFd> ConnectAgent(const std::string& run_dir) {
  UniqueFd dir(
      ::open(run_dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return ErrnoStatus(absl::StrCat("open ", run_dir));
  const std::string name = absl::StrCat(run_dir, "/", kAgentSocketName);
  UniqueFd socket_file(
      ::openat(dir.get(), kAgentSocketName, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!socket_file) return ErrnoStatus(absl::StrCat("open ", name));
  struct stat st {};
  if (::fstat(socket_file.get(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("stat ", name));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " is not a socket"));
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = absl::StrCat("/proc/self/fd/", socket_file.get());
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                       path.size() + 1)) != 0) {
    return ErrnoStatus(absl::StrCat("connect ", name));
  }
  return fd;
}

// The last lines the container wrote, for an error message.
std::string LastLogLines(const Engine& engine, const std::string& container) {
  auto logs = engine.Logs(container, 20);
  if (!logs.ok())
    return absl::StrCat("(no logs: ", logs.status().message(), ")");
  std::string text(absl::StripAsciiWhitespace(*logs));
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return text.empty() ? "(no output)" : text;
}

// Waits until the agent listens on its socket and connects, while checking
// (every 100 ms) that the container still runs.
absl::StatusOr<UniqueFd> WaitForAgent(const Engine& engine,
                                      const std::string& container,
                                      const std::string& run_dir) {
  const absl::Time deadline = absl::Now() + kAgentTimeout;
  absl::Time next_check = absl::Now() + absl::Milliseconds(100);
  absl::Duration pause = absl::Microseconds(500);
  for (;;) {
    auto connection = ConnectAgent(run_dir);
    if (connection.ok()) return connection;
    if (absl::Now() >= next_check) {
      next_check = absl::Now() + absl::Milliseconds(100);
      ASSIGN_OR_RETURN(ContainerState state,
                       engine.InspectContainer(container));
      if (!state.running) {
        return absl::InternalError(absl::StrCat(
            "the sandbox's container exited (status ", state.status,
            ", exit code ", state.exit_code,
            state.error.empty() ? "" : absl::StrCat(", ", state.error),
            ") before its agent listened; its output: ",
            LastLogLines(engine, container)));
      }
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the agent did not listen on ", run_dir, "/", kAgentSocketName,
          " within ", absl::FormatDuration(kAgentTimeout), ": ",
          connection.status().message()));
    }
    absl::SleepFor(pause);
    if (pause < absl::Milliseconds(10)) pause *= 2;
  }
}

// Makes the sandbox's root filesystem available to the engine as an image
// and returns its reference; also the extra read-only binds it needs.
struct EngineImage {
  std::string ref;
  std::vector<std::pair<std::string, std::string>> binds;
};

absl::StatusOr<EngineImage> EnsureImage(const Engine& engine,
                                        const Settings& settings,
                                        const bv1::RootFs& rootfs) {
  ASSIGN_OR_RETURN(ImageSource source,
                   ResolveImageSource(rootfs, settings.runtime_dir));
  const std::string repo = absl::StrCat("corral/", settings.daemon_label);
  const std::string ref = absl::StrCat(repo, ":", source.key);
  EngineImage image{ref, source.binds};
  std::shared_ptr<std::mutex> lock = ImportLock(ref);
  std::lock_guard guard(*lock);
  ASSIGN_OR_RETURN(bool exists, engine.ImageExists(ref));
  if (exists) return image;
  const absl::Time started = absl::Now();
  // Image labels are inherited by every container made from the image, so
  // they must not be the containers' own labels (kDaemonLabel).
  std::vector<std::string> changes = {
      absl::StrCat("LABEL ", kImageDaemonLabel, "=", settings.daemon_label),
      absl::StrCat("LABEL corral.image=", source.key)};
  RETURN_IF_ERROR(Annotate(
      engine.ImportImage(repo, source.key, changes,
                         [&](const BodyWriter& write) {
                           return WriteDirectoryTar(source.directory, write,
                                                    source.zero_mtime);
                         }),
      absl::StrCat("importing ", source.directory, " into the engine")));
  Log().info("imported {} into the engine as {} in {} ms", source.directory,
             ref, absl::ToInt64Milliseconds(absl::Now() - started));
  return image;
}

absl::StatusOr<linux_runtime::SandboxCgroups> ContainerCgroups(int64_t pid) {
  ASSIGN_OR_RETURN(linux_runtime::CgroupLayout layout,
                   linux_runtime::CgroupLayout::Detect());
  ASSIGN_OR_RETURN(std::string text, linux_runtime::ReadFile(absl::StrCat(
                                         "/proc/", pid, "/cgroup")));
  return CgroupsFromProc(text, layout);
}

// The "seccomp=..." security option for the engine, or "" for the engine's
// default profile.
absl::StatusOr<std::string> SeccompOption(const EngineInfo& info,
                                          const std::string& sandbox_dir) {
  if (!info.seccomp) return std::string();
  auto profile = SeccompProfileJson();
  if (!profile.ok()) {
    if (absl::IsUnimplemented(profile.status())) return std::string();
    return profile.status();
  }
  if (!info.podman) return absl::StrCat("seccomp=", *profile);
  // Podman's compat API takes a path, not the profile itself.
  std::string path = absl::StrCat(sandbox_dir, "/seccomp.json");
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", path));
  if (::write(fd.get(), profile->data(), profile->size()) !=
      static_cast<ssize_t>(profile->size())) {
    return ErrnoStatus(absl::StrCat("write ", path));
  }
  return absl::StrCat("seccomp=", path);
}

std::vector<int> Guarantees(const EngineInfo& info) {
  std::vector<int> guarantees = {kGuaranteeCgroupLimits,
                                 kGuaranteeNetworkIsolation};
  if (info.seccomp) guarantees.push_back(kGuaranteeSeccomp);
  if (info.userns) guarantees.push_back(kGuaranteeUserNamespace);
  return guarantees;
}

// Removes the container (by id, else by name) and the sandbox directory.
absl::Status Teardown(const Engine& engine, const std::string& container,
                      const std::string& sandbox_dir) {
  absl::Status status = engine.RemoveContainer(container);
  absl::Status removed = corral::RemoveTree(sandbox_dir);
  if (status.ok()) status = removed;
  return status;
}

}  // namespace

std::string DaemonLabel(absl::string_view runtime_dir) {
  return HashHex(absl::StrCat("corral-daemon|", runtime_dir));
}

absl::Status CheckConfig(const bv1::PluginConfig& config) {
  return ReadSettings(config).status();
}

bv1::ProbeResponse Probe(const bv1::ProbeRequest& request) {
  bv1::ProbeResponse response;
  auto& details = *response.mutable_details();
  auto settings = ReadSettings(request.config());
  if (!settings.ok()) {
    response.set_reason(std::string(settings.status().message()));
    return response;
  }
  details["socket"] = settings->socket;
  Engine engine(settings->socket, HttpLimits{.timeout = absl::Seconds(5)});
  std::vector<std::string> problems;
  absl::Status ping = engine.Ping();
  auto info = ping.ok() ? CachedInfo(engine, /*refresh=*/true)
                        : absl::StatusOr<EngineInfo>(ping);
  if (!info.ok()) {
    problems.push_back(absl::StrCat("no engine answers on ", settings->socket,
                                    ": ", info.status().message()));
  } else {
    details["engine"] = info->podman ? "podman" : "docker";
    details["version"] = info->version;
    details["api_version"] = info->api_version;
    details["cgroup"] =
        absl::StrCat(info->cgroup_driver, " v", info->cgroup_version);
    details["storage_driver"] = info->storage_driver;
    details["security_options"] = absl::StrJoin(info->security_options, " ");
    details["seccomp"] = info->seccomp ? "yes" : "no";
    details["oom_protection"] =
        backend_plugin::HasCapability(CAP_SYS_RESOURCE) ? "yes" : "no";
    details["userns"] = info->userns ? "remapped"
                                     : "no (root is host root "
                                       "without capabilities)";
    if (info->rootless) {
      problems.push_back(
          "the engine runs rootless: its containers cannot be given the "
          "agent's socket directory and cgroup limits reliably");
    }
  }
  if (::access(settings->agent_path.c_str(), R_OK) != 0) {
    problems.push_back(absl::StrCat("agent ", settings->agent_path, ": ",
                                    std::strerror(errno)));
  }
  response.set_available(problems.empty());
  if (problems.empty()) {
    response.set_reason(absl::StrCat(details["engine"], " ", details["version"],
                                     " on ", settings->socket));
    for (int guarantee : Guarantees(*info)) response.add_guarantees(guarantee);
    // The daemon links each container's own namespace to its egress path
    // (CreateResponse.netns_to_link) and claims it per sandbox then.
    response.add_guarantees(kGuaranteeEgressPolicy);
  } else {
    response.set_reason(absl::StrJoin(problems, "; "));
  }
  return response;
}

absl::StatusOr<bv1::CreateResponse> Create(const bv1::CreateRequest& request,
                                           UniqueFd* agent_fd) {
  const absl::Time started = absl::Now();
  const bv1::SandboxSpec& spec = request.spec();
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  RETURN_IF_ERROR(backend_plugin::ValidateSpec(spec));
  Engine engine(settings.socket);
  ASSIGN_OR_RETURN(EngineInfo info, CachedInfo(engine, /*refresh=*/false));
  RETURN_IF_ERROR(CheckRuntimeOptions(spec, info));
  if (::access(settings.agent_path.c_str(), R_OK) != 0) {
    return ErrnoStatus(absl::StrCat("agent ", settings.agent_path));
  }

  DockerState state;
  state.id = spec.id();
  state.sandbox_dir = SandboxDir(settings, spec.id());
  state.container_name = ContainerName(settings.daemon_label, spec.id());
  const std::string run_dir = absl::StrCat(state.sandbox_dir, "/", kRunDirName);

  if (::mkdir(state.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", state.sandbox_dir));
  }
  // From here on every failure removes what this call made: the container
  // (only once it is ours) and the sandbox directory.
  absl::Cleanup undo = [&] {
    absl::Status status =
        state.container_id.empty()
            ? corral::RemoveTree(state.sandbox_dir)
            : Teardown(engine, state.container_id, state.sandbox_dir);
    if (!status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };
  if (::mkdir(run_dir.c_str(), 0700) != 0) {
    return ErrnoStatus(absl::StrCat("mkdir ", run_dir));
  }
  ASSIGN_OR_RETURN(EngineImage image,
                   EnsureImage(engine, settings, spec.rootfs()));
  const absl::Time imaged = absl::Now();

  ContainerPlan plan;
  plan.id = spec.id();
  plan.daemon = settings.daemon_label;
  plan.image = image.ref;
  plan.hostname = spec.hostname();
  plan.workspace_dir = spec.workspace_dir();
  plan.agent_path = settings.agent_path;
  plan.run_dir = run_dir;
  plan.extra_binds = image.binds;
  plan.cpu_millis = spec.cpu_millis();
  plan.memory_bytes = spec.memory_bytes();
  plan.pids = spec.pids();
  plan.tmp_bytes = spec.disk_bytes() > 0 ? spec.disk_bytes() : kDefaultTmpBytes;
  plan.podman = info.podman;
  plan.cgroup_v1 = info.cgroup_version == "1";
  plan.oom_score_adj =
      backend_plugin::HasCapability(CAP_SYS_RESOURCE) ? -1000 : 0;
  ASSIGN_OR_RETURN(plan.seccomp_option, SeccompOption(info, state.sandbox_dir));

  auto created =
      engine.CreateContainer(state.container_name, BuildCreateBody(plan));
  if (!created.ok()) {
    if (absl::IsAlreadyExists(created.status())) {
      // A container of that name is someone else's (a sandbox of this
      // daemon the store lost): reconcile removes it, not create.
      return absl::AlreadyExistsError(absl::StrCat("sandbox ", spec.id(),
                                                   ": the engine already has a "
                                                   "container named ",
                                                   state.container_name));
    }
    return created.status();
  }
  state.container_id = *created;
  RETURN_IF_ERROR(engine.StartContainer(state.container_id));
  const absl::Time container_started = absl::Now();
  ASSIGN_OR_RETURN(UniqueFd connection,
                   WaitForAgent(engine, state.container_id, run_dir));
  const absl::Time connected = absl::Now();
  ASSIGN_OR_RETURN(ContainerState container,
                   engine.InspectContainer(state.container_id));
  if (!container.running || container.pid <= 0) {
    return absl::InternalError(
        absl::StrCat("the sandbox's container exited at start: ",
                     LastLogLines(engine, state.container_id)));
  }
  ASSIGN_OR_RETURN(state.cgroups, ContainerCgroups(container.pid));
  std::move(undo).Cancel();
  Log().debug(
      "sandbox {} created as container {}: image {} ms, create+start {} ms, "
      "agent {} ms",
      spec.id(), state.container_id.substr(0, 12),
      absl::ToInt64Milliseconds(imaged - started),
      absl::ToInt64Milliseconds(container_started - imaged),
      absl::ToInt64Milliseconds(connected - container_started));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(state.Serialize());
  for (int guarantee : Guarantees(info)) response.add_guarantees(guarantee);
  // The engine made the container's namespace (NetworkMode none: loopback
  // only); the daemon links it to its egress path.
  if (!spec.netns_path().empty()) {
    response.set_netns_to_link(
        absl::StrCat("/proc/", container.pid, "/ns/net"));
  }
  *agent_fd = std::move(connection);
  return response;
}

absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  ASSIGN_OR_RETURN(DockerState state,
                   DockerState::Parse(request.handle().state()));
  Engine engine(settings.socket);
  bv1::AttachResponse response;
  auto container = engine.InspectContainer(state.container_id);
  if (absl::IsNotFound(container.status())) {
    response.set_reason(absl::StrCat("the container ",
                                     state.container_id.substr(0, 12),
                                     " no longer exists in the engine"));
    return response;
  }
  if (!container.ok()) return container.status();
  if (!container->running) {
    response.set_reason(
        absl::StrCat("the container has stopped (", container->status,
                     ", exit code ", container->exit_code,
                     container->oom_killed ? ", OOM-killed" : "", ")"));
    return response;
  }
  auto connection =
      ConnectAgent(absl::StrCat(state.sandbox_dir, "/", kRunDirName));
  return backend_plugin::AttachTo(std::move(connection), agent_fd);
}

absl::Status Destroy(const bv1::DestroyRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  Engine engine(settings.socket);
  auto state = DockerState::Parse(request.handle().state());
  if (!state.ok()) {
    // A damaged or empty state (a create that failed half-way): clean up by
    // id, with the name this daemon gives that sandbox's container.
    const std::string& id = request.handle().id();
    if (!ValidSandboxId(id)) return state.status();
    return Teardown(engine, ContainerName(settings.daemon_label, id),
                    SandboxDir(settings, id));
  }
  if (state->id != request.handle().id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  return Teardown(engine, state->container_id, state->sandbox_dir);
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest& request) {
  ASSIGN_OR_RETURN(DockerState state,
                   DockerState::Parse(request.handle().state()));
  ASSIGN_OR_RETURN(linux_runtime::CgroupStats stats,
                   linux_runtime::ReadCgroupStats(state.cgroups));
  return backend_plugin::StatsResponseFrom(stats);
}

namespace {

// `corrald --cleanup-orphans`: the containers and images of instances
// whose state is gone.
absl::StatusOr<bv1::ReconcileResponse> RemoveOrphans(
    const Engine& engine, const Settings& settings,
    const bv1::ReconcileRequest& request) {
  std::set<std::string> live(request.live_instances().begin(),
                             request.live_instances().end());
  live.insert(settings.daemon_label);
  auto orphan = [&](const std::string& instance) {
    return backend_plugin::ValidInstanceId(instance) &&
           live.count(instance) == 0 &&
           (request.only_instance().empty() ||
            instance == request.only_instance());
  };
  bv1::ReconcileResponse response;
  absl::Status result;
  ASSIGN_OR_RETURN(auto containers, engine.ListContainers(kDaemonLabel, ""));
  for (const ContainerSummary& container : containers) {
    const std::string instance = container.labels.at(kDaemonLabel);
    auto sandbox = container.labels.find(kSandboxLabel);
    if (!orphan(instance) || sandbox == container.labels.end() ||
        !ValidSandboxId(sandbox->second)) {
      continue;
    }
    absl::Status status = engine.RemoveContainer(container.id);
    if (status.ok()) {
      response.add_removed_ids(absl::StrCat(instance, "/", sandbox->second));
    } else if (result.ok()) {
      result =
          Annotate(status, absl::StrCat("orphan container ", container.id));
    }
  }
  // Their images, "corral/<instance>:<tag>"; one still in use stays.
  auto refs = engine.ListImageRefs(kImageDaemonLabel, "");
  if (refs.ok()) {
    for (const std::string& ref : *refs) {
      absl::string_view rest = ref;
      if (!absl::ConsumePrefix(&rest, "corral/")) continue;
      const std::string instance(rest.substr(0, rest.find(':')));
      if (!orphan(instance)) continue;
      if (absl::Status status = engine.RemoveImage(ref); !status.ok()) {
        Log().warn("removing orphan image {}: {}", ref, status.ToString());
      }
    }
  }
  if (!result.ok()) return result;
  return response;
}

}  // namespace

absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  Engine engine(settings.socket);
  if (request.orphans()) return RemoveOrphans(engine, settings, request);
  std::set<std::string> known(request.known_ids().begin(),
                              request.known_ids().end());
  std::set<std::string> removed;
  absl::Status result;
  auto note = [&](const absl::Status& status, absl::string_view what) {
    if (!status.ok() && result.ok()) result = Annotate(status, what);
  };

  // Containers of this daemon (by label) that belong to no known sandbox.
  auto containers = engine.ListContainers(kDaemonLabel, settings.daemon_label);
  if (containers.ok()) {
    for (const ContainerSummary& container : *containers) {
      // Only what this runtime makes: a sandbox id label it could have
      // written, for a sandbox the store does not know.
      auto label = container.labels.find(kSandboxLabel);
      std::string id = label == container.labels.end() ? "" : label->second;
      if (!ValidSandboxId(id) || known.count(id)) continue;
      absl::Status status = engine.RemoveContainer(container.id);
      note(status, absl::StrCat("leftover container ", container.id));
      if (status.ok()) removed.insert(id);
    }
  } else {
    note(containers.status(), "listing the engine's containers");
  }
  // Runtime directories of unknown sandboxes.
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(settings.runtime_dir, error)) {
    std::string id = entry.path().filename().string();
    if (!ValidSandboxId(id) || known.count(id)) continue;
    absl::Status status = corral::RemoveTree(entry.path().string());
    note(status, absl::StrCat("leftover directory ", entry.path().string()));
    if (status.ok()) removed.insert(id);
  }
  // Images this daemon imported that no container uses any more; the
  // engine refuses (409) to remove one in use, which is fine.
  if (result.ok()) {
    auto refs = engine.ListImageRefs(kImageDaemonLabel, settings.daemon_label);
    if (refs.ok()) {
      for (const std::string& ref : *refs) {
        absl::Status status = engine.RemoveImage(ref);
        if (!status.ok() && !absl::IsAlreadyExists(status)) {
          Log().warn("removing unused image {}: {}", ref, status.ToString());
        }
      }
    }
  }
  if (!result.ok()) return result;
  bv1::ReconcileResponse response;
  for (const std::string& id : removed) response.add_removed_ids(id);
  return response;
}

}  // namespace corral::docker
