// Small helpers shared by the Catch2 tests.
#ifndef CORRAL_TESTS_TEST_UTIL_H_
#define CORRAL_TESTS_TEST_UTIL_H_

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <system_error>

namespace corral::testing {

// A fresh directory under the temp dir, removed with everything in it when
// the test ends.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "corral-test") {
    std::string pattern =
        (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX"))
            .string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace corral::testing

#endif  // CORRAL_TESTS_TEST_UTIL_H_
