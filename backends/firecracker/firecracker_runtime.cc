#include "backends/firecracker/firecracker_runtime.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

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
#include "backends/firecracker/api_client.h"
#include "backends/firecracker/firecracker_settings.h"
#include "backends/linux/cgroups.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/sandbox_state.h"
#include "backends/qemu/vm_assets.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::firecracker_runtime {
namespace {

using backend_plugin::kGuaranteeCgroupLimits;
using backend_plugin::kGuaranteeDiskLimit;
using backend_plugin::kGuaranteeMemorySnapshot;
using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteePause;
using backend_plugin::kGuaranteeSeparateKernel;

using linux_runtime::CgroupLayout;
using linux_runtime::CgroupMode;
using linux_runtime::SandboxCgroups;
using qemu_runtime::Kernel;

// The guest's vsock address: its CID and the agent's port.
constexpr uint32_t kGuestCid = 3;
constexpr uint32_t kAgentPort = 1024;

// Inside the jail (paths Firecracker sees, relative to its chroot).
constexpr char kApiSocket[] = "run/firecracker.socket";
constexpr char kVsockSocket[] = "v.sock";
constexpr char kKernelFile[] = "vmlinux";
constexpr char kInitrdFile[] = "initrd.cpio";
constexpr char kRootDiskFile[] = "rootfs.ext4";
constexpr char kWorkspaceFile[] = "workspace.ext4";
constexpr char kSnapshotDir[] = "snapshot";
constexpr char kSnapshotState[] = "vm.snap";
constexpr char kSnapshotMemory[] = "vm.mem";
// In the sandbox directory.
constexpr char kConsoleLog[] = "console.log";
// A saved machine: its limits and hostname, which a fork keeps.
constexpr char kMachineFile[] = "machine";
constexpr char kMemoryStatePrefix[] = "firecracker-memory-1 ";

constexpr const char* kWorkspaceDisk = runtime_common::kWorkspaceDiskName;
constexpr uint64_t kDefaultTmpBytes = 64u << 20;
// Beyond the guest's RAM, what Firecracker (or a VMM standing in for it)
// may use on the host.
constexpr uint64_t kHostOverheadBytes = 256u << 20;
constexpr uint32_t kHostPids = 256;
// A snapshot's memory file beyond the guest's RAM (device state).
constexpr uint64_t kSnapshotOverheadBytes = 64u << 20;
constexpr uint64_t kCpuPeriodUs = 100000;
constexpr absl::Duration kApiTimeout = absl::Seconds(10);
constexpr absl::Duration kSnapshotTimeout = absl::Minutes(5);
constexpr absl::Duration kTeardownTimeout = absl::Seconds(5);

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("firecracker");
  return *logger;
}

absl::StatusOr<Settings> ReadSettings(const bv1::PluginConfig& config) {
  std::map<std::string, std::string> options(config.options().begin(),
                                             config.options().end());
  std::vector<std::string> ignored;
  const char* path = std::getenv("PATH");
  ASSIGN_OR_RETURN(Settings settings,
                   ParseSettings(config.runtime_dir(), config.agent_path(),
                                 options, path == nullptr ? "" : path,
                                 backend_plugin::IsExecutableFile, &ignored));
  settings.base_cgroup_parent = settings.cgroup_parent;
  ASSIGN_OR_RETURN(settings.cgroup_parent,
                   backend_plugin::InstanceCgroupParent(
                       settings.base_cgroup_parent, config.instance_id()));
  RETURN_IF_ERROR(backend_plugin::RefuseUnknownOptions(
      "firecracker", ignored,
      {"firecracker", "jailer", "kernel_dir", "chroot_base_dir",
       "cgroup_parent", "overhead_mib", "boot_timeout_seconds",
       "console_log"}));
  return settings;
}

absl::Status MakeDir(const std::string& path, mode_t mode, uid_t uid,
                     gid_t gid) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", path));
  }
  if (::lchown(path.c_str(), uid, gid) != 0) {
    return ErrnoStatus(absl::StrCat("chown ", path));
  }
  return absl::OkStatus();
}

// The memory, pids and CPU limits as the jailer's --cgroup FILE=VALUE
// arguments, in the host's cgroup version.
std::vector<std::string> CgroupArguments(const CgroupLayout& layout,
                                         uint64_t memory_bytes, uint32_t pids,
                                         uint32_t cpu_millis) {
  const uint64_t quota =
      static_cast<uint64_t>(cpu_millis) * kCpuPeriodUs / 1000;
  std::vector<std::string> argv;
  auto add = [&](std::string setting) {
    argv.push_back("--cgroup");
    argv.push_back(std::move(setting));
  };
  if (layout.mode == CgroupMode::kV2) {
    add(absl::StrCat("memory.max=", memory_bytes));
    add("memory.swap.max=0");
    add(absl::StrCat("pids.max=", pids));
    add(absl::StrCat("cpu.max=", quota, " ", kCpuPeriodUs));
  } else {
    add(absl::StrCat("memory.limit_in_bytes=", memory_bytes));
    add(absl::StrCat("pids.max=", pids));
    add(absl::StrCat("cpu.cfs_period_us=", kCpuPeriodUs));
    add(absl::StrCat("cpu.cfs_quota_us=", quota));
    // A freezer cgroup too: teardown freezes the sandbox's processes before
    // it kills them, so that none can fork while they are killed.
    if (layout.v1_mounts.count("freezer") != 0) add("freezer.state=THAWED");
  }
  return argv;
}

// Everything of sandbox `id` on the host: the processes in its cgroups
// (Firecracker), the cgroups, its jail and its runtime directory.
absl::Status TearDown(const Settings& settings,
                      const std::string& cgroup_parent, const std::string& id,
                      const std::string& jail_dir) {
  absl::Status status;
  auto layout = CgroupLayout::Detect();
  if (layout.ok()) {
    status = linux_runtime::KillAndRemoveCgroups(
        SandboxCgroups::For(*layout, cgroup_parent, id), kTeardownTimeout);
  } else {
    status = layout.status();
  }
  for (const std::string& dir : {jail_dir, settings.SandboxDir(id)}) {
    absl::Status removed = corral::RemoveTree(dir);
    if (status.ok()) status = removed;
  }
  return status;
}

// What the sandbox's guest is told on its kernel command line
// (guest-agent/vm_init.h): its disks by place (Firecracker attaches them in
// the order they were configured), the agent's vsock port, its limits.
std::string BootArgs(const std::string& hostname, uint64_t memory_bytes,
                     uint32_t pids, bool console) {
  // Firecracker's recommended base; no serial console unless asked for
  // (a guest could fill the host's disk with it).
  std::string line =
      absl::StrCat(console ? "console=ttyS0 " : "8250.nr_uarts=0 ",
                   "reboot=k panic=1 quiet loglevel=4 rdinit=/init "
                   "cryptomgr.notests init_on_alloc=0");
  absl::StrAppend(&line,
                  " corral.root=disk corral.root_dev=vda corral.workspace=disk"
                  " corral.workspace_dev=vdb corral.vsock=",
                  kAgentPort, " corral.hostname=", hostname,
                  " corral.memory=", memory_bytes, " corral.pids=", pids,
                  " corral.tmp=", kDefaultTmpBytes, " -- --vm-init");
  return line;
}

// A saved machine's record: what a fork of it must match.
struct SavedMachine {
  std::string hostname;
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  uint32_t vcpus = 0;
  uint64_t ram_mib = 0;
  // What it boots, by the daemon's own paths (never the jail's links,
  // which the sandbox's uid could replace): the kernel, the initramfs, the
  // image disk, the workspace disk.
  std::string kernel;
  std::string initrd;
  std::string root_disk;
  std::string workspace_disk;

  std::string Serialize() const {
    return absl::StrCat(
        "version=2\nhostname=", hostname, "\nmemory_bytes=", memory_bytes,
        "\npids=", pids, "\nvcpus=", vcpus, "\nram_mib=", ram_mib,
        "\nkernel=", kernel, "\ninitrd=", initrd, "\nroot_disk=", root_disk,
        "\nworkspace_disk=", workspace_disk, "\n");
  }
  static absl::StatusOr<SavedMachine> Parse(absl::string_view text) {
    ASSIGN_OR_RETURN(linux_runtime::RecordValues values,
                     linux_runtime::ParseRecordLines(text, "saved machine"));
    SavedMachine machine;
    machine.hostname = values["hostname"];
    machine.kernel = values["kernel"];
    machine.initrd = values["initrd"];
    machine.root_disk = values["root_disk"];
    machine.workspace_disk = values["workspace_disk"];
    if (values["version"] != "2" ||
        !backend_plugin::ValidHostname(machine.hostname) ||
        !absl::SimpleAtoi(values["memory_bytes"], &machine.memory_bytes) ||
        !absl::SimpleAtoi(values["pids"], &machine.pids) ||
        !absl::SimpleAtoi(values["vcpus"], &machine.vcpus) ||
        !absl::SimpleAtoi(values["ram_mib"], &machine.ram_mib)) {
      return absl::InvalidArgumentError("saved machine: bad record");
    }
    for (const std::string* path :
         {&machine.kernel, &machine.initrd, &machine.root_disk,
          &machine.workspace_disk}) {
      if (!linux_runtime::CleanAbsolutePath(*path)) {
        return absl::InvalidArgumentError("saved machine: bad path");
      }
    }
    return machine;
  }
};

// Moves Firecracker's snapshot file `name` out of the jail's snapshot
// directory into `dir`, and makes it root's, read-only to others. The
// sandbox's uid owns the jail: every step goes through directory fds
// without following a link, and only a regular file of that uid with one
// link is taken (never a link to a host file).
absl::Status TakeSnapshotFile(const std::string& jail_root,
                              const std::string& dir, const char* name,
                              uid_t uid) {
  UniqueFd root(
      ::open(jail_root.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return ErrnoStatus(absl::StrCat("open ", jail_root));
  UniqueFd from(::openat(root.get(), kSnapshotDir,
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  UniqueFd to(
      ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!from || !to) return ErrnoStatus("open the snapshot directories");
  if (::renameat(from.get(), name, to.get(), name) != 0) {
    return ErrnoStatus(absl::StrCat("move Firecracker's ", name));
  }
  UniqueFd file(
      ::openat(to.get(), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (!file || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_nlink != 1 || st.st_uid != uid) {
    ::unlinkat(to.get(), name, 0);
    return absl::FailedPreconditionError(
        absl::StrCat("Firecracker's snapshot file ", name,
                     " is not a regular file it wrote (refused)"));
  }
  if (::fchown(file.get(), 0, 0) != 0 || ::fchmod(file.get(), 0644) != 0) {
    return ErrnoStatus(absl::StrCat("chown ", dir, "/", name));
  }
  return absl::OkStatus();
}

// Starts the jailer (which becomes Firecracker, same pid) in a session of
// its own, its output to `log` (or /dev/null).
absl::StatusOr<pid_t> StartJailer(const std::vector<std::string>& argv,
                                  const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy = [&] { posix_spawn_file_actions_destroy(&actions); };
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  const char* out = log.empty() ? "/dev/null" : log.c_str();
  posix_spawn_file_actions_addopen(
      &actions, 1, out, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  return runtime_common::SpawnInSession(argv, actions);
}

// Waits for Firecracker's API socket while the process lives.
absl::Status WaitForApi(const std::string& jail_root, pid_t pid,
                        uint64_t start_time, const std::string& log) {
  const absl::Time deadline = absl::Now() + kApiTimeout;
  for (;;) {
    auto reply = ApiRequest(jail_root, kApiSocket, "GET", "/", "", kApiTimeout);
    if (reply.ok()) return absl::OkStatus();
    if (!linux_runtime::ProcessIs(pid, start_time)) {
      std::string why = linux_runtime::ReadTail(log, 500);
      return absl::InternalError(
          absl::StrCat("the jailer or Firecracker exited at start",
                       why.empty() ? "" : ": ", why));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("Firecracker's API socket did not come up within 10 s: ",
                       reply.status().message()));
    }
    ::usleep(2000);
  }
}

// Connects to the agent over vsock, retrying while the guest boots (until
// its agent listens), and waits for the agent's first bytes (its Hello,
// left unread for the daemon).
absl::StatusOr<UniqueFd> ConnectAgent(const SandboxRecord& record,
                                      absl::Duration timeout,
                                      const std::string& log) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("not tried");
  while (absl::Now() < deadline) {
    if (!linux_runtime::ProcessIs(record.pid, record.start_time)) {
      std::string why = linux_runtime::ReadTail(log);
      return absl::InternalError(absl::StrCat(
          "the VM stopped", why.empty() ? "" : "; console: ", why));
    }
    auto fd = ConnectVsock(record.JailRoot(), kVsockSocket, kAgentPort,
                           absl::Seconds(5));
    if (!fd.ok()) {
      last = fd.status();
      ::usleep(20 * 1000);
      continue;
    }
    const int wait_ms = static_cast<int>(std::max<int64_t>(
        0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    pollfd p{fd->get(), POLLIN, 0};
    int ready = ::poll(&p, 1, wait_ms);
    char byte;
    if (ready > 0 && ::recv(fd->get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
      return std::move(*fd);
    }
    last =
        absl::UnavailableError("the connection closed before the agent spoke");
  }
  std::string why = linux_runtime::ReadTail(log);
  return absl::DeadlineExceededError(absl::StrCat(
      "the VM's agent did not answer within ", absl::FormatDuration(timeout),
      " (", last.message(), ")", why.empty() ? "" : "; console: ", why));
}

absl::StatusOr<SandboxRecord> RecordOf(const bv1::SandboxHandle& handle) {
  ASSIGN_OR_RETURN(SandboxRecord record, SandboxRecord::Parse(handle.state()));
  if (record.id != handle.id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  return record;
}

// The running sandbox's record, FAILED_PRECONDITION when its VM is gone.
absl::StatusOr<SandboxRecord> RunningRecord(const bv1::SandboxHandle& handle) {
  ASSIGN_OR_RETURN(SandboxRecord record, RecordOf(handle));
  if (!linux_runtime::ProcessIs(record.pid, record.start_time)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the VM of sandbox ", record.id, " is not running"));
  }
  return record;
}

}  // namespace

absl::Status CheckConfig(const bv1::PluginConfig& config) {
  return ReadSettings(config).status();
}

bv1::ProbeResponse Probe(const bv1::ProbeRequest& request) {
  bv1::ProbeResponse response;
  auto& details = *response.mutable_details();
  std::vector<std::string> problems;
  if (::geteuid() != 0) {
    problems.push_back(
        "the firecracker runtime needs root (the jailer does; corrald runs as "
        "root)");
  }
  auto layout = CgroupLayout::Detect();
  if (layout.ok()) {
    details["cgroup"] = layout->Describe();
  } else {
    problems.push_back(absl::StrCat("cgroups: ", layout.status().message()));
  }
  auto settings = ReadSettings(request.config());
  if (!settings.ok()) {
    response.set_reason(std::string(settings.status().message()));
    return response;
  }
  std::string version;
  if (settings->firecracker_path.empty()) {
    problems.push_back(settings->firecracker_problem);
  } else {
    details["firecracker"] = settings->firecracker_path;
    auto result = runtime_common::RunProgram(
        {settings->firecracker_path, "--version"}, absl::Seconds(5));
    if (!result.ok() || result->exit_code != 0) {
      problems.push_back(absl::StrCat(
          settings->firecracker_path, " --version failed: ",
          result.ok()
              ? absl::StripAsciiWhitespace(result->output).substr(0, 200)
              : result.status().message()));
    } else {
      std::vector<std::string> lines =
          absl::StrSplit(absl::StripAsciiWhitespace(result->output), '\n');
      version = lines.empty() ? "" : lines[0];
      details["version"] = version;
    }
  }
  if (settings->jailer_path.empty()) {
    problems.push_back(settings->jailer_problem);
  } else {
    details["jailer"] = settings->jailer_path;
  }
  if (::access(settings->agent_path.c_str(), R_OK) != 0) {
    problems.push_back(absl::StrCat("agent ", settings->agent_path, ": ",
                                    std::strerror(errno)));
  }
  details["kernel_dir"] = settings->kernel_dir;
  details["chroot_base_dir"] = settings->chroot_base_dir;
  details["kvm"] = ::access("/dev/kvm", F_OK) == 0 ? "/dev/kvm" : "absent";
  auto kernel = qemu_runtime::FindKernel(settings->kernel_dir);
  if (!kernel.ok()) {
    problems.emplace_back(kernel.status().message());
  } else {
    details["kernel"] = kernel->release;
  }
  if (!problems.empty()) {
    response.set_reason(absl::StrJoin(problems, "; "));
    return response;
  }
  response.set_available(true);
  response.set_reason(absl::StrCat(version, ", kernel ", kernel->release));
  for (int guarantee : {kGuaranteeSeparateKernel, kGuaranteeCgroupLimits,
                        kGuaranteeNetworkIsolation, kGuaranteePause,
                        kGuaranteeDiskLimit, kGuaranteeMemorySnapshot}) {
    response.add_guarantees(guarantee);
  }
  return response;
}

absl::StatusOr<bv1::CreateResponse> Create(const bv1::CreateRequest& request,
                                           UniqueFd* agent_fd) {
  const absl::Time started = absl::Now();
  const bv1::SandboxSpec& spec = request.spec();
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  if (settings.firecracker_path.empty()) {
    return absl::FailedPreconditionError(settings.firecracker_problem);
  }
  if (settings.jailer_path.empty()) {
    return absl::FailedPreconditionError(settings.jailer_problem);
  }
  RETURN_IF_ERROR(backend_plugin::ValidateSpec(spec));
  RETURN_IF_ERROR(
      backend_plugin::UserNamespaceOption(spec, "firecracker").status());
  if (spec.host_uid() == 0 || spec.host_gid() == 0) {
    return absl::InvalidArgumentError(
        "the firecracker runtime needs a host uid and gid for the sandbox "
        "(the jailer never runs Firecracker as root)");
  }
  const bool restoring = !request.memory().empty();
  if (!restoring && spec.rootfs().source_case() == bv1::RootFs::kHost) {
    return absl::FailedPreconditionError(
        "the firecracker runtime boots images only (Firecracker has no "
        "shared-filesystem device for the host image): import an image and "
        "use --image");
  }
  if (!spec.network_none() || spec.has_tap()) {
    return absl::FailedPreconditionError(
        "network is not built for the firecracker runtime yet: its sandboxes "
        "are sealed (no network device)");
  }
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());

  // What it boots: planned from the spec, or the saved machine's.
  SavedMachine machine;
  std::string saved_dir, kernel_file, initrd_file, root_disk;
  if (restoring) {
    ASSIGN_OR_RETURN(saved_dir, qemu_runtime::SavedMachineDir(
                                    settings.runtime_dir, kMemoryStatePrefix,
                                    "firecracker", request.memory()));
    ASSIGN_OR_RETURN(std::string text, linux_runtime::ReadFile(absl::StrCat(
                                           saved_dir, "/", kMachineFile)));
    ASSIGN_OR_RETURN(machine, SavedMachine::Parse(text));
    if (machine.memory_bytes != spec.memory_bytes() ||
        machine.pids != spec.pids()) {
      return absl::InvalidArgumentError(
          "a sandbox restored from a saved machine must have its limits");
    }
    kernel_file = absl::StrCat(saved_dir, "/", kKernelFile);
    initrd_file = absl::StrCat(saved_dir, "/", kInitrdFile);
    root_disk = absl::StrCat(saved_dir, "/", kRootDiskFile);
  } else {
    ASSIGN_OR_RETURN(Kernel kernel,
                     qemu_runtime::FindKernel(settings.kernel_dir));
    kernel_file = kernel.vmlinux;
    ASSIGN_OR_RETURN(initrd_file,
                     qemu_runtime::InitramfsFor(settings.CacheDir(), kernel,
                                                settings.agent_path,
                                                /*virtiofs=*/false,
                                                /*vsock=*/true));
    ASSIGN_OR_RETURN(root_disk,
                     qemu_runtime::ImageDiskFor(settings.CacheDir(),
                                                spec.rootfs().directory()));
    machine.hostname = spec.hostname();
    machine.memory_bytes = spec.memory_bytes();
    machine.pids = spec.pids();
    const uint32_t host_cpus = static_cast<uint32_t>(std::max(1, get_nprocs()));
    machine.vcpus = std::clamp<uint32_t>((spec.cpu_millis() + 999) / 1000, 1,
                                         std::min<uint32_t>(host_cpus, 32));
    machine.ram_mib =
        (spec.memory_bytes() + settings.overhead_bytes + (1u << 20) - 1) >> 20;
  }

  SandboxRecord record;
  record.id = spec.id();
  record.sandbox_dir = settings.SandboxDir(spec.id());
  record.jail_dir = settings.JailDir(spec.id());
  record.cgroup_parent = settings.cgroup_parent;
  // A jail already there is not ours to remove: refused before anything
  // is made.
  struct stat existing {};
  if (::lstat(record.jail_dir.c_str(), &existing) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("a jail for sandbox ", spec.id(),
                     " already exists: ", record.jail_dir));
  }
  if (::mkdir(record.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", record.sandbox_dir));
  }
  absl::Cleanup undo = [&] {
    if (record.pid > 0) {
      linux_runtime::KillProcessAndWait(record.pid, record.start_time,
                                        /*timeout_ms=*/1000);
    }
    if (auto status = TearDown(settings, record.cgroup_parent, record.id,
                               record.jail_dir);
        !status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };

  // The workspace disk, then the jail: root-owned directories down to the
  // jail's root, which belongs to the sandbox's uid (Firecracker makes its
  // sockets there); the files it opens are hard links (same filesystem),
  // the shared ones read-only to it.
  const std::string workspace_disk =
      absl::StrCat(spec.workspace_dir(), "/", kWorkspaceDisk);
  if (restoring) {
    RETURN_IF_ERROR(qemu_runtime::CopySparse(
        absl::StrCat(saved_dir, "/", kWorkspaceFile), workspace_disk));
  } else {
    RETURN_IF_ERROR(runtime_common::TakeWorkspaceDisk(
        runtime_common::DiskPoolDir(settings.runtime_dir), spec.disk_bytes(),
        workspace_disk));
  }
  if (::chown(workspace_disk.c_str(), spec.host_uid(), spec.host_gid()) != 0 ||
      ::chmod(workspace_disk.c_str(), 0600) != 0) {
    return ErrnoStatus(absl::StrCat("chown ", workspace_disk));
  }
  const std::string exec_dir(
      absl::string_view(record.jail_dir).substr(0, record.jail_dir.rfind('/')));
  for (const std::string& dir : {settings.chroot_base_dir, exec_dir}) {
    RETURN_IF_ERROR(MakeDir(dir, 0711, 0, 0));
  }
  RETURN_IF_ERROR(MakeDir(record.jail_dir, 0711, 0, 0));
  const std::string jail_root = record.JailRoot();
  RETURN_IF_ERROR(MakeDir(jail_root, 0700, spec.host_uid(), spec.host_gid()));
  for (const auto& [from, name] :
       {std::pair<const std::string*, const char*>{&kernel_file, kKernelFile},
        {&initrd_file, kInitrdFile},
        {&root_disk, kRootDiskFile},
        {&workspace_disk, kWorkspaceFile}}) {
    RETURN_IF_ERROR(
        qemu_runtime::LinkOrCopy(*from, absl::StrCat(jail_root, "/", name)));
  }
  if (restoring) {
    const std::string snapshot = absl::StrCat(jail_root, "/", kSnapshotDir);
    RETURN_IF_ERROR(MakeDir(snapshot, 0700, spec.host_uid(), spec.host_gid()));
    for (const char* name : {kSnapshotState, kSnapshotMemory}) {
      RETURN_IF_ERROR(
          qemu_runtime::LinkOrCopy(absl::StrCat(saved_dir, "/", name),
                                   absl::StrCat(snapshot, "/", name)));
    }
  }
  machine.kernel = kernel_file;
  machine.initrd = initrd_file;
  machine.root_disk = root_disk;
  machine.workspace_disk = workspace_disk;
  RETURN_IF_ERROR(qemu_runtime::ReplaceFile(
      absl::StrCat(record.sandbox_dir, "/", kMachineFile),
      machine.Serialize()));

  // The jailer: the sandbox's uid and gid, its cgroups (memory for the
  // guest's RAM and the VMM, pids, CPU), this jail; then Firecracker.
  std::vector<std::string> argv = {settings.jailer_path,
                                   "--id",
                                   spec.id(),
                                   "--exec-file",
                                   settings.firecracker_path,
                                   "--uid",
                                   absl::StrCat(spec.host_uid()),
                                   "--gid",
                                   absl::StrCat(spec.host_gid()),
                                   "--chroot-base-dir",
                                   settings.chroot_base_dir,
                                   "--cgroup-version",
                                   layout.mode == CgroupMode::kV2 ? "2" : "1",
                                   "--parent-cgroup",
                                   settings.cgroup_parent};
  for (std::string& arg :
       CgroupArguments(layout, (machine.ram_mib << 20) + kHostOverheadBytes,
                       kHostPids, spec.cpu_millis())) {
    argv.push_back(std::move(arg));
  }
  // No file Firecracker writes may grow past the larger of the workspace
  // disk and a snapshot of its memory: it holds the disk read-write, and a
  // VMM taken over could otherwise extend it until the host's disk fills.
  const uint64_t largest_file = std::max<uint64_t>(
      spec.disk_bytes(), (machine.ram_mib << 20) + kSnapshotOverheadBytes);
  argv.insert(argv.end(),
              {"--resource-limit", absl::StrCat("fsize=", largest_file)});
  argv.insert(argv.end(), {"--", "--api-sock", absl::StrCat("/", kApiSocket),
                           "--level", "Warning"});
  const std::string log =
      settings.console_log ? absl::StrCat(record.sandbox_dir, "/", kConsoleLog)
                           : "";
  const absl::Time launching = absl::Now();
  ASSIGN_OR_RETURN(record.pid, StartJailer(argv, log));
  auto stat = linux_runtime::ReadProcStat(record.pid);
  if (!stat.ok()) {
    return absl::InternalError(
        absl::StrCat("the jailer of sandbox ", spec.id(), " exited at start"));
  }
  record.start_time = stat->start_time;
  RETURN_IF_ERROR(WaitForApi(jail_root, record.pid, record.start_time, log));

  if (restoring) {
    RETURN_IF_ERROR(
        ApiCall(jail_root, kApiSocket, "PUT", "/snapshot/load",
                {{"snapshot_path",
                  absl::StrCat("/", kSnapshotDir, "/", kSnapshotState)},
                 {"mem_backend",
                  {{"backend_type", "File"},
                   {"backend_path",
                    absl::StrCat("/", kSnapshotDir, "/", kSnapshotMemory)}}},
                 {"resume_vm", true}},
                kSnapshotTimeout));
  } else {
    const std::vector<std::tuple<const char*, std::string, nlohmann::json>>
        calls = {
            {"PUT",
             "/boot-source",
             {{"kernel_image_path", absl::StrCat("/", kKernelFile)},
              {"initrd_path", absl::StrCat("/", kInitrdFile)},
              {"boot_args", BootArgs(spec.hostname(), spec.memory_bytes(),
                                     spec.pids(), settings.console_log)}}},
            {"PUT",
             "/drives/rootfs",
             {{"drive_id", "rootfs"},
              {"path_on_host", absl::StrCat("/", kRootDiskFile)},
              {"is_root_device", false},
              {"is_read_only", true}}},
            {"PUT",
             "/drives/workspace",
             {{"drive_id", "workspace"},
              {"path_on_host", absl::StrCat("/", kWorkspaceFile)},
              {"is_root_device", false},
              {"is_read_only", false}}},
            {"PUT",
             "/machine-config",
             {{"vcpu_count", machine.vcpus},
              {"mem_size_mib", machine.ram_mib},
              {"smt", false},
              {"track_dirty_pages", false}}},
            {"PUT",
             "/vsock",
             {{"guest_cid", kGuestCid},
              {"uds_path", absl::StrCat("/", kVsockSocket)}}},
            {"PUT", "/actions", {{"action_type", "InstanceStart"}}},
        };
    for (const auto& [method, path, body] : calls) {
      RETURN_IF_ERROR(
          ApiCall(jail_root, kApiSocket, method, path, body, kApiTimeout));
    }
  }
  ASSIGN_OR_RETURN(
      UniqueFd connection,
      ConnectAgent(record, absl::Seconds(settings.boot_timeout_seconds), log));
  std::move(undo).Cancel();
  Log().debug("sandbox {} {}: prepare {} ms, to agent {} ms", spec.id(),
              restoring ? "restored" : "created",
              absl::ToInt64Milliseconds(launching - started),
              absl::ToInt64Milliseconds(absl::Now() - launching));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(record.Serialize());
  for (int guarantee : {kGuaranteeSeparateKernel, kGuaranteeCgroupLimits,
                        kGuaranteeNetworkIsolation, kGuaranteePause,
                        kGuaranteeDiskLimit, kGuaranteeMemorySnapshot}) {
    response.add_guarantees(guarantee);
  }
  auto& details = *response.mutable_details();
  if (auto vm = ApiGet(jail_root, kApiSocket, "/", kApiTimeout); vm.ok()) {
    details["vmm_version"] = vm->value("vmm_version", std::string());
  }
  details["vcpus"] = absl::StrCat(machine.vcpus);
  details["ram_mib"] = absl::StrCat(machine.ram_mib);
  details["jail"] = jail_root;
  if (restoring) details["restored"] = "yes";
  *agent_fd = std::move(connection);
  return response;
}

absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd) {
  ASSIGN_OR_RETURN(SandboxRecord record, RecordOf(request.handle()));
  bv1::AttachResponse response;
  if (!linux_runtime::ProcessIs(record.pid, record.start_time)) {
    response.set_reason(
        absl::StrCat("the VM (Firecracker, pid ", record.pid, ") has exited"));
    return response;
  }
  auto connection = ConnectVsock(record.JailRoot(), kVsockSocket, kAgentPort,
                                 absl::Seconds(10));
  return backend_plugin::AttachTo(std::move(connection), agent_fd);
}

absl::Status Destroy(const bv1::DestroyRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  auto record = RecordOf(request.handle());
  if (!record.ok()) {
    // A damaged or empty state: clean up by id with today's settings.
    const std::string& id = request.handle().id();
    if (!linux_runtime::ValidSandboxId(id)) return record.status();
    return TearDown(settings, settings.cgroup_parent, id, settings.JailDir(id));
  }
  linux_runtime::KillProcessAndWait(record->pid, record->start_time,
                                    /*timeout_ms=*/1000);
  return TearDown(settings, record->cgroup_parent, record->id,
                  record->jail_dir);
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest& request) {
  ASSIGN_OR_RETURN(SandboxRecord record, RecordOf(request.handle()));
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
  const std::string jails = settings.JailDir("");
  auto removed = backend_plugin::RemoveUnknownSandboxes(
      backend_plugin::SandboxIdsOnHost(
          layout, settings.cgroup_parent,
          {settings.runtime_dir, jails.substr(0, jails.size() - 1)}),
      request, [&](const std::string& id) {
        return TearDown(settings, settings.cgroup_parent, id,
                        settings.JailDir(id));
      });
  if (auto kernel = qemu_runtime::FindKernel(settings.kernel_dir);
      kernel.ok()) {
    std::vector<std::string> current;
    if (auto path = qemu_runtime::InitramfsPath(
            settings.CacheDir(), *kernel, settings.agent_path, false, true);
        path.ok()) {
      current.push_back(*path);
    }
    if (int pruned = qemu_runtime::PruneCache(settings.CacheDir(), current);
        pruned > 0) {
      Log().info("reconcile: removed {} stale cached VM files", pruned);
    }
  }
  return removed;
}

absl::Status Pause(const bv1::PauseRequest& request) {
  ASSIGN_OR_RETURN(SandboxRecord record, RunningRecord(request.handle()));
  return ApiCall(record.JailRoot(), kApiSocket, "PATCH", "/vm",
                 {{"state", "Paused"}}, kApiTimeout);
}

absl::Status Resume(const bv1::ResumeRequest& request) {
  ASSIGN_OR_RETURN(SandboxRecord record, RunningRecord(request.handle()));
  return ApiCall(record.JailRoot(), kApiSocket, "PATCH", "/vm",
                 {{"state", "Resumed"}}, kApiTimeout);
}

absl::StatusOr<bv1::SaveMemoryResponse> SaveMemory(
    const bv1::SaveMemoryRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  if (!qemu_runtime::ValidSavedName(request.name())) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad name for a saved machine: ", request.name()));
  }
  ASSIGN_OR_RETURN(SandboxRecord record, RunningRecord(request.handle()));
  const std::string jail_root = record.JailRoot();
  ASSIGN_OR_RETURN(nlohmann::json vm,
                   ApiGet(jail_root, kApiSocket, "/", kApiTimeout));
  const bool was_running = vm.value("state", std::string()) == "Running";
  const std::string memory =
      absl::StrCat(record.sandbox_dir, "/", qemu_runtime::kSavedMachinesDir);
  const std::string dir = absl::StrCat(memory, "/", request.name());
  if (::mkdir(memory.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", memory));
  }
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("sandbox ", record.id, " already has a saved machine ",
                       request.name()));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", dir));
  }
  // Firecracker writes the snapshot inside its jail, as the sandbox's uid.
  const std::string snapshot = absl::StrCat(jail_root, "/", kSnapshotDir);
  struct stat root_st {};
  if (::lstat(jail_root.c_str(), &root_st) != 0) {
    return ErrnoStatus(absl::StrCat("stat ", jail_root));
  }
  (void)corral::RemoveTree(snapshot);
  RETURN_IF_ERROR(MakeDir(snapshot, 0700, root_st.st_uid, root_st.st_gid));
  bool saved = false;
  absl::Cleanup undo = [&] {
    (void)corral::RemoveTree(snapshot);
    if (!saved) (void)corral::RemoveTree(dir);
    if (was_running) {
      if (auto s = ApiCall(jail_root, kApiSocket, "PATCH", "/vm",
                           {{"state", "Resumed"}}, kApiTimeout);
          !s.ok()) {
        Log().error("sandbox {}: resume after saving: {}", record.id,
                    s.ToString());
      }
    }
  };
  // Paused from here: the disk copy and the memory are of one moment.
  if (was_running) {
    RETURN_IF_ERROR(ApiCall(jail_root, kApiSocket, "PATCH", "/vm",
                            {{"state", "Paused"}}, kApiTimeout));
  }
  ASSIGN_OR_RETURN(std::string text,
                   linux_runtime::ReadFile(
                       absl::StrCat(record.sandbox_dir, "/", kMachineFile)));
  ASSIGN_OR_RETURN(SavedMachine machine, SavedMachine::Parse(text));
  RETURN_IF_ERROR(qemu_runtime::CopySparse(
      machine.workspace_disk, absl::StrCat(dir, "/", kWorkspaceFile)));
  for (const auto& [from, name] : {std::pair<const std::string*, const char*>{
                                       &machine.kernel, kKernelFile},
                                   {&machine.initrd, kInitrdFile},
                                   {&machine.root_disk, kRootDiskFile}}) {
    RETURN_IF_ERROR(
        qemu_runtime::LinkOrCopy(*from, absl::StrCat(dir, "/", name)));
  }
  // The saved machine's own record: its files are now these.
  SavedMachine saved_machine = machine;
  saved_machine.kernel = absl::StrCat(dir, "/", kKernelFile);
  saved_machine.initrd = absl::StrCat(dir, "/", kInitrdFile);
  saved_machine.root_disk = absl::StrCat(dir, "/", kRootDiskFile);
  saved_machine.workspace_disk = absl::StrCat(dir, "/", kWorkspaceFile);
  RETURN_IF_ERROR(qemu_runtime::ReplaceFile(
      absl::StrCat(dir, "/", kMachineFile), saved_machine.Serialize()));
  RETURN_IF_ERROR(ApiCall(
      jail_root, kApiSocket, "PUT", "/snapshot/create",
      {{"snapshot_type", "Full"},
       {"snapshot_path", absl::StrCat("/", kSnapshotDir, "/", kSnapshotState)},
       {"mem_file_path",
        absl::StrCat("/", kSnapshotDir, "/", kSnapshotMemory)}},
      kSnapshotTimeout));
  // Out of the jail, where the sandbox's VMM can no longer change them;
  // root's, read-only to all as the kernel and image disks are: forks link
  // them into their jails, where only their own uid can reach them (the
  // sandbox directory above is root's alone).
  for (const char* name : {kSnapshotState, kSnapshotMemory}) {
    RETURN_IF_ERROR(TakeSnapshotFile(jail_root, dir, name, root_st.st_uid));
  }
  saved = true;
  bv1::SaveMemoryResponse response;
  response.set_state(absl::StrCat(kMemoryStatePrefix, dir));
  response.set_size_bytes(qemu_runtime::DiskUsage(dir));
  return response;
}

absl::Status DeleteMemory(const bv1::DeleteMemoryRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  return qemu_runtime::DeleteSavedMachine(
      settings.runtime_dir, kMemoryStatePrefix, "firecracker",
      request.handle().id(), request.state());
}

}  // namespace corral::firecracker_runtime
