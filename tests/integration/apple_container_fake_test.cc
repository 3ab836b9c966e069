// The FAKE `container` CLI of tests/fakes/apple alone: the interface
// facts of apple/container 1.2.2 it reproduces (texts, exit codes, output
// shapes, JSON as Swift writes it) and what its runc containers are made
// of, so that a fake drifting from the real interface fails here before
// it misleads the apple runtime's tests. Every test has its own state
// root (CONTAINER_FAKE_ROOT) and leaves no container, mount or directory.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/fakes/common/fake_test_support.h"
#include "tests/integration/daemon_harness.h"
#include "tests/tar_builder.h"

namespace corral::testing {
namespace {

using nlohmann::json;

const std::string kBuild = CORRAL_BINARY_DIR;
const std::string kFake = kBuild + "/tests/fakes/bin/container";
const std::string kBusybox = kBuild + "/images/busybox.tar";
const std::string kAgentDir = kBuild + "/bin";
constexpr char kEnsure[] =
    "Ensure container system service has been started with `container "
    "system start`.";

using fakes::Contains;
using fakes::ReadWhole;

std::string Sha256(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string HostArch() {
  utsname name{};
  ::uname(&name);
  std::string machine = name.machine;
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64") return "arm64";
  return machine;
}

// An OCI image layout of busybox (its rootfs tar as one uncompressed
// layer), as a tar; the knobs make the broken ones.
struct Layout {
  std::string reference = "busybox:latest";
  std::string annotation = "org.opencontainers.image.ref.name";
  bool oci_layout = true;
  bool corrupt_layer = false;
  std::string extra_member;  // added as a file, e.g. "../evil"
};

std::string OciLayout(const Layout& layout) {
  static const std::string layer = ReadWhole(kBusybox);
  REQUIRE(layer.size() > 100000);
  const std::string layer_digest = "sha256:" + Sha256(layer);
  const std::string config =
      json{{"architecture", HostArch()},
           {"os", "linux"},
           {"config",
            {{"Env",
              {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
               "/bin",
               "IMAGE_ENV=from-image"}},
             {"Cmd", {"sh"}},
             {"WorkingDir", "/"}}},
           {"rootfs", {{"type", "layers"}, {"diff_ids", {layer_digest}}}}}
          .dump();
  const std::string manifest = json{
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
        {"digest", "sha256:" + Sha256(config)},
        {"size", config.size()}}},
      {"layers",
       {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
         {"digest", layer_digest},
         {"size", layer.size()}}}}}.dump();
  const std::string index =
      json{{"schemaVersion", 2},
           {"manifests",
            {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"digest", "sha256:" + Sha256(manifest)},
              {"size", manifest.size()},
              {"annotations", {{layout.annotation, layout.reference}}}}}}}
          .dump();
  TarBuilder tar;
  tar.Owner(0, 0);
  if (layout.oci_layout) {
    tar.File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  tar.File("index.json", index);
  tar.Dir("blobs").Dir("blobs/sha256");
  std::string stored_layer = layer;
  if (layout.corrupt_layer) stored_layer.back() ^= 1;
  tar.File("blobs/sha256/" + Sha256(layer), stored_layer);
  tar.File("blobs/sha256/" + Sha256(config), config);
  tar.File("blobs/sha256/" + Sha256(manifest), manifest);
  if (!layout.extra_member.empty()) tar.File(layout.extra_member, "x");
  return tar.Finish();
}

// A state root of the fake's own, and the fake run against it.
class Service : public fakes::FakeState {
 public:
  Service()
      : FakeState("fake-container-", "CONTAINER_FAKE_ROOT", kFake),
        root_(dir()) {}
  ~Service() {
    if (!finished_) Cleanup();
  }

  const std::string& root() const { return root_; }

  void Start() {
    auto started = Run({"system", "start"});
    INFO(started.err);
    REQUIRE(started.exit_code == 0);
  }

  void LoadBusybox(const std::string& reference = "busybox:latest") {
    Layout layout;
    layout.reference = reference;
    auto loaded = Run({"image", "load"}, OciLayout(layout));
    INFO(loaded.err);
    REQUIRE(loaded.exit_code == 0);
    REQUIRE(loaded.out == reference + "\n");
  }

  // Runs a detached busybox container; its id.
  std::string RunDetached(const std::vector<std::string>& flags,
                          const std::vector<std::string>& command = {"sleep",
                                                                     "1000"}) {
    std::vector<std::string> args = {"run", "-d", "--network", "none"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("busybox:latest");
    args.insert(args.end(), command.begin(), command.end());
    auto ran = Run(args);
    INFO(ran.err);
    REQUIRE(ran.exit_code == 0);
    return Trim(ran.out);
  }

  // What of this root is still on the host: runc containers, mounts,
  // cgroups.
  std::string Leftovers() const {
    std::string found = RuncAndMountLeftovers(root_ + "/runc");
    auto cgroups =
        Sh("find /sys/fs/cgroup -maxdepth 2 -name "
           "'corral-apple-fake-" +
           Sha256(root_).substr(0, 12) + "-*' 2>/dev/null");
    if (!Trim(cgroups.out).empty()) found += "cgroups:\n" + cgroups.out;
    return found;
  }

  // Removes every container, stops the service, checks nothing is left
  // and removes the root.
  void Finish() {
    finished_ = true;
    CHECK(Run({"system", "start"}).exit_code == 0);
    auto deleted = Run({"delete", "--all", "--force"});
    INFO(deleted.out << deleted.err);
    CHECK(deleted.exit_code == 0);
    auto stopped = Run({"system", "stop"});
    CHECK(stopped.exit_code == 0);
    std::string left;
    for (int attempt = 0; attempt < 50; ++attempt) {
      left = Leftovers();
      if (left.empty()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(left == "");
    auto listed = Sh("ls '" + root_ + "/containers' 2>/dev/null");
    CHECK(Trim(listed.out) == "");
    Cleanup();
  }

 private:
  void Cleanup() {
    Run({"delete", "--all", "--force"});
    Sh("grep -F '" + root_ +
       "' /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 "
       "umount -l");
    Sh("rm -rf '" + root_ + "'");
  }

  const std::string root_;
  bool finished_ = false;
};

// Connects to a Unix socket at `path` (long paths through /proc/self/fd);
// -1 when it cannot.
int ConnectUnix(const std::string& path) {
  int dir = ::open(path.substr(0, path.rfind('/')).c_str(),
                   O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string target = "/proc/self/fd/" + std::to_string(dir) + "/" +
                       path.substr(path.rfind('/') + 1);
  std::memcpy(address.sun_path, target.c_str(), target.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
      0) {
    ::close(fd);
    fd = -1;
  }
  ::close(dir);
  return fd;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE(
    "fake container (a test fake): --version prints the real CLI's line, "
    "then says it is the fake",
    "[apple-fake]") {
  auto version = RunProcess({kFake, "--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out ==
        "container CLI version 1.2.2 (build: release, commit: af405ff)\n"
        "corral test fake (tests/fakes/apple)\n");
}

TEST_CASE(
    "fake container (a test fake): usage errors exit 64 with the parser's "
    "message, the usage and the help hint",
    "[apple-fake]") {
  Service service;
  auto filter = service.Run({"list", "--filter", "x"});
  CHECK(filter.exit_code == 64);
  CHECK(filter.out == "");
  CHECK(filter.err ==
        "Error: Unknown option '--filter'\n"
        "Usage: container list [--all] [--format <format>] [--quiet] "
        "[--debug]\n"
        "  See 'container list --help' for more information.\n");
  auto cpus = service.Run({"run", "--cpus", "abc", "busybox"});
  CHECK(cpus.exit_code == 64);
  CHECK(cpus.err ==
        "Error: The value 'abc' is invalid for '--cpus <cpus>'\n"
        "Help:  --cpus <cpus>  Number of CPUs to allocate to the container\n"
        "Usage: container run [<options>] <image> [<arguments> ...]\n"
        "  See 'container run --help' for more information.\n");
  auto no_command = service.Run({"exec", "web"});
  CHECK(no_command.exit_code == 64);
  CHECK(Lines(no_command.err).at(0) ==
        "Error: Missing expected argument '<arguments> ...'");
  CHECK(Contains(no_command.err,
                 "Usage: container exec [<options>] <container-id> "
                 "<arguments> ...\n"));
  auto format = service.Run({"list", "--format", "xml"});
  CHECK(format.exit_code == 64);
  CHECK(Lines(format.err).at(0) ==
        "Error: The value 'xml' is invalid for '--format <format>'. Please "
        "provide one of 'json', 'table', 'yaml' or 'toml'.");
  // validate() errors are no usage errors: exit 1, the message alone.
  auto stop = service.Run({"stop"});
  CHECK(stop.exit_code == 1);
  CHECK(stop.err == "Error: no containers specified and --all not supplied\n");
  auto conflict = service.Run({"delete", "--all", "x"});
  CHECK(conflict.exit_code == 1);
  CHECK(conflict.err ==
        "Error: explicitly supplied container ID(s) conflict with the --all "
        "flag\n");
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): with the service down, commands fail "
    "with the XPC texts, and system start, status and stop",
    "[apple-fake]") {
  Service service;
  const std::string xpc =
      "interrupted: \"XPC connection error: Connection invalid\"";
  auto status = service.Run({"system", "status"});
  CHECK(status.exit_code == 1);
  CHECK(status.out ==
        "apiserver is not running and not registered with launchd\n");
  auto status_json = service.Run({"system", "status", "--format", "json"});
  CHECK(status_json.exit_code == 1);
  CHECK(status_json.out ==
        "{\"apiServerAppName\":\"\",\"apiServerBuild\":\"\","
        "\"apiServerCommit\":\"\",\"apiServerVersion\":\"\",\"appRoot\":\"\","
        "\"installRoot\":\"\",\"status\":\"unregistered\"}\n");
  // Wrapped by the client call (list, inspect, exec's get)...
  auto list = service.Run({"list", "--format", "json"});
  CHECK(list.exit_code == 1);
  CHECK(list.out == "");
  CHECK(list.err ==
        "Error: internalError: \"failed to list containers\" "
        "(cause: \"" +
            xpc + "\")\n" + kEnsure + "\n");
  // ...aggregated, one line a container (stop, kill, delete)...
  auto stop = service.Run({"stop", "a", "b"});
  CHECK(stop.exit_code == 1);
  CHECK(stop.err ==
        "Error: internalError: \"failed to stop container\" (cause: \"" + xpc +
            "\")\ninternalError: \"failed to stop container\" (cause: \"" +
            xpc + "\")\n" + kEnsure + "\n");
  // ...or the ping first (run, image commands).
  for (std::vector<std::string> args :
       {std::vector<std::string>{"run", "--network", "none", "busybox"},
        std::vector<std::string>{"image", "list"}}) {
    auto refused = service.Run(args);
    CHECK(refused.exit_code == 1);
    CHECK(refused.err == "Error: " + xpc + "\n" + kEnsure + "\n");
  }

  auto start = service.Run({"system", "start"});
  CHECK(start.exit_code == 0);
  CHECK(start.err ==
        "Launching container-apiserver...\nTesting access to "
        "container-apiserver...\nVerifying machine API server is running...\n");
  CHECK(service.Run({"system", "start"}).exit_code == 0);  // idempotent
  auto running = service.Run({"system", "status"});
  CHECK(running.exit_code == 0);
  auto rows = Lines(running.out);
  REQUIRE(rows.size() == 9);
  CHECK(rows[0] == "FIELD              VALUE");
  CHECK(rows[1] == "status             running");
  CHECK(rows[2] == "appRoot            " + service.root() + "/");
  CHECK(rows[5] ==
        "apiserver.version  container-apiserver version 1.2.2 (build: "
        "release, commit: af405ff)");
  auto running_json = service.Run({"system", "status", "--format", "json"});
  CHECK(running_json.exit_code == 0);
  json parsed = json::parse(running_json.out);
  CHECK(parsed["status"] == "running");
  CHECK(parsed["apiServerAppName"] == "container-apiserver");
  CHECK(Contains(running_json.out, "\"appRoot\":\"\\/tmp\\/"));
  auto empty = service.Run({"list"});
  CHECK(empty.exit_code == 0);
  CHECK(empty.out == "ID  IMAGE  OS  ARCH  STATE  IP  CPUS  MEMORY  STARTED\n");

  auto stopped = service.Run({"system", "stop"});
  CHECK(stopped.exit_code == 0);
  CHECK(Contains(stopped.out,
                 "info com.apple.container.cli : [ContainerCommands] "
                 "checking if APIServer is alive\n"));
  CHECK(service.Run({"system", "status"}).exit_code == 1);
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): image load names the image from the "
    "index's annotation, and list and inspect print ImageResource",
    "[apple-fake]") {
  Service service;
  service.Start();
  // From stdin, printed as the annotation names it.
  service.LoadBusybox("busybox:latest");
  // From a file; a Docker Hub name in full is found by its short form.
  Layout hub;
  hub.reference = "docker.io/library/alpine:3";
  hub.annotation = "io.containerd.image.name";
  const std::string file = service.root() + "/hub.tar";
  { std::ofstream(file, std::ios::binary) << OciLayout(hub); }
  auto loaded = service.Run({"image", "load", "-i", file});
  INFO(loaded.err);
  CHECK(loaded.exit_code == 0);
  CHECK(loaded.out == "docker.io/library/alpine:3\n");

  auto listed = service.Run({"image", "list", "--format", "json"});
  REQUIRE(listed.exit_code == 0);
  REQUIRE(Lines(listed.out).size() == 1);  // one line, compact
  json images = json::parse(listed.out);
  REQUIRE(images.size() == 2);
  CHECK(images[0]["configuration"]["name"] == "busybox:latest");  // sorted
  const json& busybox = images[0];
  CHECK(busybox["configuration"]["name"] == "busybox:latest");
  const std::string digest = busybox["configuration"]["descriptor"]["digest"];
  CHECK(busybox["id"] == digest.substr(7));
  CHECK(busybox["configuration"]["descriptor"]["mediaType"] ==
        "application/vnd.oci.image.index.v1+json");
  REQUIRE(busybox["variants"].size() == 1);
  CHECK(busybox["variants"][0]["platform"]["architecture"] == HostArch());
  CHECK(busybox["variants"][0]["config"]["config"]["Cmd"] == json{"sh"});
  CHECK(Contains(listed.out, R"({"configuration":{"creationDate":")"));
  CHECK(Contains(listed.out, "application\\/vnd.oci.image.index.v1+json"));

  // The table and -q show Docker Hub names without the registry.
  auto table = service.Run({"image", "list"});
  REQUIRE(Lines(table.out).size() == 3);
  CHECK(Lines(table.out)[0] == "NAME     TAG     DIGEST");
  CHECK(Lines(table.out)[1] == "busybox  latest  " + digest.substr(7, 12));
  CHECK(Lines(table.out)[2] ==
        "alpine   3       " + images[1]["id"].get<std::string>().substr(0, 12));
  auto quiet = service.Run({"image", "list", "-q"});
  CHECK(quiet.out == "busybox:latest\nalpine:3\n");

  auto inspected = service.Run({"image", "inspect", "alpine:3"});
  INFO(inspected.err);
  REQUIRE(inspected.exit_code == 0);
  CHECK(inspected.out.rfind("[\n  {\n    \"configuration\" : {\n", 0) == 0);
  CHECK(json::parse(inspected.out)[0]["configuration"]["name"] ==
        "docker.io/library/alpine:3");
  auto missing = service.Run({"image", "inspect", "nope", "alpine:3", "gone"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err == "Error: image not found: gone, nope\n");

  auto deleted = service.Run({"image", "delete", "alpine:3"});
  CHECK(deleted.exit_code == 0);
  CHECK(deleted.out == "docker.io/library/alpine:3\n");
  auto again = service.Run({"image", "delete", "alpine:3"});
  CHECK(again.exit_code == 1);
  CHECK(again.err ==
        "Error: failed to delete one or more images: "
        "[\"alpine:3\"]\n");
  CHECK(service.Run({"image", "delete", "-f", "alpine:3"}).exit_code == 0);
  auto no_file = service.Run({"image", "load", "-i", service.root() + "/no"});
  CHECK(no_file.exit_code == 1);
  CHECK(no_file.err ==
        "file does not exist: [\"path\": " + service.root() + "/no]\n");
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): image load refuses a digest mismatch, a "
    "layout without oci-layout and a member with ..",
    "[apple-fake]") {
  Service service;
  service.Start();
  Layout corrupt;
  corrupt.corrupt_layer = true;
  auto mismatch = service.Run({"image", "load"}, OciLayout(corrupt));
  CHECK(mismatch.exit_code == 1);
  const std::string layer = "sha256:" + Sha256(ReadWhole(kBusybox));
  CHECK(mismatch.err.rfind(
            "Error: digest mismatch expected " + layer + ", got sha256:", 0) ==
        0);

  Layout no_layout;
  no_layout.oci_layout = false;
  auto missing = service.Run({"image", "load"}, OciLayout(no_layout));
  CHECK(missing.exit_code == 1);
  CHECK(
      std::regex_match(Trim(missing.err), std::regex("Error: /.*/oci-layout")));

  Layout dotdot;
  dotdot.extra_member = "../evil";
  auto rejected = service.Run({"image", "load"}, OciLayout(dotdot));
  CHECK(rejected.exit_code == 1);
  CHECK(rejected.err ==
        "Error: cannot load tar image with rejected paths: [\"../evil\"]\n");
  CHECK_FALSE(Exists(service.root() + "/evil"));
  // -f loads it anyway, with a warning; nothing lands outside.
  auto forced = service.Run({"image", "load", "-f"}, OciLayout(dotdot));
  CHECK(forced.exit_code == 0);
  CHECK(forced.out == "busybox:latest\n");
  CHECK(forced.err ==
        "archive contains invalid members: [\"paths\": [\"../evil\"]]\n");
  CHECK_FALSE(Exists(service.root() + "/tmp/evil"));
  CHECK_FALSE(Exists(service.root() + "/evil"));
  auto listed = service.Run({"image", "list", "-q"});
  CHECK(listed.out == "busybox:latest\n");
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): run checks its flags in the real order "
    "with the real texts and leaves nothing when it refuses",
    "[apple-fake]") {
  Service service;
  service.Start();
  service.LoadBusybox();
  struct Refusal {
    std::vector<std::string> flags;
    std::string image;
    std::string err;
  };
  const std::string sockets = service.root() + "/sockets";
  ::mkdir(sockets.c_str(), 0755);
  const std::string taken = sockets + "/taken.sock";
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, taken.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address),
                   sizeof(address)) == 0);
    ::close(fd);
  }
  const std::vector<Refusal> refusals = {
      {{"--name", "a"},
       "busybox:latest",
       "Error: container ID a is not a valid container ID"},
      {{"--name", "_under"},
       "busybox:latest",
       "Error: container ID _under is not a valid container ID"},
      {{"--name", std::string(64, 'x')},
       "busybox:latest",
       "Error: container ID " + std::string(64, 'x') +
           " is not a valid container ID"},
      {{},
       "alpine:3",
       "Error: fake container: image alpine:3 is not loaded and this fake "
       "cannot pull"},
      {{"--memory", "100M"},
       "busybox:latest",
       "Error: minimum memory amount allowed is 200 MiB (got 104857600 "
       "bytes)"},
      // A bare number is bytes, truncated to whole MiB.
      {{"--memory", "209715199"},
       "busybox:latest",
       "Error: minimum memory amount allowed is 200 MiB (got 208666624 "
       "bytes)"},
      {{"--memory", "12q"}, "busybox:latest", "Error: invalid symbol: q"},
      {{"--memory", "lots"}, "busybox:latest", "Error: invalid size"},
      {{"--publish-socket", "a:b:c"},
       "busybox:latest",
       "Error: invalid publish-socket format a:b:c. Expected: "
       "host_path:container_path"},
      {{"--publish-socket", sockets + "/x.sock:relative"},
       "busybox:latest",
       "Error: containerPath must be absolute: relative"},
      {{"--publish-socket", taken + ":/run/a.sock"},
       "busybox:latest",
       "Error: host socket " + taken + " already exists and may be in use"},
      {{"--volume", service.root() + "/absent:/data"},
       "busybox:latest",
       "Error: path '" + service.root() + "/absent' does not exist"},
      {{"--network", "foo"},
       "busybox:latest",
       "Error: no other networks may be created along with network none"},
      {{"--cap-add", "NOT_A_CAP"},
       "busybox:latest",
       "Error: invalid CapabilityName 'NOT_A_CAP'"},
      {{"--label", "a=b=c"},
       "busybox:latest",
       "Error: invalid label format a=b=c"},
  };
  for (const auto& refusal : refusals) {
    std::vector<std::string> args = {"run", "-d", "--network", "none"};
    args.insert(args.end(), refusal.flags.begin(), refusal.flags.end());
    args.push_back(refusal.image);
    args.push_back("true");
    auto refused = service.Run(args);
    INFO(refusal.err);
    CHECK(refused.exit_code == 1);
    CHECK(refused.out == "");
    CHECK(Trim(refused.err) == refusal.err);
  }
  // Only `--network none` is modelled.
  auto networked = service.Run({"run", "-d", "busybox:latest", "true"});
  CHECK(networked.exit_code == 1);
  CHECK(networked.err.rfind("Error: fake container: only --network none", 0) ==
        0);
  auto listed = service.Run({"list", "--all", "--quiet"});
  CHECK(listed.out == "");
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): run -d prints the id, list prints one "
    "line of sorted JSON, inspect Swift's pretty JSON, and a name is taken "
    "once",
    "[apple-fake]") {
  Service service;
  service.Start();
  service.LoadBusybox();
  auto named = service.Run({"run", "-d", "--name", "web.1", "--network", "none",
                            "-l", "app=x", "busybox:latest", "sleep", "1000"});
  INFO(named.err);
  REQUIRE(named.exit_code == 0);
  CHECK(named.out == "web.1\n");
  const std::string uuid = service.RunDetached({});
  CHECK(std::regex_match(
      uuid, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                       "[0-9a-f]{12}")));
  auto taken = service.Run({"run", "-d", "--name", "web.1", "--network", "none",
                            "busybox:latest", "true"});
  CHECK(taken.exit_code == 1);
  CHECK(taken.err == "Error: container with id web.1 already exists\n");

  auto listed = service.Run({"list", "--format", "json"});
  REQUIRE(listed.exit_code == 0);
  REQUIRE(Lines(listed.out).size() == 1);
  CHECK(listed.out.rfind(
            R"([{"configuration":{"capAdd":[],"capDrop":[],"creationDate":")",
            0) == 0);
  json containers = json::parse(listed.out);
  REQUIRE(containers.size() == 2);
  const json& web =
      containers[0]["id"] == "web.1" ? containers[0] : containers[1];
  CHECK(web["status"]["state"] == "running");
  CHECK(web["status"]["networks"] == json::array());
  CHECK(web["status"].contains("startedDate"));
  const json& config = web["configuration"];
  CHECK(config["id"] == "web.1");
  CHECK(config["image"]["reference"] == "busybox:latest");
  CHECK(config["labels"] == json{{"app", "x"}});
  CHECK(config["resources"] ==
        json{{"cpuOverhead", 1}, {"cpus", 4}, {"memoryInBytes", 1ull << 30}});
  CHECK(config["initProcess"]["executable"] == "sleep");
  CHECK(config["initProcess"]["arguments"] == json{"1000"});
  CHECK(config["initProcess"]["user"] ==
        json{{"id", {{"gid", 0}, {"uid", 0}}}});
  CHECK(config["networks"] == json::array());
  CHECK(config["runtimeHandler"] == "container-runtime-linux");
  CHECK_FALSE(config.contains("maskedPaths"));
  std::regex iso("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ");
  CHECK(std::regex_match(config["creationDate"].get<std::string>(), iso));

  auto inspected = service.Run({"inspect", "web.1"});
  REQUIRE(inspected.exit_code == 0);
  CHECK(inspected.out.rfind("[\n  {\n    \"configuration\" : {\n      "
                            "\"capAdd\" : [\n\n      ],\n",
                            0) == 0);
  CHECK(Contains(inspected.out, "\"workingDirectory\" : \"\\/\"\n"));
  CHECK(Contains(inspected.out, "\n    \"id\" : \"web.1\",\n"));
  CHECK(json::parse(inspected.out).size() == 1);
  auto missing = service.Run({"inspect", "web.1", "zz", "aa"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err == "Error: container not found: aa, zz\n");

  auto table = service.Run({"list"});
  CHECK(Lines(table.out).at(0).rfind("ID ", 0) == 0);
  CHECK(Contains(table.out, "  running  "));
  CHECK(Contains(table.out, "  1024 MB  "));
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): inside the container: the hostname, "
    "only lo and up, the memory limit, capabilities, paths, binds, a "
    "read-only root and exec's exit code",
    "[apple-fake]") {
  Service service;
  service.Start();
  service.LoadBusybox();
  const std::string shared = service.root() + "/shared";
  ::mkdir(shared.c_str(), 0755);
  { std::ofstream(shared + "/hello") << "from the host\n"; }
  const std::string id = service.RunDetached(
      {"--name", "box.example.com", "--memory", "300M", "--cpus", "2",
       "--cap-drop", "ALL", "--read-only", "--tmpfs", "/run", "--volume",
       shared + ":/shared:ro", "--read-only-path", "/etc", "--masked-path",
       "/root", "-e", "FROM_FLAG=yes"});
  REQUIRE(id == "box.example.com");
  auto exec = [&](const std::string& script) {
    return service.Run({"exec", id, "sh", "-c", script});
  };
  auto hostname = exec("hostname");
  CHECK(hostname.out == "box\n");
  auto net = exec("ls /sys/class/net; cat /sys/class/net/lo/flags");
  CHECK(net.out == "lo\n0x9\n");  // IFF_UP | IFF_LOOPBACK
  auto memory = exec(
      "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
  CHECK(Trim(memory.out) == std::to_string(300ull << 20));
  auto caps = exec("grep -E '^Cap(Eff|Bnd)' /proc/1/status");
  CHECK(caps.out == "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n");
  auto root = exec("touch /file 2>&1; echo w > /run/f && cat /run/f");
  CHECK(Contains(root.out, "Read-only file system"));
  CHECK(Contains(root.out, "\nw\n"));
  auto bind = exec("cat /shared/hello; touch /shared/x 2>&1");
  CHECK(Contains(bind.out, "from the host\n"));
  CHECK(Contains(bind.out, "Read-only file system"));
  auto paths = exec(
      "grep -E ' /(proc/sys|etc|root) ' /proc/self/mountinfo | "
      "awk '{print $5, $6}'");
  CHECK(Contains(paths.out, "/proc/sys ro,"));
  CHECK(Contains(paths.out, "/etc ro,"));
  CHECK(Contains(paths.out, "/root ro,"));  // masked: an empty read-only tmpfs
  auto env = exec("echo $IMAGE_ENV $FROM_FLAG $EXTRA");
  CHECK(env.out == "from-image yes\n");
  auto extra = service.Run({"exec", "-e", "EXTRA=1", "-w", "/run", id, "sh",
                            "-c", "echo $EXTRA; pwd"});
  CHECK(extra.out == "1\n/run\n");
  auto code = exec("echo out; echo err >&2; exit 42");
  CHECK(code.exit_code == 42);
  CHECK(code.out == "out\n");
  CHECK(code.err == "err\n");
  auto stdin_exec = service.Run({"exec", "-i", id, "cat"}, "piped\n");
  CHECK(stdin_exec.out == "piped\n");
  auto detached = service.Run({"exec", "-d", id, "sleep", "1"});
  CHECK(detached.exit_code == 0);
  CHECK(detached.out == "box.example.com\n");

  auto stats = service.Run({"stats", "--no-stream", "--format", "json", id});
  INFO(stats.err);
  REQUIRE(stats.exit_code == 0);
  json sample = json::parse(stats.out);
  REQUIRE(sample.size() == 1);
  std::vector<std::string> keys;
  for (auto it = sample[0].begin(); it != sample[0].end(); ++it) {
    keys.push_back(it.key());
  }
  CHECK(keys == std::vector<std::string>{
                    "blockReadBytes", "blockWriteBytes", "cpuUsageUsec", "id",
                    "memoryLimitBytes", "memoryUsageBytes", "networkRxBytes",
                    "networkTxBytes", "numProcesses"});
  CHECK(sample[0]["memoryLimitBytes"] == 300ull << 20);
  CHECK(sample[0]["numProcesses"].get<uint64_t>() >= 1);
  CHECK(sample[0]["networkRxBytes"] == 0);
  auto no_such = service.Run({"stats", "--no-stream", "nope"});
  CHECK(no_such.exit_code == 1);
  CHECK(no_such.err == "Error: no such container: nope\n");

  auto config =
      json::parse(service.Run({"inspect", id}).out)[0]["configuration"];
  CHECK(config["capDrop"] == json{"ALL"});
  CHECK(config["readOnly"] == true);
  CHECK(config["readonlyPaths"].back() == "/etc");
  CHECK(config["readonlyPaths"].size() == 6);  // the defaults and /etc
  CHECK(config["maskedPaths"].back() == "/root");
  CHECK(config["mounts"][0] == json{{"destination", "/run"},
                                    {"options", json::array()},
                                    {"source", "tmpfs"},
                                    {"type", {{"tmpfs", json::object()}}}});
  CHECK(config["mounts"][1]["type"] == json{{"virtiofs", json::object()}});
  CHECK(config["mounts"][1]["options"] == json{"ro"});

  // NONE clears the defaults: /proc/sys is no read-only mount then; the
  // default capabilities are containerization's OCI set.
  const std::string open = service.RunDetached(
      {"--read-only-path", "NONE", "--masked-path", "NONE"});
  auto open_paths =
      service.Run({"exec", open, "sh", "-c",
                   "grep -c ' /proc/sys ' /proc/self/mountinfo; grep CapEff "
                   "/proc/self/status"});
  CHECK(open_paths.out == "0\nCapEff:\t00000000a80425fb\n");
  auto open_config =
      json::parse(service.Run({"inspect", open}).out)[0]["configuration"];
  CHECK(open_config["readonlyPaths"] == json::array());
  CHECK(open_config["maskedPaths"] == json::array());
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): --publish-socket carries a host "
    "connection to the agent inside, and the host socket goes when the "
    "container stops",
    "[apple-fake]") {
  Service service;
  service.Start();
  service.LoadBusybox();
  const std::string host = service.root() + "/published/nested/agent.sock";
  const std::string id = service.RunDetached(
      {"--name", "agent", "--tmpfs", "/run", "--volume",
       kAgentDir + ":/agent:ro", "--publish-socket", host + ":/run/a.sock",
       "--entrypoint", "/agent/corral-agent"},
      {"--listen", "/run/a.sock"});
  // Listening before run -d returned, the parent directories made.
  struct stat st {};
  REQUIRE(::lstat(host.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  // The agent speaks first: a hello frame, length-prefixed.
  std::string received;
  for (int attempt = 0; attempt < 50 && received.size() < 4; ++attempt) {
    int fd = ConnectUnix(host);
    REQUIRE(fd >= 0);
    timeval timeout{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char buffer[4096];
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) received.assign(buffer, static_cast<size_t>(n));
    ::close(fd);
    if (received.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  INFO(service.Run({"logs", id}).out);
  REQUIRE(received.size() >= 4);
  const uint32_t length = (static_cast<uint8_t>(received[0]) << 24) |
                          (static_cast<uint8_t>(received[1]) << 16) |
                          (static_cast<uint8_t>(received[2]) << 8) |
                          static_cast<uint8_t>(received[3]);
  CHECK(length > 0);
  CHECK(length < 4096);
  auto config =
      json::parse(service.Run({"inspect", id}).out)[0]["configuration"];
  CHECK(config["publishedSockets"] ==
        json{{{"containerPath", "/run/a.sock"}, {"hostPath", host}}});
  // A second container cannot publish at the same host path.
  auto second =
      service.Run({"run", "-d", "--network", "none", "--publish-socket",
                   host + ":/run/b.sock", "busybox:latest", "true"});
  CHECK(second.exit_code == 1);
  CHECK(second.err ==
        "Error: host socket " + host + " already exists and may be in use\n");

  auto stopped = service.Run({"stop", "-t", "1", id});
  CHECK(stopped.exit_code == 0);
  CHECK(stopped.out == "agent\n");
  CHECK_FALSE(Exists(host));

  // Nothing listening inside: the host connection is closed.
  const std::string lonely = service.root() + "/lonely.sock";
  const std::string alone =
      service.RunDetached({"--publish-socket", lonely + ":/nobody/here.sock"});
  int fd = ConnectUnix(lonely);
  REQUIRE(fd >= 0);
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char byte = 0;
  CHECK(::recv(fd, &byte, 1, 0) == 0);
  ::close(fd);
  CHECK(service.Run({"kill", alone}).exit_code == 0);
  CHECK_FALSE(Exists(lonely));
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): stop, kill, delete and logs print what "
    "the real ones print, and a foreground run passes its exit code",
    "[apple-fake]") {
  Service service;
  service.Start();
  service.LoadBusybox();
  const std::string id =
      service.RunDetached({"--name", "worker"},
                          {"sh", "-c", "echo one; echo; echo two; sleep 1000"});
  auto missing = service.Run({"stop", "nope"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err ==
        "Error: internalError: \"failed to stop container\" (cause: "
        "\"notFound: \"container with ID nope not found\"\")\n");
  auto busy = service.Run({"delete", id});
  CHECK(busy.exit_code == 1);
  CHECK(busy.err ==
        "Error: internalError: \"failed to delete container\" (cause: "
        "\"invalidState: \"container worker is running and can not be "
        "deleted\"\")\n");
  for (int i = 0; i < 50 && !Contains(service.Run({"logs", id}).out, "two");
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto logs = service.Run({"logs", id});
  CHECK(logs.out == "one\n\ntwo\n");
  auto tail = service.Run({"logs", "-n", "1", id});
  CHECK(tail.out == "two\n");
  auto no_logs = service.Run({"logs", "nope"});
  CHECK(no_logs.exit_code == 1);
  CHECK(no_logs.err ==
        "Error: failed to get logs for container nope (cause: "
        "\"internalError: \"failed to open container logs: notFound: "
        "\"container with ID nope not found\"\"\")\n");

  // sh as the pid namespace's init ignores SIGTERM: SIGKILL after -t.
  auto stopped = service.Run({"stop", "-t", "1", id});
  CHECK(stopped.exit_code == 0);
  CHECK(stopped.out == "worker\n");
  CHECK(json::parse(service.Run({"inspect", id}).out)[0]["status"]["state"] ==
        "stopped");
  CHECK(service.Run({"stop", id}).out == "worker\n");  // idempotent
  CHECK(service.Run({"list", "-q"}).out == "");
  CHECK(service.Run({"list", "-a", "-q"}).out == "worker\n");
  auto kill_stopped = service.Run({"kill", id});
  CHECK(kill_stopped.exit_code == 1);
  CHECK(kill_stopped.err ==
        "Error: internalError: \"failed to kill container\" (cause: "
        "\"invalidState: \"no runtime client exists: container is "
        "stopped\"\")\n");
  auto exec_stopped = service.Run({"exec", id, "true"});
  CHECK(exec_stopped.exit_code == 1);
  CHECK(exec_stopped.err == "Error: container worker is not running\n");
  auto exec_missing = service.Run({"exec", "nope", "true"});
  CHECK(exec_missing.err == "Error: get failed: container nope not found\n");
  auto deleted = service.Run({"delete", id});
  CHECK(deleted.exit_code == 0);
  CHECK(deleted.out == "worker\n");

  const std::string killed = service.RunDetached({"--name", "victim"});
  auto kill = service.Run({"kill", killed});
  CHECK(kill.exit_code == 0);
  CHECK(kill.out == "victim\n");
  CHECK(
      json::parse(service.Run({"inspect", killed}).out)[0]["status"]["state"] ==
      "stopped");
  const std::string forced = service.RunDetached({"--name", "forced"});
  auto force = service.Run({"delete", "-f", forced, killed});
  CHECK(force.exit_code == 0);
  auto removed = Lines(force.out);  // in no set order, as the real one's
  std::sort(removed.begin(), removed.end());
  CHECK(removed == std::vector<std::string>{"forced", "victim"});
  auto gone = service.Run({"delete", forced});
  CHECK(gone.err ==
        "Error: internalError: \"failed to delete container\" (cause: "
        "\"notFound: \"container with ID forced not found\"\")\n");

  // A foreground run: the process's output and exit code; --rm removes it.
  auto foreground =
      service.Run({"run", "--rm", "--network", "none", "busybox:latest", "sh",
                   "-c", "echo out; echo err >&2; exit 3"});
  CHECK(foreground.exit_code == 3);
  CHECK(foreground.out == "out\n");
  CHECK(foreground.err == "err\n");
  auto piped = service.Run(
      {"run", "-i", "--rm", "--network", "none", "busybox:latest", "cat"},
      "through stdin\n");
  CHECK(piped.out == "through stdin\n");
  CHECK(service.Run({"list", "-a", "-q"}).out == "");
  service.Finish();
}

TEST_CASE(
    "fake container (a test fake): an image a container uses cannot be "
    "deleted (the fake's own rule), then can",
    "[apple-fake]") {
  Service service;
  service.Start();
  service.LoadBusybox();
  const std::string id = service.RunDetached({"--name", "user"});
  REQUIRE(service.Run({"stop", "-s", "KILL", id}).exit_code == 0);
  auto refused = service.Run({"image", "delete", "busybox:latest"});
  CHECK(refused.exit_code == 1);
  CHECK(refused.err ==
        "Error: fake container: image busybox:latest is used "
        "by container user\n");
  REQUIRE(service.Run({"delete", id}).exit_code == 0);
  auto deleted = service.Run({"image", "delete", "busybox:latest"});
  CHECK(deleted.exit_code == 0);
  CHECK(deleted.out == "busybox:latest\n");
  auto images = service.Run({"image", "list", "--format", "json"});
  CHECK(images.out == "[]\n");
  auto leftover = Sh("ls '" + service.root() + "/images'");
  CHECK(Trim(leftover.out) == "refs.json");
  service.Finish();
}

}  // namespace corral::testing
