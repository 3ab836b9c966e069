// The agent's listening socket in a sandbox's root-only runtime directory,
// for the runtimes that create it on the host and hand it to the agent (or
// to the VM's relay) as an inherited fd (linux, oci, qemu), and other
// sockets named the same way (QEMU's monitor).
#ifndef CORRAL_BACKENDS_COMMON_AGENT_SOCKET_H_
#define CORRAL_BACKENDS_COMMON_AGENT_SOCKET_H_

#include <string>

#include "absl/status/statusor.h"
#include "corral/unique_fd.h"

namespace corral::backend_plugin {

// The socket's name inside the sandbox directory.
inline constexpr char kAgentSocketName[] = "agent.sock";

// Binds and listens on <sandbox_dir>/agent.sock. The directory is opened
// without following a symlink and the socket named through
// /proc/self/fd/<dir>/: sun_path holds 108 bytes, a runtime directory may
// be longer.
[[nodiscard]] absl::StatusOr<UniqueFd> ListenAgent(
    const std::string& sandbox_dir);

// Connects to <sandbox_dir>/agent.sock, named the same way. Before the
// agent accepts, the connection waits in the listener's backlog.
[[nodiscard]] absl::StatusOr<UniqueFd> ConnectAgent(
    const std::string& sandbox_dir);

// The same for the socket `name` in `dir`.
[[nodiscard]] absl::StatusOr<UniqueFd> ListenAt(const std::string& dir,
                                                const std::string& name);
[[nodiscard]] absl::StatusOr<UniqueFd> ConnectAt(const std::string& dir,
                                                 const std::string& name);

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_AGENT_SOCKET_H_
