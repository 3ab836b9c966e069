#include "client/options.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "corral/status_macros.h"
#include "google/protobuf/descriptor.h"

namespace corral::cli {
namespace {

using corral::v1::Guarantee;
using corral::v1::NetworkMode;
using corral::v1::SandboxState;

constexpr absl::string_view kGuaranteePrefix = "GUARANTEE_";
constexpr absl::string_view kStatePrefix = "SANDBOX_STATE_";

// "GUARANTEE_CGROUP_LIMITS" with prefix "GUARANTEE_" -> "cgroup-limits".
std::string ShortEnumName(absl::string_view full, absl::string_view prefix) {
  if (full.substr(0, prefix.size()) == prefix)
    full.remove_prefix(prefix.size());
  return absl::StrReplaceAll(absl::AsciiStrToLower(full), {{"_", "-"}});
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<std::pair<std::string, std::string>> ParseKeyValue(
    absl::string_view flag, absl::string_view text) {
  const size_t equals = text.find('=');
  if (equals == absl::string_view::npos || equals == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " expects KEY=VALUE, got '", text, "'"));
  }
  return std::make_pair(std::string(text.substr(0, equals)),
                        std::string(text.substr(equals + 1)));
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& labels) {
  std::map<std::string, std::string> result;
  for (const std::string& label : labels) {
    ASSIGN_OR_RETURN(auto pair, ParseKeyValue("--label", label));
    result[pair.first] = std::move(pair.second);
  }
  return result;
}

absl::StatusOr<std::map<std::string, std::string>> ParseEnv(
    const std::vector<std::string>& env, const EnvLookup& lookup) {
  std::map<std::string, std::string> result;
  for (const std::string& entry : env) {
    if (entry.empty() || entry.front() == '=') {
      return absl::InvalidArgumentError(
          absl::StrCat("-e expects KEY=VALUE or KEY, got '", entry, "'"));
    }
    const size_t equals = entry.find('=');
    if (equals != std::string::npos) {
      result[entry.substr(0, equals)] = entry.substr(equals + 1);
      continue;
    }
    if (std::optional<std::string> value = lookup(entry)) {
      result[entry] = std::move(*value);
    }
  }
  return result;
}

absl::StatusOr<Guarantee> ParseGuarantee(absl::string_view name) {
  const google::protobuf::EnumDescriptor* descriptor =
      corral::v1::Guarantee_descriptor();
  const std::string wanted = ShortEnumName(name, kGuaranteePrefix);
  for (int i = 0; i < descriptor->value_count(); ++i) {
    const auto* value = descriptor->value(i);
    if (value->number() == corral::v1::GUARANTEE_UNSPECIFIED) continue;
    if (ShortEnumName(value->name(), kGuaranteePrefix) == wanted) {
      return static_cast<Guarantee>(value->number());
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown guarantee '", name,
                   "' (known: ", absl::StrJoin(GuaranteeNames(), ", "), ")"));
}

std::string GuaranteeName(Guarantee guarantee) {
  const auto* value =
      corral::v1::Guarantee_descriptor()->FindValueByNumber(guarantee);
  if (value == nullptr) return absl::StrCat("guarantee-", guarantee);
  return ShortEnumName(value->name(), kGuaranteePrefix);
}

std::vector<std::string> GuaranteeNames() {
  std::vector<std::string> names;
  const auto* descriptor = corral::v1::Guarantee_descriptor();
  for (int i = 0; i < descriptor->value_count(); ++i) {
    if (descriptor->value(i)->number() == corral::v1::GUARANTEE_UNSPECIFIED) {
      continue;
    }
    names.push_back(
        ShortEnumName(descriptor->value(i)->name(), kGuaranteePrefix));
  }
  return names;
}

absl::StatusOr<corral::v1::PortMapping> ParsePublish(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "-p expects [ADDRESS:]HOST_PORT:PORT or PORT, got '", text, "'"));
  };
  if (parts.empty() || parts.size() > 3) return bad();
  auto port = [](absl::string_view word, uint32_t* out) {
    return absl::SimpleAtoi(word, out) && *out <= 65535;
  };
  corral::v1::PortMapping mapping;
  uint32_t sandbox_port = 0, host_port = 0;
  if (!port(parts.back(), &sandbox_port) || sandbox_port == 0) return bad();
  mapping.set_sandbox_port(sandbox_port);
  if (parts.size() >= 2) {
    if (!port(parts[parts.size() - 2], &host_port)) return bad();
    mapping.set_host_port(host_port);
  }
  if (parts.size() == 3) {
    if (parts[0].empty()) return bad();
    mapping.set_host_address(std::string(parts[0]));
  }
  return mapping;
}

absl::StatusOr<NetworkMode> ParseNetwork(absl::string_view name) {
  if (name == "none") return corral::v1::NETWORK_MODE_NONE;
  if (name == "egress") return corral::v1::NETWORK_MODE_EGRESS;
  if (name == "learn") return corral::v1::NETWORK_MODE_LEARN;
  return absl::InvalidArgumentError(absl::StrCat(
      "--network expects 'none', 'egress' or 'learn', got '", name, "'"));
}

std::string NetworkName(NetworkMode mode) {
  switch (mode) {
    case corral::v1::NETWORK_MODE_UNSPECIFIED:
    case corral::v1::NETWORK_MODE_NONE:
      return "none";
    case corral::v1::NETWORK_MODE_EGRESS:
      return "egress";
    case corral::v1::NETWORK_MODE_LEARN:
      return "learn";
    default:
      return absl::StrCat("network-", static_cast<int>(mode));
  }
}

absl::StatusOr<SandboxState> ParseState(absl::string_view name) {
  const auto* descriptor = corral::v1::SandboxState_descriptor();
  const std::string wanted = ShortEnumName(name, kStatePrefix);
  for (int i = 0; i < descriptor->value_count(); ++i) {
    const auto* value = descriptor->value(i);
    if (value->number() == corral::v1::SANDBOX_STATE_UNSPECIFIED) continue;
    if (ShortEnumName(value->name(), kStatePrefix) == wanted) {
      return static_cast<SandboxState>(value->number());
    }
  }
  std::vector<std::string> known;
  for (int i = 1; i < descriptor->value_count(); ++i) {
    known.push_back(ShortEnumName(descriptor->value(i)->name(), kStatePrefix));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown state '", name, "' (known: ", absl::StrJoin(known, ", "), ")"));
}

std::string StateName(SandboxState state) {
  const auto* value =
      corral::v1::SandboxState_descriptor()->FindValueByNumber(state);
  if (value == nullptr) return absl::StrCat("state-", state);
  return ShortEnumName(value->name(), kStatePrefix);
}

absl::StatusOr<uint32_t> CpusToMillis(double cpus) {
  if (!std::isfinite(cpus) || cpus < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cpus must be a positive number, got ", cpus));
  }
  const double millis = std::round(cpus * 1000.0);
  if (cpus > 0 && millis < 1) {
    return absl::InvalidArgumentError("--cpus must be at least 0.001");
  }
  if (millis > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cpus ", cpus, " is too large"));
  }
  return static_cast<uint32_t>(millis);
}

// --secret NAME=@FILE: the file is read here, by the user who runs corral
// (the daemon never opens a path a client names); one trailing line break
// is dropped. --secret-host NAME=HOST binds it.
absl::Status AddSecrets(const CreateOptions& options,
                        corral::v1::CreateSandboxRequest* request) {
  std::map<std::string, corral::v1::Secret*> by_name;
  for (const auto& entry : options.secrets) {
    const size_t equals = entry.find("=@");
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--secret expects NAME=@FILE (the value is read from FILE), got '",
          entry.substr(0, entry.find('=')), "...'"));
    }
    const std::string name = entry.substr(0, equals);
    const std::string path = entry.substr(equals + 2);
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      return absl::InvalidArgumentError(
          absl::StrCat("--secret ", name, ": cannot read ", path));
    }
    std::string value((std::istreambuf_iterator<char>(file)),
                      std::istreambuf_iterator<char>());
    if (absl::EndsWith(value, "\n")) value.pop_back();
    if (absl::EndsWith(value, "\r")) value.pop_back();
    corral::v1::Secret* secret = request->add_secrets();
    secret->set_name(name);
    secret->set_value(value);
    by_name[name] = secret;
  }
  for (const auto& entry : options.secret_hosts) {
    const size_t equals = entry.find('=');
    auto it = equals == std::string::npos
                  ? by_name.end()
                  : by_name.find(entry.substr(0, equals));
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--secret-host expects NAME=HOST for a --secret NAME, got '", entry,
          "'"));
    }
    for (absl::string_view host :
         absl::StrSplit(entry.substr(equals + 1), ',', absl::SkipEmpty())) {
      it->second->add_hosts(std::string(host));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<corral::v1::CreateSandboxRequest> BuildCreateRequest(
    const CreateOptions& options, const EnvLookup& lookup) {
  corral::v1::CreateSandboxRequest request;
  request.set_runtime(options.runtime);
  request.set_image(options.image);

  ASSIGN_OR_RETURN(const uint32_t cpu_millis, CpusToMillis(options.cpus));
  corral::v1::Limits* limits = request.mutable_limits();
  limits->set_cpu_millis(cpu_millis);
  limits->set_memory_mib(options.memory_mib);
  limits->set_pids(options.pids);
  limits->set_disk_mib(options.disk_mib);

  request.set_ttl_seconds(options.ttl_seconds);
  request.set_idle_timeout_seconds(options.idle_timeout_seconds);
  if (!options.network.empty()) {
    ASSIGN_OR_RETURN(const NetworkMode network, ParseNetwork(options.network));
    request.set_network(network);
  }
  for (const auto& entry : options.publish) {
    ASSIGN_OR_RETURN(*request.add_ports(), ParsePublish(entry));
  }
  RETURN_IF_ERROR(AddSecrets(options, &request));
  // Checked by the daemon, which names the bad entry.
  for (const auto& entry : options.allow_domains) {
    for (absl::string_view domain : absl::StrSplit(entry, ',')) {
      if (!domain.empty()) {
        request.mutable_network_policy()->add_allow_domains(
            std::string(domain));
      }
    }
  }
  for (const auto& entry : options.allow_cidrs) {
    for (absl::string_view cidr : absl::StrSplit(entry, ',')) {
      if (!cidr.empty()) {
        request.mutable_network_policy()->add_allow_cidrs(std::string(cidr));
      }
    }
  }
  ASSIGN_OR_RETURN(const auto env, ParseEnv(options.env, lookup));
  request.mutable_env()->insert(env.begin(), env.end());
  ASSIGN_OR_RETURN(const auto labels, ParseLabels(options.labels));
  request.mutable_labels()->insert(labels.begin(), labels.end());
  request.set_workdir(options.workdir);
  for (const std::string& name : options.require) {
    ASSIGN_OR_RETURN(const Guarantee guarantee, ParseGuarantee(name));
    request.add_require(guarantee);
  }
  request.set_hostname(options.hostname);
  if (options.no_userns)
    (*request.mutable_runtime_options())["userns"] = "false";
  return request;
}

absl::Status ValidateCreateOnly(const CreateOptions& options) {
  if (options.timeout_seconds != 0) {
    return absl::InvalidArgumentError(
        "--timeout applies to a command; give it to 'corral exec' or "
        "'corral run' (a sandbox's lifetime is --ttl)");
  }
  return absl::OkStatus();
}

absl::StatusOr<corral::v1::ExecStart> BuildExecStart(
    const ExecOptions& options, absl::string_view sandbox_id,
    const EnvLookup& lookup) {
  if (options.argv.empty() == options.shell.empty()) {
    return absl::InvalidArgumentError(
        options.argv.empty()
            ? "no command given: put it after '--' or use --sh CMDLINE"
            : "give either a command after '--' or --sh CMDLINE, not both");
  }
  corral::v1::ExecStart start;
  start.set_sandbox_id(std::string(sandbox_id));
  for (const std::string& arg : options.argv) start.add_argv(arg);
  start.set_shell(options.shell);
  start.set_cwd(options.workdir);
  ASSIGN_OR_RETURN(const auto env, ParseEnv(options.env, lookup));
  start.mutable_env()->insert(env.begin(), env.end());
  start.set_timeout_seconds(options.timeout_seconds);
  start.set_output_limit_bytes(options.output_limit_bytes);
  start.set_stdin_open(options.interactive);
  return start;
}

absl::StatusOr<corral::v1::RunStart> BuildRunStart(const CreateOptions& create,
                                                   const ExecOptions& exec,
                                                   const EnvLookup& lookup) {
  corral::v1::RunStart start;
  ASSIGN_OR_RETURN(*start.mutable_sandbox(),
                   BuildCreateRequest(create, lookup));
  ASSIGN_OR_RETURN(*start.mutable_command(), BuildExecStart(exec, "", lookup));
  return start;
}

absl::StatusOr<corral::v1::ListSandboxesRequest> BuildListRequest(
    const ListOptions& options) {
  corral::v1::ListSandboxesRequest request;
  ASSIGN_OR_RETURN(const auto labels, ParseLabels(options.labels));
  request.mutable_label_selector()->insert(labels.begin(), labels.end());
  if (!options.state.empty()) {
    ASSIGN_OR_RETURN(const SandboxState state, ParseState(options.state));
    request.set_state(state);
  }
  request.set_runtime(options.runtime);
  return request;
}

absl::StatusOr<corral::v1::ImportImageMetadata> BuildImportMetadata(
    const ImportOptions& options, bool packed_directory) {
  corral::v1::ImportImageMetadata metadata;
  metadata.set_name(options.name);
  // Unspecified: the daemon tells a rootfs tar from an OCI image layout or
  // docker save archive by its members (a packed OCI layout directory too).
  metadata.set_source(corral::v1::IMAGE_SOURCE_UNSPECIFIED);
  metadata.set_compression(packed_directory ? corral::v1::COMPRESSION_NONE
                                            : corral::v1::COMPRESSION_AUTO);
  metadata.set_replace(options.replace);
  ASSIGN_OR_RETURN(const auto labels, ParseLabels(options.labels));
  metadata.mutable_labels()->insert(labels.begin(), labels.end());
  return metadata;
}

std::optional<RemotePath> ParseRemotePath(absl::string_view argument) {
  const size_t colon = argument.find(':');
  if (colon == absl::string_view::npos || colon == 0) return std::nullopt;
  for (const char c : argument.substr(0, colon)) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
  }
  return RemotePath{std::string(argument.substr(0, colon)),
                    std::string(argument.substr(colon + 1))};
}

absl::StatusOr<CopyPlan> PlanCopy(absl::string_view source,
                                  absl::string_view destination) {
  std::optional<RemotePath> remote_source = ParseRemotePath(source);
  std::optional<RemotePath> remote_destination = ParseRemotePath(destination);
  if (remote_source && remote_destination) {
    return absl::InvalidArgumentError(
        "copying from one sandbox path to another is not supported: one side "
        "must be a local path");
  }
  if (!remote_source && !remote_destination) {
    return absl::InvalidArgumentError(
        "one of SRC and DST must be a sandbox path ID:PATH");
  }
  CopyPlan plan;
  plan.upload = remote_destination.has_value();
  plan.remote = plan.upload ? *remote_destination : *remote_source;
  plan.local = std::string(plan.upload ? source : destination);
  if (plan.remote.path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty path after '", plan.remote.sandbox_id, ":'"));
  }
  if (plan.local.empty()) {
    return absl::InvalidArgumentError("empty local path");
  }
  return plan;
}

absl::StatusOr<std::pair<std::string, std::string>> ParseSnapshotRef(
    absl::string_view argument) {
  const size_t at = argument.find('@');
  std::string id(argument.substr(0, at));
  std::string name;
  if (at != absl::string_view::npos) {
    name = std::string(argument.substr(at + 1));
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("no snapshot name after '@' in '", argument, "'"));
    }
  }
  if (id.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no sandbox id in '", argument, "'"));
  }
  return std::make_pair(std::move(id), std::move(name));
}

absl::StatusOr<uint32_t> ParseFileMode(absl::string_view text) {
  uint32_t mode = 0;
  bool valid = !text.empty() && text.size() <= 5;
  for (const char c : text) {
    if (c < '0' || c > '7') valid = false;
    mode = mode * 8 + static_cast<uint32_t>(c - '0');
  }
  if (!valid || mode > 07777) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mode expects octal permission bits such as 0644, got '", text, "'"));
  }
  return mode;
}

}  // namespace corral::cli
