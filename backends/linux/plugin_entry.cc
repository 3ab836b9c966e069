// The linux runtime's operations, for the shared C ABI glue
// (backends/common/plugin_glue.h).
#include "backends/common/plugin_glue.h"
#include "backends/linux/linux_runtime.h"

namespace corral::backend_plugin {

const Operations kOperations = {
    "linux",
    "0.1.0",
    linux_runtime::Probe,
    linux_runtime::CheckConfig,
    linux_runtime::Create,
    linux_runtime::Attach,
    linux_runtime::Destroy,
    linux_runtime::Stats,
    linux_runtime::Reconcile,
};

}  // namespace corral::backend_plugin
