// The "VM" behind the FAKE `tart run`: a runc container whose root is the
// VM's `rootfs/` (the stand-in for its disk), started and watched by the
// `tart run` process, with a keeper process that removes it whenever that
// process ends, however it ends (a VM lives inside Tart's process); and
// `tart exec` as `runc exec`.
//
// Fake-only state, beside Tart's own in TART_HOME:
//   <home>/corral-fake/runc         runc's state root
//   <home>/corral-fake/vms/<id>/    the runc bundle (config.json), the
//                                    "ready" mark once the guest runs
//   <home>/corral-fake/locks/<id>.lock  held by `tart run` and its keeper
//                                    until the container is gone
// <id> is "tart-fake-" and 16 hex digits of a hash of TART_HOME and the
// VM's name; its cgroup is /corral-tart-fake-<id>.
#ifndef CORRAL_TESTS_FAKES_TART_TART_VM_H_
#define CORRAL_TESTS_FAKES_TART_TART_VM_H_

#include <cstdint>
#include <string>
#include <vector>

namespace corral::fake_tart {

// A --dir share of the automount tag: at /mnt/shared/<name>, or, alone
// and unnamed, at /mnt/shared itself.
struct Share {
  std::string name;  // empty: the single unnamed share
  std::string path;  // absolute, on the host
  bool read_only = false;
};

struct VmRun {
  std::string home;
  std::string name;
  std::string vm_dir;
  int cpus = 4;
  uint64_t memory = 0;      // bytes
  std::string serial_path;  // empty: no serial console
  int serial_fd = -1;       // held open while the VM runs, as Tart does
  std::vector<Share> shares;
};

std::string ContainerId(const std::string& home, const std::string& name);
std::string CleanupLockPath(const std::string& home, const std::string& name);
std::string RuncPath();

// Runs the VM in the foreground (the caller holds the PID lock) and ends
// the process: 0 when the guest stopped or SIGINT stopped it; SIGTERM and
// SIGHUP end it by that signal once the guest is gone.
[[noreturn]] void RunVm(const VmRun& run);

// `tart exec` of a running VM: the command's exit code. Throws CliExit
// when the guest is not up.
int ExecInVm(const std::string& home, const std::string& name,
             const std::vector<std::string>& command, bool interactive);

}  // namespace corral::fake_tart

#endif  // CORRAL_TESTS_FAKES_TART_TART_VM_H_
