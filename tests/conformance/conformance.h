// The conformance suite's fixture: one test binary, run once per runtime
// variant (CORRAL_CONFORMANCE_VARIANT), checks through the real daemon and
// CLI what Corral promises on every runtime. Each test case makes a
// Conformance, which starts corrald configured for the variant and, the first
// time in the process, checks that the variant's runtime can run here: when
// it cannot, the process prints "SKIPPED: <runtime>: <reason>" and exits with
// kSkipExitCode, which CTest reports as skipped, never as passed.
#ifndef CORRAL_TESTS_CONFORMANCE_CONFORMANCE_H_
#define CORRAL_TESTS_CONFORMANCE_CONFORMANCE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/system.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing::conformance {

namespace v1 = corral::v1;

// CTest's SKIP_RETURN_CODE for the suite (the automake convention).
inline constexpr int kSkipExitCode = 77;

struct Variant {
  std::string name;         // "linux", "oci-runc", "oci-crun", "docker", ...
  std::string runtime;      // the runtime its sandboxes name: "linux", ...
  std::string config_toml;  // daemon config for it; may be empty
  // An image archive every daemon of the variant imports as
  // kConformanceImage, its default image (for a runtime that cannot boot
  // the built-in host image); empty for the host image.
  std::string image_tar;
  // A command run once (per test process) before the first daemon starts,
  // e.g. starting a fake's service; it must succeed. Empty for none.
  std::vector<std::string> setup;
};

// The name under which a variant's image_tar is imported.
inline constexpr char kConformanceImage[] = "conformance-base";

// The variant called `name`; std::invalid_argument for an unknown name
// (a misspelt variant must fail, not skip).
Variant VariantNamed(const std::string& name);
// The variant in CORRAL_CONFORMANCE_VARIANT, "linux" when it is unset.
const Variant& CurrentVariant();

// The CLI's spelling of a guarantee: GUARANTEE_CGROUP_LIMITS -> cgroup-limits.
std::string GuaranteeName(v1::Guarantee guarantee);

// A daemon for one test case, configured for the current variant.
class Conformance {
 public:
  // `extra_toml` is appended to the variant's config. With `netns_path`
  // corrald runs in that network namespace (a FakeInternet's host one).
  explicit Conformance(const std::string& extra_toml = "",
                       const std::string& netns_path = "");
  ~Conformance();

  Daemon& daemon() { return *daemon_; }
  const Variant& variant() const { return variant_; }
  const std::string& runtime() const { return variant_.runtime; }
  // The runtime as ListRuntimes described it when the process first asked.
  const v1::Runtime& runtime_info() const;
  bool RuntimeClaims(v1::Guarantee guarantee) const;

  // `corral create --runtime <runtime> <flags>`: the new sandbox's id.
  // REQUIREs success and that the daemon made it on the variant's runtime.
  std::string Create(const std::vector<std::string>& flags = {});
  // Through the API; `request.runtime` is set to the variant's runtime.
  v1::Sandbox CreateApi(v1::CreateSandboxRequest request = {});
  // GetSandbox through the API; REQUIREs success.
  v1::Sandbox Get(const std::string& id);

  CommandResult Cli(const std::vector<std::string>& args,
                    const std::string& stdin_data = "") const;
  // `corral run --runtime <runtime> <args>`.
  CommandResult Run(const std::vector<std::string>& args,
                    const std::string& stdin_data = "") const;
  // `corral exec <exec_flags> ID -- sh -c <script>`.
  CommandResult Sh(const std::string& id, const std::string& script,
                   const std::vector<std::string>& exec_flags = {}) const;

  // Prints a note that a guarantee is not claimed, so not checked.
  void NoteUnclaimed(const v1::Sandbox& sandbox, v1::Guarantee guarantee) const;

 private:
  // Exits the process with kSkipExitCode when the runtime cannot run here.
  void RequireRuntime();

  Variant variant_;
  std::unique_ptr<Daemon> daemon_;
};

bool HasGuarantee(const v1::Sandbox& sandbox, v1::Guarantee guarantee);

// --- the sandbox as the host sees it ---------------------------------------
// A container runtime runs its sandbox's processes on the host's kernel in a
// pid namespace of their own: the namespace's link text ("pid:[4026532123]")
// names it both inside and on the host, which finds the sandbox's host
// processes without knowing how the runtime started them. A VM runtime
// (separate-kernel) runs them on a kernel of their own: what the host sees
// of the sandbox is the processes of its host cgroup (the VM's supervisor,
// QEMU, virtiofsd).

// Whether the variant's runtime gives each sandbox a kernel of its own.
bool SeparateKernel(const Conformance& suite);

// What tells one sandbox's processes from another's, read inside: its pid
// namespace, or for a VM its kernel's boot id. REQUIREs success.
std::string IsolationDomainOf(const Conformance& suite, const std::string& id);

// The sandbox's pid namespace, read inside it; REQUIREs success.
std::string PidNamespaceOf(const Conformance& suite, const std::string& id);

struct HostProcess {
  pid_t pid = 0;
  unsigned long long start_time = 0;  // field 22 of /proc/PID/stat
  uid_t uid = 0;                      // real uid
  pid_t ns_pid = 0;                   // its pid in the innermost namespace
  // Killing it ends the sandbox: the container's init, or QEMU.
  bool ends_sandbox = false;
};

// The host processes in `pid_namespace`. Only meaningful while the sandbox
// lives: the kernel reuses the numbers of freed namespaces.
std::vector<HostProcess> HostProcessesIn(const std::string& pid_namespace);

// The host processes of sandbox `id`: those in its pid namespace, or for a
// VM those in its host cgroup.
std::vector<HostProcess> SandboxHostProcesses(const Conformance& suite,
                                              const std::string& id);

// Those of `processes` still alive (same pid and start time).
std::vector<HostProcess> StillAlive(const std::vector<HostProcess>& processes);

// What is left on the host of a removed sandbox: any of `processes`, cgroup
// directories, mounts or files under the daemon's state directory named
// after it. Empty when nothing is; retries for a moment, as the kernel frees
// a killed sandbox's cgroups shortly after its last process.
std::string Leftovers(const Daemon& daemon, const std::string& id,
                      const std::vector<HostProcess>& processes);

// Waits up to `seconds` for the sandbox to reach `state`; its last view.
v1::Sandbox WaitForState(Conformance& suite, const std::string& id,
                         v1::SandboxState state, int seconds = 10);

}  // namespace corral::testing::conformance

#endif  // CORRAL_TESTS_CONFORMANCE_CONFORMANCE_H_
