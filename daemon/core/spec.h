// Turns API requests into validated, immutable plans before anything runs:
// every default filled in, every limit checked against the caller's policy,
// every string checked for what the sandbox and the agent can carry.
#ifndef CORRAL_DAEMON_CORE_SPEC_H_
#define CORRAL_DAEMON_CORE_SPEC_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/agent/v1/agent.pb.h"
#include "corral/v1/exec.pb.h"
#include "corral/v1/sandboxes.pb.h"

namespace corral::daemon {

// One set of the numbers a request may ask for.
struct LimitSet {
  uint32_t cpu_millis = 0;
  uint64_t memory_mib = 0;
  uint32_t pids = 0;
  uint64_t disk_mib = 0;
  uint64_t ttl_seconds = 0;
  uint32_t exec_timeout_seconds = 0;
  uint64_t output_limit_bytes = 0;
  // From creation to the end, however the TTL is extended.
  uint64_t lifetime_seconds = 0;
};

// What one uid may hold at once (config [quotas] or its policy's); zero
// fields: no quota.
struct QuotaSet {
  uint32_t sandboxes = 0;
  uint32_t calls = 0;
  uint64_t storage_mib = 0;
};

// The isolation-weakening option "userns=false" (config kKnownGrants).
inline constexpr char kGrantNoUserns[] = "no-userns";

// What one caller may do, resolved from the config's policy entries.
struct CallerPolicy {
  // "policy[N]" or "default_policy", for messages.
  std::string name = "default_policy";
  // The caller may do nothing.
  bool deny = false;
  std::vector<std::string> runtimes;  // empty: every runtime
  std::string default_runtime;        // empty: the daemon's default
  LimitSet maxima;                    // zero fields: the daemon's maxima
  // Isolation-weakening options the caller may ask for; admins get all.
  std::vector<std::string> grants;
  // An admin (root or the admin group): privileged host ports.
  bool admin = false;
  // Network modes ("none", "allowlist", "egress", "learn") the caller may
  // ask for; empty: every mode.
  std::vector<std::string> network_modes;
  QuotaSet quotas;

  [[nodiscard]] bool Grants(std::string_view grant) const;
};

// Who called, from SO_PEERCRED / SO_PEERGROUPS of the connection.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  // False when the caller's groups could not be read: every call is refused
  // (policies and the admin group depend on them).
  bool groups_known = true;
  // Root or a member of the admin group: sees and manages every sandbox.
  bool admin = false;
  // Resolved once per connection, when the daemon has a policy resolver;
  // unset for callers made in code (the core then resolves it).
  std::optional<CallerPolicy> policy;
};

struct SpecRules {
  LimitSet defaults;
  LimitSet maxima;
  LimitSet minima;
  std::string default_runtime = "linux";
  std::string default_image = "host";
};

// A create request after validation. Immutable once built.
struct SandboxPlan {
  std::string runtime;
  std::string image;
  LimitSet limits;  // every field > 0
  corral::v1::NetworkMode network = corral::v1::NETWORK_MODE_NONE;
  // Mode EGRESS only: validated, lowercased, without duplicates.
  corral::v1::NetworkPolicy network_policy;
  // Published ports, host addresses filled in.
  std::vector<corral::v1::PortMapping> ports;
  // Secrets (network EGRESS or LEARN only); hosts lowercased.
  std::vector<corral::v1::Secret> secrets;
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> labels;
  std::string workdir;
  std::string hostname;  // empty: derived from the id at creation
  std::vector<int> require;
  std::map<std::string, std::string> runtime_options;
  bool user_namespace = true;
  uint64_t idle_timeout_seconds = 0;
};

// Validates a create request: INVALID_ARGUMENT naming the field for bad
// values, PERMISSION_DENIED for a runtime the policy forbids or an option
// that weakens isolation which the policy does not grant. Does not check
// that the runtime or image exist (the caller does, with their own errors).
absl::StatusOr<SandboxPlan> PlanSandbox(
    const corral::v1::CreateSandboxRequest& request, const SpecRules& rules,
    const CallerPolicy& policy);

// Validates an exec request against its sandbox and builds what the agent
// receives: argv or `/bin/sh -c`, cwd, the merged environment, timeout and
// output limit with defaults applied.
absl::StatusOr<corral::agent::v1::ExecStart> PlanExec(
    const corral::v1::ExecStart& request, const corral::v1::Sandbox& sandbox,
    const SpecRules& rules);

// Validators shared with other requests.
absl::Status ValidateSandboxId(const std::string& id);
absl::Status ValidateTtl(uint64_t ttl_seconds, const SpecRules& rules,
                         const CallerPolicy& policy);
// The longest a sandbox of this caller may live from its creation; 0: no
// maximum.
uint64_t MaxLifetime(const SpecRules& rules, const CallerPolicy& policy);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_SPEC_H_
