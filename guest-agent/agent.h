// corral-agent's event loop: one connection to the daemon at a time, many
// commands per connection, all driven by a single-threaded epoll loop.
// Detached commands (ExecStart.detach_key) outlive a listening agent's
// connections and are taken up again by a later one (README.md).
#ifndef CORRAL_GUEST_AGENT_AGENT_H_
#define CORRAL_GUEST_AGENT_AGENT_H_

namespace corral::agent {

inline constexpr char kAgentVersion[] = "0.1.0";

struct AgentOptions {
  // A listening Unix stream socket: every accepted connection replaces the
  // current one (whose commands die, except detached ones). -1 when unused.
  int listen_fd = -1;
  // One connected stream; the agent exits when it closes, killing every
  // command, detached or not. -1 when unused.
  // Exactly one of listen_fd and connection_fd is set.
  int connection_fd = -1;
};

// Runs until the connection_fd closes or SIGTERM/SIGINT arrives; returns the
// process exit code. Takes ownership of the fds in `options`. Blocks SIGCHLD,
// SIGTERM and SIGINT and ignores SIGPIPE for the whole process.
int RunAgent(const AgentOptions& options);

}  // namespace corral::agent

#endif  // CORRAL_GUEST_AGENT_AGENT_H_
