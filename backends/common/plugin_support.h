// Small facts about the plugin's own process that every runtime plugin
// asks for: where its helper programs are, whether a file is a program it
// can run, which capabilities the daemon holds.
#ifndef CORRAL_BACKENDS_COMMON_PLUGIN_SUPPORT_H_
#define CORRAL_BACKENDS_COMMON_PLUGIN_SUPPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"

namespace corral::backend_plugin {

// PluginConfig.plugin_dir, or when it is empty the directory this plugin's
// shared object was loaded from (its helpers live beside it).
[[nodiscard]] std::string PluginDirectory(
    const ::corral::backend::v1::PluginConfig& config);

// `path` is a regular file (after symlinks) this process may execute.
[[nodiscard]] bool IsExecutableFile(const std::string& path);

// Whether this process has `capability` (CAP_*) in its effective set.
[[nodiscard]] bool HasCapability(int capability);

// The agent, copied once into <runtime_dir>/.agent/corral-agent, a
// directory that every sandbox of the daemon shares read-only (for the
// runtimes whose VMs share directories, not files: apple, tart). Replaced
// atomically when the daemon's agent changes. Returns the directory.
[[nodiscard]] absl::StatusOr<std::string> SharedAgentDirectory(
    const std::string& runtime_dir, const std::string& agent_path);

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_PLUGIN_SUPPORT_H_
