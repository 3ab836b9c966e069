// What the runtimes that keep a sandbox in host cgroups share for Stats and
// Reconcile (linux, oci, qemu): the stats of those cgroups, and the removal
// of the sandboxes they left on the host that the daemon's store does not
// know.
#ifndef CORRAL_BACKENDS_COMMON_LEFTOVERS_H_
#define CORRAL_BACKENDS_COMMON_LEFTOVERS_H_

#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/linux/cgroups.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/hex_id.h"

namespace corral::backend_plugin {

// The StatsResponse of a sandbox's cgroups.
[[nodiscard]] ::corral::backend::v1::StatsResponse StatsResponseFrom(
    const linux_runtime::CgroupStats& stats);

// The sandbox ids the runtime finds on the host: the names of its cgroups
// under `cgroup_parent` and of the entries of `dirs` (missing ones are
// empty), keeping only names that are sandbox ids (a cache directory or a
// stray file is not a sandbox).
[[nodiscard]] std::set<std::string> SandboxIdsOnHost(
    const linux_runtime::CgroupLayout& layout, const std::string& cgroup_parent,
    const std::vector<std::string>& dirs);

// Calls `tear_down` for each id of `found` that `request.known_ids` does not
// name. The ids removed; the first failure (annotated with its id) once all
// were tried.
[[nodiscard]] absl::StatusOr<::corral::backend::v1::ReconcileResponse>
RemoveUnknownSandboxes(
    const std::set<std::string>& found,
    const ::corral::backend::v1::ReconcileRequest& request,
    absl::FunctionRef<absl::Status(const std::string& id)> tear_down);

// True for a daemon instance id: 16 lowercase hex characters.
using ::corral::ValidInstanceId;

// Where the cgroups of this daemon instance's sandboxes live:
// <cgroup_parent>/<instance_id>, so that no other daemon's reconcile ever
// sees them; just <cgroup_parent> when the instance is empty (a plugin
// driven alone, in its own tests). INVALID_ARGUMENT for a malformed id.
[[nodiscard]] absl::StatusOr<std::string> InstanceCgroupParent(
    const std::string& cgroup_parent, const std::string& instance_id);

// For `corrald --cleanup-orphans` (ReconcileRequest.orphans): kills and
// removes the cgroups of every sandbox of every instance under
// `cgroup_parent` that is neither request.live_instances nor this one, then
// those instances' own directories. The removed ids are
// "<instance>/<sandbox>".
[[nodiscard]] absl::StatusOr<::corral::backend::v1::ReconcileResponse>
RemoveOrphanInstances(const linux_runtime::CgroupLayout& layout,
                      const std::string& cgroup_parent,
                      const ::corral::backend::v1::ReconcileRequest& request);

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_LEFTOVERS_H_
