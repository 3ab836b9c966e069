#include "client/mcp/server.h"

#include <algorithm>
#include <exception>

#include "absl/strings/str_cat.h"
#include "client/commands.h"

namespace corral::cli::mcp {
namespace {

constexpr const char* kLogLevels[] = {"debug",   "info",     "notice",
                                      "warning", "error",    "critical",
                                      "alert",   "emergency"};

constexpr char kInstructions[] =
    "Corral runs commands in isolated sandboxes on this machine. For a "
    "one-off command use sandbox_run. For real work create a workspace "
    "(workspace_create, optionally seeded from a host directory), then "
    "exec, read and write files, diff, snapshot and reset it; delete it "
    "when done. Sandboxes have no network unless created with one.";

Json Result(const Json& id, Json result) {
  return Json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

}  // namespace

bool SupportedProtocolVersion(const std::string& version) {
  return std::find(std::begin(kProtocolVersions), std::end(kProtocolVersions),
                   version) != std::end(kProtocolVersions);
}

Json ErrorMessage(const Json& id, int code, const std::string& message) {
  return Json{{"jsonrpc", "2.0"},
              {"id", id},
              {"error", {{"code", code}, {"message", message}}}};
}

McpServer::McpServer(std::string socket_path, Profile profile)
    : socket_path_(std::move(socket_path)), profile_(profile) {
  for (Tool& tool : AllTools()) {
    if (static_cast<int>(tool.profile) <= static_cast<int>(profile_)) {
      tools_.push_back(std::move(tool));
    }
  }
}

std::string McpServer::protocol_version() const {
  std::lock_guard lock(mutex_);
  return protocol_version_;
}

bool McpServer::initialized() const {
  std::lock_guard lock(mutex_);
  return initialized_;
}

std::optional<Json> McpServer::Handle(const Json& message) {
  if (!message.is_object()) {
    return ErrorMessage(nullptr, kInvalidRequest,
                        "a message must be a JSON object");
  }
  const auto method = message.find("method");
  const auto id = message.find("id");
  if (method == message.end()) {
    // A response to a request of ours (there are none) or garbage.
    if (id != message.end() &&
        (message.contains("result") || message.contains("error"))) {
      return std::nullopt;
    }
    return ErrorMessage(id != message.end() ? *id : Json(nullptr),
                        kInvalidRequest, "a request needs a method");
  }
  const bool is_request = id != message.end();
  if (message.value("jsonrpc", "") != "2.0" || !method->is_string() ||
      (is_request && !id->is_string() && !id->is_number_integer())) {
    if (!is_request) return std::nullopt;
    return ErrorMessage(
        id->is_string() || id->is_number_integer() ? *id : Json(nullptr),
        kInvalidRequest,
        "not a JSON-RPC 2.0 request: jsonrpc must be \"2.0\", method a "
        "string and id a string or an integer");
  }
  const std::string name = method->get<std::string>();
  if (!is_request) return std::nullopt;  // notifications need no answer
  const Json params = message.value("params", Json::object());
  if (!params.is_object()) {
    return ErrorMessage(*id, kInvalidParams, "params must be an object");
  }
  if (name == "ping") return Result(*id, Json::object());
  if (name == "initialize") {
    if (!params.contains("protocolVersion") ||
        !params["protocolVersion"].is_string()) {
      return ErrorMessage(*id, kInvalidParams,
                          "initialize needs params.protocolVersion");
    }
    return Result(*id, Initialize(params));
  }
  if (!initialized()) {
    return ErrorMessage(*id, kInvalidRequest,
                        "the session is not initialized: send initialize "
                        "first");
  }
  if (name == "logging/setLevel") {
    const std::string level = params.value("level", "");
    if (std::find(std::begin(kLogLevels), std::end(kLogLevels), level) ==
        std::end(kLogLevels)) {
      return ErrorMessage(*id, kInvalidParams,
                          "level must be one of debug, info, notice, "
                          "warning, error, critical, alert, emergency");
    }
    std::lock_guard lock(mutex_);
    log_level_ = level;
    return Result(*id, Json::object());
  }
  if (name == "tools/list") return Result(*id, ListTools());
  if (name == "tools/call") {
    if (!params.contains("name") || !params["name"].is_string()) {
      return ErrorMessage(*id, kInvalidParams, "tools/call needs params.name");
    }
    const std::string tool_name = params["name"].get<std::string>();
    const auto tool =
        std::find_if(tools_.begin(), tools_.end(),
                     [&](const Tool& t) { return t.name == tool_name; });
    if (tool == tools_.end()) {
      return ErrorMessage(
          *id, kInvalidParams,
          absl::StrCat("unknown tool '", tool_name.substr(0, 128),
                       "' (tools/list gives those of this profile)"));
    }
    const Json arguments = params.value("arguments", Json::object());
    return Result(*id, CallTool(*tool, arguments));
  }
  return ErrorMessage(*id, kMethodNotFound,
                      absl::StrCat("method '", name.substr(0, 128),
                                   "' is not served here (tools only)"));
}

Json McpServer::Initialize(const Json& params) {
  const std::string asked = params["protocolVersion"].get<std::string>();
  const std::string agreed =
      SupportedProtocolVersion(asked) ? asked : kProtocolVersions[0];
  {
    std::lock_guard lock(mutex_);
    protocol_version_ = agreed;
    initialized_ = true;
  }
  return Json{
      {"protocolVersion", agreed},
      {"capabilities",
       {{"tools", {{"listChanged", false}}}, {"logging", Json::object()}}},
      {"serverInfo",
       {{"name", "corral"},
        {"title", "Corral sandboxes"},
        {"version", ClientVersion()}}},
      {"instructions", kInstructions}};
}

Json McpServer::ListTools() const {
  Json tools = Json::array();
  for (const Tool& tool : tools_) {
    tools.push_back({{"name", tool.name},
                     {"title", tool.title},
                     {"description", tool.description},
                     {"inputSchema", tool.input_schema},
                     {"annotations",
                      {{"title", tool.title},
                       {"readOnlyHint", tool.read_only},
                       {"destructiveHint", tool.destructive},
                       {"idempotentHint", tool.idempotent},
                       {"openWorldHint", false}}}});
  }
  return Json{{"tools", std::move(tools)}};
}

Json McpServer::CallTool(const Tool& tool, const Json& arguments) {
  auto failed = [](const std::string& text) {
    return Json{{"content", Json::array({{{"type", "text"}, {"text", text}}})},
                {"isError", true}};
  };
  if (auto s = CheckArguments(tool.input_schema, arguments); !s.ok()) {
    return failed(
        absl::StrCat("invalid arguments for ", tool.name, ": ", s.message()));
  }
  std::shared_ptr<Connection> connection = this->connection();
  absl::StatusOr<ToolResult> result = absl::InternalError("not run");
  try {
    result = tool.call(*connection, arguments);
  } catch (const std::exception& e) {
    result = absl::InternalError(e.what());
  }
  if (!result.ok()) {
    if (absl::IsUnavailable(result.status())) ForgetConnection(connection);
    return failed(std::string(result.status().message()));
  }
  Json answer = {
      {"content", Json::array({{{"type", "text"}, {"text", result->text}}})},
      {"isError", result->error}};
  if (result->structured.is_object() && !result->structured.empty()) {
    answer["structuredContent"] = std::move(result->structured);
  }
  return answer;
}

std::shared_ptr<Connection> McpServer::connection() {
  std::lock_guard lock(mutex_);
  if (!connection_) connection_ = std::make_shared<Connection>(socket_path_);
  return connection_;
}

void McpServer::ForgetConnection(const std::shared_ptr<Connection>& broken) {
  // A connection that could not reach the daemon stays failed; the next
  // call makes a new one, so a restarted daemon is found again.
  std::lock_guard lock(mutex_);
  if (connection_ == broken) connection_.reset();
}

}  // namespace corral::cli::mcp
