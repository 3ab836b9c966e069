#include "backends/apple/apple_runtime.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "backends/apple/container_cli.h"
#include "backends/apple/oci_layout.h"
#include "backends/common/agent_socket.h"
#include "backends/common/guarantees.h"
#include "backends/common/leftovers.h"
#include "backends/common/plugin_support.h"
#include "backends/common/spec_checks.h"
#include "backends/common/subprocess.h"
#include "backends/docker/image_source.h"
#include "backends/docker/rootfs_tar.h"
#include "backends/linux/fs_util.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::apple_runtime {
namespace {

using backend_plugin::kGuaranteeNetworkIsolation;
using backend_plugin::kGuaranteeSeparateKernel;
using linux_runtime::ValidSandboxId;
using runtime_common::ProgramOptions;
using runtime_common::ProgramResult;
using runtime_common::RunProgram;

constexpr char kRunDirName[] = "run";
constexpr char kAgentCopyDir[] = ".agent";
constexpr char kImageStagingDir[] = ".images";
constexpr uint32_t kDefaultStartTimeoutSeconds = 60;
// Lists of many containers are long; nothing else the CLI prints is.
constexpr size_t kMaxCliOutput = 16u << 20;

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = Logger("apple");
  return *logger;
}

struct Settings {
  std::string runtime_dir;
  std::string agent_path;
  // Empty when not found; `container_problem` says why.
  std::string container_path;
  std::string container_problem;
  std::string daemon_label;
  uint32_t start_timeout_seconds = kDefaultStartTimeoutSeconds;
};

// `value` (the option) or `container` on the daemon's PATH, then where
// Apple's installer and Homebrew put it.
std::string FindContainer(const std::string& value, std::string* problem) {
  if (!value.empty()) {
    if (backend_plugin::IsExecutableFile(value)) return value;
    *problem = absl::StrCat("runtimes.apple.container ", value,
                            " is not an executable file");
    return "";
  }
  const char* path = std::getenv("PATH");
  const std::vector<std::string> dirs = runtime_common::ProgramSearchDirs(
      path == nullptr ? "" : path,
      {"/usr/local/bin", "/opt/homebrew/bin", "/usr/bin"});
  if (std::string found = runtime_common::FindProgramIn(
          "container", dirs, backend_plugin::IsExecutableFile);
      !found.empty()) {
    return found;
  }
  *problem = absl::StrCat(
      "Apple's container CLI is not installed (looked for container in ",
      absl::StrJoin(dirs, ", "), ")");
  return "";
}

absl::StatusOr<Settings> ReadSettings(const bv1::PluginConfig& config) {
  Settings settings;
  settings.runtime_dir = config.runtime_dir();
  settings.agent_path = config.agent_path();
  std::string container;
  std::vector<std::string> unknown;
  for (const auto& [key, value] : config.options()) {
    if (key == "container") {
      if (!linux_runtime::CleanAbsolutePath(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("runtimes.apple.container '", value,
                         "': expected an absolute path"));
      }
      container = value;
    } else if (key == "start_timeout_seconds") {
      if (!absl::SimpleAtoi(value, &settings.start_timeout_seconds) ||
          settings.start_timeout_seconds == 0 ||
          settings.start_timeout_seconds > 3600) {
        return absl::InvalidArgumentError(
            absl::StrCat("runtimes.apple.start_timeout_seconds '", value,
                         "': expected 1 to 3600"));
      }
    } else {
      unknown.push_back(key);
    }
  }
  RETURN_IF_ERROR(backend_plugin::RefuseUnknownOptions(
      "apple", unknown, {"container", "start_timeout_seconds"}));
  if (!absl::StartsWith(settings.runtime_dir, "/")) {
    return absl::InvalidArgumentError(
        "PluginConfig.runtime_dir must be an absolute path");
  }
  // Containers and images carry the daemon instance's id: several daemons
  // (or users) may share one container service, and none touches another's.
  if (config.instance_id().empty()) {
    settings.daemon_label =
        docker::HashHex(absl::StrCat("corral-daemon|", settings.runtime_dir));
  } else if (backend_plugin::ValidInstanceId(config.instance_id())) {
    settings.daemon_label = config.instance_id();
  } else {
    return absl::InvalidArgumentError(
        "PluginConfig.instance_id is not 16 lowercase hex characters");
  }
  settings.container_path =
      FindContainer(container, &settings.container_problem);
  return settings;
}

// Runs `container ARGS...`; stdout and stderr apart.
absl::StatusOr<ProgramResult> Run(const Settings& settings,
                                  const std::vector<std::string>& args,
                                  absl::Duration timeout) {
  if (settings.container_path.empty()) {
    return absl::FailedPreconditionError(settings.container_problem);
  }
  std::vector<std::string> argv = {settings.container_path};
  argv.insert(argv.end(), args.begin(), args.end());
  ProgramOptions options;
  options.separate_stderr = true;
  options.max_output_bytes = kMaxCliOutput;
  return RunProgram(argv, timeout, options);
}

// `container ARGS...` that must succeed: its stdout, or the CLI's error as
// a status.
absl::StatusOr<std::string> RunOk(const Settings& settings,
                                  const std::vector<std::string>& args,
                                  absl::Duration timeout = absl::Minutes(2)) {
  ASSIGN_OR_RETURN(ProgramResult result, Run(settings, args, timeout));
  if (result.exit_code != 0) {
    return CliError(args.empty() ? "" : args[0], result.exit_code,
                    result.error_output);
  }
  if (result.truncated) {
    return absl::ResourceExhaustedError(
        absl::StrCat("container ", args.empty() ? "" : args[0],
                     ": output past ", kMaxCliOutput, " bytes"));
  }
  return result.output;
}

// The container named `name`, or NOT_FOUND.
absl::StatusOr<ListedContainer> Inspect(const Settings& settings,
                                        const std::string& name) {
  ASSIGN_OR_RETURN(std::string out,
                   RunOk(settings, {"inspect", name}, absl::Seconds(30)));
  ASSIGN_OR_RETURN(std::vector<ListedContainer> found, ParseContainerList(out));
  for (ListedContainer& container : found) {
    if (container.id == name) return std::move(container);
  }
  return absl::NotFoundError(absl::StrCat("container ", name, " not found"));
}

// The last lines the container wrote, for an error message.
std::string LastLogLines(const Settings& settings, const std::string& name) {
  auto logs = RunOk(settings, {"logs", "-n", "20", name}, absl::Seconds(10));
  if (!logs.ok()) {
    return absl::StrCat("(no logs: ", logs.status().message(), ")");
  }
  std::string text(absl::StripAsciiWhitespace(*logs));
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return text.empty() ? "(no output)" : text;
}

// Removes the container (stopping it) and the sandbox directory; a
// container already gone is fine.
absl::Status Teardown(const Settings& settings, const std::string& name,
                      const std::string& sandbox_dir) {
  absl::Status status =
      RunOk(settings, {"delete", "--force", name}, absl::Minutes(1)).status();
  if (absl::IsNotFound(status)) status = absl::OkStatus();
  absl::Status removed =
      sandbox_dir.empty() ? absl::OkStatus() : corral::RemoveTree(sandbox_dir);
  return status.ok() ? removed : status;
}

// Connects to the socket the runtime publishes for the agent and waits for
// the agent's first bytes (its hello), left unread for the daemon. The
// runtime accepts on the host even while nothing listens in the VM yet, and
// then closes the connection: that is "not yet", not a failure.
absl::StatusOr<UniqueFd> ConnectReady(const std::string& run_dir,
                                      absl::Duration wait) {
  ASSIGN_OR_RETURN(UniqueFd fd, backend_plugin::ConnectAt(
                                    run_dir, backend_plugin::kAgentSocketName));
  pollfd p{fd.get(), POLLIN, 0};
  const int ready = ::poll(
      &p, 1,
      static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(wait))));
  if (ready < 0) return ErrnoStatus("poll");
  if (ready == 0) {
    return absl::UnavailableError("the agent has not answered yet");
  }
  char byte;
  const ssize_t n = ::recv(fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n <= 0) {
    return absl::UnavailableError(
        "the runtime closed the connection: nothing listens in the VM yet");
  }
  return fd;
}

absl::StatusOr<UniqueFd> WaitForAgent(const Settings& settings,
                                      const std::string& name,
                                      const std::string& run_dir) {
  const absl::Duration timeout = absl::Seconds(settings.start_timeout_seconds);
  const absl::Time deadline = absl::Now() + timeout;
  absl::Time next_check = absl::Now() + absl::Milliseconds(500);
  absl::Status last;
  for (;;) {
    auto connection = ConnectReady(run_dir, absl::Seconds(2));
    if (connection.ok()) return connection;
    last = connection.status();
    if (absl::Now() >= next_check) {
      next_check = absl::Now() + absl::Milliseconds(500);
      ASSIGN_OR_RETURN(ListedContainer container, Inspect(settings, name));
      if (container.state != "running") {
        return absl::InternalError(
            absl::StrCat("the sandbox's container is ", container.state,
                         " before its agent answered; its output: ",
                         LastLogLines(settings, name)));
      }
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the agent did not answer on ", run_dir, "/",
                       backend_plugin::kAgentSocketName, " within ",
                       absl::FormatDuration(timeout), ": ", last.message()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

// The agent, copied once into a directory of its own that every sandbox of
// this daemon shares read-only (Apple's runtime shares directories, not
// files). Replaced (atomically) when the daemon's agent changes.
absl::StatusOr<std::string> AgentDirectory(const Settings& settings) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  const std::string dir =
      absl::StrCat(settings.runtime_dir, "/", kAgentCopyDir);
  const std::string copy = absl::StrCat(dir, "/corral-agent");
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", dir));
  }
  UniqueFd source(::open(settings.agent_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!source) return ErrnoStatus(absl::StrCat("agent ", settings.agent_path));
  struct stat want {
  }, have{};
  if (::fstat(source.get(), &want) != 0) return ErrnoStatus("stat agent");
  if (::lstat(copy.c_str(), &have) == 0 && S_ISREG(have.st_mode) &&
      have.st_size == want.st_size &&
      have.st_mtim.tv_sec == want.st_mtim.tv_sec &&
      have.st_mtim.tv_nsec == want.st_mtim.tv_nsec) {
    return dir;
  }
  const std::string staged = absl::StrCat(copy, ".new");
  ::unlink(staged.c_str());
  UniqueFd out(::open(staged.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0755));
  if (!out) return ErrnoStatus(absl::StrCat("create ", staged));
  for (off_t offset = 0; offset < want.st_size;) {
    ssize_t n = ::sendfile(out.get(), source.get(), &offset,
                           static_cast<size_t>(want.st_size - offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(absl::StrCat("copy the agent to ", staged));
  }
  const struct timespec times[2] = {want.st_atim, want.st_mtim};
  if (::futimens(out.get(), times) != 0 || ::fchmod(out.get(), 0755) != 0) {
    return ErrnoStatus(absl::StrCat("set times of ", staged));
  }
  out.Reset();
  if (::rename(staged.c_str(), copy.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("rename ", staged));
  }
  return dir;
}

std::string ImageRepository(const std::string& daemon_label) {
  // A domain of its own, so that the CLI never takes it for Docker Hub's.
  return absl::StrCat("corral.local/", daemon_label);
}

// The sandbox's root filesystem as an image of the container service; its
// reference.
absl::StatusOr<std::string> EnsureImage(const Settings& settings,
                                        const bv1::RootFs& rootfs) {
  ASSIGN_OR_RETURN(docker::ImageSource source,
                   docker::ResolveImageSource(rootfs, settings.runtime_dir));
  const std::string ref =
      absl::StrCat(ImageRepository(settings.daemon_label), ":", source.key);
  std::shared_ptr<std::mutex> lock = docker::ImportLock(ref);
  std::lock_guard guard(*lock);
  auto present = RunOk(settings, {"image", "inspect", ref}, absl::Seconds(30));
  if (present.ok()) return ref;
  if (!absl::IsNotFound(present.status())) return present.status();
  const absl::Time started = absl::Now();
  const std::string staging =
      absl::StrCat(settings.runtime_dir, "/", kImageStagingDir);
  if (::mkdir(staging.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", staging));
  }
  const std::string tar = absl::StrCat(staging, "/", source.key, ".tar");
  absl::Cleanup remove_tar = [&] { ::unlink(tar.c_str()); };
  RETURN_IF_ERROR(WriteImageLayout(
      LayoutImage{source.directory, source.zero_mtime, ref, OciArchitecture()},
      tar));
  ASSIGN_OR_RETURN(
      std::string loaded,
      RunOk(settings, {"image", "load", "--input", tar}, absl::Minutes(10)));
  if (!absl::StrContains(loaded, ref)) {
    return absl::InternalError(
        absl::StrCat("container image load named the image '",
                     absl::StripAsciiWhitespace(loaded), "', not ", ref));
  }
  Log().info("loaded {} into the container service as {} in {} ms",
             source.directory, ref,
             absl::ToInt64Milliseconds(absl::Now() - started));
  return ref;
}

// SandboxHandle.state: key=value lines.
struct HandleState {
  std::string id;
  std::string name;
  std::string sandbox_dir;

  std::string Serialize() const {
    return absl::StrCat("version=1\nid=", id, "\nname=", name,
                        "\nsandbox_dir=", sandbox_dir, "\n");
  }
  static absl::StatusOr<HandleState> Parse(absl::string_view text) {
    HandleState state;
    bool versioned = false;
    for (absl::string_view line :
         absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(line, absl::MaxSplits('=', 1));
      if (kv.first == "version" && kv.second == "1") {
        versioned = true;
      } else if (kv.first == "id") {
        state.id = std::string(kv.second);
      } else if (kv.first == "name") {
        state.name = std::string(kv.second);
      } else if (kv.first == "sandbox_dir") {
        state.sandbox_dir = std::string(kv.second);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("apple sandbox state: unknown line '", line, "'"));
      }
    }
    if (!versioned || !ValidSandboxId(state.id) ||
        !absl::EndsWith(state.name, absl::StrCat(".", state.id)) ||
        !absl::EndsWith(state.sandbox_dir, absl::StrCat("/", state.id)) ||
        !linux_runtime::CleanAbsolutePath(state.sandbox_dir)) {
      return absl::InvalidArgumentError("apple sandbox state is malformed");
    }
    return state;
  }
};

std::string SandboxDir(const Settings& settings, absl::string_view id) {
  return absl::StrCat(settings.runtime_dir, "/", id);
}

// What this `container` is, from its --version: a problem, or "". Asked
// once per program file (the same path, inode and mtime), not on every
// create: a CLI is replaced by installing a new file.
std::string VersionProblem(const Settings& settings, std::string* version,
                           bool* fake) {
  struct Known {
    dev_t device;
    ino_t inode;
    timespec mtime;
    std::string version;
    bool fake;
  };
  static std::mutex mutex;
  static auto* known = new std::map<std::string, Known>;
  struct stat st {};
  const bool stated = ::stat(settings.container_path.c_str(), &st) == 0;
  {
    std::lock_guard lock(mutex);
    auto it = known->find(settings.container_path);
    if (stated && it != known->end() && it->second.device == st.st_dev &&
        it->second.inode == st.st_ino &&
        it->second.mtime.tv_sec == st.st_mtim.tv_sec &&
        it->second.mtime.tv_nsec == st.st_mtim.tv_nsec) {
      *version = it->second.version;
      *fake = it->second.fake;
      return "";
    }
  }
  auto result = Run(settings, {"--version"}, absl::Seconds(10));
  if (!result.ok()) return std::string(result.status().message());
  *version = CliVersion(result->output);
  *fake = IsTestFake(result->output);
  if (result->exit_code != 0 || version->empty()) {
    return absl::StrCat(
        settings.container_path,
        " is not Apple's container CLI (--version said: ",
        absl::StripAsciiWhitespace(result->output).substr(0, 200),
        absl::StripAsciiWhitespace(result->error_output).substr(0, 200), ")");
  }
  if (stated) {
    std::lock_guard lock(mutex);
    (*known)[settings.container_path] =
        Known{st.st_dev, st.st_ino, st.st_mtim, *version, *fake};
  }
  return "";
}

std::vector<int> Guarantees(bool fake) {
  // Each container of Apple's is a VM with its own kernel and, with
  // `--network none`, no network device. The test fake runs containers on
  // the host's kernel, and says so in its version: then no separate kernel.
  std::vector<int> guarantees = {kGuaranteeNetworkIsolation};
  if (!fake) guarantees.push_back(kGuaranteeSeparateKernel);
  return guarantees;
}

}  // namespace

absl::Status CheckConfig(const bv1::PluginConfig& config) {
  return ReadSettings(config).status();
}

bv1::ProbeResponse Probe(const bv1::ProbeRequest& request) {
  bv1::ProbeResponse response;
  auto& details = *response.mutable_details();
  auto settings = ReadSettings(request.config());
  if (!settings.ok()) {
    response.set_reason(std::string(settings.status().message()));
    return response;
  }
  std::vector<std::string> problems;
  std::string version;
  bool fake = false;
  if (settings->container_path.empty()) {
    problems.push_back(settings->container_problem);
  } else {
    details["container"] = settings->container_path;
    std::string problem = VersionProblem(*settings, &version, &fake);
    if (!problem.empty()) {
      problems.push_back(problem);
    } else {
      details["version"] = version;
      if (fake) details["fake"] = "corral's test fake (tests/fakes/apple)";
      auto status = Run(*settings, {"system", "status"}, absl::Seconds(20));
      if (!status.ok()) {
        problems.emplace_back(status.status().message());
      } else if (status->exit_code != 0) {
        problems.push_back(absl::StrCat(
            "the container system service is not running (",
            absl::StripAsciiWhitespace(
                status->output.empty() ? status->error_output : status->output)
                .substr(0, 200),
            "): start it with `container system start`"));
      }
    }
  }
  if (::access(settings->agent_path.c_str(), R_OK) != 0) {
    problems.push_back(absl::StrCat("agent ", settings->agent_path, ": ",
                                    std::strerror(errno)));
  }
  if (!problems.empty()) {
    response.set_reason(absl::StrJoin(problems, "; "));
    return response;
  }
  response.set_available(true);
  response.set_reason(fake ? absl::StrCat(version, " (corral test fake)")
                           : version);
  for (int guarantee : Guarantees(fake)) response.add_guarantees(guarantee);
  return response;
}

absl::StatusOr<bv1::CreateResponse> Create(const bv1::CreateRequest& request,
                                           UniqueFd* agent_fd) {
  const absl::Time started = absl::Now();
  const bv1::SandboxSpec& spec = request.spec();
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  if (settings.container_path.empty()) {
    return absl::FailedPreconditionError(settings.container_problem);
  }
  RETURN_IF_ERROR(backend_plugin::ValidateSpec(spec));
  if (!request.memory().empty()) {
    return absl::UnimplementedError(
        "the apple runtime has no memory snapshots (Apple's container cannot "
        "save a VM's memory)");
  }
  for (const auto& [key, value] : spec.runtime_options()) {
    if (key != "userns" || (value != "true" && value != "false")) {
      return absl::InvalidArgumentError(
          absl::StrCat("runtime option '", key, "=", value,
                       "' is not one of the apple runtime's (userns=false)"));
    }
    if (value == "true") {
      return absl::FailedPreconditionError(
          "runtime option userns=true: the apple runtime has no user "
          "namespace (each sandbox is a VM of its own)");
    }
  }
  if (spec.rootfs().source_case() == bv1::RootFs::kHost) {
    return absl::FailedPreconditionError(
        "the apple runtime runs Linux VMs from images only (the host's own "
        "root cannot be shared into them): import an image and use --image");
  }
  if (!spec.network_none() || spec.has_tap()) {
    return absl::FailedPreconditionError(
        "network is not built for the apple runtime yet: its sandboxes are "
        "sealed (--network none, no network device)");
  }
  ASSIGN_OR_RETURN(const std::string name,
                   ContainerName(spec.hostname(), spec.id()));
  std::string version;
  bool fake = false;
  if (std::string problem = VersionProblem(settings, &version, &fake);
      !problem.empty()) {
    return absl::FailedPreconditionError(problem);
  }

  HandleState state{spec.id(), name, SandboxDir(settings, spec.id())};
  const std::string run_dir = absl::StrCat(state.sandbox_dir, "/", kRunDirName);
  if (::mkdir(state.sandbox_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "sandbox ", spec.id(), " already exists in ", settings.runtime_dir));
    }
    return ErrnoStatus(absl::StrCat("mkdir ", state.sandbox_dir));
  }
  bool container_made = false;
  absl::Cleanup undo = [&] {
    absl::Status status = container_made
                              ? Teardown(settings, name, state.sandbox_dir)
                              : corral::RemoveTree(state.sandbox_dir);
    if (!status.ok()) {
      Log().error("sandbox {}: cleanup after a failed create: {}", spec.id(),
                  status.ToString());
    }
  };
  if (::mkdir(run_dir.c_str(), 0700) != 0) {
    return ErrnoStatus(absl::StrCat("mkdir ", run_dir));
  }
  ASSIGN_OR_RETURN(std::string agent_dir, AgentDirectory(settings));
  ASSIGN_OR_RETURN(std::string image, EnsureImage(settings, spec.rootfs()));
  const absl::Time imaged = absl::Now();

  RunPlan plan;
  plan.name = name;
  plan.image = image;
  plan.workspace_dir = spec.workspace_dir();
  plan.agent_dir = agent_dir;
  plan.host_socket =
      absl::StrCat(run_dir, "/", backend_plugin::kAgentSocketName);
  plan.sandbox_id = spec.id();
  plan.daemon_label = settings.daemon_label;
  plan.memory_bytes = VmMemoryBytes(spec.memory_bytes());
  plan.cpus = VmCpus(spec.cpu_millis());
  auto ran = RunOk(settings, RunArguments(plan), absl::Minutes(5));
  if (!ran.ok()) {
    if (absl::IsAlreadyExists(ran.status())) {
      // Someone's container of that name (a sandbox the store lost):
      // reconcile removes it, not create.
      return absl::AlreadyExistsError(
          absl::StrCat("sandbox ", spec.id(),
                       ": the container service "
                       "already has a container named ",
                       name));
    }
    // It may exist half-made.
    container_made = true;
    return ran.status();
  }
  container_made = true;
  const absl::Time container_started = absl::Now();
  ASSIGN_OR_RETURN(UniqueFd connection, WaitForAgent(settings, name, run_dir));
  std::move(undo).Cancel();
  Log().debug(
      "sandbox {} created as container {}: image {} ms, run {} ms, "
      "agent {} ms",
      spec.id(), name, absl::ToInt64Milliseconds(imaged - started),
      absl::ToInt64Milliseconds(container_started - imaged),
      absl::ToInt64Milliseconds(absl::Now() - container_started));

  bv1::CreateResponse response;
  response.mutable_handle()->set_id(spec.id());
  response.mutable_handle()->set_state(state.Serialize());
  for (int guarantee : Guarantees(fake)) response.add_guarantees(guarantee);
  auto& details = *response.mutable_details();
  details["container"] = name;
  details["vm_memory_mib"] = absl::StrCat(plan.memory_bytes >> 20);
  if (plan.memory_bytes > spec.memory_bytes()) {
    details["memory_note"] = absl::StrCat(
        "the VM has ", plan.memory_bytes >> 20, " MiB: Apple's minimum is ",
        kMinMemoryBytes >> 20, " MiB, more than the ",
        spec.memory_bytes() >> 20, " MiB asked");
  }
  details["vm_cpus"] = plan.cpus > 0 ? absl::StrCat(plan.cpus) : "default";
  details["pids"] = "not limited (Apple's container has no such limit)";
  if (fake) details["fake"] = "corral's test fake: a runc container, no VM";
  *agent_fd = std::move(connection);
  return response;
}

absl::StatusOr<bv1::AttachResponse> Attach(const bv1::AttachRequest& request,
                                           UniqueFd* agent_fd) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  ASSIGN_OR_RETURN(HandleState state,
                   HandleState::Parse(request.handle().state()));
  bv1::AttachResponse response;
  auto container = Inspect(settings, state.name);
  if (absl::IsNotFound(container.status())) {
    response.set_reason(
        absl::StrCat("the container ", state.name, " no longer exists"));
    return response;
  }
  if (!container.ok()) return container.status();
  if (container->state != "running") {
    response.set_reason(
        absl::StrCat("the container ", state.name, " is ", container->state));
    return response;
  }
  auto connection = ConnectReady(
      absl::StrCat(state.sandbox_dir, "/", kRunDirName), absl::Seconds(10));
  if (!connection.ok()) {
    response.set_reason(std::string(connection.status().message()));
    return response;
  }
  response.set_alive(true);
  *agent_fd = std::move(*connection);
  return response;
}

absl::Status Destroy(const bv1::DestroyRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  auto state = HandleState::Parse(request.handle().state());
  if (state.ok()) {
    if (state->id != request.handle().id()) {
      return absl::InvalidArgumentError(
          "sandbox handle: the state belongs to another id");
    }
    return Teardown(settings, state->name, state->sandbox_dir);
  }
  // A damaged or empty state (a create that failed half-way): find the
  // container by its labels.
  const std::string& id = request.handle().id();
  if (!ValidSandboxId(id)) return state.status();
  ASSIGN_OR_RETURN(std::string out,
                   RunOk(settings, {"list", "--all", "--format", "json"}));
  ASSIGN_OR_RETURN(std::vector<ListedContainer> containers,
                   ParseContainerList(out));
  for (const ListedContainer& container : containers) {
    auto sandbox = container.labels.find(kSandboxLabel);
    auto daemon = container.labels.find(kDaemonLabel);
    if (sandbox != container.labels.end() && sandbox->second == id &&
        daemon != container.labels.end() &&
        daemon->second == settings.daemon_label) {
      RETURN_IF_ERROR(Teardown(settings, container.id, ""));
    }
  }
  return corral::RemoveTree(SandboxDir(settings, id));
}

absl::StatusOr<bv1::StatsResponse> Stats(const bv1::StatsRequest&) {
  // `container stats` samples twice, two seconds apart, even with
  // --no-stream: too slow for the daemon, which asks around every command.
  return absl::UnimplementedError(
      "the apple runtime does not report usage (Apple's `container stats` "
      "takes two seconds per call)");
}

absl::StatusOr<bv1::ReconcileResponse> Reconcile(
    const bv1::ReconcileRequest& request) {
  ASSIGN_OR_RETURN(Settings settings, ReadSettings(request.config()));
  bv1::ReconcileResponse response;
  if (settings.container_path.empty()) return response;  // nothing to find
  std::set<std::string> known(request.known_ids().begin(),
                              request.known_ids().end());
  std::set<std::string> live(request.live_instances().begin(),
                             request.live_instances().end());
  live.insert(settings.daemon_label);
  // Which daemon instances' containers and images this call removes.
  auto ours = [&](const std::string& instance) {
    if (!request.orphans()) return instance == settings.daemon_label;
    return backend_plugin::ValidInstanceId(instance) &&
           live.count(instance) == 0 &&
           (request.only_instance().empty() ||
            instance == request.only_instance());
  };
  absl::Status result;
  auto note = [&](const absl::Status& status, absl::string_view what) {
    if (!status.ok() && result.ok()) result = Annotate(status, what);
  };
  auto listed = RunOk(settings, {"list", "--all", "--format", "json"});
  if (!listed.ok()) return listed.status();
  ASSIGN_OR_RETURN(std::vector<ListedContainer> containers,
                   ParseContainerList(*listed));
  std::set<std::string> removed;
  for (const ListedContainer& container : containers) {
    auto daemon = container.labels.find(kDaemonLabel);
    auto sandbox = container.labels.find(kSandboxLabel);
    if (daemon == container.labels.end() || sandbox == container.labels.end() ||
        !ValidSandboxId(sandbox->second) || !ours(daemon->second)) {
      continue;
    }
    if (!request.orphans() && known.count(sandbox->second)) continue;
    absl::Status status = Teardown(settings, container.id, "");
    note(status, absl::StrCat("leftover container ", container.id));
    if (status.ok()) {
      removed.insert(request.orphans()
                         ? absl::StrCat(daemon->second, "/", sandbox->second)
                         : sandbox->second);
    }
  }
  if (!request.orphans()) {
    std::error_code error;
    for (const auto& entry :
         std::filesystem::directory_iterator(settings.runtime_dir, error)) {
      const std::string id = entry.path().filename().string();
      if (!ValidSandboxId(id) || known.count(id)) continue;
      absl::Status status = corral::RemoveTree(entry.path().string());
      note(status, absl::StrCat("leftover directory ", entry.path().string()));
      if (status.ok()) removed.insert(id);
    }
  }
  // Images no container uses any more; the service refuses to remove one
  // in use, which is fine.
  if (result.ok()) {
    auto images = RunOk(settings, {"image", "list", "--quiet"});
    if (images.ok()) {
      for (absl::string_view ref :
           absl::StrSplit(*images, '\n', absl::SkipWhitespace())) {
        ref = absl::StripAsciiWhitespace(ref);
        absl::string_view rest = ref;
        if (!absl::ConsumePrefix(&rest, "corral.local/")) continue;
        const std::string instance(rest.substr(0, rest.find(':')));
        if (!ours(instance)) continue;
        auto deleted = RunOk(settings, {"image", "delete", std::string(ref)});
        if (!deleted.ok()) {
          Log().debug("image {} stays: {}", std::string(ref),
                      deleted.status().ToString());
        }
      }
    }
  }
  if (!result.ok()) return result;
  for (const std::string& id : removed) response.add_removed_ids(id);
  return response;
}

}  // namespace corral::apple_runtime
