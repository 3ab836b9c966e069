#include "backends/common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "backends/linux/fs_util.h"
#include "corral/spawn_attributes.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::runtime_common {
namespace {

// Closes every fd but 0-2 and those in `keep` (-1 entries ignored).
// Async-signal-safe.
void CloseAllBut(const int (&keep)[4]) {
  int sorted[4];
  int count = 0;
  for (int fd : keep) {
    if (fd > 2) sorted[count++] = fd;
  }
  std::sort(sorted, sorted + count);
  unsigned next = 3;
  for (int i = 0; i < count; ++i) {
    const unsigned fd = static_cast<unsigned>(sorted[i]);
    if (fd > next) ::syscall(SYS_close_range, next, fd - 1, 0u);
    next = std::max(next, fd + 1);
  }
  ::syscall(SYS_close_range, next, ~0u, 0u);
}

// Ends this process when `parent` (the process that forked it) is gone:
// a helper must never outlive the daemon holding anything of it.
// Async-signal-safe.
void DieWithParent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // it died before the prctl
}

// Only async-signal-safe calls: this runs in a fork of a threaded process.
// The fork has a copy of every fd of the daemon (its state directory's
// lock, the store, the listening socket): all but the two pipes go first,
// and the intermediate dies with the daemon's thread that waits for it, so
// a daemon killed meanwhile never leaves anything holding them.
[[noreturn]] void RunIntermediate(char* const* argv, char* const* envp,
                                  int input_fd, int output_fd, int error_fd,
                                  int report_fd, pid_t daemon) {
  CloseAllBut({input_fd, output_fd, error_fd, report_fd});
  DieWithParent(daemon);
  ::setsid();
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig)
    ::sigaction(sig, &default_action, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const pid_t intermediate = ::getpid();
  pid_t program = ::fork();
  if (program == 0) {
    DieWithParent(intermediate);
    int input = input_fd >= 0 ? input_fd : ::open("/dev/null", O_RDONLY);
    if (input < 0 || ::dup2(input, 0) != 0 || ::dup2(output_fd, 1) != 1 ||
        ::dup2(error_fd, 2) != 2) {
      ::_exit(126);
    }
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execve(argv[0], argv, envp);
    ::_exit(127);
  }
  ::close(output_fd);
  if (error_fd != output_fd) ::close(error_fd);
  if (input_fd >= 0) ::close(input_fd);
  int status = 0;
  if (program < 0) {
    status = 127 << 8;
  } else {
    while (::waitpid(program, &status, 0) < 0 && errno == EINTR) {
    }
  }
  (void)!::write(report_fd, &status, sizeof(status));
  ::_exit(0);
}

}  // namespace

// The daemon's child reaper (common/corral/child_reaper.h) reaps every child
// of the process, so the exit status of a direct child is lost to it. The
// program therefore runs as a grandchild: an intermediate child waits for it
// and reports the status on a pipe.
absl::StatusOr<ProgramResult> RunProgram(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  return RunProgram(argv, timeout, ProgramOptions{});
}

absl::StatusOr<ProgramResult> RunProgram(const std::vector<std::string>& argv,
                                         absl::Duration timeout,
                                         const ProgramOptions& options) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return absl::InvalidArgumentError("RunProgram: argv[0] must be absolute");
  }
  std::vector<std::string> args = argv;
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  arg_pointers.push_back(nullptr);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char lang_env[] = "LC_ALL=C";
  char* envp[] = {path_env, lang_env, nullptr};

  int output[2], error[2] = {-1, -1}, report[2];
  if (::pipe2(output, O_CLOEXEC) != 0) return ErrnoStatus("pipe2");
  UniqueFd output_read(output[0]), output_write(output[1]);
  if (options.separate_stderr && ::pipe2(error, O_CLOEXEC) != 0) {
    return ErrnoStatus("pipe2");
  }
  UniqueFd error_read(error[0]), error_write(error[1]);
  if (::pipe2(report, O_CLOEXEC) != 0) return ErrnoStatus("pipe2");
  UniqueFd report_read(report[0]), report_write(report[1]);
  const pid_t daemon = ::getpid();
  pid_t intermediate = ::fork();
  if (intermediate < 0) return ErrnoStatus("fork");
  if (intermediate == 0) {
    RunIntermediate(arg_pointers.data(), envp, options.stdin_fd,
                    output_write.get(),
                    error_write ? error_write.get() : output_write.get(),
                    report_write.get(), daemon);
  }
  output_write.Reset();
  error_write.Reset();
  report_write.Reset();

  ProgramResult result;
  std::string status_bytes;
  const absl::Time deadline = absl::Now() + timeout;
  while (output_read || error_read || report_read) {
    const int wait_ms = static_cast<int>(std::max<int64_t>(
        0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    if (wait_ms == 0) {
      // Its own session: the group is the intermediate and the program.
      ::kill(-intermediate, SIGKILL);
      return absl::DeadlineExceededError(
          absl::StrCat(absl::StrJoin(argv, " "), " did not finish within ",
                       absl::FormatDuration(timeout)));
    }
    pollfd polls[3];
    UniqueFd* fds[3];
    int count = 0;
    for (UniqueFd* fd : {&output_read, &error_read, &report_read}) {
      if (*fd) {
        polls[count] = {fd->get(), POLLIN, 0};
        fds[count++] = fd;
      }
    }
    int ready = ::poll(polls, count, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus("poll");
    for (int i = 0; i < count; ++i) {
      if (polls[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = ::read(fds[i]->get(), buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i]->Reset();
        continue;
      }
      std::string& into = fds[i] == &output_read  ? result.output
                          : fds[i] == &error_read ? result.error_output
                                                  : status_bytes;
      if (into.size() < options.max_output_bytes) {
        into.append(buffer,
                    std::min<size_t>(static_cast<size_t>(n),
                                     options.max_output_bytes - into.size()));
      } else if (fds[i] != &report_read) {
        result.truncated = true;
      }
    }
  }
  int status = 0;
  if (status_bytes.size() != sizeof(status)) {
    return absl::InternalError(
        absl::StrCat(argv[0], ": no exit status (the helper died)"));
  }
  std::memcpy(&status, status_bytes.data(), sizeof(status));
  result.exit_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                     : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                           : 255;
  return result;
}

absl::StatusOr<pid_t> SpawnInSession(
    const std::vector<std::string>& argv,
    const posix_spawn_file_actions_t& actions) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return absl::InvalidArgumentError(
        "SpawnInSession: argv[0] must be absolute");
  }
  const SessionSpawnAttributes attributes;
  std::vector<std::string> args = argv;
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  arg_pointers.push_back(nullptr);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {path_env, nullptr};
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0].c_str(), &actions, attributes.get(),
                         arg_pointers.data(), envp);
  if (rc != 0) return ErrnoStatus(absl::StrCat("posix_spawn ", args[0]), rc);
  return pid;
}

std::vector<std::string> ProgramSearchDirs(
    absl::string_view search_path,
    const std::vector<std::string>& fallback_dirs) {
  std::vector<std::string> dirs;
  auto add = [&](absl::string_view dir) {
    if (linux_runtime::CleanAbsolutePath(dir) &&
        std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) {
      dirs.emplace_back(dir);
    }
  };
  for (absl::string_view dir : absl::StrSplit(search_path, ':')) add(dir);
  for (const std::string& dir : fallback_dirs) add(dir);
  return dirs;
}

std::string FindProgramIn(
    const std::string& name, const std::vector<std::string>& dirs,
    const std::function<bool(const std::string&)>& executable) {
  for (const std::string& dir : dirs) {
    std::string path = absl::StrCat(dir, "/", name);
    if (executable(path)) return path;
  }
  return "";
}

}  // namespace corral::runtime_common
