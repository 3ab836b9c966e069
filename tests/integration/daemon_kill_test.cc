// kill -9 of the daemon while one of its helpers runs (the qemu runtime's
// KVM probe, the linux launcher, runc, QEMU's launcher starting a VM, an
// image import), then a restart at once: nothing the dead daemon started
// may hold on to its state directory or socket, no helper outlives it, and
// the new daemon starts and serves. Also: the CLI gives up on a socket that
// accepts but never answers.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct ProcessInfo {
  pid_t pid = 0;
  pid_t parent = 0;
  std::string comm;
  std::string cmdline;  // NULs as spaces
};

std::map<pid_t, ProcessInfo> Processes() {
  std::map<pid_t, ProcessInfo> all;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    ProcessInfo info;
    info.pid = std::stoi(name);
    const std::string stat = ReadWhole("/proc/" + name + "/stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    std::string state;
    fields >> state >> info.parent;
    info.comm = Trim(ReadWhole("/proc/" + name + "/comm"));
    info.cmdline = ReadWhole("/proc/" + name + "/cmdline");
    for (char& c : info.cmdline) {
      if (c == '\0') c = ' ';
    }
    all[info.pid] = info;
  }
  return all;
}

bool DescendsFrom(const std::map<pid_t, ProcessInfo>& all, pid_t pid,
                  pid_t ancestor) {
  for (int depth = 0; depth < 64 && pid > 1; ++depth) {
    auto it = all.find(pid);
    if (it == all.end()) return false;
    if (it->second.parent == ancestor) return true;
    pid = it->second.parent;
  }
  return false;
}

// Processes other than `except` with an open fd on `path`.
std::vector<pid_t> Holders(const std::string& path, pid_t except) {
  std::vector<pid_t> holders;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (std::stoi(name) == except) continue;
    std::error_code fd_error;
    for (const auto& fd :
         fs::directory_iterator("/proc/" + name + "/fd", fd_error)) {
      std::error_code link_error;
      if (fs::read_symlink(fd.path(), link_error).string() == path) {
        holders.push_back(std::stoi(name));
        break;
      }
    }
  }
  return holders;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Runs `operation` on `worker` and kills the daemon with SIGKILL as soon as
// one of its descendants matches `is_helper`. True when it did (the caller
// joins `worker` after restarting the daemon: the operation's client may
// wait for a while); false when the operation ended first and the helper
// was never seen (`worker` is joined).
bool KillDuring(Daemon& daemon, const std::function<void()>& operation,
                const std::function<bool(const ProcessInfo&)>& is_helper,
                std::string* seen, std::thread* worker) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  *worker = std::thread([operation, done] {
    operation();
    *done = true;
  });
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  while (!*done && Clock::now() < give_up) {
    const auto all = Processes();
    for (const auto& [pid, info] : all) {
      if (is_helper(info) && DescendsFrom(all, pid, daemon.pid())) {
        *seen = info.comm + ": " + info.cmdline.substr(0, 120);
        daemon.Kill9();
        return true;
      }
    }
  }
  worker->join();
  return false;
}

// What must hold after the kill: a restart at once works, nothing but the
// new daemon holds the state directory's lock, and no process matching
// `is_helper` is left (given a moment for the kernel to deliver the
// parent-death signals).
void RestartAndCheck(Daemon& daemon,
                     const std::function<bool(const ProcessInfo&)>& is_helper) {
  const auto killed_at = Clock::now();
  REQUIRE_NOTHROW(daemon.Start());
  const auto ready =
      std::chrono::duration_cast<milliseconds>(Clock::now() - killed_at);
  INFO("restarted in " << ready.count() << " ms");
  CHECK(ready < milliseconds(5000));
  auto version = daemon.Cli({"version"});
  INFO(version.err << daemon.log());
  CHECK(version.exit_code == 0);
  CHECK(Holders(daemon.state_dir() + "/corrald.lock", daemon.pid()).empty());
  std::vector<std::string> left;
  for (int attempt = 0; attempt < 40; ++attempt) {
    left.clear();
    for (const auto& [pid, info] : Processes()) {
      if (is_helper(info)) left.push_back(info.comm + " " + info.cmdline);
    }
    if (left.empty()) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  INFO("left: " << (left.empty() ? "" : left.front()));
  CHECK(left.empty());
}

// The [runtimes.qemu] table comes last: a test may add keys to it.
std::string Config() {
  return "[runtimes.oci]\nruntime = \"runc\"\n[runtimes.qemu]\nkernel_dir = "
         "\"" +
         std::string(CORRAL_BINARY_DIR) + "/vm-kernel\"\n";
}

bool RuntimeAvailable(const Daemon& daemon, const std::string& runtime) {
  return Contains(daemon.Cli({"--json", "runtimes"}).out,
                  "\"name\":\"" + runtime + "\",\"available\":true");
}

// Up to `attempts` tries of `operation`, each killing the daemon when its
// helper shows; then the restart checks. Reports a helper never seen (it
// may be too quick on this host) without failing.
void KillDuringHelper(
    Daemon& daemon, const char* what, int attempts,
    const std::function<void()>& operation,
    const std::function<bool(const ProcessInfo&)>& is_helper) {
  std::string seen;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    std::thread worker;
    if (KillDuring(daemon, operation, is_helper, &seen, &worker)) {
      INFO(what << ": killed the daemon while " << seen << " ran");
      RestartAndCheck(daemon, is_helper);
      worker.join();
      return;
    }
  }
  WARN(what << ": the helper ended before it was seen in " << attempts
            << " tries; not checked");
}

TEST_CASE(
    "a daemon killed while a helper runs restarts at once, and no helper "
    "outlives it") {
  Daemon daemon(Config());
  const std::string image =
      std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar";
  auto ran_cli = [&](std::vector<std::string> args) {
    return [&daemon, args] { (void)daemon.Cli(args); };
  };

  SECTION("the qemu runtime's KVM probe") {
    // A QEMU whose KVM guest never boots, as on hosts where KVM hangs:
    // the probe waits for it (and here QEMU fails fast, so a fake stands in
    // for it). The probe runs on the first create after each boot of the
    // host; a new daemon has no record of it yet.
    const std::string fake = daemon.dir() + "/fake-qemu";
    std::ofstream(fake) << "#!/bin/bash\nexec -a corral-fake-qemu sleep 30\n";
    REQUIRE(::chmod(fake.c_str(), 0755) == 0);
    Daemon probing(Config() + "qemu = \"" + fake + "\"\n");
    if (::access("/dev/kvm", F_OK) != 0) {
      WARN("skipped: no /dev/kvm here (no probe runs)");
      return;
    }
    // Listing the runtimes probes them, the qemu runtime's KVM too.
    KillDuringHelper(
        probing, "probe", 1, [&probing] { (void)probing.Cli({"runtimes"}); },
        [](const ProcessInfo& info) {
          return Contains(info.cmdline, "corral-fake-qemu");
        });
  }
  SECTION("the linux runtime's launcher") {
    KillDuringHelper(daemon, "launcher", 60, ran_cli({"create"}),
                     [](const ProcessInfo& info) {
                       return info.comm ==
                              "corral-linux-la";  // comm is 15 bytes
                     });
  }
  SECTION("runc, through the oci runtime's helper") {
    if (!RuntimeAvailable(daemon, "oci")) {
      WARN("skipped: the oci runtime cannot run here");
      return;
    }
    KillDuringHelper(
        daemon, "runc", 30, ran_cli({"create", "--runtime", "oci"}),
        [](const ProcessInfo& info) {
          return info.comm == "runc" || info.comm == "corral-oci-exec";
        });
  }
  SECTION("QEMU's launcher starting a VM") {
    if (!RuntimeAvailable(daemon, "qemu")) {
      WARN("skipped: the qemu runtime cannot run here");
      return;
    }
    REQUIRE(daemon.Cli({"image", "import", "busybox", image}).exit_code == 0);
    KillDuringHelper(
        daemon, "QEMU start", 5,
        ran_cli({"create", "--runtime", "qemu", "--image", "busybox"}),
        [](const ProcessInfo& info) { return info.comm == "corral-qemu-lau"; });
    // The half-made VM went with the recovery; a new one starts.
    CHECK(daemon
              .Cli({"run", "--runtime", "qemu", "--image", "busybox", "--",
                    "true"})
              .exit_code == 0);
  }
  SECTION("an image import") {
    const auto importing = [](const ProcessInfo& info) {
      return info.comm == "corral-unpack";
    };
    std::string seen;
    bool killed = false;
    std::thread worker;
    for (int attempt = 0; attempt < 20 && !killed; ++attempt) {
      killed =
          KillDuring(daemon,
                     ran_cli({"image", "import",
                              "imported-" + std::to_string(attempt), image}),
                     importing, &seen, &worker);
    }
    if (killed) {
      INFO("import: killed the daemon while " << seen << " ran");
    } else {
      WARN(
          "import: the decoder ended before it was seen; killing the "
          "daemon in the middle of another import instead");
      worker = std::thread(ran_cli({"image", "import", "mid", image}));
      std::this_thread::sleep_for(milliseconds(30));
      daemon.Kill9();
    }
    RestartAndCheck(daemon, importing);
    worker.join();
    // An import is all or nothing: an image listed runs, and no staging
    // directory of a killed import is left in the images directory.
    auto images = daemon.Cli({"--json", "image", "ls"});
    for (const std::string& name :
         {std::string("mid"), std::string("imported-0")}) {
      if (!Contains(images.out, "\"" + name + "\"")) continue;
      auto ran = daemon.Cli({"run", "--image", name, "--", "true"});
      INFO(name << ": " << ran.err);
      CHECK(ran.exit_code == 0);
    }
    auto staging =
        Sh("ls -A '" + daemon.state_dir() + "/images' | grep '^\\.'");
    CHECK(Trim(staging.out).empty());
  }
}

TEST_CASE(
    "the CLI gives up with exit 125 when the socket accepts but nothing "
    "answers") {
  char dir_template[] = "/tmp/corral-hung-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string path = std::string(dir_template) + "/corrald.sock";
  // A listening socket that never accepts: what an orphan holding a dead
  // daemon's socket looks like to a client.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
          0);
  REQUIRE(::listen(fd, 16) == 0);
  const auto started = Clock::now();
  auto result = RunProcess({BinaryDir() + "/corral", "--socket", path, "ls"});
  const auto took =
      std::chrono::duration_cast<milliseconds>(Clock::now() - started);
  ::close(fd);
  Sh("rm -rf '" + std::string(dir_template) + "'");
  INFO(result.err << " after " << took.count() << " ms");
  CHECK(result.exit_code == 125);
  CHECK(Contains(result.err, "cannot reach corrald at " + path));
  CHECK(Contains(result.err, "nothing answered"));
  CHECK(took < milliseconds(30000));
  // And at once when nothing listens.
  auto absent = RunProcess({BinaryDir() + "/corral", "--socket", path, "ls"});
  CHECK(absent.exit_code == 125);
  CHECK(Contains(absent.err, "No such file"));
}

}  // namespace
}  // namespace corral::testing
