#include "backends/linux/cgroups.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "backends/linux/fs_util.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::linux_runtime {
namespace {

// The period of the CFS bandwidth controller; the quota is a share of it.
constexpr uint64_t kCpuPeriodUs = 100'000;
// The kernel refuses quotas below 1 ms.
constexpr uint64_t kMinCpuQuotaUs = 1'000;

constexpr const char* kV1Controllers[] = {"memory", "pids", "cpu", "cpuacct",
                                          "freezer"};

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = field[i + j];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// mkdir that accepts an existing directory.
absl::Status MakeDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) {
    return absl::OkStatus();
  }
  return ErrnoStatus(absl::StrCat("mkdir ", path));
}

// Makes <root>/<parent> level by level; on v2 also enables the controllers
// for the children of every level (root included).
absl::Status MakeParent(const std::string& root, absl::string_view parent,
                        bool enable_v2_controllers) {
  std::string path = root;
  auto enable = [&](const std::string& dir) -> absl::Status {
    if (!enable_v2_controllers) return absl::OkStatus();
    for (const char* controller : {"+memory", "+pids", "+cpu"}) {
      RETURN_IF_ERROR(
          WriteFile(absl::StrCat(dir, "/cgroup.subtree_control"), controller));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(enable(path));
  for (absl::string_view part :
       absl::StrSplit(parent, '/', absl::SkipEmpty())) {
    absl::StrAppend(&path, "/", part);
    RETURN_IF_ERROR(MakeDirectory(path));
    RETURN_IF_ERROR(enable(path));
  }
  return absl::OkStatus();
}

absl::Status WriteLimit(const std::string& dir, const char* file,
                        absl::string_view value) {
  return WriteFile(absl::StrCat(dir, "/", file), value);
}

absl::Status ApplyV2Limits(const std::string& dir, const CgroupLimits& limits) {
  RETURN_IF_ERROR(
      WriteLimit(dir, "memory.max", absl::StrCat(limits.memory_bytes)));
  // Without swap accounting the file is absent; the memory limit still holds.
  if (Exists(absl::StrCat(dir, "/memory.swap.max"))) {
    RETURN_IF_ERROR(WriteLimit(dir, "memory.swap.max", "0"));
  }
  RETURN_IF_ERROR(WriteLimit(dir, "pids.max", absl::StrCat(limits.pids)));
  uint64_t quota =
      std::max<uint64_t>(kMinCpuQuotaUs, uint64_t{limits.cpu_millis} * 100);
  return WriteLimit(dir, "cpu.max", absl::StrCat(quota, " ", kCpuPeriodUs));
}

absl::Status ApplyV1Limits(const SandboxCgroups& cgroups,
                           const CgroupLimits& limits) {
  RETURN_IF_ERROR(WriteLimit(cgroups.memory, "memory.limit_in_bytes",
                             absl::StrCat(limits.memory_bytes)));
  // memory+swap: present only with swap accounting; must be written after
  // the memory limit (it may not be lower).
  if (Exists(absl::StrCat(cgroups.memory, "/memory.memsw.limit_in_bytes"))) {
    RETURN_IF_ERROR(WriteLimit(cgroups.memory, "memory.memsw.limit_in_bytes",
                               absl::StrCat(limits.memory_bytes)));
  } else {
    (void)WriteLimit(cgroups.memory, "memory.swappiness", "0");
  }
  RETURN_IF_ERROR(
      WriteLimit(cgroups.pids, "pids.max", absl::StrCat(limits.pids)));
  uint64_t quota =
      std::max<uint64_t>(kMinCpuQuotaUs, uint64_t{limits.cpu_millis} * 100);
  RETURN_IF_ERROR(
      WriteLimit(cgroups.cpu, "cpu.cfs_period_us", absl::StrCat(kCpuPeriodUs)));
  return WriteLimit(cgroups.cpu, "cpu.cfs_quota_us", absl::StrCat(quota));
}

std::vector<pid_t> ReadPids(const std::string& dir) {
  std::vector<pid_t> pids;
  auto text = ReadFile(absl::StrCat(dir, "/cgroup.procs"));
  if (!text.ok()) return pids;
  for (absl::string_view line :
       absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) pids.push_back(pid);
  }
  return pids;
}

// Freezes (or thaws) the sandbox so that the pids listed in its cgroups
// cannot exit and be reused by unrelated processes while they are killed.
// Returns true when the cgroup reached the wanted state.
bool SetFrozen(const SandboxCgroups& cgroups, bool frozen,
               absl::Time deadline) {
  if (cgroups.mode == CgroupMode::kV2) {
    const std::string file = absl::StrCat(cgroups.unified, "/cgroup.freeze");
    if (!WriteFile(file, frozen ? "1" : "0").ok()) return false;
    if (!frozen) return true;
    const std::string events = absl::StrCat(cgroups.unified, "/cgroup.events");
    while (absl::Now() < deadline) {
      auto text = ReadFile(events);
      if (!text.ok()) return false;
      if (FlatKeyedValue(*text, "frozen") == 1) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }
  if (cgroups.freezer.empty()) return false;
  const std::string file = absl::StrCat(cgroups.freezer, "/freezer.state");
  if (!WriteFile(file, frozen ? "FROZEN" : "THAWED").ok()) return false;
  if (!frozen) return true;
  while (absl::Now() < deadline) {
    auto text = ReadFile(file);
    if (!text.ok()) return false;
    if (absl::StripAsciiWhitespace(*text) == "FROZEN") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// SIGKILL to `pid` if, once a pidfd holds it, /proc says it is in the
// cgroup directory `dir`.
void KillIfMember(pid_t pid, const std::string& dir) {
  UniqueFd pidfd(PidfdOpen(pid));
  if (!pidfd) return;
  auto memberships = ReadFile(absl::StrCat("/proc/", pid, "/cgroup"));
  if (!memberships.ok()) return;
  for (absl::string_view line : absl::StrSplit(*memberships, '\n')) {
    const size_t colon = line.rfind(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view path = line.substr(colon + 1);
    if (path.size() > 1 && absl::EndsWith(dir, path)) {
      PidfdSendSignal(pidfd.get(), SIGKILL);
      return;
    }
  }
}

bool AllEmpty(const SandboxCgroups& cgroups) {
  for (const std::string& dir : cgroups.Directories()) {
    if (!ReadPids(dir).empty()) return false;
  }
  return true;
}

}  // namespace

std::string CgroupLayout::Describe() const {
  if (mode == CgroupMode::kV2) return "v2";
  return unified_mount.empty() ? "v1" : "v1-hybrid";
}

absl::StatusOr<CgroupLayout> CgroupLayout::Parse(
    absl::string_view mountinfo,
    const std::function<std::string(const std::string&)>& read_controllers) {
  CgroupLayout layout;
  std::string v2_with_controllers;
  std::string v2_plain;
  for (absl::string_view line :
       absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() ||
        std::distance(dash, fields.end()) < 4) {
      continue;
    }
    const std::string mount_point = UnescapeMountField(fields[4]);
    absl::string_view fstype = *(dash + 1);
    absl::string_view super_options = *(dash + 3);
    if (fstype == "cgroup2") {
      std::string controllers = read_controllers(mount_point);
      std::vector<absl::string_view> names = absl::StrSplit(
          controllers, absl::ByAnyChar(" \n"), absl::SkipEmpty());
      auto has = [&](absl::string_view c) {
        return std::find(names.begin(), names.end(), c) != names.end();
      };
      if (has("memory") && has("pids") && v2_with_controllers.empty()) {
        v2_with_controllers = mount_point;
      } else if (v2_plain.empty()) {
        v2_plain = mount_point;
      }
    } else if (fstype == "cgroup") {
      for (absl::string_view option : absl::StrSplit(super_options, ',')) {
        for (const char* controller : kV1Controllers) {
          if (option == controller && !layout.v1_mounts.count(controller)) {
            layout.v1_mounts[controller] = mount_point;
          }
        }
      }
    }
  }
  if (!v2_with_controllers.empty()) {
    layout.mode = CgroupMode::kV2;
    layout.unified_mount = v2_with_controllers;
    layout.v1_mounts.clear();
    return layout;
  }
  std::vector<std::string> missing;
  for (const char* controller : {"memory", "pids", "cpu"}) {
    if (!layout.v1_mounts.count(controller)) missing.push_back(controller);
  }
  if (!missing.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "no cgroup2 mount with the memory and pids controllers, and no cgroup "
        "v1 mount for: ",
        absl::StrJoin(missing, ", ")));
  }
  layout.mode = CgroupMode::kV1;
  layout.unified_mount = v2_plain;
  return layout;
}

absl::StatusOr<CgroupLayout> CgroupLayout::Detect() {
  static std::mutex mutex;
  static std::optional<CgroupLayout> cached;
  std::lock_guard lock(mutex);
  if (cached) return *cached;
  ASSIGN_OR_RETURN(std::string mountinfo, ReadFile("/proc/self/mountinfo"));
  ASSIGN_OR_RETURN(
      CgroupLayout layout, Parse(mountinfo, [](const std::string& mount_point) {
        return ReadFile(absl::StrCat(mount_point, "/cgroup.controllers"))
            .value_or("");
      }));
  cached = layout;
  return layout;
}

std::vector<std::string> SandboxCgroups::Directories() const {
  std::vector<std::string> dirs;
  for (const std::string* dir :
       {&memory, &pids, &cpu, &cpuacct, &freezer, &unified}) {
    if (dir->empty()) continue;
    if (std::find(dirs.begin(), dirs.end(), *dir) == dirs.end()) {
      dirs.push_back(*dir);
    }
  }
  return dirs;
}

std::vector<std::string> SandboxCgroups::ProcsFiles() const {
  std::vector<std::string> files;
  for (const std::string& dir : Directories()) {
    files.push_back(absl::StrCat(dir, "/cgroup.procs"));
  }
  return files;
}

SandboxCgroups SandboxCgroups::For(const CgroupLayout& layout,
                                   absl::string_view parent,
                                   absl::string_view id) {
  SandboxCgroups cgroups;
  cgroups.mode = layout.mode;
  auto path = [&](const std::string& root) {
    return absl::StrCat(root, "/", parent, "/", id);
  };
  if (layout.mode == CgroupMode::kV2) {
    cgroups.memory = cgroups.pids = cgroups.cpu = cgroups.unified =
        path(layout.unified_mount);
    return cgroups;
  }
  auto v1 = [&](const char* controller) -> std::string {
    auto it = layout.v1_mounts.find(controller);
    return it == layout.v1_mounts.end() ? "" : path(it->second);
  };
  cgroups.memory = v1("memory");
  cgroups.pids = v1("pids");
  cgroups.cpu = v1("cpu");
  cgroups.cpuacct = v1("cpuacct");
  cgroups.freezer = v1("freezer");
  if (!layout.unified_mount.empty())
    cgroups.unified = path(layout.unified_mount);
  return cgroups;
}

absl::Status CreateCgroups(const CgroupLayout& layout,
                           const SandboxCgroups& cgroups,
                           const CgroupLimits& limits) {
  std::vector<std::string> made;
  auto create = [&]() -> absl::Status {
    for (const std::string& dir : cgroups.Directories()) {
      std::string parent_dir = std::filesystem::path(dir).parent_path();
      // Find which hierarchy root this directory lives in, to make the
      // parent levels beneath it.
      std::string root;
      if (layout.mode == CgroupMode::kV2 ||
          absl::StartsWith(dir, layout.unified_mount + "/")) {
        root = layout.unified_mount;
      }
      for (const auto& [controller, mount] : layout.v1_mounts) {
        if (absl::StartsWith(dir, mount + "/")) root = mount;
      }
      if (root.empty()) {
        return absl::InternalError(
            absl::StrCat("cgroup ", dir, " is in no known hierarchy"));
      }
      absl::string_view relative_parent = parent_dir;
      relative_parent.remove_prefix(
          std::min(root.size(), relative_parent.size()));
      RETURN_IF_ERROR(
          MakeParent(root, relative_parent, layout.mode == CgroupMode::kV2));
      if (::mkdir(dir.c_str(), 0755) != 0) {
        if (errno == EEXIST) {
          return absl::AlreadyExistsError(
              absl::StrCat("cgroup ", dir, " already exists"));
        }
        return ErrnoStatus(absl::StrCat("mkdir ", dir));
      }
      made.push_back(dir);
    }
    if (layout.mode == CgroupMode::kV2) {
      return ApplyV2Limits(cgroups.unified, limits);
    }
    return ApplyV1Limits(cgroups, limits);
  };
  absl::Status status = create();
  if (!status.ok()) {
    for (auto it = made.rbegin(); it != made.rend(); ++it) ::rmdir(it->c_str());
  }
  return status;
}

absl::Status KillAndRemoveCgroups(const SandboxCgroups& cgroups,
                                  absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<std::string> dirs;
  for (const std::string& dir : cgroups.Directories()) {
    if (Exists(dir)) dirs.push_back(dir);
  }
  if (dirs.empty()) return absl::OkStatus();

  // Up to a few rounds: something may be forking while the first round
  // freezes; frozen processes cannot, so one round normally suffices.
  for (int round = 0; round < 5 && !AllEmpty(cgroups); ++round) {
    if (!cgroups.unified.empty() && Exists(cgroups.unified)) {
      // cgroup.kill (Linux 5.14+) kills atomically, forks included.
      (void)WriteFile(absl::StrCat(cgroups.unified, "/cgroup.kill"), "1");
    }
    bool frozen = SetFrozen(cgroups, true,
                            std::min(deadline, absl::Now() + absl::Seconds(1)));
    if (frozen) {
      // While frozen no listed process can exit, so no pid can have been
      // reused by a process outside the sandbox.
      for (const std::string& dir : dirs) {
        for (pid_t pid : ReadPids(dir)) ::kill(pid, SIGKILL);
      }
      SetFrozen(cgroups, false, deadline);
    } else {
      // No freezer to hold them (a v1 sandbox made without one, or one
      // that did not freeze in time): each listed process through a pidfd,
      // once it is seen still in the cgroup, so that a pid reused after
      // its process exited is never signalled.
      for (const std::string& dir : dirs) {
        for (pid_t pid : ReadPids(dir)) KillIfMember(pid, dir);
      }
    }
    absl::Time round_end = std::min(deadline, absl::Now() + absl::Seconds(1));
    while (!AllEmpty(cgroups) && absl::Now() < round_end) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (absl::Now() >= deadline) break;
  }

  absl::Status result;
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    for (;;) {
      if (::rmdir(it->c_str()) == 0 || errno == ENOENT) break;
      if (errno == EBUSY && absl::Now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      if (result.ok()) result = ErrnoStatus(absl::StrCat("rmdir ", *it));
      break;
    }
  }
  return result;
}

absl::StatusOr<CgroupStats> ReadCgroupStats(const SandboxCgroups& cgroups) {
  CgroupStats stats;
  auto number = [](const std::string& path) -> uint64_t {
    auto text = ReadFile(path);
    uint64_t value = 0;
    if (text.ok() &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &value)) {
      return value;
    }
    return 0;
  };
  if (!Exists(cgroups.memory)) {
    return absl::NotFoundError(
        absl::StrCat("cgroup ", cgroups.memory, " does not exist"));
  }
  if (cgroups.mode == CgroupMode::kV2) {
    const std::string& dir = cgroups.unified;
    stats.oom_kills = FlatKeyedValue(
        ReadFile(absl::StrCat(dir, "/memory.events")).value_or(""), "oom_kill");
    stats.memory_bytes = number(absl::StrCat(dir, "/memory.current"));
    stats.pids =
        static_cast<uint32_t>(number(absl::StrCat(dir, "/pids.current")));
    stats.cpu_usage_us = FlatKeyedValue(
        ReadFile(absl::StrCat(dir, "/cpu.stat")).value_or(""), "usage_usec");
    return stats;
  }
  stats.oom_kills = FlatKeyedValue(
      ReadFile(absl::StrCat(cgroups.memory, "/memory.oom_control"))
          .value_or(""),
      "oom_kill");
  stats.memory_bytes =
      number(absl::StrCat(cgroups.memory, "/memory.usage_in_bytes"));
  stats.pids = static_cast<uint32_t>(
      number(absl::StrCat(cgroups.pids, "/pids.current")));
  std::string cpuacct =
      !cgroups.cpuacct.empty() ? cgroups.cpuacct : cgroups.cpu;
  stats.cpu_usage_us = number(absl::StrCat(cpuacct, "/cpuacct.usage")) / 1000;
  return stats;
}

uint64_t FlatKeyedValue(absl::string_view text, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (kv.first != key) continue;
    uint64_t value = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(kv.second), &value)) {
      return value;
    }
  }
  return 0;
}

std::vector<std::string> ListSandboxCgroupIds(const CgroupLayout& layout,
                                              absl::string_view parent) {
  std::set<std::string> roots;
  if (!layout.unified_mount.empty()) roots.insert(layout.unified_mount);
  for (const auto& [controller, mount] : layout.v1_mounts) roots.insert(mount);
  std::set<std::string> ids;
  for (const std::string& root : roots) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(
             absl::StrCat(root, "/", parent), error)) {
      if (entry.is_directory(error) && !entry.is_symlink(error)) {
        ids.insert(entry.path().filename().string());
      }
    }
  }
  return {ids.begin(), ids.end()};
}

}  // namespace corral::linux_runtime
