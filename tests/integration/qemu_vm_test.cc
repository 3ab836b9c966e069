// The qemu runtime through the real daemon, CLI and QEMU (software
// emulation where KVM does not work): what only a VM gives beyond the
// conformance suite. Its own kernel; QEMU confined on the host; the
// workspace as a disk of the size asked; pause and resume; memory snapshots
// started again as new sandboxes; a daemon restart of a paused sandbox; and
// the failures (no kernel, a kernel that does not boot) that leave nothing.
// Needs the kernel tests/run.sh builds into <build>/vm-kernel.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/snapshots.grpc.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/vm_host.h"

namespace corral::testing {
namespace {

namespace v1 = corral::v1;

const std::string kKernelDir = std::string(CORRAL_BINARY_DIR) + "/vm-kernel";

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A daemon whose qemu runtime uses the build's kernel.
std::string QemuConfig(const std::string& kernel_dir = kKernelDir) {
  return "[runtimes.qemu]\nkernel_dir = \"" + kernel_dir + "\"\n";
}

void RequireQemu(const Daemon& daemon) {
  auto runtimes = daemon.Cli({"--json", "runtimes"});
  INFO(runtimes.out << runtimes.err);
  REQUIRE(Contains(runtimes.out, "\"name\":\"qemu\",\"available\":true"));
}

std::string Create(const Daemon& daemon, std::vector<std::string> flags = {}) {
  std::vector<std::string> args = {"create", "--runtime", "qemu"};
  args.insert(args.end(), flags.begin(), flags.end());
  auto created = daemon.Cli(args);
  INFO(created.err << daemon.log());
  REQUIRE(created.exit_code == 0);
  return Trim(created.out);
}

// The host processes of a VM sandbox: those whose cgroup ends in its id.
struct HostSide {
  pid_t qemu = 0;
  std::vector<pid_t> all;
};

HostSide HostProcessesOf(const std::string& id) {
  HostSide side;
  side.all = SandboxHostPids(id);
  side.qemu = ProcessNamed(side.all, "qemu-system");
  return side;
}

}  // namespace

TEST_CASE(
    "a qemu sandbox runs its own kernel: another release and boot on the "
    "emulated CPU without the host's processes, and inspect says how",
    "[qemu]") {
  Daemon daemon(QemuConfig());
  RequireQemu(daemon);
  ImportBusybox(daemon);
  const std::string id = Create(daemon, {"--image", "busybox"});
  auto inspect = daemon.Cli({"--json", "inspect", id});
  INFO(inspect.out);
  const bool tcg = Contains(inspect.out, "\"accel\":\"tcg\"");
  CHECK((tcg || Contains(inspect.out, "\"accel\":\"kvm\"")));
  const std::string release = Trim(ReadWholeFile(kKernelDir + "/release"));
  CHECK(Contains(inspect.out, "\"kernel\":\"" + release + "\""));

  auto uname = Sh(daemon, id, "uname -r");
  REQUIRE(uname.exit_code == 0);
  CHECK(Trim(uname.out) == release);
  CHECK(Trim(uname.out) != Trim(corral::testing::Sh("uname -r").out));
  CHECK(Trim(Sh(daemon, id, "cat /proc/sys/kernel/random/boot_id").out) !=
        Trim(ReadWholeFile("/proc/sys/kernel/random/boot_id")));
  auto cpu = Sh(daemon, id, "grep -m1 'model name' /proc/cpuinfo");
  if (tcg) {
    CHECK(Contains(cpu.out, "QEMU TCG CPU"));
  } else {
    CHECK(Trim(cpu.out) ==
          Trim(corral::testing::Sh("grep -m1 'model name' /proc/cpuinfo").out));
  }
  // The guest's process table is its own: the daemon, this test and QEMU
  // itself are nowhere in it.
  auto commands = Sh(daemon, id, "cat /proc/[0-9]*/comm");
  CHECK_FALSE(Contains(commands.out, "corrald"));
  CHECK_FALSE(Contains(commands.out, "qemu_vm_test"));
  CHECK_FALSE(Contains(commands.out, "qemu-system"));
  CHECK(Contains(commands.out, "init"));  // the agent, pid 1
}

TEST_CASE(
    "QEMU runs as the sandbox's own unprivileged host uid with no new "
    "privileges and its seccomp filter and no network device, whatever the "
    "options",
    "[qemu]") {
  Daemon daemon(QemuConfig());
  RequireQemu(daemon);
  ImportBusybox(daemon);
  // --no-userns (which an admin may ask for) changes nothing for a VM: QEMU
  // is never root and never keeps a capability.
  const std::string with_userns_off =
      Create(daemon, {"--image", "busybox", "--no-userns"});
  const std::string id = Create(daemon, {"--image", "busybox"});
  for (const std::string& sandbox : {with_userns_off, id}) {
    HostSide vm = HostProcessesOf(sandbox);
    REQUIRE(vm.qemu > 0);
    const std::string vm_status =
        ReadWholeFile("/proc/" + std::to_string(vm.qemu) + "/status");
    INFO(vm_status);
    std::istringstream vm_lines(vm_status);
    std::vector<uid_t> uids;
    for (std::string line; std::getline(vm_lines, line);) {
      if (line.rfind("Uid:", 0) != 0) continue;
      std::istringstream values(line.substr(4));
      for (uid_t value; values >> value;) uids.push_back(value);
    }
    REQUIRE(uids.size() == 4);  // real, effective, saved, filesystem
    for (uid_t uid : uids) CHECK(uid >= 65536);
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapAmb"}) {
      CHECK(Contains(vm_status, std::string(set) + ":\t0000000000000000"));
    }
  }
  HostSide side = HostProcessesOf(id);
  REQUIRE(side.qemu > 0);
  const std::string status =
      ReadWholeFile("/proc/" + std::to_string(side.qemu) + "/status");
  INFO(status);
  CHECK(Contains(status, "NoNewPrivs:\t1"));
  CHECK(Contains(status, "Seccomp:\t2"));
  CHECK(Contains(status, "CapEff:\t0000000000000000"));
  const std::string cmdline =
      corral::testing::Sh("tr '\\0' ' ' < /proc/" + std::to_string(side.qemu) +
                          "/cmdline")
          .out;
  CHECK_FALSE(Contains(cmdline, "netdev"));
  CHECK_FALSE(Contains(cmdline, "-nic"));
  CHECK(Trim(Sh(daemon, id, "ls /sys/class/net").out) == "lo");
  // No fd of the daemon's reaches QEMU: only its disks, kernel, sockets.
  auto fds =
      corral::testing::Sh("ls -l /proc/" + std::to_string(side.qemu) + "/fd");
  CHECK_FALSE(Contains(fds.out, "corral.db"));
  CHECK_FALSE(Contains(fds.out, "corrald.log"));
}

TEST_CASE(
    "the workspace is a disk of the size asked: writing past it fails with "
    "no space left and the sandbox lives on",
    "[qemu]") {
  Daemon daemon(QemuConfig());
  RequireQemu(daemon);
  ImportBusybox(daemon);
  const std::string id = Create(daemon, {"--image", "busybox", "--disk", "64"});
  auto df = Sh(daemon, id, "df -m /workspace | tail -1");
  INFO(df.out);
  auto full = Sh(daemon, id,
                 "dd if=/dev/zero of=/workspace/big bs=1M count=100 2>&1; "
                 "echo rc=$?");
  INFO(full.out);
  CHECK(Contains(full.out, "No space left on device"));
  CHECK_FALSE(Contains(full.out, "rc=0"));
  auto size = Sh(daemon, id, "du -m /workspace/big | cut -f1");
  CHECK(std::stoi(Trim(size.out)) < 64);
  CHECK(Sh(daemon, id, "rm /workspace/big && echo ok").out == "ok\n");
}

TEST_CASE(
    "pause stops the VM (no CPU and no exec) and resume goes on where it "
    "was: a paused sandbox stays paused across a daemon restart",
    "[qemu]") {
  Daemon daemon(QemuConfig());
  RequireQemu(daemon);
  ImportBusybox(daemon);
  const std::string id = Create(daemon, {"--image", "busybox"});
  REQUIRE(Sh(daemon, id,
             "(i=0; while true; do i=$((i+1)); echo $i > /tmp/count; "
             "sleep 0.05; done) >/dev/null 2>&1 & echo $! > /tmp/pid")
              .exit_code == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const pid_t qemu = HostProcessesOf(id).qemu;
  REQUIRE(qemu > 0);

  auto paused = daemon.Cli({"pause", id});
  INFO(paused.err);
  REQUIRE(paused.exit_code == 0);
  CHECK(paused.out == id + " paused\n");
  CHECK(Contains(daemon.Cli({"ls"}).out, "paused"));
  auto refused = daemon.Cli({"exec", id, "--", "true"});
  CHECK(refused.exit_code == 125);
  CHECK(Contains(refused.err, "paused"));
  // A paused VM's vCPUs do not run: QEMU uses (almost) no CPU.
  const long before = CpuTicks(qemu);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  CHECK(CpuTicks(qemu) - before < 20);              // under 0.2 s of 2 s
  CHECK(daemon.Cli({"pause", id}).exit_code == 0);  // already: fine

  // Across a daemon restart it stays paused, then resumes with its process.
  daemon.Kill9();
  daemon.Start();
  CHECK(Contains(daemon.Cli({"inspect", id}).out, "paused"));
  REQUIRE(daemon.Cli({"resume", id}).exit_code == 0);
  auto first = Sh(daemon, id, "cat /tmp/count; cat /tmp/pid");
  INFO(first.err << daemon.log());
  REQUIRE(first.exit_code == 0);
  const auto values = Lines(first.out);
  REQUIRE(values.size() >= 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto later =
      Sh(daemon, id, "cat /tmp/count; kill -0 " + values[1] + " && echo alive");
  const auto after = Lines(later.out);
  REQUIRE(after.size() >= 2);
  CHECK(std::stol(after[0]) > std::stol(values[0]));
  CHECK(after[1] == "alive");
  CHECK(daemon.Cli({"resume", id}).exit_code == 0);  // running: fine
}

TEST_CASE(
    "a memory snapshot starts a new sandbox where the old one was (a running "
    "process and a file in /tmp never in the workspace) while the source "
    "runs on and nothing is left once both are removed",
    "[qemu]") {
  Daemon daemon(QemuConfig());
  RequireQemu(daemon);
  ImportBusybox(daemon);
  const std::string id =
      Create(daemon, {"--image", "busybox", "--memory", "96"});
  REQUIRE(Sh(daemon, id,
             "sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/pid; "
             "echo only-in-memory > /tmp/note; echo kept > /workspace/file")
              .exit_code == 0);
  auto saved = daemon.Cli({"snapshot", "create", "--memory", id, "warm"});
  INFO(saved.err);
  REQUIRE(saved.exit_code == 0);
  auto listed = daemon.Cli({"--json", "snapshot", "ls", id});
  CHECK(Contains(listed.out, "\"memory\":true"));
  // The source goes on, changing what the snapshot does not see.
  REQUIRE(Sh(daemon, id, "echo later > /tmp/note").exit_code == 0);

  auto forked = daemon.Cli({"fork", id + "@warm"});
  INFO(forked.err << daemon.log());
  REQUIRE(forked.exit_code == 0);
  const std::string child = Trim(forked.out);
  auto inside = Sh(daemon, child,
                   "cat /tmp/note /workspace/file; kill -0 $(cat /tmp/pid) && "
                   "echo sleeper-alive");
  INFO(inside.err);
  CHECK(inside.out == "only-in-memory\nkept\nsleeper-alive\n");
  CHECK(Contains(daemon.Cli({"--json", "inspect", child}).out,
                 "\"restored\":\"yes\""));
  // Two machines now: what one does, the other does not see.
  REQUIRE(Sh(daemon, child, "echo child > /tmp/note").exit_code == 0);
  CHECK(Sh(daemon, id, "cat /tmp/note").out == "later\n");
  // The fork's baseline is the snapshot: its diff starts empty.
  CHECK(Trim(daemon.Cli({"diff", "--name-status", child}).out).empty());

  // A saved machine does not change size.
  auto resized = daemon.Cli({"fork", "--memory", "256", id + "@warm"});
  CHECK(resized.exit_code == 125);
  CHECK(Contains(resized.err, "memory snapshot"));

  // Removing the snapshot removes its files; the source, then everything.
  const std::string saved_dir =
      daemon.state_dir() + "/runtime/qemu/" + id + "/memory/warm";
  struct stat st {};
  CHECK(::stat(saved_dir.c_str(), &st) == 0);
  REQUIRE(daemon.Cli({"snapshot", "rm", id, "warm"}).exit_code == 0);
  CHECK(::stat(saved_dir.c_str(), &st) != 0);
  REQUIRE(daemon.Cli({"rm", id, child}).exit_code == 0);
  CHECK(Leftovers(daemon, id).empty());
  CHECK(Leftovers(daemon, child).empty());
}

TEST_CASE(
    "a sandbox on the host image can pause but not save its memory and "
    "requiring memory-snapshot for one is refused",
    "[qemu]") {
  Daemon daemon(QemuConfig());
  RequireQemu(daemon);
  const std::string id = Create(daemon);
  auto saved = daemon.Cli({"snapshot", "create", "--memory", id, "warm"});
  CHECK(saved.exit_code == 125);
  CHECK(Contains(saved.err, "GUARANTEE_MEMORY_SNAPSHOT"));
  CHECK(Trim(daemon.Cli({"snapshot", "ls", id}).out).find("warm") ==
        std::string::npos);
  CHECK(daemon.Cli({"pause", id}).exit_code == 0);
  CHECK(daemon.Cli({"resume", id}).exit_code == 0);
  CHECK(Sh(daemon, id, "echo alive").out == "alive\n");
  auto required = daemon.Cli(
      {"create", "--runtime", "qemu", "--require", "memory-snapshot"});
  CHECK(required.exit_code == 125);
  CHECK(Contains(required.err, "GUARANTEE_MEMORY_SNAPSHOT"));
  // The refused sandbox left nothing: only the first one is listed.
  CHECK(Lines(Trim(daemon.Cli({"ls"}).out)).size() == 2);
}

TEST_CASE(
    "without a kernel the runtime says how to build one and a kernel that "
    "does not boot fails the create with QEMU's words and leaves nothing",
    "[qemu]") {
  {
    Daemon daemon(QemuConfig("/nonexistent/vm-kernel"));
    auto runtimes = daemon.Cli({"runtimes"});
    CHECK(Contains(runtimes.out, "build-vm-kernel.sh"));
    auto refused = daemon.Cli({"run", "--runtime", "qemu", "--", "true"});
    CHECK(refused.exit_code == 125);
    CHECK(Contains(refused.err, "qemu"));
  }
  // A copy of the kernel directory whose vmlinux is cut short.
  char pattern[] = "/tmp/corral-bad-kernel-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::string bad = pattern;
  REQUIRE(corral::testing::Sh("cp -r '" + kKernelDir + "/modules' '" +
                              kKernelDir + "/release' '" + bad +
                              "/' && head -c 4096 '" + kKernelDir +
                              "/vmlinux' > '" + bad + "/vmlinux'")
              .exit_code == 0);
  {
    Daemon daemon(QemuConfig(bad));
    RequireQemu(daemon);
    auto failed = daemon.Cli({"create", "--runtime", "qemu"});
    INFO(failed.err);
    CHECK(failed.exit_code == 125);
    CHECK(Contains(failed.err, "VM"));
    CHECK(Contains(failed.err, "qemu-system-x86_64"));
    CHECK(Lines(Trim(daemon.Cli({"ls"}).out)).size() <= 1);
    // The runtime's own files stay: its cache, the accelerator it chose and
    // the workspace disks it formats ahead of time.
    CHECK(Trim(corral::testing::Sh("ls '" + daemon.state_dir() +
                                   "/runtime/qemu' | grep -v -e cache -e "
                                   "accel -e disk-pool")
                   .out)
              .empty());
  }
  corral::testing::Sh("rm -rf '" + bad + "'");
}

}  // namespace corral::testing
