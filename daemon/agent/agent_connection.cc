// The daemon's side of the agent protocol; see agent_connection.h.
#include "daemon/agent/agent_connection.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "corral/linux_signals.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "guest-agent/wire/frame_codec.h"

namespace corral::daemon {

namespace agent_v1 = corral::agent::v1;
namespace wire = corral::agent::wire;

namespace agent_internal {

// The daemon's view of one stream. Every field is guarded by the owning
// connection's mu_.
struct StreamState {
  explicit StreamState(uint64_t stream_id, bool stdin_open)
      : id(stream_id), stdin_open(stdin_open) {}

  const uint64_t id;
  const bool stdin_open;
  // Signalled on every change a session may wait for.
  absl::CondVar changed;

  std::deque<ExecEvent> events;
  // Output received from the agent and not yet acknowledged; at most the
  // window (the agent may not send more).
  uint64_t unacked_output = 0;
  // Output Next returned but not yet acknowledged (acks are batched, or
  // left to the caller under manual acknowledgement).
  uint64_t consumed_unacked = 0;
  bool manual_ack = false;
  uint64_t expected_sequence = 0;
  // Per fd (0 stdout, 1 stderr): the Output.offset the next frame must
  // carry. On a resumed stream, until the fd's first frame, the least it may
  // carry (may_skip).
  uint64_t next_offset[2] = {0, 0};
  bool may_skip[2] = {false, false};
  bool started = false;
  bool exited = false;          // exec_exit received
  bool delivered_exit = false;  // ... and handed to the caller
  // The agent ended the stream with an Error frame.
  absl::Status terminal = absl::OkStatus();
  // The session is gone and killed the command; frames are drained and
  // dropped (and acknowledged) until the end.
  bool released = false;
  // The session let go without killing the command: frames are dropped
  // unacknowledged and unchecked until the end.
  bool abandoned = false;

  bool stdin_eof_sent = false;
  // Stdin bytes sent and not yet acknowledged by the agent.
  uint64_t stdin_in_flight = 0;

  bool finished() const { return exited || !terminal.ok(); }
};

}  // namespace agent_internal

namespace {

using agent_internal::StreamState;

// Acknowledge consumed output once this much has accumulated (or when the
// caller has drained the queue), so the agent never stalls on a caller that
// keeps up.
constexpr uint64_t kAckThreshold = 64u << 10;
// A hostile agent could alternate stdout/stderr one byte at a time to queue
// many tiny events inside the byte window; cap the count too.
constexpr size_t kMaxQueuedEvents = 16384;
// Queued writes towards an agent that does not read: stdin is bounded by the
// windows, so only a misbehaving agent (pinging without reading) gets here.
constexpr size_t kMaxOutboxBytes = 16u << 20;
constexpr size_t kReadChunk = 64u << 10;
// Longest piece of agent-supplied text copied into a status or a log line.
constexpr size_t kMaxAgentText = 256;
// Detached commands an agent may list in its hello, and the longest key
// (agent.proto, ExecStart.detach_key).
constexpr int kMaxDetachedCommands = 256;
constexpr size_t kMaxDetachKeyBytes = 128;

bool ValidDetachKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxDetachKeyBytes) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
           c == '-';
  });
}

std::string AgentText(std::string_view text) {
  std::string out(text.substr(0, kMaxAgentText));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (text.size() > kMaxAgentText) out += "...";
  return out;
}

// How a close is logged: by corrald or a clean hang-up are routine; anything
// else is a broken or hostile agent.
enum class CloseKind { kByDaemon, kHangUp, kViolation };

// A sandbox can make its agent misbehave at will: never more than a few
// warnings per second about it, whatever it does.
void LogConnectionClosed(const std::string& reason, CloseKind kind) {
  auto logger = corral::Logger("agent");
  if (kind == CloseKind::kByDaemon) {
    logger->debug("agent connection closed: {}", reason);
    return;
  }
  static std::atomic<int64_t> window_start_ms{0};
  static std::atomic<int> in_window{0};
  static std::atomic<int> suppressed{0};
  constexpr int kPerSecond = 10;
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  int64_t start = window_start_ms.load();
  if (now_ms - start >= 1000 &&
      window_start_ms.compare_exchange_strong(start, now_ms)) {
    in_window = 0;
  }
  if (in_window.fetch_add(1) >= kPerSecond) {
    suppressed.fetch_add(1);
    return;
  }
  const int dropped = suppressed.exchange(0);
  const std::string note =
      dropped > 0 ? absl::StrCat(" (", dropped, " similar messages suppressed)")
                  : "";
  if (kind == CloseKind::kHangUp) {
    logger->info("agent connection closed: {}{}", reason, note);
  } else {
    logger->warn("closing agent connection: {}{}", reason, note);
  }
}

constexpr char kClosedByDaemon[] = "closed by corrald";
constexpr char kAgentHungUp[] = "the agent closed the connection";

const char* BodyName(const agent_v1::Frame& frame) {
  switch (frame.body_case()) {
    case agent_v1::Frame::kHello:
      return "hello";
    case agent_v1::Frame::kExecStart:
      return "exec_start";
    case agent_v1::Frame::kStdin:
      return "stdin";
    case agent_v1::Frame::kOutput:
      return "output";
    case agent_v1::Frame::kExecStarted:
      return "exec_started";
    case agent_v1::Frame::kExecExit:
      return "exec_exit";
    case agent_v1::Frame::kSignal:
      return "signal";
    case agent_v1::Frame::kWindowUpdate:
      return "window_update";
    case agent_v1::Frame::kPing:
      return "ping";
    case agent_v1::Frame::kPong:
      return "pong";
    case agent_v1::Frame::kError:
      return "error";
    case agent_v1::Frame::kResize:
      return "resize";
    case agent_v1::Frame::kResume:
      return "resume";
    case agent_v1::Frame::BODY_NOT_SET:
      break;
  }
  return "empty frame";
}

}  // namespace

// ---- AgentConnection --------------------------------------------------------

AgentConnection::AgentConnection(corral::UniqueFd fd,
                                 corral::platform::WakeEvent wake)
    : fd_(std::move(fd)), wake_(std::move(wake)) {}

absl::StatusOr<std::shared_ptr<AgentConnection>> AgentConnection::Open(
    corral::UniqueFd fd, absl::Duration hello_timeout) {
  if (!fd.valid()) return absl::InvalidArgumentError("agent fd is not valid");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return corral::ErrnoStatus(absl::StrCat("fcntl O_NONBLOCK fd ", fd.get()));
  }
  auto wake = corral::platform::WakeEvent::Create();
  if (!wake.valid()) return corral::ErrnoStatus("a wake event");

  std::shared_ptr<AgentConnection> connection(
      new AgentConnection(std::move(fd), std::move(wake)));
  connection->reader_ =
      std::thread([raw = connection.get()] { raw->ReaderLoop(); });

  const absl::Time deadline = absl::Now() + hello_timeout;
  absl::MutexLock lock(&connection->mu_);
  while (!connection->hello_received_ && !connection->closed_) {
    if (connection->control_changed_.WaitWithDeadline(&connection->mu_,
                                                      deadline)) {
      break;
    }
  }
  if (connection->hello_received_) {
    const uint32_t version = connection->hello_.protocol_version();
    if (version != wire::kProtocolVersion) {
      connection->CloseLocked(absl::StrCat("agent speaks protocol version ",
                                           version, ", corrald speaks ",
                                           wire::kProtocolVersion));
      return absl::FailedPreconditionError(absl::StrCat(
          "incompatible agent: it speaks protocol version ", version,
          ", corrald speaks version ", wire::kProtocolVersion));
    }
    if (!connection->closed_) return connection;
  }
  if (connection->closed_) {
    return absl::UnavailableError(absl::StrCat(
        "agent connection lost before hello: ", connection->close_reason_));
  }
  connection->CloseLocked("no hello from the agent in time");
  return absl::DeadlineExceededError(absl::StrCat(
      "no hello from the agent within ", absl::FormatDuration(hello_timeout)));
}

AgentConnection::~AgentConnection() {
  Close();
  if (reader_.joinable()) reader_.join();
}

const agent_v1::Hello& AgentConnection::hello() const { return hello_; }

bool AgentConnection::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

std::string AgentConnection::close_reason() const {
  absl::MutexLock lock(&mu_);
  return close_reason_;
}

bool AgentConnection::WaitUntilClosed(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (!closed_) {
    if (control_changed_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return closed_;
}

size_t AgentConnection::stream_count() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

void AgentConnection::Close() {
  absl::MutexLock lock(&mu_);
  CloseLocked(kClosedByDaemon);
}

void AgentConnection::CloseLocked(std::string reason) {
  if (closed_) return;
  closed_ = true;
  const CloseKind kind = reason == kClosedByDaemon ? CloseKind::kByDaemon
                         : reason == kAgentHungUp  ? CloseKind::kHangUp
                                                   : CloseKind::kViolation;
  close_reason_ = std::move(reason);
  LogConnectionClosed(close_reason_, kind);
  outbox_.clear();
  outbox_offset_ = 0;
  for (auto& [id, stream] : streams_) stream->changed.SignalAll();
  control_changed_.SignalAll();
  Wake();
}

void AgentConnection::Wake() { wake_.Signal(); }

absl::Status AgentConnection::SendLocked(const agent_v1::Frame& frame) {
  if (closed_) {
    return absl::UnavailableError(
        absl::StrCat("agent connection closed: ", close_reason_));
  }
  if (!wire::AppendFrame(frame, &outbox_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        BodyName(frame), " frame exceeds ", wire::kMaxFrameBytes, " bytes"));
  }
  if (outbox_.size() - outbox_offset_ > kMaxOutboxBytes) {
    CloseLocked("the agent does not read what corrald sends");
    return absl::UnavailableError(
        absl::StrCat("agent connection closed: ", close_reason_));
  }
  FlushLocked();
  // Anything left is written by the reader thread when the fd is writable.
  if (!closed_ && outbox_offset_ < outbox_.size()) Wake();
  return absl::OkStatus();
}

void AgentConnection::FlushLocked() {
  while (!closed_ && outbox_offset_ < outbox_.size()) {
    const char* data = outbox_.data() + outbox_offset_;
    const size_t size = outbox_.size() - outbox_offset_;
    // A vanished agent must not kill corrald with SIGPIPE.
    ssize_t n = corral::platform::SendNoSignal(fd_.get(), data, size);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd_.get(), data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      CloseLocked(absl::StrCat("write to agent: ", std::strerror(errno)));
      return;
    }
    outbox_offset_ += static_cast<size_t>(n);
  }
  if (outbox_offset_ == outbox_.size()) {
    outbox_.clear();
    outbox_offset_ = 0;
  } else if (outbox_offset_ >= (1u << 20)) {
    outbox_.erase(0, outbox_offset_);
    outbox_offset_ = 0;
  }
}

void AgentConnection::ReaderLoop() {
  wire::FrameDecoder decoder;
  agent_v1::Frame frame;
  std::string buffer(kReadChunk, '\0');
  for (;;) {
    bool want_write;
    {
      absl::MutexLock lock(&mu_);
      if (closed_) break;
      want_write = outbox_offset_ < outbox_.size();
    }
    pollfd fds[2] = {
        {fd_.get(), static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0},
        {wake_.poll_fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      absl::MutexLock lock(&mu_);
      CloseLocked(absl::StrCat("poll: ", std::strerror(errno)));
      break;
    }
    if (fds[1].revents & POLLIN) wake_.Drain();
    if (fds[0].revents & POLLOUT) {
      absl::MutexLock lock(&mu_);
      FlushLocked();
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = ::read(fd_.get(), buffer.data(), buffer.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (n < 0) {
      CloseLocked(absl::StrCat("read from agent: ", std::strerror(errno)));
      break;
    }
    if (n == 0) {
      CloseLocked(kAgentHungUp);
      break;
    }
    decoder.Feed(std::string_view(buffer.data(), static_cast<size_t>(n)));
    while (!closed_ && decoder.Next(&frame)) {
      std::string violation = HandleFrameLocked(frame);
      if (!violation.empty()) CloseLocked(std::move(violation));
    }
    if (!closed_ && decoder.failed()) {
      CloseLocked(
          absl::StrCat("undecodable input from the agent: ", decoder.error()));
    }
  }
  absl::MutexLock lock(&mu_);
  fd_.Reset();
}

std::string AgentConnection::HandleFrameLocked(const agent_v1::Frame& frame) {
  if (!hello_received_) {
    if (frame.stream_id() != 0 || !frame.has_hello()) {
      return absl::StrCat("first frame from the agent is ", BodyName(frame),
                          ", not hello");
    }
    hello_ = frame.hello();
    // Agent-chosen strings end up in logs and API replies: bound them.
    if (hello_.agent_version().size() > kMaxAgentText ||
        hello_.capabilities_size() > 64 ||
        hello_.detached_size() > kMaxDetachedCommands) {
      return "hello carries oversized fields";
    }
    // Detached keys name commands corrald started; they reach logs and the
    // process table.
    for (const std::string& key : hello_.detached()) {
      if (!ValidDetachKey(key)) return "hello lists an invalid detached key";
    }
    hello_received_ = true;
    control_changed_.SignalAll();
    return "";
  }
  if (frame.stream_id() != 0) return HandleStreamFrameLocked(frame);
  switch (frame.body_case()) {
    case agent_v1::Frame::kPong: {
      auto it = pings_.find(frame.pong().nonce());
      // An unsolicited pong costs nothing: ignore it.
      if (it != pings_.end()) {
        it->second = true;
        control_changed_.SignalAll();
      }
      return "";
    }
    case agent_v1::Frame::kPing: {
      agent_v1::Frame pong;
      pong.mutable_pong()->set_nonce(frame.ping().nonce());
      (void)SendLocked(pong);
      return "";
    }
    case agent_v1::Frame::kError:
      return absl::StrCat("the agent ended the connection: ",
                          AgentText(frame.error().message()));
    case agent_v1::Frame::kHello:
      return "second hello from the agent";
    default:
      return absl::StrCat("unexpected ", BodyName(frame),
                          " on the control stream");
  }
}

std::string AgentConnection::HandleStreamFrameLocked(
    const agent_v1::Frame& frame) {
  const uint64_t id = frame.stream_id();
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    // The agent answers a signal or stdin that raced with the command's end
    // with an error on the finished stream: harmless.
    if (frame.has_error() && id < next_stream_id_) return "";
    return absl::StrCat(BodyName(frame), " for unknown stream ", id);
  }
  StreamState& stream = *it->second;
  if (stream.abandoned) {
    // The agent keeps what it sends for a later resume: drop it, do not
    // acknowledge it; forget the stream once it ends.
    if (frame.has_exec_exit() || frame.has_error()) streams_.erase(it);
    return "";
  }
  switch (frame.body_case()) {
    case agent_v1::Frame::kExecStarted:
      if (stream.started || stream.finished()) {
        return absl::StrCat("unexpected exec_started on stream ", id);
      }
      if (frame.exec_started().pid() <= 0) {
        return absl::StrCat("exec_started with pid ",
                            frame.exec_started().pid(), " on stream ", id);
      }
      stream.started = true;
      if (!stream.released) {
        ExecEvent event;
        event.kind = ExecEvent::Kind::kStarted;
        event.pid = frame.exec_started().pid();
        stream.events.push_back(std::move(event));
      }
      break;
    case agent_v1::Frame::kOutput: {
      const agent_v1::Output& output = frame.output();
      if (!stream.started || stream.finished()) {
        return absl::StrCat("output outside a running command on stream ", id);
      }
      if (output.fd() != agent_v1::FD_STDOUT &&
          output.fd() != agent_v1::FD_STDERR) {
        return absl::StrCat("output for fd ", output.fd(), " on stream ", id);
      }
      if (output.data().empty()) {
        return absl::StrCat("empty output frame on stream ", id);
      }
      if (output.sequence() != stream.expected_sequence) {
        return absl::StrCat("output sequence ", output.sequence(),
                            " on stream ", id, ", expected ",
                            stream.expected_sequence);
      }
      const uint64_t size = output.data().size();
      const int index = output.fd() == agent_v1::FD_STDOUT ? 0 : 1;
      const uint64_t offset = output.offset();
      const bool offset_ok = stream.may_skip[index]
                                 ? offset >= stream.next_offset[index]
                                 : offset == stream.next_offset[index];
      if (!offset_ok || offset > UINT64_MAX - size) {
        return absl::StrCat("output offset ", offset, " for fd ", output.fd(),
                            " on stream ", id, ", expected ",
                            stream.may_skip[index] ? "at least " : "",
                            stream.next_offset[index]);
      }
      stream.may_skip[index] = false;
      stream.next_offset[index] = offset + size;
      if (stream.unacked_output + size > wire::kInitialWindowBytes) {
        return absl::StrCat("output beyond the flow-control window on stream ",
                            id, " (", stream.unacked_output + size, " > ",
                            wire::kInitialWindowBytes,
                            " bytes unacknowledged)");
      }
      ++stream.expected_sequence;
      stream.unacked_output += size;
      if (stream.released) {
        // Nobody will read it: drop and let the agent go on draining.
        AcknowledgeLocked(stream, size);
        return "";
      }
      ExecEvent* last = stream.events.empty() ? nullptr : &stream.events.back();
      if (last != nullptr && last->kind == ExecEvent::Kind::kOutput &&
          last->fd == output.fd() &&
          last->offset + last->data.size() == offset) {
        last->data.append(output.data());
      } else {
        if (stream.events.size() >= kMaxQueuedEvents) {
          return absl::StrCat("more than ", kMaxQueuedEvents,
                              " unread output events on stream ", id);
        }
        ExecEvent event;
        event.kind = ExecEvent::Kind::kOutput;
        event.fd = output.fd();
        event.data = output.data();
        event.sequence = output.sequence();
        event.offset = offset;
        stream.events.push_back(std::move(event));
      }
      break;
    }
    case agent_v1::Frame::kExecExit: {
      if (stream.finished()) {
        return absl::StrCat("second exec_exit on stream ", id);
      }
      stream.exited = true;
      if (stream.released) {
        streams_.erase(it);
        return "";
      }
      ExecEvent event;
      event.kind = ExecEvent::Kind::kExit;
      event.exit = frame.exec_exit();
      if (event.exit.error().size() > kMaxAgentText) {
        event.exit.set_error(AgentText(event.exit.error()));
      }
      stream.events.push_back(std::move(event));
      break;
    }
    case agent_v1::Frame::kWindowUpdate: {
      const uint64_t bytes = frame.window_update().bytes();
      if (bytes > stream.stdin_in_flight) {
        return absl::StrCat("window_update of ", bytes, " bytes on stream ", id,
                            " but only ", stream.stdin_in_flight,
                            " stdin bytes are in flight");
      }
      stream.stdin_in_flight -= bytes;
      break;
    }
    case agent_v1::Frame::kError:
      if (stream.finished()) return "";
      stream.terminal = absl::InternalError(absl::StrCat(
          "the agent ended the command: ", AgentText(frame.error().message())));
      if (stream.released) {
        streams_.erase(it);
        return "";
      }
      break;
    default:
      return absl::StrCat("unexpected ", BodyName(frame), " on stream ", id);
  }
  stream.changed.SignalAll();
  return "";
}

void AgentConnection::AcknowledgeLocked(StreamState& stream, uint64_t bytes) {
  bytes = std::min(bytes, stream.unacked_output);
  if (bytes == 0) return;
  stream.unacked_output -= bytes;
  // Once the command exited, the agent has nothing left to send.
  if (stream.exited) return;
  agent_v1::Frame frame;
  frame.set_stream_id(stream.id);
  frame.mutable_window_update()->set_bytes(static_cast<uint32_t>(bytes));
  (void)SendLocked(frame);
}

absl::StatusOr<std::unique_ptr<ExecSession>> AgentConnection::StartExec(
    const agent_v1::ExecStart& start) {
  if (!start.has_fs() && (start.argv().empty() || start.argv(0).empty())) {
    return absl::InvalidArgumentError("exec needs a non-empty argv[0]");
  }
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::UnavailableError(
        absl::StrCat("agent connection closed: ", close_reason_));
  }
  const uint64_t id = next_stream_id_++;
  agent_v1::Frame frame;
  *frame.mutable_exec_start() = start;
  return OpenStreamLocked(
      frame, std::make_shared<StreamState>(id, start.stdin_open()), start);
}

absl::StatusOr<std::unique_ptr<ExecSession>> AgentConnection::ResumeExec(
    const agent_v1::Resume& resume, bool stdin_open) {
  if (resume.key().empty()) {
    return absl::InvalidArgumentError("resume needs the command's key");
  }
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::UnavailableError(
        absl::StrCat("agent connection closed: ", close_reason_));
  }
  const uint64_t id = next_stream_id_++;
  auto stream = std::make_shared<StreamState>(id, stdin_open);
  // The replay starts at the requested offsets, or past them where the agent
  // no longer had the bytes.
  stream->next_offset[0] = resume.stdout_offset();
  stream->next_offset[1] = resume.stderr_offset();
  stream->may_skip[0] = stream->may_skip[1] = true;
  agent_v1::Frame frame;
  *frame.mutable_resume() = resume;
  agent_v1::ExecStart start;
  start.set_stdin_open(stdin_open);
  return OpenStreamLocked(frame, std::move(stream), std::move(start));
}

absl::StatusOr<std::unique_ptr<ExecSession>> AgentConnection::OpenStreamLocked(
    agent_v1::Frame& frame, std::shared_ptr<StreamState> stream,
    agent_v1::ExecStart start) {
  const uint64_t id = stream->id;
  frame.set_stream_id(id);
  RETURN_IF_ERROR(SendLocked(frame));
  streams_.emplace(id, stream);
  return std::unique_ptr<ExecSession>(new ExecSession(
      shared_from_this(), std::move(stream), id, std::move(start)));
}

absl::Status AgentConnection::Ping(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  const uint64_t nonce = next_nonce_++;
  agent_v1::Frame frame;
  frame.mutable_ping()->set_nonce(nonce);
  RETURN_IF_ERROR(SendLocked(frame));
  pings_[nonce] = false;
  for (;;) {
    auto it = pings_.find(nonce);
    if (it->second) {
      pings_.erase(it);
      return absl::OkStatus();
    }
    if (closed_) {
      pings_.erase(it);
      return absl::UnavailableError(
          absl::StrCat("agent connection closed: ", close_reason_));
    }
    if (control_changed_.WaitWithDeadline(&mu_, deadline) &&
        absl::Now() >= deadline) {
      auto late = pings_.find(nonce);
      const bool answered = late->second;
      pings_.erase(late);
      if (answered) return absl::OkStatus();
      return absl::DeadlineExceededError(
          absl::StrCat("agent did not answer a ping within ",
                       absl::FormatDuration(timeout)));
    }
  }
}

void AgentConnection::ReleaseStream(
    const std::shared_ptr<StreamState>& stream) {
  absl::MutexLock lock(&mu_);
  // An abandoned stream stays until its end, unacknowledged (AbandonStream).
  if (stream->abandoned) return;
  auto it = streams_.find(stream->id);
  if (it == streams_.end()) return;
  if (stream->finished() || closed_) {
    streams_.erase(it);
    return;
  }
  // Still running: kill it, and drain whatever it sends until its exit.
  stream->released = true;
  stream->events.clear();
  stream->consumed_unacked = 0;
  agent_v1::Frame frame;
  frame.set_stream_id(stream->id);
  frame.mutable_signal()->set_signal(SIGKILL);
  (void)SendLocked(frame);
  AcknowledgeLocked(*stream, stream->unacked_output);
}

void AgentConnection::AbandonStream(
    const std::shared_ptr<StreamState>& stream) {
  absl::MutexLock lock(&mu_);
  if (stream->abandoned) return;
  stream->abandoned = true;
  // What Next returned under automatic acknowledgement was consumed: the
  // agent need not send it again. Events not returned were not.
  if (!stream->manual_ack) {
    AcknowledgeLocked(*stream, stream->consumed_unacked);
    stream->consumed_unacked = 0;
  }
  stream->events.clear();
  auto it = streams_.find(stream->id);
  if (it != streams_.end() && (stream->finished() || closed_)) {
    streams_.erase(it);
  }
  stream->changed.SignalAll();
}

// ---- ExecSession ------------------------------------------------------------

ExecSession::ExecSession(std::shared_ptr<AgentConnection> connection,
                         std::shared_ptr<agent_internal::StreamState> stream,
                         uint64_t stream_id, agent_v1::ExecStart start)
    : connection_(std::move(connection)),
      stream_(std::move(stream)),
      stream_id_(stream_id),
      start_(std::move(start)) {}

ExecSession::~ExecSession() { connection_->ReleaseStream(stream_); }

absl::StatusOr<ExecEvent> ExecSession::Next(absl::Time deadline) {
  AgentConnection& connection = *connection_;
  absl::MutexLock lock(&connection.mu_);
  StreamState& stream = *stream_;
  for (;;) {
    if (stream.abandoned) {
      return absl::FailedPreconditionError("the session was abandoned");
    }
    if (!stream.events.empty()) {
      ExecEvent event = std::move(stream.events.front());
      stream.events.pop_front();
      if (event.kind == ExecEvent::Kind::kOutput) {
        stream.consumed_unacked += event.data.size();
        if (stream.manual_ack) return event;
        const bool more_output =
            !stream.events.empty() &&
            stream.events.front().kind == ExecEvent::Kind::kOutput;
        if (stream.consumed_unacked >= kAckThreshold || !more_output) {
          connection.AcknowledgeLocked(stream, stream.consumed_unacked);
          stream.consumed_unacked = 0;
        }
      } else if (event.kind == ExecEvent::Kind::kExit) {
        stream.delivered_exit = true;
      }
      return event;
    }
    if (!stream.terminal.ok()) return stream.terminal;
    if (stream.delivered_exit) {
      return absl::OutOfRangeError("the command has exited");
    }
    if (connection.closed_) {
      return absl::UnavailableError(
          absl::StrCat("agent connection closed: ", connection.close_reason_));
    }
    if (stream.changed.WaitWithDeadline(&connection.mu_, deadline) &&
        absl::Now() >= deadline && stream.events.empty()) {
      return absl::DeadlineExceededError("no event from the command in time");
    }
  }
}

void ExecSession::SetManualAck() {
  AgentConnection& connection = *connection_;
  absl::MutexLock lock(&connection.mu_);
  StreamState& stream = *stream_;
  if (stream.manual_ack) return;
  stream.manual_ack = true;
  connection.AcknowledgeLocked(stream, stream.consumed_unacked);
  stream.consumed_unacked = 0;
}

absl::Status ExecSession::Acknowledge(uint64_t bytes) {
  AgentConnection& connection = *connection_;
  absl::MutexLock lock(&connection.mu_);
  StreamState& stream = *stream_;
  if (bytes > stream.consumed_unacked) {
    return absl::InvalidArgumentError(absl::StrCat(
        "acknowledging ", bytes, " bytes, but only ", stream.consumed_unacked,
        " bytes of output were returned and not acknowledged"));
  }
  stream.consumed_unacked -= bytes;
  // Nothing goes out once the command exited or the connection closed.
  connection.AcknowledgeLocked(stream, bytes);
  return absl::OkStatus();
}

void ExecSession::Abandon() { connection_->AbandonStream(stream_); }

absl::Status ExecSession::WriteStdin(std::string_view data, bool eof,
                                     absl::Time deadline) {
  if (!start_.stdin_open()) {
    return absl::FailedPreconditionError(
        "the command was started without stdin_open");
  }
  AgentConnection& connection = *connection_;
  absl::MutexLock lock(&connection.mu_);
  StreamState& stream = *stream_;
  if (stream.abandoned) {
    return absl::FailedPreconditionError("the session was abandoned");
  }
  if (stream.stdin_eof_sent) {
    return absl::FailedPreconditionError("stdin is already closed");
  }
  size_t offset = 0;
  while (offset < data.size() || (eof && !stream.stdin_eof_sent)) {
    size_t chunk = 0;
    if (offset < data.size()) {
      // Wait for window; an eof alone needs none.
      for (;;) {
        if (connection.closed_) {
          return absl::UnavailableError(absl::StrCat(
              "agent connection closed: ", connection.close_reason_));
        }
        if (stream.finished()) {
          return absl::FailedPreconditionError("the command has exited");
        }
        if (stream.abandoned) {
          return absl::FailedPreconditionError("the session was abandoned");
        }
        if (stream.stdin_in_flight < wire::kInitialWindowBytes) break;
        if (stream.changed.WaitWithDeadline(&connection.mu_, deadline) &&
            absl::Now() >= deadline &&
            stream.stdin_in_flight >= wire::kInitialWindowBytes) {
          return absl::DeadlineExceededError(
              absl::StrCat("stdin window did not open in time; ", offset,
                           " of ", data.size(), " bytes sent"));
        }
      }
      chunk = std::min<uint64_t>(
          {data.size() - offset, wire::kMaxChunkBytes,
           wire::kInitialWindowBytes - stream.stdin_in_flight});
    } else if (connection.closed_) {
      return absl::UnavailableError(
          absl::StrCat("agent connection closed: ", connection.close_reason_));
    } else if (stream.finished()) {
      return absl::FailedPreconditionError("the command has exited");
    }
    const bool last = offset + chunk == data.size();
    agent_v1::Frame frame;
    frame.set_stream_id(stream_id_);
    agent_v1::StdinData* stdin_data = frame.mutable_stdin();
    stdin_data->set_data(data.data() + offset, chunk);
    stdin_data->set_eof(eof && last);
    RETURN_IF_ERROR(connection.SendLocked(frame));
    stream.stdin_in_flight += chunk;
    offset += chunk;
    if (eof && last) stream.stdin_eof_sent = true;
  }
  return absl::OkStatus();
}

absl::Status ExecSession::Signal(int signal) {
  // The guest is Linux: its signal numbers, whatever the host's NSIG.
  if (signal <= 0 || signal > kLinuxMaxSignal) {
    return absl::InvalidArgumentError(absl::StrCat("invalid signal ", signal));
  }
  agent_v1::Frame frame;
  frame.mutable_signal()->set_signal(signal);
  return SendWhileRunning(frame);
}

absl::Status ExecSession::Resize(uint32_t rows, uint32_t columns) {
  agent_v1::Frame frame;
  agent_v1::Resize* resize = frame.mutable_resize();
  resize->set_rows(rows);
  resize->set_columns(columns);
  return SendWhileRunning(frame);
}

absl::Status ExecSession::SendWhileRunning(agent_v1::Frame& frame) {
  AgentConnection& connection = *connection_;
  absl::MutexLock lock(&connection.mu_);
  if (stream_->abandoned) {
    return absl::FailedPreconditionError("the session was abandoned");
  }
  if (stream_->finished()) {
    return absl::FailedPreconditionError("the command has exited");
  }
  frame.set_stream_id(stream_id_);
  return connection.SendLocked(frame);
}

// ---- CollectExec ------------------------------------------------------------

absl::StatusOr<ExecResult> CollectExec(ExecSession& session,
                                       std::string_view stdin_data,
                                       absl::Time deadline,
                                       uint64_t output_limit) {
  if (!session.start().stdin_open() && !stdin_data.empty()) {
    return absl::FailedPreconditionError(
        "stdin data given for a command started without stdin_open");
  }
  // Stdin is fed from a second thread: a command like `cat` only reads more
  // stdin once its output has been read, which this thread does.
  std::thread writer;
  if (session.start().stdin_open()) {
    writer = std::thread([&session, stdin_data, deadline] {
      // Failing to write stdin is normal when the command exits without
      // reading it; the outcome is in the exit status.
      (void)session.WriteStdin(stdin_data, /*eof=*/true, deadline);
    });
  }
  ExecResult result;
  bool stdout_dropped = false, stderr_dropped = false;
  absl::Status status = absl::OkStatus();
  for (;;) {
    absl::StatusOr<ExecEvent> event = session.Next(deadline);
    if (!event.ok()) {
      status = event.status();
      break;
    }
    if (event->kind == ExecEvent::Kind::kStarted) {
      result.pid = event->pid;
    } else if (event->kind == ExecEvent::Kind::kOutput) {
      const bool is_stdout = event->fd == agent_v1::FD_STDOUT;
      std::string& out = is_stdout ? result.stdout_data : result.stderr_data;
      size_t keep = event->data.size();
      if (output_limit > 0) {
        keep = std::min<uint64_t>(
            keep, output_limit - std::min<uint64_t>(out.size(), output_limit));
      }
      if (keep < event->data.size()) {
        (is_stdout ? stdout_dropped : stderr_dropped) = true;
      }
      out.append(event->data, 0, keep);
    } else {
      result.exit = std::move(event->exit);
      if (stdout_dropped) result.exit.set_stdout_truncated(true);
      if (stderr_dropped) result.exit.set_stderr_truncated(true);
      break;
    }
  }
  if (writer.joinable()) writer.join();
  RETURN_IF_ERROR(status);
  return result;
}

}  // namespace corral::daemon
