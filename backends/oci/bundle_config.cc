#include "backends/oci/bundle_config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backends/common/seccomp_json.h"

namespace corral::oci_runtime {
namespace {

using nlohmann::json;

// What the linux runtime masks under /proc and /sys: files are covered by
// /dev/null, directories by an empty read-only tmpfs (the runtime decides
// which by what it finds).
constexpr const char* kMaskedPaths[] = {
    "/proc/kcore",       "/proc/keys",          "/proc/timer_list",
    "/proc/sched_debug", "/proc/sysrq-trigger", "/proc/latency_stats",
    "/proc/timer_stats", "/proc/acpi",          "/proc/scsi",
    "/sys/firmware"};
// Visible but read-only. Writes to /proc/sys are checked by uid, not by
// capability, so a root without capabilities could otherwise still write
// there. /dev last: nothing may add files or device nodes to it once the
// runtime has made them.
constexpr const char* kReadOnlyPaths[] = {"/proc/sys", "/proc/irq", "/proc/bus",
                                          "/proc/fs", "/dev"};

json Mount(const std::string& destination, const std::string& type,
           const std::string& source, std::vector<std::string> options) {
  return {{"destination", destination},
          {"type", type},
          {"source", source},
          {"options", std::move(options)}};
}

json Mounts(const BundleSpec& spec) {
  json mounts = json::array();
  mounts.push_back(
      Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  // Device nodes live here (made or bound by the runtime): not nodev.
  mounts.push_back(
      Mount("/dev", "tmpfs", "tmpfs",
            {"nosuid", "noexec", "mode=755", "size=64k", "nr_inodes=256"}));
  mounts.push_back(
      Mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}));
  mounts.push_back(Mount("/dev/shm", "tmpfs", "shm",
                         {"nosuid", "noexec", "nodev", "mode=1777",
                          absl::StrCat("size=", spec.tmp_bytes)}));
  if (spec.user_namespace && !spec.netns_path.empty()) {
    // The kernel lets only the user namespace that owns a network namespace
    // mount sysfs in it, and the joined one is the daemon's. An empty
    // read-only /sys then, rather than the host's.
    mounts.push_back(Mount("/sys", "tmpfs", "tmpfs",
                           {"nosuid", "noexec", "nodev", "ro", "size=4k"}));
  } else {
    // sysfs mounted in the new network namespace shows only its devices
    // (lo).
    mounts.push_back(
        Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
  }
  for (const runtime_common::HostBind& bind : spec.host_binds) {
    mounts.push_back(Mount(bind.destination, "bind", bind.source,
                           {"bind", "ro", "nosuid", "nodev"}));
  }
  mounts.push_back(Mount(
      "/tmp", "tmpfs", "tmpfs",
      {"nosuid", "nodev", "mode=1777", absl::StrCat("size=", spec.tmp_bytes)}));
  mounts.push_back(Mount("/workspace", "bind", spec.workspace_dir,
                         {"bind", "rw", "nosuid", "nodev"}));
  return mounts;
}

json Resources(const BundleSpec& spec) {
  json memory = {{"limit", spec.memory_bytes}};
  if (spec.swap_accounting) {
    // memory+swap equal to memory: no swap.
    memory["swap"] = spec.memory_bytes;
  } else if (!spec.cgroup_v2) {
    memory["swappiness"] = 0;
  }
  const uint64_t quota =
      std::max<uint64_t>(kMinCpuQuotaUs, uint64_t{spec.cpu_millis} * 100);
  return {
      {"memory", memory},
      {"pids", {{"limit", spec.pids}}},
      {"cpu", {{"quota", quota}, {"period", kCpuPeriodUs}}},
      // Everything denied; the runtime adds its default devices (null,
      // zero, full, random, urandom, tty, pts).
      {"devices", json::array({{{"allow", false}, {"access", "rwm"}}})},
  };
}

json Namespaces(const BundleSpec& spec) {
  json namespaces = json::array();
  for (const char* type : {"pid", "network", "ipc", "uts", "mount", "cgroup"}) {
    json entry = {{"type", type}};
    if (std::string(type) == "network" && !spec.netns_path.empty()) {
      entry["path"] = spec.netns_path;
    }
    namespaces.push_back(std::move(entry));
  }
  if (spec.user_namespace) namespaces.push_back({{"type", "user"}});
  return namespaces;
}

}  // namespace

json BundleConfig(const BundleSpec& spec) {
  const json no_capabilities = json::array();
  json process = {
      {"terminal", false},
      {"user", {{"uid", 0}, {"gid", 0}}},
      // The sealed agent image the runtime passes as fd 4: no host path of
      // the agent is visible inside, and /proc/self/exe is a memfd nobody
      // can write (runc CVE-2019-5736).
      {"args",
       {absl::StrCat("/proc/self/fd/", kAgentImageFd), "--listen-fd",
        absl::StrCat(kListenFd)}},
      {"env",
       {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/"}},
      {"cwd", "/"},
      {"capabilities",
       {{"bounding", no_capabilities},
        {"effective", no_capabilities},
        {"inheritable", no_capabilities},
        {"permitted", no_capabilities},
        {"ambient", no_capabilities}}},
      {"noNewPrivileges", true},
  };
  json linux = {
      {"namespaces", Namespaces(spec)},
      {"resources", Resources(spec)},
      {"cgroupsPath", spec.cgroups_path},
      {"seccomp", runtime_common::SeccompProfile()},
      {"maskedPaths", kMaskedPaths},
      {"readonlyPaths", kReadOnlyPaths},
  };
  if (spec.user_namespace) {
    linux["uidMappings"] = json::array(
        {{{"containerID", 0}, {"hostID", spec.host_uid}, {"size", 1}}});
    linux["gidMappings"] = json::array(
        {{{"containerID", 0}, {"hostID", spec.host_gid}, {"size", 1}}});
  }
  return {
      {"ociVersion", "1.0.2"},
      {"process", std::move(process)},
      {"root", {{"path", spec.root_path}, {"readonly", true}}},
      {"hostname", spec.hostname},
      {"mounts", Mounts(spec)},
      {"linux", std::move(linux)},
  };
}

}  // namespace corral::oci_runtime
