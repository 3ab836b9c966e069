// The FAKE `tart` CLI of tests/fakes/tart alone: the interface facts of
// Tart 2.32 it reproduces (texts, exit codes, JSON as Swift's JSONEncoder
// writes it, the VM directory layout, the run lock) and what its runc
// "VM" is made of, so that a fake drifting from the real interface fails
// here before it misleads the tart runtime's tests. Every test has its own
// TART_HOME and leaves no runc container, mount, cgroup or process.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/fakes/common/fake_test_support.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

using nlohmann::json;

const std::string kBuild = CORRAL_BINARY_DIR;
const std::string kFake = kBuild + "/tests/fakes/bin/tart";
const std::string kBusybox = kBuild + "/images/busybox.tar";

using fakes::Contains;
using fakes::ReadWhole;

// True, with a warning, when the run tests' image is missing.
bool SkipWithoutBusybox() {
  if (::access(kBusybox.c_str(), R_OK) == 0) return false;
  WARN("skipped: no " + kBusybox);
  return true;
}

// Refused as what the fake does not model: exit 1, naming the fake.
void CheckRefused(const CommandResult& result) {
  CHECK(result.exit_code == 1);
  CHECK(Contains(result.err, "tart fake (tests/fakes/tart)"));
}

// Failed with `code` and exactly `err`.
void CheckFails(const CommandResult& result, int code, const std::string& err) {
  CHECK(result.exit_code == code);
  CHECK(result.err == err);
}

// A TART_HOME of the test's own, and the fake run against it.
class Home : public fakes::FakeState {
 public:
  Home() : FakeState("fake-tart-", "TART_HOME", kFake), home_(dir()) {}
  ~Home() {
    for (pid_t pid : runs_) ::kill(pid, SIGKILL);
    for (int i = 0; i < 100 && !Leftovers().empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Sh("rm -rf '" + home_ + "'");
  }
  const std::string& path() const { return home_; }

  void Ok(const std::vector<std::string>& args) const {
    auto result = Run(args);
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
  }

  // `tart create --linux NAME` with busybox as its disk's content.
  void CreateBusybox(const std::string& name) {
    Ok({"create", "--linux", name});
    Ok({"fake-rootfs", name, kBusybox});
  }

  // Starts `tart run NAME args...` in the background (stdout and stderr
  // to files in the home) under a shell that records its pid and exit
  // status (the harness reaps this process's children); waits until an
  // exec works.
  pid_t StartRun(const std::string& name,
                 const std::vector<std::string>& args = {}) {
    ::unlink((home_ + "/run.pid").c_str());
    ::unlink((home_ + "/run.status").c_str());
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::setenv("TART_HOME", home_.c_str(), 1);
      int null_fd = ::open("/dev/null", O_RDWR);
      ::dup2(null_fd, 0);
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
      std::vector<std::string> argv = {"/bin/sh",
                                       "-c",
                                       "cd \"$0\" && \"$@\" >>run.out "
                                       "2>>run.err & echo $! > \"$0/run.pid\"; "
                                       "wait $!; echo $? > \"$0/run.status\"",
                                       home_,
                                       kFake,
                                       "run",
                                       name,
                                       "--no-graphics"};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> raw;
      for (auto& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
      raw.push_back(nullptr);
      ::execv(raw[0], raw.data());
      ::_exit(127);
    }
    pid_t run = 0;
    for (int i = 0; i < 100 && run == 0; ++i) {
      run = std::atoi(ReadWhole(home_ + "/run.pid").c_str());
      if (run == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(run > 0);
    runs_.push_back(run);
    for (int i = 0; i < 200; ++i) {
      if (Run({"exec", name, "true"}).exit_code == 0) return run;
      if (::access((home_ + "/run.status").c_str(), F_OK) == 0) {
        runs_.pop_back();
        FAIL("tart run ended: " << ReadWhole(home_ + "/run.err"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("the VM did not come up: " << ReadWhole(home_ + "/run.err"));
    return run;
  }

  // Waits for the `tart run` started here; its exit status as a shell
  // gives it (128+N for signal N).
  int WaitRun(pid_t pid) {
    runs_.erase(std::remove(runs_.begin(), runs_.end(), pid), runs_.end());
    for (int i = 0; i < 600; ++i) {
      std::string status = ReadWhole(home_ + "/run.status");
      if (!status.empty() && status.back() == '\n') {
        return std::atoi(status.c_str());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("tart run did not end");
    return -1;
  }

  // `tart stop NAME`; the `tart run` started here ends with 0 and leaves
  // nothing behind.
  void StopRun(pid_t run, const std::string& name = "vm") {
    CHECK(Run({"stop", name}).exit_code == 0);
    CHECK(WaitRun(run) == 0);
    CHECK(WaitNoLeftovers() == "");
  }

  // What of this home is still on the host: runc containers, mounts,
  // cgroups, processes.
  std::string Leftovers() const {
    std::string found = RuncAndMountLeftovers(home_ + "/corral-fake/runc");
    auto bundles = Sh("ls '" + home_ + "/corral-fake/vms' 2>/dev/null");
    if (!Trim(bundles.out).empty()) found += "bundles:\n" + bundles.out;
    for (const auto& id : Split(Trim(bundles.out))) {
      auto cgroups = Sh("find /sys/fs/cgroup -maxdepth 2 -name 'corral-" + id +
                        "' 2>/dev/null");
      if (!Trim(cgroups.out).empty()) found += "cgroups:\n" + cgroups.out;
    }
    auto cgroups =
        Sh("find /sys/fs/cgroup -maxdepth 2 -name 'corral-tart-fake-*' "
           "2>/dev/null");
    (void)cgroups;  // other homes' VMs may be running concurrently
    auto processes = Sh("grep -lsF 'TART_HOME=" + home_ +
                        "' /proc/[0-9]*/environ 2>/dev/null");
    if (!Trim(processes.out).empty()) {
      found += "processes:\n" + processes.out;
    }
    return found;
  }

  std::string WaitNoLeftovers() const {
    std::string left;
    for (int attempt = 0; attempt < 100; ++attempt) {
      left = Leftovers();
      if (left.empty()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return left;
  }

  // The cgroups of this home's VMs (by container id), found while running.
  std::string Cgroups() const {
    return Sh("find /sys/fs/cgroup -maxdepth 2 -name 'corral-tart-fake-*' "
              "2>/dev/null")
        .out;
  }

 private:
  static std::vector<std::string> Split(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string word; in >> word;) out.push_back(word);
    return out;
  }

  const std::string home_;
  std::vector<pid_t> runs_;
};

}  // namespace

TEST_CASE(
    "fake tart (a test fake): --version prints Tart's version, then says it "
    "is the fake",
    "[tart-fake]") {
  auto version = RunProcess({kFake, "--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.out == "2.32.0\ncorral test fake (tests/fakes/tart)\n");
}

TEST_CASE(
    "fake tart (a test fake): create --linux writes Tart's VM directory and "
    "config.json as VMConfig encodes it",
    "[tart-fake]") {
  Home home;
  home.Ok({"create", "--linux", "vm"});
  const std::string dir = home.path() + "/vms/vm";
  struct stat st {};
  REQUIRE(::stat((dir + "/disk.img").c_str(), &st) == 0);
  CHECK(st.st_size == 50LL * 1000 * 1000 * 1000);
  CHECK(st.st_blocks < 1024);  // sparse
  CHECK(::access((dir + "/nvram.bin").c_str(), F_OK) == 0);
  const std::string config = ReadWhole(dir + "/config.json");
  std::regex shape(
      "\\{\n"
      "  \"version\" : 1,\n"
      "  \"os\" : \"linux\",\n"
      "  \"arch\" : \"(amd64|arm64)\",\n"
      "  \"cpuCountMin\" : 4,\n"
      "  \"cpuCount\" : 4,\n"
      "  \"memorySizeMin\" : 4294967296,\n"
      "  \"memorySize\" : 4294967296,\n"
      "  \"macAddress\" : \"[0-9a-f]{2}(:[0-9a-f]{2}){5}\",\n"
      "  \"display\" : \\{\n"
      "    \"width\" : 1024,\n"
      "    \"height\" : 768\n"
      "  \\},\n"
      "  \"diskFormat\" : \"raw\"\n"
      "\\}");
  CHECK(std::regex_match(config, shape));
  // Locally administered, unicast.
  const int first = std::stoi(
      json::parse(config)["macAddress"].get<std::string>().substr(0, 2),
      nullptr, 16);
  CHECK((first & 2) == 2);
  CHECK((first & 1) == 0);
  home.Ok({"create", "--linux", "small", "--disk-size", "2"});
  REQUIRE(::stat((home.path() + "/vms/small/disk.img").c_str(), &st) == 0);
  CHECK(st.st_size == 2LL * 1000 * 1000 * 1000);

  auto neither = home.Run({"create", "x"});
  CheckFails(neither, 64,
             "Error: Please specify either a --from-ipsw or --linux option!\n"
             "Usage: tart create <name> [--from-ipsw <path>] [--linux] "
             "[--disk-size <disk-size>] [--disk-format <disk-format>]\n"
             "  See 'tart create --help' for more information.\n");
}

TEST_CASE(
    "fake tart (a test fake): a missing VM is exit 2 with Tart's text for "
    "get, set, run, exec, stop, suspend, delete, clone and ip",
    "[tart-fake]") {
  Home home;
  const std::string text = "the specified VM \"nope\" does not exist\n";
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"get", "nope"},
                                             {"set", "nope", "--cpu", "2"},
                                             {"run", "nope"},
                                             {"exec", "nope", "true"},
                                             {"stop", "nope"},
                                             {"suspend", "nope"},
                                             {"delete", "nope"},
                                             {"clone", "nope", "copy"},
                                             {"ip", "nope"}}) {
    auto result = home.Run(args);
    INFO(args[0]);
    CHECK(result.exit_code == 2);
    CHECK(result.err == text);
    CHECK(result.out == "");
  }
}

TEST_CASE(
    "fake tart (a test fake): a stopped VM: exec and stop say it is not "
    "running (exit 2), suspend doubles the text as Tart does",
    "[tart-fake]") {
  Home home;
  home.Ok({"create", "--linux", "vm"});
  auto exec = home.Run({"exec", "vm", "true"});
  CheckFails(exec, 2, "VM \"vm\" is not running\n");
  auto stop = home.Run({"stop", "vm"});
  CheckFails(stop, 2, "VM \"vm\" is not running\n");
  auto suspend = home.Run({"suspend", "vm"});
  CheckFails(suspend, 2, "VM \"VM \"vm\" is not running\" is not running\n");
  auto no_command = home.Run({"exec", "vm"});
  CHECK(no_command.exit_code == 64);
  CHECK(Lines(no_command.err).at(0) ==
        "Error: Missing expected argument '<command> ...'");
  auto ip = home.Run({"ip", "vm"});
  CheckRefused(ip);
}

TEST_CASE(
    "fake tart (a test fake): get and list print Tart's JSON shapes and "
    "text tables",
    "[tart-fake]") {
  Home home;
  auto empty = home.Run({"list", "--format", "json"});
  CHECK(empty.exit_code == 0);
  CHECK(empty.out == "[\n\n]\n");
  home.Ok({"create", "--linux", "b-vm"});
  home.Ok({"create", "--linux", "a-vm"});
  auto get = home.Run({"get", "a-vm", "--format", "json"});
  CHECK(get.exit_code == 0);
  CHECK(get.out ==
        "{\n"
        "  \"OS\" : \"linux\",\n"
        "  \"CPU\" : 4,\n"
        "  \"Memory\" : 4096,\n"
        "  \"Disk\" : 50,\n"
        "  \"DiskFormat\" : \"raw\",\n"
        "  \"Size\" : \"0.000\",\n"
        "  \"Display\" : \"1024x768\",\n"
        "  \"Running\" : false,\n"
        "  \"State\" : \"stopped\"\n"
        "}\n");
  auto list = home.Run({"list", "--format", "json"});
  CHECK(list.exit_code == 0);
  std::regex entry(
      "  \\{\n"
      "    \"Source\" : \"local\",\n"
      "    \"Name\" : \"(a-vm|b-vm)\",\n"
      "    \"Disk\" : 50,\n"
      "    \"Size\" : 0,\n"
      "    \"Accessed\" : \"\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\",\n"
      "    \"Running\" : false,\n"
      "    \"State\" : \"stopped\"\n"
      "  \\}");
  std::regex whole("\\[\n(.|\n)*\n\\]\n");
  CHECK(std::regex_match(list.out, whole));
  json parsed = json::parse(list.out);
  REQUIRE(parsed.size() == 2);
  CHECK(parsed[0]["Name"] == "a-vm");  // sorted by name
  CHECK(parsed[1]["Name"] == "b-vm");
  auto begin = std::sregex_iterator(list.out.begin(), list.out.end(), entry);
  CHECK(std::distance(begin, std::sregex_iterator()) == 2);
  auto quiet = home.Run({"list", "-q"});
  CHECK(quiet.out == "a-vm\nb-vm\n");
  auto oci = home.Run({"list", "--source", "oci", "--format", "json"});
  CHECK(oci.out == "[\n\n]\n");
  auto bad_source = home.Run({"list", "--source", "x"});
  CHECK(bad_source.exit_code == 64);
  CHECK(Lines(bad_source.err).at(0) == "Error: 'x' is not a valid <source>");
  auto bad_format = home.Run({"get", "a-vm", "--format", "xml"});
  CHECK(bad_format.exit_code == 64);
  CHECK(Lines(bad_format.err).at(0) ==
        "Error: The value 'xml' is invalid for '--format <format>'. Please "
        "provide one of 'text' and 'json'.");
  auto text = home.Run({"get", "a-vm"});
  CHECK(Lines(text.out).at(0).rfind("OS", 0) == 0);
  CHECK(!Contains(text.out, "Running"));
}

TEST_CASE(
    "fake tart (a test fake): set changes CPU, memory and disk with Tart's "
    "checks and texts",
    "[tart-fake]") {
  Home home;
  home.Ok({"create", "--linux", "vm"});
  home.Ok({"set", "vm", "--cpu", "2", "--memory", "1024", "--disk-size", "60"});
  json config = json::parse(ReadWhole(home.path() + "/vms/vm/config.json"));
  CHECK(config["cpuCount"] == 2);
  CHECK(config["cpuCountMin"] == 4);
  CHECK(config["memorySize"] == 1024ULL * 1024 * 1024);
  auto get = json::parse(home.Run({"get", "vm", "--format", "json"}).out);
  CHECK(get["CPU"] == 2);
  CHECK(get["Memory"] == 1024);
  CHECK(get["Disk"] == 60);
  auto cpu = home.Run({"set", "vm", "--cpu", "0"});
  CheckFails(
      cpu, 1,
      "Error: LessThanMinimalResourcesError: VM should have 1 CPU cores at "
      "minimum (requested 0)\n");
  auto memory = home.Run({"set", "vm", "--memory", "64"});
  CheckFails(memory, 1,
             "Error: LessThanMinimalResourcesError: VM should have 134217728 "
             "bytes of memory at minimum (requested 67108864)\n");
  auto shrink = home.Run({"set", "vm", "--disk-size", "10"});
  CheckFails(
      shrink, 1,
      "new disk size of 10 GB should be larger than the current disk size "
      "of 60 GB\n");
  auto bad = home.Run({"set", "vm", "--cpu", "abc"});
  CHECK(bad.exit_code == 64);
  CHECK(Lines(bad.err).at(0) ==
        "Error: The value 'abc' is invalid for '--cpu <cpu>'");
}

TEST_CASE(
    "fake tart (a test fake): clone copies the VM with its rootfs and a new "
    "MAC address, replaces an existing name, refuses OCI sources",
    "[tart-fake]") {
  Home home;
  home.Ok({"create", "--linux", "base"});
  const std::string base = home.path() + "/vms/base";
  Sh("mkdir -p '" + base + "/rootfs/etc' && echo hello > '" + base +
     "/rootfs/etc/greeting' && chown 1234:5678 '" + base +
     "/rootfs/etc/greeting' && chmod 640 '" + base + "/rootfs/etc/greeting'");
  home.Ok({"clone", "base", "copy"});
  const std::string copy = home.path() + "/vms/copy";
  CHECK(ReadWhole(copy + "/rootfs/etc/greeting") == "hello\n");
  struct stat st {};
  REQUIRE(::stat((copy + "/rootfs/etc/greeting").c_str(), &st) == 0);
  CHECK(st.st_uid == 1234);
  CHECK(st.st_gid == 5678);
  CHECK((st.st_mode & 0777) == 0640);
  json a = json::parse(ReadWhole(base + "/config.json"));
  json b = json::parse(ReadWhole(copy + "/config.json"));
  CHECK(a["macAddress"] != b["macAddress"]);
  CHECK(a["cpuCount"] == b["cpuCount"]);
  // An existing name is replaced (FileManager.replaceItemAt).
  home.Ok({"set", "base", "--cpu", "3"});
  home.Ok({"clone", "base", "copy"});
  CHECK(json::parse(ReadWhole(copy + "/config.json"))["cpuCount"] == 3);
  auto remote = home.Run({"clone", "ghcr.io/cirruslabs/ubuntu:latest", "x"});
  CheckRefused(remote);
  auto slash = home.Run({"clone", "base", "a/b"});
  CHECK(slash.exit_code == 64);
  CHECK(Lines(slash.err).at(0) == "Error: <new-name> should be a local name");
  home.Ok({"delete", "copy", "base"});
  CHECK(home.Run({"list", "-q"}).out == "");
}

TEST_CASE("fake tart (a test fake): fake-rootfs refuses members with '..'",
          "[tart-fake]") {
  Home home;
  home.Ok({"create", "--linux", "vm"});
  const std::string dir = home.path() + "/evil";
  Sh("mkdir -p '" + dir + "/a' && echo x > '" + dir + "/a/f' && tar -C '" +
     dir + "' -cf '" + dir + ".tar' --transform 's,^a/f,a/../../escaped,' a/f");
  auto result = home.Run({"fake-rootfs", "vm", dir + ".tar"});
  CHECK(result.exit_code == 1);
  CHECK(Contains(result.err, "'..'"));
  CHECK(::access((home.path() + "/vms/escaped").c_str(), F_OK) != 0);
  CHECK(::access((home.path() + "/escaped").c_str(), F_OK) != 0);
}

TEST_CASE(
    "fake tart (a test fake): run and exec end to end: output, exit codes, "
    "stdin only with -i, a daemon left behind, list and get while running",
    "[tart-fake]") {
  if (SkipWithoutBusybox()) return;
  Home home;
  home.CreateBusybox("vm");
  pid_t run = home.StartRun("vm");
  auto echo = home.Run({"exec", "vm", "echo", "hello", "world"});
  CHECK(echo.exit_code == 0);
  CHECK(echo.out == "hello world\n");
  auto code = home.Run({"exec", "vm", "sh", "-c", "echo err >&2; exit 7"});
  CheckFails(code, 7, "err\n");
  auto with_stdin = home.Run({"exec", "-i", "vm", "cat"}, "from stdin");
  CHECK(with_stdin.out == "from stdin");
  auto without = home.Run({"exec", "vm", "cat"}, "from stdin");
  CHECK(without.exit_code == 0);
  CHECK(without.out == "");
  auto whoami = home.Run({"exec", "vm", "sh", "-c", "id -u; pwd; echo $PATH"});
  CHECK(whoami.out ==
        "0\n/\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
  auto start = std::chrono::steady_clock::now();
  auto daemon = home.Run(
      {"exec", "vm", "sh", "-c", "(setsid sleep 1000 &); echo started"});
  CHECK(daemon.exit_code == 0);
  CHECK(daemon.out == "started\n");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  auto tty = home.Run({"exec", "-t", "vm", "true"});
  CheckRefused(tty);
  auto get = json::parse(home.Run({"get", "vm", "--format", "json"}).out);
  CHECK(get["Running"] == true);
  CHECK(get["State"] == "running");
  auto list = json::parse(home.Run({"list", "--format", "json"}).out);
  CHECK(list[0]["State"] == "running");
  auto again = home.Run({"run", "vm", "--no-graphics"});
  CheckFails(again, 2, "VM \"vm\" is already running!\n");
  auto del = home.Run({"delete", "vm"});
  CheckFails(del, 1, "VM \"vm\" is running\n");
  // The guest: its own network namespace with lo only, up; the VM's size
  // as cgroup limits; caps of a VM's root.
  auto net = home.Run({"exec", "vm", "sh", "-c", "ls /sys/class/net"});
  CHECK(net.out == "lo\n");
  auto lo = home.Run({"exec", "vm", "cat", "/sys/class/net/lo/operstate"});
  CHECK(Trim(lo.out) == "unknown");
  auto ping =
      home.Run({"exec", "vm", "ping", "-c", "1", "-W", "2", "127.0.0.1"});
  CHECK(ping.exit_code == 0);
  auto caps =
      home.Run({"exec", "vm", "sh", "-c", "grep CapEff /proc/self/status"});
  CHECK(Contains(caps.out, "CapEff"));
  CHECK(!Contains(caps.out, "0000000000000000"));
  auto mounts = home.Run({"exec", "vm", "cat", "/proc/mounts"});
  CHECK(Contains(mounts.out, " /run tmpfs "));
  CHECK(Contains(mounts.out, " /tmp tmpfs "));
  CHECK(Contains(mounts.out, " /dev/pts devpts "));
  CHECK(std::regex_search(mounts.out, std::regex(" /sys sysfs ro[ ,]")));

  auto stopped = home.Run({"stop", "vm"});
  CHECK(stopped.exit_code == 0);
  CHECK(home.WaitRun(run) == 0);
  CHECK(ReadWhole(home.path() + "/run.out") == "Stopping VM...\n");
  CHECK(home.WaitNoLeftovers() == "");
  auto after = json::parse(home.Run({"get", "vm", "--format", "json"}).out);
  CHECK(after["State"] == "stopped");
  home.Ok({"delete", "vm"});
}

TEST_CASE(
    "fake tart (a test fake): --serial-path is the guest's /dev/hvc0, a tty "
    "it can write to; an unopenable one fails as Tart does",
    "[tart-fake]") {
  if (SkipWithoutBusybox()) return;
  Home home;
  home.CreateBusybox("vm");
  auto missing =
      home.Run({"run", "vm", "--no-graphics", "--serial-path", "/nonexistent"});
  CheckFails(missing, 1, "Failed to open PTY\n");
  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  const std::string slave = ::ptsname(master);
  pid_t run = home.StartRun("vm", {"--serial-path", slave});
  auto tty = home.Run({"exec", "vm", "sh", "-c",
                       "test -c /dev/hvc0 && echo hi-from-guest > /dev/hvc0"});
  CHECK(tty.exit_code == 0);
  std::string got;
  for (int i = 0; i < 50 && !Contains(got, "hi-from-guest"); ++i) {
    pollfd item{master, POLLIN, 0};
    if (::poll(&item, 1, 100) > 0) {
      char buffer[256];
      ssize_t n = ::read(master, buffer, sizeof(buffer));
      if (n > 0) got.append(buffer, static_cast<size_t>(n));
    }
  }
  CHECK(Contains(got, "hi-from-guest"));
  const char input[] = "to-guest\n";
  REQUIRE(::write(master, input, sizeof(input) - 1) > 0);
  auto read_back = home.Run({"exec", "vm", "sh", "-c", "head -n1 /dev/hvc0"});
  CHECK(Contains(read_back.out, "to-guest"));
  home.StopRun(run);
  ::close(master);
}

TEST_CASE(
    "fake tart (a test fake): --dir shares appear at /mnt/shared/<name> with "
    "ro honoured; unnamed among several is Tart's usage error",
    "[tart-fake]") {
  if (SkipWithoutBusybox()) return;
  Home home;
  home.CreateBusybox("vm");
  const std::string rw = home.path() + "/rw", ro = home.path() + "/ro";
  Sh("mkdir -p '" + rw + "' '" + ro + "' && echo in-ro > '" + ro + "/f'");
  auto unnamed = home.Run(
      {"run", "vm", "--no-graphics", "--dir", rw, "--dir", "named:" + ro});
  CheckFails(
      unnamed, 64,
      "Error: invalid --dir syntax: for multiple directory shares each one "
      "of them should be named\n"
      "Usage: tart <subcommand>\n"
      "  See 'tart --help' for more information.\n");
  auto tag =
      home.Run({"run", "vm", "--no-graphics", "--dir", rw + ":tag=other"});
  CheckRefused(tag);
  pid_t run = home.StartRun(
      "vm", {"--dir", "work:" + rw, "--dir", "src:" + ro + ":ro"});
  auto listing = home.Run({"exec", "vm", "ls", "/mnt/shared"});
  CHECK(listing.out == "src\nwork\n");
  auto write = home.Run(
      {"exec", "vm", "sh", "-c", "echo from-guest > /mnt/shared/work/g"});
  CHECK(write.exit_code == 0);
  CHECK(ReadWhole(rw + "/g") == "from-guest\n");
  auto read = home.Run({"exec", "vm", "cat", "/mnt/shared/src/f"});
  CHECK(read.out == "in-ro\n");
  auto denied =
      home.Run({"exec", "vm", "sh", "-c", "echo x > /mnt/shared/src/h"});
  CHECK(denied.exit_code != 0);
  CHECK(::access((ro + "/h").c_str(), F_OK) != 0);
  home.StopRun(run);
}

TEST_CASE(
    "fake tart (a test fake): SIGKILL of tart run takes the VM with it; "
    "SIGTERM ends it by that signal; a guest power-off ends it with 0",
    "[tart-fake]") {
  if (SkipWithoutBusybox()) return;
  Home home;
  home.CreateBusybox("vm");
  pid_t run = home.StartRun("vm");
  CHECK(!Trim(home.Cgroups()).empty());
  ::kill(run, SIGKILL);
  CHECK(home.WaitRun(run) == 128 + SIGKILL);
  CHECK(home.WaitNoLeftovers() == "");
  auto state = json::parse(home.Run({"get", "vm", "--format", "json"}).out);
  CHECK(state["State"] == "stopped");

  run = home.StartRun("vm");
  ::kill(run, SIGTERM);
  CHECK(home.WaitRun(run) == 128 + SIGTERM);
  CHECK(home.WaitNoLeftovers() == "");

  run = home.StartRun("vm");
  home.Run({"exec", "vm", "kill", "-TERM", "1"});
  CHECK(home.WaitRun(run) == 0);
  CHECK(Contains(ReadWhole(home.path() + "/run.out"),
                 "guest has stopped the virtual machine\n"));
  CHECK(home.WaitNoLeftovers() == "");
  home.Ok({"delete", "vm"});
}

TEST_CASE(
    "fake tart (a test fake): stop --timeout 0 kills tart run at once and "
    "still leaves nothing behind",
    "[tart-fake]") {
  if (SkipWithoutBusybox()) return;
  Home home;
  home.CreateBusybox("vm");
  pid_t run = home.StartRun("vm");
  auto stopped = home.Run({"stop", "vm", "--timeout", "0"});
  CHECK(stopped.exit_code == 0);
  const int status = home.WaitRun(run);
  CHECK((status == 0 || status == 128 + SIGKILL));
  CHECK(home.WaitNoLeftovers() == "");
  CHECK(home.Run({"stop", "vm"}).exit_code == 2);
}

}  // namespace corral::testing
