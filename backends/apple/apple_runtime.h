// The "apple" runtime: every sandbox is a container of Apple's `container`
// (macOS 26 on Apple silicon: one lightweight VM per container, Apple's
// vminitd its PID 1), driven through the `container` CLI. The static
// corral-agent, shared into the VM read-only, is the container's process;
// the runtime publishes its socket to the host (`--publish-socket`). See
// README.md. On Linux it is tested against a FAKE `container`
// (tests/fakes/apple), never against the real one.
#ifndef CORRAL_BACKENDS_APPLE_APPLE_RUNTIME_H_
#define CORRAL_BACKENDS_APPLE_APPLE_RUNTIME_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::apple_runtime {

namespace bv1 = ::corral::backend::v1;

bv1::ProbeResponse Probe(const bv1::ProbeRequest& request);
absl::Status CheckConfig(const bv1::PluginConfig& config);
absl::StatusOr<bv1::CreateResponse> Create(const bv1::CreateRequest& request,
                                           UniqueFd* agent_fd);
absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd);
absl::Status Destroy(const bv1::DestroyRequest& request);
absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest& request);
absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request);

}  // namespace corral::apple_runtime

#endif  // CORRAL_BACKENDS_APPLE_APPLE_RUNTIME_H_
