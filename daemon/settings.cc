#include "daemon/settings.h"

#include <vector>

namespace corral::daemon {

SpecRules MakeSpecRules(const DaemonConfig& config) {
  SpecRules rules;
  const auto& d = config.defaults;
  rules.defaults = LimitSet{d.cpu_millis,
                            d.memory_mib,
                            d.pids,
                            d.disk_mib,
                            d.ttl_seconds,
                            static_cast<uint32_t>(d.exec_timeout_seconds),
                            d.output_limit_bytes};
  const auto& m = config.limits;
  rules.maxima = LimitSet{m.cpu_millis,
                          m.memory_mib,
                          m.pids,
                          m.disk_mib,
                          m.ttl_seconds,
                          static_cast<uint32_t>(m.exec_timeout_seconds),
                          m.output_limit_bytes};
  rules.minima.cpu_millis = kMinCpuMillis;
  rules.minima.memory_mib = kMinMemoryMib;
  rules.minima.pids = kMinPids;
  rules.minima.disk_mib = 1;
  rules.default_runtime = d.runtime;
  rules.default_image = d.image;
  return rules;
}

CallerPolicy ResolveCallerPolicy(const DaemonConfig& config,
                                 const Caller& caller) {
  std::vector<uint32_t> gids(caller.groups.begin(), caller.groups.end());
  gids.push_back(caller.gid);
  EffectivePolicy effective = ResolvePolicy(config, caller.uid, gids);
  CallerPolicy policy;
  if (!effective.all_runtimes) policy.runtimes = effective.runtimes;
  policy.default_runtime = effective.defaults.runtime;
  policy.maxima.cpu_millis = effective.maxima.cpu_millis;
  policy.maxima.memory_mib = effective.maxima.memory_mib;
  policy.maxima.pids = effective.maxima.pids;
  policy.maxima.disk_mib = effective.maxima.disk_mib;
  policy.maxima.ttl_seconds = effective.maxima.ttl_seconds;
  return policy;
}

}  // namespace corral::daemon
