#include "client/shell_format.h"

#include <string.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/format.h"
#include "corral/linux_signals.h"

namespace corral::cli {
namespace {

constexpr int kMaxSignal = kLinuxMaxSignal;

}  // namespace

absl::StatusOr<int> ParseSignal(absl::string_view text) {
  int number = 0;
  if (absl::SimpleAtoi(text, &number)) {
    if (number >= 1 && number <= kMaxSignal) return number;
  } else {
    std::string name = absl::AsciiStrToUpper(text);
    if (absl::string_view(name).substr(0, 3) == "SIG") name.erase(0, 3);
    for (int number = 1; number <= kMaxSignal; ++number) {
      const char* known = LinuxSignalAbbrev(number);
      if (known != nullptr && name == known) return number;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown signal '", text,
                   "' (a name such as TERM, INT, KILL, HUP, or a number from "
                   "1 to ",
                   kMaxSignal, ")"));
}

int ShellExitCode(int exit_code, int signal_number) {
  if (signal_number > 0) return 128 + signal_number;
  return exit_code & 0xff;
}

std::string FormatShellReadJson(const corral::v1::ReadShellResponse& response) {
  return absl::StrCat(
      "{\"output\":", JsonString(response.output()), ",\"output_base64\":\"",
      absl::Base64Escape(response.output()),
      "\",\"offset\":", response.offset(),
      ",\"next_cursor\":", response.next_cursor(),
      ",\"missed\":", response.missed(),
      ",\"exited\":", response.exited() ? "true" : "false", "}\n");
}

}  // namespace corral::cli
