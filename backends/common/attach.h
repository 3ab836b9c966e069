// What a plugin's Attach answers once it tried to reach the agent of a
// sandbox made before (by this daemon or an earlier one).
#ifndef CORRAL_BACKENDS_COMMON_ATTACH_H_
#define CORRAL_BACKENDS_COMMON_ATTACH_H_

#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::backend_plugin {

// Alive with the connection (moved to `agent_fd`), or not alive with the
// reason it could not be made.
[[nodiscard]] ::corral::backend::v1::AttachResponse AttachTo(
    absl::StatusOr<UniqueFd> connection, UniqueFd* agent_fd);

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_ATTACH_H_
