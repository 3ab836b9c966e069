#include "daemon/core/lifecycle.h"

#include "absl/strings/str_cat.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;

struct Rule {
  v1::SandboxState state;
  bool exec, extend, del, stop, start, pause, resume;
};

// clang-format off
constexpr Rule kRules[] = {
  //  state                         exec   extend delete stop   start  pause  resume
  {v1::SANDBOX_STATE_CREATING,      false, true,  true,  false, false, false, false},
  {v1::SANDBOX_STATE_RUNNING,       true,  true,  true,  true,  false, true,  false},
  {v1::SANDBOX_STATE_STOPPED,       false, true,  true,  false, true,  false, false},
  {v1::SANDBOX_STATE_PAUSED,        false, true,  true,  true,  false, false, true},
  {v1::SANDBOX_STATE_DELETING,      false, false, true,  false, false, false, false},
  {v1::SANDBOX_STATE_FAILED,        false, true,  true,  false, false, false, false},
};
// clang-format on

}  // namespace

const char* ActionName(Action action) {
  switch (action) {
    case Action::kExec:
      return "exec";
    case Action::kExtend:
      return "extend";
    case Action::kDelete:
      return "delete";
    case Action::kStop:
      return "stop";
    case Action::kStart:
      return "start";
    case Action::kPause:
      return "pause";
    case Action::kResume:
      return "resume";
  }
  return "?";
}

bool Allows(v1::SandboxState state, Action action) {
  for (const Rule& rule : kRules) {
    if (rule.state != state) continue;
    switch (action) {
      case Action::kExec:
        return rule.exec;
      case Action::kExtend:
        return rule.extend;
      case Action::kDelete:
        return rule.del;
      case Action::kStop:
        return rule.stop;
      case Action::kStart:
        return rule.start;
      case Action::kPause:
        return rule.pause;
      case Action::kResume:
        return rule.resume;
    }
  }
  return false;
}

absl::Status CheckAllowed(const v1::Sandbox& sandbox, Action action) {
  if (Allows(sandbox.state(), action)) return absl::OkStatus();
  std::string state = v1::SandboxState_Name(sandbox.state());
  constexpr std::string_view kPrefix = "SANDBOX_STATE_";
  if (state.rfind(kPrefix, 0) == 0) state = state.substr(kPrefix.size());
  for (char& c : state) c = static_cast<char>(std::tolower(c));
  std::string detail = sandbox.failure().empty()
                           ? ""
                           : absl::StrCat(" (", sandbox.failure(), ")");
  return absl::FailedPreconditionError(
      absl::StrCat("sandbox ", sandbox.id(), " is ", state, detail, ": ",
                   ActionName(action), " is not allowed in that state"));
}

}  // namespace corral::daemon
