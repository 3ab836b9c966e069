// The workspace workflow through the real CLI: create --seed, exec, sync,
// diff, export, cp, logs, snapshot, reset, fork, rm — against the real
// corrald and real linux sandboxes.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

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

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
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
    "the workspace workflow through the CLI: seed, exec, sync, diff, export, "
    "cp, logs, rm") {
  Daemon daemon;
  TempDir project("corral-project");
  const fs::path root = project.path();
  WriteFile(root / "src/app.py", "print('hello')\nprint('bye')\n");
  WriteFile(root / "README", "readme\n");
  WriteFile(root / "remove-me.txt", "x\n");
  fs::create_symlink("src/app.py", root / "entry");

  const std::string id = CreateSeeded(daemon, root);

  auto cat = daemon.Cli({"exec", id, "--", "cat", "/workspace/src/app.py"});
  REQUIRE(cat.exit_code == 0);
  CHECK(cat.out == "print('hello')\nprint('bye')\n");
  auto changed =
      daemon.Cli({"exec", id, "--", "sh", "-c",
                  "cd /workspace && sed -i s/bye/farewell/ src/app.py && rm "
                  "remove-me.txt && echo out > result.txt"});
  REQUIRE(changed.exit_code == 0);

  // sync a second directory into a subdirectory.
  TempDir extra("corral-extra");
  WriteFile(fs::path(extra.path()) / "notes/todo.txt", "todo\n");
  auto synced = daemon.Cli({"sync", id, extra.path(), "/workspace/more"});
  INFO(synced.err);
  REQUIRE(synced.exit_code == 0);

  auto name_status = daemon.Cli({"diff", id, "--name-status"});
  INFO(name_status.err);
  REQUIRE(name_status.exit_code == 0);
  const auto lines = Lines(name_status.out);
  CHECK(lines == std::vector<std::string>{
                     "A\tmore", "A\tmore/notes", "A\tmore/notes/todo.txt",
                     "D\tremove-me.txt", "A\tresult.txt", "M\tsrc/app.py"});
  auto patch = daemon.Cli({"diff", id});
  REQUIRE(patch.exit_code == 0);
  CHECK(Contains(patch.out, "diff --git a/src/app.py b/src/app.py"));
  CHECK(Contains(patch.out, "-print('bye')\n+print('farewell')\n"));
  CHECK(Contains(patch.out, "+out\n"));
  auto json = daemon.Cli({"diff", id, "--json"});
  REQUIRE(json.exit_code == 0);
  CHECK(Contains(json.out, "result.txt"));

  // export the workspace: exactly the right files.
  TempDir out("corral-export");
  const fs::path dest = fs::path(out.path()) / "dest";
  auto exported = daemon.Cli({"export", id, "/workspace", dest});
  INFO(exported.err);
  REQUIRE(exported.exit_code == 0);
  const fs::path ws = dest / "workspace";
  CHECK(ReadFile(ws / "src/app.py") == "print('hello')\nprint('farewell')\n");
  CHECK(ReadFile(ws / "result.txt") == "out\n");
  CHECK(ReadFile(ws / "more/notes/todo.txt") == "todo\n");
  CHECK(fs::is_symlink(ws / "entry"));
  CHECK(fs::read_symlink(ws / "entry") == "src/app.py");
  CHECK_FALSE(fs::exists(ws / "remove-me.txt"));

  // cp both ways, refusing to overwrite a client path without --force.
  const fs::path local = fs::path(out.path()) / "result-copy.txt";
  auto down = daemon.Cli({"cp", id + ":/workspace/result.txt", local});
  INFO(down.err);
  REQUIRE(down.exit_code == 0);
  CHECK(ReadFile(local) == "out\n");
  WriteFile(local, "mine\n");
  auto refused = daemon.Cli({"cp", id + ":/workspace/result.txt", local});
  CHECK(refused.exit_code == 125);
  CHECK(ReadFile(local) == "mine\n");
  auto forced =
      daemon.Cli({"cp", "--force", id + ":/workspace/result.txt", local});
  REQUIRE(forced.exit_code == 0);
  CHECK(ReadFile(local) == "out\n");
  const fs::path upload = fs::path(out.path()) / "up.sh";
  WriteFile(upload, "#!/bin/sh\necho up\n", fs::perms(0755));
  auto up = daemon.Cli({"cp", upload, id + ":/workspace/bin/up.sh"});
  INFO(up.err);
  REQUIRE(up.exit_code == 0);
  auto ran = daemon.Cli({"exec", id, "--", "/workspace/bin/up.sh"});
  CHECK(ran.out == "up\n");
  const fs::path dir_copy = fs::path(out.path()) / "src-copy";
  auto dir_down = daemon.Cli({"cp", id + ":/workspace/src", dir_copy});
  INFO(dir_down.err);
  REQUIRE(dir_down.exit_code == 0);
  CHECK(ReadFile(dir_copy / "app.py") == "print('hello')\nprint('farewell')\n");

  auto logs = daemon.Cli({"logs", id});
  INFO(logs.err);
  REQUIRE(logs.exit_code == 0);
  CHECK(Contains(logs.out, "cat /workspace/src/app.py"));
  CHECK(Contains(logs.out, "/workspace/bin/up.sh"));

  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
  CHECK(daemon.Cli({"diff", id}).exit_code == 125);
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
