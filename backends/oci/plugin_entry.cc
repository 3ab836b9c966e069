// The oci runtime's operations, for the shared C ABI glue
// (backends/common/plugin_glue.h).
#include "backends/common/plugin_glue.h"
#include "backends/oci/oci_runtime.h"

namespace corral::backend_plugin {

const Operations kOperations = {
    "oci",
    "0.1.0",
    oci_runtime::Probe,
    oci_runtime::CheckConfig,
    oci_runtime::Create,
    oci_runtime::Attach,
    oci_runtime::Destroy,
    oci_runtime::Stats,
    oci_runtime::Reconcile,
};

}  // namespace corral::backend_plugin
