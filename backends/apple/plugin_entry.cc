// The apple runtime's operations, for the shared C ABI glue
// (backends/common/plugin_glue.h). No pause, resume or memory snapshots:
// Apple's container has none.
#include "backends/apple/apple_runtime.h"
#include "backends/common/plugin_glue.h"

namespace corral::backend_plugin {

const Operations kOperations = {
    "apple",
    "0.1.0",
    apple_runtime::Probe,
    apple_runtime::CheckConfig,
    apple_runtime::Create,
    apple_runtime::Attach,
    apple_runtime::Destroy,
    apple_runtime::Stats,
    apple_runtime::Reconcile,
};

}  // namespace corral::backend_plugin
