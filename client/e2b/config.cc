#include "client/e2b/config.h"

#include <toml++/toml.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace corral::e2b {
namespace {

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

template <typename T>
absl::Status ReadInteger(const std::string& path, const toml::node& node,
                         const std::string& key, T& out, int64_t max) {
  const auto value = node.value<int64_t>();
  if (!value || *value < 0 || *value > max) {
    return Bad(path,
               absl::StrCat(key, ": expected an integer from 0 to ", max));
  }
  out = static_cast<T>(*value);
  return absl::OkStatus();
}

absl::Status ReadString(const std::string& path, const toml::node& node,
                        const std::string& key, std::string& out) {
  const auto value = node.value<std::string>();
  if (!value) return Bad(path, absl::StrCat(key, ": expected a string"));
  out = *value;
  return absl::OkStatus();
}

bool ValidUserName(const std::string& name) {
  if (name.empty() || name.size() > 32) return false;
  if (!absl::ascii_islower(name[0]) && name[0] != '_') return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

absl::Status ReadTemplate(const std::string& path, const std::string& name,
                          const toml::table& table, Template& t) {
  for (const auto& [key_node, value] : table) {
    const std::string key(key_node.str());
    const std::string shown = absl::StrCat("templates.", name, ".", key);
    absl::Status s;
    if (key == "image") {
      s = ReadString(path, value, shown, t.image);
    } else if (key == "runtime") {
      s = ReadString(path, value, shown, t.runtime);
    } else if (key == "user") {
      s = ReadString(path, value, shown, t.user);
      if (s.ok() && !ValidUserName(t.user)) {
        s = Bad(path, absl::StrCat(shown,
                                   ": a user name is 1 to 32 of "
                                   "[a-z0-9_-], starting with a "
                                   "letter or _"));
      }
    } else if (key == "workdir") {
      s = ReadString(path, value, shown, t.workdir);
      if (s.ok() && !t.workdir.empty() && t.workdir[0] != '/') {
        s = Bad(path, absl::StrCat(shown, ": expected an absolute path"));
      }
    } else if (key == "cpu_millis") {
      s = ReadInteger(path, value, shown, t.cpu_millis, 1 << 20);
    } else if (key == "memory_mib") {
      s = ReadInteger(path, value, shown, t.memory_mib, int64_t{1} << 30);
    } else if (key == "disk_mib") {
      s = ReadInteger(path, value, shown, t.disk_mib, int64_t{1} << 30);
    } else {
      s = Bad(path, absl::StrCat("unknown key ", shown));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

Config DefaultConfig() {
  Config config;
  config.templates["base"].image = "e2b-base";
  return config;
}

absl::Status ValidateApiKey(const std::string& key) {
  const std::string hex = key.substr(std::min<size_t>(4, key.size()));
  bool ok =
      absl::StartsWith(key, "e2b_") && hex.size() >= 20 && hex.size() <= 128;
  for (char c : hex)
    ok = ok && (absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f'));
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "an API key is \"e2b_\" and 20 to 128 lowercase hex digits, the form "
      "E2B's SDKs send (make one with: echo e2b_$(openssl rand -hex 20))");
}

absl::Status LoadConfigFile(const std::string& path, Config& config) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& error) {
    return Bad(path, std::string(error.description()));
  }
  for (const auto& [key_node, value] : root) {
    const std::string key(key_node.str());
    absl::Status s;
    if (key == "api_keys") {
      const toml::array* keys = value.as_array();
      if (keys == nullptr) return Bad(path, "api_keys: expected an array");
      for (const auto& item : *keys) {
        const auto text = item.value<std::string>();
        if (!text) return Bad(path, "api_keys: expected strings");
        if (absl::Status valid = ValidateApiKey(*text); !valid.ok()) {
          return Bad(path, absl::StrCat("api_keys: ", valid.message()));
        }
        config.api_keys.push_back(*text);
      }
    } else if (key == "default_timeout_seconds") {
      s = ReadInteger(path, value, key, config.default_timeout_seconds,
                      int64_t{1} << 32);
    } else if (key == "max_upload_mib") {
      uint64_t mib = 0;
      s = ReadInteger(path, value, key, mib, 1 << 20);
      config.max_upload_bytes = mib << 20;
    } else if (key == "threads") {
      s = ReadInteger(path, value, key, config.threads, 4096);
      if (s.ok() && config.threads < 4) s = Bad(path, "threads: at least 4");
    } else if (key == "state_dir") {
      s = ReadString(path, value, key, config.state_dir);
    } else if (key == "templates") {
      const toml::table* templates = value.as_table();
      if (templates == nullptr) return Bad(path, "templates: expected tables");
      for (const auto& [name_node, body] : *templates) {
        const std::string name(name_node.str());
        const toml::table* table = body.as_table();
        if (table == nullptr) {
          return Bad(path,
                     absl::StrCat("templates.", name, ": expected a table"));
        }
        Template t;
        s = ReadTemplate(path, name, *table, t);
        if (!s.ok()) return s;
        config.templates[name] = t;
      }
    } else {
      s = Bad(path, absl::StrCat("unknown key ", key));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace corral::e2b
