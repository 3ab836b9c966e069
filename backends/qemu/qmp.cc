#include "backends/qemu/qmp.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "backends/common/agent_socket.h"
#include "corral/status_macros.h"

namespace corral::qemu_runtime {
namespace {

// A monitor line longer than this is not QEMU's.
constexpr size_t kMaxMessageBytes = 1u << 20;

}  // namespace

absl::StatusOr<QmpClient> QmpClient::Connect(const std::string& sandbox_dir,
                                             const std::string& socket,
                                             absl::Time deadline) {
  ASSIGN_OR_RETURN(UniqueFd fd, backend_plugin::ConnectAt(sandbox_dir, socket));
  return Adopt(std::move(fd), deadline);
}

absl::StatusOr<QmpClient> QmpClient::Adopt(UniqueFd fd, absl::Time deadline) {
  QmpClient client(std::move(fd), deadline);
  ASSIGN_OR_RETURN(nlohmann::json greeting, client.Read());
  if (!greeting.contains("QMP")) {
    return absl::InternalError("QEMU's monitor did not greet with QMP");
  }
  RETURN_IF_ERROR(client.Execute("qmp_capabilities").status());
  return client;
}

absl::StatusOr<nlohmann::json> QmpClient::Read() {
  for (;;) {
    size_t newline;
    while ((newline = buffer_.find('\n')) == std::string::npos) {
      if (buffer_.size() > kMaxMessageBytes) {
        return absl::InternalError("QEMU's monitor sent an overlong line");
      }
      const int wait_ms = static_cast<int>(std::max<int64_t>(
          0, absl::ToInt64Milliseconds(deadline_ - absl::Now())));
      pollfd poll_fd{fd_.get(), POLLIN, 0};
      int ready = ::poll(&poll_fd, 1, wait_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return ErrnoStatus("poll QMP");
      if (ready == 0) {
        return absl::DeadlineExceededError("QEMU's monitor did not answer");
      }
      char chunk[4096];
      ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("read QMP");
      if (n == 0) return absl::UnavailableError("QEMU's monitor closed");
      buffer_.append(chunk, static_cast<size_t>(n));
    }
    std::string line = buffer_.substr(0, newline);
    buffer_.erase(0, newline + 1);
    auto message = nlohmann::json::parse(line, nullptr, false);
    if (message.is_discarded() || !message.is_object()) {
      return absl::InternalError(absl::StrCat(
          "QEMU's monitor sent no JSON object: ", line.substr(0, 200)));
    }
    if (message.contains("event")) continue;
    return message;
  }
}

absl::StatusOr<nlohmann::json> QmpClient::Execute(
    const std::string& command, const nlohmann::json& arguments, int fd) {
  nlohmann::json request = {{"execute", command}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  const std::string text = request.dump() + "\n";
  iovec data{const_cast<char*>(text.data()), text.size()};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  }
  // One message of a few hundred bytes: a stream socket takes it whole.
  ssize_t sent;
  do {
    sent = ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(absl::StrCat("send QMP ", command));
  }
  ASSIGN_OR_RETURN(nlohmann::json reply, Read());
  if (reply.contains("error")) {
    const auto& error = reply["error"];
    return absl::InternalError(absl::StrCat(
        "QEMU ", command, ": ", error.value("class", std::string("error")),
        ": ", error.value("desc", std::string())));
  }
  if (!reply.contains("return")) {
    return absl::InternalError(
        absl::StrCat("QEMU ", command, ": an answer without a return"));
  }
  return reply["return"];
}

}  // namespace corral::qemu_runtime
