#include "tests/conformance/conformance.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace corral::testing::conformance {
namespace {

constexpr const char* kDefaultDockerSocket =
    "/run/corral-test-engines/docker.sock";
constexpr const char* kDefaultPodmanSocket =
    "/run/corral-test-engines/podman.sock";

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// The runtime as the first test case of this process found it.
std::optional<v1::Runtime>& CachedRuntime() {
  static std::optional<v1::Runtime> runtime;
  return runtime;
}

std::string GuaranteeList(const google::protobuf::RepeatedField<int>& list) {
  std::string out;
  for (int g : list) {
    if (!out.empty()) out += ", ";
    out += GuaranteeName(static_cast<v1::Guarantee>(g));
  }
  return out.empty() ? "none" : out;
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Reads one host process; false when it is gone or unreadable.
bool ReadHostProcess(pid_t pid, HostProcess* process) {
  const std::string dir = "/proc/" + std::to_string(pid);
  const std::string stat = ReadWhole(dir + "/stat");
  // The command name (field 2) may hold spaces and parentheses: the fields
  // after it start behind the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return false;
  std::istringstream fields(stat.substr(close + 2));
  std::string skipped;
  for (int field = 3; field < 22; ++field) fields >> skipped;
  if (!(fields >> process->start_time)) return false;  // field 22
  process->pid = pid;
  std::istringstream status(ReadWhole(dir + "/status"));
  for (std::string line; std::getline(status, line);) {
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "Uid:") {
      words >> process->uid;
    } else if (key == "NSpid:") {
      for (pid_t ns_pid; words >> ns_pid;) process->ns_pid = ns_pid;
    }
  }
  return true;
}

}  // namespace

Variant VariantNamed(const std::string& name) {
  if (name == "linux") return {"linux", "linux", "", "", {}};
  if (name == "oci-runc") {
    return {name, "oci", "[runtimes.oci]\nruntime = \"runc\"\n", "", {}};
  }
  if (name == "oci-crun") {
    return {name, "oci", "[runtimes.oci]\nruntime = \"crun\"\n", "", {}};
  }
  if (name == "docker") {
    return {name,
            "docker",
            "[runtimes.docker]\nsocket = \"" +
                EnvOr("CORRAL_TEST_DOCKER_SOCKET", kDefaultDockerSocket) +
                "\"\n",
            "",
            {}};
  }
  if (name == "podman") {
    return {name,
            "docker",
            "[runtimes.docker]\nsocket = \"" +
                EnvOr("CORRAL_TEST_PODMAN_SOCKET", kDefaultPodmanSocket) +
                "\"\n",
            "",
            {}};
  }
  if (name == "qemu") {
    // The kernel that tests/run.sh builds into the build tree.
    return {name,
            "qemu",
            "[runtimes.qemu]\nkernel_dir = \"" +
                EnvOr("CORRAL_TEST_VM_KERNEL",
                      std::string(CORRAL_BINARY_DIR) + "/vm-kernel") +
                "\"\n",
            "",
            {}};
  }
  if (name == "firecracker-fake") {
    // Firecracker's jailer and Firecracker are FAKES here
    // (tests/fakes/firecracker: QEMU stands in for the VMM), which the
    // firecracker runtime drives through their real interfaces. Firecracker
    // has no shared-filesystem device, so no host image: every sandbox runs
    // on the busybox image that tests/run.sh builds.
    const std::string fakes =
        std::string(CORRAL_BINARY_DIR) + "/tests/fakes/bin";
    return {name,
            "firecracker",
            "[defaults]\nimage = \"" + std::string(kConformanceImage) +
                "\"\n[runtimes.firecracker]\nfirecracker = \"" + fakes +
                "/firecracker\"\njailer = \"" + fakes +
                "/jailer\"\nkernel_dir = \"" +
                EnvOr("CORRAL_TEST_VM_KERNEL",
                      std::string(CORRAL_BINARY_DIR) + "/vm-kernel") +
                "\"\n",
            std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar",
            {}};
  }
  if (name == "apple-fake") {
    // Apple's `container` is a FAKE here (tests/fakes/apple: runc
    // containers stand in for Apple's VMs), which the apple runtime drives
    // through the real CLI's commands and outputs. Apple's VMs boot images
    // only: every sandbox runs on the busybox image.
    const std::string fake =
        std::string(CORRAL_BINARY_DIR) + "/tests/fakes/bin/container";
    return {name,
            "apple",
            "[defaults]\nimage = \"" + std::string(kConformanceImage) +
                "\"\n[runtimes.apple]\ncontainer = \"" + fake + "\"\n",
            std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar",
            {fake, "system", "start"}};
  }
  if (name == "tart-fake") {
    // Tart is a FAKE here (tests/fakes/tart: a runc container stands in for
    // each VM), which the tart runtime drives through the real CLI's
    // commands and outputs. A VM shares images, not the host's root: every
    // sandbox runs on the busybox image, and the base VM's guest (its sh,
    // grep and mount) is busybox too. Test processes run in parallel: the
    // base VM is made once, under a lock.
    const std::string fakes =
        std::string(CORRAL_BINARY_DIR) + "/tests/fakes/bin";
    const std::string home =
        std::string(CORRAL_BINARY_DIR) + "/tests/fakes/tart-conformance";
    const std::string busybox =
        std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar";
    return {name,
            "tart",
            "[defaults]\nimage = \"" + std::string(kConformanceImage) +
                "\"\n[runtimes.tart]\ntart = \"" + fakes +
                "/tart\"\nhome = \"" + home + "\"\n",
            busybox,
            {"/bin/sh", "-c",
             "set -e; mkdir -p \"$1\"; exec 9>\"$1/.setup-lock\"; flock 9; "
             "export TART_HOME=\"$1\"; \"$2\" get corral-base >/dev/null "
             "2>&1 || { \"$2\" create --linux corral-base && \"$2\" "
             "fake-rootfs corral-base \"$3\"; }",
             "setup", home, fakes + "/tart", busybox}};
  }
  throw std::invalid_argument(
      "unknown CORRAL_CONFORMANCE_VARIANT '" + name +
      "' (known: linux, oci-runc, oci-crun, docker, podman, qemu, "
      "firecracker-fake, apple-fake, tart-fake)");
}

const Variant& CurrentVariant() {
  static const Variant variant =
      VariantNamed(EnvOr("CORRAL_CONFORMANCE_VARIANT", "linux"));
  return variant;
}

std::string GuaranteeName(v1::Guarantee guarantee) {
  std::string name = v1::Guarantee_Name(guarantee);
  const std::string prefix = "GUARANTEE_";
  if (name.rfind(prefix, 0) == 0) name.erase(0, prefix.size());
  for (char& c : name) c = c == '_' ? '-' : static_cast<char>(std::tolower(c));
  return name;
}

Conformance::Conformance(const std::string& extra_toml,
                         const std::string& netns_path)
    : variant_(CurrentVariant()) {
  static const bool set_up = [&] {
    if (variant_.setup.empty()) return true;
    const CommandResult result = RunProcess(variant_.setup);
    INFO(result.out << result.err);
    REQUIRE(result.exit_code == 0);
    return true;
  }();
  (void)set_up;
  // The runtime's default cgroup parents, shared with every other daemon
  // on the host (tests run in parallel): each daemon instance keeps its
  // sandboxes beneath its own id, and reconciles only those.
  daemon_ = std::make_unique<Daemon>(variant_.config_toml + extra_toml,
                                     /*socket_activated=*/false, netns_path);
  RequireRuntime();
  if (!variant_.image_tar.empty()) {
    const CommandResult imported =
        Cli({"image", "import", kConformanceImage, variant_.image_tar});
    REQUIRE(imported.exit_code == 0);
  }
}

Conformance::~Conformance() { daemon_.reset(); }

namespace {

bool VariantRequired(const std::string& name) {
  const char* required = std::getenv("CORRAL_CONFORMANCE_REQUIRE");
  if (required == nullptr) return false;
  std::istringstream words(required);
  std::string word;
  while (words >> word) {
    if (word == name) return true;
  }
  return false;
}

}  // namespace

void Conformance::RequireRuntime() {
  if (CachedRuntime()) return;
  auto system = v1::System::NewStub(daemon_->Channel());
  grpc::ClientContext context;
  v1::ListRuntimesResponse response;
  grpc::Status status = system->ListRuntimes(&context, {}, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  std::optional<v1::Runtime> found;
  for (const auto& listed : response.runtimes()) {
    if (listed.name() == runtime()) found = listed;
  }
  std::string reason;
  if (!found) {
    reason = "the daemon does not know this runtime";
  } else if (!found->available()) {
    reason = found->reason().empty() ? "unavailable, no reason given"
                                     : found->reason();
  }
  if (!reason.empty()) {
    // CI names the variants its machine must run (CORRAL_CONFORMANCE_REQUIRE,
    // space-separated): there an unavailable runtime is a failure, so a
    // broken install cannot pass as "skipped".
    if (VariantRequired(variant_.name)) {
      FAIL("variant " << variant_.name << " is required here but runtime "
                      << runtime() << " is unavailable: " << reason);
    }
    // Stop the daemon and remove its directory before leaving: exiting from
    // inside a test case skips every destructor on the stack.
    daemon_.reset();
    std::printf("SKIPPED: %s: %s\n", runtime().c_str(), reason.c_str());
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(kSkipExitCode);
  }
  std::string unclaimed;
  for (int g = v1::Guarantee_MIN; g <= v1::Guarantee_MAX; ++g) {
    if (g == v1::GUARANTEE_UNSPECIFIED || !v1::Guarantee_IsValid(g)) continue;
    if (std::find(found->guarantees().begin(), found->guarantees().end(), g) ==
        found->guarantees().end()) {
      unclaimed += " " + GuaranteeName(static_cast<v1::Guarantee>(g));
    }
  }
  std::printf(
      "conformance variant %s: runtime %s claims: %s; not claimed (not "
      "checked):%s\n",
      variant_.name.c_str(), runtime().c_str(),
      GuaranteeList(found->guarantees()).c_str(), unclaimed.c_str());
  std::fflush(stdout);
  CachedRuntime() = *found;
}

const v1::Runtime& Conformance::runtime_info() const {
  return *CachedRuntime();
}

bool Conformance::RuntimeClaims(v1::Guarantee guarantee) const {
  const auto& list = runtime_info().guarantees();
  return std::find(list.begin(), list.end(), guarantee) != list.end();
}

std::string Conformance::Create(const std::vector<std::string>& flags) {
  std::vector<std::string> args = {"create", "--runtime", runtime()};
  args.insert(args.end(), flags.begin(), flags.end());
  auto created = daemon_->Cli(args);
  INFO(created.err << daemon_->log());
  REQUIRE(created.exit_code == 0);
  const std::string id = Trim(created.out);
  REQUIRE(id.size() == 32);
  // A default-runtime fallback must never let a test pass on another runtime.
  REQUIRE(Get(id).runtime() == runtime());
  return id;
}

v1::Sandbox Conformance::CreateApi(v1::CreateSandboxRequest request) {
  request.set_runtime(runtime());
  v1::Sandbox sandbox;
  try {
    sandbox = daemon_->CreateSandbox(request);
  } catch (const std::exception& e) {
    FAIL(e.what() << "\n" << daemon_->log());
  }
  REQUIRE(sandbox.runtime() == runtime());
  return sandbox;
}

v1::Sandbox Conformance::Get(const std::string& id) {
  auto stub = v1::Sandboxes::NewStub(daemon_->Channel());
  grpc::ClientContext context;
  v1::GetSandboxRequest request;
  request.set_id(id);
  v1::Sandbox sandbox;
  grpc::Status status = stub->GetSandbox(&context, request, &sandbox);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return sandbox;
}

CommandResult Conformance::Cli(const std::vector<std::string>& args,
                               const std::string& stdin_data) const {
  return daemon_->Cli(args, stdin_data);
}

CommandResult Conformance::Run(const std::vector<std::string>& args,
                               const std::string& stdin_data) const {
  std::vector<std::string> all = {"run", "--runtime", runtime()};
  all.insert(all.end(), args.begin(), args.end());
  return daemon_->Cli(all, stdin_data);
}

CommandResult Conformance::Sh(
    const std::string& id, const std::string& script,
    const std::vector<std::string>& exec_flags) const {
  std::vector<std::string> args = {"exec"};
  args.insert(args.end(), exec_flags.begin(), exec_flags.end());
  args.insert(args.end(), {id, "--", "sh", "-c", script});
  return daemon_->Cli(args);
}

void Conformance::NoteUnclaimed(const v1::Sandbox& sandbox,
                                v1::Guarantee guarantee) const {
  std::printf("runtime %s does not claim %s for sandbox %s: not checked\n",
              runtime().c_str(), GuaranteeName(guarantee).c_str(),
              sandbox.id().c_str());
  std::fflush(stdout);
}

bool HasGuarantee(const v1::Sandbox& sandbox, v1::Guarantee guarantee) {
  const auto& list = sandbox.guarantees();
  return std::find(list.begin(), list.end(), guarantee) != list.end();
}

std::string PidNamespaceOf(const Conformance& suite, const std::string& id) {
  auto r = suite.Sh(id, "readlink /proc/self/ns/pid");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const std::string ns = Trim(r.out);
  REQUIRE(ns.rfind("pid:[", 0) == 0);
  return ns;
}

bool SeparateKernel(const Conformance& suite) {
  return suite.RuntimeClaims(v1::GUARANTEE_SEPARATE_KERNEL);
}

std::string IsolationDomainOf(const Conformance& suite, const std::string& id) {
  if (!SeparateKernel(suite)) return PidNamespaceOf(suite, id);
  auto r = suite.Sh(id, "cat /proc/sys/kernel/random/boot_id");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const std::string boot_id = Trim(r.out);
  REQUIRE(boot_id.size() == 36);
  return "boot:" + boot_id;
}

namespace {

// The pids in the host's /proc, as it lists them now.
std::vector<pid_t> HostPids() {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (pid > 0 && *end == '\0') pids.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return pids;
}

}  // namespace

std::vector<HostProcess> SandboxHostProcesses(const Conformance& suite,
                                              const std::string& id) {
  if (!SeparateKernel(suite)) {
    std::vector<HostProcess> found = HostProcessesIn(PidNamespaceOf(suite, id));
    for (HostProcess& process : found)
      process.ends_sandbox = process.ns_pid == 1;
    return found;
  }
  // A VM's host processes: the cgroup paths the runtime made for it end in
  // its id.
  std::vector<HostProcess> found;
  for (const pid_t pid : HostPids()) {
    const std::string dir = "/proc/" + std::to_string(pid);
    if (ReadWhole(dir + "/cgroup").find("/" + id + "\n") == std::string::npos) {
      continue;
    }
    HostProcess process;
    if (!ReadHostProcess(pid, &process)) continue;
    // The VMM: QEMU, or Firecracker (a fake here, whose QEMU ends with it).
    const std::string comm = Trim(ReadWhole(dir + "/comm"));
    process.ends_sandbox =
        comm.rfind("qemu-system", 0) == 0 || comm == "firecracker";
    found.push_back(process);
  }
  return found;
}

std::vector<HostProcess> HostProcessesIn(const std::string& pid_namespace) {
  std::vector<HostProcess> found;
  for (const pid_t pid : HostPids()) {
    char link[128];
    const std::string path = "/proc/" + std::to_string(pid) + "/ns/pid";
    const ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
    if (n <= 0 || std::string(link, n) != pid_namespace) continue;
    HostProcess process;
    if (ReadHostProcess(pid, &process)) found.push_back(process);
  }
  return found;
}

std::vector<HostProcess> StillAlive(const std::vector<HostProcess>& processes) {
  std::vector<HostProcess> alive;
  for (const HostProcess& process : processes) {
    HostProcess now;
    if (ReadHostProcess(process.pid, &now) &&
        now.start_time == process.start_time) {
      alive.push_back(process);
    }
  }
  return alive;
}

std::string Leftovers(const Daemon& daemon, const std::string& id,
                      const std::vector<HostProcess>& processes) {
  std::string found;
  for (int attempt = 0; attempt < 50; ++attempt) {
    found.clear();
    for (const HostProcess& process : StillAlive(processes)) {
      found += "process " + std::to_string(process.pid) + "\n";
    }
    auto cgroups = Sh("find /sys/fs/cgroup -maxdepth 6 -type d -name '*" + id +
                      "*' 2>/dev/null");
    if (!Trim(cgroups.out).empty()) found += "cgroups:\n" + cgroups.out;
    auto files = Sh("find '" + daemon.state_dir() + "' -name '*" + id +
                    "*' 2>/dev/null");
    if (!Trim(files.out).empty()) found += "files:\n" + files.out;
    auto mounts = Sh("grep -F '" + id + "' /proc/self/mountinfo");
    if (!Trim(mounts.out).empty()) found += "mounts:\n" + mounts.out;
    // A workspace disk's loop device goes with the sandbox's last mount.
    auto loops = Sh("losetup -a 2>/dev/null | grep -F '" + id + "'");
    if (!Trim(loops.out).empty()) found += "loop devices:\n" + loops.out;
    if (found.empty()) return found;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return found;
}

v1::Sandbox WaitForState(Conformance& suite, const std::string& id,
                         v1::SandboxState state, int seconds) {
  v1::Sandbox sandbox;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  do {
    sandbox = suite.Get(id);
    if (sandbox.state() == state) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (std::chrono::steady_clock::now() < deadline);
  return sandbox;
}

}  // namespace corral::testing::conformance
