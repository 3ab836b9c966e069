// The docker runtime's operations, for the shared C ABI glue
// (backends/common/plugin_glue.h).
#include "backends/common/plugin_glue.h"
#include "backends/docker/docker_runtime.h"

namespace corral::backend_plugin {

const Operations kOperations = {
    "docker",          "0.1.0",        docker::Probe,   docker::CheckConfig,
    docker::Create,    docker::Attach, docker::Destroy, docker::Stats,
    docker::Reconcile,
};

}  // namespace corral::backend_plugin
