// A fake, hostile agent: the test writes raw frames on one end of a
// socketpair and checks that AgentConnection refuses or closes cleanly, with
// a clear reason, and never trusts what it is sent.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>

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
using corral::daemon::AgentConnection;
using corral::daemon::ExecEvent;
using corral::daemon::ExecSession;

// The test's end of the socket, speaking the protocol by hand. Sends to a
// daemon that hung up are ignored: fine for these tests.
class FakeAgent : public FrameSocket {
 public:
  FakeAgent() : FakeAgent(SocketPair()) {}

  UniqueFd TakeDaemonEnd() { return std::move(daemon_end_); }

  void SendHello(uint32_t version = 1) {
    v1::Frame frame;
    frame.mutable_hello()->set_protocol_version(version);
    frame.mutable_hello()->set_agent_version("fake");
    frame.mutable_hello()->set_pid(1);
    Send(frame);
  }

  // Reads frames until one with `body` arrives.
  bool ReceiveKind(v1::Frame::BodyCase body, v1::Frame* frame) {
    while (Receive(frame)) {
      if (frame->body_case() == body) return true;
    }
    return false;
  }

  // True once the daemon closed its end.
  bool SeesEof(absl::Duration timeout = absl::Seconds(3)) {
    const absl::Time deadline = absl::Now() + timeout;
    char buffer[65536];
    while (absl::Now() < deadline) {
      pollfd pfd{fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 50) <= 0) continue;
      ssize_t n = ::read(fd(), buffer, sizeof(buffer));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
    return false;
  }

 private:
  explicit FakeAgent(std::pair<UniqueFd, UniqueFd> ends)
      : FrameSocket(std::move(ends.second)),
        daemon_end_(std::move(ends.first)) {}

  UniqueFd daemon_end_;
};

std::shared_ptr<AgentConnection> OpenWithHello(FakeAgent& agent) {
  agent.SendHello();
  auto connection =
      AgentConnection::Open(agent.TakeDaemonEnd(), absl::Seconds(3));
  REQUIRE(connection.ok());
  return *connection;
}

v1::ExecStart Command() {
  v1::ExecStart start;
  start.add_argv("true");
  return start;
}

// Starts an exec and answers with exec_started; returns the stream id.
uint64_t StartRunning(FakeAgent& agent, AgentConnection& connection,
                      std::unique_ptr<ExecSession>* session) {
  auto started = connection.StartExec(Command());
  REQUIRE(started.ok());
  *session = *std::move(started);
  v1::Frame frame;
  REQUIRE(agent.ReceiveKind(v1::Frame::kExecStart, &frame));
  const uint64_t id = frame.stream_id();
  v1::Frame reply;
  reply.set_stream_id(id);
  reply.mutable_exec_started()->set_pid(1234);
  agent.Send(reply);
  return id;
}

// An output frame; `offset` is where it starts within its fd (the fd's
// bytes in earlier frames).
v1::Frame Output(uint64_t id, size_t size, uint64_t sequence,
                 v1::Fd fd = v1::FD_STDOUT, uint64_t offset = 0) {
  v1::Frame frame;
  frame.set_stream_id(id);
  frame.mutable_output()->set_fd(fd);
  frame.mutable_output()->set_data(std::string(size, 'o'));
  frame.mutable_output()->set_sequence(sequence);
  frame.mutable_output()->set_offset(offset);
  return frame;
}

std::string Prefix(uint32_t length) {
  std::string out(4, '\0');
  out[0] = static_cast<char>(length >> 24);
  out[1] = static_cast<char>(length >> 16);
  out[2] = static_cast<char>(length >> 8);
  out[3] = static_cast<char>(length);
  return out;
}

// Waits for the connection to close; returns its reason.
std::string ClosedReason(AgentConnection& connection) {
  REQUIRE(connection.WaitUntilClosed(absl::Now() + absl::Seconds(3)));
  return connection.close_reason();
}

}  // namespace

TEST_CASE("wrong protocol version is refused", "[agent_hostile]") {
  FakeAgent agent;
  agent.SendHello(2);
  auto connection =
      AgentConnection::Open(agent.TakeDaemonEnd(), absl::Seconds(3));
  REQUIRE_FALSE(connection.ok());
  CHECK(connection.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(connection.status().message().find("version 2") != std::string::npos);
  CHECK(connection.status().message().find("version 1") != std::string::npos);
  CHECK(agent.SeesEof());
}

TEST_CASE("no hello in time, or something else first", "[agent_hostile]") {
  SECTION("silence") {
    FakeAgent agent;
    auto connection =
        AgentConnection::Open(agent.TakeDaemonEnd(), absl::Milliseconds(200));
    CHECK(connection.status().code() == absl::StatusCode::kDeadlineExceeded);
  }
  SECTION("output before hello") {
    FakeAgent agent;
    agent.Send(Output(1, 10, 0));
    auto connection =
        AgentConnection::Open(agent.TakeDaemonEnd(), absl::Seconds(3));
    CHECK(connection.status().code() == absl::StatusCode::kUnavailable);
    CHECK(connection.status().message().find("not hello") != std::string::npos);
  }
  SECTION("hang up before hello") {
    auto agent = std::make_unique<FakeAgent>();
    UniqueFd daemon_end = agent->TakeDaemonEnd();
    agent.reset();  // closes the agent's end
    auto connection =
        AgentConnection::Open(std::move(daemon_end), absl::Seconds(3));
    CHECK(connection.status().code() == absl::StatusCode::kUnavailable);
  }
}

TEST_CASE("oversized, zero-length and undecodable frames close",
          "[agent_hostile]") {
  struct Case {
    const char* name;
    std::string bytes;
    const char* reason;
  };
  for (const Case& c : {Case{"oversized", Prefix(0xffffffffu), "exceeds"},
                        Case{"just over the limit",
                             Prefix(wire::kMaxFrameBytes + 1), "exceeds"},
                        Case{"zero", Prefix(0), "length 0"},
                        Case{"garbage", Prefix(12) + std::string(12, '\xff'),
                             "does not parse"}}) {
    INFO(c.name);
    FakeAgent agent;
    auto connection = OpenWithHello(agent);
    std::unique_ptr<ExecSession> session;
    StartRunning(agent, *connection, &session);
    agent.SendRaw(c.bytes);
    const std::string reason = ClosedReason(*connection);
    CHECK(reason.find(c.reason) != std::string::npos);
    // The waiting session learns about it; nothing crashes.
    absl::Status status = absl::OkStatus();
    while (status.ok()) {
      status = session->Next(absl::Now() + absl::Seconds(2)).status();
    }
    CHECK(status.code() == absl::StatusCode::kUnavailable);
    CHECK(agent.SeesEof());
  }
}

TEST_CASE("a second hello closes", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  agent.SendHello();
  CHECK(ClosedReason(*connection).find("second hello") != std::string::npos);
}

TEST_CASE("output for an unknown stream closes", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  agent.Send(Output(77, 10, 0));
  CHECK(ClosedReason(*connection).find("unknown stream 77") !=
        std::string::npos);
}

TEST_CASE("output beyond the window closes", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  std::unique_ptr<ExecSession> session;
  const uint64_t id = StartRunning(agent, *connection, &session);
  // Nobody consumes: 4 x 64 KiB fill the window exactly, the fifth is over.
  for (uint64_t i = 0; i < 5; ++i) {
    agent.Send(Output(id, wire::kMaxChunkBytes, i, v1::FD_STDOUT,
                      i * wire::kMaxChunkBytes));
  }
  CHECK(ClosedReason(*connection).find("window") != std::string::npos);
}

TEST_CASE("a well-behaved agent gets its window back", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  std::unique_ptr<ExecSession> session;
  const uint64_t id = StartRunning(agent, *connection, &session);
  // Three full windows, each one acknowledged before the next is sent.
  uint64_t sequence = 0;
  uint64_t offsets[2] = {0, 0};  // stdout, stderr
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) {
      agent.Send(Output(id, wire::kMaxChunkBytes, sequence++,
                        i % 2 ? v1::FD_STDERR : v1::FD_STDOUT, offsets[i % 2]));
      offsets[i % 2] += wire::kMaxChunkBytes;
    }
    uint64_t consumed = 0;
    while (consumed < wire::kInitialWindowBytes) {
      auto event = session->Next(absl::Now() + absl::Seconds(3));
      REQUIRE(event.ok());
      if (event->kind == ExecEvent::Kind::kOutput) {
        consumed += event->data.size();
      }
    }
    uint64_t acknowledged = 0;
    v1::Frame frame;
    while (acknowledged < wire::kInitialWindowBytes) {
      REQUIRE(agent.ReceiveKind(v1::Frame::kWindowUpdate, &frame));
      CHECK(frame.stream_id() == id);
      acknowledged += frame.window_update().bytes();
    }
    CHECK(acknowledged == wire::kInitialWindowBytes);
  }
  v1::Frame exit;
  exit.set_stream_id(id);
  exit.mutable_exec_exit()->set_exit_code(3);
  agent.Send(exit);
  auto event = session->Next(absl::Now() + absl::Seconds(3));
  REQUIRE(event.ok());
  CHECK(event->kind == ExecEvent::Kind::kExit);
  CHECK(event->exit.exit_code() == 3);
  CHECK_FALSE(connection->closed());
}

TEST_CASE("non-consecutive sequence numbers close", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  std::unique_ptr<ExecSession> session;
  const uint64_t id = StartRunning(agent, *connection, &session);
  agent.Send(Output(id, 10, 0));
  agent.Send(Output(id, 10, 2));
  CHECK(ClosedReason(*connection).find("sequence 2") != std::string::npos);
}

TEST_CASE("a duplicate exit closes", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  std::unique_ptr<ExecSession> session;
  const uint64_t id = StartRunning(agent, *connection, &session);
  v1::Frame exit;
  exit.set_stream_id(id);
  exit.mutable_exec_exit()->set_exit_code(0);
  agent.Send(exit);
  agent.Send(exit);
  CHECK(ClosedReason(*connection).find("second exec_exit") !=
        std::string::npos);
  // The first exit still reaches the caller.
  auto started = session->Next(absl::Now() + absl::Seconds(1));
  REQUIRE(started.ok());
  CHECK(started->kind == ExecEvent::Kind::kStarted);
  auto first = session->Next(absl::Now() + absl::Seconds(1));
  REQUIRE(first.ok());
  CHECK(first->kind == ExecEvent::Kind::kExit);
}

TEST_CASE("other protocol violations close", "[agent_hostile]") {
  struct Case {
    const char* name;
    std::function<v1::Frame(uint64_t id)> frame;
    const char* reason;
  };
  const Case cases[] = {
      {"empty output", [](uint64_t id) { return Output(id, 0, 0); },
       "empty output"},
      {"output for fd 0",
       [](uint64_t id) { return Output(id, 1, 0, v1::FD_UNSPECIFIED); },
       "fd 0"},
      {"second exec_started",
       [](uint64_t id) {
         v1::Frame frame;
         frame.set_stream_id(id);
         frame.mutable_exec_started()->set_pid(5);
         return frame;
       },
       "exec_started"},
      {"window_update for stdin never sent",
       [](uint64_t id) {
         v1::Frame frame;
         frame.set_stream_id(id);
         frame.mutable_window_update()->set_bytes(1);
         return frame;
       },
       "in flight"},
      {"exec_start from the agent",
       [](uint64_t id) {
         v1::Frame frame;
         frame.set_stream_id(id);
         frame.mutable_exec_start()->add_argv("x");
         return frame;
       },
       "unexpected exec_start"},
      {"error on the control stream",
       [](uint64_t) {
         v1::Frame frame;
         frame.mutable_error()->set_message(std::string(10000, 'e'));
         return frame;
       },
       "ended the connection"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    FakeAgent agent;
    auto connection = OpenWithHello(agent);
    std::unique_ptr<ExecSession> session;
    const uint64_t id = StartRunning(agent, *connection, &session);
    agent.Send(c.frame(id));
    const std::string reason = ClosedReason(*connection);
    CHECK(reason.find(c.reason) != std::string::npos);
    CHECK(reason.size() < 1024);  // agent text is bounded
  }
}

TEST_CASE("an error on a stream ends only that command", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  std::unique_ptr<ExecSession> session;
  const uint64_t id = StartRunning(agent, *connection, &session);
  v1::Frame error;
  error.set_stream_id(id);
  error.mutable_error()->set_message("no such thing");
  agent.Send(error);
  REQUIRE(session->Next(absl::Now() + absl::Seconds(3))->kind ==
          ExecEvent::Kind::kStarted);
  auto next = session->Next(absl::Now() + absl::Seconds(3));
  CHECK(next.status().code() == absl::StatusCode::kInternal);
  CHECK(next.status().message().find("no such thing") != std::string::npos);
  // A late error for that finished stream (a race) is harmless.
  agent.Send(error);
  CHECK(connection->Ping(absl::Milliseconds(200)).code() ==
        absl::StatusCode::kDeadlineExceeded);  // the fake never answers
  CHECK_FALSE(connection->closed());
}

TEST_CASE("a dropped session is killed and drained", "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  std::unique_ptr<ExecSession> session;
  const uint64_t id = StartRunning(agent, *connection, &session);
  agent.Send(Output(id, 1000, 0));
  // Let the output arrive, then drop the session without reading it.
  absl::SleepFor(absl::Milliseconds(100));
  session.reset();
  v1::Frame frame;
  REQUIRE(agent.ReceiveKind(v1::Frame::kSignal, &frame));
  CHECK(frame.stream_id() == id);
  CHECK(frame.signal().signal() == SIGKILL);
  // The unread output is acknowledged so a real agent could finish.
  REQUIRE(agent.ReceiveKind(v1::Frame::kWindowUpdate, &frame));
  CHECK(frame.window_update().bytes() == 1000);
  // Output still in flight is accepted and dropped; the exit forgets it.
  agent.Send(Output(id, 500, 1, v1::FD_STDOUT, 1000));
  REQUIRE(agent.ReceiveKind(v1::Frame::kWindowUpdate, &frame));
  CHECK(frame.window_update().bytes() == 500);
  v1::Frame exit;
  exit.set_stream_id(id);
  exit.mutable_exec_exit()->set_signal(9);
  agent.Send(exit);
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  while (connection->stream_count() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  CHECK(connection->stream_count() == 0);
  CHECK_FALSE(connection->closed());
}

TEST_CASE("many tiny alternating outputs cannot grow memory without bound",
          "[agent_hostile]") {
  FakeAgent agent;
  auto connection = OpenWithHello(agent);
  std::unique_ptr<ExecSession> session;
  const uint64_t id = StartRunning(agent, *connection, &session);
  // One byte per frame, alternating fds so that nothing merges: the event
  // cap trips long before the byte window does.
  std::string burst;
  for (uint64_t i = 0; i < 20000; ++i) {
    REQUIRE(wire::AppendFrame(
        Output(id, 1, i, i % 2 ? v1::FD_STDERR : v1::FD_STDOUT, i / 2),
        &burst));
  }
  agent.SendRaw(burst);
  CHECK(ClosedReason(*connection).find("unread output events") !=
        std::string::npos);
}
