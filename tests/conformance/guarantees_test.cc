// The conformance suite, part 2: each guarantee a sandbox's runtime claims
// (Sandbox.guarantees) is checked for what it promises. A guarantee a
// runtime does not claim is printed and not checked.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>
#include <string>
#include <thread>

#include "tests/conformance/conformance.h"

namespace corral::testing::conformance {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE(
    "guarantee user-namespace: root inside is an unprivileged user on the "
    "host") {
  Conformance suite;
  const std::string id = suite.Create();
  const v1::Sandbox sandbox = suite.Get(id);
  if (!HasGuarantee(sandbox, v1::GUARANTEE_USER_NAMESPACE)) {
    suite.NoteUnclaimed(sandbox, v1::GUARANTEE_USER_NAMESPACE);
    return;
  }
  // uid_map: "0 <host uid> <count>"; root inside is a plain uid outside.
  std::istringstream map(suite.Sh(id, "cat /proc/self/uid_map").out);
  std::string inside;
  unsigned long outside = 0;
  map >> inside >> outside;
  CHECK(inside == "0");
  CHECK(outside != 0);
  CHECK(outside >= 65536);  // not an account of the host's
  CHECK(Trim(suite.Sh(id, "id -u").out) == "0");
  // The host agrees: the sandbox's processes run as that uid.
  auto processes = SandboxHostProcesses(suite, id);
  REQUIRE_FALSE(processes.empty());
  for (const HostProcess& process : processes) {
    CHECK(process.uid == outside);
  }
}

TEST_CASE(
    "guarantee seccomp: a filter is loaded and namespace and mount calls fail "
    "with EPERM") {
  Conformance suite;
  const std::string id = suite.Create();
  const v1::Sandbox sandbox = suite.Get(id);
  if (!HasGuarantee(sandbox, v1::GUARANTEE_SECCOMP)) {
    suite.NoteUnclaimed(sandbox, v1::GUARANTEE_SECCOMP);
    return;
  }
  CHECK(Contains(suite.Sh(id, "grep Seccomp: /proc/self/status").out,
                 "Seccomp:\t2"));
  auto unshare = suite.Sh(id, "unshare -U true 2>&1; echo rc=$?");
  CHECK(Contains(unshare.out, "Operation not permitted"));
  CHECK_FALSE(Contains(unshare.out, "rc=0"));
  auto mount = suite.Sh(id, "mount -t tmpfs none /tmp 2>&1; echo rc=$?");
  CHECK((Contains(mount.out, "ermission denied") ||
         Contains(mount.out, "not permitted")));
  CHECK_FALSE(Contains(mount.out, "rc=0"));
}

TEST_CASE(
    "guarantee network-isolation: the sandbox has its own network stack and "
    "cannot reach the host's loopback") {
  Conformance suite;
  const std::string id = suite.Create();
  const v1::Sandbox sandbox = suite.Get(id);
  if (!HasGuarantee(sandbox, v1::GUARANTEE_NETWORK_ISOLATION)) {
    suite.NoteUnclaimed(sandbox, v1::GUARANTEE_NETWORK_ISOLATION);
    return;
  }
  if (SeparateKernel(suite)) {
    // A kernel of its own is a network stack of its own (namespace numbers
    // say nothing across kernels: every kernel's first is the same).
    CHECK(IsolationDomainOf(suite, id) !=
          "boot:" + Trim(Sh("cat /proc/sys/kernel/random/boot_id").out));
  } else {
    auto inside = suite.Sh(id, "readlink /proc/self/ns/net");
    REQUIRE(inside.exit_code == 0);
    CHECK(Trim(inside.out) != Trim(Sh("readlink /proc/self/ns/net").out));
  }
  CHECK(Trim(suite.Sh(id, "tail -n +3 /proc/net/dev | cut -d: -f1").out) ==
        "lo");

  // A port listening on the host's loopback is not the sandbox's loopback.
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address),
                 sizeof(address)) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  socklen_t length = sizeof(address);
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address),
                        &length) == 0);
  const std::string port = std::to_string(ntohs(address.sin_port));
  // The static probe, which runs on any image.
  auto copied =
      suite.Cli({"cp", std::string(CORRAL_BINARY_DIR) + "/tests/net_probe",
                 id + ":/workspace/probe"});
  INFO(copied.err);
  REQUIRE(copied.exit_code == 0);
  auto connect =
      suite.Sh(id, "/workspace/probe connect 127.0.0.1 " + port + " 2>&1");
  ::close(listener);
  INFO(connect.out << connect.err);
  CHECK(connect.out == "failed: connect: Connection refused\n");
}

TEST_CASE(
    "guarantee cgroup-limits: the memory limit ends a memory hog, the exit "
    "says why, and the sandbox lives on") {
  Conformance suite;
  const std::string id = suite.Create({"--memory", "64"});
  const v1::Sandbox sandbox = suite.Get(id);
  CHECK(sandbox.limits().memory_mib() == 64);
  if (!HasGuarantee(sandbox, v1::GUARANTEE_CGROUP_LIMITS)) {
    suite.NoteUnclaimed(sandbox, v1::GUARANTEE_CGROUP_LIMITS);
    return;
  }
  // dd with a buffer of `mib` MiB, filled from /dev/zero (any image has
  // dd): the process holds all of it at once.
  auto holding = [](int mib) {
    return "dd if=/dev/zero of=/dev/null bs=" + std::to_string(mib) +
           "M count=1 2>/dev/null";
  };
  auto hog = suite.Sh(id, holding(300));
  INFO(hog.out << hog.err);
  CHECK(hog.exit_code == 137);
  CHECK(Contains(hog.err, "out of memory"));
  auto json = suite.Cli({"--json", "exec", id, "--", "sh", "-c", holding(300)});
  CHECK(Contains(json.out, "\"oom_killed\":true"));
  // A command that stays within the limit is not flagged.
  auto small = suite.Cli({"--json", "exec", id, "--", "sh", "-c", holding(8)});
  INFO(small.out << small.err);
  CHECK(small.exit_code == 0);
  CHECK_FALSE(Contains(small.out, "\"oom_killed\":true"));
  // The agent survived.
  CHECK(suite.Sh(id, "echo alive").out == "alive\n");
}

TEST_CASE(
    "guarantee cgroup-limits: the pids limit contains a fork bomb and the "
    "sandbox recovers") {
  Conformance suite;
  const std::string id = suite.Create({"--pids", "32"});
  const v1::Sandbox sandbox = suite.Get(id);
  CHECK(sandbox.limits().pids() == 32);
  if (!HasGuarantee(sandbox, v1::GUARANTEE_CGROUP_LIMITS)) {
    suite.NoteUnclaimed(sandbox, v1::GUARANTEE_CGROUP_LIMITS);
    return;
  }
  const std::string pid_namespace =
      SeparateKernel(suite) ? "" : PidNamespaceOf(suite, id);
  // The shell stops at the first fork the limit refuses.
  auto bomb =
      suite.Sh(id, "i=0; while [ $i -lt 200 ]; do sleep 4 & i=$((i+1)); done");
  CHECK(bomb.exit_code != 0);
  CHECK(Contains(bomb.err, "fork"));
  // While the sleepers run: never more processes than the limit, and most
  // of it used. Counted from the host, or in a VM (whose processes the host
  // cannot see) by its own kernel: the commands' cgroup, which a new
  // command joins beyond the limit (only forks are refused) and reads with
  // shell builtins alone; it is one of the count.
  size_t count = 0;
  if (SeparateKernel(suite)) {
    auto counted = suite.Sh(id,
                            "read c < /proc/self/cgroup; "
                            "read n < /sys/fs/cgroup${c#0::}/pids.current; "
                            "echo $n");
    INFO(counted.err);
    REQUIRE(counted.exit_code == 0);
    count = std::stoul(Trim(counted.out)) - 1;
  } else {
    count = HostProcessesIn(pid_namespace).size();
  }
  CHECK(count <= 32);
  CHECK(count >= 20);
  // Once the sleepers end, the sandbox answers again.
  std::string alive;
  for (int i = 0; i < 50 && alive != "alive\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    alive = suite.Sh(id, "echo alive").out;
  }
  CHECK(alive == "alive\n");
}

// Bytes the files under `path` take on the host's disk (allocated blocks).
uint64_t HostDiskBytes(const std::string& path) {
  auto du = corral::testing::Sh("du -sk '" + path + "' | cut -f1");
  return Trim(du.out).empty() ? 0 : std::stoull(Trim(du.out)) * 1024;
}

TEST_CASE(
    "guarantee disk-limit: writing past the sandbox's disk fails with ENOSPC "
    "inside, the sandbox and the host live on, and the limit holds after a "
    "daemon restart") {
  Conformance suite;
  constexpr uint64_t kDiskMib = 64;
  const std::string id = suite.Create({"--disk", std::to_string(kDiskMib)});
  const v1::Sandbox sandbox = suite.Get(id);
  CHECK(sandbox.limits().disk_mib() == kDiskMib);
  if (!HasGuarantee(sandbox, v1::GUARANTEE_DISK_LIMIT)) {
    // The runtimes that can (an ext4 image per workspace, a VM's disk)
    // must, with their default settings.
    CHECK((suite.runtime() != "linux" && suite.runtime() != "oci" &&
           suite.runtime() != "qemu"));
    suite.NoteUnclaimed(sandbox, v1::GUARANTEE_DISK_LIMIT);
    // Unclaimed, it may not be required either.
    auto refused = suite.Cli(
        {"create", "--runtime", suite.runtime(), "--require", "disk-limit"});
    CHECK(refused.exit_code == 125);
    CHECK(Contains(refused.err, "GUARANTEE_DISK_LIMIT"));
    return;
  }
  const std::string workspace =
      suite.daemon().state_dir() + "/workspaces/" + id;
  // Four times the disk: the write stops at the limit, inside.
  auto fill = suite.Sh(id,
                       "dd if=/dev/zero of=/workspace/fill bs=1M count=256 "
                       "2>&1; echo rc=$?; stat -c %s /workspace/fill");
  INFO(fill.out << fill.err);
  CHECK(Contains(fill.out, "No space left on device"));
  CHECK_FALSE(Contains(fill.out, "rc=0"));
  const std::vector<std::string> lines = Lines(fill.out);
  REQUIRE_FALSE(lines.empty());
  CHECK(std::stoull(lines.back()) <= (kDiskMib << 20));
  // The host's disk took at most the sandbox's disk size for it.
  CHECK(HostDiskBytes(workspace) <= ((kDiskMib + 8) << 20));
  // The sandbox lives on, and frees what it wrote.
  CHECK(suite.Sh(id, "rm /workspace/fill && echo alive").out == "alive\n");
  // Nothing else it can write is on disk: the root is read-only.
  CHECK(suite.Sh(id, "touch /usr/corral-disk-test").exit_code != 0);

  // The limit holds after a daemon restart.
  suite.daemon().Kill9();
  suite.daemon().Start();
  auto again = suite.Sh(id,
                        "dd if=/dev/zero of=/workspace/fill bs=1M count=256 "
                        "2>&1; echo rc=$?");
  INFO(again.out << again.err << suite.daemon().log());
  CHECK(Contains(again.out, "No space left on device"));
  CHECK(HostDiskBytes(workspace) <= ((kDiskMib + 8) << 20));
  CHECK(suite.Sh(id, "echo alive").out == "alive\n");
}

}  // namespace
}  // namespace corral::testing::conformance
