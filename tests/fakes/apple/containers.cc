#include "tests/fakes/apple/containers.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "tests/fakes/apple/fake_util.h"
#include "tests/fakes/apple/run_config.h"
#include "tests/fakes/common/runc.h"

namespace corral::fake_apple {
namespace {

using fakes::CgroupV2;
using fakes::LoopbackUp;
using nlohmann::json;

// containerization's LinuxCapabilities.defaultOCICapabilities (0.40.1).
const char* const kDefaultCapabilities[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE"};

// RuntimeService.effectiveCapabilities: ALL dropped starts empty, else
// the defaults; ALL added gives every one; then the single drops.
std::vector<std::string> EffectiveCapabilities(const json& add,
                                               const json& drop) {
  std::set<std::string> caps;
  auto contains = [](const json& list, const std::string& item) {
    return std::find(list.begin(), list.end(), item) != list.end();
  };
  if (!contains(drop, "ALL")) {
    for (const char* cap : kDefaultCapabilities) caps.insert(cap);
  }
  if (contains(add, "ALL")) {
    for (const std::string& cap : AllCapabilityNames()) caps.insert(cap);
  } else {
    for (const auto& cap : add) caps.insert(cap.get<std::string>());
  }
  for (const auto& cap : drop) {
    if (cap != "ALL") caps.erase(cap.get<std::string>());
  }
  std::vector<std::string> ordered;
  for (const std::string& cap : AllCapabilityNames()) {
    if (caps.count(cap)) ordered.push_back(cap);
  }
  return ordered;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

std::optional<uint64_t> ReadNumber(const std::string& path) {
  auto text = ReadFile(path);
  if (!text) return std::nullopt;
  std::string value = Trimmed(*text);
  if (value == "max") return UINT64_MAX;
  char* end = nullptr;
  errno = 0;
  unsigned long long number = std::strtoull(value.c_str(), &end, 10);
  if (errno != 0 || end == value.c_str()) return std::nullopt;
  return number;
}

// A line of /etc/passwd or /etc/group inside a root filesystem.
std::vector<std::vector<std::string>> ReadColonFile(const std::string& rootfs,
                                                    const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  int root = ::open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return rows;
  int fd = OpenInRoot(root, path, O_RDONLY);
  ::close(root);
  if (fd < 0) return rows;
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) {
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> fields;
    std::stringstream parts(line);
    for (std::string field; std::getline(parts, field, ':');) {
      fields.push_back(field);
    }
    rows.push_back(fields);
  }
  return rows;
}

bool AllDigits(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
}

void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Copies both ways between two connected stream sockets, passing each
// end-of-stream on as a half-close, until both directions ended.
void Pump(int a, int b) {
  char buffer[65536];
  bool a_open = true, b_open = true;
  while (a_open || b_open) {
    // A side read to its end is left out (a negative fd), so that its
    // hang-up cannot wake the loop again and again.
    pollfd items[2] = {{a_open ? a : -1, POLLIN, 0},
                       {b_open ? b : -1, POLLIN, 0}};
    if (::poll(items, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    bool failed = false;
    for (int side = 0; side < 2; ++side) {
      if (items[side].revents == 0) continue;
      int from = side == 0 ? a : b, to = side == 0 ? b : a;
      bool& open = side == 0 ? a_open : b_open;
      if (!open) continue;
      ssize_t n = ::read(from, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        open = false;
        ::shutdown(to, SHUT_WR);
        if (n < 0) failed = true;
        continue;
      }
      size_t done = 0;
      while (done < static_cast<size_t>(n)) {
        ssize_t w = ::send(to, buffer + done, static_cast<size_t>(n) - done,
                           MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          failed = true;
          break;
        }
        done += static_cast<size_t>(w);
      }
    }
    if (failed) break;
  }
  ::close(a);
  ::close(b);
}

// Connects to `path` inside the container whose init is `pid`: through
// its root (/proc/PID/root) with symlinks resolved inside it, and the
// socket's directory reached as /proc/self/fd/N, so that neither the
// container's mount namespace nor sun_path's length is in the way.
int ConnectInside(pid_t pid, const std::string& path) {
  int root = ::open(("/proc/" + std::to_string(pid) + "/root").c_str(),
                    O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return -1;
  const std::string parent = Dirname(path), name = Basename(path);
  int dir = OpenInRoot(root, parent, O_PATH | O_DIRECTORY);
  ::close(root);
  if (dir < 0) return -1;
  // The last name must be the socket itself: a symlink planted there would
  // be followed from the host's root by connect().
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISSOCK(st.st_mode)) {
    ::close(dir);
    return -1;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string target = "/proc/self/fd/" + std::to_string(dir) + "/" + name;
  int fd = -1;
  if (target.size() < sizeof(address.sun_path)) {
    std::memcpy(address.sun_path, target.c_str(), target.size());
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&address),
                             sizeof(address)) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::close(dir);
  return fd;
}

struct Listener {
  int fd = -1;
  std::string host_path;
  std::string container_path;
  dev_t device = 0;
  ino_t inode = 0;
};

// Binds and listens at `host_path` (anything there removed first, as the
// runtime's relay does), through its directory's fd for long paths.
Listener Listen(const std::string& host_path, const std::string& container_path,
                std::string* error) {
  Listener listener;
  listener.host_path = host_path;
  listener.container_path = container_path;
  MakeDirs(Dirname(host_path), 0755);
  int dir =
      ::open(Dirname(host_path).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    *error = "cannot open the directory of " + host_path + ": " +
             std::strerror(errno);
    return listener;
  }
  const std::string name = Basename(host_path);
  ::unlinkat(dir, name.c_str(), 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string target = "/proc/self/fd/" + std::to_string(dir) + "/" + name;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (target.size() >= sizeof(address.sun_path) || fd < 0) {
    *error = "cannot bind " + host_path;
    if (fd >= 0) ::close(fd);
    ::close(dir);
    return listener;
  }
  std::memcpy(address.sun_path, target.c_str(), target.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 64) != 0) {
    *error = "cannot listen at " + host_path + ": " + std::strerror(errno);
    ::close(fd);
    ::close(dir);
    return listener;
  }
  struct stat st {};
  ::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW);
  ::close(dir);
  listener.fd = fd;
  listener.device = st.st_dev;
  listener.inode = st.st_ino;
  return listener;
}

// Removes a listener's socket file if it is still the one it bound.
void Unlink(const Listener& listener) {
  struct stat st {};
  if (::lstat(listener.host_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
      st.st_dev == listener.device && st.st_ino == listener.inode) {
    ::unlink(listener.host_path.c_str());
  }
}

std::string EscapeOverlay(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ',' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

int ParseSignal(const std::string& text) {
  static const std::map<std::string, int> kSignals = {
      {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},
      {"ILL", SIGILL},       {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},
      {"BUS", SIGBUS},       {"FPE", SIGFPE},   {"KILL", SIGKILL},
      {"USR1", SIGUSR1},     {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
      {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},
      {"CHLD", SIGCHLD},     {"CONT", SIGCONT}, {"STOP", SIGSTOP},
      {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
      {"URG", SIGURG},       {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
      {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
      {"IO", SIGIO},         {"SYS", SIGSYS}};
  if (AllDigits(text)) {
    int number = std::atoi(text.c_str());
    return number >= 1 && number <= 64 ? number : -1;
  }
  std::string name = text;
  for (char& c : name) c = static_cast<char>(std::toupper(c));
  if (name.rfind("SIG", 0) == 0) name.erase(0, 3);
  auto it = kSignals.find(name);
  return it == kSignals.end() ? -1 : it->second;
}

Containers::Containers(std::string root, std::string runc, ImageStore* images)
    : root_(std::move(root)), runc_(std::move(runc)), images_(images) {}

std::string Containers::Dir(const std::string& id) const {
  return root_ + "/containers/" + id;
}

bool Containers::Exists(const std::string& id) const {
  return IsDirectory(Dir(id));
}

std::vector<std::string> Containers::Ids() const {
  std::vector<std::string> ids;
  DIR* dir = ::opendir((root_ + "/containers").c_str());
  if (dir == nullptr) return ids;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (PathExists(Dir(name) + "/container.json")) ids.push_back(name);
  }
  ::closedir(dir);
  // Oldest first, as they were made.
  std::vector<std::pair<std::string, std::string>> dated;
  for (const auto& id : ids) {
    auto record = Load(id);
    dated.emplace_back(
        record ? record->configuration.value("creationDate", "") : "", id);
  }
  std::sort(dated.begin(), dated.end());
  ids.clear();
  for (const auto& item : dated) ids.push_back(item.second);
  return ids;
}

std::optional<ContainerRecord> Containers::Load(const std::string& id) const {
  auto text = ReadFile(Dir(id) + "/container.json");
  if (!text) return std::nullopt;
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded() || !parsed.contains("configuration")) {
    return std::nullopt;
  }
  return ContainerRecord{id, parsed["configuration"],
                         parsed.value("fake", json::object())};
}

ContainerState Containers::State(const std::string& id) const {
  ContainerState state;
  auto text = ReadFile(Dir(id) + "/state.json");
  if (!text) return state;
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded()) return state;
  state.init_pid = parsed.value("initPid", 0);
  state.init_start = parsed.value("initStart", -1LL);
  state.monitor_pid = parsed.value("monitorPid", 0);
  state.monitor_start = parsed.value("monitorStart", -1LL);
  if (parsed.contains("startedDate"))
    state.started_date = parsed["startedDate"];
  state.running = ProcessAlive(state.init_pid, state.init_start);
  return state;
}

json Containers::Managed(const ContainerRecord& record) const {
  ContainerState state = State(record.id);
  json status = {{"networks", json::array()},
                 {"state", state.running ? "running" : "stopped"}};
  if (state.started_date) status["startedDate"] = *state.started_date;
  return json{{"configuration", record.configuration},
              {"id", record.id},
              {"status", status}};
}

std::set<std::string> Containers::ImagesInUse() const {
  std::set<std::string> digests;
  DIR* dir = ::opendir((root_ + "/containers").c_str());
  if (dir == nullptr) return digests;
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) names.push_back(entry->d_name);
  ::closedir(dir);
  for (const auto& name : names) {
    if (name == "." || name == "..") continue;
    auto record = Load(name);
    if (record) {
      digests.insert(record->fake.value("imageHex", ""));
    } else if (auto text = ReadFile(Dir(name) + "/image")) {
      digests.insert(Trimmed(*text));  // a record being made
    }
  }
  return digests;
}

bool Containers::Create(const ContainerRecord& record) {
  MakeDirs(root_ + "/containers", 0700);
  if (::mkdir(Dir(record.id).c_str(), 0700) != 0) return false;
  json document = {{"configuration", record.configuration},
                   {"fake", record.fake}};
  WriteFileAtomic(Dir(record.id) + "/image",
                  record.fake.value("imageHex", "") + "\n");
  if (!WriteFileAtomic(Dir(record.id) + "/container.json", document.dump())) {
    FailFake("cannot write " + Dir(record.id) + "/container.json");
  }
  return true;
}

std::string Containers::CgroupsPath(const std::string& id) const {
  return "/corral-apple-fake-" + Sha256Hex(root_).substr(0, 12) + "-" + id;
}

int Containers::Runc(const std::vector<std::string>& args, int stdin_fd,
                     int stdout_fd, int stderr_fd) const {
  std::vector<std::string> argv = {runc_, "--root", root_ + "/runc"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, stdin_fd, stdout_fd, stderr_fd);
}

std::string Containers::RuncError(const std::string& id) const {
  return fakes::RuncLogError(Dir(id) + "/runc.log");
}

json Containers::ResolveUser(const std::string& rootfs, const json& user,
                             const json& supplemental) const {
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;
  for (const auto& g : supplemental) groups.push_back(g.get<uint32_t>());
  if (user.contains("id")) {
    uid = user["id"].value("uid", 0u);
    gid = user["id"].value("gid", 0u);
  } else {
    const std::string raw = user["raw"].value("userString", "");
    const size_t colon = raw.find(':');
    const std::string user_part = raw.substr(0, colon);
    const std::string group_part =
        colon == std::string::npos ? "" : raw.substr(colon + 1);
    auto passwd = ReadColonFile(rootfs, "/etc/passwd");
    bool found = false;
    for (const auto& row : passwd) {
      if (row.size() < 4) continue;
      if ((AllDigits(user_part) && row[2] == user_part) ||
          row[0] == user_part) {
        uid = static_cast<uint32_t>(std::stoul(row[2]));
        gid = static_cast<uint32_t>(std::stoul(row[3]));
        found = true;
        if (!AllDigits(user_part)) {
          for (const auto& group : ReadColonFile(rootfs, "/etc/group")) {
            if (group.size() < 4) continue;
            std::stringstream members(group[3]);
            for (std::string m; std::getline(members, m, ',');) {
              if (m == user_part && AllDigits(group[2])) {
                groups.push_back(static_cast<uint32_t>(std::stoul(group[2])));
              }
            }
          }
        }
        break;
      }
    }
    if (!found) {
      if (!AllDigits(user_part)) {
        FailFake("no user " + user_part + " in the image's /etc/passwd");
      }
      uid = static_cast<uint32_t>(std::stoul(user_part));
      gid = 0;
    }
    if (!group_part.empty()) {
      if (AllDigits(group_part)) {
        gid = static_cast<uint32_t>(std::stoul(group_part));
      } else {
        bool group_found = false;
        for (const auto& group : ReadColonFile(rootfs, "/etc/group")) {
          if (group.size() >= 3 && group[0] == group_part &&
              AllDigits(group[2])) {
            gid = static_cast<uint32_t>(std::stoul(group[2]));
            group_found = true;
            break;
          }
        }
        if (!group_found) {
          FailFake("no group " + group_part + " in the image's /etc/group");
        }
      }
    }
  }
  json out = {{"uid", uid}, {"gid", gid}};
  if (!groups.empty()) out["additionalGids"] = groups;
  return out;
}

json Containers::InitProcess(const ContainerRecord& record) const {
  auto text = ReadFile(Dir(record.id) + "/bundle/config.json");
  if (!text) FailFake("the container " + record.id + " has no runc bundle");
  return json::parse(*text)["process"];
}

json Containers::Bundle(const ContainerRecord& record, const json& user) const {
  const json& config = record.configuration;
  const json& init = config["initProcess"];
  json args = json::array({init["executable"]});
  for (const auto& a : init["arguments"]) args.push_back(a);
  std::vector<std::string> caps =
      EffectiveCapabilities(config.value("capAdd", json::array()),
                            config.value("capDrop", json::array()));
  json rlimits = json::array();
  for (const auto& limit : init.value("rlimits", json::array())) {
    rlimits.push_back({{"type", limit["limit"]},
                       {"soft", limit["soft"]},
                       {"hard", limit["hard"]}});
  }
  json process = {
      {"terminal", false},
      {"user", user},
      {"args", args},
      {"env", init["environment"]},
      {"cwd", init["workingDirectory"]},
      {"capabilities",
       {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
      {"rlimits", rlimits},
      {"noNewPrivileges", false}};
  std::string shm_size = "65536k";
  if (config.contains("shmSize")) {
    shm_size = std::to_string(config["shmSize"].get<uint64_t>());
  }
  const std::vector<std::string> hardened = {"nosuid", "noexec", "nodev"};
  json mounts = json::array({
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options",
        {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
         "gid=5"}}},
      {{"destination", "/dev/shm"},
       {"type", "tmpfs"},
       {"source", "shm"},
       {"options",
        {"nosuid", "noexec", "nodev", "mode=1777", "size=" + shm_size}}},
      {{"destination", "/dev/mqueue"},
       {"type", "mqueue"},
       {"source", "mqueue"},
       {"options", hardened}},
      {{"destination", "/sys"},
       {"type", "sysfs"},
       {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
      {{"destination", "/sys/fs/cgroup"},
       {"type", "cgroup"},
       {"source", "cgroup"},
       {"options", {"nosuid", "noexec", "nodev", "relatime", "ro"}}},
  });
  for (const auto& mount : config.value("mounts", json::array())) {
    const json& type = mount["type"];
    std::vector<std::string> options;
    for (const auto& o : mount.value("options", json::array())) {
      options.push_back(o);
    }
    if (type.contains("tmpfs")) {
      bool has_mode = std::any_of(
          options.begin(), options.end(),
          [](const std::string& o) { return o.rfind("mode=", 0) == 0; });
      if (!has_mode) options.push_back("mode=1777");
      mounts.push_back({{"destination", mount["destination"]},
                        {"type", "tmpfs"},
                        {"source", "tmpfs"},
                        {"options", options}});
    } else {
      std::vector<std::string> bind = {"rbind", "rprivate"};
      if (std::find(options.begin(), options.end(), "ro") != options.end()) {
        bind.push_back("ro");
      }
      mounts.push_back({{"destination", mount["destination"]},
                        {"type", "bind"},
                        {"source", mount["source"]},
                        {"options", bind}});
    }
  }
  json masked = json::array(), readonly = json::array();
  if (config.contains("maskedPaths")) {
    masked = config["maskedPaths"];
  } else {
    for (const std::string& p : DefaultMaskedPaths()) masked.push_back(p);
  }
  if (config.contains("readonlyPaths")) {
    readonly = config["readonlyPaths"];
  } else {
    for (const std::string& p : DefaultReadonlyPaths()) readonly.push_back(p);
  }
  const json& resources = config["resources"];
  const uint64_t memory = resources["memoryInBytes"].get<uint64_t>();
  json linux_resources = {
      {"devices", json::array({{{"allow", false}, {"access", "rwm"}}})},
      {"memory", fakes::MemoryWithoutSwap(memory)}};
  const int64_t cpus = resources.value("cpus", int64_t{4});
  if (cpus > 0) linux_resources["cpu"] = fakes::CpuQuota(cpus);
  // The id up to its first dot, as RuntimeService sets the hostname.
  std::string hostname = record.id;
  {
    std::stringstream parts(record.id);
    for (std::string part; std::getline(parts, part, '.');) {
      if (!part.empty()) {
        hostname = part;
        break;
      }
    }
  }
  return json{{"ociVersion", "1.0.2"},
              {"process", process},
              {"root",
               {{"path", Dir(record.id) + "/rootfs"},
                {"readonly", config.value("readOnly", false)}}},
              {"hostname", hostname},
              {"mounts", mounts},
              {"linux",
               {{"namespaces", json::array({{{"type", "pid"}},
                                            {{"type", "mount"}},
                                            {{"type", "ipc"}},
                                            {{"type", "uts"}},
                                            {{"type", "network"}},
                                            {{"type", "cgroup"}}})},
                {"cgroupsPath", CgroupsPath(record.id)},
                {"resources", linux_resources},
                {"maskedPaths", masked},
                {"readonlyPaths", readonly}}}};
}

int Containers::Start(const ContainerRecord& record, const RunIo& io,
                      const std::string& image_rootfs) {
  const std::string dir = Dir(record.id);
  for (const char* sub : {"upper", "work", "rootfs", "bundle"}) {
    MakeDirs(dir + "/" + sub, 0700);
  }
  // The root: the image's files under the container's own upper layer
  // (--read-only makes runc mount it read-only).
  const std::string options = "lowerdir=" + EscapeOverlay(image_rootfs) +
                              ",upperdir=" + EscapeOverlay(dir + "/upper") +
                              ",workdir=" + EscapeOverlay(dir + "/work");
  if (::mount("overlay", (dir + "/rootfs").c_str(), "overlay", 0,
              options.c_str()) != 0) {
    FailFake("cannot mount the container's overlay root: " +
             std::string(std::strerror(errno)));
  }
  const json& init = record.configuration["initProcess"];
  json user = ResolveUser(dir + "/rootfs", init["user"],
                          init.value("supplementalGroups", json::array()));
  if (!WriteFileAtomic(dir + "/bundle/config.json",
                       Bundle(record, user).dump(2))) {
    FailFake("cannot write the runc bundle of " + record.id);
  }
  int log = ::open((dir + "/stdio.log").c_str(),
                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log < 0) FailFake("cannot open " + dir + "/stdio.log");
  ::close(log);

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) FailFake("pipe");
  ::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) FailFake("fork");
  if (child == 0) {
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    // The monitor: only the report pipe and, for a foreground run, the
    // CLI's stdio survive (moved above 10 first).
    int stdio[3] = {-1, -1, -1};
    int report_fd = ::fcntl(report[1], F_DUPFD_CLOEXEC, 10);
    if (io.foreground) {
      stdio[0] = io.interactive ? ::fcntl(0, F_DUPFD_CLOEXEC, 10) : -1;
      stdio[1] = ::fcntl(1, F_DUPFD_CLOEXEC, 10);
      stdio[2] = ::fcntl(2, F_DUPFD_CLOEXEC, 10);
    }
    int null_fd = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);
    for (int fd = 3; fd < 10; ++fd) ::close(fd);
    std::vector<int> keep = {report_fd, stdio[0], stdio[1], stdio[2]};
    int top = *std::max_element(keep.begin(), keep.end());
    for (int fd = 10; fd <= top; ++fd) {
      if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);
    }
    CloseFrom(top + 1);
    try {
      MonitorMain(record, report_fd, stdio);
    } catch (const CliExit& exit) {
      WriteAll(report_fd, "error " + exit.text + "\n");
      ::_exit(1);
    }
  }
  ::close(report[1]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  // The first line: "ok" once the container runs, or "error <text>".
  std::string line;
  char c = 0;
  while (::read(report[0], &c, 1) == 1 && c != '\n') line += c;
  if (line == "ok") return report[0];
  ::close(report[0]);
  if (line.rfind("error Error: ", 0) == 0) {
    throw CliExit{line.substr(6), 1};
  }
  FailFake("the container's monitor failed: " +
           (line.empty() ? std::string("no report") : line));
}

void Containers::MonitorMain(const ContainerRecord& record, int report_fd,
                             const int stdio[3]) {
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  const std::string dir = Dir(record.id);
  const std::string& id = record.id;
  int log =
      ::open((dir + "/stdio.log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  int out = stdio[1] >= 0 ? stdio[1] : log;
  int err = stdio[2] >= 0 ? stdio[2] : log;
  int code =
      RunCommand({runc_, "--root", root_ + "/runc", "--log", dir + "/runc.log",
                  "--log-format", "json", "create", "--bundle", dir + "/bundle",
                  "--pid-file", dir + "/init.pid", id},
                 stdio[0], out, err);
  // Nothing long-lived keeps the CLI's stdio: runc's init has its own
  // copies now.
  for (int i = 0; i < 3; ++i) {
    if (stdio[i] >= 0) ::close(stdio[i]);
  }
  if (log >= 0) ::close(log);
  if (code != 0) Fail(RuncError(id));
  auto pid_text = ReadFile(dir + "/init.pid");
  const pid_t init = pid_text ? std::atoi(pid_text->c_str()) : 0;
  const long long init_start = ProcessStartTime(init);
  int pidfd = PidfdOpen(init);
  auto abandon = [&](const std::string& why) {
    Runc({"--log", dir + "/runc.log", "--log-format", "json", "delete", "-f",
          id});
    FailFake(why);
  };
  if (init <= 0 || pidfd < 0) abandon("runc left no init process");
  if (!LoopbackUp(init)) abandon("cannot bring lo up in the container");

  std::vector<Listener> listeners;
  for (const auto& socket :
       record.configuration.value("publishedSockets", json::array())) {
    std::string error;
    Listener listener =
        Listen(socket["hostPath"], socket["containerPath"], &error);
    if (listener.fd < 0) {
      for (const auto& l : listeners) Unlink(l);
      abandon(error);
    }
    listeners.push_back(listener);
  }
  if (Runc({"--log", dir + "/runc.log", "--log-format", "json", "start", id}) !=
      0) {
    for (const auto& l : listeners) Unlink(l);
    std::string why = RuncError(id);
    Runc({"--log", dir + "/runc.log", "--log-format", "json", "delete", "-f",
          id});
    Fail(why);
  }
  json state = {{"initPid", init},
                {"initStart", init_start},
                {"monitorPid", ::getpid()},
                {"monitorStart", ProcessStartTime(::getpid())},
                {"startedDate", NowIso8601()}};
  WriteFileAtomic(dir + "/state.json", state.dump());
  WriteAll(report_fd, "ok\n");

  // Relays until the init ends.
  std::vector<pollfd> items;
  items.push_back({pidfd, POLLIN, 0});
  for (const auto& l : listeners) items.push_back({l.fd, POLLIN, 0});
  for (;;) {
    if (::poll(items.data(), items.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (items[0].revents != 0) break;
    for (size_t i = 1; i < items.size(); ++i) {
      if (items[i].revents == 0) continue;
      int connection = ::accept4(items[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      const std::string inside = listeners[i - 1].container_path;
      std::thread([connection, inside, init] {
        int target = ConnectInside(init, inside);
        if (target < 0) {
          ::close(connection);
          return;
        }
        Pump(connection, target);
      }).detach();
    }
  }
  for (const auto& l : listeners) {
    Unlink(l);
    ::close(l.fd);
  }
  int status = 0;
  int exit_code = 255;
  if (::waitpid(init, &status, 0) == init) {
    exit_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                      : 255;
  }
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  WriteFileAtomic(dir + "/exit.json",
                  json{{"status", exit_code}, {"date", NowIso8601()}}.dump());
  if (record.fake.value("autoRemove", false)) {
    // A --rm container goes as soon as it stopped; this monitor counts
    // as finished for Remove's wait, since the init is gone.
    Remove(id);
  }
  WriteAll(report_fd, "exit " + std::to_string(exit_code) + "\n");
  ::_exit(0);
}

bool Containers::Signal(const std::string& id, int signal) {
  if (!State(id).running) return false;
  Runc({"--log", Dir(id) + "/runc.log", "--log-format", "json", "kill", id,
        std::to_string(signal)});
  return true;
}

bool Containers::WaitStopped(const std::string& id, int timeout_ms) {
  ContainerState state = State(id);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (state.running) {
    int pidfd = PidfdOpen(state.init_pid);
    if (pidfd >= 0) {
      bool ended = WaitPidfd(pidfd, timeout_ms);
      ::close(pidfd);
      if (!ended) return false;
    } else if (ProcessAlive(state.init_pid, state.init_start)) {
      return false;
    }
  }
  // The monitor removes the published sockets and records the exit.
  if (ProcessAlive(state.monitor_pid, state.monitor_start) &&
      state.monitor_pid != ::getpid()) {
    int pidfd = PidfdOpen(state.monitor_pid);
    if (pidfd >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      WaitPidfd(pidfd, static_cast<int>(std::max<long long>(left, 2000)));
      ::close(pidfd);
    }
  }
  return true;
}

void Containers::Stop(const std::string& id, int signal, int timeout_seconds) {
  if (!Signal(id, signal)) {
    WaitStopped(id, 0);
    return;
  }
  if (WaitStopped(id, std::max(timeout_seconds, 0) * 1000)) return;
  Signal(id, SIGKILL);
  WaitStopped(id, 10000);
}

void Containers::Remove(const std::string& id) {
  const std::string dir = Dir(id);
  if (IsDirectory(dir + "/bundle")) {
    Runc({"--log", dir + "/runc.log", "--log-format", "json", "delete", "-f",
          id});
  }
  if (::umount2((dir + "/rootfs").c_str(), 0) != 0 && errno != EINVAL &&
      errno != ENOENT) {
    ::umount2((dir + "/rootfs").c_str(), MNT_DETACH);
  }
  FileLock lock(LockPath());
  RemoveTree(dir);
  images_->CollectGarbage();
}

int Containers::Exec(const std::string& id, const json& process, bool detach,
                     int stdin_fd, std::string* error) {
  const std::string file = Dir(id) + "/exec-" + NewUuid() + ".json";
  if (!WriteFileAtomic(file, process.dump())) {
    *error = "cannot write " + file;
    return -1;
  }
  std::vector<std::string> args = {"--log",
                                   Dir(id) + "/runc.log",
                                   "--log-format",
                                   "json",
                                   "exec",
                                   "--process",
                                   file};
  if (detach) args.push_back("--detach");
  args.push_back(id);
  int code = detach ? Runc(args) : Runc(args, stdin_fd, 1, 2);
  ::unlink(file.c_str());
  return code;
}

json Containers::Stats(const std::string& id) const {
  const std::string path = CgroupsPath(id);
  json stats = {{"id", id}};
  uint64_t memory = 0, limit = 0, cpu = 0, pids = 0, read = 0, written = 0;
  if (CgroupV2()) {
    const std::string base = "/sys/fs/cgroup" + path;
    memory = ReadNumber(base + "/memory.current").value_or(0);
    limit = ReadNumber(base + "/memory.max").value_or(0);
    pids = ReadNumber(base + "/pids.current").value_or(0);
    if (auto text = ReadFile(base + "/cpu.stat")) {
      std::istringstream lines(*text);
      std::string key;
      uint64_t value = 0;
      while (lines >> key >> value) {
        if (key == "usage_usec") cpu = value;
      }
    }
    if (auto text = ReadFile(base + "/io.stat")) {
      std::istringstream words(*text);
      for (std::string word; words >> word;) {
        if (word.rfind("rbytes=", 0) == 0) read += std::stoull(word.substr(7));
        if (word.rfind("wbytes=", 0) == 0) {
          written += std::stoull(word.substr(7));
        }
      }
    }
  } else {
    memory =
        ReadNumber("/sys/fs/cgroup/memory" + path + "/memory.usage_in_bytes")
            .value_or(0);
    limit =
        ReadNumber("/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes")
            .value_or(0);
    cpu = ReadNumber("/sys/fs/cgroup/cpuacct" + path + "/cpuacct.usage")
              .value_or(0) /
          1000;
    pids =
        ReadNumber("/sys/fs/cgroup/pids" + path + "/pids.current").value_or(0);
    if (auto text = ReadFile("/sys/fs/cgroup/blkio" + path +
                             "/blkio.throttle.io_service_bytes")) {
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line);) {
        std::istringstream words(line);
        std::string device, op;
        uint64_t value = 0;
        if (!(words >> device >> op >> value)) continue;
        if (op == "Read") read += value;
        if (op == "Write") written += value;
      }
    }
  }
  // The container's own interfaces (lo left out, as a VM's would be).
  uint64_t rx = 0, tx = 0;
  ContainerState state = State(id);
  if (auto text =
          ReadFile("/proc/" + std::to_string(state.init_pid) + "/net/dev")) {
    std::istringstream lines(*text);
    std::string line;
    std::getline(lines, line);
    std::getline(lines, line);
    while (std::getline(lines, line)) {
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      name.erase(0, name.find_first_not_of(' '));
      if (name == "lo") continue;
      std::istringstream fields(line.substr(colon + 1));
      uint64_t values[16] = {};
      for (auto& v : values) fields >> v;
      rx += values[0];
      tx += values[8];
    }
  }
  stats["memoryUsageBytes"] = memory;
  stats["memoryLimitBytes"] = limit;
  stats["cpuUsageUsec"] = cpu;
  stats["numProcesses"] = pids;
  stats["networkRxBytes"] = rx;
  stats["networkTxBytes"] = tx;
  stats["blockReadBytes"] = read;
  stats["blockWriteBytes"] = written;
  return stats;
}

}  // namespace corral::fake_apple
