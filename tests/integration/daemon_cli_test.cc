// The CLI contract end to end: the real corrald, the real corral CLI, real
// sandboxes of the linux runtime. What every runtime must do (exit codes,
// streams, timeouts, isolation, images) is in the conformance suite
// (tests/conformance/).
#include <catch2/catch.hpp>
#include <fstream>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/leftovers.h"

namespace corral::testing {
namespace {

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

TEST_CASE(
    "corrald refuses to start with a network.upstream_ca_file that is not "
    "an absolute path of a readable file, and says which key") {
  const std::string dir =
      Trim(Sh("mktemp -d /tmp/corral-config-test.XXXXXX").out);
  REQUIRE_FALSE(dir.empty());
  for (const std::string& value :
       {std::string("relative.pem"), dir + "/missing.pem"}) {
    INFO(value);
    {
      std::ofstream config(dir + "/corrald.toml");
      config << "[network]\nupstream_ca_file = \"" << value << "\"\n";
    }
    auto started =
        Sh("timeout 60 " + std::string(CORRAL_BINARY_DIR) +
           "/bin/corrald --config " + dir + "/corrald.toml --state-dir " + dir +
           "/state --socket " + dir + "/sock 2>&1");
    CHECK(started.exit_code != 0);
    CHECK(started.exit_code != 124);  // not a timeout: it did not serve
    CHECK(started.out.find("config network.upstream_ca_file: \"" + value +
                           "\" is not an absolute path of a readable file") !=
          std::string::npos);
  }
  Sh("rm -rf " + dir);
}

}  // namespace
}  // namespace corral::testing
