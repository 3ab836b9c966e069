// Terminal output as a model reads it best: the text that would be left on
// the lines, without escape sequences.
#ifndef CORRAL_CLIENT_MCP_PLAIN_TEXT_H_
#define CORRAL_CLIENT_MCP_PLAIN_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace corral::cli::mcp {

// Removes ANSI escape sequences (CSI, OSC, and two-byte ESC sequences),
// applies backspace (the character before it on the line goes) and
// carriage return (what follows overwrites the line from its start), turns
// "\r\n" into "\n", and drops other control characters but tab. Bytes that
// are not ASCII pass unchanged. A sequence cut off at the end of `raw` is
// dropped.
std::string PlainText(absl::string_view raw);

}  // namespace corral::cli::mcp

#endif  // CORRAL_CLIENT_MCP_PLAIN_TEXT_H_
