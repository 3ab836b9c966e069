// The operations of the qemu runtime plugin: every sandbox is a QEMU microvm
// with its own kernel, running corral-agent as its init
// (backends/qemu/README.md), on the messages of
// proto/corral/backend/v1/backend.proto (the plugin's protobuf-lite build).
// plugin_entry.cc puts them behind the C ABI.
#ifndef CORRAL_BACKENDS_QEMU_QEMU_RUNTIME_H_
#define CORRAL_BACKENDS_QEMU_QEMU_RUNTIME_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::qemu_runtime {

namespace bv1 = ::corral::backend::v1;

// Never fails: answers available=false with the reason. The first probe
// on a host with /dev/kvm boots a guest with KVM to learn whether it works
// (a few seconds at most; remembered in the runtime directory per boot).
[[nodiscard]] bv1::ProbeResponse Probe(const bv1::ProbeRequest& request);
// The [runtimes.<name>] options alone (see Operations::check_config).
[[nodiscard]] absl::Status CheckConfig(const bv1::PluginConfig& config);
// Boots a VM (or, with CreateRequest.memory, starts one from a saved
// machine) and returns once its agent answers; `agent_fd` receives the
// connection. On failure nothing of the sandbox remains on the host.
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
// Through QEMU's monitor: stop and cont.
[[nodiscard]] absl::Status Pause(const bv1::PauseRequest& request);
[[nodiscard]] absl::Status Resume(const bv1::ResumeRequest& request);
// Freezes the VM, copies its workspace disk, saves its memory and devices
// (a migration into a file) in <sandbox dir>/memory/<name>/, and lets it
// run on. Not for the host image (QEMU cannot migrate virtiofs).
[[nodiscard]] absl::StatusOr<bv1::SaveMemoryResponse> SaveMemory(
    const bv1::SaveMemoryRequest& request);
[[nodiscard]] absl::Status DeleteMemory(
    const bv1::DeleteMemoryRequest& request);

}  // namespace corral::qemu_runtime

#endif  // CORRAL_BACKENDS_QEMU_QEMU_RUNTIME_H_
