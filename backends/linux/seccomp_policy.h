// The seccomp filter of every sandbox: a deny list modelled on Docker's
// default profile (EPERM for mount, namespace, module, kexec, bpf, keyring,
// io_uring ... calls; ENOSYS for clone3; foreign ABIs killed).
#ifndef CORRAL_BACKENDS_LINUX_SECCOMP_POLICY_H_
#define CORRAL_BACKENDS_LINUX_SECCOMP_POLICY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace corral::linux_runtime {

// The syscalls answered EPERM whatever their arguments.
[[nodiscard]] const std::vector<std::string>& DeniedSyscalls();

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
