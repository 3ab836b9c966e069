#include "tests/fakes/tart/tart_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "nlohmann/json.hpp"
#include "tests/fakes/common/fake_util.h"
#include "tests/fakes/common/runc.h"
#include "tests/fakes/tart/tart_util.h"

namespace corral::fake_tart {
namespace {

using fakes::CgroupV2;
using fakes::CliExit;
using fakes::LoopbackUp;
using nlohmann::json;

constexpr char kPath[] =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// The guest's init: stays until SIGTERM or SIGINT (then powers off).
constexpr char kInit[] =
    "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done";
// How long the guest's init has to end after SIGTERM before SIGKILL.
constexpr int kGraceMs = 3000;

// Root in a VM holds every capability inside it; the fake gives the
// guest's processes the usual container set (containerd's and Docker's
// default) and the ones a VM's root uses most.
const std::vector<std::string>& Capabilities() {
  static const std::vector<std::string> kCaps = {"CAP_CHOWN",
                                                 "CAP_DAC_OVERRIDE",
                                                 "CAP_FSETID",
                                                 "CAP_FOWNER",
                                                 "CAP_MKNOD",
                                                 "CAP_NET_RAW",
                                                 "CAP_SETGID",
                                                 "CAP_SETUID",
                                                 "CAP_SETFCAP",
                                                 "CAP_SETPCAP",
                                                 "CAP_NET_BIND_SERVICE",
                                                 "CAP_SYS_CHROOT",
                                                 "CAP_KILL",
                                                 "CAP_AUDIT_WRITE",
                                                 "CAP_SYS_ADMIN",
                                                 "CAP_NET_ADMIN",
                                                 "CAP_SYS_BOOT",
                                                 "CAP_SYS_PTRACE",
                                                 "CAP_DAC_READ_SEARCH"};
  return kCaps;
}

json Process(const std::vector<std::string>& args) {
  const auto& caps = Capabilities();
  return json{{"terminal", false},
              {"user", {{"uid", 0}, {"gid", 0}}},
              {"args", args},
              {"env", {kPath}},
              {"cwd", "/"},
              {"capabilities",
               {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
              {"noNewPrivileges", false}};
}

std::string FakeDir(const std::string& home) { return home + "/corral-fake"; }
std::string BundleDir(const std::string& home, const std::string& id) {
  return FakeDir(home) + "/vms/" + id;
}
std::string RuncRoot(const std::string& home) {
  return FakeDir(home) + "/runc";
}
std::string CgroupsPath(const std::string& id) {
  return "/corral-" + id.substr(0, 0) + id;
}

int Runc(const std::string& home, const std::string& id,
         std::vector<std::string> args, int in = -1, int out = -1,
         int err = -1) {
  std::vector<std::string> argv = {RuncPath(),
                                   "--root",
                                   RuncRoot(home),
                                   "--log",
                                   BundleDir(home, id) + "/runc.log",
                                   "--log-format",
                                   "json"};
  argv.insert(argv.end(), args.begin(), args.end());
  return fakes::RunCommand(argv, in, out, err);
}

std::string RuncError(const std::string& home, const std::string& id) {
  return fakes::RuncLogError(BundleDir(home, id) + "/runc.log");
}

std::string Hostname(const std::string& name) {
  std::string out;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-';
    out += ok ? c : '-';
    if (out.size() == 63) break;
  }
  return out.empty() ? "tart-vm" : out;
}

json Bundle(const VmRun& run, const std::string& id) {
  json mounts = json::array({
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options",
        {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
         "gid=5"}}},
      {{"destination", "/dev/shm"},
       {"type", "tmpfs"},
       {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/sys"},
       {"type", "sysfs"},
       {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
      {{"destination", "/run"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "nodev", "mode=755"}}},
      {{"destination", "/tmp"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "nodev", "mode=1777"}}},
  });
  if (!run.serial_path.empty()) {
    mounts.push_back({{"destination", "/dev/hvc0"},
                      {"type", "bind"},
                      {"source", run.serial_path},
                      {"options", {"bind", "rw"}}});
  }
  const bool single = run.shares.size() == 1 && run.shares[0].name.empty();
  if (single) {
    mounts.push_back(
        {{"destination", "/mnt/shared"},
         {"type", "bind"},
         {"source", run.shares[0].path},
         {"options", {"rbind", run.shares[0].read_only ? "ro" : "rw"}}});
  } else if (!run.shares.empty()) {
    mounts.push_back({{"destination", "/mnt/shared"},
                      {"type", "tmpfs"},
                      {"source", "tmpfs"},
                      {"options", {"nosuid", "nodev", "mode=755"}}});
    for (const auto& share : run.shares) {
      mounts.push_back({{"destination", "/mnt/shared/" + share.name},
                        {"type", "bind"},
                        {"source", share.path},
                        {"options", {"rbind", share.read_only ? "ro" : "rw"}}});
    }
  }
  json resources = {
      {"devices", json::array({{{"allow", false}, {"access", "rwm"}},
                               {{"allow", true},
                                {"type", "c"},
                                {"major", 136},
                                {"access", "rwm"}}})},
      // No swap, as a VM's RAM.
      {"memory", fakes::MemoryWithoutSwap(run.memory)},
      {"cpu", fakes::CpuQuota(run.cpus)}};
  return json{
      {"ociVersion", "1.0.2"},
      {"process", Process({"/bin/sh", "-c", kInit})},
      {"root", {{"path", run.vm_dir + "/rootfs"}, {"readonly", false}}},
      {"hostname", Hostname(run.name)},
      {"mounts", mounts},
      {"linux",
       {{"namespaces", json::array({{{"type", "pid"}},
                                    {{"type", "mount"}},
                                    {{"type", "ipc"}},
                                    {{"type", "uts"}},
                                    {{"type", "network"}},
                                    {{"type", "cgroup"}}})},
        {"cgroupsPath", CgroupsPath(id)},
        {"resources", resources},
        // The host's kernel is shared: what a VM's own kernel would let
        // its root change stays out of reach.
        {"maskedPaths",
         {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
          "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
          "/proc/sched_debug", "/proc/scsi", "/sys/firmware"}},
        {"readonlyPaths",
         {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
          "/proc/sysrq-trigger"}}}}};
}

// Removes the runc container, its bundle and any cgroup it left.
void Cleanup(const std::string& home, const std::string& id) {
  if (fakes::IsDirectory(RuncRoot(home) + "/" + id)) {
    Runc(home, id, {"delete", "--force", id});
  }
  fakes::RemoveTree(BundleDir(home, id));
  const std::string cgroup = CgroupsPath(id);
  if (CgroupV2()) {
    ::rmdir(("/sys/fs/cgroup" + cgroup).c_str());
  } else {
    for (const char* controller :
         {"memory", "cpu", "cpu,cpuacct", "cpuacct", "pids", "devices",
          "freezer", "blkio", "cpuset", "net_cls", "net_cls,net_prio",
          "net_prio", "perf_event", "hugetlb", "rdma", "misc", "systemd",
          "unified"}) {
      ::rmdir(("/sys/fs/cgroup/" + std::string(controller) + cgroup).c_str());
    }
  }
}

bool WaitInit(int pidfd, int timeout_ms) {
  return fakes::WaitPidfd(pidfd, timeout_ms);
}

void Say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

std::string RuncPath() {
  auto runc = fakes::FindRunc();
  if (!runc) Refuse(fakes::kRuncNotFound);
  return *runc;
}

std::string ContainerId(const std::string& home, const std::string& name) {
  return "tart-fake-" + fakes::Sha256Hex(home + "\n" + name).substr(0, 16);
}

std::string CleanupLockPath(const std::string& home, const std::string& name) {
  return FakeDir(home) + "/locks/" + ContainerId(home, name) + ".lock";
}

void RunVm(const VmRun& run) {
  const std::string& home = run.home;
  const std::string id = ContainerId(home, run.name);
  const std::string bundle = BundleDir(home, id);
  const std::string runc = RuncPath();

  // Signals are taken from a signalfd from here on.
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) {
    sigaddset(&mask, s);
  }
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  // Ignored ones (a shell's `&` ignores SIGINT) would never arrive.
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) {
    ::signal(s, SIG_DFL);
  }
  int signals = ::signalfd(-1, &mask, SFD_CLOEXEC);
  ::signal(SIGPIPE, SIG_IGN);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  fakes::MakeDirs(FakeDir(home) + "/locks", 0700);
  fakes::MakeDirs(FakeDir(home) + "/vms", 0700);
  fakes::MakeDirs(RuncRoot(home), 0700);
  // Held (with the keeper, which shares it) until the container is gone:
  // a keeper still removing the previous one is waited for.
  Flock cleanup_lock(CleanupLockPath(home, run.name), true);
  Cleanup(home, id);
  if (!fakes::MakeDirs(bundle, 0700) ||
      !fakes::WriteFileAtomic(bundle + "/config.json",
                              Bundle(run, id).dump(2))) {
    Refuse("cannot write the runc bundle in " + bundle);
  }

  // The keeper: removes the container when this process ends, however.
  int keeper_pipe[2];
  if (::pipe2(keeper_pipe, O_CLOEXEC) != 0) Refuse("pipe");
  std::fflush(nullptr);
  pid_t keeper = ::fork();
  if (keeper < 0) Refuse("fork");
  if (keeper == 0) {
    ::setsid();
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2}) {
      ::signal(s, SIG_IGN);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int null_fd = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);
    int keep_pipe = ::fcntl(keeper_pipe[0], F_DUPFD_CLOEXEC, 3);
    int keep_lock = ::fcntl(cleanup_lock.fd(), F_DUPFD_CLOEXEC, 3);
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != keep_pipe && fd != keep_lock) ::close(fd);
    }
    char c = 0;
    ssize_t n;
    while ((n = ::read(keep_pipe, &c, 1)) < 0 && errno == EINTR) {
    }
    if (n == 1 && c == 'D') ::_exit(0);  // `tart run` cleaned up itself
    Cleanup(home, id);
    ::_exit(0);
  }
  ::close(keeper_pipe[0]);
  const int keeper_fd = keeper_pipe[1];

  auto finish = [&](bool ok) {
    Cleanup(home, id);
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (ok) {
      (void)!::write(keeper_fd, "D", 1);
    }
    ::close(keeper_fd);
    while (::waitpid(keeper, nullptr, 0) < 0 && errno == EINTR) {
    }
  };

  int code = Runc(
      home, id,
      {"create", "--bundle", bundle, "--pid-file", bundle + "/init.pid", id});
  if (code != 0) {
    std::string why = RuncError(home, id);
    finish(true);
    Runtime("tart fake (tests/fakes/tart): the VM could not start: " + why);
  }
  auto pid_text = fakes::ReadFile(bundle + "/init.pid");
  const pid_t init = pid_text ? std::atoi(pid_text->c_str()) : 0;
  int pidfd = init > 0 ? fakes::PidfdOpen(init) : -1;
  if (pidfd < 0 || !LoopbackUp(init) || Runc(home, id, {"start", id}) != 0) {
    std::string why = RuncError(home, id);
    finish(true);
    Runtime("tart fake (tests/fakes/tart): the VM could not start: " + why);
  }
  fakes::WriteFileAtomic(bundle + "/ready", std::to_string(init) + "\n");

  int ending_signal = 0;
  for (;;) {
    pollfd items[2] = {{pidfd, POLLIN, 0}, {signals, POLLIN, 0}};
    if (::poll(items, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (items[0].revents != 0) {
      Say("guest has stopped the virtual machine");
      break;
    }
    if (items[1].revents == 0) continue;
    signalfd_siginfo info{};
    if (::read(signals, &info, sizeof(info)) != sizeof(info)) continue;
    const int s = static_cast<int>(info.ssi_signo);
    if (s == SIGUSR2) {
      // VZVirtualMachine.requestStop: the guest is asked to power off.
      Say("Requesting guest OS to stop...");
      Runc(home, id, {"kill", id, "TERM"});
      continue;
    }
    if (s == SIGUSR1) continue;  // suspend: macOS guests only
    // SIGINT (`tart stop`, Ctrl+C): the VM is stopped, then exit 0;
    // SIGTERM and SIGHUP: Tart does not handle them, its process (and
    // the VM in it) just ends.
    if (s == SIGINT) Say("Stopping VM...");
    ending_signal = s == SIGINT ? 0 : s;
    Runc(home, id, {"kill", id, "TERM"});
    if (!WaitInit(pidfd, kGraceMs)) {
      Runc(home, id, {"kill", id, "KILL"});
      WaitInit(pidfd, 10000);
    }
    break;
  }
  while (::waitpid(init, nullptr, WNOHANG) < 0 && errno == EINTR) {
  }
  finish(true);
  if (run.serial_fd >= 0) ::close(run.serial_fd);
  std::fflush(nullptr);
  if (ending_signal != 0) {
    ::signal(ending_signal, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, ending_signal);
    ::sigprocmask(SIG_UNBLOCK, &only, nullptr);
    ::raise(ending_signal);
  }
  ::_exit(0);
}

int ExecInVm(const std::string& home, const std::string& name,
             const std::vector<std::string>& command, bool interactive) {
  const std::string id = ContainerId(home, name);
  const std::string bundle = BundleDir(home, id);
  if (!fakes::PathExists(bundle + "/ready")) {
    Runtime(
        "Failed to connect to the VM using its control socket: the guest has "
        "not started (tart fake: no guest agent, runc exec), is the Tart "
        "Guest Agent running?");
  }
  const std::string file = bundle + "/exec-" + fakes::NewUuid() + ".json";
  if (!fakes::WriteFileAtomic(file, Process(command).dump())) {
    Refuse("cannot write " + file);
  }
  ::signal(SIGPIPE, SIG_IGN);
  int out[2], err[2], in[2] = {-1, -1};
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 ||
      (interactive && ::pipe2(in, O_CLOEXEC) != 0)) {
    Refuse("pipe");
  }
  // runc exec --detach hands the command our pipes (without --detach,
  // runc copies them itself and waits for their end, which a daemon left
  // in the guest would hold). This process is a subreaper, so the command
  // becomes its child when runc exits, and its exit status is waited for.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  const std::string pid_file = file + ".pid";
  std::vector<std::string> argv = {RuncPath(),
                                   "--root",
                                   RuncRoot(home),
                                   "--log",
                                   bundle + "/exec.log",
                                   "--log-format",
                                   "json",
                                   "exec",
                                   "--detach",
                                   "--pid-file",
                                   pid_file,
                                   "--process",
                                   file,
                                   id};
  std::fflush(nullptr);
  pid_t runc =
      fakes::SpawnCommand(argv, interactive ? in[0] : -1, out[1], err[1]);
  if (runc < 0) Refuse("fork");
  ::close(out[1]);
  ::close(err[1]);
  if (interactive) ::close(in[0]);
  int runc_status = 0;
  while (::waitpid(runc, &runc_status, 0) < 0 && errno == EINTR) {
  }
  ::unlink(file.c_str());
  auto pid_text = fakes::ReadFile(pid_file);
  ::unlink(pid_file.c_str());
  const pid_t child = pid_text ? std::atoi(pid_text->c_str()) : 0;
  int pidfd = child > 0 ? fakes::PidfdOpen(child) : -1;
  if (!WIFEXITED(runc_status) || WEXITSTATUS(runc_status) != 0 || pidfd < 0) {
    // runc said why on the stderr it shares with the command.
    char text[65536];
    ::fcntl(err[0], F_SETFL, ::fcntl(err[0], F_GETFL) | O_NONBLOCK);
    ssize_t n = ::read(err[0], text, sizeof(text));
    if (n > 0) (void)!::write(2, text, static_cast<size_t>(n));
    return WIFEXITED(runc_status) && WEXITSTATUS(runc_status) != 0
               ? WEXITSTATUS(runc_status)
               : 255;
  }
  for (int fd : {out[0], err[0], in[1]}) {
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  auto write_all = [](int fd, const char* data, size_t size) {
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd, data + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  };
  char buffer[65536];
  // Copies what is there now; false at end of stream.
  auto relay = [&](int from, int to) {
    for (;;) {
      ssize_t n = ::read(from, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return n < 0 && errno == EAGAIN;
      write_all(to, buffer, static_cast<size_t>(n));
    }
  };
  bool out_open = true, err_open = true;
  bool stdin_open = interactive;
  std::string pending;  // read from our stdin, not yet taken by the guest
  int code = -1;
  for (;;) {
    std::vector<pollfd> items = {{pidfd, POLLIN, 0},
                                 {out_open ? out[0] : -1, POLLIN, 0},
                                 {err_open ? err[0] : -1, POLLIN, 0},
                                 {-1, POLLIN, 0},
                                 {-1, POLLOUT, 0}};
    if (interactive && in[1] >= 0) {
      if (pending.empty() && stdin_open) items[3].fd = 0;
      if (!pending.empty()) items[4].fd = in[1];
    }
    if (::poll(items.data(), items.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (items[1].revents != 0) out_open = relay(out[0], 1);
    if (items[2].revents != 0) err_open = relay(err[0], 2);
    if (items[3].revents != 0) {
      ssize_t n = ::read(0, buffer, sizeof(buffer));
      if (n > 0) {
        pending.assign(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        stdin_open = false;
      }
    }
    if (items[4].revents != 0) {
      ssize_t n = ::write(in[1], pending.data(), pending.size());
      if (n > 0) {
        pending.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        pending.clear();
        stdin_open = false;
        ::close(in[1]);
        in[1] = -1;
      }
    }
    if (interactive && in[1] >= 0 && !stdin_open && pending.empty()) {
      ::close(in[1]);
      in[1] = -1;
    }
    if (items[0].revents != 0) {
      // The command ended: what it wrote is in the pipes; whatever it
      // left running in the guest keeps only the fake's pipe ends.
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      code = WIFEXITED(status)     ? WEXITSTATUS(status)
             : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                   : 255;
      if (out_open) relay(out[0], 1);
      if (err_open) relay(err[0], 2);
      break;
    }
  }
  return code;
}

}  // namespace corral::fake_tart
