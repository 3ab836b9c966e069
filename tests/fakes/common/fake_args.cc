#include "tests/fakes/common/fake_args.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "tests/fakes/common/fake_util.h"

namespace corral::fakes {
namespace {

std::string& FakeDirectory() {
  static std::string directory = "tests/fakes";
  return directory;
}

// The synopsis string of a name: "--cpus", "-c".
const std::string& PreferredName(const OptionSpec& option) {
  for (const auto& name : option.names) {
    if (name.size() > 2) return name;
  }
  return option.names.front();
}

std::string OptionSynopsis(const OptionSpec& option) {
  std::string text = PreferredName(option);
  if (!option.flag) text += " <" + option.value_name + ">";
  if (option.repeating) text += " ...";
  return "[" + text + "]";
}

std::string ArgumentSynopsis(const ArgumentSpec& argument) {
  std::string text = "<" + argument.value_name + ">";
  if (argument.repeating) text += " ...";
  return argument.optional ? "[" + text + "]" : text;
}

// Levenshtein distance, as ArgumentParser's editDistance.
size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

[[noreturn]] void UnknownOption(const CommandSpec& spec,
                                const std::string& name) {
  std::string message = "Unknown option '" + name + "'";
  if (name.rfind("--", 0) == 0) {
    // The closest long name under the similarity floor of 4.
    std::vector<std::string> names = {"--help"};
    for (const auto& option : spec.options) {
      for (const auto& n : option.names) {
        if (n.size() > 2) names.push_back(n);
      }
    }
    const std::string* best = nullptr;
    size_t best_distance = 4;
    for (const auto& candidate : names) {
      size_t distance = EditDistance(candidate, name);
      if (distance < best_distance) {
        best_distance = distance;
        best = &candidate;
      }
    }
    if (best != nullptr) message += ". Did you mean '" + *best + "'?";
  }
  UsageError(spec, message);
}

bool ParseInteger(const std::string& text, long long low, long long high) {
  if (text.empty()) return false;
  size_t at = (text[0] == '+' || text[0] == '-') ? 1 : 0;
  if (at == text.size()) return false;
  for (size_t i = at; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  errno = 0;
  char* end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0) return false;
  return value >= low && value <= high;
}

std::string ChoiceList(const std::vector<std::string>& choices) {
  std::vector<std::string> quoted;
  for (const auto& c : choices) quoted.push_back("'" + c + "'");
  std::string list;
  if (quoted.size() <= 2) {
    for (size_t i = 0; i < quoted.size(); ++i) {
      list += (i > 0 ? " and " : "") + quoted[i];
    }
  } else {
    for (size_t i = 0; i + 1 < quoted.size(); ++i) {
      list += (i > 0 ? ", " : "") + quoted[i];
    }
    list += " or " + quoted.back();
  }
  return ". Please provide one of " + list + ".";
}

void CheckValue(const CommandSpec& spec, const OptionSpec& option,
                const std::string& used_name, const std::string& value) {
  bool ok = true;
  switch (option.type) {
    case ValueType::kString:
      return;
    case ValueType::kInt:
    case ValueType::kInt64:
      ok = ParseInteger(value, LLONG_MIN, LLONG_MAX);
      break;
    case ValueType::kInt32:
      ok = ParseInteger(value, INT32_MIN, INT32_MAX);
      break;
    case ValueType::kUInt32:
      ok = ParseInteger(value, 0, UINT32_MAX) && value[0] != '-';
      break;
    case ValueType::kChoice:
      ok = std::find(option.choices.begin(), option.choices.end(), value) !=
           option.choices.end();
      break;
  }
  if (ok) return;
  std::string message = "The value '" + value + "' is invalid for '" +
                        used_name + " <" + option.value_name + ">'";
  if (option.type == ValueType::kChoice) message += ChoiceList(option.choices);
  UsageError(spec, message,
             used_name + " <" + option.value_name + ">  " + option.help);
}

const OptionSpec* FindOption(const CommandSpec& spec, const std::string& name) {
  for (const auto& option : spec.options) {
    if (std::find(option.names.begin(), option.names.end(), name) !=
        option.names.end()) {
      return &option;
    }
  }
  return nullptr;
}

[[noreturn]] void Help(const CommandSpec& spec) {
  std::string text;
  if (!spec.abstract.empty()) text += "OVERVIEW: " + spec.abstract + "\n\n";
  text += "USAGE: " + Usage(spec).substr(0) + "\n\n";
  text += "(corral test fake: " + FakeDirectory() +
          "; see tests/fakes/README.md for what it models)";
  throw CliExit{text, 0};
}

}  // namespace

void SetFakeDirectory(const std::string& directory) {
  FakeDirectory() = directory;
}

std::optional<std::string> Parsed::Value(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Parsed::Values(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::vector<std::string> Parsed::Arguments(const std::string& key) const {
  auto it = arguments_.find(key);
  return it == arguments_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<std::string> Parsed::Argument(const std::string& key) const {
  auto it = arguments_.find(key);
  if (it == arguments_.end() || it->second.empty()) return std::nullopt;
  return it->second.front();
}

std::string Usage(const CommandSpec& spec) {
  std::vector<std::string> all, kept;
  size_t o = 0, a = 0;
  for (char kind : spec.order) {
    if (kind == 'o') {
      all.push_back(OptionSynopsis(spec.options[o++]));
    } else {
      const ArgumentSpec& argument = spec.arguments[a++];
      all.push_back(ArgumentSynopsis(argument));
      kept.push_back(all.back());
    }
  }
  std::string usage = spec.path;
  if (all.size() > 12) {
    if (kept.empty()) return usage + " <options>";
    usage += " [<options>]";
    for (const auto& item : kept) usage += " " + item;
    return usage;
  }
  for (const auto& item : all) usage += " " + item;
  return usage;
}

void UsageError(const CommandSpec& spec, const std::string& message,
                const std::string& help) {
  std::string text = "Error: " + message + "\n";
  if (!help.empty()) text += "Help:  " + help + "\n";
  text += "Usage: " + Usage(spec) + "\n  See '" + spec.path +
          " --help' for more information.";
  throw CliExit{text, 64};
}

Parsed Parse(const CommandSpec& spec, const std::vector<std::string>& args) {
  Parsed parsed;
  const bool passthrough = std::any_of(
      spec.arguments.begin(), spec.arguments.end(),
      [](const ArgumentSpec& argument) { return argument.passthrough; });

  auto take_value = [&](const OptionSpec& option, const std::string& used_name,
                        size_t* i, std::optional<std::string> attached) {
    std::string value;
    if (attached) {
      value = *attached;
    } else if (*i + 1 < args.size() &&
               (args[*i + 1].empty() || args[*i + 1][0] != '-' ||
                args[*i + 1] == "-")) {
      value = args[++*i];
    } else {
      UsageError(
          spec,
          "Missing value for '" + used_name + " <" + option.value_name + ">'",
          used_name + " <" + option.value_name + ">  " + option.help);
    }
    CheckValue(spec, option, used_name, value);
    parsed.values_[option.key].push_back(value);
  };

  std::vector<std::string> positional;
  size_t i = 0;
  bool terminated = false;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (terminated) {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      if (!passthrough) terminated = true;
      continue;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      if (passthrough) break;
      positional.push_back(arg);
      continue;
    }
    if (arg == "--help" || arg == "-h") Help(spec);
    if (arg.rfind("--", 0) == 0) {
      size_t equals = arg.find('=');
      std::string name = arg.substr(0, equals);
      std::optional<std::string> attached;
      if (equals != std::string::npos) attached = arg.substr(equals + 1);
      const OptionSpec* option = FindOption(spec, name);
      if (option == nullptr) UnknownOption(spec, name);
      if (option->flag) {
        if (attached) {
          UsageError(spec, "The option '" + name +
                               "' does not take any value, but '" + *attached +
                               "' was specified.");
        }
        parsed.flags_.insert(option->key);
      } else {
        take_value(*option, name, &i, attached);
      }
      continue;
    }
    // One short name, or a pack of them (`-di`): every one but the last a
    // flag; the last may take the next input as its value.
    for (size_t at = 1; at < arg.size(); ++at) {
      std::string name = std::string("-") + arg[at];
      const OptionSpec* option = FindOption(spec, name);
      if (option == nullptr) UnknownOption(spec, name);
      if (option->flag) {
        parsed.flags_.insert(option->key);
      } else if (at + 1 == arg.size()) {
        take_value(*option, name, &i, std::nullopt);
      } else {
        UsageError(spec, "Unknown option '" + arg + "'");
      }
    }
  }
  // What the positional arguments take: with a passthrough argument,
  // everything from the first positional input on.
  for (; i < args.size(); ++i) positional.push_back(args[i]);

  size_t next = 0;
  for (const auto& argument : spec.arguments) {
    auto& values = parsed.arguments_[argument.key];
    if (argument.passthrough) {
      while (next < positional.size()) values.push_back(positional[next++]);
    } else if (argument.repeating) {
      while (next < positional.size()) values.push_back(positional[next++]);
    } else if (next < positional.size()) {
      values.push_back(positional[next++]);
    }
  }
  if (next < positional.size()) {
    std::vector<std::string> extra(positional.begin() + next, positional.end());
    if (extra.size() == 1) {
      UsageError(spec, "Unexpected argument '" + extra[0] + "'");
    }
    std::string list;
    for (size_t k = 0; k < extra.size(); ++k) {
      list += (k > 0 ? "', '" : "") + extra[k];
    }
    UsageError(spec, std::to_string(extra.size()) + " unexpected arguments: '" +
                         list + "'");
  }
  for (const auto& argument : spec.arguments) {
    if (argument.optional || !parsed.arguments_[argument.key].empty()) {
      continue;
    }
    std::string synopsis = "<" + argument.value_name + ">";
    if (argument.repeating) synopsis += " ...";
    UsageError(spec, "Missing expected argument '" + synopsis + "'",
               "<" + argument.value_name + ">  " + argument.help);
  }
  return parsed;
}

}  // namespace corral::fakes
