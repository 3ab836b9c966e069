#include "daemon/settings.h"

#include <unistd.h>

#include <fstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

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

absl::StatusOr<net::EgressOptions> MakeEgressOptions(
    const DaemonConfig& config, const std::string& dir,
    const std::string& resolv_conf) {
  const NetworkConfig& c = config.network;
  net::EgressOptions options;
  options.dir = dir;
  options.max_connections = static_cast<uint32_t>(c.max_connections);
  auto bad = [](absl::string_view key, const absl::Status& status) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", key, ": ", status.message()));
  };
  auto subnet = net::ParseCidr(c.sandbox_subnet, /*allow_port=*/false);
  if (!subnet.ok()) return bad("network.sandbox_subnet", subnet.status());
  options.subnet = *subnet;
  if (options.subnet.prefix > 28) {
    return absl::InvalidArgumentError(
        "config network.sandbox_subnet: at most a /28 (it holds a /30 per "
        "sandbox)");
  }
  for (const auto& text : c.allow_private) {
    auto cidr = net::ParseCidr(text, /*allow_port=*/false);
    if (!cidr.ok()) return bad("network.allow_private", cidr.status());
    options.allow_private.push_back(*cidr);
  }
  std::string upstream = c.dns_upstream;
  if (upstream.empty()) {
    std::ifstream file(resolv_conf);
    std::string line;
    while (upstream.empty() && std::getline(file, line)) {
      std::vector<absl::string_view> words =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (words.size() >= 2 && words[0] == "nameserver" &&
          net::ParseIpv4(words[1])) {
        upstream = std::string(words[1]);
      }
    }
    if (upstream.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no IPv4 nameserver in ", resolv_conf, ": set network.dns_upstream"));
    }
  }
  absl::string_view host = upstream;
  if (const size_t colon = host.find(':'); colon != absl::string_view::npos) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(host.substr(colon + 1), &port) || port == 0 ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config network.dns_upstream: bad port in \"", upstream, "\""));
    }
    options.dns_upstream_port = static_cast<uint16_t>(port);
    host = host.substr(0, colon);
  }
  auto address = net::ParseIpv4(host);
  if (!address) {
    return absl::InvalidArgumentError(
        absl::StrCat("config network.dns_upstream: \"", upstream,
                     "\" is not an IPv4 address (with an optional :PORT)"));
  }
  options.dns_upstream = *address;
  if (!c.upstream_ca_file.empty()) {
    if (c.upstream_ca_file.front() != '/' ||
        ::access(c.upstream_ca_file.c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config network.upstream_ca_file: \"", c.upstream_ca_file,
          "\" is not an absolute path of a readable file"));
    }
    options.upstream_ca_file = c.upstream_ca_file;
  }
  return options;
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
  policy.admin = caller.admin;
  if (caller.admin) {
    policy.grants.assign(std::begin(kKnownGrants), std::end(kKnownGrants));
  } else {
    policy.grants = effective.grants;
    policy.network_modes = effective.network;
  }
  policy.quotas.sandboxes = effective.quotas.sandboxes;
  policy.quotas.calls = effective.quotas.calls;
  policy.quotas.storage_mib = effective.quotas.storage_mib;
  return policy;
}

}  // namespace corral::daemon
