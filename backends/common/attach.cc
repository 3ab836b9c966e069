#include "backends/common/attach.h"

#include <string>
#include <utility>

namespace corral::backend_plugin {

::corral::backend::v1::AttachResponse AttachTo(
    absl::StatusOr<UniqueFd> connection, UniqueFd* agent_fd) {
  ::corral::backend::v1::AttachResponse response;
  if (!connection.ok()) {
    response.set_reason(std::string(connection.status().message()));
    return response;
  }
  response.set_alive(true);
  *agent_fd = std::move(*connection);
  return response;
}

}  // namespace corral::backend_plugin
