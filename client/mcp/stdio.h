// `corral mcp` over stdio: one JSON-RPC message per line on stdin and
// stdout (MCP's stdio transport); nothing else is written to stdout.
#ifndef CORRAL_CLIENT_MCP_STDIO_H_
#define CORRAL_CLIENT_MCP_STDIO_H_

#include "client/mcp/server.h"

namespace corral::cli::mcp {

// Largest message read; a longer line is answered with an error and
// skipped.
inline constexpr size_t kMaxMessageBytes = 64 << 20;

// Serves `server` until stdin ends and every request has been answered.
// Requests run concurrently, each on a thread of its own.
int ServeStdio(McpServer& server, int in_fd, int out_fd);

}  // namespace corral::cli::mcp

#endif  // CORRAL_CLIENT_MCP_STDIO_H_
