// Looks for anything of a sandbox left on the host: processes of its host
// uid, cgroup directories, runtime files, its workspace, mounts.
#ifndef CORRAL_TESTS_INTEGRATION_LEFTOVERS_H_
#define CORRAL_TESTS_INTEGRATION_LEFTOVERS_H_

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {

// The host uid that root inside the sandbox maps to (from its uid_map).
inline std::string HostUidOf(const Daemon& daemon, const std::string& id) {
  auto r = daemon.Cli({"exec", id, "--", "cat", "/proc/self/uid_map"});
  std::string line = Trim(r.out);
  // "0 1500000000 1" with any spacing
  std::string fields[3];
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    at = line.find_first_not_of(' ', at);
    if (at == std::string::npos) return "";
    size_t end = line.find(' ', at);
    fields[i] = line.substr(
        at, end == std::string::npos ? std::string::npos : end - at);
    at = end;
  }
  return fields[1];
}

// Empty when nothing is left; else what was found. Retries for a moment,
// since the kernel frees a killed cgroup shortly after its last process.
inline std::string Leftovers(const Daemon& daemon, const std::string& id,
                             const std::string& host_uid) {
  std::string found;
  for (int attempt = 0; attempt < 30; ++attempt) {
    found.clear();
    if (!host_uid.empty() && host_uid != "0") {
      auto ps =
          Sh("ps -eo uid=,pid=,stat=,comm= | awk '$1 == " + host_uid + "'");
      if (!Trim(ps.out).empty()) found += "processes:\n" + ps.out;
    }
    auto cgroups = Sh("find /sys/fs/cgroup -maxdepth 5 -type d -name '*" + id +
                      "*' 2>/dev/null");
    if (!Trim(cgroups.out).empty()) found += "cgroups:\n" + cgroups.out;
    auto files = Sh("find '" + daemon.state_dir() + "' -name '*" + id +
                    "*' 2>/dev/null");
    if (!Trim(files.out).empty()) found += "files:\n" + files.out;
    auto mounts = Sh("grep -F '" + id + "' /proc/self/mountinfo");
    if (!Trim(mounts.out).empty()) found += "mounts:\n" + mounts.out;
    if (found.empty()) return found;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return found;
}

}  // namespace corral::testing

#endif  // CORRAL_TESTS_INTEGRATION_LEFTOVERS_H_
