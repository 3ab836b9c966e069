// Integration tests of the linux runtime plugin through its C ABI: the real
// linux.so, the real launcher and the real corral-agent.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "spdlog/spdlog.h"
#include "tests/integration/linux_test_support.h"

namespace lt = corral::linux_test;

namespace {

std::string StateValue(const std::string& state, const std::string& key) {
  std::istringstream lines(state);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  return "";
}

std::vector<std::string> CgroupDirs(const std::string& state) {
  std::vector<std::string> dirs;
  for (const char* role :
       {"memory", "pids", "cpu", "cpuacct", "freezer", "unified"}) {
    std::string dir = StateValue(state, std::string("cgroup.") + role);
    if (!dir.empty()) dirs.push_back(dir);
  }
  return dirs;
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

// True when no process with this pid runs anymore (gone, or a zombie about to
// be reaped).
bool ProcessGone(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
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

lt::CallResult Reconcile(const lt::Environment& env,
                         const std::vector<std::string>& known) {
  lt::bv1::ReconcileRequest request;
  *request.mutable_config() = env.Config();
  for (const auto& id : known) request.add_known_ids(id);
  return lt::Call(lt::Plugin()->reconcile, request);
}

}  // namespace

TEST_CASE("linux probe reports availability and guarantees",
          "[linux][integration]") {
  lt::Environment env;
  lt::bv1::ProbeRequest request;
  *request.mutable_config() = env.Config();
  lt::CallResult result = lt::Call(lt::Plugin()->probe, request);
  REQUIRE(result.code == 0);
  lt::bv1::ProbeResponse response;
  REQUIRE(response.ParseFromString(result.response));
  INFO(response.reason());
  CHECK(response.available());
  std::vector<int> guarantees(response.guarantees().begin(),
                              response.guarantees().end());
  for (int wanted : {2, 3, 4, 6}) {
    CHECK(std::find(guarantees.begin(), guarantees.end(), wanted) !=
          guarantees.end());
  }
  CHECK_FALSE(response.details().at("cgroup").empty());
  CHECK(response.details().at("cgroup") != "none");

  // A missing launcher makes it unavailable, with the reason.
  *request.mutable_config() = env.Config();
  request.mutable_config()->set_plugin_dir("/nonexistent");
  result = lt::Call(lt::Plugin()->probe, request);
  REQUIRE(result.code == 0);
  REQUIRE(response.ParseFromString(result.response));
  CHECK_FALSE(response.available());
  CHECK(response.reason().find("corral-linux-launch") != std::string::npos);
  CHECK(response.guarantees_size() == 0);
}

TEST_CASE("linux create, attach, destroy", "[linux][integration]") {
  lt::Environment env;
  lt::bv1::SandboxSpec spec = env.Spec();
  spec.set_memory_bytes(96ull << 20);
  spec.set_pids(48);
  spec.set_cpu_millis(500);
  auto sandbox = std::make_unique<lt::Sandbox>(env, spec);
  INFO(sandbox->error());
  REQUIRE(sandbox->ok());

  // The agent says hello on the connection create returned.
  auto& agent = sandbox->Ready();
  REQUIRE(sandbox->hello().has_value());
  CHECK(sandbox->hello()->protocol_version() == 1);
  CHECK(sandbox->hello()->pid() == 1);
  std::vector<int> guarantees(sandbox->response().guarantees().begin(),
                              sandbox->response().guarantees().end());
  CHECK(std::find(guarantees.begin(), guarantees.end(), 6) != guarantees.end());

  const std::string state = sandbox->response().handle().state();
  const pid_t init = sandbox->InitPid();
  REQUIRE(init > 1);
  const std::string init_pid = std::to_string(init);

  SECTION("the init lives in new namespaces") {
    for (const char* ns :
         {"mnt", "pid", "net", "ipc", "uts", "user", "cgroup"}) {
      INFO(ns);
      std::string mine = NsLink("self", ns);
      std::string theirs = NsLink(init_pid, ns);
      REQUIRE_FALSE(theirs.empty());
      CHECK(mine != theirs);
    }
    // -1000 needs CAP_SYS_RESOURCE, which some build containers withhold.
    std::string caps = ReadAll("/proc/self/status");
    auto at = caps.find("CapEff:");
    uint64_t effective = std::stoull(caps.substr(at + 7), nullptr, 16);
    if ((effective >> 24) & 1) {
      CHECK(Trim(ReadAll("/proc/" + init_pid + "/oom_score_adj")) == "-1000");
    }
    std::string uid_map = ReadAll("/proc/" + init_pid + "/uid_map");
    CHECK(uid_map.find("1500000") != std::string::npos);
  }

  SECTION("the init holds no fd of this process") {
    for (const auto& entry :
         std::filesystem::directory_iterator("/proc/" + init_pid + "/fd")) {
      char target[512] = {};
      ssize_t n = readlink(entry.path().c_str(), target, sizeof(target) - 1);
      REQUIRE(n > 0);
      std::string link(target, static_cast<size_t>(n));
      INFO(entry.path().string() << " -> " << link);
      bool harmless = link == "/dev/null" || link.rfind("socket:", 0) == 0 ||
                      link.rfind("pipe:", 0) == 0 ||
                      link.rfind("anon_inode:", 0) == 0;
      CHECK(harmless);
    }
  }

  SECTION("cgroup limits are written") {
    std::string memory = StateValue(state, "cgroup.memory");
    std::string pids = StateValue(state, "cgroup.pids");
    REQUIRE_FALSE(memory.empty());
    if (StateValue(state, "cgroup.mode") == "v1") {
      CHECK(Trim(ReadAll(memory + "/memory.limit_in_bytes")) ==
            std::to_string(96ull << 20));
      CHECK(Trim(ReadAll(pids + "/pids.max")) == "48");
      std::string cpu = StateValue(state, "cgroup.cpu");
      CHECK(Trim(ReadAll(cpu + "/cpu.cfs_quota_us")) == "50000");
      CHECK(Trim(ReadAll(cpu + "/cpu.cfs_period_us")) == "100000");
    } else {
      CHECK(Trim(ReadAll(memory + "/memory.max")) ==
            std::to_string(96ull << 20));
      CHECK(Trim(ReadAll(memory + "/pids.max")) == "48");
      CHECK(Trim(ReadAll(memory + "/cpu.max")) == "50000 100000");
    }
    std::string procs = ReadAll(memory + "/cgroup.procs");
    CHECK(procs.find(init_pid) != std::string::npos);
  }

  SECTION("a command runs and stats answer") {
    auto result = agent.Exec({"/bin/echo", "hello"});
    REQUIRE(result.finished);
    CHECK(result.exit_code == 0);
    CHECK(result.out == "hello\n");
    auto stats = sandbox->Stats();
    REQUIRE(stats.has_value());
    CHECK(stats->pids() >= 1);
    CHECK(stats->memory_bytes() > 0);
    CHECK(stats->oom_kills() == 0);
  }

  SECTION("attach reconnects while alive") {
    lt::bv1::AttachRequest request;
    *request.mutable_config() = env.Config();
    *request.mutable_handle() = sandbox->response().handle();
    lt::CallResult result = lt::Call(lt::Plugin()->attach, request);
    REQUIRE(result.code == 0);
    lt::bv1::AttachResponse response;
    REQUIRE(response.ParseFromString(result.response));
    CHECK(response.alive());
    REQUIRE(result.agent_fd.valid());
    lt::AgentClient second(std::move(result.agent_fd));
    auto hello = second.ReadHello();
    REQUIRE(hello.has_value());
    CHECK(second.Exec({"/bin/true"}).exit_code == 0);
  }

  SECTION("destroy leaves nothing, twice, and attach then says dead") {
    lt::CallResult destroyed = sandbox->Destroy();
    INFO(destroyed.error);
    REQUIRE(destroyed.code == 0);
    CHECK(ProcessGone(init));
    for (const std::string& dir : CgroupDirs(state)) {
      INFO(dir);
      CHECK_FALSE(Exists(dir));
    }
    CHECK_FALSE(Exists(env.runtime_dir() + "/" + spec.id()));
    CHECK(sandbox->Destroy().code == 0);

    lt::bv1::AttachRequest request;
    *request.mutable_config() = env.Config();
    *request.mutable_handle() = sandbox->response().handle();
    lt::CallResult result = lt::Call(lt::Plugin()->attach, request);
    REQUIRE(result.code == 0);
    lt::bv1::AttachResponse response;
    REQUIRE(response.ParseFromString(result.response));
    CHECK_FALSE(response.alive());
    CHECK_FALSE(response.reason().empty());
    CHECK_FALSE(result.agent_fd.valid());
  }
}

TEST_CASE("linux sandbox survives the death of a second agent connection",
          "[linux][integration]") {
  lt::Environment env;
  lt::Sandbox sandbox(env, env.Spec());
  REQUIRE(sandbox.ok());
  REQUIRE(sandbox.Ready().Ping(42));
  // Killing the init directly: attach reports it dead, destroy still cleans.
  const pid_t init = sandbox.InitPid();
  kill(init, SIGKILL);
  REQUIRE(ProcessGone(init));
  lt::bv1::AttachRequest request;
  *request.mutable_config() = env.Config();
  *request.mutable_handle() = sandbox.response().handle();
  lt::CallResult result = lt::Call(lt::Plugin()->attach, request);
  REQUIRE(result.code == 0);
  lt::bv1::AttachResponse response;
  REQUIRE(response.ParseFromString(result.response));
  CHECK_FALSE(response.alive());
  CHECK(sandbox.Destroy().code == 0);
  CHECK_FALSE(Exists(env.runtime_dir() + "/" + sandbox.spec().id()));
}

TEST_CASE("linux create failures leave nothing behind",
          "[linux][integration]") {
  lt::Environment env;
  lt::bv1::SandboxSpec spec = env.Spec();
  auto nothing_left = [&](const std::string& id) {
    CHECK_FALSE(Exists(env.runtime_dir() + "/" + id));
    for (const char* root : {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids",
                             "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/freezer",
                             "/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
      CHECK_FALSE(
          Exists(std::string(root) + "/" + env.cgroup_parent() + "/" + id));
    }
  };

  SECTION("a rootfs directory that does not exist") {
    spec.mutable_rootfs()->set_directory("/nonexistent/rootfs");
    lt::Sandbox sandbox(env, spec);
    CHECK(sandbox.code() == 3);  // INVALID_ARGUMENT
    CHECK(sandbox.error().find("/nonexistent/rootfs") != std::string::npos);
    nothing_left(spec.id());
  }
  SECTION("a rootfs directory without mount points fails in the launcher") {
    std::string empty = env.base() + "/empty-rootfs";
    std::filesystem::create_directories(empty);
    spec.mutable_rootfs()->set_directory(empty);
    lt::Sandbox sandbox(env, spec);
    CHECK_FALSE(sandbox.ok());
    INFO(sandbox.error());
    CHECK(sandbox.error().find("/proc") != std::string::npos);
    nothing_left(spec.id());
  }
  SECTION("an unknown runtime option") {
    (*spec.mutable_runtime_options())["gpu"] = "yes";
    lt::Sandbox sandbox(env, spec);
    CHECK(sandbox.code() == 3);
    CHECK(sandbox.error().find("'gpu'") != std::string::npos);
    nothing_left(spec.id());
  }
  SECTION("a bad userns value") {
    (*spec.mutable_runtime_options())["userns"] = "maybe";
    lt::Sandbox sandbox(env, spec);
    CHECK(sandbox.code() == 3);
    nothing_left(spec.id());
  }
  SECTION("an agent that is not there") {
    lt::bv1::CreateRequest request;
    *request.mutable_config() = env.Config();
    request.mutable_config()->set_agent_path("/nonexistent/corral-agent");
    *request.mutable_spec() = spec;
    lt::CallResult result = lt::Call(lt::Plugin()->create, request);
    CHECK(result.code != 0);
    CHECK_FALSE(result.agent_fd.valid());
    nothing_left(spec.id());
  }
  SECTION("an id that is already in use is refused and kept") {
    lt::Sandbox first(env, spec);
    REQUIRE(first.ok());
    lt::Sandbox second(env, spec);
    CHECK(second.code() == 6);  // ALREADY_EXISTS
    REQUIRE(first.Ready().Ping(7));
  }
}

TEST_CASE("linux image directory rootfs", "[linux][integration]") {
  lt::Environment env;
  // A minimal image: busybox and the mount points.
  std::string image = env.base() + "/image";
  for (const char* dir : {"bin", "proc", "sys", "dev", "tmp", "workspace"}) {
    std::filesystem::create_directories(image + "/" + dir);
  }
  std::filesystem::copy_file("/bin/busybox", image + "/bin/busybox");
  std::filesystem::create_symlink("busybox", image + "/bin/sh");
  std::filesystem::create_symlink("busybox", image + "/bin/ls");
  lt::bv1::SandboxSpec spec = env.Spec();
  spec.mutable_rootfs()->set_directory(image);
  lt::Sandbox sandbox(env, spec);
  INFO(sandbox.error());
  REQUIRE(sandbox.ok());
  auto result = sandbox.Ready().Sh("ls /; touch /x 2>&1; echo $?");
  REQUIRE(result.finished);
  CHECK(result.out.find("workspace") != std::string::npos);
  CHECK(result.out.find("Read-only file system") != std::string::npos);
  CHECK(result.out.find("usr") == std::string::npos);
}

TEST_CASE("linux reconcile removes unknown leftovers", "[linux][integration]") {
  lt::Environment env;
  lt::Sandbox kept(env, env.Spec());
  lt::Sandbox stray(env, env.Spec());
  REQUIRE(kept.ok());
  REQUIRE(stray.ok());
  const pid_t stray_init = stray.InitPid();
  const std::string stray_state = stray.response().handle().state();
  // A runtime directory without anything else, as a crash could leave.
  const std::string orphan = lt::RandomId();
  std::filesystem::create_directories(env.runtime_dir() + "/" + orphan);
  // Something that is not named like a sandbox is not ours to remove.
  std::filesystem::create_directories(env.runtime_dir() + "/not-a-sandbox");

  lt::CallResult result = Reconcile(env, {kept.spec().id()});
  INFO(result.error);
  REQUIRE(result.code == 0);
  lt::bv1::ReconcileResponse response;
  REQUIRE(response.ParseFromString(result.response));
  std::vector<std::string> removed(response.removed_ids().begin(),
                                   response.removed_ids().end());
  CHECK(std::find(removed.begin(), removed.end(), stray.spec().id()) !=
        removed.end());
  CHECK(std::find(removed.begin(), removed.end(), orphan) != removed.end());
  CHECK(std::find(removed.begin(), removed.end(), kept.spec().id()) ==
        removed.end());
  CHECK(ProcessGone(stray_init));
  for (const std::string& dir : CgroupDirs(stray_state))
    CHECK_FALSE(Exists(dir));
  CHECK_FALSE(Exists(env.runtime_dir() + "/" + orphan));
  CHECK(Exists(env.runtime_dir() + "/not-a-sandbox"));
  // The known sandbox still works.
  CHECK(kept.Ready().Exec({"/bin/true"}).exit_code == 0);
}

TEST_CASE("the launcher reports bad arguments and refuses missing fds",
          "[linux][integration]") {
  const std::string launcher =
      std::string(CORRAL_BINARY_DIR) + "/lib/corral/corral-linux-launch";
  // Without the plugin's fds 3-5 it does nothing at all.
  std::string command = launcher + " --id x 3<&- 4<&- 5<&- >/dev/null 2>&1";
  int status = std::system(command.c_str());
  CHECK(WEXITSTATUS(status) == 2);
  // With them, a bad command line comes back as an error report on fd 5.
  std::string report_path = std::filesystem::temp_directory_path() /
                            ("corral-report-" + lt::RandomId());
  command = launcher + " --bogus 1 3</dev/null 4</dev/null 5>" + report_path;
  status = std::system(command.c_str());
  CHECK(WEXITSTATUS(status) == 1);
  std::string report = ReadAll(report_path);
  std::remove(report_path.c_str());
  CHECK(report.rfind("error 3 ", 0) == 0);
  CHECK(report.find("--bogus") != std::string::npos);
}

TEST_CASE("linux creates and destroys sandboxes in parallel",
          "[linux][integration]") {
  lt::Environment env;
  constexpr int kSandboxes = 6;
  std::vector<lt::bv1::SandboxSpec> specs;
  for (int i = 0; i < kSandboxes; ++i) specs.push_back(env.Spec());
  std::vector<std::string> outputs(kSandboxes);
  std::vector<int> destroy_codes(kSandboxes, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSandboxes; ++i) {
    threads.emplace_back([&, i] {
      lt::Sandbox sandbox(env, specs[i]);
      if (!sandbox.ok()) {
        outputs[i] = "create: " + sandbox.error();
        return;
      }
      outputs[i] = sandbox.Ready().Exec({"/bin/hostname"}).out;
      destroy_codes[i] = sandbox.Destroy().code;
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kSandboxes; ++i) {
    INFO(i);
    CHECK(outputs[i] == "sandbox-test\n");
    CHECK(destroy_codes[i] == 0);
    CHECK_FALSE(Exists(env.runtime_dir() + "/" + specs[i].id()));
  }
}

TEST_CASE("linux create-to-hello time", "[.][bench][linux]") {
  // CORRAL_LINUX_DEBUG=1 shows the plugin's per-create timings.
  if (std::getenv("CORRAL_LINUX_DEBUG"))
    spdlog::set_level(spdlog::level::debug);
  lt::Environment env;
  std::vector<double> samples, destroys;
  for (int i = 0; i < 50; ++i) {
    auto start = std::chrono::steady_clock::now();
    lt::Sandbox sandbox(env, env.Spec());
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
  std::sort(destroys.begin(), destroys.end());
  std::printf("destroy: median %.2f ms\n", destroys[destroys.size() / 2]);
  std::sort(samples.begin(), samples.end());
  std::printf(
      "create-to-hello over %zu runs: median %.2f ms, min %.2f ms, "
      "p90 %.2f ms\n",
      samples.size(), samples[samples.size() / 2], samples.front(),
      samples[samples.size() * 9 / 10]);
  CHECK(samples.front() > 0);
}
