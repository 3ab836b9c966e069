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
  // Who may connect to listen_fd. The socket may be reachable from inside
  // the sandbox (a VM's abstract socket, a container's bind-mounted run
  // directory), and a command must not take the daemon's place, so:
  //  - link_pid > 0: only that process, a child of the agent (a VM's serial
  //    link, vm_init.cc). Its exit shuts the agent down: nothing could reach
  //    it again.
  //  - otherwise, when the agent is pid 1 of its own pid namespace: only
  //    processes outside that namespace (SO_PEERCRED reads their pid as 0),
  //    which the daemon is and no process of the sandbox can be.
  //  - vsock_host_only: listen_fd is an AF_VSOCK socket (a Firecracker
  //    guest's); only the host (CID 2) may connect.
  // A connection from anyone else is closed unread.
  int link_pid = 0;
  bool vsock_host_only = false;
};

// Runs until the connection_fd closes or SIGTERM/SIGINT arrives; returns the
// process exit code. Takes ownership of the fds in `options`. Blocks SIGCHLD,
// SIGTERM and SIGINT and ignores SIGPIPE for the whole process.
int RunAgent(const AgentOptions& options);

}  // namespace corral::agent

#endif  // CORRAL_GUEST_AGENT_AGENT_H_
