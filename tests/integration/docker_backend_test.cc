// Integration tests of the docker runtime plugin through its C ABI: the real
// docker.so, the real corral-agent and a real engine (the private dockerd or
// Podman service of tests/engines.sh). CORRAL_DOCKER_TEST_SOCKET names the
// engine's socket; when nothing answers there every test exits with 77,
// which CTest reports as skipped.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/integration/linux_test_support.h"

namespace lt = corral::linux_test;
using nlohmann::json;

namespace {

std::string EngineSocket() {
  const char* socket = std::getenv("CORRAL_DOCKER_TEST_SOCKET");
  return socket != nullptr ? socket : "/run/corral-test-engines/docker.sock";
}

// A raw HTTP exchange with the engine (for checks behind the plugin's back).
struct Answer {
  int status = 0;
  std::string body;
};

Answer EngineCall(const std::string& method, const std::string& target,
                  const std::string& body = "") {
  Answer answer;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = EngineSocket();
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
      0) {
    close(fd);
    return answer;
  }
  // HTTP/1.0: no chunked answers, the body ends at EOF.
  std::string request = method + " " + target +
                        " HTTP/1.0\r\nHost: docker\r\nContent-Type: "
                        "application/json\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return answer;
  }
  std::string response;
  char buffer[8192];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  if (response.size() < 12) return answer;
  answer.status = std::atoi(response.substr(9, 3).c_str());
  auto end = response.find("\r\n\r\n");
  if (end != std::string::npos) answer.body = response.substr(end + 4);
  return answer;
}

bool EngineAnswers() { return EngineCall("GET", "/_ping").body == "OK"; }

// Every test starts here: skipped (77) when the engine is not running.
void RequireEngine() {
  if (!EngineAnswers()) {
    std::printf(
        "SKIPPED: no container engine answers on %s (start one with "
        "tests/engines.sh start)\n",
        EngineSocket().c_str());
    std::fflush(stdout);
    std::_Exit(77);
  }
}

json Inspect(const std::string& container) {
  Answer answer = EngineCall("GET", "/v1.41/containers/" + container + "/json");
  if (answer.status != 200) return json();
  return json::parse(answer.body, nullptr, false);
}

const corral_backend_v1* DockerPlugin() {
  static const corral_backend_v1* table = [] {
    std::string path = std::string(CORRAL_BINARY_DIR) + "/lib/corral/docker.so";
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
  DockerPlugin()->free_result(&result);
  return out;
}

// A directory removed when the process ends.
struct TempDir {
  std::string base;
  std::string root;
  ~TempDir() {
    std::error_code error;
    if (!base.empty()) std::filesystem::remove_all(base, error);
  }
};

// The busybox rootfs, extracted once per process like the image store does
// (root-owned, with the mount points), and removed when the process ends.
std::string BusyboxImage() {
  static const TempDir dir = [] {
    std::string tar = std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar";
    std::string script =
        std::string(CORRAL_SOURCE_DIR) + "/deploy/images/build-busybox.sh";
    if (std::system(
            ("bash '" + script + "' '" + tar + "' >/dev/null").c_str()) != 0) {
      throw std::runtime_error("build-busybox.sh failed");
    }
    char base[] = "/tmp/corral-docker-image-XXXXXX";
    if (mkdtemp(base) == nullptr) throw std::runtime_error("mkdtemp");
    std::string root = std::string(base) + "/rootfs";
    std::filesystem::create_directories(root);
    if (std::system(("tar -xf '" + tar + "' -C '" + root + "'").c_str()) != 0) {
      throw std::runtime_error("tar -x failed");
    }
    chmod(root.c_str(), 0755);
    return TempDir{base, root};
  }();
  return dir.root;
}

// A runtime directory and workspaces of one test; removed at the end. (Not
// lt::Environment: that one starts a child reaper, which would steal the
// exit statuses std::system and the agent test wait for; the docker plugin
// starts no processes.)
class Environment {
 public:
  Environment() : image_(BusyboxImage()) {
    char base[] = "/tmp/corral-docker-test-XXXXXX";
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

  std::string base() const { return base_; }
  std::string runtime_dir() const { return base_ + "/runtime"; }

  corral::backend::v1::PluginConfig Config() const {
    corral::backend::v1::PluginConfig config;
    config.set_runtime_dir(runtime_dir());
    config.set_agent_path(std::string(CORRAL_BINARY_DIR) + "/bin/corral-agent");
    config.set_plugin_dir(std::string(CORRAL_BINARY_DIR) + "/lib/corral");
    (*config.mutable_options())["socket"] = EngineSocket();
    return config;
  }

  // A busybox sandbox with a fresh id and workspace (root-owned 0700, as
  // the daemon makes it).
  corral::backend::v1::SandboxSpec Spec() {
    corral::backend::v1::SandboxSpec spec;
    spec.set_id(lt::RandomId());
    std::string workspace = base_ + "/ws-" + spec.id();
    std::filesystem::create_directories(workspace);
    chmod(workspace.c_str(), 0700);
    spec.set_workspace_dir(workspace);
    spec.mutable_rootfs()->set_directory(image_);
    spec.set_hostname("sandbox-test");
    spec.set_cpu_millis(1000);
    spec.set_memory_bytes(256ull << 20);
    spec.set_pids(128);
    spec.set_disk_bytes(64ull << 20);
    spec.set_host_uid(1'500'000);
    spec.set_host_gid(1'500'000);
    spec.set_network_none(true);
    return spec;
  }

 private:
  std::string image_;
  std::string base_;
};

namespace bv1 = corral::backend::v1;

// A sandbox of the docker plugin, destroyed at the end of the scope.
class Sandbox {
 public:
  Sandbox(const Environment& env, const bv1::SandboxSpec& spec)
      : config_(env.Config()), spec_(spec) {
    bv1::CreateRequest request;
    *request.mutable_config() = config_;
    *request.mutable_spec() = spec;
    lt::CallResult result = Call(DockerPlugin()->create, request);
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

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& error() const { return error_; }
  const bv1::CreateResponse& response() const { return response_; }
  const bv1::PluginConfig& config() const { return config_; }

  lt::AgentClient& Ready() {
    if (!hello_) hello_ = client_->ReadHello();
    return *client_;
  }
  const std::optional<corral::agent::v1::Hello>& hello() const {
    return hello_;
  }

  std::string StateValue(const std::string& key) const {
    std::istringstream lines(response_.handle().state());
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
    }
    return "";
  }
  std::string ContainerId() const { return StateValue("container"); }

  lt::CallResult Destroy() {
    bv1::DestroyRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    return Call(DockerPlugin()->destroy, request);
  }

  lt::CallResult Attach() {
    bv1::AttachRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    return Call(DockerPlugin()->attach, request);
  }

  std::optional<bv1::StatsResponse> Stats() {
    bv1::StatsRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    lt::CallResult result = Call(DockerPlugin()->stats, request);
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

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

bool Has(const google::protobuf::RepeatedField<int32_t>& list, int value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

TEST_CASE("docker probe reports the engine and honest guarantees",
          "[docker][integration]") {
  RequireEngine();
  Environment env;
  bv1::ProbeRequest request;
  *request.mutable_config() = env.Config();
  lt::CallResult result = Call(DockerPlugin()->probe, request);
  REQUIRE(result.code == 0);
  bv1::ProbeResponse response;
  REQUIRE(response.ParseFromString(result.response));
  INFO(response.reason());
  CHECK(response.available());
  const auto& details = response.details();
  REQUIRE(details.count("engine"));
  CHECK((details.at("engine") == "docker" || details.at("engine") == "podman"));
  CHECK_FALSE(details.at("version").empty());
  CHECK(Has(response.guarantees(), 2));  // cgroup limits
  CHECK(Has(response.guarantees(), 4));  // network isolation
  // Seccomp and user namespaces only as the engine says.
  CHECK(Has(response.guarantees(), 3) == (details.at("seccomp") == "yes"));
  CHECK(Has(response.guarantees(), 6) == (details.at("userns") == "remapped"));

  // No engine on the socket: unavailable, with the reason, no guarantees.
  (*request.mutable_config()->mutable_options())["socket"] =
      env.base() + "/nothing.sock";
  result = Call(DockerPlugin()->probe, request);
  REQUIRE(result.code == 0);
  REQUIRE(response.ParseFromString(result.response));
  CHECK_FALSE(response.available());
  CHECK(response.reason().find("nothing.sock") != std::string::npos);
  CHECK(response.guarantees_size() == 0);
}

TEST_CASE("docker create, exec, stats, attach, destroy",
          "[docker][integration]") {
  RequireEngine();
  Environment env;
  bv1::SandboxSpec spec = env.Spec();
  spec.set_memory_bytes(96ull << 20);
  spec.set_pids(48);
  spec.set_cpu_millis(500);
  spec.set_disk_bytes(16ull << 20);
  auto sandbox = std::make_unique<Sandbox>(env, spec);
  INFO(sandbox->error());
  REQUIRE(sandbox->ok());
  auto& agent = sandbox->Ready();
  REQUIRE(sandbox->hello().has_value());
  CHECK(sandbox->hello()->protocol_version() == 1);
  CHECK(sandbox->hello()->pid() == 1);
  CHECK(Has(sandbox->response().guarantees(), 2));
  CHECK(Has(sandbox->response().guarantees(), 4));

  const std::string container = sandbox->ContainerId();
  REQUIRE(container.size() == 64);
  json inspect = Inspect(container);
  REQUIRE(inspect.is_object());
  CHECK(inspect["State"]["Running"] == true);
  const std::string daemon =
      inspect["Config"]["Labels"].value("corral.daemon", "");
  CHECK(inspect["Config"]["Labels"].value("corral.sandbox", "") == spec.id());
  CHECK(daemon.size() == 16);
  const json& host = inspect["HostConfig"];
  CHECK(host["Memory"] == (96ll << 20));
  CHECK(host["PidsLimit"] == 48);
  CHECK(host["NanoCpus"] == 500'000'000ll);
  CHECK(host["ReadonlyRootfs"] == true);
  CHECK(host["NetworkMode"] == "none");

  SECTION("commands run as the sandbox's root with the limits") {
    lt::ExecResult echo = agent.Sh("echo hello; hostname; id -u");
    INFO(echo.error << echo.err);
    REQUIRE(echo.finished);
    CHECK(echo.exit_code == 0);
    CHECK(echo.out == "hello\nsandbox-test\n0\n");

    // The root filesystem is read-only; /tmp and /workspace are writable.
    lt::ExecResult writes = agent.Sh(
        "touch /etc/x 2>/dev/null && echo root-writable; "
        "echo t > /tmp/t && cat /tmp/t; echo w > /workspace/w && cat "
        "/workspace/w");
    CHECK(writes.out == "t\nw\n");
    CHECK(Trim(ReadAll(spec.workspace_dir() + "/w")) == "w");

    // Only loopback.
    lt::ExecResult net = agent.Sh("ls /sys/class/net");
    CHECK(Trim(net.out) == "lo");

    // No capabilities, no_new_privs.
    lt::ExecResult status = agent.Sh(
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' "
        "/proc/self/status");
    CHECK(status.out.find("CapEff:\t0000000000000000") != std::string::npos);
    CHECK(status.out.find("CapBnd:\t0000000000000000") != std::string::npos);
    CHECK(status.out.find("NoNewPrivs:\t1") != std::string::npos);

    // The seccomp filter is loaded: Corral's profile where the engine
    // applies seccomp.
    lt::ExecResult seccomp = agent.Sh("grep '^Seccomp:' /proc/self/status");
    if (Has(sandbox->response().guarantees(), 3)) {
      CHECK(seccomp.out == "Seccomp:\t2\n");
      bool corral_profile = false;
      for (const auto& option : host["SecurityOpt"]) {
        std::string text = option.get<std::string>();
        if (text.rfind("seccomp=", 0) == 0 && text.size() > 8) {
          corral_profile = true;
        }
      }
      CHECK(corral_profile);
    }

    // /proc/sys is read-only; /proc/kcore masked.
    lt::ExecResult proc = agent.Sh(
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo writable; "
        "for f in kcore keys timer_list sched_debug sysrq-trigger; do "
        "[ -e /proc/$f ] && wc -c < /proc/$f; done");
    INFO(proc.err);
    CHECK(proc.out.find("writable") == std::string::npos);
    CHECK_FALSE(proc.out.empty());
    for (char c : proc.out) CHECK((c == '0' || c == '\n'));

    // /tmp is bounded by disk_bytes.
    lt::ExecResult fill = agent.Sh(
        "dd if=/dev/zero of=/tmp/big bs=1M count=32 2>/dev/null; "
        "echo $?; rm -f /tmp/big");
    CHECK(Trim(fill.out) != "0");
  }

  SECTION("stats read the container's cgroup, OOM kills counted") {
    auto stats = sandbox->Stats();
    REQUIRE(stats.has_value());
    CHECK(stats->pids() >= 1);
    CHECK(stats->memory_bytes() > 0);
    CHECK(stats->oom_kills() == 0);
    // awk doubles a string until the memory limit stops it.
    lt::ExecResult hog =
        agent.Sh("awk 'BEGIN { s = \"x\"; while (1) s = s s }'");
    CHECK(hog.finished);
    CHECK(hog.signal == 9);
    stats = sandbox->Stats();
    REQUIRE(stats.has_value());
    CHECK(stats->oom_kills() >= 1);
    // The agent survived.
    CHECK(agent.Sh("echo alive").out == "alive\n");
  }

  SECTION("attach connects again; a stopped container is not alive") {
    lt::CallResult attached = sandbox->Attach();
    REQUIRE(attached.code == 0);
    bv1::AttachResponse response;
    REQUIRE(response.ParseFromString(attached.response));
    INFO(response.reason());
    REQUIRE(response.alive());
    lt::AgentClient second(std::move(attached.agent_fd));
    REQUIRE(second.ReadHello().has_value());
    CHECK(second.Sh("echo again").out == "again\n");

    REQUIRE(EngineCall("POST",
                       "/v1.41/containers/" + container + "/kill?signal=KILL")
                .status == 204);
    for (int i = 0; i < 100 && Inspect(container)["State"]["Running"] == true;
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    attached = sandbox->Attach();
    REQUIRE(attached.code == 0);
    REQUIRE(response.ParseFromString(attached.response));
    CHECK_FALSE(response.alive());
    CHECK_FALSE(response.reason().empty());
    CHECK(attached.agent_fd.get() < 0);
  }

  SECTION("a symlink planted for the agent socket cannot redirect attach") {
    // The sandbox can write its run directory: point agent.sock at the
    // engine's own socket, a real socket on the host.
    lt::ExecResult plant =
        agent.Sh("rm /.corral/run/agent.sock && ln -s " + EngineSocket() +
                 " /.corral/run/agent.sock");
    REQUIRE(plant.exit_code == 0);
    lt::CallResult attached = sandbox->Attach();
    REQUIRE(attached.code == 0);
    bv1::AttachResponse response;
    REQUIRE(response.ParseFromString(attached.response));
    CHECK_FALSE(response.alive());
    CHECK(response.reason().find("not a socket") != std::string::npos);
    CHECK(attached.agent_fd.get() < 0);
  }

  SECTION("destroy removes the container and the runtime directory") {
    const std::string dir = env.runtime_dir() + "/" + spec.id();
    CHECK(std::filesystem::exists(dir + "/run/agent.sock"));
    lt::CallResult destroyed = sandbox->Destroy();
    INFO(destroyed.error);
    CHECK(destroyed.code == 0);
    CHECK(
        EngineCall("GET", "/v1.41/containers/" + container + "/json").status ==
        404);
    CHECK_FALSE(std::filesystem::exists(dir));
    // Idempotent.
    CHECK(sandbox->Destroy().code == 0);
  }
}

TEST_CASE("docker runs the built-in host image", "[docker][integration]") {
  RequireEngine();
  Environment env;
  bv1::SandboxSpec spec = env.Spec();
  spec.mutable_rootfs()->set_host(true);
  Sandbox sandbox(env, spec);
  INFO(sandbox.error());
  REQUIRE(sandbox.ok());
  auto& agent = sandbox.Ready();
  REQUIRE(sandbox.hello().has_value());
  // The host's /usr, read-only; the generated hostname; no host secrets.
  lt::ExecResult result = agent.Exec(
      {"/bin/sh", "-c",
       "test -x /usr/bin/env && echo usr; hostname; "
       "grep -qx sandbox-test /etc/hostname && echo hostname-file; "
       "touch /usr/x 2>/dev/null && echo usr-writable; "
       "test -e /etc/shadow && echo shadow; test -e /root && echo root; "
       "ls /home 2>/dev/null | head -1"});
  INFO(result.error << result.err);
  CHECK(result.out == "usr\nsandbox-test\nhostname-file\nroot\n");

  // A second sandbox reuses the imported skeleton image.
  Sandbox second(env, env.Spec());
  REQUIRE(second.ok());
  json first_inspect = Inspect(sandbox.ContainerId());
  bv1::SandboxSpec again = env.Spec();
  again.mutable_rootfs()->set_host(true);
  Sandbox third(env, again);
  INFO(third.error());
  REQUIRE(third.ok());
  CHECK(Inspect(third.ContainerId())["Config"]["Image"] ==
        first_inspect["Config"]["Image"]);
}

TEST_CASE("docker create failures leave nothing behind",
          "[docker][integration]") {
  RequireEngine();
  Environment env;
  bv1::SandboxSpec spec = env.Spec();
  // An "agent" that cannot run: the container starts and exits at once.
  bv1::PluginConfig config = env.Config();
  std::string fake_agent = env.base() + "/fake-agent";
  {
    std::ofstream out(fake_agent);
    out << "#!/bin/sh\necho broken agent >&2\nexit 3\n";
  }
  chmod(fake_agent.c_str(), 0755);
  config.set_agent_path(fake_agent);
  bv1::CreateRequest request;
  *request.mutable_config() = config;
  *request.mutable_spec() = spec;
  lt::CallResult result = Call(DockerPlugin()->create, request);
  INFO(result.error);
  CHECK(result.code != 0);
  CHECK(result.error.find("broken agent") != std::string::npos);
  CHECK(result.agent_fd.get() < 0);
  CHECK_FALSE(std::filesystem::exists(env.runtime_dir() + "/" + spec.id()));
  Answer list = EngineCall(
      "GET",
      "/v1.41/containers/json?all=true&filters=%7B%22label%22%3A%5B%22corral."
      "sandbox%3D" +
          spec.id() + "%22%5D%7D");
  REQUIRE(list.status == 200);
  CHECK(json::parse(list.body, nullptr, false).size() == 0);

  // Invalid specs fail before anything is made.
  spec.set_hostname("bad host");
  *request.mutable_spec() = spec;
  *request.mutable_config() = env.Config();
  result = Call(DockerPlugin()->create, request);
  CHECK(result.code == 3);  // INVALID_ARGUMENT
}

TEST_CASE("docker reconcile removes only this daemon's unknown containers",
          "[docker][integration]") {
  RequireEngine();
  Environment env;
  Sandbox sandbox(env, env.Spec());
  INFO(sandbox.error());
  REQUIRE(sandbox.ok());
  json inspect = Inspect(sandbox.ContainerId());
  const std::string image = inspect["Config"].value("Image", "");
  const std::string daemon =
      inspect["Config"]["Labels"].value("corral.daemon", "");
  REQUIRE_FALSE(image.empty());

  // A leftover of this daemon (labelled, unknown id), another daemon's
  // container and an unlabelled one.
  const std::string lost_id = lt::RandomId();
  auto make = [&](json labels) {
    json body = {{"Image", image},
                 {"Entrypoint", json::array({"/bin/sleep", "600"})},
                 {"Labels", labels},
                 {"HostConfig", {{"NetworkMode", "none"}}}};
    Answer created =
        EngineCall("POST", "/v1.41/containers/create", body.dump());
    INFO(created.body);
    REQUIRE(created.status == 201);
    return json::parse(created.body)["Id"].get<std::string>();
  };
  std::string lost =
      make({{"corral.daemon", daemon}, {"corral.sandbox", lost_id}});
  std::string other = make(
      {{"corral.daemon", "0123456789abcdef"}, {"corral.sandbox", lost_id}});
  std::string unlabelled = make(json::object());
  // A stale runtime directory of an unknown sandbox.
  const std::string stale_id = lt::RandomId();
  std::filesystem::create_directories(env.runtime_dir() + "/" + stale_id +
                                      "/run");

  bv1::ReconcileRequest request;
  *request.mutable_config() = env.Config();
  request.add_known_ids(sandbox.response().handle().id());
  lt::CallResult result = Call(DockerPlugin()->reconcile, request);
  INFO(result.error);
  REQUIRE(result.code == 0);
  bv1::ReconcileResponse response;
  REQUIRE(response.ParseFromString(result.response));
  std::vector<std::string> removed(response.removed_ids().begin(),
                                   response.removed_ids().end());
  CHECK(std::find(removed.begin(), removed.end(), lost_id) != removed.end());
  CHECK(std::find(removed.begin(), removed.end(), stale_id) != removed.end());
  CHECK(removed.size() == 2);

  CHECK(Inspect(lost).is_null());
  CHECK(Inspect(other).is_object());
  INFO(EngineCall("GET", "/v1.41/containers/" + unlabelled + "/json").body);
  CHECK(Inspect(unlabelled).is_object());
  CHECK(Inspect(sandbox.ContainerId())["State"]["Running"] == true);
  CHECK_FALSE(std::filesystem::exists(env.runtime_dir() + "/" + stale_id));
  // The known sandbox still works.
  REQUIRE(sandbox.Ready().Ping(7));

  EngineCall("DELETE", "/v1.41/containers/" + other + "?force=true");
  EngineCall("DELETE", "/v1.41/containers/" + unlabelled + "?force=true");
}

// Create-to-Hello and destroy times, beside `docker run --rm --network none
// IMAGE true` through the docker CLI when it is installed. Not part of the
// normal run: `docker_backend_test '[bench]'`.
TEST_CASE("docker create-to-hello timing", "[docker][.bench]") {
  RequireEngine();
  Environment env;
  constexpr int kRuns = 15;
  std::vector<double> create_ms, destroy_ms, cli_ms;
  std::string image;
  for (int i = 0; i < kRuns + 1; ++i) {
    auto started = std::chrono::steady_clock::now();
    auto sandbox = std::make_unique<Sandbox>(env, env.Spec());
    REQUIRE(sandbox->ok());
    sandbox->Ready();
    REQUIRE(sandbox->hello().has_value());
    auto ready = std::chrono::steady_clock::now();
    if (image.empty()) {
      image = Inspect(sandbox->ContainerId())["Config"].value("Image", "");
    }
    REQUIRE(sandbox->Destroy().code == 0);
    auto destroyed = std::chrono::steady_clock::now();
    sandbox.reset();
    if (i == 0) continue;  // the first run imports the image
    create_ms.push_back(
        std::chrono::duration<double, std::milli>(ready - started).count());
    destroy_ms.push_back(
        std::chrono::duration<double, std::milli>(destroyed - ready).count());
  }
  const bool have_cli = access("/usr/bin/docker", X_OK) == 0 ||
                        access("/usr/local/bin/docker", X_OK) == 0;
  if (have_cli) {
    std::string command = "docker -H unix://" + EngineSocket() +
                          " run --rm --network none --entrypoint /bin/true " +
                          image + " >/dev/null 2>&1";
    for (int i = 0; i < kRuns; ++i) {
      auto started = std::chrono::steady_clock::now();
      int rc = std::system(command.c_str());
      (void)rc;
      cli_ms.push_back(std::chrono::duration<double, std::milli>(
                           std::chrono::steady_clock::now() - started)
                           .count());
    }
  }
  auto median = [](std::vector<double> values) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
  };
  std::printf(
      "engine %s: create-to-hello median %.1f ms (min %.1f), destroy "
      "median %.1f ms; docker run --rm true median %.1f ms\n",
      EngineSocket().c_str(), median(create_ms),
      *std::min_element(create_ms.begin(), create_ms.end()), median(destroy_ms),
      median(cli_ms));
}

// The agent's --listen PATH (what the container's entrypoint uses): binds a
// 0600 socket, replaces a stale socket, refuses to replace anything else.
// Needs no engine.
TEST_CASE("corral-agent --listen binds its own socket", "[docker][agent]") {
  char base[] = "/tmp/corral-agent-listen-XXXXXX";
  REQUIRE(mkdtemp(base) != nullptr);
  const std::string dir = base;
  const std::string path = dir + "/agent.sock";
  const std::string agent =
      std::string(CORRAL_BINARY_DIR) + "/bin/corral-agent";
  auto start = [&]() -> pid_t {
    pid_t pid = fork();
    if (pid == 0) {
      execl(agent.c_str(), agent.c_str(), "--listen", path.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  auto connect_hello = [&]() -> bool {
    for (int i = 0; i < 500; ++i) {
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      std::snprintf(address.sun_path, sizeof(address.sun_path), "%s",
                    path.c_str());
      if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
          0) {
        lt::AgentClient client{corral::UniqueFd(fd)};
        return client.ReadHello().has_value();
      }
      close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  auto stop = [](pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  };

  pid_t first = start();
  REQUIRE(connect_hello());
  struct stat st {};
  REQUIRE(lstat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  stop(first);

  // The dead agent's socket file is still there; a new agent replaces it.
  REQUIRE(lstat(path.c_str(), &st) == 0);
  pid_t second = start();
  CHECK(connect_hello());
  stop(second);

  // Not a socket: left alone, the agent fails.
  unlink(path.c_str());
  { std::ofstream(path) << "keep"; }
  pid_t third = start();
  int status = 0;
  REQUIRE(waitpid(third, &status, 0) == third);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(ReadAll(path) == "keep");
  std::filesystem::remove_all(dir);
}
