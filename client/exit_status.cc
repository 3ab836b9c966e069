#include "client/exit_status.h"

#include "absl/strings/str_cat.h"

namespace corral::cli {

int ExitCodeFor(const corral::v1::ExecExit& exit) {
  // Timeout and OOM come first: both end the command with SIGKILL, and the
  // reason is what the caller needs to know.
  if (exit.timed_out()) return kExitTimedOut;
  if (exit.oom_killed()) return kExitOutOfMemory;
  if (exit.signal() > 0) return 128 + exit.signal();
  // Shells truncate exit statuses to 8 bits; so do we, so that a daemon
  // reporting something odd cannot yield a negative or aliased status.
  return exit.exit_code() & 0xff;
}

std::optional<std::string> ExitNotice(const corral::v1::ExecExit& exit,
                                      uint32_t timeout_seconds) {
  if (exit.timed_out()) {
    const uint64_t seconds = timeout_seconds != 0
                                 ? timeout_seconds
                                 : (exit.duration_us() + 500000) / 1000000;
    return absl::StrCat("command timed out after ", seconds, " s");
  }
  if (exit.oom_killed()) return "command killed: out of memory";
  if (!exit.error().empty()) return exit.error();
  return std::nullopt;
}

}  // namespace corral::cli
