// The command line of the FAKE CLIs (tests/fakes: Apple's `container`,
// Tart), parsed the way swift-argument-parser 1.8.2 parses their commands: long
// (`--name v`, `--name=v`) and short (`-n v`, packed `-di`) names, the
// value types checked while parsing, an argument with
// .captureForPassthrough taking everything from the first positional
// input on, and its usage errors (exit code 64):
//
//   Error: <message>
//   [Help:  <the option's help>]
//   Usage: <synopsis>
//     See '<command> --help' for more information.
//
// The synopsis follows UsageGenerator: every option and argument in
// declaration order, `[<options>]` standing for the optional ones when
// there are more than twelve.
#ifndef CORRAL_TESTS_FAKES_COMMON_FAKE_ARGS_H_
#define CORRAL_TESTS_FAKES_COMMON_FAKE_ARGS_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace corral::fakes {

enum class ValueType { kString, kInt, kInt32, kInt64, kUInt32, kChoice };

// One @Option or @Flag. `names` as declared ("-c", "--cpus"); the first
// long one is the preferred name of the synopsis.
struct OptionSpec {
  std::string key;
  std::vector<std::string> names;
  bool flag = false;
  bool repeating = false;
  std::string value_name;
  std::string help;
  ValueType type = ValueType::kString;
  std::vector<std::string> choices;  // kChoice
};

// One @Argument.
struct ArgumentSpec {
  std::string key;
  std::string value_name;
  std::string help;
  bool optional = false;
  bool repeating = false;
  bool passthrough = false;  // .captureForPassthrough
};

struct CommandSpec {
  std::string path;  // "container image load"
  // Options and arguments in declaration order.
  std::vector<OptionSpec> options;
  std::vector<ArgumentSpec> arguments;
  // Where each item stands in the declaration: 'o' option, 'a' argument.
  std::string order;
  std::string abstract;
};

class Parsed {
 public:
  bool Flag(const std::string& key) const { return flags_.count(key) > 0; }
  std::optional<std::string> Value(const std::string& key) const;
  std::vector<std::string> Values(const std::string& key) const;
  std::vector<std::string> Arguments(const std::string& key) const;
  std::optional<std::string> Argument(const std::string& key) const;

 private:
  friend Parsed Parse(const CommandSpec&, const std::vector<std::string>&);
  std::set<std::string> flags_;
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, std::vector<std::string>> arguments_;
};

// Throws CliExit on a usage error (64), and for --help (0).
Parsed Parse(const CommandSpec& spec, const std::vector<std::string>& args);

// The fake's directory ("tests/fakes/apple"), named by --help.
void SetFakeDirectory(const std::string& directory);

std::string Usage(const CommandSpec& spec);
// A usage error of `spec`: exit 64, the message, the usage.
[[noreturn]] void UsageError(const CommandSpec& spec,
                             const std::string& message,
                             const std::string& help = "");

}  // namespace corral::fakes

#endif  // CORRAL_TESTS_FAKES_COMMON_FAKE_ARGS_H_
