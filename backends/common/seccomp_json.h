// The linux runtime's seccomp policy (backends/linux/seccomp_policy.h) as a
// profile in the JSON format that OCI runtimes (config.json
// `linux.seccomp`) and Docker (`--security-opt seccomp=<json>`) take:
//   {"defaultAction": "SCMP_ACT_ALLOW",
//    "architectures": ["SCMP_ARCH_X86_64"],
//    "syscalls": [{"names": [...], "action": "SCMP_ACT_ERRNO",
//                  "errnoRet": 1,
//                  "args": [{"index": 0, "value": M, "valueTwo": V,
//                            "op": "SCMP_CMP_MASKED_EQ"}]}, ...]}
// Generated from the same deny list and argument rules as the linux
// filter, entry for entry in the order that filter adds them, so the two
// cannot drift. Only the native architecture is listed: a runtime's
// libseccomp kills a thread that makes a system call through another ABI
// (i386, x32), where the linux filter kills the whole process.
#ifndef CORRAL_BACKENDS_COMMON_SECCOMP_JSON_H_
#define CORRAL_BACKENDS_COMMON_SECCOMP_JSON_H_

#include <string>

#include "nlohmann/json.hpp"

namespace corral::runtime_common {

// The profile as a JSON object.
[[nodiscard]] nlohmann::json SeccompProfile();

// The same, serialized compactly (for Docker's SecurityOpt).
[[nodiscard]] std::string SeccompProfileText();

// libseccomp's name of the architecture this was built for
// ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64", ...).
[[nodiscard]] const char* NativeSeccompArchitecture();

}  // namespace corral::runtime_common

#endif  // CORRAL_BACKENDS_COMMON_SECCOMP_JSON_H_
