// One end of a serial link (serial_link.h) bridged to plain stream
// connections: the host's relay (corral-qemu-link, beside QEMU) bridges the
// daemon's connections to the link, the guest's link process (forked by
// corral-agent --vm-init) bridges the link to the agent's listening socket.
// The agent and the daemon therefore speak their protocol over ordinary
// connections, with ordinary connection semantics (a new one replaces the
// old, a closed one ends its commands), although the port between them is a
// single byte stream that never closes.
//
// Single-threaded; blocks SIGTERM and SIGINT (which end Run) and ignores
// SIGPIPE for the whole process. Depends only on the C++ library.
#ifndef CORRAL_GUEST_AGENT_WIRE_LINK_BRIDGE_H_
#define CORRAL_GUEST_AGENT_WIRE_LINK_BRIDGE_H_

#include <functional>
#include <string>

namespace corral::agent::wire {

struct LinkBridgeOptions {
  enum class Role {
    // Opens connections: each connection accepted on listen_fd replaces the
    // current one and becomes a new epoch (OPEN, then DATA once OPENED).
    kHost,
    // Answers them: each OPEN connects to the agent with connect_agent.
    kGuest,
  };
  Role role = Role::kHost;
  // The link: the virtio-serial port, or the host's end of QEMU's chardev.
  // Owned. Run returns when it reaches end of file or fails.
  int link_fd = -1;
  // kHost: a listening stream socket, owned.
  int listen_fd = -1;
  // kGuest: returns a new connection to the agent (owned by the bridge), or
  // -1 with errno set. Gets the OPEN record's payload: empty, or the port
  // the host's peer asked for (a vsock stand-in, see kHost's handshake).
  std::function<int(const std::string& port)> connect_agent;
  // kHost, optional: called with each accepted connection (blocking, before
  // anything else happens on the link). Returns the payload of its OPEN
  // record (a port, or empty), or false to close it unanswered. A vsock
  // stand-in reads Firecracker's "CONNECT <port>" line here.
  std::function<bool(int fd, std::string* open_payload)> on_accept;
  // kHost, optional: called when the guest has answered a connection's OPEN,
  // before any of its data is passed on (a vsock stand-in writes "OK ...").
  std::function<void(int fd)> on_opened;
  // Called with a line of diagnostics (rare: failures only).
  std::function<void(const std::string&)> log;
};

// Runs the bridge until the link ends (kHost) or SIGTERM/SIGINT arrives.
// Returns 0 then, 1 after a setup failure. A guest's link never ends: a port
// whose host side went away is read again every 100 ms.
int RunLinkBridge(const LinkBridgeOptions& options);

}  // namespace corral::agent::wire

#endif  // CORRAL_GUEST_AGENT_WIRE_LINK_BRIDGE_H_
