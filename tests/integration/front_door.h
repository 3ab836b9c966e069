// What the tests of Corral's front doors (corral mcp, corral e2b) share:
// they run as nobody, as front doors never run as root, against a daemon
// whose socket nobody may reach, and they are judged by real npm clients
// (tests/js) that need Node.js 20.
#ifndef CORRAL_TESTS_INTEGRATION_FRONT_DOOR_H_
#define CORRAL_TESTS_INTEGRATION_FRONT_DOOR_H_

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {

// A user whom the daemon's socket admits and its default policy serves.
inline constexpr int kNobody = 65534;
inline constexpr char kOpenSocket[] = "[daemon]\nsocket_mode = 0o666\n";

// In a child about to exec.
inline void DropToNobody() {
  if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 ||
      ::setuid(kNobody) != 0) {
    ::_exit(126);
  }
}

// A shell command line run as nobody, with a HOME and npm cache of its own
// under `dir` (which nobody may write).
inline std::string AsNobody(const std::string& dir,
                            const std::string& command) {
  return "HOME=" + dir + " npm_config_cache=" + dir +
         "/npm setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '" +
         command + "'";
}

// A temporary directory that nobody owns, for HOME and npm's cache.
inline std::string NobodyHome() {
  const std::string dir = Trim(Sh("mktemp -d /tmp/corral-nobody.XXXXXX").out);
  REQUIRE_FALSE(dir.empty());
  REQUIRE(::chown(dir.c_str(), kNobody, kNobody) == 0);
  return dir;
}

// Node.js 20 and `module` (a directory of tests/js/node_modules); CI
// (CORRAL_REQUIRE_JS=1) requires them, elsewhere the test says it is
// skipped and why.
inline bool JsJudgeAvailable(const std::string& module) {
  const std::string dir = std::string(CORRAL_SOURCE_DIR) + "/tests/js";
  auto node = Sh("node -p 'process.versions.node.split(\".\")[0]' 2>&1");
  std::string why;
  if (node.exit_code != 0) {
    why = "no node";
  } else if (std::stoi(Trim(node.out)) < 20) {
    why = "Node.js " + Trim(node.out) + " is older than 20";
  } else if (::access((dir + "/node_modules/" + module).c_str(), R_OK) != 0) {
    why = "tests/js/node_modules is missing (run tests/js/install.sh)";
  }
  if (why.empty()) return true;
  const char* required = std::getenv("CORRAL_REQUIRE_JS");
  if (required != nullptr && std::string(required) == "1") {
    FAIL("the npm judge " << module << " cannot run: " << why);
  }
  WARN("skipped: the npm judge " << module
                                 << " needs Node.js 20 and npm ci in "
                                    "tests/js: "
                                 << why);
  return false;
}

// `corral ARGS...` as nobody, an HTTP server that says "serving
// http://HOST:PORT..." on stderr once it listens; SIGTERM at the end.
class FrontDoorServer {
 public:
  explicit FrontDoorServer(const std::vector<std::string>& args) {
    int err[2];
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    std::vector<std::string> argv = {BinaryDir() + "/corral"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(err[1], 2);
      DropToNobody();
      std::vector<char*> raw;
      for (auto& arg : argv) raw.push_back(arg.data());
      raw.push_back(nullptr);
      ::execv(raw[0], raw.data());
      ::_exit(127);
    }
    REQUIRE(pid_ > 0);
    ::close(err[1]);
    std::string said;
    char c;
    while (said.find('\n') == std::string::npos && ::read(err[0], &c, 1) == 1) {
      said += c;
    }
    ::close(err[0]);
    INFO(said);
    const size_t at = said.find("http://");
    REQUIRE(at != std::string::npos);
    url_ = Trim(said.substr(at));
  }
  ~FrontDoorServer() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

}  // namespace corral::testing

#endif  // CORRAL_TESTS_INTEGRATION_FRONT_DOOR_H_
