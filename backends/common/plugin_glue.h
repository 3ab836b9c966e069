// What a runtime plugin implements: its operations on the messages of
// proto/corral/backend/v1/backend.proto (the plugin's own protobuf-lite build
// of them). plugin_glue.cc puts them behind the C ABI
// (backends/include/corral/backend_abi.h): it parses each request, calls the
// operation, serializes the answer, and keeps every C++ exception on this
// side of the boundary.
//
// A plugin links the objects of corral_backend_glue (see CMakeLists.txt) and
// defines corral::backend_plugin::kOperations.
#ifndef CORRAL_BACKENDS_COMMON_PLUGIN_GLUE_H_
#define CORRAL_BACKENDS_COMMON_PLUGIN_GLUE_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/unique_fd.h"

namespace corral::backend_plugin {

namespace bv1 = ::corral::backend::v1;

struct Operations {
  // Runtime name ("linux", "oci", ...) and plugin version; static storage.
  const char* name;
  const char* version;
  // Never fails: answers available=false with the reason.
  bv1::ProbeResponse (*probe)(const bv1::ProbeRequest& request);
  // Checks the [runtimes.<name>] options (PluginConfig.options) alone:
  // INVALID_ARGUMENT naming an unknown option or a bad value. The glue puts
  // its message in ProbeResponse.config_error, and answers a probe with
  // ProbeRequest.config_only from it alone.
  absl::Status (*check_config)(const bv1::PluginConfig& config);
  // Creates and starts a sandbox; `agent_fd` receives a connection to its
  // agent. On failure nothing of the sandbox remains on the host.
  absl::StatusOr<bv1::CreateResponse> (*create)(
      const bv1::CreateRequest& request, UniqueFd* agent_fd);
  // alive=false (and no fd) when the sandbox is gone.
  absl::StatusOr<bv1::AttachResponse> (*attach)(
      const bv1::AttachRequest& request, UniqueFd* agent_fd);
  // Idempotent.
  absl::Status (*destroy)(const bv1::DestroyRequest& request);
  absl::StatusOr<bv1::StatsResponse> (*stats)(const bv1::StatsRequest& request);
  absl::StatusOr<bv1::ReconcileResponse> (*reconcile)(
      const bv1::ReconcileRequest& request);
  // Optional (nullptr: the glue answers UNIMPLEMENTED naming the runtime).
  absl::Status (*pause)(const bv1::PauseRequest& request) = nullptr;
  absl::Status (*resume)(const bv1::ResumeRequest& request) = nullptr;
  absl::StatusOr<bv1::SaveMemoryResponse> (*save_memory)(
      const bv1::SaveMemoryRequest& request) = nullptr;
  absl::Status (*delete_memory)(const bv1::DeleteMemoryRequest& request) =
      nullptr;
};

// Defined by each plugin.
extern const Operations kOperations;

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_PLUGIN_GLUE_H_
