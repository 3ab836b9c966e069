// The platform layer's Linux half (corral/platform.h).
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "corral/platform.h"
#include "corral/spawn_attributes.h"

namespace corral::platform {

const DefaultPaths& Defaults() {
  static constexpr DefaultPaths kLinux = {
      "/run/corral/corrald.sock", "/var/lib/corral", "/var/lib/corral-host"};
  return kLinux;
}

bool PeerIdentity(int fd, uid_t* uid, gid_t* gid, pid_t* pid) {
  ucred credentials{};
  socklen_t length = sizeof(credentials);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    return false;
  }
  *uid = credentials.uid;
  *gid = credentials.gid;
  *pid = credentials.pid;
  return true;
}

bool PeerGroups(int fd, std::vector<gid_t>* groups) {
  // The kernel says how much room the list needs when it does not fit.
  std::vector<gid_t> list(64);
  for (int attempt = 0; attempt < 3; ++attempt) {
    socklen_t length = static_cast<socklen_t>(list.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, list.data(), &length) ==
        0) {
      list.resize(length / sizeof(gid_t));
      *groups = std::move(list);
      return true;
    }
    if (errno != ERANGE || length / sizeof(gid_t) <= list.size()) break;
    list.resize(length / sizeof(gid_t));
  }
  return false;
}

std::string ExecutablePath() {
  std::string path(256, '\0');
  for (;;) {
    const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size());
    if (n < 0) return "";
    if (static_cast<size_t>(n) < path.size()) {
      path.resize(static_cast<size_t>(n));
      return path;
    }
    path.resize(path.size() * 2);
  }
}

bool FillRandom(void* buffer, size_t size) {
  auto* bytes = static_cast<unsigned char*>(buffer);
  while (size > 0) {
    const ssize_t n = ::getrandom(bytes, size, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool DieWithParent(int report_fd) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return false;
  pollfd check{report_fd, 0, 0};
  return ::poll(&check, 1, 0) >= 0 &&
         (check.revents & (POLLERR | POLLNVAL)) == 0;
}

void OutliveParent() { ::prctl(PR_SET_PDEATHSIG, 0); }

bool DieWithParentProcess(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  return ::getppid() == parent;  // else it died before the prctl
}

void CloseRange(unsigned first, unsigned last) {
  if (first > last) return;
  if (::syscall(SYS_close_range, first, last, 0u) == 0) return;
  // Kernels before 5.9: one by one, up to the table's size.
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  const unsigned end = open_max > 0 && static_cast<unsigned long>(open_max) <
                                           static_cast<unsigned long>(last)
                           ? static_cast<unsigned>(open_max - 1)
                           : last;
  for (unsigned fd = first; fd <= end && fd != ~0u; ++fd) {
    ::close(static_cast<int>(fd));
  }
}

void SetProcessName(const char* name) { ::prctl(PR_SET_NAME, name, 0, 0, 0); }

void StartChildReaper() {
  static std::atomic<bool> started{false};
  if (started.exchange(true)) return;
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  std::thread([] {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, __WALL);
      if (pid > 0 || errno == EINTR) continue;
      // ECHILD: no children right now. Children appear at any time and no
      // notification tells this thread, so look again shortly.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }).detach();
}

int MakePipe(int fds[2], bool nonblocking) {
  return ::pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
}

int StreamSocket(int domain, bool nonblocking) {
  return ::socket(
      domain, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0),
      0);
}

int AcceptNonBlocking(int listen_fd) {
  return ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

ssize_t SendNoSignal(int fd, const void* data, size_t size) {
  return ::send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
}

bool IdentifyProcess(pid_t pid, ProcessId* id) {
  if (pid <= 0) return false;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[1024];
  const ssize_t n = ::read(fd, text, sizeof(text) - 1);
  ::close(fd);
  if (n <= 0) return false;
  text[n] = '\0';
  // The command (field 2) may hold spaces and parentheses: count the
  // fields after its last ')'. Field 3 is the state, field 22 the start.
  const char* at = std::strrchr(text, ')');
  if (at == nullptr) return false;
  int field = 2;
  char state = 0;
  uint64_t start = 0;
  for (const char* p = at + 1; *p != '\0';) {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    ++field;
    const char* end = p;
    while (*end != ' ' && *end != '\0') ++end;
    if (field == 3) state = *p;
    if (field == 22) {
      char* parsed = nullptr;
      start = std::strtoull(p, &parsed, 10);
      if (parsed != end) return false;
      break;
    }
    p = end;
  }
  if (field != 22 || state == 'Z') return false;
  id->pid = pid;
  id->start_time = start;
  return true;
}

bool ProcessRuns(const ProcessId& id) {
  ProcessId now;
  return IdentifyProcess(id.pid, &now) && now.start_time == id.start_time;
}

bool SignalProcess(const ProcessId& id, int signal, int timeout_ms) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, id.pid, 0u));
  if (pidfd < 0) return true;  // gone
  // Checked once the pidfd is open: from then on the pid is not reused.
  bool gone = !ProcessRuns(id);
  if (!gone) {
    ::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0u);
    pollfd exited{pidfd, POLLIN, 0};
    gone = ::poll(&exited, 1, timeout_ms) == 1 || !ProcessRuns(id);
  }
  ::close(pidfd);
  return gone;
}

VettedChild::~VettedChild() {
  if (handle_ < 0) return;
  ::syscall(SYS_pidfd_send_signal, handle_, SIGKILL, nullptr, 0);
  // Reaped here, unless the daemon's reaper thread was first.
  siginfo_t info{};
  while (::waitid(P_PIDFD, static_cast<id_t>(handle_), &info, WEXITED) != 0 &&
         errno == EINTR) {
  }
  ::close(handle_);
}

void SpawnCloseFrom(posix_spawn_file_actions_t* actions, int first) {
  posix_spawn_file_actions_addclosefrom_np(actions, first);
}

int SpawnVetted(int program_fd, const std::vector<std::string>& argv,
                int stdin_fd, int stdout_fd, VettedChild* child) {
  // Copies above 3, so that no dup2 below overwrites a source.
  auto high = [](int fd) { return ::fcntl(fd, F_DUPFD_CLOEXEC, 10); };
  const int sources[3] = {high(stdin_fd), high(stdout_fd), high(program_fd)};
  auto close_sources = [&] {
    for (int fd : sources) {
      if (fd >= 0) ::close(fd);
    }
  };
  for (int fd : sources) {
    if (fd < 0) {
      const int error = errno;
      close_sources();
      return error;
    }
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sources[0], 0);
  posix_spawn_file_actions_adddup2(&actions, sources[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, sources[2], 3);
  // Nothing else of the caller's reaches the helper.
  SpawnCloseFrom(&actions, 4);
  const SessionSpawnAttributes attributes;
  std::vector<std::string> args = argv;
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  arg_pointers.push_back(nullptr);
  char* envp[] = {nullptr};
  // The program by its fd (now 3 in the child): nothing can be swapped in.
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/proc/self/fd/3", &actions,
                               attributes.get(), arg_pointers.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  close_sources();
  if (rc != 0) return rc;
  child->pid_ = pid;
  child->handle_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  return 0;
}

int RenameNoReplace(int from_dir, const char* from, int to_dir,
                    const char* to) {
  return ::renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE);
}

int RenameExchange(int from_dir, const char* from, int to_dir, const char* to) {
  return ::renameat2(from_dir, from, to_dir, to, RENAME_EXCHANGE);
}

int SyncFileSystem(int fd) { return ::syncfs(fd); }

timespec ModificationTime(const struct stat& st) { return st.st_mtim; }

int EnterThreadDirectory(int dir_fd, mode_t mask) {
  if (::unshare(CLONE_FS) != 0) return -1;
  if (::fchdir(dir_fd) != 0) return -1;
  ::umask(mask);
  return 0;
}

WakeEvent::~WakeEvent() {
  if (fd_ >= 0) ::close(fd_);
}

WakeEvent::WakeEvent(WakeEvent&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

WakeEvent& WakeEvent::operator=(WakeEvent&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

WakeEvent WakeEvent::Create() {
  WakeEvent event;
  event.fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return event;
}

void WakeEvent::Signal() const {
  const uint64_t one = 1;
  (void)!::write(fd_, &one, sizeof(one));
}

void WakeEvent::Drain() const {
  uint64_t count = 0;
  (void)!::read(fd_, &count, sizeof(count));
}

}  // namespace corral::platform
