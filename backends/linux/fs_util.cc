#include "backends/linux/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "corral/hex_id.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::linux_runtime {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
  std::string content;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("read ", path));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  return content;
}

absl::Status WriteFile(const std::string& path, absl::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
  ssize_t n;
  do {
    n = ::write(fd.get(), content.data(), content.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    return ErrnoStatus(absl::StrCat("write ", path, " '", content, "'"));
  if (static_cast<size_t>(n) != content.size()) {
    return absl::InternalError(absl::StrCat("write ", path, ": short write"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view text) {
  size_t close = text.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("/proc stat: no ')' after the command");
  }
  // After ") " come fields 3, 4, ...: field N is at index N - 3.
  std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(close + 1), ' ', absl::SkipEmpty());
  constexpr size_t kStartTimeIndex = 22 - 3;
  if (fields.size() <= kStartTimeIndex || fields[0].size() != 1) {
    return absl::InvalidArgumentError("/proc stat: too few fields");
  }
  ProcStat stat;
  stat.state = fields[0][0];
  if (!absl::SimpleAtoi(fields[kStartTimeIndex], &stat.start_time)) {
    return absl::InvalidArgumentError("/proc stat: bad start time");
  }
  return stat;
}

absl::StatusOr<ProcStat> ReadProcStat(pid_t pid) {
  auto text = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok()) {
    if (absl::IsNotFound(text.status()) ||
        absl::IsInvalidArgument(text.status())) {
      return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
    }
    return text.status();
  }
  return ParseProcStat(*text);
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int PidfdSendSignal(int pidfd, int signal) {
  return static_cast<int>(
      ::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

bool ProcessIs(pid_t pid, uint64_t start_time) {
  auto stat = ReadProcStat(pid);
  return stat.ok() && stat->start_time == start_time && stat->state != 'Z';
}

std::string ReadTail(const std::string& path, size_t max) {
  auto text = ReadFile(path);
  if (!text.ok()) return "";
  absl::string_view view = absl::StripAsciiWhitespace(*text);
  if (view.size() > max) view = view.substr(view.size() - max);
  return std::string(view);
}

void KillProcessAndWait(pid_t pid, uint64_t start_time, int timeout_ms) {
  if (pid <= 0) return;
  UniqueFd pidfd(PidfdOpen(pid));
  if (!pidfd) return;
  // Checked after the pidfd is open: from then on the pid cannot be reused.
  auto stat = ReadProcStat(pid);
  if (!stat.ok() || stat->start_time != start_time) return;
  if (PidfdSendSignal(pidfd.get(), SIGKILL) != 0) return;
  pollfd exited{pidfd.get(), POLLIN, 0};
  ::poll(&exited, 1, timeout_ms);
}

bool ValidSandboxId(absl::string_view id) { return IsHexId(id, 32); }

bool CleanAbsolutePath(absl::string_view path) {
  if (path.empty() || path[0] != '/' || path.size() > 4096) return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") return false;
  }
  return path.find('\n') == absl::string_view::npos;
}

bool ValidCgroupParent(absl::string_view parent) {
  if (parent.empty() || parent.size() > 200) return false;
  for (absl::string_view part : absl::StrSplit(parent, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
      if (!ok) return false;
    }
  }
  return true;
}

}  // namespace corral::linux_runtime
