#include "tests/fakes/common/swift_json.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace corral::fakes {
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

template <typename Json>
void Write(std::string* out, const Json& value, bool pretty, bool sorted,
           int level) {
  switch (value.type()) {
    case Json::value_t::object: {
      std::vector<std::pair<std::string, const Json*>> items;
      for (auto it = value.begin(); it != value.end(); ++it) {
        items.emplace_back(it.key(), &it.value());
      }
      // Bytewise, as lexicographicallyPrecedes on the UTF-8 views.
      if (sorted) {
        std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
          return std::lexicographical_compare(
              a.first.begin(), a.first.end(), b.first.begin(), b.first.end(),
              [](char x, char y) {
                return static_cast<unsigned char>(x) <
                       static_cast<unsigned char>(y);
              });
        });
      }
      out->push_back('{');
      if (pretty) out->push_back('\n');
      bool first = true;
      for (const auto& [key, item] : items) {
        if (!first) out->append(pretty ? ",\n" : ",");
        first = false;
        if (pretty) Indent(out, level + 1);
        WriteString(out, key);
        out->append(pretty ? " : " : ":");
        Write(out, *item, pretty, sorted, level + 1);
      }
      if (pretty) {
        out->push_back('\n');
        Indent(out, level);
      }
      out->push_back('}');
      return;
    }
    case Json::value_t::array: {
      out->push_back('[');
      if (pretty) out->push_back('\n');
      bool first = true;
      for (const auto& item : value) {
        if (!first) out->append(pretty ? ",\n" : ",");
        first = false;
        if (pretty) Indent(out, level + 1);
        Write(out, item, pretty, sorted, level + 1);
      }
      if (pretty) {
        out->push_back('\n');
        Indent(out, level);
      }
      out->push_back(']');
      return;
    }
    case Json::value_t::string:
      WriteString(out, value.template get<std::string>());
      return;
    case Json::value_t::boolean:
      out->append(value.template get<bool>() ? "true" : "false");
      return;
    case Json::value_t::null:
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
  Write(&out, value, false, true, 0);
  return out;
}

std::string SwiftPretty(const nlohmann::json& value) {
  std::string out;
  Write(&out, value, true, true, 0);
  return out;
}

std::string SwiftPrettyOrdered(const nlohmann::ordered_json& value) {
  std::string out;
  Write(&out, value, true, false, 0);
  return out;
}

}  // namespace corral::fakes
