#include "tests/integration/daemon_harness.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace corral::testing {
namespace {

// Reaps every child of the test process and keeps the statuses of the ones a
// test waits for.
class Reaper {
 public:
  static Reaper& Get() {
    static Reaper* reaper = new Reaper();
    return *reaper;
  }

  int Wait(pid_t pid) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return statuses_.count(pid) > 0; });
    int status = statuses_[pid];
    statuses_.erase(pid);
    return status;
  }

  bool WaitFor(pid_t pid, std::chrono::milliseconds timeout, int* status) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, timeout,
                      [&] { return statuses_.count(pid) > 0; })) {
      return false;
    }
    *status = statuses_[pid];
    statuses_.erase(pid);
    return true;
  }

 private:
  Reaper() {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    std::thread([this] {
      for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, __WALL);
        if (pid > 0) {
          std::lock_guard lock(mutex_);
          statuses_[pid] = status;
          if (statuses_.size() > 100000) statuses_.clear();
          cv_.notify_all();
          continue;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }).detach();
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<pid_t, int> statuses_;
};

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

long ProcStatusKib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return -1;
}

std::string BinaryDir() { return std::string(CORRAL_BINARY_DIR) + "/bin"; }

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

CommandResult RunProcess(const std::vector<std::string>& argv,
                         const std::string& stdin_data, int uid,
                         const std::map<std::string, std::string>& env) {
  Reaper& reaper = Reaper::Get();
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) ||
      ::pipe2(err, O_CLOEXEC)) {
    throw std::runtime_error("pipe");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (uid >= 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 ||
          ::setuid(uid) != 0) {
        ::_exit(126);
      }
    }
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  std::thread writer([fd = in[1], data = stdin_data] {
    size_t at = 0;
    while (at < data.size()) {
      ssize_t n = ::write(fd, data.data() + at, data.size() - at);
      if (n <= 0) break;
      at += n;
    }
    ::close(fd);
  });
  CommandResult result;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_count = 2;
  char buffer[65536];
  while (open_count > 0) {
    ::poll(fds, 2, -1);
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buffer, n);
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  writer.join();
  result.exit_code = DecodeStatus(reaper.Wait(pid));
  return result;
}

CommandResult Sh(const std::string& command_line) {
  return RunProcess({"/bin/sh", "-c", command_line});
}

Daemon::Daemon(const std::string& config_toml, bool socket_activated,
               const std::string& netns_path)
    : socket_activated_(socket_activated), netns_path_(netns_path) {
  char pattern[] = "/tmp/corral-it-XXXXXX";
  if (!::mkdtemp(pattern)) throw std::runtime_error("mkdtemp");
  dir_ = pattern;
  // Other users' CLIs (ownership tests) must reach the socket inside it.
  ::chmod(dir_.c_str(), 0755);
  socket_ = dir_ + "/corrald.sock";
  state_dir_ = dir_ + "/state";
  config_path_ = dir_ + "/corrald.toml";
  std::ofstream(config_path_) << config_toml;
  try {
    Start();
  } catch (...) {
    // No destructor runs for an object whose constructor throws.
    Sh("rm -rf '" + dir_ + "'");
    throw;
  }
}

Daemon::~Daemon() {
  if (running()) {
    // Remove what the test left, so that no sandbox outlives its test.
    auto stub = corral::v1::Sandboxes::NewStub(Channel());
    grpc::ClientContext context;
    corral::v1::ListSandboxesResponse list;
    if (stub->ListSandboxes(&context, {}, &list).ok()) {
      for (const auto& sandbox : list.sandboxes()) Cli({"rm", sandbox.id()});
    }
    Stop();
  }
  std::ifstream instance_file(state_dir_ + "/instance-id");
  std::string instance;
  instance_file >> instance;
  Sh("rm -rf '" + state_dir_ + "'");
  // With its state gone this daemon is an orphan: what it left on the host
  // (its instance's empty cgroup directories, a sandbox of a daemon that
  // was killed, uid claims, its registry entry, the images it loaded into a
  // container service its configuration names) goes, as an operator would
  // clean it. Only its own: other tests' daemons run meanwhile.
  if (!instance.empty()) {
    RunProcess({BinaryDir() + "/corrald", "--cleanup-orphans", "--instance",
                instance, "--config", config_path_, "--log-level", "warn"});
  }
  Sh("rm -rf '" + dir_ + "'");
}

void Daemon::Start() {
  Reaper::Get();
  std::vector<std::string> argv = {BinaryDir() + "/corrald",
                                   "--socket",
                                   socket_,
                                   "--state-dir",
                                   state_dir_,
                                   "--log-level",
                                   "debug"};
  if (!config_path_.empty()) {
    argv.push_back("--config");
    argv.push_back(config_path_);
  }
  const std::string log_path = dir_ + "/corrald.log";
  pid_ = ::fork();
  if (pid_ == 0) {
    int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!netns_path_.empty()) {
      const int netns = ::open(netns_path_.c_str(), O_RDONLY | O_CLOEXEC);
      if (netns < 0 || ::setns(netns, CLONE_NEWNET) != 0) ::_exit(125);
    }
    if (socket_activated_) {
      // What systemd does for corrald.socket: a listening socket as fd 3.
      ::unlink(socket_.c_str());
      int listening = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      std::strncpy(address.sun_path, socket_.c_str(),
                   sizeof(address.sun_path) - 1);
      if (::bind(listening, reinterpret_cast<sockaddr*>(&address),
                 sizeof(address)) != 0 ||
          ::listen(listening, 16) != 0 || ::dup2(listening, 3) != 3) {
        ::_exit(126);
      }
      ::setenv("LISTEN_FDS", "1", 1);
      ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  // Ready when this very daemon says so in its log (a socket that accepts
  // may be held by something else, such as a dead daemon's orphan) and the
  // socket accepts a connection.
  auto ready_lines = [this] {
    size_t count = 0;
    const std::string text = log();
    for (size_t at = 0; (at = text.find(" ready on ", at)) != std::string::npos;
         ++at) {
      ++count;
    }
    return count;
  };
  const size_t ready_before = ready_lines();
  // Recovery may take a while (VMs to re-attach).
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (Reaper::Get().WaitFor(pid_, std::chrono::milliseconds(0), &status)) {
      pid_ = -1;
      throw std::runtime_error("corrald exited at start:\n" + log());
    }
    if (ready_lines() <= ready_before) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket_.c_str(),
                 sizeof(address.sun_path) - 1);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address),
                        sizeof(address)) == 0;
    ::close(fd);
    if (ok) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("corrald did not become ready:\n" + log());
}

void Daemon::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!Reaper::Get().WaitFor(pid_, std::chrono::seconds(20), &status)) {
    ::kill(pid_, SIGKILL);
    Reaper::Get().Wait(pid_);
  }
  pid_ = -1;
}

void Daemon::Kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  Reaper::Get().Wait(pid_);
  pid_ = -1;
}

std::string Daemon::log() const {
  std::ifstream in(dir_ + "/corrald.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

CommandResult Daemon::Cli(const std::vector<std::string>& args,
                          const std::string& stdin_data, int uid) const {
  std::vector<std::string> argv = {BinaryDir() + "/corral", "--socket",
                                   socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProcess(argv, stdin_data, uid);
}

std::shared_ptr<grpc::Channel> Daemon::Channel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel("unix:" + socket_,
                                   grpc::InsecureChannelCredentials(), args);
}

std::string Daemon::CreateSandbox(uint64_t ttl_seconds) const {
  corral::v1::CreateSandboxRequest request;
  request.set_ttl_seconds(ttl_seconds);
  return CreateSandbox(request).id();
}

corral::v1::Sandbox Daemon::CreateSandbox(
    const corral::v1::CreateSandboxRequest& request) const {
  auto stub = corral::v1::Sandboxes::NewStub(Channel());
  grpc::ClientContext context;
  corral::v1::Sandbox sandbox;
  grpc::Status status = stub->CreateSandbox(&context, request, &sandbox);
  if (!status.ok()) {
    throw std::runtime_error("CreateSandbox: " + status.error_message());
  }
  return sandbox;
}

}  // namespace corral::testing
