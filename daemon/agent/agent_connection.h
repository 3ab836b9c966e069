// The daemon's side of the agent protocol: one AgentConnection per sandbox
// agent, ExecSessions multiplexed over it with flow control. Everything the
// agent sends is treated as hostile.
#ifndef CORRAL_DAEMON_AGENT_AGENT_CONNECTION_H_
#define CORRAL_DAEMON_AGENT_AGENT_CONNECTION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corral/agent/v1/agent.pb.h"
#include "corral/platform.h"
#include "corral/unique_fd.h"

namespace corral::daemon {

struct ExecEvent {  // one event of a running command
  enum class Kind { kStarted, kOutput, kExit };
  Kind kind = Kind::kStarted;
  int pid = 0;                    // kStarted
  corral::agent::v1::Fd fd = {};  // kOutput
  std::string data;               // kOutput
  // kOutput: the sequence number of the first Output frame in this event.
  // When the caller lags, consecutive frames of the same fd are merged into
  // one event, so sequence numbers may skip.
  uint64_t sequence = 0;
  // kOutput: offset within its fd of data's first byte (Output.offset: the
  // fd's bytes the agent sent before it; bytes dropped by output_limit_bytes
  // do not count). Checked by the connection: on a StartExec stream it is
  // the fd's bytes received so far; on a ResumeExec stream the first event
  // of each fd may start past the requested offset (the agent no longer had
  // the bytes in between), never before it, and the rest follow on.
  uint64_t offset = 0;
  corral::agent::v1::ExecExit exit;  // kExit
};

class ExecSession;

namespace agent_internal {
struct StreamState;
}  // namespace agent_internal

// One connection to one sandbox's agent. Thread-safe. A reader thread owns
// the fd's reads (and flushes queued writes); callers never block on the
// agent except where documented (waiting for events or for a stdin window).
class AgentConnection : public std::enable_shared_from_this<AgentConnection> {
 public:
  // Takes the connected stream; waits up to hello_timeout for Hello; refuses
  // protocol_version != 1 (FAILED_PRECONDITION with the versions in the
  // message). DEADLINE_EXCEEDED when no Hello arrives in time, UNAVAILABLE
  // when the connection fails before it.
  static absl::StatusOr<std::shared_ptr<AgentConnection>> Open(
      corral::UniqueFd fd, absl::Duration hello_timeout);

  AgentConnection(const AgentConnection&) = delete;
  AgentConnection& operator=(const AgentConnection&) = delete;
  ~AgentConnection();

  // The agent's Hello. Valid once Open has returned the connection.
  const corral::agent::v1::Hello& hello() const;
  // The connection was lost or closed.
  bool closed() const;
  // Why the connection closed; empty while it is open.
  std::string close_reason() const;
  // Blocks until the connection closes or the deadline passes; returns
  // closed().
  bool WaitUntilClosed(absl::Time deadline);

  // Starts a command (or, with `fs` set and argv empty, a file operation;
  // see FsCall) on a new stream. INVALID_ARGUMENT for an empty argv,
  // UNAVAILABLE when the connection is closed.
  absl::StatusOr<std::unique_ptr<ExecSession>> StartExec(
      const corral::agent::v1::ExecStart& start);
  // Takes up a detached command (started with ExecStart.detach_key; those
  // attached to no stream are listed in hello().detached()) on a new stream
  // carrying `resume`. Events are as for StartExec: kStarted with the pid;
  // the output the agent still kept from resume's offsets on
  // (ExecEvent.offset says where each event starts); then new output and
  // kExit. The agent forgets a detached command with its exit, so it sends
  // the exit (on a StartExec or a ResumeExec stream) only once all output is
  // acknowledged. An unknown key or an offset past what the command wrote
  // ends the stream: Next returns INTERNAL with the agent's reason. A
  // command attached to another stream of this connection moves to the new
  // one, and the old session's Next returns INTERNAL ("resumed on stream
  // N"). `stdin_open`: whether WriteStdin is allowed (true for a pty
  // command; a pipe that an earlier stream closed stays closed, the agent
  // acknowledging and dropping its stdin). INVALID_ARGUMENT for an empty
  // key, UNAVAILABLE when the connection is closed.
  absl::StatusOr<std::unique_ptr<ExecSession>> ResumeExec(
      const corral::agent::v1::Resume& resume, bool stdin_open);
  // Round trip on the control stream: DEADLINE_EXCEEDED after `timeout`,
  // UNAVAILABLE if the connection is lost.
  absl::Status Ping(absl::Duration timeout);
  // Closes the connection; wakes every session with UNAVAILABLE. Idempotent.
  void Close();

  // Number of streams the connection still tracks (live, being torn down,
  // or abandoned and not yet ended). For tests and diagnostics.
  size_t stream_count() const;

 private:
  friend class ExecSession;
  using StreamState = agent_internal::StreamState;

  AgentConnection(corral::UniqueFd fd, corral::platform::WakeEvent wake);

  void ReaderLoop();
  // Handles one frame from the agent; returns a non-empty reason to close the
  // connection when the frame breaks the protocol.
  std::string HandleFrameLocked(const corral::agent::v1::Frame& frame)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string HandleStreamFrameLocked(const corral::agent::v1::Frame& frame)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseLocked(std::string reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a frame for the reader thread to write (and tries to write at
  // once). Returns UNAVAILABLE when closed.
  absl::Status SendLocked(const corral::agent::v1::Frame& frame)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake();
  // Acknowledges consumed output of a stream.
  void AcknowledgeLocked(StreamState& stream, uint64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Called by ~ExecSession.
  void ReleaseStream(const std::shared_ptr<StreamState>& stream);
  // Called by ExecSession::Abandon.
  void AbandonStream(const std::shared_ptr<StreamState>& stream);
  // Registers a stream whose opening frame is `frame` and returns its
  // session.
  absl::StatusOr<std::unique_ptr<ExecSession>> OpenStreamLocked(
      corral::agent::v1::Frame& frame, std::shared_ptr<StreamState> stream,
      corral::agent::v1::ExecStart start) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // Signalled on hello, pong, and close.
  absl::CondVar control_changed_;
  // The agent stream. Read only by the reader thread (without mu_); written
  // under mu_ by whoever holds it; closed by the reader thread on exit.
  corral::UniqueFd fd_;
  // Wakes the reader thread (close, queued writes).
  corral::platform::WakeEvent wake_;
  std::thread reader_;

  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::string close_reason_ ABSL_GUARDED_BY(mu_);
  bool hello_received_ ABSL_GUARDED_BY(mu_) = false;
  // Written once by the reader thread before hello_received_ is set; read
  // without the lock afterwards.
  corral::agent::v1::Hello hello_;
  std::string outbox_ ABSL_GUARDED_BY(mu_);
  size_t outbox_offset_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_stream_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<StreamState>> streams_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_nonce_ ABSL_GUARDED_BY(mu_) = 1;
  // Nonces of pings in flight -> answered.
  absl::flat_hash_map<uint64_t, bool> pings_ ABSL_GUARDED_BY(mu_);
};

// One running command. Not thread-safe itself except that WriteStdin, Signal
// and Resize may be called from one thread while another calls Next
// (CollectExec does).
class ExecSession {
 public:
  ExecSession(const ExecSession&) = delete;
  ExecSession& operator=(const ExecSession&) = delete;
  // If the command has not exited and the session was not abandoned:
  // SIGKILL its process group, forget the stream (later frames of it are
  // drained and dropped).
  ~ExecSession();

  // Next event in order; blocks until one arrives or the deadline passes
  // (DEADLINE_EXCEEDED), UNAVAILABLE if the connection is lost, INTERNAL if
  // the agent ended the stream with an error, OUT_OF_RANGE after kExit,
  // FAILED_PRECONDITION after Abandon. Unless SetManualAck was called,
  // acknowledges consumed output (WindowUpdate) so a slow caller slows the
  // command, not the daemon's memory.
  absl::StatusOr<ExecEvent> Next(absl::Time deadline = absl::InfiniteFuture());

  // From now on Next does not acknowledge output: the caller does, with
  // Acknowledge, once it has consumed the bytes for good (the process table
  // after writing them to disk). The agent keeps the output of a detached
  // command until it is acknowledged and sends it again on a resume, so a
  // daemon that dies in between loses nothing. Output Next already returned
  // under automatic acknowledgement is acknowledged now. The agent sends at
  // most one window (256 KiB) unacknowledged, and a detached command's exit
  // only once everything is acknowledged: a caller that does not
  // acknowledge what it consumed stalls the command and never sees kExit.
  // Call before the first Next.
  void SetManualAck();
  // Acknowledges the oldest `bytes` of output that Next returned and that
  // are not acknowledged yet (output of both fds, in the order Next
  // returned it). INVALID_ARGUMENT when that is more than Next returned and
  // was not acknowledged; OK (and nothing sent) once the command exited or
  // the connection closed.
  absl::Status Acknowledge(uint64_t bytes);
  // Lets the stream go WITHOUT ending the command, as corrald does on a
  // clean shutdown so that its successor resumes the detached command: no
  // SIGKILL is sent, events not yet returned are dropped, later frames of
  // the stream are dropped without acknowledging them (the agent keeps
  // them for a resume) and never close the connection. Under automatic
  // acknowledgement, output Next returned is acknowledged first; under
  // manual acknowledgement, Acknowledge still works for it. Afterwards
  // Next, WriteStdin, Signal and Resize return FAILED_PRECONDITION, and the
  // destructor does nothing more. Idempotent.
  void Abandon();

  // Sends stdin, waiting for window as needed (until `deadline`).
  // FAILED_PRECONDITION without stdin_open, after eof, or once the command
  // has exited; UNAVAILABLE if the connection is lost.
  absl::Status WriteStdin(std::string_view data, bool eof,
                          absl::Time deadline = absl::InfiniteFuture());
  // Sends `signal` to the command's process group (on a pty, to the
  // terminal's foreground process group; SIGKILL to both). FAILED_PRECONDITION
  // once the command has exited.
  absl::Status Signal(int signal);
  // Changes the terminal size of a session started with `pty` (the agent
  // ignores it otherwise); 0 means the default (24 rows, 80 columns).
  // FAILED_PRECONDITION once the command has exited; UNAVAILABLE if the
  // connection is lost.
  absl::Status Resize(uint32_t rows, uint32_t columns);

  uint64_t stream_id() const { return stream_id_; }
  // The request; for a session from ResumeExec only stdin_open is set.
  const corral::agent::v1::ExecStart& start() const { return start_; }

 private:
  friend class AgentConnection;
  ExecSession(std::shared_ptr<AgentConnection> connection,
              std::shared_ptr<agent_internal::StreamState> stream,
              uint64_t stream_id, corral::agent::v1::ExecStart start);

  // Sends a frame on this stream unless the command has exited or the
  // session was abandoned (FAILED_PRECONDITION).
  absl::Status SendWhileRunning(corral::agent::v1::Frame& frame);

  std::shared_ptr<AgentConnection> connection_;
  std::shared_ptr<agent_internal::StreamState> stream_;
  const uint64_t stream_id_;
  const corral::agent::v1::ExecStart start_;
};

// Runs a started session to its end, collecting at most output_limit bytes of
// each stream (0 = no limit) — for unary Exec. Feeds `stdin_data` (then eof)
// when the session was started with stdin_open. Bytes beyond output_limit are
// dropped and the matching *_truncated flag of `exit` is set.
struct ExecResult {
  std::string stdout_data, stderr_data;
  int pid = 0;
  corral::agent::v1::ExecExit exit;
};
absl::StatusOr<ExecResult> CollectExec(ExecSession& session,
                                       std::string_view stdin_data,
                                       absl::Time deadline,
                                       uint64_t output_limit = 0);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_AGENT_AGENT_CONNECTION_H_
