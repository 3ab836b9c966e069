// fork/exec for corral-agent; see spawn.h.
#include "guest-agent/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

namespace corral::agent {
namespace {

// What the child reports through the error pipe before it _exits.
enum class ChildStage : int32_t { kSetup = 1, kChdir = 2, kExec = 3 };
struct ChildReport {
  int32_t stage;
  int32_t error;
};

// Only async-signal-safe calls from here to the end of RunChild.
[[noreturn]] void ReportAndExit(int report_fd, ChildStage stage, int error) {
  ChildReport report{static_cast<int32_t>(stage), error};
  // A short write cannot happen for 8 bytes on an empty pipe; if the write
  // fails, the parent sees EOF and a 127 exit, which is still a failure.
  ssize_t ignored = ::write(report_fd, &report, sizeof(report));
  (void)ignored;
  ::_exit(127);
}

// dup2 that also works when source == target (dup2 then does nothing and
// would leave close-on-exec set).
bool MoveFd(int source, int target) {
  if (source == target) {
    int flags = ::fcntl(target, F_GETFD);
    return flags >= 0 && ::fcntl(target, F_SETFD, flags & ~FD_CLOEXEC) == 0;
  }
  return ::dup2(source, target) == target;
}

struct ChildPlan {
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  int report_fd;
  const char* cwd;
  char* const* argv;
  char* const* envp;
  // Full paths to try in order (one when argv[0] has a '/').
  const std::vector<const char*>* candidates;
  // argv[0] has no '/': candidates come from PATH.
  bool searching;
  // Set: run this instead of exec'ing (argv, envp and candidates unused).
  const std::function<int()>* body;
};

// Closes every fd above 2: without an exec, close-on-exec never happens, and
// the child must not hold the agent's connection or other commands' pipes
// (a stdin write end kept open here would keep that command from seeing EOF).
bool CloseFdsAbove2() {
  if (::syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return true;
  // Kernels before 5.9: close everything up to the fd limit.
  long max = ::sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > (1L << 20)) max = 1L << 20;
  for (long fd = 3; fd < max; ++fd) ::close(static_cast<int>(fd));
  return true;
}

[[noreturn]] void RunChild(const ChildPlan& plan) {
  // Own session and process group: the agent signals the whole group, and the
  // command never holds a terminal of ours.
  ::setsid();
  // PID 1 runs with oom_score_adj -1000; commands must not inherit that.
  int oom = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom >= 0) {
    ssize_t ignored = ::write(oom, "0", 1);
    (void)ignored;
    ::close(oom);
  }
  // The agent blocks signals for its signalfd and ignores SIGPIPE; both are
  // inherited across exec, so reset everything.
  struct sigaction default_action;
  std::memset(&default_action, 0, sizeof(default_action));
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig)
    ::sigaction(sig, &default_action, nullptr);
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  if (!MoveFd(plan.stdin_fd, 0) || !MoveFd(plan.stdout_fd, 1) ||
      !MoveFd(plan.stderr_fd, 2)) {
    ReportAndExit(plan.report_fd, ChildStage::kSetup, errno);
  }
  if (::chdir(plan.cwd) != 0) {
    ReportAndExit(plan.report_fd, ChildStage::kChdir, errno);
  }
  if (plan.body != nullptr) {
    // Closing the report pipe (above 2) tells the parent that setup worked.
    // From here on this is an ordinary process: the agent is single-threaded,
    // so the forked heap and locks are in a consistent state.
    CloseFdsAbove2();
    ::_exit((*plan.body)());
  }
  // Like execvp: remember EACCES and keep looking; stop at errors that say
  // the file exists but cannot run for another reason. A path with a '/' has
  // one candidate and reports its own errno.
  const bool searching = plan.searching;
  int error = ENOENT;
  bool saw_eacces = false;
  for (const char* path : *plan.candidates) {
    ::execve(path, plan.argv, plan.envp);
    error = errno;
    if (!searching) break;
    if (error == EACCES) {
      saw_eacces = true;
    } else if (error != ENOENT && error != ENOTDIR && error != ESTALE &&
               error != ENODEV && error != ETIMEDOUT && error != ELOOP &&
               error != ENAMETOOLONG) {
      break;
    }
    error = saw_eacces ? EACCES : ENOENT;
  }
  ReportAndExit(plan.report_fd, ChildStage::kExec, error);
}

bool SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

std::string ErrnoText(int error) { return std::strerror(error); }

// Names echoed in error messages are the request's own bytes, up to the frame
// limit: shorten them so the reply always fits in a frame.
std::string Shorten(const std::string& text) {
  constexpr size_t kMax = 1024;
  if (text.size() <= kMax) return text;
  return text.substr(0, kMax) + "...";
}

bool ForkChild(bool stdin_open, const std::string& program, ChildPlan plan,
               SpawnedCommand* command, SpawnFailure* failure);

}  // namespace

int64_t MonotonicNowNs() {
  timespec now;
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
}

std::string ValidateExecStart(const v1::ExecStart& start) {
  if (start.argv().empty()) return "exec_start: argv is empty";
  for (const std::string& arg : start.argv()) {
    if (arg.find('\0') != std::string::npos) {
      return "exec_start: argv contains a NUL byte";
    }
  }
  if (start.argv(0).empty()) return "exec_start: argv[0] is empty";
  if (start.cwd().find('\0') != std::string::npos) {
    return "exec_start: cwd contains a NUL byte";
  }
  for (const v1::EnvVar& var : start.env()) {
    if (var.name().empty() || var.name().find('=') != std::string::npos ||
        var.name().find('\0') != std::string::npos ||
        var.value().find('\0') != std::string::npos) {
      return "exec_start: invalid environment variable name or value";
    }
  }
  return "";
}

bool Spawn(const v1::ExecStart& start, SpawnedCommand* command,
           SpawnFailure* failure) {
  // Everything that allocates happens before fork.
  std::vector<std::string> args(start.argv().begin(), start.argv().end());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  std::vector<std::string> env;
  std::string_view path = kDefaultPath;
  bool path_found = false;
  for (const v1::EnvVar& var : start.env()) {
    env.push_back(var.name() + "=" + var.value());
    if (!path_found && var.name() == "PATH") {
      path_found = true;
      path = var.value();
    }
  }
  if (env.empty()) env.push_back(std::string("PATH=") + kDefaultPath);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  // The PATH search uses the command's PATH, not the agent's: glibc's execvpe
  // would search the caller's.
  const std::string& program = args[0];
  std::vector<std::string> candidate_paths;
  if (program.find('/') != std::string::npos) {
    candidate_paths.push_back(program);
  } else {
    size_t begin = 0;
    while (begin <= path.size()) {
      size_t end = path.find(':', begin);
      if (end == std::string_view::npos) end = path.size();
      std::string_view dir = path.substr(begin, end - begin);
      // An empty PATH entry means the working directory (POSIX).
      if (dir.empty()) dir = ".";
      candidate_paths.push_back(std::string(dir) + "/" + program);
      begin = end + 1;
    }
  }
  std::vector<const char*> candidates;
  for (const std::string& candidate : candidate_paths) {
    candidates.push_back(candidate.c_str());
  }
  const std::string cwd = start.cwd().empty() ? "/" : start.cwd();
  ChildPlan plan{.stdin_fd = -1,
                 .stdout_fd = -1,
                 .stderr_fd = -1,
                 .report_fd = -1,
                 .cwd = cwd.c_str(),
                 .argv = argv.data(),
                 .envp = envp.data(),
                 .candidates = &candidates,
                 .searching = program.find('/') == std::string::npos,
                 .body = nullptr};
  return ForkChild(start.stdin_open(), program, plan, command, failure);
}

bool SpawnFunction(const v1::ExecStart& start, const std::function<int()>& body,
                   SpawnedCommand* command, SpawnFailure* failure) {
  const std::vector<const char*> no_candidates;
  ChildPlan plan{.stdin_fd = -1,
                 .stdout_fd = -1,
                 .stderr_fd = -1,
                 .report_fd = -1,
                 .cwd = "/",
                 .argv = nullptr,
                 .envp = nullptr,
                 .candidates = &no_candidates,
                 .searching = false,
                 .body = &body};
  return ForkChild(start.stdin_open(), "fs", plan, command, failure);
}

namespace {

// Creates the stdio and report pipes, forks, runs `plan` in the child (its
// fds are filled in here) and waits for the report pipe to close.
bool ForkChild(bool stdin_open, const std::string& program, ChildPlan plan,
               SpawnedCommand* command, SpawnFailure* failure) {
  auto fail = [&](int exit_code, std::string message) {
    failure->exit_code = exit_code;
    failure->message = std::move(message);
    return false;
  };

  int fds[2];
  UniqueFd stdin_read, stdin_write;
  if (stdin_open) {
    if (::pipe2(fds, O_CLOEXEC) != 0)
      return fail(126, "pipe: " + ErrnoText(errno));
    stdin_read.Reset(fds[0]);
    stdin_write.Reset(fds[1]);
  } else {
    stdin_read.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!stdin_read) {
      // Images without /dev/null: an empty pipe whose writer is gone reads
      // as EOF just the same.
      if (::pipe2(fds, O_CLOEXEC) != 0)
        return fail(126, "pipe: " + ErrnoText(errno));
      stdin_read.Reset(fds[0]);
      ::close(fds[1]);
    }
  }
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return fail(126, "pipe: " + ErrnoText(errno));
  UniqueFd stdout_read(fds[0]), stdout_write(fds[1]);
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return fail(126, "pipe: " + ErrnoText(errno));
  UniqueFd stderr_read(fds[0]), stderr_write(fds[1]);
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return fail(126, "pipe: " + ErrnoText(errno));
  UniqueFd report_read(fds[0]), report_write(fds[1]);

  if ((stdin_write && !SetNonBlocking(stdin_write.get())) ||
      !SetNonBlocking(stdout_read.get()) ||
      !SetNonBlocking(stderr_read.get())) {
    return fail(126, "fcntl O_NONBLOCK: " + ErrnoText(errno));
  }

  plan.stdin_fd = stdin_read.get();
  plan.stdout_fd = stdout_write.get();
  plan.stderr_fd = stderr_write.get();
  plan.report_fd = report_write.get();
  const int64_t start_ns = MonotonicNowNs();
  failure->start_ns = start_ns;
  pid_t pid = ::fork();
  if (pid < 0) return fail(126, "fork: " + ErrnoText(errno));
  if (pid == 0) RunChild(plan);

  stdin_read.Reset();
  stdout_write.Reset();
  stderr_write.Reset();
  report_write.Reset();

  ChildReport report{};
  size_t got = 0;
  while (got < sizeof(report)) {
    ssize_t n =
        ::read(report_read.get(), reinterpret_cast<char*>(&report) + got,
               sizeof(report) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == 0) {
    command->pid = pid;
    command->start_ns = start_ns;
    command->stdin_write = std::move(stdin_write);
    command->stdout_read = std::move(stdout_read);
    command->stderr_read = std::move(stderr_read);
    return true;
  }
  failure->pid = pid;
  const std::string name = Shorten(program);
  if (got < sizeof(report)) return fail(126, name + ": child setup failed");
  switch (static_cast<ChildStage>(report.stage)) {
    case ChildStage::kChdir:
      return fail(
          126, "chdir " + Shorten(plan.cwd) + ": " + ErrnoText(report.error));
    case ChildStage::kExec:
      if (report.error == ENOENT) {
        return fail(127, name + ": " + ErrnoText(ENOENT));
      }
      return fail(126, name + ": " + ErrnoText(report.error));
    case ChildStage::kSetup:
    default:
      return fail(126, name + ": setting up stdio: " + ErrnoText(report.error));
  }
}

}  // namespace

}  // namespace corral::agent
