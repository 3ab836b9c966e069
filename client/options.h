// Parsed command-line options of the corral CLI and the pure functions that
// turn them into corral.v1 request messages (no I/O, so tests can drive them).
#ifndef CORRAL_CLIENT_OPTIONS_H_
#define CORRAL_CLIENT_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "corral/v1/exec.pb.h"
#include "corral/v1/images.pb.h"
#include "corral/v1/sandboxes.pb.h"
#include "corral/v1/system.pb.h"

namespace corral::cli {

// Looks up a variable of the client's environment; nullopt when unset. Passed
// in so that tests do not depend on the real environment.
using EnvLookup =
    std::function<std::optional<std::string>(const std::string& name)>;

// The real environment (getenv).
EnvLookup ProcessEnv();

// Options of a command run in a sandbox, shared by `run` and `exec`.
struct ExecOptions {
  // Everything after `--`; argv[0] is searched in PATH inside the sandbox.
  std::vector<std::string> argv;
  // `--sh CMDLINE`: run through /bin/sh -c instead of argv.
  std::string shell;
  // Seconds; 0 means the daemon's default.
  uint32_t timeout_seconds = 0;
  // `-e KEY=VALUE` or `-e KEY` (the client's value), in command-line order.
  std::vector<std::string> env;
  std::string workdir;
  // `-i`: forward the CLI's stdin to the command.
  bool interactive = false;
  // Bytes kept per stream; 0 means the daemon's default.
  uint64_t output_limit_bytes = 0;
};

// Options that describe a new sandbox, shared by `run` and `create`.
struct CreateOptions {
  std::string runtime;
  std::string image;
  // `--cpus`, in CPUs (0.5 is half a CPU); 0 means the daemon's default.
  double cpus = 0;
  uint64_t memory_mib = 0;
  uint32_t pids = 0;
  uint64_t disk_mib = 0;
  uint64_t ttl_seconds = 0;
  uint64_t idle_timeout_seconds = 0;
  // `--timeout`: only meaningful for `run`, where it belongs to the command;
  // `create` rejects it (a sandbox has no per-command timeout to store).
  uint32_t timeout_seconds = 0;
  // `-e` entries, given to every command of the sandbox.
  std::vector<std::string> env;
  std::string workdir;
  std::vector<std::string> labels;
  // "" (daemon default), "none", "egress" or "learn".
  std::string network;
  // `--allow-domain` / `--allow-cidr` entries, each possibly a comma list.
  std::vector<std::string> allow_domains;
  std::vector<std::string> allow_cidrs;
  // `-p` entries: [ADDRESS:]HOST_PORT:PORT or PORT.
  std::vector<std::string> publish;
  // `--secret NAME=@FILE` and `--secret-host NAME=HOST` entries.
  std::vector<std::string> secrets;
  std::vector<std::string> secret_hosts;
  std::string hostname;
  bool no_userns = false;
  // Guarantee names ("seccomp", "cgroup-limits", ...).
  std::vector<std::string> require;
  // `--seed DIR|TAR`: the workspace's starting content (CreateSeededSandbox).
  std::string seed;
};

// Options of `corral ls`.
struct ListOptions {
  std::vector<std::string> labels;
  std::string state;
  std::string runtime;
};

// Options of `corral image import`.
struct ImportOptions {
  std::string name;
  // A tar file (possibly compressed), a directory, or "-" for stdin.
  std::string source;
  bool replace = false;
  std::vector<std::string> labels;
};

// Splits "KEY=VALUE" for the option named `flag` (used in error messages).
// Fails when there is no '=' or the key is empty; the value may be empty.
absl::StatusOr<std::pair<std::string, std::string>> ParseKeyValue(
    absl::string_view flag, absl::string_view text);

// Parses repeated `--label KEY=VALUE` entries; a repeated key keeps the last
// value.
absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& labels);

// Parses repeated `-e` entries. "KEY=VALUE" sets KEY; "KEY" alone takes the
// client's value of KEY and is skipped when the client has none (as docker
// does).
absl::StatusOr<std::map<std::string, std::string>> ParseEnv(
    const std::vector<std::string>& env, const EnvLookup& lookup);

// "cgroup-limits" -> GUARANTEE_CGROUP_LIMITS. Accepts the enum's own name
// too. Derived from the proto enum, so new guarantees need no CLI change.
absl::StatusOr<corral::v1::Guarantee> ParseGuarantee(absl::string_view name);
// GUARANTEE_CGROUP_LIMITS -> "cgroup-limits".
std::string GuaranteeName(corral::v1::Guarantee guarantee);
// Every guarantee's short name, for help texts and error messages.
std::vector<std::string> GuaranteeNames();

// `-p` text: "8000" (any free host port), "8080:8000",
// "127.0.0.1:8080:8000". INVALID_ARGUMENT naming the entry.
absl::StatusOr<corral::v1::PortMapping> ParsePublish(absl::string_view text);

// "none" / "egress" / "learn" -> NetworkMode.
absl::StatusOr<corral::v1::NetworkMode> ParseNetwork(absl::string_view name);
// NETWORK_MODE_EGRESS -> "egress"; UNSPECIFIED reads "none" (its meaning).
std::string NetworkName(corral::v1::NetworkMode mode);

// "running" -> SANDBOX_STATE_RUNNING.
absl::StatusOr<corral::v1::SandboxState> ParseState(absl::string_view name);
// SANDBOX_STATE_RUNNING -> "running".
std::string StateName(corral::v1::SandboxState state);

// Converts `--cpus` (CPUs, fractional) to thousandths of a CPU. 0 stays 0
// (the daemon's default); a positive value below 0.001 is an error rather than
// silently becoming the default.
absl::StatusOr<uint32_t> CpusToMillis(double cpus);

// The request for `corral create` (and the sandbox part of `corral run` and
// `corral fork`). --seed is not part of it (it picks the RPC, see
// CreateSeededSandbox); --timeout is not looked at here, see
// ValidateCreateOnly.
absl::StatusOr<corral::v1::CreateSandboxRequest> BuildCreateRequest(
    const CreateOptions& options, const EnvLookup& lookup = ProcessEnv());

// Checks for options that `create` cannot honour (--timeout).
absl::Status ValidateCreateOnly(const CreateOptions& options);

// The command part of `run` and `exec`. Exactly one of argv and --sh must be
// given. stdin_open follows --interactive.
absl::StatusOr<corral::v1::ExecStart> BuildExecStart(
    const ExecOptions& options, absl::string_view sandbox_id,
    const EnvLookup& lookup = ProcessEnv());

// The first message of `corral run`: sandbox and command.
absl::StatusOr<corral::v1::RunStart> BuildRunStart(
    const CreateOptions& create, const ExecOptions& exec,
    const EnvLookup& lookup = ProcessEnv());

absl::StatusOr<corral::v1::ListSandboxesRequest> BuildListRequest(
    const ListOptions& options);

// The metadata message of an image import. Compression is AUTO for archives
// (the daemon detects it) and NONE when the CLI packs a directory.
absl::StatusOr<corral::v1::ImportImageMetadata> BuildImportMetadata(
    const ImportOptions& options, bool packed_directory);

// A path inside a sandbox, written `ID:PATH` on the command line.
struct RemotePath {
  std::string sandbox_id;
  std::string path;
};

// `ID:PATH` when the text before the first ':' is a non-empty run of hex
// digits (sandbox ids are hex), else nullopt: a local path. A local path
// whose first component looks like that is written `./a:b`.
std::optional<RemotePath> ParseRemotePath(absl::string_view argument);

// What `corral cp SRC DST` does: exactly one side is `ID:PATH`.
struct CopyPlan {
  // true: local -> sandbox; false: sandbox -> local.
  bool upload = false;
  std::string local;
  RemotePath remote;
};
absl::StatusOr<CopyPlan> PlanCopy(absl::string_view source,
                                  absl::string_view destination);

// `ID` or `ID@SNAPSHOT` (fork's source): the id and the snapshot name, empty
// for the sandbox's current workspace.
absl::StatusOr<std::pair<std::string, std::string>> ParseSnapshotRef(
    absl::string_view argument);

// Octal permission bits ("644", "0755"); at most 07777.
absl::StatusOr<uint32_t> ParseFileMode(absl::string_view text);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_OPTIONS_H_
