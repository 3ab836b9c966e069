#ifndef CORRAL_DAEMON_NET_NETLINK_H_
#define CORRAL_DAEMON_NET_NETLINK_H_

// The few rtnetlink requests the egress path needs, through libmnl (small,
// well kept, and what iproute2's own tools build on) rather than running
// `ip` a handful of times per sandbox. Each call works in the network
// namespace of the thread that makes it, unless it says otherwise.
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace corral::net {

// A veth pair: `name` inside the namespace of `netns_fd`, `peer_name`
// inside the namespace of `peer_netns_fd`, both created there directly.
absl::Status CreateVethPair(const std::string& name, int netns_fd,
                            const std::string& peer_name, int peer_netns_fd);

// Adds address/prefix to the link and brings it up.
absl::Status AddAddressAndUp(const std::string& ifname, uint32_t address,
                             int prefix);
absl::Status LinkUp(const std::string& ifname);
absl::Status AddDefaultRoute(uint32_t gateway);
// Deletes a link by name; OK when there is none.
absl::Status DeleteLink(const std::string& ifname);

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_NETLINK_H_
