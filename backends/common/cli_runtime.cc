#include "backends/common/cli_runtime.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "backends/common/guarantees.h"
#include "backends/common/leftovers.h"
#include "backends/common/plugin_support.h"
#include "backends/docker/rootfs_tar.h"
#include "backends/linux/fs_util.h"
#include "corral/platform.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::backend_plugin {

using runtime_common::ProgramOptions;
using runtime_common::ProgramResult;

constexpr size_t kMaxCliOutput = 16u << 20;

CliProgram FindCliProgram(absl::string_view runtime, absl::string_view option,
                          const std::string& name,
                          const std::string& configured,
                          const std::vector<std::string>& fallback_dirs,
                          absl::string_view not_installed) {
  CliProgram program;
  program.name = name;
  if (!configured.empty()) {
    if (IsExecutableFile(configured)) {
      program.path = configured;
    } else {
      program.problem = absl::StrCat("runtimes.", runtime, ".", option, " ",
                                     configured, " is not an executable file");
    }
    return program;
  }
  const char* path = std::getenv("PATH");
  const std::vector<std::string> dirs = runtime_common::ProgramSearchDirs(
      path == nullptr ? "" : path, fallback_dirs);
  program.path = runtime_common::FindProgramIn(name, dirs, IsExecutableFile);
  if (program.path.empty()) {
    program.problem = absl::StrCat(not_installed, " (looked for ", name, " in ",
                                   absl::StrJoin(dirs, ", "), ")");
  }
  return program;
}

absl::StatusOr<ProgramResult> RunCli(const CliProgram& program,
                                     const std::vector<std::string>& args,
                                     absl::Duration timeout) {
  if (program.path.empty()) {
    return absl::FailedPreconditionError(program.problem);
  }
  std::vector<std::string> argv = {program.path};
  argv.insert(argv.end(), args.begin(), args.end());
  ProgramOptions options;
  options.separate_stderr = true;
  options.max_output_bytes = kMaxCliOutput;
  options.environment = program.environment;
  return runtime_common::RunProgram(argv, timeout, options);
}

absl::StatusOr<std::string> RunCliOk(const CliProgram& program,
                                     const std::vector<std::string>& args,
                                     absl::Duration timeout) {
  ASSIGN_OR_RETURN(ProgramResult result, RunCli(program, args, timeout));
  const std::string command = args.empty() ? "" : args[0];
  if (result.exit_code != 0) {
    if (program.error != nullptr) {
      return program.error(command, result.exit_code, result.error_output);
    }
    return absl::InternalError(absl::StrCat(program.name, " ", command,
                                            " exited with ", result.exit_code,
                                            ": ", result.error_output));
  }
  if (result.truncated) {
    return absl::ResourceExhaustedError(absl::StrCat(
        program.name, " ", command, ": output past ", kMaxCliOutput, " bytes"));
  }
  return result.output;
}

absl::StatusOr<ProgramResult> CliVersionOutput(const CliProgram& program) {
  struct Known {
    dev_t device;
    ino_t inode;
    timespec mtime;
    ProgramResult result;
  };
  static std::mutex mutex;
  static auto* known = new std::map<std::string, Known>;
  struct stat st {};
  const bool stated = ::stat(program.path.c_str(), &st) == 0;
  {
    std::lock_guard lock(mutex);
    auto it = known->find(program.path);
    const timespec mtime = platform::ModificationTime(st);
    if (stated && it != known->end() && it->second.device == st.st_dev &&
        it->second.inode == st.st_ino &&
        it->second.mtime.tv_sec == mtime.tv_sec &&
        it->second.mtime.tv_nsec == mtime.tv_nsec) {
      return it->second.result;
    }
  }
  ASSIGN_OR_RETURN(ProgramResult result,
                   RunCli(program, {"--version"}, absl::Seconds(10)));
  if (stated && result.exit_code == 0) {
    std::lock_guard lock(mutex);
    (*known)[program.path] =
        Known{st.st_dev, st.st_ino, platform::ModificationTime(st), result};
  }
  return result;
}

std::string CliVersionProblem(const CliProgram& program,
                              std::string (*version_of)(absl::string_view),
                              absl::string_view what, CliIdentity* identity) {
  auto result = CliVersionOutput(program);
  if (!result.ok()) return std::string(result.status().message());
  identity->version = version_of(result->output);
  identity->fake = absl::StrContains(result->output, "corral test fake");
  if (result->exit_code != 0 || identity->version.empty()) {
    return absl::StrCat(
        program.path, " is not ", what, " (--version said: ",
        absl::StripAsciiWhitespace(result->output).substr(0, 200),
        absl::StripAsciiWhitespace(result->error_output).substr(0, 200), ")");
  }
  return "";
}

std::vector<int> VmGuarantees(bool fake) {
  std::vector<int> guarantees = {kGuaranteeNetworkIsolation};
  if (!fake) guarantees.push_back(kGuaranteeSeparateKernel);
  return guarantees;
}

void FinishProbe(std::vector<std::string> problems,
                 const std::string& agent_path, const std::string& reason,
                 const std::vector<int>& guarantees,
                 ::corral::backend::v1::ProbeResponse* response) {
  if (::access(agent_path.c_str(), R_OK) != 0) {
    problems.push_back(
        absl::StrCat("agent ", agent_path, ": ", std::strerror(errno)));
  }
  if (!problems.empty()) {
    response->set_reason(absl::StrJoin(problems, "; "));
    return;
  }
  response->set_available(true);
  response->set_reason(reason);
  for (int guarantee : guarantees) response->add_guarantees(guarantee);
}

absl::StatusOr<std::string> DaemonLabel(
    const ::corral::backend::v1::PluginConfig& config) {
  if (config.instance_id().empty()) {
    return docker::HashHex(
        absl::StrCat("corral-daemon|", config.runtime_dir()));
  }
  if (!ValidInstanceId(config.instance_id())) {
    return absl::InvalidArgumentError(
        "PluginConfig.instance_id is not 16 lowercase hex characters");
  }
  return config.instance_id();
}

absl::Status RefuseUserNamespace(const ::corral::backend::v1::SandboxSpec& spec,
                                 absl::string_view runtime) {
  for (const auto& [key, value] : spec.runtime_options()) {
    if (key != "userns" || (value != "true" && value != "false")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "runtime option '", key, "=", value, "' is not one of the ", runtime,
          " runtime's (userns=false)"));
    }
    if (value == "true") {
      return absl::FailedPreconditionError(absl::StrCat(
          "runtime option userns=true: the ", runtime,
          " runtime has no user namespace (each sandbox is a VM of its own)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> WaitForHello(UniqueFd fd, absl::Duration wait,
                                      absl::string_view closed) {
  pollfd p{fd.get(), POLLIN, 0};
  const int ready = ::poll(
      &p, 1,
      static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(wait))));
  if (ready < 0) return ErrnoStatus("poll");
  if (ready == 0) {
    return absl::UnavailableError(absl::StrCat(
        "the agent did not answer within ", absl::FormatDuration(wait)));
  }
  char byte;
  const ssize_t n = ::recv(fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n <= 0) return absl::UnavailableError(closed);
  return fd;
}

std::string SerializeHandleState(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string text = "version=1\n";
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&text, key, "=", value, "\n");
  }
  return text;
}

absl::StatusOr<std::map<std::string, std::string>> ParseHandleState(
    absl::string_view text, absl::string_view runtime,
    const std::set<std::string>& keys) {
  std::map<std::string, std::string> fields;
  bool versioned = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first == "version" && kv.second == "1") {
      versioned = true;
    } else if (keys.count(std::string(kv.first)) != 0) {
      fields[std::string(kv.first)] = std::string(kv.second);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(runtime, " sandbox state: unknown line '", line, "'"));
    }
  }
  if (!versioned) {
    return absl::InvalidArgumentError(
        absl::StrCat(runtime, " sandbox state has no version"));
  }
  return fields;
}

ReconcileScope::ReconcileScope(
    const ::corral::backend::v1::ReconcileRequest& request,
    std::string daemon_label)
    : daemon_label_(std::move(daemon_label)),
      known_(request.known_ids().begin(), request.known_ids().end()),
      live_(request.live_instances().begin(), request.live_instances().end()),
      only_instance_(request.only_instance()),
      orphans_(request.orphans()) {
  live_.insert(daemon_label_);
}

bool ReconcileScope::Ours(const std::string& instance) const {
  if (!orphans_) return instance == daemon_label_;
  return ValidInstanceId(instance) && live_.count(instance) == 0 &&
         (only_instance_.empty() || instance == only_instance_);
}

std::string ReconcileScope::Removed(const std::string& instance,
                                    const std::string& id) const {
  return orphans_ ? absl::StrCat(instance, "/", id) : id;
}

void ReconcileScope::Note(const absl::Status& status, absl::string_view what) {
  if (!status.ok() && status_.ok()) status_ = Annotate(status, what);
}

void ReconcileScope::RemoveUnknownSandboxDirs(const std::string& runtime_dir,
                                              std::set<std::string>* removed) {
  if (orphans_) return;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(runtime_dir, error)) {
    const std::string id = entry.path().filename().string();
    if (!linux_runtime::ValidSandboxId(id) || Known(id)) continue;
    absl::Status status = corral::RemoveTree(entry.path().string());
    Note(status, absl::StrCat("leftover directory ", entry.path().string()));
    if (status.ok()) removed->insert(id);
  }
}

}  // namespace corral::backend_plugin
