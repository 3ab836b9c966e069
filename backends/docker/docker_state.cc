#include "backends/docker/docker_state.h"

#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "backends/linux/fs_util.h"

namespace corral::docker {
namespace {

using linux_runtime::CgroupLayout;
using linux_runtime::CgroupMode;
using linux_runtime::SandboxCgroups;

// Absolute, no "..", no control characters (the value sits on one line).
bool SafePath(absl::string_view path) {
  if (!absl::StartsWith(path, "/")) return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return false;
  }
  for (char c : path) {
    if (static_cast<unsigned char>(c) < ' ') return false;
  }
  return true;
}

bool HexId(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) &&
        !(c >= 'a' && c <= 'f')) {
      return false;
    }
  }
  return true;
}

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("docker sandbox state: ", what));
}

}  // namespace

std::string ContainerName(absl::string_view daemon_label,
                          absl::string_view id) {
  return absl::StrCat("corral-", daemon_label, "-", id);
}

std::string DockerState::Serialize() const {
  std::string out = absl::StrCat(
      "version=1\nid=", id, "\ncontainer=", container_id,
      "\nname=", container_name, "\nsandbox_dir=", sandbox_dir,
      "\ncgroup.mode=", cgroups.mode == CgroupMode::kV2 ? "v2" : "v1", "\n");
  auto add = [&](const char* role, const std::string& dir) {
    if (!dir.empty()) absl::StrAppend(&out, "cgroup.", role, "=", dir, "\n");
  };
  add("memory", cgroups.memory);
  add("pids", cgroups.pids);
  add("cpu", cgroups.cpu);
  add("cpuacct", cgroups.cpuacct);
  add("unified", cgroups.unified);
  return out;
}

absl::StatusOr<DockerState> DockerState::Parse(absl::string_view text) {
  std::map<std::string, std::string> values;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) return Bad("line without '='");
    std::string key(line.substr(0, eq));
    if (!values.emplace(key, std::string(line.substr(eq + 1))).second) {
      return Bad(absl::StrCat("repeated key ", key));
    }
  }
  if (values["version"] != "1") return Bad("unknown version");
  DockerState state;
  state.id = values["id"];
  state.container_id = values["container"];
  state.container_name = values["name"];
  state.sandbox_dir = values["sandbox_dir"];
  if (!linux_runtime::ValidSandboxId(state.id)) return Bad("bad id");
  if (!HexId(state.container_id)) return Bad("bad container id");
  if (!absl::StartsWith(state.container_name, "corral-") ||
      !absl::EndsWith(state.container_name, state.id)) {
    return Bad("bad container name");
  }
  // Destroy removes this directory: it must be <something>/<id>.
  if (!SafePath(state.sandbox_dir) ||
      !absl::EndsWith(state.sandbox_dir, absl::StrCat("/", state.id))) {
    return Bad("bad sandbox directory");
  }
  const std::string& mode = values["cgroup.mode"];
  if (mode != "v1" && mode != "v2") return Bad("bad cgroup mode");
  state.cgroups.mode = mode == "v2" ? CgroupMode::kV2 : CgroupMode::kV1;
  for (auto [role, field] : std::vector<std::pair<const char*, std::string*>>{
           {"memory", &state.cgroups.memory},
           {"pids", &state.cgroups.pids},
           {"cpu", &state.cgroups.cpu},
           {"cpuacct", &state.cgroups.cpuacct},
           {"unified", &state.cgroups.unified}}) {
    *field = values[absl::StrCat("cgroup.", role)];
    if (!field->empty() && !SafePath(*field)) {
      return Bad(absl::StrCat("bad cgroup path for ", role));
    }
  }
  return state;
}

absl::StatusOr<SandboxCgroups> CgroupsFromProc(absl::string_view proc_cgroup,
                                               const CgroupLayout& layout) {
  SandboxCgroups cgroups;
  cgroups.mode = layout.mode;
  for (absl::string_view line : absl::StrSplit(proc_cgroup, '\n')) {
    // "<hierarchy id>:<controllers>:<path>"; the path may hold ':'.
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3 || !absl::StartsWith(parts[2], "/")) continue;
    std::string path(parts[2]);
    if (absl::StrContains(path, "/..")) continue;
    if (parts[1].empty()) {
      if (!layout.unified_mount.empty()) {
        cgroups.unified = layout.unified_mount + (path == "/" ? "" : path);
      }
      continue;
    }
    for (absl::string_view controller : absl::StrSplit(parts[1], ',')) {
      auto mount = layout.v1_mounts.find(std::string(controller));
      if (mount == layout.v1_mounts.end()) continue;
      std::string dir = mount->second + (path == "/" ? "" : path);
      if (controller == "memory") cgroups.memory = dir;
      if (controller == "pids") cgroups.pids = dir;
      if (controller == "cpu") cgroups.cpu = dir;
      if (controller == "cpuacct") cgroups.cpuacct = dir;
    }
  }
  if (layout.mode == CgroupMode::kV2) {
    if (cgroups.unified.empty()) {
      return absl::NotFoundError("no cgroup2 entry in /proc/<pid>/cgroup");
    }
    cgroups.memory = cgroups.pids = cgroups.cpu = cgroups.unified;
  } else if (cgroups.memory.empty() || cgroups.pids.empty()) {
    return absl::NotFoundError(
        "no memory or pids cgroup in /proc/<pid>/cgroup");
  }
  return cgroups;
}

}  // namespace corral::docker
