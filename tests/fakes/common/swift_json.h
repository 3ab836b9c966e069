// JSON as Swift's JSONEncoder writes it (swift-foundation JSONWriter), for
// the fake CLIs' output: `/` escaped as `\/` (no .withoutEscapingSlashes),
// control characters as \b \f \n \r \t or \u00xx; compact on one line, or
// .prettyPrinted: two spaces a level, `"key" : value`, and an empty array
// or object still opened and closed on lines of their own. Keys are sorted
// by their UTF-8 bytes (.sortedKeys) or, from an ordered_json, kept in
// encoding order (no .sortedKeys).
#ifndef CORRAL_TESTS_FAKES_COMMON_SWIFT_JSON_H_
#define CORRAL_TESTS_FAKES_COMMON_SWIFT_JSON_H_

#include <string>

#include "nlohmann/json.hpp"

namespace corral::fakes {

// .sortedKeys
std::string SwiftCompact(const nlohmann::json& value);
std::string SwiftPretty(const nlohmann::json& value);
// No .sortedKeys: the keys in the order they were added.
std::string SwiftPrettyOrdered(const nlohmann::ordered_json& value);

}  // namespace corral::fakes

#endif  // CORRAL_TESTS_FAKES_COMMON_SWIFT_JSON_H_
