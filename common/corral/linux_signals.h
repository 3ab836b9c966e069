// The names of Linux's signals, fixed: the numbers a sandbox's commands are
// signalled with and die of are always the Linux guest's (x86-64 and arm64
// share them), whatever the host, so the daemon and the CLI never ask their
// own C library (whose numbers differ on macOS). tests/unit checks the table
// against glibc's sigabbrev_np where it exists.
#ifndef CORRAL_COMMON_CORRAL_LINUX_SIGNALS_H_
#define CORRAL_COMMON_CORRAL_LINUX_SIGNALS_H_

namespace corral {

// The highest signal number (real-time signals included).
inline constexpr int kLinuxMaxSignal = 64;

// The abbreviation of Linux signal `number` without "SIG" ("TERM"), or
// nullptr for a number without one (0, the real-time range, past 64).
inline const char* LinuxSignalAbbrev(int number) {
  static constexpr const char* kNames[] = {
      nullptr,  "HUP",  "INT",    "QUIT", "ILL",   "TRAP", "ABRT", "BUS",
      "FPE",    "KILL", "USR1",   "SEGV", "USR2",  "PIPE", "ALRM", "TERM",
      "STKFLT", "CHLD", "CONT",   "STOP", "TSTP",  "TTIN", "TTOU", "URG",
      "XCPU",   "XFSZ", "VTALRM", "PROF", "WINCH", "POLL", "PWR",  "SYS"};
  if (number <= 0 ||
      number >= static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) {
    return nullptr;
  }
  return kNames[number];
}

}  // namespace corral

#endif  // CORRAL_COMMON_CORRAL_LINUX_SIGNALS_H_
