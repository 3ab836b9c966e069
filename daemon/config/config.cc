#include "daemon/config/config.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "corral/status_macros.h"

// tomlplusplus throws toml::parse_error; it is caught in ParseConfig and never
// leaves this file.
#include <toml++/toml.h>

namespace corral::daemon {
namespace {

// Debian's Abseil keeps its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), which does not convert from std::string_view.
absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

constexpr uint64_t kMaxInt64 =
    static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

bool IsRuntimeName(absl::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' ||
           c == '-';
  });
}

// Same rule as image names in corral.v1.Image.
bool IsImageName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  if (!absl::ascii_islower(name[0]) && !absl::ascii_isdigit(name[0])) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' ||
           c == '_' || c == '-';
  });
}

bool IsDecimal(absl::string_view text) {
  return !text.empty() && text.size() <= 10 &&
         std::all_of(text.begin(), text.end(),
                     [](char c) { return absl::ascii_isdigit(c); });
}

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CEscape(text), "\"");
}

// A value as it appears in messages: strings double-quoted and C-escaped
// (a config line may hold control bytes), everything else in TOML syntax.
std::string Render(const toml::node& node) {
  std::string text;
  if (const auto* value = node.as_string()) {
    text = Quote(value->get());
  } else {
    std::ostringstream out;
    node.visit([&out](const auto& n) { out << n; });
    text = out.str();
  }
  if (text.size() > 80) text = absl::StrCat(text.substr(0, 77), "...");
  return text;
}

// Walks a parsed document into a DaemonConfig, collecting the first error
// with the file, line, key and value it is about.
class Reader {
 public:
  Reader(absl::string_view source, DaemonConfig* config)
      : source_(source), config_(config) {}

  absl::Status Read(const toml::table& root);

 private:
  using Handler = std::function<absl::Status(const toml::node&)>;

  absl::Status Error(const toml::source_region& where, absl::string_view key,
                     absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ":", where.begin.line, ": ", key, ": ", message));
  }
  absl::Status BadValue(absl::string_view key, const toml::node& node,
                        absl::string_view expected) const {
    return Error(node.source(), key,
                 absl::StrCat("bad value ", Render(node), ": ", expected));
  }
  // A value error found after parsing; `key` is the full dotted name.
  absl::Status Invalid(absl::string_view key, absl::string_view message) const {
    auto it = lines_.find(std::string(key));
    const std::string where = it == lines_.end()
                                  ? std::string(source_)
                                  : absl::StrCat(source_, ":", it->second);
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", key, ": ", message));
  }

  // Calls the handler of each key of `table`; an unknown key is an error.
  absl::Status ForEachKey(const toml::table& table, absl::string_view section,
                          const std::map<absl::string_view, Handler>& handlers);
  absl::Status ExpectTable(const toml::node& node,
                           absl::string_view key) const {
    if (node.is_table()) return absl::OkStatus();
    return BadValue(key, node, "expected a table");
  }

  absl::Status String(absl::string_view key, const toml::node& node,
                      std::string* out) const {
    const auto* value = node.as_string();
    if (value == nullptr) return BadValue(key, node, "expected a string");
    *out = value->get();
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Unsigned(absl::string_view key, const toml::node& node,
                        T* out) const {
    const auto* value = node.as_integer();
    if (value == nullptr) return BadValue(key, node, "expected an integer");
    const int64_t number = value->get();
    if (number < 0 ||
        static_cast<uint64_t>(number) > std::numeric_limits<T>::max()) {
      return BadValue(key, node,
                      absl::StrCat("expected an integer from 0 to ",
                                   std::numeric_limits<T>::max()));
    }
    *out = static_cast<T>(number);
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status OptionalUnsigned(absl::string_view key, const toml::node& node,
                                std::optional<T>* out) const {
    T value{};
    RETURN_IF_ERROR(Unsigned(key, node, &value));
    *out = value;
    return absl::OkStatus();
  }
  absl::Status StringArray(absl::string_view key, const toml::node& node,
                           std::vector<std::string>* out) const;
  // Names or numeric ids (integers, or strings of digits).
  absl::Status Principals(absl::string_view key, const toml::node& node,
                          std::vector<std::string>* names,
                          std::vector<uint32_t>* ids) const;

  absl::Status ReadDaemon(const toml::table& table);
  absl::Status ReadDefaults(const toml::table& table);
  absl::Status ReadLimits(const toml::table& table);
  absl::Status ReadUids(const toml::table& table);
  absl::Status ReadImages(const toml::table& table);
  absl::Status ReadWorkspace(const toml::table& table);
  absl::Status ReadNetwork(const toml::table& table);
  absl::Status ReadQuotas(const toml::table& table);
  absl::Status ReadPolicy(const toml::table& table, size_t index);
  // The keys [[policy]] and [default_policy] share; `principals` says
  // whether users and groups are allowed (not in [default_policy]).
  absl::Status ReadPolicyKeys(const toml::table& table,
                              const std::string& prefix, bool principals,
                              PolicyEntry* entry);
  absl::Status ReadRuntimes(const toml::table& table);
  absl::Status Validate() const;

  const absl::string_view source_;
  DaemonConfig* const config_;  // not owned
  // Line of each key read, for errors found after parsing.
  std::map<std::string, int> lines_;
};

absl::Status Reader::ForEachKey(
    const toml::table& table, absl::string_view section,
    const std::map<absl::string_view, Handler>& handlers) {
  for (const auto& [key, node] : table) {
    const std::string name = section.empty()
                                 ? std::string(Sv(key.str()))
                                 : absl::StrCat(section, ".", Sv(key.str()));
    lines_[name] = static_cast<int>(node.source().begin.line);
    auto it = handlers.find(Sv(key.str()));
    if (it == handlers.end()) {
      return Error(key.source(), name, "unknown key");
    }
    RETURN_IF_ERROR(it->second(node));
  }
  return absl::OkStatus();
}

absl::Status Reader::StringArray(absl::string_view key, const toml::node& node,
                                 std::vector<std::string>* out) const {
  const auto* array = node.as_array();
  if (array == nullptr) {
    return BadValue(key, node, "expected an array of strings");
  }
  out->clear();
  for (const toml::node& item : *array) {
    const auto* value = item.as_string();
    if (value == nullptr) {
      return BadValue(key, item, "expected an array of strings");
    }
    out->push_back(value->get());
  }
  return absl::OkStatus();
}

absl::Status Reader::Principals(absl::string_view key, const toml::node& node,
                                std::vector<std::string>* names,
                                std::vector<uint32_t>* ids) const {
  const auto* array = node.as_array();
  if (array == nullptr) {
    return BadValue(key, node, "expected an array of names or ids");
  }
  for (const toml::node& item : *array) {
    if (const auto* number = item.as_integer()) {
      if (number->get() < 0 || number->get() >= 0xffffffffLL) {
        return BadValue(key, item, "expected an id from 0 to 4294967294");
      }
      ids->push_back(static_cast<uint32_t>(number->get()));
    } else if (const auto* text = item.as_string()) {
      const std::string& name = text->get();
      if (IsDecimal(name)) {
        const uint64_t id = std::stoull(name);
        if (id >= 0xffffffffULL) {
          return BadValue(key, item, "expected an id from 0 to 4294967294");
        }
        ids->push_back(static_cast<uint32_t>(id));
      } else if (name.empty() || name.size() > 256 ||
                 name.find_first_of(":/\n") != std::string::npos) {
        return BadValue(key, item, "expected a user or group name");
      } else {
        names->push_back(name);
      }
    } else {
      return BadValue(key, item, "expected a name (string) or an id (integer)");
    }
  }
  return absl::OkStatus();
}

absl::Status Reader::ReadDaemon(const toml::table& table) {
  DaemonSection& d = config_->daemon;
  return ForEachKey(
      table, "daemon",
      {
          {"socket",
           [&](const toml::node& n) {
             return String("daemon.socket", n, &d.socket);
           }},
          {"socket_group",
           [&](const toml::node& n) {
             return String("daemon.socket_group", n, &d.socket_group);
           }},
          {"socket_mode",
           [&](const toml::node& n) -> absl::Status {
             // An octal integer (0o660) or a string of octal digits ("0660").
             int64_t mode = -1;
             if (const auto* number = n.as_integer()) {
               mode = number->get();
             } else if (const auto* text = n.as_string()) {
               const std::string& s = text->get();
               if (!s.empty() && s.size() <= 4 &&
                   s.find_first_not_of("01234567") == std::string::npos) {
                 mode = std::stoll(s, nullptr, 8);
               }
             }
             if (mode < 0 || mode > 0777) {
               return BadValue("daemon.socket_mode", n,
                               "expected a mode from 0o000 to 0o777, such as "
                               "0o660 or \"0660\"");
             }
             d.socket_mode = static_cast<uint32_t>(mode);
             return absl::OkStatus();
           }},
          {"state_dir",
           [&](const toml::node& n) {
             return String("daemon.state_dir", n, &d.state_dir);
           }},
          {"plugin_dir",
           [&](const toml::node& n) {
             return String("daemon.plugin_dir", n, &d.plugin_dir);
           }},
          {"agent_path",
           [&](const toml::node& n) {
             return String("daemon.agent_path", n, &d.agent_path);
           }},
          {"unpack_path",
           [&](const toml::node& n) {
             return String("daemon.unpack_path", n, &d.unpack_path);
           }},
          {"log_level",
           [&](const toml::node& n) {
             return String("daemon.log_level", n, &d.log_level);
           }},
          {"admin_group",
           [&](const toml::node& n) {
             return String("daemon.admin_group", n, &d.admin_group);
           }},
          {"max_sandboxes",
           [&](const toml::node& n) {
             return Unsigned("daemon.max_sandboxes", n, &d.max_sandboxes);
           }},
          {"max_request_bytes",
           [&](const toml::node& n) {
             return Unsigned("daemon.max_request_bytes", n,
                             &d.max_request_bytes);
           }},
          {"max_events",
           [&](const toml::node& n) {
             return Unsigned("daemon.max_events", n, &d.max_events);
           }},
          {"output_buffer_bytes",
           [&](const toml::node& n) {
             return Unsigned("daemon.output_buffer_bytes", n,
                             &d.output_buffer_bytes);
           }},
      });
}

absl::Status Reader::ReadDefaults(const toml::table& table) {
  SandboxDefaults& d = config_->defaults;
  return ForEachKey(
      table, "defaults",
      {
          {"runtime",
           [&](const toml::node& n) {
             return String("defaults.runtime", n, &d.runtime);
           }},
          {"image",
           [&](const toml::node& n) {
             return String("defaults.image", n, &d.image);
           }},
          {"cpu_millis",
           [&](const toml::node& n) {
             return Unsigned("defaults.cpu_millis", n, &d.cpu_millis);
           }},
          {"memory_mib",
           [&](const toml::node& n) {
             return Unsigned("defaults.memory_mib", n, &d.memory_mib);
           }},
          {"pids",
           [&](const toml::node& n) {
             return Unsigned("defaults.pids", n, &d.pids);
           }},
          {"disk_mib",
           [&](const toml::node& n) {
             return Unsigned("defaults.disk_mib", n, &d.disk_mib);
           }},
          {"ttl_seconds",
           [&](const toml::node& n) {
             return Unsigned("defaults.ttl_seconds", n, &d.ttl_seconds);
           }},
          {"exec_timeout_seconds",
           [&](const toml::node& n) {
             return Unsigned("defaults.exec_timeout_seconds", n,
                             &d.exec_timeout_seconds);
           }},
          {"output_limit_bytes",
           [&](const toml::node& n) {
             return Unsigned("defaults.output_limit_bytes", n,
                             &d.output_limit_bytes);
           }},
      });
}

absl::Status Reader::ReadLimits(const toml::table& table) {
  SandboxLimits& l = config_->limits;
  return ForEachKey(
      table, "limits",
      {
          {"cpu_millis",
           [&](const toml::node& n) {
             return Unsigned("limits.cpu_millis", n, &l.cpu_millis);
           }},
          {"memory_mib",
           [&](const toml::node& n) {
             return Unsigned("limits.memory_mib", n, &l.memory_mib);
           }},
          {"pids",
           [&](const toml::node& n) {
             return Unsigned("limits.pids", n, &l.pids);
           }},
          {"disk_mib",
           [&](const toml::node& n) {
             return Unsigned("limits.disk_mib", n, &l.disk_mib);
           }},
          {"ttl_seconds",
           [&](const toml::node& n) {
             return Unsigned("limits.ttl_seconds", n, &l.ttl_seconds);
           }},
          {"exec_timeout_seconds",
           [&](const toml::node& n) {
             return Unsigned("limits.exec_timeout_seconds", n,
                             &l.exec_timeout_seconds);
           }},
          {"output_limit_bytes",
           [&](const toml::node& n) {
             return Unsigned("limits.output_limit_bytes", n,
                             &l.output_limit_bytes);
           }},
          {"lifetime_seconds",
           [&](const toml::node& n) {
             return Unsigned("limits.lifetime_seconds", n, &l.lifetime_seconds);
           }},
      });
}

absl::Status Reader::ReadQuotas(const toml::table& table) {
  Quotas& q = config_->quotas;
  return ForEachKey(table, "quotas",
                    {
                        {"sandboxes",
                         [&](const toml::node& n) {
                           return Unsigned("quotas.sandboxes", n, &q.sandboxes);
                         }},
                        {"calls",
                         [&](const toml::node& n) {
                           return Unsigned("quotas.calls", n, &q.calls);
                         }},
                        {"storage_mib",
                         [&](const toml::node& n) {
                           return Unsigned("quotas.storage_mib", n,
                                           &q.storage_mib);
                         }},
                    });
}

absl::Status Reader::ReadUids(const toml::table& table) {
  SandboxUidRange& u = config_->sandbox_uids;
  return ForEachKey(table, "sandbox_uids",
                    {
                        {"base",
                         [&](const toml::node& n) {
                           return Unsigned("sandbox_uids.base", n, &u.base);
                         }},
                        {"count",
                         [&](const toml::node& n) {
                           return Unsigned("sandbox_uids.count", n, &u.count);
                         }},
                    });
}

absl::Status Reader::ReadImages(const toml::table& table) {
  ImageImportConfig& i = config_->images;
  return ForEachKey(table, "images",
                    {
                        {"max_bytes",
                         [&](const toml::node& n) {
                           return Unsigned("images.max_bytes", n, &i.max_bytes);
                         }},
                        {"max_entries",
                         [&](const toml::node& n) {
                           return Unsigned("images.max_entries", n,
                                           &i.max_entries);
                         }},
                    });
}

absl::Status Reader::ReadWorkspace(const toml::table& table) {
  WorkspaceConfig& w = config_->workspace;
  return ForEachKey(
      table, "workspace",
      {
          {"max_upload_bytes",
           [&](const toml::node& n) {
             return Unsigned("workspace.max_upload_bytes", n,
                             &w.max_upload_bytes);
           }},
          {"max_entries",
           [&](const toml::node& n) {
             return Unsigned("workspace.max_entries", n, &w.max_entries);
           }},
          {"max_snapshots",
           [&](const toml::node& n) {
             return Unsigned("workspace.max_snapshots", n, &w.max_snapshots);
           }},
      });
}

absl::Status Reader::ReadNetwork(const toml::table& table) {
  NetworkConfig& c = config_->network;
  return ForEachKey(
      table, "network",
      {
          {"dns_upstream",
           [&](const toml::node& n) {
             return String("network.dns_upstream", n, &c.dns_upstream);
           }},
          {"sandbox_subnet",
           [&](const toml::node& n) {
             return String("network.sandbox_subnet", n, &c.sandbox_subnet);
           }},
          {"allow_private",
           [&](const toml::node& n) {
             return StringArray("network.allow_private", n, &c.allow_private);
           }},
          {"audit_events",
           [&](const toml::node& n) {
             return Unsigned("network.audit_events", n, &c.audit_events);
           }},
          {"max_connections",
           [&](const toml::node& n) {
             return Unsigned("network.max_connections", n, &c.max_connections);
           }},
          {"upstream_ca_file",
           [&](const toml::node& n) {
             return String("network.upstream_ca_file", n, &c.upstream_ca_file);
           }},
      });
}

absl::Status Reader::ReadPolicyKeys(const toml::table& table,
                                    const std::string& prefix, bool principals,
                                    PolicyEntry* entry) {
  PolicyEntry& p = *entry;
  auto key = [&prefix](absl::string_view name) {
    return absl::StrCat(prefix, ".", name);
  };
  std::map<absl::string_view, Handler> handlers = {
      {"deny",
       [&](const toml::node& n) -> absl::Status {
         const auto* value = n.as_boolean();
         if (value == nullptr) {
           return BadValue(key("deny"), n, "expected true or false");
         }
         p.deny = value->get();
         return absl::OkStatus();
       }},
      {"runtimes",
       [&](const toml::node& n) {
         return StringArray(key("runtimes"), n, &p.runtimes);
       }},
      {"default_runtime",
       [&](const toml::node& n) {
         return String(key("default_runtime"), n, &p.default_runtime);
       }},
      {"memory_mib",
       [&](const toml::node& n) {
         return OptionalUnsigned(key("memory_mib"), n, &p.max_memory_mib);
       }},
      {"cpu_millis",
       [&](const toml::node& n) {
         return OptionalUnsigned(key("cpu_millis"), n, &p.max_cpu_millis);
       }},
      {"pids",
       [&](const toml::node& n) {
         return OptionalUnsigned(key("pids"), n, &p.max_pids);
       }},
      {"disk_mib",
       [&](const toml::node& n) {
         return OptionalUnsigned(key("disk_mib"), n, &p.max_disk_mib);
       }},
      {"ttl_seconds",
       [&](const toml::node& n) {
         return OptionalUnsigned(key("ttl_seconds"), n, &p.max_ttl_seconds);
       }},
      {"lifetime_seconds",
       [&](const toml::node& n) {
         return OptionalUnsigned(key("lifetime_seconds"), n,
                                 &p.max_lifetime_seconds);
       }},
      {"grants",
       [&](const toml::node& n) {
         return StringArray(key("grants"), n, &p.grants);
       }},
      {"network",
       [&](const toml::node& n) {
         return StringArray(key("network"), n, &p.network);
       }},
      {"quotas",
       [&](const toml::node& n) -> absl::Status {
         RETURN_IF_ERROR(ExpectTable(n, key("quotas")));
         const std::string quotas = key("quotas");
         auto quota = [&quotas](absl::string_view name) {
           return absl::StrCat(quotas, ".", name);
         };
         return ForEachKey(
             *n.as_table(), quotas,
             {
                 {"sandboxes",
                  [&](const toml::node& v) {
                    return OptionalUnsigned(quota("sandboxes"), v,
                                            &p.quota_sandboxes);
                  }},
                 {"calls",
                  [&](const toml::node& v) {
                    return OptionalUnsigned(quota("calls"), v, &p.quota_calls);
                  }},
                 {"storage_mib",
                  [&](const toml::node& v) {
                    return OptionalUnsigned(quota("storage_mib"), v,
                                            &p.quota_storage_mib);
                  }},
             });
       }},
  };
  if (principals) {
    handlers["users"] = [&](const toml::node& n) {
      return Principals(key("users"), n, &p.user_names, &p.uids);
    };
    handlers["groups"] = [&](const toml::node& n) {
      return Principals(key("groups"), n, &p.group_names, &p.gids);
    };
  }
  return ForEachKey(table, prefix, handlers);
}

absl::Status Reader::ReadPolicy(const toml::table& table, size_t index) {
  PolicyEntry& p = config_->policies.emplace_back();
  p.line = static_cast<int>(table.source().begin.line);
  const std::string prefix = absl::StrCat("policy[", index, "]");
  RETURN_IF_ERROR(ReadPolicyKeys(table, prefix, /*principals=*/true, &p));
  if (p.user_names.empty() && p.uids.empty() && p.group_names.empty() &&
      p.gids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ":", p.line, ": ", prefix,
                     ": matches no one; give users or groups"));
  }
  return absl::OkStatus();
}

absl::Status Reader::ReadRuntimes(const toml::table& table) {
  for (const auto& [name, node] : table) {
    const std::string key = absl::StrCat("runtimes.", Sv(name.str()));
    if (!IsRuntimeName(Sv(name.str()))) {
      return Error(name.source(), key,
                   "runtime names are 1-32 characters of [a-z0-9_-]");
    }
    RETURN_IF_ERROR(ExpectTable(node, key));
    auto& options = config_->runtimes[std::string(Sv(name.str()))];
    for (const auto& [option, value] : *node.as_table()) {
      const std::string option_key = absl::StrCat(key, ".", Sv(option.str()));
      // Plugins receive strings; scalars are accepted for convenience and
      // passed in their TOML spelling (true, 42).
      if (const auto* text = value.as_string()) {
        options[std::string(Sv(option.str()))] = text->get();
      } else if (value.is_integer() || value.is_boolean() ||
                 value.is_floating_point()) {
        options[std::string(Sv(option.str()))] = Render(value);
      } else {
        return BadValue(option_key, value, "expected a string");
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Reader::Read(const toml::table& root) {
  RETURN_IF_ERROR(ForEachKey(
      root, "",
      {
          {"daemon",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "daemon"));
             return ReadDaemon(*n.as_table());
           }},
          {"defaults",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "defaults"));
             return ReadDefaults(*n.as_table());
           }},
          {"limits",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "limits"));
             return ReadLimits(*n.as_table());
           }},
          {"sandbox_uids",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "sandbox_uids"));
             return ReadUids(*n.as_table());
           }},
          {"images",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "images"));
             return ReadImages(*n.as_table());
           }},
          {"workspace",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "workspace"));
             return ReadWorkspace(*n.as_table());
           }},
          {"network",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "network"));
             return ReadNetwork(*n.as_table());
           }},
          {"quotas",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "quotas"));
             return ReadQuotas(*n.as_table());
           }},
          {"default_policy",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "default_policy"));
             config_->default_policy.line =
                 static_cast<int>(n.source().begin.line);
             return ReadPolicyKeys(*n.as_table(), "default_policy",
                                   /*principals=*/false,
                                   &config_->default_policy);
           }},
          {"policy",
           [&](const toml::node& n) -> absl::Status {
             const auto* array = n.as_array();
             if (array == nullptr || !array->is_array_of_tables()) {
               return BadValue("policy", n,
                               "expected [[policy]] tables (an array of "
                               "tables)");
             }
             for (size_t i = 0; i < array->size(); ++i) {
               RETURN_IF_ERROR(ReadPolicy(*array->get(i)->as_table(), i));
             }
             return absl::OkStatus();
           }},
          {"runtimes",
           [&](const toml::node& n) -> absl::Status {
             RETURN_IF_ERROR(ExpectTable(n, "runtimes"));
             return ReadRuntimes(*n.as_table());
           }},
      }));
  return Validate();
}

absl::Status Reader::Validate() const {
  const DaemonConfig& c = *config_;
  auto absolute = [&](absl::string_view key, const std::string& path,
                      bool may_be_empty) -> absl::Status {
    if (path.empty() && may_be_empty) return absl::OkStatus();
    if (path.empty() || path[0] != '/' ||
        path.find('\0') != std::string::npos) {
      return Invalid(key, absl::StrCat("bad value ", Quote(path),
                                       ": expected an absolute path"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(absolute("daemon.socket", c.daemon.socket, false));
  RETURN_IF_ERROR(absolute("daemon.state_dir", c.daemon.state_dir, false));
  RETURN_IF_ERROR(absolute("daemon.plugin_dir", c.daemon.plugin_dir, true));
  RETURN_IF_ERROR(absolute("daemon.agent_path", c.daemon.agent_path, true));
  RETURN_IF_ERROR(absolute("daemon.unpack_path", c.daemon.unpack_path, true));
  // A Unix socket path must fit in sockaddr_un.sun_path (108 bytes).
  if (c.daemon.socket.size() >= 108) {
    return Invalid("daemon.socket",
                   absl::StrCat("bad value ", Quote(c.daemon.socket),
                                ": longer than a Unix socket path can be "
                                "(107 bytes)"));
  }
  static constexpr absl::string_view kLevels[] = {
      "trace", "debug", "info", "warn", "error", "critical", "off"};
  if (std::find(std::begin(kLevels), std::end(kLevels), c.daemon.log_level) ==
      std::end(kLevels)) {
    return Invalid(
        "daemon.log_level",
        absl::StrCat("bad value ", Quote(c.daemon.log_level),
                     ": expected one of ", absl::StrJoin(kLevels, ", ")));
  }
  if (c.daemon.max_sandboxes == 0) {
    return Invalid("daemon.max_sandboxes", "bad value 0: must be at least 1");
  }
  if (c.daemon.max_request_bytes < (64 << 10) ||
      c.daemon.max_request_bytes > (1ull << 30)) {
    return Invalid("daemon.max_request_bytes",
                   absl::StrCat("bad value ", c.daemon.max_request_bytes,
                                ": expected 65536 to 1073741824"));
  }

  // Limits: each at least the minimum a sandbox needs.
  struct Bound {
    absl::string_view key;
    uint64_t value;
    uint64_t minimum;
  };
  const Bound limits[] = {
      {"limits.cpu_millis", c.limits.cpu_millis, kMinCpuMillis},
      {"limits.memory_mib", c.limits.memory_mib, kMinMemoryMib},
      {"limits.pids", c.limits.pids, kMinPids},
      {"limits.disk_mib", c.limits.disk_mib, 1},
      {"limits.ttl_seconds", c.limits.ttl_seconds, 1},
      {"limits.exec_timeout_seconds", c.limits.exec_timeout_seconds, 1},
      {"limits.output_limit_bytes", c.limits.output_limit_bytes, 1},
      {"limits.lifetime_seconds", c.limits.lifetime_seconds, 1},
  };
  for (const Bound& bound : limits) {
    if (bound.value < bound.minimum || bound.value > kMaxInt64) {
      return Invalid(bound.key,
                     absl::StrCat("bad value ", bound.value,
                                  ": must be at least ", bound.minimum));
    }
  }
  // Defaults: between the minimum and the limit.
  struct Range {
    absl::string_view key;
    uint64_t value;
    uint64_t minimum;
    uint64_t maximum;
    absl::string_view maximum_key;
  };
  const Range defaults[] = {
      {"defaults.cpu_millis", c.defaults.cpu_millis, kMinCpuMillis,
       c.limits.cpu_millis, "limits.cpu_millis"},
      {"defaults.memory_mib", c.defaults.memory_mib, kMinMemoryMib,
       c.limits.memory_mib, "limits.memory_mib"},
      {"defaults.pids", c.defaults.pids, kMinPids, c.limits.pids,
       "limits.pids"},
      {"defaults.disk_mib", c.defaults.disk_mib, 1, c.limits.disk_mib,
       "limits.disk_mib"},
      {"defaults.ttl_seconds", c.defaults.ttl_seconds, 1, c.limits.ttl_seconds,
       "limits.ttl_seconds"},
      {"defaults.exec_timeout_seconds", c.defaults.exec_timeout_seconds, 1,
       c.limits.exec_timeout_seconds, "limits.exec_timeout_seconds"},
      {"defaults.output_limit_bytes", c.defaults.output_limit_bytes, 1,
       c.limits.output_limit_bytes, "limits.output_limit_bytes"},
  };
  for (const Range& range : defaults) {
    if (range.value < range.minimum || range.value > range.maximum) {
      return Invalid(range.key,
                     absl::StrCat("bad value ", range.value, ": must be from ",
                                  range.minimum, " to ", range.maximum, " (",
                                  range.maximum_key, ")"));
    }
  }
  if (!IsRuntimeName(c.defaults.runtime)) {
    return Invalid("defaults.runtime",
                   absl::StrCat("bad value ", Quote(c.defaults.runtime),
                                ": expected 1-32 characters of [a-z0-9_-]"));
  }
  if (!IsImageName(c.defaults.image)) {
    return Invalid("defaults.image",
                   absl::StrCat("bad value ", Quote(c.defaults.image),
                                ": expected 1-64 characters of [a-z0-9._-] "
                                "starting with a letter or digit"));
  }

  // Sandbox root must never be a real account: keep clear of the ids that
  // useradd hands out and of nobody (65534).
  if (c.sandbox_uids.base < 65536) {
    return Invalid("sandbox_uids.base",
                   absl::StrCat("bad value ", c.sandbox_uids.base,
                                ": must be at least 65536, above every "
                                "ordinary account"));
  }
  if (c.sandbox_uids.count == 0 ||
      uint64_t{c.sandbox_uids.base} + c.sandbox_uids.count > 0xffffffffULL) {
    return Invalid("sandbox_uids.count",
                   absl::StrCat("bad value ", c.sandbox_uids.count,
                                ": the range must hold at least one uid and "
                                "end below 4294967295"));
  }
  if (c.images.max_bytes == 0 || c.images.max_bytes > kMaxInt64) {
    return Invalid("images.max_bytes", "bad value: must be at least 1");
  }
  if (c.images.max_entries == 0) {
    return Invalid("images.max_entries", "bad value 0: must be at least 1");
  }
  if (c.workspace.max_upload_bytes == 0 ||
      c.workspace.max_upload_bytes > kMaxInt64) {
    return Invalid("workspace.max_upload_bytes",
                   "bad value: must be at least 1");
  }
  if (c.workspace.max_entries == 0) {
    return Invalid("workspace.max_entries", "bad value 0: must be at least 1");
  }
  if (c.network.audit_events == 0 || c.network.audit_events > 1'000'000) {
    return Invalid("network.audit_events", "bad value: expected 1-1000000");
  }
  if (c.network.max_connections == 0 || c.network.max_connections > 65536) {
    return Invalid("network.max_connections", "bad value: expected 1-65536");
  }
  if (c.workspace.max_snapshots > 100000) {
    return Invalid("workspace.max_snapshots", "bad value: at most 100000");
  }

  if (c.daemon.output_buffer_bytes < (1u << 20) ||
      c.daemon.output_buffer_bytes > kMaxInt64) {
    return Invalid("daemon.output_buffer_bytes",
                   absl::StrCat("bad value ", c.daemon.output_buffer_bytes,
                                ": must be at least 1048576 (1 MiB)"));
  }
  const struct {
    absl::string_view key;
    uint64_t value;
  } quotas[] = {
      {"quotas.sandboxes", c.quotas.sandboxes},
      {"quotas.calls", c.quotas.calls},
      {"quotas.storage_mib", c.quotas.storage_mib},
  };
  for (const auto& quota : quotas) {
    if (quota.value == 0 || quota.value > kMaxInt64 / (1 << 20)) {
      return Invalid(quota.key, absl::StrCat("bad value ", quota.value,
                                             ": must be at least 1"));
    }
  }

  auto check_policy = [&](const PolicyEntry& p,
                          const std::string& prefix) -> absl::Status {
    for (const std::string& runtime : p.runtimes) {
      if (!IsRuntimeName(runtime)) {
        return Invalid(absl::StrCat(prefix, ".runtimes"),
                       absl::StrCat("bad value ", Quote(runtime),
                                    ": expected 1-32 characters of "
                                    "[a-z0-9_-]"));
      }
    }
    if (!p.default_runtime.empty() && !p.runtimes.empty() &&
        std::find(p.runtimes.begin(), p.runtimes.end(), p.default_runtime) ==
            p.runtimes.end()) {
      return Invalid(absl::StrCat(prefix, ".default_runtime"),
                     absl::StrCat("bad value ", Quote(p.default_runtime),
                                  ": not among the policy's runtimes"));
    }
    for (const std::string& mode : p.network) {
      if (std::find_if(std::begin(kKnownNetworkModes),
                       std::end(kKnownNetworkModes), [&](const char* known) {
                         return mode == known;
                       }) == std::end(kKnownNetworkModes)) {
        return Invalid(
            absl::StrCat(prefix, ".network"),
            absl::StrCat("bad value ", Quote(mode), ": known modes: ",
                         absl::StrJoin(kKnownNetworkModes, ", ")));
      }
    }
    for (const std::string& grant : p.grants) {
      if (std::find_if(std::begin(kKnownGrants), std::end(kKnownGrants),
                       [&](const char* known) { return grant == known; }) ==
          std::end(kKnownGrants)) {
        return Invalid(
            absl::StrCat(prefix, ".grants"),
            absl::StrCat("bad value ", Quote(grant), ": known grants: ",
                         absl::StrJoin(kKnownGrants, ", ")));
      }
    }
    auto widen = [](const auto& value) -> std::optional<uint64_t> {
      if (!value) return std::nullopt;
      return static_cast<uint64_t>(*value);
    };
    const struct {
      absl::string_view name;
      std::optional<uint64_t> value;
      uint64_t minimum;
      uint64_t maximum;
      absl::string_view maximum_key;
    } maxima[] = {
        {"memory_mib", p.max_memory_mib, kMinMemoryMib, c.limits.memory_mib,
         "limits.memory_mib"},
        {"cpu_millis", widen(p.max_cpu_millis), kMinCpuMillis,
         c.limits.cpu_millis, "limits.cpu_millis"},
        {"pids", widen(p.max_pids), kMinPids, c.limits.pids, "limits.pids"},
        {"disk_mib", p.max_disk_mib, 1, c.limits.disk_mib, "limits.disk_mib"},
        {"ttl_seconds", p.max_ttl_seconds, 1, c.limits.ttl_seconds,
         "limits.ttl_seconds"},
        {"lifetime_seconds", p.max_lifetime_seconds, 1,
         c.limits.lifetime_seconds, "limits.lifetime_seconds"},
        {"quotas.sandboxes", widen(p.quota_sandboxes), 1, 0xffffffffu,
         "a 32-bit count"},
        {"quotas.calls", widen(p.quota_calls), 1, 0xffffffffu,
         "a 32-bit count"},
        {"quotas.storage_mib", p.quota_storage_mib, 1, kMaxInt64 >> 20,
         "the largest size"},
    };
    for (const auto& max : maxima) {
      if (!max.value) continue;
      if (*max.value < max.minimum || *max.value > max.maximum) {
        return Invalid(absl::StrCat(prefix, ".", max.name),
                       absl::StrCat("bad value ", *max.value, ": must be from ",
                                    max.minimum, " to ", max.maximum, " (",
                                    max.maximum_key, ")"));
      }
    }
    return absl::OkStatus();
  };
  for (size_t i = 0; i < c.policies.size(); ++i) {
    RETURN_IF_ERROR(
        check_policy(c.policies[i], absl::StrCat("policy[", i, "]")));
  }
  RETURN_IF_ERROR(check_policy(c.default_policy, "default_policy"));
  return absl::OkStatus();
}

bool UserNameIs(const std::string& name, uint32_t uid) {
  std::vector<char> buffer(16384);
  struct passwd entry {};
  struct passwd* result = nullptr;
  if (::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(),
                   &result) != 0 ||
      result == nullptr) {
    return false;
  }
  return result->pw_uid == uid;
}

bool GroupNameIn(const std::string& name, std::span<const uint32_t> gids) {
  std::vector<char> buffer(65536);
  struct group entry {};
  struct group* result = nullptr;
  if (::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(),
                   &result) != 0 ||
      result == nullptr) {
    return false;
  }
  return std::find(gids.begin(), gids.end(), result->gr_gid) != gids.end();
}

bool Matches(const PolicyEntry& p, uint32_t uid,
             std::span<const uint32_t> gids) {
  if (std::find(p.uids.begin(), p.uids.end(), uid) != p.uids.end()) {
    return true;
  }
  for (uint32_t gid : p.gids) {
    if (std::find(gids.begin(), gids.end(), gid) != gids.end()) return true;
  }
  for (const std::string& name : p.user_names) {
    if (UserNameIs(name, uid)) return true;
  }
  for (const std::string& name : p.group_names) {
    if (GroupNameIn(name, gids)) return true;
  }
  return false;
}

}  // namespace

DaemonConfig DefaultConfig() {
  DaemonConfig config;
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  config.limits.cpu_millis = static_cast<uint32_t>(cpus > 0 ? cpus : 1) * 1000;
  return config;
}

absl::StatusOr<DaemonConfig> ParseConfig(std::string_view text,
                                         std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& error) {
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(source), ":", error.source().begin.line, ":",
        error.source().begin.column, ": ", Sv(error.description())));
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(source), ": ", error.what()));
  }
  DaemonConfig config = DefaultConfig();
  Reader reader(Sv(source), &config);
  RETURN_IF_ERROR(reader.Read(root));
  return config;
}

absl::StatusOr<DaemonConfig> LoadConfig(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
      return absl::NotFoundError(
          absl::StrCat("config file ", path.string(), " does not exist"));
    }
    return ErrnoStatus(absl::StrCat("open ", path.string()));
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return ErrnoStatus(absl::StrCat("read ", path.string()));
  return ParseConfig(contents.str(), path.string());
}

bool EffectivePolicy::AllowsRuntime(std::string_view runtime) const {
  if (all_runtimes) return true;
  return std::find(runtimes.begin(), runtimes.end(), runtime) != runtimes.end();
}

EffectivePolicy ResolvePolicy(const DaemonConfig& config, uint32_t uid,
                              std::span<const uint32_t> gids) {
  EffectivePolicy effective;
  effective.defaults = config.defaults;
  effective.maxima = config.limits;
  effective.quotas = config.quotas;
  const PolicyEntry* applies = &config.default_policy;
  for (size_t i = 0; i < config.policies.size(); ++i) {
    if (!Matches(config.policies[i], uid, gids)) continue;
    effective.policy_index = static_cast<int>(i);
    effective.name = absl::StrCat("policy[", i, "]");
    applies = &config.policies[i];
    break;
  }
  const PolicyEntry& p = *applies;
  effective.deny = p.deny;
  effective.grants = p.grants;
  effective.network = p.network;
  if (!p.runtimes.empty()) {
    effective.all_runtimes = false;
    effective.runtimes = p.runtimes;
  }
  if (!p.default_runtime.empty()) {
    effective.defaults.runtime = p.default_runtime;
  } else if (!effective.AllowsRuntime(config.defaults.runtime)) {
    effective.defaults.runtime = p.runtimes.front();
  }
  SandboxLimits& max = effective.maxima;
  auto tighten = [](auto& limit, const auto& value) {
    if (value) limit = std::min<std::decay_t<decltype(limit)>>(limit, *value);
  };
  tighten(max.memory_mib, p.max_memory_mib);
  tighten(max.cpu_millis, p.max_cpu_millis);
  tighten(max.pids, p.max_pids);
  tighten(max.disk_mib, p.max_disk_mib);
  tighten(max.ttl_seconds, p.max_ttl_seconds);
  tighten(max.lifetime_seconds, p.max_lifetime_seconds);
  // Quotas are the policy's own (they may be larger than [quotas]: a CI
  // account may hold more sandboxes than a person).
  if (p.quota_sandboxes) effective.quotas.sandboxes = *p.quota_sandboxes;
  if (p.quota_calls) effective.quotas.calls = *p.quota_calls;
  if (p.quota_storage_mib) effective.quotas.storage_mib = *p.quota_storage_mib;

  SandboxDefaults& d = effective.defaults;
  d.cpu_millis = std::min(d.cpu_millis, max.cpu_millis);
  d.memory_mib = std::min(d.memory_mib, max.memory_mib);
  d.pids = std::min(d.pids, max.pids);
  d.disk_mib = std::min(d.disk_mib, max.disk_mib);
  d.ttl_seconds =
      std::min({d.ttl_seconds, max.ttl_seconds, max.lifetime_seconds});
  d.exec_timeout_seconds =
      std::min(d.exec_timeout_seconds, max.exec_timeout_seconds);
  d.output_limit_bytes = std::min(d.output_limit_bytes, max.output_limit_bytes);
  return effective;
}

std::filesystem::path PluginDir(const DaemonConfig& config,
                                const std::filesystem::path& exe_dir) {
  if (!config.daemon.plugin_dir.empty()) return config.daemon.plugin_dir;
  return (exe_dir / ".." / "lib" / "corral").lexically_normal();
}

std::filesystem::path AgentPath(const DaemonConfig& config,
                                const std::filesystem::path& exe_dir) {
  if (!config.daemon.agent_path.empty()) return config.daemon.agent_path;
  return (exe_dir / "corral-agent").lexically_normal();
}

std::filesystem::path UnpackPath(const DaemonConfig& config,
                                 const std::filesystem::path& exe_dir) {
  if (!config.daemon.unpack_path.empty()) return config.daemon.unpack_path;
  return (exe_dir / "corral-unpack").lexically_normal();
}

}  // namespace corral::daemon
