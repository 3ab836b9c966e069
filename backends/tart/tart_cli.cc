#include "backends/tart/tart_cli.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "corral/hex_id.h"
#include "nlohmann/json.hpp"

namespace corral::tart_runtime {
namespace {

using json = nlohmann::json;

constexpr char kVmPrefix[] = "corral-";

// Single-quoted for sh.
std::string ShellQuoted(absl::string_view text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "'\\''"}}), "'");
}

std::string Share(absl::string_view name) {
  return absl::StrCat(kSharesMount, "/", name);
}

}  // namespace

std::string VmName(absl::string_view daemon_label,
                   absl::string_view sandbox_id) {
  return absl::StrCat(kVmPrefix, daemon_label, "-", sandbox_id);
}

bool ParseVmName(absl::string_view name, std::string* label,
                 std::string* sandbox_id) {
  if (!absl::ConsumePrefix(&name, kVmPrefix)) return false;
  const std::vector<absl::string_view> parts = absl::StrSplit(name, '-');
  if (parts.size() != 2 || !IsHexId(parts[0], 16) || !IsHexId(parts[1], 32)) {
    return false;
  }
  *label = std::string(parts[0]);
  *sandbox_id = std::string(parts[1]);
  return true;
}

std::vector<std::string> RunArguments(const RunPlan& plan,
                                      absl::string_view serial_path) {
  return {"run",
          plan.name,
          "--no-graphics",
          "--no-audio",
          "--no-clipboard",
          "--serial-path",
          std::string(serial_path),
          "--dir",
          absl::StrCat(kRootShare, ":", plan.image_dir, ":ro"),
          "--dir",
          absl::StrCat(kWorkspaceShare, ":", plan.workspace_dir),
          "--dir",
          absl::StrCat(kAgentShare, ":", plan.agent_dir, ":ro")};
}

std::string GuestStartScript(const GuestPlan& plan) {
  std::vector<std::string> agent = {
      Share(absl::StrCat(kAgentShare, "/corral-agent")), "--guest-sandbox",
      absl::StrCat("corral.root=", Share(kRootShare)),
      absl::StrCat("corral.workspace=", Share(kWorkspaceShare)),
      absl::StrCat("corral.port=", kGuestConsole),
      absl::StrCat("corral.hostname=", plan.hostname),
      // The VM stops when its agent ends: the sandbox has failed, and the
      // host's supervisor (and so the daemon) sees it.
      "corral.on_exit=poweroff"};
  if (plan.tmp_bytes > 0) {
    agent.push_back(absl::StrCat("corral.tmp=", plan.tmp_bytes));
  }
  std::vector<std::string> quoted;
  for (const std::string& word : agent) quoted.push_back(ShellQuoted(word));
  // The tag may already be mounted there (an fstab line, as Tart's docs
  // suggest for Linux guests); /proc/mounts escapes nothing in this path.
  return absl::StrCat(
      "set -e\n"
      "if ! grep -qs ' ",
      kSharesMount,
      " ' /proc/mounts; then\n"
      "  mkdir -p ",
      kSharesMount,
      "\n"
      "  mount -t virtiofs com.apple.virtio-fs.automount ",
      kSharesMount,
      "\n"
      "fi\n"
      "exec ",
      absl::StrJoin(quoted, " "), "\n");
}

uint64_t VmMemoryMib(uint64_t limit_bytes, uint64_t floor_mib) {
  const uint64_t mib = (limit_bytes + (1u << 20) - 1) >> 20;
  return std::max({mib, floor_mib, kMinVmMemoryMib});
}

uint32_t VmCpus(uint32_t cpu_millis) {
  return std::max<uint32_t>(1, (cpu_millis + 999) / 1000);
}

absl::Status CliError(absl::string_view command, int exit_code,
                      absl::string_view error_output) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(error_output, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) lines.emplace_back(line);
  }
  std::string message = absl::StrJoin(lines, "; ");
  if (message.size() > 2000) message.resize(2000);
  if (message.empty()) message = absl::StrCat("exit code ", exit_code);
  const std::string described = absl::StrCat("tart ", command, ": ", message);
  if (exit_code == 64) {
    return absl::InternalError(absl::StrCat(
        described,
        " (this tart refused the arguments Corral gave it: an unsupported "
        "version?)"));
  }
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (absl::StrContains(message, "does not exist")) {
    code = absl::StatusCode::kNotFound;
  } else if (absl::StrContains(message, "is not running") ||
             absl::StrContains(message, "is already running") ||
             absl::StrContains(message, "\" is running")) {
    code = absl::StatusCode::kFailedPrecondition;
  }
  return absl::Status(code, described);
}

absl::StatusOr<std::vector<ListedVm>> ParseVmList(absl::string_view text) {
  const json parsed = json::parse(text.begin(), text.end(), nullptr,
                                  /*allow_exceptions=*/false);
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("tart list --format json: ", why));
  };
  if (!parsed.is_array()) return bad("not a JSON array");
  std::vector<ListedVm> vms;
  for (const json& item : parsed) {
    if (!item.is_object()) return bad("an element is not an object");
    ListedVm vm;
    auto name = item.find("Name");
    if (name == item.end() || !name->is_string()) {
      return bad("an element has no Name");
    }
    vm.name = name->get<std::string>();
    if (auto source = item.find("Source");
        source != item.end() && source->is_string()) {
      vm.source = source->get<std::string>();
    }
    if (auto state = item.find("State");
        state != item.end() && state->is_string()) {
      vm.state = state->get<std::string>();
    }
    if (auto running = item.find("Running");
        running != item.end() && running->is_boolean()) {
      vm.running = running->get<bool>();
    }
    if (vm.state.empty()) vm.state = vm.running ? "running" : "stopped";
    vms.push_back(std::move(vm));
  }
  return vms;
}

absl::StatusOr<VmInfo> ParseVmInfo(absl::string_view text) {
  const json parsed = json::parse(text.begin(), text.end(), nullptr,
                                  /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(
        "tart get --format json: not a JSON object");
  }
  VmInfo info;
  auto os = parsed.find("OS");
  auto cpu = parsed.find("CPU");
  auto memory = parsed.find("Memory");
  if (os == parsed.end() || !os->is_string() || cpu == parsed.end() ||
      !cpu->is_number_unsigned() || memory == parsed.end() ||
      !memory->is_number_unsigned()) {
    return absl::InvalidArgumentError(
        "tart get --format json: no OS, CPU or Memory");
  }
  info.os = os->get<std::string>();
  info.cpus = cpu->get<uint32_t>();
  info.memory_mib = memory->get<uint64_t>();
  if (auto state = parsed.find("State");
      state != parsed.end() && state->is_string()) {
    info.state = state->get<std::string>();
  }
  return info;
}

std::string CliVersion(absl::string_view version_output) {
  absl::string_view first = absl::StripAsciiWhitespace(
      version_output.substr(0, version_output.find('\n')));
  // Tart prints its release tag alone: 2.32.0.
  if (first.empty() || !absl::ascii_isdigit(first[0]) ||
      !std::all_of(first.begin(), first.end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '.' || c == '-' || c == '+';
      })) {
    return "";
  }
  return std::string(first);
}

}  // namespace corral::tart_runtime
