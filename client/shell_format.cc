#include "client/shell_format.h"

#include <string.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/format.h"
#include "client/workspace_format.h"

namespace corral::cli {
namespace {

constexpr int kMaxSignal = 64;

std::string TerminalSizeText(const corral::v1::TerminalSize& size) {
  // 0 is the daemon's default, 24x80.
  return absl::StrCat(size.rows() != 0 ? size.rows() : 24, "x",
                      size.columns() != 0 ? size.columns() : 80);
}

}  // namespace

absl::StatusOr<int> ParseSignal(absl::string_view text) {
  int number = 0;
  if (absl::SimpleAtoi(text, &number)) {
    if (number >= 1 && number <= kMaxSignal) return number;
  } else {
    std::string name = absl::AsciiStrToUpper(text);
    if (absl::string_view(name).substr(0, 3) == "SIG") name.erase(0, 3);
    for (int number = 1; number <= kMaxSignal; ++number) {
      const char* known = ::sigabbrev_np(number);
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

std::string ShellState(const corral::v1::Shell& shell) {
  if (shell.running()) return "running";
  if (shell.signal() > 0) return "killed " + SignalName(shell.signal());
  return absl::StrCat("exited ", shell.exit_code());
}

std::string FormatShells(const corral::v1::ListShellsResponse& response,
                         int64_t now_seconds) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::Shell& shell : response.shells()) {
    // Whoever opened the shell chose its argv: escaped, so that it cannot
    // drive the terminal of whoever lists it.
    const std::string command =
        shell.argv().empty() ? std::string("/bin/sh -i")
                             : EscapeControl(absl::StrJoin(shell.argv(), " "));
    const std::string created =
        shell.has_created_at()
            ? FormatRelative(shell.created_at().seconds() - now_seconds)
            : std::string("-");
    rows.push_back({shell.shell_id(), command, ShellState(shell),
                    TerminalSizeText(shell.size()),
                    FormatBytes(shell.output_end()), created});
  }
  return FormatTable({"SHELL", "COMMAND", "STATE", "SIZE", "OUTPUT", "CREATED"},
                     rows);
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
