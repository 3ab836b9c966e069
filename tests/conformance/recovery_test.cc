// The conformance suite, part 4: crash recovery. The daemon is killed (-9)
// or stopped and started again; sandboxes, their files, background processes
// and shells carry on. A sandbox killed behind the daemon's back is reported
// failed, and one the daemon's store forgot is removed at the next start.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/conformance/conformance.h"
#include "tests/conformance/shell_client.h"

namespace corral::testing::conformance {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

bool Listed(const Conformance& suite, const std::string& id) {
  return Contains(suite.Cli({"ls", "--json"}).out, id);
}

// The sandbox's processes as the host sees them; REQUIREs some.
std::vector<HostProcess> HostProcessesOf(const Conformance& suite,
                                         const std::string& id) {
  auto processes = SandboxHostProcesses(suite, id);
  REQUIRE_FALSE(processes.empty());
  return processes;
}

TEST_CASE(
    "after kill -9 and a restart of the daemon, running sandboxes are "
    "re-attached with their files, and a clean stop keeps them too") {
  Conformance suite;
  const std::string id = suite.Create();
  // State that only this very sandbox has: files in its private /tmp and in
  // its workspace.
  REQUIRE(suite.Sh(id, "echo before > /tmp/marker; echo kept > /workspace/f")
              .exit_code == 0);
  const auto processes = HostProcessesOf(suite, id);

  suite.daemon().Kill9();
  suite.daemon().Start();

  auto marker = suite.Cli({"exec", id, "--", "cat", "/tmp/marker"});
  INFO(marker.err << suite.daemon().log());
  REQUIRE(marker.exit_code == 0);
  CHECK(marker.out == "before\n");
  CHECK(Contains(suite.daemon().log(), "re-attached sandbox " + id));
  CHECK(suite.Get(id).runtime() == suite.runtime());
  CHECK(suite.Get(id).state() == v1::SANDBOX_STATE_RUNNING);
  auto file = suite.Cli({"file", "cat", id, "/workspace/f"});
  INFO(file.err);
  CHECK(file.out == "kept\n");

  suite.daemon().Stop();
  suite.daemon().Start();
  CHECK(suite.Sh(id, "cat /tmp/marker /workspace/f").out == "before\nkept\n");

  REQUIRE(suite.Cli({"rm", id}).exit_code == 0);
  CHECK(Leftovers(suite.daemon(), id, processes).empty());
}

TEST_CASE(
    "corral attach picks up a background process again after kill -9 of the "
    "daemon, with nothing lost or repeated") {
  Conformance suite;
  const std::string id = suite.Create();
  // Numbers 1..3000, a line every few milliseconds.
  auto started =
      suite.Cli({"exec", "-d", "--tag", "count", id, "--", "sh", "-c",
                 "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo $i; "
                 "[ $((i % 100)) = 0 ] && sleep 0.1; done; true"});
  REQUIRE(started.exit_code == 0);

  // A first client reads part of it and goes away; it notes its offset.
  std::string first;
  for (int i = 0; i < 100 && first.size() < 2000; ++i) {
    auto part = suite.Cli({"attach", "--no-follow", "--from",
                           std::to_string(first.size()), id, "count"});
    first += part.out;
    usleep(50000);
  }
  REQUIRE(first.size() >= 2000);

  suite.daemon().Kill9();
  usleep(300000);  // the process writes on without a daemon
  suite.daemon().Start();

  // A new client continues from that offset to the end.
  auto rest = suite.Cli(
      {"attach", "--from", std::to_string(first.size()), id, "count"});
  INFO(rest.err);
  CHECK(rest.exit_code == 0);
  std::string expected;
  for (int i = 1; i <= 3000; ++i) expected += std::to_string(i) + "\n";
  CHECK(first + rest.out == expected);
}

TEST_CASE("a shell survives kill -9 of the daemon and takes input again") {
  Conformance suite;
  const std::string id = suite.CreateApi().id();
  ShellClient client(suite.daemon(), id);
  client.Open(24, 80);
  client.Write("echo before-$((40+2))\n");
  CHECK(Contains(client.ReadUntil("before-42"), "before-42"));

  suite.daemon().Kill9();
  suite.daemon().Start();
  client.Reconnect(suite.daemon());
  // What the ring held is still there, and the shell still answers.
  client.Rewind();
  CHECK(Contains(client.ReadUntil("before-42"), "before-42"));
  client.Write("echo after-$((1+1))\n");
  CHECK(Contains(client.ReadUntil("after-2"), "after-2"));
  client.Write("exit 7\n");
  v1::Shell ended = client.WaitExit();
  CHECK_FALSE(ended.running());
  CHECK(ended.exit_code() == 7);
}

TEST_CASE(
    "a sandbox whose processes are killed from the host is reported failed "
    "and can be removed") {
  Conformance suite;
  const std::string id = suite.Create();
  const auto processes = HostProcessesOf(suite, id);
  // Kill the sandbox's init, found from the host by its pid namespace (the
  // kernel then kills every other process in it), or a VM's QEMU.
  pid_t init = 0;
  for (const HostProcess& process : processes) {
    if (process.ends_sandbox) init = process.pid;
  }
  REQUIRE(init > 0);
  REQUIRE(::kill(init, SIGKILL) == 0);

  v1::Sandbox failed = WaitForState(suite, id, v1::SANDBOX_STATE_FAILED);
  CHECK(failed.state() == v1::SANDBOX_STATE_FAILED);
  CHECK_FALSE(failed.failure().empty());
  auto exec = suite.Cli({"exec", id, "--", "true"});
  CHECK(exec.exit_code == 125);
  CHECK(Contains(exec.err, "failed"));
  REQUIRE(suite.Cli({"rm", id}).exit_code == 0);
  CHECK_FALSE(Listed(suite, id));
  CHECK(Leftovers(suite.daemon(), id, processes).empty());
}

TEST_CASE("a restart removes sandboxes the daemon's store does not know") {
  Conformance suite;
  const std::string id = suite.Create();
  const std::string kept = suite.Create();
  const auto processes = HostProcessesOf(suite, id);
  suite.daemon().Kill9();
  // Forget the sandbox behind the daemon's back, as if the crash had come
  // between making it and recording it.
  auto forgot =
      Sh("sqlite3 '" + suite.daemon().state_dir() +
         "/corral.db' \"DELETE FROM sandboxes WHERE id = '" + id + "'\"");
  REQUIRE(forgot.exit_code == 0);
  suite.daemon().Start();
  CHECK(Leftovers(suite.daemon(), id, processes).empty());
  CHECK_FALSE(Listed(suite, id));
  // The sandbox the store knows is untouched.
  CHECK(suite.Sh(kept, "echo alive").out == "alive\n");
}

TEST_CASE(
    "two daemons share the host: starting, killing and restarting one never "
    "touches the other's sandboxes, and their host uids never overlap") {
  // Both with the runtime's default settings: the same cgroup parents,
  // engine and uid range, as a system daemon and a test run would have.
  Conformance first;
  Conformance second;
  const std::string mine = first.Create();
  const std::string theirs = second.Create();
  auto uid_of = [](const Conformance& suite, const std::string& id) {
    std::string uid;
    for (const HostProcess& process : SandboxHostProcesses(suite, id)) {
      if (process.ends_sandbox) uid = std::to_string(process.uid);
    }
    return uid;
  };
  const std::string my_uid = uid_of(first, mine);
  const std::string their_uid = uid_of(second, theirs);
  INFO("host uids " << my_uid << " and " << their_uid);
  if (!my_uid.empty() && my_uid != "0" && their_uid != "0") {
    CHECK(my_uid != their_uid);
  }
  // A third daemon starting (its start-up reconciliation runs) and going.
  { Conformance third; }
  // The second one killed, restarted; then stopped cleanly and restarted.
  second.daemon().Kill9();
  second.daemon().Start();
  second.daemon().Stop();
  second.daemon().Start();
  auto still = first.Sh(mine, "echo still mine");
  INFO(still.err << first.daemon().log());
  CHECK(still.out == "still mine\n");
  CHECK(first.Get(mine).state() == v1::SANDBOX_STATE_RUNNING);
  // And the other way round.
  first.daemon().Kill9();
  first.daemon().Start();
  auto theirs_still = second.Sh(theirs, "echo still theirs");
  INFO(theirs_still.err << second.daemon().log());
  CHECK(theirs_still.out == "still theirs\n");
  CHECK(first.Sh(mine, "echo back").out == "back\n");
  CHECK_FALSE(Contains(first.daemon().log(), "leftovers"));
  CHECK_FALSE(Contains(second.daemon().log(), "leftovers"));
}

}  // namespace
}  // namespace corral::testing::conformance
