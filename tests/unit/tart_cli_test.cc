// The tart runtime's side of Tart's CLI, alone: the VM names that carry the
// daemon and the sandbox, the arguments of `tart run`, the script `tart
// exec` starts the agent with (run by a real sh against a stand-in agent),
// the VM's size for a sandbox's limits, Tart's errors as statuses (texts
// from Tart 2.32's RuntimeError), and the JSON of `list` and `get`.
#include "backends/tart/tart_cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/vm_host.h"

namespace corral::tart_runtime {
namespace {

const std::string kId = "0123456789abcdef0123456789abcdef";
const std::string kLabel = "00112233aabbccdd";

bool Has(const std::vector<std::string>& args,
         const std::vector<std::string>& run) {
  return std::search(args.begin(), args.end(), run.begin(), run.end()) !=
         args.end();
}

TEST_CASE(
    "tart: a VM's name carries the daemon's label and the sandbox id, and "
    "only such names are read back",
    "[tart]") {
  const std::string name = VmName(kLabel, kId);
  CHECK(name == "corral-" + kLabel + "-" + kId);
  std::string label, id;
  REQUIRE(ParseVmName(name, &label, &id));
  CHECK(label == kLabel);
  CHECK(id == kId);
  for (const std::string& other :
       {std::string("corral-base"), "corral-" + kLabel + "-" + kId + "-x",
        "corral-" + kLabel.substr(1) + "-" + kId,
        "corral-" + kLabel + "-" + kId.substr(1),
        "corral-00112233AABBCCDD-" + kId, "other-" + kLabel + "-" + kId}) {
    INFO(other);
    CHECK_FALSE(ParseVmName(other, &label, &id));
  }
}

TEST_CASE(
    "tart: `tart run` gets no window, audio or clipboard, the console path, "
    "and the image and agent shared read-only beside the workspace",
    "[tart]") {
  RunPlan plan{"corral-vm", "/images/abc", "/ws/x", "/run/corral/.agent"};
  const auto args = RunArguments(plan, "@SERIAL@");
  CHECK(args[0] == "run");
  CHECK(args[1] == "corral-vm");
  CHECK(Has(args, {"--no-graphics"}));
  CHECK(Has(args, {"--no-audio"}));
  CHECK(Has(args, {"--no-clipboard"}));
  CHECK(Has(args, {"--serial-path", "@SERIAL@"}));
  CHECK(Has(args, {"--dir", "corral-root:/images/abc:ro"}));
  CHECK(Has(args, {"--dir", "corral-workspace:/ws/x"}));
  CHECK(Has(args, {"--dir", "corral-agent:/run/corral/.agent:ro"}));
  // No network flag: the default NAT stays the guest's own; the sandbox
  // inside has loopback alone.
  for (const std::string& arg : args) CHECK(arg.rfind("--net", 0) != 0);
}

TEST_CASE(
    "tart: the VM is at least the configured floor and Tart's minimum, in "
    "whole MiB, with whole CPUs",
    "[tart]") {
  CHECK(VmMemoryMib(64u << 20, 512) == 512);
  CHECK(VmMemoryMib(2048ull << 20, 512) == 2048);
  CHECK(VmMemoryMib((1024ull << 20) + 1, 512) == 1025);
  CHECK(VmMemoryMib(0, 0) == kMinVmMemoryMib);
  CHECK(VmCpus(0) == 1);
  CHECK(VmCpus(500) == 1);
  CHECK(VmCpus(1000) == 1);
  CHECK(VmCpus(1001) == 2);
  CHECK(VmCpus(4000) == 4);
}

TEST_CASE(
    "tart: Tart's errors become statuses by what they say, and a usage "
    "error blames the arguments",
    "[tart]") {
  auto missing = CliError("get", 2, "the specified VM \"x\" does not exist\n");
  CHECK(absl::IsNotFound(missing));
  CHECK(std::string(missing.message()) ==
        "tart get: the specified VM \"x\" does not exist");
  CHECK(absl::IsFailedPrecondition(
      CliError("stop", 2, "VM \"x\" is not running\n")));
  CHECK(absl::IsFailedPrecondition(
      CliError("run", 2, "VM \"x\" is already running!\n")));
  CHECK(absl::IsFailedPrecondition(
      CliError("delete", 1, "VM \"x\" is running\n")));
  auto usage = CliError(
      "set", 64, "Error: Unknown option '--cpus'\nUsage: tart set ...\n");
  CHECK(absl::IsInternal(usage));
  CHECK(std::string(usage.message()).find("unsupported version") !=
        std::string::npos);
  auto other = CliError("set", 1,
                        "Error: VM should have 1 CPU cores at minimum "
                        "(requested 0)\n");
  CHECK(absl::IsInternal(other));
  CHECK(absl::IsInternal(CliError("clone", 1, "")));
  CHECK(std::string(CliError("clone", 1, "").message()) ==
        "tart clone: exit code 1");
}

TEST_CASE("tart: `list --format json` and `get --format json` are read",
          "[tart]") {
  auto vms = ParseVmList(R"([
  {
    "Source" : "local",
    "Name" : "corral-base",
    "Disk" : 50,
    "Size" : 0,
    "Accessed" : "2025-01-02T03:04:05Z",
    "Running" : false,
    "State" : "stopped"
  },
  {
    "Source" : "local",
    "Name" : "vm\/x",
    "Disk" : 50,
    "Size" : 1,
    "Accessed" : "2025-01-02T03:04:05Z",
    "Running" : true,
    "State" : "running"
  }
])");
  REQUIRE(vms.ok());
  REQUIRE(vms->size() == 2);
  CHECK((*vms)[0].name == "corral-base");
  CHECK((*vms)[0].source == "local");
  CHECK((*vms)[0].state == "stopped");
  CHECK_FALSE((*vms)[0].running);
  CHECK((*vms)[1].name == "vm/x");
  CHECK((*vms)[1].running);
  auto empty = ParseVmList("[\n\n]");
  REQUIRE(empty.ok());
  CHECK(empty->empty());
  CHECK_FALSE(ParseVmList("{}").ok());
  CHECK_FALSE(ParseVmList("[{\"State\": \"running\"}]").ok());
  CHECK_FALSE(ParseVmList("not json").ok());

  auto info = ParseVmInfo(R"({
  "OS" : "linux",
  "CPU" : 4,
  "Memory" : 4096,
  "Disk" : 50,
  "DiskFormat" : "raw",
  "Size" : "0.000",
  "Display" : "1024x768",
  "Running" : false,
  "State" : "stopped"
})");
  REQUIRE(info.ok());
  CHECK(info->os == "linux");
  CHECK(info->cpus == 4);
  CHECK(info->memory_mib == 4096);
  CHECK(info->state == "stopped");
  CHECK_FALSE(ParseVmInfo("{\"OS\": \"linux\"}").ok());
  CHECK_FALSE(ParseVmInfo("[]").ok());
}

TEST_CASE("tart: the version is Tart's first line alone", "[tart]") {
  CHECK(CliVersion("2.32.0\n") == "2.32.0");
  CHECK(CliVersion("2.32.0\ncorral test fake (tests/fakes/tart)\n") ==
        "2.32.0");
  CHECK(CliVersion("") == "");
  CHECK(CliVersion("tart: command not found\n") == "");
  CHECK(CliVersion("container CLI version 1.2.2\n") == "");
}

// The start-up script, run by a real sh in a directory standing in for the
// guest: a /proc/mounts that already lists /mnt/shared (so no mount is
// tried) and a stand-in agent that records its arguments. Hostile text in
// the hostname stays one argument.
TEST_CASE(
    "tart: the guest's start-up script mounts the shares only when they are "
    "not mounted, and starts the agent from them with its settings",
    "[tart]") {
  const std::string script = GuestStartScript({"box-1", 1u << 20});
  CHECK(script.find("mount -t virtiofs com.apple.virtio-fs.automount "
                    "/mnt/shared") != std::string::npos);
  CHECK(script.find("grep -qs ' /mnt/shared ' /proc/mounts") !=
        std::string::npos);
  CHECK(script.find("'/mnt/shared/corral-agent/corral-agent' "
                    "'--guest-sandbox' 'corral.root=/mnt/shared/corral-root' "
                    "'corral.workspace=/mnt/shared/corral-workspace' "
                    "'corral.port=/dev/hvc0' 'corral.hostname=box-1' "
                    "'corral.on_exit=poweroff' 'corral.tmp=1048576'") !=
        std::string::npos);

  // Run it with the paths moved under a scratch directory.
  char dir_template[] = "/tmp/corral-tart-script-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template;
  ::mkdir((dir + "/agent").c_str(), 0755);
  {
    std::ofstream mounts(dir + "/mounts");
    mounts << "virtiofs /mnt/shared virtiofs rw 0 0\n";
    std::ofstream agent(dir + "/agent/corral-agent");
    agent << "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done > " << dir
          << "/args\n";
  }
  ::chmod((dir + "/agent/corral-agent").c_str(), 0755);
  std::string moved = GuestStartScript({"a'b c", 0});
  auto replace = [&](const std::string& from, const std::string& to) {
    for (size_t at = moved.find(from); at != std::string::npos;
         at = moved.find(from, at + to.size())) {
      moved.replace(at, from.size(), to);
    }
  };
  replace("/proc/mounts", dir + "/mounts");
  replace("/mnt/shared/corral-agent/", dir + "/agent/");
  auto ran = testing::RunProcess({"/bin/sh", "-c", moved});
  INFO(moved << ran.err);
  CHECK(ran.exit_code == 0);
  const std::string args = testing::ReadWholeFile(dir + "/args");
  CHECK(args ==
        "[--guest-sandbox]\n[corral.root=/mnt/shared/corral-root]\n"
        "[corral.workspace=/mnt/shared/corral-workspace]\n"
        "[corral.port=/dev/hvc0]\n[corral.hostname=a'b c]\n"
        "[corral.on_exit=poweroff]\n");
  testing::RunProcess({"/bin/rm", "-rf", dir});
}

}  // namespace
}  // namespace corral::tart_runtime
