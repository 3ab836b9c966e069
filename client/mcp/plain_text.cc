#include "client/mcp/plain_text.h"

namespace corral::cli::mcp {

std::string PlainText(absl::string_view raw) {
  std::string out;
  std::string line;   // the current line, as it would show
  size_t column = 0;  // where the next character goes in `line`
  auto put = [&](char c) {
    if (column < line.size()) {
      line[column] = c;
    } else {
      line.push_back(c);
    }
    ++column;
  };
  for (size_t i = 0; i < raw.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c == 0x1b) {  // ESC
      if (i + 1 >= raw.size()) break;
      const char kind = raw[i + 1];
      if (kind == '[') {
        // CSI: parameters and intermediates, then a final byte @ to ~.
        size_t j = i + 2;
        while (j < raw.size() && !(raw[j] >= '@' && raw[j] <= '~')) ++j;
        i = j;
      } else if (kind == ']' || kind == 'P' || kind == '_' || kind == '^') {
        // OSC and other strings: to BEL or ST (ESC \).
        size_t j = i + 2;
        while (j < raw.size() && raw[j] != '\a' &&
               !(raw[j] == 0x1b && j + 1 < raw.size() && raw[j + 1] == '\\')) {
          ++j;
        }
        i = j < raw.size() && raw[j] == 0x1b ? j + 1 : j;
      } else {
        i += 1;  // ESC and one character (ESC =, ESC 7, ...)
      }
      continue;
    }
    if (c == '\n') {
      out += line;
      out += '\n';
      line.clear();
      column = 0;
    } else if (c == '\r') {
      column = 0;
    } else if (c == '\b') {
      if (column > 0) {
        --column;
        line.erase(column, 1);
      }
    } else if (c == '\t' || c >= 0x20) {
      if (c == 0x7f) continue;
      put(static_cast<char>(c));
    }
  }
  return out + line;
}

}  // namespace corral::cli::mcp
