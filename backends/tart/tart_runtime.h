// The "tart" runtime: every sandbox is a Linux VM of Tart (cirruslabs/tart,
// macOS on Apple silicon, Apple's Virtualization.framework), cloned from a
// configured base VM and driven through the `tart` CLI. A supervisor on the
// host (corral-tart-launch) runs `tart run` with a virtio console it holds
// and relays the agent's serial link over it; `tart exec` starts the agent
// in the guest as a sandbox of its own namespaces, rooted in the image the
// VM shares. See README.md. On Linux it is tested against a FAKE `tart`
// (tests/fakes/tart), never against the real one.
#ifndef CORRAL_BACKENDS_TART_TART_RUNTIME_H_
#define CORRAL_BACKENDS_TART_TART_RUNTIME_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::tart_runtime {

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

}  // namespace corral::tart_runtime

#endif  // CORRAL_BACKENDS_TART_TART_RUNTIME_H_
