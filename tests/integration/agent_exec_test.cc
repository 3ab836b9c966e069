// Integration tests: the real corral-agent (from the build tree) on one end of
// a socketpair, driven through the daemon's AgentConnection.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "corral/unique_fd.h"
#include "daemon/agent/agent_connection.h"
#include "tests/integration/agent_test_util.h"

namespace {

namespace v1 = corral::agent::v1;
using corral::UniqueFd;
using corral::agent::testing::Agent;
using corral::agent::testing::Run;
using corral::agent::testing::SpawnAgent;
using corral::agent::testing::StartAgent;
using corral::agent::testing::WaitGone;
using corral::daemon::AgentConnection;
using corral::daemon::CollectExec;
using corral::daemon::ExecEvent;
using corral::daemon::ExecResult;
using corral::daemon::ExecSession;

v1::ExecStart Command(std::vector<std::string> argv) {
  v1::ExecStart start;
  for (auto& arg : argv) start.add_argv(arg);
  v1::EnvVar* path = start.add_env();
  path->set_name("PATH");
  path->set_value("/usr/local/bin:/usr/bin:/bin");
  return start;
}

int64_t RssKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

std::string ProcState(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), {});
  size_t paren = all.rfind(')');
  return paren == std::string::npos ? "" : all.substr(paren + 2, 1);
}

// Pids listed in /proc/<pid>/task/<pid>/children.
std::vector<pid_t> Children(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" +
                   std::to_string(pid) + "/children");
  std::vector<pid_t> children;
  pid_t child;
  while (in >> child) children.push_back(child);
  return children;
}

std::string MakeTempDir() {
  char dir[] = "/tmp/corral-agent-test-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  return dir;
}

}  // namespace

TEST_CASE("agent sends hello and answers pings", "[agent_exec]") {
  Agent agent = StartAgent();
  const v1::Hello& hello = agent.connection->hello();
  CHECK(hello.protocol_version() == 1);
  CHECK(hello.agent_version() == "0.1.0");
  std::vector<std::string> caps(hello.capabilities().begin(),
                                hello.capabilities().end());
  CHECK(caps == std::vector<std::string>{"exec", "exec.stdin", "exec.signal",
                                         "fs", "exec.pty", "exec.detach"});
  CHECK(hello.pid() == agent.pid);
  CHECK(agent.connection->Ping(absl::Seconds(2)).ok());
  CHECK(agent.connection->Ping(absl::Seconds(2)).ok());
}

TEST_CASE("echo, exit codes, stderr and death by signal", "[agent_exec]") {
  Agent agent = StartAgent();
  ExecResult echo = Run(*agent.connection, Command({"echo", "hello", "world"}));
  CHECK(echo.stdout_data == "hello world\n");
  CHECK(echo.stderr_data.empty());
  CHECK(echo.pid > 0);
  CHECK(echo.exit.exit_code() == 0);
  CHECK(echo.exit.signal() == 0);
  CHECK(echo.exit.error().empty());
  CHECK(echo.exit.stdout_bytes() == 12);
  CHECK(echo.exit.duration_us() > 0);

  ExecResult code =
      Run(*agent.connection, Command({"sh", "-c", "echo oops >&2; exit 42"}));
  CHECK(code.exit.exit_code() == 42);
  CHECK(code.stderr_data == "oops\n");
  CHECK(code.exit.stderr_bytes() == 5);

  ExecResult killed =
      Run(*agent.connection, Command({"sh", "-c", "kill -KILL $$"}));
  CHECK(killed.exit.signal() == SIGKILL);
  CHECK(killed.exit.exit_code() == 0);
  CHECK_FALSE(killed.exit.timed_out());
}

TEST_CASE("events arrive in order: started, output, exit", "[agent_exec]") {
  Agent agent = StartAgent();
  auto session = agent.connection->StartExec(
      Command({"sh", "-c", "echo one; echo two >&2; echo three"}));
  REQUIRE(session.ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  auto first = (*session)->Next(deadline);
  REQUIRE(first.ok());
  CHECK(first->kind == ExecEvent::Kind::kStarted);
  CHECK(first->pid > 0);
  std::string out, err;
  uint64_t last_sequence = 0;
  bool any = false;
  for (;;) {
    auto event = (*session)->Next(deadline);
    REQUIRE(event.ok());
    if (event->kind == ExecEvent::Kind::kExit) {
      CHECK(event->exit.exit_code() == 0);
      break;
    }
    REQUIRE(event->kind == ExecEvent::Kind::kOutput);
    if (any) CHECK(event->sequence > last_sequence);
    any = true;
    last_sequence = event->sequence;
    (event->fd == v1::FD_STDOUT ? out : err) += event->data;
  }
  CHECK(out == "one\nthree\n");
  CHECK(err == "two\n");
  auto after = (*session)->Next(deadline);
  CHECK(after.status().code() == absl::StatusCode::kOutOfRange);
}

TEST_CASE("environment, PATH search in the request's PATH, cwd",
          "[agent_exec]") {
  Agent agent = StartAgent();
  // A program that only the request's PATH can find.
  const std::string dir = MakeTempDir();
  const std::string tool = dir + "/corral-test-tool";
  {
    std::ofstream script(tool);
    script << "#!/bin/sh\necho found \"$GREETING\"\n";
  }
  REQUIRE(::chmod(tool.c_str(), 0755) == 0);

  v1::ExecStart start = Command({"corral-test-tool"});
  start.mutable_env(0)->set_value(dir + ":/usr/bin:/bin");
  v1::EnvVar* greeting = start.add_env();
  greeting->set_name("GREETING");
  greeting->set_value("hi there");
  ExecResult found = Run(*agent.connection, start);
  CHECK(found.exit.exit_code() == 0);
  CHECK(found.stdout_data == "found hi there\n");

  v1::ExecStart env_only = Command({"/usr/bin/env"});
  env_only.clear_env();
  ExecResult default_env = Run(*agent.connection, env_only);
  CHECK(default_env.stdout_data ==
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");

  v1::ExecStart pwd = Command({"pwd"});
  pwd.set_cwd(dir);
  CHECK(Run(*agent.connection, pwd).stdout_data == dir + "\n");
  v1::ExecStart root = Command({"pwd"});
  CHECK(Run(*agent.connection, root).stdout_data == "/\n");

  v1::ExecStart bad_cwd = Command({"pwd"});
  bad_cwd.set_cwd(dir + "/missing");
  ExecResult chdir_failed = Run(*agent.connection, bad_cwd);
  CHECK(chdir_failed.exit.exit_code() == 126);
  CHECK(chdir_failed.exit.error() ==
        "chdir " + dir + "/missing: No such file or directory");

  std::remove(tool.c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("missing or unrunnable programs report 127 and 126", "[agent_exec]") {
  Agent agent = StartAgent();
  ExecResult missing =
      Run(*agent.connection, Command({"corral-no-such-binary", "x"}));
  CHECK(missing.exit.exit_code() == 127);
  CHECK(missing.exit.error() ==
        "corral-no-such-binary: No such file or directory");
  CHECK(missing.pid == 0);  // never started

  ExecResult missing_path =
      Run(*agent.connection, Command({"/nonexistent/prog"}));
  CHECK(missing_path.exit.exit_code() == 127);

  const std::string dir = MakeTempDir();
  const std::string file = dir + "/not-executable";
  { std::ofstream(file) << "echo no\n"; }
  ExecResult denied = Run(*agent.connection, Command({file}));
  CHECK(denied.exit.exit_code() == 126);
  CHECK(denied.exit.error() == file + ": Permission denied");
  std::remove(file.c_str());
  ::rmdir(dir.c_str());

  // The connection is still fine afterwards.
  CHECK(Run(*agent.connection, Command({"true"})).exit.exit_code() == 0);
}

TEST_CASE("commands inherit only stdin, stdout and stderr", "[agent_exec]") {
  Agent agent = StartAgent({}, /*leak_fd=*/true);
  // The agent itself holds fd 7 (the test checks that it was inherited).
  std::string agent_fd7(256, '\0');
  const std::string link = "/proc/" + std::to_string(agent.pid) + "/fd/7";
  ssize_t n = ::readlink(link.c_str(), agent_fd7.data(), agent_fd7.size());
  REQUIRE(n > 0);
  CHECK(agent_fd7.substr(0, n) == "/dev/null");
  // ls opens the directory as fd 3; nothing else may be open.
  ExecResult fds = Run(*agent.connection, Command({"ls", "/proc/self/fd"}));
  CHECK(fds.stdout_data == "0\n1\n2\n3\n");
}

TEST_CASE("a huge argv[0] gets a bounded error", "[agent_exec]") {
  Agent agent = StartAgent();
  ExecResult result =
      Run(*agent.connection, Command({std::string(2u << 20, 'a')}));
  CHECK(result.exit.exit_code() >= 126);
  CHECK_FALSE(result.exit.error().empty());
  CHECK(result.exit.error().size() < 2048);
  CHECK(Run(*agent.connection, Command({"true"})).exit.exit_code() == 0);
}

TEST_CASE("10 MiB of stdin round-trips through cat", "[agent_exec]") {
  Agent agent = StartAgent();
  std::string input(10u << 20, '\0');
  std::mt19937_64 rng(42);
  for (char& c : input) c = static_cast<char>(rng());
  v1::ExecStart start = Command({"cat"});
  start.set_stdin_open(true);
  ExecResult result = Run(*agent.connection, start, input, absl::Seconds(20));
  CHECK(result.exit.exit_code() == 0);
  CHECK(result.stdout_data.size() == input.size());
  CHECK(result.stdout_data == input);
  CHECK(result.exit.stdout_bytes() == input.size());
}

TEST_CASE("interactive stdin: write, read the answer, close", "[agent_exec]") {
  Agent agent = StartAgent();
  v1::ExecStart start =
      Command({"sh", "-c", "while read l; do echo got:$l; done"});
  start.set_stdin_open(true);
  auto session = agent.connection->StartExec(start);
  REQUIRE(session.ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  REQUIRE((*session)->Next(deadline)->kind == ExecEvent::Kind::kStarted);
  for (std::string word : {"a", "bb", "ccc"}) {
    REQUIRE((*session)->WriteStdin(word + "\n", false).ok());
    std::string line;
    while (line.find('\n') == std::string::npos) {
      auto event = (*session)->Next(deadline);
      REQUIRE(event.ok());
      REQUIRE(event->kind == ExecEvent::Kind::kOutput);
      line += event->data;
    }
    CHECK(line == "got:" + word + "\n");
  }
  REQUIRE((*session)->WriteStdin("", true).ok());
  auto exit = (*session)->Next(deadline);
  REQUIRE(exit.ok());
  CHECK(exit->kind == ExecEvent::Kind::kExit);
  CHECK(exit->exit.exit_code() == 0);
  CHECK((*session)->WriteStdin("late", false).code() ==
        absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("stdin to a command that does not read it does not hang",
          "[agent_exec]") {
  Agent agent = StartAgent();
  v1::ExecStart start = Command({"true"});
  start.set_stdin_open(true);
  ExecResult result = Run(*agent.connection, start, std::string(2u << 20, 'x'));
  CHECK(result.exit.exit_code() == 0);
}

TEST_CASE("timeout kills the whole process group", "[agent_exec]") {
  Agent agent = StartAgent();
  const std::string dir = MakeTempDir();
  const std::string pid_file = dir + "/bg.pid";
  v1::ExecStart start = Command(
      {"sh", "-c", "sleep 100 & echo $! > " + pid_file + "; sleep 100"});
  start.set_timeout_ms(300);
  const absl::Time begin = absl::Now();
  ExecResult result = Run(*agent.connection, start);
  CHECK(absl::Now() - begin < absl::Seconds(3));
  CHECK(result.exit.timed_out());
  CHECK(result.exit.signal() == SIGKILL);
  CHECK(result.exit.duration_us() >= 300000);
  std::ifstream in(pid_file);
  pid_t background = 0;
  in >> background;
  REQUIRE(background > 0);
  CHECK(WaitGone(background));
  CHECK(WaitGone(result.pid));
  std::remove(pid_file.c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("output limit truncates and counts every byte", "[agent_exec]") {
  Agent agent = StartAgent();
  v1::ExecStart start = Command(
      {"sh", "-c", "head -c 1000000 /dev/zero; head -c 300 /dev/zero >&2"});
  start.set_output_limit_bytes(1000);
  ExecResult result = Run(*agent.connection, start);
  CHECK(result.exit.exit_code() == 0);
  CHECK(result.stdout_data.size() == 1000);
  CHECK(result.exit.stdout_truncated());
  CHECK(result.exit.stdout_bytes() == 1000000);
  CHECK(result.stderr_data.size() == 300);
  CHECK_FALSE(result.exit.stderr_truncated());
  CHECK(result.exit.stderr_bytes() == 300);

  // CollectExec's own cap.
  auto session = agent.connection->StartExec(Command({"echo", "0123456789"}));
  REQUIRE(session.ok());
  auto capped = CollectExec(**session, "", absl::Now() + absl::Seconds(5), 4);
  REQUIRE(capped.ok());
  CHECK(capped->stdout_data == "0123");
  CHECK(capped->exit.stdout_truncated());
  CHECK(capped->exit.stdout_bytes() == 11);
}

TEST_CASE("20 concurrent commands on one connection", "[agent_exec]") {
  Agent agent = StartAgent();
  constexpr int kCommands = 20;
  std::vector<std::unique_ptr<ExecSession>> sessions;
  const absl::Time begin = absl::Now();
  for (int i = 0; i < kCommands; ++i) {
    auto session = agent.connection->StartExec(Command(
        {"sh", "-c", "echo start-$1; sleep 0.3; echo end-$1 >&2; exit $1", "sh",
         std::to_string(i)}));
    REQUIRE(session.ok());
    sessions.push_back(*std::move(session));
  }
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<ExecResult>> results(kCommands);
  for (int i = 0; i < kCommands; ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          CollectExec(*sessions[i], "", absl::Now() + absl::Seconds(10));
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kCommands; ++i) {
    REQUIRE(results[i].ok());
    CHECK(results[i]->stdout_data == "start-" + std::to_string(i) + "\n");
    CHECK(results[i]->stderr_data == "end-" + std::to_string(i) + "\n");
    CHECK(results[i]->exit.exit_code() == i);
  }
  // They ran at the same time, not one after another (20 x 0.3 s).
  CHECK(absl::Now() - begin < absl::Seconds(3));
  sessions.clear();
  CHECK(agent.connection->stream_count() == 0);
}

TEST_CASE("200 MiB read slowly: the windows hold the producer",
          "[agent_exec]") {
  Agent agent = StartAgent();
  constexpr uint64_t kTotal = 200ull << 20;
  auto session = agent.connection->StartExec(
      Command({"head", "-c", std::to_string(kTotal), "/dev/zero"}));
  REQUIRE(session.ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  auto started = (*session)->Next(deadline);
  REQUIRE(started.ok());
  REQUIRE(started->kind == ExecEvent::Kind::kStarted);
  const int64_t rss_before = RssKiB(::getpid());

  // Nobody reads: the producer must end up blocked writing to its pipe.
  absl::SleepFor(absl::Milliseconds(400));
  CHECK(ProcState(started->pid) == "S");
  const int64_t rss_idle = RssKiB(::getpid());
  CHECK(rss_idle - rss_before < 8 * 1024);
  CHECK(RssKiB(agent.pid) < 32 * 1024);

  uint64_t received = 0;
  int64_t rss_peak = rss_idle;
  for (;;) {
    auto event = (*session)->Next(deadline);
    REQUIRE(event.ok());
    if (event->kind == ExecEvent::Kind::kExit) {
      CHECK(event->exit.exit_code() == 0);
      CHECK(event->exit.stdout_bytes() == kTotal);
      break;
    }
    received += event->data.size();
    if ((received & ((16u << 20) - 1)) < event->data.size()) {
      rss_peak = std::max(rss_peak, RssKiB(::getpid()));
    }
  }
  CHECK(received == kTotal);
#if !defined(__SANITIZE_ADDRESS__)
  // ASan's quarantine keeps up to 256 MiB of freed memory resident, so RSS
  // says nothing about what is live under it; the idle check above holds.
  CHECK(rss_peak - rss_before < 16 * 1024);
#endif
  CHECK(RssKiB(agent.pid) < 32 * 1024);
}

TEST_CASE("output left in the pipe after exit is not lost", "[agent_exec]") {
  Agent agent = StartAgent();
  // More than one window, less than window + pipe buffer: the command exits
  // while the agent still waits for window to send the rest.
  constexpr size_t kBytes = 300000;
  auto session = agent.connection->StartExec(
      Command({"head", "-c", std::to_string(kBytes), "/dev/zero"}));
  REQUIRE(session.ok());
  absl::SleepFor(absl::Milliseconds(600));  // well past the exit grace
  auto result = CollectExec(**session, "", absl::Now() + absl::Seconds(5));
  REQUIRE(result.ok());
  CHECK(result->stdout_data.size() == kBytes);
  CHECK(result->exit.stdout_bytes() == kBytes);
}

TEST_CASE("a background process holding the pipes does not hold the exit",
          "[agent_exec]") {
  Agent agent = StartAgent();
  const absl::Time begin = absl::Now();
  ExecResult result =
      Run(*agent.connection, Command({"sh", "-c", "sleep 3 & echo done"}));
  CHECK(absl::Now() - begin < absl::Seconds(2));
  CHECK(result.stdout_data == "done\n");
  CHECK(result.exit.exit_code() == 0);
}

TEST_CASE("Signal reaches the process group", "[agent_exec]") {
  Agent agent = StartAgent();
  auto session = agent.connection->StartExec(Command({"sleep", "100"}));
  REQUIRE(session.ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  auto started = (*session)->Next(deadline);
  REQUIRE(started.ok());
  REQUIRE((*session)->Signal(SIGTERM).ok());
  auto exit = (*session)->Next(deadline);
  REQUIRE(exit.ok());
  REQUIRE(exit->kind == ExecEvent::Kind::kExit);
  CHECK(exit->exit.signal() == SIGTERM);
  CHECK((*session)->Signal(SIGTERM).code() ==
        absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("dropping a session kills its command", "[agent_exec]") {
  Agent agent = StartAgent();
  auto session =
      agent.connection->StartExec(Command({"sh", "-c", "yes; sleep 100"}));
  REQUIRE(session.ok());
  auto started = (*session)->Next(absl::Now() + absl::Seconds(5));
  REQUIRE(started.ok());
  const pid_t pid = started->pid;
  session->reset();
  CHECK(WaitGone(pid));
  // The stream is drained and forgotten; the connection carries on.
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  while (agent.connection->stream_count() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  CHECK(agent.connection->stream_count() == 0);
  CHECK(Run(*agent.connection, Command({"echo", "ok"})).stdout_data == "ok\n");
  CHECK_FALSE(agent.connection->closed());
}

TEST_CASE("closing the connection kills running commands", "[agent_exec]") {
  Agent agent = StartAgent();
  auto session = agent.connection->StartExec(Command({"sleep", "100"}));
  REQUIRE(session.ok());
  auto started = (*session)->Next(absl::Now() + absl::Seconds(5));
  REQUIRE(started.ok());
  agent.connection->Close();
  CHECK(agent.connection->closed());
  auto next = (*session)->Next(absl::Now() + absl::Seconds(1));
  CHECK(next.status().code() == absl::StatusCode::kUnavailable);
  CHECK(WaitGone(started->pid));
  // With --fd, the agent exits when its connection closes.
  CHECK(WaitGone(agent.pid));
  CHECK(agent.connection->StartExec(Command({"true"})).status().code() ==
        absl::StatusCode::kUnavailable);
}

TEST_CASE("SIGTERM to the agent ends commands and the agent", "[agent_exec]") {
  Agent agent = StartAgent();
  auto session = agent.connection->StartExec(Command({"sleep", "100"}));
  REQUIRE(session.ok());
  auto started = (*session)->Next(absl::Now() + absl::Seconds(5));
  REQUIRE(started.ok());
  REQUIRE(::kill(agent.pid, SIGTERM) == 0);
  auto exit = (*session)->Next(absl::Now() + absl::Seconds(5));
  REQUIRE(exit.ok());
  REQUIRE(exit->kind == ExecEvent::Kind::kExit);
  CHECK(exit->exit.signal() == SIGTERM);
  CHECK(WaitGone(agent.pid));
  CHECK(agent.connection->WaitUntilClosed(absl::Now() + absl::Seconds(3)));
}

TEST_CASE("in listen-fd mode a new connection replaces the old one",
          "[agent_exec]") {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/agent.sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(listener.valid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr),
                 sizeof(addr)) == 0);
  REQUIRE(::listen(listener.get(), 4) == 0);
  const pid_t agent_pid = SpawnAgent("--listen-fd", listener.get());
  listener.Reset();

  auto connect = [&] {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr),
                      sizeof(addr)) == 0);
    auto connection = AgentConnection::Open(std::move(fd), absl::Seconds(5));
    REQUIRE(connection.ok());
    return *connection;
  };
  auto first = connect();
  auto session = first->StartExec(Command({"sleep", "100"}));
  REQUIRE(session.ok());
  auto started = (*session)->Next(absl::Now() + absl::Seconds(5));
  REQUIRE(started.ok());

  auto second = connect();
  CHECK(first->WaitUntilClosed(absl::Now() + absl::Seconds(3)));
  CHECK(WaitGone(started->pid));
  CHECK(Run(*second, Command({"echo", "second"})).stdout_data == "second\n");
  CHECK_FALSE(second->closed());
  // The listening agent outlives its connections; stop it.
  second.reset();
  session->reset();
  first.reset();
  CHECK(::kill(agent_pid, SIGTERM) == 0);
  CHECK(WaitGone(agent_pid));
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("as PID 1 the agent reaps orphans and resets oom_score_adj",
          "[agent_exec]") {
  if (::geteuid() != 0 || ::access("/usr/bin/unshare", X_OK) != 0) {
    WARN("needs root and unshare(1) for a PID namespace; not run");
    return;
  }
  Agent agent =
      StartAgent({"/usr/bin/unshare", "--pid", "--fork", "--kill-child"});
  REQUIRE(agent.connection->hello().pid() == 1);
  // The agent's pid outside the namespace: unshare's only child.
  std::vector<pid_t> inner = Children(agent.pid);
  REQUIRE(inner.size() == 1);
  const pid_t agent_pid = inner[0];

  // Launchers protect PID 1 from the OOM killer; commands must not inherit
  // that.
  {
    std::ofstream adj("/proc/" + std::to_string(agent_pid) + "/oom_score_adj");
    adj << "-500";
  }
  ExecResult adj =
      Run(*agent.connection, Command({"cat", "/proc/self/oom_score_adj"}));
  CHECK(adj.stdout_data == "0\n");

  // The background sleep is orphaned when sh exits, reparented to the agent
  // (PID 1 of the namespace), and must be reaped by it, not left a zombie.
  ExecResult result =
      Run(*agent.connection, Command({"sh", "-c", "sleep 0.2 & echo started"}));
  CHECK(result.stdout_data == "started\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  while (!Children(agent_pid).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  CHECK(Children(agent_pid).empty());
  agent.connection->Close();
  CHECK(WaitGone(agent.pid));
}
