// The firecracker runtime, and the FAKES it is tested against here
// (tests/fakes/firecracker: Firecracker cannot run on these hosts). First
// the fakes alone, so that a fake that drifts from Firecracker's interface
// is caught rather than trusted: its command line, its API's replies and
// error texts, its vsock handshake, the jailer's checks, jail and cgroups,
// each pinned to what Firecracker 1.17's source says. Then the runtime
// through the real daemon and CLI on the fakes: the jail and limits of a
// sandbox, pause and resume across a daemon restart, memory snapshots
// forked into new sandboxes, discovery on PATH, and what it refuses.
// Needs the kernel tests/run.sh builds into <build>/vm-kernel.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/vm_host.h"

namespace corral::testing {
namespace {

const std::string kFakes = std::string(CORRAL_BINARY_DIR) + "/tests/fakes/bin";
const std::string kFakeFirecracker = kFakes + "/firecracker";
const std::string kFakeJailer = kFakes + "/jailer";
const std::string kKernelDir = std::string(CORRAL_BINARY_DIR) + "/vm-kernel";

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Connects to the socket at `path`, named through its directory's fd (a
// jail's path is longer than sun_path holds).
int ConnectUnix(const std::string& path) {
  const std::string dir = path.substr(0, path.rfind('/'));
  int dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return -1;
  const std::string name =
      "/proc/self/fd/" + std::to_string(dir_fd) + path.substr(path.rfind('/'));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, name.c_str(), sizeof(address.sun_path) - 1);
  const int connected =
      ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::close(dir_fd);
  if (connected != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A 200 reply of Firecracker's with `body`.
std::string Ok200(const std::string& body) {
  return "HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: "
         "keep-alive\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Everything `fd` says within `ms`, until it closes or goes quiet.
std::string ReadFor(int fd, int ms) {
  std::string out;
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    const int left =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                             end - std::chrono::steady_clock::now())
                             .count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) break;
    char buffer[4096];
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

// A fake Firecracker started by the test on an API socket of its own.
class FakeFirecracker {
 public:
  FakeFirecracker() {
    char tmpl[] = "/tmp/corral-fake-fc-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    api_ = dir_ + "/api.sock";
    pid_ = ::fork();
    if (pid_ == 0) {
      int out = ::open((dir_ + "/out").c_str(), O_WRONLY | O_CREAT, 0600);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execl(kFakeFirecracker.c_str(), "firecracker", "--api-sock",
              api_.c_str(), "--id", "fake-test", nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200 && ::access(api_.c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~FakeFirecracker() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    Sh("rm -rf '" + dir_ + "'");
  }
  // One request on a new connection: the raw reply.
  std::string Request(const std::string& method, const std::string& path,
                      const std::string& body = "",
                      const std::string& extra_headers = "") const {
    int fd = ConnectUnix(api_);
    if (fd < 0) return "no connection";
    std::string request =
        method + " " + path + " HTTP/1.1\r\nHost: x\r\n" + extra_headers;
    if (!body.empty()) {
      request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    request += "\r\n" + body;
    (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    // One reply: its head, then Content-Length bytes (none for a 204).
    std::string reply;
    for (int i = 0; i < 500; ++i) {
      reply += ReadFor(fd, 20);
      const size_t head = reply.find("\r\n\r\n");
      if (head == std::string::npos) continue;
      const size_t length_at = reply.find("Content-Length: ");
      size_t length = 0;
      if (length_at != std::string::npos && length_at < head) {
        length = std::stoul(reply.substr(length_at + 16));
      }
      if (reply.size() >= head + 4 + length) break;
    }
    ::close(fd);
    return reply;
  }
  // The fault_message of a 400 reply, or the reply when it is not one.
  std::string Fault(const std::string& method, const std::string& path,
                    const std::string& body = "") const {
    const std::string reply = Request(method, path, body);
    const std::string marker = "{\"fault_message\":\"";
    const size_t at = reply.find(marker);
    if (reply.rfind("HTTP/1.1 400 \r\n", 0) != 0 || at == std::string::npos) {
      return reply;
    }
    std::string message = reply.substr(at + marker.size());
    return message.substr(0, message.size() - 2);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_, api_;
  pid_t pid_ = 0;
};

constexpr char kNoContent[] =
    "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: "
    "keep-alive\r\n\r\n";

}  // namespace

TEST_CASE(
    "fake Firecracker (a test fake): --version and argument errors as "
    "Firecracker's own",
    "[firecracker-fake]") {
  auto version = RunProcess({kFakeFirecracker, "--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out.rfind("Firecracker v1.17.0-dev", 0) == 0);
  // The fake says it is one wherever it describes itself.
  CHECK(Contains(version.out, "corral test fake"));
  auto unknown = RunProcess({kFakeFirecracker, "--foo"});
  CHECK(unknown.exit_code == 153);
  CHECK(Contains(unknown.err,
                 "Error: ParseArguments(UnexpectedArgument(\"foo\"))"));
  auto missing = RunProcess({kFakeFirecracker, "--api-sock"});
  CHECK(missing.exit_code == 153);
  CHECK(Contains(missing.err, "MissingValue(\"api-sock\")"));
  auto equals = RunProcess({kFakeFirecracker, "--api-sock=/tmp/x"});
  CHECK(equals.exit_code == 153);
  auto no_api = RunProcess({kFakeFirecracker, "--no-api"});
  CHECK(no_api.exit_code == 153);
  CHECK(Contains(no_api.err, "MissingArgument(\"config-file\")"));
}

TEST_CASE(
    "fake Firecracker (a test fake): replies, routes, body checks and error "
    "texts are Firecracker's",
    "[firecracker-fake]") {
  FakeFirecracker fc;
  // serde's field order, Firecracker's state words.
  CHECK(fc.Request("GET", "/") ==
        Ok200("{\"id\":\"fake-test\",\"state\":\"Not started\","
              "\"vmm_version\":\"1.17.0-dev\",\"app_name\":\"Firecracker\"}"));
  CHECK(fc.Request("GET", "/machine-config") ==
        Ok200("{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":false,"
              "\"track_dirty_pages\":false,\"huge_pages\":\"None\"}"));
  CHECK(fc.Request("GET", "/version") ==
        Ok200("{\"firecracker_version\":\"1.17.0-dev\"}"));
  // A 204 carries neither type nor length.
  CHECK(fc.Request("PUT", "/machine-config",
                   "{\"vcpu_count\": 2, \"mem_size_mib\": 256}") == kNoContent);
  CHECK(Contains(fc.Request("GET", "/machine-config"), "\"vcpu_count\":2"));

  // serde's words, positions included (Firecracker's own tests pin this one).
  CHECK(fc.Fault("PUT", "/machine-config", "{\"mem_size_mib\": 128}") ==
        "An error occurred when deserializing the json body of a request: "
        "missing field `vcpu_count` at line 1 column 21.");
  CHECK(fc.Fault("PUT", "/machine-config",
                 "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"foo\": 1}") ==
        "An error occurred when deserializing the json body of a request: "
        "unknown field `foo`, expected one of `vcpu_count`, `mem_size_mib`, "
        "`smt`, `cpu_template`, `track_dirty_pages`, `huge_pages` at line 1 "
        "column 44.");
  CHECK(fc.Fault("PATCH", "/vm", "{\"state\":\"Running\"}") ==
        "An error occurred when deserializing the json body of a request: "
        "unknown variant `Running`, expected `Paused` or `Resumed` at line 1 "
        "column 19.");
  CHECK(fc.Fault("PUT", "/machine-config",
                 "{\"vcpu_count\": 0, \"mem_size_mib\": 128}") ==
        "Machine config error: The number of vCPUs must be greater than 0, "
        "less than 32 and must be 1 or an even number if SMT is enabled.");
  CHECK(fc.Fault("PUT", "/machine-config",
                 "{\"vcpu_count\": 32, \"mem_size_mib\": 128}")
            .empty() == false);
  CHECK(fc.Request("PUT", "/machine-config",
                   "{\"vcpu_count\": 32, \"mem_size_mib\": 128}") ==
        kNoContent);
  // Ids: checked before the body; hyphens are not alphanumeric.
  CHECK(fc.Fault("PUT", "/drives/a-b", "{}") ==
        "API Resource IDs can only contain alphanumeric characters and "
        "underscores.");
  CHECK(fc.Fault("PUT", "/drives/a",
                 "{\"drive_id\": \"b\", \"is_root_device\": false}") ==
        "The id from the path does not match the id from the body!");
  // Network interfaces name both ids (Firecracker's request/net.rs).
  CHECK(fc.Fault("PUT", "/network-interfaces/a",
                 "{\"iface_id\": \"b\", \"host_dev_name\": \"tap0\"}") ==
        "The id from the path [a] does not match the id from the body [b]!");
  CHECK(fc.Fault("PUT", "/drives/a",
                 "{\"drive_id\": \"a\", \"is_root_device\": false, "
                 "\"path_on_host\": \"/nonexistent\"}") ==
        "Drive config error: Unable to create the virtio block device: Virtio "
        "backend error: Error manipulating the backing file: No such file or "
        "directory (os error 2) /nonexistent");
  // Routes: 400 for all, naming the first segment.
  CHECK(fc.Fault("GET", "/foo/bar") ==
        "Invalid request method and/or path: GET foo.");
  CHECK(fc.Fault("PUT", "/actions") == "Empty PUT request.");
  CHECK(fc.Fault("PATCH", "/vm") == "Empty PATCH request.");
  CHECK(fc.Fault("GET", "/", "{}") == "GET request cannot have a body.");
  CHECK(fc.Fault("PUT", "/snapshot", "{}") ==
        "Missing snapshot operation type.");
  // States: what needs a running VM, and what a VM without a kernel cannot.
  CHECK(fc.Fault("PATCH", "/vm", "{\"state\":\"Paused\"}") ==
        "The requested operation is not supported before starting the "
        "microVM.");
  CHECK(fc.Fault("PUT", "/snapshot/create",
                 "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/b\"}") ==
        "The requested operation is not supported before starting the "
        "microVM.");
  CHECK(fc.Fault("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}") ==
        "Start microvm error: Cannot start microvm without kernel "
        "configuration.");
  CHECK(fc.Fault("PUT", "/boot-source",
                 "{\"kernel_image_path\": \"/nonexistent\"}") ==
        "Boot source error: The kernel file cannot be opened: No such file or "
        "directory (os error 2)");
  // A second metrics PUT is refused; a snapshot load after boot
  // configuration too.
  const std::string metrics = "{\"metrics_path\": \"" + fc.dir() + "/m\"}";
  CHECK(fc.Request("PUT", "/metrics", metrics) == kNoContent);
  CHECK(fc.Fault("PUT", "/metrics", metrics) ==
        "Metrics error: Cannot initialize the metrics system due to bad user "
        "input: Reinitialization of metrics not allowed.");
  CHECK(fc.Fault("PUT", "/snapshot/load",
                 "{\"snapshot_path\":\"/a\",\"mem_backend\":{\"backend_path\":"
                 "\"/b\",\"backend_type\":\"File\"}}") ==
        "Load snapshot error: Loading a microVM snapshot not allowed after "
        "configuring boot-specific resources.");
  CHECK(
      Contains(fc.Fault("PUT", "/snapshot/load", "{\"snapshot_path\":\"/a\"}"),
               "missing field: either `mem_backend` or `mem_file_path` is "
               "required."));
  // The vsock's socket is bound at the PUT.
  const std::string uds = fc.dir() + "/v.sock";
  CHECK(fc.Request("PUT", "/vsock",
                   "{\"guest_cid\": 3, \"uds_path\": \"" + uds + "\"}") ==
        kNoContent);
  struct stat st {};
  CHECK((::stat(uds.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)));
  CHECK(Contains(fc.Request("PUT", "/vsock",
                            "{\"vsock_id\": \"v\", \"guest_cid\": 3, "
                            "\"uds_path\": \"" +
                                uds + "\"}"),
                 "Deprecation: true\r\n"));
  // Bodies past 51200 bytes: the HTTP server's own error.
  const std::string big(51201, ' ');
  CHECK(Contains(fc.Request("PUT", "/logger", big),
                 "{ \"error\": \"Request payload with size 51201 is larger "
                 "than the limit of 51200 allowed by server.\nAll previous "
                 "unanswered requests will be dropped.\" }"));
  CHECK(Contains(fc.Request("POST", "/actions", "{}"),
                 "Invalid HTTP Method: Unsupported HTTP method."));
}

TEST_CASE(
    "fake jailer (a test fake): its checks and messages, the jail it builds "
    "and the cgroups it writes are the jailer's",
    "[firecracker-fake]") {
  auto version = RunProcess({kFakeJailer, "--version"});
  CHECK(version.out.rfind("Jailer v1.17.0-dev", 0) == 0);
  auto missing = RunProcess({kFakeJailer, "--id", "x"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err ==
        "Failed to parse arguments: Argument 'exec-file' required, but not "
        "found.\n");
  auto bad_id = RunProcess({kFakeJailer, "--id", "ab!", "--exec-file",
                            "/bin/true", "--uid", "1", "--gid", "1"});
  CHECK(bad_id.exit_code == 1);
  CHECK(bad_id.err == "Invalid instance ID: Invalid char (!) at position 2\n");
  auto long_id =
      RunProcess({kFakeJailer, "--id", std::string(65, 'a'), "--exec-file",
                  "/bin/true", "--uid", "1", "--gid", "1"});
  CHECK(long_id.err ==
        "Invalid instance ID: Invalid len (65);  the length must be between 1 "
        "and 64\n");
  auto no_exec = RunProcess({kFakeJailer, "--id", "a", "--exec-file",
                             "/no/such", "--uid", "1", "--gid", "1"});
  CHECK(no_exec.err ==
        "Failed to canonicalize path /no/such: No such file or directory (os "
        "error 2)\n");
  auto bad_cgroup =
      RunProcess({kFakeJailer, "--id", "a", "--exec-file", "/bin/true", "--uid",
                  "1", "--gid", "1", "--cgroup", "memory"});
  CHECK(bad_cgroup.err == "Invalid format for cgroups: memory\n");

  if (::geteuid() != 0) {
    WARN("not root: the jail itself is not checked");
    return;
  }
  // A real jail, with /bin/true as the exec file: it is copied in, run as
  // the uid and gid in the jail, with the jailer's arguments.
  char tmpl[] = "/tmp/corral-fake-jail-XXXXXX";
  const std::string base = ::mkdtemp(tmpl);
  const std::string id = "fake-jail-test-" + std::to_string(::getpid());
  const std::string parent = "corral-fake-jailer-test";
  const bool v2 =
      ReadWholeFile("/proc/mounts").find(" /sys/fs/cgroup cgroup2 ") !=
      std::string::npos;
  std::vector<std::string> argv = {kFakeJailer,
                                   "--id",
                                   id,
                                   "--exec-file",
                                   "/bin/true",
                                   "--uid",
                                   "4242",
                                   "--gid",
                                   "4343",
                                   "--chroot-base-dir",
                                   base,
                                   "--cgroup-version",
                                   v2 ? "2" : "1",
                                   "--parent-cgroup",
                                   parent,
                                   "--cgroup",
                                   v2 ? "pids.max=17" : "pids.max=17",
                                   "--",
                                   "--api-sock",
                                   "/run/x"};
  auto jailed = RunProcess(argv);
  INFO(jailed.err);
  CHECK(jailed.exit_code == 0);
  const std::string root = base + "/true/" + id + "/root";
  struct stat st {};
  REQUIRE(::stat((root + "/true").c_str(), &st) == 0);
  CHECK(st.st_uid == 4242u);
  CHECK(st.st_gid == 4343u);
  for (const char* node : {"/dev/kvm", "/dev/net/tun", "/dev/urandom"}) {
    INFO(node);
    REQUIRE(::stat((root + node).c_str(), &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_uid == 4242u);
  }
  REQUIRE(::stat((root + "/run").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  CHECK(st.st_uid == 4242u);
  // The pid file: no newline.
  const std::string pid = ReadWholeFile(root + "/true.pid");
  CHECK(!pid.empty());
  CHECK(pid.find('\n') == std::string::npos);
  // The cgroup, its value, and the jailer (then /bin/true) in it.
  const std::string cgroup = v2 ? "/sys/fs/cgroup/" + parent + "/" + id
                                : "/sys/fs/cgroup/pids/" + parent + "/" + id;
  CHECK(ReadWholeFile(cgroup + "/pids.max") == "17\n");
  CHECK(::rmdir(cgroup.c_str()) == 0);
  ::rmdir((v2 ? "/sys/fs/cgroup/" + parent : "/sys/fs/cgroup/pids/" + parent)
              .c_str());
  Sh("rm -rf '" + base + "'");
}

namespace {

std::string FirecrackerConfig() {
  return "[runtimes.firecracker]\nfirecracker = \"" + kFakeFirecracker +
         "\"\njailer = \"" + kFakeJailer + "\"\nkernel_dir = \"" + kKernelDir +
         "\"\n";
}

std::string Create(const Daemon& daemon, std::vector<std::string> flags = {}) {
  std::vector<std::string> args = {"create", "--runtime", "firecracker",
                                   "--image", "busybox"};
  args.insert(args.end(), flags.begin(), flags.end());
  auto created = daemon.Cli(args);
  INFO(created.err << daemon.log());
  REQUIRE(created.exit_code == 0);
  return Trim(created.out);
}

std::string JailRoot(const Daemon& daemon, const std::string& id) {
  return daemon.state_dir() + "/runtime/firecracker/jail/firecracker/" + id +
         "/root";
}

}  // namespace

TEST_CASE(
    "firecracker runtime on the fake Firecracker: the jailer holds the VM "
    "(the sandbox's uid, its chroot, its cgroups with the limits), vsock "
    "answers CONNECT for the agent's port alone, and removal leaves nothing",
    "[firecracker-fake]") {
  Daemon daemon(FirecrackerConfig());
  ImportBusybox(daemon);
  const std::string id = Create(daemon, {"--memory", "128", "--pids", "64"});
  auto inside = Sh(daemon, id, "uname -r; hostname; cat /proc/cmdline");
  INFO(inside.err);
  REQUIRE(inside.exit_code == 0);
  // Its own kernel, told where the agent listens and which disk is which.
  CHECK(Contains(inside.out, "cloud-amd64"));
  CHECK(Contains(inside.out, "corral.vsock=1024"));
  CHECK(Contains(inside.out, "corral.root_dev=vda"));
  // Firecracker's own additions, before the init's arguments.
  CHECK(Contains(inside.out, " pci=off "));
  CHECK(Contains(inside.out, "-- --vm-init"));

  // Firecracker (the jailer's exec) runs as the sandbox's uid, chrooted.
  const std::vector<pid_t> host = SandboxHostPids(id);
  const pid_t firecracker = ProcessNamed(host, "firecracker");
  REQUIRE(firecracker > 0);
  const std::string status =
      ReadWholeFile("/proc/" + std::to_string(firecracker) + "/status");
  CHECK(!Contains(status, "Uid:\t0\t"));
  // Its root is the jail (pivot_root): the pid file is at its top, the
  // daemon's state directory nowhere.
  struct stat st {};
  const std::string its_root = "/proc/" + std::to_string(firecracker) + "/root";
  CHECK(::stat((its_root + "/firecracker.pid").c_str(), &st) == 0);
  CHECK(::stat((its_root + daemon.state_dir()).c_str(), &st) != 0);
  // No file it writes may grow past the workspace disk (1 GiB by default,
  // more than this sandbox's memory).
  bool fsize = false;
  for (const std::string& l : Lines(
           ReadWholeFile("/proc/" + std::to_string(firecracker) + "/limits"))) {
    if (l.rfind("Max file size", 0) == 0) {
      fsize = Contains(l, " 1073741824 ");
    }
  }
  CHECK(fsize);
  // The jail: Firecracker's copy, the pid file, the API socket.
  CHECK(::stat((JailRoot(daemon, id) + "/firecracker").c_str(), &st) == 0);
  CHECK(Trim(ReadWholeFile(JailRoot(daemon, id) + "/firecracker.pid")) ==
        std::to_string(firecracker));
  CHECK(::stat((JailRoot(daemon, id) + "/run/firecracker.socket").c_str(),
               &st) == 0);
  // The cgroups the jailer wrote: memory (guest RAM + overhead) and pids.
  const std::string cgroups =
      ReadWholeFile("/proc/" + std::to_string(firecracker) + "/cgroup");
  CHECK(Contains(cgroups, "/corral/firecracker/"));
  bool limited = false;
  for (const std::string& line : Lines(cgroups)) {
    if (line.find(":pids:") != std::string::npos || line.rfind("0::", 0) == 0) {
      const std::string path = line.substr(line.rfind(':') + 1);
      const std::string dir = line.rfind("0::", 0) == 0
                                  ? "/sys/fs/cgroup" + path
                                  : "/sys/fs/cgroup/pids" + path;
      limited = limited || Trim(ReadWholeFile(dir + "/pids.max")) == "256";
    }
  }
  CHECK(limited);

  // The vsock socket, as Firecracker's host side: the agent's port answers
  // "OK <host port>" (in any case of "connect"); other ports and other
  // words are closed unanswered. (The newest connection takes the agent
  // from the daemon, so this comes last.)
  const std::string uds = JailRoot(daemon, id) + "/v.sock";
  for (const std::string& line :
       {std::string("CONNECT 9999\n"), std::string("HELLO 1024\n"),
        std::string("CONNECT x\n")}) {
    int fd = ConnectUnix(uds);
    REQUIRE(fd >= 0);
    (void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    INFO(line);
    CHECK(ReadFor(fd, 2000) == "");
    ::close(fd);
  }
  int fd = ConnectUnix(uds);
  REQUIRE(fd >= 0);
  (void)!::send(fd, "connect 1024\n", 13, MSG_NOSIGNAL);
  // The guest's agent accepts it first (slow under software emulation).
  const std::string ok = ReadFor(fd, 20000);
  CHECK(ok.rfind("OK 10737418", 0) == 0);
  ::close(fd);

  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
  CHECK(Leftovers(daemon, id).empty());
  CHECK(::stat(JailRoot(daemon, id).c_str(), &st) != 0);
}

TEST_CASE(
    "firecracker runtime on the fake Firecracker: pause stops the VM (no CPU, "
    "no exec), stays paused across a daemon restart, and resume goes on",
    "[firecracker-fake]") {
  Daemon daemon(FirecrackerConfig());
  ImportBusybox(daemon);
  const std::string id = Create(daemon);
  REQUIRE(Sh(daemon, id,
             "(i=0; while true; do i=$((i+1)); echo $i > /tmp/count; "
             "sleep 0.05; done) >/dev/null 2>&1 &")
              .exit_code == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const pid_t qemu = ProcessNamed(SandboxHostPids(id), "qemu-system");
  REQUIRE(qemu > 0);
  auto paused = daemon.Cli({"pause", id});
  INFO(paused.err);
  REQUIRE(paused.exit_code == 0);
  CHECK(daemon.Cli({"exec", id, "--", "true"}).exit_code == 125);
  const long before = CpuTicks(qemu);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  CHECK(CpuTicks(qemu) - before < 20);
  daemon.Kill9();
  daemon.Start();
  CHECK(Contains(daemon.Cli({"inspect", id}).out, "paused"));
  REQUIRE(daemon.Cli({"resume", id}).exit_code == 0);
  auto first = Sh(daemon, id, "cat /tmp/count");
  INFO(first.err << daemon.log());
  REQUIRE(first.exit_code == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto later = Sh(daemon, id, "cat /tmp/count");
  CHECK(std::stol(Trim(later.out)) > std::stol(Trim(first.out)));
}

TEST_CASE(
    "firecracker runtime on the fake Firecracker: a memory snapshot starts a "
    "new sandbox where the old one was, the source runs on, and nothing is "
    "left once both are removed",
    "[firecracker-fake]") {
  Daemon daemon(FirecrackerConfig());
  ImportBusybox(daemon);
  const std::string id = Create(daemon, {"--memory", "96"});
  REQUIRE(Sh(daemon, id,
             "sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/pid; "
             "echo only-in-memory > /tmp/note; echo kept > /workspace/file")
              .exit_code == 0);
  auto saved = daemon.Cli({"snapshot", "create", "--memory", id, "warm"});
  INFO(saved.err << daemon.log());
  REQUIRE(saved.exit_code == 0);
  REQUIRE(Sh(daemon, id, "echo later > /tmp/note").exit_code == 0);
  // Saved outside the jail, root's alone.
  const std::string saved_dir =
      daemon.state_dir() + "/runtime/firecracker/" + id + "/memory/warm";
  struct stat st {};
  REQUIRE(::stat((saved_dir + "/vm.mem").c_str(), &st) == 0);
  CHECK(st.st_uid == 0u);

  auto forked = daemon.Cli({"fork", id + "@warm"});
  INFO(forked.err << daemon.log());
  REQUIRE(forked.exit_code == 0);
  const std::string child = Trim(forked.out);
  auto inside = Sh(daemon, child,
                   "cat /tmp/note /workspace/file; kill -0 $(cat /tmp/pid) && "
                   "echo sleeper-alive");
  INFO(inside.err);
  CHECK(inside.out == "only-in-memory\nkept\nsleeper-alive\n");
  REQUIRE(Sh(daemon, child, "echo child > /tmp/note").exit_code == 0);
  CHECK(Sh(daemon, id, "cat /tmp/note").out == "later\n");
  auto resized = daemon.Cli({"fork", "--memory", "256", id + "@warm"});
  CHECK(resized.exit_code == 125);

  REQUIRE(daemon.Cli({"snapshot", "rm", id, "warm"}).exit_code == 0);
  CHECK(::stat(saved_dir.c_str(), &st) != 0);
  REQUIRE(daemon.Cli({"rm", id, child}).exit_code == 0);
  CHECK(Leftovers(daemon, id).empty());
  CHECK(Leftovers(daemon, child).empty());
}

TEST_CASE(
    "firecracker runtime on the fake Firecracker: links the sandbox's uid "
    "plants in its jail are never followed (the API socket, the workspace "
    "disk a snapshot copies)",
    "[firecracker-fake]") {
  Daemon daemon(FirecrackerConfig());
  ImportBusybox(daemon);
  const std::string id = Create(daemon);
  const std::string root = JailRoot(daemon, id);
  // A decoy socket of the host's: the daemon must never connect to it.
  const std::string decoy_dir = daemon.dir() + "/decoy";
  ::mkdir(decoy_dir.c_str(), 0700);
  const std::string decoy = decoy_dir + "/d.sock";
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, decoy.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address),
                 sizeof(address)) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  const std::string api = root + "/run/firecracker.socket";
  REQUIRE(::rename(api.c_str(), (root + "/run/real.sock").c_str()) == 0);
  REQUIRE(::symlink(decoy.c_str(), api.c_str()) == 0);
  auto paused = daemon.Cli({"pause", id});
  CHECK(paused.exit_code != 0);
  CHECK(Contains(paused.err, "not a socket"));
  pollfd p{listener, POLLIN, 0};
  CHECK(::poll(&p, 1, 100) == 0);  // nobody came
  ::close(listener);
  REQUIRE(::unlink(api.c_str()) == 0);
  REQUIRE(::rename((root + "/run/real.sock").c_str(), api.c_str()) == 0);

  // The workspace disk's name in the jail pointing at a host file: a
  // memory snapshot copies the daemon's own disk, not what the name says.
  const std::string secret = daemon.dir() + "/secret";
  {
    std::ofstream out(secret);
    out << "host secret";
  }
  const std::string disk = root + "/workspace.ext4";
  REQUIRE(::rename(disk.c_str(), (root + "/moved.ext4").c_str()) == 0);
  REQUIRE(::symlink(secret.c_str(), disk.c_str()) == 0);
  REQUIRE(Sh(daemon, id, "echo kept > /workspace/file").exit_code == 0);
  auto saved = daemon.Cli({"snapshot", "create", "--memory", id, "warm"});
  INFO(saved.err);
  REQUIRE(saved.exit_code == 0);
  const std::string saved_disk = daemon.state_dir() + "/runtime/firecracker/" +
                                 id + "/memory/warm/workspace.ext4";
  CHECK(ReadWholeFile(saved_disk) != "host secret");
  struct stat st {};
  REQUIRE(::stat(saved_disk.c_str(), &st) == 0);
  CHECK(st.st_size > 1 << 20);  // the ext4 disk, not the 11-byte file
  auto forked = daemon.Cli({"fork", id + "@warm"});
  INFO(forked.err);
  REQUIRE(forked.exit_code == 0);
  CHECK(Sh(daemon, Trim(forked.out), "cat /workspace/file").out == "kept\n");
  CHECK(ReadWholeFile(secret) == "host secret");
}

TEST_CASE(
    "firecracker runtime: corral runtimes finds the (fake) Firecracker and "
    "jailer on the daemon's PATH, says why not without them, and refuses the "
    "host image and network with the reason",
    "[firecracker-fake]") {
  const char* old_path = std::getenv("PATH");
  const std::string saved = old_path == nullptr ? "" : old_path;
  {
    ::setenv("PATH", (kFakes + ":" + saved).c_str(), 1);
    // A group's runtime chosen by policy, as NanoClaw chooses per group
    // (here the caller, root, is the group).
    Daemon daemon("[runtimes.firecracker]\nkernel_dir = \"" + kKernelDir +
                  "\"\n[[policy]]\nusers = [\"root\"]\nruntimes = "
                  "[\"firecracker\", \"linux\"]\ndefault_runtime = "
                  "\"firecracker\"\n");
    ::setenv("PATH", saved.c_str(), 1);
    auto runtimes = daemon.Cli({"runtimes"});
    INFO(runtimes.out << runtimes.err);
    std::string line;
    for (const std::string& l : Lines(runtimes.out)) {
      if (l.rfind("firecracker ", 0) == 0) line = l;
    }
    CHECK(Contains(line, " yes "));
    CHECK(Contains(line, "corral test fake"));
    CHECK(Contains(line, "separate-kernel"));
    CHECK(Contains(line, " * "));
    CHECK(Contains(runtimes.out,
                   "Your default runtime: firecracker (policy[0] "
                   "default_runtime)\n"));
    CHECK(Contains(runtimes.out,
                   "Not allowed by your policy: oci, docker, "
                   "qemu, tart, apple\n"));
    ImportBusybox(daemon);
    // A request that names no runtime gets the policy's.
    auto created = daemon.Cli({"create", "--image", "busybox"});
    INFO(created.err);
    REQUIRE(created.exit_code == 0);
    CHECK(Contains(daemon.Cli({"--json", "inspect", Trim(created.out)}).out,
                   "\"runtime\":\"firecracker\""));
    CHECK(daemon.Cli({"rm", Trim(created.out)}).exit_code == 0);
    auto host = daemon.Cli({"create", "--runtime", "firecracker"});
    CHECK(host.exit_code != 0);
    CHECK(Contains(host.err, "boots images only"));
    auto network = daemon.Cli({"create", "--runtime", "firecracker", "--image",
                               "busybox", "--network", "egress"});
    CHECK(network.exit_code != 0);
  }
  {
    ::setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
    Daemon daemon("[runtimes.firecracker]\nkernel_dir = \"" + kKernelDir +
                  "\"\n");
    ::setenv("PATH", saved.c_str(), 1);
    auto runtimes = daemon.Cli({"runtimes"});
    std::string line;
    for (const std::string& l : Lines(runtimes.out)) {
      if (l.rfind("firecracker ", 0) == 0) line = l;
    }
    INFO(runtimes.out);
    CHECK(Contains(line, " no "));
    CHECK(Contains(line, "firecracker is not installed (looked in "));
  }
}

}  // namespace corral::testing
