// Helpers shared by the agent's tests: temporary directories named by string
// paths (what FsRequest fields take), and the real corral-agent from the
// build tree on one end of a socketpair, driven through the daemon's
// AgentConnection. The agent helpers need the test to link
// corral::agent_client; the file helpers need nothing beyond the headers.
#ifndef CORRAL_TESTS_INTEGRATION_AGENT_TEST_UTIL_H_
#define CORRAL_TESTS_INTEGRATION_AGENT_TEST_UTIL_H_

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "corral/agent/v1/agent.pb.h"
#include "corral/platform.h"
#include "corral/unique_fd.h"
#include "daemon/agent/agent_connection.h"
#include "guest-agent/wire/frame_codec.h"
#include "tests/test_util.h"

extern char** environ;

namespace corral::agent::testing {

// ---- Files ------------------------------------------------------------------

// A corral::testing::TempDir whose path, and the paths beneath it, are
// strings.
struct TempDir {
  explicit TempDir(const std::string& prefix = "corral-agent")
      : dir(prefix), path(dir.path().string()) {}

  std::string operator/(const std::string& name) const {
    return path + "/" + name;
  }

  corral::testing::TempDir dir;  // Removes the directory at the end.
  std::string path;
};

// The whole content of the file at `path`; empty when it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// ---- The protocol by hand ---------------------------------------------------

// Two connected ends of a Unix stream socket.
inline std::pair<UniqueFd, UniqueFd> SocketPair() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// One end of an agent-protocol stream spoken by hand: bytes and frames out,
// frames in.
class FrameSocket {
 public:
  explicit FrameSocket(UniqueFd fd) : fd_(std::move(fd)) {}

  // False once the other end hung up.
  bool SendRaw(std::string_view bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done,
                         MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  bool Send(const v1::Frame& frame) {
    std::string bytes;
    REQUIRE(wire::AppendFrame(frame, &bytes));
    return SendRaw(bytes);
  }

  // The next frame, or false after `timeout` or at the end of the stream.
  bool Receive(v1::Frame* frame, absl::Duration timeout = absl::Seconds(3)) {
    const absl::Time deadline = absl::Now() + timeout;
    char buffer[65536];
    while (!decoder_.Next(frame)) {
      const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (wait_ms <= 0) return false;
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(wait_ms)) <= 0) return false;
      ssize_t n = ::read(fd_.get(), buffer, sizeof(buffer));
      if (n <= 0) return false;
      decoder_.Feed(std::string_view(buffer, static_cast<size_t>(n)));
    }
    return true;
  }

  int fd() const { return fd_.get(); }
  void Close() { fd_.Reset(); }

 private:
  UniqueFd fd_;
  wire::FrameDecoder decoder_;
};

// ---- The real agent ---------------------------------------------------------

inline constexpr char kAgentPath[] = CORRAL_BINARY_DIR "/bin/corral-agent";

// Starts corral-agent with `flag` (--fd or --listen-fd) and `fd` as its fd 3,
// behind `wrapper` (e.g. unshare) when given. With `leak_fd`, the agent
// inherits a stray fd 7 that is not close-on-exec, as from a careless
// launcher. Returns the pid of what it started.
inline pid_t SpawnAgent(const char* flag, int fd,
                        std::vector<std::string> wrapper = {},
                        bool leak_fd = false) {
  corral::platform::StartChildReaper();
  // dup2 onto the same number would keep close-on-exec: make sure it differs.
  UniqueFd high(::fcntl(fd, F_DUPFD_CLOEXEC, 10));
  REQUIRE(high.valid());
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, high.get(), 3);
  if (leak_fd) {
    posix_spawn_file_actions_addopen(&actions, 7, "/dev/null", O_RDONLY, 0);
  }
  wrapper.insert(wrapper.end(), {kAgentPath, flag, "3"});
  std::vector<char*> argv;
  for (std::string& arg : wrapper) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc =
      ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  return pid;
}

struct Agent {
  pid_t pid = -1;
  std::shared_ptr<daemon::AgentConnection> connection;
};

// corral-agent --fd 3 on one end of a socketpair, connected (hello done).
inline Agent StartAgent(std::vector<std::string> wrapper = {},
                        bool leak_fd = false) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  Agent agent;
  agent.pid = SpawnAgent("--fd", theirs.get(), std::move(wrapper), leak_fd);
  theirs.Reset();
  auto connection =
      daemon::AgentConnection::Open(std::move(ours), absl::Seconds(5));
  REQUIRE(connection.ok());
  agent.connection = *connection;
  return agent;
}

// True once `pid` no longer exists (the reaper collects zombies quickly).
inline bool WaitGone(pid_t pid, absl::Duration timeout = absl::Seconds(3)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

// Starts `start` on `connection`, writes `stdin_data` and collects everything
// until the exit, within `timeout`.
inline daemon::ExecResult Run(daemon::AgentConnection& connection,
                              const v1::ExecStart& start,
                              std::string_view stdin_data = "",
                              absl::Duration timeout = absl::Seconds(5)) {
  auto session = connection.StartExec(start);
  INFO(session.status().ToString());
  REQUIRE(session.ok());
  auto result =
      daemon::CollectExec(**session, stdin_data, absl::Now() + timeout);
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  return *std::move(result);
}

}  // namespace corral::agent::testing

#endif  // CORRAL_TESTS_INTEGRATION_AGENT_TEST_UTIL_H_
