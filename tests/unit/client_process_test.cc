// Tests of the background-process commands (exec -d, ps, attach, kill)
// against an in-process fake of corrald's process calls (FakeProcesses in
// client_fake_daemon.h), and of their pure renderings.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "client/process_commands.h"
#include "client/process_format.h"
#include "corral/v1/exec.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/unit/client_fake_daemon.h"

namespace corral::cli {
namespace {

using corral::v1::OUTPUT_STREAM_STDERR;
using corral::v1::OUTPUT_STREAM_STDOUT;
using corral::v1::Process;

Process MakeProcess(const std::string& id, const std::string& tag,
                    std::vector<std::string> argv, bool running = true) {
  Process process;
  process.set_sandbox_id("box1");
  process.set_process_id(id);
  process.set_tag(tag);
  for (const std::string& arg : argv) process.add_argv(arg);
  process.set_running(running);
  process.set_pid(running ? 4321 : 0);
  return process;
}

Process Exited(Process process, int exit_code, int signal = 0) {
  process.set_running(false);
  process.set_exit_code(exit_code);
  process.set_signal(signal);
  return process;
}

// A fake daemon with sandbox "box1" and no processes yet.
class FakeDaemon {
 public:
  FakeDaemon() { processes.AddSandbox("box1"); }

  FakeProcesses processes;

  CliRun Cli(std::vector<std::string> args, const std::string& input = "") {
    return server_.Cli(std::move(args), input);
  }
  CliRun CliWith(std::vector<std::string> args, const CliIo& io) {
    return server_.CliWith(std::move(args), io);
  }

 private:
  FakeServer server_{{&processes}};
};

// --- pure parts -------------------------------------------------------------

TEST_CASE("process states, exit codes and notices", "[client][process]") {
  const Process running = MakeProcess("p1", "", {"sleep", "9"});
  CHECK(ProcessState(running) == "running");
  CHECK(ProcessExitCode(running) == 0);
  CHECK_FALSE(ProcessEndNotice(running, "p1"));

  const Process exited = Exited(running, 3);
  CHECK(ProcessState(exited) == "exited 3");
  CHECK(ProcessExitCode(exited) == 3);
  CHECK_FALSE(ProcessEndNotice(exited, "p1"));
  CHECK(ProcessExitCode(Exited(running, 256 + 4)) == 4);

  const Process killed = Exited(running, 0, SIGKILL);
  CHECK(ProcessState(killed) == "killed by SIGKILL");
  CHECK(ProcessExitCode(killed) == 137);
  CHECK(ProcessExitCode(Exited(running, 0, SIGTERM)) == 143);

  Process timed_out = killed;
  timed_out.set_timed_out(true);
  CHECK(ProcessState(timed_out) == "timed out");
  CHECK(ProcessExitCode(timed_out) == 124);
  CHECK(*ProcessEndNotice(timed_out, "web") == "process web timed out");

  Process lost = running;
  lost.set_running(false);
  lost.set_error("the sandbox's agent went away");
  CHECK(ProcessLost(lost));
  CHECK(ProcessState(lost) == "lost: the sandbox's agent went away");
  CHECK(ProcessExitCode(lost) == 125);
  CHECK(*ProcessEndNotice(lost, "web") ==
        "process web ended without an exit status: the sandbox's agent went "
        "away");

  Process failed = Exited(running, 127);
  failed.set_error("no such file: nope\x1b[2J");
  CHECK_FALSE(ProcessLost(failed));
  CHECK(ProcessState(failed) == "failed: no such file: nope\\x1b[2J");
  CHECK(ProcessExitCode(failed) == 127);
  CHECK(*ProcessEndNotice(failed, "p1") ==
        "process p1: no such file: nope\\x1b[2J");
}

TEST_CASE("the ps table", "[client][process]") {
  const int64_t now = 1000000;
  corral::v1::ListProcessesResponse list;
  Process shell = MakeProcess("s1", "", {});
  shell.set_pty(true);
  shell.set_pid(12);
  shell.set_output_end(2048);
  shell.mutable_created_at()->set_seconds(now - 120);
  *list.add_processes() = shell;
  Process server = MakeProcess("p2", "web", {"python3", "-m", "http.server"});
  server.set_output_end(5 << 20);
  server.mutable_created_at()->set_seconds(now - 3 * 3600);
  *list.add_processes() = server;
  Process done = Exited(MakeProcess("p3", "", {"make", "test"}), 2);
  done.set_output_end(100);
  *list.add_processes() = done;
  Process killed = Exited(MakeProcess("p4", "", {"sleep", "1d"}), 0, 9);
  *list.add_processes() = killed;
  Process lost =
      MakeProcess("p5", "lost-one", {"printf", "\x1b]0;owned\x07"}, false);
  lost.set_error("the agent went away");
  lost.mutable_created_at()->set_seconds(now - 2 * 86400);
  *list.add_processes() = lost;

  const std::string table = FormatProcesses(list, now);
  CHECK(table ==
        "ID   TAG        TYPE      PID    STATE                       OUTPUT "
        "   CREATED   COMMAND\n"
        "s1   -          shell     12     running                     2.0 KiB"
        "   2m ago    /bin/sh -i\n"
        "p2   web        process   4321   running                     5.0 MiB"
        "   3h ago    python3 -m http.server\n"
        "p3   -          process   4321   exited 2                    100 B  "
        "   -         make test\n"
        "p4   -          process   4321   killed by SIGKILL           0 B    "
        "   -         sleep 1d\n"
        "p5   lost-one   process   -      lost: the agent went away   0 B    "
        "   2d ago    printf \\x1b]0;owned\\x07\n");
  CHECK(table.find('\x1b') == std::string::npos);
  CHECK(FormatProcesses(corral::v1::ListProcessesResponse(), now) ==
        "ID   TAG   TYPE   PID   STATE   OUTPUT   CREATED   COMMAND\n");
}

TEST_CASE("the request of exec -d", "[client][process]") {
  ExecOptions exec;
  exec.argv = {"sleep", "100"};
  exec.env = {"A=1", "FROM_CLIENT"};
  exec.workdir = "/srv";
  exec.timeout_seconds = 30;
  const EnvLookup lookup = [](const std::string& name) {
    return name == "FROM_CLIENT" ? std::optional<std::string>("yes")
                                 : std::nullopt;
  };
  absl::StatusOr<corral::v1::StartProcessRequest> request =
      BuildStartProcessRequest(exec, "box1", "nap", lookup);
  REQUIRE(request.ok());
  CHECK(request->tag() == "nap");
  CHECK(request->start().sandbox_id() == "box1");
  CHECK(request->start().argv_size() == 2);
  CHECK(request->start().env().at("FROM_CLIENT") == "yes");
  CHECK(request->start().cwd() == "/srv");
  CHECK(request->start().timeout_seconds() == 30);
  CHECK_FALSE(request->start().stdin_open());

  ExecOptions interactive = exec;
  interactive.interactive = true;
  CHECK(BuildStartProcessRequest(interactive, "box1", "", lookup)
            .status()
            .message() ==
        "-d and -i do not go together: a background process reads an empty "
        "stdin (/dev/null)");
  ExecOptions limited = exec;
  limited.output_limit_bytes = 10;
  CHECK_FALSE(BuildStartProcessRequest(limited, "box1", "", lookup).ok());
  ExecOptions both = exec;
  both.shell = "true";
  CHECK_FALSE(BuildStartProcessRequest(both, "box1", "", lookup).ok());
}

// --- exec -d ----------------------------------------------------------------

TEST_CASE("exec -d starts a background process and prints its id",
          "[client][process]") {
  FakeDaemon daemon;
  CliRun run = daemon.Cli({"exec", "-d", "--tag", "web", "-e", "A=1", "-e",
                           "B=two words", "--workdir", "/srv", "--timeout",
                           "30", "box1", "--", "python3", "-m", "http.server"});
  CHECK(run.exit_code == 0);
  CHECK(run.out == "p1\n");
  CHECK(run.err.empty());
  FakeProcesses::Received received = daemon.processes.received();
  REQUIRE(received.starts.size() == 1);
  const corral::v1::StartProcessRequest& start = received.starts[0];
  CHECK(start.tag() == "web");
  CHECK(start.start().sandbox_id() == "box1");
  REQUIRE(start.start().argv_size() == 3);
  CHECK(start.start().argv(0) == "python3");
  CHECK(start.start().argv(2) == "http.server");
  CHECK(start.start().shell().empty());
  CHECK(start.start().cwd() == "/srv");
  CHECK(start.start().env().size() == 2);
  CHECK(start.start().env().at("A") == "1");
  CHECK(start.start().env().at("B") == "two words");
  CHECK(start.start().timeout_seconds() == 30);
  CHECK_FALSE(start.start().stdin_open());
  CHECK(start.start().output_limit_bytes() == 0);

  // Without "--" the command follows the id; no tag, no timeout.
  CliRun bare = daemon.Cli({"exec", "--detach", "box1", "sleep", "100"});
  CHECK(bare.exit_code == 0);
  CHECK(bare.out == "p2\n");
  received = daemon.processes.received();
  REQUIRE(received.starts.size() == 2);
  CHECK(received.starts[1].tag().empty());
  CHECK(received.starts[1].start().argv_size() == 2);
  CHECK(received.starts[1].start().timeout_seconds() == 0);

  CliRun json = daemon.Cli({"--json", "exec", "-d", "--sh", "echo hi", "box1"});
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::StartsWith("{"));
  CHECK_THAT(json.out, Catch::Contains("\"process_id\":\"p3\""));
  CHECK_THAT(json.out, Catch::Contains("\"running\":true"));
  CHECK(std::count(json.out.begin(), json.out.end(), '\n') == 1);
  CHECK(daemon.processes.received().starts[2].start().shell() == "echo hi");

  // The tag names the process from now on.
  CliRun ps = daemon.Cli({"ps", "box1"});
  CHECK_THAT(ps.out, Catch::Contains("\np1   web   process   1001   running"));
}

TEST_CASE("exec -d refuses what a background process cannot have",
          "[client][process]") {
  FakeDaemon daemon;
  CliRun interactive = daemon.Cli({"exec", "-d", "-i", "box1", "--", "cat"});
  CHECK(interactive.exit_code == 125);
  CHECK(interactive.err ==
        "corral: -d and -i do not go together: a background process reads an "
        "empty stdin (/dev/null)\n");
  CliRun limited =
      daemon.Cli({"exec", "-d", "--output-limit", "10", "box1", "--", "ls"});
  CHECK(limited.exit_code == 125);
  CHECK_THAT(limited.err,
             Catch::StartsWith("corral: -d and --output-limit do not go "
                               "together"));
  CliRun tag = daemon.Cli({"exec", "--tag", "x", "box1", "--", "ls"});
  CHECK(tag.exit_code == 125);
  CHECK(tag.err == "corral: --tag names a background process: give -d too\n");
  CHECK(daemon.processes.received().starts.empty());

  // The daemon's refusals, as it words them.
  CliRun nobox = daemon.Cli({"exec", "-d", "nobox", "--", "ls"});
  CHECK(nobox.exit_code == 125);
  CHECK(nobox.err == "corral: no sandbox nobox\n");
  CHECK(nobox.out.empty());
  CHECK(
      daemon.Cli({"exec", "-d", "--tag", "t", "box1", "--", "ls"}).exit_code ==
      0);
  CliRun taken = daemon.Cli({"exec", "-d", "--tag", "t", "box1", "--", "ls"});
  CHECK(taken.exit_code == 125);
  CHECK(taken.err == "corral: tag t is taken\n");
}

// --- ps ---------------------------------------------------------------------

TEST_CASE("ps lists shells and processes in every state", "[client][process]") {
  FakeDaemon daemon;
  Process shell = MakeProcess("s1", "", {"/bin/bash"});
  shell.set_pty(true);
  daemon.processes.Add(shell);
  daemon.processes.Add(MakeProcess("p2", "web", {"serve"}));
  daemon.processes.Write("box1", "p2", OUTPUT_STREAM_STDOUT,
                         std::string(3000, 'x'));
  daemon.processes.Add(Exited(MakeProcess("p3", "", {"make"}), 2));
  daemon.processes.Add(Exited(MakeProcess("p4", "", {"sleep"}), 0, SIGTERM));
  Process lost = MakeProcess("p5", "", {"job"}, false);
  lost.set_error("the sandbox's agent went away");
  daemon.processes.Add(lost);

  CliRun run = daemon.Cli({"ps", "box1"});
  CHECK(run.exit_code == 0);
  CHECK(run.err.empty());
  CHECK(run.out ==
        "ID   TAG   TYPE      PID    STATE                                 "
        "OUTPUT    CREATED   COMMAND\n"
        "s1   -     shell     4321   running                               "
        "0 B       -         /bin/bash\n"
        "p2   web   process   4321   running                               "
        "2.9 KiB   -         serve\n"
        "p3   -     process   4321   exited 2                              "
        "0 B       -         make\n"
        "p4   -     process   4321   killed by SIGTERM                     "
        "0 B       -         sleep\n"
        "p5   -     process   -      lost: the sandbox's agent went away   "
        "0 B       -         job\n");

  CliRun json = daemon.Cli({"--json", "ps", "box1"});
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::StartsWith("{\"processes\":[{"));
  CHECK_THAT(json.out, Catch::Contains("\"tag\":\"web\""));
  CHECK_THAT(json.out, Catch::Contains("\"output_end\":\"3000\""));
  CHECK_THAT(json.out,
             Catch::Contains("\"error\":\"the sandbox's agent went away\""));

  CliRun missing = daemon.Cli({"ps", "nobox"});
  CHECK(missing.exit_code == 125);
  CHECK(missing.err == "corral: no sandbox nobox\n");
  CHECK(missing.out.empty());
}

// --- attach -----------------------------------------------------------------

TEST_CASE(
    "attach writes each stream's bytes to its fd and exits with the "
    "process's status",
    "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "build", {"make"}));
  const std::string binary("\x00\xff\xfe\r\n", 5);
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "out 1\n");
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDERR, "err 1\n");
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, binary);
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDERR, "err 2\n");
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "out 3\n");
  daemon.processes.End("box1", "p1", 3);

  CliRun run = daemon.Cli({"attach", "box1", "build"});
  CHECK(run.exit_code == 3);
  CHECK(run.out == "out 1\n" + binary + "out 3\n");
  CHECK(run.err == "err 1\nerr 2\n");
  FakeProcesses::Received received = daemon.processes.received();
  REQUIRE(received.gets.size() == 1);
  CHECK(received.gets[0].process_id() == "build");
  REQUIRE(received.attaches.size() == 1);
  // Named by its tag, attached by its id.
  CHECK(received.attaches[0].process_id() == "p1");
  CHECK(received.attaches[0].sandbox_id() == "box1");
  CHECK(received.attaches[0].cursor() == 0);

  // Both fds on one file: the order in which the process wrote.
  CliIo merged;
  merged.merge_stderr = true;
  CliRun together = daemon.CliWith({"attach", "box1", "p1"}, merged);
  CHECK(together.exit_code == 3);
  CHECK(together.out == "out 1\nerr 1\n" + binary + "err 2\nout 3\n");

  // From an offset: the rest, exactly.
  CliRun from = daemon.Cli({"attach", "--from", "8", "box1", "p1"});
  CHECK(from.exit_code == 3);
  CHECK(from.out == binary + "out 3\n");
  CHECK(from.err == "r 1\nerr 2\n");
  CHECK(daemon.processes.received().attaches[2].cursor() == 8);
}

TEST_CASE("attach reports missed bytes and the endings of processes",
          "[client][process]") {
  FakeDaemon daemon;
  // The ring lost the first 5000 bytes.
  daemon.processes.Add(MakeProcess("p1", "", {"spam"}), 5000);
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "tail\n");
  daemon.processes.End("box1", "p1", 0);
  CliRun missed = daemon.Cli({"attach", "box1", "p1", "--from", "1200"});
  CHECK(missed.exit_code == 0);
  CHECK(missed.out == "tail\n");
  CHECK(missed.err ==
        "corral: 3800 bytes of output are no longer kept; reading from "
        "offset 5000\n");

  daemon.processes.Add(MakeProcess("p2", "", {"sleep"}));
  daemon.processes.End("box1", "p2", 0, SIGKILL);
  CliRun killed = daemon.Cli({"attach", "box1", "p2"});
  CHECK(killed.exit_code == 137);
  CHECK(killed.err.empty());

  Process timed_out = Exited(MakeProcess("p3", "", {"sleep"}), 0, SIGKILL);
  timed_out.set_timed_out(true);
  daemon.processes.Add(timed_out);
  CliRun timeout = daemon.Cli({"attach", "box1", "p3"});
  CHECK(timeout.exit_code == 124);
  CHECK(timeout.err == "corral: process p3 timed out\n");

  Process lost = MakeProcess("p4", "", {"job"}, false);
  lost.set_error("the sandbox's agent went away");
  daemon.processes.Add(lost);
  CliRun gone = daemon.Cli({"attach", "box1", "p4"});
  CHECK(gone.exit_code == 125);
  CHECK(gone.err ==
        "corral: process p4 ended without an exit status: the sandbox's "
        "agent went away\n");

  Process failed = Exited(MakeProcess("p5", "", {"nope"}), 127);
  failed.set_error("no such file: nope");
  daemon.processes.Add(failed);
  CliRun not_started = daemon.Cli({"attach", "box1", "p5"});
  CHECK(not_started.exit_code == 127);
  CHECK(not_started.err == "corral: process p5: no such file: nope\n");
}

TEST_CASE("attach follows a running process until it exits",
          "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "web", {"serve"}));
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "one\n");
  bool saw_first = false;
  CliIo io;
  io.drive = [&](const CliOutput& output) {
    saw_first = Eventually([&] { return output.out() == "one\n"; });
    daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "two\n");
    daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDERR, "oops\n");
    daemon.processes.End("box1", "p1", 7);
  };
  CliRun run = daemon.CliWith({"attach", "box1", "web"}, io);
  CHECK(saw_first);
  CHECK(run.exit_code == 7);
  CHECK(run.out == "one\ntwo\n");
  CHECK(run.err == "oops\n");
}

TEST_CASE("attach --from end shows only what comes next", "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "", {"serve"}));
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "old stuff");
  CliIo io;
  io.drive = [&](const CliOutput&) {
    Eventually([&] { return daemon.processes.open_attaches() == 1; });
    daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "new\n");
    daemon.processes.End("box1", "p1", 0);
  };
  CliRun run = daemon.CliWith({"attach", "box1", "p1", "--from", "end"}, io);
  CHECK(run.exit_code == 0);
  CHECK(run.out == "new\n");
  CHECK(run.err.empty());
  REQUIRE(daemon.processes.received().attaches.size() == 1);
  CHECK(daemon.processes.received().attaches[0].cursor() == 9);
}

TEST_CASE("Ctrl-C detaches from a process, which keeps running",
          "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "web", {"serve"}));
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "one\n");
  struct sigaction before;
  ::sigaction(SIGINT, nullptr, &before);
  bool saw_output = false;
  CliIo io;
  io.drive = [&](const CliOutput& output) {
    if (!Eventually([&] { return output.out() == "one\n"; })) return;
    daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDERR, "two\n");
    saw_output = Eventually([&] { return output.err() == "two\n"; });
    ::kill(::getpid(), SIGINT);
  };
  CliRun run = daemon.CliWith({"attach", "box1", "web"}, io);
  CHECK(saw_output);
  CHECK(run.exit_code == 0);
  CHECK(run.out == "one\n");
  CHECK(run.err ==
        "two\ncorral: SIGINT: detached from process web, which keeps "
        "running; continue: corral attach box1 web --from 8\n");
  // corral's own SIGINT handling is gone with it.
  struct sigaction after;
  ::sigaction(SIGINT, nullptr, &after);
  CHECK(after.sa_handler == before.sa_handler);
  // The stream was cancelled; nothing was sent to the process.
  CHECK(Eventually(
      [&] { return daemon.processes.received().attach_cancels == 1; }));
  CHECK(daemon.processes.received().signals.empty());
  CHECK(daemon.processes.received().removes.empty());

  // Continuing from the hint's cursor repeats nothing.
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "three\n");
  daemon.processes.End("box1", "p1", 0);
  CliRun again = daemon.Cli({"attach", "box1", "web", "--from", "8"});
  CHECK(again.exit_code == 0);
  CHECK(again.out == "three\n");
  CHECK(again.err.empty());
}

TEST_CASE("a closed stdout ends attach quietly", "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "", {"yes"}));
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "y\ny\n");
  bool cancelled = false;
  CliIo io;
  io.closed_stdout = true;
  io.drive = [&](const CliOutput&) {
    cancelled = Eventually(
        [&] { return daemon.processes.received().attach_cancels == 1; },
        std::chrono::milliseconds(3000));
    // Had corral kept following, this ends it, with a code that fails.
    if (!cancelled) daemon.processes.End("box1", "p1", 7);
  };
  CliRun run = daemon.CliWith({"attach", "box1", "p1"}, io);
  CHECK(cancelled);
  CHECK(run.exit_code == 0);
  CHECK(run.err.empty());

  // --no-follow too.
  CliIo once;
  once.closed_stdout = true;
  CliRun dump = daemon.CliWith({"attach", "--no-follow", "box1", "p1"}, once);
  CHECK(dump.exit_code == 0);
  CHECK(dump.err.empty());
}

TEST_CASE("attach --no-follow prints the ring and exits", "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "log", {"serve"}));
  // More than one read's worth (64 KiB), in pieces of both streams.
  std::string expected_out;
  std::string expected_err;
  for (int i = 0; i < 100; ++i) {
    const std::string line = std::to_string(i) + std::string(2000, '.') + "\n";
    // The last line goes to stdout (the --from end-5 read below).
    const bool to_err = i % 10 == 4;
    daemon.processes.Write("box1", "p1",
                           to_err ? OUTPUT_STREAM_STDERR : OUTPUT_STREAM_STDOUT,
                           line);
    (to_err ? expected_err : expected_out) += line;
  }
  const uint64_t end = expected_out.size() + expected_err.size();
  CliRun run = daemon.Cli({"attach", "box1", "log", "--no-follow"});
  CHECK(run.exit_code == 0);
  CHECK(run.out == expected_out);
  CHECK(run.err == expected_err +
                       "corral: process log is running; continue: "
                       "corral attach box1 log --from " +
                       std::to_string(end) + "\n");
  FakeProcesses::Received received = daemon.processes.received();
  CHECK(received.attaches.empty());
  REQUIRE(received.reads.size() == 4);
  CHECK(received.reads[0].cursor() == 0);
  CHECK(received.reads[0].process_id() == "p1");
  CHECK(received.reads[3].cursor() == 3 * 65536);
  CHECK(received.reads[0].wait_ms() == 0);

  // From the end: nothing, at once.
  CliRun at_end =
      daemon.Cli({"attach", "--no-follow", "--from", "end", "box1", "log"});
  CHECK(at_end.exit_code == 0);
  CHECK(at_end.out.empty());

  // Once the process has exited: its status.
  daemon.processes.End("box1", "p1", 0, SIGTERM);
  CliRun ended = daemon.Cli({"attach", "--no-follow", "--from",
                             std::to_string(end - 5), "box1", "log"});
  CHECK(ended.exit_code == 143);
  CHECK(ended.out == expected_out.substr(expected_out.size() - 5));
  CHECK(ended.err.empty());
}

TEST_CASE("attach: errors of the daemon and of the flags",
          "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "", {"serve"}));
  daemon.processes.Write("box1", "p1", OUTPUT_STREAM_STDOUT, "abc");
  CliRun missing = daemon.Cli({"attach", "box1", "nope"});
  CHECK(missing.exit_code == 125);
  CHECK(missing.err == "corral: no process nope in sandbox box1\n");
  CliRun nobox = daemon.Cli({"attach", "nobox", "p1"});
  CHECK(nobox.exit_code == 125);
  CHECK(nobox.err == "corral: no sandbox nobox\n");
  CliRun past = daemon.Cli({"attach", "box1", "p1", "--from", "4"});
  CHECK(past.exit_code == 125);
  CHECK(past.err == "corral: cursor 4 is past the end 3\n");
  CliRun past_once =
      daemon.Cli({"attach", "--no-follow", "box1", "p1", "--from", "4"});
  CHECK(past_once.exit_code == 125);
  CHECK(past_once.err == "corral: cursor 4 is past the end 3\n");
  CliRun bad = daemon.Cli({"attach", "box1", "p1", "--from", "-1"});
  CHECK(bad.exit_code == 125);
  CHECK(bad.err ==
        "corral: --from expects an output offset or 'end', got '-1'\n");
  CHECK(daemon.processes.received().attaches.size() == 1);
}

// --- kill -------------------------------------------------------------------

TEST_CASE("kill signals a process by id or tag, and --rm removes it",
          "[client][process]") {
  FakeDaemon daemon;
  daemon.processes.Add(MakeProcess("p1", "web", {"serve"}));
  daemon.processes.Add(Exited(MakeProcess("p2", "", {"make"}), 1));
  CHECK(daemon.Cli({"kill", "box1", "web"}).exit_code == 0);
  CHECK(daemon.Cli({"kill", "box1", "p1", "INT"}).exit_code == 0);
  CliRun json = daemon.Cli({"--json", "kill", "box1", "web", "9"});
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::Contains("\"process_id\":\"p1\""));
  FakeProcesses::Received received = daemon.processes.received();
  REQUIRE(received.signals.size() == 3);
  CHECK(received.signals[0].process_id() == "web");
  CHECK(received.signals[0].sandbox_id() == "box1");
  CHECK(received.signals[0].signal() == SIGTERM);
  CHECK(received.signals[1].process_id() == "p1");
  CHECK(received.signals[1].signal() == SIGINT);
  CHECK(received.signals[2].signal() == SIGKILL);
  CHECK(received.removes.empty());

  CliRun remove = daemon.Cli({"kill", "--rm", "box1", "web"});
  CHECK(remove.exit_code == 0);
  CHECK(remove.out.empty());
  received = daemon.processes.received();
  REQUIRE(received.removes.size() == 1);
  CHECK(received.removes[0].process_id() == "web");
  CHECK(received.signals.size() == 3);
  CHECK_THAT(daemon.Cli({"ps", "box1"}).out,
             !Catch::Contains("web") && Catch::Contains("p2"));

  // An exited process: kill refuses, kill --rm SIGNAL removes anyway.
  CliRun exited = daemon.Cli({"kill", "box1", "p2", "HUP"});
  CHECK(exited.exit_code == 125);
  CHECK(exited.err == "corral: process p2 has exited\n");
  CHECK(daemon.Cli({"kill", "--rm", "box1", "p2", "HUP"}).exit_code == 0);
  received = daemon.processes.received();
  REQUIRE(received.signals.size() == 5);
  CHECK(received.signals[4].signal() == SIGHUP);
  REQUIRE(received.removes.size() == 2);
  CHECK(received.removes[1].process_id() == "p2");

  CliRun missing = daemon.Cli({"kill", "box1", "nope"});
  CHECK(missing.exit_code == 125);
  CHECK(missing.err == "corral: no process nope in sandbox box1\n");
  CliRun missing_rm = daemon.Cli({"kill", "--rm", "box1", "nope"});
  CHECK(missing_rm.exit_code == 125);
  CHECK(missing_rm.err == "corral: no process nope in sandbox box1\n");
}

}  // namespace
}  // namespace corral::cli
