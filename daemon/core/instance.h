// The identity of one daemon instance and the host-wide registry that lets
// several daemons share a host without disturbing each other.
//
// An instance is a state directory: its id (16 lowercase hex characters) is
// made on the first start and kept in <state>/instance-id, so a restarted
// daemon is the same instance and finds its own sandboxes. Every host object
// an instance makes outside its state directory carries the id (cgroups,
// containers), and the host uids its sandboxes run as are claimed host-wide,
// one file per uid, so no two instances ever hand out the same uid.
//
// The registry (kHostRegistryDir, root-only) holds:
//   instances/<id>  where that instance keeps its state (so that a cleanup
//                   can tell a live instance from one whose state is gone)
//   uids/<uid>      "<instance id> <sandbox id>": who holds that host uid
#ifndef CORRAL_DAEMON_CORE_INSTANCE_H_
#define CORRAL_DAEMON_CORE_INSTANCE_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "corral/hex_id.h"
#include "corral/platform.h"

namespace corral::daemon {

inline const char* const kHostRegistryDir = platform::Defaults().host_registry;

// True for 16 lowercase hex characters (corral/hex_id.h).
using ::corral::ValidInstanceId;

// The id kept in `state_dir`/instance-id, made (randomly, written atomically)
// when the file does not exist yet. INVALID_ARGUMENT when the file holds
// something else.
[[nodiscard]] absl::StatusOr<std::string> LoadOrCreateInstanceId(
    const std::string& state_dir);

// What the registry says of one instance.
struct InstanceRecord {
  std::string id;
  std::string state_dir;
  std::string socket;
};

// One holder of a host uid.
struct UidClaim {
  std::string instance_id;
  std::string sandbox_id;
};

class HostRegistry {
 public:
  // Opens (creating, mode 0700) the registry under `root`.
  [[nodiscard]] static absl::StatusOr<HostRegistry> Open(
      const std::string& root = kHostRegistryDir);

  // Records (or updates) where `record.id` keeps its state.
  [[nodiscard]] absl::Status Register(const InstanceRecord& record) const;
  // Every registered instance; entries that cannot be read are skipped.
  [[nodiscard]] std::vector<InstanceRecord> Instances() const;
  [[nodiscard]] absl::Status Unregister(const std::string& instance_id) const;
  // An instance is live when its state directory still holds its id: its
  // daemon may be stopped, but its sandboxes and their host objects are
  // still its own.
  [[nodiscard]] static bool IsLive(const InstanceRecord& record);

  // Takes `uid` for `sandbox_id` of `instance_id`: true when it is now held
  // by them (also when it already was), false when someone else holds it.
  [[nodiscard]] absl::StatusOr<bool> ClaimUid(
      uint32_t uid, const std::string& instance_id,
      const std::string& sandbox_id) const;
  // Gives `uid` back, only if `instance_id` holds it.
  [[nodiscard]] absl::Status ReleaseUid(uint32_t uid,
                                        const std::string& instance_id) const;
  // Every claimed uid, by holder.
  [[nodiscard]] std::map<uint32_t, UidClaim> Claims() const;

  const std::string& root() const { return root_; }

 private:
  explicit HostRegistry(std::string root) : root_(std::move(root)) {}
  std::string InstancePath(const std::string& id) const;
  std::string UidPath(uint32_t uid) const;

  std::string root_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_INSTANCE_H_
