// corral-agent: the program inside every sandbox. Parses the command line and
// runs the event loop (agent.h). See README.md.
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "guest-agent/agent.h"
#include "guest-agent/spawn.h"
#include "guest-agent/vm_init.h"

namespace {

void Usage() {
  std::fprintf(stderr,
               "usage: corral-agent --listen-fd N | --listen PATH | --fd N | "
               "--vm-init | --guest-sandbox ... | --version\n"
               "  --listen-fd N  accept connections on the listening Unix "
               "socket N;\n"
               "                 a new connection replaces the current one\n"
               "  --listen PATH  bind a Unix socket at PATH (mode 0600) and "
               "serve it\n"
               "                 like --listen-fd\n"
               "  --fd N         serve the connected stream N; exit when it "
               "closes\n"
               "  --vm-init      be the init of a VM sandbox (qemu runtime)\n"
               "  --guest-sandbox corral.KEY=VALUE...\n"
               "                 start a sandbox inside a Linux VM as its root "
               "(tart runtime)\n"
               "  --drop-command-privileges\n"
               "                 start every command with no_new_privs and "
               "no capabilities\n");
}

bool ParseFd(const char* text, int* fd) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0 ||
      value > 1 << 20) {
    return false;
  }
  if (::fcntl(static_cast<int>(value), F_GETFD) < 0) return false;
  *fd = static_cast<int>(value);
  return true;
}

// Binds and listens on a Unix socket at `path` (for runtimes that cannot pass
// a listening fd, such as a container engine: the socket's directory is
// bind-mounted from the host). A leftover socket from an earlier agent is
// replaced; any other file at `path` is an error. Returns the fd or -1 after
// printing why.
int ListenOnPath(const char* path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  size_t length = std::strlen(path);
  if (length == 0 || length >= sizeof(address.sun_path)) {
    std::fprintf(stderr, "corral-agent: --listen: path too long: %s\n", path);
    return -1;
  }
  std::memcpy(address.sun_path, path, length);
  struct stat st {};
  if (::lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      std::fprintf(stderr,
                   "corral-agent: --listen: %s exists and is no "
                   "socket\n",
                   path);
      return -1;
    }
    ::unlink(path);
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::fprintf(stderr, "corral-agent: socket: %s\n", std::strerror(errno));
    return -1;
  }
  // 0600 from the start: nobody else may connect between bind and chmod.
  mode_t old_mask = ::umask(0177);
  int bound =
      ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0 || ::listen(fd, 16) != 0) {
    std::fprintf(stderr, "corral-agent: --listen %s: %s\n", path,
                 std::strerror(bound != 0 ? bind_errno : errno));
    ::close(fd);
    return -1;
  }
  return fd;
}

// PID 1 in a fresh sandbox may start without stdin/stdout/stderr. Occupy the
// free slots so that no pipe the agent creates can land on 0, 1 or 2, where a
// child's dup2 would clobber it.
void FillStandardFds() {
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) continue;
    int opened = ::open("/dev/null", O_RDWR);
    if (opened < 0) {
      int fds[2];
      if (::pipe(fds) != 0) return;
      opened = fds[0];
      if (fds[1] != fd && fds[1] > 2) ::close(fds[1]);
    }
    if (opened != fd && opened > 2) {
      ::dup2(opened, fd);
      ::close(opened);
    }
  }
}

// Whatever the launcher left open must not leak into commands (runc's
// CVE-2024-21626 was such a leak): every fd above 2 becomes close-on-exec,
// including the ones the agent itself serves.
void MarkInheritedFdsCloseOnExec() {
  if (::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) == 0) return;
  // Kernels before 5.11: walk the table (bounded, once at startup).
  rlimit limit{};
  int max_fd = 65536;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536) {
    max_fd = static_cast<int>(limit.rlim_cur);
  }
  for (int fd = 3; fd < max_fd; ++fd) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC)) {
      ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  corral::agent::AgentOptions options;
  const char* listen_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--vm-init") {
      // The init of a VM sandbox: never returns (vm_init.h).
      corral::agent::RunVmInit();
    }
    if (arg == "--guest-sandbox") {
      // The sandbox inside a VM that runs other things too (vm_init.h).
      corral::agent::RunGuestSandbox(
          std::vector<std::string>(argv + i + 1, argv + argc));
    }
    if (arg == "--version") {
      std::printf("corral-agent %s\n", corral::agent::kAgentVersion);
      return 0;
    }
    if (arg == "--help" || arg == "-h") {
      Usage();
      return 0;
    }
    if ((arg == "--listen-fd" || arg == "--fd") && i + 1 < argc) {
      int fd = -1;
      if (!ParseFd(argv[++i], &fd)) {
        std::fprintf(stderr, "corral-agent: %s: not an open fd: %s\n",
                     arg.c_str(), argv[i]);
        return 2;
      }
      (arg == "--fd" ? options.connection_fd : options.listen_fd) = fd;
      continue;
    }
    if (arg == "--drop-command-privileges") {
      corral::agent::SetDropCommandCapabilities(true);
      continue;
    }
    if (arg == "--listen" && i + 1 < argc) {
      listen_path = argv[++i];
      continue;
    }
    std::fprintf(stderr, "corral-agent: unknown argument: %s\n", arg.c_str());
    Usage();
    return 2;
  }
  int given = (options.listen_fd >= 0) + (options.connection_fd >= 0) +
              (listen_path != nullptr);
  if (given != 1) {
    std::fprintf(stderr,
                 "corral-agent: give exactly one of --listen-fd, --listen "
                 "and --fd\n");
    Usage();
    return 2;
  }
  MarkInheritedFdsCloseOnExec();
  FillStandardFds();
  if (listen_path != nullptr) {
    // After FillStandardFds: the socket must not land on 0, 1 or 2.
    options.listen_fd = ListenOnPath(listen_path);
    if (options.listen_fd < 0) return 1;
  }
  return corral::agent::RunAgent(options);
}
