// What a command inside a linux-runtime sandbox can see and do, checked from
// inside through the real daemon and CLI.
#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>
#include <thread>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

class Sandbox {
 public:
  Sandbox(const Daemon& daemon, std::vector<std::string> options = {})
      : daemon_(daemon) {
    std::vector<std::string> args = {"create"};
    args.insert(args.end(), options.begin(), options.end());
    auto r = daemon.Cli(args);
    INFO(r.err << daemon.log());
    REQUIRE(r.exit_code == 0);
    id_ = Trim(r.out);
  }
  ~Sandbox() { daemon_.Cli({"rm", id_}); }
  CommandResult Sh(const std::string& script,
                   std::vector<std::string> options = {}) const {
    std::vector<std::string> args = {"exec"};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(), {id_, "--", "sh", "-c", script});
    return daemon_.Cli(args);
  }
  const std::string& id() const { return id_; }

 private:
  const Daemon& daemon_;
  std::string id_;
};

TEST_CASE("a sandbox sees only its own processes, hostname and loopback") {
  Daemon daemon;
  Sandbox box(daemon);
  auto procs = box.Sh("ls /proc | grep -c '^[0-9]'");
  REQUIRE(procs.exit_code == 0);
  CHECK(std::stoi(Trim(procs.out)) <= 5);
  // PID 1 is the agent (run from a sealed memfd, so its comm is "memfd:...").
  auto init = box.Sh("tr '\\0' ' ' < /proc/1/cmdline");
  CHECK(init.out.find("corral-agent") != std::string::npos);
  CHECK(Trim(box.Sh("hostname").out) == "corral-" + box.id().substr(0, 8));
  CHECK(Trim(box.Sh("ls /sys/class/net").out) == "lo");
  CHECK(Trim(box.Sh("cat /sys/class/net/lo/operstate; true").out) != "");
}

TEST_CASE(
    "host files outside the image are invisible and the root is read-only") {
  Daemon daemon;
  Sandbox box(daemon);
  auto hidden =
      box.Sh("for p in /home /run /srv /opt /var/lib /var/log /mnt /media '" +
             daemon.state_dir() +
             "' /etc/shadow /etc/ssh; do test -e \"$p\" && "
             "echo \"visible: $p\"; done; true");
  CHECK(hidden.out == "");
  // /root and /var exist only as the sandbox's own empty directories.
  CHECK(box.Sh("ls -A /root").out == "");
  CHECK(box.Sh("ls -A /var").out == "tmp\n");
  auto ro =
      box.Sh("touch /usr/corral-probe 2>&1; touch /corral-probe 2>&1; true");
  CHECK(ro.out.find("Read-only file system") != std::string::npos);
  CHECK(Sh("test -e /usr/corral-probe").exit_code != 0);
  CHECK(box.Sh("echo ok > /workspace/w && echo ok > /tmp/t && cat /workspace/w "
               "/tmp/t")
            .out == "ok\nok\n");
}

TEST_CASE("the memory limit ends a memory hog and the result says why") {
  Daemon daemon;
  Sandbox box(daemon, {"--memory", "64"});
  auto hog = box.Sh("python3 -c \"x = b'a' * (300 << 20); print(len(x))\"");
  CHECK(hog.exit_code == 137);
  CHECK(hog.err.find("out of memory") != std::string::npos);
  auto json = daemon.Cli({"--json", "exec", box.id(), "--", "python3", "-c",
                          "x = b'a' * (300 << 20)"});
  CHECK(json.out.find("\"oom_killed\":true") != std::string::npos);
  // The sandbox (its agent) survived.
  CHECK(box.Sh("echo alive").out == "alive\n");
}

TEST_CASE("the pids limit contains a fork bomb") {
  Daemon daemon;
  Sandbox box(daemon, {"--pids", "32"});
  auto map = box.Sh("cat /proc/self/uid_map");
  std::istringstream fields(map.out);
  std::string inside, host_uid;
  fields >> inside >> host_uid;
  REQUIRE(!host_uid.empty());
  // The shell stops at the first fork the limit refuses.
  auto bomb =
      box.Sh("i=0; while [ $i -lt 200 ]; do sleep 4 & i=$((i+1)); done");
  CHECK(bomb.exit_code != 0);
  CHECK(bomb.err.find("fork") != std::string::npos);
  // Counted from the host: never more processes than the limit.
  auto count = Sh("ps -eo uid= | awk '$1 == " + host_uid + "' | wc -l");
  CHECK(std::stoi(Trim(count.out)) <= 32);
  CHECK(std::stoi(Trim(count.out)) >= 20);
  // Once the sleepers end, the sandbox answers again.
  std::string alive;
  for (int i = 0; i < 50 && alive != "alive\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    alive = box.Sh("echo alive").out;
  }
  CHECK(alive == "alive\n");
}

TEST_CASE(
    "seccomp, no_new_privs and dropped capabilities confine root inside") {
  Daemon daemon;
  Sandbox box(daemon);
  auto status = box.Sh(
      "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd):' "
      "/proc/self/status");
  CHECK(status.out.find("Seccomp:\t2") != std::string::npos);
  CHECK(status.out.find("NoNewPrivs:\t1") != std::string::npos);
  CHECK(status.out.find("CapEff:\t0000000000000000") != std::string::npos);
  CHECK(status.out.find("CapBnd:\t0000000000000000") != std::string::npos);
  auto unshare = box.Sh("unshare -U true 2>&1; echo rc=$?");
  CHECK(unshare.out.find("Operation not permitted") != std::string::npos);
  CHECK(unshare.out.find("rc=0") == std::string::npos);
  auto mount = box.Sh("mount -t tmpfs none /tmp 2>&1; echo rc=$?");
  CHECK(mount.out.find("rc=0") == std::string::npos);
  // Root inside is an unprivileged uid on the host: "0 <host uid> 1".
  std::istringstream map(box.Sh("cat /proc/self/uid_map").out);
  std::string inside, outside, count;
  map >> inside >> outside >> count;
  CHECK(inside == "0");
  CHECK(std::stoul(outside) >= 65536);
  CHECK(count == "1");
  auto core =
      box.Sh("echo '|/tmp/x' > /proc/sys/kernel/core_pattern 2>&1; echo rc=$?");
  CHECK(core.out.find("rc=0") == std::string::npos);
}

TEST_CASE(
    "without a user namespace, root inside still cannot write /proc/sys") {
  Daemon daemon;
  Sandbox box(daemon, {"--no-userns"});
  auto map = box.Sh("cat /proc/self/uid_map");
  CHECK(map.out.find("4294967295") != std::string::npos);  // the initial map
  auto core =
      box.Sh("echo '|/tmp/x' > /proc/sys/kernel/core_pattern 2>&1; echo rc=$?");
  CHECK(core.out.find("rc=0") == std::string::npos);
  CHECK(Trim(Sh("cat /proc/sys/kernel/core_pattern").out).find("/tmp/x") ==
        std::string::npos);
  auto caps = box.Sh("grep CapEff /proc/self/status");
  CHECK(caps.out.find("0000000000000000") != std::string::npos);
}

TEST_CASE("one sandbox cannot reach another's files or processes") {
  Daemon daemon;
  Sandbox a(daemon);
  Sandbox b(daemon);
  REQUIRE(a.Sh("echo secret > /workspace/secret; sleep 300 & true").exit_code ==
          0);
  auto look = b.Sh(
      "cat /workspace/secret 2>&1; ps -e 2>/dev/null | grep -c sleep; true");
  CHECK(look.out.find("secret\n") == std::string::npos);
  CHECK(look.out.find("No such file") != std::string::npos);
  auto uid_a = Trim(a.Sh("cat /proc/self/uid_map").out);
  auto uid_b = Trim(b.Sh("cat /proc/self/uid_map").out);
  CHECK(uid_a != uid_b);
}

}  // namespace
}  // namespace corral::testing
