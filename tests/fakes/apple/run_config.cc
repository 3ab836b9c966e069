#include "tests/fakes/apple/run_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "tests/fakes/apple/fake_util.h"

extern char** environ;

namespace corral::fake_apple {
namespace {

using nlohmann::json;

// LinuxContainer.defaultMaskedPaths() and defaultReadonlyPaths().
const std::vector<std::string> kDefaultMaskedList = {
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap"};
const std::vector<std::string> kDefaultReadonlyList = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

std::string TrimSpaces(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  size_t end = text.find_last_not_of(" \t");
  return text.substr(begin, end - begin + 1);
}

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(c));
  return text;
}

// Measurement.parse: the value and its unit's factor in bytes.
double ParseMeasurementBytes(const std::string& input) {
  std::string trimmed = TrimSpaces(input);
  for (char& c : trimmed) c = static_cast<char>(std::tolower(c));
  if (trimmed.empty()) Fail("invalid size");
  size_t split = trimmed.find_first_not_of("01234567890.");
  std::string raw_value = TrimSpaces(
      split == std::string::npos ? trimmed : trimmed.substr(0, split));
  std::string raw_unit =
      split == std::string::npos ? "" : TrimSpaces(trimmed.substr(split));
  char* end = nullptr;
  errno = 0;
  double value = raw_value.empty() ? 0 : std::strtod(raw_value.c_str(), &end);
  if (raw_value.empty() || end != raw_value.c_str() + raw_value.size() ||
      std::count(raw_value.begin(), raw_value.end(), '.') > 1) {
    Fail("invalid size");
  }
  char symbol = raw_unit.empty() ? 'b' : raw_unit[0];
  std::string rest = raw_unit.empty() ? "" : raw_unit.substr(1);
  if (rest != "" && rest != "ib" && rest != "b") {
    Fail("invalid symbol: " + raw_unit);
  }
  const std::string units = "bkmgtp";
  size_t power = units.find(symbol);
  if (power == std::string::npos) Fail("invalid symbol: " + raw_unit);
  return value * std::pow(1024.0, static_cast<double>(power));
}

std::string HostEnv(const std::string& name, bool* found) {
  const char* value = std::getenv(name.c_str());
  *found = value != nullptr;
  return value ? value : "";
}

// Parser.envFile: Moby's env-file rules.
std::vector<std::string> EnvFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Fail("failed to read envfile at " + path + " (cause: \"" +
         std::strerror(errno) + "\")");
  }
  std::stringstream content;
  content << in.rdbuf();
  std::vector<std::string> lines;
  std::string text = content.str();
  std::string line;
  std::istringstream reader(text);
  while (std::getline(reader, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t first = 0;
    while (first < line.size() &&
           std::isspace(static_cast<unsigned char>(line[first]))) {
      ++first;
    }
    std::string trimmed = line.substr(first);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    size_t equals = trimmed.find('=');
    std::string variable =
        equals == std::string::npos ? trimmed : trimmed.substr(0, equals);
    std::string value =
        equals == std::string::npos ? "" : trimmed.substr(equals + 1);
    size_t start = variable.find_first_not_of(" \t");
    variable = start == std::string::npos ? "" : variable.substr(start);
    if (variable.find_first_of(" \t") != std::string::npos) {
      Fail("variable '" + variable + "' contains whitespaces");
    }
    if (variable.empty()) Fail("no variable name on line '" + trimmed + "'");
    if (equals != std::string::npos) {
      lines.push_back(variable + "=" + value);
    } else {
      bool found = false;
      std::string host = HostEnv(variable, &found);
      if (found) lines.push_back(variable + "=" + host);
    }
  }
  return lines;
}

// Parser.env: `-e KEY` takes the host's value, when it has one.
std::vector<std::string> Env(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& value : values) {
    if (value.find('=') != std::string::npos) {
      out.push_back(value);
      continue;
    }
    bool found = false;
    std::string host = HostEnv(value, &found);
    if (found) out.push_back(value + "=" + host);
  }
  return out;
}

// Parser.allEnv: the image's (bare names dropped), the env files', -e's;
// one entry a key, the last one winning (kept where the key first came).
std::vector<std::string> AllEnv(const json& image_env,
                                const std::vector<std::string>& env_files,
                                const std::vector<std::string>& envs) {
  std::vector<std::string> combined;
  for (const auto& entry : image_env) {
    std::string text = entry.get<std::string>();
    if (text.find('=') != std::string::npos) combined.push_back(text);
  }
  for (const auto& file : env_files) {
    for (auto& line : EnvFile(file)) combined.push_back(line);
  }
  for (auto& line : Env(envs)) combined.push_back(line);
  std::vector<std::string> keys;
  std::map<std::string, std::string> values;
  for (const auto& entry : combined) {
    std::string key = entry.substr(0, entry.find('='));
    if (values.count(key) == 0) keys.push_back(key);
    values[key] = entry;
  }
  std::vector<std::string> out;
  for (const auto& key : keys) out.push_back(values[key]);
  return out;
}

const std::map<std::string, std::string>& UlimitNames() {
  static const std::map<std::string, std::string> kNames = {
      {"core", "RLIMIT_CORE"},         {"cpu", "RLIMIT_CPU"},
      {"data", "RLIMIT_DATA"},         {"fsize", "RLIMIT_FSIZE"},
      {"locks", "RLIMIT_LOCKS"},       {"memlock", "RLIMIT_MEMLOCK"},
      {"msgqueue", "RLIMIT_MSGQUEUE"}, {"nice", "RLIMIT_NICE"},
      {"nofile", "RLIMIT_NOFILE"},     {"nproc", "RLIMIT_NPROC"},
      {"rss", "RLIMIT_RSS"},           {"rtprio", "RLIMIT_RTPRIO"},
      {"rttime", "RLIMIT_RTTIME"},     {"sigpending", "RLIMIT_SIGPENDING"},
      {"stack", "RLIMIT_STACK"}};
  return kNames;
}

uint64_t RlimitValue(const std::string& value, const std::string& type) {
  std::string trimmed = TrimSpaces(value);
  for (char& c : trimmed) c = static_cast<char>(std::tolower(c));
  if (trimmed == "unlimited" || trimmed == "-1") return UINT64_MAX;
  bool digits = !trimmed.empty() &&
                std::all_of(trimmed.begin(), trimmed.end(), ::isdigit);
  errno = 0;
  unsigned long long parsed =
      digits ? std::strtoull(trimmed.c_str(), nullptr, 10) : 0;
  if (!digits || errno != 0) {
    Fail("invalid ulimit value '" + value + "' for '" + type +
         "': must be a non-negative integer or 'unlimited'");
  }
  return parsed;
}

json Rlimits(const std::vector<std::string>& ulimits) {
  json out = json::array();
  std::set<std::string> seen;
  for (const auto& ulimit : ulimits) {
    std::vector<std::string> parts = SwiftSplit(ulimit, '=', 1);
    if (parts.size() != 2) {
      Fail("invalid ulimit format '" + ulimit +
           "': expected <type>=<soft>[:<hard>]");
    }
    std::string type = parts[0];
    for (char& c : type) c = static_cast<char>(std::tolower(c));
    auto it = UlimitNames().find(type);
    if (it == UlimitNames().end()) {
      std::string valid;
      for (const auto& [name, ignored] : UlimitNames()) {
        valid += (valid.empty() ? "" : ", ") + name;
      }
      Fail("unsupported ulimit type '" + type + "': valid types are " + valid);
    }
    std::vector<std::string> values = SwiftSplit(parts[1], ':', 1);
    uint64_t soft = 0, hard = 0;
    if (values.size() == 1) {
      soft = hard = RlimitValue(values[0], type);
    } else if (values.size() == 2) {
      soft = RlimitValue(values[0], type);
      hard = RlimitValue(values[1], type);
    } else {
      Fail("invalid ulimit format '" + ulimit +
           "': expected <type>=<soft>[:<hard>]");
    }
    if (soft > hard) {
      Fail("ulimit '" + type + "' soft limit (" + std::to_string(soft) +
           ") cannot exceed hard limit (" + std::to_string(hard) + ")");
    }
    if (!seen.insert(it->second).second) {
      Fail("duplicate ulimit type: " + SwiftSplit(ulimit, '=').front());
    }
    out.push_back({{"hard", hard}, {"limit", it->second}, {"soft", soft}});
  }
  return out;
}

json Filesystem(const std::string& type, const std::string& source,
                const std::string& destination,
                const std::vector<std::string>& options) {
  return json{{"destination", destination},
              {"options", options},
              {"source", source},
              {"type", {{type, json::object()}}}};
}

// Parser.validateMount for a filesystem.
void ValidateMount(const json& fs) {
  if (!fs["type"].contains("tmpfs")) {
    const std::string source = fs["source"];
    if (source.empty() || source[0] != '/') {
      Fail(source + " is not an absolute path on the host");
    }
    if (!PathExists(source)) {
      Fail("file path '" + source + "' does not exist");
    }
  }
  if (fs["destination"].get<std::string>().empty()) {
    Fail("mount destination cannot be empty");
  }
}

// Parser.volume (a bind of a host path; named and anonymous volumes are
// not modelled).
json Volume(const std::string& spec) {
  std::string trimmed = spec;
  while (!trimmed.empty() && trimmed[0] == ':') trimmed.erase(0, 1);
  std::vector<std::string> parts = SwiftSplit(trimmed, ':');
  if (parts.size() == 1) {
    FailFake("anonymous volumes (-v " + spec + ") are not modelled");
  }
  if (parts.size() != 2 && parts.size() != 3) {
    Fail("invalid volume format " + spec);
  }
  const std::string& source = parts[0];
  if (source.find('/') == std::string::npos && source != "." &&
      source != "..") {
    FailFake("named volumes (-v " + spec + ") are not modelled");
  }
  const std::string absolute = AbsolutePath(source);
  if (!PathExists(absolute)) Fail("path '" + source + "' does not exist");
  std::vector<std::string> options;
  if (parts.size() == 3) options = SwiftSplit(parts[2], ',');
  json fs = Filesystem("virtiofs", absolute, parts[1], options);
  ValidateMount(fs);
  return fs;
}

// Parser.mount (virtiofs, bind and tmpfs; volumes not modelled).
json Mount(const std::string& spec) {
  std::vector<std::string> parts = SwiftSplit(spec, ',');
  if (parts.empty()) Fail("invalid mount format: " + spec);
  std::map<std::string, std::string> directives = {{"type", "virtiofs"}};
  for (const auto& part : parts) {
    std::vector<std::string> key_value = SwiftSplit(part, '=', 2);
    std::string key = key_value.empty() ? part : key_value[0];
    bool skip_value = false;
    if (key == "type" || key == "size" || key == "mode") {
    } else if (key == "source" || key == "src") {
      key = "source";
    } else if (key == "destination" || key == "dst" || key == "target") {
      key = "destination";
    } else if (key == "readonly" || key == "ro") {
      key = "ro";
      skip_value = true;
    } else {
      Fail("unknown directive " + key + " when parsing mount " + spec);
    }
    std::string value;
    if (!skip_value) {
      if (key_value.size() != 2) {
        Fail("invalid directive format missing value " + part + " in " + spec);
      }
      value = key_value[1];
    }
    directives[key] = value;
  }
  std::string type = directives["type"];
  if (type == "bind") type = "virtiofs";
  if (type == "volume")
    FailFake("volume mounts (--mount " + spec + ") are not modelled");
  if (type != "virtiofs" && type != "tmpfs") {
    Fail("unsupported mount type " + type);
  }
  std::string source, destination;
  std::vector<std::string> options;
  for (const auto& [key, value] : directives) {
    if (key == "ro") {
      options.push_back("ro");
    } else if (key == "size") {
      if (type != "tmpfs")
        Fail("unsupported option size for " + directives["type"] + " mount");
      options.push_back("size=" +
                        std::to_string(MemoryStringAsMiB(value) * 1024 * 1024));
    } else if (key == "mode") {
      if (type != "tmpfs")
        Fail("unsupported option mode for " + directives["type"] + " mount");
      options.push_back("mode=" + value);
    } else if (key == "source") {
      if (type == "tmpfs") Fail("cannot specify source for tmpfs mount");
      const std::string absolute = AbsolutePath(value);
      if (!PathExists(absolute)) Fail("path '" + value + "' does not exist");
      if (!IsDirectory(absolute))
        Fail("path '" + value + "' is not a directory");
      source = absolute;
    } else if (key == "destination") {
      destination = value;
    }
  }
  json fs = type == "tmpfs"
                ? Filesystem("tmpfs", "tmpfs", destination, options)
                : Filesystem("virtiofs", source, destination, options);
  ValidateMount(fs);
  return fs;
}

// Parser.network: name[,mac=..][,mtu=..].
void CheckNetwork(const std::string& spec) {
  if (spec.empty()) Fail("network specification cannot be empty");
  std::vector<std::string> parts;
  std::stringstream in(spec);
  for (std::string part; std::getline(in, part, ',');) parts.push_back(part);
  if (!spec.empty() && spec.back() == ',') parts.push_back("");
  if (parts.empty() || parts[0].empty()) Fail("network name cannot be empty");
  for (size_t i = 1; i < parts.size(); ++i) {
    size_t equals = parts[i].find('=');
    if (equals == std::string::npos) {
      Fail("invalid property format '" + parts[i] +
           "' in network specification '" + spec + "'");
    }
    std::string key = parts[i].substr(0, equals);
    std::string value = parts[i].substr(equals + 1);
    if (key == "mac") {
      if (value.empty()) Fail("mac address value cannot be empty");
    } else if (key == "mtu") {
      char* end = nullptr;
      long mtu = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || mtu < 1280 || mtu > 65535) {
        Fail("invalid mtu value '" + value +
             "': must be between 1280 and 65535");
      }
    } else {
      Fail("unknown network property '" + key +
           "'. Available properties: mac, mtu");
    }
  }
}

json Labels(const std::vector<std::string>& raw) {
  json out = json::object();
  for (const auto& label : raw) {
    if (label.empty()) Fail("label cannot be an empty string");
    std::vector<std::string> parts = SwiftSplit(label, '=', 2);
    if (parts.size() == 1) {
      out[parts[0]] = "";
    } else if (parts.size() == 2) {
      out[parts[0]] = parts[1];
    } else {
      Fail("invalid label format " + label);
    }
  }
  return out;
}

// Parser.publishSocket, with its side effects on the host path.
json PublishSocket(const std::string& text) {
  std::vector<std::string> parts = SwiftSplit(text, ':');
  if (parts.size() != 2) {
    Fail("invalid publish-socket format " + text +
         ". Expected: host_path:container_path");
  }
  const std::string host = AbsolutePath(parts[0]);
  struct stat st {};
  if (::stat(host.c_str(), &st) == 0) {
    if (S_ISSOCK(st.st_mode)) {
      Fail("host socket " + host + " already exists and may be in use");
    }
    RemoveTree(host);
  }
  if (!PathExists(Dirname(host))) MakeDirs(Dirname(host), 0755);
  if (parts[1].empty() || parts[1][0] != '/') {
    Fail("containerPath must be absolute: " + parts[1]);
  }
  return json{{"containerPath", parts[1]}, {"hostPath", host}};
}

std::string Capability(const std::string& raw) {
  std::string upper = Upper(raw);
  if (upper == "ALL") return upper;
  std::string normalized = upper.rfind("CAP_", 0) == 0 ? upper : "CAP_" + upper;
  for (const std::string& name : AllCapabilityNames()) {
    if (normalized == name) return normalized;
  }
  Fail("invalid CapabilityName '" + upper + "'");
}

// Parser.pathOverrides: the defaults plus the values, NONE clearing.
std::optional<json> PathOverrides(const std::vector<std::string>& values,
                                  const std::vector<std::string>& defaults,
                                  const std::string& flag) {
  if (values.empty()) return std::nullopt;
  std::vector<std::string> paths = defaults;
  std::set<std::string> seen(defaults.begin(), defaults.end());
  for (const auto& value : values) {
    std::string trimmed = TrimSpaces(value);
    if (Upper(trimmed) == "NONE") {
      paths.clear();
      seen.clear();
      continue;
    }
    if (trimmed.empty() || trimmed[0] != '/') {
      Fail("invalid path '" + value + "' for --" + flag +
           ": path must be absolute, or the NONE sentinel");
    }
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    if (seen.insert(trimmed).second) paths.push_back(trimmed);
  }
  return json(paths);
}

json UserJson(const std::string& raw) {
  return json{{"raw", {{"userString", raw}}}};
}

json IdUser(uint32_t uid, uint32_t gid) {
  return json{{"id", {{"gid", gid}, {"uid", uid}}}};
}

}  // namespace

int64_t MemoryStringAsMiB(const std::string& text) {
  return static_cast<int64_t>(ParseMeasurementBytes(text) / 1048576.0);
}

uint64_t MemoryStringAsBytes(const std::string& text) {
  return static_cast<uint64_t>(ParseMeasurementBytes(text));
}

bool ContainerNameValid(const std::string& name) {
  static const std::regex kPattern("[a-zA-Z0-9][a-zA-Z0-9_.-]+");
  return name.size() <= 63 && std::regex_match(name, kPattern);
}

std::vector<std::string> ExtraEnvironment(const Parsed& flags) {
  return AllEnv(json::array(), flags.Values("env-file"), flags.Values("env"));
}

json ProcessUser(const Parsed& flags, const json& default_user,
                 json* extra_groups) {
  *extra_groups = json::array();
  auto user = flags.Value("user");
  auto uid = flags.Value("uid");
  auto gid = flags.Value("gid");
  if (user && !user->empty()) return UserJson(*user);
  if (uid && gid) {
    return IdUser(static_cast<uint32_t>(std::stoul(*uid)),
                  static_cast<uint32_t>(std::stoul(*gid)));
  }
  if (!uid && !gid) return default_user;
  if (uid) return UserJson(*uid);
  extra_groups->push_back(static_cast<uint32_t>(std::stoul(*gid)));
  return default_user;
}

json ContainerConfigFromFlags(const std::string& id, const StoredImage& image,
                              const json& image_config, const Parsed& flags) {
  const json config =
      image_config.is_object() && image_config.contains("config")
          ? image_config["config"]
          : json::object();
  // Parser.process.
  std::vector<std::string> command;
  bool entrypoint_override = false;
  auto entrypoint = flags.Value("entrypoint");
  if (entrypoint && !entrypoint->empty()) {
    command.push_back(*entrypoint);
    entrypoint_override = true;
  } else if (config.contains("Entrypoint") && config["Entrypoint"].is_array()) {
    for (const auto& part : config["Entrypoint"]) command.push_back(part);
  }
  std::vector<std::string> arguments = flags.Arguments("arguments");
  if (!arguments.empty()) {
    command.insert(command.end(), arguments.begin(), arguments.end());
  } else if (!entrypoint_override && config.contains("Cmd") &&
             config["Cmd"].is_array()) {
    for (const auto& part : config["Cmd"]) command.push_back(part);
  }
  if (command.empty()) {
    Fail("command/entrypoint not specified for container process");
  }
  std::string working_dir = "/";
  if (auto cwd = flags.Value("cwd")) {
    working_dir = *cwd;
  } else if (config.contains("WorkingDir") &&
             config["WorkingDir"].is_string()) {
    working_dir = config["WorkingDir"];
  }
  json default_user = IdUser(0, 0);
  if (config.contains("User") && config["User"].is_string()) {
    default_user = UserJson(config["User"]);
  }
  json groups;
  json user = ProcessUser(flags, default_user, &groups);
  json environment = AllEnv(config.value("Env", json::array()),
                            flags.Values("env-file"), flags.Values("env"));
  json rlimits = Rlimits(flags.Values("ulimit"));
  if (flags.Flag("tty")) FailFake("--tty is not modelled");
  json process = {{"arguments", std::vector<std::string>(command.begin() + 1,
                                                         command.end())},
                  {"environment", environment},
                  {"executable", command[0]},
                  {"rlimits", rlimits},
                  {"supplementalGroups", groups},
                  {"terminal", false},
                  {"user", user},
                  {"workingDirectory", working_dir}};

  // Parser.resources: 4 CPUs and 1 GiB unless given.
  int64_t cpus = 4;
  if (auto value = flags.Value("cpus")) cpus = std::stoll(*value);
  uint64_t memory = 1024ull << 20;
  if (auto value = flags.Value("memory")) {
    memory = static_cast<uint64_t>(MemoryStringAsMiB(*value)) << 20;
  }

  // Mounts: tmpfs first, then -v, then --mount.
  json mounts = json::array();
  std::set<std::string> seen_tmpfs;
  for (const auto& path : flags.Values("tmpfs")) {
    if (!seen_tmpfs.insert(path).second) continue;
    json fs = Filesystem("tmpfs", "tmpfs", path, {});
    ValidateMount(fs);
    mounts.push_back(fs);
  }
  for (const auto& spec : flags.Values("volume"))
    mounts.push_back(Volume(spec));
  std::set<std::string> seen_mounts;
  for (const auto& spec : flags.Values("mount")) {
    if (seen_mounts.insert(spec).second) mounts.push_back(Mount(spec));
  }

  json result = json::object();
  if (auto shm = flags.Value("shm-size")) {
    result["shmSize"] = MemoryStringAsBytes(*shm);
  }
  if (flags.Flag("virtualization")) {
    FailFake("--virtualization is not modelled");
  }

  // Networks: only `none`, alone.
  std::vector<std::string> networks = flags.Values("network");
  for (const auto& spec : networks) CheckNetwork(spec);
  if (std::find(networks.begin(), networks.end(), "none") != networks.end()) {
    if (networks.size() != 1) {
      Fail("no other networks may be created along with network none");
    }
  } else {
    FailFake(
        "only --network none is modelled (the real CLI attaches the "
        "container to a vmnet network)");
  }

  if (!flags.Flag("no-dns")) {
    json dns = {{"nameservers", flags.Values("dns")},
                {"options", flags.Values("dns-option")},
                {"searchDomains", flags.Values("dns-search")}};
    if (auto domain = flags.Value("dns-domain")) dns["domain"] = *domain;
    result["dns"] = dns;
  }
  const std::string host_arch = HostArchitecture();
  if (flags.Flag("rosetta") && host_arch != "arm64") {
    Fail("--rosetta flag requires an arm64 host");
  }
  json labels = Labels(flags.Values("label"));
  if (!flags.Values("publish").empty()) {
    FailFake("--publish is not modelled (there is no network)");
  }
  json sockets = json::array();
  for (const auto& spec : flags.Values("publish-socket")) {
    sockets.push_back(PublishSocket(spec));
  }
  if (flags.Flag("ssh")) FailFake("--ssh is not modelled");
  if (flags.Flag("init")) FailFake("--init is not modelled");

  json cap_add = json::array(), cap_drop = json::array();
  for (const auto& cap : flags.Values("cap-add"))
    cap_add.push_back(Capability(cap));
  for (const auto& cap : flags.Values("cap-drop"))
    cap_drop.push_back(Capability(cap));
  if (auto masked = PathOverrides(flags.Values("masked-path"),
                                  kDefaultMaskedList, "masked-path")) {
    result["maskedPaths"] = *masked;
  }
  if (auto readonly = PathOverrides(flags.Values("read-only-path"),
                                    kDefaultReadonlyList, "read-only-path")) {
    result["readonlyPaths"] = *readonly;
  }
  if (config.contains("StopSignal") && config["StopSignal"].is_string()) {
    result["stopSignal"] = config["StopSignal"];
  }

  result["id"] = id;
  result["image"] = {{"descriptor", image.descriptor},
                     {"reference", image.reference}};
  result["initProcess"] = process;
  result["mounts"] = mounts;
  result["publishedPorts"] = json::array();
  result["publishedSockets"] = sockets;
  result["labels"] = labels;
  result["sysctls"] = json::object();
  result["networks"] = json::array();
  result["rosetta"] = flags.Flag("rosetta");
  result["platform"] = {{"architecture", host_arch}, {"os", "linux"}};
  result["resources"] = {
      {"cpuOverhead", 1}, {"cpus", cpus}, {"memoryInBytes", memory}};
  result["runtimeHandler"] =
      flags.Value("runtime").value_or("container-runtime-linux");
  result["virtualization"] = false;
  result["ssh"] = false;
  result["readOnly"] = flags.Flag("read-only");
  result["useInit"] = false;
  result["capAdd"] = cap_add;
  result["capDrop"] = cap_drop;
  result["creationDate"] = NowIso8601();
  return result;
}

const std::vector<std::string>& AllCapabilityNames() {
  static const std::vector<std::string> names = {
      "CAP_CHOWN",
      "CAP_DAC_OVERRIDE",
      "CAP_DAC_READ_SEARCH",
      "CAP_FOWNER",
      "CAP_FSETID",
      "CAP_KILL",
      "CAP_SETGID",
      "CAP_SETUID",
      "CAP_SETPCAP",
      "CAP_LINUX_IMMUTABLE",
      "CAP_NET_BIND_SERVICE",
      "CAP_NET_BROADCAST",
      "CAP_NET_ADMIN",
      "CAP_NET_RAW",
      "CAP_IPC_LOCK",
      "CAP_IPC_OWNER",
      "CAP_SYS_MODULE",
      "CAP_SYS_RAWIO",
      "CAP_SYS_CHROOT",
      "CAP_SYS_PTRACE",
      "CAP_SYS_PACCT",
      "CAP_SYS_ADMIN",
      "CAP_SYS_BOOT",
      "CAP_SYS_NICE",
      "CAP_SYS_RESOURCE",
      "CAP_SYS_TIME",
      "CAP_SYS_TTY_CONFIG",
      "CAP_MKNOD",
      "CAP_LEASE",
      "CAP_AUDIT_WRITE",
      "CAP_AUDIT_CONTROL",
      "CAP_SETFCAP",
      "CAP_MAC_OVERRIDE",
      "CAP_MAC_ADMIN",
      "CAP_SYSLOG",
      "CAP_WAKE_ALARM",
      "CAP_BLOCK_SUSPEND",
      "CAP_AUDIT_READ",
      "CAP_PERFMON",
      "CAP_BPF",
      "CAP_CHECKPOINT_RESTORE",
  };
  return names;
}

const std::vector<std::string>& DefaultMaskedPaths() {
  return kDefaultMaskedList;
}

const std::vector<std::string>& DefaultReadonlyPaths() {
  return kDefaultReadonlyList;
}

}  // namespace corral::fake_apple
