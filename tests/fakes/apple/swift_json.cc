#include "tests/fakes/apple/swift_json.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace corral::fake_apple {
namespace {

void Indent(std::string* out, int level) { out->append(2 * level, ' '); }

void WriteString(std::string* out, const std::string& text) {
  static const char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '/':
        out->append("\\/");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void Write(std::string* out, const nlohmann::json& value, bool pretty,
           int level) {
  switch (value.type()) {
    case nlohmann::json::value_t::object: {
      std::vector<std::pair<std::string, const nlohmann::json*>> items;
      for (auto it = value.begin(); it != value.end(); ++it) {
        items.emplace_back(it.key(), &it.value());
      }
      // Bytewise, as lexicographicallyPrecedes on the UTF-8 views.
      std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
        return std::lexicographical_compare(
            a.first.begin(), a.first.end(), b.first.begin(), b.first.end(),
            [](char x, char y) {
              return static_cast<unsigned char>(x) <
                     static_cast<unsigned char>(y);
            });
      });
      out->push_back('{');
      if (pretty) out->push_back('\n');
      bool first = true;
      for (const auto& [key, item] : items) {
        if (!first) out->append(pretty ? ",\n" : ",");
        first = false;
        if (pretty) Indent(out, level + 1);
        WriteString(out, key);
        out->append(pretty ? " : " : ":");
        Write(out, *item, pretty, level + 1);
      }
      if (pretty) {
        out->push_back('\n');
        Indent(out, level);
      }
      out->push_back('}');
      return;
    }
    case nlohmann::json::value_t::array: {
      out->push_back('[');
      if (pretty) out->push_back('\n');
      bool first = true;
      for (const auto& item : value) {
        if (!first) out->append(pretty ? ",\n" : ",");
        first = false;
        if (pretty) Indent(out, level + 1);
        Write(out, item, pretty, level + 1);
      }
      if (pretty) {
        out->push_back('\n');
        Indent(out, level);
      }
      out->push_back(']');
      return;
    }
    case nlohmann::json::value_t::string:
      WriteString(out, value.get<std::string>());
      return;
    case nlohmann::json::value_t::boolean:
      out->append(value.get<bool>() ? "true" : "false");
      return;
    case nlohmann::json::value_t::null:
      out->append("null");
      return;
    default:
      out->append(value.dump());
      return;
  }
}

}  // namespace

std::string SwiftCompact(const nlohmann::json& value) {
  std::string out;
  Write(&out, value, false, 0);
  return out;
}

std::string SwiftPretty(const nlohmann::json& value) {
  std::string out;
  Write(&out, value, true, 0);
  return out;
}

}  // namespace corral::fake_apple
