// The apple runtime through the real daemon and CLI, against the FAKE
// `container` CLI of tests/fakes/apple (runc containers stand in for
// Apple's VMs; the fake's own tests pin its interface). What a sandbox is
// made of as the container service sees it, the agent behind the published
// socket across a daemon restart, a container removed behind the daemon's
// back, reconciliation that touches only this daemon's containers,
// discovery on PATH and the reasons it is unavailable, and what it refuses.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/vm_host.h"

namespace corral::testing {
namespace {

const std::string kFakes = std::string(CORRAL_BINARY_DIR) + "/tests/fakes/bin";
const std::string kFakeContainer = kFakes + "/container";

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The fake's service (shared by every test and daemon, as users share
// Apple's) is started once; starting is idempotent.
void StartService() {
  static const bool started = [] {
    auto result = RunProcess({kFakeContainer, "system", "start"});
    INFO(result.out << result.err);
    REQUIRE(result.exit_code == 0);
    return true;
  }();
  (void)started;
}

std::string AppleConfig() {
  StartService();
  return "[runtimes.apple]\ncontainer = \"" + kFakeContainer + "\"\n";
}

std::string Create(const Daemon& daemon, std::vector<std::string> flags = {}) {
  std::vector<std::string> args = {"create", "--runtime", "apple", "--image",
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

// The fake service's containers carrying `label`=`value`.
std::vector<nlohmann::json> ContainersLabelled(const std::string& label,
                                               const std::string& value) {
  auto listed =
      RunProcess({kFakeContainer, "list", "--all", "--format", "json"});
  REQUIRE(listed.exit_code == 0);
  std::vector<nlohmann::json> found;
  for (const auto& container : nlohmann::json::parse(listed.out)) {
    const auto& labels = container["configuration"]["labels"];
    if (labels.contains(label) && labels[label] == value) {
      found.push_back(container);
    }
  }
  return found;
}

}  // namespace

TEST_CASE(
    "apple runtime on the fake container: a sandbox is a sealed container "
    "named <hostname>.<id>, labelled, with at least Apple's 200 MiB and its "
    "agent behind the published socket, and removal leaves nothing",
    "[apple-fake]") {
  Daemon daemon(AppleConfig());
  ImportBusybox(daemon);
  const std::string id = Create(daemon, {"--memory", "64", "--cpus", "1.5"});
  auto inside = Sh(daemon, id,
                   "hostname; ls /sys/class/net; cat /proc/self/status | "
                   "grep -E '^(CapEff|NoNewPrivs)'; touch /x 2>&1; "
                   "echo w > /workspace/f && cat /workspace/f");
  INFO(inside.out << inside.err << daemon.log());
  REQUIRE(inside.exit_code == 0);
  CHECK(Contains(inside.out, "corral-" + id.substr(0, 8) + "\n"));
  CHECK(Contains(inside.out, "\nlo\n"));
  CHECK_FALSE(Contains(inside.out, "eth0"));
  CHECK(Contains(inside.out, "CapEff:\t0000000000000000"));
  CHECK(Contains(inside.out, "NoNewPrivs:\t1"));
  CHECK(Contains(inside.out, "Read-only file system"));
  CHECK(Contains(inside.out, "\nw\n"));

  // What the container service holds: the name, the labels, the VM's size,
  // the published socket.
  const std::string name = "corral-" + id.substr(0, 8) + "." + id;
  auto ours = ContainersLabelled("corral.sandbox", id);
  REQUIRE(ours.size() == 1);
  const nlohmann::json& config = ours[0]["configuration"];
  CHECK(ours[0]["id"] == name);
  CHECK(ours[0]["status"]["state"] == "running");
  CHECK(config["labels"]["corral.daemon"] == InstanceId(daemon));
  CHECK(config["resources"]["memoryInBytes"] == 200ull << 20);
  CHECK(config["resources"]["cpus"] == 2);
  CHECK(config["readOnly"] == true);
  REQUIRE(config["publishedSockets"].size() == 1);
  CHECK(config["publishedSockets"][0]["containerPath"] ==
        "/.corral/run/agent.sock");
  // The owner is told the VM is larger than asked.
  auto inspected = daemon.Cli({"inspect", id});
  CHECK(Contains(inspected.out, "Apple's minimum is 200 MiB"));

  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
  CHECK(ContainersLabelled("corral.sandbox", id).empty());
  CHECK(Leftovers(daemon, id).empty());
}

TEST_CASE(
    "apple runtime on the fake container: a restarted daemon reaches the "
    "agent again through the published socket, and a container removed "
    "behind its back is reported gone",
    "[apple-fake]") {
  Daemon daemon(AppleConfig());
  ImportBusybox(daemon);
  const std::string kept = Create(daemon);
  const std::string lost = Create(daemon);
  REQUIRE(Sh(daemon, kept, "echo before > /tmp/note").exit_code == 0);
  daemon.Stop();
  auto deleted = RunProcess({kFakeContainer, "delete", "--force",
                             "corral-" + lost.substr(0, 8) + "." + lost});
  REQUIRE(deleted.exit_code == 0);
  daemon.Start();
  auto note = Sh(daemon, kept, "cat /tmp/note");
  INFO(note.err << daemon.log());
  CHECK(note.out == "before\n");
  auto gone = daemon.Cli({"exec", lost, "--", "true"});
  CHECK(gone.exit_code != 0);
  REQUIRE(daemon.Cli({"rm", kept}).exit_code == 0);
  daemon.Cli({"rm", lost});
  CHECK(ContainersLabelled("corral.sandbox", kept).empty());
  CHECK(Leftovers(daemon, lost).empty());
}

TEST_CASE(
    "apple runtime on the fake container: reconciliation removes this "
    "daemon's containers it does not know and leaves another daemon's alone",
    "[apple-fake]") {
  Daemon daemon(AppleConfig());
  ImportBusybox(daemon);
  // An image the service has: the one the runtime loaded for a sandbox.
  const std::string id = Create(daemon);
  auto ours = ContainersLabelled("corral.sandbox", id);
  REQUIRE(ours.size() == 1);
  const std::string image =
      ours[0]["configuration"]["image"]["reference"].get<std::string>();
  const std::string stray_id = "0123456789abcdef0123456789abcdef";
  const std::string other_daemon = "fedcba9876543210";
  auto run = [&](const std::string& name, const std::string& daemon_label) {
    auto ran =
        RunProcess({kFakeContainer, "run", "-d", "--name", name, "--network",
                    "none", "--label", "corral.sandbox=" + stray_id, "--label",
                    "corral.daemon=" + daemon_label, "--entrypoint",
                    "/bin/sleep", image, "1000"});
    INFO(ran.err);
    REQUIRE(ran.exit_code == 0);
  };
  const std::string mine = "stray-" + InstanceId(daemon).substr(0, 8);
  const std::string theirs = "stray-" + other_daemon.substr(0, 8) + "-" +
                             InstanceId(daemon).substr(0, 8);
  run(mine, InstanceId(daemon));
  run(theirs, other_daemon);
  daemon.Stop();
  daemon.Start();
  // The daemon's reconcile at start removed its own stray, not the other's,
  // and kept the sandbox it knows.
  auto listed =
      RunProcess({kFakeContainer, "list", "--all", "--format", "json"});
  CHECK_FALSE(Contains(listed.out, "\"" + mine + "\""));
  CHECK(Contains(listed.out, "\"" + theirs + "\""));
  CHECK(Sh(daemon, id, "echo ok").out == "ok\n");
  REQUIRE(RunProcess({kFakeContainer, "delete", "--force", theirs}).exit_code ==
          0);
  REQUIRE(daemon.Cli({"rm", id}).exit_code == 0);
}

TEST_CASE(
    "apple runtime: corral runtimes finds the (fake) container on the "
    "daemon's PATH, says why not without it or with its service stopped, and "
    "refuses the host image, network and a hostname it cannot carry",
    "[apple-fake]") {
  StartService();
  {
    // On PATH: the daemon's environment (as its service manager sets it).
    const std::string saved = std::getenv("PATH") ? std::getenv("PATH") : "";
    ::setenv("PATH", (kFakes + ":" + saved).c_str(), 1);
    Daemon daemon;
    ::setenv("PATH", saved.c_str(), 1);
    auto listed = daemon.Cli({"runtimes"});
    INFO(listed.out << listed.err);
    bool found = false;
    for (const std::string& line : Lines(listed.out)) {
      if (line.rfind("apple ", 0) != 0 && line.rfind("  apple ", 0) != 0 &&
          line.rfind("* apple ", 0) != 0) {
        continue;
      }
      found = true;
      CHECK(Contains(line, "container CLI version 1.2.2"));
      CHECK(Contains(line, "corral test fake"));
      CHECK(Contains(line, "network-isolation"));
      // The fake runs containers, not VMs: no separate kernel claimed.
      CHECK_FALSE(Contains(line, "separate-kernel"));
    }
    CHECK(found);
  }
  {
    Daemon daemon("[runtimes.apple]\ncontainer = \"/nonexistent/container\"\n");
    auto listed = daemon.Cli({"runtimes"});
    INFO(listed.out << listed.err);
    CHECK(Contains(listed.out, "/nonexistent/container is not an executable"));
  }
  {
    // A copy of the fake keeps its state beside itself: a service never
    // started.
    char tmpl[] = "/tmp/corral-apple-down-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    REQUIRE(Sh("mkdir '" + dir + "/bin' && cp '" + kFakeContainer + "' '" +
               dir + "/bin/container'")
                .exit_code == 0);
    {
      Daemon daemon("[runtimes.apple]\ncontainer = \"" + dir +
                    "/bin/container\"\n");
      auto listed = daemon.Cli({"runtimes"});
      INFO(listed.out);
      CHECK(Contains(listed.out, "container system service is not running"));
      CHECK(Contains(listed.out, "container system start"));
    }
    Sh("rm -rf '" + dir + "'");
  }
  Daemon daemon(AppleConfig());
  ImportBusybox(daemon);
  auto host = daemon.Cli({"create", "--runtime", "apple"});
  INFO(host.err);
  CHECK(host.exit_code != 0);
  CHECK(Contains(host.err, "import an image"));
  // Apple's ids are at most 63 characters: <hostname>.<id> leaves 30.
  auto long_name = daemon.Cli({"create", "--runtime", "apple", "--image",
                               "busybox", "--hostname", std::string(31, 'h')});
  INFO(long_name.err);
  CHECK(long_name.exit_code != 0);
  CHECK(Contains(long_name.err, "<hostname>.<id>"));
  CHECK(Contains(long_name.err, "at most 30"));
  auto networked = daemon.Cli({"create", "--runtime", "apple", "--image",
                               "busybox", "--network", "allow"});
  INFO(networked.err);
  CHECK(networked.exit_code != 0);
  // Nothing was left behind by the refusals.
  CHECK(ContainersLabelled("corral.daemon", InstanceId(daemon)).empty());
}

}  // namespace corral::testing
