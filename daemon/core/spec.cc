#include "daemon/core/spec.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "corral/hex_id.h"
#include "corral/status_macros.h"
#include "daemon/net/egress_policy.h"

namespace corral::daemon {
namespace {

constexpr size_t kMaxEnvVars = 1024;
constexpr size_t kMaxEnvBytes = 256 * 1024;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxLabelValue = 256;
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxArgs = 4096;
constexpr size_t kMaxArgBytes = 1024 * 1024;
constexpr const char* kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

bool HasNul(absl::string_view s) {
  return s.find('\0') != absl::string_view::npos;
}

absl::Status ValidateEnv(
    const google::protobuf::Map<std::string, std::string>& env,
    absl::string_view field) {
  if (env.size() > kMaxEnvVars) {
    return Invalid(field,
                   absl::StrCat("more than ", kMaxEnvVars, " variables"));
  }
  size_t bytes = 0;
  for (const auto& [name, value] : env) {
    if (name.empty() || name.find('=') != std::string::npos || HasNul(name)) {
      return Invalid(field, absl::StrCat("invalid variable name '", name,
                                         "' (must be non-empty, without '=')"));
    }
    if (HasNul(value)) {
      return Invalid(field, absl::StrCat("value of ", name, " contains NUL"));
    }
    bytes += name.size() + value.size() + 2;
  }
  if (bytes > kMaxEnvBytes) {
    return Invalid(field, absl::StrCat("larger than ", kMaxEnvBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateAbsolutePath(absl::string_view path,
                                  absl::string_view field) {
  if (path.empty() || path[0] != '/')
    return Invalid(field, "must be an absolute path");
  if (path.size() > kMaxPath) return Invalid(field, "path too long");
  if (HasNul(path)) return Invalid(field, "contains NUL");
  return absl::OkStatus();
}

bool ValidLabelKey(absl::string_view key) {
  if (key.empty() || key.size() > 63) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
           c == '_' || c == '/' || c == '-';
  });
}

bool ValidHostname(absl::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' ||
      name.back() == '-') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// Picks the request's value, or the default when it is zero; then checks it
// against the minimum and the smaller of the daemon's and the policy's maxima.
template <typename T>
absl::StatusOr<T> Limit(absl::string_view field, T requested, T fallback,
                        T minimum, T maximum, T policy_maximum,
                        absl::string_view unit) {
  T value = requested == 0 ? fallback : requested;
  T cap = maximum;
  if (policy_maximum != 0 && policy_maximum < cap) cap = policy_maximum;
  if (minimum != 0 && value < minimum) {
    return Invalid(field, absl::StrCat(value, unit, " is below the minimum ",
                                       minimum, unit));
  }
  if (cap != 0 && value > cap) {
    return Invalid(
        field, absl::StrCat(value, unit, " exceeds the maximum ", cap, unit));
  }
  if (value == 0) return Invalid(field, "no value and no default configured");
  return value;
}

}  // namespace

bool CallerPolicy::Grants(std::string_view grant) const {
  return std::find(grants.begin(), grants.end(), grant) != grants.end();
}

absl::Status ValidateSandboxId(const std::string& id) {
  if (!IsHexId(id, 32)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid sandbox id '", id.substr(0, 64),
                     "': expected 32 lowercase hex characters"));
  }
  return absl::OkStatus();
}

uint64_t MaxLifetime(const SpecRules& rules, const CallerPolicy& policy) {
  uint64_t lifetime = rules.maxima.lifetime_seconds;
  if (policy.maxima.lifetime_seconds != 0 &&
      (lifetime == 0 || policy.maxima.lifetime_seconds < lifetime)) {
    lifetime = policy.maxima.lifetime_seconds;
  }
  return lifetime;
}

absl::Status ValidateTtl(uint64_t ttl_seconds, const SpecRules& rules,
                         const CallerPolicy& policy) {
  return Limit<uint64_t>("ttl_seconds", ttl_seconds, rules.defaults.ttl_seconds,
                         1, rules.maxima.ttl_seconds, policy.maxima.ttl_seconds,
                         " s")
      .status();
}

namespace {

// The network mode and allowlists of a create request, as the policy
// allows them.
absl::Status PlanNetwork(const corral::v1::CreateSandboxRequest& request,
                         const CallerPolicy& policy, SandboxPlan* plan) {
  const auto& asked = request.network_policy();
  const bool lists =
      asked.allow_domains_size() > 0 || asked.allow_cidrs_size() > 0;
  constexpr int kMaxEntries = 256;
  if (asked.allow_domains_size() > kMaxEntries ||
      asked.allow_cidrs_size() > kMaxEntries) {
    return Invalid("network_policy",
                   absl::StrCat("at most ", kMaxEntries, " domains and ",
                                kMaxEntries, " CIDRs"));
  }
  std::string mode;
  switch (request.network()) {
    case corral::v1::NETWORK_MODE_UNSPECIFIED:
      plan->network = lists ? corral::v1::NETWORK_MODE_EGRESS
                            : corral::v1::NETWORK_MODE_NONE;
      break;
    case corral::v1::NETWORK_MODE_NONE:
    case corral::v1::NETWORK_MODE_EGRESS:
    case corral::v1::NETWORK_MODE_LEARN:
      plan->network = request.network();
      break;
    default:
      return Invalid("network",
                     absl::StrCat("unknown mode ", request.network()));
  }
  switch (plan->network) {
    case corral::v1::NETWORK_MODE_EGRESS:
      mode = lists ? "allowlist" : "egress";
      break;
    case corral::v1::NETWORK_MODE_LEARN:
      mode = "learn";
      break;
    default:
      mode = "none";
  }
  if (lists && plan->network != corral::v1::NETWORK_MODE_EGRESS) {
    return Invalid(
        "network_policy",
        absl::StrCat("allowlists need network mode egress, not ", mode));
  }
  if (!policy.network_modes.empty() &&
      std::find(policy.network_modes.begin(), policy.network_modes.end(),
                mode) == policy.network_modes.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "network ", mode, " is not allowed by ", policy.name,
        "; it allows: ", absl::StrJoin(policy.network_modes, ", ")));
  }
  std::set<std::string> domains, cidrs;
  for (const auto& domain : asked.allow_domains()) {
    const std::string lower = absl::AsciiStrToLower(domain);
    RETURN_IF_ERROR(
        Annotate(net::ValidateDomainPattern(lower), "network_policy"));
    domains.insert(lower);
  }
  for (const auto& text : asked.allow_cidrs()) {
    auto cidr = net::ParseCidr(text, /*allow_port=*/true);
    if (!cidr.ok()) return Annotate(cidr.status(), "network_policy");
    cidrs.insert(cidr->ToString());
  }
  for (const auto& d : domains) plan->network_policy.add_allow_domains(d);
  for (const auto& c : cidrs) plan->network_policy.add_allow_cidrs(c);
  return absl::OkStatus();
}

constexpr int kMaxSecrets = 16;
constexpr size_t kMaxSecretBytes = 64 * 1024;

absl::Status PlanSecrets(const corral::v1::CreateSandboxRequest& request,
                         SandboxPlan* plan) {
  if (request.secrets_size() == 0) return absl::OkStatus();
  if (request.secrets_size() > kMaxSecrets) {
    return Invalid("secrets", absl::StrCat("at most ", kMaxSecrets));
  }
  if (plan->network != corral::v1::NETWORK_MODE_EGRESS &&
      plan->network != corral::v1::NETWORK_MODE_LEARN) {
    return Invalid("secrets", "secrets need network access (egress)");
  }
  std::set<std::string> names;
  for (const auto& asked : request.secrets()) {
    const std::string& name = asked.name();
    if (name.empty() || name.size() > 128 ||
        name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                               "vwxyz0123456789_") != std::string::npos ||
        absl::ascii_isdigit(name[0])) {
      return Invalid("secrets",
                     absl::StrCat("secret name '", name.substr(0, 128),
                                  "': expected [A-Za-z_][A-Za-z0-9_]*"));
    }
    if (!names.insert(name).second || plan->env.count(name) != 0) {
      return Invalid("secrets",
                     absl::StrCat("secret ", name,
                                  " is given twice, or also as a variable"));
    }
    // The value is never named in a message.
    if (asked.value().empty() || asked.value().size() > kMaxSecretBytes ||
        asked.value().find_first_of("\r\n") != std::string::npos) {
      return Invalid(
          "secrets",
          absl::StrCat("the value of secret ", name,
                       " must be 1-65536 bytes without line breaks"));
    }
    if (asked.hosts_size() == 0) {
      return Invalid("secrets",
                     absl::StrCat("secret ", name, " is bound to no host"));
    }
    corral::v1::Secret secret;
    secret.set_name(name);
    secret.set_value(asked.value());
    for (const auto& host : asked.hosts()) {
      const std::string lower = absl::AsciiStrToLower(host);
      RETURN_IF_ERROR(Annotate(net::ValidateDomainPattern(lower),
                               absl::StrCat("secret ", name)));
      secret.add_hosts(lower);
    }
    plan->secrets.push_back(std::move(secret));
  }
  return absl::OkStatus();
}

constexpr int kMaxPorts = 16;

absl::Status PlanPorts(const corral::v1::CreateSandboxRequest& request,
                       const CallerPolicy& policy, SandboxPlan* plan) {
  if (request.ports_size() > kMaxPorts) {
    return Invalid("ports", absl::StrCat("at most ", kMaxPorts));
  }
  std::set<std::pair<std::string, uint32_t>> taken;
  for (const auto& asked : request.ports()) {
    corral::v1::PortMapping port = asked;
    if (port.host_address().empty()) port.set_host_address("127.0.0.1");
    const std::string what = absl::StrCat(
        port.host_address(), ":", port.host_port(), ":", port.sandbox_port());
    auto address = net::ParseIpv4(port.host_address());
    if (!address) {
      return Invalid("ports", absl::StrCat(what,
                                           ": the host address must be "
                                           "an IPv4 address"));
    }
    if (port.sandbox_port() == 0 || port.sandbox_port() > 65535 ||
        port.host_port() > 65535) {
      return Invalid("ports", absl::StrCat(what,
                                           ": ports are 1-65535 (host "
                                           "port 0: any free one)"));
    }
    const bool loopback = (*address >> 24) == 127;
    if (!loopback && !policy.Grants("publish-public")) {
      return absl::PermissionDeniedError(absl::StrCat(
          "publishing on ", port.host_address(),
          " exposes the sandbox beyond this host: it needs the grant "
          "publish-public, which ",
          policy.name, " does not give; publish on 127.0.0.1"));
    }
    if (port.host_port() != 0 && port.host_port() < 1024 && !policy.admin) {
      return absl::PermissionDeniedError(
          absl::StrCat("host port ", port.host_port(),
                       " is privileged: only admins may publish below 1024"));
    }
    if (port.host_port() != 0 &&
        !taken.insert({port.host_address(), port.host_port()}).second) {
      return Invalid("ports", absl::StrCat(what,
                                           ": host port published "
                                           "twice"));
    }
    plan->ports.push_back(port);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SandboxPlan> PlanSandbox(
    const corral::v1::CreateSandboxRequest& request, const SpecRules& rules,
    const CallerPolicy& policy) {
  SandboxPlan plan;
  plan.runtime = request.runtime();
  if (plan.runtime.empty()) plan.runtime = policy.default_runtime;
  if (plan.runtime.empty()) plan.runtime = rules.default_runtime;
  if (!policy.runtimes.empty() &&
      std::find(policy.runtimes.begin(), policy.runtimes.end(), plan.runtime) ==
          policy.runtimes.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("runtime ", plan.runtime,
                     " is not allowed for you by the daemon's "
                     "policy (allowed: ",
                     absl::StrJoin(policy.runtimes, ", "), ")"));
  }
  plan.image = request.image().empty() ? rules.default_image : request.image();

  const auto& l = request.limits();
  ASSIGN_OR_RETURN(
      plan.limits.cpu_millis,
      Limit<uint32_t>("limits.cpu_millis", l.cpu_millis(),
                      rules.defaults.cpu_millis, rules.minima.cpu_millis,
                      rules.maxima.cpu_millis, policy.maxima.cpu_millis,
                      " millicpu"));
  ASSIGN_OR_RETURN(
      plan.limits.memory_mib,
      Limit<uint64_t>("limits.memory_mib", l.memory_mib(),
                      rules.defaults.memory_mib, rules.minima.memory_mib,
                      rules.maxima.memory_mib, policy.maxima.memory_mib,
                      " MiB"));
  ASSIGN_OR_RETURN(plan.limits.pids,
                   Limit<uint32_t>("limits.pids", l.pids(), rules.defaults.pids,
                                   rules.minima.pids, rules.maxima.pids,
                                   policy.maxima.pids, ""));
  ASSIGN_OR_RETURN(
      plan.limits.disk_mib,
      Limit<uint64_t>("limits.disk_mib", l.disk_mib(), rules.defaults.disk_mib,
                      rules.minima.disk_mib, rules.maxima.disk_mib,
                      policy.maxima.disk_mib, " MiB"));
  // The default TTL is at most the caller's lifetime.
  plan.limits.lifetime_seconds = MaxLifetime(rules, policy);
  uint64_t default_ttl = rules.defaults.ttl_seconds;
  if (plan.limits.lifetime_seconds != 0) {
    default_ttl = std::min(default_ttl, plan.limits.lifetime_seconds);
  }
  ASSIGN_OR_RETURN(plan.limits.ttl_seconds,
                   Limit<uint64_t>("ttl_seconds", request.ttl_seconds(),
                                   default_ttl, 1, rules.maxima.ttl_seconds,
                                   policy.maxima.ttl_seconds, " s"));
  plan.limits.exec_timeout_seconds = rules.defaults.exec_timeout_seconds;
  plan.limits.output_limit_bytes = rules.defaults.output_limit_bytes;
  if (plan.limits.lifetime_seconds != 0 &&
      plan.limits.ttl_seconds > plan.limits.lifetime_seconds) {
    return Invalid("ttl_seconds",
                   absl::StrCat(plan.limits.ttl_seconds,
                                " s exceeds the maximum lifetime ",
                                plan.limits.lifetime_seconds, " s"));
  }

  RETURN_IF_ERROR(PlanNetwork(request, policy, &plan));
  RETURN_IF_ERROR(PlanPorts(request, policy, &plan));

  RETURN_IF_ERROR(ValidateEnv(request.env(), "env"));
  plan.env.insert(request.env().begin(), request.env().end());
  RETURN_IF_ERROR(PlanSecrets(request, &plan));

  if (request.labels().size() > kMaxLabels) {
    return Invalid("labels", absl::StrCat("more than ", kMaxLabels));
  }
  for (const auto& [key, value] : request.labels()) {
    if (!ValidLabelKey(key)) {
      return Invalid("labels", absl::StrCat("invalid key '", key.substr(0, 80),
                                            "' (1-63 of [A-Za-z0-9._/-])"));
    }
    if (value.size() > kMaxLabelValue || HasNul(value)) {
      return Invalid("labels", absl::StrCat("value of ", key,
                                            " is too long or contains NUL"));
    }
  }
  plan.labels.insert(request.labels().begin(), request.labels().end());

  plan.workdir = request.workdir().empty() ? "/workspace" : request.workdir();
  RETURN_IF_ERROR(ValidateAbsolutePath(plan.workdir, "workdir"));

  if (!request.hostname().empty()) {
    if (!ValidHostname(request.hostname())) {
      return Invalid("hostname",
                     absl::StrCat("'", request.hostname().substr(0, 80),
                                  "' is not 1-63 of [a-z0-9-]"));
    }
    plan.hostname = request.hostname();
  }

  for (int guarantee : request.require()) {
    if (!corral::v1::Guarantee_IsValid(guarantee) ||
        guarantee == corral::v1::GUARANTEE_UNSPECIFIED) {
      return Invalid("require", absl::StrCat("unknown guarantee ", guarantee));
    }
    plan.require.push_back(guarantee);
  }

  for (const auto& [key, value] : request.runtime_options()) {
    if (key.empty() || key.size() > 64 || value.size() > 1024 || HasNul(key) ||
        HasNul(value)) {
      return Invalid("runtime_options",
                     "keys are 1-64 bytes, values at most 1024");
    }
    if (key == "userns") {
      if (value != "true" && value != "false") {
        return Invalid("runtime_options.userns",
                       "must be \"true\" or \"false\"");
      }
      plan.user_namespace = value == "true";
      if (!plan.user_namespace && !policy.Grants(kGrantNoUserns)) {
        return absl::PermissionDeniedError(absl::StrCat(
            "runtime_options.userns=false weakens isolation (sandbox root "
            "would be host root): only admins, or callers whose policy (",
            policy.name, ") grants \"", kGrantNoUserns, "\", may ask for it"));
      }
    }
  }
  plan.runtime_options.insert(request.runtime_options().begin(),
                              request.runtime_options().end());
  plan.idle_timeout_seconds = request.idle_timeout_seconds();
  if (rules.maxima.ttl_seconds != 0 &&
      plan.idle_timeout_seconds > rules.maxima.ttl_seconds) {
    return Invalid(
        "idle_timeout_seconds",
        absl::StrCat(plan.idle_timeout_seconds, " s exceeds the maximum ",
                     rules.maxima.ttl_seconds, " s"));
  }
  return plan;
}

absl::StatusOr<corral::agent::v1::ExecStart> PlanExec(
    const corral::v1::ExecStart& request, const corral::v1::Sandbox& sandbox,
    const SpecRules& rules) {
  corral::agent::v1::ExecStart start;
  const bool has_argv = request.argv_size() > 0;
  const bool has_shell = !request.shell().empty();
  if (has_argv == has_shell) {
    return Invalid("command", "give exactly one of argv and shell");
  }
  size_t bytes = 0;
  if (has_argv) {
    if (static_cast<size_t>(request.argv_size()) > kMaxArgs) {
      return Invalid("argv",
                     absl::StrCat("more than ", kMaxArgs, " arguments"));
    }
    if (request.argv(0).empty()) return Invalid("argv", "argv[0] is empty");
    for (const auto& arg : request.argv()) {
      if (HasNul(arg)) return Invalid("argv", "an argument contains NUL");
      bytes += arg.size() + 1;
      start.add_argv(arg);
    }
  } else {
    if (HasNul(request.shell())) return Invalid("shell", "contains NUL");
    bytes = request.shell().size();
    start.add_argv("/bin/sh");
    start.add_argv("-c");
    start.add_argv(request.shell());
  }
  if (bytes > kMaxArgBytes) {
    return Invalid("command",
                   absl::StrCat("larger than ", kMaxArgBytes, " bytes"));
  }

  const std::string cwd =
      request.cwd().empty() ? sandbox.workdir() : request.cwd();
  RETURN_IF_ERROR(ValidateAbsolutePath(cwd.empty() ? "/" : cwd, "cwd"));
  start.set_cwd(cwd.empty() ? "/" : cwd);

  RETURN_IF_ERROR(ValidateEnv(request.env(), "env"));
  // Later sources win: built-in defaults, the sandbox's env, the command's.
  std::map<std::string, std::string> env = {
      {"PATH", kDefaultPath},
      {"HOME", "/root"},
      {"HOSTNAME", sandbox.hostname()},
      {"LANG", "C.UTF-8"},
  };
  for (const auto& [k, v] : sandbox.env()) env[k] = v;
  for (const auto& [k, v] : request.env()) env[k] = v;
  for (const auto& [k, v] : env) {
    auto* var = start.add_env();
    var->set_name(k);
    var->set_value(v);
  }

  ASSIGN_OR_RETURN(uint32_t timeout,
                   Limit<uint32_t>("timeout_seconds", request.timeout_seconds(),
                                   rules.defaults.exec_timeout_seconds, 0,
                                   rules.maxima.exec_timeout_seconds, 0, " s"));
  start.set_timeout_ms(static_cast<uint64_t>(timeout) * 1000);
  ASSIGN_OR_RETURN(
      uint64_t output_limit,
      Limit<uint64_t>("output_limit_bytes", request.output_limit_bytes(),
                      rules.defaults.output_limit_bytes, 0,
                      rules.maxima.output_limit_bytes, 0, " bytes"));
  start.set_output_limit_bytes(output_limit);
  start.set_stdin_open(request.stdin_open());
  return start;
}

}  // namespace corral::daemon
