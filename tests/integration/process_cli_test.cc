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
    "exec -d with a readiness check answers once the process is ready, and "
    "fails with the reason when it is not") {
  Daemon daemon;
  const std::string id = CreateSandbox(daemon);
  // A server on a port: ready once it listens (read from /proc/net/tcp).
  auto web = daemon.Cli({"exec", "-d", "--tag", "web", "--ready-port", "8124",
                         id, "--", "python3", "-m", "http.server", "8124",
                         "--bind", "127.0.0.1"});
  INFO(web.err);
  REQUIRE(web.exit_code == 0);
  auto fetched =
      daemon.Cli({"exec", id, "--", "python3", "-c",
                  "import urllib.request; print(urllib.request.urlopen("
                  "'http://127.0.0.1:8124/').status)"});
  CHECK(fetched.out == "200\n");
  // The same as a URL, and a file that appears, and a command.
  CHECK(daemon
            .Cli({"exec", "-d", "--ready-url", "http://127.0.0.1:8124/", id,
                  "--", "sleep", "60"})
            .exit_code == 0);
  CHECK(daemon
            .Cli({"exec", "-d", "--ready-path", "flag", id, "--", "sh", "-c",
                  "sleep 0.5; touch /workspace/flag; sleep 60"})
            .exit_code == 0);
  CHECK(daemon
            .Cli({"exec", "-d", "--ready-cmd", "test -e /workspace/flag", id,
                  "--", "sleep", "60"})
            .exit_code == 0);
  auto json = daemon.Cli({"--json", "exec", "-d", "--ready-port", "8124", id,
                          "--", "sleep", "60"});
  CHECK(json.out.find("\"readiness\":\"READINESS_READY\"") !=
        std::string::npos);

  // Not ready in time; exited first: exit 125 with the reason, and the
  // process id on stdout (its output can be read).
  auto late = daemon.Cli({"exec", "-d", "--ready-path", "never",
                          "--ready-timeout", "1", id, "--", "sleep", "60"});
  CHECK(late.exit_code == 125);
  CHECK(late.err.find("not ready after 1 s: never does not exist") !=
        std::string::npos);
  CHECK(Trim(late.out).size() == 16);
  auto crashed = daemon.Cli(
      {"exec", "-d", "--ready-port", "9", id, "--", "sh", "-c", "exit 3"});
  CHECK(crashed.exit_code == 125);
  CHECK(crashed.err.find("exited (exit code 3) before it was ready") !=
        std::string::npos);

  // Bad checks change nothing.
  const size_t before = Lines(daemon.Cli({"ps", id}).out).size();
  CHECK(daemon.Cli({"exec", "-d", "--ready-port", "70000", id, "--", "true"})
            .exit_code == 125);
  CHECK(daemon.Cli({"exec", "-d", "--ready-url", "ftp://x/", id, "--", "true"})
            .exit_code == 125);
  CHECK(daemon
            .Cli({"exec", "-d", "--ready-port", "1", "--ready-path", "x", id,
                  "--", "true"})
            .exit_code == 125);
  CHECK(daemon.Cli({"exec", "--ready-port", "1", id, "--", "true"}).exit_code ==
        125);
  CHECK(Lines(daemon.Cli({"ps", id}).out).size() == before);
  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
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
