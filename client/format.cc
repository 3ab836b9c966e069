#include "client/format.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "client/options.h"
#include "google/protobuf/util/json_util.h"

namespace corral::cli {
namespace {

bool IsSet(const google::protobuf::Timestamp& time) {
  return time.seconds() != 0 || time.nanos() != 0;
}

// "2024-05-01T12:00:00Z (3m ago)", or "-".
std::string TimeWithRelative(const google::protobuf::Timestamp& time,
                             int64_t now_seconds) {
  if (!IsSet(time)) return "-";
  return absl::StrCat(FormatTimestamp(time), " (",
                      FormatRelative(time.seconds() - now_seconds), ")");
}

std::string RelativeOrDash(const google::protobuf::Timestamp& time,
                           int64_t now_seconds) {
  if (!IsSet(time)) return "-";
  return FormatRelative(time.seconds() - now_seconds);
}

// Sorted "k=v, k2=v2" (maps come unordered off the wire), or "-".
std::string FormatMap(
    const google::protobuf::Map<std::string, std::string>& map) {
  if (map.empty()) return "-";
  std::map<std::string, std::string> sorted(map.begin(), map.end());
  return absl::StrJoin(sorted, ", ", absl::PairFormatter("="));
}

std::string ImageSourceName(corral::v1::ImageSource source) {
  switch (source) {
    case corral::v1::IMAGE_SOURCE_BUILTIN:
      return "builtin";
    case corral::v1::IMAGE_SOURCE_ROOTFS_TAR:
      return "rootfs-tar";
    case corral::v1::IMAGE_SOURCE_OCI_ARCHIVE:
      return "oci-archive";
    default:
      return "-";
  }
}

// Renders "Key:" labels padded to one width, so values line up.
class KeyValueList {
 public:
  void Add(std::string key, std::string value) {
    rows_.emplace_back(std::move(key), std::move(value));
  }
  std::string Render() const {
    size_t width = 0;
    for (const auto& [key, value] : rows_) width = std::max(width, key.size());
    std::string out;
    for (const auto& [key, value] : rows_) {
      absl::StrAppend(&out, key, ":", std::string(width - key.size() + 2, ' '),
                      value, "\n");
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, std::string>> rows_;
};

std::string LimitOrDefault(uint64_t value, absl::string_view unit) {
  if (value == 0) return "default";
  return unit.empty() ? absl::StrCat(value) : absl::StrCat(value, " ", unit);
}

}  // namespace

std::string FormatTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size());
  for (size_t i = 0; i < headers.size(); ++i) widths[i] = headers[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  auto render = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string& cell = i < cells.size() ? cells[i] : "";
      line += cell;
      if (i + 1 < widths.size()) {
        line.append(widths[i] - cell.size() + 3, ' ');
      }
    }
    // The last columns may be empty: no trailing blanks either way.
    line.erase(line.find_last_not_of(' ') + 1);
    line += '\n';
    return line;
  };
  std::string out = render(headers);
  for (const auto& row : rows) out += render(row);
  return out;
}

std::string FormatRelative(int64_t seconds_from_now) {
  const bool future = seconds_from_now > 0;
  const int64_t magnitude = future ? seconds_from_now : -seconds_from_now;
  if (magnitude < 1) return "now";
  std::string amount;
  if (magnitude < 60) {
    amount = absl::StrCat(magnitude, "s");
  } else if (magnitude < 3600) {
    amount = absl::StrCat(magnitude / 60, "m");
  } else if (magnitude < 86400) {
    amount = absl::StrCat(magnitude / 3600, "h");
  } else {
    amount = absl::StrCat(magnitude / 86400, "d");
  }
  return future ? absl::StrCat("in ", amount) : absl::StrCat(amount, " ago");
}

std::string FormatTimestamp(const google::protobuf::Timestamp& time) {
  if (!IsSet(time)) return "-";
  const time_t seconds = static_cast<time_t>(time.seconds());
  struct tm utc;
  if (gmtime_r(&seconds, &utc) == nullptr) return absl::StrCat(time.seconds());
  char buffer[32];
  const size_t length =
      strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(buffer, length);
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatCpus(uint32_t cpu_millis) {
  if (cpu_millis == 0) return "default";
  if (cpu_millis % 1000 == 0) return absl::StrCat(cpu_millis / 1000);
  std::string text = absl::StrFormat("%.3f", cpu_millis / 1000.0);
  text.erase(text.find_last_not_of('0') + 1);
  return text;
}

std::string FormatOwner(uint32_t uid) {
  struct passwd entry;
  struct passwd* found = nullptr;
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<size_t>(size) : 16384);
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 &&
      found != nullptr) {
    return absl::StrCat(uid, " (", found->pw_name, ")");
  }
  return absl::StrCat(uid);
}

std::string FormatGuarantees(
    const google::protobuf::RepeatedField<int>& guarantees) {
  if (guarantees.empty()) return "-";
  std::vector<std::string> names;
  for (int guarantee : guarantees) {
    names.push_back(
        GuaranteeName(static_cast<corral::v1::Guarantee>(guarantee)));
  }
  return absl::StrJoin(names, ",");
}

std::string FormatRuntimes(const corral::v1::ListRuntimesResponse& response) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::Runtime& runtime : response.runtimes()) {
    rows.push_back({runtime.name(), runtime.available() ? "yes" : "no",
                    runtime.is_default() ? "*" : "",
                    FormatGuarantees(runtime.guarantees()), runtime.reason()});
  }
  std::string table = FormatTable(
      {"NAME", "AVAILABLE", "DEFAULT", "GUARANTEES", "REASON"}, rows);
  // Whose default, and why: a [[policy]] entry may choose another, and
  // allow only some runtimes (a daemon that says why also says which).
  std::string why;
  std::vector<std::string> refused;
  for (const corral::v1::Runtime& runtime : response.runtimes()) {
    if (runtime.is_default() && !runtime.default_reason().empty()) {
      why = absl::StrCat("Your default runtime: ", runtime.name(), " (",
                         runtime.default_reason(), ")\n");
    }
    if (!runtime.allowed()) refused.push_back(runtime.name());
  }
  if (!why.empty()) {
    table += why;
    if (!refused.empty()) {
      absl::StrAppend(&table, "Not allowed by your policy: ",
                      absl::StrJoin(refused, ", "), "\n");
    }
  }
  return table;
}

std::string FormatSandboxes(const corral::v1::ListSandboxesResponse& response,
                            int64_t now_seconds) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::Sandbox& sandbox : response.sandboxes()) {
    rows.push_back({sandbox.id(), sandbox.runtime(), sandbox.image(),
                    StateName(sandbox.state()),
                    RelativeOrDash(sandbox.created_at(), now_seconds),
                    RelativeOrDash(sandbox.expires_at(), now_seconds),
                    FormatOwner(sandbox.owner_uid())});
  }
  return FormatTable(
      {"ID", "RUNTIME", "IMAGE", "STATE", "CREATED", "EXPIRES", "OWNER"}, rows);
}

std::string FormatPorts(const corral::v1::Sandbox& sandbox, bool lines) {
  std::vector<std::string> ports;
  for (const auto& port : sandbox.ports()) {
    ports.push_back(absl::StrCat(port.sandbox_port(), " -> ",
                                 port.host_address(), ":", port.host_port()));
  }
  if (lines) {
    std::string text;
    for (const auto& line : ports) absl::StrAppend(&text, line, "\n");
    return text;
  }
  return absl::StrJoin(ports, ", ");
}

std::string FormatSandbox(const corral::v1::Sandbox& sandbox,
                          int64_t now_seconds) {
  KeyValueList list;
  list.Add("ID", sandbox.id());
  list.Add("State", StateName(sandbox.state()));
  if (!sandbox.failure().empty()) list.Add("Failure", sandbox.failure());
  list.Add("Runtime", sandbox.runtime());
  list.Add("Image", sandbox.image());
  list.Add("Owner", absl::StrCat("uid ", FormatOwner(sandbox.owner_uid()),
                                 ", gid ", sandbox.owner_gid()));
  list.Add("Created", TimeWithRelative(sandbox.created_at(), now_seconds));
  list.Add("Expires", TimeWithRelative(sandbox.expires_at(), now_seconds));
  list.Add("Idle timeout",
           sandbox.idle_timeout_seconds() == 0
               ? "none"
               : absl::StrCat(sandbox.idle_timeout_seconds(), " s"));
  if (sandbox.has_last_activity_at()) {
    list.Add("Last activity",
             TimeWithRelative(sandbox.last_activity_at(), now_seconds));
  }
  const corral::v1::Limits& limits = sandbox.limits();
  list.Add("CPUs", FormatCpus(limits.cpu_millis()));
  list.Add("Memory", LimitOrDefault(limits.memory_mib(), "MiB"));
  list.Add("Pids", LimitOrDefault(limits.pids(), ""));
  list.Add("Disk", LimitOrDefault(limits.disk_mib(), "MiB"));
  list.Add("Network", NetworkName(sandbox.network()));
  if (!sandbox.network_address().empty()) {
    list.Add("Address", sandbox.network_address());
  }
  if (sandbox.ports_size() > 0) list.Add("Ports", FormatPorts(sandbox));
  const auto& allow = sandbox.network_policy();
  if (allow.allow_domains_size() > 0 || allow.allow_cidrs_size() > 0) {
    std::vector<std::string> entries(allow.allow_domains().begin(),
                                     allow.allow_domains().end());
    entries.insert(entries.end(), allow.allow_cidrs().begin(),
                   allow.allow_cidrs().end());
    list.Add("Allowed", absl::StrJoin(entries, ", "));
  }
  list.Add("Hostname", sandbox.hostname().empty() ? "-" : sandbox.hostname());
  list.Add("Workdir", sandbox.workdir().empty() ? "-" : sandbox.workdir());
  list.Add("Guarantees", FormatGuarantees(sandbox.guarantees()));
  list.Add("Runtime options", FormatMap(sandbox.runtime_options()));
  if (!sandbox.runtime_details().empty()) {
    list.Add("Runtime details", FormatMap(sandbox.runtime_details()));
  }
  list.Add("Labels", FormatMap(sandbox.labels()));
  list.Add("Env", FormatMap(sandbox.env()));
  list.Add("Agent",
           sandbox.agent_version().empty() ? "-" : sandbox.agent_version());
  return list.Render();
}

std::string FormatImages(const corral::v1::ListImagesResponse& response,
                         int64_t now_seconds) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::Image& image : response.images()) {
    const bool builtin = image.source() == corral::v1::IMAGE_SOURCE_BUILTIN;
    rows.push_back({image.name(), ImageSourceName(image.source()),
                    builtin ? "-" : FormatBytes(image.size_bytes()),
                    builtin ? "-" : absl::StrCat(image.entries()),
                    absl::StrCat(image.sandboxes()),
                    RelativeOrDash(image.created_at(), now_seconds)});
  }
  return FormatTable(
      {"NAME", "SOURCE", "SIZE", "ENTRIES", "SANDBOXES", "CREATED"}, rows);
}

std::string FormatImage(const corral::v1::Image& image, int64_t now_seconds) {
  KeyValueList list;
  list.Add("Name", image.name());
  list.Add("Source", ImageSourceName(image.source()));
  list.Add("Size", FormatBytes(image.size_bytes()));
  list.Add("Entries", absl::StrCat(image.entries()));
  list.Add("SHA-256",
           image.archive_sha256().empty() ? "-" : image.archive_sha256());
  list.Add("Created", TimeWithRelative(image.created_at(), now_seconds));
  list.Add("Sandboxes", absl::StrCat(image.sandboxes()));
  list.Add("Labels", FormatMap(image.labels()));
  return list.Render();
}

std::string FormatVersion(absl::string_view client_version,
                          const corral::v1::GetVersionResponse& daemon) {
  KeyValueList list;
  list.Add("Client", std::string(client_version));
  list.Add("Daemon", daemon.version());
  list.Add("API", daemon.api_version());
  list.Add("Agent protocol", absl::StrCat(daemon.agent_protocol_version()));
  list.Add("Host kernel", daemon.host_kernel());
  return list.Render();
}

std::vector<DoctorCheck> RuntimeChecks(
    const corral::v1::ListRuntimesResponse& response) {
  std::vector<DoctorCheck> checks;
  for (const corral::v1::Runtime& runtime : response.runtimes()) {
    DoctorCheck check;
    check.ok = runtime.available();
    check.required = runtime.is_default();
    check.name = absl::StrCat("runtime ", runtime.name(),
                              runtime.is_default() ? " (default)" : "");
    std::vector<std::string> parts;
    if (runtime.available()) {
      parts.push_back(
          absl::StrCat("guarantees ", FormatGuarantees(runtime.guarantees())));
    }
    if (!runtime.reason().empty()) parts.push_back(runtime.reason());
    if (!runtime.details().empty()) {
      parts.push_back(FormatMap(runtime.details()));
    }
    if (!runtime.available() && runtime.reason().empty()) {
      parts.insert(parts.begin(), "unavailable (no reason given)");
    }
    check.detail = absl::StrJoin(parts, "; ");
    checks.push_back(std::move(check));
  }
  return checks;
}

bool DefaultRuntimeAvailable(const corral::v1::ListRuntimesResponse& response) {
  for (const corral::v1::Runtime& runtime : response.runtimes()) {
    if (runtime.is_default()) return runtime.available();
  }
  return false;
}

std::string FormatDoctor(const std::vector<DoctorCheck>& checks) {
  std::string out;
  for (const DoctorCheck& check : checks) {
    const char* verdict = check.ok         ? "ok   "
                          : check.required ? "FAIL "
                                           : "no   ";
    absl::StrAppend(&out, verdict, check.name);
    if (!check.detail.empty()) absl::StrAppend(&out, ": ", check.detail);
    out += '\n';
  }
  return out;
}

std::string FormatDoctorJson(const std::vector<DoctorCheck>& checks, bool ok) {
  std::vector<std::string> items;
  for (const DoctorCheck& check : checks) {
    items.push_back(absl::StrCat("{\"name\":", JsonString(check.name),
                                 ",\"ok\":", check.ok ? "true" : "false",
                                 ",\"detail\":", JsonString(check.detail),
                                 "}"));
  }
  return absl::StrCat("{\"ok\":", ok ? "true" : "false", ",\"checks\":[",
                      absl::StrJoin(items, ","), "]}\n");
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print JSON: ", status.ToString()));
  }
  out += '\n';
  return out;
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {
      switch (byte) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (byte < 0x20 || byte == 0x7f) {
            absl::StrAppendFormat(&out, "\\u%04x", byte);
          } else {
            out += static_cast<char>(byte);
          }
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence: copy it when well formed (no overlong
    // forms, no surrogates, at most U+10FFFF), else one U+FFFD per bad byte.
    size_t length = 0;
    uint32_t code_point = 0;
    if (byte >= 0xc2 && byte <= 0xdf) {
      length = 2;
      code_point = byte & 0x1f;
    } else if (byte >= 0xe0 && byte <= 0xef) {
      length = 3;
      code_point = byte & 0x0f;
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      length = 4;
      code_point = byte & 0x07;
    }
    bool valid = length != 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) valid = false;
      code_point = (code_point << 6) | (next & 0x3f);
    }
    if (valid) {
      valid =
          !(length == 3 && code_point < 0x800) &&
          !(length == 4 && (code_point < 0x10000 || code_point > 0x10ffff)) &&
          !(code_point >= 0xd800 && code_point <= 0xdfff);
    }
    if (valid) {
      out.append(text.data() + i, length);
      i += length;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  out += '"';
  return out;
}

std::string FormatExecResultJson(absl::string_view sandbox_id,
                                 const corral::v1::ExecExit& exit,
                                 absl::string_view stdout_data,
                                 absl::string_view stderr_data) {
  auto boolean = [](bool value) { return value ? "true" : "false"; };
  return absl::StrCat(
      "{\"sandbox_id\":", JsonString(sandbox_id),
      ",\"exit_code\":", exit.exit_code(), ",\"signal\":", exit.signal(),
      ",\"timed_out\":", boolean(exit.timed_out()),
      ",\"oom_killed\":", boolean(exit.oom_killed()),
      ",\"stdout\":", JsonString(stdout_data),
      ",\"stderr\":", JsonString(stderr_data),
      ",\"stdout_truncated\":", boolean(exit.stdout_truncated()),
      ",\"stderr_truncated\":", boolean(exit.stderr_truncated()),
      ",\"duration_us\":", exit.duration_us(),
      ",\"error\":", JsonString(exit.error()), "}\n");
}

}  // namespace corral::cli
