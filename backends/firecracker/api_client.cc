#include "backends/firecracker/api_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "corral/status_macros.h"

namespace corral::firecracker_runtime {
namespace {

// Largest reply accepted (Firecracker's are small JSON documents).
constexpr size_t kMaxReplyBytes = 1u << 20;

int RemainingMs(absl::Time deadline) {
  return static_cast<int>(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
}

absl::Status WriteAll(int fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    pollfd p{fd, POLLOUT, 0};
    int ready = ::poll(&p, 1, RemainingMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0)
      return absl::DeadlineExceededError("writing to Firecracker");
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return absl::UnavailableError(
          absl::StrCat("writing to Firecracker: ", std::strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Reads what arrives by `deadline` onto `out`; false at end of file.
absl::StatusOr<bool> ReadSome(int fd, std::string* out, absl::Time deadline) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, RemainingMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      return absl::DeadlineExceededError("Firecracker did not answer in time");
    }
    char buffer[4096];
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET) return false;
      return absl::UnavailableError(
          absl::StrCat("reading from Firecracker: ", std::strerror(errno)));
    }
    if (n == 0) return false;
    out->append(buffer, static_cast<size_t>(n));
    if (out->size() > kMaxReplyBytes) {
      return absl::InternalError("Firecracker's reply is too long");
    }
    return true;
  }
}

}  // namespace

absl::StatusOr<UniqueFd> ConnectInJail(const std::string& trusted_dir,
                                       const std::string& relative) {
  UniqueFd at(::open(trusted_dir.c_str(),
                     O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!at) return ErrnoStatus(absl::StrCat("open ", trusted_dir));
  std::vector<std::string> parts = absl::StrSplit(relative, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    if (parts[i].empty() || parts[i] == "." || parts[i] == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("bad socket path ", relative));
    }
    UniqueFd next(
        ::openat(at.get(), parts[i].c_str(),
                 O_PATH | O_NOFOLLOW | O_CLOEXEC | (last ? 0 : O_DIRECTORY)));
    if (!next) {
      return absl::UnavailableError(absl::StrCat(
          "open ", trusted_dir, "/", relative, ": ", std::strerror(errno)));
    }
    at = std::move(next);
  }
  struct stat st {};
  if (::fstat(at.get(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(
        absl::StrCat(trusted_dir, "/", relative, " is not a socket"));
  }
  // Connected through the fd of the very inode checked: no name is
  // resolved again.
  const std::string path = absl::StrCat("/proc/self/fd/", at.get());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                       path.size() + 1)) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "connect ", trusted_dir, "/", relative, ": ", std::strerror(errno)));
  }
  return fd;
}

absl::StatusOr<ApiReply> ApiRequest(
    const std::string& dir, const std::string& name, absl::string_view method,
    absl::string_view path, const std::string& body, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  ASSIGN_OR_RETURN(UniqueFd fd, ConnectInJail(dir, name));
  std::string request =
      absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: localhost\r\n");
  if (!body.empty()) {
    absl::StrAppend(&request,
                    "Content-Type: application/json\r\nContent-Length: ",
                    body.size(), "\r\n");
  }
  absl::StrAppend(&request, "Accept: application/json\r\n\r\n", body);
  RETURN_IF_ERROR(WriteAll(fd.get(), request, deadline));

  std::string data;
  size_t header_end = std::string::npos;
  while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
    ASSIGN_OR_RETURN(bool more, ReadSome(fd.get(), &data, deadline));
    if (!more) {
      return absl::UnavailableError(absl::StrCat(
          "Firecracker closed the API connection on ", method, " ", path));
    }
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(data).substr(0, header_end), "\r\n");
  ApiReply reply;
  absl::string_view status_line = lines[0];
  if (!absl::ConsumePrefix(&status_line, "HTTP/1.1 ") ||
      status_line.size() < 3 ||
      !absl::SimpleAtoi(status_line.substr(0, 3), &reply.status)) {
    return absl::InternalError(
        absl::StrCat("Firecracker's reply is not HTTP/1.1: ",
                     absl::CHexEscape(lines[0].substr(0, 80))));
  }
  size_t length = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> header =
        absl::StrSplit(lines[i], absl::MaxSplits(':', 1));
    if (absl::EqualsIgnoreCase(header.first, "Content-Length") &&
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(header.second), &length)) {
      return absl::InternalError("Firecracker's reply has a bad length");
    }
  }
  if (length > kMaxReplyBytes) {
    return absl::InternalError("Firecracker's reply is too long");
  }
  while (data.size() < header_end + 4 + length) {
    ASSIGN_OR_RETURN(bool more, ReadSome(fd.get(), &data, deadline));
    if (!more) return absl::InternalError("Firecracker's reply was cut short");
  }
  reply.body = data.substr(header_end + 4, length);
  return reply;
}

absl::Status ApiCall(const std::string& dir, const std::string& name,
                     absl::string_view method, absl::string_view path,
                     const nlohmann::json& body, absl::Duration timeout) {
  ASSIGN_OR_RETURN(ApiReply reply,
                   ApiRequest(dir, name, method, path,
                              body.is_null() ? "" : body.dump(), timeout));
  if (reply.status >= 200 && reply.status < 300) return absl::OkStatus();
  std::string fault = reply.body;
  auto parsed = nlohmann::json::parse(reply.body, nullptr, false);
  if (parsed.is_object() && parsed.contains("fault_message") &&
      parsed["fault_message"].is_string()) {
    fault = parsed["fault_message"].get<std::string>();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "Firecracker: ", method, " ", path, ": ", reply.status, " ", fault));
}

absl::StatusOr<nlohmann::json> ApiGet(const std::string& dir,
                                      const std::string& name,
                                      absl::string_view path,
                                      absl::Duration timeout) {
  ASSIGN_OR_RETURN(ApiReply reply,
                   ApiRequest(dir, name, "GET", path, "", timeout));
  auto parsed = nlohmann::json::parse(reply.body, nullptr, false);
  if (reply.status != 200 || parsed.is_discarded()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Firecracker: GET ", path, ": ", reply.status, " ",
                     reply.body.substr(0, 200)));
  }
  return parsed;
}

absl::StatusOr<UniqueFd> ConnectVsock(const std::string& dir,
                                      const std::string& name, uint32_t port,
                                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  ASSIGN_OR_RETURN(UniqueFd fd, ConnectInJail(dir, name));
  RETURN_IF_ERROR(
      WriteAll(fd.get(), absl::StrCat("CONNECT ", port, "\n"), deadline));
  // Byte by byte up to the newline: what follows it is the agent's.
  std::string line;
  while (line.empty() || line.back() != '\n') {
    pollfd p{fd.get(), POLLIN, 0};
    int ready = ::poll(&p, 1, RemainingMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      return absl::DeadlineExceededError(
          "Firecracker did not answer the vsock CONNECT in time");
    }
    char c;
    ssize_t n = ::recv(fd.get(), &c, 1, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat(
          "nothing listens on vsock port ", port, " in the guest (yet)"));
    }
    line.push_back(c);
    if (line.size() > 32) {
      return absl::InternalError("Firecracker's vsock answer is too long");
    }
  }
  if (!absl::StartsWith(line, "OK ")) {
    return absl::InternalError(
        absl::StrCat("Firecracker's vsock answer: ", absl::CHexEscape(line)));
  }
  return fd;
}

}  // namespace corral::firecracker_runtime
