#include "client/command_support.h"

#include <unistd.h>

#include <ctime>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/format.h"
#include "client/output.h"
#include "corral/status_macros.h"

namespace corral::cli {

int64_t NowSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

absl::Status Print(absl::string_view text) {
  return WriteAll(STDOUT_FILENO, text);
}

absl::Status PrintMessage(const google::protobuf::Message& message) {
  ASSIGN_OR_RETURN(const std::string json, ToJson(message));
  return Print(json);
}

absl::Status PrintSandboxId(const corral::v1::Sandbox& sandbox, bool json) {
  return json ? PrintMessage(sandbox) : Print(absl::StrCat(sandbox.id(), "\n"));
}

}  // namespace corral::cli
