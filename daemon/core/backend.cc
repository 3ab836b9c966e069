#include "daemon/core/backend.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "corral/logging.h"
#include "corral/platform.h"
#include "corral/status_macros.h"
#include "corral/trusted_file.h"

namespace corral::daemon {
namespace {

namespace bv1 = corral::backend::v1;

// Every runtime the design names, whether or not this build has its plugin,
// so that `corral runtimes` can say why one is missing.
constexpr const char* kDesignRuntimes[] = {
    "linux", "oci", "docker", "qemu", "firecracker", "tart", "apple"};

constexpr int64_t kProbeCacheNs = 5'000'000'000;

bool ValidRuntimeName(const std::string& name) {
  if (name.empty() || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace

Backend::Backend(std::string name, const corral_backend_v1* table,
                 void* library, bv1::PluginConfig config)
    : name_(std::move(name)),
      table_(table),
      library_(library),
      config_(std::move(config)) {}

absl::Status Backend::Call(corral_backend_call call, const char* operation,
                           const google::protobuf::MessageLite& request,
                           google::protobuf::MessageLite* response,
                           UniqueFd* agent_fd) {
  if (call == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("runtime ", name_, " does not implement ", operation));
  }
  std::string bytes = request.SerializeAsString();
  corral_result result{};
  result.agent_fd = -1;
  int code = call(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                  &result);
  UniqueFd fd(result.agent_fd);
  std::string error = result.error_message ? result.error_message : "";
  bool parsed = true;
  if (code == 0 && response != nullptr) {
    parsed = response->ParseFromArray(result.response,
                                      static_cast<int>(result.response_size));
  }
  table_->free_result(&result);
  if (code != 0) {
    if (code < 0 || code > 16)
      code = static_cast<int>(absl::StatusCode::kInternal);
    return absl::Status(
        static_cast<absl::StatusCode>(code),
        error.empty() ? absl::StrCat(name_, " ", operation, " failed") : error);
  }
  if (!parsed) {
    return absl::InternalError(
        absl::StrCat("runtime ", name_, ": ", operation,
                     " returned an unreadable response"));
  }
  if (agent_fd != nullptr) *agent_fd = std::move(fd);
  return absl::OkStatus();
}

absl::StatusOr<bv1::ProbeResponse> Backend::Probe() {
  bv1::ProbeRequest request;
  *request.mutable_config() = config_;
  bv1::ProbeResponse response;
  RETURN_IF_ERROR(Call(table_->probe, "probe", request, &response, nullptr));
  return response;
}

absl::StatusOr<BackendSandbox> Backend::Create(const bv1::SandboxSpec& spec,
                                               const std::string& memory) {
  bv1::CreateRequest request;
  *request.mutable_config() = config_;
  *request.mutable_spec() = spec;
  request.set_memory(memory);
  bv1::CreateResponse response;
  BackendSandbox sandbox;
  RETURN_IF_ERROR(
      Call(table_->create, "create", request, &response, &sandbox.agent_fd));
  if (!sandbox.agent_fd.valid()) {
    // The plugin says it made a sandbox but gave no way to reach it: undo.
    (void)Destroy(response.handle());
    return absl::InternalError(absl::StrCat(
        "runtime ", name_, " created a sandbox without an agent connection"));
  }
  sandbox.handle = response.handle();
  sandbox.guarantees.assign(response.guarantees().begin(),
                            response.guarantees().end());
  sandbox.details.insert(response.details().begin(), response.details().end());
  sandbox.netns_to_link = response.netns_to_link();
  return sandbox;
}

absl::StatusOr<BackendSandbox> Backend::Attach(const bv1::SandboxHandle& handle,
                                               std::string* reason) {
  bv1::AttachRequest request;
  *request.mutable_config() = config_;
  *request.mutable_handle() = handle;
  bv1::AttachResponse response;
  BackendSandbox sandbox;
  RETURN_IF_ERROR(
      Call(table_->attach, "attach", request, &response, &sandbox.agent_fd));
  sandbox.handle = handle;
  if (!response.alive()) {
    sandbox.agent_fd.Reset();
    if (reason != nullptr) *reason = response.reason();
  }
  return sandbox;
}

absl::Status Backend::Destroy(const bv1::SandboxHandle& handle) {
  bv1::DestroyRequest request;
  *request.mutable_config() = config_;
  *request.mutable_handle() = handle;
  bv1::DestroyResponse response;
  return Call(table_->destroy, "destroy", request, &response, nullptr);
}

absl::StatusOr<bv1::StatsResponse> Backend::Stats(
    const bv1::SandboxHandle& handle) {
  bv1::StatsRequest request;
  *request.mutable_config() = config_;
  *request.mutable_handle() = handle;
  bv1::StatsResponse response;
  RETURN_IF_ERROR(Call(table_->stats, "stats", request, &response, nullptr));
  return response;
}

absl::Status Backend::CheckConfig() {
  bv1::ProbeRequest request;
  *request.mutable_config() = config_;
  request.set_config_only(true);
  bv1::ProbeResponse response;
  RETURN_IF_ERROR(Call(table_->probe, "probe", request, &response, nullptr));
  if (!response.config_error().empty()) {
    return absl::InvalidArgumentError(response.config_error());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Backend::CallReconcile(
    bv1::ReconcileRequest request) {
  *request.mutable_config() = config_;
  bv1::ReconcileResponse response;
  RETURN_IF_ERROR(
      Call(table_->reconcile, "reconcile", request, &response, nullptr));
  return std::vector<std::string>(response.removed_ids().begin(),
                                  response.removed_ids().end());
}

absl::StatusOr<std::vector<std::string>> Backend::Reconcile(
    const std::vector<std::string>& known_ids) {
  bv1::ReconcileRequest request;
  for (const auto& id : known_ids) request.add_known_ids(id);
  return CallReconcile(std::move(request));
}

absl::StatusOr<std::vector<std::string>> Backend::RemoveOrphans(
    const std::vector<std::string>& live_instances,
    const std::string& only_instance) {
  bv1::ReconcileRequest request;
  request.set_orphans(true);
  request.set_only_instance(only_instance);
  for (const auto& id : live_instances) request.add_live_instances(id);
  return CallReconcile(std::move(request));
}

absl::Status Backend::Pause(const bv1::SandboxHandle& handle) {
  bv1::PauseRequest request;
  *request.mutable_config() = config_;
  *request.mutable_handle() = handle;
  bv1::PauseResponse response;
  return Call(table_->pause, "pause", request, &response, nullptr);
}

absl::Status Backend::Resume(const bv1::SandboxHandle& handle) {
  bv1::ResumeRequest request;
  *request.mutable_config() = config_;
  *request.mutable_handle() = handle;
  bv1::ResumeResponse response;
  return Call(table_->resume, "resume", request, &response, nullptr);
}

absl::StatusOr<bv1::SaveMemoryResponse> Backend::SaveMemory(
    const bv1::SandboxHandle& handle, const std::string& name) {
  bv1::SaveMemoryRequest request;
  *request.mutable_config() = config_;
  *request.mutable_handle() = handle;
  request.set_name(name);
  bv1::SaveMemoryResponse response;
  RETURN_IF_ERROR(
      Call(table_->save_memory, "save_memory", request, &response, nullptr));
  return response;
}

absl::Status Backend::DeleteMemory(const bv1::SandboxHandle& handle,
                                   const std::string& state) {
  bv1::DeleteMemoryRequest request;
  *request.mutable_config() = config_;
  *request.mutable_handle() = handle;
  request.set_state(state);
  bv1::DeleteMemoryResponse response;
  return Call(table_->delete_memory, "delete_memory", request, &response,
              nullptr);
}

absl::StatusOr<std::unique_ptr<PluginHost>> PluginHost::Create(
    Options options) {
  UniqueFd dir(::open(options.plugin_dir.c_str(),
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOTDIR || errno == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat("plugin directory ", options.plugin_dir,
                       " is not a directory (or is a symlink)"));
    }
    return ErrnoStatus(absl::StrCat("plugin directory ", options.plugin_dir));
  }
  RETURN_IF_ERROR(corral::CheckTrustedFd(
      dir.get(), absl::StrCat("plugin directory ", options.plugin_dir)));
  auto host = std::unique_ptr<PluginHost>(
      new PluginHost(std::move(options), std::move(dir)));
  // Every configured runtime must exist and accept its options.
  for (const auto& [runtime, values] : host->options_.options) {
    auto backend = host->Get(runtime);
    if (!backend.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config [runtimes.", runtime, "]: ", backend.status().message()));
    }
    if (auto s = (*backend)->CheckConfig(); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config [runtimes.", runtime, "]: ", s.message()));
    }
  }
  return host;
}

std::vector<std::string> PluginHost::KnownRuntimes() const {
  std::vector<std::string> names(std::begin(kDesignRuntimes),
                                 std::end(kDesignRuntimes));
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(options_.plugin_dir, error)) {
    const auto path = entry.path();
    if (path.extension() != ".so") continue;
    std::string name = path.stem().string();
    if (ValidRuntimeName(name) &&
        std::find(names.begin(), names.end(), name) == names.end()) {
      names.push_back(name);
    }
  }
  return names;
}

absl::StatusOr<Backend*> PluginHost::Get(const std::string& runtime) {
  std::lock_guard lock(mutex_);
  if (auto it = loaded_.find(runtime); it != loaded_.end()) {
    return it->second.get();
  }
  if (!ValidRuntimeName(runtime)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid runtime name '", runtime, "'"));
  }
  const std::string name = absl::StrCat(runtime, ".so");
  const std::string path = absl::StrCat(options_.plugin_dir, "/", name);
  // The directory as opened at start (its owner and mode may have changed
  // since), then the file, opened once: the checks and the load see the
  // same inode.
  if (auto s = corral::CheckTrustedFd(
          dir_.get(), absl::StrCat("plugin directory ", options_.plugin_dir));
      !s.ok()) {
    return absl::UnavailableError(s.message());
  }
  UniqueFd file(
      ::openat(dir_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!file) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("runtime ", runtime,
                       " is not built into this installation (no ", path, ")"));
    }
    return absl::UnavailableError(absl::StrCat(
        "cannot open ", path, ": ", std::strerror(errno),
        errno == ELOOP ? " (a symlink: plugins must be plain files)" : ""));
  }
  struct stat st {};
  if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::UnavailableError(
        absl::StrCat("refusing to load ", path, ": not a regular file"));
  }
  if (auto s = corral::CheckTrustedFd(file.get(), path); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("refusing to load ", path, ": ", s.message()));
  }
  // The very file checked above, whatever happens to `path` meanwhile. The
  // loader takes a name it has loaded before for that library, so the fd
  // of every loaded plugin stays open: no later plugin gets the same number.
  void* library = platform::LoadLibraryFromFd(file.get());
  if (library == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot load runtime ", runtime, ": ", ::dlerror()));
  }
  auto entry = reinterpret_cast<corral_backend_entry_fn>(
      ::dlsym(library, CORRAL_BACKEND_ENTRY_SYMBOL));
  if (entry == nullptr) {
    ::dlclose(library);
    return absl::UnavailableError(
        absl::StrCat(path, " does not export ", CORRAL_BACKEND_ENTRY_SYMBOL));
  }
  const corral_backend_v1* table = entry(CORRAL_BACKEND_ABI_VERSION);
  if (table == nullptr || table->abi_version != CORRAL_BACKEND_ABI_VERSION ||
      table->struct_size != sizeof(corral_backend_v1) ||
      table->free_result == nullptr) {
    ::dlclose(library);
    return absl::UnavailableError(
        absl::StrCat(path, " does not speak backend ABI version ",
                     CORRAL_BACKEND_ABI_VERSION));
  }
  bv1::PluginConfig config;
  config.set_runtime_dir(absl::StrCat(options_.runtime_dir, "/", runtime));
  config.set_agent_path(options_.agent_path);
  config.set_plugin_dir(options_.plugin_dir);
  config.set_instance_id(options_.instance_id);
  if (auto it = options_.options.find(runtime); it != options_.options.end()) {
    config.mutable_options()->insert(it->second.begin(), it->second.end());
  }
  std::error_code error;
  std::filesystem::create_directories(config.runtime_dir(), error);
  ::chmod(config.runtime_dir().c_str(), 0700);
  auto backend =
      std::make_unique<Backend>(runtime, table, library, std::move(config));
  Backend* raw = backend.get();
  loaded_[runtime] = std::move(backend);
  library_fds_.push_back(std::move(file));
  corral::Logger("plugins")->info("loaded runtime {} {} from {}", runtime,
                                  table->version ? table->version : "", path);
  return raw;
}

RuntimeInfo PluginHost::Probe(const std::string& runtime) {
  const int64_t now = absl::GetCurrentTimeNanos();
  {
    std::lock_guard lock(mutex_);
    if (auto it = probes_.find(runtime);
        it != probes_.end() && now - it->second.at_ns < kProbeCacheNs) {
      return it->second.info;
    }
  }
  RuntimeInfo info;
  info.name = runtime;
  auto backend = Get(runtime);
  if (!backend.ok()) {
    info.reason = std::string(backend.status().message());
  } else {
    auto probe = (*backend)->Probe();
    if (!probe.ok()) {
      info.reason = absl::StrCat("probe failed: ", probe.status().message());
    } else {
      info.available = probe->available();
      info.reason = probe->reason();
      info.guarantees.assign(probe->guarantees().begin(),
                             probe->guarantees().end());
      info.details.insert(probe->details().begin(), probe->details().end());
    }
  }
  std::lock_guard lock(mutex_);
  probes_[runtime] = CachedProbe{info, now};
  return info;
}

}  // namespace corral::daemon
