// The tools `corral mcp` offers, each a call (or a few) of corrald's gRPC
// API with a description a model can act on and a JSON Schema for its
// input. Which tools a session sees depends on its profile.
#ifndef CORRAL_CLIENT_MCP_TOOLS_H_
#define CORRAL_CLIENT_MCP_TOOLS_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/connection.h"
#include "nlohmann/json.hpp"

namespace corral::cli::mcp {

// run: one-shot commands in fresh sandboxes. workspace (the default): also
// persistent workspaces, their files, diffs and snapshots. full: also
// shells and services.
enum class Profile { kRun = 1, kWorkspace = 2, kFull = 3 };
std::optional<Profile> ProfileByName(const std::string& name);

struct ToolResult {
  std::string text;  // for the model
  nlohmann::json structured = nlohmann::json::object();
  bool error = false;  // the tool ran and failed (a command's own
                       // failure is not one: its exit code says so)
};

struct Tool {
  std::string name;
  std::string title;
  std::string description;
  nlohmann::json input_schema;
  Profile profile = Profile::kRun;  // the smallest profile that has it
  bool read_only = false;
  bool destructive = false;
  bool idempotent = false;
  // Called with arguments already checked against input_schema. An error
  // status becomes a tool error with its message.
  std::function<absl::StatusOr<ToolResult>(Connection&, const nlohmann::json&)>
      call;
};

// Every tool, in the order tools/list gives them.
std::vector<Tool> AllTools();

// Checks `arguments` against the subset of JSON Schema the tools use:
// object, properties, required, additionalProperties (false or a schema),
// type (string, integer, boolean, array, object), enum, minimum, maximum,
// maxLength and items. The message names the argument and what was
// expected.
absl::Status CheckArguments(const nlohmann::json& schema,
                            const nlohmann::json& arguments);

}  // namespace corral::cli::mcp

#endif  // CORRAL_CLIENT_MCP_TOOLS_H_
