// Translates the config file's sections into what the core needs: the spec
// rules (defaults, minima, maxima) and a caller's policy.
#ifndef CORRAL_DAEMON_SETTINGS_H_
#define CORRAL_DAEMON_SETTINGS_H_

#include "daemon/config/config.h"
#include "daemon/core/spec.h"

namespace corral::daemon {

SpecRules MakeSpecRules(const DaemonConfig& config);
CallerPolicy ResolveCallerPolicy(const DaemonConfig& config,
                                 const Caller& caller);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_SETTINGS_H_
