#include "backends/qemu/qemu_command.h"

#include <time.h>

#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/sandbox_state.h"
#include "corral/status_macros.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace corral::qemu_runtime {
namespace {

// Debian's kernels tick at 250 Hz; lpj (loops per jiffy) follows from it.
constexpr uint64_t kGuestHz = 250;

std::string Mib(uint64_t bytes) { return absl::StrCat(bytes >> 20, "M"); }

}  // namespace

std::string Machine::Serialize() const {
  return absl::StrCat(
      "version=1\nid=", plan.id, "\nhostname=", plan.hostname,
      "\naccel=", AccelName(plan.accel), "\nvcpus=", plan.vcpus,
      "\nram_bytes=", plan.ram_bytes, "\ntb_cache_bytes=", plan.tb_cache_bytes,
      "\ntsc_khz=", plan.tsc_khz, "\nhost_image=", plan.host_image ? 1 : 0,
      "\nmemory_limit_bytes=", plan.memory_limit_bytes, "\npids=", plan.pids,
      "\ntmp_bytes=", plan.tmp_bytes, "\ntrace_boot=", plan.trace_boot ? 1 : 0,
      "\nkernel=", kernel, "\ninitramfs=", initramfs, "\nroot_disk=", root_disk,
      "\nworkspace_disk=", workspace_disk, "\n");
}

absl::StatusOr<Machine> Machine::Parse(absl::string_view text) {
  ASSIGN_OR_RETURN(linux_runtime::RecordValues values,
                   linux_runtime::ParseRecordLines(text, "qemu machine"));
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("qemu machine: ", why));
  };
  if (values["version"] != "1") return bad("unknown version");
  Machine machine;
  VmPlan& plan = machine.plan;
  plan.id = values["id"];
  plan.hostname = values["hostname"];
  if (!linux_runtime::ValidSandboxId(plan.id)) return bad("bad id");
  const std::string& accel = values["accel"];
  if (accel != "kvm" && accel != "tcg") return bad("bad accel");
  plan.accel = accel == "kvm" ? Accel::kKvm : Accel::kTcg;
  uint64_t host_image = 0;
  if (!absl::SimpleAtoi(values["vcpus"], &plan.vcpus) ||
      !absl::SimpleAtoi(values["ram_bytes"], &plan.ram_bytes) ||
      !absl::SimpleAtoi(values["tb_cache_bytes"], &plan.tb_cache_bytes) ||
      !absl::SimpleAtoi(values["tsc_khz"], &plan.tsc_khz) ||
      !absl::SimpleAtoi(values["host_image"], &host_image) || host_image > 1 ||
      !absl::SimpleAtoi(values["memory_limit_bytes"],
                        &plan.memory_limit_bytes) ||
      !absl::SimpleAtoi(values["pids"], &plan.pids) ||
      !absl::SimpleAtoi(values["tmp_bytes"], &plan.tmp_bytes) ||
      plan.vcpus == 0 || plan.ram_bytes == 0) {
    return bad("bad numbers");
  }
  plan.host_image = host_image == 1;
  plan.trace_boot = values["trace_boot"] == "1";
  machine.kernel = values["kernel"];
  machine.initramfs = values["initramfs"];
  machine.root_disk = values["root_disk"];
  machine.workspace_disk = values["workspace_disk"];
  for (const std::string* path :
       {&machine.kernel, &machine.initramfs, &machine.workspace_disk}) {
    if (!linux_runtime::CleanAbsolutePath(*path)) return bad("bad path");
  }
  if (plan.host_image != machine.root_disk.empty() ||
      (!plan.host_image &&
       !linux_runtime::CleanAbsolutePath(machine.root_disk))) {
    return bad("bad root disk");
  }
  return machine;
}

std::string KernelCommandLine(const VmPlan& plan) {
  // quiet: every line on the emulated UART costs; warnings still show.
  // cryptomgr.notests: the crypto self-tests are a third of a TCG boot.
  // init_on_alloc=0: the guest's memory is the VM's, zeroed by the host.
  std::string line =
      "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init "
      "cryptomgr.notests init_on_alloc=0";
  if (plan.accel == Accel::kTcg && plan.tsc_khz > 0) {
    // An emulated CPU counts the host's TSC; without being told its rate,
    // about one boot in ten hangs calibrating it.
    absl::StrAppend(&line, " tsc_early_khz=", plan.tsc_khz,
                    " lpj=", plan.tsc_khz * 1000 / kGuestHz, " tsc=reliable");
  }
  absl::StrAppend(
      &line, " corral.root=", plan.host_image ? "virtiofs" : "disk",
      " corral.workspace=disk corral.port=", kAgentPortName,
      " corral.hostname=", plan.hostname,
      " corral.memory=", plan.memory_limit_bytes, " corral.pids=", plan.pids,
      " corral.tmp=", plan.tmp_bytes, plan.trace_boot ? " corral.trace=1" : "",
      plan.net.empty() ? "" : " corral.net=", plan.net, " -- --vm-init");
  return line;
}

std::vector<std::string> QemuCommand(const std::string& qemu,
                                     const VmPlan& plan, bool incoming) {
  const bool kvm = plan.accel == Accel::kKvm;
  std::vector<std::string> argv = {
      qemu,
      "-name",
      absl::StrCat("corral-", plan.id.substr(0, 8), ",debug-threads=on"),
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-no-reboot",
      "-machine",
      "microvm",
      "-cpu",
      kvm ? "host" : "max",
      "-smp",
      absl::StrCat(plan.vcpus),
      "-m",
      Mib(plan.ram_bytes),
      "-accel",
      kvm ? std::string("kvm")
          : absl::StrCat("tcg,tb-size=", plan.tb_cache_bytes >> 20),
      // Modern virtio-mmio everywhere: vhost-user-fs needs it, and a
      // snapshot restores only into the same devices.
      "-global",
      "virtio-mmio.force-legacy=false",
      "-kernel",
      absl::StrCat("/proc/self/fd/", kKernelFd),
      "-initrd",
      absl::StrCat("/proc/self/fd/", kInitramfsFd),
      "-append",
      KernelCommandLine(plan),
      "-chardev",
      "socket,id=console,fd=@CONSOLE@",
      "-serial",
      "chardev:console",
      "-device",
      "virtio-serial-device,max_ports=2",
      "-chardev",
      "socket,id=agent,fd=@LINK@",
      "-device",
      absl::StrCat("virtserialport,chardev=agent,name=", kAgentPortName),
      // Image locking off: every disk is one VM's (an image's is read-only),
      // and the locks' reacquisition after a machine is saved fails on the
      // set's second fd.
      "-add-fd",
      absl::StrCat("fd=", kWorkspaceDiskFd, ",set=2"),
      "-add-fd",
      absl::StrCat("fd=", kWorkspaceDiskReadOnlyFd, ",set=2"),
      "-drive",
      "file=/dev/fdset/2,if=none,id=workspace,format=raw,file.locking=off",
      "-device",
      "virtio-blk-device,drive=workspace,serial=corral-workspace",
      "-chardev",
      absl::StrCat("socket,id=qmp,fd=", kQmpFd, ",server=on,wait=off"),
      "-mon",
      "chardev=qmp,mode=control",
      // QEMU's own system calls: no exec, no privilege changes, no
      // obsolete calls, no resource-limit changes.
      "-sandbox",
      "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
      "resourcecontrol=deny",
  };
  if (plan.host_image) {
    // vhost-user needs the guest's memory shared with virtiofsd.
    argv.insert(argv.end(),
                {"-object",
                 absl::StrCat("memory-backend-memfd,id=ram,share=on,size=",
                              Mib(plan.ram_bytes)),
                 "-machine", "memory-backend=ram", "-chardev",
                 "socket,id=share,fd=@SHARE@", "-device",
                 "vhost-user-fs-device,chardev=share,tag=corral-root"});
  } else {
    argv.insert(
        argv.end(),
        {"-add-fd", absl::StrCat("fd=", kRootDiskFd, ",set=1"), "-drive",
         "file=/dev/fdset/"
         "1,if=none,id=root,format=raw,readonly=on,file.locking=off",
         "-device", "virtio-blk-device,drive=root,serial=corral-root"});
  }
  if (!plan.net.empty() && plan.tap_fd >= 0) {
    // The daemon's tap on its egress path (vhost off: /dev/vhost-net is
    // the host's, and QEMU runs without privileges).
    argv.insert(
        argv.end(),
        {"-netdev", absl::StrCat("tap,id=net0,fd=", plan.tap_fd), "-device",
         absl::StrCat("virtio-net-device,netdev=net0,mac=", plan.mac)});
  }
  if (incoming) {
    argv.insert(argv.end(), {"-incoming", absl::StrCat("fd:", kIncomingFd)});
  }
  return argv;
}

uint64_t HostTscKhz() {
#if defined(__x86_64__)
  static const uint64_t khz = [] {
    auto now_ns = [] {
      timespec t;
      ::clock_gettime(CLOCK_MONOTONIC_RAW, &t);
      return static_cast<uint64_t>(t.tv_sec) * 1000000000 +
             static_cast<uint64_t>(t.tv_nsec);
    };
    const uint64_t start_ns = now_ns();
    const uint64_t start_tsc = __rdtsc();
    timespec pause{0, 20 * 1000 * 1000};
    ::nanosleep(&pause, nullptr);
    const uint64_t tsc = __rdtsc() - start_tsc;
    const uint64_t ns = now_ns() - start_ns;
    return ns == 0 ? 0 : tsc * 1000000 / ns;
  }();
  return khz;
#else
  return 0;
#endif
}

}  // namespace corral::qemu_runtime
