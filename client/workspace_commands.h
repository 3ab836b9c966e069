// The workspace commands of the corral CLI (issue 3): seeding at create/run,
// sync, cp, export, diff, logs, snapshots, reset, fork and `file ...`. Their
// flags are defined here too; commands.cc registers them and dispatches.
#ifndef CORRAL_CLIENT_WORKSPACE_COMMANDS_H_
#define CORRAL_CLIENT_WORKSPACE_COMMANDS_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "client/connection.h"
#include "client/options.h"
#include "corral/v1/sandboxes.pb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace corral::cli {

// `corral create --seed SEED`: CreateSeededSandbox with `request` first, then
// SEED's bytes (a directory packed here, an archive file as is, "-" for
// stdin). Prints the id (or the Sandbox as JSON).
absl::StatusOr<int> CreateSeeded(
    Connection& connection, bool json,
    const corral::v1::CreateSandboxRequest& request, const std::string& seed);

// `corral run --seed SEED`: create seeded, exec the command as `corral exec`
// would (same output, exit codes, Ctrl-C), then delete the sandbox, whatever
// happened after it was created.
absl::StatusOr<int> RunSeeded(Connection& connection, bool json,
                              const corral::v1::CreateSandboxRequest& request,
                              const std::string& seed, const ExecOptions& exec);

// `corral fork ID[@SNAPSHOT]`: ForkSnapshot; `options` describe the new
// sandbox (empty runtime and image: the source's). Prints the new id.
absl::StatusOr<int> Fork(Connection& connection, bool json,
                         const std::string& source,
                         const CreateOptions& options);

// Adds sync, cp, export, diff, logs, snapshot, reset and file to `app`, and
// runs whichever was parsed. Must outlive the parse (CLI11 writes into it).
class WorkspaceCommands {
 public:
  explicit WorkspaceCommands(CLI::App& app);
  ~WorkspaceCommands();
  WorkspaceCommands(const WorkspaceCommands&) = delete;
  WorkspaceCommands& operator=(const WorkspaceCommands&) = delete;

  // The exit code of the parsed command, or nullopt when none of these was
  // parsed.
  std::optional<absl::StatusOr<int>> Dispatch(Connection& connection,
                                              bool json);

  // The parsed flags (defined in the .cc file).
  struct Flags;

 private:
  std::unique_ptr<Flags> flags_;
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_WORKSPACE_COMMANDS_H_
