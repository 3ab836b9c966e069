// Helpers for the linux runtime's integration and security tests: load the
// real linux.so through the C ABI, make specs with temporary directories, and
// talk to the agent with raw frames (4-byte big-endian length + Frame).
#ifndef CORRAL_TESTS_INTEGRATION_LINUX_TEST_SUPPORT_H_
#define CORRAL_TESTS_INTEGRATION_LINUX_TEST_SUPPORT_H_

#include <arpa/inet.h>
#include <dlfcn.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "corral/agent/v1/agent.pb.h"
#include "corral/backend/v1/backend.pb.h"
#include "corral/backend_abi.h"
#include "corral/platform.h"
#include "corral/unique_fd.h"

namespace corral::linux_test {

namespace bv1 = corral::backend::v1;
namespace av1 = corral::agent::v1;

inline std::string RandomId() {
  static std::mt19937_64 random(std::random_device{}());
  static const char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) id.push_back(kHex[random() % 16]);
  return id;
}

// The real plugin from this build tree, loaded once per test process.
inline const corral_backend_v1* Plugin() {
  static const corral_backend_v1* table = [] {
    std::string path = std::string(CORRAL_BINARY_DIR) + "/lib/corral/linux.so";
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) throw std::runtime_error(dlerror());
    auto entry = reinterpret_cast<corral_backend_entry_fn>(
        dlsym(library, CORRAL_BACKEND_ENTRY_SYMBOL));
    if (entry == nullptr) throw std::runtime_error("no corral_backend_entry");
    return entry(CORRAL_BACKEND_ABI_VERSION);
  }();
  return table;
}

// One ABI call's outcome.
struct CallResult {
  int code = 0;
  std::string error;
  std::string response;
  UniqueFd agent_fd;
};

inline CallResult Call(corral_backend_call call,
                       const google::protobuf::MessageLite& request) {
  std::string bytes = request.SerializeAsString();
  corral_result result{};
  result.agent_fd = -1;
  CallResult out;
  out.code = call(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                  &result);
  if (result.error_message) out.error = result.error_message;
  if (result.response) {
    out.response.assign(reinterpret_cast<char*>(result.response),
                        result.response_size);
  }
  out.agent_fd.Reset(result.agent_fd);
  Plugin()->free_result(&result);
  return out;
}

// Temporary directories for one test: a root-only runtime dir and a
// workspace, removed at the end.
class Environment {
 public:
  Environment() {
    corral::platform::StartChildReaper();
    char base[] = "/tmp/corral-linux-test-XXXXXX";
    if (mkdtemp(base) == nullptr) throw std::runtime_error("mkdtemp");
    base_ = base;
    std::filesystem::create_directories(runtime_dir());
    chmod(runtime_dir().c_str(), 0700);
  }
  ~Environment() {
    // The workspace-disk pool's thread (workspace_disk.h) may be renaming a
    // freshly formatted image into the tree while it goes: until that
    // thread finds its directory gone, removing may leave that one behind.
    std::error_code error;
    for (int attempt = 0; attempt < 50; ++attempt) {
      std::filesystem::remove_all(base_, error);
      if (!std::filesystem::exists(base_, error)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // The test's own cgroup parent, in every hierarchy (empty by now).
    for (const auto& hierarchy :
         std::filesystem::directory_iterator("/sys/fs/cgroup", error)) {
      ::rmdir((hierarchy.path().string() + "/" + cgroup_parent()).c_str());
    }
    ::rmdir(("/sys/fs/cgroup/" + cgroup_parent()).c_str());
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  std::string runtime_dir() const { return base_ + "/runtime"; }
  std::string base() const { return base_; }
  // Each test process gets its own cgroup parent: a reconcile removes every
  // sandbox-named cgroup under its parent that it does not know, which would
  // include the sandboxes of tests running beside it.
  std::string cgroup_parent() const {
    return "corral-test/" + std::filesystem::path(base_).filename().string();
  }

  bv1::PluginConfig Config() const {
    bv1::PluginConfig config;
    config.set_runtime_dir(runtime_dir());
    config.set_agent_path(std::string(CORRAL_BINARY_DIR) + "/bin/corral-agent");
    config.set_plugin_dir(std::string(CORRAL_BINARY_DIR) + "/lib/corral");
    (*config.mutable_options())["cgroup_parent"] = cgroup_parent();
    return config;
  }

  // A spec with a fresh id and workspace (root-owned 0700, as the daemon
  // makes it).
  bv1::SandboxSpec Spec(uint32_t host_uid = 1'500'000) {
    bv1::SandboxSpec spec;
    spec.set_id(RandomId());
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

 private:
  std::string base_;
};

inline bool WaitReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

inline bool ReadExactly(int fd, char* data, size_t size, int timeout_ms) {
  size_t done = 0;
  while (done < size) {
    if (!WaitReadable(fd, timeout_ms)) return false;
    ssize_t n = read(fd, data + done, size - done);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads one frame; nullopt on EOF, error or timeout.
inline std::optional<av1::Frame> ReadFrame(int fd, int timeout_ms = 10'000) {
  uint32_t length = 0;
  if (!ReadExactly(fd, reinterpret_cast<char*>(&length), 4, timeout_ms)) {
    return std::nullopt;
  }
  length = ntohl(length);
  if (length == 0 || length > (4u << 20)) return std::nullopt;
  std::string body(length, '\0');
  if (!ReadExactly(fd, body.data(), length, timeout_ms)) return std::nullopt;
  av1::Frame frame;
  if (!frame.ParseFromString(body)) return std::nullopt;
  return frame;
}

inline bool WriteFrame(int fd, const av1::Frame& frame) {
  std::string body = frame.SerializeAsString();
  uint32_t length = htonl(static_cast<uint32_t>(body.size()));
  std::string bytes(reinterpret_cast<char*>(&length), 4);
  bytes += body;
  return write(fd, bytes.data(), bytes.size()) ==
         static_cast<ssize_t>(bytes.size());
}

struct ExecResult {
  bool finished = false;
  int exit_code = -1;
  int signal = 0;
  std::string out;
  std::string err;
  std::string error;
};

// Talks to one sandbox's agent over one connection.
class AgentClient {
 public:
  explicit AgentClient(UniqueFd fd) : fd_(std::move(fd)) {}

  // Reads the Hello the agent sends first on every connection.
  std::optional<av1::Hello> ReadHello(int timeout_ms = 10'000) {
    auto frame = ReadFrame(fd_.get(), timeout_ms);
    if (!frame || !frame->has_hello()) return std::nullopt;
    return frame->hello();
  }

  ExecResult Exec(const std::vector<std::string>& argv,
                  uint64_t timeout_ms = 60'000) {
    const uint64_t stream = next_stream_++;
    av1::Frame start;
    start.set_stream_id(stream);
    for (const auto& arg : argv) start.mutable_exec_start()->add_argv(arg);
    start.mutable_exec_start()->set_timeout_ms(timeout_ms);
    ExecResult result;
    if (!WriteFrame(fd_.get(), start)) {
      result.error = "write failed";
      return result;
    }
    for (;;) {
      auto frame = ReadFrame(fd_.get(), static_cast<int>(timeout_ms) + 10'000);
      if (!frame) {
        result.error = "connection ended";
        return result;
      }
      if (frame->stream_id() != stream) continue;
      if (frame->has_output()) {
        const auto& output = frame->output();
        (output.fd() == av1::FD_STDERR ? result.err : result.out) +=
            output.data();
        av1::Frame ack;
        ack.set_stream_id(stream);
        ack.mutable_window_update()->set_bytes(
            static_cast<uint32_t>(output.data().size()));
        WriteFrame(fd_.get(), ack);
      } else if (frame->has_exec_exit()) {
        result.finished = true;
        result.exit_code = frame->exec_exit().exit_code();
        result.signal = frame->exec_exit().signal();
        result.error = frame->exec_exit().error();
        return result;
      } else if (frame->has_error()) {
        result.error = frame->error().message();
        return result;
      }
    }
  }

  // Shell one-liner.
  ExecResult Sh(const std::string& script, uint64_t timeout_ms = 60'000) {
    return Exec({"/bin/sh", "-c", script}, timeout_ms);
  }

  bool Ping(uint64_t nonce, int timeout_ms = 5'000) {
    av1::Frame ping;
    ping.mutable_ping()->set_nonce(nonce);
    if (!WriteFrame(fd_.get(), ping)) return false;
    for (;;) {
      auto frame = ReadFrame(fd_.get(), timeout_ms);
      if (!frame) return false;
      if (frame->has_pong()) return frame->pong().nonce() == nonce;
    }
  }

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  uint64_t next_stream_ = 1;
};

// A created sandbox, destroyed at the end of the scope.
class Sandbox {
 public:
  // Creates; `code` and `error` say why when it failed (then client() is
  // unusable).
  Sandbox(const Environment& env, const bv1::SandboxSpec& spec)
      : config_(env.Config()), spec_(spec) {
    bv1::CreateRequest request;
    *request.mutable_config() = config_;
    *request.mutable_spec() = spec;
    CallResult result = Call(Plugin()->create, request);
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
  const bv1::PluginConfig& config() const { return config_; }
  AgentClient& client() { return *client_; }

  // Reads the Hello (once) and then runs commands.
  AgentClient& Ready() {
    if (!hello_) hello_ = client_->ReadHello();
    return *client_;
  }
  const std::optional<av1::Hello>& hello() const { return hello_; }

  // The init's host pid, from the handle's state.
  pid_t InitPid() const {
    const std::string& state = response_.handle().state();
    auto at = state.find("init_pid=");
    if (at == std::string::npos) return -1;
    return static_cast<pid_t>(std::stol(state.substr(at + 9)));
  }

  CallResult Destroy() {
    bv1::DestroyRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    return Call(Plugin()->destroy, request);
  }

  std::optional<bv1::StatsResponse> Stats() {
    bv1::StatsRequest request;
    *request.mutable_config() = config_;
    *request.mutable_handle() = response_.handle();
    CallResult result = Call(Plugin()->stats, request);
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
  std::optional<AgentClient> client_;
  std::optional<av1::Hello> hello_;
};

}  // namespace corral::linux_test

#endif  // CORRAL_TESTS_INTEGRATION_LINUX_TEST_SUPPORT_H_
