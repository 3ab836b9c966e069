#include "backends/apple/apple_runtime.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "backends/apple/container_cli.h"
#include "backends/apple/oci_layout.h"
#include "backends/common/agent_socket.h"
#include "backends/common/attach.h"
#include "backends/common/cli_runtime.h"
#include "backends/common/guarantees.h"
#include "backends/common/leftovers.h"
#include "backends/common/plugin_support.h"
#include "backends/common/spec_checks.h"
#include "backends/common/subprocess.h"
#include "backends/docker/image_source.h"
#include "backends/docker/rootfs_tar.h"
#include "backends/linux/fs_util.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::apple_runtime {
namespace {

using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteeSeparateKernel;
using linux_runtime::ValidSandboxId;
using runtime_common::ProgramResult;

constexpr char kRunDirName[] = "run";
constexpr char kImageStagingDir[] = ".images";
constexpr uint32_t kDefaultStartTimeoutSeconds = 60;

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("apple");
  return *logger;
}

struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  backend_plugin::CliProgram container;
  std::string daemon_label;
  uint64_t start_timeout_seconds = kDefaultStartTimeoutSeconds;
};

absl::StatusOr<Settings> ReadSettings(const bv1::PluginConfig& config) {
  Settings settings;
  settings.runtime_dir = config.runtime_dir();
  settings.agent_path = config.agent_path();
  std::string container;
  std::vector<std::string> unknown;
  for (const auto& [key, value] : config.options()) {
    if (key == "container") {
      ASSIGN_OR_RETURN(container,
                       backend_plugin::PathOption("apple", key, value));
    } else if (key == "start_timeout_seconds") {
      ASSIGN_OR_RETURN(
          settings.start_timeout_seconds,
          backend_plugin::NumberOption("apple", key, value, 1, 3600));
    } else {
      unknown.push_back(key);
    }
  }
  RETURN_IF_ERROR(backend_plugin::RefuseUnknownOptions(
      "apple", unknown, {"container", "start_timeout_seconds"}));
  if (!absl::StartsWith(settings.runtime_dir, "/")) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  // Containers and images carry the daemon instance's id: several daemons
  // (or users) may share one container service, and none touches another's.
  ASSIGN_OR_RETURN(settings.daemon_label, backend_plugin::DaemonLabel(config));
  // On the daemon's PATH, then where Apple's installer and Homebrew put it.
  settings.container = backend_plugin::FindCliProgram(
      "apple", "container", "container", container,
      {"/usr/local/bin", "/opt/homebrew/bin", "/usr/bin"},
      "Apple's container CLI is not installed");
  settings.container.error = CliError;
  return settings;
}

absl::StatusOr<ProgramResult> Run(const Settings& settings,
                                  const std::vector<std::string>& args,
                                  absl::Duration timeout) {
  return backend_plugin::RunCli(settings.container, args, timeout);
}

absl::StatusOr<std::string> RunOk(const Settings& settings,
                                  const std::vector<std::string>& args,
                                  absl::Duration timeout = absl::Minutes(2)) {
  return backend_plugin::RunCliOk(settings.container, args, timeout);
}

// The container named `name`, or NOT_FOUND.
absl::StatusOr<ListedContainer> Inspect(const Settings& settings,
                                        const std::string& name) {
  ASSIGN_OR_RETURN(std::string out,
                   RunOk(settings, {"inspect", name}, absl::Seconds(30)));
  ASSIGN_OR_RETURN(std::vector<ListedContainer> found, ParseContainerList(out));
  for (ListedContainer& container : found) {
    if (container.id == name) return std::move(container);
  }
  return absl::NotFoundError(absl::StrCat("container ", name, " not found"));
}

// The last lines the container wrote, for an error message.
std::string LastLogLines(const Settings& settings, const std::string& name) {
  auto logs = RunOk(settings, {"logs", "-n", "20", name}, absl::Seconds(10));
  if (!logs.ok()) {
    return absl::StrCat("(no logs: ", logs.status().message(), ")");
  }
  std::string text(absl::StripAsciiWhitespace(*logs));
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return text.empty() ? "(no output)" : text;
}

// Removes the container (stopping it) and the sandbox directory; a
// container already gone is fine.
absl::Status Teardown(const Settings& settings, const std::string& name,
                      const std::string& sandbox_dir) {
  absl::Status status =
      RunOk(settings, {"delete", "--force", name}, absl::Minutes(1)).status();
  if (absl::IsNotFound(status)) status = absl::OkStatus();
  absl::Status removed =
      sandbox_dir.empty() ? absl::OkStatus() : corral::RemoveTree(sandbox_dir);
  return status.ok() ? removed : status;
}

// Connects to the socket the runtime publishes for the agent and waits for
// the agent's first bytes (its hello), left unread for the daemon. The
// runtime accepts on the host even while nothing listens in the VM yet, and
// then closes the connection: that is "not yet", not a failure.
absl::StatusOr<UniqueFd> ConnectReady(const std::string& run_dir,
                                      absl::Duration wait) {
  ASSIGN_OR_RETURN(UniqueFd fd, backend_plugin::ConnectAt(
                                    run_dir, backend_plugin::kAgentSocketName));
  return backend_plugin::WaitForHello(
      std::move(fd), wait,
      "the runtime closed the connection: nothing listens in the VM yet");
}

absl::StatusOr<UniqueFd> WaitForAgent(const Settings& settings,
                                      const std::string& name,
                                      const std::string& run_dir) {
  const absl::Duration timeout = absl::Seconds(settings.start_timeout_seconds);
  const absl::Time deadline = absl::Now() + timeout;
  absl::Time next_check = absl::Now() + absl::Milliseconds(500);
  absl::Status last;
  for (;;) {
    auto connection = ConnectReady(run_dir, absl::Seconds(2));
    if (connection.ok()) return connection;
    last = connection.status();
    if (absl::Now() >= next_check) {
      next_check = absl::Now() + absl::Milliseconds(500);
      ASSIGN_OR_RETURN(ListedContainer container, Inspect(settings, name));
      if (container.state != "running") {
        return absl::InternalError(
            absl::StrCat("the sandbox's container is ", container.state,
                         " before its agent answered; its output: ",
                         LastLogLines(settings, name)));
      }
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the agent did not answer on ", run_dir, "/",
                       backend_plugin::kAgentSocketName, " within ",
                       absl::FormatDuration(timeout), ": ", last.message()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::string ImageRepository(const std::string& daemon_label) {
  // A domain of its own, so that the CLI never takes it for Docker Hub's.
  return absl::StrCat("corral.local/", daemon_label);
}

// The sandbox's root filesystem as an image of the container service; its
// reference.
absl::StatusOr<std::string> EnsureImage(const Settings& settings,
                                        const bv1::RootFs& rootfs) {
  ASSIGN_OR_RETURN(docker::ImageSource source,
                   docker::ResolveImageSource(rootfs, settings.runtime_dir));
  const std::string ref =
      absl::StrCat(ImageRepository(settings.daemon_label), ":", source.key);
  std::shared_ptr<std::mutex> lock = docker::ImportLock(ref);
  std::lock_guard guard(*lock);
  auto present = RunOk(settings, {"image", "inspect", ref}, absl::Seconds(30));
  if (present.ok()) return ref;
  if (!absl::IsNotFound(present.status())) return present.status();
  const absl::Time started = absl::Now();
  const std::string staging =
      absl::StrCat(settings.runtime_dir, "/", kImageStagingDir);
  if (::mkdir(staging.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", staging));
  }
  const std::string tar = absl::StrCat(staging, "/", source.key, ".tar");
  absl::Cleanup remove_tar = [&] { ::unlink(tar.c_str()); };
  RETURN_IF_ERROR(WriteImageLayout(
      LayoutImage{source.directory, source.zero_mtime, ref, OciArchitecture()},
      tar));
  ASSIGN_OR_RETURN(
      std::string loaded,
      RunOk(settings, {"image", "load", "--input", tar}, absl::Minutes(10)));
  if (!absl::StrContains(loaded, ref)) {
    return absl::InternalError(
        absl::StrCat("container image load named the image '",
                     absl::StripAsciiWhitespace(loaded), "', not ", ref));
  }
  Log().info("loaded {} into the container service as {} in {} ms",
             source.directory, ref,
             absl::ToInt64Milliseconds(absl::Now() - started));
  return ref;
}

// SandboxHandle.state: key=value lines.
struct HandleState {
  std::string id;
  std::string name;
  std::string sandbox_dir;

  std::string Serialize() const {
    return backend_plugin::SerializeHandleState(
        {{"id", id}, {"name", name}, {"sandbox_dir", sandbox_dir}});
  }
  static absl::StatusOr<HandleState> Parse(absl::string_view text) {
    ASSIGN_OR_RETURN(auto fields,
                     backend_plugin::ParseHandleState(
                         text, "apple", {"id", "name", "sandbox_dir"}));
    HandleState state{fields["id"], fields["name"], fields["sandbox_dir"]};
    if (!ValidSandboxId(state.id) ||
        !absl::EndsWith(state.name, absl::StrCat(".", state.id)) ||
        !absl::EndsWith(state.sandbox_dir, absl::StrCat("/", state.id)) ||
        !linux_runtime::CleanAbsolutePath(state.sandbox_dir)) {
      return absl::InvalidArgumentError("apple sandbox state is malformed");
    }
    return state;
  }
};

std::string SandboxDir(const Settings& settings, absl::string_view id) {
  return absl::StrCat(settings.runtime_dir, "/", id);
}

}  // namespace

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
  std::vector<std::string> problems;
  backend_plugin::CliIdentity identity;
  if (settings->container.path.empty()) {
    problems.push_back(settings->container.problem);
  } else {
    details["container"] = settings->container.path;
    std::string problem = backend_plugin::CliVersionProblem(
        settings->container, CliVersion, "Apple's container CLI", &identity);
    if (!problem.empty()) {
      problems.push_back(problem);
    } else {
      details["version"] = identity.version;
      if (identity.fake)
        details["fake"] = "corral's test fake (tests/fakes/apple)";
      auto status = Run(*settings, {"system", "status"}, absl::Seconds(20));
      if (!status.ok()) {
        problems.emplace_back(status.status().message());
      } else if (status->exit_code != 0) {
        problems.push_back(absl::StrCat(
            "the container system service is not running (",
            absl::StripAsciiWhitespace(
                status->output.empty() ? status->error_output : status->output)
                .substr(0, 200),
            "): start it with `container system start`"));
      }
    }
  }
  backend_plugin::FinishProbe(
      std::move(problems), settings->agent_path,
      identity.fake ? absl::StrCat(identity.version, " (corral test fake)")
                    : identity.version,
      backend_plugin::VmGuarantees(identity.fake), &response);
  return response;
}

absl::StatusOr<bv1::CreateResponse> Create(const bv1::CreateRequest& request,
                                           UniqueFd* agent_fd) {
  const absl::Time started = absl::Now();
  const bv1::SandboxSpec& spec = request.spec();
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  if (settings.container.path.empty()) {
    return absl::FailedPreconditionError(settings.container.problem);
  }
  RETURN_IF_ERROR(backend_plugin::ValidateSpec(spec));
  if (!request.memory().empty()) {
    return absl::UnimplementedError(
        "the apple runtime has no memory snapshots (Apple's container cannot "
        "save a VM's memory)");
  }
  RETURN_IF_ERROR(backend_plugin::RefuseUserNamespace(spec, "apple"));
  if (spec.rootfs().source_case() == bv1::RootFs::kHost) {
    return absl::FailedPreconditionError(
        "the apple runtime runs Linux VMs from images only (the host's own "
        "root cannot be shared into them): import an image and use --image");
  }
  if (!spec.network_none() || spec.has_tap()) {
    return absl::FailedPreconditionError(
        "network is not built for the apple runtime yet: its sandboxes are "
        "sealed (--network none, no network device)");
  }
  ASSIGN_OR_RETURN(const std::string name,
                   ContainerName(spec.hostname(), spec.id()));
  backend_plugin::CliIdentity identity;
  if (std::string problem = backend_plugin::CliVersionProblem(
          settings.container, CliVersion, "Apple's container CLI", &identity);
      !problem.empty()) {
    return absl::FailedPreconditionError(problem);
  }

  HandleState state{spec.id(), name, SandboxDir(settings, spec.id())};
  const std::string run_dir = absl::StrCat(state.sandbox_dir, "/", kRunDirName);
  if (::mkdir(state.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", state.sandbox_dir));
  }
  bool container_made = false;
  absl::Cleanup undo = [&] {
    absl::Status status = container_made
                              ? Teardown(settings, name, state.sandbox_dir)
                              : corral::RemoveTree(state.sandbox_dir);
    if (!status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };
  if (::mkdir(run_dir.c_str(), 0700) != 0) {
    return ErrnoStatus(absl::StrCat("mkdir ", run_dir));
  }
  ASSIGN_OR_RETURN(std::string agent_dir,
                   backend_plugin::SharedAgentDirectory(settings.runtime_dir,
                                                        settings.agent_path));
  ASSIGN_OR_RETURN(std::string image, EnsureImage(settings, spec.rootfs()));
  const absl::Time imaged = absl::Now();

  RunPlan plan;
  plan.name = name;
  plan.image = image;
  plan.workspace_dir = spec.workspace_dir();
  plan.agent_dir = agent_dir;
  plan.host_socket =
      absl::StrCat(run_dir, "/", backend_plugin::kAgentSocketName);
  plan.sandbox_id = spec.id();
  plan.daemon_label = settings.daemon_label;
  plan.memory_bytes = VmMemoryBytes(spec.memory_bytes());
  plan.cpus = VmCpus(spec.cpu_millis());
  auto ran = RunOk(settings, RunArguments(plan), absl::Minutes(5));
  if (!ran.ok()) {
    if (absl::IsAlreadyExists(ran.status())) {
      // Someone's container of that name (a sandbox the store lost):
      // reconcile removes it, not create.
      return absl::AlreadyExistsError(
          absl::StrCat("sandbox ", spec.id(),
                       ": the container service "
                       "already has a container named ",
                       name));
    }
    // It may exist half-made.
    container_made = true;
    return ran.status();
  }
  container_made = true;
  const absl::Time container_started = absl::Now();
  ASSIGN_OR_RETURN(UniqueFd connection, WaitForAgent(settings, name, run_dir));
  std::move(undo).Cancel();
  Log().debug(
      "sandbox {} created as container {}: image {} ms, run {} ms, "
      "agent {} ms",
      spec.id(), name, absl::ToInt64Milliseconds(imaged - started),
      absl::ToInt64Milliseconds(container_started - imaged),
      absl::ToInt64Milliseconds(absl::Now() - container_started));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(state.Serialize());
  for (int guarantee : backend_plugin::VmGuarantees(identity.fake)) {
    response.add_guarantees(guarantee);
  }
  auto& details = *response.mutable_details();
  details["container"] = name;
  details["vm_memory_mib"] = absl::StrCat(plan.memory_bytes >> 20);
  if (plan.memory_bytes > spec.memory_bytes()) {
    details["memory_note"] = absl::StrCat(
        "the VM has ", plan.memory_bytes >> 20, " MiB: Apple's minimum is ",
        kMinMemoryBytes >> 20, " MiB, more than the ",
        spec.memory_bytes() >> 20, " MiB asked");
  }
  details["vm_cpus"] = plan.cpus > 0 ? absl::StrCat(plan.cpus) : "default";
  details["pids"] = "not limited (Apple's container has no such limit)";
  if (identity.fake)
    details["fake"] = "corral's test fake: a runc container, no VM";
  *agent_fd = std::move(connection);
  return response;
}

absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  ASSIGN_OR_RETURN(HandleState state,
                   HandleState::Parse(request.handle().state()));
  bv1::AttachResponse response;
  auto container = Inspect(settings, state.name);
  if (absl::IsNotFound(container.status())) {
    response.set_reason(
        absl::StrCat("the container ", state.name, " no longer exists"));
    return response;
  }
  if (!container.ok()) return container.status();
  if (container->state != "running") {
    response.set_reason(
        absl::StrCat("the container ", state.name, " is ", container->state));
    return response;
  }
  auto connection = ConnectReady(
      absl::StrCat(state.sandbox_dir, "/", kRunDirName), absl::Seconds(10));
  return backend_plugin::AttachTo(std::move(connection), agent_fd);
}

absl::Status Destroy(const bv1::DestroyRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  auto state = HandleState::Parse(request.handle().state());
  if (state.ok()) {
    if (state->id != request.handle().id()) {
      return absl::InvalidArgumentError(
          "sandbox handle: the state belongs to another id");
    }
    return Teardown(settings, state->name, state->sandbox_dir);
  }
  // A damaged or empty state (a create that failed half-way): find the
  // container by its labels.
  const std::string& id = request.handle().id();
  if (!ValidSandboxId(id)) return state.status();
  ASSIGN_OR_RETURN(std::string out,
                   RunOk(settings, {"list", "--all", "--format", "json"}));
  ASSIGN_OR_RETURN(std::vector<ListedContainer> containers,
                   ParseContainerList(out));
  for (const ListedContainer& container : containers) {
    auto sandbox = container.labels.find(kSandboxLabel);
    auto daemon = container.labels.find(kDaemonLabel);
    if (sandbox != container.labels.end() && sandbox->second == id &&
        daemon != container.labels.end() &&
        daemon->second == settings.daemon_label) {
      RETURN_IF_ERROR(Teardown(settings, container.id, ""));
    }
  }
  return corral::RemoveTree(SandboxDir(settings, id));
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest&) {
  // `container stats` samples twice, two seconds apart, even with
  // --no-stream: too slow for the daemon, which asks around every command.
  return absl::UnimplementedError(
      "the apple runtime does not report usage (Apple's `container stats` "
      "takes two seconds per call)");
}

absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  bv1::ReconcileResponse response;
  if (settings.container.path.empty()) return response;  // nothing to find
  backend_plugin::ReconcileScope scope(request, settings.daemon_label);
  ASSIGN_OR_RETURN(std::string listed,
                   RunOk(settings, {"list", "--all", "--format", "json"}));
  ASSIGN_OR_RETURN(std::vector<ListedContainer> containers,
                   ParseContainerList(listed));
  std::set<std::string> removed;
  for (const ListedContainer& container : containers) {
    auto daemon = container.labels.find(kDaemonLabel);
    auto sandbox = container.labels.find(kSandboxLabel);
    if (daemon == container.labels.end() || sandbox == container.labels.end() ||
        !ValidSandboxId(sandbox->second) || !scope.Ours(daemon->second)) {
      continue;
    }
    if (!scope.orphans() && scope.Known(sandbox->second)) continue;
    absl::Status status = Teardown(settings, container.id, "");
    scope.Note(status, absl::StrCat("leftover container ", container.id));
    if (status.ok()) {
      removed.insert(scope.Removed(daemon->second, sandbox->second));
    }
  }
  scope.RemoveUnknownSandboxDirs(settings.runtime_dir, &removed);
  // Images no container uses any more; the service refuses to remove one
  // in use, which is fine.
  if (scope.status().ok()) {
    auto images = RunOk(settings, {"image", "list", "--quiet"});
    if (images.ok()) {
      for (absl::string_view ref :
           absl::StrSplit(*images, '\n', absl::SkipWhitespace())) {
        ref = absl::StripAsciiWhitespace(ref);
        absl::string_view rest = ref;
        if (!absl::ConsumePrefix(&rest, "corral.local/")) continue;
        const std::string instance(rest.substr(0, rest.find(':')));
        if (!scope.Ours(instance)) continue;
        auto deleted = RunOk(settings, {"image", "delete", std::string(ref)});
        if (!deleted.ok()) {
          Log().debug("image {} stays: {}", std::string(ref),
                      deleted.status().ToString());
        }
      }
    }
  }
  if (!scope.status().ok()) return scope.status();
  for (const std::string& id : removed) response.add_removed_ids(id);
  return response;
}

}  // namespace corral::apple_runtime
