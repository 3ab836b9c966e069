// corral exec -d, ps, attach and kill for background processes: the real
// CLI against the real daemon, across a kill -9 of the daemon.
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
    "exec -d starts a tagged background process that ps lists, attach "
    "follows to its exit status, and kill ends") {
  Daemon daemon;
  const std::string id = CreateSandbox(daemon);
  auto started =
      daemon.Cli({"exec", "-d", "--tag", "job", id, "--", "sh", "-c",
                  "echo to-out; sleep 0.3; echo to-err >&2; sleep 1; exit 4"});
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  const std::string process_id = Trim(started.out);
  CHECK(process_id.size() == 16);

  auto ps = daemon.Cli({"ps", id});
  INFO(ps.out << ps.err);
  REQUIRE(ps.exit_code == 0);
  const std::string row = Row(ps.out, process_id);
  CHECK(row.find("job") != std::string::npos);
  CHECK(row.find("running") != std::string::npos);

  // attach by tag: each stream to its own fd, the exit code passed on.
  auto attached = daemon.Cli({"attach", id, "job"});
  CHECK(attached.out == "to-out\n");
  CHECK(attached.err.find("to-err\n") != std::string::npos);
  CHECK(attached.exit_code == 4);
  CHECK(Row(daemon.Cli({"ps", id}).out, process_id).find("exited 4") !=
        std::string::npos);

  // From an offset, without following.
  auto tail = daemon.Cli({"attach", "--no-follow", "--from", "3", id, "job"});
  CHECK(tail.out == "out\n");
  CHECK(tail.exit_code == 4);

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
  CHECK(Lines(daemon.Cli({"ps", id}).out).size() == 2);  // header + job
}

TEST_CASE(
    "corral attach picks up a background process again after kill -9 of "
    "the daemon, with nothing lost or repeated") {
  Daemon daemon;
  const std::string id = CreateSandbox(daemon);
  // Numbers 1..3000, a line every few milliseconds.
  auto started =
      daemon.Cli({"exec", "-d", "--tag", "count", id, "--", "sh", "-c",
                  "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo $i; "
                  "[ $((i % 100)) = 0 ] && sleep 0.1; done; true"});
  REQUIRE(started.exit_code == 0);

  // A first client reads part of it and goes away; it notes its offset.
  std::string first;
  uint64_t offset = 0;
  for (int i = 0; i < 100 && first.size() < 2000; ++i) {
    auto part = daemon.Cli({"attach", "--no-follow", "--from",
                            std::to_string(offset), id, "count"});
    first += part.out;
    offset = first.size();
    usleep(50000);
  }
  REQUIRE(first.size() >= 2000);

  daemon.Kill9();
  daemon.Start();

  // A new client continues from that offset to the end.
  auto rest =
      daemon.Cli({"attach", "--from", std::to_string(offset), id, "count"});
  INFO(rest.err);
  CHECK(rest.exit_code == 0);
  std::string expected;
  for (int i = 1; i <= 3000; ++i) expected += std::to_string(i) + "\n";
  CHECK(first + rest.out == expected);
}

}  // namespace
}  // namespace corral::testing
