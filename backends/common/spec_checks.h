// Checks of a SandboxSpec that every runtime plugin makes before it touches
// the host. The daemon validates requests already; a plugin checks again
// because it is the one that turns these fields into paths, mounts and
// limits.
#ifndef CORRAL_BACKENDS_COMMON_SPEC_CHECKS_H_
#define CORRAL_BACKENDS_COMMON_SPEC_CHECKS_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "corral/backend/v1/backend.pb.h"

namespace corral::backend_plugin {

// The smallest limits a sandbox can start with.
inline constexpr uint64_t kMinMemoryBytes = 8u << 20;
inline constexpr uint32_t kMinPids = 4;

// 1-63 characters of [A-Za-z0-9.-], not starting with '-'.
[[nodiscard]] bool ValidHostname(absl::string_view name);

// `path` is absolute and an existing directory, not a symlink to one.
// INVALID_ARGUMENT naming `what` otherwise.
[[nodiscard]] absl::Status CheckDirectory(const std::string& path,
                                          absl::string_view what);

// The id, hostname, limits, workspace and rootfs of a spec.
[[nodiscard]] absl::Status ValidateSpec(
    const ::corral::backend::v1::SandboxSpec& spec);

// The one runtime option every runtime knows, userns=true|false: whether
// the sandbox asks for a user namespace (default: when it has a host uid).
// Any other key, or another value, is INVALID_ARGUMENT naming `runtime`;
// userns=true without a host uid too.
[[nodiscard]] absl::StatusOr<bool> UserNamespaceOption(
    const ::corral::backend::v1::SandboxSpec& spec, absl::string_view runtime);

// A boolean runtime option: "true" or "false"; INVALID_ARGUMENT naming
// runtimes.<runtime>.<key> otherwise.
[[nodiscard]] absl::StatusOr<bool> BoolOption(absl::string_view runtime,
                                              absl::string_view key,
                                              absl::string_view value);

// An absolute, clean path option (runtimes.<runtime>.<key>: "'<value>':
// expected an absolute path" otherwise).
[[nodiscard]] absl::StatusOr<std::string> PathOption(absl::string_view runtime,
                                                     absl::string_view key,
                                                     absl::string_view value);

// A whole-number option from `min` to `max` (runtimes.<runtime>.<key>:
// "'<value>': expected <min> to <max>" otherwise).
[[nodiscard]] absl::StatusOr<uint64_t> NumberOption(absl::string_view runtime,
                                                    absl::string_view key,
                                                    absl::string_view value,
                                                    uint64_t min, uint64_t max);

// INVALID_ARGUMENT naming the first of `unknown` (options of
// [runtimes.<runtime>] the plugin does not understand) and the `known`
// ones; OK when `unknown` is empty. A typo in a runtime's settings must stop
// the daemon, not fall back to a default silently.
[[nodiscard]] absl::Status RefuseUnknownOptions(
    absl::string_view runtime, const std::vector<std::string>& unknown,
    std::initializer_list<absl::string_view> known);

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_SPEC_CHECKS_H_
