// Integration tests of the oci runtime plugin through its C ABI: the real
// oci.so, corral-oci-exec, runc or crun, and the real corral-agent. Every
// test case runs once with runc and once with crun (GENERATE); a runtime
// that is not installed fails the test (it is installed on every build
// host, see PLATFORM.md).
#include <dlfcn.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "spdlog/spdlog.h"
#include "tests/integration/linux_test_support.h"

namespace lt = corral::linux_test;
namespace bv1 = corral::backend::v1;

namespace {

// One cgroup parent per test process: the reconcile test removes every
// sandbox-named cgroup under its parent that it does not know, which would
// include the sandboxes of tests running beside it.
const std::string& CgroupParent() {
  static const std::string parent =
      "corral-test-oci/p" + std::to_string(::getpid());
  return parent;
}

// Removes this process's (by then empty) cgroup parent at exit.
struct CgroupParentCleanup {
  // Makes the name first, so that it is destroyed after this object.
  CgroupParentCleanup() { CgroupParent(); }
  ~CgroupParentCleanup() {
    std::error_code error;
    for (const auto& hierarchy :
         std::filesystem::directory_iterator("/sys/fs/cgroup", error)) {
      ::rmdir((hierarchy.path().string() + "/" + CgroupParent()).c_str());
    }
    ::rmdir(("/sys/fs/cgroup/" + CgroupParent()).c_str());
  }
} cgroup_parent_cleanup;

const corral_backend_v1* OciPlugin() {
  static const corral_backend_v1* table = [] {
    std::string path = std::string(CORRAL_BINARY_DIR) + "/lib/corral/oci.so";
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) throw std::runtime_error(dlerror());
    auto entry = reinterpret_cast<corral_backend_entry_fn>(
        dlsym(library, CORRAL_BACKEND_ENTRY_SYMBOL));
    if (entry == nullptr) throw std::runtime_error("no corral_backend_entry");
    return entry(CORRAL_BACKEND_ABI_VERSION);
  }();
  return table;
}

lt::CallResult Call(corral_backend_call call,
                    const google::protobuf::MessageLite& request) {
  std::string bytes = request.SerializeAsString();
  corral_result result{};
  result.agent_fd = -1;
  lt::CallResult out;
  out.code = call(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                  &result);
  if (result.error_message) out.error = result.error_message;
  if (result.response) {
    out.response.assign(reinterpret_cast<char*>(result.response),
                        result.response_size);
  }
  out.agent_fd.Reset(result.agent_fd);
  OciPlugin()->free_result(&result);
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

std::string NsLink(const std::string& pid, const char* ns) {
  char buffer[256] = {};
  std::string path = "/proc/" + pid + "/ns/" + ns;
  ssize_t n = readlink(path.c_str(), buffer, sizeof(buffer) - 1);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
}

bool ProcessGone(pid_t pid) {
  for (int i = 0; i < 300; ++i) {
    std::string stat = ReadAll("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return true;
    auto close = stat.rfind(')');
    if (close != std::string::npos && stat.size() > close + 2 &&
        stat[close + 2] == 'Z') {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Mount points of every cgroup hierarchy, and of the v1 memory controller.
std::vector<std::string> CgroupMounts(std::string* memory = nullptr,
                                      std::string* pids = nullptr,
                                      std::string* cpu = nullptr) {
  std::vector<std::string> mounts;
  std::istringstream lines(ReadAll("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::vector<std::string> parts;
    std::string field;
    while (fields >> field) parts.push_back(field);
    auto dash = std::find(parts.begin(), parts.end(), "-");
    if (dash == parts.end() || dash + 3 >= parts.end()) continue;
    if (*(dash + 1) != "cgroup" && *(dash + 1) != "cgroup2") continue;
    mounts.push_back(parts[4]);
    std::string options = "," + *(dash + 3) + ",";
    if (*(dash + 1) == "cgroup2") {
      std::string controllers = ReadAll(parts[4] + "/cgroup.controllers");
      if (controllers.find("memory") != std::string::npos) {
        if (memory) *memory = parts[4];
        if (pids) *pids = parts[4];
        if (cpu) *cpu = parts[4];
      }
    } else {
      if (memory && options.find(",memory,") != std::string::npos)
        *memory = parts[4];
      if (pids && options.find(",pids,") != std::string::npos) *pids = parts[4];
      if (cpu && options.find(",cpu,") != std::string::npos) *cpu = parts[4];
      if (cpu && options.find(",cpu,cpuacct,") != std::string::npos)
        *cpu = parts[4];
    }
  }
  return mounts;
}

// Temporary directories for one test, and the plugin config for `runtime`.
class Environment {
 public:
  explicit Environment(std::string runtime) : runtime_(std::move(runtime)) {
    corral::platform::StartChildReaper();
    char base[] = "/tmp/corral-oci-test-XXXXXX";
    if (mkdtemp(base) == nullptr) throw std::runtime_error("mkdtemp");
    base_ = base;
    std::filesystem::create_directories(runtime_dir());
    chmod(runtime_dir().c_str(), 0700);
  }
  ~Environment() {
    std::error_code error;
    std::filesystem::remove_all(base_, error);
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  std::string runtime_dir() const { return base_ + "/runtime"; }
  std::string base() const { return base_; }
  const std::string& runtime() const { return runtime_; }

  bv1::PluginConfig Config() const {
    bv1::PluginConfig config;
    config.set_runtime_dir(runtime_dir());
    config.set_agent_path(std::string(CORRAL_BINARY_DIR) + "/bin/corral-agent");
    config.set_plugin_dir(std::string(CORRAL_BINARY_DIR) + "/lib/corral");
    (*config.mutable_options())["cgroup_parent"] = CgroupParent();
    (*config.mutable_options())["runtime"] = runtime_;
    return config;
  }

  bv1::SandboxSpec Spec(uint32_t host_uid = 1'500'000) {
    bv1::SandboxSpec spec;
    spec.set_id(lt::RandomId());
    std::string workspace = base_ + "/ws-" + spec.id();
    std::filesystem::create_directories(workspace);
    chmod(workspace.c_str(), 0700);
    spec.set_workspace_dir(workspace);
    spec.mutable_rootfs()->set_host(true);
    spec.set_hostname("sandbox-test");
    spec.set_cpu_millis(1000);
    spec.set_memory_bytes(256ull << 20);
    spec.set_pids(128);
    spec.set_disk_bytes(64ull << 20);
    spec.set_host_uid(host_uid);
    spec.set_host_gid(host_uid);
    return spec;
  }

  // Nothing of sandbox `id` is left on the host.
  std::string Leftovers(const std::string& id) const {
    std::string found;
    if (Exists(runtime_dir() + "/" + id)) found += " sandbox-dir";
    if (Exists(runtime_dir() + "/state/" + id)) found += " runtime-state";
    for (const std::string& mount : CgroupMounts()) {
      std::string dir = mount + "/" + CgroupParent() + "/" + id;
      if (Exists(dir)) found += " " + dir;
    }
    return found;
  }

 private:
  std::string runtime_;
  std::string base_;
};

class Sandbox {
 public:
  Sandbox(const Environment& env, const bv1::SandboxSpec& spec)
      : config_(env.Config()), spec_(spec) {
    bv1::CreateRequest request;
    *request.mutable_config() = config_;
    *request.mutable_spec() = spec;
    lt::CallResult result = Call(OciPlugin()->create, request);
    code_ = result.code;
    error_ = result.error;
    if (code_ == 0) {
      response_.ParseFromString(result.response);
      client_.emplace(std::move(result.agent_fd));
    }
  }
  ~Sandbox() {
    if (code_ == 0) Destroy();
  }
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& error() const { return error_; }
  const bv1::CreateResponse& response() const { return response_; }
  const bv1::SandboxSpec& spec() const { return spec_; }

  lt::AgentClient& Ready() {
    if (!hello_) hello_ = client_->ReadHello();
    return *client_;
  }
  const std::optional<corral::agent::v1::Hello>& hello() const {
    return hello_;
  }

  pid_t InitPid() const {
    const std::string& state = response_.handle().state();
    auto at = state.find("init_pid=");
    if (at == std::string::npos) return -1;
    return static_cast<pid_t>(std::stol(state.substr(at + 9)));
  }

  lt::CallResult Destroy() {
    bv1::DestroyRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    return Call(OciPlugin()->destroy, request);
  }

  lt::CallResult Attach() {
    bv1::AttachRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    return Call(OciPlugin()->attach, request);
  }

  std::optional<bv1::StatsResponse> Stats() {
    bv1::StatsRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    lt::CallResult result = Call(OciPlugin()->stats, request);
    if (result.code != 0) return std::nullopt;
    bv1::StatsResponse stats;
    stats.ParseFromString(result.response);
    return stats;
  }

 private:
  bv1::PluginConfig config_;
  bv1::SandboxSpec spec_;
  int code_ = -1;
  std::string error_;
  bv1::CreateResponse response_;
  std::optional<lt::AgentClient> client_;
  std::optional<corral::agent::v1::Hello> hello_;
};

std::string Runtime() { return GENERATE(as<std::string>{}, "runc", "crun"); }

}  // namespace

TEST_CASE("oci probe reports the runtime and guarantees",
          "[oci][integration]") {
  const std::string runtime = Runtime();
  Environment env(runtime);
  bv1::ProbeRequest request;
  *request.mutable_config() = env.Config();
  lt::CallResult result = Call(OciPlugin()->probe, request);
  REQUIRE(result.code == 0);
  bv1::ProbeResponse response;
  REQUIRE(response.ParseFromString(result.response));
  INFO(response.reason());
  CHECK(response.available());
  std::vector<int> guarantees(response.guarantees().begin(),
                              response.guarantees().end());
  for (int wanted : {2, 3, 4, 6}) {
    CHECK(std::find(guarantees.begin(), guarantees.end(), wanted) !=
          guarantees.end());
  }
  CHECK(response.details().at("runtime").find("/" + runtime) !=
        std::string::npos);
  CHECK(
      response.details().at("runtime_version").rfind(runtime + " version", 0) ==
      0);
  CHECK(response.details().at("seccomp") == "yes");
  CHECK(response.details().at("cgroup_parent") == CgroupParent());

  // A runtime that is not there: unavailable, saying which.
  (*request.mutable_config()->mutable_options())["runtime"] =
      "/nonexistent/" + runtime;
  result = Call(OciPlugin()->probe, request);
  REQUIRE(result.code == 0);
  REQUIRE(response.ParseFromString(result.response));
  CHECK_FALSE(response.available());
  CHECK(response.reason().find("/nonexistent/" + runtime) != std::string::npos);
  CHECK(response.guarantees_size() == 0);
  // A relative name is refused outright.
  (*request.mutable_config()->mutable_options())["runtime"] = "bin/runc";
  result = Call(OciPlugin()->probe, request);
  REQUIRE(response.ParseFromString(result.response));
  CHECK_FALSE(response.available());
}

TEST_CASE("oci create, attach, destroy", "[oci][integration]") {
  const std::string runtime = Runtime();
  Environment env(runtime);
  bv1::SandboxSpec spec = env.Spec();
  spec.set_memory_bytes(96ull << 20);
  spec.set_pids(48);
  spec.set_cpu_millis(500);
  auto sandbox = std::make_unique<Sandbox>(env, spec);
  INFO(runtime << ": " << sandbox->error());
  REQUIRE(sandbox->ok());

  auto& agent = sandbox->Ready();
  REQUIRE(sandbox->hello().has_value());
  CHECK(sandbox->hello()->protocol_version() == 1);
  CHECK(sandbox->hello()->pid() == 1);
  std::vector<int> guarantees(sandbox->response().guarantees().begin(),
                              sandbox->response().guarantees().end());
  for (int wanted : {2, 3, 4, 6}) {
    CHECK(std::find(guarantees.begin(), guarantees.end(), wanted) !=
          guarantees.end());
  }
  const pid_t init = sandbox->InitPid();
  REQUIRE(init > 1);
  const std::string init_pid = std::to_string(init);

  SECTION("the agent lives in new namespaces, mapped, OOM-shielded") {
    for (const char* ns :
         {"mnt", "pid", "net", "ipc", "uts", "user", "cgroup"}) {
      INFO(ns);
      std::string theirs = NsLink(init_pid, ns);
      REQUIRE_FALSE(theirs.empty());
      CHECK(NsLink("self", ns) != theirs);
    }
    std::string uid_map = ReadAll("/proc/" + init_pid + "/uid_map");
    CHECK(uid_map.find("1500000") != std::string::npos);
    std::string caps = ReadAll("/proc/self/status");
    uint64_t effective =
        std::stoull(caps.substr(caps.find("CapEff:") + 7), nullptr, 16);
    if ((effective >> 24) & 1) {
      CHECK(Trim(ReadAll("/proc/" + init_pid + "/oom_score_adj")) == "-1000");
    }
    // The executable is the sealed memfd, not a host file.
    char exe[256] = {};
    REQUIRE(readlink(("/proc/" + init_pid + "/exe").c_str(), exe,
                     sizeof(exe) - 1) > 0);
    CHECK(std::string(exe).rfind("/memfd:corral-agent", 0) == 0);
  }

  SECTION("the agent holds no fd of this process") {
    for (const auto& entry :
         std::filesystem::directory_iterator("/proc/" + init_pid + "/fd")) {
      char target[512] = {};
      ssize_t n = readlink(entry.path().c_str(), target, sizeof(target) - 1);
      REQUIRE(n > 0);
      std::string link(target, static_cast<size_t>(n));
      INFO(entry.path().string() << " -> " << link);
      bool harmless = link == "/dev/null" || link.rfind("socket:", 0) == 0 ||
                      link.rfind("pipe:", 0) == 0 ||
                      link.rfind("anon_inode:", 0) == 0 ||
                      link.rfind("/memfd:corral-agent", 0) == 0;
      CHECK(harmless);
    }
  }

  SECTION("cgroup limits are written") {
    std::string memory, pids, cpu;
    CgroupMounts(&memory, &pids, &cpu);
    const std::string tail = "/" + CgroupParent() + "/" + spec.id();
    REQUIRE_FALSE(memory.empty());
    if (Exists(memory + tail + "/memory.limit_in_bytes")) {
      CHECK(Trim(ReadAll(memory + tail + "/memory.limit_in_bytes")) ==
            std::to_string(96ull << 20));
      CHECK(Trim(ReadAll(pids + tail + "/pids.max")) == "48");
      CHECK(Trim(ReadAll(cpu + tail + "/cpu.cfs_quota_us")) == "50000");
      CHECK(Trim(ReadAll(cpu + tail + "/cpu.cfs_period_us")) == "100000");
    } else {
      CHECK(Trim(ReadAll(memory + tail + "/memory.max")) ==
            std::to_string(96ull << 20));
      CHECK(Trim(ReadAll(memory + tail + "/pids.max")) == "48");
      CHECK(Trim(ReadAll(memory + tail + "/cpu.max")) == "50000 100000");
    }
    CHECK(ReadAll(memory + tail + "/cgroup.procs").find(init_pid) !=
          std::string::npos);
  }

  SECTION("commands run, and the sandbox is what the linux runtime gives") {
    auto result = agent.Exec({"/bin/echo", "hello"});
    REQUIRE(result.finished);
    CHECK(result.exit_code == 0);
    CHECK(result.out == "hello\n");
    auto stats = sandbox->Stats();
    REQUIRE(stats.has_value());
    CHECK(stats->pids() >= 1);
    CHECK(stats->memory_bytes() > 0);
    CHECK(stats->oom_kills() == 0);

    result = agent.Sh(
        "hostname; id -u; grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):'"
        " /proc/self/status; ls /sys/class/net; cat /etc/hostname");
    INFO(result.out << result.err);
    CHECK(result.out.find("sandbox-test\n0\n") == 0);
    CHECK(result.out.find("CapEff:\t0000000000000000") != std::string::npos);
    CHECK(result.out.find("CapBnd:\t0000000000000000") != std::string::npos);
    CHECK(result.out.find("NoNewPrivs:\t1") != std::string::npos);
    CHECK(result.out.find("Seccomp:\t2") != std::string::npos);
    CHECK(result.out.find("\nlo\nsandbox-test\n") != std::string::npos);

    // Read-only root and /dev, writable /tmp and /workspace.
    result = agent.Sh(
        "touch /x 2>/dev/null; echo root=$?; touch /dev/x 2>/dev/null; "
        "echo dev=$?; touch /tmp/x /workspace/x && echo rw=ok; "
        "stat -c %u /tmp/x /workspace/x; df -k /tmp | tail -1");
    INFO(result.out << result.err);
    CHECK(result.out.find("root=1\ndev=1\nrw=ok\n0\n0\n") == 0);
    CHECK(result.out.find(" 65536 ") != std::string::npos);
    // The workspace is the disk image's filesystem, mounted only in the
    // container's namespace: its files are in the image, not in the
    // directory on the host.
    CHECK(Exists(spec.workspace_dir() + "/disk.ext4"));
    CHECK_FALSE(Exists(spec.workspace_dir() + "/x"));

    // Masks, seccomp and no host secrets.
    result = agent.Sh(
        "for f in keys timer_list sysrq-trigger; do "
        "[ -e /proc/$f ] && echo $f=$(wc -c < /proc/$f); done; "
        "ls /proc/acpi 2>/dev/null | wc -l; "
        "(echo 1 > /proc/sys/kernel/ostype) 2>/dev/null && echo sys=written; "
        "unshare -U true 2>/dev/null; echo unshare=$?; "
        "ls /etc/shadow /root/.ssh /var/lib 2>/dev/null | wc -l; "
        "ls /dev | tr '\\n' ' '");
    INFO(result.out << result.err);
    for (const char* file : {"keys", "timer_list", "sysrq-trigger"}) {
      if (Exists(std::string("/proc/") + file)) {
        CHECK(result.out.find(std::string(file) + "=0\n") != std::string::npos);
      }
    }
    CHECK(result.out.find("sys=written") == std::string::npos);
    CHECK(result.out.find("\n0\nunshare=1\n0\n") != std::string::npos);
    for (const char* device : {"null", "zero", "full", "random", "urandom",
                               "tty", "pts", "ptmx", "shm"}) {
      CHECK(result.out.find(std::string(device) + " ") != std::string::npos);
    }
    CHECK(result.out.find("mqueue") == std::string::npos);
  }

  SECTION("attach reconnects while alive") {
    lt::CallResult result = sandbox->Attach();
    INFO(result.error);
    REQUIRE(result.code == 0);
    bv1::AttachResponse response;
    REQUIRE(response.ParseFromString(result.response));
    INFO(response.reason());
    CHECK(response.alive());
    REQUIRE(result.agent_fd.valid());
    lt::AgentClient second(std::move(result.agent_fd));
    REQUIRE(second.ReadHello().has_value());
    CHECK(second.Exec({"/bin/true"}).exit_code == 0);
  }

  SECTION("destroy leaves nothing, twice, and attach then says dead") {
    lt::CallResult destroyed = sandbox->Destroy();
    INFO(destroyed.error);
    REQUIRE(destroyed.code == 0);
    CHECK(ProcessGone(init));
    CHECK(env.Leftovers(spec.id()).empty());
    CHECK(sandbox->Destroy().code == 0);
    lt::CallResult result = sandbox->Attach();
    REQUIRE(result.code == 0);
    bv1::AttachResponse response;
    REQUIRE(response.ParseFromString(result.response));
    CHECK_FALSE(response.alive());
    CHECK_FALSE(response.reason().empty());
    CHECK_FALSE(result.agent_fd.valid());
  }
}

TEST_CASE("oci without a user namespace", "[oci][integration]") {
  const std::string runtime = Runtime();
  Environment env(runtime);
  Sandbox sandbox(env, env.Spec(/*host_uid=*/0));
  INFO(runtime << ": " << sandbox.error());
  REQUIRE(sandbox.ok());
  std::vector<int> guarantees(sandbox.response().guarantees().begin(),
                              sandbox.response().guarantees().end());
  CHECK(std::find(guarantees.begin(), guarantees.end(), 6) == guarantees.end());
  CHECK(NsLink(std::to_string(sandbox.InitPid()), "user") ==
        NsLink("self", "user"));
  auto result = sandbox.Ready().Sh(
      "grep CapEff /proc/self/status; touch /workspace/y && echo ok");
  CHECK(result.out == "CapEff:\t0000000000000000\nok\n");
}

TEST_CASE("oci sandbox whose agent died", "[oci][integration]") {
  const std::string runtime = Runtime();
  Environment env(runtime);
  Sandbox sandbox(env, env.Spec());
  INFO(sandbox.error());
  REQUIRE(sandbox.ok());
  REQUIRE(sandbox.Ready().Ping(42));
  const pid_t init = sandbox.InitPid();
  kill(init, SIGKILL);
  REQUIRE(ProcessGone(init));
  lt::CallResult result = sandbox.Attach();
  REQUIRE(result.code == 0);
  bv1::AttachResponse response;
  REQUIRE(response.ParseFromString(result.response));
  CHECK_FALSE(response.alive());
  CHECK(sandbox.Destroy().code == 0);
  CHECK(env.Leftovers(sandbox.spec().id()).empty());
}

TEST_CASE("oci create failures leave nothing behind", "[oci][integration]") {
  const std::string runtime = Runtime();
  Environment env(runtime);
  bv1::SandboxSpec spec = env.Spec();

  SECTION("an image without mount points is refused") {
    std::string empty = env.base() + "/empty-rootfs";
    std::filesystem::create_directories(empty + "/proc");
    spec.mutable_rootfs()->set_directory(empty);
    Sandbox sandbox(env, spec);
    CHECK_FALSE(sandbox.ok());
    CHECK(sandbox.error().find("/sys") != std::string::npos);
    CHECK(env.Leftovers(spec.id()).empty());
    // Nothing was created inside the shared image.
    CHECK_FALSE(Exists(empty + "/dev"));
  }
  SECTION("an unknown runtime option") {
    (*spec.mutable_runtime_options())["gpu"] = "yes";
    Sandbox sandbox(env, spec);
    CHECK(sandbox.code() == 3);
    CHECK(sandbox.error().find("'gpu'") != std::string::npos);
    CHECK(env.Leftovers(spec.id()).empty());
  }
  SECTION("an image whose /dev is a file is refused") {
    std::string image = env.base() + "/bad-image";
    for (const char* dir : {"proc", "sys", "tmp", "workspace"}) {
      std::filesystem::create_directories(image + "/" + dir);
    }
    std::ofstream(image + "/dev") << "not a directory";
    spec.mutable_rootfs()->set_directory(image);
    Sandbox sandbox(env, spec);
    CHECK_FALSE(sandbox.ok());
    CHECK(sandbox.error().find("/dev is not a directory") != std::string::npos);
    CHECK(env.Leftovers(spec.id()).empty());
  }
  SECTION("a failure of the runtime is reported and cleaned up") {
    // A cgroup parent that is a file in every hierarchy: the runtime
    // cannot make the container's cgroups.
    bv1::CreateRequest request;
    *request.mutable_config() = env.Config();
    (*request.mutable_config()->mutable_options())["cgroup_parent"] =
        "cgroup.procs";
    *request.mutable_spec() = spec;
    lt::CallResult result = Call(OciPlugin()->create, request);
    INFO(result.error);
    CHECK(result.code != 0);
    CHECK(result.error.rfind(runtime + " run: ", 0) == 0);
    CHECK_FALSE(result.agent_fd.valid());
    CHECK(env.Leftovers(spec.id()).empty());
  }
  SECTION("an id that is already in use is refused and kept") {
    Sandbox first(env, spec);
    REQUIRE(first.ok());
    Sandbox second(env, spec);
    CHECK(second.code() == 6);  // ALREADY_EXISTS
    REQUIRE(first.Ready().Ping(7));
  }
}

TEST_CASE("oci image directory rootfs", "[oci][integration]") {
  const std::string runtime = Runtime();
  Environment env(runtime);
  // A minimal image: busybox and the mount points, in a root-only
  // directory (as the daemon's image store is).
  std::string image = env.base() + "/images/busybox";
  for (const char* dir : {"bin", "proc", "sys", "dev", "tmp", "workspace"}) {
    std::filesystem::create_directories(image + "/" + dir);
  }
  chmod((env.base() + "/images").c_str(), 0700);
  std::filesystem::copy_file("/bin/busybox", image + "/bin/busybox");
  for (const char* applet : {"sh", "ls", "touch", "cat"}) {
    std::filesystem::create_symlink("busybox", image + "/bin/" + applet);
  }
  bv1::SandboxSpec spec = env.Spec();
  spec.mutable_rootfs()->set_directory(image);
  Sandbox sandbox(env, spec);
  INFO(sandbox.error());
  REQUIRE(sandbox.ok());
  auto result = sandbox.Ready().Sh("ls /; touch /x 2>&1; echo $?");
  REQUIRE(result.finished);
  CHECK(result.out.find("workspace") != std::string::npos);
  CHECK(result.out.find("Read-only file system") != std::string::npos);
  CHECK(result.out.find("usr") == std::string::npos);
  // The runtime wrote nothing into the shared image.
  std::vector<std::string> entries;
  for (const auto& entry : std::filesystem::directory_iterator(image)) {
    entries.push_back(entry.path().filename().string());
  }
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"bin", "dev", "proc", "sys", "tmp",
                                            "workspace"});
  CHECK(std::filesystem::is_empty(image + "/dev"));
}

TEST_CASE("oci reconcile removes unknown containers", "[oci][integration]") {
  const std::string runtime = Runtime();
  Environment env(runtime);
  Sandbox kept(env, env.Spec());
  Sandbox stray(env, env.Spec());
  REQUIRE(kept.ok());
  REQUIRE(stray.ok());
  const pid_t stray_init = stray.InitPid();
  const std::string orphan = lt::RandomId();
  std::filesystem::create_directories(env.runtime_dir() + "/" + orphan);
  std::filesystem::create_directories(env.runtime_dir() + "/not-a-sandbox");

  bv1::ReconcileRequest request;
  *request.mutable_config() = env.Config();
  request.add_known_ids(kept.spec().id());
  lt::CallResult result = Call(OciPlugin()->reconcile, request);
  INFO(result.error);
  REQUIRE(result.code == 0);
  bv1::ReconcileResponse response;
  REQUIRE(response.ParseFromString(result.response));
  std::vector<std::string> removed(response.removed_ids().begin(),
                                   response.removed_ids().end());
  std::sort(removed.begin(), removed.end());
  std::vector<std::string> expected = {stray.spec().id(), orphan};
  std::sort(expected.begin(), expected.end());
  CHECK(removed == expected);
  CHECK(ProcessGone(stray_init));
  CHECK(env.Leftovers(stray.spec().id()).empty());
  CHECK(env.Leftovers(orphan).empty());
  CHECK(Exists(env.runtime_dir() + "/not-a-sandbox"));
  CHECK(kept.Ready().Exec({"/bin/true"}).exit_code == 0);
}

TEST_CASE("oci create-to-hello time", "[.][bench][oci]") {
  if (std::getenv("CORRAL_OCI_DEBUG")) spdlog::set_level(spdlog::level::debug);
  for (const char* runtime : {"runc", "crun"}) {
    Environment env(runtime);
    std::vector<double> samples, destroys;
    for (int i = 0; i < 30; ++i) {
      auto start = std::chrono::steady_clock::now();
      Sandbox sandbox(env, env.Spec());
      REQUIRE(sandbox.ok());
      sandbox.Ready();
      REQUIRE(sandbox.hello().has_value());
      auto hello = std::chrono::steady_clock::now();
      samples.push_back(
          std::chrono::duration<double, std::milli>(hello - start).count());
      REQUIRE(sandbox.Destroy().code == 0);
      destroys.push_back(std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - hello)
                             .count());
    }
    std::sort(samples.begin(), samples.end());
    std::sort(destroys.begin(), destroys.end());
    std::printf(
        "%s: create-to-hello over %zu runs: median %.1f ms, min %.1f ms, "
        "p90 %.1f ms; destroy median %.1f ms\n",
        runtime, samples.size(), samples[samples.size() / 2], samples.front(),
        samples[samples.size() * 9 / 10], destroys[destroys.size() / 2]);
  }
}
