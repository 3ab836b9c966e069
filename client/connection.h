// The CLI's gRPC connection to corrald over its Unix socket, and the one place
// where a failed call becomes the CLI's error message.
#ifndef CORRAL_CLIENT_CONNECTION_H_
#define CORRAL_CLIENT_CONNECTION_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "corral/platform.h"
#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/files.grpc.pb.h"
#include "corral/v1/images.grpc.pb.h"
#include "corral/v1/network.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/shells.grpc.pb.h"
#include "corral/v1/snapshots.grpc.pb.h"
#include "corral/v1/system.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace corral::cli {

// Where corral looks for the daemon without --socket or $CORRAL_SOCKET.
inline const char* const kDefaultSocket = platform::Defaults().socket;
// Deadline of unary calls; creating a sandbox can take a few seconds (a VM
// boot), so this is generous.
inline constexpr std::chrono::seconds kUnaryDeadline{60};
// How long the CLI waits for the daemon to answer on its socket before it
// gives up (exit 125): a hung daemon, or a process that kept its socket,
// must not make every command hang.
inline constexpr std::chrono::seconds kConnectTimeout{5};
// Largest response accepted (lists of many sandboxes, collected output).
inline constexpr int kMaxReceiveMessageBytes = 64 << 20;

// --socket, else $CORRAL_SOCKET, else kDefaultSocket.
std::string ResolveSocketPath(const std::string& flag_value);

// Tries a plain connect(2) to a Unix socket: nullopt when something accepts,
// else why not ("No such file or directory"). Used to explain an unreachable
// daemon better than gRPC's generic message does.
std::optional<std::string> ProbeSocket(const std::string& path);

class Connection {
 public:
  // Never fails: it connects when a command first needs the daemon (after
  // checking its own options), waiting at most kConnectTimeout.
  explicit Connection(std::string socket_path);

  const std::string& socket_path() const { return socket_path_; }
  // The stubs. The first use connects; when the daemon cannot be reached,
  // every call then fails at once and CallError says why.
  corral::v1::System::Stub& system() { return (Connect(), *system_); }
  corral::v1::Images::Stub& images() { return (Connect(), *images_); }
  corral::v1::Sandboxes::Stub& sandboxes() { return (Connect(), *sandboxes_); }
  corral::v1::Exec::Stub& exec() { return (Connect(), *exec_); }
  corral::v1::Files::Stub& files() { return (Connect(), *files_); }
  corral::v1::Snapshots::Stub& snapshots() { return (Connect(), *snapshots_); }
  corral::v1::Shells::Stub& shells() { return (Connect(), *shells_); }
  corral::v1::Network::Stub& network() { return (Connect(), *network_); }

  // Connects to the daemon now: OK once it answers, else UNAVAILABLE
  // "cannot reach corrald at PATH: <why>" (at once when nothing listens,
  // after `timeout` when something accepts but never answers).
  absl::Status WaitUntilReachable(std::chrono::milliseconds timeout);

  // A context for a unary call, with kUnaryDeadline.
  std::unique_ptr<grpc::ClientContext> UnaryContext() const;

  // The CLI's error for a failed call: "cannot reach corrald at PATH:
  // <reason>" when the daemon could not be reached, else the daemon's own
  // message with its code. Only call with a non-OK status.
  absl::Status CallError(const grpc::Status& status) const;

 private:
  // Once: WaitUntilReachable(kConnectTimeout); on failure keeps the error
  // and points the stubs at a channel that fails every call at once.
  void Connect();
  void MakeStubs();

  std::string socket_path_;
  bool connected_ = false;
  absl::Status unreachable_;  // why the daemon could not be reached
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<corral::v1::System::Stub> system_;
  std::unique_ptr<corral::v1::Images::Stub> images_;
  std::unique_ptr<corral::v1::Sandboxes::Stub> sandboxes_;
  std::unique_ptr<corral::v1::Exec::Stub> exec_;
  std::unique_ptr<corral::v1::Files::Stub> files_;
  std::unique_ptr<corral::v1::Snapshots::Stub> snapshots_;
  std::unique_ptr<corral::v1::Shells::Stub> shells_;
  std::unique_ptr<corral::v1::Network::Stub> network_;
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_CONNECTION_H_
