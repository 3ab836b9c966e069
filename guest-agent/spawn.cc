// fork/exec for corral-agent; see spawn.h.
#include "guest-agent/spawn.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

namespace corral::agent {
namespace {

// What the child reports through the error pipe before it _exits.
enum class ChildStage : int32_t {
  kSetup = 1,
  kChdir = 2,
  kExec = 3,
  kTerminal = 4,
  kCgroup = 5,
};
struct ChildReport {
  int32_t stage;
  int32_t error;
};

// The cgroup.procs file children join (SetCommandCgroup), or empty. Set
// once before the first fork; children only read it.
std::string& CommandCgroupProcs() {
  static std::string path;
  return path;
}
std::string& CommandCgroupDirectory() {
  static std::string directory;
  return directory;
}
bool& DropCommandCapabilities() {
  static bool drop = false;
  return drop;
}

// Async-signal-safe: only system calls. False with errno set on failure.
bool DropAllCapabilities() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  for (int cap = 0; cap <= 63; ++cap) {
    // Only those still in the set (an agent started without CAP_SETPCAP,
    // by a container runtime that dropped them all, has nothing to drop);
    // PR_CAPBSET_READ fails with EINVAL past the kernel's last capability.
    const int held = ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (held < 0 && errno == EINVAL) break;
    if (held > 0 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return false;
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
      errno != EINVAL) {
    return false;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  return ::syscall(SYS_capset, &header, data) == 0;
}

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
  // stdin_fd is a terminal's slave side that becomes the controlling tty of
  // the child's new session.
  bool controlling_tty;
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
  // Into the sandbox's limits before anything else can fork.
  if (const std::string& procs = CommandCgroupProcs(); !procs.empty()) {
    int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) {
      ReportAndExit(plan.report_fd, ChildStage::kCgroup, errno);
    }
    ::close(fd);
  }
  // A session leader without a controlling tty acquires this one; the slave
  // was opened with O_NOCTTY (by the parent, which must never get one).
  if (plan.controlling_tty && ::ioctl(plan.stdin_fd, TIOCSCTTY, 0) != 0) {
    ReportAndExit(plan.report_fd, ChildStage::kTerminal, errno);
  }
  if (DropCommandCapabilities() && !DropAllCapabilities()) {
    ReportAndExit(plan.report_fd, ChildStage::kSetup, errno);
  }
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

bool ForkChild(bool stdin_open, const v1::Pty* pty, const std::string& program,
               ChildPlan plan, SpawnedCommand* command, SpawnFailure* failure);

}  // namespace

bool SetTerminalSize(int master_fd, uint32_t rows, uint32_t columns) {
  winsize size{};
  size.ws_row = static_cast<unsigned short>(
      std::min<uint32_t>(rows == 0 ? kDefaultRows : rows, 65535));
  size.ws_col = static_cast<unsigned short>(
      std::min<uint32_t>(columns == 0 ? kDefaultColumns : columns, 65535));
  return ::ioctl(master_fd, TIOCSWINSZ, &size) == 0;
}

void SetCommandCgroup(const std::string& directory) {
  CommandCgroupDirectory() = directory;
  CommandCgroupProcs() = directory.empty() ? "" : directory + "/cgroup.procs";
}

void SetDropCommandCapabilities(bool drop) { DropCommandCapabilities() = drop; }

uint64_t CommandCgroupOomKills() {
  const std::string& directory = CommandCgroupDirectory();
  if (directory.empty()) return 0;
  const std::string path = directory + "/memory.events";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buffer[512];
  ssize_t n = ::read(fd, buffer, sizeof(buffer) - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buffer[n] = '\0';
  // Lines of "key value"; the one wanted is "oom_kill N".
  const char* line = std::strstr(buffer, "oom_kill ");
  if (line == nullptr) return 0;
  return std::strtoull(line + std::strlen("oom_kill "), nullptr, 10);
}

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
  if (start.pty().term().find('\0') != std::string::npos) {
    return "exec_start: pty.term contains a NUL byte";
  }
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
  if (start.has_pty()) {
    const bool has_term =
        std::any_of(start.env().begin(), start.env().end(),
                    [](const v1::EnvVar& var) { return var.name() == "TERM"; });
    if (!has_term) {
      env.push_back("TERM=" + (start.pty().term().empty()
                                   ? std::string(kDefaultTerm)
                                   : start.pty().term()));
    }
  }
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
                 .controlling_tty = false,
                 .cwd = cwd.c_str(),
                 .argv = argv.data(),
                 .envp = envp.data(),
                 .candidates = &candidates,
                 .searching = program.find('/') == std::string::npos,
                 .body = nullptr};
  return ForkChild(start.stdin_open(), start.has_pty() ? &start.pty() : nullptr,
                   program, plan, command, failure);
}

bool SpawnFunction(const v1::ExecStart& start, const std::function<int()>& body,
                   SpawnedCommand* command, SpawnFailure* failure) {
  const std::vector<const char*> no_candidates;
  ChildPlan plan{.stdin_fd = -1,
                 .stdout_fd = -1,
                 .stderr_fd = -1,
                 .report_fd = -1,
                 .controlling_tty = false,
                 .cwd = "/",
                 .argv = nullptr,
                 .envp = nullptr,
                 .candidates = &no_candidates,
                 .searching = false,
                 .body = &body};
  return ForkChild(start.stdin_open(), /*pty=*/nullptr, "fs", plan, command,
                   failure);
}

namespace {

// A new pseudo-terminal sized as `pty` asks: the master (non-blocking,
// close-on-exec) and its slave (close-on-exec, and O_NOCTTY: the agent must
// never acquire a controlling tty). Returns what failed, or "".
std::string OpenTerminal(const v1::Pty& pty, UniqueFd* master,
                         UniqueFd* slave) {
  master->Reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!*master) return "posix_openpt: " + ErrnoText(errno);
  if (::grantpt(master->get()) != 0) return "grantpt: " + ErrnoText(errno);
  if (::unlockpt(master->get()) != 0) return "unlockpt: " + ErrnoText(errno);
#ifdef TIOCGPTPEER
  // Opening the slave through the master needs no path, so it works even
  // where the /dev/pts mounted here is not the instance behind /dev/ptmx.
  slave->Reset(
      ::ioctl(master->get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
#endif
  if (!*slave) {
    // Kernels before 4.13: by name.
    char name[128];
    const int error = ::ptsname_r(master->get(), name, sizeof(name));
    if (error != 0) return "ptsname: " + ErrnoText(error);
    slave->Reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!*slave) return std::string("open ") + name + ": " + ErrnoText(errno);
  }
  // Sized before the fork, so the command sees its size from the start.
  if (!SetTerminalSize(master->get(), pty.rows(), pty.columns())) {
    return "TIOCSWINSZ: " + ErrnoText(errno);
  }
  if (!SetNonBlocking(master->get())) {
    return "fcntl O_NONBLOCK: " + ErrnoText(errno);
  }
  return "";
}

// Without a pty: stdin (a pipe, or /dev/null), stdout and stderr pipes. The
// parent ends are non-blocking; every end is close-on-exec. Returns false with
// `error` set.
bool OpenPipes(bool stdin_open, UniqueFd* stdin_read, UniqueFd* stdin_write,
               UniqueFd* stdout_read, UniqueFd* stdout_write,
               UniqueFd* stderr_read, UniqueFd* stderr_write,
               std::string* error) {
  auto make_pipe = [error](UniqueFd* read_end, UniqueFd* write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      *error = "pipe: " + ErrnoText(errno);
      return false;
    }
    read_end->Reset(fds[0]);
    write_end->Reset(fds[1]);
    return true;
  };
  if (stdin_open) {
    if (!make_pipe(stdin_read, stdin_write)) return false;
  } else {
    stdin_read->Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!*stdin_read) {
      // Images without /dev/null: an empty pipe whose writer is gone reads
      // as EOF just the same.
      UniqueFd gone;
      if (!make_pipe(stdin_read, &gone)) return false;
    }
  }
  if (!make_pipe(stdout_read, stdout_write) ||
      !make_pipe(stderr_read, stderr_write)) {
    return false;
  }
  if ((*stdin_write && !SetNonBlocking(stdin_write->get())) ||
      !SetNonBlocking(stdout_read->get()) ||
      !SetNonBlocking(stderr_read->get())) {
    *error = "fcntl O_NONBLOCK: " + ErrnoText(errno);
    return false;
  }
  return true;
}

// With a pty: the master, and two duplicates of it that the caller watches
// and closes separately as the command's stdin and output.
bool SetUpTerminal(const v1::Pty& pty, UniqueFd* master, UniqueFd* slave,
                   UniqueFd* stdin_write, UniqueFd* stdout_read,
                   std::string* error) {
  *error = OpenTerminal(pty, master, slave);
  if (!error->empty()) return false;
  stdin_write->Reset(::fcntl(master->get(), F_DUPFD_CLOEXEC, 3));
  stdout_read->Reset(::fcntl(master->get(), F_DUPFD_CLOEXEC, 3));
  if (!*stdin_write || !*stdout_read) {
    *error = "dup: " + ErrnoText(errno);
    return false;
  }
  return true;
}

// Creates the stdio (or terminal) and report pipes, forks, runs `plan` in the
// child (its fds are filled in here) and waits for the report pipe to close.
bool ForkChild(bool stdin_open, const v1::Pty* pty, const std::string& program,
               ChildPlan plan, SpawnedCommand* command, SpawnFailure* failure) {
  auto fail = [&](int exit_code, std::string message) {
    failure->exit_code = exit_code;
    failure->message = std::move(message);
    return false;
  };

  int fds[2];
  UniqueFd report_read, report_write;
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return fail(126, "pipe: " + ErrnoText(errno));
  report_read.Reset(fds[0]);
  report_write.Reset(fds[1]);

  UniqueFd stdin_read, stdin_write;
  UniqueFd stdout_read, stdout_write;
  UniqueFd stderr_read, stderr_write;
  UniqueFd master;
  if (pty != nullptr) {
    std::string error;
    if (!SetUpTerminal(*pty, &master, &stdin_read, &stdin_write, &stdout_read,
                       &error)) {
      return fail(126, error);
    }
    plan.stdin_fd = plan.stdout_fd = plan.stderr_fd = stdin_read.get();
    plan.controlling_tty = true;
  } else if (!OpenPipes(stdin_open, &stdin_read, &stdin_write, &stdout_read,
                        &stdout_write, &stderr_read, &stderr_write,
                        &failure->message)) {
    failure->exit_code = 126;
    return false;
  } else {
    plan.stdin_fd = stdin_read.get();
    plan.stdout_fd = stdout_write.get();
    plan.stderr_fd = stderr_write.get();
  }
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
    command->pty_master = std::move(master);
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
    case ChildStage::kTerminal:
      return fail(
          126, name + ": acquiring the terminal: " + ErrnoText(report.error));
    case ChildStage::kCgroup:
      return fail(126, name + ": joining the sandbox's cgroup: " +
                           ErrnoText(report.error));
    case ChildStage::kSetup:
    default:
      return fail(126, name + ": setting up stdio: " + ErrnoText(report.error));
  }
}

}  // namespace

}  // namespace corral::agent
