#include "backends/apple/container_cli.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "backends/common/agent_socket.h"

namespace corral::apple_runtime {
namespace {

using nlohmann::json;

// Apple's limit on a container id (ManagedContainer.nameValid).
constexpr size_t kMaxNameLength = 63;

// What the sandbox may not read or write of /proc and /sys, given
// explicitly (on top of the runtime's defaults) as the docker runtime does.
constexpr const char* kMaskedPaths[] = {
    "/proc/kcore",       "/proc/keys",          "/proc/timer_list",
    "/proc/sched_debug", "/proc/sysrq-trigger", "/proc/acpi",
    "/proc/scsi",        "/proc/asound",        "/proc/latency_stats",
    "/proc/timer_stats", "/sys/firmware"};
constexpr const char* kReadOnlyPaths[] = {"/proc/sys", "/proc/bus", "/proc/fs",
                                          "/proc/irq"};

// ContainerizationError's codes, and what each is for Corral.
absl::StatusCode CodeFor(absl::string_view code) {
  static const std::pair<const char*, absl::StatusCode> kCodes[] = {
      {"notFound", absl::StatusCode::kNotFound},
      {"exists", absl::StatusCode::kAlreadyExists},
      {"invalidArgument", absl::StatusCode::kInvalidArgument},
      {"invalidState", absl::StatusCode::kFailedPrecondition},
      {"unsupported", absl::StatusCode::kFailedPrecondition},
      {"interrupted", absl::StatusCode::kUnavailable},
      {"timeout", absl::StatusCode::kDeadlineExceeded},
      {"cancelled", absl::StatusCode::kCancelled},
      {"empty", absl::StatusCode::kNotFound},
      {"internalError", absl::StatusCode::kInternal},
      {"unknown", absl::StatusCode::kUnknown},
  };
  for (const auto& [name, status] : kCodes) {
    if (code == name) return status;
  }
  return absl::StatusCode::kOk;
}

// The innermost `<code>: "` of a description with nested causes.
absl::StatusCode InnermostCode(absl::string_view text) {
  absl::StatusCode found = absl::StatusCode::kOk;
  for (size_t at = text.find(": \""); at != absl::string_view::npos;
       at = text.find(": \"", at + 1)) {
    size_t start = at;
    while (start > 0 && absl::ascii_isalpha(text[start - 1])) --start;
    absl::StatusCode code = CodeFor(text.substr(start, at - start));
    if (code != absl::StatusCode::kOk) found = code;
  }
  return found;
}

}  // namespace

absl::StatusOr<std::string> ContainerName(absl::string_view hostname,
                                          absl::string_view sandbox_id) {
  const std::string name = absl::StrCat(hostname, ".", sandbox_id);
  const bool shaped = !hostname.empty() && absl::ascii_isalnum(hostname[0]) &&
                      std::all_of(hostname.begin(), hostname.end(), [](char c) {
                        return absl::ascii_isalnum(c) || c == '-' || c == '_';
                      });
  if (!shaped || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hostname '", hostname,
        "': the apple runtime names a sandbox's container <hostname>.<id> "
        "(Apple's runtime takes the hostname from the name, up to its first "
        "dot), so a hostname must be at most ",
        kMaxNameLength - 1 - sandbox_id.size(),
        " letters, digits, '-' or '_', starting with a letter or digit"));
  }
  return name;
}

std::vector<std::string> RunArguments(const RunPlan& plan) {
  const std::string socket_inside =
      absl::StrCat(kRunDirInside, "/", backend_plugin::kAgentSocketName);
  std::vector<std::string> args = {
      "run", "-d", "--name", plan.name,
      // No network device; the root read-only, /tmp and the agent's run
      // directory in memory.
      "--network", "none", "--read-only", "--tmpfs", "/tmp", "--tmpfs",
      kRunDirInside, "--volume",
      absl::StrCat(plan.workspace_dir, ":/workspace"), "--volume",
      absl::StrCat(plan.agent_dir, ":", kAgentDirInside, ":ro"),
      // The runtime listens at the host path and carries each connection
      // into the VM, to the agent's socket.
      "--publish-socket", absl::StrCat(plan.host_socket, ":", socket_inside),
      "--cap-drop", "ALL"};
  for (const char* path : kReadOnlyPaths) {
    args.insert(args.end(), {"--read-only-path", path});
  }
  for (const char* path : kMaskedPaths) {
    args.insert(args.end(), {"--masked-path", path});
  }
  args.insert(
      args.end(),
      {"--label", absl::StrCat(kSandboxLabel, "=", plan.sandbox_id), "--label",
       absl::StrCat(kDaemonLabel, "=", plan.daemon_label), "--env",
       "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
       "/bin",
       "--env", "HOME=/", "--workdir", "/", "--user", "0:0", "--memory",
       absl::StrCat(plan.memory_bytes >> 20, "M")});
  if (plan.cpus > 0) {
    args.insert(args.end(), {"--cpus", absl::StrCat(plan.cpus)});
  }
  args.insert(args.end(),
              {"--entrypoint", absl::StrCat(kAgentDirInside, "/corral-agent"),
               plan.image, "--listen", socket_inside,
               // Apple's runtime has no no_new_privs switch: the agent sets
               // it for every command.
               "--drop-command-privileges"});
  return args;
}

uint64_t VmMemoryBytes(uint64_t limit_bytes) {
  const uint64_t mib = (limit_bytes + (1u << 20) - 1) >> 20;
  return std::max<uint64_t>(mib << 20, kMinMemoryBytes);
}

uint32_t VmCpus(uint32_t cpu_millis) { return (cpu_millis + 999) / 1000; }

absl::Status CliError(absl::string_view command, int exit_code,
                      absl::string_view error_output) {
  absl::string_view text = absl::StripAsciiWhitespace(error_output);
  if (size_t at = text.find("Error: "); at != absl::string_view::npos) {
    text.remove_prefix(at + 7);
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(text, absl::ByAnyChar("\r\n"), absl::SkipWhitespace());
  // A usage error prints a Usage: line and a help hint after the message.
  while (!lines.empty() && exit_code == 64 &&
         (absl::StartsWith(absl::StripLeadingAsciiWhitespace(lines.back()),
                           "See '") ||
          absl::StartsWith(lines.back(), "Usage:"))) {
    lines.pop_back();
  }
  std::string message = absl::StrJoin(lines, "; ");
  if (message.size() > 2000) message.resize(2000);
  if (message.empty()) message = absl::StrCat("exit code ", exit_code);
  const std::string described =
      absl::StrCat("container ", command, ": ", message);
  if (exit_code == 64) {
    return absl::InternalError(
        absl::StrCat(described,
                     " (this container CLI refused the arguments Corral gave "
                     "it: an unsupported version?)"));
  }
  absl::StatusCode code = InnermostCode(text);
  if (code == absl::StatusCode::kOk) {
    if (absl::StrContains(text, "XPC connection error")) {
      code = absl::StatusCode::kUnavailable;
    } else if (absl::StrContains(text, "not found")) {
      code = absl::StatusCode::kNotFound;
    } else if (absl::StrContains(text, "already exists")) {
      code = absl::StatusCode::kAlreadyExists;
    } else if (absl::StrContains(text, "is not running")) {
      code = absl::StatusCode::kFailedPrecondition;
    } else {
      code = absl::StatusCode::kInternal;
    }
  }
  return absl::Status(code, described);
}

absl::StatusOr<std::vector<ListedContainer>> ParseContainerList(
    absl::string_view text) {
  const json parsed = json::parse(text.begin(), text.end(), nullptr,
                                  /*allow_exceptions=*/false);
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("container list --format json: ", why));
  };
  if (!parsed.is_array()) return bad("not a JSON array");
  std::vector<ListedContainer> containers;
  for (const json& item : parsed) {
    if (!item.is_object()) return bad("an element is not an object");
    ListedContainer container;
    auto id = item.find("id");
    if (id == item.end() || !id->is_string())
      return bad("an element has no id");
    container.id = id->get<std::string>();
    auto status = item.find("status");
    if (status != item.end() && status->is_object()) {
      auto state = status->find("state");
      if (state != status->end() && state->is_string()) {
        container.state = state->get<std::string>();
      }
    } else if (status != item.end() && status->is_string()) {
      container.state = status->get<std::string>();  // before 1.0
    }
    auto configuration = item.find("configuration");
    if (configuration != item.end() && configuration->is_object()) {
      auto labels = configuration->find("labels");
      if (labels != configuration->end() && labels->is_object()) {
        for (const auto& [key, value] : labels->items()) {
          if (value.is_string()) {
            container.labels[key] = value.get<std::string>();
          }
        }
      }
    }
    containers.push_back(std::move(container));
  }
  return containers;
}

std::string CliVersion(absl::string_view version_output) {
  absl::string_view first = version_output.substr(0, version_output.find('\n'));
  first = absl::StripAsciiWhitespace(first);
  if (!absl::StartsWith(first, "container CLI version ")) return "";
  return std::string(first);
}

}  // namespace corral::apple_runtime
