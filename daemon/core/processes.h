// Processes that run in a sandbox detached from any client: background
// commands (Exec.StartProcess) and interactive shells on a pseudo-terminal
// (the Shells service). corrald keeps each one's output in an OutputLog (a
// bounded ring with growing byte offsets, mirrored to a file), so clients
// can leave and come back without losing or repeating what the ring still
// holds. A pump thread per process moves the agent's output into the log and
// acknowledges it to the agent only once written; the agent keeps what was
// not acknowledged. The commands are detached in the agent (detach_key), so
// after a daemon restart Recover takes each one up again where the log
// ends.
#ifndef CORRAL_DAEMON_CORE_PROCESSES_H_
#define CORRAL_DAEMON_CORE_PROCESSES_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corral/v1/exec.pb.h"
#include "corral/v1/shells.pb.h"
#include "daemon/core/output_log.h"
#include "daemon/core/sandbox_manager.h"

namespace corral::daemon {

struct ProcessLimits {
  OutputLimits output;
  // Processes per sandbox, shells included.
  uint32_t max_per_sandbox = 32;
  // How long a write may wait for a shell that does not read its input.
  absl::Duration input_timeout = absl::Seconds(5);
};

// Whether `proc_net_tcp` (the text of /proc/net/tcp or tcp6) has a socket
// listening on TCP `port`. Exposed for tests.
bool ListensOn(absl::string_view proc_net_tcp, uint32_t port);

class Processes {
 public:
  // State lives in `dir` (<state>/processes): per sandbox a directory, per
  // process its record (<id>.meta) and its output (<id>.log).
  Processes(SandboxManager* sandboxes, std::string dir, ProcessLimits limits);
  // Like Shutdown.
  ~Processes();

  // Takes up the processes a previous daemon left: their records and
  // output are loaded, and the running ones are resumed through their
  // sandboxes' agents from where their output ends. Processes of sandboxes
  // that are gone are forgotten; detached commands an agent holds that no
  // record names are killed. Call once, after SandboxManager::Recover,
  // before serving.
  absl::Status Recover();
  // Stops every pump and lets go of the commands without killing them (the
  // agents keep them and what was not stored), for the next daemon.
  void Shutdown();

  // ---- Background processes (Exec service) ----
  absl::StatusOr<corral::v1::Process> Start(
      const Caller& caller, const corral::v1::StartProcessRequest& request);
  absl::StatusOr<corral::v1::Process> GetProcess(const Caller& caller,
                                                 const std::string& sandbox_id,
                                                 const std::string& name);
  absl::StatusOr<corral::v1::ListProcessesResponse> ListProcesses(
      const Caller& caller, const std::string& sandbox_id);
  // Output from the request's cursor; waits until there is some, the
  // process has exited, or `deadline` passes.
  absl::StatusOr<corral::v1::ReadProcessResponse> ReadProcess(
      const Caller& caller, const corral::v1::ReadProcessRequest& request,
      absl::Time deadline);
  absl::StatusOr<corral::v1::Process> SignalProcess(
      const Caller& caller, const corral::v1::SignalProcessRequest& request);
  absl::StatusOr<corral::v1::Process> RemoveProcess(
      const Caller& caller, const std::string& sandbox_id,
      const std::string& name);
  // Stdin of a process started with stdin_open.
  absl::Status WriteProcess(const Caller& caller,
                            const corral::v1::WriteProcessRequest& request);

  // ---- Shells (Shells service): processes on a pty ----
  absl::StatusOr<corral::v1::Shell> OpenShell(
      const Caller& caller, const corral::v1::OpenShellRequest& request);
  // Like ReadProcess for a shell, with the output in one piece.
  absl::StatusOr<corral::v1::ReadShellResponse> ReadShell(
      const Caller& caller, const corral::v1::ReadShellRequest& request,
      absl::Time deadline);
  absl::Status WriteShell(const Caller& caller,
                          const corral::v1::WriteShellRequest& request);
  absl::StatusOr<corral::v1::Shell> ResizeShell(
      const Caller& caller, const corral::v1::ResizeShellRequest& request);
  absl::StatusOr<corral::v1::Shell> SignalShell(
      const Caller& caller, const corral::v1::SignalShellRequest& request);
  // SIGHUP, then the process is killed and forgotten.
  absl::StatusOr<corral::v1::Shell> CloseShell(
      const Caller& caller, const corral::v1::CloseShellRequest& request);
  absl::StatusOr<corral::v1::ListShellsResponse> ListShells(
      const Caller& caller, const std::string& sandbox_id);
  absl::StatusOr<corral::v1::Shell> GetShell(const Caller& caller,
                                             const std::string& sandbox_id,
                                             const std::string& shell_id);

  // Kills and forgets the processes of a sandbox that went away.
  void ForgetSandbox(const std::string& sandbox_id);

 private:
  struct Entry;
  using EntryPtr = std::shared_ptr<Entry>;

  // By id or tag; a shell-only lookup says "no shell" for other processes.
  absl::StatusOr<EntryPtr> Find(const Caller& caller,
                                const std::string& sandbox_id,
                                const std::string& name, bool shell);
  absl::StatusOr<EntryPtr> Launch(const Caller& caller,
                                  const corral::v1::ExecStart& exec,
                                  const std::string& tag, bool pty,
                                  const corral::v1::TerminalSize& size,
                                  uint32_t timeout_seconds);
  absl::Status Resume(const EntryPtr& entry, AgentConnection& agent);
  // Input for a shell's terminal or a process's stdin; `what` names it in
  // errors.
  absl::Status WriteInput(const EntryPtr& entry, const std::string& input,
                          bool eof, const std::string& what);
  absl::StatusOr<OutputLog::Slice> Read(const EntryPtr& entry, uint64_t cursor,
                                        uint32_t max_bytes, absl::Time deadline,
                                        bool* exited);
  absl::Status SendSignal(const EntryPtr& entry, int signal);
  // Readiness of a background process started with a check (Start).
  void SetReadiness(const EntryPtr& entry, corral::v1::Readiness readiness,
                    const std::string& error);
  absl::Status WaitReady(const Caller& caller, const EntryPtr& entry,
                         const corral::v1::ReadinessCheck& check);
  // One try of `check`: whether it holds (else *why says what was seen).
  absl::StatusOr<bool> Probe(const Caller& caller,
                             const std::string& sandbox_id,
                             const corral::v1::ReadinessCheck& check,
                             std::string* why);
  void Drop(const EntryPtr& entry);
  std::string SandboxDir(const std::string& sandbox_id) const;
  static corral::v1::Process View(Entry& entry);
  static corral::v1::Shell ShellView(Entry& entry);
  static void Pump(Entry* entry);
  // Stops the pump; `kill` ends the command, otherwise the agent keeps it.
  static void Stop(const EntryPtr& entry, bool kill);
  static void StopAll(const std::vector<EntryPtr>& entries, bool kill);

  SandboxManager* const sandboxes_;  // not owned
  const std::string dir_;
  const ProcessLimits limits_;
  std::mutex mutex_;
  // sandbox id -> process id -> process
  std::map<std::string, std::map<std::string, EntryPtr>> entries_;
  bool shut_down_ = false;  // guarded by mutex_
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_PROCESSES_H_
