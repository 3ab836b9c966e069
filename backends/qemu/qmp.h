// A client of QEMU's machine protocol (QMP) on a VM's monitor socket: pause
// and resume, and saving the whole machine (a migration into a file). QMP
// is JSON, one message per line; the server greets, then answers each
// command with "return" or "error", with events ({"event": ...}) in
// between, which this client skips.
#ifndef CORRAL_BACKENDS_QEMU_QMP_H_
#define CORRAL_BACKENDS_QEMU_QMP_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corral/unique_fd.h"
#include "nlohmann/json.hpp"

namespace corral::qemu_runtime {

class QmpClient {
 public:
  // Connects to <sandbox_dir>/<socket>, reads the greeting and leaves the
  // capabilities negotiation. Every later call must finish by `deadline`.
  [[nodiscard]] static absl::StatusOr<QmpClient> Connect(
      const std::string& sandbox_dir, const std::string& socket,
      absl::Time deadline);

  // The same on a connected socket (a socketpair end QEMU got as its
  // monitor chardev).
  [[nodiscard]] static absl::StatusOr<QmpClient> Adopt(UniqueFd fd,
                                                       absl::Time deadline);
  // Moves the deadline of later calls (a long-lived client).
  void set_deadline(absl::Time deadline) { deadline_ = deadline; }

  // Runs `command` with `arguments` (null: none), passing `fd` with the
  // message when >= 0 (QMP's getfd takes one that way). The "return" value,
  // or INTERNAL with QEMU's error class and description.
  [[nodiscard]] absl::StatusOr<nlohmann::json> Execute(
      const std::string& command,
      const nlohmann::json& arguments = nlohmann::json(), int fd = -1);

 private:
  QmpClient(UniqueFd fd, absl::Time deadline)
      : fd_(std::move(fd)), deadline_(deadline) {}
  // The next message that is not an event.
  absl::StatusOr<nlohmann::json> Read();

  UniqueFd fd_;
  absl::Time deadline_;
  std::string buffer_;
};

}  // namespace corral::qemu_runtime

#endif  // CORRAL_BACKENDS_QEMU_QMP_H_
