#include "client/shell_commands.h"

#include <unistd.h>

#include <cstdint>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "client/command_support.h"
#include "client/detach_keys.h"
#include "client/options.h"
#include "client/output.h"
#include "client/process_commands.h"
#include "client/shell_format.h"
#include "client/shell_session.h"
#include "client/terminal.h"
#include "corral/status_macros.h"
#include "corral/v1/shells.grpc.pb.h"

namespace corral::cli {

using Result = absl::StatusOr<int>;

struct ShellCommands::Flags {
  CLI::App* shell = nullptr;
  CLI::App* attach = nullptr;
  CLI::App* ps = nullptr;
  CLI::App* kill = nullptr;
  CLI::App* read = nullptr;
  CLI::App* write = nullptr;

  // Shared by the commands; each parse fills only what its command uses.
  std::string id;
  // SHELL_ID, or for attach and kill PROC (a process id or tag).
  std::string shell_id;
  std::vector<std::string> argv;
  std::string cwd;
  std::vector<std::string> env;
  std::string detach_keys = kDefaultDetachKeys;
  std::string from = "0";
  bool no_follow = false;
  // Empty: kill's default (see KillOptions).
  std::string signal;
  bool remove = false;
  uint64_t cursor = 0;
  uint32_t max_bytes = 0;
  std::string text;
  bool no_newline = false;
};

namespace {

using corral::v1::Shells;

// Unsigned options would otherwise take "-5" as a huge number.
const CLI::Validator kNotNegative(
    [](std::string& value) -> std::string {
      if (value.find('-') != std::string::npos) {
        return "must not be negative, got " + value;
      }
      return "";
    },
    "", "non-negative");

CLI::App* AddIds(CLI::App* command, ShellCommands::Flags& f) {
  command->add_option("ID", f.id, "Sandbox id")->required();
  command->add_option("SHELL_ID", f.shell_id, "Shell id (see corral ps)")
      ->required();
  return command;
}

// For the commands that take any process, shells included.
CLI::App* AddProcessIds(CLI::App* command, ShellCommands::Flags& f) {
  command->add_option("ID", f.id, "Sandbox id")->required();
  command
      ->add_option("PROC", f.shell_id,
                   "Process or shell: its id or its tag (see corral ps)")
      ->required();
  return command;
}

void AddDetachKeys(CLI::App* command, std::string& keys) {
  command->add_option(
      "--detach-keys", keys,
      "Keys that detach and leave the shell running: characters or ctrl-X, "
      "separated by commas; '' turns detaching off (default: ctrl-p,ctrl-q)");
}

Result OpenShell(Connection& connection, const ShellCommands::Flags& f) {
  // Flags first: a typo must not leave a shell behind.
  ASSIGN_OR_RETURN(const std::string detach_sequence,
                   ParseDetachKeys(f.detach_keys));
  ASSIGN_OR_RETURN(const auto env, ParseEnv(f.env, ProcessEnv()));
  corral::v1::OpenShellRequest request;
  request.set_sandbox_id(f.id);
  for (const std::string& arg : f.argv) request.add_argv(arg);
  request.set_cwd(f.cwd);
  request.mutable_env()->insert(env.begin(), env.end());
  *request.mutable_size() = LocalTerminalSize();
  ASSIGN_OR_RETURN(
      const corral::v1::Shell shell,
      UnaryCall(connection, connection.UnaryContext(), connection.shells(),
                &Shells::Stub::OpenShell, request));
  AttachTarget target;
  target.sandbox_id = f.id;
  target.shell_id = shell.shell_id();
  return AttachToShell(connection, target, detach_sequence);
}

Result Attach(Connection& connection, const ShellCommands::Flags& f) {
  AttachOptions options;
  options.sandbox_id = f.id;
  options.process = f.shell_id;
  options.from = f.from;
  options.no_follow = f.no_follow;
  options.detach_keys = f.detach_keys;
  return AttachProcess(connection, options);
}

Result Kill(Connection& connection, bool json, const ShellCommands::Flags& f) {
  KillOptions options;
  options.sandbox_id = f.id;
  options.process = f.shell_id;
  options.signal = f.signal;
  options.remove = f.remove;
  return KillProcess(connection, options, json);
}

Result ReadShell(Connection& connection, bool json,
                 const ShellCommands::Flags& f) {
  corral::v1::ReadShellRequest request;
  request.set_sandbox_id(f.id);
  request.set_shell_id(f.shell_id);
  request.set_cursor(f.cursor);
  request.set_max_bytes(f.max_bytes);
  ASSIGN_OR_RETURN(
      const corral::v1::ReadShellResponse response,
      UnaryCall(connection, connection.UnaryContext(), connection.shells(),
                &Shells::Stub::ReadShell, request));
  if (json) {
    RETURN_IF_ERROR(Print(FormatShellReadJson(response)));
    return 0;
  }
  RETURN_IF_ERROR(Print(response.output()));
  std::string notes;
  if (response.missed() > 0) {
    absl::StrAppend(&notes, "corral: ", response.missed(),
                    " bytes of output are no longer kept; read from offset ",
                    response.offset(), "\n");
  }
  absl::StrAppend(
      &notes, "corral: next cursor ", response.next_cursor(),
      response.exited() ? " (the shell exited; nothing follows)" : "", "\n");
  RETURN_IF_ERROR(WriteAll(STDERR_FILENO, notes));
  return 0;
}

Result WriteShell(Connection& connection, const ShellCommands::Flags& f) {
  corral::v1::WriteShellRequest request;
  request.set_sandbox_id(f.id);
  request.set_shell_id(f.shell_id);
  request.set_input(f.text);
  request.set_newline(!f.no_newline);
  RETURN_IF_ERROR(UnaryCall(connection, connection.UnaryContext(),
                            connection.shells(), &Shells::Stub::WriteShell,
                            request)
                      .status());
  return 0;
}

}  // namespace

ShellCommands::ShellCommands(CLI::App& app)
    : flags_(std::make_unique<Flags>()) {
  Flags& f = *flags_;

  f.shell = app.add_subcommand(
      "shell", "Open an interactive shell (a PTY) in a sandbox and attach");
  f.shell->add_option("ID", f.id, "Sandbox id")->required();
  f.shell->add_option("--cwd", f.cwd,
                      "Working directory (default: the sandbox's)");
  f.shell
      ->add_option("-e,--env", f.env,
                   "Environment variable KEY=VALUE, or KEY to pass the "
                   "client's value (repeatable)")
      ->allow_extra_args(false);
  AddDetachKeys(f.shell, f.detach_keys);
  f.shell->add_option("COMMAND", f.argv,
                      "Command and arguments (after '--'; default /bin/sh -i)");
  f.shell->footer(
      "Usage: corral shell [OPTIONS] ID [-- COMMAND [ARGS...]]\n"
      "Exit codes: the shell's own; 128+N when signal N killed it; 0 after "
      "detaching; 128+N when signal N ended corral (the shell keeps "
      "running); 125 for errors of corral itself.");

  f.attach = AddProcessIds(
      app.add_subcommand("attach",
                         "Attach to a shell again, or follow a background "
                         "process's output"),
      f);
  f.attach->add_option("--from", f.from,
                       "Replay output from OFFSET (default 0: all the ring "
                       "still holds), or 'end' for only new output");
  f.attach->add_flag("--no-follow", f.no_follow,
                     "Print the output there is now and exit, without "
                     "waiting for more");
  AddDetachKeys(f.attach, f.detach_keys);
  f.attach->footer(
      "Exit codes: the process's own (124 when its timeout killed it, "
      "128+N when signal N did); 0 after detaching (Ctrl-C for a background "
      "process, the detach keys for a shell) or with --no-follow while it "
      "runs; 128+N when signal N ended an attached shell session; 125 for "
      "errors of corral itself and processes lost without a status.");

  f.ps = app.add_subcommand(
      "ps", "List the background processes and shells of a sandbox");
  f.ps->add_option("ID", f.id, "Sandbox id")->required();

  f.kill = AddProcessIds(
      app.add_subcommand("kill", "Send a signal to a process or shell"), f);
  f.kill->add_option("SIGNAL", f.signal,
                     "TERM (default), INT, KILL, HUP, QUIT, TSTP, CONT, ... "
                     "with or without SIG, or a number");
  f.kill->add_flag("--rm", f.remove,
                   "Remove it: kill what is left of it (SIGKILL) and forget "
                   "it and its output (after SIGNAL, when one is given)");

  f.read = AddIds(app.add_subcommand(
                      "shell-read",
                      "Print a shell's output from a cursor, without waiting; "
                      "the next cursor goes to stderr"),
                  f);
  f.read
      ->add_option("--cursor", f.cursor,
                   "Output offset to read from (default 0)")
      ->check(kNotNegative);
  f.read
      ->add_option("--max", f.max_bytes,
                   "At most BYTES (default and limit 64 KiB)")
      ->check(kNotNegative);

  f.write =
      AddIds(app.add_subcommand("shell-write", "Type text into a shell"), f);
  f.write->add_option("TEXT", f.text, "What to type")->required();
  f.write->add_flag("--no-newline", f.no_newline,
                    "Do not press Enter after TEXT");
}

ShellCommands::~ShellCommands() = default;

CLI::App* ShellCommands::shell_command() const { return flags_->shell; }

std::vector<std::string>& ShellCommands::shell_argv() { return flags_->argv; }

std::optional<Result> ShellCommands::Dispatch(Connection& connection,
                                              bool json) {
  const Flags& f = *flags_;
  if (f.shell->parsed()) return OpenShell(connection, f);
  if (f.attach->parsed()) return Attach(connection, f);
  if (f.ps->parsed()) return ListProcesses(connection, f.id, json);
  if (f.kill->parsed()) return Kill(connection, json, f);
  if (f.read->parsed()) return ReadShell(connection, json, f);
  if (f.write->parsed()) return WriteShell(connection, f);
  return std::nullopt;
}

}  // namespace corral::cli
