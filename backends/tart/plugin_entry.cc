// The tart runtime's operations, for the shared C ABI glue
// (backends/common/plugin_glue.h). No pause, resume or memory snapshots:
// Tart suspends macOS guests only, and the agent runs in Linux guests.
#include "backends/common/plugin_glue.h"
#include "backends/tart/tart_runtime.h"

namespace corral::backend_plugin {

const Operations kOperations = {
    "tart",
    "0.1.0",
    tart_runtime::Probe,
    tart_runtime::CheckConfig,
    tart_runtime::Create,
    tart_runtime::Attach,
    tart_runtime::Destroy,
    tart_runtime::Stats,
    tart_runtime::Reconcile,
};

}  // namespace corral::backend_plugin
