// The qemu runtime's operations, for the shared C ABI glue
// (backends/common/plugin_glue.h).
#include "backends/common/plugin_glue.h"
#include "backends/qemu/qemu_runtime.h"

namespace corral::backend_plugin {

const Operations kOperations = {
    "qemu",
    "0.1.0",
    qemu_runtime::Probe,
    qemu_runtime::CheckConfig,
    qemu_runtime::Create,
    qemu_runtime::Attach,
    qemu_runtime::Destroy,
    qemu_runtime::Stats,
    qemu_runtime::Reconcile,
    qemu_runtime::Pause,
    qemu_runtime::Resume,
    qemu_runtime::SaveMemory,
    qemu_runtime::DeleteMemory,
};

}  // namespace corral::backend_plugin
