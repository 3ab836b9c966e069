// A small HTTP/1.1 client over a Unix stream socket, for a container
// engine's API (Docker Engine, Podman's compat service). One request per
// connection (`Connection: close`), bodies sent with Content-Length or
// chunked, responses read with Content-Length, chunked or until EOF.
//
// Everything the engine sends is untrusted: the header block and the body
// are bounded, every malformed byte is an error, and every read and write
// has a deadline.
#ifndef CORRAL_BACKENDS_DOCKER_HTTP_CLIENT_H_
#define CORRAL_BACKENDS_DOCKER_HTTP_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace corral::docker {

struct HttpLimits {
  // The status line and headers together.
  size_t max_header_bytes = 64 * 1024;
  // The decoded body.
  size_t max_body_bytes = 16u << 20;
  // For the whole exchange: connect, send, receive.
  absl::Duration timeout = absl::Seconds(30);
};

struct HttpResponse {
  int status = 0;
  // Header names in lower case; a repeated header keeps its last value.
  std::map<std::string, std::string> headers;
  std::string body;
};

// Receives the request body in pieces; each call of `write` sends one piece
// (one chunk of a chunked body). Return an error to abort the request.
using BodyWriter = std::function<absl::Status(absl::string_view piece)>;
using BodyProducer = std::function<absl::Status(const BodyWriter& write)>;

class HttpClient {
 public:
  // `socket_path`: absolute path of the engine's socket (at most 107 bytes).
  explicit HttpClient(std::string socket_path, HttpLimits limits = {});

  const std::string& socket_path() const { return socket_path_; }
  const HttpLimits& limits() const { return limits_; }

  // Sends `method target` with `body` (Content-Length; none when `body` is
  // empty and the method is GET, HEAD or DELETE) and reads the answer. Any
  // HTTP status is a success here: the caller looks at it.
  [[nodiscard]] absl::StatusOr<HttpResponse> Request(
      absl::string_view method, absl::string_view target,
      absl::string_view body = "",
      absl::string_view content_type = "application/json") const;

  // Same, with `limits` instead of the client's own.
  [[nodiscard]] absl::StatusOr<HttpResponse> Request(
      absl::string_view method, absl::string_view target,
      absl::string_view body, absl::string_view content_type,
      const HttpLimits& limits) const;

  // Sends a body made by `producer` with chunked transfer encoding. When
  // the engine answers before the body is complete (an early error), that
  // answer is returned.
  [[nodiscard]] absl::StatusOr<HttpResponse> RequestStreaming(
      absl::string_view method, absl::string_view target,
      absl::string_view content_type, const BodyProducer& producer,
      const HttpLimits& limits) const;

 private:
  std::string socket_path_;
  HttpLimits limits_;
};

// Lower-level pieces, public for the unit tests.

// Connects to a Unix stream socket, bounded by `deadline`.
[[nodiscard]] absl::StatusOr<int> ConnectUnix(const std::string& path,
                                              absl::Time deadline);

// Reads one HTTP/1.x response from `fd` (the request was `method`, which
// matters for HEAD). Fails on EOF before its end, on malformed framing and
// on anything beyond `limits`.
[[nodiscard]] absl::StatusOr<HttpResponse> ReadHttpResponse(
    int fd, absl::string_view method, const HttpLimits& limits,
    absl::Time deadline);

// Splits Docker's multiplexed log stream (8-byte frame headers: stream,
// 0, 0, 0, big-endian length) into the concatenated payloads. A body that
// is not such a stream (a TTY container, Podman in some versions) is
// returned as is.
[[nodiscard]] std::string DemultiplexLogs(absl::string_view body);

// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
[[nodiscard]] std::string UrlEncode(absl::string_view value);

}  // namespace corral::docker

#endif  // CORRAL_BACKENDS_DOCKER_HTTP_CLIENT_H_
