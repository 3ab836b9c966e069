// corral-qemu-launch: the qemu runtime's per-sandbox supervisor on the host,
// started by the plugin and outliving the daemon. It
//   - joins the sandbox's cgroups (so QEMU and virtiofsd are counted there),
//   - for the host image, builds the read-only share (the plugin's skeleton
//     plus read-only binds of the host directories) in a mount namespace of
//     its own and starts virtiofsd on it,
//   - starts QEMU as the sandbox's unprivileged host uid, with no new
//     privileges, only the fds it needs, and SIGKILL when this process dies,
//   - keeps QEMU's serial console in a bounded log file,
//   - and relays: every connection the daemon makes to the listening socket
//     becomes a connection to the guest's agent over the one virtio-serial
//     port (guest-agent/wire/link_bridge.h).
// It exits when QEMU does (killing virtiofsd), and kills QEMU when it gets
// SIGTERM. Single-threaded but for the console drain.
//
// corral-qemu-launch --report-fd N --listen-fd N --console-log PATH
//     [--join CGROUP_PROCS]... [--uid U --gid G [--group G]...]
//     [--qemu-fds N] [--virtiofsd PATH --share DIR --share-socket PATH
//      [--bind SOURCE DESTINATION]...] -- QEMU ARGV...
// In QEMU's argv, @LINK@, @CONSOLE@ and @SHARE@ become the fds of the agent
// port's chardev, the console's chardev and virtiofsd's vhost-user socket.
// The plugin passes QEMU's own fds (disks, kernel, initramfs, QMP) at 10 and
// up (--qemu-fds of them); only QEMU keeps them. The report fd gets one line:
// "started <qemu pid>" or "error <why>".
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backends/common/launch_report.h"
#include "corral/platform.h"
#include "guest-agent/wire/link_bridge.h"

namespace {

// Where QEMU finds what this process made for it.
constexpr int kLinkFd = 5;
constexpr int kConsoleFd = 6;
constexpr int kShareFd = 7;
constexpr int kFirstQemuFd = 10;
// The console log stops growing here (a guest can print without end).
constexpr size_t kMaxConsoleBytes = 1u << 20;

struct Options {
  int report_fd = -1;
  int listen_fd = -1;
  std::string console_log;
  std::vector<std::string> join;
  bool drop_privileges = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  int qemu_fds = 0;
  std::string virtiofsd;
  std::string share;
  std::string share_socket;
  std::vector<std::pair<std::string, std::string>> binds;
  std::vector<std::string> qemu;
};

using corral::launch::Die;
using corral::launch::DieErrno;
using corral::launch::Report;

Options ParseOptions(int argc, char** argv) {
  Options options;
  auto number = [&](int& i) -> unsigned long {
    if (i + 1 >= argc) Die(std::string("missing value for ") + argv[i]);
    ++i;
    return corral::launch::NumberArgument(argv[i - 1], argv[i]);
  };
  auto text = [&](int& i) -> std::string {
    if (i + 1 >= argc) Die(std::string("missing value for ") + argv[i]);
    return argv[++i];
  };
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--report-fd") {
      options.report_fd = static_cast<int>(number(i));
      corral::launch::report_fd = options.report_fd;
    } else if (arg == "--listen-fd") {
      options.listen_fd = static_cast<int>(number(i));
    } else if (arg == "--console-log") {
      options.console_log = text(i);
    } else if (arg == "--join") {
      options.join.push_back(text(i));
    } else if (arg == "--uid") {
      options.uid = static_cast<uid_t>(number(i));
      options.drop_privileges = true;
    } else if (arg == "--gid") {
      options.gid = static_cast<gid_t>(number(i));
    } else if (arg == "--group") {
      options.groups.push_back(static_cast<gid_t>(number(i)));
    } else if (arg == "--qemu-fds") {
      options.qemu_fds = static_cast<int>(number(i));
    } else if (arg == "--virtiofsd") {
      options.virtiofsd = text(i);
    } else if (arg == "--share") {
      options.share = text(i);
    } else if (arg == "--share-socket") {
      options.share_socket = text(i);
    } else if (arg == "--bind") {
      std::string source = text(i);
      options.binds.emplace_back(source, text(i));
    } else {
      Die("unknown argument " + arg);
    }
  }
  for (; i < argc; ++i) options.qemu.push_back(argv[i]);
  if (options.listen_fd < 0 || options.console_log.empty() ||
      options.qemu.empty()) {
    Die("usage: corral-qemu-launch --report-fd N --listen-fd N "
        "--console-log PATH [...] -- QEMU ARGV");
  }
  if (options.share.empty() != options.virtiofsd.empty() ||
      options.share.empty() != options.share_socket.empty()) {
    Die("--virtiofsd, --share and --share-socket go together");
  }
  return options;
}

void JoinCgroups(const std::vector<std::string>& procs_files) {
  for (const std::string& path : procs_files) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) DieErrno("join " + path);
    ::close(fd);
  }
}

void Mount(const std::string& source, const std::string& target,
           unsigned long flags) {
  if (::mount(source.c_str(), target.c_str(), nullptr, flags, nullptr) != 0) {
    DieErrno("mount " + source + " on " + target);
  }
}

// The host image as the guest sees it: the skeleton the plugin wrote, with
// the host's directories bound read-only into it, and the whole read-only,
// in a mount namespace that only this process and virtiofsd share.
void BuildShare(const Options& options) {
  if (::unshare(CLONE_NEWNS) != 0) DieErrno("unshare(CLONE_NEWNS)");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    DieErrno("make / private");
  }
  Mount(options.share, options.share, MS_BIND);
  const unsigned long kReadOnly =
      MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;
  for (const auto& [source, destination] : options.binds) {
    const std::string target = options.share + destination;
    Mount(source, target, MS_BIND);
    Mount(source, target, kReadOnly);
  }
  Mount(options.share, options.share, kReadOnly);
}

int ListenAt(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) DieErrno("socket");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) Die("path too long: " + path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 1) != 0) {
    DieErrno("listen on " + path);
  }
  return fd;
}

int ConnectTo(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) DieErrno("socket");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
      0) {
    DieErrno("connect to " + path);
  }
  return fd;
}

// In a child: `sources[i]` onto `targets[i]`, safe when they overlap.
void PlaceFds(const std::vector<int>& sources,
              const std::vector<int>& targets) {
  std::vector<int> high;
  for (int fd : sources) {
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 100);
    if (copy < 0) ::_exit(126);
    high.push_back(copy);
  }
  for (size_t i = 0; i < high.size(); ++i) {
    if (::dup2(high[i], targets[i]) != targets[i]) ::_exit(126);
  }
}

// Forks a child that dies with this process and execs `argv` with only fds
// 0-2, `keep` (placed at their targets) and [kFirstQemuFd, +extra).
// `setup` runs in the child before the exec (privilege drop). An exec
// failure is reported by the child on stderr and exit 127.
template <typename Setup>
pid_t SpawnChild(const std::vector<std::string>& argv,
                 const std::vector<int>& keep_sources,
                 const std::vector<int>& keep_targets, int extra, Setup setup) {
  const pid_t parent = ::getpid();
  std::vector<char*> args;
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) DieErrno("fork");
  if (pid != 0) return pid;
  // Only async-signal-safe calls (and exec) from here on.
  if (!corral::platform::DieWithParentProcess(parent)) ::_exit(1);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  PlaceFds(keep_sources, keep_targets);
  // Everything else goes: 3 and 4 (listen and report) and up to 9, and
  // whatever lies past the fds given to the child.
  corral::platform::CloseRange(3, static_cast<unsigned>(kLinkFd - 1));
  for (int fd = kLinkFd; fd < kFirstQemuFd; ++fd) {
    bool kept = false;
    for (int target : keep_targets) kept = kept || target == fd;
    if (!kept) ::close(fd);
  }
  corral::platform::CloseRange(static_cast<unsigned>(kFirstQemuFd + extra),
                               ~0u);
  setup();
  ::execv(args[0], args.data());
  const char* message = "corral-qemu-launch: exec failed\n";
  (void)!::write(2, message, std::strlen(message));
  ::_exit(127);
}

void DrainConsole(int fd, const std::string& path) {
  int log = ::open(path.c_str(),
                   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  size_t written = 0;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (log >= 0 && written < kMaxConsoleBytes) {
      size_t keep =
          std::min(static_cast<size_t>(n), kMaxConsoleBytes - written);
      if (::write(log, buffer, keep) > 0) written += keep;
    }
  }
  if (log >= 0) ::close(log);
  ::close(fd);
}

void KillAndReap(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  corral::launch::program = "corral-qemu-launch";
  Options options = ParseOptions(argc, argv);
  // Killed with the daemon until the VM is started; from then on this is
  // the VM's supervisor, which outlives daemons by design.
  if (!corral::platform::DieWithParent(options.report_fd)) return 2;
  // Signals end the relay (link_bridge.h), which then ends QEMU; blocked
  // before any thread exists, so that no other thread takes them.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  JoinCgroups(options.join);

  pid_t virtiofsd = 0;
  int share_fd = -1;
  if (!options.share.empty()) {
    BuildShare(options);
    int listen = ListenAt(options.share_socket);
    const std::vector<std::string> argv_share = {
        options.virtiofsd,
        "--fd=" + std::to_string(kLinkFd),
        "-o",
        "source=" + options.share,
        "-o",
        "cache=auto",
        "-o",
        "sandbox=namespace",
        "-o",
        "no_posix_lock",
        "-o",
        "no_flock",
        "-o",
        "log_level=err"};
    virtiofsd = SpawnChild(argv_share, {listen}, {kLinkFd}, 0, [] {});
    share_fd = ConnectTo(options.share_socket);
    ::close(listen);
  }

  int link[2], console[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) != 0 ||
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) != 0) {
    DieErrno("socketpair");
  }
  std::vector<std::string> qemu = options.qemu;
  for (std::string& arg : qemu) {
    for (auto [word, fd] : {std::pair<const char*, int>{"@LINK@", kLinkFd},
                            {"@CONSOLE@", kConsoleFd},
                            {"@SHARE@", kShareFd}}) {
      const size_t at = arg.find(word);
      if (at != std::string::npos) {
        arg.replace(at, std::strlen(word), std::to_string(fd));
      }
    }
  }
  std::vector<int> sources = {link[1], console[1]};
  std::vector<int> targets = {kLinkFd, kConsoleFd};
  if (share_fd >= 0) {
    sources.push_back(share_fd);
    targets.push_back(kShareFd);
  }
  const Options& o = options;
  const pid_t qemu_pid = SpawnChild(qemu, sources, targets, o.qemu_fds, [&o] {
    if (o.drop_privileges) {
      if (::setgroups(o.groups.size(), o.groups.data()) != 0 ||
          ::setresgid(o.gid, o.gid, o.gid) != 0 ||
          ::setresuid(o.uid, o.uid, o.uid) != 0) {
        ::_exit(126);
      }
    }
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  });
  ::close(link[1]);
  ::close(console[1]);
  if (share_fd >= 0) ::close(share_fd);
  corral::platform::CloseRange(
      static_cast<unsigned>(kFirstQemuFd),
      static_cast<unsigned>(kFirstQemuFd + options.qemu_fds - 1));
  corral::platform::OutliveParent();
  Report("started " + std::to_string(qemu_pid));

  std::thread drain(DrainConsole, console[0], options.console_log);
  corral::agent::wire::LinkBridgeOptions bridge;
  bridge.role = corral::agent::wire::LinkBridgeOptions::Role::kHost;
  bridge.link_fd = link[0];
  bridge.listen_fd = options.listen_fd;
  bridge.log = [](const std::string& line) {
    std::fprintf(stderr, "corral-qemu-launch: %s\n", line.c_str());
  };
  corral::agent::wire::RunLinkBridge(bridge);
  KillAndReap(qemu_pid);
  KillAndReap(virtiofsd);
  drain.join();
  return 0;
}
