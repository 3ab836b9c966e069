// The JSON bodies of the fake Firecracker's API, checked the way
// Firecracker's serde structs check them (deny_unknown_fields, required
// fields, types, enum variants) and reported in serde_json's words with
// its "at line L column C" positions. A FAKE for tests: see
// tests/fakes/README.md.
#ifndef CORRAL_TESTS_FAKES_FIRECRACKER_FAKE_JSON_H_
#define CORRAL_TESTS_FAKES_FIRECRACKER_FAKE_JSON_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace corral::fakes {

enum class FieldType {
  kString,
  kOptionalString,  // a string or null
  kBool,
  kU8,
  kU32,
  kUsize,
  kEnum,    // one of `variants`
  kObject,  // `fields` (a nested struct)
  kAny,     // anything (a field the fake accepts but does not model)
};

struct Field {
  std::string name;
  FieldType type = FieldType::kString;
  bool required = false;
  std::vector<std::string> variants;  // kEnum
  std::vector<Field> fields;          // kObject
  bool deny_unknown = true;           // kObject
};

struct Schema {
  std::vector<Field> fields;
  bool deny_unknown = true;
};

// Parses `text` against `schema`. On success fills `out` and returns "";
// otherwise serde_json's message (e.g. "unknown field `x`, expected one of
// `a`, `b` at line 1 column 6").
std::string ParseBody(const std::string& text, const Schema& schema,
                      nlohmann::json* out);

}  // namespace corral::fakes

#endif  // CORRAL_TESTS_FAKES_FIRECRACKER_FAKE_JSON_H_
