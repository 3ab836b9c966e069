// What the linux runtime remembers about one sandbox across daemon restarts
// (SandboxHandle.state): the init's pid and start time, its cgroups, its
// runtime directory. Serialized as "key=value" lines, versioned.
#ifndef CORRAL_BACKENDS_LINUX_SANDBOX_STATE_H_
#define CORRAL_BACKENDS_LINUX_SANDBOX_STATE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "backends/linux/cgroups.h"

namespace corral::linux_runtime {

struct SandboxState {
  std::string id;
  // The sandbox's init (the agent, PID 1 inside) as the host sees it, and its
  // start time (/proc/<pid>/stat field 22): a pid alone may be reused.
  pid_t init_pid = 0;
  uint64_t init_start_time = 0;
  bool user_namespace = false;
  // <runtime_dir>/<id>, holding agent.sock.
  std::string sandbox_dir;
  SandboxCgroups cgroups;

  [[nodiscard]] std::string SocketPath() const {
    return sandbox_dir + "/agent.sock";
  }

  [[nodiscard]] std::string Serialize() const;
  // INVALID_ARGUMENT for text this version did not write (unknown version,
  // missing or malformed fields, paths that are not absolute).
  [[nodiscard]] static absl::StatusOr<SandboxState> Parse(
      absl::string_view text);
};

// The "key=value" lines of a runtime's record (this one, the oci and qemu
// runtimes' records); INVALID_ARGUMENT naming `what` for a line without a
// key or a key given twice.
using RecordValues = std::map<std::string, std::string, std::less<>>;
[[nodiscard]] absl::StatusOr<RecordValues> ParseRecordLines(
    absl::string_view text, absl::string_view what);

}  // namespace corral::linux_runtime

#endif  // CORRAL_BACKENDS_LINUX_SANDBOX_STATE_H_
