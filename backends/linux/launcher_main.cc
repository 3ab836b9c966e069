// corral-linux-launch: the single-threaded helper that the linux runtime
// plugin starts for each new sandbox (corrald itself is multithreaded and
// must not do this work after fork). It joins the sandbox's cgroups, forks
// the sandbox's init into new namespaces, which builds its root, drops every
// privilege and execs the agent as PID 1; the launcher writes one report
// line (launch_config.h) and exits. The init is then reparented to corrald.
//
// Steps of the init (the child), in order:
//   unshare mount/net/ipc/uts/cgroup namespaces (pid: the launcher's
//   unshare), setsid, build the root and pivot_root (rootfs.h), hostname and
//   loopback, drop supplementary groups, unshare the user namespace, wait for
//   the launcher to write uid_map/gid_map and oom_score_adj, become root of
//   the user namespace, keep only the listening socket, reset signals,
//   no_new_privs, drop every capability, load seccomp, execveat the sealed
//   agent image.
#include <fcntl.h>
#include <grp.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/launch_config.h"
#include "backends/linux/rootfs.h"
#include "backends/linux/seccomp_policy.h"
#include "corral/platform.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::linux_runtime {
namespace {

// Messages of the init to the launcher, one per line.
constexpr char kNeedHostSetup = 'U';  // namespaces made: write maps, oom adj
constexpr char kAboutToExec = 'R';    // everything done; execveat is next
constexpr char kFailed = 'E';         // followed by the error text
// The launcher's one answer, followed by the seccomp program.
constexpr char kGo = 'G';
// A BPF program holds at most 4096 instructions of 8 bytes.
constexpr uint32_t kMaxSeccompProgramBytes = 4096 * 8;

constexpr int kInitNamespaces =
    CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;

constexpr char kAgentPath[] =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
    "/usr/bin:/sbin:/bin";

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// ---- The init's side -------------------------------------------------------

absl::Status DropCapabilities() {
  // Root of the sandbox (in its user namespace, or host root without one)
  // would regain capabilities at execve; the securebits forbid it, and the
  // empty bounding set makes sure nothing comes back.
  if (::prctl(PR_SET_SECUREBITS,
              SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_SETUID_FIXUP |
                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_NOROOT |
                  SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                  SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
              0, 0, 0) != 0) {
    return ErrnoStatus("prctl PR_SET_SECUREBITS");
  }
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      return ErrnoStatus(absl::StrCat("prctl PR_CAPBSET_DROP ", cap));
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return ErrnoStatus("prctl PR_CAP_AMBIENT_CLEAR_ALL");
  }
  cap_t none = ::cap_init();  // all sets empty
  if (none == nullptr) return ErrnoStatus("cap_init");
  int rc = ::cap_set_proc(none);
  int error = errno;
  ::cap_free(none);
  if (rc != 0) return ErrnoStatus("capset (clear all)", error);
  return absl::OkStatus();
}

absl::Status ResetSignals() {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &action, nullptr);  // fails only for invalid numbers
  }
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) {
    return ErrnoStatus("sigprocmask");
  }
  return absl::OkStatus();
}

// Leaves exactly: 0-2 (/dev/null), kListenFd, kAgentImageFd (close-on-exec)
// and the pipe to the launcher, moved to kReportFd (close-on-exec). The
// plugin's report pipe is closed: only the launcher answers on it.
absl::StatusOr<int> ArrangeFds(int to_launcher) {
  if (::dup3(to_launcher, kReportFd, O_CLOEXEC) < 0) {
    return ErrnoStatus(absl::StrCat("dup3 ", to_launcher, " to ", kReportFd));
  }
  if (::syscall(SYS_close_range, kReportFd + 1, ~0U, 0) != 0) {
    return ErrnoStatus(absl::StrCat("close_range ", kReportFd + 1));
  }
  if (::fcntl(kAgentImageFd, F_SETFD, FD_CLOEXEC) != 0) {
    return ErrnoStatus(absl::StrCat("fcntl F_SETFD ", kAgentImageFd));
  }
  if (::fcntl(kListenFd, F_SETFD, 0) != 0) {
    return ErrnoStatus(absl::StrCat("fcntl F_SETFD ", kListenFd));
  }
  return kReportFd;
}

// Reads exactly `size` bytes from the launcher's pipe.
absl::Status ReadExactly(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read from launcher");
    if (n == 0) {
      return absl::AbortedError("the launcher did not complete the host setup");
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status InitSteps(const LaunchConfig& config, int* to_launcher,
                       int from_launcher) {
  if (!config.netns_path.empty()) {
    // Joined while still host root: the namespace is the daemon's.
    UniqueFd netns(
        ::open(config.netns_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!netns) return ErrnoStatus("open the sandbox's network namespace");
    if (::setns(netns.get(), CLONE_NEWNET) != 0) {
      return ErrnoStatus("join the sandbox's network namespace");
    }
  }
  const int namespaces = config.netns_path.empty()
                             ? kInitNamespaces
                             : kInitNamespaces & ~CLONE_NEWNET;
  if (::unshare(namespaces) != 0) {
    return ErrnoStatus("unshare mount/net/ipc/uts/cgroup namespaces");
  }
  if (::setsid() < 0) return ErrnoStatus("setsid");
  RETURN_IF_ERROR(BuildRootAndPivot(config));
  RETURN_IF_ERROR(
      Annotate(SetUpHostnameAndLoopback(config.hostname), "uts and network"));
  // Supplementary groups of the launcher must not survive; once the user
  // namespace denies setgroups this is no longer possible.
  if (::setgroups(0, nullptr) != 0) return ErrnoStatus("setgroups 0");
  if (config.user_namespace && ::unshare(CLONE_NEWUSER) != 0) {
    return ErrnoStatus("unshare user namespace");
  }
  // The launcher writes the id maps and oom_score_adj, then answers.
  if (!WriteAll(*to_launcher, std::string(1, kNeedHostSetup))) {
    return ErrnoStatus("write to launcher");
  }
  // kGo, then the seccomp program: a 4-byte length and the BPF code.
  char answer[5] = {};
  RETURN_IF_ERROR(ReadExactly(from_launcher, answer, sizeof(answer)));
  uint32_t program_size = 0;
  std::memcpy(&program_size, answer + 1, sizeof(program_size));
  if (answer[0] != kGo || program_size == 0 ||
      program_size > kMaxSeccompProgramBytes) {
    return absl::InternalError("bad answer from the launcher");
  }
  std::string program(program_size, '\0');
  RETURN_IF_ERROR(ReadExactly(from_launcher, program.data(), program.size()));
  ::close(from_launcher);
  // In the user namespace this makes the process its root, host_uid on the
  // host; without one it stays host root.
  if (::setresgid(0, 0, 0) != 0) return ErrnoStatus("setresgid 0");
  if (::setresuid(0, 0, 0) != 0) return ErrnoStatus("setresuid 0");
  ASSIGN_OR_RETURN(*to_launcher, ArrangeFds(*to_launcher));
  RETURN_IF_ERROR(ResetSignals());
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return ErrnoStatus("prctl PR_SET_NO_NEW_PRIVS");
  }
  RETURN_IF_ERROR(Annotate(DropCapabilities(), "capabilities"));
  return SeccompFilter::LoadBpf(program);
}

[[noreturn]] void RunInit(const LaunchConfig& config, int to_launcher,
                          int from_launcher) {
  absl::Status status = InitSteps(config, &to_launcher, from_launcher);
  if (status.ok()) {
    WriteAll(to_launcher, std::string(1, kAboutToExec));
    std::string listen_fd = absl::StrCat(kListenFd);
    const char* argv[] = {"corral-agent", "--listen-fd", listen_fd.c_str(),
                          nullptr};
    const char* envp[] = {kAgentPath, "HOME=/", nullptr};
    ::syscall(SYS_execveat, kAgentImageFd, "", argv, envp, AT_EMPTY_PATH);
    status = ErrnoStatus("execveat corral-agent");
  }
  WriteAll(to_launcher, absl::StrCat(std::string(1, kFailed),
                                     static_cast<int>(status.code()), " ",
                                     status.message(), "\n"));
  ::_exit(127);
}

// ---- The launcher's side ---------------------------------------------------

absl::Status HostSetup(const LaunchConfig& config, pid_t init) {
  const std::string proc = absl::StrCat("/proc/", init);
  if (config.user_namespace) {
    RETURN_IF_ERROR(WriteFile(proc + "/setgroups", "deny"));
    RETURN_IF_ERROR(WriteFile(proc + "/uid_map",
                              absl::StrCat("0 ", config.host_uid, " 1\n")));
    RETURN_IF_ERROR(WriteFile(proc + "/gid_map",
                              absl::StrCat("0 ", config.host_gid, " 1\n")));
  }
  // The agent must outlive an OOM inside its sandbox; it sets its own
  // children back to 0. Lowering the score needs CAP_SYS_RESOURCE, which a
  // daemon in a restricted container may lack: then the agent keeps the
  // default score, and being far smaller than whatever exhausts the
  // sandbox's memory it is still not the OOM killer's first choice (probe
  // reports this as oom_protection=no).
  absl::Status status = WriteFile(proc + "/oom_score_adj", "-1000");
  if (absl::IsPermissionDenied(status)) return absl::OkStatus();
  return status;
}

LaunchReport Failure(absl::Status status) {
  LaunchReport report;
  report.error = std::move(status);
  return report;
}

// Parses "E<code> <message>" from the init.
absl::Status InitError(absl::string_view line) {
  int code = static_cast<int>(absl::StatusCode::kInternal);
  size_t space = line.find(' ');
  if (space != absl::string_view::npos) {
    int parsed = 0;
    for (char c : line.substr(0, space)) {
      if (c < '0' || c > '9') parsed = -1;
      if (parsed >= 0) parsed = parsed * 10 + (c - '0');
    }
    if (parsed > 0 && parsed <= 16) code = parsed;
    line.remove_prefix(space + 1);
  }
  return absl::Status(static_cast<absl::StatusCode>(code),
                      absl::StrCat("sandbox init: ", line));
}

LaunchReport Launch(const LaunchConfig& config) {
  // Born inside the cgroups: the init is counted and limited from its first
  // instruction, and its cgroup namespace is rooted there.
  const std::string self = absl::StrCat(::getpid());
  for (const std::string& file : config.cgroup_procs) {
    if (auto status = WriteFile(file, self); !status.ok()) {
      return Failure(Annotate(status, "join cgroup"));
    }
  }
  int to_init[2], from_init[2];
  if (::pipe2(to_init, O_CLOEXEC) != 0 || ::pipe2(from_init, O_CLOEXEC) != 0) {
    return Failure(ErrnoStatus("pipe2"));
  }
  // The pid namespace applies to the children of the caller: the forked
  // init becomes its PID 1.
  if (::unshare(CLONE_NEWPID) != 0) {
    return Failure(ErrnoStatus("unshare pid namespace"));
  }
  pid_t init = ::fork();
  if (init < 0) return Failure(ErrnoStatus("fork"));
  if (init == 0) {
    ::close(to_init[1]);
    ::close(from_init[0]);
    RunInit(config, from_init[1], to_init[0]);
  }
  UniqueFd to_child(to_init[1]);
  UniqueFd from_child(from_init[0]);
  ::close(to_init[0]);
  ::close(from_init[1]);

  // From here on a failure kills the init; it is our child and not reaped
  // (the launcher never waits), so its pid cannot have been reused.
  auto fail = [&](absl::Status status) {
    ::kill(init, SIGKILL);
    return Failure(std::move(status));
  };
  // Compiled while the init assembles its root: on two cores this takes
  // the filter off the critical path.
  absl::StatusOr<std::string> program = absl::InternalError("not built");
  if (auto filter = SeccompFilter::Build(); filter.ok()) {
    program = filter->ExportBpf();
  } else {
    program = filter.status();
  }
  if (!program.ok()) return fail(Annotate(program.status(), "seccomp filter"));

  std::string buffer;
  bool about_to_exec = false;
  for (;;) {
    char chunk[512];
    ssize_t n = ::read(from_child.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(ErrnoStatus("read from sandbox init"));
    if (n == 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    while (!buffer.empty()) {
      char kind = buffer[0];
      if (kind == kFailed) {
        size_t end = buffer.find('\n');
        if (end == std::string::npos) break;  // wait for the rest
        return fail(InitError(absl::string_view(buffer).substr(1, end - 1)));
      }
      buffer.erase(0, 1);
      if (kind == kNeedHostSetup) {
        if (auto status = HostSetup(config, init); !status.ok()) {
          return fail(Annotate(status, "host setup"));
        }
        std::string answer(1, kGo);
        uint32_t size = static_cast<uint32_t>(program->size());
        answer.append(reinterpret_cast<const char*>(&size), sizeof(size));
        answer += *program;
        if (!WriteAll(to_child.get(), answer)) {
          return fail(ErrnoStatus("write to sandbox init"));
        }
      } else if (kind == kAboutToExec) {
        about_to_exec = true;
      } else {
        return fail(
            absl::InternalError("unexpected message from sandbox init"));
      }
    }
  }
  // EOF: the init's end of the pipe closed at a successful execveat (or it
  // died).
  if (!about_to_exec || !buffer.empty()) {
    return fail(
        absl::InternalError("the sandbox init exited before the agent ran"));
  }
  auto stat = ReadProcStat(init);
  if (!stat.ok()) return fail(Annotate(stat.status(), "sandbox init"));
  if (stat->state == 'Z' || stat->state == 'X') {
    return fail(absl::InternalError("the agent exited right after it started"));
  }
  LaunchReport report;
  report.ok = true;
  report.pid = init;
  report.start_time = stat->start_time;
  return report;
}

}  // namespace
}  // namespace corral::linux_runtime

int main(int argc, char** argv) {
  namespace lr = corral::linux_runtime;
  // The plugin may be gone; its pipe then fails with EPIPE instead of a
  // signal. The init resets every disposition before exec.
  ::signal(SIGPIPE, SIG_IGN);
  // Never hang a create: the plugin waits a little longer than this.
  ::alarm(lr::kLauncherTimeoutSeconds);
  for (int fd : {lr::kListenFd, lr::kAgentImageFd, lr::kReportFd}) {
    if (::fcntl(fd, F_GETFD) < 0) return 2;  // not started by the plugin
  }
  // A daemon killed while this runs takes the launcher along (the
  // sandbox's init, once forked, is not: the next daemon finds it by its
  // cgroup and removes the half-made sandbox).
  if (!corral::platform::DieWithParent(lr::kReportFd)) return 2;
  // Defense in depth: posix_spawn in the plugin already closed the rest.
  ::syscall(SYS_close_range, lr::kReportFd + 1, ~0U, 0);
  ::fcntl(lr::kReportFd, F_SETFD, FD_CLOEXEC);

  std::vector<absl::string_view> args(argv + 1, argv + argc);
  auto config = lr::LaunchConfig::FromArgs(args);
  lr::LaunchReport report;
  if (!config.ok()) {
    report.error = config.status();
  } else {
    report = lr::Launch(*config);
  }
  std::string line = report.Serialize();
  corral::platform::OutliveParent();
  lr::WriteAll(lr::kReportFd, line);
  return report.ok ? 0 : 1;
}
