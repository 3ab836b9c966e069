#include "backends/qemu/qemu_settings.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/sandbox_state.h"
#include "corral/status_macros.h"

namespace corral::qemu_runtime {
namespace {

using linux_runtime::CleanAbsolutePath;

constexpr char kLauncherName[] = "corral-qemu-launch";
constexpr uint64_t kMiB = 1u << 20;
constexpr uint64_t kDefaultOverheadMib = 96;
constexpr uint64_t kDefaultTbCacheMib = 64;
constexpr uint32_t kDefaultBootTimeoutSeconds = 60;

// Programs named without a path are looked for here, in order: never a
// PATH lookup, the daemon's environment must not choose them.
const std::vector<std::string>& SearchDirs() {
  static const auto* dirs = new std::vector<std::string>{
      "/usr/bin", "/usr/local/bin", "/usr/libexec", "/usr/lib/qemu"};
  return *dirs;
}

// `value` (an option) or the first of `names` found in SearchDirs(): the
// path, or empty and `problem` set.
std::string FindProgram(
    const std::string& key, const std::string& value,
    const std::vector<std::string>& names,
    const std::function<bool(const std::string&)>& executable,
    std::string* problem) {
  if (!value.empty()) {
    if (executable(value)) return value;
    *problem = absl::StrCat("runtimes.qemu.", key, " ", value,
                            " is not an executable file");
    return "";
  }
  for (const std::string& name : names) {
    for (const std::string& dir : SearchDirs()) {
      std::string path = absl::StrCat(dir, "/", name);
      if (executable(path)) return path;
    }
  }
  *problem = absl::StrCat(absl::StrJoin(names, " or "),
                          " is not installed (looked in ",
                          absl::StrJoin(SearchDirs(), ", "), ")");
  return "";
}

absl::Status BadOption(absl::string_view key, absl::string_view value,
                       absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(
      "runtimes.qemu.", key, " '", value, "': expected ", expected));
}

}  // namespace

const char* AccelName(Accel accel) {
  return accel == Accel::kKvm ? "kvm" : "tcg";
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
  settings.launcher_path = absl::StrCat(plugin_dir, "/", kLauncherName);
  settings.cgroup_parent = kDefaultCgroupParent;
  settings.kernel_dir = kDefaultKernelDir;
  settings.overhead_bytes = kDefaultOverheadMib * kMiB;
  settings.tb_cache_bytes = kDefaultTbCacheMib * kMiB;
  settings.boot_timeout_seconds = kDefaultBootTimeoutSeconds;
  std::string qemu, virtiofsd;
  auto mib = [](const std::string& key, const std::string& value, uint64_t min,
                uint64_t max, uint64_t* out) -> absl::Status {
    uint64_t number = 0;
    if (!absl::SimpleAtoi(value, &number) || number < min || number > max) {
      return BadOption(key, value,
                       absl::StrCat("MiB between ", min, " and ", max));
    }
    *out = number * kMiB;
    return absl::OkStatus();
  };
  for (const auto& [key, value] : options) {
    if (key == "qemu") {
      qemu = value;
    } else if (key == "virtiofsd") {
      virtiofsd = value;
    } else if (key == "kernel_dir") {
      settings.kernel_dir = value;
    } else if (key == "accel") {
      if (value == "auto") {
        settings.accel = AccelPolicy::kAuto;
      } else if (value == "kvm") {
        settings.accel = AccelPolicy::kKvm;
      } else if (value == "tcg") {
        settings.accel = AccelPolicy::kTcg;
      } else {
        return BadOption(key, value, "auto, kvm or tcg");
      }
    } else if (key == "cgroup_parent") {
      settings.cgroup_parent = value;
    } else if (key == "overhead_mib") {
      if (auto s = mib(key, value, 32, 4096, &settings.overhead_bytes);
          !s.ok()) {
        return s;
      }
    } else if (key == "tb_cache_mib") {
      if (auto s = mib(key, value, 8, 2048, &settings.tb_cache_bytes);
          !s.ok()) {
        return s;
      }
    } else if (key == "trace_boot") {
      if (value != "true" && value != "false") {
        return BadOption(key, value, "true or false");
      }
      settings.trace_boot = value == "true";
    } else if (key == "boot_timeout_seconds") {
      if (!absl::SimpleAtoi(value, &settings.boot_timeout_seconds) ||
          settings.boot_timeout_seconds < 1 ||
          settings.boot_timeout_seconds > 600) {
        return BadOption(key, value, "seconds between 1 and 600");
      }
    } else if (ignored != nullptr) {
      ignored->push_back(key);
    }
  }
  if (!CleanAbsolutePath(runtime_dir)) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  for (const auto& [key, value] :
       {std::pair<const char*, const std::string*>{"qemu", &qemu},
        {"virtiofsd", &virtiofsd},
        {"kernel_dir", &settings.kernel_dir}}) {
    if (!value->empty() && !CleanAbsolutePath(*value)) {
      return BadOption(key, *value, "an absolute path");
    }
  }
  if (!linux_runtime::ValidCgroupParent(settings.cgroup_parent)) {
    return BadOption("cgroup_parent", settings.cgroup_parent,
                     "a relative path of [A-Za-z0-9._-] components");
  }
  settings.qemu_path = FindProgram("qemu", qemu, {"qemu-system-x86_64"},
                                   executable, &settings.qemu_problem);
  settings.virtiofsd_path =
      FindProgram("virtiofsd", virtiofsd, {"virtiofsd"}, executable,
                  &settings.virtiofsd_problem);
  return settings;
}

std::string SandboxRecord::Serialize() const {
  return absl::StrCat(
      "version=1\nid=", id, "\nsandbox_dir=", sandbox_dir,
      "\ncgroup_parent=", cgroup_parent, "\nlauncher_pid=", launcher_pid,
      "\nlauncher_start_time=", launcher_start_time, "\nqemu_pid=", qemu_pid,
      "\nqemu_start_time=", qemu_start_time, "\naccel=", AccelName(accel),
      "\nhost_image=", host_image ? 1 : 0, "\n");
}

absl::StatusOr<SandboxRecord> SandboxRecord::Parse(absl::string_view text) {
  ASSIGN_OR_RETURN(linux_runtime::RecordValues values,
                   linux_runtime::ParseRecordLines(text, "qemu sandbox state"));
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("qemu sandbox state: ", why));
  };
  if (values["version"] != "1") return bad("unknown version");
  SandboxRecord record;
  record.id = values["id"];
  record.sandbox_dir = values["sandbox_dir"];
  record.cgroup_parent = values["cgroup_parent"];
  if (!linux_runtime::ValidSandboxId(record.id)) return bad("bad id");
  if (!CleanAbsolutePath(record.sandbox_dir) ||
      !absl::EndsWith(record.sandbox_dir, absl::StrCat("/", record.id))) {
    return bad(
        "the sandbox directory is not an absolute path named after "
        "the id");
  }
  if (!linux_runtime::ValidCgroupParent(record.cgroup_parent)) {
    return bad("bad cgroup parent");
  }
  for (auto [key, pid, start] :
       {std::tuple<const char*, pid_t*, uint64_t*>{
            "launcher", &record.launcher_pid, &record.launcher_start_time},
        {"qemu", &record.qemu_pid, &record.qemu_start_time}}) {
    int64_t number = 0;
    if (!absl::SimpleAtoi(values[absl::StrCat(key, "_pid")], &number) ||
        number <= 1 || number > (1 << 22) ||
        !absl::SimpleAtoi(values[absl::StrCat(key, "_start_time")], start)) {
      return bad(absl::StrCat("bad ", key, " pid or start time"));
    }
    *pid = static_cast<pid_t>(number);
  }
  const std::string& accel = values["accel"];
  if (accel != "kvm" && accel != "tcg") return bad("bad accel");
  record.accel = accel == "kvm" ? Accel::kKvm : Accel::kTcg;
  const std::string& host_image = values["host_image"];
  if (host_image != "0" && host_image != "1") return bad("bad host_image");
  record.host_image = host_image == "1";
  return record;
}

}  // namespace corral::qemu_runtime
