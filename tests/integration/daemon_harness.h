// Test harness for integration tests: runs the real corrald from the build
// tree on a temporary socket and state directory, and the real corral CLI
// against it. The test process is a child subreaper that reaps everything
// (as systemd would), so sandboxes orphaned by a killed daemon do not linger
// as zombies, and it records exit statuses for the children it waits for.
#ifndef CORRAL_TESTS_INTEGRATION_DAEMON_HARNESS_H_
#define CORRAL_TESTS_INTEGRATION_DAEMON_HARNESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/images.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/system.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace corral::testing {

struct CommandResult {
  int exit_code = -1;  // 128+N when signal N ended it
  std::string out;
  std::string err;
};

// Runs argv (argv[0] a path) with optional stdin, as `uid` when non-negative.
CommandResult RunProcess(const std::vector<std::string>& argv,
                         const std::string& stdin_data = "", int uid = -1,
                         const std::map<std::string, std::string>& env = {});

// Runs a shell command line on the host.
CommandResult Sh(const std::string& command_line);

class Daemon {
 public:
  // Starts corrald; `config_toml` (may be empty) is written to a config file.
  // Every runtime keeps its default settings (cgroup parents, uid range):
  // daemons on one host (tests run in parallel, or by several people on one
  // machine) never touch each other's sandboxes.
  // With `socket_activated`, the harness plays systemd: it binds the socket
  // itself and passes it as fd 3 with LISTEN_FDS/LISTEN_PID.
  // With `netns_path`, corrald runs in that network namespace (a network
  // test's FakeInternet host namespace).
  explicit Daemon(const std::string& config_toml = "",
                  bool socket_activated = false,
                  const std::string& netns_path = "");
  // Stops the daemon (SIGTERM) after removing every sandbox left, removes
  // its directory, then runs `corrald --cleanup-orphans` for what it left
  // on the host.
  ~Daemon();

  void Start();
  void Stop();   // SIGTERM, waits
  void Kill9();  // SIGKILL, waits
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  const std::string& socket() const { return socket_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& dir() const { return dir_; }
  std::string log() const;

  // Runs the corral CLI against this daemon: Cli({"run", "--", "true"}).
  CommandResult Cli(const std::vector<std::string>& args,
                    const std::string& stdin_data = "", int uid = -1) const;

  std::shared_ptr<grpc::Channel> Channel() const;
  // A sandbox with default limits, through the API; its id. Throws (a test
  // failure) with the daemon's message when the create fails.
  std::string CreateSandbox(uint64_t ttl_seconds = 600) const;
  // A sandbox made from `request` as given (runtime, limits, require...);
  // the daemon's answer. Throws like the one above.
  corral::v1::Sandbox CreateSandbox(
      const corral::v1::CreateSandboxRequest& request) const;

 private:
  std::string dir_, socket_, state_dir_, config_path_;
  pid_t pid_ = -1;
  bool socket_activated_ = false;
  std::string netns_path_;
};

std::string BinaryDir();
// A field of /proc/PID/status in KiB ("VmRSS", "VmHWM"), or -1.
long ProcStatusKib(pid_t pid, const std::string& field);
std::string Trim(const std::string& s);
std::vector<std::string> Lines(const std::string& s);

}  // namespace corral::testing

#endif  // CORRAL_TESTS_INTEGRATION_DAEMON_HARNESS_H_
