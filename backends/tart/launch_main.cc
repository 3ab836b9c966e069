// corral-tart-launch: the tart runtime's per-sandbox supervisor on the host,
// started by the plugin and outliving the daemon. It
//   - opens a pseudo-terminal in raw mode and gives its slave's path to
//     `tart run` as --serial-path, which makes it the guest's virtio console
//     (/dev/hvc0 in a Linux guest),
//   - starts `tart run` (the VM lives as long as that process), with SIGKILL
//     when this process dies,
//   - and relays: every connection the daemon makes to the listening socket
//     becomes a connection to the guest's agent over that console
//     (guest-agent/wire/link_bridge.h), as corral-qemu-launch relays QEMU's
//     virtio-serial port.
// It exits when `tart run` does, and stops the VM (SIGINT, which Tart takes
// as a request to stop, then SIGKILL) when it gets SIGTERM.
//
// corral-tart-launch --report-fd N --listen-fd N -- TART ARGV...
// In the argv, @SERIAL@ becomes the pseudo-terminal's path. The report fd
// gets one line: "started <tart pid>" or "error <why>".
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backends/common/launch_report.h"
#include "corral/platform.h"
#include "guest-agent/wire/link_bridge.h"

namespace {

using corral::launch::Die;
using corral::launch::DieErrno;
using corral::launch::Report;

int ParseFd(const char* flag, const char* text) {
  const unsigned long value = corral::launch::NumberArgument(flag, text);
  if (value > (1u << 20)) Die(std::string("bad value for ") + flag);
  return static_cast<int>(value);
}

// The console's pair: the master (returned) and the slave's path. `slave`
// stays open here, so that the master never reads end-of-file (EIO) before
// Tart opens the slave, nor between Tart's opens.
int OpenConsole(std::string* path, int* slave) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) DieErrno("posix_openpt");
  if (::grantpt(master) != 0 || ::unlockpt(master) != 0) DieErrno("unlockpt");
  char name[128];
  if (::ptsname_r(master, name, sizeof(name)) != 0) DieErrno("ptsname");
  *path = name;
  *slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*slave < 0) DieErrno(std::string("open ") + name);
  // Raw: the link's bytes pass unchanged, nothing is echoed. The guest's
  // end sets its own side raw too (a virtio console is a tty there).
  termios mode{};
  if (::tcgetattr(*slave, &mode) != 0) DieErrno("tcgetattr");
  ::cfmakeraw(&mode);
  if (::tcsetattr(*slave, TCSANOW, &mode) != 0) DieErrno("tcsetattr");
  return master;
}

pid_t StartTart(std::vector<std::string> argv) {
  std::vector<char*> args;
  for (std::string& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) DieErrno("fork");
  if (pid != 0) return pid;
  // Only async-signal-safe calls (and exec) from here on.
  if (!corral::platform::DieWithParentProcess(parent)) ::_exit(1);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  // Tart gets stdin /dev/null and the log as stdout and stderr (0-2, as
  // the plugin set them), nothing else.
  corral::platform::CloseRange(3, ~0u);
  ::execv(args[0], args.data());
  const char* message = "corral-tart-launch: exec tart failed\n";
  (void)!::write(2, message, std::strlen(message));
  ::_exit(127);
}

}  // namespace

int main(int argc, char** argv) {
  corral::launch::program = "corral-tart-launch";
  int listen_fd = -1;
  std::vector<std::string> tart;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--report-fd" && i + 1 < argc) {
      corral::launch::report_fd = ParseFd("--report-fd", argv[++i]);
    } else if (arg == "--listen-fd" && i + 1 < argc) {
      listen_fd = ParseFd("--listen-fd", argv[++i]);
    } else {
      Die("unknown argument " + arg);
    }
  }
  for (; i < argc; ++i) tart.push_back(argv[i]);
  if (listen_fd < 0 || tart.empty()) {
    Die("usage: corral-tart-launch --report-fd N --listen-fd N -- TART "
        "ARGV");
  }
  // Killed with the daemon until the VM is started; from then on this is
  // the VM's supervisor, which outlives daemons by design.
  if (!corral::platform::DieWithParent(corral::launch::report_fd)) return 2;
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::string console_path;
  int slave = -1;
  const int master = OpenConsole(&console_path, &slave);
  for (std::string& arg : tart) {
    const size_t at = arg.find("@SERIAL@");
    if (at != std::string::npos) arg.replace(at, 8, console_path);
  }
  const pid_t tart_pid = StartTart(tart);
  corral::platform::OutliveParent();
  Report("started " + std::to_string(tart_pid));

  // Tart's end: the watcher waits for it without reaping it (WNOWAIT), so
  // that its pid stays Tart's while `exited` is false and the main thread,
  // holding `mutex`, may still signal it; only then does it reap. When
  // Tart is gone, the console's last slave closes and the master reads
  // end-of-file, which ends the relay.
  std::mutex mutex;
  std::condition_variable changed;
  bool exited = false;
  std::thread watcher([&, tart_pid, slave] {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(tart_pid), &info,
                    WEXITED | WNOWAIT) != 0 &&
           errno == EINTR) {
    }
    {
      std::lock_guard lock(mutex);
      exited = true;
    }
    changed.notify_all();
    int status = 0;
    while (::waitpid(tart_pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) {
      std::fprintf(stderr, "corral-tart-launch: tart exited with %d\n",
                   WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
      std::fprintf(stderr, "corral-tart-launch: tart killed by signal %d\n",
                   WTERMSIG(status));
    }
    ::close(slave);
  });

  corral::agent::wire::LinkBridgeOptions bridge;
  bridge.role = corral::agent::wire::LinkBridgeOptions::Role::kHost;
  bridge.link_fd = master;
  bridge.listen_fd = listen_fd;
  bridge.log = [](const std::string& line) {
    std::fprintf(stderr, "corral-tart-launch: %s\n", line.c_str());
  };
  corral::agent::wire::RunLinkBridge(bridge);
  // Told to stop (or the VM went): Tart stops its VM on SIGINT; SIGKILL
  // after a grace period.
  {
    std::unique_lock lock(mutex);
    if (!exited) ::kill(tart_pid, SIGINT);
    if (!changed.wait_for(lock, std::chrono::seconds(10),
                          [&] { return exited; })) {
      ::kill(tart_pid, SIGKILL);
    }
  }
  watcher.join();
  return 0;
}
