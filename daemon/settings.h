// Translates the config file's sections into what the core needs: the spec
// rules (defaults, minima, maxima) and a caller's policy.
#ifndef CORRAL_DAEMON_SETTINGS_H_
#define CORRAL_DAEMON_SETTINGS_H_

#include "daemon/config/config.h"
#include "daemon/core/spec.h"
#include "daemon/net/egress.h"

namespace corral::daemon {

SpecRules MakeSpecRules(const DaemonConfig& config);
// The egress path's options from [network]: INVALID_ARGUMENT naming the
// key for a bad CIDR or address. Without network.dns_upstream, the first
// nameserver of `resolv_conf`.
absl::StatusOr<net::EgressOptions> MakeEgressOptions(
    const DaemonConfig& config, const std::string& dir,
    const std::string& resolv_conf = "/etc/resolv.conf");
CallerPolicy ResolveCallerPolicy(const DaemonConfig& config,
                                 const Caller& caller);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_SETTINGS_H_
