#ifndef CORRAL_DAEMON_NET_NETNS_H_
#define CORRAL_DAEMON_NET_NETNS_H_

// Network namespaces held by a file (a bind mount of an nsfs inode, as
// `ip netns` does), and work done inside one. corrald is multithreaded:
// entering a namespace happens on a short-lived thread of its own, never on
// the caller's, and sockets made there keep that namespace.
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/unique_fd.h"

namespace corral::net {

// A new network namespace with only a loopback device (down), held at
// `path` (created; its directory must exist). Fails if `path` exists.
absl::Status CreateNamedNetns(const std::string& path);
// Unmounts and removes `path`; OK when it is already gone.
absl::Status RemoveNamedNetns(const std::string& path);
// Whether `path` holds a network namespace.
bool IsNamedNetns(const std::string& path);
absl::StatusOr<UniqueFd> OpenNetns(const std::string& path);

// Runs `work` on a new thread that has entered the namespace of `netns_fd`;
// returns its status once the thread ended.
absl::Status RunInNetns(int netns_fd,
                        const std::function<absl::Status()>& work);

// socket(domain, type | SOCK_CLOEXEC, protocol) made inside `netns_fd`.
absl::StatusOr<UniqueFd> SocketInNetns(int netns_fd, int domain, int type,
                                       int protocol);

// Writes `value` to /proc/sys/<key> as seen from inside the namespace
// ("net/ipv4/conf/all/rp_filter"); call it from RunInNetns.
absl::Status WriteNetSysctl(const std::string& key, const std::string& value);

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_NETNS_H_
