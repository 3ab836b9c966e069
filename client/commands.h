// The corral command line: flag definitions (CLI11), dispatch to each
// command, and the one place where an error of corral becomes exit code 125.
#ifndef CORRAL_CLIENT_COMMANDS_H_
#define CORRAL_CLIENT_COMMANDS_H_

#include <string>
#include <vector>

namespace corral::cli {

// The client's version, from the project version in CMake.
const char* ClientVersion();

// Arguments split at the first "--": what CLI11 parses, and the command for
// `run`/`exec` (everything after "--", verbatim).
struct SplitArguments {
  std::vector<std::string> options;
  std::vector<std::string> command;
  bool has_separator = false;
};
// `args` excludes the program name.
SplitArguments SplitAtSeparator(const std::vector<std::string>& args);

// Parses `args` (without the program name), runs the command, and returns the
// process's exit code: the command's for run/exec, 0/1 for doctor, 125 for
// errors of corral itself.
int RunCli(const std::vector<std::string>& args);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_COMMANDS_H_
