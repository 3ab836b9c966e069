#include "backends/firecracker/firecracker_settings.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "backends/common/subprocess.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/sandbox_state.h"
#include "corral/status_macros.h"

namespace corral::firecracker_runtime {
namespace {

using linux_runtime::CleanAbsolutePath;

constexpr uint64_t kMiB = 1u << 20;
constexpr uint64_t kDefaultOverheadMib = 96;
constexpr uint32_t kDefaultBootTimeoutSeconds = 60;

absl::Status BadOption(absl::string_view key, absl::string_view value,
                       absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(
      "runtimes.firecracker.", key, " '", value, "': expected ", expected));
}

// `value` (an option) or `name` in the search directories: the path, or
// empty and `problem` set.
std::string FindProgram(
    const std::string& key, const std::string& value, const std::string& name,
    const std::vector<std::string>& dirs,
    const std::function<bool(const std::string&)>& executable,
    std::string* problem) {
  if (!value.empty()) {
    if (executable(value)) return value;
    *problem = absl::StrCat("runtimes.firecracker.", key, " ", value,
                            " is not an executable file");
    return "";
  }
  if (std::string path = runtime_common::FindProgramIn(name, dirs, executable);
      !path.empty()) {
    return path;
  }
  *problem = absl::StrCat(name, " is not installed (looked in ",
                          absl::StrJoin(dirs, ", "), ")");
  return "";
}

}  // namespace

std::string Settings::SandboxDir(absl::string_view id) const {
  return absl::StrCat(runtime_dir, "/", id);
}

std::string Settings::JailDir(absl::string_view id) const {
  absl::string_view exec = firecracker_path;
  if (size_t slash = exec.rfind('/'); slash != absl::string_view::npos) {
    exec.remove_prefix(slash + 1);
  }
  if (exec.empty()) exec = "firecracker";
  return absl::StrCat(chroot_base_dir, "/", exec, "/", id);
}

absl::StatusOr<Settings> ParseSettings(
    const std::string& runtime_dir, const std::string& agent_path,
    const std::map<std::string, std::string>& options,
    const std::string& search_path,
    const std::function<bool(const std::string&)>& executable,
    std::vector<std::string>* ignored) {
  Settings settings;
  settings.runtime_dir = runtime_dir;
  settings.agent_path = agent_path;
  settings.cgroup_parent = kDefaultCgroupParent;
  settings.kernel_dir = kDefaultKernelDir;
  settings.chroot_base_dir = absl::StrCat(runtime_dir, "/jail");
  settings.overhead_bytes = kDefaultOverheadMib * kMiB;
  settings.boot_timeout_seconds = kDefaultBootTimeoutSeconds;
  std::string firecracker, jailer;
  for (const auto& [key, value] : options) {
    if (key == "firecracker") {
      firecracker = value;
    } else if (key == "jailer") {
      jailer = value;
    } else if (key == "kernel_dir") {
      settings.kernel_dir = value;
    } else if (key == "chroot_base_dir") {
      settings.chroot_base_dir = value;
    } else if (key == "cgroup_parent") {
      settings.cgroup_parent = value;
    } else if (key == "overhead_mib") {
      uint64_t number = 0;
      if (!absl::SimpleAtoi(value, &number) || number < 16 || number > 4096) {
        return BadOption(key, value, "MiB between 16 and 4096");
      }
      settings.overhead_bytes = number * kMiB;
    } else if (key == "boot_timeout_seconds") {
      if (!absl::SimpleAtoi(value, &settings.boot_timeout_seconds) ||
          settings.boot_timeout_seconds < 1 ||
          settings.boot_timeout_seconds > 600) {
        return BadOption(key, value, "seconds between 1 and 600");
      }
    } else if (key == "console_log") {
      if (value != "true" && value != "false") {
        return BadOption(key, value, "true or false");
      }
      settings.console_log = value == "true";
    } else if (ignored != nullptr) {
      ignored->push_back(key);
    }
  }
  if (!CleanAbsolutePath(runtime_dir)) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  for (const auto& [key, value] :
       {std::pair<const char*, const std::string*>{"firecracker", &firecracker},
        {"jailer", &jailer},
        {"kernel_dir", &settings.kernel_dir},
        {"chroot_base_dir", &settings.chroot_base_dir}}) {
    if (!value->empty() && !CleanAbsolutePath(*value)) {
      return BadOption(key, *value, "an absolute path");
    }
  }
  if (!linux_runtime::ValidCgroupParent(settings.cgroup_parent)) {
    return BadOption("cgroup_parent", settings.cgroup_parent,
                     "a relative path of [A-Za-z0-9._-] components");
  }
  const std::vector<std::string> dirs = runtime_common::ProgramSearchDirs(
      search_path, {"/usr/local/bin", "/usr/bin"});
  settings.firecracker_path =
      FindProgram("firecracker", firecracker, "firecracker", dirs, executable,
                  &settings.firecracker_problem);
  settings.jailer_path = FindProgram("jailer", jailer, "jailer", dirs,
                                     executable, &settings.jailer_problem);
  return settings;
}

std::string SandboxRecord::Serialize() const {
  return absl::StrCat("version=1\nid=", id, "\nsandbox_dir=", sandbox_dir,
                      "\njail_dir=", jail_dir,
                      "\ncgroup_parent=", cgroup_parent, "\npid=", pid,
                      "\nstart_time=", start_time, "\n");
}

absl::StatusOr<SandboxRecord> SandboxRecord::Parse(absl::string_view text) {
  ASSIGN_OR_RETURN(
      linux_runtime::RecordValues values,
      linux_runtime::ParseRecordLines(text, "firecracker sandbox state"));
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("firecracker sandbox state: ", why));
  };
  if (values["version"] != "1") return bad("unknown version");
  SandboxRecord record;
  record.id = values["id"];
  record.sandbox_dir = values["sandbox_dir"];
  record.jail_dir = values["jail_dir"];
  record.cgroup_parent = values["cgroup_parent"];
  if (!linux_runtime::ValidSandboxId(record.id)) return bad("bad id");
  for (const std::string* dir : {&record.sandbox_dir, &record.jail_dir}) {
    if (!CleanAbsolutePath(*dir) ||
        !absl::EndsWith(*dir, absl::StrCat("/", record.id))) {
      return bad("a directory is not an absolute path named after the id");
    }
  }
  if (!linux_runtime::ValidCgroupParent(record.cgroup_parent)) {
    return bad("bad cgroup parent");
  }
  int64_t pid = 0;
  if (!absl::SimpleAtoi(values["pid"], &pid) || pid <= 1 || pid > (1 << 22) ||
      !absl::SimpleAtoi(values["start_time"], &record.start_time)) {
    return bad("bad pid or start time");
  }
  record.pid = static_cast<pid_t>(pid);
  return record;
}

}  // namespace corral::firecracker_runtime
