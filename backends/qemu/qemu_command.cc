#include "backends/qemu/qemu_command.h"

#include <time.h>

#include "absl/strings/str_cat.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace corral::qemu_runtime {
namespace {

// Debian's kernels tick at 250 Hz; lpj (loops per jiffy) follows from it.
constexpr uint64_t kGuestHz = 250;

std::string Mib(uint64_t bytes) { return absl::StrCat(bytes >> 20, "M"); }

}  // namespace

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
  absl::StrAppend(&line, " corral.root=", plan.host_image ? "virtiofs" : "disk",
                  " corral.workspace=disk corral.port=", kAgentPortName,
                  " corral.hostname=", plan.hostname,
                  " corral.memory=", plan.memory_limit_bytes,
                  " corral.pids=", plan.pids, " corral.tmp=", plan.tmp_bytes,
                  " -- --vm-init");
  return line;
}

std::vector<std::string> QemuCommand(const std::string& qemu,
                                     const VmPlan& plan) {
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
      "-add-fd",
      absl::StrCat("fd=", kWorkspaceDiskFd, ",set=2"),
      "-add-fd",
      absl::StrCat("fd=", kWorkspaceDiskReadOnlyFd, ",set=2"),
      "-drive",
      "file=/dev/fdset/2,if=none,id=workspace,format=raw",
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
         "file=/dev/fdset/1,if=none,id=root,format=raw,readonly=on", "-device",
         "virtio-blk-device,drive=root,serial=corral-root"});
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
