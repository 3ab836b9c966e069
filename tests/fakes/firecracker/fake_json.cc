#include "tests/fakes/firecracker/fake_json.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace corral::fakes {
namespace {

// A JSON reader that knows where it is, for serde_json's positions: line
// and column of the last byte consumed.
class Reader {
 public:
  explicit Reader(const std::string& text) : text_(text) {}

  std::string Position(size_t consumed) const {
    size_t line = 1, column = 0;
    for (size_t i = 0; i < consumed && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 0;
      } else {
        ++column;
      }
    }
    return " at line " + std::to_string(line) + " column " +
           std::to_string(column);
  }

  void SkipSpace() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\n' ||
                                  text_[at_] == '\t' || text_[at_] == '\r')) {
      ++at_;
    }
  }

  // Reads one value into `out`; "" or the error.
  std::string Value(nlohmann::json* out) {
    SkipSpace();
    if (at_ >= text_.size()) {
      return "EOF while parsing a value" + Position(at_);
    }
    const char c = text_[at_];
    if (c == '{') return Object(out);
    if (c == '[') return Array(out);
    if (c == '"') {
      std::string s;
      std::string error = String(&s);
      *out = s;
      return error;
    }
    if (c == 't' || c == 'f' || c == 'n') {
      for (const char* word : {"true", "false", "null"}) {
        const std::string w = word;
        if (text_.compare(at_, w.size(), w) == 0) {
          at_ += w.size();
          *out = w == "null" ? nlohmann::json() : nlohmann::json(w == "true");
          return "";
        }
      }
      return "expected ident" + Position(at_ + 1);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t end = at_;
      while (end < text_.size() &&
             std::string("+-0123456789.eE").find(text_[end]) !=
                 std::string::npos) {
        ++end;
      }
      auto number =
          nlohmann::json::parse(text_.substr(at_, end - at_), nullptr, false);
      if (number.is_discarded()) return "invalid number" + Position(end);
      at_ = end;
      *out = number;
      return "";
    }
    return "expected value" + Position(at_ + 1);
  }

  std::string String(std::string* out) {
    ++at_;  // the opening quote
    std::string raw = "\"";
    while (at_ < text_.size() && text_[at_] != '"') {
      if (text_[at_] == '\\' && at_ + 1 < text_.size()) raw += text_[at_++];
      raw += text_[at_++];
    }
    if (at_ >= text_.size())
      return "EOF while parsing a string" + Position(at_);
    ++at_;  // the closing quote
    raw += '"';
    auto parsed = nlohmann::json::parse(raw, nullptr, false);
    if (!parsed.is_string()) return "invalid escape" + Position(at_);
    *out = parsed.get<std::string>();
    return "";
  }

  std::string Array(nlohmann::json* out) {
    ++at_;
    *out = nlohmann::json::array();
    SkipSpace();
    if (at_ < text_.size() && text_[at_] == ']') {
      ++at_;
      return "";
    }
    for (;;) {
      nlohmann::json item;
      if (std::string e = Value(&item); !e.empty()) return e;
      out->push_back(item);
      SkipSpace();
      if (at_ >= text_.size())
        return "EOF while parsing a list" + Position(at_);
      if (text_[at_] == ',') {
        ++at_;
        continue;
      }
      if (text_[at_] == ']') {
        ++at_;
        return "";
      }
      return "expected `,` or `]`" + Position(at_ + 1);
    }
  }

  // An object of no schema (a field the fake does not model).
  std::string Object(nlohmann::json* out) {
    ++at_;
    *out = nlohmann::json::object();
    SkipSpace();
    if (at_ < text_.size() && text_[at_] == '}') {
      ++at_;
      return "";
    }
    for (;;) {
      SkipSpace();
      if (at_ >= text_.size()) {
        return "EOF while parsing an object" + Position(at_);
      }
      if (text_[at_] != '"') return "key must be a string" + Position(at_ + 1);
      std::string key;
      if (std::string e = String(&key); !e.empty()) return e;
      SkipSpace();
      if (at_ >= text_.size() || text_[at_] != ':') {
        return "expected `:`" + Position(at_ + 1);
      }
      ++at_;
      nlohmann::json value;
      if (std::string e = Value(&value); !e.empty()) return e;
      (*out)[key] = value;
      SkipSpace();
      if (at_ >= text_.size()) {
        return "EOF while parsing an object" + Position(at_);
      }
      if (text_[at_] == ',') {
        ++at_;
        SkipSpace();
        if (at_ < text_.size() && text_[at_] == '}') {
          return "trailing comma" + Position(at_ + 1);
        }
        continue;
      }
      if (text_[at_] == '}') {
        ++at_;
        return "";
      }
      return "expected `,` or `}`" + Position(at_ + 1);
    }
  }

  size_t at() const { return at_; }
  void set_at(size_t at) { at_ = at; }
  const std::string& text() const { return text_; }

 private:
  const std::string& text_;
  size_t at_ = 0;
};

std::string Quoted(const std::vector<std::string>& names) {
  if (names.empty()) return "there are no fields";
  if (names.size() == 1) return "`" + names[0] + "`";
  if (names.size() == 2) return "`" + names[0] + "` or `" + names[1] + "`";
  std::string text = "one of ";
  for (size_t i = 0; i < names.size(); ++i) {
    text += (i == 0 ? "`" : ", `") + names[i] + "`";
  }
  return text;
}

// serde's "unexpected" words for a value.
std::string Unexpected(const nlohmann::json& value) {
  if (value.is_null()) return "null";
  if (value.is_boolean()) {
    return std::string("boolean `") + (value.get<bool>() ? "true" : "false") +
           "`";
  }
  if (value.is_number_unsigned() || value.is_number_integer()) {
    return "integer `" + value.dump() + "`";
  }
  if (value.is_number_float()) return "floating point `" + value.dump() + "`";
  if (value.is_string()) return "string " + value.dump();
  if (value.is_array()) return "sequence";
  return "map";
}

// Where serde_json puts an error in a value: after what it consumed (a
// number's visitor), at the value's first character (a token of the wrong
// kind, "peeked"), or where its struct ends (an error without a position of
// its own, such as an unknown variant).
enum class At { kConsumed, kFirstChar, kStructEnd };

std::string TypeError(const Field& field, const nlohmann::json& value, At* at) {
  *at = value.is_number() ? At::kConsumed : At::kFirstChar;
  auto invalid_type = [&](const std::string& expected) {
    return "invalid type: " + Unexpected(value) + ", expected " + expected;
  };
  switch (field.type) {
    case FieldType::kString:
      return value.is_string() ? "" : invalid_type("a string");
    case FieldType::kOptionalString:
      return value.is_string() || value.is_null() ? ""
                                                  : invalid_type("a string");
    case FieldType::kBool:
      return value.is_boolean() ? "" : invalid_type("a boolean");
    case FieldType::kU8:
    case FieldType::kU32:
    case FieldType::kUsize: {
      const char* name = field.type == FieldType::kU8    ? "u8"
                         : field.type == FieldType::kU32 ? "u32"
                                                         : "usize";
      const uint64_t max = field.type == FieldType::kU8    ? 0xff
                           : field.type == FieldType::kU32 ? 0xffffffffu
                                                           : UINT64_MAX;
      if (value.is_number_unsigned()) {
        if (value.get<uint64_t>() > max) {
          return "invalid value: integer `" + value.dump() + "`, expected " +
                 name;
        }
        return "";
      }
      if (value.is_number_integer()) {
        return "invalid value: integer `" + value.dump() + "`, expected " +
               name;
      }
      return invalid_type(name);
    }
    case FieldType::kEnum:
      if (!value.is_string()) return invalid_type("variant identifier");
      *at = At::kStructEnd;
      for (const std::string& variant : field.variants) {
        if (value.get<std::string>() == variant) return "";
      }
      return "unknown variant `" + value.get<std::string>() + "`, expected " +
             Quoted(field.variants);
    case FieldType::kObject:
      return value.is_object() ? "" : invalid_type("struct " + field.name);
    case FieldType::kAny:
      return "";
  }
  return "";
}

std::string CheckObject(Reader& reader, const std::vector<Field>& fields,
                        bool deny_unknown, nlohmann::json* out);

// serde_json's peek position: the column of the next character (after the
// struct's closing brace when it comes next), at most the text's end.
std::string StructEndPosition(Reader& reader) {
  reader.SkipSpace();
  size_t index = reader.at();
  if (index < reader.text().size() && reader.text()[index] == '}') ++index;
  return reader.Position(std::min(reader.text().size(), index + 1));
}

// Reads the value of `field` at the reader's place and checks it.
std::string CheckValue(Reader& reader, const Field& field,
                       nlohmann::json* out) {
  reader.SkipSpace();
  const size_t start = reader.at();
  if (field.type == FieldType::kObject && reader.at() < reader.text().size() &&
      reader.text()[reader.at()] == '{') {
    return CheckObject(reader, field.fields, field.deny_unknown, out);
  }
  if (std::string e = reader.Value(out); !e.empty()) return e;
  At at = At::kConsumed;
  if (std::string e = TypeError(field, *out, &at); !e.empty()) {
    switch (at) {
      case At::kConsumed:
        return e + reader.Position(reader.at());
      case At::kFirstChar:
        return e + reader.Position(start + 1);
      case At::kStructEnd:
        return e + StructEndPosition(reader);
    }
  }
  return "";
}

std::string CheckObject(Reader& reader, const std::vector<Field>& fields,
                        bool deny_unknown, nlohmann::json* out) {
  *out = nlohmann::json::object();
  std::vector<std::string> names;
  for (const Field& f : fields) names.push_back(f.name);
  reader.set_at(reader.at() + 1);  // '{'
  for (;;) {
    reader.SkipSpace();
    const std::string& text = reader.text();
    if (reader.at() >= text.size()) {
      return "EOF while parsing an object" + reader.Position(reader.at());
    }
    if (text[reader.at()] == '}') {
      for (const Field& f : fields) {
        if (f.required && !out->contains(f.name)) {
          return "missing field `" + f.name + "`" + StructEndPosition(reader);
        }
      }
      reader.set_at(reader.at() + 1);
      return "";
    }
    if (text[reader.at()] != '"') {
      return "key must be a string" + reader.Position(reader.at() + 1);
    }
    std::string key;
    if (std::string e = reader.String(&key); !e.empty()) return e;
    const size_t key_end = reader.at();
    const Field* field = nullptr;
    for (const Field& f : fields) {
      if (f.name == key) field = &f;
    }
    if (field == nullptr && deny_unknown) {
      return "unknown field `" + key + "`, expected " + Quoted(names) +
             reader.Position(key_end);
    }
    if (out->contains(key)) {
      return "duplicate field `" + key + "`" + reader.Position(key_end);
    }
    reader.SkipSpace();
    if (reader.at() >= text.size() || text[reader.at()] != ':') {
      return "expected `:`" + reader.Position(reader.at() + 1);
    }
    reader.set_at(reader.at() + 1);
    nlohmann::json value;
    Field any{key, FieldType::kAny, false, {}, {}, true};
    if (std::string e = CheckValue(reader, field ? *field : any, &value);
        !e.empty()) {
      return e;
    }
    (*out)[key] = value;
    reader.SkipSpace();
    if (reader.at() < text.size() && text[reader.at()] == ',') {
      reader.set_at(reader.at() + 1);
      reader.SkipSpace();
      if (reader.at() < text.size() && text[reader.at()] == '}') {
        return "trailing comma" + reader.Position(reader.at() + 1);
      }
    } else if (reader.at() < text.size() && text[reader.at()] != '}') {
      return "expected `,` or `}`" + reader.Position(reader.at() + 1);
    }
  }
}

}  // namespace

std::string ParseBody(const std::string& text, const Schema& schema,
                      nlohmann::json* out) {
  Reader reader(text);
  reader.SkipSpace();
  if (reader.at() >= text.size()) {
    return "EOF while parsing a value" + reader.Position(reader.at());
  }
  if (text[reader.at()] != '{') {
    nlohmann::json value;
    if (std::string e = reader.Value(&value); !e.empty()) return e;
    return "invalid type: " + Unexpected(value) + ", expected a struct" +
           reader.Position(reader.at());
  }
  if (std::string e =
          CheckObject(reader, schema.fields, schema.deny_unknown, out);
      !e.empty()) {
    return e;
  }
  reader.SkipSpace();
  if (reader.at() < text.size()) {
    return "trailing characters" + reader.Position(reader.at() + 1);
  }
  return "";
}

}  // namespace corral::fakes
