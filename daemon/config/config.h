// The daemon's configuration file (TOML): socket, state, defaults and maxima
// for sandboxes, host uid range, per-user/group policies and per-runtime
// plugin options. deploy/corrald.toml documents every key with its default.
#ifndef CORRAL_DAEMON_CONFIG_CONFIG_H_
#define CORRAL_DAEMON_CONFIG_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/platform.h"

namespace corral::daemon {

// [daemon]
struct DaemonSection {
  std::string socket = platform::Defaults().socket;
  // Group given to the socket when it exists; empty: leave the daemon's group.
  std::string socket_group = "corral";
  uint32_t socket_mode = 0660;
  std::string state_dir = platform::Defaults().state_dir;
  // Empty: beside the corrald binary (see PluginDir and AgentPath).
  std::string plugin_dir;
  std::string agent_path;
  // The archive decoder (corral-unpack); empty: beside corrald.
  std::string unpack_path;
  // trace, debug, info, warn, error, critical or off.
  std::string log_level = "info";
  // Members see and manage every sandbox.
  std::string admin_group = "corral-admin";
  uint32_t max_sandboxes = 1000;
  // Largest gRPC message the daemon accepts.
  uint64_t max_request_bytes = 8ull << 20;
  // Events kept in the store's event log; older ones are trimmed.
  int64_t max_events = 100000;
  // Output the daemon holds at once for unary Exec calls, all callers
  // together; a call that would pass it has the rest of its output cut (and
  // flagged), so that many large outputs cannot exhaust the daemon's memory.
  uint64_t output_buffer_bytes = 256ull << 20;
};

// [defaults]: what a request that leaves a field at zero gets.
struct SandboxDefaults {
  std::string runtime = "linux";
  std::string image = "host";
  uint32_t cpu_millis = 1000;
  uint64_t memory_mib = 512;
  uint32_t pids = 256;
  uint64_t disk_mib = 1024;
  uint64_t ttl_seconds = 3600;
  uint64_t exec_timeout_seconds = 600;
  uint64_t output_limit_bytes = 16ull << 20;
};

// [limits]: the most a request may ask for.
struct SandboxLimits {
  uint32_t cpu_millis = 0;  // DefaultConfig(): number of CPUs * 1000
  uint64_t memory_mib = 16384;
  uint32_t pids = 16384;
  uint64_t disk_mib = 102400;
  uint64_t ttl_seconds = 7 * 24 * 3600;
  uint64_t exec_timeout_seconds = 86400;
  uint64_t output_limit_bytes = 256ull << 20;
  // How long any sandbox may live from its creation, however often its TTL
  // is extended.
  uint64_t lifetime_seconds = 30 * 24 * 3600;
};

// [quotas]: what one uid may hold at once, whatever its requests say.
struct Quotas {
  // Sandboxes that exist at once (any state).
  uint32_t sandboxes = 100;
  // RPCs in progress at once, streams included.
  uint32_t calls = 64;
  // MiB of disk: the workspace disks (disk_mib) of its sandboxes, plus their
  // snapshots' content and memory snapshots.
  uint64_t storage_mib = 1024 * 1024;
};

// Options that weaken isolation, which a client may ask for only when it is
// an admin or its policy grants them by name (PolicyEntry::grants).
// "no-userns": runtime_options userns=false (sandbox root is host root,
// capabilities dropped).
inline constexpr const char* kKnownGrants[] = {"no-userns", "publish-public"};

// The least a request may ask for (not configurable: below these a sandbox
// cannot even start its agent).
inline constexpr uint64_t kMinMemoryMib = 16;
inline constexpr uint32_t kMinPids = 8;
inline constexpr uint32_t kMinCpuMillis = 10;

// [sandbox_uids]: host uids given to sandboxes' root, [base, base + count).
struct SandboxUidRange {
  uint32_t base = 1'500'000'000;
  uint32_t count = 65536;
};

// [images]: limits on one image import.
struct ImageImportConfig {
  uint64_t max_bytes = 8ull << 30;
  uint64_t max_entries = 1'000'000;
};

// [workspace]: limits on workspace uploads (seed, sync) and snapshots.
struct WorkspaceConfig {
  uint64_t max_upload_bytes = 8ull << 30;
  uint64_t max_entries = 1'000'000;
  uint64_t max_snapshots = 64;
};

// [network]: the egress path of sandboxes with network access.
struct NetworkConfig {
  // "A.B.C.D" or "A.B.C.D:PORT" of the DNS server that allowed names are
  // resolved with; empty: the first nameserver of /etc/resolv.conf.
  std::string dns_upstream;
  // Addresses of the sandboxes' links, a /30 each; never reachable from a
  // sandbox. At most a /28.
  std::string sandbox_subnet = "10.231.0.0/16";
  // Refused ranges (private, CGNAT, link-local...) that sandboxes may
  // reach anyway, as CIDRs. Empty: none.
  std::vector<std::string> allow_private;
  // Newest DNS queries and connections kept per sandbox.
  uint64_t audit_events = 10000;
  // Connections open at once, per sandbox.
  uint64_t max_connections = 256;
  // A PEM file of CAs trusted, beside the system's store, for the servers
  // whose TLS the egress proxy terminates to put secrets in (a company's
  // own CA, say). The sandboxes with secrets trust them too. Empty: none.
  std::string upstream_ca_file;
};

// Network modes a policy may allow (PolicyEntry::network): "allowlist" is
// egress restricted by allow_domains/allow_cidrs.
inline constexpr const char* kKnownNetworkModes[] = {"none", "allowlist",
                                                     "egress", "learn"};

// One [[policy]] entry, or [default_policy]. A [[policy]] entry matches a
// caller whose uid is in `uids` or whose name is in `user_names`, or who is
// in one of `gids`/`group_names`; [default_policy] applies to every caller
// no entry matches.
struct PolicyEntry {
  std::vector<std::string> user_names;
  std::vector<uint32_t> uids;
  std::vector<std::string> group_names;
  std::vector<uint32_t> gids;
  // The matched callers may do nothing at all (PERMISSION_DENIED).
  bool deny = false;
  // Allowed runtimes; empty: every runtime.
  std::vector<std::string> runtimes;
  // Empty: the global default if allowed, else the first of `runtimes`.
  std::string default_runtime;
  // Maxima tighter than [limits]; unset: the global limit.
  std::optional<uint64_t> max_memory_mib;
  std::optional<uint32_t> max_cpu_millis;
  std::optional<uint32_t> max_pids;
  std::optional<uint64_t> max_disk_mib;
  std::optional<uint64_t> max_ttl_seconds;
  std::optional<uint64_t> max_lifetime_seconds;
  // Isolation-weakening options these callers may ask for (kKnownGrants).
  std::vector<std::string> grants;
  // Network modes these callers may ask for (kKnownNetworkModes); empty:
  // every mode.
  std::vector<std::string> network;
  // Quotas instead of [quotas] (the `quotas` sub-table); unset: [quotas].
  std::optional<uint32_t> quota_sandboxes;
  std::optional<uint32_t> quota_calls;
  std::optional<uint64_t> quota_storage_mib;
  // Line of the entry in the file, for messages; 0 when built in code.
  int line = 0;
};

struct DaemonConfig {
  DaemonSection daemon;
  SandboxDefaults defaults;
  SandboxLimits limits;
  SandboxUidRange sandbox_uids;
  ImageImportConfig images;
  WorkspaceConfig workspace;
  NetworkConfig network;
  Quotas quotas;
  std::vector<PolicyEntry> policies;
  // [default_policy]: for callers no [[policy]] entry matches. Its user and
  // group lists are always empty. By default: every runtime, the global
  // limits and quotas, no grants.
  PolicyEntry default_policy;
  // [runtimes.<name>]: options passed as strings to that runtime's plugin.
  std::map<std::string, std::map<std::string, std::string>> runtimes;
};

// The built-in configuration: every default above, limits.cpu_millis set to
// the number of online CPUs * 1000.
[[nodiscard]] DaemonConfig DefaultConfig();

// Reads and validates a config file; keys it does not set keep their
// defaults. NOT_FOUND when the file does not exist; INVALID_ARGUMENT naming
// the key, its value and line for an unknown key, a wrong type or a value out
// of range.
[[nodiscard]] absl::StatusOr<DaemonConfig> LoadConfig(
    const std::filesystem::path& path);

// Same, from the text of a file; `source` names it in messages.
[[nodiscard]] absl::StatusOr<DaemonConfig> ParseConfig(
    std::string_view text, std::string_view source = "config");

// What applies to one caller: the first [[policy]] entry that matches, merged
// with the global defaults and limits.
struct EffectivePolicy {
  // Index of the matching [[policy]] entry; -1: none matched, so
  // [default_policy] applies.
  int policy_index = -1;
  // "policy[N]" or "default_policy", for messages.
  std::string name = "default_policy";
  // The caller may do nothing.
  bool deny = false;
  // Isolation-weakening options the caller may ask for.
  std::vector<std::string> grants;
  // Network modes the caller may ask for; empty: every mode.
  std::vector<std::string> network;
  Quotas quotas;
  // Empty with all_runtimes set: every runtime is allowed.
  bool all_runtimes = true;
  std::vector<std::string> runtimes;
  // runtime is the caller's default runtime; numeric fields are clamped to
  // the maxima below.
  SandboxDefaults defaults;
  // The global limits, tightened by the policy's.
  SandboxLimits maxima;

  [[nodiscard]] bool AllowsRuntime(std::string_view runtime) const;
};

// First matching entry wins, else [default_policy]; root (uid 0) is matched
// like anyone else. User and group names are looked up in the system
// databases on each call, so accounts created after the daemon started are
// honoured.
[[nodiscard]] EffectivePolicy ResolvePolicy(const DaemonConfig& config,
                                            uint32_t uid,
                                            std::span<const uint32_t> gids);

// The plugin directory: daemon.plugin_dir, or <exe_dir>/../lib/corral.
[[nodiscard]] std::filesystem::path PluginDir(
    const DaemonConfig& config, const std::filesystem::path& exe_dir);
// The agent binary: daemon.agent_path, or <exe_dir>/corral-agent.
[[nodiscard]] std::filesystem::path AgentPath(
    const DaemonConfig& config, const std::filesystem::path& exe_dir);
// The archive decoder: daemon.unpack_path, or <exe_dir>/corral-unpack.
[[nodiscard]] std::filesystem::path UnpackPath(
    const DaemonConfig& config, const std::filesystem::path& exe_dir);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CONFIG_CONFIG_H_
