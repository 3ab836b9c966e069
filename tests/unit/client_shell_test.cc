// Tests of the shell commands (shell, attach, ps, kill, shell-read,
// shell-write) against an in-process fake of corrald's Shells service that
// records what it got, including runs of the CLI on a real pseudo-terminal
// for raw mode, window-size changes and the detach keys. The daemon lists
// shells as processes on a terminal too (FakeProcesses): attach, ps and kill
// go through the Exec service. Background processes have their own tests
// (client_process_test.cc).
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/detach_keys.h"
#include "client/shell_format.h"
#include "corral/v1/shells.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/unit/client_fake_daemon.h"

namespace corral::cli {
namespace {

using corral::v1::AttachShellRequest;
using corral::v1::AttachShellResponse;

// What the fake received, for the tests to check.
struct Received {
  std::vector<corral::v1::OpenShellRequest> opens;
  std::vector<corral::v1::ReadShellRequest> attaches;
  // Keystrokes of all attach streams, concatenated.
  std::string input;
  std::vector<corral::v1::TerminalSize> resizes;
  // Attach streams the client half-closed (Read returned false without a
  // cancel) and ones it cancelled.
  int half_closes = 0;
  int cancels = 0;
  std::vector<corral::v1::WriteShellRequest> writes;
};

// Sandbox "box1" has three shells:
//   sh1   running; echoes keystrokes; "exit N" + Enter ends it with N,
//         Ctrl-D at the start of a line with 0 ("logout")
//   done  killed by SIGKILL; its output is "bye\n"
//   old   exited 3; the ring holds offsets 1000..1010 ("abcdefghij")
class FakeShells final : public corral::v1::Shells::Service {
 public:
  static constexpr uint64_t kOldStart = 1000;
  static constexpr char kOldOutput[] = "abcdefghij";

  Received received() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }

  grpc::Status OpenShell(grpc::ServerContext*,
                         const corral::v1::OpenShellRequest* request,
                         corral::v1::Shell* shell) override {
    if (request->sandbox_id() != "box1") return NoSandbox(*request);
    Record([&](Received& r) { r.opens.push_back(*request); });
    shell->set_sandbox_id("box1");
    shell->set_shell_id("sh1");
    shell->set_running(true);
    return grpc::Status::OK;
  }

  grpc::Status AttachShell(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<AttachShellResponse, AttachShellRequest>* stream)
      override {
    AttachShellRequest request;
    if (!stream->Read(&request) || !request.has_attach()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "attach first"};
    }
    const corral::v1::ReadShellRequest attach = request.attach();
    if (attach.sandbox_id() != "box1") return NoSandbox(attach);
    Record([&](Received& r) { r.attaches.push_back(attach); });
    AttachShellResponse response;
    if (attach.shell_id() == "done") {
      response.set_output("bye\n");
      response.set_offset(attach.cursor());
      response.set_exited(true);
      response.set_signal(9);
      stream->Write(response);
      return grpc::Status::OK;
    }
    if (attach.shell_id() == "old") {
      if (attach.cursor() < kOldStart) {
        response.set_missed(kOldStart - attach.cursor());
        response.set_offset(kOldStart);
        response.set_output("tail");
      } else {
        response.set_offset(attach.cursor());
      }
      response.set_exited(true);
      response.set_exit_code(3);
      stream->Write(response);
      return grpc::Status::OK;
    }
    if (attach.shell_id() != "sh1") {
      return {grpc::StatusCode::NOT_FOUND, "no shell " + attach.shell_id()};
    }
    uint64_t offset = attach.cursor();
    auto output = [&](const std::string& text) {
      AttachShellResponse out;
      out.set_output(text);
      out.set_offset(offset);
      offset += text.size();
      stream->Write(out);
    };
    output("$ ");
    std::string line;
    while (stream->Read(&request)) {
      if (request.has_resize()) {
        Record([&](Received& r) { r.resizes.push_back(request.resize()); });
        continue;
      }
      Record([&](Received& r) { r.input += request.input(); });
      output(request.input());
      for (const char key : request.input()) {
        if (key == '\x04' && line.empty()) return Exit(stream, 0, "logout\n");
        if (key == '\r' || key == '\n') {
          int code = 0;
          if (sscanf(line.c_str(), "exit %d", &code) == 1) {
            return Exit(stream, code, "");
          }
          line.clear();
        } else if (key == '\x04') {
          line.clear();  // hands the unfinished line over, as a tty does
        } else {
          line.push_back(key);
        }
      }
    }
    const bool cancelled = context->IsCancelled();
    Record([&](Received& r) { ++(cancelled ? r.cancels : r.half_closes); });
    return grpc::Status::OK;
  }

  grpc::Status ReadShell(grpc::ServerContext*,
                         const corral::v1::ReadShellRequest* request,
                         corral::v1::ReadShellResponse* response) override {
    if (request->shell_id() != "old") {
      return {grpc::StatusCode::NOT_FOUND, "no shell " + request->shell_id()};
    }
    const std::string ring = kOldOutput;
    const uint64_t end = kOldStart + ring.size();
    if (request->cursor() > end) {
      return {grpc::StatusCode::OUT_OF_RANGE, "cursor past the end"};
    }
    const uint64_t from = std::max(request->cursor(), kOldStart);
    const uint64_t max =
        request->max_bytes() != 0 ? request->max_bytes() : 65536;
    response->set_missed(from - request->cursor());
    response->set_offset(from);
    response->set_output(ring.substr(from - kOldStart, max));
    response->set_next_cursor(from + response->output().size());
    response->set_exited(response->next_cursor() == end);
    return grpc::Status::OK;
  }

  grpc::Status WriteShell(grpc::ServerContext*,
                          const corral::v1::WriteShellRequest* request,
                          corral::v1::WriteShellResponse*) override {
    Record([&](Received& r) { r.writes.push_back(*request); });
    return grpc::Status::OK;
  }

  // The three shells as the Exec service lists them (processes on a
  // terminal), into `processes`.
  static void AddTo(FakeProcesses& processes) {
    processes.AddSandbox("box1");
    corral::v1::Process sh1;
    sh1.set_sandbox_id("box1");
    sh1.set_process_id("sh1");
    sh1.set_pty(true);
    sh1.add_argv("/bin/bash");
    sh1.add_argv("-l");
    sh1.set_pid(41);
    sh1.set_running(true);
    processes.Add(sh1);
    processes.Write("box1", "sh1", corral::v1::OUTPUT_STREAM_STDOUT, "$ ");
    corral::v1::Process done;
    done.set_sandbox_id("box1");
    done.set_process_id("done");
    done.set_pty(true);
    done.set_signal(9);
    processes.Add(done);
    processes.Write("box1", "done", corral::v1::OUTPUT_STREAM_STDOUT, "bye\n");
    corral::v1::Process old;
    old.set_sandbox_id("box1");
    old.set_process_id("old");
    old.set_pty(true);
    old.add_argv("make");
    old.add_argv("test");
    old.set_exit_code(3);
    processes.Add(old, kOldStart);
    processes.Write("box1", "old", corral::v1::OUTPUT_STREAM_STDOUT,
                    kOldOutput);
  }

 private:
  template <typename Request>
  static grpc::Status NoSandbox(const Request& request) {
    return {grpc::StatusCode::NOT_FOUND, "no sandbox " + request.sandbox_id()};
  }

  template <typename Change>
  void Record(Change change) {
    std::lock_guard<std::mutex> lock(mutex_);
    change(received_);
  }

  grpc::Status Exit(
      grpc::ServerReaderWriter<AttachShellResponse, AttachShellRequest>* stream,
      int code, const std::string& last_words) {
    AttachShellResponse response;
    response.set_output(last_words);
    response.set_exited(true);
    response.set_exit_code(code);
    stream->Write(response);
    return grpc::Status::OK;
  }

  mutable std::mutex mutex_;
  Received received_;
};

class FakeDaemon {
 public:
  FakeDaemon() { FakeShells::AddTo(processes); }

  FakeShells shells;
  FakeProcesses processes;

  CliRun Cli(std::vector<std::string> args, const std::string& input = "") {
    return server_.Cli(std::move(args), input);
  }

  PtyRun Pty(std::vector<std::string> args,
             const std::function<void(PtyMaster&)>& drive,
             struct winsize size = {30, 100, 0, 0}) {
    args.insert(args.begin(), {"--socket", server_.socket()});
    return RunCliOnPty(args, size, drive);
  }

  // True once `count` attach streams have started.
  bool AttachedTimes(size_t count) {
    return Eventually(
        [&] { return shells.received().attaches.size() >= count; });
  }

 private:
  FakeServer server_{{&shells, &processes}};
};

bool IsRaw(int fd) {
  struct termios settings;
  if (::tcgetattr(fd, &settings) != 0) return false;
  return (settings.c_lflag & (ICANON | ECHO | ISIG)) == 0;
}

// --- pure parts -------------------------------------------------------------

TEST_CASE("detach keys parse like docker's", "[client][shell]") {
  CHECK(*ParseDetachKeys("ctrl-p,ctrl-q") == "\x10\x11");
  CHECK(*ParseDetachKeys(kDefaultDetachKeys) == "\x10\x11");
  CHECK(ParseDetachKeys("")->empty());
  CHECK(*ParseDetachKeys("CTRL-A,x") == "\x01x");
  CHECK(*ParseDetachKeys("ctrl-@") == std::string(1, '\0'));
  CHECK(*ParseDetachKeys("ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") ==
        "\x1b\x1c\x1d\x1e\x1f");
  for (const char* bad :
       {"ctrl-", "ctrl-1", "ab", ",", "ctrl-p,", "ctrl-pq", " ", "alt-x"}) {
    INFO(bad);
    CHECK_FALSE(ParseDetachKeys(bad).ok());
  }
}

TEST_CASE("the detach matcher finds the keys across reads", "[client][shell]") {
  SECTION("split over two reads, nothing of it forwarded") {
    DetachMatcher matcher("\x10\x11");
    DetachMatcher::Result first = matcher.Feed("ls\x10");
    CHECK(first.forward == "ls");
    CHECK_FALSE(first.detach);
    DetachMatcher::Result second = matcher.Feed("\x11more");
    CHECK(second.forward.empty());
    CHECK(second.detach);
  }
  SECTION("a lone first key is forwarded with what follows it") {
    DetachMatcher matcher("\x10\x11");
    CHECK(matcher.Feed("\x10").forward.empty());
    DetachMatcher::Result next = matcher.Feed("a");
    CHECK(next.forward ==
          "\x10"
          "a");
    CHECK_FALSE(next.detach);
    CHECK(matcher
              .Feed("\x10"
                    "b\x11")
              .forward ==
          "\x10"
          "b\x11");
  }
  SECTION("a repeated first key starts the sequence again") {
    DetachMatcher matcher("\x10\x11");
    DetachMatcher::Result result = matcher.Feed("\x10\x10\x11");
    CHECK(result.forward == "\x10");
    CHECK(result.detach);
  }
  SECTION("a held prefix is re-examined (aab typed as aaab)") {
    DetachMatcher matcher("aab");
    DetachMatcher::Result result = matcher.Feed("xaa");
    CHECK(result.forward == "x");
    result = matcher.Feed("ab");
    CHECK(result.forward == "a");
    CHECK(result.detach);
  }
  SECTION("end of input releases the held keys") {
    DetachMatcher matcher("\x10\x11");
    CHECK(matcher.Feed("\x10").forward.empty());
    CHECK(matcher.Flush() == "\x10");
    CHECK(matcher.Flush().empty());
  }
  SECTION("an empty sequence never detaches") {
    DetachMatcher matcher("");
    DetachMatcher::Result result = matcher.Feed("\x10\x11");
    CHECK(result.forward == "\x10\x11");
    CHECK_FALSE(result.detach);
  }
}

TEST_CASE("signals parse by name, with or without SIG, or number",
          "[client][shell]") {
  CHECK(*ParseSignal("TERM") == SIGTERM);
  CHECK(*ParseSignal("SIGKILL") == SIGKILL);
  CHECK(*ParseSignal("int") == SIGINT);
  CHECK(*ParseSignal("sigtstp") == SIGTSTP);
  CHECK(*ParseSignal("CONT") == SIGCONT);
  CHECK(*ParseSignal("9") == 9);
  CHECK(*ParseSignal("64") == 64);
  for (const char* bad : {"", "0", "65", "-9", "SIG", "FOO", "SIGTERMX"}) {
    INFO(bad);
    CHECK_FALSE(ParseSignal(bad).ok());
  }
}

TEST_CASE("shell exit codes", "[client][shell]") {
  CHECK(ShellExitCode(3, 0) == 3);
  CHECK(ShellExitCode(0, 9) == 137);
  CHECK(ShellExitCode(256 + 7, 0) == 7);
}

// --- against the fake daemon ------------------------------------------------

TEST_CASE("shell sends the terminal size, argv, cwd and env",
          "[client][shell]") {
  FakeDaemon daemon;
  CliRun run = daemon.Cli({"shell", "--cwd", "/src", "-e", "A=1", "-e",
                           "B=two words", "box1", "--", "/bin/bash", "-l"},
                          "exit 3\n");
  CHECK(run.exit_code == 3);
  CHECK(run.err.empty());
  CHECK(run.out.substr(0, 9) == "$ exit 3\n");
  const Received received = daemon.shells.received();
  REQUIRE(received.opens.size() == 1);
  const corral::v1::OpenShellRequest& open = received.opens[0];
  CHECK(open.sandbox_id() == "box1");
  REQUIRE(open.argv_size() == 2);
  CHECK(open.argv(0) == "/bin/bash");
  CHECK(open.argv(1) == "-l");
  CHECK(open.cwd() == "/src");
  CHECK(open.env().at("A") == "1");
  CHECK(open.env().at("B") == "two words");
  // stdin and stdout are files here, not terminals: the default size.
  CHECK(open.size().rows() == 24);
  CHECK(open.size().columns() == 80);
  REQUIRE(received.attaches.size() == 1);
  CHECK(received.attaches[0].shell_id() == "sh1");
  CHECK(received.attaches[0].cursor() == 0);
  CHECK(received.input.substr(0, 7) == "exit 3\n");

  // Without "--" the command follows the id, as for exec.
  CliRun bare = daemon.Cli({"shell", "box1", "sh", "-c", "x"}, "exit 4\n");
  CHECK(bare.exit_code == 4);
  REQUIRE(daemon.shells.received().opens.size() == 2);
  CHECK(daemon.shells.received().opens[1].argv_size() == 3);
  CHECK(daemon.shells.received().opens[1].argv(2) == "x");
}

TEST_CASE("piped input is forwarded as is and its end sends Ctrl-D",
          "[client][shell]") {
  FakeDaemon daemon;
  // The detach keys mean nothing in piped input.
  const std::string input = "echo \x10\x11\n";
  CliRun run = daemon.Cli({"shell", "box1"}, input);
  CHECK(run.exit_code == 0);
  CHECK(daemon.shells.received().input == input + "\x04");
  // The output kept coming after the input ended: "logout" followed the
  // Ctrl-D.
  CHECK(run.out == "$ " + input + "\x04" + "logout\n");

  // An unfinished last line takes two Ctrl-Ds, as at a terminal.
  FakeDaemon daemon2;
  CliRun partial = daemon2.Cli({"shell", "box1"}, "echo hi");
  CHECK(partial.exit_code == 0);
  CHECK(daemon2.shells.received().input == "echo hi\x04\x04");
}

TEST_CASE("the exit code of a shell killed by a signal", "[client][shell]") {
  FakeDaemon daemon;
  CliRun run = daemon.Cli({"attach", "box1", "done"});
  CHECK(run.exit_code == 137);
  CHECK(run.out == "bye\n");
  CHECK(run.err.empty());
}

TEST_CASE("attach --from: offsets, 'end', and the missed notice",
          "[client][shell]") {
  FakeDaemon daemon;
  CliRun end = daemon.Cli({"attach", "box1", "old", "--from", "end"});
  CHECK(end.exit_code == 3);
  CHECK(end.err.empty());
  REQUIRE(daemon.shells.received().attaches.size() == 1);
  // The end as GetProcess reports it; the shell is attached by its id.
  CHECK(daemon.shells.received().attaches[0].cursor() == 1010);
  CHECK(daemon.shells.received().attaches[0].shell_id() == "old");
  REQUIRE(daemon.processes.received().gets.size() == 1);
  CHECK(daemon.processes.received().gets[0].process_id() == "old");
  // A shell is attached interactively, never through AttachProcess.
  CHECK(daemon.processes.received().attaches.empty());

  CliRun missed = daemon.Cli({"attach", "box1", "old", "--from", "10"});
  CHECK(missed.exit_code == 3);
  CHECK(missed.out == "tail");
  CHECK(missed.err ==
        "corral: 990 bytes of output are no longer kept; replaying from "
        "offset 1000\n");
  CHECK(daemon.shells.received().attaches[1].cursor() == 10);

  CliRun whole = daemon.Cli({"attach", "box1", "old"});
  CHECK(daemon.shells.received().attaches[2].cursor() == 0);
  CHECK_THAT(whole.err, Catch::Contains("1000 bytes of output"));

  CliRun bad = daemon.Cli({"attach", "box1", "old", "--from", "soon"});
  CHECK(bad.exit_code == 125);
  CHECK(bad.err ==
        "corral: --from expects an output offset or 'end', got 'soon'\n");
  CliRun keys =
      daemon.Cli({"attach", "box1", "old", "--detach-keys", "ctrl-1"});
  CHECK(keys.exit_code == 125);
  CHECK_THAT(keys.err, Catch::StartsWith("corral: --detach-keys: cannot read "
                                         "key 'ctrl-1'"));
  CliRun missing = daemon.Cli({"attach", "box1", "nope", "--from", "end"});
  CHECK(missing.exit_code == 125);
  CHECK(missing.err == "corral: no process nope in sandbox box1\n");
  CliRun unknown = daemon.Cli({"attach", "box1", "nope"});
  CHECK(unknown.exit_code == 125);
  CHECK(unknown.err == "corral: no process nope in sandbox box1\n");
  CHECK(daemon.shells.received().attaches.size() == 3);
}

TEST_CASE("attach --no-follow prints a shell's ring and exits",
          "[client][shell]") {
  FakeDaemon daemon;
  CliRun old = daemon.Cli({"attach", "--no-follow", "box1", "old"});
  CHECK(old.exit_code == 3);
  CHECK(old.out == "abcdefghij");
  CHECK(old.err ==
        "corral: 1000 bytes of output are no longer kept; reading from "
        "offset 1000\n");
  CliRun running = daemon.Cli({"attach", "--no-follow", "box1", "sh1"});
  CHECK(running.exit_code == 0);
  CHECK(running.out == "$ ");
  CHECK(running.err ==
        "corral: process sh1 is running; continue: corral attach box1 sh1 "
        "--from 2\n");
  CHECK(daemon.shells.received().attaches.empty());
}

TEST_CASE("ps lists shells as processes on a terminal", "[client][shell]") {
  FakeDaemon daemon;
  CliRun table = daemon.Cli({"ps", "box1"});
  CHECK(table.exit_code == 0);
  // CREATED is empty in this fake ("-"); the rest is the shells' own.
  CHECK(table.out ==
        "ID     TAG   TYPE    PID   STATE               OUTPUT   CREATED   "
        "COMMAND\n"
        "sh1    -     shell   41    running             2 B      -         "
        "/bin/bash -l\n"
        "done   -     shell   -     killed by SIGKILL   4 B      -         "
        "/bin/sh -i\n"
        "old    -     shell   -     exited 3            1010 B   -         "
        "make test\n");
  CliRun json = daemon.Cli({"ps", "box1", "--json"});
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::StartsWith("{\"processes\":[{"));
  CHECK_THAT(json.out, Catch::Contains("\"process_id\":\"old\""));
  CHECK_THAT(json.out, Catch::Contains("\"pty\":true"));
  CHECK(std::count(json.out.begin(), json.out.end(), '\n') == 1);
}

TEST_CASE("kill signals a shell, and --rm removes it", "[client][shell]") {
  FakeDaemon daemon;
  CHECK(daemon.Cli({"kill", "box1", "sh1"}).exit_code == 0);
  CHECK(daemon.Cli({"kill", "box1", "sh1", "KILL"}).exit_code == 0);
  CHECK(daemon.Cli({"kill", "box1", "sh1", "SIGINT"}).exit_code == 0);
  CHECK(daemon.Cli({"kill", "box1", "sh1", "hup"}).exit_code == 0);
  CHECK(daemon.Cli({"kill", "box1", "sh1", "20"}).exit_code == 0);
  FakeProcesses::Received received = daemon.processes.received();
  REQUIRE(received.signals.size() == 5);
  CHECK(received.signals[0].signal() == SIGTERM);
  CHECK(received.signals[0].sandbox_id() == "box1");
  CHECK(received.signals[0].process_id() == "sh1");
  CHECK(received.signals[1].signal() == SIGKILL);
  CHECK(received.signals[2].signal() == SIGINT);
  CHECK(received.signals[3].signal() == SIGHUP);
  CHECK(received.signals[4].signal() == 20);
  CHECK(received.removes.empty());

  CliRun bad = daemon.Cli({"kill", "box1", "sh1", "FOO"});
  CHECK(bad.exit_code == 125);
  CHECK_THAT(bad.err, Catch::StartsWith("corral: unknown signal 'FOO'"));
  CHECK(daemon.processes.received().signals.size() == 5);

  // An exited shell cannot be signalled; with --rm it is removed anyway.
  CliRun exited = daemon.Cli({"kill", "box1", "done"});
  CHECK(exited.exit_code == 125);
  CHECK(exited.err == "corral: process done has exited\n");
  CliRun remove = daemon.Cli({"kill", "--rm", "box1", "done", "KILL"});
  CHECK(remove.exit_code == 0);
  received = daemon.processes.received();
  REQUIRE(received.removes.size() == 1);
  CHECK(received.removes[0].process_id() == "done");
  CHECK(received.signals.back().signal() == SIGKILL);
  CHECK(received.signals.size() == 7);

  CliRun json = daemon.Cli({"--json", "kill", "--rm", "box1", "sh1"});
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::Contains("\"process_id\":\"sh1\""));
  CHECK(daemon.processes.received().removes.size() == 2);
  // --rm alone removes without a signal first.
  CHECK(daemon.processes.received().signals.size() == 7);
}

TEST_CASE("shell-read prints output and the next cursor", "[client][shell]") {
  FakeDaemon daemon;
  CliRun run =
      daemon.Cli({"shell-read", "box1", "old", "--cursor", "5", "--max", "3"});
  CHECK(run.exit_code == 0);
  CHECK(run.out == "abc");
  CHECK(run.err ==
        "corral: 995 bytes of output are no longer kept; read from offset "
        "1000\ncorral: next cursor 1003\n");

  CliRun last = daemon.Cli({"shell-read", "box1", "old", "--cursor", "1008"});
  CHECK(last.out == "ij");
  CHECK(last.err ==
        "corral: next cursor 1010 (the shell exited; nothing follows)\n");

  CliRun json = daemon.Cli({"shell-read", "box1", "old", "--cursor", "1001",
                            "--max", "2", "--json"});
  CHECK(json.exit_code == 0);
  CHECK(json.out ==
        "{\"output\":\"bc\",\"output_base64\":\"YmM=\",\"offset\":1001,"
        "\"next_cursor\":1003,\"missed\":0,\"exited\":false}\n");
  CHECK(json.err.empty());

  CliRun past = daemon.Cli({"shell-read", "box1", "old", "--cursor", "2000"});
  CHECK(past.exit_code == 125);
  CHECK(past.err == "corral: cursor past the end\n");
  CliRun negative = daemon.Cli({"shell-read", "box1", "old", "--cursor", "-1"});
  CHECK(negative.exit_code == 125);
}

TEST_CASE("shell-write types text, with Enter unless --no-newline",
          "[client][shell]") {
  FakeDaemon daemon;
  CHECK(daemon.Cli({"shell-write", "box1", "sh1", "ls -l"}).exit_code == 0);
  CHECK(daemon.Cli({"shell-write", "box1", "sh1", "--no-newline", "y"})
            .exit_code == 0);
  const Received received = daemon.shells.received();
  REQUIRE(received.writes.size() == 2);
  CHECK(received.writes[0].shell_id() == "sh1");
  CHECK(received.writes[0].input() == "ls -l");
  CHECK(received.writes[0].newline());
  CHECK(received.writes[1].input() == "y");
  CHECK_FALSE(received.writes[1].newline());
}

TEST_CASE("only run, exec and shell take a command after --",
          "[client][shell]") {
  FakeDaemon daemon;
  CliRun run = daemon.Cli({"ps", "box1", "--", "x"});
  CHECK(run.exit_code == 125);
  CHECK(run.err ==
        "corral: only 'run', 'exec' and 'shell' take a command after '--'\n");
}

// --- on a real terminal -----------------------------------------------------

TEST_CASE("shell on a terminal: raw mode, size, resize, exit restores it",
          "[client][shell][pty]") {
  FakeDaemon daemon;
  bool raw_while_attached = false;
  bool resized = false;
  PtyRun run = daemon.Pty({"shell", "box1"}, [&](PtyMaster& terminal) {
    if (!daemon.AttachedTimes(1)) return;
    raw_while_attached = IsRaw(terminal.slave());
    // The terminal is resized: the kernel would send SIGWINCH to the
    // terminal's foreground job; this one is nobody's controlling terminal,
    // so the test sends it.
    struct winsize bigger = {50, 132, 0, 0};
    ::ioctl(terminal.slave(), TIOCSWINSZ, &bigger);
    ::kill(::getpid(), SIGWINCH);
    resized =
        Eventually([&] { return !daemon.shells.received().resizes.empty(); });
    terminal.Type("exit 3\r");
  });
  CHECK(run.exit_code == 3);
  CHECK(raw_while_attached);
  CHECK(resized);
  CHECK(SameTerminalSettings(run.before, run.after));
  CHECK_FALSE(IsRaw(0));
  const Received received = daemon.shells.received();
  REQUIRE(received.opens.size() == 1);
  CHECK(received.opens[0].size().rows() == 30);
  CHECK(received.opens[0].size().columns() == 100);
  REQUIRE(received.resizes.size() == 1);
  CHECK(received.resizes[0].rows() == 50);
  CHECK(received.resizes[0].columns() == 132);
  // Raw mode: Enter arrives as '\r', unchanged.
  CHECK(received.input == "exit 3\r");
  CHECK_THAT(run.output, Catch::Contains("$ exit 3\r"));
}

TEST_CASE("the detach keys split across reads detach and restore the terminal",
          "[client][shell][pty]") {
  FakeDaemon daemon;
  bool forwarded_before = false;
  PtyRun run = daemon.Pty({"shell", "box1"}, [&](PtyMaster& terminal) {
    if (!daemon.AttachedTimes(1)) return;
    terminal.Type("ab\x10");
    forwarded_before =
        Eventually([&] { return daemon.shells.received().input == "ab"; });
    // Give the CLI time to read the Ctrl-P on its own before the Ctrl-Q.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    terminal.Type("\x11");
  });
  CHECK(run.exit_code == 0);
  CHECK(forwarded_before);
  CHECK_THAT(run.output,
             Catch::Contains("detached from shell sh1; reattach: corral "
                             "attach box1 sh1\r\n"));
  CHECK(SameTerminalSettings(run.before, run.after));
  CHECK(Eventually([&] {
    const Received received = daemon.shells.received();
    return received.half_closes + received.cancels == 1;
  }));
  const Received received = daemon.shells.received();
  // Neither key reached the shell; the stream was half-closed, not cut.
  CHECK(received.input == "ab");
  CHECK(received.half_closes == 1);
}

TEST_CASE("a lone Ctrl-P is typed, and --detach-keys changes or disables them",
          "[client][shell][pty]") {
  FakeDaemon daemon;
  PtyRun lone = daemon.Pty({"attach", "box1", "sh1"}, [&](PtyMaster& terminal) {
    if (!daemon.AttachedTimes(1)) return;
    terminal.Type("\x10");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    terminal.Type("a");
    Eventually([&] { return daemon.shells.received().input.size() == 2; });
    terminal.Type("\rexit 4\r");
  });
  CHECK(lone.exit_code == 4);
  CHECK(daemon.shells.received().input ==
        "\x10"
        "a\rexit 4\r");
  CHECK(SameTerminalSettings(lone.before, lone.after));

  FakeDaemon custom;
  PtyRun ctrl_x =
      custom.Pty({"attach", "--detach-keys", "ctrl-x", "box1", "sh1"},
                 [&](PtyMaster& terminal) {
                   if (!custom.AttachedTimes(1)) return;
                   terminal.Type(
                       "\x10\x11"
                       "b\x18");
                 });
  CHECK(ctrl_x.exit_code == 0);
  CHECK(custom.shells.received().input ==
        "\x10\x11"
        "b");
  CHECK_THAT(ctrl_x.output, Catch::Contains("detached from shell sh1"));

  FakeDaemon disabled;
  PtyRun none = disabled.Pty({"attach", "--detach-keys", "", "box1", "sh1"},
                             [&](PtyMaster& terminal) {
                               if (!disabled.AttachedTimes(1)) return;
                               terminal.Type("\x10\x11\rexit 5\r");
                             });
  CHECK(none.exit_code == 5);
  CHECK(disabled.shells.received().input == "\x10\x11\rexit 5\r");
}

TEST_CASE("SIGTERM to corral restores the terminal and leaves the shell",
          "[client][shell][pty]") {
  FakeDaemon daemon;
  struct sigaction before;
  ::sigaction(SIGTERM, nullptr, &before);
  PtyRun run = daemon.Pty({"attach", "box1", "sh1"}, [&](PtyMaster&) {
    if (!daemon.AttachedTimes(1)) return;
    ::kill(::getpid(), SIGTERM);
  });
  CHECK(run.exit_code == 128 + SIGTERM);
  CHECK(SameTerminalSettings(run.before, run.after));
  CHECK_THAT(run.output,
             Catch::Contains("corral: SIGTERM: shell sh1 keeps running; "
                             "reattach: corral attach box1 sh1"));
  struct sigaction after;
  ::sigaction(SIGTERM, nullptr, &after);
  CHECK(after.sa_handler == before.sa_handler);
  CHECK(Eventually([&] { return daemon.shells.received().cancels == 1; }));
}

}  // namespace
}  // namespace corral::cli
