#include "backends/common/seccomp_json.h"

#include <cerrno>
#include <cstdint>

#include "backends/linux/seccomp_policy.h"

namespace corral::runtime_common {
namespace {

using nlohmann::json;
namespace policy = ::corral::linux_runtime;

json Rule(json names, int errno_value, json args = json::array()) {
  json rule = {{"names", std::move(names)},
               {"action", "SCMP_ACT_ERRNO"},
               {"errnoRet", errno_value}};
  if (!args.empty()) rule["args"] = std::move(args);
  return rule;
}

json Arg(const char* op, uint64_t value, uint64_t value_two = 0) {
  json arg = {{"index", 0}, {"value", value}, {"op", op}};
  if (value_two != 0 || std::string(op) == "SCMP_CMP_MASKED_EQ") {
    arg["valueTwo"] = value_two;
  }
  return arg;
}

}  // namespace

const char* NativeSeccompArchitecture() {
#if defined(__x86_64__)
  return "SCMP_ARCH_X86_64";
#elif defined(__aarch64__)
  return "SCMP_ARCH_AARCH64";
#elif defined(__i386__)
  return "SCMP_ARCH_X86";
#elif defined(__arm__)
  return "SCMP_ARCH_ARM";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "SCMP_ARCH_PPC64LE";
#elif defined(__s390x__)
  return "SCMP_ARCH_S390X";
#elif defined(__riscv) && __riscv_xlen == 64
  return "SCMP_ARCH_RISCV64";
#else
#error "no libseccomp architecture name for this target"
#endif
}

// Mirrors AddRules() of backends/linux/seccomp_policy.cc, in its order.
json SeccompProfile() {
  json syscalls = json::array();
  syscalls.push_back(Rule(policy::DeniedSyscalls(), EPERM));
  // clone3's flags live in memory a filter cannot read: ENOSYS makes glibc
  // fall back to clone, whose flags are checked.
  syscalls.push_back(Rule({"clone3"}, ENOSYS));
  // One entry per flag: the conditions of one entry must all hold (AND);
  // separate entries each match on their own (OR).
  for (uint64_t flag : policy::kCloneNamespaceFlags) {
    syscalls.push_back(
        Rule({"clone"}, EPERM, {Arg("SCMP_CMP_MASKED_EQ", flag, flag)}));
  }
  // "A forbidden bit set and not the query": bit 31 is set only by the
  // query, so it joins every mask (one comparison per argument and rule).
  constexpr uint64_t kBit31 = uint64_t{1} << 31;
  for (int bit = 0; bit < 31; ++bit) {
    const uint64_t value = uint64_t{1} << bit;
    if (!(value & policy::kAllowedPersonalityBits)) {
      syscalls.push_back(
          Rule({"personality"}, EPERM,
               {Arg("SCMP_CMP_MASKED_EQ", value | kBit31, value)}));
    }
    syscalls.push_back(
        Rule({"personality"}, EPERM,
             {Arg("SCMP_CMP_MASKED_EQ", value | kBit31, kBit31)}));
  }
  syscalls.push_back(Rule({"personality"}, EPERM,
                          {Arg("SCMP_CMP_GT", policy::kPersonalityQuery)}));
  syscalls.push_back(Rule(
      {"socket"}, EAFNOSUPPORT,
      {Arg("SCMP_CMP_GT", static_cast<uint64_t>(policy::kMaxAllowedFamily))}));
  for (int family = 0; family < policy::kMaxAllowedFamily; ++family) {
    bool allowed = false;
    for (int ok : policy::kAllowedFamilies) allowed |= family == ok;
    if (allowed) continue;
    syscalls.push_back(
        Rule({"socket"}, EAFNOSUPPORT,
             {Arg("SCMP_CMP_EQ", static_cast<uint64_t>(family))}));
  }
  return {{"defaultAction", "SCMP_ACT_ALLOW"},
          {"architectures", {NativeSeccompArchitecture()}},
          {"syscalls", std::move(syscalls)}};
}

std::string SeccompProfileText() { return SeccompProfile().dump(); }

}  // namespace corral::runtime_common
