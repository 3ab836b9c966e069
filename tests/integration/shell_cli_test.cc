// `corral shell` and `corral attach` driven like a person would: the real CLI
// runs inside a tmux pane (a real terminal), keys are typed with send-keys,
// and the screen is read back with capture-pane.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

// One private tmux server (its own socket) for the test.
class Tmux {
 public:
  Tmux() : socket_("corral-test-" + std::to_string(::getpid())) {}
  ~Tmux() { Run({"kill-server"}); }

  CommandResult Run(std::vector<std::string> args) const {
    std::vector<std::string> argv = {"tmux", "-L", socket_, "-f", "/dev/null"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string line;
    for (const auto& a : argv) line += "'" + a + "' ";
    return Sh(line);
  }
  // Starts `command` in a new detached session of the given size; the pane
  // stays after the command exits so that its last screen can be read.
  void Start(const std::string& name, const std::string& command, int columns,
             int rows) {
    REQUIRE(Run({"new-session", "-d", "-s", name, "-x", std::to_string(columns),
                 "-y", std::to_string(rows),
                 "sh -c \"" + command + "\"; sleep 600"})
                .exit_code == 0);
    Run({"set-option", "-t", name, "status", "off"});
  }
  void Keys(const std::string& name, std::vector<std::string> keys) {
    std::vector<std::string> args = {"send-keys", "-t", name};
    args.insert(args.end(), keys.begin(), keys.end());
    REQUIRE(Run(args).exit_code == 0);
  }
  std::string Screen(const std::string& name) {
    return Run({"capture-pane", "-p", "-J", "-S", "-200", "-t", name}).out;
  }
  // Waits up to 10 s for `text` on the screen.
  bool WaitFor(const std::string& name, const std::string& text) {
    for (int i = 0; i < 200; ++i) {
      if (Screen(name).find(text) != std::string::npos) return true;
      usleep(50000);
    }
    return false;
  }

 private:
  std::string socket_;
};

std::string ShellIdOf(const Daemon& daemon, const std::string& id) {
  auto ps = daemon.Cli({"ps", id});
  auto lines = Lines(ps.out);
  REQUIRE(lines.size() >= 2);
  return lines[1].substr(0, lines[1].find(' '));
}

TEST_CASE(
    "corral shell in a real terminal: typing, a program reading a line, "
    "stty size, resize, Ctrl-C, detach and attach") {
  Daemon daemon;
  auto created = daemon.Cli({"create", "--ttl", "600"});
  REQUIRE(created.exit_code == 0);
  const std::string id = Trim(created.out);
  const std::string corral =
      BinaryDir() + "/corral --socket " + daemon.socket();
  Tmux tmux;
  // After the CLI ends, the pane records the terminal's mode: raw mode must
  // be gone.
  tmux.Start("s1",
             corral + " shell " + id + "; stty -a | grep -o -- '-*icanon' > " +
                 daemon.dir() + "/stty-after",
             100, 30);

  tmux.Keys("s1", {"echo typed-$((20+22))", "Enter"});
  INFO(tmux.Screen("s1"));
  REQUIRE(tmux.WaitFor("s1", "typed-42"));

  tmux.Keys("s1", {"read line; echo got-$line", "Enter"});
  tmux.Keys("s1", {"abc", "Enter"});
  CHECK(tmux.WaitFor("s1", "got-abc"));

  tmux.Keys("s1", {"stty size", "Enter"});
  CHECK(tmux.WaitFor("s1", "30 100"));
  tmux.Run({"resize-window", "-t", "s1", "-x", "120", "-y", "40"});
  usleep(300000);
  tmux.Keys("s1", {"clear; stty size", "Enter"});
  CHECK(tmux.WaitFor("s1", "40 120"));

  tmux.Keys("s1", {"sleep 100", "Enter"});
  usleep(400000);
  tmux.Keys("s1", {"C-c"});
  tmux.Keys("s1", {"echo after-$((1+1))", "Enter"});
  CHECK(tmux.WaitFor("s1", "after-2"));

  // Detach: the CLI leaves, the shell stays.
  tmux.Keys("s1", {"echo remember-me > /tmp/mark", "Enter"});
  usleep(300000);
  tmux.Keys("s1", {"C-p", "C-q"});
  CHECK(tmux.WaitFor("s1", "detached from shell"));
  for (int i = 0; i < 100; ++i) {
    std::ifstream in(daemon.dir() + "/stty-after");
    std::string mode;
    if (in >> mode) {
      CHECK(mode == "icanon");
      break;
    }
    usleep(50000);
  }
  const std::string shell = ShellIdOf(daemon, id);
  auto ps = daemon.Cli({"ps", id});
  CHECK(ps.out.find("running") != std::string::npos);

  tmux.Start("s2", corral + " attach " + id + " " + shell, 100, 30);
  // The ring replays what the shell showed before (since the `clear`).
  CHECK(tmux.WaitFor("s2", "after-2"));
  tmux.Keys("s2", {"cat /tmp/mark", "Enter"});
  CHECK(tmux.WaitFor("s2", "remember-me\n"));
  tmux.Keys("s2", {"exit 5", "Enter"});
  usleep(500000);
  auto ended = daemon.Cli({"ps", id});
  CHECK(ended.out.find("exited 5") != std::string::npos);
}

}  // namespace
}  // namespace corral::testing
