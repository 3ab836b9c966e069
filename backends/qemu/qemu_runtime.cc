#include "backends/qemu/qemu_runtime.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
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
#include "backends/linux/cgroups.h"
#include "backends/linux/fs_util.h"
#include "backends/qemu/qemu_command.h"
#include "backends/qemu/qemu_settings.h"
#include "backends/qemu/qmp.h"
#include "backends/qemu/vm_assets.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::qemu_runtime {
namespace {

using backend_plugin::kGuaranteeCgroupLimits;
using backend_plugin::kGuaranteeDiskLimit;
using backend_plugin::kGuaranteeEgressPolicy;
using backend_plugin::kGuaranteeMemorySnapshot;
using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteePause;
using backend_plugin::kGuaranteeSeparateKernel;

using linux_runtime::CgroupLayout;
using linux_runtime::SandboxCgroups;

constexpr char kConsoleLog[] = "console.log";
constexpr char kLaunchLog[] = "launch.log";
constexpr char kQmpSocket[] = "qmp.sock";
constexpr char kShareSocket[] = "virtiofs.sock";
constexpr char kShareDir[] = "rootfs";
constexpr const char* kWorkspaceDisk = runtime_common::kWorkspaceDiskName;
constexpr char kAccelRecord[] = "accel";
// What the VM was started with (Machine), in its sandbox directory.
constexpr char kMachineFile[] = "machine";
// Saved machines: <sandbox dir>/memory/<name>/, holding the migration
// stream, a copy of the workspace disk and links to what QEMU booted.
constexpr char kSavedState[] = "vm.state";
constexpr char kSavedWorkspace[] = "workspace.ext4";
constexpr char kSavedKernel[] = "vmlinux";
constexpr char kSavedInitramfs[] = "initramfs.cpio";
constexpr char kSavedRootDisk[] = "root.ext4";
constexpr char kMemoryStatePrefix[] = "qemu-memory-1 ";
constexpr absl::Duration kMonitorTimeout = absl::Seconds(10);
constexpr absl::Duration kSaveTimeout = absl::Minutes(5);
constexpr uint64_t kDefaultTmpBytes = 64u << 20;
// Beyond the guest's RAM and TCG's cache, what QEMU, virtiofsd and the
// launcher may use on the host.
constexpr uint64_t kHostOverheadBytes = 256u << 20;
// QEMU's threads (vCPUs, I/O workers, RCU), the launcher and virtiofsd.
constexpr uint32_t kHostPids = 256;
constexpr absl::Duration kLaunchTimeout = absl::Seconds(30);
constexpr absl::Duration kTeardownTimeout = absl::Seconds(5);
constexpr absl::Duration kKvmProbeTimeout = absl::Seconds(5);

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("qemu");
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
      "qemu", ignored,
      {"qemu", "virtiofsd", "kernel_dir", "accel", "cgroup_parent",
       "overhead_mib", "tb_cache_mib", "trace_boot", "boot_timeout_seconds"}));
  return settings;
}

// ---- Accelerator -------------------------------------------------------

struct AccelChoice {
  Accel accel = Accel::kTcg;
  // Why this one (shown by `corral runtimes`).
  std::string note;
};

// Whether KVM boots this kernel here. A host that is itself a guest may
// offer /dev/kvm and hang every stock kernel (PLATFORM.md: a PVM host), so
// only a boot proves it: the kernel without an initramfs panics at once
// ("VFS: Unable to mount root fs"), which with panic=-1 and -no-reboot
// ends QEMU.
AccelChoice ProbeKvm(const Settings& settings, const Kernel& kernel) {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) {
    return {Accel::kTcg, absl::StrCat("software emulation: /dev/kvm: ",
                                      std::strerror(errno))};
  }
  kvm.Reset();
  auto result = runtime_common::RunProgram(
      {settings.qemu_path, "-machine", "microvm,accel=kvm", "-cpu", "host",
       "-m", "128M", "-nodefaults", "-no-user-config", "-display", "none",
       "-no-reboot", "-serial", "stdio", "-kernel", kernel.vmlinux, "-append",
       "console=ttyS0 panic=-1 loglevel=4"},
      kKvmProbeTimeout);
  if (result.ok() && absl::StrContains(result->output, "Kernel panic")) {
    return {Accel::kKvm, "KVM"};
  }
  std::string why =
      result.ok()
          ? absl::StrCat(
                "QEMU exited ", result->exit_code, ": ",
                absl::StripAsciiWhitespace(result->output).substr(0, 200))
          : std::string(result.status().message());
  absl::StrReplaceAll({{"\n", " "}}, &why);
  return {
      Accel::kTcg,
      absl::StrCat("software emulation: a KVM guest did not boot (", why, ")")};
}

// The choice for this boot of the host, remembered in the runtime
// directory: the probe costs a few seconds where KVM hangs.
AccelChoice ChooseAccel(const Settings& settings, const Kernel& kernel) {
  if (settings.accel == AccelPolicy::kTcg) {
    return {Accel::kTcg, "software emulation (accel = tcg)"};
  }
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  struct stat st {};
  ::stat(kernel.vmlinux.c_str(), &st);
  std::string boot_id = std::string(absl::StripAsciiWhitespace(
      linux_runtime::ReadFile("/proc/sys/kernel/random/boot_id").value_or("")));
  const std::string key = absl::StrCat(boot_id, " ", settings.qemu_path, " ",
                                       kernel.vmlinux, " ", st.st_mtim.tv_sec);
  const std::string record =
      absl::StrCat(settings.runtime_dir, "/", kAccelRecord);
  AccelChoice choice;
  if (auto text = linux_runtime::ReadFile(record); text.ok()) {
    std::vector<std::string> lines = absl::StrSplit(*text, '\n');
    if (lines.size() >= 3 && lines[0] == key) {
      choice.accel = lines[1] == "kvm" ? Accel::kKvm : Accel::kTcg;
      choice.note = lines[2];
    }
  }
  if (choice.note.empty()) {
    choice = ProbeKvm(settings, kernel);
    if (auto s =
            ReplaceFile(record, absl::StrCat(key, "\n", AccelName(choice.accel),
                                             "\n", choice.note, "\n"));
        !s.ok()) {
      Log().warn("cannot remember the accelerator: {}", s.ToString());
    }
  }
  return choice;
}

// ---- Launching ---------------------------------------------------------

struct Launched {
  pid_t launcher = 0;
  pid_t qemu = 0;
};

// Waits until the guest's agent has said something on `connection` (its
// Hello, which stays unread for the daemon), while the launcher lives.
absl::Status WaitForAgent(int connection, pid_t launcher,
                          absl::Duration timeout,
                          const std::string& sandbox_dir) {
  UniqueFd pidfd(linux_runtime::PidfdOpen(launcher));
  const absl::Time deadline = absl::Now() + timeout;
  auto why = [&] {
    std::string console =
        linux_runtime::ReadTail(absl::StrCat(sandbox_dir, "/", kConsoleLog));
    std::string launch = linux_runtime::ReadTail(
        absl::StrCat(sandbox_dir, "/", kLaunchLog), 500);
    return absl::StrCat(console.empty() ? "" : "; console: ", console,
                        launch.empty() ? "" : "; ", launch);
  };
  for (;;) {
    const int wait_ms = static_cast<int>(std::max<int64_t>(
        0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    pollfd polls[2] = {{connection, POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    int ready = ::poll(polls, pidfd ? 2 : 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus("poll");
    if (ready == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("the VM's agent did not answer within ",
                       absl::FormatDuration(timeout), why()));
    }
    if (polls[0].revents != 0) {
      char byte;
      ssize_t n = ::recv(connection, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return absl::OkStatus();
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        return absl::InternalError(
            absl::StrCat("the VM closed the agent's connection", why()));
      }
    }
    if (pidfd && polls[1].revents != 0) {
      return absl::InternalError(absl::StrCat("the VM stopped", why()));
    }
  }
}

// Everything of sandbox `id` on the host: every process in its cgroups
// (the launcher, QEMU, virtiofsd), the cgroups, its runtime directory.
absl::Status TearDown(const Settings& settings,
                      const std::string& cgroup_parent, const std::string& id) {
  absl::Status status;
  auto layout = CgroupLayout::Detect();
  if (layout.ok()) {
    status = linux_runtime::KillAndRemoveCgroups(
        SandboxCgroups::For(*layout, cgroup_parent, id), kTeardownTimeout);
  } else {
    status = layout.status();
  }
  absl::Status files = corral::RemoveTree(settings.SandboxDir(id));
  if (status.ok()) status = files;
  return status;
}

// What a sandbox gets: everything the runtime claims, but memory snapshots
// for the host image (QEMU cannot save a machine with a vhost-user device).
std::vector<int> SandboxGuarantees(bool host_image, bool network) {
  // The workspace is a disk of the sandbox's disk size and the root is
  // read-only: nothing the guest writes reaches the host's disk beyond it
  // (the console log is capped).
  std::vector<int> guarantees = {
      kGuaranteeSeparateKernel, kGuaranteeCgroupLimits,
      kGuaranteeNetworkIsolation, kGuaranteePause, kGuaranteeDiskLimit};
  // A saved machine would come back with another sandbox's address in its
  // memory: a VM with network is not saved.
  if (!host_image && !network) {
    guarantees.push_back(kGuaranteeMemorySnapshot);
  }
  if (network) guarantees.push_back(kGuaranteeEgressPolicy);
  return guarantees;
}

// The tap the daemon made for this sandbox, opened in the namespace that
// holds it (on a thread of its own: corrald is multithreaded).
absl::StatusOr<UniqueFd> OpenTap(const bv1::TapLink& tap) {
  UniqueFd netns(::open(tap.netns_path().c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return ErrnoStatus(absl::StrCat("open ", tap.netns_path()));
  UniqueFd fd;
  absl::Status status;
  std::thread opener([&] {
    if (::setns(netns.get(), CLONE_NEWNET) != 0) {
      status = ErrnoStatus("setns to the egress namespace");
      return;
    }
    fd.Reset(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!fd) {
      status = ErrnoStatus("open /dev/net/tun");
      return;
    }
    ifreq request{};
    std::strncpy(request.ifr_name, tap.name().c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &request) != 0) {
      status = ErrnoStatus(absl::StrCat("open tap ", tap.name()));
    }
  });
  opener.join();
  RETURN_IF_ERROR(status);
  return fd;
}

// A locally administered MAC from the guest's address.
std::string MacFor(const std::string& address) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  std::sscanf(address.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d);
  return absl::StrFormat("52:54:%02x:%02x:%02x:%02x", a & 0xff, b & 0xff,
                         c & 0xff, d & 0xff);
}

// The group that may open /dev/kvm, for a QEMU that runs unprivileged.
int KvmGroup() {
  struct stat st {};
  if (::stat("/dev/kvm", &st) != 0 || (st.st_mode & 0060) != 0060) return -1;
  return static_cast<int>(st.st_gid);
}

// The running sandbox's monitor.
absl::StatusOr<QmpClient> Monitor(const bv1::SandboxHandle& handle,
                                  SandboxRecord* record,
                                  absl::Duration timeout) {
  ASSIGN_OR_RETURN(*record, SandboxRecord::Parse(handle.state()));
  if (record->id != handle.id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  if (!linux_runtime::ProcessIs(record->qemu_pid, record->qemu_start_time)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the VM of sandbox ", record->id, " is not running"));
  }
  return QmpClient::Connect(record->sandbox_dir, kQmpSocket,
                            absl::Now() + timeout);
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
    problems.push_back("the qemu runtime needs root (corrald runs as root)");
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
  if (settings->qemu_path.empty()) {
    problems.push_back(settings->qemu_problem);
  } else {
    details["qemu"] = settings->qemu_path;
  }
  if (!backend_plugin::IsExecutableFile(settings->launcher_path)) {
    problems.push_back(absl::StrCat("helper ", settings->launcher_path,
                                    " is missing or not executable"));
  }
  if (::access(settings->agent_path.c_str(), R_OK) != 0) {
    problems.push_back(absl::StrCat("agent ", settings->agent_path, ": ",
                                    std::strerror(errno)));
  }
  details["host_image"] =
      settings->virtiofsd_path.empty()
          ? absl::StrCat("no: ", settings->virtiofsd_problem)
          : absl::StrCat("yes (", settings->virtiofsd_path, ")");
  details["kernel_dir"] = settings->kernel_dir;
  auto kernel = FindKernel(settings->kernel_dir);
  if (!kernel.ok()) {
    problems.emplace_back(kernel.status().message());
  } else {
    details["kernel"] = kernel->release;
  }
  if (problems.empty()) {
    AccelChoice accel = ChooseAccel(*settings, *kernel);
    details["accel"] = AccelName(accel.accel);
    if (accel.accel == Accel::kTcg) {
      details["tsc_khz"] = absl::StrCat(HostTscKhz());
    }
    response.set_available(true);
    response.set_reason(absl::StrCat(accel.note, ", kernel ", kernel->release));
    // The runtime's claims are what an image sandbox gets, and egress
    // through the daemon's tap (details network_link) for one with network.
    for (int guarantee :
         SandboxGuarantees(/*host_image=*/false, /*network=*/false)) {
      response.add_guarantees(guarantee);
    }
    response.add_guarantees(kGuaranteeEgressPolicy);
    details["network_link"] = "tap";
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
  if (settings.qemu_path.empty()) {
    return absl::FailedPreconditionError(settings.qemu_problem);
  }
  RETURN_IF_ERROR(backend_plugin::ValidateSpec(spec));
  // QEMU always runs as the sandbox's own unprivileged host uid, whatever
  // userns says: the guest's users are the guest kernel's, and the option
  // only chooses whether the guest's root would map to host root in a
  // container runtime, which a VM never does.
  RETURN_IF_ERROR(backend_plugin::UserNamespaceOption(spec, "qemu").status());
  if (spec.host_uid() == 0 || spec.host_gid() == 0) {
    return absl::InvalidArgumentError(
        "the qemu runtime needs a host uid and gid for the sandbox (QEMU never "
        "runs as root)");
  }
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  const bool restoring = !request.memory().empty();
  const bool host_image =
      !restoring && spec.rootfs().source_case() == bv1::RootFs::kHost;
  if (host_image && settings.virtiofsd_path.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the host image needs virtiofsd on the qemu runtime: ",
        settings.virtiofsd_problem, "; import an image and use --image"));
  }

  // The machine: planned from the spec, or the saved one's.
  Machine machine;
  std::string saved_dir;
  if (restoring) {
    ASSIGN_OR_RETURN(saved_dir,
                     SavedMachineDir(settings.runtime_dir, kMemoryStatePrefix,
                                     "qemu", request.memory()));
    ASSIGN_OR_RETURN(std::string text, linux_runtime::ReadFile(absl::StrCat(
                                           saved_dir, "/", kMachineFile)));
    ASSIGN_OR_RETURN(machine, Machine::Parse(text));
    if (machine.plan.memory_limit_bytes != spec.memory_bytes() ||
        machine.plan.pids != spec.pids()) {
      return absl::InvalidArgumentError(
          "a sandbox restored from a saved machine must have its limits");
    }
    machine.kernel = absl::StrCat(saved_dir, "/", kSavedKernel);
    machine.initramfs = absl::StrCat(saved_dir, "/", kSavedInitramfs);
    machine.root_disk = absl::StrCat(saved_dir, "/", kSavedRootDisk);
  } else {
    ASSIGN_OR_RETURN(Kernel kernel, FindKernel(settings.kernel_dir));
    const AccelChoice accel = ChooseAccel(settings, kernel);
    VmPlan& plan = machine.plan;
    plan.hostname = spec.hostname();
    plan.accel = accel.accel;
    const uint32_t host_cpus = static_cast<uint32_t>(std::max(1, get_nprocs()));
    plan.vcpus =
        std::clamp<uint32_t>((spec.cpu_millis() + 999) / 1000, 1, host_cpus);
    plan.ram_bytes =
        ((spec.memory_bytes() + settings.overhead_bytes + (1u << 20) - 1) >> 20)
        << 20;
    plan.tb_cache_bytes = settings.tb_cache_bytes;
    plan.tsc_khz = accel.accel == Accel::kTcg ? HostTscKhz() : 0;
    plan.host_image = host_image;
    plan.memory_limit_bytes = spec.memory_bytes();
    plan.pids = spec.pids();
    plan.tmp_bytes = kDefaultTmpBytes;
    plan.trace_boot = settings.trace_boot;
    machine.kernel = kernel.vmlinux;
    ASSIGN_OR_RETURN(machine.initramfs,
                     InitramfsFor(settings.CacheDir(), kernel,
                                  settings.agent_path, host_image));
    if (!host_image) {
      ASSIGN_OR_RETURN(
          machine.root_disk,
          ImageDiskFor(settings.CacheDir(), spec.rootfs().directory()));
    }
  }
  VmPlan& plan = machine.plan;
  plan.id = spec.id();
  UniqueFd tap_fd;
  if (spec.has_tap()) {
    if (restoring) {
      return absl::FailedPreconditionError(
          "a saved machine cannot start with network");
    }
    ASSIGN_OR_RETURN(tap_fd, OpenTap(spec.tap()));
    plan.net = absl::StrCat(spec.tap().address(), "/", spec.tap().prefix(), ",",
                            spec.tap().gateway());
    plan.mac = MacFor(spec.tap().address());
  }
  machine.workspace_disk =
      absl::StrCat(spec.workspace_dir(), "/", kWorkspaceDisk);

  SandboxRecord record;
  record.id = spec.id();
  record.sandbox_dir = settings.SandboxDir(spec.id());
  record.cgroup_parent = settings.cgroup_parent;
  record.accel = plan.accel;
  record.host_image = plan.host_image;
  if (::mkdir(record.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", record.sandbox_dir));
  }
  absl::Cleanup undo = [&] {
    if (auto status = TearDown(settings, record.cgroup_parent, record.id);
        !status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };
  if (restoring) {
    RETURN_IF_ERROR(CopySparse(absl::StrCat(saved_dir, "/", kSavedWorkspace),
                               machine.workspace_disk));
  } else {
    RETURN_IF_ERROR(runtime_common::TakeWorkspaceDisk(
        runtime_common::DiskPoolDir(settings.runtime_dir), spec.disk_bytes(),
        machine.workspace_disk));
  }
  RETURN_IF_ERROR(
      ReplaceFile(absl::StrCat(record.sandbox_dir, "/", kMachineFile),
                  machine.Serialize()));

  // What QEMU opens, all as fds: it may run as an unprivileged uid that
  // cannot reach any of these paths.
  UniqueFd kernel_fd(::open(machine.kernel.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd initramfs_fd(
      ::open(machine.initramfs.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd workspace_fd(
      ::open(machine.workspace_disk.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  UniqueFd workspace_read_fd(::open(machine.workspace_disk.c_str(),
                                    O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!kernel_fd || !initramfs_fd || !workspace_fd || !workspace_read_fd) {
    return ErrnoStatus("open the VM's kernel, initramfs and workspace disk");
  }
  UniqueFd root_fd, incoming_fd;
  if (!plan.host_image) {
    root_fd.Reset(::open(machine.root_disk.c_str(), O_RDONLY | O_CLOEXEC));
    if (!root_fd) return ErrnoStatus(absl::StrCat("open ", machine.root_disk));
  }
  if (restoring) {
    const std::string state = absl::StrCat(saved_dir, "/", kSavedState);
    incoming_fd.Reset(::open(state.c_str(), O_RDONLY | O_CLOEXEC));
    if (!incoming_fd) return ErrnoStatus(absl::StrCat("open ", state));
  }
  std::string share;
  std::vector<runtime_common::HostBind> binds;
  if (plan.host_image) {
    share = absl::StrCat(record.sandbox_dir, "/", kShareDir);
    runtime_common::HostRootOptions options;
    options.hostname = spec.hostname();
    RETURN_IF_ERROR(Annotate(
        runtime_common::WriteHostRootSkeleton(share, options), "host image"));
    binds = runtime_common::HostRootBinds();
  }
  ASSIGN_OR_RETURN(UniqueFd qmp_listen,
                   backend_plugin::ListenAt(record.sandbox_dir, kQmpSocket));
  ASSIGN_OR_RETURN(UniqueFd listen_fd,
                   backend_plugin::ListenAgent(record.sandbox_dir));

  const SandboxCgroups cgroups =
      SandboxCgroups::For(layout, settings.cgroup_parent, spec.id());
  linux_runtime::CgroupLimits limits;
  limits.memory_bytes = plan.ram_bytes +
                        (plan.accel == Accel::kTcg ? plan.tb_cache_bytes : 0) +
                        kHostOverheadBytes;
  limits.pids = kHostPids;
  limits.cpu_millis = spec.cpu_millis();
  RETURN_IF_ERROR(linux_runtime::CreateCgroups(layout, cgroups, limits));

  runtime_common::SupervisorLaunch launch;
  launch.first_extra_fd = kKernelFd;
  launch.timeout = kLaunchTimeout;
  launch.log_path = absl::StrCat(record.sandbox_dir, "/", kLaunchLog);
  launch.listen_fd = listen_fd.get();
  launch.extra_fds = {kernel_fd.get(), initramfs_fd.get(), workspace_fd.get(),
                      workspace_read_fd.get(), qmp_listen.get()};
  if (root_fd) launch.extra_fds.push_back(root_fd.get());
  if (incoming_fd) launch.extra_fds.push_back(incoming_fd.get());
  if (tap_fd) {
    plan.tap_fd = kKernelFd + static_cast<int>(launch.extra_fds.size());
    launch.extra_fds.push_back(tap_fd.get());
  }
  launch.argv = {settings.launcher_path,
                 "--report-fd",
                 "4",
                 "--listen-fd",
                 "3",
                 "--console-log",
                 absl::StrCat(record.sandbox_dir, "/", kConsoleLog),
                 "--qemu-fds",
                 absl::StrCat(launch.extra_fds.size())};
  for (const std::string& procs : cgroups.ProcsFiles()) {
    launch.argv.insert(launch.argv.end(), {"--join", procs});
  }
  launch.argv.insert(launch.argv.end(),
                     {"--uid", absl::StrCat(spec.host_uid()), "--gid",
                      absl::StrCat(spec.host_gid())});
  if (int kvm_group = KvmGroup(); plan.accel == Accel::kKvm && kvm_group >= 0) {
    launch.argv.insert(launch.argv.end(), {"--group", absl::StrCat(kvm_group)});
  }
  if (plan.host_image) {
    launch.argv.insert(launch.argv.end(),
                       {"--virtiofsd", settings.virtiofsd_path, "--share",
                        share, "--share-socket",
                        absl::StrCat(record.sandbox_dir, "/", kShareSocket)});
    for (const runtime_common::HostBind& bind : binds) {
      launch.argv.insert(launch.argv.end(),
                         {"--bind", bind.source, bind.destination});
    }
  }
  launch.argv.push_back("--");
  for (std::string& arg : QemuCommand(settings.qemu_path, plan, restoring)) {
    launch.argv.push_back(std::move(arg));
  }
  const absl::Time launching = absl::Now();
  ASSIGN_OR_RETURN(runtime_common::SupervisorStarted supervisor,
                   runtime_common::StartSupervisor(launch));
  const Launched launched{supervisor.supervisor, supervisor.reported};
  listen_fd.Reset();
  qmp_listen.Reset();
  for (auto [pid, start] : {std::pair<pid_t, uint64_t*>{
                                launched.launcher, &record.launcher_start_time},
                            {launched.qemu, &record.qemu_start_time}}) {
    auto stat = linux_runtime::ReadProcStat(pid);
    if (!stat.ok()) {
      return absl::InternalError(absl::StrCat(
          "the VM of sandbox ", spec.id(),
          " exited at start: ", linux_runtime::ReadTail(launch.log_path)));
    }
    *start = stat->start_time;
  }
  record.launcher_pid = launched.launcher;
  record.qemu_pid = launched.qemu;
  if (restoring) {
    // The saved machine was stopped, and QEMU keeps the state it loads
    // (paused): once it has loaded, it runs on.
    ASSIGN_OR_RETURN(
        QmpClient monitor,
        QmpClient::Connect(
            record.sandbox_dir, kQmpSocket,
            absl::Now() + absl::Seconds(settings.boot_timeout_seconds)));
    for (;;) {
      ASSIGN_OR_RETURN(nlohmann::json status, monitor.Execute("query-status"));
      const std::string state = status.value("status", std::string());
      if (state == "running") break;
      if (state != "inmigrate") {
        RETURN_IF_ERROR(monitor.Execute("cont").status());
        break;
      }
      ::usleep(20 * 1000);
    }
  }

  ASSIGN_OR_RETURN(UniqueFd connection,
                   backend_plugin::ConnectAgent(record.sandbox_dir));
  RETURN_IF_ERROR(WaitForAgent(connection.get(), launched.launcher,
                               absl::Seconds(settings.boot_timeout_seconds),
                               record.sandbox_dir));
  std::move(undo).Cancel();
  Log().debug("sandbox {} {} ({}): prepare {} ms, to agent {} ms", spec.id(),
              restoring ? "restored" : "created", AccelName(plan.accel),
              absl::ToInt64Milliseconds(launching - started),
              absl::ToInt64Milliseconds(absl::Now() - launching));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(record.Serialize());
  for (int guarantee : SandboxGuarantees(plan.host_image, !plan.net.empty())) {
    response.add_guarantees(guarantee);
  }
  auto& details = *response.mutable_details();
  details["accel"] = AccelName(plan.accel);
  if (auto release = linux_runtime::ReadFile(
          absl::StrCat(settings.kernel_dir, "/release"));
      release.ok() && !restoring) {
    details["kernel"] = std::string(absl::StripAsciiWhitespace(*release));
  }
  details["vcpus"] = absl::StrCat(plan.vcpus);
  details["ram_mib"] = absl::StrCat(plan.ram_bytes >> 20);
  if (restoring) details["restored"] = "yes";
  *agent_fd = std::move(connection);
  return response;
}

absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd) {
  ASSIGN_OR_RETURN(SandboxRecord record,
                   SandboxRecord::Parse(request.handle().state()));
  if (record.id != request.handle().id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  bv1::AttachResponse response;
  if (!linux_runtime::ProcessIs(record.qemu_pid, record.qemu_start_time)) {
    response.set_reason(
        absl::StrCat("the VM (QEMU, pid ", record.qemu_pid, ") has exited"));
    return response;
  }
  if (!linux_runtime::ProcessIs(record.launcher_pid,
                                record.launcher_start_time)) {
    response.set_reason(absl::StrCat("the VM's supervisor (pid ",
                                     record.launcher_pid, ") has exited"));
    return response;
  }
  auto connection = backend_plugin::ConnectAgent(record.sandbox_dir);
  return backend_plugin::AttachTo(std::move(connection), agent_fd);
}

absl::Status Destroy(const bv1::DestroyRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  auto record = SandboxRecord::Parse(request.handle().state());
  if (!record.ok()) {
    // A damaged or empty state: clean up by id with today's settings.
    const std::string& id = request.handle().id();
    if (!linux_runtime::ValidSandboxId(id)) return record.status();
    return TearDown(settings, settings.cgroup_parent, id);
  }
  if (record->id != request.handle().id()) {
    return absl::InvalidArgumentError(
        "sandbox handle: the state belongs to another id");
  }
  // QEMU first: the launcher then sees its link end and leaves by itself.
  linux_runtime::KillProcessAndWait(record->qemu_pid, record->qemu_start_time,
                                    /*timeout_ms=*/1000);
  return TearDown(settings, record->cgroup_parent, record->id);
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest& request) {
  ASSIGN_OR_RETURN(SandboxRecord record,
                   SandboxRecord::Parse(request.handle().state()));
  ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect());
  // The host's view: QEMU's memory, threads and CPU. OOM kills inside the
  // guest are its own kernel's; its agent reports them with each exit.
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
  // The runtime directory also holds the cache, which is no sandbox id.
  auto removed = backend_plugin::RemoveUnknownSandboxes(
      backend_plugin::SandboxIdsOnHost(layout, settings.cgroup_parent,
                                       {settings.runtime_dir}),
      request, [&](const std::string& id) {
        return TearDown(settings, settings.cgroup_parent, id);
      });
  if (auto kernel = FindKernel(settings.kernel_dir); kernel.ok()) {
    std::vector<std::string> current;
    for (bool virtiofs : {false, true}) {
      auto path = InitramfsPath(settings.CacheDir(), *kernel,
                                settings.agent_path, virtiofs);
      if (path.ok()) current.push_back(*path);
    }
    if (int pruned = PruneCache(settings.CacheDir(), current); pruned > 0) {
      Log().info("reconcile: removed {} stale cached VM files", pruned);
    }
  }
  return removed;
}

}  // namespace corral::qemu_runtime

namespace corral::qemu_runtime {

absl::Status Pause(const bv1::PauseRequest& request) {
  SandboxRecord record;
  ASSIGN_OR_RETURN(QmpClient monitor,
                   Monitor(request.handle(), &record, kMonitorTimeout));
  return monitor.Execute("stop").status();
}

absl::Status Resume(const bv1::ResumeRequest& request) {
  SandboxRecord record;
  ASSIGN_OR_RETURN(QmpClient monitor,
                   Monitor(request.handle(), &record, kMonitorTimeout));
  return monitor.Execute("cont").status();
}

absl::StatusOr<bv1::SaveMemoryResponse> SaveMemory(
    const bv1::SaveMemoryRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  if (!ValidSavedName(request.name())) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad name for a saved machine: ", request.name()));
  }
  SandboxRecord record;
  ASSIGN_OR_RETURN(QmpClient monitor,
                   Monitor(request.handle(), &record, kSaveTimeout));
  if (record.host_image) {
    return absl::FailedPreconditionError(
        "a sandbox on the host image cannot be saved: QEMU does not migrate "
        "its virtiofs share; use an imported image");
  }
  ASSIGN_OR_RETURN(std::string text,
                   linux_runtime::ReadFile(
                       absl::StrCat(record.sandbox_dir, "/", kMachineFile)));
  ASSIGN_OR_RETURN(Machine machine, Machine::Parse(text));
  const std::string memory =
      absl::StrCat(record.sandbox_dir, "/", kSavedMachinesDir);
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
  ASSIGN_OR_RETURN(nlohmann::json status, monitor.Execute("query-status"));
  const bool was_running = status.value("running", false);
  bool saved = false;
  absl::Cleanup undo = [&] {
    if (!saved) (void)corral::RemoveTree(dir);
    if (was_running) {
      if (auto s = monitor.Execute("cont"); !s.ok()) {
        Log().error("sandbox {}: resume after saving: {}", record.id,
                    s.status().ToString());
      }
    }
  };
  // Frozen from here: the disk copy and the memory are of one moment.
  if (was_running) RETURN_IF_ERROR(monitor.Execute("stop").status());
  RETURN_IF_ERROR(CopySparse(machine.workspace_disk,
                             absl::StrCat(dir, "/", kSavedWorkspace)));
  // What it booted, kept with it: the cache may drop an image's disk.
  RETURN_IF_ERROR(
      LinkOrCopy(machine.kernel, absl::StrCat(dir, "/", kSavedKernel)));
  RETURN_IF_ERROR(
      LinkOrCopy(machine.initramfs, absl::StrCat(dir, "/", kSavedInitramfs)));
  RETURN_IF_ERROR(
      LinkOrCopy(machine.root_disk, absl::StrCat(dir, "/", kSavedRootDisk)));
  RETURN_IF_ERROR(
      ReplaceFile(absl::StrCat(dir, "/", kMachineFile), machine.Serialize()));
  const std::string state_path = absl::StrCat(dir, "/", kSavedState);
  UniqueFd state(::open(state_path.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0600));
  if (!state) return ErrnoStatus(absl::StrCat("create ", state_path));
  RETURN_IF_ERROR(
      monitor.Execute("getfd", {{"fdname", "corral-save"}}, state.get())
          .status());
  state.Reset();
  RETURN_IF_ERROR(
      monitor.Execute("migrate", {{"uri", "fd:corral-save"}}).status());
  for (;;) {
    ASSIGN_OR_RETURN(nlohmann::json migration,
                     monitor.Execute("query-migrate"));
    const std::string progress = migration.value("status", std::string());
    if (progress == "completed") break;
    if (progress == "failed" || progress == "cancelled") {
      return absl::InternalError(absl::StrCat(
          "saving the machine: ", migration.value("error-desc", progress)));
    }
    ::usleep(20 * 1000);
  }
  saved = true;
  bv1::SaveMemoryResponse response;
  response.set_state(absl::StrCat(kMemoryStatePrefix, dir));
  response.set_size_bytes(DiskUsage(dir));
  return response;
}

absl::Status DeleteMemory(const bv1::DeleteMemoryRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  return DeleteSavedMachine(settings.runtime_dir, kMemoryStatePrefix, "qemu",
                            request.handle().id(), request.state());
}

}  // namespace corral::qemu_runtime
