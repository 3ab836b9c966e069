// The operations of the linux runtime plugin, on the messages of
// proto/corral/backend/v1/backend.proto (the plugin's own protobuf-lite
// build of them). plugin_entry.cc puts them behind the C ABI.
#ifndef CORRAL_BACKENDS_LINUX_LINUX_RUNTIME_H_
#define CORRAL_BACKENDS_LINUX_LINUX_RUNTIME_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::linux_runtime {

namespace bv1 = ::corral::backend::v1;

// Never fails: answers available=false with the reason.
[[nodiscard]] bv1::ProbeResponse Probe(const bv1::ProbeRequest& request);
// The [runtimes.<name>] options alone (see Operations::check_config).
[[nodiscard]] absl::Status CheckConfig(const bv1::PluginConfig& config);

// Creates and starts a sandbox; `agent_fd` receives a connection to its
// agent. On failure nothing of the sandbox remains on the host.
[[nodiscard]] absl::StatusOr<bv1::CreateResponse> Create(
    const bv1::CreateRequest& request, UniqueFd* agent_fd);

// alive=false (and no fd) when the sandbox's init is gone.
[[nodiscard]] absl::StatusOr<bv1::AttachResponse> Attach(
    const bv1::AttachRequest& request, UniqueFd* agent_fd);

// Idempotent.
[[nodiscard]] absl::Status Destroy(const bv1::DestroyRequest& request);

[[nodiscard]] absl::StatusOr<bv1::StatsResponse> Stats(
    const bv1::StatsRequest& request);

[[nodiscard]] absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request);

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_LINUX_RUNTIME_H_
