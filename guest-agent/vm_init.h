// corral-agent as the init of a VM sandbox (the qemu and firecracker
// runtimes): the kernel
// runs it from the initramfs as /init with `--vm-init`. It loads the virtio
// modules the initramfs carries, mounts the sandbox's root (a read-only disk,
// or the host image over virtiofs) and its workspace disk (and /proc/sys
// read-only), sets up the sandbox's limits as a cgroup of its own kernel,
// has every command run without capabilities and with no_new_privs (as in
// the container runtimes), switches to the new root,
// forks the guest end of the serial link (wire/link_bridge.h) and becomes the
// agent, as PID 1. It never returns: when the agent ends, or a step fails
// (the reason goes to the console), it powers the VM off.
//
// Settings come from the kernel command line (the host's plugin writes
// them), every one optional unless marked:
//   corral.root=disk | virtiofs  the root: the disk with serial corral-root
//                                (ext4, read-only) or the virtiofs tag
//                                corral-root (required)
//   corral.workspace=disk        the disk with serial corral-workspace
//                                (ext4), mounted at /workspace
//   corral.root_dev=vda          the root disk by its device name instead
//   corral.workspace_dev=vdb     of its serial (a Firecracker guest's disks
//                                have none the host chooses; the order of
//                                its drives is the host's)
//   corral.port=NAME             virtio-serial port name (corral.agent)
//   corral.vsock=PORT            the agent listens on this vsock port and
//                                accepts the host (CID 2) alone; without a
//                                vsock device (a VMM standing in for
//                                Firecracker) the serial port and the link
//                                serve instead, and the link answers only
//                                connections asked for this port
//   corral.hostname=NAME
//   corral.memory=BYTES          memory.max of the commands' cgroup
//   corral.pids=N                pids.max of the commands' cgroup
//   corral.tmp=BYTES             size of the /tmp tmpfs (64 MiB)
//   corral.net=ADDR/PREFIX,GW    the network card's address and gateway
//                                (the daemon's tap on its egress path)
//   corral.trace=1               each step's end on the console, with the
//                                kernel's uptime
#ifndef CORRAL_GUEST_AGENT_VM_INIT_H_
#define CORRAL_GUEST_AGENT_VM_INIT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace corral::agent {

// The corral.* settings of a kernel command line (the text of
// /proc/cmdline), keys without the prefix. Exposed for tests.
std::map<std::string, std::string> ParseVmCommandLine(const std::string& text);

[[noreturn]] void RunVmInit();

// corral-agent --guest-sandbox corral.KEY=VALUE...: the sandbox inside a VM
// that is not the sandbox's alone (the tart runtime's: a Linux guest with
// its own init and services, the agent started as root by `tart exec`).
// Settings, as arguments:
//   corral.root=DIR        the image, a directory the VM shares read-only
//                          (required)
//   corral.workspace=DIR   the workspace, a directory the VM shares
//   corral.port=DEVICE     the console the serial link runs on (required;
//                          /dev/hvc0 for Tart's virtio console)
//   corral.hostname=NAME, corral.tmp=BYTES  as for a VM's init
//   corral.on_exit=poweroff  power the machine off when the agent ends (so
//                          that the host sees the sandbox end); without it
//                          the supervisor just exits
// It puts the agent and its commands in new mount, pid, network (loopback
// only), ipc and uts namespaces, with the image as their read-only root
// (the guest's own files, devices and services out of sight), the link
// forked as under RunVmInit, and commands without capabilities. The
// calling process exits 0 once the agent can be reached, or 1 with the
// reason on stderr; a supervisor is left behind in a session of its own.
[[noreturn]] void RunGuestSandbox(const std::vector<std::string>& settings);

}  // namespace corral::agent

#endif  // CORRAL_GUEST_AGENT_VM_INIT_H_
