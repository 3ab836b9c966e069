// The CLI contract end to end: the real corrald, the real corral CLI, real
// sandboxes of the linux runtime.
#include <catch2/catch.hpp>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/leftovers.h"

namespace corral::testing {
namespace {

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

TEST_CASE(
    "corral run shows the sandbox's own pid namespace, hostname and only lo") {
  Daemon daemon;
  auto r = daemon.Cli(
      {"run", "--", "sh", "-c", "echo $$; hostname; ls /sys/class/net"});
  INFO(r.err << daemon.log());
  REQUIRE(r.exit_code == 0);
  auto lines = Lines(r.out);
  REQUIRE(lines.size() == 3);
  // The agent is PID 1; the shell is one of the first processes.
  int pid = std::stoi(lines[0]);
  CHECK(pid > 1);
  CHECK(pid < 10);
  CHECK(StartsWith(lines[1], "corral-"));
  CHECK(lines[2] == "lo");
}

TEST_CASE(
    "corral run exits with the command's code, 128+signal, 125 for its own "
    "errors") {
  Daemon daemon;
  CHECK(daemon.Cli({"run", "--", "sh", "-c", "exit 3"}).exit_code == 3);
  CHECK(daemon.Cli({"run", "--", "sh", "-c", "kill -TERM $$"}).exit_code ==
        128 + 15);
  auto missing = daemon.Cli({"run", "--", "no-such-program-here"});
  CHECK(missing.exit_code == 127);
  auto bad = daemon.Cli({"run", "--runtime", "no-such-runtime", "--", "true"});
  CHECK(bad.exit_code == 125);
  CHECK(bad.err.find("unknown runtime") != std::string::npos);
  // Every run destroyed its sandbox.
  CHECK(Trim(daemon.Cli({"ls", "--json"}).out).find("\"id\"") ==
        std::string::npos);
}

TEST_CASE(
    "corral run streams stdout and stderr separately and forwards stdin with "
    "-i") {
  Daemon daemon;
  auto r = daemon.Cli({"run", "--", "sh", "-c", "echo out; echo err >&2"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  std::string input(1 << 20, 'x');
  auto piped = daemon.Cli({"run", "-i", "--", "wc", "-c"}, input);
  REQUIRE(piped.exit_code == 0);
  CHECK(Trim(piped.out) == std::to_string(input.size()));
}

TEST_CASE("create, exec, ls, inspect, extend and rm manage a sandbox") {
  Daemon daemon;
  auto created = daemon.Cli({"create", "--memory", "256", "--pids", "64",
                             "--label", "team=blue", "-e", "GREETING=hello"});
  INFO(created.err << daemon.log());
  REQUIRE(created.exit_code == 0);
  const std::string id = Trim(created.out);
  REQUIRE(id.size() == 32);

  auto exec = daemon.Cli({"exec", id, "--", "sh", "-c", "echo $GREETING; pwd"});
  REQUIRE(exec.exit_code == 0);
  CHECK(exec.out == "hello\n/workspace\n");

  // The workspace persists between commands; /tmp too.
  REQUIRE(daemon.Cli({"exec", id, "--", "sh", "-c", "echo kept > /workspace/f"})
              .exit_code == 0);
  CHECK(daemon.Cli({"exec", id, "--", "cat", "/workspace/f"}).out == "kept\n");

  auto ls = daemon.Cli({"ls"});
  CHECK(ls.out.find(id.substr(0, 12)) != std::string::npos);
  auto filtered = daemon.Cli({"ls", "--label", "team=red"});
  CHECK(filtered.out.find(id.substr(0, 12)) == std::string::npos);

  auto inspect = daemon.Cli({"inspect", id});
  REQUIRE(inspect.exit_code == 0);
  CHECK(inspect.out.find("256") != std::string::npos);
  auto json = daemon.Cli({"--json", "inspect", id});
  REQUIRE(json.exit_code == 0);
  CHECK(json.out.find("\"memory_mib\"") != std::string::npos);
  CHECK(json.out.find("SANDBOX_STATE_RUNNING") != std::string::npos);

  auto extended = daemon.Cli({"extend", id, "--ttl", "7200"});
  CHECK(extended.exit_code == 0);

  const std::string host_uid = HostUidOf(daemon, id);
  CHECK(!host_uid.empty());
  auto removed = daemon.Cli({"rm", id});
  REQUIRE(removed.exit_code == 0);
  CHECK(Leftovers(daemon, id, host_uid).empty());
  auto gone = daemon.Cli({"inspect", id});
  CHECK(gone.exit_code == 125);
  CHECK(gone.err.find("no sandbox") != std::string::npos);
}

TEST_CASE("exec timeouts kill the whole process group and say so") {
  Daemon daemon;
  auto created = daemon.Cli({"create"});
  REQUIRE(created.exit_code == 0);
  const std::string id = Trim(created.out);
  auto r = daemon.Cli({"exec", "--timeout", "1", id, "--", "sh", "-c",
                       "sleep 60 & echo $! > /tmp/child; sleep 60"});
  CHECK(r.exit_code == 124);
  CHECK(r.err.find("timed out") != std::string::npos);
  // The background child was in the same process group: gone too.
  auto check =
      daemon.Cli({"exec", id, "--", "sh", "-c",
                  "kill -0 $(cat /tmp/child) && echo alive || echo gone"});
  CHECK(Trim(check.out) == "gone");
}

TEST_CASE("runtimes and doctor describe what this host supports") {
  Daemon daemon;
  auto runtimes = daemon.Cli({"runtimes"});
  REQUIRE(runtimes.exit_code == 0);
  CHECK(runtimes.out.find("linux") != std::string::npos);
  // Runtimes not built in this release are listed with the reason.
  CHECK(runtimes.out.find("firecracker") != std::string::npos);
  auto doctor = daemon.Cli({"doctor"});
  CHECK(doctor.exit_code == 0);
  CHECK(doctor.out.find("linux") != std::string::npos);
}

TEST_CASE("an imported busybox rootfs runs commands") {
  Daemon daemon;
  const std::string tar =
      std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar";
  auto built =
      Sh("test -f '" + tar + "' || bash '" + std::string(CORRAL_SOURCE_DIR) +
         "/deploy/images/build-busybox.sh' '" + tar + "'");
  REQUIRE(built.exit_code == 0);
  auto imported = daemon.Cli({"image", "import", "busybox", tar});
  INFO(imported.err);
  REQUIRE(imported.exit_code == 0);
  CHECK(daemon.Cli({"image", "ls"}).out.find("busybox") != std::string::npos);
  auto r = daemon.Cli({"run", "--image", "busybox", "--", "sh", "-c",
                       "ls /bin | grep -c . ; cat /etc/passwd | head -1"});
  INFO(r.err << daemon.log());
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("root:") != std::string::npos);
  // An image in use cannot be removed; an unused one can.
  auto created = daemon.Cli({"create", "--image", "busybox"});
  REQUIRE(created.exit_code == 0);
  CHECK(daemon.Cli({"image", "rm", "busybox"}).exit_code == 125);
  REQUIRE(daemon.Cli({"rm", Trim(created.out)}).exit_code == 0);
  CHECK(daemon.Cli({"image", "rm", "busybox"}).exit_code == 0);
}

}  // namespace
}  // namespace corral::testing
