#include "backends/linux/linux_runtime.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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
#include "backends/common/subprocess.h"
#include "backends/common/workspace_disk.h"
#include "backends/linux/agent_image.h"
#include "backends/linux/cgroups.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/launch_config.h"
#include "backends/linux/sandbox_state.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

extern "C" char** environ;

namespace corral::linux_runtime {
namespace {

using backend_plugin::kGuaranteeCgroupLimits;
using backend_plugin::kGuaranteeDiskLimit;
using backend_plugin::kGuaranteeEgressPolicy;
using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteeSeccomp;
using backend_plugin::kGuaranteeUserNamespace;

constexpr char kDefaultCgroupParent[] = "corral";
constexpr char kStagingName[] = "root";
constexpr uint64_t kDefaultTmpBytes = 64u << 20;
// The agent and a shell need some room; below this a sandbox cannot start.
constexpr absl::Duration kTeardownTimeout = absl::Seconds(5);

// The category logger, made once: creating it from two threads at the same
// time would race in spdlog's registry.
spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("linux");
  return *logger;
}

// Settings from PluginConfig.options, validated.
struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  std::string launcher_path;
  // runtimes.linux.cgroup_parent, shared by every daemon instance.
  std::string base_cgroup_parent;
  // Where this instance's sandboxes' cgroups go: <base>/<instance id>.
  std::string cgroup_parent;
  // runtimes.linux.workspace_disk: each workspace a filesystem of the
  // sandbox's disk size (the disk limit); false: a plain directory, no
  // limit, a few ms faster to create.
  bool workspace_disk = true;
};

absl::StatusOr<Settings> ReadSettings(const bv1::PluginConfig& config) {
  Settings settings;
  settings.runtime_dir = config.runtime_dir();
  settings.agent_path = config.agent_path();
  std::string plugin_dir = backend_plugin::PluginDirectory(config);
  settings.launcher_path = absl::StrCat(plugin_dir, "/", kLauncherName);
  settings.cgroup_parent = kDefaultCgroupParent;
  std::vector<std::string> unknown;
  for (const auto& [key, value] : config.options()) {
    if (key == "cgroup_parent") {
      settings.cgroup_parent = value;
    } else if (key == "workspace_disk") {
      ASSIGN_OR_RETURN(settings.workspace_disk,
                       backend_plugin::BoolOption("linux", key, value));
    } else {
      unknown.push_back(key);
    }
  }
  RETURN_IF_ERROR(backend_plugin::RefuseUnknownOptions(
      "linux", unknown, {"cgroup_parent", "workspace_disk"}));
  if (!ValidCgroupParent(settings.cgroup_parent)) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtimes.linux.cgroup_parent '", settings.cgroup_parent,
                     "' must be a relative path of [A-Za-z0-9._-] components"));
  }
  settings.base_cgroup_parent = settings.cgroup_parent;
  ASSIGN_OR_RETURN(settings.cgroup_parent,
                   backend_plugin::InstanceCgroupParent(
                       settings.base_cgroup_parent, config.instance_id()));
  if (!absl::StartsWith(settings.runtime_dir, "/")) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  return settings;
}

std::string SandboxDir(const Settings& settings, absl::string_view id) {
  return absl::StrCat(settings.runtime_dir, "/", id);
}

// Starts the launcher with exactly the fds of launch_config.h and waits for
// its report. Uses posix_spawn (vfork-like, no code of ours runs in the
// child of this multithreaded process), and never waits for the launcher's
// exit: the end of its report pipe says it is done.
absl::StatusOr<LaunchReport> RunLauncher(const Settings& settings,
                                         const LaunchConfig& config,
                                         int listen_fd, int image_fd) {
  int report_pipe[2];
  if (::pipe2(report_pipe, O_CLOEXEC) != 0) return ErrnoStatus("pipe2");
  UniqueFd report_read(report_pipe[0]);
  UniqueFd report_write(report_pipe[1]);
  // Copies above the target numbers, so that no dup2 below can overwrite a
  // source that happens to sit at 3, 4 or 5.
  auto high = [](int fd) { return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 10)); };
  UniqueFd listen_high = high(listen_fd);
  UniqueFd image_high = high(image_fd);
  UniqueFd report_high = high(report_write.get());
  if (!listen_high || !image_high || !report_high) {
    return ErrnoStatus("fcntl F_DUPFD_CLOEXEC");
  }
  report_write.Reset();

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy_actions = [&] {
    posix_spawn_file_actions_destroy(&actions);
  };
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, listen_high.get(), kListenFd);
  posix_spawn_file_actions_adddup2(&actions, image_high.get(), kAgentImageFd);
  posix_spawn_file_actions_adddup2(&actions, report_high.get(), kReportFd);
  // No other fd of the daemon reaches the launcher, whatever another thread
  // opened without O_CLOEXEC.
  posix_spawn_file_actions_addclosefrom_np(&actions, kReportFd + 1);

  // A new session: the launcher and the sandbox never have the daemon's
  // terminal (TIOCSTI).
  std::vector<std::string> argv = config.ToArgs();
  argv.insert(argv.begin(), settings.launcher_path);
  ASSIGN_OR_RETURN(const pid_t launcher,
                   runtime_common::SpawnInSession(argv, actions));
  // Only to kill it on a timeout; it cannot be reaped (and its pid reused)
  // before it exits, and until then the pidfd pins it.
  UniqueFd launcher_pidfd(PidfdOpen(launcher));
  report_high.Reset();
  listen_high.Reset();
  image_high.Reset();

  std::string report;
  const absl::Time deadline =
      absl::Now() + absl::Seconds(kLauncherTimeoutSeconds + 5);
  for (;;) {
    int wait_ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) {
      if (launcher_pidfd) PidfdSendSignal(launcher_pidfd.get(), SIGKILL);
      return absl::DeadlineExceededError(
          absl::StrCat(kLauncherName, " did not report within ",
                       kLauncherTimeoutSeconds + 5, " s"));
    }
    pollfd p{report_read.get(), POLLIN, 0};
    int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus("poll launcher report");
    if (ready == 0) continue;
    char buffer[1024];
    ssize_t n = ::read(report_read.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read launcher report");
    if (n == 0) break;
    report.append(buffer, static_cast<size_t>(n));
    if (report.size() > 64 * 1024) {
      return absl::InternalError("launcher report too long");
    }
  }
  return LaunchReport::Parse(report);
}

// Kills the init through a pidfd when its start time still matches (a pid
// alone may already belong to another process), and waits (bounded) until
// it has exited: PID 1 dying takes its whole pid namespace along, so the
// cgroups are then usually empty and need no freezing.
void KillInit(pid_t pid, uint64_t start_time) {
  KillProcessAndWait(pid, start_time, /*timeout_ms=*/500);
}

// Removes every host trace of a sandbox: processes, cgroups, runtime files.
absl::Status Teardown(const SandboxCgroups& cgroups,
                      const std::string& sandbox_dir) {
  absl::Status status = KillAndRemoveCgroups(cgroups, kTeardownTimeout);
  absl::Status removed = corral::RemoveTree(sandbox_dir);
  if (status.ok()) status = removed;
  return status;
}

std::string ReadTrimmed(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return "";
  std::string value(absl::StripAsciiWhitespace(*text));
  return value;
}

}  // namespace

absl::Status CheckConfig(const bv1::PluginConfig& config) {
  return ReadSettings(config).status();
}

bv1::ProbeResponse Probe(const bv1::ProbeRequest& request) {
  bv1::ProbeResponse response;
  auto& details = *response.mutable_details();
  std::vector<std::string> problems;
  struct utsname uts {};
  if (::uname(&uts) == 0) details["kernel"] = uts.release;

  auto settings = ReadSettings(request.config());
  if (!settings.ok()) problems.emplace_back(settings.status().message());

  if (::geteuid() != 0) {
    problems.push_back("the linux runtime needs root (corrald runs as root)");
  }
  // User namespaces.
  std::string max_userns = ReadTrimmed("/proc/sys/user/max_user_namespaces");
  bool userns = ::access("/proc/self/ns/user", F_OK) == 0 &&
                !max_userns.empty() && max_userns != "0";
  details["userns"] = userns ? "yes" : "no";
  if (!userns) problems.push_back("user namespaces are disabled");
  // seccomp.
  bool seccomp = ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
  unsigned api = seccomp_api_get();
  const scmp_version* version = seccomp_version();
  details["seccomp"] = absl::StrCat(seccomp ? "yes" : "no", " api=", api,
                                    " libseccomp=", version->major, ".",
                                    version->minor, ".", version->micro);
  if (!seccomp || api < 1)
    problems.push_back("seccomp filters are unavailable");
  // cgroups.
  auto layout = CgroupLayout::Detect();
  if (layout.ok()) {
    details["cgroup"] = layout->Describe();
    if (settings.ok()) details["cgroup_parent"] = settings->cgroup_parent;
  } else {
    details["cgroup"] = "none";
    problems.push_back(absl::StrCat("cgroups: ", layout.status().message()));
  }
  // Workspaces as filesystems of their own (the disk limit).
  bool disk_limit = false;
  if (settings.ok() && !settings->workspace_disk) {
    details["disk_limit"] = "no: runtimes.linux.workspace_disk = false";
  } else if (absl::Status disks = runtime_common::WorkspaceDiskSupport();
             disks.ok()) {
    details["disk_limit"] = "yes";
    disk_limit = true;
  } else {
    details["disk_limit"] = absl::StrCat("no: ", disks.message());
  }
  // Whether the agent can be shielded from the OOM killer (oom_score_adj
  // -1000 needs CAP_SYS_RESOURCE).
  details["oom_protection"] =
      backend_plugin::HasCapability(CAP_SYS_RESOURCE) ? "yes" : "no";
  // Our own files.
  if (settings.ok()) {
    details["launcher"] = settings->launcher_path;
    if (::access(settings->launcher_path.c_str(), X_OK) != 0) {
      problems.push_back(absl::StrCat("launcher ", settings->launcher_path,
                                      ": ", std::strerror(errno)));
    }
    if (::access(settings->agent_path.c_str(), R_OK) != 0) {
      problems.push_back(absl::StrCat("agent ", settings->agent_path, ": ",
                                      std::strerror(errno)));
    }
  }
  response.set_available(problems.empty());
  if (problems.empty()) {
    response.set_reason(absl::StrCat("cgroup ", details["cgroup"]));
    for (int guarantee :
         {kGuaranteeCgroupLimits, kGuaranteeSeccomp, kGuaranteeNetworkIsolation,
          kGuaranteeEgressPolicy, kGuaranteeUserNamespace}) {
      response.add_guarantees(guarantee);
    }
    if (disk_limit) response.add_guarantees(kGuaranteeDiskLimit);
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
  ASSIGN_OR_RETURN(bool user_namespace,
                   backend_plugin::UserNamespaceOption(spec, "linux"));
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  ASSIGN_OR_RETURN(std::shared_ptr<const UniqueFd> image,
                   AgentImage(settings.agent_path));

  SandboxState state;
  state.id = spec.id();
  state.user_namespace = user_namespace;
  state.sandbox_dir = SandboxDir(settings, spec.id());
  state.cgroups =
      SandboxCgroups::For(layout, settings.cgroup_parent, spec.id());

  if (::mkdir(state.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      // Someone else's: never clean it up from here.
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", state.sandbox_dir));
  }
  // From here on every failure removes everything this call made.
  absl::Cleanup undo = [&] {
    if (auto status = Teardown(state.cgroups, state.sandbox_dir);
        !status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };
  const std::string staging =
      absl::StrCat(state.sandbox_dir, "/", kStagingName);
  if (::mkdir(staging.c_str(), 0700) != 0) {
    return ErrnoStatus(absl::StrCat("mkdir ", staging));
  }
  CgroupLimits limits{spec.memory_bytes(), spec.pids(), spec.cpu_millis()};
  if (auto status = CreateCgroups(layout, state.cgroups, limits);
      !status.ok()) {
    // ALREADY_EXISTS: the cgroup belongs to another sandbox; keep it.
    if (absl::IsAlreadyExists(status)) state.cgroups = SandboxCgroups{};
    return status;
  }
  if (user_namespace) {
    // The sandbox's root (host_uid) must be able to write its workspace.
    UniqueFd workspace(::open(spec.workspace_dir().c_str(),
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!workspace)
      return ErrnoStatus(absl::StrCat("open ", spec.workspace_dir()));
    if (::fchown(workspace.get(), spec.host_uid(), spec.host_gid()) != 0) {
      return ErrnoStatus(absl::StrCat("fchown ", spec.workspace_dir(), " to ",
                                      spec.host_uid(), ":", spec.host_gid()));
    }
  }
  // The workspace's own filesystem, of the sandbox's disk size, which the
  // sandbox's mount namespace mounts; the loop device stays attached while
  // mounted, and this fd only until the launcher has mounted it.
  ASSIGN_OR_RETURN(
      runtime_common::LoopDevice workspace_disk,
      runtime_common::PrepareWorkspaceDisk(
          spec.workspace_dir(), spec.disk_bytes(), settings.workspace_disk,
          runtime_common::DiskPoolDir(settings.runtime_dir)));
  ASSIGN_OR_RETURN(UniqueFd listen_fd,
                   backend_plugin::ListenAgent(state.sandbox_dir));
  // Connecting before the agent runs is fine: the connection waits in the
  // listen backlog until the agent accepts it.
  ASSIGN_OR_RETURN(UniqueFd connection,
                   backend_plugin::ConnectAgent(state.sandbox_dir));

  LaunchConfig config;
  config.workspace_device = workspace_disk.path;
  config.id = spec.id();
  config.hostname = spec.hostname();
  config.rootfs_host = spec.rootfs().source_case() == bv1::RootFs::kHost;
  config.rootfs_dir = spec.rootfs().directory();
  config.staging_dir = staging;
  config.workspace_dir = spec.workspace_dir();
  config.tmp_bytes =
      spec.disk_bytes() > 0 ? spec.disk_bytes() : kDefaultTmpBytes;
  config.user_namespace = user_namespace;
  config.host_uid = spec.host_uid();
  config.host_gid = spec.host_gid();
  config.cgroup_procs = state.cgroups.ProcsFiles();
  config.netns_path = spec.netns_path();

  const absl::Time launched = absl::Now();
  ASSIGN_OR_RETURN(
      LaunchReport report,
      RunLauncher(settings, config, listen_fd.get(), image->get()));
  const absl::Time reported = absl::Now();
  if (!report.ok) {
    return report.error.ok() ? absl::InternalError("launcher failed")
                             : report.error;
  }
  // The report's start time was read while the init was the launcher's
  // unreaped child; a match now proves the pid still names it.
  auto stat = ReadProcStat(report.pid);
  if (!stat.ok() || stat->start_time != report.start_time ||
      stat->state == 'Z') {
    return absl::InternalError(
        absl::StrCat("the agent of sandbox ", spec.id(), " exited at start"));
  }
  state.init_pid = report.pid;
  state.init_start_time = report.start_time;
  std::move(undo).Cancel();
  Log().debug("sandbox {} created: prepare {} us, launcher {} us", spec.id(),
              absl::ToInt64Microseconds(launched - started),
              absl::ToInt64Microseconds(reported - launched));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(state.Serialize());
  for (int guarantee : {kGuaranteeCgroupLimits, kGuaranteeSeccomp,
                        kGuaranteeNetworkIsolation}) {
    response.add_guarantees(guarantee);
  }
  if (user_namespace) response.add_guarantees(kGuaranteeUserNamespace);
  // On the daemon's egress path, which enforces the policy.
  if (!spec.netns_path().empty()) {
    response.add_guarantees(kGuaranteeEgressPolicy);
  }
  if (!workspace_disk.path.empty()) {
    response.add_guarantees(kGuaranteeDiskLimit);
  }
  *agent_fd = std::move(connection);
  return response;
}

absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd) {
  ASSIGN_OR_RETURN(SandboxState state,
                   SandboxState::Parse(request.handle().state()));
  bv1::AttachResponse response;
  auto stat = ReadProcStat(state.init_pid);
  if (!stat.ok()) {
    response.set_reason(absl::StrCat("the sandbox's init (pid ", state.init_pid,
                                     ") has exited"));
    return response;
  }
  if (stat->start_time != state.init_start_time) {
    response.set_reason(absl::StrCat("the sandbox's init (pid ", state.init_pid,
                                     ") has exited; the pid was reused"));
    return response;
  }
  if (stat->state == 'Z' || stat->state == 'X') {
    response.set_reason(absl::StrCat("the sandbox's init (pid ", state.init_pid,
                                     ") has exited (not yet reaped)"));
    return response;
  }
  auto connection = backend_plugin::ConnectAgent(state.sandbox_dir);
  return backend_plugin::AttachTo(std::move(connection), agent_fd);
}

absl::Status Destroy(const bv1::DestroyRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  auto state = SandboxState::Parse(request.handle().state());
  if (!state.ok()) {
    // A damaged or empty state (create failed half-way in an older daemon):
    // clean up by id with today's layout.
    const std::string& id = request.handle().id();
    if (!ValidSandboxId(id)) return state.status();
    ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
    return Teardown(SandboxCgroups::For(layout, settings.cgroup_parent, id),
                    SandboxDir(settings, id));
  }
  if (state->id != request.handle().id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  // The cgroup kill then catches anything else (the launcher, a process in
  // transit).
  KillInit(state->init_pid, state->init_start_time);
  return Teardown(state->cgroups, state->sandbox_dir);
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest& request) {
  ASSIGN_OR_RETURN(SandboxState state,
                   SandboxState::Parse(request.handle().state()));
  ASSIGN_OR_RETURN(CgroupStats stats, ReadCgroupStats(state.cgroups));
  return backend_plugin::StatsResponseFrom(stats);
}

absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  if (request.orphans()) {
    return backend_plugin::RemoveOrphanInstances(
        layout, settings.base_cgroup_parent, request);
  }
  return backend_plugin::RemoveUnknownSandboxes(
      backend_plugin::SandboxIdsOnHost(layout, settings.cgroup_parent,
                                       {settings.runtime_dir}),
      request, [&](const std::string& id) {
        return Teardown(SandboxCgroups::For(layout, settings.cgroup_parent, id),
                        SandboxDir(settings, id));
      });
}

}  // namespace corral::linux_runtime
