// Detached commands (ExecStart.detach_key, Resume): the real corral-agent in
// listen mode outlives its connections, and a later connection takes its
// commands up again without losing or duplicating output. Driven through the
// daemon's AgentConnection, or with raw frames where exact frames matter.
// The end checks the daemon's side against a fake agent: offsets,
// Abandon and manual acknowledgement.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "corral/unique_fd.h"
#include "daemon/agent/agent_connection.h"
#include "guest-agent/wire/frame_codec.h"
#include "tests/integration/agent_test_util.h"

namespace {

namespace v1 = corral::agent::v1;
namespace wire = corral::agent::wire;
using corral::UniqueFd;
using corral::agent::testing::FrameSocket;
using corral::agent::testing::SocketPair;
using corral::agent::testing::SpawnAgent;
using corral::agent::testing::StartAgent;
using corral::agent::testing::TempDir;
using corral::agent::testing::WaitGone;
using corral::daemon::AgentConnection;
using corral::daemon::ExecEvent;
using corral::daemon::ExecSession;

constexpr absl::Duration kWait = absl::Seconds(10);

// ---- Helpers ------------------------------------------------------------

v1::ExecStart Command(std::vector<std::string> argv,
                      const std::string& detach_key = "") {
  v1::ExecStart start;
  for (auto& arg : argv) start.add_argv(arg);
  v1::EnvVar* path = start.add_env();
  path->set_name("PATH");
  path->set_value("/usr/local/bin:/usr/bin:/bin");
  start.set_detach_key(detach_key);
  return start;
}

v1::Resume ResumeOf(const std::string& key, uint64_t stdout_offset = 0,
                    uint64_t stderr_offset = 0) {
  v1::Resume resume;
  resume.set_key(key);
  resume.set_stdout_offset(stdout_offset);
  resume.set_stderr_offset(stderr_offset);
  return resume;
}

// What `seq from to` prints.
std::string Seq(int from, int to) {
  std::string out;
  for (int i = from; i <= to; ++i) out += std::to_string(i) + "\n";
  return out;
}

std::vector<std::string> Detached(const AgentConnection& connection) {
  const auto& keys = connection.hello().detached();
  return std::vector<std::string>(keys.begin(), keys.end());
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

std::string ProcState(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), {});
  size_t paren = all.rfind(')');
  return paren == std::string::npos ? "" : all.substr(paren + 2, 1);
}

int64_t RssKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

// corral-agent --listen-fd on a Unix socket in a temporary directory; every
// Connect is a new connection that replaces the previous one. SIGTERM at the
// end.
class ListeningAgent {
 public:
  ListeningAgent() : dir_("corral-detach") {
    const std::string path = dir_ / "agent.sock";
    address_.sun_family = AF_UNIX;
    std::snprintf(address_.sun_path, sizeof(address_.sun_path), "%s",
                  path.c_str());
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listener.valid());
    REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address_),
                   sizeof(address_)) == 0);
    REQUIRE(::listen(listener.get(), 8) == 0);
    pid_ = SpawnAgent("--listen-fd", listener.get());
  }
  ~ListeningAgent() {
    ::kill(pid_, SIGTERM);
    WaitGone(pid_, absl::Seconds(5));
  }

  pid_t pid() const { return pid_; }

  UniqueFd ConnectFd() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address_),
                      sizeof(address_)) == 0);
    return fd;
  }

  std::shared_ptr<AgentConnection> Connect() {
    auto connection = AgentConnection::Open(ConnectFd(), absl::Seconds(5));
    INFO(connection.status().ToString());
    REQUIRE(connection.ok());
    return *connection;
  }

 private:
  TempDir dir_;
  sockaddr_un address_{};
  pid_t pid_ = -1;
};

// Output of one session by fd, each event checked against its offset: the
// first event of an fd starts at `base`, every later one where the last
// ended. Also the order of the events, to acknowledge a prefix.
struct Collected {
  uint64_t base[2] = {0, 0};
  std::string data[2];
  std::vector<std::pair<int, uint64_t>> order;  // (fd index, bytes)
  uint64_t total = 0;

  static int Index(v1::Fd fd) { return fd == v1::FD_STDOUT ? 0 : 1; }
  uint64_t end(int index) const { return base[index] + data[index].size(); }

  void Add(const ExecEvent& event) {
    REQUIRE(event.kind == ExecEvent::Kind::kOutput);
    const int index = Index(event.fd);
    CHECK(event.offset == end(index));
    data[index] += event.data;
    order.emplace_back(index, event.data.size());
    total += event.data.size();
  }

  // Per fd, where the first `bytes` returned (in order) end.
  std::pair<uint64_t, uint64_t> OffsetsAfter(uint64_t bytes) const {
    uint64_t ends[2] = {base[0], base[1]};
    for (const auto& [index, size] : order) {
      const uint64_t take = std::min(size, bytes);
      ends[index] += take;
      bytes -= take;
    }
    return {ends[0], ends[1]};
  }
};

// Reads events into `collected` until `done(collected)` holds; returns the
// exit event if the command exits first (kind kExit), else a kOutput event.
ExecEvent ReadUntil(ExecSession& session, Collected& collected,
                    const std::function<bool(const Collected&)>& done,
                    absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done(collected)) {
    auto event = session.Next(deadline);
    INFO(event.status().ToString());
    // The end of what arrived, for a failure.
    INFO("stdout: " << collected.data[0].substr(
             collected.data[0].size() -
             std::min<size_t>(collected.data[0].size(), 200)));
    INFO("stderr: " << collected.data[1]);
    REQUIRE(event.ok());
    if (event->kind == ExecEvent::Kind::kExit) return *std::move(event);
    collected.Add(*event);
  }
  ExecEvent none;
  none.kind = ExecEvent::Kind::kOutput;
  return none;
}

// Reads the rest of the session into `collected`; returns the exit.
v1::ExecExit ReadToExit(ExecSession& session, Collected& collected,
                        absl::Duration timeout = kWait) {
  ExecEvent exit = ReadUntil(
      session, collected, [](const Collected&) { return false; }, timeout);
  REQUIRE(exit.kind == ExecEvent::Kind::kExit);
  return exit.exit;
}

// The kStarted event's pid.
pid_t ExpectStarted(ExecSession& session) {
  auto event = session.Next(absl::Now() + kWait);
  INFO(event.status().ToString());
  REQUIRE(event.ok());
  REQUIRE(event->kind == ExecEvent::Kind::kStarted);
  return event->pid;
}

// The status that ends a session the agent refused.
absl::Status Refusal(ExecSession& session) {
  auto event = session.Next(absl::Now() + kWait);
  REQUIRE_FALSE(event.ok());
  return event.status();
}

bool WaitFor(const std::function<bool()>& condition,
             absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// Writes `seq 1 5000` and a stderr line, waits for `trigger` to exist, then
// writes `seq 5001 6000` and another stderr line and exits 7.
v1::ExecStart TwoPhases(const std::string& trigger, const std::string& key) {
  return Command({"sh", "-c",
                  "seq 1 5000; echo first-err >&2; "
                  "while [ ! -e \"$1\" ]; do sleep 0.02; done; "
                  "seq 5001 6000; echo second-err >&2; exit 7",
                  "sh", trigger},
                 key);
}

void Touch(const std::string& path) { std::ofstream(path) << "go"; }

bool FirstPhaseRead(const Collected& c) {
  return c.data[0].size() == Seq(1, 5000).size() && c.data[1] == "first-err\n";
}

// ---- Raw frames ---------------------------------------------------------

// The daemon's end spoken by hand, for exact frames.
class RawClient : public FrameSocket {
 public:
  explicit RawClient(UniqueFd fd) : FrameSocket(std::move(fd)) {}

  void Send(const v1::Frame& frame) { REQUIRE(FrameSocket::Send(frame)); }

  bool Receive(v1::Frame* frame, absl::Duration timeout = kWait) {
    return FrameSocket::Receive(frame, timeout);
  }

  v1::Frame Expect(v1::Frame::BodyCase body) {
    v1::Frame frame;
    REQUIRE(Receive(&frame));
    INFO(frame.body_case());
    REQUIRE(frame.body_case() == body);
    return frame;
  }
};

// ---- A fake agent, for the daemon's checks --------------------------------

class FakeAgent {
 public:
  FakeAgent() {
    auto [daemon_end, peer] = SocketPair();
    daemon_end_ = std::move(daemon_end);
    peer_ = std::make_unique<RawClient>(std::move(peer));
  }

  std::shared_ptr<AgentConnection> Open(
      std::vector<std::string> detached = {}) {
    v1::Frame hello;
    hello.mutable_hello()->set_protocol_version(1);
    hello.mutable_hello()->set_agent_version("fake");
    hello.mutable_hello()->set_pid(1);
    for (auto& key : detached) hello.mutable_hello()->add_detached(key);
    peer_->Send(hello);
    auto connection =
        AgentConnection::Open(std::move(daemon_end_), absl::Seconds(3));
    REQUIRE(connection.ok());
    return *connection;
  }

  UniqueFd TakeDaemonEnd() { return std::move(daemon_end_); }
  RawClient& peer() { return *peer_; }

  // Receives the opening frame of a stream and answers exec_started.
  uint64_t AcceptStream(v1::Frame::BodyCase opening) {
    const uint64_t id = peer_->Expect(opening).stream_id();
    v1::Frame started;
    started.set_stream_id(id);
    started.mutable_exec_started()->set_pid(4321);
    peer_->Send(started);
    return id;
  }

  void SendOutput(uint64_t id, v1::Fd fd, const std::string& data,
                  uint64_t sequence, uint64_t offset) {
    v1::Frame frame;
    frame.set_stream_id(id);
    frame.mutable_output()->set_fd(fd);
    frame.mutable_output()->set_data(data);
    frame.mutable_output()->set_sequence(sequence);
    frame.mutable_output()->set_offset(offset);
    peer_->Send(frame);
  }

 private:
  UniqueFd daemon_end_;
  std::unique_ptr<RawClient> peer_;
};

std::string ClosedReason(AgentConnection& connection) {
  REQUIRE(connection.WaitUntilClosed(absl::Now() + absl::Seconds(3)));
  return connection.close_reason();
}

}  // namespace

// ---- The real agent -------------------------------------------------------

TEST_CASE("hello announces exec.detach and lists no commands at first",
          "[agent_detach]") {
  ListeningAgent agent;
  auto connection = agent.Connect();
  const auto& caps = connection->hello().capabilities();
  CHECK(std::find(caps.begin(), caps.end(), "exec.detach") != caps.end());
  CHECK(connection->hello().detached().empty());
}

TEST_CASE("a detached command survives the connection and resumes exactly",
          "[agent_detach]") {
  ListeningAgent agent;
  TempDir dir("corral-detach-trigger");
  const std::string trigger = dir / "go";
  auto first = agent.Connect();
  auto session = first->StartExec(TwoPhases(trigger, "job-1"));
  REQUIRE(session.ok());
  (*session)->SetManualAck();
  const pid_t pid = ExpectStarted(**session);

  Collected before;
  ReadUntil(**session, before, FirstPhaseRead);
  CHECK(before.data[0] == Seq(1, 5000));
  // Acknowledge about half of what arrived, as a process table that stored
  // only that much before the daemon died.
  const uint64_t acknowledged = before.total / 2;
  REQUIRE((*session)->Acknowledge(acknowledged).ok());
  CHECK((*session)->Acknowledge(before.total).code() ==
        absl::StatusCode::kInvalidArgument);
  const auto [acked_out, acked_err] = before.OffsetsAfter(acknowledged);
  // Let the acknowledgement reach the agent before the drop.
  REQUIRE(first->Ping(absl::Seconds(5)).ok());
  first->Close();
  session->reset();

  absl::SleepFor(absl::Milliseconds(200));
  REQUIRE(Alive(pid));
  auto second = agent.Connect();
  CHECK(Detached(*second) == std::vector<std::string>{"job-1"});

  uint64_t from_out = 0, from_err = 0;
  SECTION("from the acknowledged offsets: unacknowledged bytes come again") {
    from_out = acked_out;
    from_err = acked_err;
  }
  SECTION("from everything received: nothing comes twice") {
    from_out = before.end(0);
    from_err = before.end(1);
  }
  auto resumed = second->ResumeExec(ResumeOf("job-1", from_out, from_err),
                                    /*stdin_open=*/false);
  REQUIRE(resumed.ok());
  CHECK(ExpectStarted(**resumed) == pid);
  Collected after;
  after.base[0] = from_out;
  after.base[1] = from_err;
  // The replay: exactly up to the end of the first phase.
  ReadUntil(**resumed, after, [&](const Collected& c) {
    return c.end(0) == before.end(0) && c.end(1) == before.end(1);
  });
  CHECK(after.data[0] == before.data[0].substr(from_out));
  CHECK(after.data[1] == before.data[1].substr(from_err));
  // Then new output and the exit.
  Touch(trigger);
  const v1::ExecExit exit = ReadToExit(**resumed, after);
  CHECK(exit.exit_code() == 7);
  CHECK(before.data[0].substr(0, from_out) + after.data[0] == Seq(1, 6000));
  CHECK(before.data[1].substr(0, from_err) + after.data[1] ==
        "first-err\nsecond-err\n");
  CHECK(exit.stdout_bytes() == Seq(1, 6000).size());

  // Exited and reported: forgotten.
  auto third = agent.Connect();
  CHECK(third->hello().detached().empty());
  auto gone = third->ResumeExec(ResumeOf("job-1"), false);
  REQUIRE(gone.ok());
  CHECK(Refusal(**gone).message().find("no detached command") !=
        std::string::npos);
}

TEST_CASE("unattached, the agent keeps one window and the command blocks",
          "[agent_detach]") {
  ListeningAgent agent;
  // 1..1500000: about 10.9 MB of numbered lines.
  const std::string expected = Seq(1, 1500000);
  auto first = agent.Connect();
  auto session = first->StartExec(Command({"seq", "1", "1500000"}, "flood"));
  REQUIRE(session.ok());
  const pid_t pid = ExpectStarted(**session);
  // Read (and so acknowledge) a part, then drop the connection.
  Collected before;
  ReadUntil(**session, before,
            [](const Collected& c) { return c.total >= (1u << 20); });
  first->Close();
  session->reset();

  // Nobody reads: the command ends up blocked on its writes, the agent
  // holding at most a window.
  absl::SleepFor(absl::Milliseconds(500));
  REQUIRE(Alive(pid));
  CHECK(WaitFor([&] { return ProcState(pid) == "S"; }));
  CHECK(RssKiB(agent.pid()) < 32 * 1024);
  absl::SleepFor(absl::Milliseconds(300));
  CHECK(Alive(pid));

  auto second = agent.Connect();
  CHECK(Detached(*second) == std::vector<std::string>{"flood"});
  auto resumed = second->ResumeExec(ResumeOf("flood", before.end(0)), false);
  REQUIRE(resumed.ok());
  CHECK(ExpectStarted(**resumed) == pid);
  Collected after;
  after.base[0] = before.end(0);
  const v1::ExecExit exit = ReadToExit(**resumed, after, absl::Seconds(60));
  CHECK(exit.exit_code() == 0);
  CHECK(before.total + after.total == expected.size());
  CHECK(before.data[0] + after.data[0] == expected);
  CHECK(after.data[1].empty());
  CHECK(RssKiB(agent.pid()) < 32 * 1024);
}

TEST_CASE("a command that exited unattached replays the rest and its exit",
          "[agent_detach]") {
  ListeningAgent agent;
  // More than one window (278,895 bytes), less than window + pipe buffer:
  // the command exits while part of its output still waits in the pipe.
  const std::string expected = Seq(1, 50000);
  auto first = agent.Connect();
  auto session = first->StartExec(
      Command({"sh", "-c", "seq 1 50000; echo bye >&2; exit 3"}, "done-1"));
  REQUIRE(session.ok());
  const pid_t pid = ExpectStarted(**session);
  first->Close();
  session->reset();
  REQUIRE(WaitGone(pid, kWait));
  absl::SleepFor(absl::Milliseconds(400));  // past the exit grace

  auto second = agent.Connect();
  CHECK(Detached(*second) == std::vector<std::string>{"done-1"});
  auto resumed = second->ResumeExec(ResumeOf("done-1"), false);
  REQUIRE(resumed.ok());
  CHECK(ExpectStarted(**resumed) == pid);
  Collected after;
  const v1::ExecExit exit = ReadToExit(**resumed, after);
  CHECK(exit.exit_code() == 3);
  CHECK(after.data[0] == expected);
  CHECK(after.data[1] == "bye\n");
  CHECK(exit.stdout_bytes() == expected.size());
  // The exit went out: the command is forgotten.
  auto third = agent.Connect();
  CHECK(third->hello().detached().empty());
}

TEST_CASE("a detached shell on a pty survives and takes input after resume",
          "[agent_detach]") {
  ListeningAgent agent;
  v1::ExecStart start = Command({"sh", "-i"}, "shell-1");
  v1::EnvVar* ps1 = start.add_env();
  ps1->set_name("PS1");
  ps1->set_value("$ ");
  start.mutable_pty();
  start.set_stdin_open(true);

  auto first = agent.Connect();
  auto session = first->StartExec(start);
  REQUIRE(session.ok());
  const pid_t pid = ExpectStarted(**session);
  Collected before;
  ReadUntil(**session, before, [](const Collected& c) {
    return c.data[0].find("$ ") != std::string::npos;
  });
  REQUIRE((*session)->WriteStdin("echo one-$((0+1))\n", false).ok());
  ReadUntil(**session, before, [](const Collected& c) {
    return c.data[0].find("one-1\r\n$ ") != std::string::npos;
  });
  // Output made while nobody is attached is kept.
  REQUIRE(
      (*session)->WriteStdin("sleep 0.3; echo later-$((1+1))\n", false).ok());
  REQUIRE(first->Ping(absl::Seconds(5)).ok());
  first->Close();
  session->reset();
  absl::SleepFor(absl::Milliseconds(600));
  REQUIRE(Alive(pid));

  auto second = agent.Connect();
  CHECK(Detached(*second) == std::vector<std::string>{"shell-1"});
  auto resumed = second->ResumeExec(ResumeOf("shell-1", before.end(0)),
                                    /*stdin_open=*/true);
  REQUIRE(resumed.ok());
  CHECK(ExpectStarted(**resumed) == pid);
  Collected after;
  after.base[0] = before.end(0);
  ReadUntil(**resumed, after, [](const Collected& c) {
    return c.data[0].find("later-2\r\n$ ") != std::string::npos;
  });
  REQUIRE((*resumed)->WriteStdin("echo two-$((1+1))\n", false).ok());
  ReadUntil(**resumed, after, [](const Collected& c) {
    return c.data[0].find("two-2\r\n") != std::string::npos;
  });
  REQUIRE((*resumed)->WriteStdin("exit 5\n", false).ok());
  CHECK(ReadToExit(**resumed, after).exit_code() == 5);
}

TEST_CASE("after a resume a pty takes input again, a closed pipe stays closed",
          "[agent_detach]") {
  ListeningAgent agent;
  // On a pty, eof is a ^D: cat ends, and the loop starts another.
  v1::ExecStart pty_start =
      Command({"sh", "-c", "while :; do cat; echo cat-ended; done"}, "pty-cat");
  pty_start.mutable_pty();
  pty_start.set_stdin_open(true);
  // On a pipe, eof closes stdin for good.
  v1::ExecStart pipe_start = Command(
      {"sh", "-c", "cat; echo pipe-closed; exec sleep 100"}, "pipe-cat");
  pipe_start.set_stdin_open(true);

  auto first = agent.Connect();
  auto pty = first->StartExec(pty_start);
  auto pipe = first->StartExec(pipe_start);
  REQUIRE(pty.ok());
  REQUIRE(pipe.ok());
  const pid_t pty_pid = ExpectStarted(**pty);
  const pid_t pipe_pid = ExpectStarted(**pipe);
  REQUIRE((*pty)->WriteStdin("first\n", /*eof=*/true).ok());
  REQUIRE((*pipe)->WriteStdin("first\n", /*eof=*/true).ok());
  Collected pty_before, pipe_before;
  ReadUntil(**pty, pty_before, [](const Collected& c) {
    return c.data[0].find("cat-ended") != std::string::npos;
  });
  ReadUntil(**pipe, pipe_before, [](const Collected& c) {
    return c.data[0] == "first\npipe-closed\n";
  });
  first->Close();
  pty->reset();
  pipe->reset();

  auto second = agent.Connect();
  auto pty_resumed = second->ResumeExec(ResumeOf("pty-cat", pty_before.end(0)),
                                        /*stdin_open=*/true);
  auto pipe_resumed = second->ResumeExec(
      ResumeOf("pipe-cat", pipe_before.end(0)), /*stdin_open=*/true);
  REQUIRE(pty_resumed.ok());
  REQUIRE(pipe_resumed.ok());
  CHECK(ExpectStarted(**pty_resumed) == pty_pid);
  CHECK(ExpectStarted(**pipe_resumed) == pipe_pid);
  // The terminal reads again: a second cat echoes the line.
  REQUIRE((*pty_resumed)->WriteStdin("second\n", false).ok());
  Collected pty_after;
  pty_after.base[0] = pty_before.end(0);
  ReadUntil(**pty_resumed, pty_after, [](const Collected& c) {
    return c.data[0].find("second\r\nsecond\r\n") != std::string::npos;
  });
  // The pipe's input is acknowledged and dropped: more than a window goes
  // through without anyone reading it, and nothing arrives.
  REQUIRE((*pipe_resumed)
              ->WriteStdin(std::string(600000, 'x'), false, absl::Now() + kWait)
              .ok());
  REQUIRE((*pipe_resumed)->Signal(SIGKILL).ok());
  Collected pipe_after;
  pipe_after.base[0] = pipe_before.end(0);
  CHECK(ReadToExit(**pipe_resumed, pipe_after).signal() == SIGKILL);
  CHECK(pipe_after.total == 0);
  CHECK_FALSE(second->closed());
}

TEST_CASE("a dropped connection still kills commands without a key",
          "[agent_detach]") {
  ListeningAgent agent;
  auto first = agent.Connect();
  auto plain = first->StartExec(Command({"sleep", "100"}));
  auto kept = first->StartExec(Command({"sleep", "100"}, "sleeper"));
  REQUIRE(plain.ok());
  REQUIRE(kept.ok());
  const pid_t plain_pid = ExpectStarted(**plain);
  const pid_t kept_pid = ExpectStarted(**kept);
  // A new connection replaces this one.
  auto second = agent.Connect();
  CHECK(first->WaitUntilClosed(absl::Now() + kWait));
  CHECK(WaitGone(plain_pid));
  CHECK(Alive(kept_pid));
  CHECK(Detached(*second) == std::vector<std::string>{"sleeper"});
  plain->reset();
  kept->reset();
  // Resumed and then dropped by its session: killed like any command.
  auto resumed = second->ResumeExec(ResumeOf("sleeper"), false);
  REQUIRE(resumed.ok());
  CHECK(ExpectStarted(**resumed) == kept_pid);
  resumed->reset();
  CHECK(WaitGone(kept_pid));
}

TEST_CASE("detach keys are checked", "[agent_detach]") {
  ListeningAgent agent;
  auto connection = agent.Connect();
  auto refused = [&](const v1::ExecStart& start) {
    auto session = connection->StartExec(start);
    REQUIRE(session.ok());
    absl::Status status = Refusal(**session);
    CHECK(status.code() == absl::StatusCode::kInternal);
    return std::string(status.message());
  };
  for (const std::string& bad :
       {std::string("has space"), std::string("a/b"), std::string("ü"),
        std::string(129, 'k'), std::string("nul\0", 4)}) {
    INFO(bad);
    CHECK(refused(Command({"true"}, bad)).find("detach_key must be") !=
          std::string::npos);
  }
  v1::ExecStart fs;
  fs.mutable_fs()->mutable_stat()->set_path("/");
  fs.set_detach_key("fs-op");
  CHECK(refused(fs).find("file operation") != std::string::npos);

  // The longest key, every allowed byte.
  const std::string longest = "AZaz09._:-" + std::string(128 - 10, 'x');
  auto held = connection->StartExec(Command({"sleep", "100"}, longest));
  REQUIRE(held.ok());
  ExpectStarted(**held);
  CHECK(refused(Command({"true"}, longest)).find("in use") !=
        std::string::npos);
  // The first one still runs.
  REQUIRE((*held)->Signal(SIGTERM).ok());
  Collected none;
  CHECK(ReadToExit(**held, none).signal() == SIGTERM);
  // Exited: its key is free again.
  auto again = connection->StartExec(Command({"true"}, longest));
  REQUIRE(again.ok());
  ExpectStarted(**again);
  CHECK(ReadToExit(**again, none).exit_code() == 0);
}

TEST_CASE("an agent holds at most 256 detached commands", "[agent_detach]") {
  ListeningAgent agent;
  auto connection = agent.Connect();
  std::vector<std::unique_ptr<ExecSession>> sessions;
  for (int i = 0; i < 256; ++i) {
    auto session = connection->StartExec(
        Command({"sleep", "100"}, "many-" + std::to_string(i)));
    REQUIRE(session.ok());
    sessions.push_back(*std::move(session));
  }
  for (auto& session : sessions) ExpectStarted(*session);
  auto over = connection->StartExec(Command({"true"}, "one-too-many"));
  REQUIRE(over.ok());
  CHECK(Refusal(**over).message().find("256 detached commands") !=
        std::string::npos);
  // Commands without a key are not limited.
  auto plain = connection->StartExec(Command({"true"}));
  REQUIRE(plain.ok());
  ExpectStarted(**plain);
  Collected none;
  CHECK(ReadToExit(**plain, none).exit_code() == 0);
  // Dropping the sessions kills them (the agent's SIGTERM would too).
  sessions.clear();
}

TEST_CASE("resume refuses an unknown key and an offset past the end",
          "[agent_detach]") {
  ListeningAgent agent;
  auto first = agent.Connect();
  auto session = first->StartExec(
      Command({"sh", "-c", "echo 12345; echo ab >&2; sleep 100"}, "short"));
  REQUIRE(session.ok());
  const pid_t pid = ExpectStarted(**session);
  Collected before;
  ReadUntil(**session, before, [](const Collected& c) {
    return c.data[0] == "12345\n" && c.data[1] == "ab\n";
  });
  first->Close();
  session->reset();
  auto second = agent.Connect();

  auto unknown = second->ResumeExec(ResumeOf("no-such-key"), false);
  REQUIRE(unknown.ok());
  CHECK(Refusal(**unknown).message().find("no detached command") !=
        std::string::npos);
  auto past_out = second->ResumeExec(ResumeOf("short", 7, 0), false);
  REQUIRE(past_out.ok());
  CHECK(Refusal(**past_out).message().find("stdout offset 7") !=
        std::string::npos);
  auto past_err = second->ResumeExec(ResumeOf("short", 6, 4), false);
  REQUIRE(past_err.ok());
  CHECK(Refusal(**past_err).message().find("stderr offset 4") !=
        std::string::npos);
  CHECK(second->ResumeExec(ResumeOf(""), false).status().code() ==
        absl::StatusCode::kInvalidArgument);

  // Refusals leave the command waiting; the exact end is fine.
  CHECK_FALSE(second->closed());
  CHECK(Alive(pid));
  auto resumed = second->ResumeExec(ResumeOf("short", 6, 3), false);
  REQUIRE(resumed.ok());
  CHECK(ExpectStarted(**resumed) == pid);
  REQUIRE((*resumed)->Signal(SIGKILL).ok());
  Collected after;
  after.base[0] = 6;
  after.base[1] = 3;
  CHECK(ReadToExit(**resumed, after).signal() == SIGKILL);
  CHECK(after.total == 0);
}

TEST_CASE("resume while attached moves the command to the new stream",
          "[agent_detach]") {
  ListeningAgent agent;
  TempDir dir("corral-detach-trigger");
  const std::string trigger = dir / "go";
  auto connection = agent.Connect();
  auto old_session = connection->StartExec(TwoPhases(trigger, "mover"));
  REQUIRE(old_session.ok());
  const pid_t pid = ExpectStarted(**old_session);
  Collected before;
  ReadUntil(**old_session, before, FirstPhaseRead);

  auto resumed = connection->ResumeExec(
      ResumeOf("mover", before.end(0), before.end(1)), false);
  REQUIRE(resumed.ok());
  const absl::Status ended = Refusal(**old_session);
  CHECK(ended.code() == absl::StatusCode::kInternal);
  CHECK(ended.message().find("resumed on stream " +
                             std::to_string((*resumed)->stream_id())) !=
        std::string::npos);
  CHECK(ExpectStarted(**resumed) == pid);
  // The old session going away does not kill the command any more.
  old_session->reset();
  Touch(trigger);
  Collected after;
  after.base[0] = before.end(0);
  after.base[1] = before.end(1);
  CHECK(ReadToExit(**resumed, after).exit_code() == 7);
  CHECK(after.data[0] == Seq(5001, 6000));
  CHECK(after.data[1] == "second-err\n");
  CHECK_FALSE(connection->closed());
}

TEST_CASE("exact frames: offsets, sequences, acknowledged bytes skipped",
          "[agent_detach]") {
  ListeningAgent agent;
  TempDir dir("corral-detach-trigger");
  const std::string trigger = dir / "go";
  const std::string first_phase = Seq(1, 5000);

  auto raw = std::make_unique<RawClient>(agent.ConnectFd());
  raw->Expect(v1::Frame::kHello);
  v1::Frame start;
  start.set_stream_id(5);
  *start.mutable_exec_start() = TwoPhases(trigger, "raw-1");
  raw->Send(start);
  const int32_t pid = raw->Expect(v1::Frame::kExecStarted).exec_started().pid();
  std::string out, err;
  uint64_t sequence = 0;
  while (out.size() < first_phase.size() || err != "first-err\n") {
    v1::Frame frame = raw->Expect(v1::Frame::kOutput);
    if (sequence == 0) {
      // The acknowledgement below covers only stdout.
      REQUIRE(frame.output().fd() == v1::FD_STDOUT);
      REQUIRE(frame.output().data().size() >= 1000);
    }
    CHECK(frame.stream_id() == 5);
    CHECK(frame.output().sequence() == sequence++);
    std::string& data = frame.output().fd() == v1::FD_STDOUT ? out : err;
    CHECK(frame.output().offset() == data.size());
    data += frame.output().data();
  }
  CHECK(out == first_phase);
  // Acknowledge the first 1000 bytes sent.
  v1::Frame ack;
  ack.set_stream_id(5);
  ack.mutable_window_update()->set_bytes(1000);
  raw->Send(ack);
  v1::Frame ping;
  ping.mutable_ping()->set_nonce(9);
  raw->Send(ping);
  CHECK(raw->Expect(v1::Frame::kPong).pong().nonce() == 9);
  raw->Close();

  raw = std::make_unique<RawClient>(agent.ConnectFd());
  v1::Frame hello = raw->Expect(v1::Frame::kHello);
  REQUIRE(hello.hello().detached_size() == 1);
  CHECK(hello.hello().detached(0) == "raw-1");
  // Asking from 0: the agent no longer has the acknowledged 1000 bytes, so
  // the replay starts past the requested offset.
  v1::Frame resume;
  resume.set_stream_id(3);
  *resume.mutable_resume() = ResumeOf("raw-1", 0, 0);
  raw->Send(resume);
  CHECK(raw->Expect(v1::Frame::kExecStarted).exec_started().pid() == pid);
  std::string replay_out, replay_err;
  uint64_t first_out_offset = 0;
  sequence = 0;
  while (replay_out.size() < first_phase.size() - 1000 ||
         replay_err != "first-err\n") {
    v1::Frame frame = raw->Expect(v1::Frame::kOutput);
    CHECK(frame.stream_id() == 3);
    CHECK(frame.output().sequence() == sequence++);
    if (frame.output().fd() == v1::FD_STDOUT) {
      if (replay_out.empty()) first_out_offset = frame.output().offset();
      CHECK(frame.output().offset() == 1000 + replay_out.size());
      replay_out += frame.output().data();
    } else {
      CHECK(frame.output().offset() == replay_err.size());
      replay_err += frame.output().data();
    }
  }
  CHECK(first_out_offset == 1000);
  CHECK(replay_out == first_phase.substr(1000));
  // The replay is unacknowledged output of the new stream; the stream goes
  // on normally.
  Touch(trigger);
  std::string rest, rest_err;
  uint64_t unacknowledged = replay_out.size() + replay_err.size();
  while (rest != Seq(5001, 6000) || rest_err != "second-err\n") {
    v1::Frame frame = raw->Expect(v1::Frame::kOutput);
    CHECK(frame.output().sequence() == sequence++);
    unacknowledged += frame.output().data().size();
    if (frame.output().fd() == v1::FD_STDOUT) {
      CHECK(frame.output().offset() == first_phase.size() + rest.size());
      rest += frame.output().data();
    } else {
      CHECK(frame.output().offset() == 10 + rest_err.size());
      rest_err += frame.output().data();
    }
  }
  // The command has exited, but its exit waits until all output is
  // acknowledged: the agent forgets it with the exit.
  v1::Frame early;
  CHECK_FALSE(raw->Receive(&early, absl::Milliseconds(500)));
  ack.set_stream_id(3);
  ack.mutable_window_update()->set_bytes(
      static_cast<uint32_t>(unacknowledged - 1));
  raw->Send(ack);
  CHECK_FALSE(raw->Receive(&early, absl::Milliseconds(300)));
  ack.mutable_window_update()->set_bytes(1);
  raw->Send(ack);
  v1::Frame exit = raw->Expect(v1::Frame::kExecExit);
  CHECK(exit.stream_id() == 3);
  CHECK(exit.exec_exit().exit_code() == 7);
}

TEST_CASE("output drained after the exit waits for window, a byte at a time",
          "[agent_detach]") {
  // Not about detaching: the drain after the exit grace used to close a
  // pipe whose window was used up, losing the rest. A resume opens the
  // window piecemeal, so it showed there first.
  ListeningAgent agent;
  const std::string expected = Seq(1, 50000);  // 288,894 bytes
  auto raw = std::make_unique<RawClient>(agent.ConnectFd());
  raw->Expect(v1::Frame::kHello);
  v1::Frame start;
  start.set_stream_id(1);
  *start.mutable_exec_start() = Command({"seq", "1", "50000"});
  raw->Send(start);
  raw->Expect(v1::Frame::kExecStarted);
  std::string out;
  while (out.size() < wire::kInitialWindowBytes) {
    out += raw->Expect(v1::Frame::kOutput).output().data();
  }
  CHECK(out.size() == wire::kInitialWindowBytes);
  // seq has exited, the rest waits in the pipe; past the exit grace.
  absl::SleepFor(absl::Milliseconds(600));
  v1::Frame ack;
  ack.set_stream_id(1);
  for (uint32_t bytes : {1u, 1000u, 4095u}) {
    ack.mutable_window_update()->set_bytes(bytes);
    raw->Send(ack);
    v1::Frame frame = raw->Expect(v1::Frame::kOutput);
    CHECK(frame.output().data().size() == bytes);
    CHECK(frame.output().offset() == out.size());
    out += frame.output().data();
  }
  ack.mutable_window_update()->set_bytes(wire::kInitialWindowBytes);
  raw->Send(ack);
  v1::Frame frame;
  for (;;) {
    REQUIRE(raw->Receive(&frame));
    if (!frame.has_output()) break;
    out += frame.output().data();
  }
  REQUIRE(frame.has_exec_exit());
  CHECK(frame.exec_exit().stdout_bytes() == expected.size());
  CHECK(out == expected);
}

TEST_CASE("an agent serving one connection kills detached commands and exits",
          "[agent_detach]") {
  corral::agent::testing::Agent agent = StartAgent();
  auto session =
      agent.connection->StartExec(Command({"sleep", "100"}, "lonely"));
  REQUIRE(session.ok());
  const pid_t pid = ExpectStarted(**session);
  agent.connection->Close();
  CHECK(WaitGone(pid));
  CHECK(WaitGone(agent.pid));
}

TEST_CASE("SIGTERM to the agent ends unattached commands too",
          "[agent_detach]") {
  auto agent = std::make_unique<ListeningAgent>();
  const pid_t agent_pid = agent->pid();
  auto connection = agent->Connect();
  auto session =
      connection->StartExec(Command({"sleep", "100"}, "to-be-ended"));
  REQUIRE(session.ok());
  const pid_t pid = ExpectStarted(**session);
  connection->Close();
  session->reset();
  absl::SleepFor(absl::Milliseconds(100));
  REQUIRE(Alive(pid));
  REQUIRE(::kill(agent_pid, SIGTERM) == 0);
  CHECK(WaitGone(pid));
  CHECK(WaitGone(agent_pid));
}

TEST_CASE("a timeout still applies while unattached", "[agent_detach]") {
  ListeningAgent agent;
  auto first = agent.Connect();
  v1::ExecStart start = Command({"sleep", "100"}, "timed");
  start.set_timeout_ms(500);
  auto session = first->StartExec(start);
  REQUIRE(session.ok());
  const pid_t pid = ExpectStarted(**session);
  first->Close();
  session->reset();
  CHECK(WaitGone(pid, absl::Seconds(5)));
  auto second = agent.Connect();
  CHECK(Detached(*second) == std::vector<std::string>{"timed"});
  auto resumed = second->ResumeExec(ResumeOf("timed"), false);
  REQUIRE(resumed.ok());
  ExpectStarted(**resumed);
  Collected none;
  const v1::ExecExit exit = ReadToExit(**resumed, none);
  CHECK(exit.timed_out());
  CHECK(exit.signal() == SIGKILL);
}

TEST_CASE("Abandon lets the command run and the agent keep its output",
          "[agent_detach]") {
  ListeningAgent agent;
  TempDir dir("corral-detach-trigger");
  const std::string trigger = dir / "go";
  auto connection = agent.Connect();
  auto session = connection->StartExec(TwoPhases(trigger, "abandoned"));
  REQUIRE(session.ok());
  (*session)->SetManualAck();
  const pid_t pid = ExpectStarted(**session);
  Collected before;
  ReadUntil(**session, before, FirstPhaseRead);
  REQUIRE((*session)->Acknowledge(3000).ok());
  const auto [acked_out, acked_err] = before.OffsetsAfter(3000);
  CHECK(acked_out == 3000);
  (*session)->Abandon();
  (*session)->Abandon();  // idempotent
  CHECK((*session)->Next(absl::Now() + absl::Seconds(1)).status().code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK((*session)->Signal(SIGTERM).code() ==
        absl::StatusCode::kFailedPrecondition);
  // The destructor kills nothing.
  session->reset();
  absl::SleepFor(absl::Milliseconds(200));
  CHECK(Alive(pid));
  // More output for the abandoned stream arrives and is dropped, the
  // command exits (its exit waits for acknowledgements that never come);
  // nothing closes the connection.
  Touch(trigger);
  CHECK(WaitGone(pid));
  absl::SleepFor(absl::Milliseconds(300));
  REQUIRE(connection->Ping(absl::Seconds(5)).ok());
  CHECK_FALSE(connection->closed());

  SECTION("resumed on the same connection") {
    auto resumed = connection->ResumeExec(
        ResumeOf("abandoned", acked_out, acked_err), false);
    REQUIRE(resumed.ok());
    CHECK(ExpectStarted(**resumed) == pid);
    Collected after;
    after.base[0] = acked_out;
    after.base[1] = acked_err;
    CHECK(ReadToExit(**resumed, after).exit_code() == 7);
    CHECK(Seq(1, 6000).substr(0, acked_out) + after.data[0] == Seq(1, 6000));
    CHECK(after.data[1] == "first-err\nsecond-err\n");
    CHECK_FALSE(connection->closed());
    // The abandoned stream ended with the agent's error.
    resumed->reset();
    CHECK(WaitFor([&] { return connection->stream_count() == 0; }));
  }
  SECTION("resumed by the next connection") {
    connection->Close();
    auto next = agent.Connect();
    CHECK(Detached(*next) == std::vector<std::string>{"abandoned"});
    auto resumed =
        next->ResumeExec(ResumeOf("abandoned", acked_out, acked_err), false);
    REQUIRE(resumed.ok());
    CHECK(ExpectStarted(**resumed) == pid);
    Collected after;
    after.base[0] = acked_out;
    after.base[1] = acked_err;
    CHECK(ReadToExit(**resumed, after).exit_code() == 7);
    CHECK(Seq(1, 6000).substr(0, acked_out) + after.data[0] == Seq(1, 6000));
  }
}

// ---- The daemon's checks, against a fake agent ----------------------------

TEST_CASE("output offsets must follow on", "[agent_detach]") {
  FakeAgent agent;
  auto connection = agent.Open();
  auto session = connection->StartExec(Command({"x"}));
  REQUIRE(session.ok());
  const uint64_t id = agent.AcceptStream(v1::Frame::kExecStart);
  agent.SendOutput(id, v1::FD_STDOUT, "abc", 0, 0);
  agent.SendOutput(id, v1::FD_STDERR, "de", 1, 0);
  agent.SendOutput(id, v1::FD_STDOUT, "fg", 2, 3);
  SECTION("merged events keep their first offset") {
    agent.SendOutput(id, v1::FD_STDOUT, "h", 3, 5);
    absl::SleepFor(absl::Milliseconds(300));  // all queued before reading
    ExpectStarted(**session);
    Collected collected;  // checks each event's offset
    ReadUntil(**session, collected, [](const Collected& c) {
      return c.data[0] == "abcfgh" && c.data[1] == "de";
    });
    CHECK(collected.order.size() == 3);  // "fg" and "h" merged
    CHECK_FALSE(connection->closed());
  }
  SECTION("a gap closes") {
    agent.SendOutput(id, v1::FD_STDOUT, "h", 3, 6);
    CHECK(ClosedReason(*connection).find("output offset 6") !=
          std::string::npos);
  }
  SECTION("a repeat closes") {
    agent.SendOutput(id, v1::FD_STDERR, "e", 3, 1);
    CHECK(ClosedReason(*connection).find("expected 2") != std::string::npos);
  }
  SECTION("an overflowing offset closes") {
    agent.SendOutput(id, v1::FD_STDERR, "e", 3, UINT64_MAX);
    CHECK(ClosedReason(*connection).find("output offset") != std::string::npos);
  }
}

TEST_CASE("a resumed stream may skip forward once per fd, never back",
          "[agent_detach]") {
  FakeAgent agent;
  auto connection = agent.Open({"k-1"});
  CHECK(Detached(*connection) == std::vector<std::string>{"k-1"});
  auto session = connection->ResumeExec(ResumeOf("k-1", 100, 50), true);
  REQUIRE(session.ok());
  CHECK((*session)->start().stdin_open());
  const uint64_t id = agent.AcceptStream(v1::Frame::kResume);
  SECTION("forward, then on") {
    agent.SendOutput(id, v1::FD_STDOUT, "xy", 0, 120);
    agent.SendOutput(id, v1::FD_STDERR, "z", 1, 50);
    agent.SendOutput(id, v1::FD_STDOUT, "w", 2, 122);
    CHECK(ExpectStarted(**session) == 4321);
    auto out = (*session)->Next(absl::Now() + kWait);
    REQUIRE(out.ok());
    CHECK(out->offset == 120);
    CHECK(out->data == "xy");
    auto err = (*session)->Next(absl::Now() + kWait);
    REQUIRE(err.ok());
    CHECK(err->offset == 50);
    auto more = (*session)->Next(absl::Now() + kWait);
    REQUIRE(more.ok());
    CHECK(more->offset == 122);
    CHECK_FALSE(connection->closed());
  }
  SECTION("before the requested offset closes") {
    agent.SendOutput(id, v1::FD_STDOUT, "xy", 0, 99);
    CHECK(ClosedReason(*connection).find("expected at least 100") !=
          std::string::npos);
  }
  SECTION("a second skip closes") {
    agent.SendOutput(id, v1::FD_STDOUT, "xy", 0, 100);
    agent.SendOutput(id, v1::FD_STDOUT, "xy", 1, 110);
    CHECK(ClosedReason(*connection).find("expected 102") != std::string::npos);
  }
}

TEST_CASE("manual acknowledgement sends window updates only on Acknowledge",
          "[agent_detach]") {
  FakeAgent agent;
  auto connection = agent.Open();
  auto session = connection->StartExec(Command({"x"}));
  REQUIRE(session.ok());
  (*session)->SetManualAck();
  const uint64_t id = agent.AcceptStream(v1::Frame::kExecStart);
  agent.SendOutput(id, v1::FD_STDOUT, std::string(1000, 'a'), 0, 0);
  ExpectStarted(**session);
  auto event = (*session)->Next(absl::Now() + kWait);
  REQUIRE(event.ok());
  CHECK(event->data.size() == 1000);
  // Nothing acknowledged yet: the next frame the fake sees is our ping.
  REQUIRE(connection->Ping(absl::Milliseconds(100)).code() ==
          absl::StatusCode::kDeadlineExceeded);
  CHECK(agent.peer().Expect(v1::Frame::kPing).has_ping());
  CHECK((*session)->Acknowledge(1001).code() ==
        absl::StatusCode::kInvalidArgument);
  REQUIRE((*session)->Acknowledge(400).ok());
  v1::Frame update = agent.peer().Expect(v1::Frame::kWindowUpdate);
  CHECK(update.stream_id() == id);
  CHECK(update.window_update().bytes() == 400);
  REQUIRE((*session)->Acknowledge(600).ok());
  CHECK(agent.peer().Expect(v1::Frame::kWindowUpdate).window_update().bytes() ==
        600);
  CHECK((*session)->Acknowledge(1).code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("an abandoned stream's frames are dropped, unacknowledged",
          "[agent_detach]") {
  FakeAgent agent;
  auto connection = agent.Open();
  auto session = connection->StartExec(Command({"x"}));
  REQUIRE(session.ok());
  const uint64_t id = agent.AcceptStream(v1::Frame::kExecStart);
  agent.SendOutput(id, v1::FD_STDOUT, "hello", 0, 0);
  agent.SendOutput(id, v1::FD_STDERR, "unread", 1, 0);
  absl::SleepFor(absl::Milliseconds(300));  // both queued before reading
  ExpectStarted(**session);
  auto hello = (*session)->Next(absl::Now() + kWait);
  REQUIRE(hello.ok());
  CHECK(hello->data == "hello");
  (*session)->Abandon();
  // Automatic acknowledgement: what Next returned is acknowledged (it was
  // held back while more output waited), what it did not return is not.
  CHECK(agent.peer().Expect(v1::Frame::kWindowUpdate).window_update().bytes() ==
        5);
  session->reset();  // no SIGKILL follows
  // Anything on the abandoned stream, even out of order, is dropped.
  agent.SendOutput(id, v1::FD_STDOUT, "late", 7, 77);
  agent.SendOutput(id, v1::FD_STDOUT, "late", 8, 99);
  v1::Frame exit;
  exit.set_stream_id(id);
  exit.mutable_exec_exit()->set_exit_code(0);
  agent.peer().Send(exit);
  CHECK(WaitFor([&] { return connection->stream_count() == 0; }));
  // The only frame the fake gets next is the ping: no kill, no ack.
  CHECK(connection->Ping(absl::Milliseconds(200)).code() ==
        absl::StatusCode::kDeadlineExceeded);
  CHECK(agent.peer().Expect(v1::Frame::kPing).has_ping());
  CHECK_FALSE(connection->closed());
}

TEST_CASE("a hello with a bad detached key closes", "[agent_detach]") {
  for (const std::string& bad :
       {std::string(""), std::string("a b"), std::string(129, 'k')}) {
    FakeAgent agent;
    v1::Frame hello;
    hello.mutable_hello()->set_protocol_version(1);
    hello.mutable_hello()->add_detached(bad);
    agent.peer().Send(hello);
    auto connection =
        AgentConnection::Open(agent.TakeDaemonEnd(), absl::Seconds(3));
    REQUIRE_FALSE(connection.ok());
    CHECK(connection.status().message().find("invalid detached key") !=
          std::string::npos);
  }
}
