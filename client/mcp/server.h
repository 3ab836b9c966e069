// The MCP server of `corral mcp`: JSON-RPC 2.0 messages of the Model Context
// Protocol (lifecycle, ping, logging, tools), independent of the transport.
// It is a client of corrald like the CLI, running as the user who started
// it, so the daemon's ownership checks apply to every tool call.
#ifndef CORRAL_CLIENT_MCP_SERVER_H_
#define CORRAL_CLIENT_MCP_SERVER_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/mcp/tools.h"
#include "nlohmann/json.hpp"

namespace corral::cli::mcp {

using Json = nlohmann::json;

// Protocol revisions spoken, newest first: a client asking for another one
// is answered with the newest.
inline constexpr const char* kProtocolVersions[] = {"2025-11-25", "2025-06-18",
                                                    "2025-03-26"};
bool SupportedProtocolVersion(const std::string& version);

// JSON-RPC error codes.
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;

Json ErrorMessage(const Json& id, int code, const std::string& message);

class McpServer {
 public:
  // `profile`: run, workspace or full (ProfileByName).
  McpServer(std::string socket_path, Profile profile);

  // Handles one message from the client: the response to a request, or
  // nullopt for a notification or a response. Thread-safe: requests may be
  // handled at the same time (a long exec does not hold up a ping).
  std::optional<Json> Handle(const Json& message);

  // The revision agreed by initialize ("" before it).
  std::string protocol_version() const;
  bool initialized() const;

 private:
  Json Initialize(const Json& params);
  Json ListTools() const;
  // A tool's result; a failure of the tool (bad arguments, corrald's
  // error) is a result with isError, not a JSON-RPC error.
  Json CallTool(const Tool& tool, const Json& arguments);
  std::shared_ptr<Connection> connection();
  void ForgetConnection(const std::shared_ptr<Connection>& broken);

  const std::string socket_path_;
  const Profile profile_;
  std::vector<Tool> tools_;
  mutable std::mutex mutex_;
  std::string protocol_version_;
  bool initialized_ = false;
  std::string log_level_ = "info";
  std::shared_ptr<Connection> connection_;
};

}  // namespace corral::cli::mcp

#endif  // CORRAL_CLIENT_MCP_SERVER_H_
