// The host's two ways into a Firecracker VM: its API (HTTP/1.1 on a Unix
// socket, JSON bodies, errors as {"fault_message": ...}) and its vsock
// socket (a Unix socket where "CONNECT <port>\n", answered "OK <n>\n",
// turns the connection into one to a listener in the guest).
#ifndef CORRAL_BACKENDS_FIRECRACKER_API_CLIENT_H_
#define CORRAL_BACKENDS_FIRECRACKER_API_CLIENT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "corral/unique_fd.h"
#include "nlohmann/json.hpp"

namespace corral::firecracker_runtime {

// Connects to the Unix socket at `relative` ("run/firecracker.socket")
// beneath `trusted_dir` (a jail's root, whose parent is root's), opening
// every component without following a symlink and checking that the last
// is a socket: the sandbox's uid owns the jail and could put links there.
// UNAVAILABLE when it is not there (yet).
[[nodiscard]] absl::StatusOr<UniqueFd> ConnectInJail(
    const std::string& trusted_dir, const std::string& relative);

struct ApiReply {
  int status = 0;
  std::string body;
};

// One request on a new connection to the socket `name` (a relative path)
// beneath `dir`, reached as ConnectInJail does. An error when the socket
// cannot be reached or the reply is not HTTP.
[[nodiscard]] absl::StatusOr<ApiReply> ApiRequest(
    const std::string& dir, const std::string& name, absl::string_view method,
    absl::string_view path, const std::string& body, absl::Duration timeout);

// ApiRequest with a JSON body (null: none). OK for a 2xx reply; otherwise
// FAILED_PRECONDITION "Firecracker: <METHOD> <path>: <fault_message>".
[[nodiscard]] absl::Status ApiCall(
    const std::string& dir, const std::string& name, absl::string_view method,
    absl::string_view path, const nlohmann::json& body, absl::Duration timeout);

// GET <path>: the parsed JSON body of a 200 reply.
[[nodiscard]] absl::StatusOr<nlohmann::json> ApiGet(const std::string& dir,
                                                    const std::string& name,
                                                    absl::string_view path,
                                                    absl::Duration timeout);

// Connects to the vsock socket `name` beneath `dir` (as ConnectInJail)
// and asks for the guest's
// `port`: the connection once Firecracker answered "OK ". UNAVAILABLE when
// the socket is not there yet or Firecracker closed the connection (nothing
// listens on that port in the guest, yet).
[[nodiscard]] absl::StatusOr<UniqueFd> ConnectVsock(const std::string& dir,
                                                    const std::string& name,
                                                    uint32_t port,
                                                    absl::Duration timeout);

}  // namespace corral::firecracker_runtime

#endif  // CORRAL_BACKENDS_FIRECRACKER_API_CLIENT_H_
