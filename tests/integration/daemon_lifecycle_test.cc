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

namespace corral::testing {
namespace {

// The processes of host uid `uid` and the cgroup directories named `id`.
std::string HostTraces(const std::string& id, const std::string& uid) {
  return Sh("ps -eo uid=,pid=,comm= | awk '$1 == " + uid +
            "'; find /sys/fs/cgroup -maxdepth 5 -type d -name '" + id +
            "' 2>/dev/null")
      .out;
}

TEST_CASE(
    "a daemon whose state is gone leaves its sandboxes to an explicit "
    "corrald --cleanup-orphans, never to another daemon's start") {
  auto gone = std::make_unique<Daemon>();
  const std::string orphan = Create(*gone);
  const std::string orphan_uid = HostUidOf(*gone, orphan);
  REQUIRE_FALSE(orphan_uid.empty());
  REQUIRE_FALSE(Trim(HostTraces(orphan, orphan_uid)).empty());
  // Its daemon killed, then its state removed (an operator wiping a test
  // directory, a disk replaced): the sandbox runs on with nobody's record.
  gone->Kill9();
  const std::string gone_state = gone->state_dir();
  const std::string gone_instance =
      Trim(Sh("cat '" + gone_state + "/instance-id'").out);
  REQUIRE(gone_instance.size() == 16);
  REQUIRE(Sh("rm -rf '" + gone_state + "'").exit_code == 0);

  // Another daemon starts, makes a sandbox, is killed and restarted: its
  // reconciliations leave the orphan alone.
  Daemon other;
  const std::string mine = Create(other);
  other.Kill9();
  other.Start();
  CHECK_FALSE(Trim(HostTraces(orphan, orphan_uid)).empty());
  auto registry = Sh("grep -l '" + orphan + "' /var/lib/corral-host/uids/*");
  CHECK_FALSE(Trim(registry.out).empty());

  // The explicit request removes it, and only it. (Scoped to this
  // instance: other tests' daemons, and their orphans, live on this host
  // meanwhile; an operator runs it without --instance.)
  auto live_refused =
      RunProcess({BinaryDir() + "/corrald", "--cleanup-orphans", "--instance",
                  Trim(Sh("cat '" + other.state_dir() + "/instance-id'").out)});
  CHECK(live_refused.exit_code == 1);
  CHECK(live_refused.err.find("is live") != std::string::npos);
  auto cleanup =
      RunProcess({BinaryDir() + "/corrald", "--cleanup-orphans", "--instance",
                  gone_instance, "--log-level", "warn"});
  INFO(cleanup.out << cleanup.err);
  CHECK(cleanup.out.find("removed linux sandbox") != std::string::npos);
  CHECK(cleanup.out.find(orphan) != std::string::npos);
  CHECK(cleanup.out.find("released host uid " + orphan_uid) !=
        std::string::npos);
  for (int attempt = 0; attempt < 30; ++attempt) {
    if (Trim(HostTraces(orphan, orphan_uid)).empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(Trim(HostTraces(orphan, orphan_uid)).empty());
  CHECK(Trim(Sh("grep -l '" + orphan +
                "' /var/lib/corral-host/uids/* "
                "2>/dev/null")
                 .out)
            .empty());
  auto still = other.Cli({"exec", mine, "--", "echo", "mine"});
  INFO(still.err);
  CHECK(still.out == "mine\n");
  // Nothing more to do the second time.
  auto again = RunProcess({BinaryDir() + "/corrald", "--cleanup-orphans",
                           "--instance", gone_instance, "--log-level", "warn"});
  CHECK(again.out.find(orphan) == std::string::npos);
}

}  // namespace
}  // namespace corral::testing
