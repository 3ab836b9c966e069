// The firecracker runtime's operations, for the shared C ABI glue
// (backends/common/plugin_glue.h).
#include "backends/common/plugin_glue.h"
#include "backends/firecracker/firecracker_runtime.h"

namespace corral::backend_plugin {

const Operations kOperations = {
    "firecracker",
    "0.1.0",
    firecracker_runtime::Probe,
    firecracker_runtime::CheckConfig,
    firecracker_runtime::Create,
    firecracker_runtime::Attach,
    firecracker_runtime::Destroy,
    firecracker_runtime::Stats,
    firecracker_runtime::Reconcile,
    firecracker_runtime::Pause,
    firecracker_runtime::Resume,
    firecracker_runtime::SaveMemory,
    firecracker_runtime::DeleteMemory,
};

}  // namespace corral::backend_plugin
