// The conformance suite, part 3: the workflows a user runs on any runtime —
// workspaces through the CLI, shells on a terminal, background processes,
// and images.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/conformance/conformance.h"
#include "tests/conformance/shell_client.h"
#include "tests/test_util.h"

namespace corral::testing::conformance {
namespace {

namespace fs = std::filesystem;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

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

TEST_CASE(
    "the workspace workflow through the CLI: seed, exec, sync, diff, export, "
    "cp, logs, rm") {
  Conformance suite;
  TempDir project("corral-project");
  const fs::path root = project.path();
  WriteFile(root / "src/app.py", "print('hello')\nprint('bye')\n");
  WriteFile(root / "README", "readme\n");
  WriteFile(root / "remove-me.txt", "x\n");
  fs::create_symlink("src/app.py", root / "entry");

  const std::string id = suite.Create({"--ttl", "600", "--seed", root});

  auto cat = suite.Cli({"exec", id, "--", "cat", "/workspace/src/app.py"});
  REQUIRE(cat.exit_code == 0);
  CHECK(cat.out == "print('hello')\nprint('bye')\n");
  auto changed = suite.Sh(id,
                          "cd /workspace && sed -i s/bye/farewell/ src/app.py "
                          "&& rm remove-me.txt && echo out > result.txt");
  INFO(changed.err);
  REQUIRE(changed.exit_code == 0);

  // sync a second directory into a subdirectory.
  TempDir extra("corral-extra");
  WriteFile(fs::path(extra.path()) / "notes/todo.txt", "todo\n");
  auto synced = suite.Cli({"sync", id, extra.path(), "/workspace/more"});
  INFO(synced.err);
  REQUIRE(synced.exit_code == 0);
  CHECK(suite.Sh(id, "cat /workspace/more/notes/todo.txt").out == "todo\n");

  auto name_status = suite.Cli({"diff", id, "--name-status"});
  INFO(name_status.err);
  REQUIRE(name_status.exit_code == 0);
  CHECK(Lines(name_status.out) ==
        std::vector<std::string>{"A\tmore", "A\tmore/notes",
                                 "A\tmore/notes/todo.txt", "D\tremove-me.txt",
                                 "A\tresult.txt", "M\tsrc/app.py"});
  auto patch = suite.Cli({"diff", id});
  REQUIRE(patch.exit_code == 0);
  CHECK(Contains(patch.out, "diff --git a/src/app.py b/src/app.py"));
  CHECK(Contains(patch.out, "-print('bye')\n+print('farewell')\n"));
  CHECK(Contains(patch.out, "+out\n"));
  auto json = suite.Cli({"diff", id, "--json"});
  REQUIRE(json.exit_code == 0);
  CHECK(Contains(json.out, "result.txt"));

  // export the workspace: exactly the right files.
  TempDir out("corral-export");
  const fs::path dest = fs::path(out.path()) / "dest";
  auto exported = suite.Cli({"export", id, "/workspace", dest});
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
  auto down = suite.Cli({"cp", id + ":/workspace/result.txt", local});
  INFO(down.err);
  REQUIRE(down.exit_code == 0);
  CHECK(ReadFile(local) == "out\n");
  WriteFile(local, "mine\n");
  auto refused = suite.Cli({"cp", id + ":/workspace/result.txt", local});
  CHECK(refused.exit_code == 125);
  CHECK(ReadFile(local) == "mine\n");
  auto forced =
      suite.Cli({"cp", "--force", id + ":/workspace/result.txt", local});
  REQUIRE(forced.exit_code == 0);
  CHECK(ReadFile(local) == "out\n");
  const fs::path upload = fs::path(out.path()) / "up.sh";
  WriteFile(upload, "#!/bin/sh\necho up\n", fs::perms(0755));
  auto up = suite.Cli({"cp", upload, id + ":/workspace/bin/up.sh"});
  INFO(up.err);
  REQUIRE(up.exit_code == 0);
  CHECK(suite.Cli({"exec", id, "--", "/workspace/bin/up.sh"}).out == "up\n");
  const fs::path dir_copy = fs::path(out.path()) / "src-copy";
  auto dir_down = suite.Cli({"cp", id + ":/workspace/src", dir_copy});
  INFO(dir_down.err);
  REQUIRE(dir_down.exit_code == 0);
  CHECK(ReadFile(dir_copy / "app.py") == "print('hello')\nprint('farewell')\n");

  auto logs = suite.Cli({"logs", id});
  INFO(logs.err);
  REQUIRE(logs.exit_code == 0);
  CHECK(Contains(logs.out, "cat /workspace/src/app.py"));
  CHECK(Contains(logs.out, "/workspace/bin/up.sh"));

  REQUIRE(suite.Cli({"rm", id}).exit_code == 0);
  CHECK(suite.Cli({"diff", id}).exit_code == 125);
}

TEST_CASE(
    "a shell runs on a real terminal: typed commands, stty size, resize, "
    "Ctrl-C and its exit status") {
  Conformance suite;
  const std::string id = suite.CreateApi().id();
  ShellClient client(suite.daemon(), id);
  client.Open(30, 100);
  CHECK(client.shell().running());
  CHECK(client.shell().size().rows() == 30);
  client.Write("tty; stty size\n");
  auto out = client.ReadUntil("30 100");
  INFO(out);
  CHECK(Contains(out, "/dev/pts/"));
  CHECK(Contains(out, "30 100"));

  client.Resize(40, 120);
  client.Write("stty size\n");
  CHECK(Contains(client.ReadUntil("40 120"), "40 120"));

  // A program that reads a line.
  client.Write("read name; echo hello-$name\n");
  client.Write("corral\n");
  CHECK(Contains(client.ReadUntil("hello-corral"), "hello-corral"));

  // Ctrl-C interrupts the foreground sleep; the shell lives on.
  client.Write("sleep 100\n");
  usleep(300000);
  client.Write("\x03");
  client.Write("echo alive-$((40+2))\n");
  CHECK(Contains(client.ReadUntil("alive-42"), "alive-42"));
  CHECK(client.Get().running());

  client.Write("exit 7\n");
  v1::Shell ended = client.WaitExit();
  CHECK_FALSE(ended.running());
  CHECK(ended.exit_code() == 7);
  CHECK(client.Read(ended.output_end()).exited());
}

// The `corral ps` row whose text contains `needle`.
std::string Row(const std::string& table, const std::string& needle) {
  for (const auto& line : Lines(table)) {
    if (Contains(line, needle)) return line;
  }
  return "";
}

TEST_CASE(
    "exec -d starts a tagged background process that ps lists and attach "
    "follows to its exit status") {
  Conformance suite;
  const std::string id = suite.Create();
  auto started =
      suite.Cli({"exec", "-d", "--tag", "job", id, "--", "sh", "-c",
                 "echo to-out; sleep 0.3; echo to-err >&2; sleep 1; exit 4"});
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  const std::string process_id = Trim(started.out);
  CHECK(process_id.size() == 16);

  auto ps = suite.Cli({"ps", id});
  INFO(ps.out << ps.err);
  REQUIRE(ps.exit_code == 0);
  const std::string row = Row(ps.out, process_id);
  CHECK(Contains(row, "job"));
  CHECK(Contains(row, "running"));

  // attach by tag: each stream to its own fd, the exit code passed on.
  auto attached = suite.Cli({"attach", id, "job"});
  CHECK(attached.out == "to-out\n");
  CHECK(Contains(attached.err, "to-err\n"));
  CHECK(attached.exit_code == 4);
  CHECK(Contains(Row(suite.Cli({"ps", id}).out, process_id), "exited 4"));

  // From an offset, without following.
  auto tail = suite.Cli({"attach", "--no-follow", "--from", "3", id, "job"});
  CHECK(tail.out == "out\n");
  CHECK(tail.exit_code == 4);

  // A background process runs in the sandbox like any command: it sees the
  // workspace and what other commands left there.
  REQUIRE(suite.Sh(id, "echo shared > /workspace/note").exit_code == 0);
  auto reader = suite.Cli({"exec", "-d", "--tag", "reader", id, "--", "sh",
                           "-c", "cat /workspace/note; hostname"});
  REQUIRE(reader.exit_code == 0);
  auto read = suite.Cli({"attach", id, "reader"});
  CHECK(read.exit_code == 0);
  CHECK(read.out == "shared\ncorral-" + id.substr(0, 8) + "\n");
}

TEST_CASE("an imported busybox rootfs runs commands on the runtime") {
  Conformance suite;
  const std::string tar =
      std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar";
  auto built =
      Sh("test -f '" + tar + "' || bash '" + std::string(CORRAL_SOURCE_DIR) +
         "/deploy/images/build-busybox.sh' '" + tar + "'");
  INFO(built.err);
  REQUIRE(built.exit_code == 0);
  auto imported = suite.Cli({"image", "import", "busybox", tar});
  INFO(imported.err);
  REQUIRE(imported.exit_code == 0);
  CHECK(Contains(suite.Cli({"image", "ls"}).out, "busybox"));
  auto r = suite.Run({"--image", "busybox", "--", "sh", "-c",
                      "ls /bin | grep -c . ; head -1 /etc/passwd"});
  INFO(r.err << suite.daemon().log());
  REQUIRE(r.exit_code == 0);
  CHECK(Contains(r.out, "root:"));
  // The image's own files, not the host's: busybox is every tool.
  const std::string id = suite.Create({"--image", "busybox"});
  CHECK(suite.Get(id).image() == "busybox");
  auto readlink = suite.Sh(id, "readlink /bin/ls");
  CHECK(Contains(readlink.out, "busybox"));
  CHECK(Contains(suite.Sh(id, "touch /bin/x 2>&1; true").out,
                 "Read-only file system"));
  CHECK(suite.Sh(id, "echo ok > /workspace/f && cat /workspace/f").out ==
        "ok\n");
  // An image in use cannot be removed; an unused one can.
  CHECK(suite.Cli({"image", "rm", "busybox"}).exit_code == 125);
  REQUIRE(suite.Cli({"rm", id}).exit_code == 0);
  CHECK(suite.Cli({"image", "rm", "busybox"}).exit_code == 0);
}

}  // namespace
}  // namespace corral::testing::conformance
