// The daemon's Unix socket. gRPC C++ exposes no peer credentials, so the
// daemon accepts connections itself, reads SO_PEERCRED and SO_PEERGROUPS, and
// hands each connected fd to the gRPC server. RPC handlers then look up the
// caller by the peer name gRPC gives such connections ("fd:<n>").
#ifndef CORRAL_DAEMON_RPC_LISTENER_H_
#define CORRAL_DAEMON_RPC_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/unique_fd.h"
#include "daemon/core/spec.h"

namespace grpc {
class Server;
class ServerContext;
}  // namespace grpc

namespace corral::daemon {

struct ListenerOptions {
  std::string path;
  uint32_t mode = 0660;
  // Group owning the socket; empty or missing on the host: root's group.
  std::string group;
  // Members of this group are admins (see Caller::admin).
  std::string admin_group;
  // Resolves the policy of a new connection's caller (Caller::policy), once
  // per connection; unset: callers carry no policy.
  std::function<CallerPolicy(const Caller&)> resolve_policy;
};

class Listener {
 public:
  // Binds the socket. Refuses to start when another daemon answers on it;
  // replaces a stale socket file left by a dead daemon. Never follows a
  // symlink at the path. Under systemd socket activation (LISTEN_PID is this
  // process, LISTEN_FDS=1) it adopts fd 3 instead, which must be a listening
  // Unix stream socket bound to the same path; systemd then owns the path,
  // its mode and its group, and the file is left in place at Stop.
  static absl::StatusOr<std::unique_ptr<Listener>> Create(
      ListenerOptions options);
  ~Listener();

  // Accepts connections and hands them to `server` until Stop.
  void Start(grpc::Server* server);
  void Stop();
  // Shuts down every client connection still open, so that a daemon that is
  // stopping does not wait for idle clients. Call after Stop.
  void CloseConnections();

  // The caller of the RPC, or nullopt for a connection this listener did not
  // accept (which cannot happen through the socket).
  std::optional<Caller> CallerOf(const grpc::ServerContext& context) const;

  const std::string& path() const { return options_.path; }

 private:
  Listener(ListenerOptions options, UniqueFd fd, bool activated,
           gid_t admin_gid, bool has_admin_group)
      : options_(std::move(options)),
        fd_(std::move(fd)),
        activated_(activated),
        admin_gid_(admin_gid),
        has_admin_group_(has_admin_group) {}
  // The socket systemd passed, if any (see Create).
  static absl::StatusOr<UniqueFd> TakeActivatedSocket(const std::string& path);
  void AcceptLoop(grpc::Server* server);
  // The credentials of a connected peer; groups_known false when
  // SO_PEERGROUPS failed. nullopt when SO_PEERCRED failed.
  std::optional<Caller> ReadCaller(int fd) const;

  const ListenerOptions options_;
  UniqueFd fd_;
  const bool activated_;  // fd_ came from systemd, which owns the path
  const gid_t admin_gid_;
  const bool has_admin_group_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  struct Connection {
    Caller caller;
    ino_t inode = 0;  // tells the socket from a later file of the same fd
  };
  std::map<int, Connection> connections_;  // by fd; guarded by mutex_
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_RPC_LISTENER_H_
