// Security tests of the linux runtime: what code inside a sandbox can see and
// do, checked through the real agent (the sandbox's PID 1).
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/linux_test_support.h"

namespace lt = corral::linux_test;

namespace {

// Output of a shell command run on the host (stderr too).
std::string RunHost(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    output.append(buffer, n);
  }
  ::pclose(pipe);
  return output;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// Value of "Key:" in /proc/<pid>/status text, without whitespace.
std::string StatusField(const std::string& status, const std::string& key) {
  std::istringstream lines(status);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::string value = line.substr(key.size() + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    return value;
  }
  return "";
}

// A sandbox that has said hello, ready for commands.
class Box {
 public:
  explicit Box(uint32_t host_uid = 1'500'000) {
    sandbox_.emplace(env_, env_.Spec(host_uid));
    INFO(sandbox_->error());
    REQUIRE(sandbox_->ok());
    sandbox_->Ready();
    REQUIRE(sandbox_->hello().has_value());
  }
  lt::AgentClient& agent() { return sandbox_->client(); }
  lt::Sandbox& sandbox() { return *sandbox_; }
  const lt::Environment& env() const { return env_; }

 private:
  lt::Environment env_;
  std::optional<lt::Sandbox> sandbox_;
};

}  // namespace

TEST_CASE("sandbox sees only its own processes", "[linux][security]") {
  Box box;
  auto result = box.agent().Sh("ls /proc | grep -c '^[0-9]'");
  REQUIRE(result.exit_code == 0);
  // The agent (1), the shell, ls and grep at most.
  CHECK(std::stoi(result.out) <= 4);
  result = box.agent().Sh("cat /proc/1/cmdline | tr '\\0' ' '");
  CHECK(result.out.find("corral-agent") != std::string::npos);
}

TEST_CASE("sandbox has its own hostname and only loopback",
          "[linux][security]") {
  Box box;
  auto result = box.agent().Exec({"/bin/hostname"});
  CHECK(result.out == "sandbox-test\n");
  result = box.agent().Sh("ls /sys/class/net");
  CHECK(result.out == "lo\n");
  result = box.agent().Sh("cat /sys/class/net/lo/operstate; cat /etc/hostname");
  CHECK(result.out.find("sandbox-test") != std::string::npos);
  CHECK(result.out.find("down") == std::string::npos);
}

TEST_CASE("host files stay invisible, the root is read-only",
          "[linux][security]") {
  Box box;
  auto& agent = box.agent();
  // Kept alive for the loop: runtime_dir() returns a temporary.
  const std::string runtime_dir = box.env().runtime_dir();
  for (const char* path : {"/home", "/srv", "/opt", "/work", "/etc/shadow",
                           "/etc/sudoers", "/etc/ssl/private", "/run",
                           "/var/lib", "/var/log", runtime_dir.c_str()}) {
    INFO(path);
    CHECK(agent.Exec({"/usr/bin/test", "-e", path}).exit_code == 1);
  }
  CHECK(agent.Sh("ls -A /root").out.empty());
  CHECK(agent.Sh("ls -A /root").exit_code == 0);
  for (const char* path :
       {"/usr/x", "/x", "/etc/x", "/bin/x", "/dev/x", "/root/x", "/proc/x"}) {
    INFO(path);
    CHECK(agent.Exec({"/usr/bin/touch", path}).exit_code != 0);
  }
  CHECK(agent.Sh("touch /usr/x 2>&1").out.find("Read-only file system") !=
        std::string::npos);
  // Masked /proc and /sys entries (those this kernel has).
  for (const char* name :
       {"kcore", "keys", "timer_list", "sched_debug", "sysrq-trigger"}) {
    const std::string path = std::string("/proc/") + name;
    if (access(path.c_str(), F_OK) != 0) continue;
    INFO(path);
    // /dev/null: reads nothing, writes go nowhere.
    CHECK(agent.Sh("wc -c < " + path).out == "0\n");
  }
  CHECK(agent.Sh("ls -A /sys/firmware").out.empty());
  CHECK(agent.Sh("ls /proc/sys/kernel/core_pattern").exit_code == 0);
}

TEST_CASE("no sandbox mount shows on the host", "[linux][security]") {
  Box box;
  const std::string mounts = ReadAll("/proc/self/mountinfo");
  CHECK(mounts.find(box.env().runtime_dir()) == std::string::npos);
  CHECK(mounts.find(box.sandbox().spec().workspace_dir()) == std::string::npos);
}

TEST_CASE("workspace and tmp are writable by the sandbox's root",
          "[linux][security]") {
  Box box;
  auto& agent = box.agent();
  auto result = agent.Sh(
      "echo data > /workspace/f && cat /workspace/f && "
      "echo t > /tmp/t && cat /tmp/t && id -u");
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(result.out == "data\nt\n0\n");
  // The workspace is a filesystem of its own, an image in the workspace
  // directory that the host never mounts: in it the file belongs to the
  // sandbox's host uid.
  // (sync: the image is read from its file, behind the mounted filesystem.)
  REQUIRE(agent.Sh("sync").exit_code == 0);
  const std::string image = box.sandbox().spec().workspace_dir() + "/disk.ext4";
  const std::string f = RunHost("debugfs -R 'stat /f' '" + image + "' 2>&1");
  INFO(f);
  CHECK(f.find("User: " + std::to_string(box.sandbox().spec().host_uid())) !=
        std::string::npos);
  struct stat st {};
  CHECK(stat((box.sandbox().spec().workspace_dir() + "/f").c_str(), &st) != 0);
  // Devices and setuid binaries are inert in the workspace.
  CHECK(agent.Sh("mount | grep ' /workspace ' | grep -c nosuid").out == "1\n");
}

TEST_CASE("memory limit: a hog is OOM-killed, the agent survives",
          "[linux][security]") {
  lt::Environment env;
  auto spec = env.Spec();
  spec.set_memory_bytes(64ull << 20);
  lt::Sandbox sandbox(env, spec);
  REQUIRE(sandbox.ok());
  auto& agent = sandbox.Ready();
  auto result =
      agent.Sh("x=$(head -c 300M /dev/zero | tr '\\0' a); echo survived");
  CHECK(result.out.find("survived") == std::string::npos);
  auto stats = sandbox.Stats();
  REQUIRE(stats.has_value());
  CHECK(stats->oom_kills() >= 1);
  CHECK(stats->memory_bytes() <= (64ull << 20));
  // PID 1 is still there and answers.
  auto after = agent.Exec({"/bin/echo", "alive"});
  CHECK(after.out == "alive\n");
}

TEST_CASE("pids limit contains a fork bomb", "[linux][security]") {
  lt::Environment env;
  auto spec = env.Spec();
  spec.set_pids(32);
  lt::Sandbox sandbox(env, spec);
  REQUIRE(sandbox.ok());
  auto& agent = sandbox.Ready();
  auto result = agent.Sh(
      "i=0; while [ $i -lt 200 ]; do sleep 2 & i=$((i+1)); done 2>&1; "
      "wait",
      30'000);
  CHECK(result.out.find("fork") != std::string::npos);  // "Cannot fork"
  auto stats = sandbox.Stats();
  REQUIRE(stats.has_value());
  CHECK(stats->pids() <= 32);
  // The agent answers on the control stream, and runs commands again once
  // the sleepers are gone.
  CHECK(agent.Ping(99));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  CHECK(agent.Exec({"/bin/echo", "alive"}).out == "alive\n");
}

TEST_CASE("namespaces and mounts cannot be made inside", "[linux][security]") {
  Box box;
  auto& agent = box.agent();
  auto result = agent.Sh("unshare -U true 2>&1");
  CHECK(result.exit_code != 0);
  CHECK(result.out.find("Operation not permitted") != std::string::npos);
  result = agent.Sh("mount -t tmpfs none /tmp 2>&1");
  CHECK(result.exit_code != 0);
  CHECK((result.out.find("ermission denied") != std::string::npos ||
         result.out.find("Operation not permitted") != std::string::npos));
  result = agent.Sh("chroot / true 2>&1");
  CHECK(result.exit_code != 0);
  result = agent.Sh("mknod /tmp/sda b 8 0 2>&1");
  CHECK(result.exit_code != 0);
}

TEST_CASE("the sandbox runs with seccomp, no_new_privs, no capabilities",
          "[linux][security]") {
  Box box;
  auto status = box.agent().Exec({"/bin/cat", "/proc/self/status"}).out;
  CHECK(StatusField(status, "Seccomp") == "2");
  CHECK(StatusField(status, "NoNewPrivs") == "1");
  CHECK(StatusField(status, "CapEff") == "0000000000000000");
  CHECK(StatusField(status, "CapPrm") == "0000000000000000");
  CHECK(StatusField(status, "CapBnd") == "0000000000000000");
  CHECK(StatusField(status, "CapAmb") == "0000000000000000");
  // The agent itself too.
  status = box.agent().Exec({"/bin/cat", "/proc/1/status"}).out;
  CHECK(StatusField(status, "Seccomp") == "2");
  CHECK(StatusField(status, "CapEff") == "0000000000000000");
  // Root inside is the sandbox's host uid.
  auto map = box.agent().Exec({"/bin/cat", "/proc/self/uid_map"}).out;
  std::istringstream fields(map);
  std::string inside, outside, count;
  fields >> inside >> outside >> count;
  CHECK(inside == "0");
  CHECK(outside == std::to_string(box.sandbox().spec().host_uid()));
  CHECK(count == "1");
  // No terminal reaches the sandbox, and PID 1 leads its own session.
  CHECK(box.agent().Sh("tty").out == "not a tty\n");
}

TEST_CASE("host root without a user namespace reads no host secrets",
          "[linux][security]") {
  lt::Environment env;
  auto spec = env.Spec(0);
  (*spec.mutable_runtime_options())["userns"] = "false";
  lt::Sandbox sandbox(env, spec);
  REQUIRE(sandbox.ok());
  auto& agent = sandbox.Ready();
  for (const char* path : {"/etc/shadow", "/etc/ssl/private", "/root/.ssh",
                           "/etc/gshadow", "/etc/sudoers"}) {
    INFO(path);
    CHECK(agent.Exec({"/usr/bin/test", "-e", path}).exit_code == 1);
  }
  CHECK(agent.Exec({"/usr/bin/test", "-e", "/etc/ssl/certs"}).exit_code == 0);
  // Root without capabilities: no mount, no new namespaces, no chown of
  // others' files.
  CHECK(agent.Sh("chown 1 /usr/bin/true").exit_code != 0);
  CHECK(agent.Sh("mount -t tmpfs none /tmp").exit_code != 0);
  auto status = agent.Exec({"/bin/cat", "/proc/self/status"}).out;
  CHECK(StatusField(status, "CapBnd") == "0000000000000000");
}

TEST_CASE("/proc/sys is not writable, with or without a user namespace",
          "[linux][security]") {
  const std::string before = ReadAll("/proc/sys/kernel/core_pattern");
  for (bool userns : {true, false}) {
    INFO("userns=" << userns);
    lt::Environment env;
    auto spec = env.Spec(userns ? 1'500'000 : 0);
    if (!userns) (*spec.mutable_runtime_options())["userns"] = "false";
    lt::Sandbox sandbox(env, spec);
    INFO(sandbox.error());
    REQUIRE(sandbox.ok());
    auto& agent = sandbox.Ready();
    auto result = agent.Sh("echo '|/tmp/evil' > /proc/sys/kernel/core_pattern");
    CHECK(result.exit_code != 0);
    result = agent.Sh("echo 1 > /proc/sys/vm/drop_caches");
    CHECK(result.exit_code != 0);
    CHECK(agent.Exec({"/usr/bin/id", "-u"}).out == "0\n");
    auto status = agent.Exec({"/bin/cat", "/proc/self/status"}).out;
    CHECK(StatusField(status, "CapEff") == "0000000000000000");
    CHECK(agent.Sh("unshare -U true").exit_code != 0);
    CHECK(agent.Sh("touch /workspace/ok").exit_code == 0);
  }
  CHECK(ReadAll("/proc/sys/kernel/core_pattern") == before);
}

TEST_CASE("the agent binary cannot be rewritten from inside",
          "[linux][security]") {
  Box box;
  auto result = box.agent().Sh(
      "echo x > /proc/1/exe 2>&1; echo x >> /proc/1/exe 2>&1; "
      "readlink /proc/1/exe");
  CHECK(result.out.find("memfd:corral-agent") != std::string::npos);
  // The file on the host is untouched.
  struct stat st {};
  REQUIRE(stat((std::string(CORRAL_BINARY_DIR) + "/bin/corral-agent").c_str(),
               &st) == 0);
  CHECK(st.st_size > 1000);
}

// Runs $CORRAL_DEBUG_CMD in a fresh sandbox and prints what it says; for
// investigating a failure by hand.
TEST_CASE("debug: run a command in a sandbox", "[.][debug][linux]") {
  const char* command = std::getenv("CORRAL_DEBUG_CMD");
  REQUIRE(command != nullptr);
  Box box;
  auto result = box.agent().Sh(command);
  std::printf("exit %d signal %d error '%s'\n--- stdout\n%s--- stderr\n%s",
              result.exit_code, result.signal, result.error.c_str(),
              result.out.c_str(), result.err.c_str());
}
