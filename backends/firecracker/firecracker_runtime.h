// The operations of the firecracker runtime plugin: every sandbox is a
// Firecracker microVM started by Firecracker's jailer (the sandbox's host
// uid and gid, cgroup limits, a chroot of its own), configured over its API
// socket and running corral-agent as its init, reached over vsock
// (backends/firecracker/README.md). plugin_entry.cc puts them behind the C
// ABI.
#ifndef CORRAL_BACKENDS_FIRECRACKER_FIRECRACKER_RUNTIME_H_
#define CORRAL_BACKENDS_FIRECRACKER_FIRECRACKER_RUNTIME_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::firecracker_runtime {

namespace bv1 = ::corral::backend::v1;

// Never fails: answers available=false with the reason.
[[nodiscard]] bv1::ProbeResponse Probe(const bv1::ProbeRequest& request);
[[nodiscard]] absl::Status CheckConfig(const bv1::PluginConfig& config);
// Jails and boots a VM (or, with CreateRequest.memory, loads a snapshot
// into a new one) and returns once its agent answers over vsock.
[[nodiscard]] absl::StatusOr<bv1::CreateResponse> Create(
    const bv1::CreateRequest& request, UniqueFd* agent_fd);
// alive=false (and no fd) when the VM is gone.
[[nodiscard]] absl::StatusOr<bv1::AttachResponse> Attach(
    const bv1::AttachRequest& request, UniqueFd* agent_fd);
// Idempotent.
[[nodiscard]] absl::Status Destroy(const bv1::DestroyRequest& request);
[[nodiscard]] absl::StatusOr<bv1::StatsResponse> Stats(
    const bv1::StatsRequest& request);
[[nodiscard]] absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request);
// PATCH /vm {"state": "Paused" | "Resumed"}.
[[nodiscard]] absl::Status Pause(const bv1::PauseRequest& request);
[[nodiscard]] absl::Status Resume(const bv1::ResumeRequest& request);
// Pauses the VM, copies its workspace disk, has Firecracker write a full
// snapshot (PUT /snapshot/create) and resumes it; the files go to
// <sandbox dir>/memory/<name>/.
[[nodiscard]] absl::StatusOr<bv1::SaveMemoryResponse> SaveMemory(
    const bv1::SaveMemoryRequest& request);
[[nodiscard]] absl::Status DeleteMemory(
    const bv1::DeleteMemoryRequest& request);

}  // namespace corral::firecracker_runtime

#endif  // CORRAL_BACKENDS_FIRECRACKER_FIRECRACKER_RUNTIME_H_
