#include "backends/common/leftovers.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "backends/linux/fs_util.h"
#include "corral/status_macros.h"

namespace corral::backend_plugin {

namespace bv1 = ::corral::backend::v1;

bv1::StatsResponse StatsResponseFrom(const linux_runtime::CgroupStats& stats) {
  bv1::StatsResponse response;
  response.set_oom_kills(stats.oom_kills);
  response.set_memory_bytes(stats.memory_bytes);
  response.set_pids(stats.pids);
  response.set_cpu_usage_us(stats.cpu_usage_us);
  return response;
}

std::set<std::string> SandboxIdsOnHost(
    const linux_runtime::CgroupLayout& layout, const std::string& cgroup_parent,
    const std::vector<std::string>& dirs) {
  std::set<std::string> found;
  for (const std::string& id :
       linux_runtime::ListSandboxCgroupIds(layout, cgroup_parent)) {
    if (linux_runtime::ValidSandboxId(id)) found.insert(id);
  }
  for (const std::string& dir : dirs) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      std::string name = entry.path().filename().string();
      if (linux_runtime::ValidSandboxId(name)) found.insert(std::move(name));
    }
  }
  return found;
}

absl::StatusOr<bv1::ReconcileResponse> RemoveUnknownSandboxes(
    const std::set<std::string>& found, const bv1::ReconcileRequest& request,
    absl::FunctionRef<absl::Status(const std::string& id)> tear_down) {
  const std::set<std::string> known(request.known_ids().begin(),
                                    request.known_ids().end());
  bv1::ReconcileResponse response;
  absl::Status result;
  for (const std::string& id : found) {
    if (known.count(id) != 0) continue;
    absl::Status status = tear_down(id);
    if (status.ok()) {
      response.add_removed_ids(id);
    } else if (result.ok()) {
      result = Annotate(status, absl::StrCat("leftover sandbox ", id));
    }
  }
  if (!result.ok()) return result;
  return response;
}

absl::StatusOr<std::string> InstanceCgroupParent(
    const std::string& cgroup_parent, const std::string& instance_id) {
  if (instance_id.empty()) return cgroup_parent;
  if (!ValidInstanceId(instance_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("PluginConfig.instance_id '", instance_id.substr(0, 40),
                     "' is not 16 lowercase hex characters"));
  }
  return absl::StrCat(cgroup_parent, "/", instance_id);
}

absl::StatusOr<bv1::ReconcileResponse> RemoveOrphanInstances(
    const linux_runtime::CgroupLayout& layout, const std::string& cgroup_parent,
    const bv1::ReconcileRequest& request) {
  std::set<std::string> live(request.live_instances().begin(),
                             request.live_instances().end());
  live.insert(request.config().instance_id());
  bv1::ReconcileResponse response;
  absl::Status result;
  for (const std::string& instance :
       linux_runtime::ListSandboxCgroupIds(layout, cgroup_parent)) {
    if (!ValidInstanceId(instance) || live.count(instance) != 0) continue;
    if (!request.only_instance().empty() &&
        instance != request.only_instance()) {
      continue;
    }
    const std::string parent = absl::StrCat(cgroup_parent, "/", instance);
    for (const std::string& id :
         linux_runtime::ListSandboxCgroupIds(layout, parent)) {
      if (!linux_runtime::ValidSandboxId(id)) continue;
      absl::Status status = linux_runtime::KillAndRemoveCgroups(
          linux_runtime::SandboxCgroups::For(layout, parent, id),
          absl::Seconds(5));
      if (status.ok()) {
        response.add_removed_ids(absl::StrCat(instance, "/", id));
      } else if (result.ok()) {
        result = Annotate(status,
                          absl::StrCat("orphan sandbox ", instance, "/", id));
      }
    }
    // The instance's own directories, now empty (rmdir leaves them
    // otherwise, and the next cleanup tries again).
    for (const std::string& dir :
         linux_runtime::SandboxCgroups::For(layout, cgroup_parent, instance)
             .Directories()) {
      ::rmdir(dir.c_str());
    }
  }
  if (!result.ok()) return result;
  return response;
}

}  // namespace corral::backend_plugin
