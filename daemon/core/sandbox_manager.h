// The core lifecycle of sandboxes: create, exec, extend, delete, the TTL
// reaper, and recovery after a daemon restart. Everything above it (the RPC
// layer) translates; everything below it (store, images, backends, agent
// connections) does one job each.
#ifndef CORRAL_DAEMON_CORE_SANDBOX_MANAGER_H_
#define CORRAL_DAEMON_CORE_SANDBOX_MANAGER_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corral/v1/exec.pb.h"
#include "corral/v1/sandboxes.pb.h"
#include "daemon/agent/agent_connection.h"
#include "daemon/core/backend.h"
#include "daemon/core/lifecycle.h"
#include "daemon/core/spec.h"

namespace corral::net {
class Egress;
}  // namespace corral::net

namespace corral::daemon {

class Store;
class ImageStore;
class HostRegistry;

// The command log keeps at most this much of each command's stdout and
// stderr (the totals are always recorded).
inline constexpr size_t kCommandLogOutputBytes = 64u << 10;

struct CoreOptions {
  // Workspaces live in <state_dir>/workspaces/<id>.
  std::string state_dir;
  SpecRules rules;
  // Host uids given to sandboxes' root: [uid_base, uid_base + uid_count).
  uint32_t uid_base = 1'500'000'000;
  uint32_t uid_count = 65536;
  // This daemon instance (instance.h) and the host-wide registry where it
  // claims the host uids of its sandboxes; without a registry (tests of the
  // core alone) uids are unique within this store only. Not owned.
  std::string instance_id;
  const HostRegistry* registry = nullptr;
  uint32_t max_sandboxes = 1000;
  // How long a new sandbox's agent has to say hello.
  absl::Duration agent_hello_timeout = absl::Seconds(10);
  // How often the reaper looks for expired sandboxes and lost agents.
  absl::Duration reaper_interval = absl::Milliseconds(250);
  // Resolves the policy that applies to a caller.
  std::function<CallerPolicy(const Caller&)> resolve_policy;
  // Called after a sandbox was destroyed and its record removed (for the
  // workspace store's garbage collection).
  std::function<void(const std::string& id)> on_destroyed;
  // The egress path for sandboxes with network access; null when it could
  // not start, `egress_unavailable` saying why. Not owned.
  net::Egress* egress = nullptr;
  std::string egress_unavailable = "the daemon has no egress path";
};

// Runs once a new sandbox's agent is up, before the sandbox is RUNNING (a
// seed goes in here). A failure fails the create and removes everything.
using SandboxPreparer = std::function<absl::Status(
    AgentConnection& agent, const std::string& sandbox_id)>;

// A running sandbox's agent, for operations that go through it.
struct SandboxAccess {
  std::shared_ptr<AgentConnection> agent;
  corral::v1::Sandbox view;
};

// One command running in a sandbox, in API terms. Not thread-safe except
// that WriteStdin/Signal may be called from one other thread than Next.
class RunningCommand {
 public:
  RunningCommand(const RunningCommand&) = delete;
  RunningCommand& operator=(const RunningCommand&) = delete;
  ~RunningCommand();

  // The next event: started, then output chunks in order, then exit (the
  // last). UNAVAILABLE when the sandbox's agent went away.
  absl::StatusOr<corral::v1::ExecStreamResponse> Next(
      absl::Time deadline = absl::InfiniteFuture());
  absl::Status WriteStdin(std::string_view data, bool eof);
  absl::Status Signal(int signal);
  const std::string& sandbox_id() const { return sandbox_id_; }

 private:
  friend class SandboxManager;
  RunningCommand() = default;

  class SandboxManager* manager_ = nullptr;  // not owned; outlives commands
  std::string sandbox_id_;
  std::vector<std::string> argv_;
  std::unique_ptr<ExecSession> session_;
  Backend* backend_ = nullptr;  // not owned
  corral::backend::v1::SandboxHandle handle_;
  uint64_t oom_kills_before_ = 0;
  bool oom_known_ = false;
  uint64_t offsets_[3] = {0, 0, 0};
  uint64_t next_sequence_ = 0;  // of the next OutputChunk
  // The first bytes of stdout and stderr, for the command log.
  std::string kept_[3];
  std::string cwd_;
  absl::Time started_at_;
  bool finished_ = false;
  // Counted among its sandbox's running commands (until destroyed).
  bool counted_ = false;
};

class SandboxManager {
 public:
  // None of the pointers is owned; all must outlive the manager.
  static absl::StatusOr<std::unique_ptr<SandboxManager>> Create(
      CoreOptions options, Store* store, ImageStore* images,
      PluginHost* plugins);
  ~SandboxManager();

  // Brings the host and the store into agreement after a (re)start: re-attaches
  // every running sandbox the store knows, destroys the ones that cannot be
  // re-attached or were half-made, and has every runtime remove host leftovers
  // the store does not know. Call once, before serving.
  absl::Status Recover();
  // Starts the reaper thread (TTL expiry, lost agents).
  void StartReaper();
  // Stops the reaper and drops agent connections. Sandboxes keep running, so
  // that the next daemon re-attaches them.
  void Shutdown();

  // `memory`, when not empty, is a saved state (SaveMemory) of a sandbox of
  // the same runtime: the new sandbox starts from it instead of booting.
  absl::StatusOr<corral::v1::Sandbox> CreateSandbox(
      const Caller& caller, const corral::v1::CreateSandboxRequest& request,
      const SandboxPreparer& prepare = nullptr, const std::string& memory = "");
  // Runs Recover's last step, after Processes::Recover: a sandbox that was
  // paused when the daemon stopped is resumed for as long as its agent and
  // processes are taken up again (a daemon cannot reach a paused guest),
  // then paused again.
  void FinishRecovery();

  // Pauses or resumes every process of a sandbox (runtimes that guarantee
  // PAUSE; FAILED_PRECONDITION naming the guarantee otherwise).
  absl::StatusOr<corral::v1::Sandbox> PauseSandbox(const Caller& caller,
                                                   const std::string& id);
  absl::StatusOr<corral::v1::Sandbox> ResumeSandbox(const Caller& caller,
                                                    const std::string& id);
  // Saves a running sandbox's whole state under `name` through its runtime
  // (MEMORY_SNAPSHOT); the opaque state for CreateSandbox's `memory`.
  absl::StatusOr<corral::backend::v1::SaveMemoryResponse> SaveMemory(
      const Caller& caller, const std::string& id, const std::string& name);
  // Removes a state SaveMemory made for sandbox `id`.
  absl::Status DeleteMemory(const Caller& caller, const std::string& id,
                            const std::string& state);
  // The agent of a running sandbox the caller may see, for `action`
  // (FAILED_PRECONDITION when the state does not allow it). Counts as the
  // sandbox's activity (idle timeouts) unless `activity` is false (the
  // daemon's own work, such as taking up processes after a restart).
  absl::StatusOr<SandboxAccess> Access(const Caller& caller,
                                       const std::string& id, Action action,
                                       bool activity = true);
  absl::StatusOr<corral::v1::Sandbox> GetSandbox(const Caller& caller,
                                                 const std::string& id);
  absl::StatusOr<std::vector<corral::v1::Sandbox>> ListSandboxes(
      const Caller& caller, const corral::v1::ListSandboxesRequest& request);
  absl::Status DeleteSandbox(const Caller& caller, const std::string& id);
  absl::StatusOr<corral::v1::Sandbox> ExtendSandbox(const Caller& caller,
                                                    const std::string& id,
                                                    uint64_t ttl_seconds);
  absl::StatusOr<std::unique_ptr<RunningCommand>> StartExec(
      const Caller& caller, const corral::v1::ExecStart& request);
  // Starts a command planned like StartExec's, then changed by `adjust`, as
  // a bare agent session (no command log, no OOM check): for shells.
  absl::StatusOr<std::unique_ptr<ExecSession>> StartSession(
      const Caller& caller, const corral::v1::ExecStart& request,
      const std::function<void(corral::agent::v1::ExecStart&)>& adjust);

  // The caller would hold more than its storage quota (workspace disks,
  // snapshots, memory snapshots) with `more_bytes` more: RESOURCE_EXHAUSTED
  // naming the quota, its value and `what`. Admins have no quota.
  absl::Status CheckStorageQuota(const Caller& caller, uint64_t more_bytes,
                                 const std::string& what);
  // Something happened in sandbox `id` (a background process's input or
  // output): it is not idle.
  void NoteActivity(const std::string& id);

  // Sandboxes by state name, for health.
  std::map<std::string, uint32_t> CountByState();
  const SpecRules& rules() const { return options_.rules; }

 private:
  friend class RunningCommand;
  struct Live;

  SandboxManager(CoreOptions options, Store* store, ImageStore* images,
                 PluginHost* plugins)
      : options_(std::move(options)),
        store_(store),
        images_(images),
        plugins_(plugins) {}

  // Gives a destroyed sandbox's host uid back to the registry.
  void ReleaseHostUid(uint32_t uid) const;
  // Bytes `uid` holds: its sandboxes' disks, snapshots and memory snapshots.
  absl::StatusOr<uint64_t> StorageBytesOf(uid_t uid);
  // A command starts (+1) or ends (-1) in sandbox `id` (0: something else
  // happened there); either way it is active now.
  void CommandStarted(const std::string& id, int delta);
  // The view of a sandbox with its last activity; live's mutex held.
  corral::v1::Sandbox ViewOf(const Live& live) const;
  // Destroys the sandbox when it has been idle for its idle timeout, and
  // writes its last activity to the store now and then.
  void CheckIdle(const std::shared_ptr<Live>& live);
  // The caller's policy: resolved with the connection, or now.
  CallerPolicy PolicyOf(const Caller& caller) const;
  // Finds a sandbox the caller may see; NOT_FOUND otherwise, so that other
  // users' sandboxes are not even revealed to exist.
  absl::StatusOr<std::shared_ptr<Live>> Find(const Caller& caller,
                                             const std::string& id);
  // Destroys a sandbox's processes and host resources and removes it from the
  // store. `event` says why ("deleted", "expired").
  absl::Status Destroy(const std::shared_ptr<Live>& live,
                       const std::string& event);
  // Destroy's part under the sandbox's lock; *destroyed says it went now.
  absl::Status DestroyLocked(const std::shared_ptr<Live>& live,
                             const std::string& event, bool* destroyed);
  // Marks a running sandbox whose agent went away as failed and tears down
  // its processes; the record stays until deleted or expired.
  void MarkFailed(const std::shared_ptr<Live>& live, const std::string& why);
  void CheckAgent(const std::shared_ptr<Live>& live);
  // PauseSandbox (action kPause) and ResumeSandbox (kResume).
  absl::StatusOr<corral::v1::Sandbox> ChangePause(const Caller& caller,
                                                  const std::string& id,
                                                  Action action);
  // OK when the sandbox has `guarantee`; FAILED_PRECONDITION saying it
  // cannot do `what` otherwise.
  absl::Status RequireGuarantee(const corral::v1::Sandbox& view,
                                corral::v1::Guarantee guarantee,
                                const char* what) const;
  void ReaperLoop();
  void RecordCommand(const RunningCommand& command,
                     const corral::v1::ExecExit& exit);

  const CoreOptions options_;
  Store* const store_;         // not owned
  ImageStore* const images_;   // not owned
  PluginHost* const plugins_;  // not owned

  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Live>> live_;  // guarded by mutex_
  std::mutex create_mutex_;  // serializes the max_sandboxes check

  std::mutex reaper_mutex_;
  std::condition_variable reaper_wake_;
  bool stopping_ = false;  // guarded by reaper_mutex_
  std::thread reaper_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_SANDBOX_MANAGER_H_
