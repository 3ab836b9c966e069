#include "backends/docker/http_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::docker {
namespace {

// Milliseconds left until `deadline`, for poll(2); 0 when it has passed.
int RemainingMs(absl::Time deadline) {
  int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  if (ms <= 0) return 0;
  return ms > 1'000'000 ? 1'000'000 : static_cast<int>(ms);
}

absl::Status WaitFor(int fd, short events, absl::Time deadline,
                     absl::string_view what) {
  for (;;) {
    int wait_ms = RemainingMs(deadline);
    if (wait_ms == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("engine API: timed out ", what));
    }
    pollfd p{fd, events, 0};
    int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus("poll");
    if (ready > 0) return absl::OkStatus();
  }
}

absl::Status SendAll(int fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    RETURN_IF_ERROR(WaitFor(fd, POLLOUT, deadline, "sending the request"));
    // MSG_NOSIGNAL: an engine that closed early must not SIGPIPE corrald.
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoStatus("engine API: send");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Buffered reads from the connection, bounded by a deadline.
class Reader {
 public:
  Reader(int fd, absl::Time deadline) : fd_(fd), deadline_(deadline) {}

  // Reads more into the buffer; false at EOF.
  absl::StatusOr<bool> Fill() {
    RETURN_IF_ERROR(WaitFor(fd_, POLLIN, deadline_, "reading the response"));
    char chunk[16 * 1024];
    for (;;) {
      ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        RETURN_IF_ERROR(
            WaitFor(fd_, POLLIN, deadline_, "reading the response"));
        continue;
      }
      if (n < 0) return ErrnoStatus("engine API: recv");
      if (n == 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  // A line ending in CRLF (without it), at most `max` bytes long.
  absl::StatusOr<std::string> Line(size_t max, absl::string_view what) {
    for (;;) {
      size_t end = buffer_.find("\r\n", start_);
      if (end != std::string::npos) {
        if (end - start_ > max) break;
        std::string line = buffer_.substr(start_, end - start_);
        Consume(end + 2 - start_);
        return line;
      }
      if (buffer_.size() - start_ > max) break;
      ASSIGN_OR_RETURN(bool more, Fill());
      if (!more) return Truncated(what);
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("engine API: ", what, " longer than ", max, " bytes"));
  }

  // Exactly `size` bytes appended to `out`.
  absl::Status Bytes(size_t size, std::string* out, absl::string_view what) {
    while (buffer_.size() - start_ < size) {
      ASSIGN_OR_RETURN(bool more, Fill());
      if (!more) return Truncated(what);
    }
    out->append(buffer_, start_, size);
    Consume(size);
    return absl::OkStatus();
  }

  // Everything until EOF appended to `out`, at most `max` bytes in all.
  absl::Status Rest(size_t max, std::string* out) {
    for (;;) {
      out->append(buffer_, start_, std::string::npos);
      Consume(buffer_.size() - start_);
      if (out->size() > max) return TooLarge(max);
      ASSIGN_OR_RETURN(bool more, Fill());
      if (!more) return absl::OkStatus();
    }
  }

  static absl::Status TooLarge(size_t max) {
    return absl::ResourceExhaustedError(
        absl::StrCat("engine API: response body larger than ", max, " bytes"));
  }

 private:
  static absl::Status Truncated(absl::string_view what) {
    return absl::UnavailableError(absl::StrCat(
        "engine API: connection closed in the middle of the ", what));
  }

  void Consume(size_t n) {
    start_ += n;
    if (start_ == buffer_.size()) {
      buffer_.clear();
      start_ = 0;
    } else if (start_ > 64 * 1024) {
      buffer_.erase(0, start_);
      start_ = 0;
    }
  }

  int fd_;
  absl::Time deadline_;
  std::string buffer_;
  size_t start_ = 0;
};

absl::Status Malformed(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("engine API: malformed response: ", what));
}

absl::Status ParseStatusLine(absl::string_view line, HttpResponse* response) {
  // "HTTP/1.1 200 OK"
  if (!absl::ConsumePrefix(&line, "HTTP/1.")) {
    return Malformed("no HTTP/1.x status line");
  }
  if (line.size() < 5 || (line[0] != '0' && line[0] != '1') || line[1] != ' ') {
    return Malformed("bad status line");
  }
  absl::string_view code = line.substr(2, 3);
  int status = 0;
  for (char c : code) {
    if (c < '0' || c > '9') return Malformed("bad status code");
    status = status * 10 + (c - '0');
  }
  if (status < 100 || (line.size() > 5 && line[5] != ' ')) {
    return Malformed("bad status code");
  }
  response->status = status;
  return absl::OkStatus();
}

bool ValidHeaderName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool token = absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                 std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    if (!token || c == '\0') return false;
  }
  return true;
}

absl::Status ReadHeaders(Reader& reader, const HttpLimits& limits,
                         HttpResponse* response) {
  size_t budget = limits.max_header_bytes;
  auto next_line = [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(std::string line, reader.Line(budget, "response headers"));
    budget -= line.size() < budget ? line.size() : budget;
    return line;
  };
  ASSIGN_OR_RETURN(std::string status_line, next_line());
  RETURN_IF_ERROR(ParseStatusLine(status_line, response));
  for (int count = 0;; ++count) {
    if (count > 200) return Malformed("too many headers");
    ASSIGN_OR_RETURN(std::string line, next_line());
    if (line.empty()) return absl::OkStatus();
    size_t colon = line.find(':');
    if (colon == std::string::npos) return Malformed("header without ':'");
    absl::string_view name(line.data(), colon);
    if (!ValidHeaderName(name)) return Malformed("bad header name");
    std::string value(
        absl::StripAsciiWhitespace(absl::string_view(line).substr(colon + 1)));
    response->headers[absl::AsciiStrToLower(name)] = std::move(value);
  }
}

absl::Status ReadChunkedBody(Reader& reader, const HttpLimits& limits,
                             std::string* body) {
  for (;;) {
    ASSIGN_OR_RETURN(std::string line, reader.Line(1024, "chunk header"));
    absl::string_view size_text = line;
    // Chunk extensions (";name=value") carry nothing we use.
    size_text = size_text.substr(0, size_text.find(';'));
    size_text = absl::StripAsciiWhitespace(size_text);
    if (size_text.empty() || size_text.size() > 15) {
      return Malformed("bad chunk size");
    }
    uint64_t size = 0;
    for (char c : size_text) {
      int digit = absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                           : -1;
      if (digit < 0) return Malformed("bad chunk size");
      size = size * 16 + static_cast<uint64_t>(digit);
    }
    if (size == 0) break;
    if (size > limits.max_body_bytes ||
        body->size() + size > limits.max_body_bytes) {
      return Reader::TooLarge(limits.max_body_bytes);
    }
    RETURN_IF_ERROR(reader.Bytes(static_cast<size_t>(size), body, "chunk"));
    std::string crlf;
    RETURN_IF_ERROR(reader.Bytes(2, &crlf, "chunk"));
    if (crlf != "\r\n") return Malformed("chunk not followed by CRLF");
  }
  // Trailers, until the empty line.
  for (int count = 0;; ++count) {
    if (count > 100) return Malformed("too many trailers");
    ASSIGN_OR_RETURN(std::string line, reader.Line(8192, "trailers"));
    if (line.empty()) return absl::OkStatus();
  }
}

absl::StatusOr<HttpResponse> Exchange(const std::string& socket_path,
                                      absl::string_view head,
                                      absl::string_view body,
                                      const BodyProducer* producer,
                                      absl::string_view method,
                                      const HttpLimits& limits) {
  const absl::Time deadline = absl::Now() + limits.timeout;
  ASSIGN_OR_RETURN(int raw_fd, ConnectUnix(socket_path, deadline));
  UniqueFd fd(raw_fd);
  RETURN_IF_ERROR(SendAll(fd.get(), head, deadline));
  absl::Status sent;
  if (producer != nullptr) {
    BodyWriter write_chunk = [&](absl::string_view piece) -> absl::Status {
      if (piece.empty()) return absl::OkStatus();
      std::string size = absl::StrCat(absl::Hex(piece.size()), "\r\n");
      RETURN_IF_ERROR(SendAll(fd.get(), size, deadline));
      RETURN_IF_ERROR(SendAll(fd.get(), piece, deadline));
      return SendAll(fd.get(), "\r\n", deadline);
    };
    sent = (*producer)(write_chunk);
    if (sent.ok()) sent = SendAll(fd.get(), "0\r\n\r\n", deadline);
  } else {
    sent = SendAll(fd.get(), body, deadline);
  }
  if (!sent.ok()) {
    // The engine may have answered (and closed) early: its answer says
    // more than our EPIPE. A producer's own failure stands.
    if (producer != nullptr && !absl::StartsWith(sent.message(), "engine API"))
      return sent;
    auto early = ReadHttpResponse(fd.get(), method, limits, deadline);
    if (early.ok()) return early;
    return sent;
  }
  return ReadHttpResponse(fd.get(), method, limits, deadline);
}

std::string RequestHead(absl::string_view method, absl::string_view target,
                        absl::string_view content_type, bool chunked,
                        bool has_body, size_t length) {
  std::string head = absl::StrCat(method, " ", target,
                                  " HTTP/1.1\r\n"
                                  "Host: docker\r\n"
                                  "User-Agent: corral-docker-runtime\r\n"
                                  "Connection: close\r\n");
  if (chunked) {
    absl::StrAppend(&head, "Transfer-Encoding: chunked\r\n");
  } else if (has_body) {
    absl::StrAppend(&head, "Content-Length: ", length, "\r\n");
  }
  if ((chunked || has_body) && !content_type.empty()) {
    absl::StrAppend(&head, "Content-Type: ", content_type, "\r\n");
  }
  absl::StrAppend(&head, "\r\n");
  return head;
}

absl::Status CheckTarget(absl::string_view method, absl::string_view target) {
  if (method.empty() || !absl::StartsWith(target, "/")) {
    return absl::InvalidArgumentError("engine API: bad request line");
  }
  for (char c : absl::StrCat(method, target)) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("engine API: request target with a control or space "
                       "character: ",
                       target));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> ConnectUnix(const std::string& path, absl::Time deadline) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine socket path '", path, "' is empty or longer than ",
                     sizeof(address.sun_path) - 1, " bytes"));
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return ErrnoStatus("socket AF_UNIX");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                sizeof(address)) != 0) {
    if (errno == EAGAIN || errno == EINPROGRESS) {
      // A full backlog: wait until writable, then ask for the outcome.
      RETURN_IF_ERROR(WaitFor(fd.get(), POLLOUT, deadline, "connecting"));
      int error = 0;
      socklen_t length = sizeof(error);
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
        return ErrnoStatus("getsockopt SO_ERROR");
      }
      if (error != 0) {
        return absl::UnavailableError(absl::StrCat(
            "engine socket ", path, ": connect: ", std::strerror(error)));
      }
    } else {
      return absl::UnavailableError(absl::StrCat(
          "engine socket ", path, ": connect: ", std::strerror(errno)));
    }
  }
  return fd.Release();
}

absl::StatusOr<HttpResponse> ReadHttpResponse(int fd, absl::string_view method,
                                              const HttpLimits& limits,
                                              absl::Time deadline) {
  Reader reader(fd, deadline);
  HttpResponse response;
  // 1xx answers (100 Continue) precede the real one.
  for (int informational = 0;; ++informational) {
    response = HttpResponse{};
    RETURN_IF_ERROR(ReadHeaders(reader, limits, &response));
    if (response.status >= 200) break;
    if (informational > 5) return Malformed("too many 1xx responses");
  }
  if (method == "HEAD" || response.status == 204 || response.status == 304) {
    return response;
  }
  auto encoding = response.headers.find("transfer-encoding");
  auto length = response.headers.find("content-length");
  if (encoding != response.headers.end()) {
    if (!absl::EqualsIgnoreCase(encoding->second, "chunked")) {
      return Malformed(
          absl::StrCat("unsupported transfer-encoding ", encoding->second));
    }
    RETURN_IF_ERROR(ReadChunkedBody(reader, limits, &response.body));
  } else if (length != response.headers.end()) {
    uint64_t size = 0;
    if (length->second.empty() || length->second.size() > 19 ||
        !absl::SimpleAtoi(length->second, &size) ||
        !absl::ascii_isdigit(static_cast<unsigned char>(length->second[0]))) {
      return Malformed("bad content-length");
    }
    if (size > limits.max_body_bytes) {
      return Reader::TooLarge(limits.max_body_bytes);
    }
    RETURN_IF_ERROR(
        reader.Bytes(static_cast<size_t>(size), &response.body, "body"));
  } else {
    RETURN_IF_ERROR(reader.Rest(limits.max_body_bytes, &response.body));
  }
  return response;
}

HttpClient::HttpClient(std::string socket_path, HttpLimits limits)
    : socket_path_(std::move(socket_path)), limits_(limits) {}

absl::StatusOr<HttpResponse> HttpClient::Request(
    absl::string_view method, absl::string_view target, absl::string_view body,
    absl::string_view content_type) const {
  return Request(method, target, body, content_type, limits_);
}

absl::StatusOr<HttpResponse> HttpClient::Request(
    absl::string_view method, absl::string_view target, absl::string_view body,
    absl::string_view content_type, const HttpLimits& limits) const {
  RETURN_IF_ERROR(CheckTarget(method, target));
  bool has_body = !body.empty() ||
                  (method != "GET" && method != "HEAD" && method != "DELETE");
  std::string head = RequestHead(method, target, content_type,
                                 /*chunked=*/false, has_body, body.size());
  return Exchange(socket_path_, head, body, nullptr, method, limits);
}

absl::StatusOr<HttpResponse> HttpClient::RequestStreaming(
    absl::string_view method, absl::string_view target,
    absl::string_view content_type, const BodyProducer& producer,
    const HttpLimits& limits) const {
  RETURN_IF_ERROR(CheckTarget(method, target));
  std::string head = RequestHead(method, target, content_type,
                                 /*chunked=*/true, true, 0);
  return Exchange(socket_path_, head, "", &producer, method, limits);
}

std::string DemultiplexLogs(absl::string_view body) {
  std::string out;
  absl::string_view rest = body;
  while (!rest.empty()) {
    if (rest.size() < 8) return std::string(body);
    unsigned char stream = static_cast<unsigned char>(rest[0]);
    if (stream > 2 || rest[1] != 0 || rest[2] != 0 || rest[3] != 0) {
      return std::string(body);
    }
    uint32_t size =
        (static_cast<uint32_t>(static_cast<uint8_t>(rest[4])) << 24) |
        (static_cast<uint32_t>(static_cast<uint8_t>(rest[5])) << 16) |
        (static_cast<uint32_t>(static_cast<uint8_t>(rest[6])) << 8) |
        static_cast<uint32_t>(static_cast<uint8_t>(rest[7]));
    rest.remove_prefix(8);
    if (size > rest.size()) return std::string(body);
    out.append(rest.data(), size);
    rest.remove_prefix(size);
  }
  return out;
}

std::string UrlEncode(absl::string_view value) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

}  // namespace corral::docker
