#include "client/connection.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "corral/platform.h"
#include "corral/unique_fd.h"

namespace corral::cli {

std::string ResolveSocketPath(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* from_env = std::getenv("CORRAL_SOCKET");
  if (from_env != nullptr && *from_env != '\0') return from_env;
  return kDefaultSocket;
}

std::optional<std::string> ProbeSocket(const std::string& path) {
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::StrCat("socket path longer than ",
                        sizeof(address.sun_path) - 1, " bytes");
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  UniqueFd fd(platform::StreamSocket(AF_UNIX));
  if (!fd) return absl::StrCat("socket: ", std::strerror(errno));
  int result;
  do {
    result = ::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&address),
                       sizeof(address));
  } while (result != 0 && errno == EINTR);
  if (result != 0) return std::strerror(errno);
  return std::nullopt;
}

Connection::Connection(std::string socket_path)
    : socket_path_(std::move(socket_path)) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  channel_ =
      grpc::CreateCustomChannel(absl::StrCat("unix:", socket_path_),
                                grpc::InsecureChannelCredentials(), arguments);
  MakeStubs();
}

void Connection::MakeStubs() {
  system_ = corral::v1::System::NewStub(channel_);
  images_ = corral::v1::Images::NewStub(channel_);
  sandboxes_ = corral::v1::Sandboxes::NewStub(channel_);
  exec_ = corral::v1::Exec::NewStub(channel_);
  files_ = corral::v1::Files::NewStub(channel_);
  snapshots_ = corral::v1::Snapshots::NewStub(channel_);
  shells_ = corral::v1::Shells::NewStub(channel_);
  network_ = corral::v1::Network::NewStub(channel_);
}

void Connection::Connect() {
  if (connected_) return;
  connected_ = true;
  unreachable_ = WaitUntilReachable(kConnectTimeout);
  if (unreachable_.ok()) return;
  // Calls on a channel to nowhere fail at once (UNAVAILABLE); CallError
  // then gives the reason found here.
  channel_ = grpc::CreateChannel("unix:/nonexistent/corral-unreachable",
                                 grpc::InsecureChannelCredentials());
  MakeStubs();
}

absl::Status Connection::WaitUntilReachable(std::chrono::milliseconds timeout) {
  if (std::optional<std::string> reason = ProbeSocket(socket_path_)) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach corrald at ", socket_path_, ": ", *reason));
  }
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() + timeout)) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach corrald at ", socket_path_,
        ": the socket accepts connections but nothing answered within ",
        std::chrono::duration_cast<std::chrono::seconds>(timeout).count(),
        " s (a hung daemon, or a process that still holds its socket)"));
  }
  return absl::OkStatus();
}

std::unique_ptr<grpc::ClientContext> Connection::UnaryContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + kUnaryDeadline);
  return context;
}

absl::Status Connection::CallError(const grpc::Status& status) const {
  if (!unreachable_.ok()) return unreachable_;
  // UNAVAILABLE is also what the daemon answers for a runtime that cannot
  // run here, so only call the daemon unreachable when the socket says so or
  // the channel never got connected.
  const bool maybe_unreachable =
      status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  if (maybe_unreachable) {
    std::optional<std::string> reason = ProbeSocket(socket_path_);
    if (!reason && channel_->GetState(false) != GRPC_CHANNEL_READY &&
        status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      reason = status.error_message();
    }
    if (reason) {
      return absl::UnavailableError(absl::StrCat("cannot reach corrald at ",
                                                 socket_path_, ": ", *reason));
    }
  }
  std::string message = status.error_message();
  if (message.empty()) {
    message = absl::StrCat("call failed with gRPC code ",
                           static_cast<int>(status.error_code()));
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      message);
}

}  // namespace corral::cli
