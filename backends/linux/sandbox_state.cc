#include "backends/linux/sandbox_state.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "backends/linux/fs_util.h"
#include "corral/status_macros.h"

namespace corral::linux_runtime {
namespace {

constexpr absl::string_view kVersion = "1";

// Keys of the cgroup roles, in a fixed order.
struct CgroupField {
  const char* key;
  std::string SandboxCgroups::*member;
};
constexpr CgroupField kCgroupFields[] = {
    {"cgroup.memory", &SandboxCgroups::memory},
    {"cgroup.pids", &SandboxCgroups::pids},
    {"cgroup.cpu", &SandboxCgroups::cpu},
    {"cgroup.cpuacct", &SandboxCgroups::cpuacct},
    {"cgroup.freezer", &SandboxCgroups::freezer},
    {"cgroup.unified", &SandboxCgroups::unified},
};

bool SafePath(absl::string_view path) {
  return absl::StartsWith(path, "/") && !absl::StrContains(path, "/../") &&
         !absl::EndsWith(path, "/..") && !absl::StrContains(path, '\n');
}

}  // namespace

std::string SandboxState::Serialize() const {
  std::string out = absl::StrCat("version=", kVersion, "\n");
  absl::StrAppend(&out, "id=", id, "\n");
  absl::StrAppend(&out, "init_pid=", init_pid, "\n");
  absl::StrAppend(&out, "init_start_time=", init_start_time, "\n");
  absl::StrAppend(&out, "user_namespace=", user_namespace ? 1 : 0, "\n");
  absl::StrAppend(&out, "sandbox_dir=", sandbox_dir, "\n");
  absl::StrAppend(&out,
                  "cgroup.mode=", cgroups.mode == CgroupMode::kV2 ? "v2" : "v1",
                  "\n");
  for (const CgroupField& field : kCgroupFields) {
    const std::string& value = cgroups.*field.member;
    if (!value.empty()) absl::StrAppend(&out, field.key, "=", value, "\n");
  }
  return out;
}

absl::StatusOr<RecordValues> ParseRecordLines(absl::string_view text,
                                              absl::string_view what) {
  RecordValues values;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first.empty() || !values.emplace(kv.first, kv.second).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": bad or repeated line '", line, "'"));
    }
  }
  return values;
}

absl::StatusOr<SandboxState> SandboxState::Parse(absl::string_view text) {
  ASSIGN_OR_RETURN(RecordValues values,
                   ParseRecordLines(text, "sandbox state"));
  auto get = [&](absl::string_view key) -> absl::StatusOr<std::string> {
    auto it = values.find(key);
    if (it == values.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sandbox state: missing ", key));
    }
    return it->second;
  };
  auto version = get("version");
  if (!version.ok() || *version != kVersion) {
    return absl::InvalidArgumentError(
        "sandbox state: not written by this version of the linux runtime");
  }
  SandboxState state;
  auto id = get("id");
  auto pid = get("init_pid");
  auto start = get("init_start_time");
  auto userns = get("user_namespace");
  auto dir = get("sandbox_dir");
  auto mode = get("cgroup.mode");
  for (const auto* field : {&id, &pid, &start, &userns, &dir, &mode}) {
    if (!field->ok()) return field->status();
  }
  state.id = *id;
  state.sandbox_dir = *dir;
  if (!ValidSandboxId(state.id)) {
    return absl::InvalidArgumentError("sandbox state: bad id");
  }
  if (!absl::SimpleAtoi(*pid, &state.init_pid) || state.init_pid <= 0 ||
      !absl::SimpleAtoi(*start, &state.init_start_time)) {
    return absl::InvalidArgumentError(
        "sandbox state: bad init pid or start time");
  }
  if (*userns != "0" && *userns != "1") {
    return absl::InvalidArgumentError("sandbox state: bad user_namespace");
  }
  state.user_namespace = *userns == "1";
  if (*mode != "v1" && *mode != "v2") {
    return absl::InvalidArgumentError("sandbox state: bad cgroup.mode");
  }
  state.cgroups.mode = *mode == "v2" ? CgroupMode::kV2 : CgroupMode::kV1;
  // Every path must be absolute and end in the sandbox's id, so that a
  // damaged state can never make destroy remove anything else.
  if (!SafePath(state.sandbox_dir) ||
      !absl::EndsWith(state.sandbox_dir, absl::StrCat("/", state.id))) {
    return absl::InvalidArgumentError("sandbox state: bad sandbox_dir");
  }
  for (const CgroupField& field : kCgroupFields) {
    auto it = values.find(field.key);
    if (it == values.end()) continue;
    if (!SafePath(it->second) ||
        !absl::EndsWith(it->second, absl::StrCat("/", state.id))) {
      return absl::InvalidArgumentError(
          absl::StrCat("sandbox state: bad ", field.key));
    }
    state.cgroups.*field.member = it->second;
  }
  if (state.cgroups.memory.empty()) {
    return absl::InvalidArgumentError("sandbox state: missing cgroup.memory");
  }
  return state;
}

}  // namespace corral::linux_runtime
