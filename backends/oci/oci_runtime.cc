#include "backends/oci/oci_runtime.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
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
#include "backends/common/host_root.h"
#include "backends/common/leftovers.h"
#include "backends/common/plugin_support.h"
#include "backends/common/spec_checks.h"
#include "backends/common/subprocess.h"
#include "backends/common/workspace_disk.h"
#include "backends/linux/agent_image.h"
#include "backends/linux/cgroups.h"
#include "backends/linux/fs_util.h"
#include "backends/oci/bundle_config.h"
#include "backends/oci/oci_state.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"
#include "nlohmann/json.hpp"

namespace corral::oci_runtime {
namespace {

using backend_plugin::kGuaranteeCgroupLimits;
using backend_plugin::kGuaranteeDiskLimit;
using backend_plugin::kGuaranteeEgressPolicy;
using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteeSeccomp;
using backend_plugin::kGuaranteeUserNamespace;

using linux_runtime::CgroupLayout;
using linux_runtime::CgroupMode;
using linux_runtime::SandboxCgroups;

constexpr char kConfigName[] = "config.json";
constexpr char kRootName[] = "rootfs";
constexpr char kPidFileName[] = "init.pid";
constexpr char kLogName[] = "runtime.log";
constexpr uint64_t kDefaultTmpBytes = 64u << 20;
// The agent and a shell need some room; below this a sandbox cannot start.
constexpr absl::Duration kTeardownTimeout = absl::Seconds(5);
constexpr absl::Duration kRuntimeTimeout = absl::Seconds(30);
// Where corral-oci-exec may mount the rootfs when the sandbox has a user
// namespace (see Create): standard, root-owned, world-traversable
// directories whose content neither the runtime nor the sandbox needs. The
// mount exists only in the helper's private mount namespace and hides the
// directory's content there; the first candidate that holds none of the
// paths the runtime must still reach is used. (/dev/shm would do for crun,
// but runc 1.1 then fails to find /proc in the container.)
constexpr const char* kRootMountCandidates[] = {"/mnt", "/media", "/srv",
                                                "/opt", "/run"};

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("oci");
  return *logger;
}

absl::StatusOr<Settings> ReadSettings(const bv1::PluginConfig& config) {
  std::map<std::string, std::string> options(config.options().begin(),
                                             config.options().end());
  std::vector<std::string> ignored;
  ASSIGN_OR_RETURN(
      Settings settings,
      ParseSettings(config.runtime_dir(), config.agent_path(),
                    backend_plugin::PluginDirectory(config), options,
                    backend_plugin::IsExecutableFile, &ignored));
  settings.base_cgroup_parent = settings.cgroup_parent;
  ASSIGN_OR_RETURN(settings.cgroup_parent,
                   backend_plugin::InstanceCgroupParent(
                       settings.base_cgroup_parent, config.instance_id()));
  RETURN_IF_ERROR(backend_plugin::RefuseUnknownOptions(
      "oci", ignored, {"runtime", "cgroup_parent", "workspace_disk"}));
  return settings;
}

absl::Status RequireRuntime(const Settings& settings) {
  if (settings.runtime_path.empty()) {
    return absl::FailedPreconditionError(settings.runtime_problem);
  }
  return absl::OkStatus();
}

// ---- Running the runtime ---------------------------------------------------

// How to invoke one runtime binary for one runtime directory.
struct Runner {
  std::string helper_path;
  std::string runtime_path;
  RuntimeKind kind = RuntimeKind::kRunc;
  std::string state_root;
  // A controller-less cgroup2 mount to hide from crun (hybrid hosts only).
  std::string unmount;
};

Runner MakeRunner(const std::string& helper_path,
                  const std::string& runtime_path, RuntimeKind kind,
                  const std::string& state_root, const CgroupLayout& layout) {
  Runner runner{helper_path, runtime_path, kind, state_root, ""};
  // crun refuses a hybrid layout ("cgroups in hybrid mode not supported");
  // without the controller-less cgroup2 mount it sees plain v1, which it
  // supports. Pure v1 and v2 hosts need nothing.
  if (kind == RuntimeKind::kCrun && layout.mode == CgroupMode::kV1 &&
      !layout.unified_mount.empty()) {
    runner.unmount = layout.unified_mount;
  }
  return runner;
}

struct RuntimeCall {
  // Options before the subcommand (after --root).
  std::vector<std::string> global_args;
  std::vector<std::string> args;
  // Passed as fds 3 and 4 (--preserve-fds 2) when set.
  int listen_fd = -1;
  int image_fd = -1;
  // Mount root_at_source on root_at_dir in the helper's namespace.
  std::string root_at_dir;
  std::string root_at_source;
  // Mount this ext4 block device on workspace_dir in the helper's
  // namespace, which the runtime then binds into the container, and give
  // its root to workspace_owner ("uid:gid").
  std::string workspace_device;
  std::string workspace_dir;
  std::string workspace_owner;
  // stdout and stderr to pipes read here; otherwise /dev/null (a started
  // container inherits the runtime's stdio: it must not hold our pipes).
  bool capture_output = true;
};

// A plain command: output captured, no fds passed.
RuntimeCall Command(std::vector<std::string> args) {
  RuntimeCall call;
  call.args = std::move(args);
  return call;
}

struct RuntimeOutcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Copies of `fd` at 10 or above, so that no dup2 onto 3..5 overwrites a
// source that happens to sit there.
UniqueFd High(int fd) { return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 10)); }

absl::StatusOr<RuntimeOutcome> RunRuntime(const Runner& runner,
                                          const RuntimeCall& call) {
  int pipes[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};  // report, out, err
  for (int i = 0; i < (call.capture_output ? 3 : 1); ++i) {
    if (::pipe2(pipes[i], O_CLOEXEC) != 0) {
      for (auto& pipe : pipes) {
        for (int fd : pipe) {
          if (fd >= 0) ::close(fd);
        }
      }
      return ErrnoStatus("pipe2");
    }
  }
  UniqueFd report_read(pipes[0][0]), out_read(pipes[1][0]),
      err_read(pipes[2][0]);
  UniqueFd report_write = High(pipes[0][1]);
  UniqueFd out_write = call.capture_output ? High(pipes[1][1]) : UniqueFd();
  UniqueFd err_write = call.capture_output ? High(pipes[2][1]) : UniqueFd();
  for (int i = 0; i < 3; ++i) {
    if (pipes[i][1] >= 0) ::close(pipes[i][1]);
  }
  const bool preserve = call.listen_fd >= 0;
  UniqueFd listen_high, image_high;
  if (preserve) {
    listen_high = High(call.listen_fd);
    image_high = High(call.image_fd);
    if (!listen_high || !image_high) return ErrnoStatus("fcntl F_DUPFD");
  }
  if (!report_write || (call.capture_output && (!out_write || !err_write))) {
    return ErrnoStatus("fcntl F_DUPFD");
  }
  const int report_fd = preserve ? kAgentImageFd + 1 : 3;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy_actions = [&] {
    posix_spawn_file_actions_destroy(&actions);
  };
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (call.capture_output) {
    posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  if (preserve) {
    posix_spawn_file_actions_adddup2(&actions, listen_high.get(), kListenFd);
    posix_spawn_file_actions_adddup2(&actions, image_high.get(), kAgentImageFd);
  }
  posix_spawn_file_actions_adddup2(&actions, report_write.get(), report_fd);
  // No other fd of the daemon reaches the runtime or the container.
  posix_spawn_file_actions_addclosefrom_np(&actions, report_fd + 1);

  std::vector<std::string> args = {runner.helper_path, "--report-fd",
                                   absl::StrCat(report_fd)};
  if (!runner.unmount.empty()) {
    args.insert(args.end(), {"--unmount", runner.unmount});
  }
  if (!call.root_at_source.empty()) {
    args.insert(args.end(),
                {"--root-at", call.root_at_dir, call.root_at_source});
  }
  if (!call.workspace_device.empty()) {
    args.insert(args.end(), {"--mount-ext4", call.workspace_device,
                             call.workspace_dir, call.workspace_owner});
  }
  args.insert(args.end(), {"--", runner.runtime_path,
                           absl::StrCat("--root=", runner.state_root)});
  args.insert(args.end(), call.global_args.begin(), call.global_args.end());
  args.insert(args.end(), call.args.begin(), call.args.end());
  // A new session: the runtime and the container never get the daemon's
  // terminal.
  ASSIGN_OR_RETURN(const pid_t helper,
                   runtime_common::SpawnInSession(args, actions));
  // Only to kill it on a timeout; it cannot be reaped (and its pid reused)
  // before it exits, and until then the pidfd pins it.
  UniqueFd helper_pidfd(linux_runtime::PidfdOpen(helper));
  report_write.Reset();
  out_write.Reset();
  err_write.Reset();
  listen_high.Reset();
  image_high.Reset();

  std::string report;
  RuntimeOutcome outcome;
  struct Source {
    UniqueFd* fd;
    std::string* text;
  };
  std::vector<Source> sources = {{&report_read, &report}};
  if (call.capture_output) {
    sources.push_back({&out_read, &outcome.out});
    sources.push_back({&err_read, &outcome.err});
  }
  const absl::Time deadline = absl::Now() + kRuntimeTimeout;
  for (;;) {
    std::vector<pollfd> polls;
    std::vector<Source*> polled;
    for (Source& source : sources) {
      if (*source.fd) {
        polls.push_back({source.fd->get(), POLLIN, 0});
        polled.push_back(&source);
      }
    }
    if (polls.empty()) break;
    int wait_ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) {
      if (helper_pidfd)
        linux_runtime::PidfdSendSignal(helper_pidfd.get(), SIGKILL);
      return absl::DeadlineExceededError(
          absl::StrCat(runner.runtime_path, " ", absl::StrJoin(call.args, " "),
                       " did not finish within ",
                       absl::ToInt64Seconds(kRuntimeTimeout), " s"));
    }
    int ready = ::poll(polls.data(), polls.size(), wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus("poll");
    for (size_t i = 0; i < polls.size(); ++i) {
      if (polls[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = ::read(polls[i].fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        polled[i]->fd->Reset();
        continue;
      }
      if (polled[i]->text->size() < (1u << 20)) {
        polled[i]->text->append(buffer, static_cast<size_t>(n));
      }
    }
  }
  absl::string_view line = absl::StripAsciiWhitespace(report);
  if (absl::ConsumePrefix(&line, "exit ") &&
      absl::SimpleAtoi(line, &outcome.exit_code)) {
    return outcome;
  }
  line = absl::StripAsciiWhitespace(report);
  if (absl::ConsumePrefix(&line, "error ")) {
    return absl::InternalError(absl::StrCat("corral-oci-exec: ", line));
  }
  return absl::InternalError(absl::StrCat(
      runner.runtime_path, " ", absl::StrJoin(call.args, " "),
      line.empty() ? " ended without a report" : absl::StrCat(": ", line)));
}

// The last error the runtime logged (--log-format=json: one object a line,
// with "level" and "msg" in runc and crun alike).
std::string LastLoggedError(const std::string& log_path) {
  std::ifstream in(log_path);
  std::string line, last;
  while (std::getline(in, line)) {
    auto entry =
        nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!entry.is_object() || !entry.contains("msg")) continue;
    std::string level = entry.value("level", "");
    if (level == "error" || level == "fatal" || level == "warning" ||
        last.empty()) {
      if (entry["msg"].is_string()) last = entry["msg"].get<std::string>();
    }
  }
  return last;
}

std::string FailureText(const RuntimeOutcome& outcome) {
  std::string text(absl::StripAsciiWhitespace(outcome.err));
  if (text.empty()) text = absl::StrCat("exit status ", outcome.exit_code);
  return text;
}

// ---- Cgroups -----------------------------------------------------------

// Every cgroup hierarchy mounted on this host (v1 controllers of any kind,
// named ones and cgroup2): the runtimes make a directory in each.
std::vector<std::string> CgroupMountPoints() {
  std::vector<std::string> points;
  auto mountinfo = linux_runtime::ReadFile("/proc/self/mountinfo");
  if (!mountinfo.ok()) return points;
  for (absl::string_view line :
       absl::StrSplit(*mountinfo, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || dash + 1 == fields.end()) {
      continue;
    }
    if (*(dash + 1) == "cgroup" || *(dash + 1) == "cgroup2") {
      // Mount points with spaces (escaped) are not where runtimes look.
      if (fields[4].find('\\') == absl::string_view::npos) {
        points.emplace_back(fields[4]);
      }
    }
  }
  return points;
}

// Whether memory+swap can be limited: v1 memory.memsw.* (swap accounting)
// or v2 memory.swap.max (absent in the root, present in every child).
bool HasSwapAccounting(const CgroupLayout& layout) {
  struct stat st {};
  if (layout.mode == CgroupMode::kV1) {
    auto it = layout.v1_mounts.find("memory");
    return it != layout.v1_mounts.end() &&
           ::stat((it->second + "/memory.memsw.limit_in_bytes").c_str(), &st) ==
               0;
  }
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(layout.unified_mount, error)) {
    if (entry.is_directory(error) &&
        ::stat((entry.path().string() + "/memory.swap.max").c_str(), &st) ==
            0) {
      return true;
    }
  }
  return false;
}

// Kills and removes whatever cgroups of sandbox `id` exist: the linux
// runtime's set (with its freeze-and-kill teardown), then any directory the
// runtime made in other hierarchies (devices, blkio, cpuset, ...).
absl::Status RemoveCgroups(const CgroupLayout& layout,
                           const std::string& parent, const std::string& id) {
  absl::Status status = linux_runtime::KillAndRemoveCgroups(
      SandboxCgroups::For(layout, parent, id), kTeardownTimeout);
  for (const std::string& mount : CgroupMountPoints()) {
    const std::string dir = absl::StrCat(mount, "/", parent, "/", id);
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && errno != ENOTDIR &&
        status.ok()) {
      status = ErrnoStatus(absl::StrCat("rmdir ", dir));
    }
  }
  return status;
}

// ---- Sandboxes ---------------------------------------------------------

// True when `dir` is `path` or one of its ancestors.
bool Covers(const std::string& dir, const std::string& path) {
  return path == dir || absl::StartsWith(path, dir + "/");
}

// A mount point for the rootfs in the helper's namespace that hides none of
// `needed` (paths the runtime opens after the mount).
absl::StatusOr<std::string> RootMountPoint(
    const std::vector<std::string>& needed) {
  for (const char* candidate : kRootMountCandidates) {
    struct stat st {};
    if (::lstat(candidate, &st) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != 0 || (st.st_mode & 0001) == 0) {
      continue;
    }
    bool hides = false;
    for (const std::string& path : needed) hides |= Covers(candidate, path);
    if (!hides) return std::string(candidate);
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "no directory to mount the sandbox's root on for its user namespace: "
      "each of ",
      absl::StrJoin(kRootMountCandidates, ", "),
      " is missing or holds a path the runtime needs"));
}

// An image directory must carry its mount points as real directories: the
// runtime would create missing ones inside the shared image, and follows
// symlinks (a link planted in an image must not redirect a mount).
absl::Status CheckImageMountPoints(const std::string& image) {
  for (const std::string& point : runtime_common::SandboxMountPoints()) {
    const std::string path = image + point;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "image mount point lstat ", point, ": ", std::strerror(errno)));
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("image mount point ", point, " is not a directory"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteNewFile(const std::string& path, const std::string& content) {
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", path));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("write ", path));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Everything of sandbox `id` on the host, whatever state it is in: the
// container (delete -f kills it), cgroups, the runtime's state, the sandbox
// directory. Idempotent.
absl::Status TearDown(const Runner& runner, const std::string& cgroup_parent,
                      const std::string& sandbox_dir, const std::string& id) {
  auto deleted = RunRuntime(runner, Command({"delete", "--force", id}));
  if (!deleted.ok()) {
    Log().warn("sandbox {}: delete: {}", id, deleted.status().ToString());
  } else if (deleted->exit_code != 0) {
    // Usually "does not exist": nothing left for the runtime to do. The
    // cgroup teardown below kills whatever still runs.
    Log().debug("sandbox {}: delete: {}", id, FailureText(*deleted));
  }
  absl::Status status;
  auto layout = CgroupLayout::Detect();
  if (layout.ok()) {
    status = RemoveCgroups(*layout, cgroup_parent, id);
  } else {
    status = layout.status();
  }
  absl::Status state =
      corral::RemoveTree(absl::StrCat(runner.state_root, "/", id));
  absl::Status files = corral::RemoveTree(sandbox_dir);
  for (const absl::Status& other : {state, files}) {
    if (status.ok()) status = other;
  }
  return status;
}

std::string RuntimeVersion(const Runner& runner) {
  auto outcome = RunRuntime(runner, Command({"--version"}));
  if (!outcome.ok() || outcome->exit_code != 0) return "";
  return std::string(absl::StripAsciiWhitespace(outcome->out));
}

struct ContainerState {
  std::string status;
  pid_t pid = 0;
};

// `runtime state <id>`; NOT_FOUND when the runtime does not know it.
absl::StatusOr<ContainerState> QueryState(const Runner& runner,
                                          const std::string& id) {
  ASSIGN_OR_RETURN(RuntimeOutcome outcome,
                   RunRuntime(runner, Command({"state", id})));
  if (outcome.exit_code != 0) {
    return absl::NotFoundError(FailureText(outcome));
  }
  auto json = nlohmann::json::parse(outcome.out, nullptr, false);
  if (!json.is_object() || !json.contains("status")) {
    return absl::InternalError("runtime state: unreadable output");
  }
  ContainerState state;
  state.status = json.value("status", "");
  state.pid = json.value("pid", 0);
  return state;
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
  if (::geteuid() != 0) {
    problems.push_back("the oci runtime needs root (corrald runs as root)");
  }
  auto settings = ReadSettings(request.config());
  auto layout = CgroupLayout::Detect();
  if (layout.ok()) {
    details["cgroup"] = layout->Describe();
  } else {
    details["cgroup"] = "none";
    problems.push_back(absl::StrCat("cgroups: ", layout.status().message()));
  }
  std::string max_userns;
  if (auto text = linux_runtime::ReadFile("/proc/sys/user/max_user_namespaces");
      text.ok()) {
    max_userns = std::string(absl::StripAsciiWhitespace(*text));
  }
  const bool userns = !max_userns.empty() && max_userns != "0";
  details["userns"] = userns ? "yes" : "no";
  details["oom_protection"] =
      backend_plugin::HasCapability(CAP_SYS_RESOURCE) ? "yes" : "no";
  if (!settings.ok()) {
    problems.emplace_back(settings.status().message());
  } else {
    details["cgroup_parent"] = settings->cgroup_parent;
    details["helper"] = settings->helper_path;
    if (settings->runtime_path.empty()) {
      problems.push_back(settings->runtime_problem);
    } else {
      details["runtime"] = settings->runtime_path;
      details["runtime_kind"] = RuntimeKindName(settings->runtime_kind);
    }
    if (!backend_plugin::IsExecutableFile(settings->helper_path)) {
      problems.push_back(absl::StrCat("helper ", settings->helper_path,
                                      " is missing or not executable"));
    }
    if (::access(settings->agent_path.c_str(), R_OK) != 0) {
      problems.push_back(absl::StrCat("agent ", settings->agent_path, ": ",
                                      std::strerror(errno)));
    }
    if (problems.empty() && layout.ok()) {
      Runner runner =
          MakeRunner(settings->helper_path, settings->runtime_path,
                     settings->runtime_kind, settings->StateRoot(), *layout);
      std::string version = RuntimeVersion(runner);
      if (version.empty()) {
        problems.push_back(
            absl::StrCat(settings->runtime_path, " --version failed"));
      } else {
        // "runc version 1.1.5+ds1\ncommit: ...\nlibseccomp: 2.5.4" or
        // "crun version 1.8.1\n...\n+SECCOMP ...".
        details["runtime_version"] = version.substr(0, version.find('\n'));
        const bool seccomp = absl::StrContains(version, "libseccomp") ||
                             absl::StrContains(version, "+SECCOMP");
        details["seccomp"] = seccomp ? "yes" : "no";
        if (!seccomp) {
          problems.push_back(absl::StrCat(settings->runtime_path,
                                          " was built without seccomp"));
        }
      }
    }
  }
  response.set_available(problems.empty());
  if (problems.empty()) {
    response.set_reason(absl::StrCat(details["runtime_version"], ", cgroup ",
                                     details["cgroup"]));
    for (int guarantee : {kGuaranteeCgroupLimits, kGuaranteeSeccomp,
                          kGuaranteeNetworkIsolation, kGuaranteeEgressPolicy}) {
      response.add_guarantees(guarantee);
    }
    if (userns) response.add_guarantees(kGuaranteeUserNamespace);
    if (settings.ok() && settings->workspace_disk &&
        runtime_common::WorkspaceDiskSupport().ok()) {
      response.add_guarantees(kGuaranteeDiskLimit);
    }
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
  RETURN_IF_ERROR(RequireRuntime(settings));
  RETURN_IF_ERROR(backend_plugin::ValidateSpec(spec));
  ASSIGN_OR_RETURN(bool user_namespace,
                   backend_plugin::UserNamespaceOption(spec, "oci"));
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  ASSIGN_OR_RETURN(std::shared_ptr<const UniqueFd> image,
                   linux_runtime::AgentImage(settings.agent_path));
  const bool host_image = spec.rootfs().source_case() == bv1::RootFs::kHost;
  if (!host_image) {
    RETURN_IF_ERROR(CheckImageMountPoints(spec.rootfs().directory()));
  }
  const Runner runner =
      MakeRunner(settings.helper_path, settings.runtime_path,
                 settings.runtime_kind, settings.StateRoot(), layout);

  SandboxRecord record;
  record.id = spec.id();
  record.runtime_path = settings.runtime_path;
  record.runtime_kind = settings.runtime_kind;
  record.sandbox_dir = settings.SandboxDir(spec.id());
  record.state_root = settings.StateRoot();
  record.cgroup_parent = settings.cgroup_parent;
  record.user_namespace = user_namespace;

  if (::mkdir(record.state_root.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", record.state_root));
  }
  if (::mkdir(record.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      // Someone else's: never clean it up from here.
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", record.sandbox_dir));
  }
  // From here on every failure removes everything this call made.
  absl::Cleanup undo = [&] {
    if (auto status = TearDown(runner, record.cgroup_parent, record.sandbox_dir,
                               record.id);
        !status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };

  BundleSpec bundle;
  bundle.id = spec.id();
  bundle.hostname = spec.hostname();
  bundle.workspace_dir = spec.workspace_dir();
  bundle.tmp_bytes =
      spec.disk_bytes() > 0 ? spec.disk_bytes() : kDefaultTmpBytes;
  bundle.user_namespace = user_namespace;
  bundle.host_uid = spec.host_uid();
  bundle.host_gid = spec.host_gid();
  bundle.memory_bytes = spec.memory_bytes();
  bundle.pids = spec.pids();
  bundle.cpu_millis = spec.cpu_millis();
  bundle.netns_path = spec.netns_path();
  bundle.cgroups_path =
      absl::StrCat("/", settings.cgroup_parent, "/", spec.id());
  bundle.swap_accounting = HasSwapAccounting(layout);
  bundle.cgroup_v2 = layout.mode == CgroupMode::kV2;

  std::string root_source;
  if (host_image) {
    root_source = absl::StrCat(record.sandbox_dir, "/", kRootName);
    runtime_common::HostRootOptions options;
    options.hostname = spec.hostname();
    if (user_namespace) {
      options.root_uid = spec.host_uid();
      options.root_gid = spec.host_gid();
    }
    RETURN_IF_ERROR(
        Annotate(runtime_common::WriteHostRootSkeleton(root_source, options),
                 "host image"));
    bundle.host_binds = runtime_common::HostRootBinds();
  } else {
    root_source = spec.rootfs().directory();
  }
  // The runtime mounts the rootfs from inside the user namespace, as the
  // sandbox's mapped root, which cannot traverse the root-only directories
  // above it (the daemon's state directory): the helper mounts it on a
  // traversable directory in its private mount namespace first.
  std::string root_mount_point;
  if (user_namespace) {
    std::vector<std::string> needed = {
        settings.runtime_dir, spec.workspace_dir(), root_source,
        settings.runtime_path, settings.helper_path};
    for (const auto& bind : bundle.host_binds) needed.push_back(bind.source);
    ASSIGN_OR_RETURN(root_mount_point, RootMountPoint(needed));
  }
  bundle.root_path = user_namespace ? root_mount_point : root_source;

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
  // The workspace's own filesystem, of the sandbox's disk size: the helper
  // mounts it in its private mount namespace where the bundle binds the
  // workspace from, so the container gets it and the host never sees it.
  // The loop device stays attached while mounted; this fd only until the
  // container runs.
  ASSIGN_OR_RETURN(
      runtime_common::LoopDevice workspace_disk,
      runtime_common::PrepareWorkspaceDisk(
          spec.workspace_dir(), spec.disk_bytes(), settings.workspace_disk,
          runtime_common::DiskPoolDir(settings.runtime_dir)));
  RETURN_IF_ERROR(
      WriteNewFile(absl::StrCat(record.sandbox_dir, "/", kConfigName),
                   BundleConfig(bundle).dump(1)));
  ASSIGN_OR_RETURN(UniqueFd listen_fd,
                   backend_plugin::ListenAgent(record.sandbox_dir));
  // Connecting before the agent runs is fine: the connection waits in the
  // listen backlog until the agent accepts it.
  ASSIGN_OR_RETURN(UniqueFd connection,
                   backend_plugin::ConnectAgent(record.sandbox_dir));

  const std::string pid_file =
      absl::StrCat(record.sandbox_dir, "/", kPidFileName);
  const std::string log_file = absl::StrCat(record.sandbox_dir, "/", kLogName);
  RuntimeCall run;
  run.global_args = {absl::StrCat("--log=", log_file), "--log-format=json"};
  run.args = {"run",
              "--detach",
              absl::StrCat("--bundle=", record.sandbox_dir),
              absl::StrCat("--pid-file=", pid_file),
              absl::StrCat("--preserve-fds=", kPreservedFds),
              spec.id()};
  run.listen_fd = listen_fd.get();
  run.image_fd = image->get();
  run.capture_output = false;
  if (user_namespace) {
    run.root_at_dir = root_mount_point;
    run.root_at_source = root_source;
  }
  run.workspace_device = workspace_disk.path;
  run.workspace_dir = spec.workspace_dir();
  run.workspace_owner =
      user_namespace ? absl::StrCat(spec.host_uid(), ":", spec.host_gid())
                     : "0:0";
  const absl::Time launched = absl::Now();
  ASSIGN_OR_RETURN(RuntimeOutcome outcome, RunRuntime(runner, run));
  const absl::Time ran = absl::Now();
  if (outcome.exit_code != 0) {
    std::string message = LastLoggedError(log_file);
    return absl::InternalError(absl::StrCat(
        RuntimeKindName(settings.runtime_kind), " run: ",
        message.empty() ? absl::StrCat("exit status ", outcome.exit_code)
                        : message));
  }
  listen_fd.Reset();
  ASSIGN_OR_RETURN(std::string pid_text, linux_runtime::ReadFile(pid_file));
  int64_t pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(pid_text), &pid) ||
      pid <= 1) {
    return absl::InternalError(
        absl::StrCat("unreadable pid file ", pid_file, ": ", pid_text));
  }
  auto stat = linux_runtime::ReadProcStat(static_cast<pid_t>(pid));
  if (!stat.ok() || stat->state == 'Z') {
    return absl::InternalError(
        absl::StrCat("the agent of sandbox ", spec.id(), " exited at start"));
  }
  record.init_pid = static_cast<pid_t>(pid);
  record.init_start_time = stat->start_time;
  // The agent must outlive an OOM inside its sandbox. The runtime cannot
  // lower oom_score_adj from inside a user namespace (runc fails the start),
  // so it is written here, before any process of the sandbox exists that
  // could inherit another value: the agent starts nothing until the daemon
  // asks. Needs CAP_SYS_RESOURCE (probe: oom_protection).
  if (backend_plugin::HasCapability(CAP_SYS_RESOURCE)) {
    RETURN_IF_ERROR(linux_runtime::WriteFile(
        absl::StrCat("/proc/", pid, "/oom_score_adj"), "-1000"));
  }
  std::move(undo).Cancel();
  Log().debug("sandbox {} created: prepare {} us, {} {} us", spec.id(),
              absl::ToInt64Microseconds(launched - started),
              RuntimeKindName(settings.runtime_kind),
              absl::ToInt64Microseconds(ran - launched));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(record.Serialize());
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
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  ASSIGN_OR_RETURN(SandboxRecord record,
                   SandboxRecord::Parse(request.handle().state()));
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  const Runner runner =
      MakeRunner(settings.helper_path, record.runtime_path, record.runtime_kind,
                 record.state_root, layout);
  bv1::AttachResponse response;
  auto state = QueryState(runner, record.id);
  if (absl::IsNotFound(state.status())) {
    response.set_reason(
        absl::StrCat("the container is gone: ", state.status().message()));
    return response;
  }
  if (!state.ok()) return state.status();
  if (state->status != "running") {
    response.set_reason(
        absl::StrCat("the container is ", state->status, ", not running"));
    return response;
  }
  auto stat = linux_runtime::ReadProcStat(record.init_pid);
  if (state->pid != record.init_pid || !stat.ok() ||
      stat->start_time != record.init_start_time || stat->state == 'Z') {
    response.set_reason(absl::StrCat("the sandbox's agent (pid ",
                                     record.init_pid, ") has exited"));
    return response;
  }
  auto connection = backend_plugin::ConnectAgent(record.sandbox_dir);
  return backend_plugin::AttachTo(std::move(connection), agent_fd);
}

absl::Status Destroy(const bv1::DestroyRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  auto record = SandboxRecord::Parse(request.handle().state());
  if (!record.ok()) {
    // A damaged or empty state: clean up by id with today's settings.
    const std::string& id = request.handle().id();
    if (!linux_runtime::ValidSandboxId(id)) return record.status();
    RETURN_IF_ERROR(RequireRuntime(settings));
    return TearDown(
        MakeRunner(settings.helper_path, settings.runtime_path,
                   settings.runtime_kind, settings.StateRoot(), layout),
        settings.cgroup_parent, settings.SandboxDir(id), id);
  }
  if (record->id != request.handle().id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  // Killing the container's init first (its pid namespace goes with it)
  // spares `delete --force` its kill-and-poll loop: runc sleeps 100 ms
  // before it first checks whether a killed container has stopped.
  linux_runtime::KillProcessAndWait(record->init_pid, record->init_start_time,
                                    /*timeout_ms=*/500);
  return TearDown(MakeRunner(settings.helper_path, record->runtime_path,
                             record->runtime_kind, record->state_root, layout),
                  record->cgroup_parent, record->sandbox_dir, record->id);
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest& request) {
  ASSIGN_OR_RETURN(SandboxRecord record,
                   SandboxRecord::Parse(request.handle().state()));
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  ASSIGN_OR_RETURN(linux_runtime::CgroupStats stats,
                   linux_runtime::ReadCgroupStats(SandboxCgroups::For(
                       layout, record.cgroup_parent, record.id)));
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
  const Runner runner =
      MakeRunner(settings.helper_path, settings.runtime_path,
                 settings.runtime_kind, settings.StateRoot(), layout);
  return backend_plugin::RemoveUnknownSandboxes(
      backend_plugin::SandboxIdsOnHost(
          layout, settings.cgroup_parent,
          {settings.runtime_dir, settings.StateRoot()}),
      request, [&](const std::string& id) {
        if (settings.runtime_path.empty()) {
          // Without a runtime binary its containers cannot be deleted; the
          // cgroup teardown still kills their processes.
          Log().warn("reconcile: {}; removing {} without it",
                     settings.runtime_problem, id);
        }
        return TearDown(runner, settings.cgroup_parent, settings.SandboxDir(id),
                        id);
      });
}

}  // namespace corral::oci_runtime
