// `corral mcp --listen ADDR:PORT`: MCP's Streamable HTTP transport at
// http://ADDR:PORT/mcp. One session per initialize (MCP-Session-Id), each
// request answered as an SSE stream when the client accepts one (else as
// JSON), so that concurrent requests each get their own stream; Host and
// Origin checked against DNS rebinding; loopback addresses only, since the
// endpoint has no authentication of its own and acts as its user.
#ifndef CORRAL_CLIENT_MCP_HTTP_H_
#define CORRAL_CLIENT_MCP_HTTP_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/mcp/tools.h"

namespace corral::cli::mcp {

struct ListenAddress {
  std::string host;  // 127.0.0.1, ::1 or localhost
  int port = 0;      // 0: any free port
};

// "127.0.0.1:8080", "[::1]:8080", "localhost:0". Anything but a loopback
// address is refused.
absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& text);

// Whether a request's Host header, or its Origin header, names this
// machine's loopback (localhost, 127.0.0.1, [::1], any port): a page of
// another site that a browser was tricked into sending here names its own.
bool LoopbackHost(const std::string& host_header);
bool LoopbackOrigin(const std::string& origin_header);

// Serves until killed; prints "corral mcp: serving http://HOST:PORT/mcp"
// on stderr once it listens. Returns 125 when it cannot listen.
int ServeHttp(const std::string& socket_path, Profile profile,
              const ListenAddress& listen);

}  // namespace corral::cli::mcp

#endif  // CORRAL_CLIENT_MCP_HTTP_H_
