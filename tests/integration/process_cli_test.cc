// corral kill for background processes, and what the CLI refuses: the real
// CLI against the real daemon. exec -d, ps and attach, also across a kill -9
// of the daemon, are checked on every runtime by the conformance suite
// (tests/conformance/).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

std::string CreateSandbox(const Daemon& daemon) {
  auto created = daemon.Cli({"create", "--ttl", "600"});
  INFO(created.err);
  REQUIRE(created.exit_code == 0);
  return Trim(created.out);
}

// The ps row whose text contains `needle`.
std::string Row(const std::string& table, const std::string& needle) {
  for (const auto& line : Lines(table)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return "";
}

TEST_CASE(
    "kill signals a background process, kill --rm forgets it, and refused "
    "combinations change nothing") {
  Daemon daemon;
  const std::string id = CreateSandbox(daemon);
  auto keeper =
      daemon.Cli({"exec", "-d", "--tag", "keeper", id, "--", "sleep", "1000"});
  REQUIRE(keeper.exit_code == 0);

  // kill sends TERM; kill --rm forgets.
  auto sleeper =
      daemon.Cli({"exec", "-d", "--tag", "sleeper", id, "--", "sleep", "1000"});
  REQUIRE(sleeper.exit_code == 0);
  auto killed = daemon.Cli({"kill", id, "sleeper"});
  INFO(killed.err);
  CHECK(killed.exit_code == 0);
  std::string state;
  for (int i = 0; i < 50; ++i) {
    state = Row(daemon.Cli({"ps", id}).out, "sleeper");
    if (state.find("running") == std::string::npos) break;
    usleep(100000);
  }
  CHECK(state.find("SIGTERM") != std::string::npos);
  CHECK(daemon.Cli({"kill", "--rm", id, "sleeper"}).exit_code == 0);
  CHECK(Row(daemon.Cli({"ps", id}).out, "sleeper").empty());
  auto missing = daemon.Cli({"attach", id, "sleeper"});
  CHECK(missing.exit_code != 0);
  CHECK(missing.err.find("sleeper") != std::string::npos);

  // Refused combinations change nothing.
  auto refused = daemon.Cli({"exec", "-d", "-i", id, "--", "cat"});
  CHECK(refused.exit_code != 0);
  CHECK(Lines(daemon.Cli({"ps", id}).out).size() == 2);  // header + keeper
}

}  // namespace
}  // namespace corral::testing
