// What the VM runtimes' integration tests (qemu, firecracker) look at on the
// host: a sandbox's host processes (those whose cgroup path ends in its
// id), their CPU time, and what a removed sandbox left behind; and the
// busybox image and shell commands they run in it.
#ifndef CORRAL_TESTS_INTEGRATION_VM_HOST_H_
#define CORRAL_TESTS_INTEGRATION_VM_HOST_H_

#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The host processes of sandbox `id`.
inline std::vector<pid_t> SandboxHostPids(const std::string& id) {
  std::vector<pid_t> pids;
  auto listed =
      Sh("grep -l '/" + id +
         "$' /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 | sort -u");
  for (const std::string& line : Lines(listed.out)) {
    if (!line.empty()) pids.push_back(std::stoi(line));
  }
  return pids;
}

// The first of `pids` whose command name starts with `prefix`, or 0.
inline pid_t ProcessNamed(const std::vector<pid_t>& pids,
                          const std::string& prefix) {
  for (pid_t pid : pids) {
    const std::string comm =
        ReadWholeFile("/proc/" + std::to_string(pid) + "/comm");
    if (comm.rfind(prefix, 0) == 0) return pid;
  }
  return 0;
}

// User plus system CPU time of a host process, in clock ticks.
inline long CpuTicks(pid_t pid) {
  const std::string stat =
      ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string skipped;
  for (int field = 3; field < 14; ++field) fields >> skipped;
  long utime = 0, stime = 0;
  fields >> utime >> stime;
  return utime + stime;
}

// What is left on the host of a removed sandbox: processes, cgroups, files
// in the daemon's state directory (empty when nothing, after up to 5 s).
inline std::string Leftovers(const Daemon& daemon, const std::string& id) {
  std::string found;
  for (int attempt = 0; attempt < 50; ++attempt) {
    found.clear();
    if (!SandboxHostPids(id).empty()) found += "processes\n";
    found +=
        Sh("find /sys/fs/cgroup -maxdepth 6 -name '*" + id + "*' 2>/dev/null")
            .out;
    found +=
        Sh("find '" + daemon.state_dir() + "' -name '*" + id + "*' 2>/dev/null")
            .out;
    if (Trim(found).empty()) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return found;
}

// The daemon with the busybox image imported (deploy/images/build-busybox.sh
// makes it; tests/run.sh runs that).
inline void ImportBusybox(const Daemon& daemon) {
  auto imported =
      daemon.Cli({"image", "import", "busybox",
                  std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar"});
  INFO(imported.err);
  REQUIRE(imported.exit_code == 0);
}

// `corral exec ID -- sh -c SCRIPT`.
inline CommandResult Sh(const Daemon& daemon, const std::string& id,
                        const std::string& script) {
  return daemon.Cli({"exec", id, "--", "sh", "-c", script});
}

}  // namespace corral::testing

#endif  // CORRAL_TESTS_INTEGRATION_VM_HOST_H_
