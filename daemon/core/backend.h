// The daemon's view of a runtime: the C++ interface over a plugin's C table
// (backends/include/corral/backend_abi.h), and the loader that opens a
// runtime's shared object the first time a sandbox of that runtime is needed.
#ifndef CORRAL_DAEMON_CORE_BACKEND_H_
#define CORRAL_DAEMON_CORE_BACKEND_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/backend_abi.h"
#include "corral/unique_fd.h"

namespace corral::daemon {

// A created or re-attached sandbox as the backend hands it back.
struct BackendSandbox {
  corral::backend::v1::SandboxHandle handle;
  std::vector<int> guarantees;                 // corral.v1.Guarantee numbers
  std::map<std::string, std::string> details;  // Sandbox.runtime_details
  UniqueFd agent_fd;  // connected to the sandbox's agent
  // CreateResponse.netns_to_link: the sandbox's own network namespace, for
  // the daemon to link to its egress path.
  std::string netns_to_link;
};

// One loaded runtime plugin. Thread-safe: calls go straight to the plugin,
// which serializes what it must.
class Backend {
 public:
  // Takes the plugin's table; `library` is the dlopen handle, kept open for
  // the daemon's lifetime (plugins are never unloaded).
  Backend(std::string name, const corral_backend_v1* table, void* library,
          corral::backend::v1::PluginConfig config);

  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& name() const { return name_; }
  const corral::backend::v1::PluginConfig& config() const { return config_; }

  [[nodiscard]] absl::StatusOr<corral::backend::v1::ProbeResponse> Probe();
  // Checks the runtime's [runtimes.<name>] options alone: INVALID_ARGUMENT
  // with the plugin's message when it refuses them.
  [[nodiscard]] absl::Status CheckConfig();
  // `memory`, when not empty, is a state SaveMemory returned: the sandbox
  // starts from it instead of booting.
  [[nodiscard]] absl::StatusOr<BackendSandbox> Create(
      const corral::backend::v1::SandboxSpec& spec,
      const std::string& memory = "");
  // Reconnects to a sandbox made earlier; an invalid agent_fd means the
  // sandbox is gone and `reason` says why.
  [[nodiscard]] absl::StatusOr<BackendSandbox> Attach(
      const corral::backend::v1::SandboxHandle& handle, std::string* reason);
  [[nodiscard]] absl::Status Destroy(
      const corral::backend::v1::SandboxHandle& handle);
  [[nodiscard]] absl::StatusOr<corral::backend::v1::StatsResponse> Stats(
      const corral::backend::v1::SandboxHandle& handle);
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> Reconcile(
      const std::vector<std::string>& known_ids);
  // For `corrald --cleanup-orphans`: removes the host objects of every
  // daemon instance but `live_instances` (ReconcileRequest.orphans), or of
  // `only_instance` alone when it is not empty; the "<instance>/<sandbox>"
  // ids removed.
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> RemoveOrphans(
      const std::vector<std::string>& live_instances,
      const std::string& only_instance = "");
  // The optional operations: UNIMPLEMENTED from a runtime without them.
  [[nodiscard]] absl::Status Pause(
      const corral::backend::v1::SandboxHandle& handle);
  [[nodiscard]] absl::Status Resume(
      const corral::backend::v1::SandboxHandle& handle);
  [[nodiscard]] absl::StatusOr<corral::backend::v1::SaveMemoryResponse>
  SaveMemory(const corral::backend::v1::SandboxHandle& handle,
             const std::string& name);
  [[nodiscard]] absl::Status DeleteMemory(
      const corral::backend::v1::SandboxHandle& handle,
      const std::string& state);

 private:
  // Calls one table entry with a serialized request, parses the response.
  absl::Status Call(corral_backend_call call, const char* operation,
                    const google::protobuf::MessageLite& request,
                    google::protobuf::MessageLite* response,
                    UniqueFd* agent_fd);
  // Sends `request` (its config filled in here) to reconcile; the ids it
  // removed.
  absl::StatusOr<std::vector<std::string>> CallReconcile(
      corral::backend::v1::ReconcileRequest request);

  const std::string name_;
  const corral_backend_v1* const table_;  // owned by the plugin
  void* const library_;                   // dlopen handle, never closed
  const corral::backend::v1::PluginConfig config_;
};

// What the daemon knows about a runtime before or after loading it.
struct RuntimeInfo {
  std::string name;
  bool available = false;
  std::string reason;
  std::vector<int> guarantees;
  std::map<std::string, std::string> details;
};

// Finds runtime plugins in one root-owned directory and loads each on first
// use. Thread-safe.
class PluginHost {
 public:
  struct Options {
    std::string plugin_dir;   // where <runtime>.so live
    std::string agent_path;   // static corral-agent
    std::string runtime_dir;  // <state>/runtime; one subdirectory per runtime
    // This daemon instance's identity (PluginConfig.instance_id).
    std::string instance_id;
    // [runtimes.<name>] tables of the config file.
    std::map<std::string, std::map<std::string, std::string>> options;
  };

  // Checks the plugin directory (exists; when the daemon runs as root it must
  // be root-owned and not writable by group or others, since a plugin runs
  // with the daemon's privileges). Then every [runtimes.<name>] table of the
  // options must name a runtime with a plugin that accepts its options
  // (INVALID_ARGUMENT otherwise: a typo must not silently fall back to a
  // default).
  static absl::StatusOr<std::unique_ptr<PluginHost>> Create(Options options);

  // The runtimes the design names plus any plugin found in the directory.
  std::vector<std::string> KnownRuntimes() const;

  // Loads (once) and returns the runtime's backend. NOT_FOUND for a name no
  // plugin file exists for, UNAVAILABLE when loading fails. The file is
  // opened once (O_NOFOLLOW), checked through that fd (a regular file; as
  // root: owned by root and not writable by group or others, in a directory
  // that is too) and loaded from that same fd, so it cannot be swapped
  // between the check and the load.
  absl::StatusOr<Backend*> Get(const std::string& runtime);

  // Loads and probes the runtime; caches the answer for a few seconds so that
  // every create does not re-probe.
  RuntimeInfo Probe(const std::string& runtime);

 private:
  PluginHost(Options options, UniqueFd dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}

  const Options options_;
  const UniqueFd dir_;  // the plugin directory, opened once at Create
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Backend>> loaded_;  // guarded by mutex_
  // The files the loaded plugins came from, open for the daemon's life
  // (see Get); guarded by mutex_.
  std::vector<UniqueFd> library_fds_;
  struct CachedProbe {
    RuntimeInfo info;
    int64_t at_ns = 0;
  };
  std::map<std::string, CachedProbe> probes_;  // guarded by mutex_
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_BACKEND_H_
