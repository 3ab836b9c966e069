#include "backends/tart/tart_runtime.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
#include "backends/common/agent_socket.h"
#include "backends/common/attach.h"
#include "backends/common/cli_runtime.h"
#include "backends/common/guarantees.h"
#include "backends/common/leftovers.h"
#include "backends/common/plugin_support.h"
#include "backends/common/spec_checks.h"
#include "backends/common/subprocess.h"
#include "backends/docker/rootfs_tar.h"
#include "backends/linux/fs_util.h"
#include "backends/tart/tart_cli.h"
#include "corral/logging.h"
#include "corral/platform.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::tart_runtime {
namespace {

using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteeSeparateKernel;
using linux_runtime::ValidSandboxId;
using runtime_common::ProgramResult;

constexpr char kLauncherName[] = "corral-tart-launch";
constexpr char kLaunchLog[] = "launch.log";
constexpr char kDefaultBaseVm[] = "corral-base";
constexpr uint32_t kDefaultStartTimeoutSeconds = 180;
constexpr uint64_t kDefaultMinMemoryMib = 512;

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("tart");
  return *logger;
}

struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  std::string launcher_path;
  backend_plugin::CliProgram tart;
  std::string base_vm = kDefaultBaseVm;
  // TART_HOME for every tart call, or empty (Tart's ~/.tart).
  std::string home;
  std::string daemon_label;
  uint64_t min_memory_mib = kDefaultMinMemoryMib;
  uint64_t start_timeout_seconds = kDefaultStartTimeoutSeconds;
};

// A VM name Tart takes as a local one: no '/', no control characters.
bool ValidVmName(absl::string_view name) {
  return !name.empty() && name.size() <= 200 &&
         std::none_of(name.begin(), name.end(), [](unsigned char c) {
           return c == '/' || c < 0x20 || c == 0x7f;
         });
}

absl::StatusOr<Settings> ReadSettings(const bv1::PluginConfig& config) {
  Settings settings;
  settings.runtime_dir = config.runtime_dir();
  settings.agent_path = config.agent_path();
  settings.launcher_path =
      absl::StrCat(backend_plugin::PluginDirectory(config), "/", kLauncherName);
  std::string tart;
  std::vector<std::string> unknown;
  for (const auto& [key, value] : config.options()) {
    if (key == "tart") {
      ASSIGN_OR_RETURN(tart, backend_plugin::PathOption("tart", key, value));
    } else if (key == "home") {
      ASSIGN_OR_RETURN(settings.home,
                       backend_plugin::PathOption("tart", key, value));
    } else if (key == "base_vm") {
      if (!ValidVmName(value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "runtimes.tart.base_vm '", value, "': not a local VM name"));
      }
      settings.base_vm = value;
    } else if (key == "start_timeout_seconds") {
      ASSIGN_OR_RETURN(
          settings.start_timeout_seconds,
          backend_plugin::NumberOption("tart", key, value, 1, 3600));
    } else if (key == "min_memory_mib") {
      ASSIGN_OR_RETURN(settings.min_memory_mib,
                       backend_plugin::NumberOption("tart", key, value,
                                                    kMinVmMemoryMib, 1u << 20));
    } else {
      unknown.push_back(key);
    }
  }
  RETURN_IF_ERROR(backend_plugin::RefuseUnknownOptions(
      "tart", unknown,
      {"tart", "base_vm", "home", "min_memory_mib", "start_timeout_seconds"}));
  if (!absl::StartsWith(settings.runtime_dir, "/")) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  // The VMs carry the daemon instance's id in their names: several daemons
  // (or users) may share one TART_HOME, and none touches another's.
  ASSIGN_OR_RETURN(settings.daemon_label, backend_plugin::DaemonLabel(config));
  // On the daemon's PATH, then where Homebrew puts it.
  settings.tart = backend_plugin::FindCliProgram(
      "tart", "tart", "tart", tart,
      {"/opt/homebrew/bin", "/usr/local/bin", "/usr/bin"},
      "Tart is not installed");
  settings.tart.error = CliError;
  if (!settings.home.empty()) {
    settings.tart.environment = {absl::StrCat("TART_HOME=", settings.home)};
  }
  return settings;
}

absl::StatusOr<ProgramResult> Run(const Settings& settings,
                                  const std::vector<std::string>& args,
                                  absl::Duration timeout) {
  return backend_plugin::RunCli(settings.tart, args, timeout);
}

absl::StatusOr<std::string> RunOk(const Settings& settings,
                                  const std::vector<std::string>& args,
                                  absl::Duration timeout = absl::Minutes(2)) {
  return backend_plugin::RunCliOk(settings.tart, args, timeout);
}

absl::StatusOr<std::vector<ListedVm>> ListVms(const Settings& settings) {
  ASSIGN_OR_RETURN(
      std::string out,
      RunOk(settings, {"list", "--source", "local", "--format", "json"}));
  return ParseVmList(out);
}

// SandboxHandle.state: key=value lines.
struct HandleState {
  std::string id;
  std::string name;
  std::string sandbox_dir;
  platform::ProcessId launcher;

  std::string Serialize() const {
    return backend_plugin::SerializeHandleState(
        {{"id", id},
         {"name", name},
         {"sandbox_dir", sandbox_dir},
         {"launcher_pid", absl::StrCat(launcher.pid)},
         {"launcher_start_time", absl::StrCat(launcher.start_time)}});
  }
  static absl::StatusOr<HandleState> Parse(absl::string_view text) {
    ASSIGN_OR_RETURN(auto fields, backend_plugin::ParseHandleState(
                                      text, "tart",
                                      {"id", "name", "sandbox_dir",
                                       "launcher_pid", "launcher_start_time"}));
    HandleState state{fields["id"], fields["name"], fields["sandbox_dir"], {}};
    std::string label, id;
    if (!absl::SimpleAtoi(fields["launcher_pid"], &state.launcher.pid) ||
        !absl::SimpleAtoi(fields["launcher_start_time"],
                          &state.launcher.start_time) ||
        !ValidSandboxId(state.id) || !ParseVmName(state.name, &label, &id) ||
        id != state.id ||
        !absl::EndsWith(state.sandbox_dir, absl::StrCat("/", state.id)) ||
        !linux_runtime::CleanAbsolutePath(state.sandbox_dir)) {
      return absl::InvalidArgumentError("tart sandbox state is malformed");
    }
    return state;
  }
};

std::string SandboxDir(const Settings& settings, absl::string_view id) {
  return absl::StrCat(settings.runtime_dir, "/", id);
}

// Stops and deletes the VM `name` (gone already is fine), ends its
// supervisor when known, and removes the sandbox directory.
absl::Status Teardown(const Settings& settings, const std::string& name,
                      const HandleState* state) {
  // The supervisor first: it stops `tart run` (SIGINT, as `tart stop`
  // does) and exits with it.
  if (state != nullptr && state->launcher.pid > 0 &&
      !platform::SignalProcess(state->launcher, SIGTERM, 15000)) {
    platform::SignalProcess(state->launcher, SIGKILL, 5000);
  }
  absl::Status status =
      RunOk(settings, {"stop", name, "--timeout", "10"}, absl::Seconds(30))
          .status();
  if (absl::IsNotFound(status) || absl::IsFailedPrecondition(status)) {
    status = absl::OkStatus();  // gone, or not running
  }
  // `tart stop` returns once it sent SIGKILL, before the lock is free:
  // `delete` says the VM "is running" a little longer.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (;;) {
    absl::Status deleted =
        RunOk(settings, {"delete", name}, absl::Seconds(30)).status();
    if (deleted.ok() || absl::IsNotFound(deleted)) break;
    if (!absl::IsFailedPrecondition(deleted) || absl::Now() >= deadline) {
      if (status.ok()) status = deleted;
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  absl::Status removed = state == nullptr
                             ? absl::OkStatus()
                             : corral::RemoveTree(state->sandbox_dir);
  return status.ok() ? removed : status;
}

// Connects to the supervisor's socket and waits for the agent's first
// bytes (its hello), left unread for the daemon. Before the agent listens
// in the guest, the relay holds the connection unanswered.
absl::StatusOr<UniqueFd> ConnectReady(const std::string& sandbox_dir,
                                      absl::Duration wait) {
  ASSIGN_OR_RETURN(UniqueFd fd, backend_plugin::ConnectAgent(sandbox_dir));
  return backend_plugin::WaitForHello(
      std::move(fd), wait,
      "the VM's relay closed the connection (the VM stopped?)");
}

std::string LaunchLogTail(const std::string& sandbox_dir) {
  std::string tail =
      linux_runtime::ReadTail(absl::StrCat(sandbox_dir, "/", kLaunchLog), 1500);
  return tail.empty() ? "" : absl::StrCat("; tart run: ", tail);
}

// Waits until Tart's guest agent answers `tart exec` (the guest booted),
// while the supervisor lives.
absl::Status WaitForGuest(const Settings& settings, const HandleState& state,
                          absl::Time deadline) {
  absl::Status last;
  for (;;) {
    if (!platform::ProcessRuns(state.launcher)) {
      return absl::InternalError(absl::StrCat(
          "the VM stopped while booting", LaunchLogTail(state.sandbox_dir)));
    }
    auto probe = Run(settings, {"exec", state.name, "true"}, absl::Seconds(30));
    if (probe.ok() && probe->exit_code == 0) return absl::OkStatus();
    last = probe.ok() ? CliError("exec", probe->exit_code, probe->error_output)
                      : probe.status();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the VM's guest agent did not answer `tart exec` within ",
          settings.start_timeout_seconds, " s: ", last.message()));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

// The base VM, which must be a Linux guest: a problem, or "".
std::string BaseVmProblem(const Settings& settings) {
  auto got = RunOk(settings, {"get", settings.base_vm, "--format", "json"},
                   absl::Seconds(30));
  if (absl::IsNotFound(got.status())) {
    return absl::StrCat(
        "the base VM '", settings.base_vm,
        "' does not exist: make one with `tart clone <a Linux image> ",
        settings.base_vm,
        "` (it needs Tart's guest agent, sh, mount and "
        "virtiofs; see backends/tart/README.md) or set runtimes.tart.base_vm");
  }
  if (!got.ok()) return std::string(got.status().message());
  auto info = ParseVmInfo(*got);
  if (!info.ok()) return std::string(info.status().message());
  if (info->os != "linux") {
    return absl::StrCat("the base VM '", settings.base_vm, "' runs ", info->os,
                        ", not Linux: the agent is built for Linux guests");
  }
  return "";
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
  if (settings->tart.path.empty()) {
    problems.push_back(settings->tart.problem);
  } else {
    details["tart"] = settings->tart.path;
    details["base_vm"] = settings->base_vm;
    std::string problem = backend_plugin::CliVersionProblem(
        settings->tart, CliVersion, "Tart", &identity);
    if (problem.empty()) problem = BaseVmProblem(*settings);
    if (!problem.empty()) {
      problems.push_back(problem);
    } else {
      details["version"] = identity.version;
      if (identity.fake)
        details["fake"] = "corral's test fake (tests/fakes/tart)";
    }
  }
  if (!backend_plugin::IsExecutableFile(settings->launcher_path)) {
    problems.push_back(absl::StrCat("helper ", settings->launcher_path,
                                    " is not an executable file"));
  }
  backend_plugin::FinishProbe(
      std::move(problems), settings->agent_path,
      identity.fake
          ? absl::StrCat("tart ", identity.version, " (corral test fake)")
          : absl::StrCat("tart ", identity.version),
      backend_plugin::VmGuarantees(identity.fake), &response);
  return response;
}

absl::StatusOr<bv1::CreateResponse> Create(const bv1::CreateRequest& request,
                                           UniqueFd* agent_fd) {
  const absl::Time started = absl::Now();
  const bv1::SandboxSpec& spec = request.spec();
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  if (settings.tart.path.empty()) {
    return absl::FailedPreconditionError(settings.tart.problem);
  }
  RETURN_IF_ERROR(backend_plugin::ValidateSpec(spec));
  if (!request.memory().empty()) {
    return absl::UnimplementedError(
        "the tart runtime has no memory snapshots (Tart saves the memory of "
        "macOS guests only)");
  }
  RETURN_IF_ERROR(backend_plugin::RefuseUserNamespace(spec, "tart"));
  if (spec.rootfs().source_case() != bv1::RootFs::kDirectory) {
    return absl::FailedPreconditionError(
        "the tart runtime runs images only (the host's own root cannot be "
        "shared into a Linux VM): import an image and use --image");
  }
  if (!spec.network_none() || spec.has_tap()) {
    return absl::FailedPreconditionError(
        "network is not built for the tart runtime yet: its sandboxes are "
        "sealed (loopback only)");
  }
  if (!backend_plugin::IsExecutableFile(settings.launcher_path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "helper ", settings.launcher_path, " is not an executable file"));
  }
  backend_plugin::CliIdentity identity;
  if (std::string problem = backend_plugin::CliVersionProblem(
          settings.tart, CliVersion, "Tart", &identity);
      !problem.empty()) {
    return absl::FailedPreconditionError(problem);
  }

  HandleState state{spec.id(),
                    VmName(settings.daemon_label, spec.id()),
                    SandboxDir(settings, spec.id()),
                    {}};
  if (::mkdir(state.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", state.sandbox_dir));
  }
  bool vm_made = false;
  absl::Cleanup undo = [&] {
    absl::Status status = vm_made ? Teardown(settings, state.name, &state)
                                  : corral::RemoveTree(state.sandbox_dir);
    if (!status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };
  ASSIGN_OR_RETURN(std::string agent_dir,
                   backend_plugin::SharedAgentDirectory(settings.runtime_dir,
                                                        settings.agent_path));

  // The VM: a clone of the base, sized.
  auto cloned = RunOk(settings, {"clone", settings.base_vm, state.name},
                      absl::Minutes(10));
  vm_made = true;
  if (absl::IsNotFound(cloned.status())) {
    return absl::FailedPreconditionError(BaseVmProblem(settings));
  }
  RETURN_IF_ERROR(cloned.status());
  const uint64_t memory_mib =
      VmMemoryMib(spec.memory_bytes(), settings.min_memory_mib);
  const uint32_t cpus = VmCpus(spec.cpu_millis());
  RETURN_IF_ERROR(
      RunOk(settings, {"set", state.name, "--cpu", absl::StrCat(cpus),
                       "--memory", absl::StrCat(memory_mib)})
          .status());
  const absl::Time cloned_at = absl::Now();

  // Its supervisor, which runs `tart run` with the console it relays.
  ASSIGN_OR_RETURN(UniqueFd listen_fd,
                   backend_plugin::ListenAgent(state.sandbox_dir));
  runtime_common::SupervisorLaunch launch;
  launch.argv = {settings.launcher_path, "--report-fd", "4",
                 "--listen-fd",          "3",           "--",
                 settings.tart.path};
  RunPlan plan{state.name, spec.rootfs().directory(), spec.workspace_dir(),
               agent_dir};
  for (std::string& arg : RunArguments(plan, "@SERIAL@")) {
    launch.argv.push_back(std::move(arg));
  }
  launch.environment = settings.tart.environment;
  launch.listen_fd = listen_fd.get();
  launch.log_path = absl::StrCat(state.sandbox_dir, "/", kLaunchLog);
  ASSIGN_OR_RETURN(runtime_common::SupervisorStarted supervisor,
                   runtime_common::StartSupervisor(launch));
  listen_fd.Reset();
  state.launcher = supervisor.identity;

  // The guest booted, then the agent started in it.
  const absl::Time deadline =
      started + absl::Seconds(settings.start_timeout_seconds);
  RETURN_IF_ERROR(WaitForGuest(settings, state, deadline));
  const absl::Time booted = absl::Now();
  GuestPlan guest{spec.hostname(), 0};
  ASSIGN_OR_RETURN(
      ProgramResult agent,
      Run(settings, {"exec", state.name, "sh", "-c", GuestStartScript(guest)},
          absl::Minutes(2)));
  if (agent.exit_code != 0) {
    return absl::InternalError(absl::StrCat(
        "starting the agent in the VM failed (exit ", agent.exit_code, "): ",
        absl::StripAsciiWhitespace(agent.error_output + agent.output)
            .substr(0, 2000)));
  }
  auto connection = ConnectReady(state.sandbox_dir, absl::Seconds(30));
  if (!connection.ok()) {
    return Annotate(
        connection.status(),
        absl::StrCat("the VM's agent", LaunchLogTail(state.sandbox_dir)));
  }
  std::move(undo).Cancel();
  Log().debug(
      "sandbox {} created as VM {}: clone {} ms, boot {} ms, agent {} ms",
      spec.id(), state.name, absl::ToInt64Milliseconds(cloned_at - started),
      absl::ToInt64Milliseconds(booted - cloned_at),
      absl::ToInt64Milliseconds(absl::Now() - booted));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(state.Serialize());
  for (int guarantee : backend_plugin::VmGuarantees(identity.fake)) {
    response.add_guarantees(guarantee);
  }
  auto& details = *response.mutable_details();
  details["vm"] = state.name;
  details["base_vm"] = settings.base_vm;
  details["vm_memory_mib"] = absl::StrCat(memory_mib);
  details["vm_cpus"] = absl::StrCat(cpus);
  if ((memory_mib << 20) > spec.memory_bytes()) {
    details["memory_note"] = absl::StrCat(
        "the VM has ", memory_mib, " MiB (runtimes.tart.min_memory_mib ",
        settings.min_memory_mib, "), more than the ", spec.memory_bytes() >> 20,
        " MiB asked: its guest OS needs them");
  }
  details["pids"] = "not limited (the VM's size is the sandbox's limit)";
  if (identity.fake)
    details["fake"] = "corral's test fake: a runc container, no VM";
  *agent_fd = std::move(*connection);
  return response;
}

absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  ASSIGN_OR_RETURN(HandleState state,
                   HandleState::Parse(request.handle().state()));
  if (state.id != request.handle().id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  bv1::AttachResponse response;
  // The supervisor lives as long as `tart run`, which is the VM.
  if (!platform::ProcessRuns(state.launcher)) {
    response.set_reason(absl::StrCat("the VM ", state.name, " has stopped",
                                     LaunchLogTail(state.sandbox_dir)));
    return response;
  }
  auto connection = ConnectReady(state.sandbox_dir, absl::Seconds(10));
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
    return Teardown(settings, state->name, &*state);
  }
  // A damaged or empty state (a create that failed half-way): the VM's
  // name is known from the id.
  const std::string& id = request.handle().id();
  if (!ValidSandboxId(id)) return state.status();
  if (!settings.tart.path.empty()) {
    RETURN_IF_ERROR(
        Teardown(settings, VmName(settings.daemon_label, id), nullptr));
  }
  return corral::RemoveTree(SandboxDir(settings, id));
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest&) {
  return absl::UnimplementedError(
      "the tart runtime does not report usage (Tart has no usage command; "
      "the VM's memory and CPUs are its limits)");
}

absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  bv1::ReconcileResponse response;
  if (settings.tart.path.empty()) return response;  // nothing to find
  backend_plugin::ReconcileScope scope(request, settings.daemon_label);
  ASSIGN_OR_RETURN(std::vector<ListedVm> vms, ListVms(settings));
  std::set<std::string> removed;
  for (const ListedVm& vm : vms) {
    std::string label, id;
    if (!ParseVmName(vm.name, &label, &id) || !scope.Ours(label)) continue;
    if (!scope.orphans() && scope.Known(id)) continue;
    absl::Status status = Teardown(settings, vm.name, nullptr);
    scope.Note(status, absl::StrCat("leftover VM ", vm.name));
    if (status.ok()) removed.insert(scope.Removed(label, id));
  }
  scope.RemoveUnknownSandboxDirs(settings.runtime_dir, &removed);
  if (!scope.status().ok()) return scope.status();
  for (const std::string& id : removed) response.add_removed_ids(id);
  return response;
}

}  // namespace corral::tart_runtime
