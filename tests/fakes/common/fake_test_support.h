// What the fakes' own tests (tests/integration/*_fake_test.cc) share: a
// state directory of the test's own with the fake run against it, and what
// of it runc and the mount table still hold. Header-only, for tests built
// with tests/integration/daemon_harness.h.
#ifndef CORRAL_TESTS_FAKES_COMMON_FAKE_TEST_SUPPORT_H_
#define CORRAL_TESTS_FAKES_COMMON_FAKE_TEST_SUPPORT_H_

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/daemon_harness.h"

namespace corral::testing::fakes {

inline bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// A directory /tmp/<prefix>XXXXXX made for the test, named to the fake
// `binary` by the environment variable `variable`.
class FakeState {
 public:
  FakeState(const std::string& prefix, const std::string& variable,
            std::string binary)
      : binary_(std::move(binary)) {
    std::string pattern = "/tmp/" + prefix + "XXXXXX";
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    dir_ = pattern;
    env_ = {{variable, dir_}};
  }
  FakeState(const FakeState&) = delete;
  FakeState& operator=(const FakeState&) = delete;

  const std::string& dir() const { return dir_; }

  CommandResult Run(const std::vector<std::string>& args,
                    const std::string& stdin_data = "") const {
    std::vector<std::string> argv = {binary_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, stdin_data, -1, env_);
  }

  // The runc containers under `runc_root` and the mounts below the
  // directory, as a report ("" when none).
  std::string RuncAndMountLeftovers(const std::string& runc_root) const {
    std::string found;
    auto runc = Sh("runc --root '" + runc_root + "' list -q 2>/dev/null");
    if (!Trim(runc.out).empty()) found += "runc containers:\n" + runc.out;
    auto mounts = Sh("grep -F '" + dir_ + "' /proc/self/mountinfo");
    if (!Trim(mounts.out).empty()) found += "mounts:\n" + mounts.out;
    return found;
  }

 private:
  std::string binary_;
  std::string dir_;
  std::map<std::string, std::string> env_;
};

}  // namespace corral::testing::fakes

#endif  // CORRAL_TESTS_FAKES_COMMON_FAKE_TEST_SUPPORT_H_
