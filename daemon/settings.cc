#include "daemon/settings.h"

#include <vector>

namespace corral::daemon {

namespace {

// [defaults] and [limits] name their fields alike.
template <typename Section>
LimitSet ToLimitSet(const Section& section) {
  return LimitSet{section.cpu_millis,
                  section.memory_mib,
                  section.pids,
                  section.disk_mib,
                  section.ttl_seconds,
                  static_cast<uint32_t>(section.exec_timeout_seconds),
                  section.output_limit_bytes};
}

}  // namespace

SpecRules MakeSpecRules(const DaemonConfig& config) {
  SpecRules rules;
  rules.defaults = ToLimitSet(config.defaults);
  rules.maxima = ToLimitSet(config.limits);
  rules.maxima.lifetime_seconds = config.limits.lifetime_seconds;
  rules.minima.cpu_millis = kMinCpuMillis;
  rules.minima.memory_mib = kMinMemoryMib;
  rules.minima.pids = kMinPids;
  rules.minima.disk_mib = 1;
  rules.default_runtime = config.defaults.runtime;
  rules.default_image = config.defaults.image;
  return rules;
}

CallerPolicy ResolveCallerPolicy(const DaemonConfig& config,
                                 const Caller& caller) {
  std::vector<uint32_t> gids(caller.groups.begin(), caller.groups.end());
  gids.push_back(caller.gid);
  EffectivePolicy effective = ResolvePolicy(config, caller.uid, gids);
  CallerPolicy policy;
  policy.name = effective.name;
  policy.deny = effective.deny;
  if (!effective.all_runtimes) policy.runtimes = effective.runtimes;
  policy.default_runtime = effective.defaults.runtime;
  policy.maxima.cpu_millis = effective.maxima.cpu_millis;
  policy.maxima.memory_mib = effective.maxima.memory_mib;
  policy.maxima.pids = effective.maxima.pids;
  policy.maxima.disk_mib = effective.maxima.disk_mib;
  policy.maxima.ttl_seconds = effective.maxima.ttl_seconds;
  policy.maxima.lifetime_seconds = effective.maxima.lifetime_seconds;
  // Admins may weaken isolation: they could stop the daemon anyway.
  if (caller.admin) {
    policy.grants.assign(std::begin(kKnownGrants), std::end(kKnownGrants));
  } else {
    policy.grants = effective.grants;
  }
  policy.quotas.sandboxes = effective.quotas.sandboxes;
  policy.quotas.calls = effective.quotas.calls;
  policy.quotas.storage_mib = effective.quotas.storage_mib;
  return policy;
}

}  // namespace corral::daemon
