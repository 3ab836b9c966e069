// The QEMU command line of one VM sandbox, and the kernel command line that
// tells the guest's init (guest-agent/vm_init.h) what to mount and limit.
// Pure functions of a VmPlan, so tests can read what a sandbox would get.
#ifndef CORRAL_BACKENDS_QEMU_QEMU_COMMAND_H_
#define CORRAL_BACKENDS_QEMU_QEMU_COMMAND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "backends/qemu/qemu_settings.h"

namespace corral::qemu_runtime {

// The fds QEMU inherits from corral-qemu-launch, at fixed numbers (the
// launcher puts what it makes itself at @LINK@, @CONSOLE@ and @SHARE@).
inline constexpr int kKernelFd = 10;
inline constexpr int kInitramfsFd = 11;
// The workspace disk twice, read-write and read-only: QEMU reopens a disk
// read-only at times, and takes from its fd set only an fd of the access
// mode it asks for.
inline constexpr int kWorkspaceDiskFd = 12;
inline constexpr int kWorkspaceDiskReadOnlyFd = 13;
inline constexpr int kQmpFd = 14;
inline constexpr int kRootDiskFd = 15;  // only with an image disk
// A saved machine's state, when the VM starts from one (-incoming).
inline constexpr int kIncomingFd = 16;
// The virtio-serial port of the agent's link.
inline constexpr char kAgentPortName[] = "corral.agent";

struct VmPlan {
  std::string id;
  std::string hostname;
  Accel accel = Accel::kTcg;
  uint32_t vcpus = 1;
  uint64_t ram_bytes = 0;
  uint64_t tb_cache_bytes = 0;
  // The host's TSC rate (TCG guests are told it; 0: not known).
  uint64_t tsc_khz = 0;
  // The root is the host image over virtiofs, not a disk.
  bool host_image = false;
  // Limits the guest's init applies to the commands' cgroup.
  uint64_t memory_limit_bytes = 0;
  uint32_t pids = 0;
  uint64_t tmp_bytes = 0;
  // The guest's init prints each step's time on the console (console.log).
  bool trace_boot = false;
  // With network: the guest's "ADDRESS/PREFIX,GATEWAY" (corral.net=), its
  // card's MAC, and the fd number of the tap QEMU gets (not saved: a VM
  // with network is never saved).
  std::string net;
  std::string mac;
  int tap_fd = -1;
};

// What a VM was started with, kept in its runtime directory ("machine") so
// that a saved state of it can start again on exactly the same machine:
// the plan and the files QEMU opened.
struct Machine {
  VmPlan plan;
  std::string kernel;
  std::string initramfs;
  std::string root_disk;  // empty for the host image
  std::string workspace_disk;

  [[nodiscard]] std::string Serialize() const;
  // INVALID_ARGUMENT for text this version did not write.
  [[nodiscard]] static absl::StatusOr<Machine> Parse(absl::string_view text);
};

[[nodiscard]] std::string KernelCommandLine(const VmPlan& plan);

// argv for corral-qemu-launch to run (with its @LINK@ placeholders). With
// `incoming`, QEMU loads a saved machine from kIncomingFd and runs it
// instead of booting.
[[nodiscard]] std::vector<std::string> QemuCommand(const std::string& qemu,
                                                   const VmPlan& plan,
                                                   bool incoming = false);

// The TSC rate of this host in kHz, measured once (about 20 ms); 0 where
// there is no TSC to read.
[[nodiscard]] uint64_t HostTscKhz();

}  // namespace corral::qemu_runtime

#endif  // CORRAL_BACKENDS_QEMU_QEMU_COMMAND_H_
