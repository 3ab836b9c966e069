// The argument parser of Firecracker and its jailer, as the fakes need it
// (Firecracker's src/utils/src/arg_parser.rs): "--name value" and
// "--flag" only (no "--name=value"), a value that starts with "--" counts
// as missing, and everything after "--" is kept as extra arguments. A FAKE
// for tests: see tests/fakes/README.md.
#ifndef CORRAL_TESTS_FAKES_FIRECRACKER_FAKE_ARGS_H_
#define CORRAL_TESTS_FAKES_FIRECRACKER_FAKE_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

namespace corral::fakes {

struct ArgSpec {
  std::set<std::string> flags;        // take no value
  std::set<std::string> values;       // take one value
  std::set<std::string> multi;        // take one value, may repeat
  std::vector<std::string> required;  // checked in this order
};

struct ParsedArgs {
  std::map<std::string, std::string> values;
  std::map<std::string, std::vector<std::string>> multi;
  std::set<std::string> flags;
  std::vector<std::string> extra;
  // Empty, or the parser's error in Firecracker's Display words and its
  // Debug form (for Firecracker's own "Error: ParseArguments(...)").
  std::string error;
  std::string debug;

  bool Has(const std::string& name) const {
    return values.count(name) != 0 || flags.count(name) != 0;
  }
  std::string Value(const std::string& name,
                    const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};

inline ParsedArgs ParseArgs(const ArgSpec& spec, int argc, char** argv) {
  ParsedArgs parsed;
  auto fail = [&](const std::string& error, const std::string& debug) {
    if (parsed.error.empty()) {
      parsed.error = error;
      parsed.debug = debug;
    }
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) parsed.extra.push_back(argv[i]);
      break;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      fail("Found argument '" + arg +
               "' which wasn't expected, or isn't valid in this context.",
           "UnexpectedArgument(\"" + arg + "\")");
      break;
    }
    const std::string name = arg.substr(2);
    if (spec.flags.count(name) != 0) {
      if (parsed.flags.count(name) != 0) {
        fail("The argument '" + name + "' was provided more than once.",
             "DuplicateArgument(\"" + name + "\")");
        break;
      }
      parsed.flags.insert(name);
      continue;
    }
    if (spec.values.count(name) == 0 && spec.multi.count(name) == 0) {
      fail("Found argument '" + name +
               "' which wasn't expected, or isn't valid in this context.",
           "UnexpectedArgument(\"" + name + "\")");
      break;
    }
    if (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0) {
      fail("The argument '" + name +
               "' requires a value, but none was "
               "supplied.",
           "MissingValue(\"" + name + "\")");
      break;
    }
    const std::string value = argv[++i];
    if (spec.multi.count(name) != 0) {
      parsed.multi[name].push_back(value);
      continue;
    }
    if (parsed.values.count(name) != 0) {
      fail("The argument '" + name + "' was provided more than once.",
           "DuplicateArgument(\"" + name + "\")");
      break;
    }
    parsed.values[name] = value;
  }
  if (parsed.error.empty() && parsed.flags.count("help") == 0 &&
      parsed.flags.count("version") == 0) {
    for (const std::string& name : spec.required) {
      if (parsed.values.count(name) == 0) {
        fail("Argument '" + name + "' required, but not found.",
             "MissingArgument(\"" + name + "\")");
        break;
      }
    }
  }
  return parsed;
}

}  // namespace corral::fakes

#endif  // CORRAL_TESTS_FAKES_FIRECRACKER_FAKE_ARGS_H_
