#include "daemon/rpc/listener.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "corral/logging.h"
#include "corral/platform.h"
#include "corral/status_macros.h"
#include "grpcpp/server.h"
#include "grpcpp/server_context.h"
#include "grpcpp/server_posix.h"

namespace corral::daemon {
namespace {

std::shared_ptr<spdlog::logger> Log() { return corral::Logger("listener"); }

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path '", path, "' is empty or longer than ",
                     sizeof(address.sun_path) - 1, " bytes"));
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// True when something accepts connections at the path.
bool SomeoneListens(const sockaddr_un& address) {
  UniqueFd probe(platform::StreamSocket(AF_UNIX));
  if (!probe) return false;
  return ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address),
                   sizeof(address)) == 0;
}

// Binds and listens on the configured path (no socket activation).
absl::StatusOr<UniqueFd> BindSocket(const ListenerOptions& options,
                                    const sockaddr_un& address) {
  const std::filesystem::path parent =
      std::filesystem::path(options.path).parent_path();
  if (!parent.empty()) {
    std::error_code error;
    std::filesystem::create_directories(parent, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("create ", parent.string(), ": ", error.message()));
    }
  }
  struct stat st {};
  if (::lstat(options.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          options.path, " exists and is not a socket; refusing to replace it"));
    }
    if (SomeoneListens(address)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another corrald is already listening on ", options.path));
    }
    if (::unlink(options.path.c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("unlink stale socket ", options.path));
    }
  }
  UniqueFd fd(platform::StreamSocket(AF_UNIX, /*nonblocking=*/true));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  // Bind with no permissions at all, then open up to the configured mode, so
  // there is no moment when the socket is reachable by everyone.
  const mode_t old_umask = ::umask(0777);
  const int bound = ::bind(
      fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) {
    return ErrnoStatus(absl::StrCat("bind ", options.path), bind_errno);
  }
  gid_t group = 0;
  if (!options.group.empty()) {
    if (const struct group* entry = ::getgrnam(options.group.c_str())) {
      group = entry->gr_gid;
    } else {
      Log()->warn("group {} does not exist; {} stays root's only",
                  options.group, options.path);
    }
  }
  if (::lchown(options.path.c_str(), ::geteuid(), group) != 0) {
    return ErrnoStatus(absl::StrCat("chown ", options.path));
  }
  if (::chmod(options.path.c_str(), options.mode) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", options.path));
  }
  if (::listen(fd.get(), 128) != 0) {
    return ErrnoStatus(absl::StrCat("listen ", options.path));
  }
  return fd;
}

}  // namespace

absl::StatusOr<UniqueFd> Listener::TakeActivatedSocket(
    const std::string& path) {
  const char* pid = ::getenv("LISTEN_PID");
  const char* fds = ::getenv("LISTEN_FDS");
  int listen_pid = 0;
  if (pid == nullptr || fds == nullptr || !absl::SimpleAtoi(pid, &listen_pid) ||
      listen_pid != ::getpid()) {
    return UniqueFd();
  }
  // Not for the children of the daemon.
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (std::string_view(fds) != "1") {
    return absl::FailedPreconditionError(absl::StrCat(
        "systemd passed ", fds, " sockets; corrald takes exactly one"));
  }
  constexpr int kFirstPassedFd = 3;  // SD_LISTEN_FDS_START
  UniqueFd fd(kFirstPassedFd);
  int listening = 0;
  socklen_t length = sizeof(listening);
  sockaddr_un bound{};
  socklen_t bound_length = sizeof(bound);
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) !=
          0 ||
      !listening ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound),
                    &bound_length) != 0 ||
      bound.sun_family != AF_UNIX) {
    return absl::FailedPreconditionError(
        "the socket systemd passed is not a listening Unix socket");
  }
  if (std::string(bound.sun_path) != path) {
    return absl::FailedPreconditionError(
        absl::StrCat("systemd passed a socket for ", bound.sun_path,
                     " but the daemon is configured for ", path));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0 ||
      ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
    return ErrnoStatus("fcntl on the socket systemd passed");
  }
  return fd;
}

absl::StatusOr<std::unique_ptr<Listener>> Listener::Create(
    ListenerOptions options) {
  ASSIGN_OR_RETURN(UniqueFd activated, TakeActivatedSocket(options.path));
  ASSIGN_OR_RETURN(sockaddr_un address, Address(options.path));
  const bool is_activated = activated.valid();
  UniqueFd fd = std::move(activated);
  if (!is_activated) {
    ASSIGN_OR_RETURN(fd, BindSocket(options, address));
  }
  gid_t admin_gid = 0;
  bool has_admin = false;
  if (!options.admin_group.empty()) {
    if (const struct group* entry = ::getgrnam(options.admin_group.c_str())) {
      admin_gid = entry->gr_gid;
      has_admin = true;
    }
  }
  return std::unique_ptr<Listener>(new Listener(
      std::move(options), std::move(fd), is_activated, admin_gid, has_admin));
}

Listener::~Listener() { Stop(); }

void Listener::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] { AcceptLoop(server); });
}

void Listener::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_) {
    // An activated socket's file belongs to systemd, which keeps it for the
    // next start.
    if (!activated_) ::unlink(options_.path.c_str());
    fd_.Reset();
  }
}

void Listener::AcceptLoop(grpc::Server* server) {
  while (!stopping_) {
    pollfd poll_fd{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&poll_fd, 1, 200);
    if (ready <= 0) continue;
    // gRPC drives the connection from its own pollers and needs it
    // non-blocking.
    UniqueFd connection(platform::AcceptNonBlocking(fd_.get()));
    if (!connection) {
      if (errno != EAGAIN && errno != EINTR) {
        Log()->warn("accept {}: {}", options_.path, std::strerror(errno));
      }
      continue;
    }
    std::optional<Caller> caller = ReadCaller(connection.get());
    if (!caller) continue;
    // gRPC takes the fd; when the connection ends it closes it and the number
    // may be reused, but only by a later accept, which overwrites the entry
    // before handing the new connection over.
    struct stat st {};
    ::fstat(connection.get(), &st);
    const int raw = connection.Release();
    {
      std::lock_guard lock(mutex_);
      if (connections_.size() > 4096) {
        // Entries of closed connections are only overwritten by reuse; keep
        // the map from growing by dropping numbers no longer open.
        for (auto it = connections_.begin(); it != connections_.end();) {
          it = ::fcntl(it->first, F_GETFD) < 0 ? connections_.erase(it) : ++it;
        }
      }
      connections_[raw] = Connection{*std::move(caller), st.st_ino};
    }
    grpc::AddInsecureChannelFromFd(server, raw);
  }
}

std::optional<Caller> Listener::ReadCaller(int fd) const {
  Caller caller;
  pid_t pid = 0;
  if (!platform::PeerIdentity(fd, &caller.uid, &caller.gid, &pid)) {
    Log()->warn("the caller's credentials (SO_PEERCRED): {}",
                std::strerror(errno));
    return std::nullopt;
  }
  if (!platform::PeerGroups(fd, &caller.groups)) {
    // Policies and the admin group depend on the groups: without them the
    // caller is refused rather than treated as a member of none.
    Log()->warn("the groups of uid {} (SO_PEERGROUPS): {}; refusing its calls",
                caller.uid, std::strerror(errno));
    caller.groups.clear();
    caller.groups_known = false;
  }
  caller.admin = caller.uid == 0;
  if (caller.groups_known && has_admin_group_) {
    caller.admin = caller.admin || caller.gid == admin_gid_ ||
                   std::find(caller.groups.begin(), caller.groups.end(),
                             admin_gid_) != caller.groups.end();
  }
  if (caller.groups_known && options_.resolve_policy) {
    caller.policy = options_.resolve_policy(caller);
  }
  return caller;
}

std::optional<Caller> Listener::CallerOf(
    const grpc::ServerContext& context) const {
  const std::string peer = context.peer();
  int fd = -1;
  if (!absl::StartsWith(peer, "fd:") ||
      !absl::SimpleAtoi(absl::string_view(peer).substr(3), &fd)) {
    return std::nullopt;
  }
  std::lock_guard lock(mutex_);
  auto it = connections_.find(fd);
  if (it == connections_.end()) return std::nullopt;
  return it->second.caller;
}

void Listener::CloseConnections() {
  std::lock_guard lock(mutex_);
  for (const auto& [fd, connection] : connections_) {
    // gRPC owns and may have closed the fd, and the number may now be some
    // other file of the daemon's: only the very socket accepted is touched.
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_ino == connection.inode) {
      ::shutdown(fd, SHUT_RDWR);
    }
  }
  connections_.clear();
}

}  // namespace corral::daemon
