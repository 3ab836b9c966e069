#include "tests/fakes/apple/fake_util.h"

namespace corral::fake_apple {

void FailFake(const std::string& message) {
  throw CliExit{"Error: fake container: " + message, 1};
}

std::string Described(const std::string& code, const std::string& message,
                      const std::string& cause) {
  std::string text = code + ": \"" + message + "\"";
  if (!cause.empty()) text += " (cause: \"" + cause + "\")";
  return text;
}

std::string SwiftQuoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += c;
    }
  }
  return out + "\"";
}

std::string SwiftList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += SwiftQuoted(items[i]);
  }
  return out + "]";
}

}  // namespace corral::fake_apple
