// runc as the fakes drive it in place of a VM: where it is, what its JSON
// log says went wrong, the cgroup limits a VM's size becomes, and the
// container's loopback interface brought up.
#ifndef CORRAL_TESTS_FAKES_COMMON_RUNC_H_
#define CORRAL_TESTS_FAKES_COMMON_RUNC_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "nlohmann/json.hpp"

namespace corral::fakes {

// The first executable runc on PATH, else /usr/sbin/runc or /usr/bin/runc.
std::optional<std::string> FindRunc();
// What the fakes say when FindRunc() found none.
constexpr char kRuncNotFound[] =
    "runc not found (looked on PATH, in /usr/sbin and /usr/bin)";

// The last error message of runc's JSON log (`--log-format json`), else
// "runc failed".
std::string RuncLogError(const std::string& log_path);

bool CgroupV2();
// linux.resources.memory: a limit of `bytes` without swap (memory+swap the
// same, where the host accounts swap).
nlohmann::json MemoryWithoutSwap(uint64_t bytes);
// linux.resources.cpu: a quota of `cpus` CPUs (× 100000 per 100000 µs).
nlohmann::json CpuQuota(int64_t cpus);

// Brings `lo` up in the network namespace of `pid` (a forked helper joins
// it, so that the caller keeps its own).
bool LoopbackUp(pid_t pid);

}  // namespace corral::fakes

#endif  // CORRAL_TESTS_FAKES_COMMON_RUNC_H_
