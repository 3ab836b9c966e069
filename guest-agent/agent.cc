// corral-agent's event loop; see agent.h and README.md.
#include "guest-agent/agent.h"

#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "corral/agent/v1/agent.pb.h"
#include "corral/unique_fd.h"
#include "guest-agent/fs_ops.h"
#include "guest-agent/spawn.h"
#include "guest-agent/wire/frame_codec.h"

namespace corral::agent {
namespace {

using v1::Frame;

constexpr int64_t kNsPerMs = 1000000;
// After the command is reaped, how long a background process may keep its
// output pipes open before the agent stops waiting for EOF.
constexpr int64_t kExitGraceNs = 250 * kNsPerMs;
// On SIGTERM/SIGINT, how long commands get between SIGTERM and SIGKILL.
constexpr int64_t kShutdownGraceNs = 2000 * kNsPerMs;
// Past this many unsent bytes towards the daemon, the agent stops reading the
// connection and the command pipes until the daemon catches up. Output is
// already bounded by the windows; this also bounds replies (pongs, errors)
// to a daemon that sends but does not read.
constexpr size_t kMaxConnectionBacklog = 1u << 20;
// Reads per readiness event, so that one busy fd cannot starve the others.
constexpr int kReadsPerEvent = 16;
constexpr size_t kReadChunk = 64u << 10;
// Detached commands (ExecStart.detach_key) the agent holds at most, and the
// longest key (agent.proto).
constexpr size_t kMaxDetachedCommands = 256;
constexpr size_t kMaxDetachKeyBytes = 128;

void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));
void Log(const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  int n = std::vsnprintf(line, sizeof(line), format, args);
  va_end(args);
  if (n < 0) return;
  std::fprintf(stderr, "corral-agent[%d]: %s\n", static_cast<int>(::getpid()),
               line);
}

enum class WatchKind { kSignal, kTimer, kListen, kConnection, kOutput, kStdin };

// One fd registered with epoll. `events` is what is registered; 0 means not
// registered at all (a registered read end with no interest would still
// report EPOLLHUP and spin the loop).
struct Watch {
  WatchKind kind;
  void* owner = nullptr;
  int index = 0;  // which output pipe, for kOutput
  int fd = -1;
  uint32_t events = 0;
};

struct Connection;

struct OutputPipe {
  UniqueFd fd;
  Watch watch;
  uint64_t sent = 0;   // bytes sent in Output frames
  uint64_t total = 0;  // bytes the command wrote
  bool truncated = false;
  // After the exit grace: bytes still to read before closing; -1 = no limit.
  int64_t drain_left = -1;
};

// Output of a detached command that was sent (or, while no stream is
// attached, read) and not yet acknowledged: what a resume sends again.
struct KeptOutput {
  int index = 0;        // which output pipe
  uint64_t offset = 0;  // of data's first byte within its fd
  std::string data;
};

struct Command {
  // The connection whose stream the command is attached to; nullptr for a
  // detached command attached to no stream (it then lives in
  // Agent::unattached_). Never a dropped connection.
  Connection* connection = nullptr;
  uint64_t stream_id = 0;  // 0 while unattached
  // Non-empty: the command outlives its connection (ExecStart.detach_key).
  std::string detach_key;
  // Detached commands only: the unacknowledged output in send order; its
  // bytes always add up to unacked_output, so at most one window.
  std::deque<KeptOutput> kept;
  pid_t pid = -1;
  int64_t start_ns = 0;
  // The command cgroup's OOM kills when the command started (spawn.h).
  uint64_t oom_kills_at_start = 0;
  bool dead = false;  // forgotten; memory kept until the loop iteration ends

  OutputPipe out[2];  // stdout, stderr
  uint64_t output_limit = 0;
  uint64_t unacked_output = 0;  // sent but not acknowledged by the daemon
  uint64_t next_sequence = 0;

  // With a pty: the terminal's master side, kept until the command is
  // forgotten for resize, the foreground process group and VEOF. out[0].fd
  // and stdin_fd are duplicates of it; out[1] is unused.
  UniqueFd pty;

  bool stdin_open = false;  // the request asked for stdin (or a pty)
  bool stdin_eof = false;   // the daemon sent eof
  UniqueFd stdin_fd;        // invalid once closed
  Watch stdin_watch;
  std::string stdin_buffer;  // received, not yet written to the pipe
  size_t stdin_offset = 0;
  uint64_t unacked_stdin = 0;  // received but not yet acknowledged
  // Bytes at the front of stdin_buffer that an earlier stream sent: written,
  // but acknowledged to nobody (that stream is gone).
  uint64_t stdin_orphaned = 0;
  // A stream before a resume sent eof on a pipe: stdin stays closed, and
  // stdin frames of the new stream are acknowledged and dropped.
  bool stdin_closed_earlier = false;

  bool reaped = false;
  int wait_status = 0;
  int64_t end_ns = 0;
  bool timed_out = false;
  int64_t timeout_at_ns = 0;  // 0: none
  int64_t grace_at_ns = 0;    // 0: none

  uint64_t send_window() const {
    return wire::kInitialWindowBytes -
           std::min<uint64_t>(unacked_output, wire::kInitialWindowBytes);
  }
  bool outputs_closed() const { return !out[0].fd && !out[1].fd; }
  bool attached() const { return connection != nullptr; }
  bool detachable() const { return !detach_key.empty(); }
};

struct Connection {
  UniqueFd fd;
  Watch watch;
  bool dead = false;
  // An error on the control stream was sent: flush, then close.
  bool closing = false;
  bool congested = false;
  wire::FrameDecoder decoder;
  std::string outbox;
  size_t outbox_offset = 0;
  std::map<uint64_t, std::unique_ptr<Command>> commands;

  size_t backlog() const { return outbox.size() - outbox_offset; }
};

class Agent {
 public:
  explicit Agent(const AgentOptions& options)
      : listen_fd_(options.listen_fd),
        exit_when_disconnected_(options.connection_fd >= 0),
        initial_connection_fd_(options.connection_fd),
        link_pid_(options.link_pid),
        vsock_host_only_(options.vsock_host_only),
        outside_peers_only_(!options.vsock_host_only && options.link_pid <= 0 &&
                            ::getpid() == 1) {}

  int Run();

 private:
  bool Init();
  void SetInterest(Watch& watch, uint32_t events);
  void CloseWatched(Watch& watch, UniqueFd& fd);

  // Connection.
  void AdoptConnection(UniqueFd fd);
  void DropConnection(const char* why);
  void OnConnectionEvent(uint32_t events);
  void ReadConnection();
  void FlushConnection();
  void RefreshConnection();
  void Send(const Frame& frame);
  void SendError(uint64_t stream_id, const std::string& message);
  void SendWindowUpdate(uint64_t stream_id, uint64_t bytes);
  void OnAccept();
  bool PeerAllowed(int fd) const;

  // Frames from the daemon.
  void HandleFrame(const Frame& frame);
  void HandleControlFrame(const Frame& frame);
  void StartCommand(uint64_t stream_id, const v1::ExecStart& start);
  std::string CheckDetachKey(const v1::ExecStart& start) const;
  void ResumeCommand(uint64_t stream_id, const v1::Resume& resume);
  void HandleStdin(Command& command, const v1::StdinData& stdin_data);
  void StreamProtocolError(Command& command, const std::string& message);

  // Commands.
  Command* FindCommand(uint64_t stream_id);
  // Every command not forgotten, attached or not.
  std::vector<Command*> LiveCommands() const;
  void RefreshCommand(Command& command);
  void OnOutputReadable(Command& command, int index);
  void SendOutput(Command& command, int index, uint64_t offset,
                  std::string_view data);
  void DropKept(Command& command, uint64_t bytes);
  void Detach(std::unique_ptr<Command> command);
  void ClosePipe(Command& command, int index);
  void FlushStdin(Command& command);
  void CloseStdin(Command& command, bool acknowledge_dropped);
  void MaybeFinish(Command& command);
  void Forget(Command& command);
  void KillGroup(Command& command, int signal);
  void SignalCommand(Command& command, int signal);
  void ResizeTerminal(Command& command, const v1::Resize& resize);

  // Signals and timers.
  void OnSignal();
  void ReapChildren();
  void OnReaped(Command& command, int status);
  void BeginShutdown();
  void OnTimer();
  void RearmTimer();
  void StartDrain(Command& command);

  UniqueFd epoll_;
  UniqueFd signal_fd_;
  UniqueFd timer_fd_;
  UniqueFd listen_fd_;
  Watch signal_watch_{WatchKind::kSignal};
  Watch timer_watch_{WatchKind::kTimer};
  Watch listen_watch_{WatchKind::kListen};

  std::unique_ptr<Connection> connection_;
  const bool exit_when_disconnected_;
  int initial_connection_fd_;
  const pid_t link_pid_;
  const bool vsock_host_only_;
  const bool outside_peers_only_;

  // Commands by pid until reaped; the reaper finds its command here.
  std::unordered_map<pid_t, Command*> by_pid_;
  // Every command with a detach key that is not forgotten, attached or not.
  std::map<std::string, Command*> keyed_;
  // Detached commands attached to no stream, owned here until a resume.
  std::map<std::string, std::unique_ptr<Command>> unattached_;
  // Objects removed during one epoll batch; later events of the same batch
  // may still point at them, so they are freed after the batch.
  std::vector<std::unique_ptr<Command>> dead_commands_;
  std::vector<std::unique_ptr<Connection>> dead_connections_;

  bool shutting_down_ = false;
  int64_t shutdown_at_ns_ = 0;
  bool done_ = false;
  int64_t armed_timer_ns_ = 0;
};

bool Agent::Init() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    Log("sigprocmask: %s", std::strerror(errno));
    return false;
  }
  // Writes to a closed stdin pipe or connection must fail with EPIPE, not
  // kill the agent. Children get SIG_DFL back before exec.
  ::signal(SIGPIPE, SIG_IGN);

  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  signal_fd_.Reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  timer_fd_.Reset(
      ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!epoll_ || !signal_fd_ || !timer_fd_) {
    Log("epoll/signalfd/timerfd: %s", std::strerror(errno));
    return false;
  }
  signal_watch_.fd = signal_fd_.get();
  SetInterest(signal_watch_, EPOLLIN);
  timer_watch_.fd = timer_fd_.get();
  SetInterest(timer_watch_, EPOLLIN);
  if (listen_fd_) {
    int flags = ::fcntl(listen_fd_.get(), F_GETFL);
    ::fcntl(listen_fd_.get(), F_SETFL, flags | O_NONBLOCK);
    ::fcntl(listen_fd_.get(), F_SETFD, FD_CLOEXEC);
    listen_watch_.fd = listen_fd_.get();
    SetInterest(listen_watch_, EPOLLIN);
  }
  if (initial_connection_fd_ >= 0) {
    AdoptConnection(UniqueFd(initial_connection_fd_));
    initial_connection_fd_ = -1;
  }
  // A link that died before SIGCHLD was blocked left only its zombie.
  if (link_pid_ > 0) ReapChildren();
  return true;
}

void Agent::SetInterest(Watch& watch, uint32_t events) {
  if (watch.fd < 0 || events == watch.events) return;
  if (events == 0) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watch.fd, nullptr);
    watch.events = 0;
    return;
  }
  epoll_event event{};
  event.events = events;
  event.data.ptr = &watch;
  int op = watch.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_.get(), op, watch.fd, &event) != 0) {
    Log("epoll_ctl fd %d: %s", watch.fd, std::strerror(errno));
    return;
  }
  watch.events = events;
}

void Agent::CloseWatched(Watch& watch, UniqueFd& fd) {
  SetInterest(watch, 0);
  watch.fd = -1;
  fd.Reset();
}

// ---- Connection -----------------------------------------------------------

void Agent::AdoptConnection(UniqueFd fd) {
  if (connection_) DropConnection("replaced by a new connection");
  int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
  connection_ = std::make_unique<Connection>();
  connection_->fd = std::move(fd);
  connection_->watch.kind = WatchKind::kConnection;
  connection_->watch.owner = connection_.get();
  connection_->watch.fd = connection_->fd.get();

  Frame hello;
  hello.set_stream_id(0);
  v1::Hello* body = hello.mutable_hello();
  body->set_protocol_version(wire::kProtocolVersion);
  body->set_agent_version(kAgentVersion);
  for (const char* capability :
       {"exec", "exec.stdin", "exec.signal", "fs", "exec.pty", "exec.detach"}) {
    body->add_capabilities(capability);
  }
  body->set_pid(static_cast<int32_t>(::getpid()));
  // The previous connection (if any) is gone: every detached command waits.
  for (const auto& [key, command] : unattached_) body->add_detached(key);
  Send(hello);
  RefreshConnection();
}

void Agent::DropConnection(const char* why) {
  if (!connection_) return;
  if (why != nullptr) Log("closing connection: %s", why);
  std::unique_ptr<Connection> connection = std::move(connection_);
  // Detached commands wait for a later connection's resume, unless the
  // agent exits with this connection. The others do not outlive it: kill
  // their process groups; the reaper still collects the pids later.
  auto commands = std::move(connection->commands);
  for (auto& [stream_id, command] : commands) {
    if (command->detachable() && !exit_when_disconnected_) {
      Detach(std::move(command));
      continue;
    }
    KillGroup(*command, SIGKILL);
    for (int i = 0; i < 2; ++i) {
      CloseWatched(command->out[i].watch, command->out[i].fd);
    }
    CloseWatched(command->stdin_watch, command->stdin_fd);
    if (!command->reaped) by_pid_.erase(command->pid);
    if (command->detachable()) keyed_.erase(command->detach_key);
    command->dead = true;
    dead_commands_.push_back(std::move(command));
  }
  CloseWatched(connection->watch, connection->fd);
  connection->dead = true;
  dead_connections_.push_back(std::move(connection));
  if (exit_when_disconnected_) done_ = true;
}

// A detached command whose connection dropped: it keeps running, reads its
// output only while the window allows (keeping what it reads), and waits
// for a resume.
void Agent::Detach(std::unique_ptr<Command> command) {
  Command* raw = command.get();
  raw->connection = nullptr;
  raw->stream_id = 0;
  // Stdin the dropped stream sent is still written, but its acknowledgements
  // have nobody to go to.
  raw->unacked_stdin = 0;
  raw->stdin_orphaned = raw->stdin_buffer.size() - raw->stdin_offset;
  unattached_[raw->detach_key] = std::move(command);
  RefreshCommand(*raw);
}

bool Agent::PeerAllowed(int fd) const {
  if (vsock_host_only_) {
    sockaddr_vm peer{};
    socklen_t size = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &size) != 0 ||
        peer.svm_family != AF_VSOCK) {
      Log("refused a vsock connection: getpeername: %s", std::strerror(errno));
      return false;
    }
    if (peer.svm_cid == VMADDR_CID_HOST) return true;
    Log("refused a vsock connection from CID %u: only the host may connect",
        peer.svm_cid);
    return false;
  }
  if (link_pid_ <= 0 && !outside_peers_only_) return true;
  ucred peer{};
  socklen_t size = sizeof(peer);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) {
    Log("refused a connection: SO_PEERCRED: %s", std::strerror(errno));
    return false;
  }
  const pid_t wanted = link_pid_ > 0 ? link_pid_ : 0;
  if (peer.pid == wanted) return true;
  Log("refused a connection from pid %d of the sandbox: only %s may connect",
      static_cast<int>(peer.pid),
      link_pid_ > 0 ? "the link" : "the daemon, from outside");
  return false;
}

void Agent::OnAccept() {
  for (;;) {
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Log("accept: %s", std::strerror(errno));
      }
      return;
    }
    if (!PeerAllowed(fd)) {
      ::close(fd);
      continue;
    }
    AdoptConnection(UniqueFd(fd));
  }
}

void Agent::OnConnectionEvent(uint32_t events) {
  Connection* connection = connection_.get();
  if (events & EPOLLOUT) FlushConnection();
  if (connection->dead) return;
  const bool reading = connection->watch.events & EPOLLIN;
  if (reading && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
    ReadConnection();
  } else if (events & (EPOLLHUP | EPOLLERR)) {
    DropConnection("connection hung up");
  }
}

void Agent::ReadConnection() {
  Connection* connection = connection_.get();
  char buffer[kReadChunk];
  Frame frame;
  for (int i = 0; i < kReadsPerEvent; ++i) {
    ssize_t n = ::read(connection->fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      DropConnection(std::strerror(errno));
      return;
    }
    if (n == 0) {
      // The daemon hanging up is routine: not worth a log line.
      DropConnection(nullptr);
      return;
    }
    connection->decoder.Feed(std::string_view(buffer, static_cast<size_t>(n)));
    while (!connection->dead && !connection->closing &&
           connection->decoder.Next(&frame)) {
      HandleFrame(frame);
    }
    if (connection->dead || connection->closing) return;
    if (connection->decoder.failed()) {
      std::string why = "undecodable input: " + connection->decoder.error();
      DropConnection(why.c_str());
      return;
    }
    if (connection->backlog() > kMaxConnectionBacklog) return;
  }
}

void Agent::FlushConnection() {
  Connection* connection = connection_.get();
  if (connection == nullptr) return;
  while (connection->backlog() > 0) {
    ssize_t n = ::write(connection->fd.get(),
                        connection->outbox.data() + connection->outbox_offset,
                        connection->backlog());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      DropConnection(std::strerror(errno));
      return;
    }
    connection->outbox_offset += static_cast<size_t>(n);
  }
  if (connection->outbox_offset == connection->outbox.size()) {
    connection->outbox.clear();
    connection->outbox_offset = 0;
  } else if (connection->outbox_offset >= kMaxConnectionBacklog) {
    connection->outbox.erase(0, connection->outbox_offset);
    connection->outbox_offset = 0;
  }
}

void Agent::RefreshConnection() {
  Connection* connection = connection_.get();
  if (connection == nullptr) return;
  if (connection->closing && connection->backlog() == 0) {
    DropConnection("closed after an error on the control stream");
    return;
  }
  const bool congested = connection->backlog() > kMaxConnectionBacklog;
  uint32_t events = 0;
  if (!connection->closing && !congested) events |= EPOLLIN;
  if (connection->backlog() > 0) events |= EPOLLOUT;
  SetInterest(connection->watch, events);
  if (congested != connection->congested) {
    connection->congested = congested;
    for (auto& [stream_id, command] : connection->commands) {
      RefreshCommand(*command);
    }
  }
}

void Agent::Send(const Frame& frame) {
  Connection* connection = connection_.get();
  if (connection == nullptr || connection->dead) return;
  if (!wire::AppendFrame(frame, &connection->outbox)) {
    // Only a bug can build an unencodable frame; never send a broken stream.
    Log("cannot encode a frame for stream %llu",
        static_cast<unsigned long long>(frame.stream_id()));
  }
}

void Agent::SendError(uint64_t stream_id, const std::string& message) {
  Frame frame;
  frame.set_stream_id(stream_id);
  frame.mutable_error()->set_message(message);
  Send(frame);
}

void Agent::SendWindowUpdate(uint64_t stream_id, uint64_t bytes) {
  while (bytes > 0) {
    const uint32_t chunk =
        static_cast<uint32_t>(std::min<uint64_t>(bytes, UINT32_MAX));
    Frame frame;
    frame.set_stream_id(stream_id);
    frame.mutable_window_update()->set_bytes(chunk);
    Send(frame);
    bytes -= chunk;
  }
}

// ---- Frames from the daemon ------------------------------------------------

void Agent::HandleFrame(const Frame& frame) {
  const uint64_t stream_id = frame.stream_id();
  if (stream_id == 0) {
    HandleControlFrame(frame);
    return;
  }
  Command* command = FindCommand(stream_id);
  switch (frame.body_case()) {
    case Frame::kExecStart:
      if (command != nullptr) {
        StreamProtocolError(*command, "exec_start on a stream in use");
        return;
      }
      StartCommand(stream_id, frame.exec_start());
      return;
    case Frame::kResume:
      if (command != nullptr) {
        StreamProtocolError(*command, "resume on a stream in use");
        return;
      }
      ResumeCommand(stream_id, frame.resume());
      return;
    case Frame::kStdin:
      if (command == nullptr) {
        SendError(stream_id, "stdin for an unknown stream");
        return;
      }
      HandleStdin(*command, frame.stdin());
      return;
    case Frame::kSignal: {
      if (command == nullptr) {
        SendError(stream_id, "signal for an unknown stream");
        return;
      }
      const int signal = frame.signal().signal();
      if (signal <= 0 || signal >= NSIG) {
        StreamProtocolError(*command,
                            "invalid signal " + std::to_string(signal));
        return;
      }
      SignalCommand(*command, signal);
      return;
    }
    case Frame::kResize:
      // Like a window update, a resize may race with exec_exit: ignore it for
      // an unknown stream, as for a stream without a pty.
      if (command != nullptr) ResizeTerminal(*command, frame.resize());
      return;
    case Frame::kWindowUpdate: {
      // A window update racing with exec_exit is normal: ignore it.
      if (command == nullptr) return;
      const uint64_t bytes = frame.window_update().bytes();
      if (bytes > command->unacked_output) {
        StreamProtocolError(*command,
                            "window_update acknowledges more than was sent");
        return;
      }
      command->unacked_output -= bytes;
      DropKept(*command, bytes);
      RefreshCommand(*command);
      // A detached command's exit may have waited for this.
      MaybeFinish(*command);
      return;
    }
    case Frame::kError:
      // The daemon ends the stream: the command goes with it.
      if (command != nullptr) {
        KillGroup(*command, SIGKILL);
        Forget(*command);
      }
      return;
    default:
      if (command != nullptr) {
        StreamProtocolError(*command, "unexpected frame on a command stream");
      } else {
        SendError(stream_id, "unexpected frame for an unknown stream");
      }
      return;
  }
}

void Agent::HandleControlFrame(const Frame& frame) {
  switch (frame.body_case()) {
    case Frame::kPing: {
      Frame pong;
      pong.set_stream_id(0);
      pong.mutable_pong()->set_nonce(frame.ping().nonce());
      Send(pong);
      return;
    }
    case Frame::kPong:
      return;
    case Frame::kError:
      Log("the daemon ended the connection: %.200s",
          frame.error().message().c_str());
      connection_->closing = true;
      return;
    default:
      // An error on stream 0 finishes the connection (agent.proto).
      SendError(0, "unexpected frame on the control stream");
      connection_->closing = true;
      return;
  }
}

void Agent::StartCommand(uint64_t stream_id, const v1::ExecStart& start) {
  if (shutting_down_) {
    SendError(stream_id, "the agent is shutting down");
    return;
  }
  // A file operation is a forked child of ours that runs RunFsOperation on
  // its stdio; from here on it is a command like any other.
  const bool fs = start.has_fs();
  std::string invalid;
  if (!fs) {
    invalid = ValidateExecStart(start);
  } else if (!start.argv().empty()) {
    invalid = "exec_start: argv must be empty for a file operation";
  } else if (start.fs().op_case() == v1::FsRequest::OP_NOT_SET) {
    invalid = "exec_start: fs names no operation";
  } else if (start.has_pty()) {
    invalid = "exec_start: a file operation cannot have a pty";
  }
  if (invalid.empty()) invalid = CheckDetachKey(start);
  if (!invalid.empty()) {
    SendError(stream_id, invalid);
    return;
  }
  SpawnedCommand spawned;
  SpawnFailure failure;
  const uint64_t oom_kills = CommandCgroupOomKills();
  const bool ok =
      fs ? SpawnFunction(
               start, [&start] { return RunFsOperation(start.fs(), 0, 1, 2); },
               &spawned, &failure)
         : Spawn(start, &spawned, &failure);
  if (!ok) {
    // The failed child (if any) exits 127 by itself and is reaped as an
    // unknown pid.
    Frame frame;
    frame.set_stream_id(stream_id);
    v1::ExecExit* exit = frame.mutable_exec_exit();
    exit->set_exit_code(failure.exit_code);
    exit->set_error(failure.message);
    exit->set_duration_us(static_cast<uint64_t>(
        std::max<int64_t>(0, MonotonicNowNs() - failure.start_ns) / 1000));
    Send(frame);
    return;
  }
  auto command = std::make_unique<Command>();
  command->connection = connection_.get();
  command->stream_id = stream_id;
  command->detach_key = start.detach_key();
  command->pid = spawned.pid;
  command->start_ns = spawned.start_ns;
  command->oom_kills_at_start = oom_kills;
  command->output_limit = start.output_limit_bytes();
  // A pty's stdin is the terminal: always open.
  command->stdin_open = start.stdin_open() || start.has_pty();
  command->pty = std::move(spawned.pty_master);
  command->stdin_fd = std::move(spawned.stdin_write);
  command->stdin_watch =
      Watch{WatchKind::kStdin, command.get(), 0, command->stdin_fd.get(), 0};
  command->out[0].fd = std::move(spawned.stdout_read);
  command->out[1].fd = std::move(spawned.stderr_read);
  for (int i = 0; i < 2; ++i) {
    command->out[i].watch = Watch{WatchKind::kOutput, command.get(), i,
                                  command->out[i].fd.get(), 0};
  }
  if (start.timeout_ms() > 0) {
    const uint64_t timeout_ms =
        std::min<uint64_t>(start.timeout_ms(), uint64_t{1} << 40);
    command->timeout_at_ns =
        spawned.start_ns + static_cast<int64_t>(timeout_ms) * kNsPerMs;
  }
  Command* raw = command.get();
  by_pid_[raw->pid] = raw;
  if (raw->detachable()) keyed_[raw->detach_key] = raw;
  connection_->commands[stream_id] = std::move(command);

  Frame started;
  started.set_stream_id(stream_id);
  started.mutable_exec_started()->set_pid(raw->pid);
  Send(started);
  RefreshCommand(*raw);
}

bool IsDetachKeyByte(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
}

// The first reason `start.detach_key` cannot be used, or an empty string (also
// for no key at all).
std::string Agent::CheckDetachKey(const v1::ExecStart& start) const {
  const std::string& key = start.detach_key();
  if (key.empty()) return "";
  if (start.has_fs()) return "exec_start: a file operation cannot be detached";
  if (key.size() > kMaxDetachKeyBytes ||
      !std::all_of(key.begin(), key.end(), IsDetachKeyByte)) {
    return "exec_start: detach_key must be 1 to 128 bytes of [A-Za-z0-9._:-]";
  }
  if (keyed_.count(key) != 0) {
    return "exec_start: detach_key " + key + " is in use";
  }
  if (keyed_.size() >= kMaxDetachedCommands) {
    return "exec_start: the agent already holds " +
           std::to_string(kMaxDetachedCommands) + " detached commands";
  }
  return "";
}

// Attaches the stream to a detached command: exec_started, the kept output
// from the requested offsets on, then the stream goes on as one that
// exec_start opened (agent.proto, Resume).
void Agent::ResumeCommand(uint64_t stream_id, const v1::Resume& resume) {
  auto found = keyed_.find(resume.key());
  if (found == keyed_.end()) {
    // The key is the daemon's own: still, never echo a long one.
    SendError(stream_id, "resume: no detached command with key " +
                             resume.key().substr(0, kMaxDetachKeyBytes));
    return;
  }
  Command& command = *found->second;
  const uint64_t wanted[2] = {resume.stdout_offset(), resume.stderr_offset()};
  for (int i = 0; i < 2; ++i) {
    if (wanted[i] > command.out[i].sent) {
      SendError(stream_id, std::string("resume: ") +
                               (i == 0 ? "stdout" : "stderr") + " offset " +
                               std::to_string(wanted[i]) + " is past the " +
                               std::to_string(command.out[i].sent) +
                               " bytes the command wrote");
      return;
    }
  }

  std::unique_ptr<Command> owned;
  if (command.attached()) {
    // Another stream of this connection has it: that stream ends.
    const uint64_t old_stream = command.stream_id;
    auto it = connection_->commands.find(old_stream);
    owned = std::move(it->second);
    connection_->commands.erase(it);
    SendError(old_stream, "resumed on stream " + std::to_string(stream_id));
  } else {
    auto it = unattached_.find(command.detach_key);
    owned = std::move(it->second);
    unattached_.erase(it);
  }
  command.connection = connection_.get();
  command.stream_id = stream_id;
  command.next_sequence = 0;
  // Stdin of an earlier stream still in the buffer is acknowledged to nobody.
  command.unacked_stdin = 0;
  command.stdin_orphaned = command.stdin_buffer.size() - command.stdin_offset;
  if (command.pty) {
    // Eof on a terminal was only a ^D: it takes input again.
    command.stdin_eof = false;
  } else if (command.stdin_eof) {
    command.stdin_closed_earlier = true;
  }
  connection_->commands[stream_id] = std::move(owned);

  Frame started;
  started.set_stream_id(stream_id);
  started.mutable_exec_started()->set_pid(command.pid);
  Send(started);

  // What the daemon has is no longer needed; the rest goes out again, in the
  // order it was first sent, and stays kept until acknowledged anew.
  std::deque<KeptOutput> resent;
  uint64_t resent_bytes = 0;
  for (KeptOutput& piece : command.kept) {
    const uint64_t from = wanted[piece.index];
    if (piece.offset + piece.data.size() <= from) continue;
    if (piece.offset < from) {
      piece.data.erase(0, from - piece.offset);
      piece.offset = from;
    }
    SendOutput(command, piece.index, piece.offset, piece.data);
    resent_bytes += piece.data.size();
    resent.push_back(std::move(piece));
  }
  command.kept = std::move(resent);
  command.unacked_output = resent_bytes;
  RefreshCommand(command);
  // Exited meanwhile: exec_exit once the replay is acknowledged (at once if
  // there was nothing to replay).
  MaybeFinish(command);
}

void Agent::HandleStdin(Command& command, const v1::StdinData& stdin_data) {
  if (!command.stdin_open) {
    StreamProtocolError(command, "stdin for a command without stdin_open");
    return;
  }
  const uint64_t size = stdin_data.data().size();
  if (command.stdin_closed_earlier) {
    // A stream before the resume closed stdin: it stays closed.
    SendWindowUpdate(command.stream_id, size);
    return;
  }
  if (command.stdin_eof) {
    StreamProtocolError(command, "stdin after eof");
    return;
  }
  if (command.unacked_stdin + size > wire::kInitialWindowBytes) {
    StreamProtocolError(command, "stdin beyond the flow-control window");
    return;
  }
  command.unacked_stdin += size;
  command.stdin_eof = stdin_data.eof();
  if (command.stdin_eof && command.pty && command.stdin_fd) {
    // Closing our end would not end the terminal's input (the master stays
    // open for output); the terminal's EOF character does, for a program
    // reading lines (and for line editors, on an empty line). It travels
    // after the data; FlushStdin acknowledges at most the daemon's bytes.
    termios modes{};
    cc_t veof = 4;  // ^D
    if (::tcgetattr(command.pty.get(), &modes) == 0 &&
        modes.c_cc[VEOF] != _POSIX_VDISABLE) {
      veof = modes.c_cc[VEOF];
    }
    command.stdin_buffer.append(stdin_data.data());
    command.stdin_buffer.push_back(static_cast<char>(veof));
    FlushStdin(command);
    return;
  }
  if (!command.stdin_fd) {
    // The command closed its stdin or is gone: drop, but acknowledge so the
    // daemon does not wait for a window that never opens.
    SendWindowUpdate(command.stream_id, command.unacked_stdin);
    command.unacked_stdin = 0;
    return;
  }
  command.stdin_buffer.append(stdin_data.data());
  FlushStdin(command);
}

void Agent::StreamProtocolError(Command& command, const std::string& message) {
  SendError(command.stream_id, message);
  KillGroup(command, SIGKILL);
  Forget(command);
}

// ---- Commands -------------------------------------------------------------

Command* Agent::FindCommand(uint64_t stream_id) {
  if (!connection_) return nullptr;
  auto it = connection_->commands.find(stream_id);
  return it == connection_->commands.end() ? nullptr : it->second.get();
}

std::vector<Command*> Agent::LiveCommands() const {
  std::vector<Command*> commands;
  if (connection_) {
    for (const auto& [stream_id, command] : connection_->commands) {
      commands.push_back(command.get());
    }
  }
  for (const auto& [key, command] : unattached_) {
    commands.push_back(command.get());
  }
  return commands;
}

void Agent::RefreshCommand(Command& command) {
  if (command.dead) return;
  // Unattached, output is read into `kept` (still bounded by the window).
  const bool can_send = !command.attached() || (!command.connection->closing &&
                                                command.connection->backlog() <=
                                                    kMaxConnectionBacklog);
  // Held back by the backlog: the connection is congested now, whether or
  // not RefreshConnection saw it (the backlog may drain within this round
  // of events), so that it refreshes this command once it drains. Without
  // this, a command with nothing unacknowledged stays without interest:
  // no window update comes for it, and its output waits forever.
  if (command.attached() && !command.connection->closing && !can_send) {
    command.connection->congested = true;
  }
  for (int i = 0; i < 2; ++i) {
    OutputPipe& pipe = command.out[i];
    uint32_t events = 0;
    const bool at_limit =
        command.output_limit > 0 && pipe.sent >= command.output_limit;
    // At the limit the pipe is drained without sending, so no window needed.
    if (pipe.fd && can_send && pipe.drain_left != 0 &&
        (at_limit || command.send_window() > 0)) {
      events = EPOLLIN;
    }
    SetInterest(pipe.watch, events);
  }
  uint32_t stdin_events = 0;
  if (command.stdin_fd && command.stdin_offset < command.stdin_buffer.size()) {
    stdin_events = EPOLLOUT;
  }
  SetInterest(command.stdin_watch, stdin_events);
}

void Agent::OnOutputReadable(Command& command, int index) {
  OutputPipe& pipe = command.out[index];
  char buffer[kReadChunk];
  for (int i = 0; i < kReadsPerEvent && pipe.fd; ++i) {
    if (command.attached() &&
        command.connection->backlog() > kMaxConnectionBacklog) {
      break;
    }
    const bool at_limit =
        command.output_limit > 0 && pipe.sent >= command.output_limit;
    size_t want = sizeof(buffer);
    if (!at_limit) want = std::min<uint64_t>(want, command.send_window());
    // No window: wait for one, also while draining (closing the pipe here
    // would lose what is left of the drain).
    if (want == 0) break;
    if (pipe.drain_left >= 0) {
      if (pipe.drain_left == 0) {
        ClosePipe(command, index);
        break;
      }
      want = std::min<uint64_t>(want, static_cast<uint64_t>(pipe.drain_left));
    }
    ssize_t n = ::read(pipe.fd.get(), buffer, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      ClosePipe(command, index);
      break;
    }
    if (n == 0) {
      ClosePipe(command, index);
      break;
    }
    const uint64_t got = static_cast<uint64_t>(n);
    pipe.total += got;
    if (pipe.drain_left >= 0) pipe.drain_left -= n;
    uint64_t keep = got;
    if (command.output_limit > 0) {
      keep = std::min<uint64_t>(
          got,
          command.output_limit - std::min(pipe.sent, command.output_limit));
    }
    if (keep < got) pipe.truncated = true;
    if (keep > 0) {
      const std::string_view data(buffer, keep);
      if (command.attached()) SendOutput(command, index, pipe.sent, data);
      // Unattached, these bytes are "sent" to the kept queue: they count
      // against the window and go out on a resume.
      if (command.detachable()) {
        command.kept.push_back(KeptOutput{index, pipe.sent, std::string(data)});
      }
      pipe.sent += keep;
      command.unacked_output += keep;
    }
    if (pipe.drain_left == 0) {
      ClosePipe(command, index);
      break;
    }
  }
  RefreshCommand(command);
  MaybeFinish(command);
}

void Agent::SendOutput(Command& command, int index, uint64_t offset,
                       std::string_view data) {
  Frame frame;
  frame.set_stream_id(command.stream_id);
  v1::Output* output = frame.mutable_output();
  output->set_fd(index == 0 ? v1::FD_STDOUT : v1::FD_STDERR);
  output->set_data(data.data(), data.size());
  output->set_sequence(command.next_sequence++);
  output->set_offset(offset);
  Send(frame);
}

// The daemon acknowledged `bytes`: the oldest kept output, in send order.
void Agent::DropKept(Command& command, uint64_t bytes) {
  while (bytes > 0 && !command.kept.empty()) {
    KeptOutput& oldest = command.kept.front();
    if (oldest.data.size() > bytes) {
      oldest.data.erase(0, bytes);
      oldest.offset += bytes;
      return;
    }
    bytes -= oldest.data.size();
    command.kept.pop_front();
  }
}

void Agent::ClosePipe(Command& command, int index) {
  CloseWatched(command.out[index].watch, command.out[index].fd);
}

void Agent::FlushStdin(Command& command) {
  uint64_t consumed = 0;
  bool broken = false;
  while (command.stdin_fd &&
         command.stdin_offset < command.stdin_buffer.size()) {
    ssize_t n = ::write(command.stdin_fd.get(),
                        command.stdin_buffer.data() + command.stdin_offset,
                        command.stdin_buffer.size() - command.stdin_offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      // EPIPE (the command closed its stdin) or worse: drop what is left.
      broken = errno != EAGAIN && errno != EWOULDBLOCK;
      break;
    }
    command.stdin_offset += static_cast<size_t>(n);
    consumed += static_cast<uint64_t>(n);
  }
  if (command.stdin_offset == command.stdin_buffer.size()) {
    command.stdin_buffer.clear();
    command.stdin_offset = 0;
  } else if (command.stdin_offset >= wire::kMaxChunkBytes) {
    command.stdin_buffer.erase(0, command.stdin_offset);
    command.stdin_offset = 0;
  }
  // Bytes of an earlier stream went first; they are acknowledged to nobody.
  const uint64_t orphaned = std::min(consumed, command.stdin_orphaned);
  command.stdin_orphaned -= orphaned;
  consumed = std::min(consumed - orphaned, command.unacked_stdin);
  command.unacked_stdin -= consumed;
  if (command.attached()) SendWindowUpdate(command.stream_id, consumed);
  if (broken) {
    CloseStdin(command, /*acknowledge_dropped=*/true);
  } else if (command.stdin_eof && command.stdin_buffer.empty() &&
             !command.pty) {
    // A terminal stays open after its ^D: a resumed stream types again.
    CloseStdin(command, /*acknowledge_dropped=*/false);
  }
  RefreshCommand(command);
}

void Agent::CloseStdin(Command& command, bool acknowledge_dropped) {
  CloseWatched(command.stdin_watch, command.stdin_fd);
  command.stdin_buffer.clear();
  command.stdin_offset = 0;
  command.stdin_orphaned = 0;
  if (acknowledge_dropped && command.unacked_stdin > 0 && command.attached()) {
    SendWindowUpdate(command.stream_id, command.unacked_stdin);
    command.unacked_stdin = 0;
  }
}

void Agent::MaybeFinish(Command& command) {
  if (command.dead || !command.reaped || !command.outputs_closed()) return;
  if (!command.attached()) {
    // The exit waits for a resume. The terminal has nothing more to give.
    command.pty.Reset();
    return;
  }
  // A detached command is forgotten with its exit, so the exit waits until
  // the daemon has acknowledged all output: a daemon that dies before
  // storing the last bytes gets them (and the exit) again on a resume.
  if (command.detachable() && command.unacked_output > 0) return;
  Frame frame;
  frame.set_stream_id(command.stream_id);
  v1::ExecExit* exit = frame.mutable_exec_exit();
  if (WIFEXITED(command.wait_status)) {
    exit->set_exit_code(WEXITSTATUS(command.wait_status));
  } else if (WIFSIGNALED(command.wait_status)) {
    exit->set_signal(WTERMSIG(command.wait_status));
  }
  exit->set_timed_out(command.timed_out);
  exit->set_stdout_truncated(command.out[0].truncated);
  exit->set_stderr_truncated(command.out[1].truncated);
  exit->set_stdout_bytes(command.out[0].total);
  exit->set_stderr_bytes(command.out[1].total);
  exit->set_duration_us(static_cast<uint64_t>(
      std::max<int64_t>(0, command.end_ns - command.start_ns) / 1000));
  const uint64_t oom_kills = CommandCgroupOomKills();
  if (oom_kills > command.oom_kills_at_start) {
    exit->set_oom_kills(oom_kills - command.oom_kills_at_start);
  }
  Send(frame);
  Forget(command);
}

// Removes the command from its connection (or, unattached, from the agent);
// its memory lives until the end of the current loop iteration. A command
// not yet reaped is reaped as an unknown pid later.
void Agent::Forget(Command& command) {
  if (command.dead) return;
  for (int i = 0; i < 2; ++i) ClosePipe(command, i);
  CloseWatched(command.stdin_watch, command.stdin_fd);
  // The last master fd: the terminal hangs up, its session gets SIGHUP.
  command.pty.Reset();
  if (!command.reaped) by_pid_.erase(command.pid);
  command.dead = true;
  if (command.detachable()) keyed_.erase(command.detach_key);
  if (command.attached()) {
    auto& commands = command.connection->commands;
    auto it = commands.find(command.stream_id);
    if (it != commands.end()) {
      dead_commands_.push_back(std::move(it->second));
      commands.erase(it);
    }
  } else {
    auto it = unattached_.find(command.detach_key);
    if (it != unattached_.end()) {
      dead_commands_.push_back(std::move(it->second));
      unattached_.erase(it);
    }
  }
}

// The terminal's foreground process group when it is not the command's own
// (a job an interactive shell started), else 0. It can only be a group of
// the terminal's session, which the command leads. Never 1: kill(-1) would
// reach every process.
pid_t ForegroundGroup(const Command& command) {
  if (!command.pty) return 0;
  const pid_t group = ::tcgetpgrp(command.pty.get());
  return group > 1 && group != command.pid ? group : 0;
}

void Agent::KillGroup(Command& command, int signal) {
  // Once reaped, the group may be empty and its id reused: leave it alone.
  if (command.reaped || command.pid <= 0) return;
  // The foreground job of a pty may sit in a group of its own.
  const pid_t foreground = ForegroundGroup(command);
  if (foreground > 0) ::kill(-foreground, signal);
  ::kill(-command.pid, signal);
}

void Agent::SignalCommand(Command& command, int signal) {
  // SIGKILL ends the whole command, foreground job included: it is also how
  // the daemon tears a stream down (ExecSession's destructor).
  if (signal == SIGKILL) {
    KillGroup(command, signal);
    return;
  }
  if (command.reaped || command.pid <= 0) return;
  // On a pty the signal is for the job the user sees, as from the keyboard.
  const pid_t foreground = ForegroundGroup(command);
  ::kill(-(foreground > 0 ? foreground : command.pid), signal);
}

void Agent::ResizeTerminal(Command& command, const v1::Resize& resize) {
  if (!command.pty) return;
  if (!SetTerminalSize(command.pty.get(), resize.rows(), resize.columns())) {
    Log("TIOCSWINSZ on stream %llu: %s",
        static_cast<unsigned long long>(command.stream_id),
        std::strerror(errno));
  }
}

// ---- Signals and timers ---------------------------------------------------

void Agent::OnSignal() {
  signalfd_siginfo info;
  bool child = false;
  for (;;) {
    ssize_t n = ::read(signal_fd_.get(), &info, sizeof(info));
    if (n != static_cast<ssize_t>(sizeof(info))) break;
    if (info.ssi_signo == SIGCHLD) {
      child = true;
    } else if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
      BeginShutdown();
    }
  }
  if (child) ReapChildren();
}

void Agent::ReapChildren() {
  // SIGCHLD coalesces, and as PID 1 every orphan in the sandbox is ours:
  // reap until nothing is left.
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) break;
    if (link_pid_ > 0 && pid == link_pid_) {
      Log("the link exited (wait status %d): nothing can reach the agent; "
          "shutting down",
          status);
      BeginShutdown();
      continue;
    }
    auto it = by_pid_.find(pid);
    if (it == by_pid_.end()) continue;
    Command* command = it->second;
    by_pid_.erase(it);
    OnReaped(*command, status);
  }
}

void Agent::OnReaped(Command& command, int status) {
  command.reaped = true;
  command.wait_status = status;
  command.end_ns = MonotonicNowNs();
  command.timeout_at_ns = 0;
  CloseStdin(command, /*acknowledge_dropped=*/true);
  if (!command.outputs_closed()) {
    command.grace_at_ns = command.end_ns + kExitGraceNs;
  }
  MaybeFinish(command);
}

void Agent::BeginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_at_ns_ = MonotonicNowNs() + kShutdownGraceNs;
  for (auto& [pid, command] : by_pid_) KillGroup(*command, SIGTERM);
}

// After the exit grace, a background process still holds the pipes: send
// what is already in them (everything the command itself wrote), then close.
void Agent::StartDrain(Command& command) {
  for (int i = 0; i < 2; ++i) {
    OutputPipe& pipe = command.out[i];
    if (!pipe.fd) continue;
    int available = 0;
    if (::ioctl(pipe.fd.get(), FIONREAD, &available) != 0 || available <= 0) {
      ClosePipe(command, i);
    } else {
      pipe.drain_left = available;
    }
  }
  RefreshCommand(command);
  MaybeFinish(command);
}

void Agent::OnTimer() {
  uint64_t expirations;
  ssize_t ignored = ::read(timer_fd_.get(), &expirations, sizeof(expirations));
  (void)ignored;
  armed_timer_ns_ = 0;
  const int64_t now = MonotonicNowNs();
  if (shutting_down_ && now >= shutdown_at_ns_) {
    for (auto& [pid, command] : by_pid_) KillGroup(*command, SIGKILL);
    done_ = true;
    return;
  }
  // Unattached commands too: their timeouts run while nobody watches.
  for (Command* command : LiveCommands()) {
    if (command->dead) continue;
    if (command->timeout_at_ns != 0 && now >= command->timeout_at_ns) {
      command->timeout_at_ns = 0;
      command->timed_out = true;
      KillGroup(*command, SIGKILL);
    }
    if (command->grace_at_ns != 0 && now >= command->grace_at_ns) {
      command->grace_at_ns = 0;
      StartDrain(*command);
    }
  }
}

void Agent::RearmTimer() {
  int64_t next = 0;
  auto consider = [&next](int64_t deadline) {
    if (deadline != 0 && (next == 0 || deadline < next)) next = deadline;
  };
  if (shutting_down_) consider(shutdown_at_ns_);
  for (const Command* command : LiveCommands()) {
    consider(command->timeout_at_ns);
    consider(command->grace_at_ns);
  }
  if (next == armed_timer_ns_) return;
  itimerspec spec{};
  spec.it_value.tv_sec = next / 1000000000;
  spec.it_value.tv_nsec = next % 1000000000;
  // it_value 0 disarms; a deadline already past fires at once.
  if (::timerfd_settime(timer_fd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) !=
      0) {
    Log("timerfd_settime: %s", std::strerror(errno));
    return;
  }
  armed_timer_ns_ = next;
}

int Agent::Run() {
  if (!Init()) return 1;
  epoll_event events[64];
  while (!done_) {
    RearmTimer();
    int n = ::epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Log("epoll_wait: %s", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n && !done_; ++i) {
      Watch* watch = static_cast<Watch*>(events[i].data.ptr);
      const uint32_t ready = events[i].events;
      switch (watch->kind) {
        case WatchKind::kSignal:
          OnSignal();
          break;
        case WatchKind::kTimer:
          OnTimer();
          break;
        case WatchKind::kListen:
          OnAccept();
          break;
        case WatchKind::kConnection: {
          auto* connection = static_cast<Connection*>(watch->owner);
          if (!connection->dead) OnConnectionEvent(ready);
          break;
        }
        case WatchKind::kOutput: {
          auto* command = static_cast<Command*>(watch->owner);
          if (!command->dead) OnOutputReadable(*command, watch->index);
          break;
        }
        case WatchKind::kStdin: {
          auto* command = static_cast<Command*>(watch->owner);
          if (!command->dead) {
            if (ready & EPOLLERR) {
              CloseStdin(*command, /*acknowledge_dropped=*/true);
              RefreshCommand(*command);
            } else {
              FlushStdin(*command);
            }
          }
          break;
        }
      }
    }
    FlushConnection();
    RefreshConnection();
    dead_commands_.clear();
    dead_connections_.clear();
    // Shutdown ends once every attached command has reported its exit and
    // every unattached one has been reaped (or at the deadline, in OnTimer).
    if (shutting_down_ && (!connection_ || connection_->commands.empty()) &&
        std::none_of(unattached_.begin(), unattached_.end(),
                     [](const auto& entry) { return !entry.second->reaped; })) {
      done_ = true;
    }
  }
  // Best effort: let the daemon see the last exits before the agent goes.
  FlushConnection();
  return 0;
}

}  // namespace

int RunAgent(const AgentOptions& options) {
  Agent agent(options);
  return agent.Run();
}

}  // namespace corral::agent
