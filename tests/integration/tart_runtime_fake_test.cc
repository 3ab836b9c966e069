// The tart runtime through the real daemon and CLI, against the FAKE `tart`
// CLI of tests/fakes/tart (a runc container stands in for each VM; the
// fake's own tests pin its interface). What a sandbox is made of as Tart
// sees it (a clone of the base VM, sized), what the guest sandbox hides of
// the guest, the agent over the console across a daemon restart, a VM
// stopped behind the daemon's back, reconciliation that touches only this
// daemon's VMs, discovery on PATH and the reasons it is unavailable, and
// what it refuses.
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/vm_host.h"

namespace corral::testing {
namespace {

const std::string kFakes = std::string(CORRAL_BINARY_DIR) + "/tests/fakes/bin";
const std::string kFakeTart = kFakes + "/tart";
const std::string kBusybox =
    std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar";

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A TART_HOME of the test's own with the base VM corral-base (busybox as
// its guest), removed with the object.
class TartHome {
 public:
  TartHome() {
    char tmpl[] = "/tmp/corral-tart-home-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    auto created = Tart({"create", "--linux", "corral-base"});
    INFO(created.err);
    REQUIRE(created.exit_code == 0);
    auto rooted = Tart({"fake-rootfs", "corral-base", kBusybox});
    INFO(rooted.err);
    REQUIRE(rooted.exit_code == 0);
  }
  ~TartHome() {
    // Whatever a failed test left running goes with its VM.
    for (const nlohmann::json& vm : List()) {
      if (vm["Running"] == true) Tart({"stop", vm["Name"], "--timeout", "1"});
    }
    Sh("rm -rf '" + dir_ + "'");
  }
  const std::string& dir() const { return dir_; }

  CommandResult Tart(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {"/usr/bin/env", "TART_HOME=" + dir_,
                                     kFakeTart};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv);
  }
  std::vector<nlohmann::json> List() const {
    auto listed = Tart({"list", "--format", "json"});
    REQUIRE(listed.exit_code == 0);
    return nlohmann::json::parse(listed.out).get<std::vector<nlohmann::json>>();
  }
  bool Listed(const std::string& name) const {
    for (const nlohmann::json& vm : List()) {
      if (vm["Name"] == name) return true;
    }
    return false;
  }
  std::string Config(const std::string& extra = "") const {
    return "[runtimes.tart]\ntart = \"" + kFakeTart + "\"\nhome = \"" + dir_ +
           "\"\n" + extra;
  }

 private:
  std::string dir_;
};

std::string Create(const Daemon& daemon, std::vector<std::string> flags = {}) {
  std::vector<std::string> args = {"create", "--runtime", "tart", "--image",
                                   "busybox"};
  args.insert(args.end(), flags.begin(), flags.end());
  auto created = daemon.Cli(args);
  INFO(created.err << daemon.log());
  REQUIRE(created.exit_code == 0);
  return Trim(created.out);
}

std::string InstanceId(const Daemon& daemon) {
  return Trim(ReadWholeFile(daemon.state_dir() + "/instance-id"));
}

std::string VmOf(const Daemon& daemon, const std::string& id) {
  return "corral-" + InstanceId(daemon) + "-" + id;
}

}  // namespace

TEST_CASE(
    "tart runtime on the fake tart: a sandbox is a sized clone of the base "
    "VM whose guest sandbox is sealed, rooted in the image and blind to the "
    "guest, and removal leaves nothing",
    "[tart-fake]") {
  TartHome home;
  Daemon daemon(home.Config());
  ImportBusybox(daemon);
  const std::string id = Create(daemon, {"--memory", "64", "--cpus", "1.5"});
  auto inside =
      Sh(daemon, id,
         "hostname; ls /sys/class/net; cat /proc/self/status | "
         "grep -E '^(CapEff|NoNewPrivs)'; touch /x 2>&1; "
         "echo w > /workspace/f && cat /workspace/f; "
         "ls /dev; ls /mnt/shared 2>&1; echo pid1=$(cat /proc/1/comm)");
  INFO(inside.out << inside.err << daemon.log());
  REQUIRE(inside.exit_code == 0);
  CHECK(Contains(inside.out, "corral-" + id.substr(0, 8) + "\n"));
  CHECK(Contains(inside.out, "\nlo\n"));
  CHECK_FALSE(Contains(inside.out, "eth0"));
  CHECK(Contains(inside.out, "CapEff:\t0000000000000000"));
  CHECK(Contains(inside.out, "NoNewPrivs:\t1"));
  CHECK(Contains(inside.out, "Read-only file system"));
  CHECK(Contains(inside.out, "\nw\n"));
  // Neither the console the link runs on nor the guest's shares.
  CHECK_FALSE(Contains(inside.out, "hvc0"));
  CHECK(Contains(inside.out, "/mnt/shared: No such file or directory"));
  // The agent is the sandbox's init.
  CHECK(Contains(inside.out, "pid1=corral-agent"));

  // What Tart holds: a running clone named for the daemon and the sandbox,
  // with whole CPUs and the memory floor.
  const std::string vm = VmOf(daemon, id);
  auto got = home.Tart({"get", vm, "--format", "json"});
  REQUIRE(got.exit_code == 0);
  const auto info = nlohmann::json::parse(got.out);
  CHECK(info["Running"] == true);
  CHECK(info["CPU"] == 2);
  CHECK(info["Memory"] == 512);
  CHECK(info["OS"] == "linux");
  // The owner is told the VM is larger than asked.
  auto inspected = daemon.Cli({"inspect", id});
  CHECK(Contains(inspected.out, "min_memory_mib"));

  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
  CHECK_FALSE(home.Listed(vm));
  CHECK(home.Listed("corral-base"));
  CHECK(Leftovers(daemon, id).empty());
}

TEST_CASE(
    "tart runtime on the fake tart: a restarted daemon reaches the agent "
    "again over the console, and a VM stopped behind its back is reported "
    "failed",
    "[tart-fake]") {
  TartHome home;
  Daemon daemon(home.Config());
  ImportBusybox(daemon);
  const std::string kept = Create(daemon);
  const std::string lost = Create(daemon);
  REQUIRE(Sh(daemon, kept, "echo before > /tmp/note").exit_code == 0);
  daemon.Stop();
  auto stopped = home.Tart({"stop", VmOf(daemon, lost)});
  INFO(stopped.err);
  REQUIRE(stopped.exit_code == 0);
  daemon.Start();
  auto note = Sh(daemon, kept, "cat /tmp/note");
  INFO(note.err << daemon.log());
  CHECK(note.out == "before\n");
  auto gone = daemon.Cli({"exec", lost, "--", "true"});
  CHECK(gone.exit_code != 0);
  REQUIRE(daemon.Cli({"rm", kept}).exit_code == 0);
  REQUIRE(daemon.Cli({"rm", lost}).exit_code == 0);
  CHECK_FALSE(home.Listed(VmOf(daemon, kept)));
  CHECK_FALSE(home.Listed(VmOf(daemon, lost)));
  CHECK(Leftovers(daemon, lost).empty());
}

TEST_CASE(
    "tart runtime on the fake tart: reconciliation removes this daemon's VMs "
    "it does not know and leaves another daemon's and the base alone",
    "[tart-fake]") {
  TartHome home;
  Daemon daemon(home.Config());
  ImportBusybox(daemon);
  const std::string id = Create(daemon);
  const std::string stray_id = "0123456789abcdef0123456789abcdef";
  const std::string mine = "corral-" + InstanceId(daemon) + "-" + stray_id;
  const std::string theirs = "corral-fedcba9876543210-" + stray_id;
  for (const std::string& name : {mine, theirs}) {
    auto cloned = home.Tart({"clone", "corral-base", name});
    INFO(cloned.err);
    REQUIRE(cloned.exit_code == 0);
  }
  daemon.Stop();
  daemon.Start();
  CHECK_FALSE(home.Listed(mine));
  CHECK(home.Listed(theirs));
  CHECK(home.Listed("corral-base"));
  CHECK(Sh(daemon, id, "echo ok").out == "ok\n");
  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
}

TEST_CASE(
    "tart runtime: corral runtimes finds the (fake) tart on the daemon's "
    "PATH, says why not without it or without its base VM, and refuses the "
    "host image and network",
    "[tart-fake]") {
  TartHome home;
  {
    // On PATH: the daemon's environment (as its service manager sets it).
    const std::string saved = std::getenv("PATH") ? std::getenv("PATH") : "";
    ::setenv("PATH", (kFakes + ":" + saved).c_str(), 1);
    Daemon daemon("[runtimes.tart]\nhome = \"" + home.dir() + "\"\n");
    ::setenv("PATH", saved.c_str(), 1);
    auto listed = daemon.Cli({"runtimes"});
    INFO(listed.out << listed.err);
    bool found = false;
    for (const std::string& line : Lines(listed.out)) {
      if (line.find("tart ") > 2) continue;
      found = true;
      CHECK(Contains(line, "tart 2.32.0"));
      CHECK(Contains(line, "corral test fake"));
      CHECK(Contains(line, "network-isolation"));
      // The fake runs containers, not VMs: no separate kernel claimed.
      CHECK_FALSE(Contains(line, "separate-kernel"));
    }
    CHECK(found);
  }
  {
    Daemon daemon("[runtimes.tart]\ntart = \"/nonexistent/tart\"\n");
    auto listed = daemon.Cli({"runtimes"});
    INFO(listed.out << listed.err);
    CHECK(Contains(listed.out, "/nonexistent/tart is not an executable"));
  }
  {
    Daemon daemon(home.Config("base_vm = \"no-such-vm\"\n"));
    auto listed = daemon.Cli({"runtimes"});
    INFO(listed.out << listed.err);
    CHECK(Contains(listed.out, "the base VM 'no-such-vm' does not exist"));
    CHECK(Contains(listed.out, "tart clone"));
  }
  Daemon daemon(home.Config());
  ImportBusybox(daemon);
  auto host = daemon.Cli({"create", "--runtime", "tart"});
  INFO(host.err);
  CHECK(host.exit_code != 0);
  CHECK(Contains(host.err, "import an image"));
  auto networked = daemon.Cli({"create", "--runtime", "tart", "--image",
                               "busybox", "--network", "allow"});
  INFO(networked.err);
  CHECK(networked.exit_code != 0);
  // Nothing was left behind by the refusals: the base VM alone.
  const auto vms = home.List();
  REQUIRE(vms.size() == 1);
  CHECK(vms[0]["Name"] == "corral-base");
}

}  // namespace corral::testing
