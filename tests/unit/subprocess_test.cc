// backends/common/subprocess.h: a helper program run to completion, its
// output merged or apart, its stdin from the caller, bounded output, and a
// deadline that kills it.
#include "backends/common/subprocess.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

namespace corral::runtime_common {
namespace {

TEST_CASE(
    "RunProgram merges stdout and stderr by default and passes the "
    "exit code on",
    "[subprocess]") {
  auto result = RunProgram({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"},
                           absl::Seconds(10));
  REQUIRE(result.ok());
  CHECK(result->exit_code == 3);
  CHECK(result->output == "out\nerr\n");
  CHECK(result->error_output.empty());
  CHECK_FALSE(result->truncated);
}

TEST_CASE(
    "RunProgram keeps stderr apart when asked, reads stdin from the "
    "caller's fd, and says when it cut the output",
    "[subprocess]") {
  char path[] = "/tmp/corral-subprocess-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "from stdin\n", 11) == 11);
  REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
  ProgramOptions options;
  options.separate_stderr = true;
  options.stdin_fd = fd;
  auto result = RunProgram({"/bin/sh", "-c", "cat; echo err >&2"},
                           absl::Seconds(10), options);
  ::close(fd);
  ::unlink(path);
  REQUIRE(result.ok());
  CHECK(result->exit_code == 0);
  CHECK(result->output == "from stdin\n");
  CHECK(result->error_output == "err\n");

  ProgramOptions small;
  small.max_output_bytes = 100;
  auto cut = RunProgram({"/bin/sh", "-c", "head -c 5000 /dev/zero"},
                        absl::Seconds(10), small);
  REQUIRE(cut.ok());
  CHECK(cut->output.size() == 100);
  CHECK(cut->truncated);
  // Without stdin given, it reads /dev/null.
  auto empty =
      RunProgram({"/bin/sh", "-c", "cat; echo done"}, absl::Seconds(10));
  REQUIRE(empty.ok());
  CHECK(empty->output == "done\n");
}

TEST_CASE("RunProgram kills a program past its deadline", "[subprocess]") {
  auto slow = RunProgram({"/bin/sleep", "30"}, absl::Milliseconds(300));
  CHECK(absl::IsDeadlineExceeded(slow.status()));
  CHECK(absl::IsInvalidArgument(
      RunProgram({"sleep", "1"}, absl::Seconds(1)).status()));
}

}  // namespace
}  // namespace corral::runtime_common
