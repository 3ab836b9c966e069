// Workspaces through the real CLI: snapshot, reset, fork, and refused
// exports and seeds — against the real corrald and real linux sandboxes. The
// everyday workflow (seed, exec, sync, diff, export, cp, logs) is checked on
// every runtime by the conformance suite (tests/conformance/).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/integration/daemon_harness.h"
#include "tests/test_util.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;

void WriteFile(const fs::path& path, const std::string& content,
               fs::perms mode = fs::perms(0644)) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
  fs::permissions(path, mode);
}

// `corral create --seed DIR`; returns the new sandbox's id.
std::string CreateSeeded(const Daemon& daemon, const std::string& dir) {
  auto created = daemon.Cli({"create", "--ttl", "600", "--seed", dir});
  INFO(created.err << daemon.log());
  REQUIRE(created.exit_code == 0);
  const std::string id = Trim(created.out);
  REQUIRE(id.size() == 32);
  return id;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE(
    "corral patch applies a diff all or nothing, keeps modes, and a diff of "
    "one workspace recreates its changes in another") {
  Daemon daemon;
  TempDir project("corral-project");
  WriteFile(fs::path(project.path()) / "a.txt", "one\ntwo\nthree\n");
  WriteFile(fs::path(project.path()) / "run.sh", "#!/bin/sh\necho run\n",
            fs::perms(0755));
  const std::string id = CreateSeeded(daemon, project.path());
  auto sh = [&](const std::string& line) {
    return daemon.Cli({"exec", id, "--", "sh", "-c", line});
  };
  const std::string good =
      "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
      "--- a/run.sh\n+++ b/run.sh\n@@ -2 +2 @@\n-echo run\n+echo ran\n"
      "diff --git a/new/b.txt b/new/b.txt\nnew file mode 100755\n"
      "--- /dev/null\n+++ b/new/b.txt\n@@ -0,0 +1 @@\n+bee\n";
  // Its second file does not apply: nothing changes, the hunk is named.
  const std::string bad =
      "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
      "--- a/run.sh\n+++ b/run.sh\n@@ -2 +2 @@\n-echo walk\n+echo ran\n";
  auto refused = daemon.Cli({"patch", id}, bad);
  CHECK(refused.exit_code == 125);
  CHECK(Contains(refused.err,
                 "hunk 1 of run.sh (@@ -2 +2 @@) does not apply: its lines "
                 "are not in the file; line 2 is 'echo run', the patch "
                 "expects 'echo walk'"));
  auto checked = daemon.Cli({"patch", "--check", id}, good);
  INFO(checked.err);
  CHECK(checked.exit_code == 0);
  CHECK(Contains(checked.out, "applies cleanly"));
  CHECK(sh("cat a.txt; test -e new && echo new || echo no-new").out ==
        "one\ntwo\nthree\nno-new\n");

  auto applied = daemon.Cli({"patch", id}, good);
  INFO(applied.err);
  REQUIRE(applied.exit_code == 0);
  CHECK(applied.out ==
        "M\ta.txt\t1 hunk\nM\trun.sh\t1 hunk\nA\tnew/b.txt\t1 hunk\n");
  CHECK(sh("cat a.txt run.sh new/b.txt; stat -c %a run.sh new/b.txt").out ==
        "one\nTWO\nthree\n#!/bin/sh\necho ran\nbee\n755\n755\n");
  // The same patch again no longer applies.
  CHECK(daemon.Cli({"patch", id}, good).exit_code == 125);

  // What diff prints, patch takes: another workspace from the same seed
  // gets the same changes.
  const std::string diff = daemon.Cli({"diff", id}).out;
  const std::string other = CreateSeeded(daemon, project.path());
  auto replayed = daemon.Cli({"patch", other}, diff);
  INFO(diff << replayed.err);
  CHECK(replayed.exit_code == 0);
  CHECK(daemon.Cli({"diff", other}).out == diff);

  const fs::path file = fs::path(project.path()) / "fix.diff";
  WriteFile(file, "not a diff\n");
  auto garbage = daemon.Cli({"patch", id, file.string()});
  CHECK(garbage.exit_code == 125);
  CHECK(Contains(garbage.err, "not a unified diff"));
  REQUIRE(daemon.Cli({"rm", id, other}).exit_code == 0);
}

TEST_CASE("snapshot, reset and fork through the CLI") {
  Daemon daemon;
  TempDir project("corral-project");
  WriteFile(fs::path(project.path()) / "state.txt", "v0\n");
  const std::string id = CreateSeeded(daemon, project.path());
  auto sh = [&](const std::string& id_, const std::string& line) {
    return daemon.Cli({"exec", id_, "--", "sh", "-c", line});
  };
  sh(id, "echo v1 > /workspace/state.txt");
  auto snap = daemon.Cli({"snapshot", "create", id, "one"});
  INFO(snap.err);
  REQUIRE(snap.exit_code == 0);
  sh(id, "echo v2 > /workspace/state.txt; touch /workspace/extra");
  auto ls = daemon.Cli({"snapshot", "ls", id});
  REQUIRE(ls.exit_code == 0);
  CHECK(Contains(ls.out, "one"));

  REQUIRE(daemon.Cli({"reset", id, "--to", "one"}).exit_code == 0);
  CHECK(sh(id, "cat /workspace/state.txt; ls /workspace").out ==
        "v1\nstate.txt\n");
  REQUIRE(daemon.Cli({"reset", id}).exit_code == 0);
  CHECK(sh(id, "cat /workspace/state.txt").out == "v0\n");

  auto forked = daemon.Cli({"fork", id + "@one", "--ttl", "600"});
  INFO(forked.err);
  REQUIRE(forked.exit_code == 0);
  const std::string child = Trim(forked.out);
  CHECK(child != id);
  CHECK(sh(child, "cat /workspace/state.txt").out == "v1\n");
  CHECK(daemon.Cli({"diff", child, "--name-status"}).out.empty());

  auto missing = daemon.Cli({"reset", id, "--to", "nope"});
  CHECK(missing.exit_code == 125);
  CHECK(Contains(missing.err, "nope"));
  REQUIRE(daemon.Cli({"snapshot", "rm", id, "one"}).exit_code == 0);
  CHECK_FALSE(Contains(daemon.Cli({"snapshot", "ls", id}).out, "one"));
  REQUIRE(daemon.Cli({"rm", id, child}).exit_code == 0);
}

TEST_CASE(
    "export refuses to write through a symlink planted in the destination "
    "and a hostile seed fails create with the entry named") {
  Daemon daemon;
  TempDir project("corral-project");
  WriteFile(fs::path(project.path()) / "f.txt", "f\n");
  const std::string id = CreateSeeded(daemon, project.path());
  TempDir out("corral-export");
  TempDir victim("corral-victim");
  const fs::path dest = fs::path(out.path()) / "dest";
  fs::create_directories(dest);
  fs::create_symlink(victim.path(), dest / "workspace");
  auto exported = daemon.Cli({"export", id, "/workspace", dest});
  CHECK(exported.exit_code == 125);
  CHECK(fs::is_empty(victim.path()));

  // A tar with a traversal entry, made by the host's tar.
  const fs::path tar = fs::path(out.path()) / "evil.tar";
  auto made = Sh("cd " + std::string(project.path()) + " && tar -cf " +
                 tar.string() + " --transform 's,^,../,' f.txt");
  REQUIRE(made.exit_code == 0);
  auto evil = daemon.Cli({"create", "--ttl", "600", "--seed", tar});
  CHECK(evil.exit_code == 125);
  CHECK(Contains(evil.err, "../f.txt"));
  auto listed = daemon.Cli({"ls", "--json"});
  CHECK_FALSE(Contains(listed.out, "\"state\": \"SANDBOX_STATE_CREATING\""));
  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
}

}  // namespace
}  // namespace corral::testing
