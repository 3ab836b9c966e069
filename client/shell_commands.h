// The shell and process commands of the corral CLI (issue 4): shell,
// attach, ps, kill, shell-read and shell-write. Their flags are defined
// here; attach, ps and kill, which work on every process (shells included),
// are carried out by process_commands.h. commands.cc registers them and
// dispatches.
#ifndef CORRAL_CLIENT_SHELL_COMMANDS_H_
#define CORRAL_CLIENT_SHELL_COMMANDS_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/connection.h"

namespace CLI {
class App;
}  // namespace CLI

namespace corral::cli {

// Adds the shell commands to `app` and runs whichever was parsed. Must
// outlive the parse (CLI11 writes into it).
class ShellCommands {
 public:
  explicit ShellCommands(CLI::App& app);
  ~ShellCommands();
  ShellCommands(const ShellCommands&) = delete;
  ShellCommands& operator=(const ShellCommands&) = delete;

  // `corral shell` takes a command after "--" (or after its positionals, as
  // exec does); these let commands.cc treat it like run and exec.
  CLI::App* shell_command() const;
  std::vector<std::string>& shell_argv();

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

#endif  // CORRAL_CLIENT_SHELL_COMMANDS_H_
