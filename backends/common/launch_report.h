// For the per-sandbox supervisors a plugin starts (corral-qemu-launch,
// corral-tart-launch; StartSupervisor in subprocess.h): the one line they
// report on the plugin's pipe, "started <pid>" or "error <why>", and dying
// with a reason. Header-only, without Abseil: the supervisors are small
// static programs.
#ifndef CORRAL_BACKENDS_COMMON_LAUNCH_REPORT_H_
#define CORRAL_BACKENDS_COMMON_LAUNCH_REPORT_H_

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace corral::launch {

// The program's name in messages, and the report pipe (-1: none or used).
inline const char* program = "corral-launch";
inline int report_fd = -1;

// Writes the report line once and closes the pipe.
inline void Report(const std::string& line) {
  if (report_fd < 0) return;
  const std::string text = line + "\n";
  (void)!::write(report_fd, text.data(), text.size());
  ::close(report_fd);
  report_fd = -1;
}

[[noreturn]] inline void Die(const std::string& why) {
  std::fprintf(stderr, "%s: %s\n", program, why.c_str());
  Report("error " + why);
  std::exit(1);
}

[[noreturn]] inline void DieErrno(const std::string& what) {
  Die(what + ": " + std::strerror(errno));
}

// A whole number argument (an fd, a uid), or Die naming `flag`.
inline unsigned long NumberArgument(const char* flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long value = std::strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') {
    Die(std::string("bad value for ") + flag);
  }
  return value;
}

}  // namespace corral::launch

#endif  // CORRAL_BACKENDS_COMMON_LAUNCH_REPORT_H_
