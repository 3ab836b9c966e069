#include "backends/common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "backends/linux/fs_util.h"
#include "corral/platform.h"
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
    if (fd > next) platform::CloseRange(next, fd - 1);
    next = std::max(next, fd + 1);
  }
  platform::CloseRange(next, ~0u);
}

// Ends this process when `parent` (the process that forked it) is gone:
// a helper must never outlive the daemon holding anything of it.
// Async-signal-safe.
void DieWithParent(pid_t parent) {
  if (!platform::DieWithParentProcess(parent)) ::_exit(127);
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
    platform::CloseRange(3, ~0u);
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
  std::vector<std::string> environment = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                          "LC_ALL=C"};
  environment.insert(environment.end(), options.environment.begin(),
                     options.environment.end());
  std::vector<char*> envp;
  for (std::string& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);

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
    RunIntermediate(arg_pointers.data(), envp.data(), options.stdin_fd,
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
    const posix_spawn_file_actions_t& actions,
    const std::vector<std::string>& extra_environment) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return absl::InvalidArgumentError(
        "SpawnInSession: argv[0] must be absolute");
  }
  const SessionSpawnAttributes attributes;
  std::vector<std::string> args = argv;
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  arg_pointers.push_back(nullptr);
  std::vector<std::string> environment = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  environment.insert(environment.end(), extra_environment.begin(),
                     extra_environment.end());
  std::vector<char*> envp;
  for (std::string& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0].c_str(), &actions, attributes.get(),
                         arg_pointers.data(), envp.data());
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

namespace corral::runtime_common {
namespace {

// A copy of `fd` at 20 or above, so that no dup2 onto 3 and up overwrites a
// source that happens to sit there.
UniqueFd High(int fd) { return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 20)); }

}  // namespace

absl::StatusOr<SupervisorStarted> StartSupervisor(
    const SupervisorLaunch& launch) {
  if (launch.argv.empty()) {
    return absl::InvalidArgumentError("StartSupervisor: no argv");
  }
  const std::string name = launch.argv[0].substr(launch.argv[0].rfind('/') + 1);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return ErrnoStatus("pipe2");
  UniqueFd report_read(report[0]);
  UniqueFd report_write = High(report[1]);
  ::close(report[1]);
  UniqueFd log(::open(launch.log_path.c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
                      0600));
  if (!log) return ErrnoStatus(absl::StrCat("open ", launch.log_path));
  UniqueFd log_high = High(log.get());
  UniqueFd listen_high = High(launch.listen_fd);
  std::vector<UniqueFd> extra_high;
  for (int fd : launch.extra_fds) extra_high.push_back(High(fd));
  if (!report_write || !log_high || !listen_high) {
    return ErrnoStatus("fcntl F_DUPFD");
  }
  for (const UniqueFd& fd : extra_high) {
    if (!fd) return ErrnoStatus("fcntl F_DUPFD");
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy_actions = [&] {
    posix_spawn_file_actions_destroy(&actions);
  };
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_high.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, log_high.get(), 2);
  posix_spawn_file_actions_adddup2(&actions, listen_high.get(), 3);
  posix_spawn_file_actions_adddup2(&actions, report_write.get(), 4);
  for (size_t i = 0; i < extra_high.size(); ++i) {
    posix_spawn_file_actions_adddup2(
        &actions, extra_high[i].get(),
        launch.first_extra_fd + static_cast<int>(i));
  }
  // No other fd of the daemon reaches the supervisor or what it starts.
  platform::SpawnCloseFrom(
      &actions, extra_high.empty() ? 5
                                   : launch.first_extra_fd +
                                         static_cast<int>(extra_high.size()));
  SupervisorStarted started;
  ASSIGN_OR_RETURN(started.supervisor,
                   SpawnInSession(launch.argv, actions, launch.environment));
  // Its identity at once: the daemon's reaper may take its pid any time
  // after it ends, and then another process's.
  const bool identified =
      platform::IdentifyProcess(started.supervisor, &started.identity);
  report_write.Reset();

  std::string line;
  const absl::Time deadline = absl::Now() + launch.timeout;
  for (;;) {
    const int wait_ms = static_cast<int>(std::max<int64_t>(
        0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    pollfd poll_fd{report_read.get(), POLLIN, 0};
    int ready = ::poll(&poll_fd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      if (identified) platform::SignalProcess(started.identity, SIGKILL, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(name, " did not report within ",
                       absl::FormatDuration(launch.timeout)));
    }
    char buffer[512];
    ssize_t n = ::read(report_read.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line.append(buffer, static_cast<size_t>(n));
  }
  absl::string_view text = absl::StripAsciiWhitespace(line);
  int64_t pid = 0;
  if (absl::ConsumePrefix(&text, "started ") && absl::SimpleAtoi(text, &pid) &&
      pid > 1) {
    started.reported = static_cast<pid_t>(pid);
    return started;
  }
  if (absl::ConsumePrefix(&text, "error ")) {
    return absl::InternalError(absl::StrCat(name, ": ", text));
  }
  return absl::InternalError(absl::StrCat(
      name,
      " ended without a report: ", linux_runtime::ReadTail(launch.log_path)));
}

}  // namespace corral::runtime_common
