// A FAKE of Apple's `container` CLI (apple/container 1.2.2), for tests on
// hosts where it cannot run (it needs macOS): tests/fakes/README.md says
// what it reproduces and what it does not. Its interface is the real
// CLI's as read from the project's source (commands, flags, the argument
// parser's usage errors, output shapes, JSON as Swift's JSONEncoder writes
// it, error texts and exit codes, the service being down); behind it runc
// stands in for the per-container VM, with an overlay root over the
// loaded image, a network namespace holding only `lo`, and a monitor
// process per container that relays --publish-socket connections into it.
// It must run as root, since it drives runc.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/fakes/apple/containers.h"
#include "tests/fakes/apple/fake_util.h"
#include "tests/fakes/apple/image_store.h"
#include "tests/fakes/apple/run_config.h"
#include "tests/fakes/common/runc.h"

namespace corral::fake_apple {
namespace {

using nlohmann::json;

constexpr char kVersionLine[] =
    "container CLI version 1.2.2 (build: release, commit: af405ff)";
constexpr char kFakeLine[] = "corral test fake (tests/fakes/apple)";
constexpr char kEnsure[] =
    "Ensure container system service has been started with `container "
    "system start`.";
constexpr char kCommit[] = "af405ffd5a4d8e9ec872bc15351af41130c39b94";

// --- Command specs, in the real commands' declaration order.

OptionSpec Flag(const std::string& key, std::vector<std::string> names,
                const std::string& help) {
  OptionSpec o;
  o.key = key;
  o.names = std::move(names);
  o.flag = true;
  o.help = help;
  return o;
}

OptionSpec Opt(const std::string& key, std::vector<std::string> names,
               const std::string& value_name, const std::string& help,
               ValueType type = ValueType::kString, bool repeating = false) {
  OptionSpec o;
  o.key = key;
  o.names = std::move(names);
  o.value_name = value_name;
  o.help = help;
  o.type = type;
  o.repeating = repeating;
  return o;
}

OptionSpec Rep(const std::string& key, std::vector<std::string> names,
               const std::string& value_name, const std::string& help) {
  return Opt(key, std::move(names), value_name, help, ValueType::kString, true);
}

OptionSpec Format() {
  OptionSpec o = Opt("format", {"--format"}, "format", "Format of the output",
                     ValueType::kChoice);
  o.choices = {"json", "table", "yaml", "toml"};
  return o;
}

OptionSpec Debug() {
  return Flag("debug", {"--debug"},
              "Enable debug output [environment: CONTAINER_DEBUG]");
}

ArgumentSpec Arg(const std::string& key, const std::string& value_name,
                 const std::string& help, bool optional, bool repeating,
                 bool passthrough = false) {
  return ArgumentSpec{key, value_name, help, optional, repeating, passthrough};
}

class SpecBuilder {
 public:
  SpecBuilder(const std::string& path, const std::string& abstract) {
    spec_.path = path;
    spec_.abstract = abstract;
  }
  SpecBuilder& O(OptionSpec option) {
    spec_.options.push_back(std::move(option));
    spec_.order += 'o';
    return *this;
  }
  SpecBuilder& A(ArgumentSpec argument) {
    spec_.arguments.push_back(std::move(argument));
    spec_.order += 'a';
    return *this;
  }
  CommandSpec Build() { return spec_; }

 private:
  CommandSpec spec_;
};

// Flags.Process.
void ProcessOptions(SpecBuilder* b) {
  b->O(Rep("env", {"-e", "--env"}, "env",
           "Set environment variables (key=value, or just key to inherit "
           "from host)"))
      .O(Rep("env-file", {"--env-file"}, "env-file",
             "Read in a file of environment variables (key=value format, "
             "ignores # comments and blank lines)"))
      .O(Opt("gid", {"--gid"}, "gid", "Set the group ID for the process",
             ValueType::kUInt32))
      .O(Flag("interactive", {"-i", "--interactive"},
              "Keep the standard input open even if not attached"))
      .O(Flag("tty", {"-t", "--tty"}, "Open a TTY with the process"))
      .O(Opt("user", {"-u", "--user"}, "user",
             "Set the user for the process (format: name|uid[:gid])"))
      .O(Opt("uid", {"--uid"}, "uid", "Set the user ID for the process",
             ValueType::kUInt32))
      .O(Opt("cwd", {"-w", "--workdir", "--cwd"}, "dir",
             "Set the initial working directory inside the container"))
      .O(Rep("ulimit", {"--ulimit"}, "limit",
             "Set resource limits (format: <type>=<soft>[:<hard>])"));
}

CommandSpec RunSpec() {
  SpecBuilder b("container run", "Run a container");
  ProcessOptions(&b);
  b.O(Opt("cpus", {"-c", "--cpus"}, "cpus",
          "Number of CPUs to allocate to the container", ValueType::kInt64))
      .O(Opt("memory", {"-m", "--memory"}, "memory",
             "Amount of memory (1MiByte granularity), with optional K, M, G, "
             "T, or P suffix"))
      .O(Opt("arch", {"-a", "--arch"}, "arch",
             "Set arch if image can target multiple architectures"))
      .O(Rep("cap-add", {"--cap-add"}, "cap",
             "Add a Linux capability (e.g. CAP_NET_RAW, or ALL)"))
      .O(Rep("cap-drop", {"--cap-drop"}, "cap",
             "Drop a Linux capability (e.g. CAP_NET_RAW, or ALL)"))
      .O(Opt("cidfile", {"--cidfile"}, "cidfile",
             "Write the container ID to the path provided"))
      .O(Flag("detach", {"-d", "--detach"},
              "Run the container and detach from the process"))
      .O(Rep("dns", {"--dns"}, "ip", "DNS nameserver IP address"))
      .O(Opt("dns-domain", {"--dns-domain"}, "domain", "Default DNS domain"))
      .O(Rep("dns-option", {"--dns-option"}, "option", "DNS options"))
      .O(Rep("dns-search", {"--dns-search"}, "domain", "DNS search domains"))
      .O(Opt("entrypoint", {"--entrypoint"}, "cmd",
             "Override the entrypoint of the image"))
      .O(Flag("init", {"--init"},
              "Run an init process inside the container that forwards "
              "signals and reaps processes"))
      .O(Opt("init-image", {"--init-image"}, "image",
             "Use a custom init image instead of the default"))
      .O(Opt("kernel", {"-k", "--kernel"}, "path", "Set a custom kernel path"))
      .O(Rep("kernel-arg", {"--kernel-arg"}, "arg",
             "Append a raw boot argument to the kernel command line "
             "(repeatable)."))
      .O(Rep("label", {"-l", "--label"}, "label",
             "Add a key=value label to the container"))
      .O(Rep("masked-path", {"--masked-path"}, "path",
             "[EXPERIMENTAL] Hide a path inside the container, in addition "
             "to the runtime defaults (or NONE to clear prior values and the "
             "defaults)"))
      .O(Rep("mount", {"--mount"}, "mount",
             "Add a mount to the container (format: "
             "type=<>,source=<>,target=<>,readonly)"))
      .O(Opt("name", {"--name"}, "name",
             "Use the specified name as the container ID"))
      .O(Rep("network", {"--network"}, "network",
             "Attach the container to a network (format: "
             "<name>[,mac=XX:XX:XX:XX:XX:XX][,mtu=VALUE])"))
      .O(Flag("no-dns", {"--no-dns"}, "Do not configure DNS in the container"))
      .O(Opt("os", {"--os"}, "os",
             "Set OS if image can target multiple operating systems"))
      .O(Rep("publish", {"-p", "--publish"}, "spec",
             "Publish a port from container to host (format: "
             "[host-ip:]host-port:container-port[/protocol])"))
      .O(Opt("platform", {"--platform"}, "platform",
             "Platform for the image if it's multi-platform. This takes "
             "precedence over --os and --arch [environment: "
             "CONTAINER_DEFAULT_PLATFORM]"))
      .O(Rep("publish-socket", {"--publish-socket"}, "spec",
             "Publish a socket from container to host (format: "
             "host_path:container_path)"))
      .O(Flag("read-only", {"--read-only"},
              "Mount the container's root filesystem as read-only"))
      .O(Rep("read-only-path", {"--read-only-path"}, "path",
             "[EXPERIMENTAL] Mark a path inside the container read-only, in "
             "addition to the runtime defaults (or NONE to clear prior values "
             "and the defaults)"))
      .O(Flag("rm", {"--rm", "--remove"},
              "Remove the container after it stops"))
      .O(Flag("rosetta", {"--rosetta"}, "Enable Rosetta in the container"))
      .O(Opt("runtime", {"--runtime"}, "runtime",
             "Set the runtime handler for the container (default: "
             "container-runtime-linux)"))
      .O(Flag("ssh", {"--ssh"}, "Forward SSH agent socket to container"))
      .O(Opt("shm-size", {"--shm-size"}, "shm-size",
             "Size of /dev/shm (e.g. 64M, 1G)"))
      .O(Rep("tmpfs", {"--tmpfs"}, "tmpfs",
             "Add a tmpfs mount to the container at the given path"))
      .O(Flag("virtualization", {"--virtualization"},
              "Expose virtualization capabilities to the container (requires "
              "host and guest support)"))
      .O(Rep("volume", {"--volume", "-v"}, "volume",
             "Bind mount a volume into the container"))
      .O(Opt("scheme", {"--scheme"}, "scheme",
             "Scheme to use when connecting to the container registry. One "
             "of (http, https, auto)"));
  OptionSpec progress = Opt(
      "progress", {"--progress"}, "type",
      "Progress type (format: auto|none|ansi|plain|color)", ValueType::kChoice);
  progress.choices = {"auto", "none", "ansi", "plain", "color"};
  b.O(progress)
      .O(Opt("max-concurrent-downloads", {"--max-concurrent-downloads"},
             "max-concurrent-downloads",
             "Maximum number of concurrent downloads", ValueType::kInt))
      .O(Debug())
      .A(Arg("image", "image", "Image name", false, false))
      .A(Arg("arguments", "arguments", "Container init process arguments", true,
             true, true));
  return b.Build();
}

CommandSpec ExecSpec() {
  SpecBuilder b("container exec", "Run a new command in a running container");
  ProcessOptions(&b);
  b.O(Debug())
      .O(Flag("detach", {"-d", "--detach"},
              "Run the process and detach from it"))
      .A(Arg("container-id", "container-id", "Container ID", false, false))
      .A(Arg("arguments", "arguments", "New process arguments", false, true,
             true));
  return b.Build();
}

CommandSpec ListSpec() {
  return SpecBuilder("container list", "List running containers")
      .O(Flag("all", {"-a", "--all"},
              "Include containers that are not running"))
      .O(Format())
      .O(Flag("quiet", {"-q", "--quiet"}, "Only output the container ID"))
      .O(Debug())
      .Build();
}

CommandSpec StopSpec() {
  return SpecBuilder("container stop", "Stop one or more running containers")
      .O(Flag("all", {"-a", "--all"}, "Stop all running containers"))
      .O(Opt("signal", {"-s", "--signal"}, "signal",
             "Signal to send to the containers"))
      .O(Opt("time", {"-t", "--time"}, "time",
             "Seconds to wait before killing the containers",
             ValueType::kInt32))
      .O(Debug())
      .A(Arg("container-ids", "container-ids", "Container IDs", true, true))
      .Build();
}

CommandSpec KillSpec() {
  return SpecBuilder("container kill",
                     "Kill or signal one or more running containers")
      .O(Flag("all", {"-a", "--all"}, "Kill or signal all running containers"))
      .O(Opt("signal", {"-s", "--signal"}, "signal",
             "Signal to send to the container(s)"))
      .O(Debug())
      .A(Arg("container-ids", "container-ids", "Container IDs", true, true))
      .Build();
}

CommandSpec DeleteSpec() {
  return SpecBuilder("container delete", "Delete one or more containers")
      .O(Flag("all", {"-a", "--all"}, "Delete all containers"))
      .O(Flag("force", {"-f", "--force"},
              "Delete containers even if they are running"))
      .O(Debug())
      .A(Arg("container-ids", "container-ids", "Container IDs", true, true))
      .Build();
}

CommandSpec InspectSpec() {
  return SpecBuilder("container inspect",
                     "Display information about one or more containers")
      .O(Debug())
      .A(Arg("container-ids", "container-ids", "Container IDs to inspect",
             false, true))
      .Build();
}

CommandSpec LogsSpec() {
  return SpecBuilder("container logs", "Fetch container logs")
      .O(Flag("boot", {"--boot"},
              "Display the boot log for the container instead of stdio"))
      .O(Flag("follow", {"-f", "--follow"}, "Follow log output"))
      .O(Opt("n", {"-n"}, "n",
             "Number of lines to show from the end of the logs. If not "
             "provided this will print all of the logs",
             ValueType::kInt))
      .O(Debug())
      .A(Arg("container-id", "container-id", "Container ID", false, false))
      .Build();
}

CommandSpec StatsSpec() {
  return SpecBuilder("container stats",
                     "Display resource usage statistics for containers")
      .A(Arg("containers", "containers",
             "Container ID or name (optional, shows all running containers "
             "if not specified)",
             true, true))
      .O(Format())
      .O(Flag("no-stream", {"--no-stream"},
              "Disable streaming stats and only pull the first result"))
      .O(Debug())
      .Build();
}

CommandSpec ImageLoadSpec() {
  return SpecBuilder("container image load",
                     "Load images from an OCI compatible tar archive")
      .O(Opt("input", {"-i", "--input"}, "input",
             "Path to the image tar archive"))
      .O(Flag("force", {"-f", "--force"},
              "Load images even if the archive contains invalid files"))
      .O(Debug())
      .Build();
}

CommandSpec ImageListSpec() {
  return SpecBuilder("container image list", "List images")
      .O(Format())
      .O(Flag("quiet", {"-q", "--quiet"}, "Only output the image name"))
      .O(Flag("verbose", {"-v", "--verbose"}, "Verbose output"))
      .O(Debug())
      .Build();
}

CommandSpec ImageInspectSpec() {
  return SpecBuilder("container image inspect",
                     "Display information about one or more images")
      .O(Debug())
      .A(Arg("images", "images", "Images to inspect", false, true))
      .Build();
}

CommandSpec ImageDeleteSpec() {
  return SpecBuilder("container image delete", "Delete one or more images")
      .O(Flag("all", {"-a", "--all"}, "Delete all images"))
      .O(Flag("force", {"-f", "--force"},
              "Ignore errors for images that are not found"))
      .A(Arg("images", "images", "", true, true))
      .O(Debug())
      .Build();
}

CommandSpec SystemStartSpec() {
  return SpecBuilder("container system start", "Start `container` services")
      .O(Opt("app-root", {"-a", "--app-root"}, "app-root",
             "Path to the root directory for application data"))
      .O(Opt("install-root", {"--install-root"}, "install-root",
             "Path to the root directory for application executables and "
             "plugins"))
      .O(Opt("log-root", {"--log-root"}, "log-root",
             "Path to the root directory for log data, using macOS log "
             "facility if not set"))
      .O(Flag("enable-kernel-install",
              {"--enable-kernel-install", "--disable-kernel-install"},
              "Specify whether the default kernel should be installed or not "
              "(default: prompt user)"))
      .O(Opt("timeout", {"--timeout"}, "timeout",
             "Number of seconds to wait for API service to become "
             "responsive"))
      .O(Debug())
      .Build();
}

CommandSpec SystemStatusSpec() {
  return SpecBuilder("container system status",
                     "Show the status of `container` services")
      .O(Opt("prefix", {"-p", "--prefix"}, "prefix",
             "Launchd prefix for services"))
      .O(Format())
      .O(Debug())
      .Build();
}

CommandSpec SystemStopSpec() {
  return SpecBuilder("container system stop", "Stop all `container` services")
      .O(Opt("prefix", {"-p", "--prefix"}, "prefix",
             "Launchd prefix for services"))
      .O(Debug())
      .Build();
}

// --- The fake's world.

class Fake {
 public:
  Fake()
      : root_(StateRoot()),
        images_(root_, [this] { return containers_.ImagesInUse(); }),
        containers_(root_, "", &images_) {}

  const std::string& root() const { return root_; }
  ImageStore& images() { return images_; }
  // The records alone (no runc needed to read them).
  Containers& records() { return containers_; }
  Containers& containers() {
    if (!runc_found_) {
      containers_ = Containers(root_, FindRunc(), &images_);
      runc_found_ = true;
    }
    return containers_;
  }

  bool ServiceRunning() const {
    return PathExists(root_ + "/apiserver/running");
  }
  // Commands that ping the API server first (loadContainerSystemConfig,
  // or a call with no wrapping).
  void RequirePing() const {
    if (!ServiceRunning()) {
      throw CliExit{"Error: " + XpcError() + "\n" + kEnsure, 1};
    }
  }
  // Commands whose client call wraps the connection error.
  void RequireService(const std::string& failed) const {
    if (!ServiceRunning()) {
      throw CliExit{"Error: " + Described("internalError", failed, XpcError()) +
                        "\n" + kEnsure,
                    1};
    }
  }
  static std::string XpcError() {
    return Described("interrupted", "XPC connection error: Connection invalid");
  }

 private:
  static std::string StateRoot() {
    if (const char* root = std::getenv("CONTAINER_FAKE_ROOT")) {
      if (*root != '\0') return AbsolutePath(root);
    }
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    std::string exe = n > 0 ? std::string(self, static_cast<size_t>(n)) : ".";
    return LexicallyNormal(Dirname(exe) + "/../apple-container");
  }

  static std::string FindRunc() {
    auto runc = fakes::FindRunc();
    if (!runc) FailFake(fakes::kRuncNotFound);
    return *runc;
  }

  std::string root_;
  ImageStore images_;
  Containers containers_;
  bool runc_found_ = false;
};

void Print(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void Log(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

// TableOutput: columns padded to their widest cell plus two spaces, the
// last one not padded.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (widths.size() <= i) widths.push_back(0);
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    for (size_t i = 0; i + 1 < row.size(); ++i) {
      out += row[i] + std::string(widths[i] + 2 - row[i].size(), ' ');
    }
    if (!row.empty()) out += row.back();
    if (r + 1 < rows.size()) out += "\n";
  }
  return out;
}

void RefuseFormat(const std::string& format) {
  if (format == "yaml" || format == "toml") {
    FailFake("--format " + format + " is not modelled");
  }
}

// ByteCountFormatter's file style, approximately.
std::string Bytes(uint64_t bytes) {
  char buffer[64];
  if (bytes == 0) return "Zero KB";
  if (bytes < 1000) return std::to_string(bytes) + " bytes";
  if (bytes < 1000 * 1000) {
    std::snprintf(buffer, sizeof(buffer), "%.0f KB", bytes / 1e3);
  } else if (bytes < 1000ull * 1000 * 1000) {
    std::snprintf(buffer, sizeof(buffer), "%.1f MB", bytes / 1e6);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.2f GB", bytes / 1e9);
  }
  return buffer;
}

// --- system

int SystemStart(Fake& fake, const Parsed&) {
  if (!MakeDirs(fake.root() + "/apiserver", 0755) ||
      !WriteFileAtomic(fake.root() + "/apiserver/running",
                       NowIso8601() + "\n")) {
    FailFake("cannot write the service marker under " + fake.root());
  }
  Log("Launching container-apiserver...");
  Log("Testing access to container-apiserver...");
  Log("Verifying machine API server is running...");
  return 0;
}

// swift-log's StreamLogHandler line, as `system stop` logs to stdout.
void StreamLog(const std::string& message, const std::string& metadata = "") {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char stamp[40];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S%z", &local);
  Print(std::string(stamp) + " info com.apple.container.cli :" +
        (metadata.empty() ? "" : " " + metadata) + " [ContainerCommands] " +
        message);
}

int StopSignalOf(Fake& fake, const std::string& id) {
  auto record = fake.containers().Load(id);
  if (record && record->configuration.contains("stopSignal")) {
    int signal = ParseSignal(record->configuration["stopSignal"]);
    if (signal > 0) return signal;
  }
  return SIGTERM;
}

int SystemStop(Fake& fake, const Parsed& flags) {
  const std::string prefix =
      flags.Value("prefix").value_or("com.apple.container.");
  const std::string label =
      "gui/" + std::to_string(::getuid()) + "/" + prefix + "apiserver";
  StreamLog("checking if APIServer is alive");
  if (!fake.ServiceRunning()) {
    StreamLog("APIServer health check failed, skipping bootout");
    return 0;
  }
  StreamLog("stopping containers", "stopTimeoutSeconds=5");
  Containers& containers = fake.containers();
  for (const auto& id : containers.Ids()) {
    containers.Stop(id, StopSignalOf(fake, id), 5);
    Print(id);
  }
  StreamLog("waiting for containers to exit");
  for (int i = 0; i < 20; ++i) {
    bool any = false;
    for (const auto& id : containers.Ids())
      any = any || containers.State(id).running;
    if (!any) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  StreamLog("stopping service", "label=" + label);
  ::unlink((fake.root() + "/apiserver/running").c_str());
  return 0;
}

int SystemStatus(Fake& fake, const Parsed& flags) {
  const std::string format = flags.Value("format").value_or("table");
  RefuseFormat(format);
  if (!fake.ServiceRunning()) {
    json status = {{"apiServerAppName", ""},  {"apiServerBuild", ""},
                   {"apiServerCommit", ""},   {"apiServerVersion", ""},
                   {"appRoot", ""},           {"installRoot", ""},
                   {"status", "unregistered"}};
    Print(format == "json" ? SwiftCompact(status)
                           : "apiserver is not running and not registered "
                             "with launchd");
    throw CliExit{"", 1};
  }
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::string exe = n > 0 ? std::string(self, static_cast<size_t>(n)) : "/";
  const std::string install_root = LexicallyNormal(Dirname(exe) + "/..") + "/";
  const std::string app_root = fake.root() + "/";
  const std::string version =
      "container-apiserver version 1.2.2 (build: release, commit: af405ff)";
  if (format == "json") {
    json status = {{"apiServerAppName", "container-apiserver"},
                   {"apiServerBuild", "release"},
                   {"apiServerCommit", kCommit},
                   {"apiServerVersion", version},
                   {"appRoot", app_root},
                   {"installRoot", install_root},
                   {"status", "running"}};
    Print(SwiftCompact(status));
    return 0;
  }
  Print(Table({{"FIELD", "VALUE"},
               {"status", "running"},
               {"appRoot", app_root},
               {"installRoot", install_root},
               {"logRoot", ""},
               {"apiserver.version", version},
               {"apiserver.commit", kCommit},
               {"apiserver.build", "release"},
               {"apiserver.appName", "container-apiserver"}}));
  return 0;
}

// --- images

int ImageLoad(Fake& fake, const Parsed& flags) {
  std::string archive;
  struct TempFile {
    std::string path;
    ~TempFile() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } temp;
  if (auto input = flags.Value("input")) {
    archive = AbsolutePath(*input);
    if (!PathExists(archive)) {
      throw CliExit{"file does not exist: [\"path\": " + archive + "]", 1};
    }
  }
  fake.RequirePing();
  if (archive.empty()) {
    MakeDirs(fake.root() + "/tmp", 0700);
    std::string pattern = fake.root() + "/tmp/stdin-XXXXXX";
    int fd = ::mkstemp(pattern.data());
    if (fd < 0) FailFake("cannot make a temporary file");
    temp.path = archive = pattern;
    char buffer[65536];
    for (ssize_t n; (n = ::read(0, buffer, sizeof(buffer))) > 0;) {
      if (::write(fd, buffer, static_cast<size_t>(n)) != n) {
        ::close(fd);
        FailFake("cannot copy stdin");
      }
    }
    ::close(fd);
  }
  std::vector<std::string> rejected;
  std::vector<std::string> references =
      fake.images().Load(archive, flags.Flag("force"), &rejected);
  if (!rejected.empty()) {
    Log("archive contains invalid members: [\"paths\": " + SwiftList(rejected) +
        "]");
  }
  for (const auto& reference : references) Print(reference);
  return 0;
}

int ImageList(Fake& fake, const Parsed& flags) {
  fake.RequirePing();
  const std::string format = flags.Value("format").value_or("table");
  if (flags.Flag("quiet") && flags.Flag("verbose")) {
    Fail("cannot use flag --quiet and --verbose together");
  }
  RefuseFormat(format);
  std::vector<StoredImage> images = fake.images().List();
  if (flags.Flag("quiet") && format == "table") {
    for (const auto& image : images)
      Print(DenormalizeReference(image.reference));
    return 0;
  }
  json resources = json::array();
  for (const auto& image : images) {
    resources.push_back(fake.images().Resource(image));
  }
  if (format == "json") {
    Print(SwiftCompact(resources));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  if (flags.Flag("verbose")) {
    rows.push_back({"NAME", "TAG", "INDEX DIGEST", "OS", "ARCH", "VARIANT",
                    "FULL SIZE", "CREATED", "MANIFEST DIGEST"});
  } else {
    rows.push_back({"NAME", "TAG", "DIGEST"});
  }
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string display = DenormalizeReference(images[i].reference);
    std::string error;
    auto ref = ParseReference(display, &error);
    const std::string name = ref ? ref->Name() : display;
    const std::string tag = ref && ref->tag ? *ref->tag : "<none>";
    const std::string digest = images[i].Hex().substr(0, 12);
    if (!flags.Flag("verbose")) {
      rows.push_back({name, tag, digest});
      continue;
    }
    for (const auto& variant : resources[i]["variants"]) {
      const json& platform = variant["platform"];
      if (platform["os"] == "unknown" &&
          platform["architecture"] == "unknown") {
        continue;
      }
      const std::string manifest = variant["digest"];
      rows.push_back({name, tag, digest, platform["os"],
                      platform["architecture"], platform.value("variant", ""),
                      Bytes(variant["size"].get<uint64_t>()),
                      variant["config"].value("created", ""),
                      manifest.substr(manifest.find(':') + 1, 12)});
    }
  }
  Print(Table(rows));
  return 0;
}

// ClientImage.get(names:): the images found (the given order, once each)
// and the names not found.
std::vector<StoredImage> FindImages(Fake& fake,
                                    const std::vector<std::string>& names,
                                    std::vector<std::string>* missing) {
  std::vector<StoredImage> found;
  std::set<std::string> seen;
  for (const auto& name : names) {
    if (!seen.insert(name).second) continue;
    try {
      if (auto image = fake.images().Search(name)) {
        found.push_back(*image);
        continue;
      }
    } catch (const CliExit&) {
    }
    missing->push_back(name);
  }
  return found;
}

int ImageInspect(Fake& fake, const Parsed& flags) {
  fake.RequirePing();
  std::vector<std::string> missing;
  std::vector<StoredImage> found =
      FindImages(fake, flags.Arguments("images"), &missing);
  if (!missing.empty()) {
    std::sort(missing.begin(), missing.end());
    std::string list;
    for (const auto& name : missing) list += (list.empty() ? "" : ", ") + name;
    Fail("image not found: " + list);
  }
  json printable = json::array();
  for (const auto& image : found)
    printable.push_back(fake.images().Resource(image));
  Print(SwiftPretty(printable));
  return 0;
}

int ImageDelete(Fake& fake, const Parsed& flags) {
  const std::vector<std::string> names = flags.Arguments("images");
  if (names.empty() && !flags.Flag("all")) {
    Fail("no images specified and --all not supplied");
  }
  if (!names.empty() && flags.Flag("all")) {
    Fail("explicitly supplied images conflict with the --all flag");
  }
  fake.RequirePing();
  std::vector<std::string> missing;
  std::vector<StoredImage> found = flags.Flag("all")
                                       ? fake.images().List()
                                       : FindImages(fake, names, &missing);
  std::vector<std::string> failures =
      flags.Flag("force") ? std::vector<std::string>{} : missing;
  Containers& containers = fake.records();
  bool deleted = false;
  uint64_t freed = 0;
  {
    FileLock lock(fake.images().LockPath());
    // The fake's own rule: an image a container uses stays.
    for (const auto& image : found) {
      for (const auto& id : containers.Ids()) {
        auto record = containers.Load(id);
        if (record && record->configuration["image"].value("reference", "") ==
                          image.reference) {
          FailFake("image " + image.reference + " is used by container " + id);
        }
      }
    }
    for (const auto& image : found) {
      fake.images().RemoveReference(image.reference);
      Print(image.reference);
      deleted = true;
    }
    freed = fake.images().CollectGarbage();
  }
  if (deleted) Log("Reclaimed " + Bytes(freed) + " in disk space");
  if (!failures.empty()) {
    Fail("failed to delete one or more images: " + SwiftList(failures));
  }
  return 0;
}

// --- containers

volatile sig_atomic_t g_forward_signal = 0;

void RecordSignal(int signal) { g_forward_signal = signal; }

int Run(Fake& fake, const Parsed& flags) {
  if (flags.Flag("no-dns") &&
      (!flags.Values("dns").empty() || flags.Value("dns-domain") ||
       !flags.Values("dns-option").empty() ||
       !flags.Values("dns-search").empty())) {
    UsageError(RunSpec(),
               "`--no-dns` cannot be used with DNS configuration flags "
               "(`--dns`, `--dns-domain`, `--dns-option`, `--dns-search`)");
  }
  fake.RequirePing();
  Containers& containers = fake.containers();
  const std::string id = flags.Value("name").value_or(NewUuid());
  if (!ContainerNameValid(id)) {
    Fail("container ID " + id + " is not a valid container ID");
  }
  if (containers.Load(id)) {
    Fail("container with id " + id + " already exists");
  }
  // The platform: --platform, else --os/--arch, else this host's.
  std::string os = flags.Value("os").value_or("linux");
  std::string arch = flags.Value("arch").value_or(HostArchitecture());
  if (auto platform = flags.Value("platform")) {
    size_t slash = platform->find('/');
    os = platform->substr(0, slash);
    arch = slash == std::string::npos ? "" : platform->substr(slash + 1);
    arch = arch.substr(0, arch.find('/'));
  }
  if (arch == "x86_64") arch = "amd64";
  if (arch == "aarch64") arch = "arm64";
  if (os != "linux" || arch != HostArchitecture()) {
    FailFake("only linux/" + HostArchitecture() +
             " containers are modelled (asked for " + os + "/" + arch + ")");
  }
  if (auto downloads = flags.Value("max-concurrent-downloads")) {
    if (std::stoll(*downloads) <= 0) {
      Fail(
          "maximum number of concurrent downloads must be greater than 0, "
          "got " +
          *downloads);
    }
  }
  const std::string reference = *flags.Argument("image");
  auto image = fake.images().Search(reference);
  if (!image) {
    FailFake("image " + reference + " is not loaded and this fake cannot pull");
  }
  auto rootfs = fake.images().RootfsOf(*image);
  if (!rootfs) Fail("platform linux/" + HostArchitecture());
  if (auto kernel = flags.Value("kernel")) {
    if (!PathExists(AbsolutePath(*kernel))) {
      Fail("kernel file not found at path " + AbsolutePath(*kernel));
    }
  }
  json image_config = fake.images().HostConfigOf(*image).value_or(json());
  json configuration =
      ContainerConfigFromFlags(id, *image, image_config, flags);

  // What the API server checks at create, under the state lock.
  ContainerRecord record{
      id,
      configuration,
      {{"imageHex", image->Hex()}, {"autoRemove", flags.Flag("rm")}}};
  {
    FileLock lock(containers.LockPath());
    if (containers.Exists(id)) Fail("container already exists: " + id);
    const std::string handler = configuration["runtimeHandler"];
    if (handler != "container-runtime-linux") {
      Fail("unable to locate runtime plugin " + handler);
    }
    const uint64_t memory = configuration["resources"]["memoryInBytes"];
    if (memory < (200ull << 20)) {
      Fail("minimum memory amount allowed is 200 MiB (got " +
           std::to_string(memory) + " bytes)");
    }
    // The image may have gone since the lookup.
    if (!fake.images().RootfsOf(*image) || !PathExists(*rootfs)) {
      FailFake("image " + reference + " was deleted meanwhile");
    }
    if (!containers.Create(record)) Fail("container already exists: " + id);
  }

  const bool detach = flags.Flag("detach");
  int report = -1;
  try {
    report = containers.Start(
        record, RunIo{!detach, !detach && flags.Flag("interactive")}, *rootfs);
    if (auto cidfile = flags.Value("cidfile")) {
      if (!cidfile->empty() && !WriteFileAtomic(*cidfile, id, 0644)) {
        Fail("failed to create cidfile at " + *cidfile + ": " +
             std::to_string(errno));
      }
    }
  } catch (const CliExit&) {
    if (report >= 0) ::close(report);
    containers.Signal(id, SIGKILL);
    containers.WaitStopped(id, 10000);
    containers.Remove(id);
    throw;
  }
  if (detach) {
    ::close(report);
    Print(id);
    return 0;
  }
  // Foreground: signals go to the container; its exit code is ours.
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
    struct sigaction action {};
    action.sa_handler = RecordSignal;
    ::sigaction(signal, &action, nullptr);
  }
  std::string line;
  for (;;) {
    pollfd item{report, POLLIN, 0};
    int ready = ::poll(&item, 1, 200);
    if (g_forward_signal != 0) {
      int signal = g_forward_signal;
      g_forward_signal = 0;
      containers.Signal(id, signal);
    }
    if (ready <= 0) continue;
    char c = 0;
    ssize_t n = ::read(report, &c, 1);
    if (n <= 0) break;
    if (c != '\n') {
      line += c;
      continue;
    }
    if (line.rfind("exit ", 0) == 0) return std::atoi(line.c_str() + 5);
    line.clear();
  }
  FailFake("the container's monitor ended without an exit status");
}

int Exec(Fake& fake, const Parsed& flags) {
  fake.RequireService("failed to list containers");
  Containers& containers = fake.containers();
  const std::string id = *flags.Argument("container-id");
  auto record = containers.Load(id);
  if (!record) Fail("get failed: container " + id + " not found");
  if (!containers.State(id).running) {
    Fail("container " + id + " is not running");
  }
  if (flags.Flag("tty")) FailFake("--tty is not modelled");
  json process = containers.InitProcess(*record);
  process["args"] = flags.Arguments("arguments");
  for (const auto& entry : ExtraEnvironment(flags)) {
    process["env"].push_back(entry);
  }
  if (auto cwd = flags.Value("cwd")) process["cwd"] = *cwd;
  const json& init = record->configuration["initProcess"];
  json extra_groups;
  json user = ProcessUser(flags, init["user"], &extra_groups);
  if (user != init["user"] || !extra_groups.empty()) {
    json groups = init.value("supplementalGroups", json::array());
    for (const auto& g : extra_groups) groups.push_back(g);
    process["user"] =
        containers.ResolveUser(containers.Dir(id) + "/rootfs", user, groups);
  }
  std::string error;
  const bool detach = flags.Flag("detach");
  int code = containers.Exec(id, process, detach,
                             flags.Flag("interactive") ? 0 : -1, &error);
  if (code < 0) FailFake(error);
  if (detach) {
    if (code != 0) FailFake("runc exec failed: " + std::to_string(code));
    Print(id);
    return 0;
  }
  return code;
}

// The ids of `stop`, `kill` and `delete`: given ones, or every container
// --all picks; the validate() errors first.
std::vector<std::string> TargetIds(const Parsed& flags,
                                   const std::string& conflict) {
  std::vector<std::string> ids = flags.Arguments("container-ids");
  if (ids.empty() && !flags.Flag("all")) {
    Fail("no containers specified and --all not supplied");
  }
  if (!ids.empty() && flags.Flag("all")) Fail(conflict);
  return ids;
}

std::string NotFound(const std::string& failed, const std::string& id) {
  return Described(
      "internalError", failed,
      Described("notFound", "container with ID " + id + " not found"));
}

// AggregateError: one error's description a line.
void ThrowAggregate(const std::vector<std::string>& errors) {
  if (errors.empty()) return;
  std::string text;
  for (const auto& e : errors) text += (text.empty() ? "" : "\n") + e;
  throw CliExit{"Error: " + text, 1};
}

// The aggregated connection errors, one per container, when the service
// is down.
void RequireServiceEach(Fake& fake, const std::vector<std::string>& ids,
                        const std::string& failed) {
  if (fake.ServiceRunning()) return;
  std::string text;
  for (size_t i = 0; i < std::max<size_t>(ids.size(), 1); ++i) {
    text +=
        (i ? "\n" : "") + Described("internalError", failed, Fake::XpcError());
  }
  throw CliExit{"Error: " + text + "\n" + kEnsure, 1};
}

int Stop(Fake& fake, const Parsed& flags) {
  std::vector<std::string> ids = TargetIds(
      flags, "explicitly supplied container IDs conflict with the --all flag");
  if (flags.Flag("all")) {
    fake.RequireService("failed to list containers");
    ids = fake.containers().Ids();
  }
  RequireServiceEach(fake, ids, "failed to stop container");
  Containers& containers = fake.containers();
  const int timeout = std::stoi(flags.Value("time").value_or("5"));
  std::vector<std::string> errors;
  for (const auto& id : ids) {
    if (!containers.Load(id)) {
      errors.push_back(NotFound("failed to stop container", id));
      continue;
    }
    int signal = StopSignalOf(fake, id);
    if (auto given = flags.Value("signal")) signal = ParseSignal(*given);
    if (signal < 0) {
      errors.push_back(Described(
          "internalError", "failed to stop container",
          Described("invalidArgument", "fake container: unknown signal " +
                                           *flags.Value("signal"))));
      continue;
    }
    containers.Stop(id, signal, timeout);
    Print(id);
  }
  ThrowAggregate(errors);
  return 0;
}

int Kill(Fake& fake, const Parsed& flags) {
  std::vector<std::string> ids = TargetIds(
      flags, "explicitly supplied container IDs conflict with the --all flag");
  Containers& containers = fake.containers();
  if (flags.Flag("all")) {
    fake.RequireService("failed to list containers");
    ids.clear();
    for (const auto& id : containers.Ids()) {
      if (containers.State(id).running) ids.push_back(id);
    }
  }
  RequireServiceEach(fake, ids, "failed to kill container");
  const std::string given = flags.Value("signal").value_or("KILL");
  const int signal = ParseSignal(given);
  std::vector<std::string> errors;
  for (const auto& id : ids) {
    if (!containers.Load(id)) {
      errors.push_back(NotFound("failed to kill container", id));
      continue;
    }
    if (signal < 0) {
      errors.push_back(
          Described("internalError", "failed to kill container",
                    Described("invalidArgument",
                              "fake container: unknown signal " + given)));
      continue;
    }
    if (!containers.Signal(id, signal)) {
      errors.push_back(Described(
          "internalError", "failed to kill container",
          Described("invalidState",
                    "no runtime client exists: container is stopped")));
      continue;
    }
    if (signal == SIGKILL) containers.WaitStopped(id, 10000);
    Print(id);
  }
  ThrowAggregate(errors);
  return 0;
}

int Delete(Fake& fake, const Parsed& flags) {
  std::vector<std::string> ids = TargetIds(
      flags,
      "explicitly supplied container ID(s) conflict with the --all flag");
  Containers& containers = fake.containers();
  const bool force = flags.Flag("force");
  if (flags.Flag("all")) {
    fake.RequireService("failed to list containers");
    ids.clear();
    for (const auto& id : containers.Ids()) {
      if (!containers.State(id).running || force) ids.push_back(id);
    }
  } else {
    std::vector<std::string> unique;
    for (const auto& id : ids) {
      if (std::find(unique.begin(), unique.end(), id) == unique.end()) {
        unique.push_back(id);
      }
    }
    ids = unique;
  }
  RequireServiceEach(fake, ids, "failed to delete container");
  std::vector<std::string> errors;
  for (const auto& id : ids) {
    if (!containers.Load(id)) {
      errors.push_back(NotFound("failed to delete container", id));
      continue;
    }
    if (containers.State(id).running) {
      if (!force) {
        errors.push_back(Described(
            "internalError", "failed to delete container",
            Described(
                "invalidState",
                "container " + id + " is running and can not be deleted")));
        continue;
      }
      containers.Stop(id, SIGKILL, 5);
    }
    containers.WaitStopped(id, 10000);
    containers.Remove(id);
    Print(id);
  }
  ThrowAggregate(errors);
  return 0;
}

int List(Fake& fake, const Parsed& flags) {
  fake.RequireService("failed to list containers");
  const std::string format = flags.Value("format").value_or("table");
  RefuseFormat(format);
  Containers& containers = fake.records();
  json items = json::array();
  for (const auto& id : containers.Ids()) {
    auto record = containers.Load(id);
    if (!record) continue;
    json managed = containers.Managed(*record);
    if (!flags.Flag("all") && managed["status"]["state"] != "running") continue;
    items.push_back(managed);
  }
  if (format == "json") {
    Print(SwiftCompact(items));
    return 0;
  }
  if (flags.Flag("quiet")) {
    for (const auto& item : items) Print(item["configuration"]["id"]);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "IMAGE", "OS", "ARCH",
                                                 "STATE", "IP", "CPUS",
                                                 "MEMORY", "STARTED"}};
  for (const auto& item : items) {
    const json& config = item["configuration"];
    rows.push_back(
        {config["id"], config["image"]["reference"], config["platform"]["os"],
         config["platform"]["architecture"], item["status"]["state"], "",
         std::to_string(config["resources"]["cpus"].get<int64_t>()),
         std::to_string(config["resources"]["memoryInBytes"].get<uint64_t>() /
                        (1024 * 1024)) +
             " MB",
         item["status"].value("startedDate", "")});
  }
  Print(Table(rows));
  return 0;
}

int Inspect(Fake& fake, const Parsed& flags) {
  fake.RequireService("failed to list containers");
  Containers& containers = fake.records();
  std::set<std::string> wanted;
  for (const auto& id : flags.Arguments("container-ids")) wanted.insert(id);
  json found = json::array();
  std::set<std::string> seen;
  for (const auto& id : containers.Ids()) {
    if (wanted.count(id) == 0) continue;
    if (auto record = containers.Load(id)) {
      found.push_back(containers.Managed(*record));
      seen.insert(id);
    }
  }
  std::string missing;
  for (const auto& id : wanted) {
    if (seen.count(id) == 0) missing += (missing.empty() ? "" : ", ") + id;
  }
  if (!missing.empty()) Fail("container not found: " + missing);
  Print(SwiftPretty(found));
  return 0;
}

int Logs(Fake& fake, const Parsed& flags) {
  const std::string id = *flags.Argument("container-id");
  if (!fake.ServiceRunning()) {
    throw CliExit{
        "Error: " +
            Described("internalError", "failed to get logs for container " + id,
                      Fake::XpcError()) +
            "\n" + kEnsure,
        1};
  }
  Containers& containers = fake.containers();
  if (!containers.Load(id)) {
    Fail("failed to get logs for container " + id + " (cause: \"" +
         Described("internalError",
                   "failed to open container logs: " +
                       Described("notFound",
                                 "container with ID " + id + " not found")) +
         "\")");
  }
  // The fake has no VM, hence no boot log: --boot prints an empty one.
  const std::string path = containers.Dir(id) + "/stdio.log";
  std::string content = flags.Flag("boot") ? "" : ReadFile(path).value_or("");
  if (auto n = flags.Value("n")) {
    std::vector<std::string> lines;
    std::string line;
    for (char c : content) {
      if (c == '\n' || c == '\r') {
        if (!line.empty()) lines.push_back(line);
        line.clear();
      } else {
        line += c;
      }
    }
    if (!line.empty()) lines.push_back(line);
    const long long count = std::max(0LL, std::stoll(*n));
    size_t first = lines.size() > static_cast<size_t>(count)
                       ? lines.size() - static_cast<size_t>(count)
                       : 0;
    for (size_t i = first; i < lines.size(); ++i) Print(lines[i]);
  } else if (!content.empty()) {
    size_t begin = content.find_first_not_of("\r\n");
    size_t end = content.find_last_not_of("\r\n");
    Print(begin == std::string::npos ? ""
                                     : content.substr(begin, end - begin + 1));
  }
  if (!flags.Flag("follow") || flags.Flag("boot")) return 0;
  size_t offset = content.size();
  std::string pending;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::string now = ReadFile(path).value_or("");
    if (now.size() < offset) offset = 0;
    pending += now.substr(offset);
    offset = now.size();
    size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      if (!line.empty()) Print(line);
    }
  }
}

std::string StatsBytes(uint64_t bytes) {
  char buffer[64];
  const double value = static_cast<double>(bytes);
  if (value >= 1024.0 * 1024 * 1024) {
    std::snprintf(buffer, sizeof(buffer), "%.2f GiB",
                  value / (1024.0 * 1024 * 1024));
  } else if (value >= 1024.0 * 1024) {
    std::snprintf(buffer, sizeof(buffer), "%.2f MiB", value / (1024.0 * 1024));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.2f KiB", value / 1024.0);
  }
  return buffer;
}

int Stats(Fake& fake, const Parsed& flags) {
  const std::string format = flags.Value("format").value_or("table");
  RefuseFormat(format);
  fake.RequireService("failed to list containers");
  Containers& containers = fake.containers();
  const std::vector<std::string> wanted = flags.Arguments("containers");
  for (const auto& id : wanted) {
    if (!containers.Load(id)) Fail("no such container: " + id);
  }
  auto collect = [&] {
    std::vector<std::pair<json, json>> samples;
    for (const auto& id : containers.Ids()) {
      if (!wanted.empty() &&
          std::find(wanted.begin(), wanted.end(), id) == wanted.end()) {
        continue;
      }
      if (!containers.State(id).running) continue;
      json first = containers.Stats(id);
      samples.emplace_back(first, first);
    }
    // Two samples, two seconds apart, as the real command takes them.
    if (!samples.empty()) {
      std::this_thread::sleep_for(std::chrono::seconds(2));
      for (auto& sample : samples) {
        sample.second = containers.Stats(sample.first["id"]);
      }
    }
    return samples;
  };
  auto table = [&](const std::vector<std::pair<json, json>>& samples) {
    std::vector<std::vector<std::string>> rows = {{"Container ID", "Cpu %",
                                                   "Memory Usage", "Net Rx/Tx",
                                                   "Block I/O", "Pids"}};
    for (const auto& [first, second] : samples) {
      uint64_t a = first["cpuUsageUsec"], b = second["cpuUsageUsec"];
      char cpu[32];
      std::snprintf(cpu, sizeof(cpu), "%.2f%%",
                    b > a ? (b - a) / 2e6 * 100.0 : 0.0);
      rows.push_back({second["id"], cpu,
                      StatsBytes(second["memoryUsageBytes"]) + " / " +
                          StatsBytes(second["memoryLimitBytes"]),
                      StatsBytes(second["networkRxBytes"]) + " / " +
                          StatsBytes(second["networkTxBytes"]),
                      StatsBytes(second["blockReadBytes"]) + " / " +
                          StatsBytes(second["blockWriteBytes"]),
                      std::to_string(second["numProcesses"].get<uint64_t>())});
    }
    return Table(rows);
  };
  if (format != "table" || flags.Flag("no-stream")) {
    auto samples = collect();
    if (format == "json") {
      json out = json::array();
      for (const auto& sample : samples) out.push_back(sample.second);
      Print(SwiftCompact(out));
    } else {
      Print(table(samples));
    }
    return 0;
  }
  std::fputs("\x1b[?1049h\x1b[?25l\x1b[H\x1b[J", stdout);
  Print(table({}));
  for (;;) {
    auto samples = collect();
    std::fputs("\x1b[H\x1b[J", stdout);
    Print(table(samples));
    if (samples.empty()) std::this_thread::sleep_for(std::chrono::seconds(2));
  }
}

// --- dispatch

int Dispatch(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      args[0] == "help") {
    throw CliExit{
        "OVERVIEW: A container platform for macOS\n\nUSAGE: container "
        "<subcommand>\n\n(corral test fake: tests/fakes/apple; it models run, "
        "exec, stop, kill, delete, list, inspect, logs, stats, image load, "
        "image list, image inspect, image delete, system start, system stop "
        "and system status)",
        0};
  }
  if (args[0] == "--version") {
    Print(kVersionLine);
    Print(kFakeLine);
    return 0;
  }
  if (::geteuid() != 0) FailFake("must run as root (it drives runc)");
  Fake fake;
  const std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  auto sub = [&](const std::string& group) -> std::string {
    if (rest.empty()) {
      throw CliExit{"Error: Missing required subcommand.\nUsage: container " +
                        group + " <subcommand>\n  See 'container " + group +
                        " --help' for more information.",
                    64};
    }
    std::string name = rest[0];
    rest.erase(rest.begin());
    return name;
  };
  if (command == "system" || command == "s") {
    const std::string name = sub("system");
    if (name == "start")
      return SystemStart(fake, Parse(SystemStartSpec(), rest));
    if (name == "stop") return SystemStop(fake, Parse(SystemStopSpec(), rest));
    if (name == "status") {
      return SystemStatus(fake, Parse(SystemStatusSpec(), rest));
    }
    FailFake("`container system " + name + "` is not modelled");
  }
  if (command == "image" || command == "i") {
    const std::string name = sub("image");
    if (name == "load") return ImageLoad(fake, Parse(ImageLoadSpec(), rest));
    if (name == "list" || name == "ls") {
      return ImageList(fake, Parse(ImageListSpec(), rest));
    }
    if (name == "inspect") {
      return ImageInspect(fake, Parse(ImageInspectSpec(), rest));
    }
    if (name == "delete" || name == "rm") {
      return ImageDelete(fake, Parse(ImageDeleteSpec(), rest));
    }
    FailFake("`container image " + name + "` is not modelled");
  }
  if (command == "run") return Run(fake, Parse(RunSpec(), rest));
  if (command == "exec") return Exec(fake, Parse(ExecSpec(), rest));
  if (command == "stop") return Stop(fake, Parse(StopSpec(), rest));
  if (command == "kill") return Kill(fake, Parse(KillSpec(), rest));
  if (command == "delete" || command == "rm") {
    return Delete(fake, Parse(DeleteSpec(), rest));
  }
  if (command == "list" || command == "ls") {
    return List(fake, Parse(ListSpec(), rest));
  }
  if (command == "inspect") return Inspect(fake, Parse(InspectSpec(), rest));
  if (command == "logs") return Logs(fake, Parse(LogsSpec(), rest));
  if (command == "stats") return Stats(fake, Parse(StatsSpec(), rest));
  static const std::set<std::string> kKnown = {
      "create", "start",   "cp",       "copy",   "export",  "prune",
      "build",  "builder", "registry", "volume", "network", "machine"};
  if (kKnown.count(command)) {
    FailFake("`container " + command + "` is not modelled");
  }
  if (command[0] == '-') {
    throw CliExit{"Error: unknown option '" + command +
                      "'\nUsage: container <subcommand>\n  See 'container "
                      "--help' for more information.",
                  64};
  }
  throw CliExit{"Error: Plugin 'container-" + command +
                    "' not found.\nUsage: container <subcommand>\n  See "
                    "'container --help' for more information.",
                64};
}

}  // namespace
}  // namespace corral::fake_apple

int main(int argc, char** argv) {
  using corral::fake_apple::CliExit;
  ::signal(SIGPIPE, SIG_IGN);
  corral::fakes::SetFakeDirectory("tests/fakes/apple");
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return corral::fake_apple::Dispatch(args);
  } catch (const CliExit& exit) {
    return corral::fakes::ReportExit(exit);
  } catch (const std::exception& error) {
    std::fflush(stdout);
    std::fprintf(stderr, "Error: fake container: internal error: %s\n",
                 error.what());
    return 1;
  }
}
