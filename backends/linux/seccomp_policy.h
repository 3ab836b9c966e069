// The seccomp filter of every sandbox: a deny list modelled on Docker's
// default profile (EPERM for mount, namespace, module, kexec, bpf, keyring,
// io_uring ... calls; ENOSYS for clone3; foreign ABIs killed).
#ifndef CORRAL_BACKENDS_LINUX_SECCOMP_POLICY_H_
#define CORRAL_BACKENDS_LINUX_SECCOMP_POLICY_H_

#include <sched.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace corral::linux_runtime {

// The syscalls answered EPERM whatever their arguments.
[[nodiscard]] const std::vector<std::string>& DeniedSyscalls();

// The argument rules of the policy. Public so that a runtime expressing the
// policy in another format (backends/common/seccomp_json.h, OCI and Docker
// profiles) uses the same values and cannot drift from it.
//
// Namespace flags of clone(2) (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET = 0x7E020000):
// clone with any of them is EPERM.
inline constexpr uint64_t kCloneNamespaceFlags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};

// personality(2) values a program may set, as Docker allows: PER_LINUX,
// PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and 0xffffffff (query). Every
// other bit (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, foreign personalities...)
// is refused.
inline constexpr uint64_t kAllowedPersonalityBits = 0x0020008;
inline constexpr uint64_t kPersonalityQuery = 0xffffffff;

// Socket families a sandbox may use: AF_UNIX(1), AF_INET(2), AF_INET6(10),
// AF_NETLINK(16), AF_PACKET(17, needs CAP_NET_RAW anyway). The rest
// (AF_VSOCK, AF_ALG, AF_KEY, AF_TIPC, AF_RDS, ...) hold most of the socket
// CVEs and have no use in a sandbox with only loopback: EAFNOSUPPORT.
inline constexpr int kMaxAllowedFamily = AF_PACKET;
inline constexpr int kAllowedFamilies[] = {AF_UNIX, AF_INET, AF_INET6,
                                           AF_NETLINK, AF_PACKET};

// A built (not yet loaded) filter. Move-only; owns the libseccomp context.
class SeccompFilter {
 public:
  [[nodiscard]] static absl::StatusOr<SeccompFilter> Build();

  SeccompFilter(SeccompFilter&& other) noexcept;
  SeccompFilter& operator=(SeccompFilter&& other) noexcept;
  SeccompFilter(const SeccompFilter&) = delete;
  SeccompFilter& operator=(const SeccompFilter&) = delete;
  ~SeccompFilter();

  // Installs the filter on the calling thread (sets no_new_privs if it is
  // not set yet). Irreversible.
  [[nodiscard]] absl::Status Load() const;

  // The filter compiled to a classic BPF program (struct sock_filter
  // array). Compiling takes about as long as the rest of a sandbox's start,
  // so the launcher does it in parallel with the init's mounts and hands
  // the program over.
  [[nodiscard]] absl::StatusOr<std::string> ExportBpf() const;

  // Installs a program made by ExportBpf on the calling thread.
  // Precondition: no_new_privs is set (or the caller has CAP_SYS_ADMIN).
  [[nodiscard]] static absl::Status LoadBpf(const std::string& program);

 private:
  explicit SeccompFilter(void* context) : context_(context) {}
  void* context_ = nullptr;  // scmp_filter_ctx, owned
};

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_SECCOMP_POLICY_H_
