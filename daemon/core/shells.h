// Interactive shells: commands on a pseudo-terminal in a sandbox whose output
// corrald keeps in a bounded ring with growing byte offsets, so clients can
// leave and come back without losing or repeating what the ring still holds.
// A pump thread per shell moves the agent's output into the ring; clients
// read from cursors or wait for what comes next.
#ifndef CORRAL_DAEMON_CORE_SHELLS_H_
#define CORRAL_DAEMON_CORE_SHELLS_H_

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
#include "corral/v1/shells.pb.h"
#include "daemon/core/sandbox_manager.h"

namespace corral::daemon {

// The newest `capacity` bytes of a stream, addressed by absolute offsets.
// Not thread-safe.
class OutputRing {
 public:
  explicit OutputRing(size_t capacity) : buffer_(capacity) {}
  void Append(std::string_view data);
  // Offsets of the oldest byte kept and just past the newest.
  uint64_t start() const {
    return end_ > buffer_.size() ? end_ - buffer_.size() : 0;
  }
  uint64_t end() const { return end_; }
  struct Slice {
    std::string data;
    uint64_t offset = 0;  // of data's first byte
    uint64_t missed = 0;  // bytes before offset the ring no longer holds
  };
  // At most max_bytes from `cursor` (clamped to start()). OUT_OF_RANGE for
  // a cursor past end().
  absl::StatusOr<Slice> Read(uint64_t cursor, size_t max_bytes) const;

 private:
  std::vector<char> buffer_;
  uint64_t end_ = 0;
};

struct ShellLimits {
  size_t ring_bytes = 1 << 20;
  uint32_t max_per_sandbox = 32;
  // How long a write may wait for a shell that does not read its input.
  absl::Duration input_timeout = absl::Seconds(5);
};

class Shells {
 public:
  Shells(SandboxManager* sandboxes, ShellLimits limits)
      : sandboxes_(sandboxes), limits_(limits) {}
  // Ends every shell (their processes are killed).
  ~Shells();

  absl::StatusOr<corral::v1::Shell> Open(
      const Caller& caller, const corral::v1::OpenShellRequest& request);
  // Returns at once; empty output when nothing is new.
  absl::StatusOr<corral::v1::ReadShellResponse> Read(
      const Caller& caller, const corral::v1::ReadShellRequest& request);
  // Like Read, but waits until there is output past the cursor, the shell
  // has exited, or `deadline` passes.
  absl::StatusOr<corral::v1::ReadShellResponse> WaitRead(
      const Caller& caller, const corral::v1::ReadShellRequest& request,
      absl::Time deadline);
  absl::Status Write(const Caller& caller,
                     const corral::v1::WriteShellRequest& request);
  absl::StatusOr<corral::v1::Shell> Resize(
      const Caller& caller, const corral::v1::ResizeShellRequest& request);
  absl::StatusOr<corral::v1::Shell> Signal(
      const Caller& caller, const corral::v1::SignalShellRequest& request);
  absl::StatusOr<corral::v1::Shell> Close(
      const Caller& caller, const corral::v1::CloseShellRequest& request);
  absl::StatusOr<corral::v1::ListShellsResponse> List(
      const Caller& caller, const corral::v1::ListShellsRequest& request);
  // The shell as it is now (for an attached client's final status).
  absl::StatusOr<corral::v1::Shell> Get(const Caller& caller,
                                        const std::string& sandbox_id,
                                        const std::string& shell_id);

  // Drops the shells of a sandbox that went away.
  void ForgetSandbox(const std::string& sandbox_id);

 private:
  struct Shell;
  absl::StatusOr<std::shared_ptr<Shell>> Find(const Caller& caller,
                                              const std::string& sandbox_id,
                                              const std::string& shell_id);
  static corral::v1::Shell View(Shell& shell);
  static void Pump(Shell* shell);
  static void Stop(const std::shared_ptr<Shell>& shell);

  SandboxManager* const sandboxes_;  // not owned
  const ShellLimits limits_;
  std::mutex mutex_;
  // sandbox id -> shell id -> shell
  std::map<std::string, std::map<std::string, std::shared_ptr<Shell>>> shells_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_SHELLS_H_
