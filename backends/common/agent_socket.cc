#include "backends/common/agent_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

namespace corral::backend_plugin {
namespace {

struct SocketAddress {
  UniqueFd dir;  // keeps /proc/self/fd/<dir> valid while it is used
  sockaddr_un address{};
  socklen_t length = 0;
};

absl::StatusOr<SocketAddress> AgentSocketAddress(const std::string& dir) {
  SocketAddress result;
  result.dir.Reset(
      ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!result.dir) return ErrnoStatus(absl::StrCat("open ", dir));
  std::string path =
      absl::StrCat("/proc/self/fd/", result.dir.get(), "/", kAgentSocketName);
  result.address.sun_family = AF_UNIX;
  std::memcpy(result.address.sun_path, path.c_str(), path.size() + 1);
  result.length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return result;
}

}  // namespace

absl::StatusOr<UniqueFd> ConnectAgent(const std::string& sandbox_dir) {
  ASSIGN_OR_RETURN(SocketAddress address, AgentSocketAddress(sandbox_dir));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.address),
                address.length) != 0) {
    return ErrnoStatus(
        absl::StrCat("connect ", sandbox_dir, "/", kAgentSocketName));
  }
  return fd;
}

absl::StatusOr<UniqueFd> ListenAgent(const std::string& sandbox_dir) {
  ASSIGN_OR_RETURN(SocketAddress address, AgentSocketAddress(sandbox_dir));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address.address),
             address.length) != 0) {
    return ErrnoStatus(
        absl::StrCat("bind ", sandbox_dir, "/", kAgentSocketName));
  }
  if (::listen(fd.get(), 64) != 0) {
    return ErrnoStatus(
        absl::StrCat("listen ", sandbox_dir, "/", kAgentSocketName));
  }
  return fd;
}

}  // namespace corral::backend_plugin
