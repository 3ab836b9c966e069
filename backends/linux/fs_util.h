// Small file and /proc helpers shared by the linux runtime plugin and its
// launcher: whole-file reads and writes, and the start time of a process (to
// detect pid reuse). Tree removal is corral::RemoveTree
// (common/corral/remove_tree.h).
#ifndef CORRAL_BACKENDS_LINUX_FS_UTIL_H_
#define CORRAL_BACKENDS_LINUX_FS_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::linux_runtime {

// Reads a whole (small) file. Fails with the errno of open/read.
[[nodiscard]] absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `content` to an existing file in one write(2) (cgroup and /proc files
// take one value per write), without O_CREAT.
[[nodiscard]] absl::Status WriteFile(const std::string& path,
                                     absl::string_view content);

// What /proc/<pid>/stat says about a process.
struct ProcStat {
  char state = '?';         // field 3: R, S, D, Z, ...
  uint64_t start_time = 0;  // field 22: clock ticks after boot
};

// Parses the text of /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted after its last ')'.
[[nodiscard]] absl::StatusOr<ProcStat> ParseProcStat(absl::string_view text);

// Reads and parses /proc/<pid>/stat. NOT_FOUND when the process is gone.
[[nodiscard]] absl::StatusOr<ProcStat> ReadProcStat(pid_t pid);

// pidfd_open(2) and pidfd_send_signal(2) through syscall(2): glibc 2.36's
// <sys/pidfd.h> lacks extern "C", so its wrappers cannot be linked from C++.
// Return -1 with errno set on failure.
[[nodiscard]] int PidfdOpen(pid_t pid);
int PidfdSendSignal(int pidfd, int signal);

// True while the process `pid` with `start_time` lives (not a zombie, not
// another process that took the pid).
[[nodiscard]] bool ProcessIs(pid_t pid, uint64_t start_time);

// The last `max` bytes of a (log) file, trimmed; empty when unreadable. For
// error messages.
[[nodiscard]] std::string ReadTail(const std::string& path, size_t max = 1500);

// Sends SIGKILL to `pid` through a pidfd when the process still has
// `start_time` (a pid alone may belong to another process by now), and waits
// up to `timeout_ms` for it to exit. Best effort: a process that is gone, or
// is another one, is left alone.
void KillProcessAndWait(pid_t pid, uint64_t start_time, int timeout_ms);

// True when `id` is a sandbox id as the daemon makes them: 32 lowercase hex
// characters. Ids become path components, and reconcile removes only
// entries named like this, so nothing else may pass.
[[nodiscard]] bool ValidSandboxId(absl::string_view id);

// An absolute path of at most 4096 bytes without "." or ".." components or
// a newline: what a plugin accepts from its config or a stored handle.
[[nodiscard]] bool CleanAbsolutePath(absl::string_view path);

// A cgroup parent from a plugin's config: a relative path of 1-200 bytes
// whose components are [A-Za-z0-9._-], none "." or "..".
[[nodiscard]] bool ValidCgroupParent(absl::string_view parent);

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_FS_UTIL_H_
