#include "tests/fakes/common/runc.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "tests/fakes/common/fake_util.h"

namespace corral::fakes {

std::optional<std::string> FindRunc() {
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("PATH")) {
    std::string list = path;
    size_t at = 0;
    while (at <= list.size()) {
      size_t end = list.find(':', at);
      if (end == std::string::npos) end = list.size();
      if (end > at) candidates.push_back(list.substr(at, end - at) + "/runc");
      at = end + 1;
    }
  }
  candidates.push_back("/usr/sbin/runc");
  candidates.push_back("/usr/bin/runc");
  for (const auto& candidate : candidates) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::string RuncLogError(const std::string& log_path) {
  auto text = ReadFile(log_path);
  std::string message = "runc failed";
  if (!text) return message;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    auto entry = nlohmann::json::parse(line, nullptr, false);
    if (!entry.is_discarded() && entry.value("level", "") == "error") {
      message = entry.value("msg", message);
    }
  }
  return message;
}

bool CgroupV2() { return PathExists("/sys/fs/cgroup/cgroup.controllers"); }

nlohmann::json MemoryWithoutSwap(uint64_t bytes) {
  nlohmann::json memory = {{"limit", bytes}};
  if (CgroupV2() ||
      PathExists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")) {
    memory["swap"] = bytes;  // memory+swap: no swap
  }
  return memory;
}

nlohmann::json CpuQuota(int64_t cpus) {
  return {{"quota", cpus * 100000}, {"period", 100000}};
}

bool LoopbackUp(pid_t pid) {
  pid_t child = ::fork();
  if (child < 0) return false;
  if (child == 0) {
    int ns = ::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(),
                    O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) ::_exit(1);
    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq request{};
    std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (sock < 0 || ::ioctl(sock, SIOCGIFFLAGS, &request) != 0) ::_exit(1);
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    ::_exit(::ioctl(sock, SIOCSIFFLAGS, &request) == 0 ? 0 : 1);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace corral::fakes
