// JSON as Swift's JSONEncoder writes it (swift-foundation JSONWriter), for
// the fake `container` CLI's output: keys sorted by their UTF-8 bytes
// (.sortedKeys), `/` escaped as `\/` (no .withoutEscapingSlashes), control
// characters as \b \f \n \r \t or \u00xx; compact on one line, or
// .prettyPrinted: two spaces a level, `"key" : value`, and an empty array
// or object still opened and closed on lines of their own.
#ifndef CORRAL_TESTS_FAKES_APPLE_SWIFT_JSON_H_
#define CORRAL_TESTS_FAKES_APPLE_SWIFT_JSON_H_

#include <string>

#include "nlohmann/json.hpp"

namespace corral::fake_apple {

std::string SwiftCompact(const nlohmann::json& value);
std::string SwiftPretty(const nlohmann::json& value);

}  // namespace corral::fake_apple

#endif  // CORRAL_TESTS_FAKES_APPLE_SWIFT_JSON_H_
