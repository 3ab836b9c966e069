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
