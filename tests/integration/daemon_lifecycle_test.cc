// Lifecycle of the daemon and its sandboxes over time: TTL expiry and
// socket activation. Crash recovery (kill -9 and re-attach, sandboxes killed
// from the host, reconciliation of what the store forgot) is checked on
// every runtime by the conformance suite (tests/conformance/).
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
