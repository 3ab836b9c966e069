// Integration tests of pty streams: the real corral-agent (from the build
// tree) on one end of a socketpair, driven through the daemon's
// AgentConnection, running commands on a pseudo-terminal (ExecStart.pty).
// Outside a sandbox the agent uses the host's /dev/ptmx.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/agent/agent_connection.h"
#include "tests/integration/agent_test_util.h"

namespace {

namespace v1 = corral::agent::v1;
using corral::agent::testing::Agent;
using corral::agent::testing::Run;
using corral::agent::testing::StartAgent;
using corral::agent::testing::WaitGone;
using corral::daemon::ExecEvent;
using corral::daemon::ExecResult;
using corral::daemon::ExecSession;

// `argv` on a rows x columns pty. stdin_open is set as well: the agent
// implies it for a pty, but the daemon's WriteStdin checks the flag.
v1::ExecStart PtyCommand(std::vector<std::string> argv, uint32_t rows = 0,
                         uint32_t columns = 0) {
  v1::ExecStart start;
  for (auto& arg : argv) start.add_argv(arg);
  v1::EnvVar* path = start.add_env();
  path->set_name("PATH");
  path->set_value("/usr/local/bin:/usr/bin:/bin");
  start.mutable_pty()->set_rows(rows);
  start.mutable_pty()->set_columns(columns);
  start.set_stdin_open(true);
  return start;
}

// An interactive POSIX shell with a plain prompt.
v1::ExecStart InteractiveShell() {
  v1::ExecStart start = PtyCommand({"sh", "-i"});
  v1::EnvVar* ps1 = start.add_env();
  ps1->set_name("PS1");
  ps1->set_value("$ ");
  return start;
}

// A started session and the pid from its kStarted event.
struct Started {
  std::unique_ptr<ExecSession> session;
  pid_t pid = -1;
};

Started Start(Agent& agent, const v1::ExecStart& start) {
  auto session = agent.connection->StartExec(start);
  INFO(session.status().ToString());
  REQUIRE(session.ok());
  auto started = (*session)->Next(absl::Now() + absl::Seconds(5));
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  REQUIRE(started->kind == ExecEvent::Kind::kStarted);
  return Started{*std::move(session), started->pid};
}

// Reads output events into `*seen` until it contains `needle` after
// `*consumed` (then moves *consumed past it and returns true), the command
// exits, or `timeout` passes. Every output event must be FD_STDOUT.
bool ReadUntil(ExecSession& session, const std::string& needle,
               std::string* seen, size_t* consumed,
               absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const size_t at = seen->find(needle, *consumed);
    if (at != std::string::npos) {
      *consumed = at + needle.size();
      return true;
    }
    auto event = session.Next(deadline);
    if (!event.ok() || event->kind != ExecEvent::Kind::kOutput) return false;
    CHECK(event->fd == v1::FD_STDOUT);
    seen->append(event->data);
  }
}

// Collects output until the exit event and returns it.
struct Finished {
  std::string output;
  v1::ExecExit exit;
};
Finished WaitExit(ExecSession& session,
                  absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  Finished finished;
  for (;;) {
    auto event = session.Next(deadline);
    INFO(event.status().ToString());
    REQUIRE(event.ok());
    if (event->kind == ExecEvent::Kind::kExit) {
      finished.exit = event->exit;
      return finished;
    }
    REQUIRE(event->kind == ExecEvent::Kind::kOutput);
    CHECK(event->fd == v1::FD_STDOUT);
    finished.output += event->data;
  }
}

std::string Comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

// The first child of `parent` (per /proc) that runs `name`, waiting up to 5 s.
pid_t WaitChild(pid_t parent, const std::string& name) {
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    std::ifstream in("/proc/" + std::to_string(parent) + "/task/" +
                     std::to_string(parent) + "/children");
    pid_t child;
    while (in >> child) {
      if (Comm(child) == name) return child;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return -1;
}

}  // namespace

// An interactive shell that has shown its prompt, and what it printed so far.
struct AtPrompt {
  Started shell;
  std::string seen;
  size_t consumed = 0;
};

AtPrompt ShellAtPrompt(Agent& agent) {
  AtPrompt at;
  at.shell = Start(agent, InteractiveShell());
  REQUIRE(ReadUntil(*at.shell.session, "$ ", &at.seen, &at.consumed));
  return at;
}

// Types `line`, which runs a sleep in the foreground, and returns its pid.
pid_t StartSleep(AtPrompt& at, const std::string& line) {
  REQUIRE(at.shell.session->WriteStdin(line, false).ok());
  const pid_t pid = WaitChild(at.shell.pid, "sleep");
  REQUIRE(pid > 0);
  return pid;
}

TEST_CASE("hello announces exec.pty", "[agent_pty]") {
  Agent agent = StartAgent();
  const auto& caps = agent.connection->hello().capabilities();
  CHECK(std::find(caps.begin(), caps.end(), "exec.pty") != caps.end());
}

TEST_CASE("a pty command has a terminal on stdin, stdout and stderr",
          "[agent_pty]") {
  Agent agent = StartAgent();
  ExecResult result = Run(
      *agent.connection,
      PtyCommand({"sh", "-c",
                  "tty; test -t 0 && test -t 1 && test -t 2 && echo all-ttys; "
                  "echo to-stderr >&2; echo TERM=$TERM"}));
  CHECK(result.exit.exit_code() == 0);
  CHECK(result.stdout_data.rfind("/dev/pts/", 0) == 0);
  CHECK(result.stdout_data.find("all-ttys\r\n") != std::string::npos);
  // The terminal merges stderr into the one output.
  CHECK(result.stdout_data.find("to-stderr\r\n") != std::string::npos);
  CHECK(result.stdout_data.find("TERM=xterm-256color\r\n") !=
        std::string::npos);
  CHECK(result.stderr_data.empty());
  CHECK(result.exit.stderr_bytes() == 0);
  CHECK(result.exit.stdout_bytes() == result.stdout_data.size());
}

TEST_CASE("the command leads a session whose controlling tty is the pty",
          "[agent_pty]") {
  Agent agent = StartAgent();
  // ps-free: /proc/self/stat fields 6 (session) and 7 (tty_nr) of the shell,
  // and the foreground group (field 8) is the shell's own group.
  ExecResult result =
      Run(*agent.connection,
          PtyCommand({"sh", "-c",
                      "read -r pid comm state ppid pgrp sid tty tpgid rest "
                      "< /proc/$$/stat; echo \"$$ $pgrp $sid $tty $tpgid\""}));
  REQUIRE(result.exit.exit_code() == 0);
  std::istringstream fields(result.stdout_data);
  long pid = 0, pgrp = 0, sid = 0, tty = 0, tpgid = 0;
  fields >> pid >> pgrp >> sid >> tty >> tpgid;
  CHECK(pid == result.pid);
  CHECK(pgrp == pid);
  CHECK(sid == pid);
  CHECK(tty != 0);
  CHECK(tpgid == pid);
}

TEST_CASE("TERM comes from pty.term unless env sets it", "[agent_pty]") {
  Agent agent = StartAgent();
  v1::ExecStart start = PtyCommand({"sh", "-c", "echo \"[$TERM]\""});
  start.mutable_pty()->set_term("vt100");
  CHECK(Run(*agent.connection, start).stdout_data == "[vt100]\r\n");
  v1::EnvVar* term = start.add_env();
  term->set_name("TERM");
  term->set_value("dumb");
  CHECK(Run(*agent.connection, start).stdout_data == "[dumb]\r\n");
}

TEST_CASE("stty size reports the requested size, and the default",
          "[agent_pty]") {
  Agent agent = StartAgent();
  CHECK(Run(*agent.connection, PtyCommand({"stty", "size"}, 33, 101))
            .stdout_data == "33 101\r\n");
  CHECK(Run(*agent.connection, PtyCommand({"stty", "size"})).stdout_data ==
        "24 80\r\n");
}

TEST_CASE("Resize changes the size and sends SIGWINCH", "[agent_pty]") {
  Agent agent = StartAgent();
  Started shell =
      Start(agent, PtyCommand({"sh", "-c",
                               "trap 'stty size' WINCH; echo ready; "
                               "while :; do sleep 0.05; done"},
                              30, 90));
  std::string seen;
  size_t consumed = 0;
  REQUIRE(ReadUntil(*shell.session, "ready\r\n", &seen, &consumed));
  REQUIRE(shell.session->Resize(40, 120).ok());
  CHECK(ReadUntil(*shell.session, "40 120\r\n", &seen, &consumed));
  REQUIRE(shell.session->Resize(17, 61).ok());
  CHECK(ReadUntil(*shell.session, "17 61\r\n", &seen, &consumed));
  INFO(seen);
  // Only the two resizes reported a size.
  CHECK(seen.find("30 90") == std::string::npos);

  REQUIRE(shell.session->Signal(SIGKILL).ok());
  Finished finished = WaitExit(*shell.session);
  CHECK(finished.exit.signal() == SIGKILL);
  CHECK(shell.session->Resize(1, 1).code() ==
        absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("Resize on a stream without a pty is ignored", "[agent_pty]") {
  Agent agent = StartAgent();
  v1::ExecStart start = PtyCommand({"sh", "-c", "read line; echo got:$line"});
  start.clear_pty();
  Started command = Start(agent, start);
  REQUIRE(command.session->Resize(10, 10).ok());
  REQUIRE(command.session->WriteStdin("x\n", true).ok());
  Finished finished = WaitExit(*command.session);
  CHECK(finished.output == "got:x\n");
  CHECK(finished.exit.exit_code() == 0);
  CHECK_FALSE(agent.connection->closed());
}

TEST_CASE("typing into an interactive shell", "[agent_pty]") {
  Agent agent = StartAgent();
  AtPrompt at = ShellAtPrompt(agent);
  Started& shell = at.shell;
  std::string& seen = at.seen;
  size_t& consumed = at.consumed;
  // The terminal echoes the line, which has $((6*7)) rather than 42.
  REQUIRE(shell.session->WriteStdin("echo $((6*7))\n", false).ok());
  CHECK(ReadUntil(*shell.session, "42\r\n", &seen, &consumed));
  // A program that reads a line from the terminal.
  REQUIRE(shell.session->WriteStdin("read answer; echo \"<$answer>\"\n", false)
              .ok());
  REQUIRE(shell.session->WriteStdin("hi there\n", false).ok());
  CHECK(ReadUntil(*shell.session, "<hi there>\r\n", &seen, &consumed));
  REQUIRE(shell.session->WriteStdin("exit 5\n", false).ok());
  Finished finished = WaitExit(*shell.session);
  CHECK(finished.exit.exit_code() == 5);
}

TEST_CASE("stdin eof on a pty ends the input like ^D", "[agent_pty]") {
  Agent agent = StartAgent();
  Started command = Start(agent, PtyCommand({"sh", "-c", "cat; echo done"}));
  REQUIRE(command.session->WriteStdin("alpha\nbeta\n", true).ok());
  Finished finished = WaitExit(*command.session);
  CHECK(finished.exit.exit_code() == 0);
  // The terminal's echo and cat's copy of each line (in an order that
  // depends on timing), then done: cat saw the end of its input.
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (size_t at = finished.output.find(needle); at != std::string::npos;
         at = finished.output.find(needle, at + 1)) {
      ++n;
    }
    return n;
  };
  INFO(finished.output);
  CHECK(count("alpha\r\n") == 2);
  CHECK(count("beta\r\n") == 2);
  CHECK(finished.output.size() >= 6);
  CHECK(finished.output.substr(finished.output.size() - 6) == "done\r\n");
}

TEST_CASE("^C interrupts the foreground job, not the shell", "[agent_pty]") {
  Agent agent = StartAgent();
  AtPrompt at = ShellAtPrompt(agent);
  Started& shell = at.shell;
  std::string& seen = at.seen;
  size_t& consumed = at.consumed;
  const pid_t sleep_pid = StartSleep(at, "sleep 100\n");
  REQUIRE(shell.session->WriteStdin("\x03", false).ok());
  CHECK(WaitGone(sleep_pid));
  REQUIRE(shell.session->WriteStdin("echo al\"\"ive\n", false).ok());
  CHECK(ReadUntil(*shell.session, "alive\r\n", &seen, &consumed));
  CHECK(::kill(shell.pid, 0) == 0);
}

TEST_CASE("Signal goes to the terminal's foreground job", "[agent_pty]") {
  Agent agent = StartAgent();
  AtPrompt at = ShellAtPrompt(agent);
  Started& shell = at.shell;
  std::string& seen = at.seen;
  size_t& consumed = at.consumed;
  const pid_t sleep_pid = StartSleep(at, "sleep 100\n");
  // The interactive shell put the sleep in a group of its own: sent to the
  // shell's group, SIGINT would not reach it.
  CHECK(::getpgid(sleep_pid) != shell.pid);
  REQUIRE(shell.session->Signal(SIGINT).ok());
  CHECK(WaitGone(sleep_pid));
  REQUIRE(shell.session->WriteStdin("echo st\"\"ill-here\n", false).ok());
  CHECK(ReadUntil(*shell.session, "still-here\r\n", &seen, &consumed));
  CHECK(::kill(shell.pid, 0) == 0);
}

TEST_CASE("Signal(SIGINT) ends a command on a pty", "[agent_pty]") {
  Agent agent = StartAgent();
  Started command =
      Start(agent, PtyCommand({"sh", "-c", "sleep 100; echo after"}));
  const pid_t sleep_pid = WaitChild(command.pid, "sleep");
  REQUIRE(sleep_pid > 0);
  const absl::Time begin = absl::Now();
  REQUIRE(command.session->Signal(SIGINT).ok());
  Finished finished = WaitExit(*command.session);
  CHECK(absl::Now() - begin < absl::Seconds(3));
  CHECK(finished.exit.signal() == SIGINT);
  CHECK(finished.output.find("after") == std::string::npos);
  CHECK(WaitGone(sleep_pid));
}

TEST_CASE("exit codes and start failures on a pty", "[agent_pty]") {
  Agent agent = StartAgent();
  ExecResult three =
      Run(*agent.connection, PtyCommand({"sh", "-c", "echo bye; exit 3"}));
  CHECK(three.exit.exit_code() == 3);
  CHECK(three.exit.signal() == 0);
  CHECK(three.stdout_data == "bye\r\n");

  ExecResult missing =
      Run(*agent.connection, PtyCommand({"no-such-program-for-pty"}));
  CHECK(missing.exit.exit_code() == 127);
  CHECK(missing.exit.error() ==
        "no-such-program-for-pty: No such file or "
        "directory");

  v1::ExecStart bad_cwd = PtyCommand({"true"});
  bad_cwd.set_cwd("/no/such/dir");
  ExecResult chdir_failed = Run(*agent.connection, bad_cwd);
  CHECK(chdir_failed.exit.exit_code() == 126);
  CHECK(chdir_failed.exit.error().rfind("chdir /no/such/dir", 0) == 0);
}

TEST_CASE("a file operation with a pty is refused", "[agent_pty]") {
  Agent agent = StartAgent();
  v1::ExecStart start;
  start.mutable_fs()->mutable_stat()->set_path("/");
  start.mutable_pty()->set_rows(10);
  auto session = agent.connection->StartExec(start);
  REQUIRE(session.ok());
  auto event = (*session)->Next(absl::Now() + absl::Seconds(5));
  CHECK(event.status().code() == absl::StatusCode::kInternal);
  CHECK_FALSE(agent.connection->closed());
}

TEST_CASE("output_limit applies to pty output", "[agent_pty]") {
  Agent agent = StartAgent();
  v1::ExecStart start =
      PtyCommand({"sh", "-c", "head -c 100000 /dev/zero; echo; echo end"});
  start.set_output_limit_bytes(1000);
  ExecResult result = Run(*agent.connection, start);
  CHECK(result.exit.exit_code() == 0);
  CHECK(result.stdout_data == std::string(1000, '\0'));
  CHECK(result.exit.stdout_truncated());
  // 100000 zeros, "\r\n", "end\r\n".
  CHECK(result.exit.stdout_bytes() == 100007);
}

TEST_CASE("a large pty output arrives whole through the windows",
          "[agent_pty]") {
  Agent agent = StartAgent();
  // More than a window and more than the terminal's buffer.
  constexpr int kBytes = 3 << 20;
  ExecResult result =
      Run(*agent.connection,
          PtyCommand({"head", "-c", std::to_string(kBytes), "/dev/zero"}), "",
          absl::Seconds(20));
  CHECK(result.exit.exit_code() == 0);
  CHECK(result.stdout_data.size() == static_cast<size_t>(kBytes));
  CHECK(result.exit.stdout_bytes() == static_cast<uint64_t>(kBytes));
}

TEST_CASE("a background job holding the terminal does not hold the exit",
          "[agent_pty]") {
  Agent agent = StartAgent();
  const absl::Time begin = absl::Now();
  // The job ignores the SIGHUP the terminal sends when the shell exits and
  // keeps the slave open.
  ExecResult result =
      Run(*agent.connection,
          PtyCommand({"sh", "-c", "trap '' HUP; sleep 3 & echo done"}));
  CHECK(absl::Now() - begin < absl::Seconds(2));
  CHECK(result.stdout_data == "done\r\n");
  CHECK(result.exit.exit_code() == 0);
}

TEST_CASE("tearing down a pty stream kills the command and its job",
          "[agent_pty]") {
  // ~ExecSession sends SIGKILL: on a pty it must reach both the shell and
  // the job in the foreground group of its own.
  Agent agent = StartAgent();
  AtPrompt at = ShellAtPrompt(agent);
  Started& shell = at.shell;
  // The job ignores SIGHUP, so only the agent's kill of the foreground group
  // ends it.
  const pid_t sleep_pid = StartSleep(at, "trap '' HUP; sleep 100\n");
  shell.session.reset();
  CHECK(WaitGone(shell.pid));
  CHECK(WaitGone(sleep_pid));
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  while (agent.connection->stream_count() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  CHECK(agent.connection->stream_count() == 0);
  CHECK_FALSE(agent.connection->closed());
}

TEST_CASE("a pty command's timeout kills it", "[agent_pty]") {
  Agent agent = StartAgent();
  v1::ExecStart start = PtyCommand({"sleep", "100"});
  start.set_timeout_ms(200);
  ExecResult result = Run(*agent.connection, start);
  CHECK(result.exit.timed_out());
  CHECK(result.exit.signal() == SIGKILL);
}

TEST_CASE("several pty streams at once", "[agent_pty]") {
  Agent agent = StartAgent();
  std::vector<Started> shells;
  for (int i = 0; i < 4; ++i)
    shells.push_back(Start(agent, InteractiveShell()));
  for (int i = 0; i < 4; ++i) {
    REQUIRE(
        shells[i]
            .session
            ->WriteStdin("echo shell-$((" + std::to_string(i) + "+100)); tty\n",
                         false)
            .ok());
  }
  std::vector<std::string> ttys;
  for (int i = 0; i < 4; ++i) {
    std::string seen;
    size_t consumed = 0;
    const bool answered = ReadUntil(*shells[i].session,
                                    "shell-" + std::to_string(i + 100) + "\r\n",
                                    &seen, &consumed);
    INFO(seen);
    CHECK(answered);
    REQUIRE(ReadUntil(*shells[i].session, "/dev/pts/", &seen, &consumed));
    const size_t begin = consumed;
    REQUIRE(ReadUntil(*shells[i].session, "\r\n", &seen, &consumed));
    ttys.push_back(seen.substr(begin, consumed - 2 - begin));
  }
  std::sort(ttys.begin(), ttys.end());
  CHECK(std::unique(ttys.begin(), ttys.end()) == ttys.end());
}
