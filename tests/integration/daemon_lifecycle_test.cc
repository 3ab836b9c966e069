// Lifecycle across time and crashes: TTL expiry, kill -9 of the daemon and a
// restart that re-attaches, and reconciliation of host leftovers.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/leftovers.h"

namespace corral::testing {
namespace {

std::string Create(const Daemon& daemon, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"create"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = daemon.Cli(args);
  INFO(r.err << daemon.log());
  REQUIRE(r.exit_code == 0);
  return Trim(r.out);
}

bool Listed(const Daemon& daemon, const std::string& id) {
  return daemon.Cli({"ls", "--json"}).out.find(id) != std::string::npos;
}

TEST_CASE("the reaper destroys a sandbox when its TTL expires") {
  Daemon daemon;
  // Long enough to learn its host uid first, even in a sanitizer build.
  const std::string id = Create(daemon, {"--ttl", "3"});
  const std::string host_uid = HostUidOf(daemon, id);
  const auto start = std::chrono::steady_clock::now();
  while (Listed(daemon, id) &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK_FALSE(Listed(daemon, id));
  CHECK(Leftovers(daemon, id, host_uid).empty());
  CHECK(daemon.log().find("expired sandbox " + id) != std::string::npos);
}

TEST_CASE("after kill -9 and a restart, running sandboxes are re-attached") {
  Daemon daemon;
  const std::string id = Create(daemon);
  const std::string host_uid = HostUidOf(daemon, id);
  // State that only this very sandbox has: a file in its private /tmp and a
  // background process.
  REQUIRE(
      daemon.Cli({"exec", id, "--", "sh", "-c", "echo before > /tmp/marker"})
          .exit_code == 0);

  daemon.Kill9();
  daemon.Start();

  auto marker = daemon.Cli({"exec", id, "--", "cat", "/tmp/marker"});
  INFO(marker.err << daemon.log());
  REQUIRE(marker.exit_code == 0);
  CHECK(marker.out == "before\n");
  CHECK(daemon.log().find("re-attached sandbox " + id) != std::string::npos);

  // A clean stop (SIGTERM) keeps sandboxes too.
  daemon.Stop();
  daemon.Start();
  CHECK(daemon.Cli({"exec", id, "--", "cat", "/tmp/marker"}).out == "before\n");

  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
  CHECK(Leftovers(daemon, id, host_uid).empty());
}

TEST_CASE("a restart removes sandboxes the store does not know") {
  Daemon daemon;
  const std::string id = Create(daemon);
  const std::string host_uid = HostUidOf(daemon, id);
  daemon.Kill9();
  // Forget the sandbox behind the daemon's back, as if the crash had come
  // between making it and recording it.
  auto forgot =
      Sh("sqlite3 '" + daemon.state_dir() +
         "/corral.db' \"DELETE FROM sandboxes WHERE id = '" + id + "'\"");
  REQUIRE(forgot.exit_code == 0);
  daemon.Start();
  CHECK(Leftovers(daemon, id, host_uid).empty());
  CHECK_FALSE(Listed(daemon, id));
}

TEST_CASE(
    "a sandbox whose processes die is reported failed and can be removed") {
  Daemon daemon;
  const std::string id = Create(daemon);
  const std::string host_uid = HostUidOf(daemon, id);
  // Kill the sandbox's init (the agent) from the host.
  REQUIRE(Sh("pkill -KILL -u " + host_uid).exit_code == 0);
  std::string state;
  for (int i = 0; i < 50; ++i) {
    state = daemon.Cli({"--json", "inspect", id}).out;
    if (state.find("SANDBOX_STATE_FAILED") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(state.find("SANDBOX_STATE_FAILED") != std::string::npos);
  auto exec = daemon.Cli({"exec", id, "--", "true"});
  CHECK(exec.exit_code == 125);
  CHECK(exec.err.find("failed") != std::string::npos);
  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
  CHECK(Leftovers(daemon, id, host_uid).empty());
}

TEST_CASE("under socket activation corrald serves the socket systemd passes") {
  // The socket accepts before the daemon is ready (that is the point of
  // activation): the first command waits in the backlog and then runs.
  Daemon daemon("", /*socket_activated=*/true);
  auto r = daemon.Cli({"run", "--", "echo", "activated"});
  INFO(r.err << daemon.log());
  CHECK(r.exit_code == 0);
  CHECK(r.out == "activated\n");
  CHECK(daemon.log().find("ready on " + daemon.socket()) != std::string::npos);
  daemon.Stop();
  // The socket file is systemd's: the daemon leaves it for the next start.
  CHECK(Sh("test -S '" + daemon.socket() + "'").exit_code == 0);
  daemon.Start();
  CHECK(daemon.Cli({"version"}).exit_code == 0);
}

}  // namespace
}  // namespace corral::testing
