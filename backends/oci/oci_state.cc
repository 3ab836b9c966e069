#include "backends/oci/oci_state.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/sandbox_state.h"
#include "corral/status_macros.h"

namespace corral::oci_runtime {
namespace {

using linux_runtime::CleanAbsolutePath;
using linux_runtime::ValidCgroupParent;

constexpr char kHelperName[] = "corral-oci-exec";

}  // namespace

const char* RuntimeKindName(RuntimeKind kind) {
  return kind == RuntimeKind::kCrun ? "crun" : "runc";
}

const std::vector<std::string>& RuntimeSearchDirs() {
  static const auto* dirs = new std::vector<std::string>{
      "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"};
  return *dirs;
}

std::string Settings::SandboxDir(absl::string_view id) const {
  return absl::StrCat(runtime_dir, "/", id);
}

absl::StatusOr<Settings> ParseSettings(
    const std::string& runtime_dir, const std::string& agent_path,
    const std::string& plugin_dir,
    const std::map<std::string, std::string>& options,
    const std::function<bool(const std::string&)>& executable,
    std::vector<std::string>* ignored) {
  Settings settings;
  settings.runtime_dir = runtime_dir;
  settings.agent_path = agent_path;
  settings.helper_path = absl::StrCat(plugin_dir, "/", kHelperName);
  settings.cgroup_parent = kDefaultCgroupParent;
  std::string runtime;
  for (const auto& [key, value] : options) {
    if (key == "runtime") {
      runtime = value;
    } else if (key == "cgroup_parent") {
      settings.cgroup_parent = value;
    } else if (key == "workspace_disk") {
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("runtimes.oci.workspace_disk: bad value '",
                         value.substr(0, 40), "': expected true or false"));
      }
      settings.workspace_disk = value == "true";
    } else if (ignored != nullptr) {
      ignored->push_back(key);
    }
  }
  if (!CleanAbsolutePath(runtime_dir)) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  if (!ValidCgroupParent(settings.cgroup_parent)) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtimes.oci.cgroup_parent '", settings.cgroup_parent,
                     "' must be a relative path of [A-Za-z0-9._-] components"));
  }
  auto find = [&](const std::string& name) -> std::string {
    for (const std::string& dir : RuntimeSearchDirs()) {
      std::string path = absl::StrCat(dir, "/", name);
      if (executable(path)) return path;
    }
    return "";
  };
  if (runtime.empty()) {
    settings.runtime_path = find("runc");
    if (settings.runtime_path.empty()) {
      settings.runtime_path = find("crun");
      settings.runtime_kind = RuntimeKind::kCrun;
    }
    if (settings.runtime_path.empty()) {
      settings.runtime_problem =
          absl::StrCat("neither runc nor crun is installed (looked in ",
                       absl::StrJoin(RuntimeSearchDirs(), ", "), ")");
    }
  } else if (runtime == "runc" || runtime == "crun") {
    settings.runtime_kind =
        runtime == "crun" ? RuntimeKind::kCrun : RuntimeKind::kRunc;
    settings.runtime_path = find(runtime);
    if (settings.runtime_path.empty()) {
      settings.runtime_problem =
          absl::StrCat(runtime, " is not installed (looked in ",
                       absl::StrJoin(RuntimeSearchDirs(), ", "), ")");
    }
  } else if (CleanAbsolutePath(runtime)) {
    // The dialect follows the binary's name: crun's quirks (the hybrid
    // cgroup layout) for anything called *crun*, runc's otherwise.
    absl::string_view base = runtime;
    base.remove_prefix(base.rfind('/') + 1);
    settings.runtime_kind = absl::StrContains(base, "crun")
                                ? RuntimeKind::kCrun
                                : RuntimeKind::kRunc;
    if (executable(runtime)) {
      settings.runtime_path = runtime;
    } else {
      settings.runtime_problem =
          absl::StrCat("runtime ", runtime, " is not an executable file");
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "runtimes.oci.runtime '", runtime,
        "' must be runc, crun or an absolute path of a runtime binary"));
  }
  return settings;
}

std::string SandboxRecord::Serialize() const {
  return absl::StrCat(
      "version=1\nid=", id, "\nruntime=", runtime_path,
      "\nruntime_kind=", RuntimeKindName(runtime_kind),
      "\nsandbox_dir=", sandbox_dir, "\nstate_root=", state_root,
      "\ncgroup_parent=", cgroup_parent, "\ninit_pid=", init_pid,
      "\ninit_start_time=", init_start_time,
      "\nuser_namespace=", user_namespace ? 1 : 0, "\n");
}

absl::StatusOr<SandboxRecord> SandboxRecord::Parse(absl::string_view text) {
  ASSIGN_OR_RETURN(linux_runtime::RecordValues values,
                   linux_runtime::ParseRecordLines(text, "oci sandbox state"));
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("oci sandbox state: ", why));
  };
  if (values["version"] != "1") return bad("unknown version");
  SandboxRecord record;
  record.id = values["id"];
  record.runtime_path = values["runtime"];
  record.sandbox_dir = values["sandbox_dir"];
  record.state_root = values["state_root"];
  record.cgroup_parent = values["cgroup_parent"];
  if (!linux_runtime::ValidSandboxId(record.id)) return bad("bad id");
  for (const std::string* path :
       {&record.runtime_path, &record.sandbox_dir, &record.state_root}) {
    if (!CleanAbsolutePath(*path)) return bad("bad path");
  }
  if (!absl::EndsWith(record.sandbox_dir, absl::StrCat("/", record.id))) {
    return bad("the sandbox directory is not named after the id");
  }
  if (!ValidCgroupParent(record.cgroup_parent)) {
    return bad("bad cgroup parent");
  }
  const std::string& kind = values["runtime_kind"];
  if (kind == "runc") {
    record.runtime_kind = RuntimeKind::kRunc;
  } else if (kind == "crun") {
    record.runtime_kind = RuntimeKind::kCrun;
  } else {
    return bad("bad runtime kind");
  }
  int64_t pid = 0;
  if (!absl::SimpleAtoi(values["init_pid"], &pid) || pid <= 1 ||
      pid > (1 << 22) ||
      !absl::SimpleAtoi(values["init_start_time"], &record.init_start_time)) {
    return bad("bad init pid or start time");
  }
  record.init_pid = static_cast<pid_t>(pid);
  const std::string& userns = values["user_namespace"];
  if (userns != "0" && userns != "1") return bad("bad user_namespace");
  record.user_namespace = userns == "1";
  return record;
}

}  // namespace corral::oci_runtime
