// What a command inside a linux-runtime sandbox can see and do, checked from
// inside through the real daemon and CLI: the linux runtime's own host image
// layout and options. What every runtime must enforce (processes, hostname,
// network, read-only root, capabilities, no_new_privs, /proc/sys, seccomp,
// limits, sandboxes apart) is checked by the conformance suite
// (tests/conformance/).
#include <catch2/catch.hpp>
#include <sstream>

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

TEST_CASE("host files outside the linux host image are invisible") {
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

TEST_CASE("each linux sandbox's root is one host uid of its own") {
  Daemon daemon;
  Sandbox a(daemon);
  Sandbox b(daemon);
  // "0 <host uid> 1": exactly one uid mapped, and never the same twice.
  auto map_of = [](const Sandbox& box) {
    std::istringstream map(box.Sh("cat /proc/self/uid_map").out);
    std::string inside, outside, count;
    map >> inside >> outside >> count;
    CHECK(inside == "0");
    CHECK(count == "1");
    return outside;
  };
  const std::string uid_a = map_of(a);
  const std::string uid_b = map_of(b);
  CHECK(!uid_a.empty());
  CHECK(uid_a != uid_b);
}

}  // namespace
}  // namespace corral::testing
