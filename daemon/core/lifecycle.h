// The sandbox lifecycle as a table: which action each state allows, and the
// named error for an action asked in the wrong state.
#ifndef CORRAL_DAEMON_CORE_LIFECYCLE_H_
#define CORRAL_DAEMON_CORE_LIFECYCLE_H_

#include "absl/status/status.h"
#include "corral/v1/sandboxes.pb.h"

namespace corral::daemon {

enum class Action { kExec, kExtend, kDelete, kStop, kStart, kPause, kResume };

const char* ActionName(Action action);

// Whether `state` allows `action`.
bool Allows(corral::v1::SandboxState state, Action action);

// OK, or FAILED_PRECONDITION naming the sandbox, its state (and failure) and
// the action.
absl::Status CheckAllowed(const corral::v1::Sandbox& sandbox, Action action);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_LIFECYCLE_H_
