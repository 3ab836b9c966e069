#include "client/commands.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "client/command_support.h"
#include "client/connection.h"
#include "client/exec_session.h"
#include "client/exit_status.h"
#include "client/format.h"
#include "client/net_commands.h"
#include "client/options.h"
#include "client/output.h"
#include "client/process_commands.h"
#include "client/shell_commands.h"
#include "client/tar_packer.h"
#include "client/transfer.h"
#include "client/workspace_commands.h"
#include "corral/platform.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

#ifndef CORRAL_VERSION
#define CORRAL_VERSION "0.0.0-unknown"
#endif

namespace corral::cli {
namespace {

using Result = absl::StatusOr<int>;

struct GlobalOptions {
  std::string socket;
  bool json = false;
};

// Rejects negative numbers with a short message; CLI11's own range checks
// print the whole double range. Unsigned fields would otherwise wrap "-5".
const CLI::Validator kNonNegative(
    [](std::string& value) -> std::string {
      const size_t first = value.find_first_not_of(' ');
      if (first != std::string::npos && value[first] == '-') {
        return "must not be negative, got " + value;
      }
      return "";
    },
    "", "non-negative");

// Each vector option takes one value per occurrence (`-e A=1 -e B=2`), so
// that `corral run -e A=1 ls` does not swallow "ls" as a second value.
CLI::Option* Repeatable(CLI::Option* option) {
  return option->allow_extra_args(false);
}

// --- the commands ---------------------------------------------------------

Result Version(Connection& connection, const GlobalOptions& global) {
  corral::v1::GetVersionResponse response;
  auto context = connection.UnaryContext();
  const grpc::Status status = connection.system().GetVersion(
      context.get(), corral::v1::GetVersionRequest(), &response);
  if (!status.ok()) {
    // The client's own version is still worth printing.
    if (!global.json) {
      RETURN_IF_ERROR(Print(absl::StrCat("Client:  ", ClientVersion(), "\n")));
    }
    return connection.CallError(status);
  }
  if (global.json) {
    ASSIGN_OR_RETURN(std::string daemon, ToJson(response));
    daemon.pop_back();  // its newline
    RETURN_IF_ERROR(
        Print(absl::StrCat("{\"client\":", JsonString(ClientVersion()),
                           ",\"daemon\":", daemon, "}\n")));
  } else {
    RETURN_IF_ERROR(Print(FormatVersion(ClientVersion(), response)));
  }
  return 0;
}

Result Runtimes(Connection& connection, const GlobalOptions& global) {
  corral::v1::ListRuntimesResponse response;
  auto context = connection.UnaryContext();
  const grpc::Status status = connection.system().ListRuntimes(
      context.get(), corral::v1::ListRuntimesRequest(), &response);
  if (!status.ok()) return connection.CallError(status);
  RETURN_IF_ERROR(global.json ? PrintMessage(response)
                              : Print(FormatRuntimes(response)));
  return 0;
}

Result Doctor(Connection& connection, const GlobalOptions& global) {
  std::vector<DoctorCheck> checks;
  bool healthy = false;
  const std::optional<std::string> unreachable =
      ProbeSocket(connection.socket_path());
  checks.push_back({!unreachable,
                    absl::StrCat("socket ", connection.socket_path()),
                    unreachable ? *unreachable : "reachable"});
  if (!unreachable) {
    corral::v1::GetVersionResponse version;
    auto context = connection.UnaryContext();
    grpc::Status status = connection.system().GetVersion(
        context.get(), corral::v1::GetVersionRequest(), &version);
    checks.push_back(
        {status.ok(), "daemon",
         status.ok() ? absl::StrCat("corrald ", version.version(), ", API ",
                                    version.api_version(), ", agent protocol ",
                                    version.agent_protocol_version(),
                                    ", kernel ", version.host_kernel())
                     : std::string(connection.CallError(status).message())});

    corral::v1::GetHealthResponse health;
    context = connection.UnaryContext();
    status = connection.system().GetHealth(
        context.get(), corral::v1::GetHealthRequest(), &health);
    std::string detail;
    if (!status.ok()) {
      detail = std::string(connection.CallError(status).message());
    } else {
      std::map<std::string, uint32_t> counts(
          health.sandboxes_by_state().begin(),
          health.sandboxes_by_state().end());
      detail = absl::StrCat(
          health.serving() ? "serving" : "NOT serving", "; sandboxes: ",
          counts.empty()
              ? "none"
              : absl::StrJoin(counts, ", ", absl::PairFormatter("=")));
    }
    checks.push_back({status.ok() && health.serving(), "store", detail});

    corral::v1::ListRuntimesResponse runtimes;
    context = connection.UnaryContext();
    status = connection.system().ListRuntimes(
        context.get(), corral::v1::ListRuntimesRequest(), &runtimes);
    if (!status.ok()) {
      checks.push_back({false, "runtimes",
                        std::string(connection.CallError(status).message())});
    } else {
      for (DoctorCheck& check : RuntimeChecks(runtimes)) {
        checks.push_back(std::move(check));
      }
      healthy = DefaultRuntimeAvailable(runtimes);
      if (!healthy) {
        checks.push_back({false, "default runtime",
                          "no available runtime is marked default"});
      }
    }
  }
  RETURN_IF_ERROR(Print(global.json ? FormatDoctorJson(checks, healthy)
                                    : FormatDoctor(checks)));
  return healthy ? 0 : 1;
}

Result ImageList(Connection& connection, const GlobalOptions& global) {
  corral::v1::ListImagesResponse response;
  auto context = connection.UnaryContext();
  const grpc::Status status = connection.images().ListImages(
      context.get(), corral::v1::ListImagesRequest(), &response);
  if (!status.ok()) return connection.CallError(status);
  RETURN_IF_ERROR(global.json ? PrintMessage(response)
                              : Print(FormatImages(response, NowSeconds())));
  return 0;
}

Result ImageInspect(Connection& connection, const GlobalOptions& global,
                    const std::string& name) {
  corral::v1::GetImageRequest request;
  request.set_name(name);
  corral::v1::Image image;
  auto context = connection.UnaryContext();
  const grpc::Status status =
      connection.images().GetImage(context.get(), request, &image);
  if (!status.ok()) return connection.CallError(status);
  RETURN_IF_ERROR(global.json ? PrintMessage(image)
                              : Print(FormatImage(image, NowSeconds())));
  return 0;
}

Result ImageImport(Connection& connection, const GlobalOptions& global,
                   const ImportOptions& options) {
  // Decide what the source is before talking to the daemon, so a typo in the
  // path fails without opening an upload.
  ASSIGN_OR_RETURN(UploadSource source,
                   UploadSource::Open(options.source, true));
  ASSIGN_OR_RETURN(corral::v1::ImportImageMetadata metadata,
                   BuildImportMetadata(options, source.is_directory()));

  // No deadline: an image can take long to upload; Ctrl-C ends it.
  corral::v1::ImportImageRequest first;
  *first.mutable_metadata() = std::move(metadata);
  ASSIGN_OR_RETURN(
      const corral::v1::Image image,
      Upload(connection, connection.images(),
             &corral::v1::Images::Stub::ImportImage, first, source, false));
  if (global.json) {
    RETURN_IF_ERROR(PrintMessage(image));
  } else {
    RETURN_IF_ERROR(Print(absl::StrCat(image.name(), "\n")));
  }
  return 0;
}

Result ImageRemove(Connection& connection, const GlobalOptions& global,
                   const std::vector<std::string>& names) {
  int failures = 0;
  for (const std::string& name : names) {
    corral::v1::DeleteImageRequest request;
    request.set_name(name);
    corral::v1::DeleteImageResponse response;
    auto context = connection.UnaryContext();
    const grpc::Status status =
        connection.images().DeleteImage(context.get(), request, &response);
    if (!status.ok()) {
      ++failures;
      (void)WriteAll(
          STDERR_FILENO,
          absl::StrCat("corral: ", name, ": ",
                       connection.CallError(status).message(), "\n"));
      continue;
    }
    RETURN_IF_ERROR(Print(absl::StrCat(name, "\n")));
  }
  return failures == 0 ? 0 : kExitCorralError;
}

Result Create(Connection& connection, const GlobalOptions& global,
              const CreateOptions& options) {
  RETURN_IF_ERROR(ValidateCreateOnly(options));
  ASSIGN_OR_RETURN(const corral::v1::CreateSandboxRequest request,
                   BuildCreateRequest(options));
  if (!options.seed.empty()) {
    return CreateSeeded(connection, global.json, request, options.seed);
  }
  corral::v1::Sandbox sandbox;
  auto context = connection.UnaryContext();
  const grpc::Status status =
      connection.sandboxes().CreateSandbox(context.get(), request, &sandbox);
  if (!status.ok()) return connection.CallError(status);
  RETURN_IF_ERROR(PrintSandboxId(sandbox, global.json));
  return 0;
}

Result Run(Connection& connection, const GlobalOptions& global,
           const CreateOptions& create, const ExecOptions& exec) {
  ASSIGN_OR_RETURN(const corral::v1::RunStart start,
                   BuildRunStart(create, exec));
  if (!create.seed.empty()) {
    // Run has no way to carry a seed: create seeded, exec, delete.
    return RunSeeded(connection, global.json, start.sandbox(), create.seed,
                     exec);
  }
  return RunCommand(
      connection, start,
      {.json = global.json, .timeout_seconds = exec.timeout_seconds});
}

// `exec -d`: the command runs in the background, detached from corral.
struct DetachOptions {
  bool detach = false;
  std::string tag;
  // --ready-*: StartProcess waits until the process is ready.
  std::string ready_path, ready_url, ready_command;
  uint32_t ready_port = 0;
  uint32_t ready_timeout = 0;
};

Result Exec(Connection& connection, const GlobalOptions& global,
            const std::string& id, const ExecOptions& exec,
            const DetachOptions& detach) {
  const int checks = !detach.ready_path.empty() + (detach.ready_port != 0) +
                     !detach.ready_url.empty() + !detach.ready_command.empty();
  if (checks > 1) {
    return absl::InvalidArgumentError(
        "give one of --ready-path, --ready-port, --ready-url and "
        "--ready-cmd");
  }
  if ((checks > 0 || detach.ready_timeout != 0) && !detach.detach) {
    return absl::InvalidArgumentError(
        "--ready-* waits for a background process: give -d too");
  }
  if (detach.detach) {
    ASSIGN_OR_RETURN(corral::v1::StartProcessRequest request,
                     BuildStartProcessRequest(exec, id, detach.tag));
    if (checks > 0) {
      corral::v1::ReadinessCheck* ready = request.mutable_ready();
      if (!detach.ready_path.empty()) ready->set_path(detach.ready_path);
      if (detach.ready_port != 0) ready->set_tcp_port(detach.ready_port);
      if (!detach.ready_url.empty()) ready->set_http_url(detach.ready_url);
      if (!detach.ready_command.empty()) {
        ready->set_command(detach.ready_command);
      }
      ready->set_timeout_seconds(detach.ready_timeout);
    } else if (detach.ready_timeout != 0) {
      return absl::InvalidArgumentError(
          "--ready-timeout goes with one of the --ready-* checks");
    }
    return StartProcess(connection, request, global.json);
  }
  if (!detach.tag.empty()) {
    return absl::InvalidArgumentError(
        "--tag names a background process: give -d too");
  }
  ASSIGN_OR_RETURN(const corral::v1::ExecStart start, BuildExecStart(exec, id));
  return ExecCommand(
      connection, start,
      {.json = global.json, .timeout_seconds = exec.timeout_seconds});
}

Result List(Connection& connection, const GlobalOptions& global,
            const ListOptions& options) {
  ASSIGN_OR_RETURN(const corral::v1::ListSandboxesRequest request,
                   BuildListRequest(options));
  corral::v1::ListSandboxesResponse response;
  auto context = connection.UnaryContext();
  const grpc::Status status =
      connection.sandboxes().ListSandboxes(context.get(), request, &response);
  if (!status.ok()) return connection.CallError(status);
  RETURN_IF_ERROR(global.json ? PrintMessage(response)
                              : Print(FormatSandboxes(response, NowSeconds())));
  return 0;
}

// `inspect`, or with `ports_only` `port`: the published ports, a line each
// (with --json the PortMapping messages, a line each).
Result Inspect(Connection& connection, const GlobalOptions& global,
               const std::string& id, bool ports_only = false) {
  corral::v1::GetSandboxRequest request;
  request.set_id(id);
  corral::v1::Sandbox sandbox;
  auto context = connection.UnaryContext();
  const grpc::Status status =
      connection.sandboxes().GetSandbox(context.get(), request, &sandbox);
  if (!status.ok()) return connection.CallError(status);
  if (ports_only) {
    if (!global.json) RETURN_IF_ERROR(Print(FormatPorts(sandbox, true)));
    for (const auto& port : sandbox.ports()) {
      if (global.json) RETURN_IF_ERROR(PrintMessage(port));
    }
    return 0;
  }
  RETURN_IF_ERROR(global.json ? PrintMessage(sandbox)
                              : Print(FormatSandbox(sandbox, NowSeconds())));
  return 0;
}

// Removes every id it can; each failure is reported and makes the exit 125.
Result Remove(Connection& connection, const GlobalOptions& global,
              const std::vector<std::string>& ids) {
  int failures = 0;
  std::vector<std::string> removed;
  for (const std::string& id : ids) {
    corral::v1::DeleteSandboxRequest request;
    request.set_id(id);
    corral::v1::DeleteSandboxResponse response;
    auto context = connection.UnaryContext();
    const grpc::Status status =
        connection.sandboxes().DeleteSandbox(context.get(), request, &response);
    if (!status.ok()) {
      ++failures;
      (void)WriteAll(
          STDERR_FILENO,
          absl::StrCat("corral: ", id, ": ",
                       connection.CallError(status).message(), "\n"));
      continue;
    }
    removed.push_back(id);
    if (!global.json) RETURN_IF_ERROR(Print(absl::StrCat(id, "\n")));
  }
  if (global.json) {
    std::vector<std::string> quoted;
    for (const std::string& id : removed) quoted.push_back(JsonString(id));
    RETURN_IF_ERROR(Print(
        absl::StrCat("{\"removed\":[", absl::StrJoin(quoted, ","), "]}\n")));
  }
  return failures == 0 ? 0 : kExitCorralError;
}

Result Extend(Connection& connection, const GlobalOptions& global,
              const std::string& id, uint64_t ttl_seconds) {
  corral::v1::ExtendSandboxRequest request;
  request.set_id(id);
  request.set_ttl_seconds(ttl_seconds);
  corral::v1::Sandbox sandbox;
  auto context = connection.UnaryContext();
  const grpc::Status status =
      connection.sandboxes().ExtendSandbox(context.get(), request, &sandbox);
  if (!status.ok()) return connection.CallError(status);
  if (global.json) {
    RETURN_IF_ERROR(PrintMessage(sandbox));
  } else {
    RETURN_IF_ERROR(Print(absl::StrCat(
        sandbox.id(), " expires ", FormatTimestamp(sandbox.expires_at()), " (",
        FormatRelative(sandbox.expires_at().seconds() - NowSeconds()), ")\n")));
  }
  return 0;
}

Result ChangePause(Connection& connection, const GlobalOptions& global,
                   const std::string& id, bool pause) {
  corral::v1::Sandbox sandbox;
  auto context = connection.UnaryContext();
  grpc::Status status;
  if (pause) {
    corral::v1::PauseSandboxRequest request;
    request.set_id(id);
    status =
        connection.sandboxes().PauseSandbox(context.get(), request, &sandbox);
  } else {
    corral::v1::ResumeSandboxRequest request;
    request.set_id(id);
    status =
        connection.sandboxes().ResumeSandbox(context.get(), request, &sandbox);
  }
  if (!status.ok()) return connection.CallError(status);
  RETURN_IF_ERROR(
      global.json ? PrintMessage(sandbox)
                  : Print(absl::StrCat(sandbox.id(), " ",
                                       pause ? "paused" : "running", "\n")));
  return 0;
}

// --- flag definitions -----------------------------------------------------

void AddCreateFlags(CLI::App* command, CreateOptions& options) {
  command->add_option("--runtime", options.runtime,
                      "Runtime to use (see 'corral runtimes'); default: "
                      "your default runtime");
  command->add_option("--image", options.image,
                      "Image to boot (see 'corral image ls'); default: host");
  command
      ->add_option("--cpus", options.cpus,
                   "CPU quota in CPUs, fractions allowed (0.5 = half a CPU)")
      ->check(kNonNegative);
  command->add_option("--memory", options.memory_mib, "Memory limit in MiB")
      ->check(kNonNegative);
  command
      ->add_option("--pids", options.pids,
                   "Maximum number of processes and threads")
      ->check(kNonNegative);
  command
      ->add_option("--disk", options.disk_mib,
                   "Size limit of the workspace in MiB")
      ->check(kNonNegative);
  command
      ->add_option("--ttl", options.ttl_seconds,
                   "Lifetime of the sandbox in seconds; it is destroyed when "
                   "it expires")
      ->check(kNonNegative);
  command
      ->add_option("--idle-timeout", options.idle_timeout_seconds,
                   "Destroy the sandbox after this many seconds without "
                   "activity (no command running, no call on it); 0: never")
      ->check(kNonNegative);
  Repeatable(command->add_option(
      "-e,--env", options.env,
      "Environment variable KEY=VALUE, or KEY to pass the client's value "
      "(repeatable)"));
  command->add_option("--workdir", options.workdir,
                      "Working directory of commands (default: /workspace)");
  Repeatable(command->add_option("--label", options.labels,
                                 "Label KEY=VALUE (repeatable)"));
  command->add_option(
      "--network", options.network,
      "Network: 'none' (loopback only, the default), 'egress' (public "
      "addresses through the daemon's audited egress proxy) or 'learn' "
      "(egress, recorded for `corral net suggest`)");
  Repeatable(command->add_option(
      "--allow-domain", options.allow_domains,
      "Egress only to NAME (or *.NAME for every name below it); implies "
      "--network egress (repeatable, or comma-separated)"));
  Repeatable(command->add_option(
      "-p,--publish", options.publish,
      "Publish the sandbox's port on the host: [ADDRESS:]HOST_PORT:PORT, or "
      "PORT for any free host port; ADDRESS defaults to 127.0.0.1 "
      "(repeatable; works with --network none, inbound only)"));
  Repeatable(command->add_option(
      "--secret", options.secrets,
      "Give the sandbox a placeholder in variable NAME instead of the "
      "secret in FILE; the egress proxy puts the value into the request "
      "headers of HTTP and HTTPS to the --secret-host hosts only (HTTPS "
      "through a CA of the sandbox's own, in $SSL_CERT_FILE)"));
  Repeatable(
      command->add_option("--secret-host", options.secret_hosts,
                          "Bind secret NAME to HOST (or *.HOST) (repeatable)"));
  Repeatable(command->add_option(
      "--allow-cidr", options.allow_cidrs,
      "Egress only to public range CIDR, optionally :PORT; implies "
      "--network egress (repeatable, or comma-separated)"));
  command->add_option("--hostname", options.hostname,
                      "Hostname inside the sandbox");
  command->add_flag(
      "--no-userns", options.no_userns,
      "linux runtime: no user namespace (root inside is root on the host, "
      "with every capability dropped)");
  Repeatable(command->add_option(
      "--require", options.require,
      absl::StrCat("Guarantee the runtime must enforce, else creation fails "
                   "(repeatable): ",
                   absl::StrJoin(GuaranteeNames(), ", "))));
  command->add_option("--seed", options.seed,
                      "Start /workspace from DIR (packed here) or TAR (plain, "
                      "gzip, xz or zstd; - for stdin)");
}

void AddExecFlags(CLI::App* command, ExecOptions& options) {
  command->add_option("--sh", options.shell,
                      "Run CMDLINE with /bin/sh -c instead of a command "
                      "after '--'");
  command->add_flag("-i,--interactive", options.interactive,
                    "Forward corral's stdin to the command (else it gets an "
                    "empty stdin)");
  command
      ->add_option("--output-limit", options.output_limit_bytes,
                   "Keep at most BYTES of stdout and of stderr each")
      ->check(kNonNegative);
}

constexpr char kExitCodesFooter[] =
    "Exit codes: the command's own; 128+N when signal N ended it; 124 when "
    "--timeout killed it; 137 when it ran out of memory; 126/127 when it "
    "could not be started; 130 when abandoned with Ctrl-C; 125 for errors of "
    "corral itself.";

// CLI11 messages can span lines; the contract is one line on stderr.
std::string OneLine(absl::string_view message) {
  std::string line = absl::StrReplaceAll(message, {{"\n", " "}});
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

int Fail(absl::string_view message) {
  (void)WriteAll(STDERR_FILENO,
                 absl::StrCat("corral: ", OneLine(message), "\n"));
  return kExitCorralError;
}

// Names the value of each option in help ("--ttl SECONDS" rather than CLI11's
// "--ttl UINT:NONNEGATIVE"), for every subcommand at once.
void NameOptionValues(CLI::App* app) {
  static const std::map<std::string, std::string> kValueNames = {
      {"cpus", "N"},
      {"cursor", "N"},
      {"cwd", "DIR"},
      {"detach-keys", "KEYS"},
      {"from", "OFFSET|end"},
      {"max", "BYTES"},
      {"disk", "MIB"},
      {"after", "SEQ"},
      {"env", "KEY=VALUE"},
      {"hostname", "NAME"},
      {"image", "NAME"},
      {"label", "KEY=VALUE"},
      {"max-bytes", "BYTES"},
      {"max-entries", "N"},
      {"memory", "MIB"},
      {"mode", "MODE"},
      {"network", "none|egress|learn"},
      {"allow-domain", "NAME"},
      {"allow-cidr", "CIDR[:PORT]"},
      {"publish", "[ADDRESS:]HOST_PORT:PORT"},
      {"secret", "NAME=@FILE"},
      {"secret-host", "NAME=HOST"},
      {"output-limit", "BYTES"},
      {"pids", "N"},
      {"require", "GUARANTEE"},
      {"runtime", "NAME"},
      {"seed", "DIR|TAR"},
      {"sh", "CMDLINE"},
      {"snapshot", "NAME"},
      {"socket", "PATH"},
      {"state", "STATE"},
      {"tag", "TAG"},
      {"timeout", "SECONDS"},
      {"to", "SNAPSHOT"},
      {"ttl", "SECONDS"},
      {"workdir", "PATH"}};
  for (CLI::Option* option : app->get_options()) {
    for (const std::string& name : option->get_lnames()) {
      auto it = kValueNames.find(name);
      if (it != kValueNames.end()) option->option_text(it->second);
    }
  }
  for (CLI::App* sub : app->get_subcommands({})) NameOptionValues(sub);
}

// CLI11 prints help through std::cout; flush it before anything else writes
// to fd 1 directly.
int PrintHelp(CLI::App& app, const CLI::Error& error) {
  const int code = app.exit(error);
  std::cout.flush();
  return code;
}

// A front door (corral-mcp, corral-e2b), from corral's own directory, in
// this process, with `args` after its name.
int ExecFrontDoor(const std::string& program, std::vector<std::string> args) {
  const std::filesystem::path self = corral::platform::ExecutablePath();
  const std::string server = (self.parent_path() / program).string();
  args.insert(args.begin(), server);
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  ::execv(server.c_str(), argv.data());
  return Fail(
      absl::StrCat("cannot start ", server, ": ", std::strerror(errno)));
}

// `corral mcp`: corral-mcp.
int ExecMcpServer(const std::string& socket, const std::string& profile,
                  const std::string& listen) {
  std::vector<std::string> args = {"--socket", socket, "--profile", profile};
  if (!listen.empty()) {
    args.push_back("--listen");
    args.push_back(listen);
  }
  return ExecFrontDoor("corral-mcp", std::move(args));
}

}  // namespace

const char* ClientVersion() { return CORRAL_VERSION; }

SplitArguments SplitAtSeparator(const std::vector<std::string>& args) {
  SplitArguments split;
  const auto separator = std::find(args.begin(), args.end(), "--");
  split.options.assign(args.begin(), separator);
  if (separator != args.end()) {
    split.has_separator = true;
    split.command.assign(separator + 1, args.end());
  }
  return split;
}

int RunCli(const std::vector<std::string>& args) {
  // A closed stdout (`corral run ... | head`) must not kill corral before it
  // reports the command's exit code.
  ::signal(SIGPIPE, SIG_IGN);

  CLI::App app(
      "corral: run untrusted code in isolated sandboxes managed by corrald.",
      "corral");
  app.set_version_flag("--version", absl::StrCat("corral ", ClientVersion()),
                       "Print the client's version and exit");
  app.require_subcommand(1);
  // Global flags also work after the subcommand: `corral ls --json`.
  app.fallthrough();
  app.footer(
      "Run 'corral COMMAND --help' for a command's flags. Errors of corral "
      "itself exit with 125.");

  GlobalOptions global;
  app.add_option("--socket", global.socket,
                 absl::StrCat("corrald's socket (default: $CORRAL_SOCKET, "
                              "else ",
                              kDefaultSocket, ")"));
  app.add_flag("--json", global.json, "Machine-readable output (JSON)");

  app.add_subcommand("version", "Show the client's and the daemon's versions");
  app.add_subcommand("runtimes",
                     "List runtimes: availability, default, guarantees");
  app.add_subcommand("doctor", "Check the daemon, its store and its runtimes")
      ->footer(
          "Exits 0 when the daemon is reachable and the default runtime is "
          "available, 1 otherwise.");

  // image ...
  CLI::App* image =
      app.add_subcommand("image", "Manage images (root filesystems)");
  image->require_subcommand(1);
  image->add_subcommand("ls", "List images");
  std::string image_name;
  image->add_subcommand("inspect", "Show one image")
      ->add_option("NAME", image_name, "Image name")
      ->required();
  ImportOptions import_options;
  CLI::App* image_import =
      image->add_subcommand("import",
                            "Import a root filesystem, OCI image layout or "
                            "docker save archive as an image");
  image_import->add_option("NAME", import_options.name, "Name of the new image")
      ->required();
  image_import
      ->add_option("SOURCE", import_options.source,
                   "A tar archive (plain, gzip, xz or zstd) of a root "
                   "filesystem, an OCI image layout (oci-archive) or a docker "
                   "save; a directory (packed into a tar here, on the "
                   "client: a rootfs or an OCI layout); or - for stdin")
      ->required();
  image_import->add_flag("--replace", import_options.replace,
                         "Replace an existing image of that name");
  Repeatable(image_import->add_option("--label", import_options.labels,
                                      "Label KEY=VALUE (repeatable)"));
  std::vector<std::string> image_rm_names;
  image->add_subcommand("rm", "Delete images no sandbox uses")
      ->add_option("NAME", image_rm_names, "Image names")
      ->required();

  // Sandboxes.
  CreateOptions create_options;
  CLI::App* create =
      app.add_subcommand("create", "Create a sandbox and print its id");
  AddCreateFlags(create, create_options);
  create
      ->add_option("--timeout", create_options.timeout_seconds,
                   "Not for create: a timeout belongs to a command (exec)")
      ->group("");

  CreateOptions run_create;
  ExecOptions run_exec;
  CLI::App* run = app.add_subcommand(
      "run",
      "Run a command in a fresh sandbox, stream its output, destroy the "
      "sandbox");
  AddCreateFlags(run, run_create);
  run->add_option("--timeout", run_exec.timeout_seconds,
                  "Kill the command after SECONDS")
      ->check(kNonNegative);
  AddExecFlags(run, run_exec);
  run->add_option("COMMAND", run_exec.argv,
                  "Command and arguments (after '--')");
  run->footer(absl::StrCat("Usage: corral run [OPTIONS] -- COMMAND [ARGS...]\n",
                           kExitCodesFooter));

  ExecOptions exec_options;
  std::string exec_id;
  CLI::App* exec = app.add_subcommand(
      "exec", "Run a command in a running sandbox and stream its output");
  exec->add_option("ID", exec_id, "Sandbox id")->required();
  exec->add_option("--timeout", exec_options.timeout_seconds,
                   "Kill the command after SECONDS")
      ->check(kNonNegative);
  Repeatable(exec->add_option(
      "-e,--env", exec_options.env,
      "Environment variable KEY=VALUE, or KEY to pass the client's value "
      "(repeatable)"));
  exec->add_option("--workdir", exec_options.workdir,
                   "Working directory (default: the sandbox's)");
  AddExecFlags(exec, exec_options);
  DetachOptions exec_detach;
  exec->add_flag("-d,--detach", exec_detach.detach,
                 "Start the command in the background and print its process "
                 "id (see corral ps, attach, kill)");
  exec->add_option("--tag", exec_detach.tag,
                   "With -d: a name for the process, usable wherever its id "
                   "is");
  exec->add_option("--ready-port", exec_detach.ready_port,
                   "With -d: wait until something listens on this TCP port "
                   "inside the sandbox");
  exec->add_option("--ready-path", exec_detach.ready_path,
                   "With -d: wait until this path exists");
  exec->add_option("--ready-url", exec_detach.ready_url,
                   "With -d: wait until an HTTP GET of this http:// URL "
                   "inside the sandbox succeeds (curl or wget in the image)");
  exec->add_option("--ready-cmd", exec_detach.ready_command,
                   "With -d: wait until this shell command exits 0");
  exec->add_option("--ready-timeout", exec_detach.ready_timeout,
                   "With a --ready-* check: give up after this many seconds "
                   "(default 60)");
  exec->add_option("COMMAND", exec_options.argv,
                   "Command and arguments (after '--')");
  exec->footer(
      absl::StrCat("Usage: corral exec [OPTIONS] ID -- COMMAND [ARGS...]\n",
                   kExitCodesFooter,
                   " With -d: 0 once the process started (its id on stdout)."));

  ListOptions list_options;
  CLI::App* list = app.add_subcommand("ls", "List sandboxes");
  Repeatable(list->add_option("--label", list_options.labels,
                              "Only sandboxes with label KEY=VALUE "
                              "(repeatable; all must match)"));
  list->add_option("--state", list_options.state,
                   "Only sandboxes in this state (creating, running, "
                   "stopped, paused, deleting, failed)");
  list->add_option("--runtime", list_options.runtime,
                   "Only sandboxes of this runtime");

  std::string inspect_id;
  app.add_subcommand("inspect", "Show a sandbox in detail")
      ->add_option("ID", inspect_id, "Sandbox id")
      ->required();

  std::string port_id;
  CLI::App* port = app.add_subcommand(
      "port", "List a sandbox's published ports: PORT -> ADDRESS:HOST_PORT");
  port->add_option("ID", port_id, "Sandbox id")->required();

  std::vector<std::string> rm_ids;
  app.add_subcommand("rm", "Destroy sandboxes, printing each id removed")
      ->add_option("ID", rm_ids, "Sandbox ids")
      ->required();

  std::string extend_id;
  uint64_t extend_ttl = 0;
  CLI::App* extend =
      app.add_subcommand("extend", "Set a sandbox's remaining lifetime");
  extend->add_option("ID", extend_id, "Sandbox id")->required();
  extend
      ->add_option("--ttl", extend_ttl,
                   "New lifetime in seconds, counted from now")
      ->required()
      ->check(kNonNegative);

  std::string pause_id;
  CLI::App* pause = app.add_subcommand(
      "pause", "Pause every process of a sandbox (VM runtimes)");
  pause->add_option("ID", pause_id, "Sandbox id")->required();
  CLI::App* resume = app.add_subcommand("resume", "Resume a paused sandbox");
  resume->add_option("ID", pause_id, "Sandbox id")->required();

  CreateOptions fork_options;
  std::string fork_source;
  CLI::App* fork = app.add_subcommand(
      "fork",
      "Create a sandbox whose workspace starts from another's (or "
      "its snapshot) and print its id");
  fork->add_option("SOURCE", fork_source, "ID or ID@SNAPSHOT")->required();
  AddCreateFlags(fork, fork_options);
  fork->add_option("--timeout", fork_options.timeout_seconds,
                   "Not for fork: a timeout belongs to a command (exec)")
      ->group("");

  WorkspaceCommands workspace(app);
  ShellCommands shells(app);
  NetCommands net(app);

  CLI::App* mcp = app.add_subcommand(
      "mcp",
      "Serve the Model Context Protocol on stdin and stdout, for agents: "
      "every workspace verb as a tool (see docs/mcp.md)");
  std::string mcp_profile = "workspace";
  mcp->add_option("--profile", mcp_profile,
                  "Tools offered: run (one-shot commands), workspace "
                  "(default: also workspaces, files, diffs, snapshots) or "
                  "full (also shells and services)")
      ->check(CLI::IsMember({"run", "workspace", "full"}));
  std::string mcp_listen;
  mcp->add_option("--listen", mcp_listen,
                  "Serve Streamable HTTP at http://ADDRESS:PORT/mcp instead "
                  "of stdio (loopback only, e.g. 127.0.0.1:8765; port 0 "
                  "picks one)");

  CLI::App* e2b = app.add_subcommand(
      "e2b",
      "Serve an E2B-compatible API, so that programs written for E2B's SDKs "
      "run on Corral (see docs/e2b.md)");
  std::string e2b_listen = "127.0.0.1:3000", e2b_config, e2b_state_dir;
  std::vector<std::string> e2b_keys;
  e2b->add_option("--listen", e2b_listen,
                  "ADDRESS:PORT to serve HTTP on (default 127.0.0.1:3000; "
                  "port 0 picks one)");
  e2b->add_option("--api-key", e2b_keys,
                  "An API key that clients send as E2B_API_KEY: e2b_ and hex "
                  "digits (repeatable)");
  e2b->add_option("--config", e2b_config,
                  "A TOML file: api_keys, templates, limits (docs/e2b.md)");
  e2b->add_option("--state-dir", e2b_state_dir,
                  "Where the key that signs access tokens is kept (default "
                  "~/.local/state/corral-e2b)");

  NameOptionValues(&app);

  SplitArguments split = SplitAtSeparator(args);
  // Without "--", `corral exec ID ls -la` still works: everything from the
  // first positional on belongs to the command (options go before it). With
  // "--" the split is explicit and options may come anywhere before it.
  if (!split.has_separator) {
    run->positionals_at_end();
    exec->positionals_at_end();
    shells.shell_command()->positionals_at_end();
  }
  std::vector<std::string> reversed(split.options.rbegin(),
                                    split.options.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return PrintHelp(app, e);
  } catch (const CLI::CallForAllHelp& e) {
    return PrintHelp(app, e);
  } catch (const CLI::CallForVersion& e) {
    return PrintHelp(app, e);
  } catch (const CLI::ParseError& e) {
    return Fail(absl::StrCat(e.what(), " (see 'corral --help')"));
  }

  const bool takes_command =
      run->parsed() || exec->parsed() || shells.shell_command()->parsed();
  if (split.has_separator) {
    if (!takes_command) {
      return Fail("only 'run', 'exec' and 'shell' take a command after '--'");
    }
    std::vector<std::string>& target = run->parsed()    ? run_exec.argv
                                       : exec->parsed() ? exec_options.argv
                                                        : shells.shell_argv();
    if (!target.empty()) {
      return Fail(absl::StrCat("unexpected '", target.front(),
                               "' before '--': put the whole command after "
                               "'--'"));
    }
    target = std::move(split.command);
  }

  if (e2b->parsed()) {
    std::vector<std::string> args = {
        "--socket", ResolveSocketPath(global.socket), "--listen", e2b_listen};
    for (const std::string& key : e2b_keys) {
      args.push_back("--api-key");
      args.push_back(key);
    }
    if (!e2b_config.empty()) {
      args.push_back("--config");
      args.push_back(e2b_config);
    }
    if (!e2b_state_dir.empty()) {
      args.push_back("--state-dir");
      args.push_back(e2b_state_dir);
    }
    return ExecFrontDoor("corral-e2b", std::move(args));
  }
  if (mcp->parsed()) {
    return ExecMcpServer(ResolveSocketPath(global.socket), mcp_profile,
                         mcp_listen);
  }

  Connection connection(ResolveSocketPath(global.socket));
  Result result = absl::InternalError("no command");
  if (app.got_subcommand("version")) {
    result = Version(connection, global);
  } else if (app.got_subcommand("runtimes")) {
    result = Runtimes(connection, global);
  } else if (app.got_subcommand("doctor")) {
    result = Doctor(connection, global);
  } else if (image->parsed()) {
    if (image->got_subcommand("ls")) {
      result = ImageList(connection, global);
    } else if (image->got_subcommand("inspect")) {
      result = ImageInspect(connection, global, image_name);
    } else if (image_import->parsed()) {
      result = ImageImport(connection, global, import_options);
    } else if (image->got_subcommand("rm")) {
      result = ImageRemove(connection, global, image_rm_names);
    }
  } else if (create->parsed()) {
    result = Create(connection, global, create_options);
  } else if (run->parsed()) {
    // -e and --workdir describe the sandbox, where they also reach the
    // command; --timeout belongs to the command.
    result = Run(connection, global, run_create, run_exec);
  } else if (exec->parsed()) {
    result = Exec(connection, global, exec_id, exec_options, exec_detach);
  } else if (list->parsed()) {
    result = List(connection, global, list_options);
  } else if (app.got_subcommand("inspect")) {
    result = Inspect(connection, global, inspect_id);
  } else if (port->parsed()) {
    result = Inspect(connection, global, port_id, /*ports_only=*/true);
  } else if (app.got_subcommand("rm")) {
    result = Remove(connection, global, rm_ids);
  } else if (extend->parsed()) {
    result = Extend(connection, global, extend_id, extend_ttl);
  } else if (pause->parsed() || resume->parsed()) {
    result = ChangePause(connection, global, pause_id, pause->parsed());
  } else if (fork->parsed()) {
    result = Fork(connection, global.json, fork_source, fork_options);
  } else if (std::optional<Result> done =
                 workspace.Dispatch(connection, global.json)) {
    result = std::move(*done);
  } else if (std::optional<Result> done =
                 shells.Dispatch(connection, global.json)) {
    result = std::move(*done);
  } else if (std::optional<Result> done =
                 net.Dispatch(connection, global.json)) {
    result = std::move(*done);
  }
  if (!result.ok()) return Fail(result.status().message());
  return *result;
}

}  // namespace corral::cli
