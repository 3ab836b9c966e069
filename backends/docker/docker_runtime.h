// The "docker" runtime: each sandbox is a container of a Docker Engine or a
// Podman service, created through the engine's Unix-socket HTTP API, with
// the static corral-agent bind-mounted in as its entrypoint. See README.md.
#ifndef CORRAL_BACKENDS_DOCKER_DOCKER_RUNTIME_H_
#define CORRAL_BACKENDS_DOCKER_DOCKER_RUNTIME_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::docker {

namespace bv1 = ::corral::backend::v1;

bv1::ProbeResponse Probe(const bv1::ProbeRequest& request);
// The [runtimes.docker] options alone (see Operations::check_config).
absl::Status CheckConfig(const bv1::PluginConfig& config);
absl::StatusOr<bv1::CreateResponse> Create(const bv1::CreateRequest& request,
                                           UniqueFd* agent_fd);
absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd);
absl::Status Destroy(const bv1::DestroyRequest& request);
absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest& request);
absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request);

// The value of the corral.daemon label for a daemon whose runtime directory
// is `runtime_dir`: stable across restarts, different between daemons.
[[nodiscard]] std::string DaemonLabel(absl::string_view runtime_dir);

}  // namespace corral::docker

#endif  // CORRAL_BACKENDS_DOCKER_DOCKER_RUNTIME_H_
