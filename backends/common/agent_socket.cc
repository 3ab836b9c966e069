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

absl::StatusOr<SocketAddress> SocketAddressIn(const std::string& dir,
                                              const std::string& name) {
  SocketAddress result;
  result.dir.Reset(
      ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!result.dir) return ErrnoStatus(absl::StrCat("open ", dir));
  std::string path =
      absl::StrCat("/proc/self/fd/", result.dir.get(), "/", name);
  result.address.sun_family = AF_UNIX;
  std::memcpy(result.address.sun_path, path.c_str(), path.size() + 1);
  result.length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return result;
}

}  // namespace

absl::StatusOr<UniqueFd> ConnectAt(const std::string& dir,
                                   const std::string& name) {
  ASSIGN_OR_RETURN(SocketAddress address, SocketAddressIn(dir, name));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.address),
                address.length) != 0) {
    return ErrnoStatus(absl::StrCat("connect ", dir, "/", name));
  }
  return fd;
}

absl::StatusOr<UniqueFd> ListenAt(const std::string& dir,
                                  const std::string& name) {
  ASSIGN_OR_RETURN(SocketAddress address, SocketAddressIn(dir, name));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address.address),
             address.length) != 0) {
    return ErrnoStatus(absl::StrCat("bind ", dir, "/", name));
  }
  if (::listen(fd.get(), 64) != 0) {
    return ErrnoStatus(absl::StrCat("listen ", dir, "/", name));
  }
  return fd;
}

absl::StatusOr<UniqueFd> ConnectAgent(const std::string& sandbox_dir) {
  return ConnectAt(sandbox_dir, kAgentSocketName);
}

absl::StatusOr<UniqueFd> ListenAgent(const std::string& sandbox_dir) {
  return ListenAt(sandbox_dir, kAgentSocketName);
}

}  // namespace corral::backend_plugin
