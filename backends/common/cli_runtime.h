// What the runtimes that drive another program's command line share (apple:
// Apple's `container`; tart: Tart's `tart`): finding the program, running
// it with a deadline and its errors as statuses, its version asked once per
// program file, the label that marks this daemon's things in a service
// other daemons share, the agent's hello awaited on a connection, the
// handle state's key=value lines, and reconciliation's bookkeeping.
// Compiled into each such plugin (it uses the plugin's lite protos).
#ifndef CORRAL_BACKENDS_COMMON_CLI_RUNTIME_H_
#define CORRAL_BACKENDS_COMMON_CLI_RUNTIME_H_

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "backends/common/subprocess.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::backend_plugin {

// The program a runtime drives.
struct CliProgram {
  std::string name;     // "container", "tart": its name in messages
  std::string path;     // empty when it was not found
  std::string problem;  // why not, when `path` is empty
  // KEY=VALUE entries added to the program's minimal environment.
  std::vector<std::string> environment;
  // A failed call (its first argument, exit code and stderr) as a status.
  absl::Status (*error)(absl::string_view command, int exit_code,
                        absl::string_view error_output) = nullptr;
};

// `configured` (the value of runtimes.<runtime>.<option>, which must then be
// an executable file), else `name` on the daemon's PATH (as its service
// manager set it), then in `fallback_dirs`. Unfound, `path` is empty and
// `problem` says where it looked, after `not_installed` ("Tart is not
// installed").
[[nodiscard]] CliProgram FindCliProgram(
    absl::string_view runtime, absl::string_view option,
    const std::string& name, const std::string& configured,
    const std::vector<std::string>& fallback_dirs,
    absl::string_view not_installed);

// Runs `program ARGS...` with stdout and stderr apart (16 MiB of each at
// most); FAILED_PRECONDITION with `problem` when there is no program.
[[nodiscard]] absl::StatusOr<runtime_common::ProgramResult> RunCli(
    const CliProgram& program, const std::vector<std::string>& args,
    absl::Duration timeout);
// The same for a call that must succeed: its stdout, or `program.error`'s
// status for a non-zero exit.
[[nodiscard]] absl::StatusOr<std::string> RunCliOk(
    const CliProgram& program, const std::vector<std::string>& args,
    absl::Duration timeout = absl::Minutes(2));

// `program --version`, run once per program file (the same path, inode and
// modification time: a CLI is replaced by installing a new file), not on
// every create.
[[nodiscard]] absl::StatusOr<runtime_common::ProgramResult> CliVersionOutput(
    const CliProgram& program);

// What a `--version` says the program is.
struct CliIdentity {
  std::string version;
  // Corral's test fake (tests/fakes/) says "corral test fake" in it.
  bool fake = false;
};

// `program --version` (CliVersionOutput) read by `version_of`, which
// returns the version or "" for output that is not `what`'s: a problem
// ("... is not <what> (--version said: ...)"), or "" with `identity` set.
[[nodiscard]] std::string CliVersionProblem(
    const CliProgram& program,
    std::string (*version_of)(absl::string_view output), absl::string_view what,
    CliIdentity* identity);

// The guarantees of a runtime whose every sandbox is a VM of its own with
// no network device or a loopback-only namespace: network-isolation, and
// separate-kernel unless the program is the test fake (whose sandboxes
// share the host's kernel).
[[nodiscard]] std::vector<int> VmGuarantees(bool fake);

// Completes a Probe: the agent at `agent_path` must be readable; without
// problems the runtime is available with `reason` and `guarantees`,
// otherwise unavailable with the problems joined by "; ".
void FinishProbe(std::vector<std::string> problems,
                 const std::string& agent_path, const std::string& reason,
                 const std::vector<int>& guarantees,
                 ::corral::backend::v1::ProbeResponse* response);

// What marks this daemon instance's containers, images or VMs in a
// service several daemons (or users) share: its instance id, or for a
// config without one a hash of its runtime directory. INVALID_ARGUMENT for
// a malformed id.
[[nodiscard]] absl::StatusOr<std::string> DaemonLabel(
    const ::corral::backend::v1::PluginConfig& config);

// The runtime options of a VM runtime: userns=false alone (there is no
// user namespace: each sandbox is a VM of its own).
[[nodiscard]] absl::Status RefuseUserNamespace(
    const ::corral::backend::v1::SandboxSpec& spec, absl::string_view runtime);

// Waits up to `wait` for the first byte on `fd`, the agent's hello, which
// stays unread for the daemon. UNAVAILABLE when nothing came, or with
// `closed` when the peer closed the connection first.
[[nodiscard]] absl::StatusOr<UniqueFd> WaitForHello(UniqueFd fd,
                                                    absl::Duration wait,
                                                    absl::string_view closed);

// SandboxHandle.state as key=value lines after `version=1`.
[[nodiscard]] std::string SerializeHandleState(
    const std::vector<std::pair<std::string, std::string>>& fields);
// Those lines back, every key one of `keys`, versioned; INVALID_ARGUMENT
// naming `runtime` otherwise.
[[nodiscard]] absl::StatusOr<std::map<std::string, std::string>>
ParseHandleState(absl::string_view text, absl::string_view runtime,
                 const std::set<std::string>& keys);

// Which daemon instances' things a Reconcile removes: this daemon's
// (`daemon_label`), or with `orphans` those of instances no daemon runs
// (optionally one of them alone).
class ReconcileScope {
 public:
  ReconcileScope(const ::corral::backend::v1::ReconcileRequest& request,
                 std::string daemon_label);
  [[nodiscard]] bool Ours(const std::string& instance) const;
  // Whether the store knows sandbox `id` (never removed without orphans).
  [[nodiscard]] bool Known(const std::string& id) const {
    return known_.count(id) != 0;
  }
  [[nodiscard]] bool orphans() const { return orphans_; }
  // What a removal reports: the id, or with orphans "<instance>/<id>".
  [[nodiscard]] std::string Removed(const std::string& instance,
                                    const std::string& id) const;

  // The first failure, annotated with `what`; later ones are dropped.
  void Note(const absl::Status& status, absl::string_view what);
  [[nodiscard]] const absl::Status& status() const { return status_; }

  // Removes the entries of `runtime_dir` named as sandboxes the store does
  // not know (this daemon's own directory: not with orphans).
  void RemoveUnknownSandboxDirs(const std::string& runtime_dir,
                                std::set<std::string>* removed);

 private:
  std::string daemon_label_;
  std::set<std::string> known_;
  std::set<std::string> live_;
  std::string only_instance_;
  bool orphans_;
  absl::Status status_;
};

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_CLI_RUNTIME_H_
